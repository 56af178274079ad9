"""Size caps on everything bnnconvert reads, checked before the bytes are read.

A path given to ``inspect``, ``validate``, ``bench`` or ``export`` may name a
FIFO (reading blocks forever), a device such as ``/dev/zero`` (reading never
ends) or a huge sparse file (reading costs its full size in memory). Every
input therefore goes through :func:`regular_file`: ``os.stat`` first (which
neither opens nor reads), then the file is opened without blocking and
checked again on the open descriptor, and at most its stated size is read.
The caps below are documented in the README ("Limits").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bnnconvert.errors import UsageProblem

MAX_MODEL_BYTES = 1 << 30
"""A ``.tflite`` file: 1 GiB (TFLite's own flatbuffer limit is 2 GiB)."""

MAX_IMAGE_BYTES = 64 << 20
"""An image file given to ``validate --data``: 64 MiB."""

MAX_IMAGE_PIXELS = 40_000_000
"""Pixels of one image, read from its header before decoding: 40 megapixels."""

MAX_INPUT_BYTES = 64 << 20
"""One sample of a model's declared inputs (``bench``, ``validate``): 64 MiB."""

MAX_TENSOR_BYTES = 1 << 30
"""Any non-constant tensor a model declares (the interpreter allocates it): 1 GiB."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _check(path: Path, st: os.stat_result, max_bytes: int, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise UsageProblem(f"{path} is {kind}; give the path of {what}")
    if st.st_size > max_bytes:
        raise UsageProblem(
            f"{path} is {_mib(st.st_size)}, more than the {_mib(max_bytes)} bnnconvert reads "
            f"as {what}; check that this is the right file"
        )


def check_regular_file(path: Path | str, max_bytes: int, what: str) -> int:
    """Check with ``os.stat`` (nothing is opened) that ``path`` is a regular file within a cap.

    Arguments:
        path: the file (symlinks are followed).
        max_bytes: the largest size accepted.
        what: what the file should be, for the message (e.g. ``"a .tflite model"``).

    Returns:
        The file's size in bytes.

    Raises:
        UsageProblem: the path does not exist, cannot be stat'ed, is not a regular
            file (directory, FIFO, device, socket), or is larger than ``max_bytes``.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise UsageProblem(f"{path}: no such file; give the path of {what}") from e
    except OSError as e:
        raise UsageProblem(f"{path}: cannot read it ({e.strerror or e}); check the path") from e
    _check(path, st, max_bytes, what)
    return st.st_size


def read_regular_file(path: Path | str, max_bytes: int, what: str, head: int = 0) -> bytes:
    """Read a regular file of at most ``max_bytes``, checked before reading.

    The file is stat'ed, then opened non-blocking (a FIFO swapped in after the
    check cannot hang the open) and checked again on the descriptor; at most the
    size it had then is read.

    Arguments:
        path, max_bytes, what: as for :func:`check_regular_file`.
        head: when positive, read only the first ``head`` bytes.

    Returns:
        The file's bytes (or its first ``head`` bytes).

    Raises:
        UsageProblem: as :func:`check_regular_file`, or the file cannot be read.
    """
    path = Path(path)
    check_regular_file(path, max_bytes, what)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise UsageProblem(f"{path}: cannot read it ({e.strerror or e}); check the path") from e
    try:
        st = os.fstat(fd)
        _check(path, st, max_bytes, what)
        size = min(st.st_size, head) if head > 0 else st.st_size
        chunks, left = [], size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise UsageProblem(f"{path}: cannot read it ({e.strerror or e}); check the path") from e
    finally:
        os.close(fd)
