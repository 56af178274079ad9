"""Load a trained Keras/Larq model from any of the checkpoint formats we accept.

Accepted ``CKPT`` forms:

* a directory holding a Keras SavedModel (``saved_model.pb`` + ``keras_metadata.pb``);
* a ``.keras`` or full-model ``.h5`` file, or a directory with exactly one;
* a TF weights checkpoint (``*.index`` + ``*.data-*``) in a directory with a
  ``bnnconvert.json`` naming the architecture and its arguments, e.g.
  ``{"architecture": "binarydensenet28", "input_shape": [224, 224, 3], "num_classes": 1000}``;
* weights-only ``.h5`` files (such as the published larq-zoo
  ``binary_densenet_28_weights.h5``) together with ``arch="binarydensenet28"``.

Nothing in a checkpoint is executed. Every model config is checked against
an allowlist (:mod:`bnnconvert.config_allowlist`) before Keras sees it, and
Keras loads in safe mode; a SavedModel is rebuilt from its config and its
variables restored (:mod:`bnnconvert.saved_model_restore`), never loaded by
running its graphs; HDF5 files are walked for external data first
(:mod:`bnnconvert.h5_check`); files are size-checked before they are read
and side files must lie inside the checkpoint folder
(:mod:`bnnconvert.checkpoint_files`). ``trust=True`` (``--trust-checkpoint``)
lifts the allowlist and safe mode for a checkpoint the user vouches for.
A directory may also carry ``test_split.npz`` (arrays ``x``, ``y``), which
``validate`` uses as its default data.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnnconvert import _tf, limits, models
from bnnconvert.checkpoint_files import (
    MAX_CHECKPOINT_BYTES,
    MAX_CONFIG_BYTES,
    MAX_SIDE_BYTES,
    check_zip_members,
    checked_file,
    read_zip_member,
    side_file,
)
from bnnconvert.config_allowlist import check_config, check_loaded_model
from bnnconvert.errors import CheckpointProblem, UsageProblem, first_line
from bnnconvert.h5_check import check_h5
from bnnconvert.saved_model_restore import METADATA_NAME, load_saved_model

CONFIG_NAME = "bnnconvert.json"
TEST_SPLIT_NAME = "test_split.npz"
TRUST_WARNING = (
    "--trust-checkpoint: the checkpoint's own code (Lambda layers, custom objects, "
    "SavedModel graphs) may run with your permissions"
)
MAX_CLASSES = 100_000
MAX_SIDE = 4096
MAX_CHANNELS = 64
_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
_WEIGHTS_MEMBER = "model.weights.h5"


@dataclass
class LoadedCheckpoint:
    """A model loaded from ``path``, and what we learned on the way."""

    model: Any
    path: Path
    format: str
    architecture: str | None = None
    test_data: Path | None = None
    trusted: bool = False
    # Audit findings the loader adds (bnnconvert.audit.Diagnostic; the ONNX import's).
    findings: list[Any] = field(default_factory=list)
    # Computes the outputs to validate against when not the Keras model: NHWC in (ONNX Runtime).
    reference_run: Any = None

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for reports."""
        return {
            "path": str(self.path),
            "format": self.format,
            "architecture": self.architecture,
            "model_name": self.model.name,
            "parameters": int(self.model.count_params()),
            "test_data": str(self.test_data) if self.test_data else None,
            "trusted": self.trusted,
        }


def check_trust(trust: bool, custom_objects: str | Path | None) -> None:
    """Refuse ``custom_objects`` without ``trust`` (checked before any cache can skip loading).

    Raises:
        UsageProblem: ``trust`` not a bool (a string such as ``"false"`` must not turn on
            unsafe loading); ``custom_objects`` given without ``trust``.
    """
    if not isinstance(trust, bool):
        raise UsageProblem(f"Expected trust_checkpoint= as True or False, got {trust!r}")
    if custom_objects is not None and not trust:
        raise UsageProblem(
            "custom_objects= runs the given file's code: pass trust_checkpoint= with it"
        )


