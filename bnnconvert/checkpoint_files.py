"""The files of a checkpoint: size caps, and side files that stay inside its folder.

A checkpoint folder may carry side files that bnnconvert reads by default
(``labels.txt``, ``preprocessing.txt``, ``test_split.npz``, ``bnnconvert.json``).
A downloaded checkpoint must not make bnnconvert read files from elsewhere
(a ``labels.txt`` symlinked to ``~/.ssh/id_ed25519`` would be embedded in
``model.tflite``), so :func:`side_file` accepts only a regular file that is
no symlink and resolves inside the folder. Files given explicitly on the
command line are the user's choice and are not restricted this way.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from bnnconvert import limits
from bnnconvert.errors import CheckpointProblem

MAX_CHECKPOINT_BYTES = 4 << 30
"""A ``.keras``/``.h5`` checkpoint file, or one file of a SavedModel: 4 GiB."""

MAX_CONFIG_BYTES = 16 << 20
"""A model config (``config.json``, ``keras_metadata.pb``, an HDF5 ``model_config``): 16 MiB."""

MAX_SIDE_BYTES = {
    "labels.txt": 4 << 20,
    "preprocessing.txt": 64 << 10,
    "bnnconvert.json": 64 << 10,
    "test_split.npz": 1 << 30,
}
"""Side files beside a checkpoint, by name."""


def checked_file(path: Path, max_bytes: int, what: str) -> int:
    """``stat`` ``path`` (nothing is read): a regular file of at most ``max_bytes``.

    Returns:
        Its size in bytes.

    Raises:
        UsageProblem: not a regular file (FIFO, device, directory) or too large.
    """
    return limits.check_regular_file(path, max_bytes, what)


def side_file(ckpt: Path, name: str) -> Path | None:
    """The side file ``name`` in the checkpoint's folder, if there is a safe one.

    Arguments:
        ckpt: the checkpoint file or directory.
        name: a key of :data:`MAX_SIDE_BYTES`.

    Returns:
        The path, or None when the folder has no such entry.

    Raises:
        CheckpointProblem: the entry is a symlink, resolves outside the folder,
            or is not a regular file; UsageProblem: larger than its cap.
    """
    folder = ckpt if ckpt.is_dir() else ckpt.parent
    candidate = folder / name
    if not candidate.is_symlink() and not candidate.exists():
        return None
    if candidate.is_symlink() or folder.resolve() not in candidate.resolve().parents:
        raise CheckpointProblem(
            f"{candidate}: a symlink or a path outside the checkpoint folder; bnnconvert "
            f"reads side files only from inside the checkpoint; copy the file there, "
            f"or give it explicitly on the command line"
        )
    checked_file(candidate, MAX_SIDE_BYTES[name], f"a checkpoint's {name}")
    return candidate


def read_zip_member(archive: zipfile.ZipFile, name: str, max_bytes: int, source: Path) -> bytes:
    """Read one member of a zip archive after checking its declared size.

    ``zipfile`` stops at the declared size, so a member that inflates beyond
    it cannot cost more than ``max_bytes``.

    Raises:
        CheckpointProblem: the member is missing or declares more than ``max_bytes``.
    """
    try:
        info = archive.getinfo(name)
    except KeyError as e:
        raise CheckpointProblem(f"{source}: no {name} in the archive; not a .keras file") from e
    if info.file_size > max_bytes:
        raise CheckpointProblem(
            f"{source}: its {name} inflates to {info.file_size / (1 << 20):.0f} MiB, more than "
            f"the {max_bytes >> 20} MiB bnnconvert reads; refused"
        )
    return archive.read(name)


def check_zip_members(archive: zipfile.ZipFile, source: Path) -> None:
    """Refuse an archive whose members declare more than :data:`MAX_CHECKPOINT_BYTES`."""
    total = sum(info.file_size for info in archive.infolist())
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointProblem(
            f"{source}: its members inflate to {total / (1 << 30):.1f} GiB, more than the "
            f"{MAX_CHECKPOINT_BYTES >> 30} GiB bnnconvert reads; refused"
        )
