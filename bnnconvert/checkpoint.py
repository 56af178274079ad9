"""Load a trained Keras/Larq model from any of the checkpoint formats we accept.

Accepted ``CKPT`` forms:

* a directory holding a Keras SavedModel (``saved_model.pb`` + ``keras_metadata.pb``);
* a ``.keras`` or full-model ``.h5`` file, or a directory with exactly one;
* a TF weights checkpoint (``*.index`` + ``*.data-*``) in a directory with a
  ``bnnconvert.json`` naming the architecture and its arguments, e.g.
  ``{"architecture": "binarydensenet28", "input_shape": [224, 224, 3], "num_classes": 1000}``;
* weights-only ``.h5`` files (such as the published larq-zoo
  ``binary_densenet_28_weights.h5``) together with ``arch="binarydensenet28"``.

Nothing in a checkpoint is executed: before Keras sees a model config we walk
it and refuse ``Lambda`` layers (serialized Python bytecode) and classes from
modules other than Keras, TensorFlow and Larq; ``.keras`` files load in Keras
safe mode. A directory may also carry ``test_split.npz`` (arrays ``x``, ``y``),
which ``validate`` uses as its default data.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnnconvert import _tf, models
from bnnconvert.errors import CheckpointProblem

CONFIG_NAME = "bnnconvert.json"
TEST_SPLIT_NAME = "test_split.npz"
_TRUSTED_MODULES = ("keras", "tf_keras", "larq", "tensorflow", "builtins")
_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class LoadedCheckpoint:
    """A model loaded from ``path``, and what we learned on the way."""

    model: Any
    path: Path
    format: str
    architecture: str | None = None
    test_data: Path | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for reports."""
        return {
            "path": str(self.path),
            "format": self.format,
            "architecture": self.architecture,
            "model_name": self.model.name,
            "parameters": int(self.model.count_params()),
            "test_data": str(self.test_data) if self.test_data else None,
        }


