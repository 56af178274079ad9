"""Write files so that a reader never sees a partial one.

Data goes to a temporary file in the destination's directory, is flushed to
disk, and then renamed over the destination (``os.replace`` is atomic on
POSIX). An interruption at any point leaves either the old file or the new
one, and removes the temporary file when Python gets the chance.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bnnconvert.errors import OutputProblem

_ADVICE = {
    errno.ENOSPC: "the disk is full; free space or pick another directory with output_dir=",
    errno.EDQUOT: (
        "the disk quota is exceeded; free space or pick another directory with output_dir="
    ),
    errno.EACCES: "permission denied; pick a directory you can write with output_dir=",
    errno.EPERM: "permission denied; pick a directory you can write with output_dir=",
    errno.EROFS: "the file system is read-only; pick another directory with output_dir=",
    errno.ENOTDIR: (
        "a part of the path is a file, not a directory; pick another path with output_dir="
    ),
    errno.EEXIST: "a file of that name is in the way; pick another path with output_dir=",
    errno.ENOENT: "this location cannot hold new files; pick another directory with output_dir=",
}


def describe_os_error(e: OSError) -> str:
    """The cause of a failed write in words, with what to do (for one-line errors)."""
    advice = _ADVICE.get(e.errno or 0)
    return advice or f"{e.strerror or e}; pick another directory with output_dir="


def check_writable_dir(path: Path, files: Iterable[str] = ()) -> None:
    """Make sure ``path`` is, or can become, a directory we can write ``files`` into.

    Creates nothing that stays: an existing directory gets a temporary file,
    a missing one a temporary directory in its nearest existing ancestor, each
    removed at once. Call it before slow work so a bad ``-o`` fails in seconds
    and a failed command leaves no empty folder behind.

    Arguments:
        path: the output directory.
        files: names of the files to be written there; each must be absent
            or a regular file (a file replaced atomically can't replace a folder).

    Raises:
        OutputProblem: ``path`` is a file, lies under a file, is read-only,
            or cannot hold files (``/proc/x``), or one of ``files`` is in the
            way; the message names the cause.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputProblem(
            f"cannot write to {path}: it is a file, not a directory; "
            "pick a directory with output_dir="
        )
    for name in files:
        target = path / name
        if target.exists() and not target.is_file():
            what = "a directory" if target.is_dir() else "not a regular file"
            raise OutputProblem(
                f"cannot write to {target}: it is {what}; remove it or pick another directory "
                "with output_dir="
            )
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(ancestor))
        if ancestor == path:
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".bnnconvert-", dir=ancestor))
    except OSError as e:
        raise OutputProblem(f"cannot write to {path}: {describe_os_error(e)}") from e


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    write_files({Path(path): data})


def write_files(files: dict[Path, bytes]) -> None:
    """Replace several files together: every one is written in full before any is renamed.

    A write that fails (disk full, Ctrl-C) leaves every old file as it was, so
    files that describe each other (a model and its report) never get mixed
    from two runs. Renaming needs no space; only an interruption between the
    renames could leave some new and some old.
    """
    written: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            written.append((tmp, path))
            os.chmod(tmp, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: Path, text: str) -> None:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    write_bytes(path, text.encode("utf-8"))
