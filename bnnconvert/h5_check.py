"""Walk an HDF5 file before Keras opens it: no data may come from outside the file.

HDF5 can make a dataset read its bytes from another file (external storage),
assemble it from other files (virtual datasets), or link a name to an object
in another file (external links). Any of these would let a checkpoint pull a
local file into a weight buffer and from there into ``model.tflite``; they
have no use in a Keras checkpoint, so :func:`check_h5` refuses them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from bnnconvert.errors import CheckpointProblem


def check_h5(file: Path | IO[bytes], source: Path) -> None:
    """Refuse external storage, virtual datasets and external links in an HDF5 file.

    Arguments:
        file: the path, or an open binary file object (a member of a ``.keras`` zip).
        source: the checkpoint, for messages.

    Raises:
        CheckpointProblem: one line naming the HDF5 object and what it refers to.
    """
    import h5py

    try:
        with h5py.File(file, "r") as f:
            _walk(f, source, h5py)
    except OSError as e:
        raise CheckpointProblem(f"{source}: not a readable HDF5 file ({e})") from e


def _walk(group: Any, source: Path, h5py: Any) -> None:
    for name in group:
        link = group.get(name, getlink=True)
        where = f"{group.name.rstrip('/')}/{name}"
        if isinstance(link, h5py.ExternalLink):
            raise CheckpointProblem(
                f"{source}: HDF5 object {where} is an external link to {link.filename!r}; "
                "a checkpoint must hold its own data; refused"
            )
        if isinstance(link, h5py.SoftLink):
            continue  # points inside this file; its target is walked where it lives
        item = group[name]
        if isinstance(item, h5py.Dataset):
            if item.external:
                files = ", ".join(repr(str(entry[0])) for entry in item.external)
                raise CheckpointProblem(
                    f"{source}: HDF5 dataset {where} stores its data in an external file "
                    f"({files}); a checkpoint must hold its own data; refused"
                )
            if item.is_virtual:
                raise CheckpointProblem(
                    f"{source}: HDF5 dataset {where} is a virtual dataset (made of other "
                    "files); a checkpoint must hold its own data; refused"
                )
        elif isinstance(item, h5py.Group):
            _walk(item, source, h5py)