def load(
    path: str | Path,
    *,
    arch: str | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> LoadedCheckpoint:
    """Load the model at ``path`` (see the module docstring for the forms).

    Arguments:
        path: file or directory.
        arch: architecture name for weights-only files (``binarydensenet28`` ...).
        input_shape: ``(H, W, C)`` to build ``arch`` with (default 224x224x3).
        num_classes: classes to build ``arch`` with (default: read from the weights).

    Raises:
        CheckpointProblem: with one line saying what was found and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointProblem(f"{path}: no such file or directory; give a checkpoint path")
    test_data = _test_data_beside(path)
    if arch is not None:
        return _load_arch_weights(path, arch, input_shape, num_classes, test_data)
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return LoadedCheckpoint(_load_saved_model(path), path, "savedmodel", None, test_data)
        if (path / CONFIG_NAME).exists():
            return _load_tf_checkpoint(path, test_data)
        path = _single_model_file(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return LoadedCheckpoint(_load_keras_file(path), path, "keras", None, test_data)
    if suffix in (".h5", ".hdf5"):
        return LoadedCheckpoint(_load_h5_model(path), path, "h5", None, test_data)
    raise CheckpointProblem(
        f"{path}: unknown checkpoint format {suffix or '(no suffix)'!r}; expected a SavedModel "
        f"directory, a .keras or .h5 file, or a directory with {CONFIG_NAME} and a TF checkpoint"
    )


def _test_data_beside(path: Path) -> Path | None:
    folder = path if path.is_dir() else path.parent
    candidate = folder / TEST_SPLIT_NAME
    return candidate if candidate.is_file() else None


def _single_model_file(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in _MODEL_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointProblem(
            f"{folder}: no checkpoint found (no saved_model.pb, {CONFIG_NAME}, .keras or .h5); "
            "point at a checkpoint file or a SavedModel directory"
        )
    names = ", ".join(p.name for p in found)
    raise CheckpointProblem(f"{folder}: several checkpoints ({names}); name one file")


# --- refusing code in configs -------------------------------------------------


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def check_config_safe(config: Any, source: Path) -> None:
    """Refuse a Keras model config that would run code when deserialized."""
    for node in _walk(config):
        if node.get("class_name") == "Lambda":
            raise CheckpointProblem(
                f"{source}: the model has a Lambda layer (serialized Python code), which "
                "bnnconvert does not execute; replace it with a built-in Keras or Larq layer "
                "and save again"
            )
        module = node.get("module")
        if isinstance(module, str) and module.split(".")[0] not in _TRUSTED_MODULES:
            raise CheckpointProblem(
                f"{source}: the model config imports module {module!r}; bnnconvert only "
                "loads Keras, TensorFlow and Larq classes"
            )


def _load_checked(path: Path, config: Any) -> Any:
    """Refuse unsafe configs, then let Keras (safe mode) load ``path``."""
    check_config_safe(config, path)
    keras = _tf.keras()
    _tf.larq()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise CheckpointProblem(f"{path}: Keras could not load it: {first[:300]}") from e


def _load_keras_file(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as e:
        raise CheckpointProblem(
            f"{path}: not a valid .keras archive ({e}); save with model.save('model.keras')"
        ) from e
    return _load_checked(path, config)


def _h5_attrs(path: Path) -> tuple[Any | None, bool]:
    """Return (model config or None, whether the file holds weights)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            has_weights = "layer_names" in f.attrs or "model_weights" in f
    except OSError as e:
        raise CheckpointProblem(f"{path}: not a readable HDF5 file ({e})") from e
    if raw is None:
        return None, has_weights
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        return json.loads(raw), has_weights
    except json.JSONDecodeError as e:
        raise CheckpointProblem(f"{path}: its model_config is not valid JSON") from e


def _load_h5_model(path: Path) -> Any:
    config, has_weights = _h5_attrs(path)
    if config is None:
        if has_weights:
            raise CheckpointProblem(
                f"{path}: holds weights only, no architecture; pass --arch with one of "
                f"{', '.join(models.SPECS)}"
            )
        raise CheckpointProblem(f"{path}: HDF5 file without a Keras model or weights")
    return _load_checked(path, config)


def _load_saved_model(path: Path) -> Any:
    metadata_file = path / "keras_metadata.pb"
    if not metadata_file.exists():
        raise CheckpointProblem(
            f"{path}: a SavedModel without Keras metadata; save it with tf-keras "
            "model.save(directory) so its layers can be rebuilt"
        )
    from tf_keras.protobuf import saved_metadata_pb2

    _tf.keras()
    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(metadata_file.read_bytes())
        configs = [json.loads(node.metadata) for node in metadata.nodes if node.metadata]
    except Exception as e:
        raise CheckpointProblem(f"{metadata_file}: unreadable Keras metadata ({e})") from e
    return _load_checked(path, configs)


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG_NAME
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointProblem(f"{file}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointProblem(
            f'{file}: expected {{"architecture": "binarydensenet28", "input_shape": [H, W, C], '
            f'"num_classes": N}}, got {str(config)[:120]}'
        )
    return config


def _load_tf_checkpoint(folder: Path, test_data: Path | None) -> LoadedCheckpoint:
    config = _read_config(folder)
    tf = _tf.tensorflow()
    prefix = tf.train.latest_checkpoint(str(folder))
    if prefix is None:
        indexes = sorted(folder.glob("*.index"))
        if len(indexes) != 1:
            raise CheckpointProblem(
                f"{folder}: {CONFIG_NAME} found but {len(indexes)} TF checkpoints (*.index); "
                "keep exactly one, or a 'checkpoint' file naming the latest"
            )
        prefix = str(indexes[0].with_suffix(""))
    arch = str(config["architecture"])
    model = models.binary_densenet(
        arch,
        tuple(config.get("input_shape", (224, 224, 3))),
        int(config.get("num_classes", 1000)),
    )
    try:
        status = model.load_weights(prefix)
        status.assert_existing_objects_matched()
    except Exception as e:
        raise CheckpointProblem(
            f"{prefix}: the weights do not fit {arch} as configured in {CONFIG_NAME} "
            f"({str(e).splitlines()[0][:200]}); check the architecture and its arguments"
        ) from e
    return LoadedCheckpoint(model, folder, "tf-checkpoint", arch, test_data)


def _h5_num_classes(path: Path) -> int | None:
    """Width of the last Dense kernel in a weights-only h5, if there is one."""
    import h5py

    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        names = [
            n.decode() if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])
        ]
        for name in reversed(names):
            group = root[name]
            weight_names = group.attrs.get("weight_names", [])
            for w in weight_names:
                w = w.decode() if isinstance(w, bytes) else w
                if w.endswith("kernel:0") and len(group[w].shape) == 2:
                    return int(group[w].shape[1])
    return None


def _load_arch_weights(
    path: Path,
    arch: str,
    input_shape: Sequence[int] | None,
    num_classes: int | None,
    test_data: Path | None,
) -> LoadedCheckpoint:
    spec = models.architecture(arch)
    if path.is_dir():
        path = _single_model_file(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise CheckpointProblem(
            f"{path}: --arch expects a weights .h5 file (e.g. binary_densenet_28_weights.h5), "
            f"got {path.suffix or 'no suffix'}"
        )
    _h5_attrs(path)  # readable HDF5?
    classes = num_classes or _h5_num_classes(path) or 1000
    model = models.build_binary_densenet(
        spec, input_shape=tuple(input_shape or (224, 224, 3)), num_classes=classes
    )
    try:
        model.load_weights(str(path))
    except Exception as e:
        raise CheckpointProblem(
            f"{path}: the weights do not fit {spec.name} "
            f"({str(e).strip().splitlines()[0][:200]}); is --arch right?"
        ) from e
    return LoadedCheckpoint(model, path, "h5-weights", spec.name, test_data)