def load(
    path: str | Path,
    *,
    arch: str | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    trust: bool = False,
    custom_objects: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load the model at ``path`` (see the module docstring for the forms).

    Arguments:
        path: file or directory.
        arch: architecture name for weights-only files (``binarydensenet28`` ...).
        input_shape: ``(H, W, C)`` to build ``arch`` with (default: the
            variant's own, e.g. 32x32x1 for ``binarydensenet_digits``); the
            stem follows the weights.
        num_classes: classes to build ``arch`` with (default: read from the weights).
        trust: load ``.keras``/``.h5``/SavedModel files through Keras's own
            unsafe loader (``Lambda`` layers, custom objects, SavedModel graphs
            run). Callers warn the user (:data:`TRUST_WARNING`); never a default.
        custom_objects: a Python file whose classes and functions are
            registered for the load (only with ``trust``).

    Raises:
        CheckpointProblem: with one line saying what was found and what to do.
        UsageProblem: ``custom_objects`` without ``trust``; a file over its size cap.
    """
    path = Path(path)
    check_trust(trust, custom_objects)
    if not path.exists():
        raise CheckpointProblem(f"{path}: no such file or directory; give a checkpoint path")
    if num_classes is not None:
        _check_range("num_classes=", num_classes, MAX_CLASSES)
        if arch is None:
            raise UsageProblem(
                "Expected num_classes= only together with arch= (a weights-only .h5); a full "
                "checkpoint has its own classes: drop num_classes="
            )
    test_data = side_file(path, TEST_SPLIT_NAME)
    if path.suffix.lower() == ".onnx":
        if arch is not None:
            raise UsageProblem(
                "Expected arch= only for a weights-only .h5; an ONNX file holds its own "
                "architecture: drop arch="
            )
        from bnnconvert import onnx_import

        return onnx_import.load(path, test_data)
    if arch is not None:
        return _load_arch_weights(path, arch, input_shape, num_classes, test_data)
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            model = _load_trusted(path, custom_objects) if trust else load_saved_model(path)
            return LoadedCheckpoint(model, path, "savedmodel", None, test_data, trust)
        if (path / CONFIG_NAME).exists():
            return _load_tf_checkpoint(path, test_data)
        path = _single_model_file(path)
    suffix = path.suffix.lower()
    if suffix not in _MODEL_SUFFIXES:
        raise CheckpointProblem(
            f"{path}: unknown checkpoint format {suffix or '(no suffix)'!r}; expected a "
            f"SavedModel directory, a .keras or .h5 file, or a directory with {CONFIG_NAME} "
            "and a TF checkpoint"
        )
    checked_file(path, MAX_CHECKPOINT_BYTES, f"a {suffix} checkpoint")
    form = "keras" if suffix == ".keras" else "h5"
    if trust:
        model = _load_trusted(path, custom_objects)
    elif form == "keras":
        model = _load_keras_file(path)
    else:
        model = _load_h5_model(path)
    return LoadedCheckpoint(model, path, form, None, test_data, trust)


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


# --- loading: checked, then Keras in safe mode ---------------------------------


def _keras_load(path: Path) -> Any:
    """Let Keras load ``path`` in safe mode, then check what it built."""
    keras = _tf.keras()
    lq = _tf.larq()
    try:
        with _tf.keras_safe_mode():
            model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        raise CheckpointProblem(f"{path}: Keras could not load it: {first_line(e)}") from e
    check_loaded_model(model, keras, lq, str(path))
    return model


def _load_keras_file(path: Path) -> Any:
    with tempfile.TemporaryDirectory(prefix="bnnconvert-") as tmp:
        weights = None
        try:
            with zipfile.ZipFile(path) as archive:
                check_zip_members(archive, path)
                raw = read_zip_member(archive, "config.json", MAX_CONFIG_BYTES, path)
                config = json.loads(raw)
                check_config(config, str(path))
                names = set(archive.namelist())
                if _WEIGHTS_MEMBER in names:
                    weights = _checked_weights_copy(archive, path, Path(tmp))
        except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise CheckpointProblem(
                f"{path}: not a valid .keras archive ({e}); save with model.save('model.keras')"
            ) from e
        if weights is None or not names <= {"config.json", "metadata.json", _WEIGHTS_MEMBER}:
            return _keras_load(path)  # other weight stores, or assets: Keras's own loader
        return _keras_load_parts(path, config, weights)


def _checked_weights_copy(archive: zipfile.ZipFile, path: Path, folder: Path) -> Path:
    """Copy the ``.keras`` weights (HDF5) into ``folder`` and walk them for external data.

    h5py seeks back and forth; on a zip member every backward seek re-reads
    from the member's start, so the (size-checked) member is copied out first,
    and Keras loads the weights from the same copy.
    """
    copy = folder / _WEIGHTS_MEMBER
    with archive.open(_WEIGHTS_MEMBER) as src, copy.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    check_h5(copy, path)
    return copy


def _keras_load_parts(path: Path, config: dict[str, Any], weights: Path) -> Any:
    """What ``load_model`` does with a ``.keras`` archive, from its checked parts.

    The model is built from the checked ``config`` in safe mode and its
    weights are read from the checked copy on disk (a ``.weights.h5`` path:
    Keras's own ``.keras`` weight reader; ``load_model`` reads them from the
    zip member: 3 s instead of 0.9 s for BinaryDenseNet28); then what Keras
    built is checked, as after :func:`_keras_load`.
    """
    keras = _tf.keras()
    lq = _tf.larq()
    from tf_keras.src.saving.serialization_lib import ObjectSharingScope

    try:
        with _tf.keras_safe_mode(), ObjectSharingScope():
            model = keras.saving.deserialize_keras_object(
                {**config, "compile_config": None}, safe_mode=True
            )
        model.load_weights(str(weights))
    except Exception as e:
        raise CheckpointProblem(f"{path}: Keras could not load it: {first_line(e)}") from e
    check_loaded_model(model, keras, lq, str(path))
    return model


def _h5_attrs(path: Path) -> tuple[Any | None, bool]:
    """Return (model config or None, whether the file holds weights)."""
    import h5py

    check_h5(path, path)
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            has_weights = "layer_names" in f.attrs or "model_weights" in f
    except OSError as e:
        raise CheckpointProblem(f"{path}: not a readable HDF5 file ({e})") from e
    if raw is None:
        return None, has_weights
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointProblem(f"{path}: its model_config is over {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        return json.loads(raw), has_weights
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointProblem(f"{path}: its model_config is not valid JSON") from e


def _load_h5_model(path: Path) -> Any:
    config, has_weights = _h5_attrs(path)
    if config is None:
        if has_weights:
            raise CheckpointProblem(
                f"{path}: holds weights only, no architecture; pass arch= with one of "
                f"{', '.join(models.SPECS)}"
            )
        raise CheckpointProblem(f"{path}: HDF5 file without a Keras model or weights")
    check_config(config, str(path))
    return _keras_load(path)


# --- --trust-checkpoint -------------------------------------------------------


def _custom_objects(file: Path) -> dict[str, Any]:
    """Import the user's ``file`` and collect the classes and functions it defines."""
    checked_file(file, MAX_CONFIG_BYTES, "a Python file of custom objects")
    name = f"bnnconvert_custom_objects_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UsageProblem(f"{file}: not a Python file; give a .py file for custom_objects=")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _tf.keras()  # the user's file may import TensorFlow: set it up first
    _tf.larq()
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UsageProblem(
            f"{file}: importing it failed ({type(e).__name__}: {first_line(e)})"
        ) from e
    return {
        key: value
        for key, value in vars(module).items()
        if not key.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    }


def _load_trusted(path: Path, custom_objects: str | Path | None) -> Any:
    """Keras's own loader, unsafe: only for ``--trust-checkpoint``."""
    objects = _custom_objects(Path(custom_objects)) if custom_objects is not None else {}
    metadata = path / METADATA_NAME
    if path.is_dir() and (not metadata.is_file() or metadata.stat().st_size == 0):
        return _serving_signature_model(path)
    keras = _tf.keras()
    _tf.larq()
    try:
        with _tf.keras_safe_mode(False):
            model = keras.models.load_model(
                path, compile=False, custom_objects=objects, safe_mode=False
            )
    except Exception as e:
        if custom_objects is None:
            hint = "; if it names your own classes or functions, pass custom_objects= FILE.py"
        else:
            defined = ", ".join(sorted(objects)) or "no classes or functions"
            hint = (
                f"; {custom_objects} defines {defined}: does the checkpoint name one of its "
                "own that the file lacks?"
            )
        raise CheckpointProblem(
            f"{path}: Keras could not load it even with trust_checkpoint=: {first_line(e)}{hint}"
        ) from e
    return model if getattr(model, "_is_graph_network", True) else _as_functional(model, path)


def _serving_signature_model(path: Path) -> Any:
    """A Keras model that calls a plain SavedModel's serving signature (no Keras metadata).

    For ``tf.saved_model.save`` exports: TensorFlow loads the file (running its
    graphs, hence trusted only), and the one-input, one-output signature is
    wrapped in a Functional model, which LCE's converter traces like any other.
    """
    tf, keras = _tf.tensorflow(), _tf.keras()
    try:
        saved = tf.saved_model.load(str(path))
    except Exception as e:
        raise CheckpointProblem(
            f"{path}: TensorFlow could not load it even with trust_checkpoint=: {first_line(e)}"
        ) from e
    signatures = dict(saved.signatures)
    fn = signatures.get("serving_default") or (
        next(iter(signatures.values())) if len(signatures) == 1 else None
    )
    if fn is None:
        raise CheckpointProblem(
            f"{path}: a SavedModel without Keras metadata and without a serving signature "
            f"(signatures: {', '.join(signatures) or 'none'}); export it with a "
            "'serving_default' signature"
        )
    inputs = fn.structured_input_signature[1]
    outputs = fn.structured_outputs
    if len(inputs) != 1 or not isinstance(outputs, dict) or len(outputs) != 1:
        raise CheckpointProblem(
            f"{path}: its serving signature has {len(inputs)} inputs and "
            f"{len(outputs) if isinstance(outputs, dict) else 'unnamed'} outputs; "
            "bnnconvert converts one input to one output"
        )
    (name, spec), (output_name,) = next(iter(inputs.items())), outputs

    def serve(tensor: Any, _loaded: Any = saved) -> Any:  # keeps the variables alive
        return fn(**{name: tensor})[output_name]

    inp = keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=name)
    call = keras.layers.Lambda(serve, name="serving_default")
    return keras.Model(inp, call(inp), name=path.resolve().name)


def _as_functional(model: Any, path: Path) -> Any:
    """Wrap a revived subclassed model into a one-input Functional model.

    tf-keras revives a subclassed SavedModel with its traced ``call``; called
    on a Keras input it yields a graph LCE's converter takes like any other.
    """
    keras = _tf.keras()
    spec = model.save_spec() if hasattr(model, "save_spec") else None
    args = spec[0] if spec else []
    tensors = [a for a in args if a is not None]
    if len(tensors) != 1 or getattr(tensors[0], "shape", None) is None:
        raise CheckpointProblem(
            f"{path}: a subclassed model whose saved call takes {len(tensors)} tensor inputs; "
            "bnnconvert converts single-input models: save it as a Functional model"
        )
    inputs = keras.Input(shape=tensors[0].shape[1:], dtype=tensors[0].dtype)
    return keras.Model(inputs, model(inputs), name=model.name)


# --- TF weights checkpoint + bnnconvert.json -----------------------------------


def _check_range(what: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise CheckpointProblem(
            f"Expected {what} to be a whole number from 1 to {maximum}, got {repr(value)[:40]}"
        )
    return value


def _read_config(folder: Path) -> tuple[str, tuple[int, int, int], int]:
    """``(architecture, input_shape, num_classes)`` from ``bnnconvert.json``, validated."""
    file = side_file(folder, CONFIG_NAME)
    assert file is not None  # the caller saw it
    usage = (
        'expected {"architecture": "binarydensenet28", "input_shape": [H, W, C], "num_classes": N}'
    )
    try:
        raw = limits.read_regular_file(file, MAX_SIDE_BYTES[CONFIG_NAME], CONFIG_NAME)
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointProblem(f"{file}: not valid JSON ({e}); {usage}") from e
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise CheckpointProblem(f"{file}: {usage}, got {str(config)[:120]}")
    shape = config.get("input_shape", [224, 224, 3])
    if not isinstance(shape, list) or len(shape) != 3:
        raise CheckpointProblem(f"{file}: input_shape must be [H, W, C], got {str(shape)[:60]}")
    try:
        height = _check_range("input_shape H", shape[0], MAX_SIDE)
        width = _check_range("input_shape W", shape[1], MAX_SIDE)
        channels = _check_range("input_shape C", shape[2], MAX_CHANNELS)
        classes = _check_range("num_classes", config.get("num_classes", 1000), MAX_CLASSES)
    except CheckpointProblem as e:
        raise CheckpointProblem(f"{file}: {e}") from None
    return config["architecture"], (height, width, channels), classes


def _load_tf_checkpoint(folder: Path, test_data: Path | None) -> LoadedCheckpoint:
    arch, input_shape, num_classes = _read_config(folder)
    for part in [*folder.glob("*.index"), *folder.glob("*.data-*")]:
        checked_file(part, MAX_CHECKPOINT_BYTES, "a TF checkpoint file")
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
    model = models.binary_densenet(arch, input_shape, num_classes)
    try:
        status = model.load_weights(prefix)
        status.assert_existing_objects_matched()
    except Exception as e:
        raise CheckpointProblem(
            f"{prefix}: the weights do not fit {arch} as configured in {CONFIG_NAME} "
            f"({str(e).splitlines()[0][:200]}); check the architecture and its arguments"
        ) from e
    return LoadedCheckpoint(model, folder, "tf-checkpoint", arch, test_data)


def _h5_kernel_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of the kernels in a weights-only h5, in layer order (Keras's topology order)."""
    import h5py

    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        names = [
            n.decode() if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])
        ]
        shapes = []
        for name in names:
            group = root[name]
            for w in group.attrs.get("weight_names", []):
                w = w.decode() if isinstance(w, bytes) else w
                if w.endswith("kernel:0"):
                    shapes.append(tuple(int(d) for d in group[w].shape))
    return shapes


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
            f"{path}: arch= expects a weights .h5 file (e.g. binary_densenet_28_weights.h5), "
            f"got {path.suffix or 'no suffix'}"
        )
    checked_file(path, MAX_CHECKPOINT_BYTES, "a weights .h5 file")
    _h5_attrs(path)  # readable HDF5, no external data?
    kernels = _h5_kernel_shapes(path)
    dense = [k[1] for k in kernels if len(k) == 2]
    stem = next((k for k in kernels if len(k) == 4), None)  # 3x3 or 7x7, by the training input
    model = models.build_binary_densenet(
        spec,
        input_shape=input_shape,
        num_classes=num_classes or (dense[-1] if dense else None),
        small_stem=None if stem is None else stem[0] == 3,
    )
    try:
        model.load_weights(str(path))
    except Exception as e:
        raise CheckpointProblem(
            f"{path}: the weights do not fit {spec.name} "
            f"({str(e).strip().splitlines()[0][:200]}); is arch= right?"
        ) from e
    return LoadedCheckpoint(model, path, "h5-weights", spec.name, test_data)
