"""Keras outputs cached per (checkpoint, data), so re-validating costs only the flatbuffer side.

Running the checkpoint in Keras is the slower half of ``validate`` (it
evaluates the binary convs in float), and its result does not change when
only the flatbuffer does (a re-export with other options, another target).
So the Keras outputs and a summary of the Keras model (its name, layer names,
input and output names and shapes: what the origin check needs) are stored
under a key made of:

- the sha256 of the checkpoint's bytes (every file of a checkpoint folder
  with its relative path, but flatbuffers and export reports), not its path
  or modification time;
- the sha256 of the input array (shape, dtype, bytes), after sampling;
- the input shape the checkpoint ran at, and the TensorFlow version;
- bnnconvert's version and a digest of its source (every ``.py`` file of the
  package, computed once per process): the code that builds the reference
  (checkpoint loading, the ONNX importer's layers and their names) changes
  what is cached, so an update of bnnconvert never reads an older entry.

Where: ``$BNNCONVERT_CACHE`` if set, else ``$XDG_CACHE_HOME/bnnconvert/keras-outputs``
(``~/.cache/bnnconvert/keras-outputs``). One ``.npz`` per entry, written
atomically; at most :data:`MAX_CACHE_BYTES` in all: after each write the
least recently used entries (by modification time, renewed on each hit) are
removed. An unreadable entry is a miss. Deleting the folder is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert.atomic import write_bytes

MAX_CACHE_BYTES = 1 << 30
"""Upper bound on the cache folder's size (1 GiB)."""
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The ``bnnconvert`` package folder whose source is part of every key."""
_CHUNK = 1 << 20


@dataclass(frozen=True)
class KerasSummary:
    """What ``validate`` needs to know of a Keras model without loading it (origin check)."""

    name: str
    layers: list[str]
    input_shape: list[int | None]
    output_names: list[str]
    output_shapes: list[list[int | None]]
    weights_sha256: str | None = None

    @classmethod
    def of(cls, model: Any, *, weights: bool = True) -> KerasSummary:
        """Summarize a loaded Keras model (``weights``: with its weights digest)."""
        return cls(
            name=model.name,
            layers=[layer.name for layer in model.layers],
            input_shape=list(model.input_shape[1:]),
            output_names=list(model.output_names),
            output_shapes=[list(o.shape[1:]) for o in model.outputs],
            weights_sha256=weights_digest(model) if weights else None,
        )


def weights_digest(model: Any) -> str | None:
    """sha256 over a Keras model's weights, or None when it has none to read (opaque models).

    Each array's shape, dtype and bytes, in ``model.get_weights()`` order;
    names are left out (Keras numbers them per process), so the same weights
    saved in another format give the same digest.
    """
    get_weights = getattr(model, "get_weights", None)
    if get_weights is None:
        return None
    digest = hashlib.sha256()
    for array in get_weights():
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    """The cache folder (not created)."""
    if os.environ.get("BNNCONVERT_CACHE"):
        return Path(os.environ["BNNCONVERT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bnnconvert" / "keras-outputs"


def _is_export_output(path: Path) -> bool:
    """A file ``export`` writes (an export folder may sit inside a checkpoint folder)."""
    return path.suffix == ".tflite" or path.name in ("export.json", "export.md")


def checkpoint_digest(path: Path) -> str:
    """sha256 over the checkpoint's files (relative path and bytes, sorted by path).

    Flatbuffers and export reports inside a checkpoint folder are left out, so
    exporting into it does not make the cache miss.
    """
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not _is_export_output(p))
    else:
        files = [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def source_digest(root: Path) -> str:
    """sha256 over the ``.py`` files under ``root`` (relative path and bytes, sorted by path)."""
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def entry_key(
    ckpt_digest: str, data_digest: str, input_shape: tuple[int, ...], loading: str = "safe"
) -> str:
    """The cache key of one (checkpoint, data, input shape, way of loading) under this
    TensorFlow and bnnconvert; ``loading``: :func:`loading_digest`."""
    code = [_version("tensorflow"), _version("bnnconvert"), source_digest(PACKAGE_ROOT)]
    text = json.dumps([ckpt_digest, data_digest, list(input_shape), loading, *code])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def loading_digest(trust: bool, custom_objects: str | Path | None) -> str:
    """How the checkpoint is loaded, for :func:`entry_key`: ``safe``, or ``trusted`` with
    the sha256 of the custom objects file (its code defines what the model computes).

    A trusted run's outputs are never read back by a safe run, which must load the
    checkpoint, and be refused, itself.
    """
    if not trust:
        return "safe"
    if custom_objects is None:
        return "trusted"
    try:
        return "trusted:" + hashlib.sha256(Path(custom_objects).read_bytes()).hexdigest()
    except OSError:
        return "trusted:unreadable"  # loading will say why


def load(key: str) -> tuple[list[np.ndarray], KerasSummary] | None:
    """The cached outputs and summary for ``key``, or None (a miss)."""
    path = cache_dir() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            summary = KerasSummary(**json.loads(str(saved["summary"])))
            outputs = [saved[f"out{i}"] for i in range(len(summary.output_names))]
        os.utime(path)  # most recently used
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return outputs, summary


def store(key: str, outputs: list[np.ndarray], summary: KerasSummary) -> None:
    """Save an entry (atomically), then trim the cache to :data:`MAX_CACHE_BYTES`.

    A cache that cannot be written is skipped silently: it only saves time.
    """
    folder = cache_dir()
    buffer = io.BytesIO()
    arrays = {f"out{i}": o for i, o in enumerate(outputs)}
    np.savez(buffer, summary=np.array(json.dumps(asdict(summary))), **arrays)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / f"{key}.npz", buffer.getvalue())
        trim(folder, MAX_CACHE_BYTES)
    except OSError:
        return


def trim(folder: Path, max_bytes: int) -> None:
    """Remove the least recently used entries until the folder holds at most ``max_bytes``."""
    entries = []
    for path in folder.glob("*.npz"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
