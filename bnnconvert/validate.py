"""``validate``: prove that a flatbuffer computes what its Keras checkpoint computes.

Both run on the same inputs; the outputs are compared (error, cosine, top-1 /
top-5 agreement, accuracy when labels are known) against the thresholds
below. When they disagree (or when asked with ``layers=True``), the numpy
reference executor (:mod:`bnnconvert.reference`) replays the flatbuffer and
its intermediates are matched to the Keras layers' outputs to name the first
layer where the two part ways.

Example:
    >>> from bnnconvert.validate import validate
    >>> result = validate("models/digits", "exports/digits-arm64/model.tflite")
    >>> result.passed, result.top1_agreement
    (True, 1.0)

Which runtime. The flatbuffer runs in LCE's interpreter with the indirect
BGEMM binary kernel (``use_indirect_bgemm=True``, ``kernel="indirect"``): it
is LCE's fast x86 kernel and computes the float output transform and the
zero-padding correction in the same order as the ARM kernels that ship, so a
tie that flips on the device flips here too. ``kernel="reference"`` selects
LCE's reference kernel, which agrees with Keras bit for bit at ties.

Data. By default the checkpoint's ``test_split.npz``; ``data`` may be an
``.npz`` (``x``, optional ``y``) or a folder of images, preprocessed as the
model's metadata says (:mod:`bnnconvert.metadata`) or, without metadata,
resized to the input and scaled to [0, 1]. ImageNet-size models (3 channels,
at least 64 px) without data are checked on photographs that scikit-image
ships, with the ImageNet preprocessing of the published BinaryDenseNets.

Two cores. Keras runs in this process (all cores, batches of 16) while LCE's
interpreter runs in worker processes that load its compiled extension without
TensorFlow (:func:`default_workers`: one per CPU but one). Keras is the slower
side: on BinaryDenseNet28 at 224 px on this project's 2-core machine, Keras
alone does 9-17 samples/s and LCE's indirect kernel 14-21 per process, so no
schedule reaches 20 samples/s there; ``benchmarks/validate_throughput.py``
prints the parts and the ceiling they allow.

Reproducibility. Keras (TensorFlow 2.21 with oneDNN, CPU) was checked to be
bit for bit reproducible on BinaryDenseNet28 at 224 px with randomised batch
norms: across runs and processes, batch sizes 1/4/8/16, one or two intra-op
threads, with ``enable_op_determinism()``, and under CPU contention; with
``TF_ENABLE_ONEDNN_OPTS=0`` outputs move by ~5e-6 and then depend on the
batch size (~6e-8), so oneDNN stays on. What does differ is the
interpreter's float rounding against Keras: a sign input within rounding of
zero can flip (deterministically) and the flip propagates. Untrained or
randomised test models built without a fixed seed differ on every run, and so
do their near-ties, which made repeated runs look like Keras noise. The
reference executor rounds like Keras more often than LCE's optimised kernels
do, so when it finds no divergence although the outputs differ,
localization is repeated on the interpreter's own intermediates (same
kernel) and such flips are named as ties.
"""

from __future__ import annotations

import math
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert import _tf, io_quant, ir, reference
from bnnconvert.errors import CheckFailed, FlatbufferProblem, UsageProblem

# --- thresholds ------------------------------------------------------------------------
# Share of samples whose top-1 class may differ. A converted BNN computes the
# same function as its Keras model; float32 rounding can flip a sign only at a
# near-tie, and that changes the top class only when the two best logits
# nearly tie too. 1 % allows that rare event on large sets and, because the
# allowance is rounded down, none at all on fewer than 100 samples.
TOP1_DISAGREEMENT_ALLOWED = 0.01
# A sample "matches" when every output differs by at most ATOL + RTOL * max|keras|.
# float32 evaluation order (fused multipliers, zero-padding correction, oneDNN
# vs TFLite convolutions) moves outputs by ~1e-6 relative; 1e-3 is far above
# that and far below what one wrong binary channel does (>= 1e-2 in our
# planted-fault tests).
ATOL = 1e-4
RTOL = 1e-3
# Share of samples that may fall outside that tolerance (same rounding rule
# as top-1): a flip at a true tie can move one sample's output without any
# fault; localization names it.
MISMATCH_ALLOWED = 0.01
# Per-layer tolerance for localization: as above, on the layer's output scale.
LAYER_ATOL = 1e-4
LAYER_RTOL = 1e-3
# A sign flip counts as a tie when the Keras value before the sign is within
# TIE_RTOL of that tensor's largest magnitude (float32 noise, not a fault).
TIE_RTOL = 1e-5

KERNELS = {
    "indirect": {"use_indirect_bgemm": True},
    "reference": {"use_reference_bconv": True},
    "default": {},
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
"""scikit-image sample photographs used for ImageNet-size models without data."""
_PARALLEL_MIN_SAMPLES = 32  # below this, starting worker processes costs more than it saves

Progress = Callable[[int, int], None]


@dataclass
class LayerReport:
    """One matched Keras layer: how the flatbuffer's tensor compares with its output."""

    keras_layer: str
    keras_class: str
    tensor: str
    ops: list[str]
    max_abs_error: float
    max_rel_error: float
    cosine: float
    within_tolerance: bool
    binary_input_layer: str | None = None
    flipped_signs: float | None = None
    flipped_at_ties: float | None = None

    @property
    def cause(self) -> str:
        """``ok``, ``ties`` (only tie flips upstream of the error) or ``fault``."""
        if self.within_tolerance:
            return "ok"
        if self.flipped_signs and self.flipped_signs == self.flipped_at_ties:
            return "ties"
        return "fault"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cause": self.cause}


@dataclass
class ValidationResult:
    """What ``validate`` measured; ``to_dict()`` is its JSON report."""

    model_path: str
    checkpoint: str
    data: str
    samples: int
    kernel: str
    max_abs_error: float
    max_rel_error: float
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    top5_agreement: float | None
    samples_within_tolerance: float
    keras_accuracy: float | None
    flatbuffer_accuracy: float | None
    passed: bool
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layers: list[LayerReport] = field(default_factory=list)
    first_divergence: LayerReport | None = None
    seconds: float = 0.0
    localization_seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("layers", "first_divergence")}
        data["thresholds"] = {
            "top1_disagreement_allowed": TOP1_DISAGREEMENT_ALLOWED,
            "atol": ATOL,
            "rtol": RTOL,
            "mismatch_allowed": MISMATCH_ALLOWED,
            "layer_atol": LAYER_ATOL,
            "layer_rtol": LAYER_RTOL,
            "tie_rtol": TIE_RTOL,
        }
        data["samples_per_second"] = round(self.samples_per_second, 2)
        data["seconds"] = round(self.seconds, 3)
        data["localization_seconds"] = round(self.localization_seconds, 3)
        data["layers"] = [layer.to_dict() for layer in self.layers]
        data["first_divergence"] = (
            self.first_divergence.to_dict() if self.first_divergence else None
        )
        return data

    def summary(self) -> str:
        """One line: verdict and the headline numbers."""
        verdict = "PASS" if self.passed else "FAIL"
        text = (
            f"{verdict}: {self.samples} samples, top-1 agreement {self.top1_agreement:.2%}, "
            f"max abs error {self.max_abs_error:.3g}, min cosine {self.cosine_min:.6f}"
        )
        if self.keras_accuracy is not None:
            text += (
                f", accuracy keras {self.keras_accuracy:.2%} / "
                f"flatbuffer {self.flatbuffer_accuracy:.2%}"
            )
        return text


def validate(
    ckpt: str | Path,
    model_path: str | Path,
    *,
    data: str | Path | None = None,
    samples: int | None = None,
    layers: bool = False,
    kernel: str = "indirect",
    workers: int | None = None,
    raise_on_fail: bool = False,
    progress: Progress | None = None,
    keras_model: Any = None,
) -> ValidationResult:
    """Run the checkpoint and the flatbuffer on the same inputs and compare them.

    Arguments:
        ckpt: checkpoint (any form :func:`bnnconvert.checkpoint.load` accepts).
        model_path: the ``.tflite`` file to check.
        data: ``.npz`` (``x``, optional ``y``) or a folder of images; default:
            the checkpoint's test split, or sample photographs for ImageNet-size models.
        samples: use at most this many inputs (the first ones).
        layers: always localize (compare layer by layer), not only on failure.
        kernel: LCE binary kernel: ``indirect`` (default), ``reference`` or ``default``.
        workers: worker processes for the LCE interpreter; 0 runs it in this
            process after Keras (default: one per CPU but one, which stays with Keras).
        raise_on_fail: raise :class:`CheckFailed` when the check fails.
        progress: called with (done, total) as flatbuffer samples finish.
        keras_model: an already loaded Keras model to use instead of loading ``ckpt``.

    Returns:
        A :class:`ValidationResult`.

    Raises:
        UsageProblem: bad arguments or data; CheckpointProblem / FlatbufferProblem:
            unreadable inputs; CheckFailed: with ``raise_on_fail`` and a failed check.
    """
    from bnnconvert import checkpoint

    started = time.perf_counter()
    if kernel not in KERNELS:
        raise UsageProblem(f"Expected kernel among {', '.join(KERNELS)}, got {kernel!r}")
    if samples is not None and samples < 1:
        raise UsageProblem(f"Expected --samples of at least 1, got {samples}")
    model_path = Path(model_path)
    flatbuffer = ir.load_bytes(model_path)
    fb_model = ir.read(flatbuffer)
    ir.check_declared_sizes(fb_model)
    graph = fb_model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise FlatbufferProblem(
            f"Expected a model with one input and one output, got {len(graph.inputs)} and "
            f"{len(graph.outputs)}; validate supports single-input classifiers"
        )
    ckpt_path = Path(ckpt)
    beside = (ckpt_path if ckpt_path.is_dir() else ckpt_path.parent) / checkpoint.TEST_SPLIT_NAME
    input_shape = tuple(graph.tensors[graph.inputs[0]].shape[1:])
    x, y, source = load_data(data, beside if beside.is_file() else None, fb_model, input_shape)
    if samples is not None:
        x, y = x[:samples], (y[:samples] if y is not None else None)

    # The interpreter workers start first; Keras runs in this process meanwhile.
    fed = io_quant.quantize_inputs(fb_model, x)  # int8 inputs get the tensor's own scale
    with InterpreterRun(flatbuffer, fed, kernel=kernel, workers=workers, progress=progress) as run:
        if keras_model is None:
            keras_model = checkpoint.load(ckpt).model
        result = _compare(keras_model, fb_model, x, y, run, layers=layers)
    result.model_path, result.checkpoint, result.data, result.kernel = (
        str(model_path),
        str(ckpt),
        source,
        kernel,
    )
    result.seconds = time.perf_counter() - started
    if raise_on_fail and not result.passed:
        raise CheckFailed(_failure_line(result))
    return result


def _compare(
    keras_model: Any,
    fb_model: ir.Model,
    x: np.ndarray,
    y: np.ndarray | None,
    run: InterpreterRun,
    *,
    layers: bool,
) -> ValidationResult:
    """Run Keras on ``x`` (while ``run`` works), compare, localize if needed."""
    graph = fb_model.subgraphs[0]
    input_shape = tuple(graph.tensors[graph.inputs[0]].shape[1:])
    keras_shape = tuple(keras_model.input_shape[1:])
    if keras_shape != input_shape:
        raise UsageProblem(
            f"Expected the checkpoint's input shape {keras_shape} to match the model's "
            f"{input_shape}; export with --input-shape {','.join(map(str, keras_shape))}"
        )
    keras_out = _keras_predict(keras_model, x)
    fb_out = io_quant.dequantize_outputs(fb_model, run.result())
    result = compare_outputs(keras_out, fb_out, y)
    result.notes += io_quant.io_notes(fb_model)
    mismatched = np.flatnonzero(~_within(keras_out, fb_out, ATOL, RTOL))
    if layers or not result.passed:
        started = time.perf_counter()
        pick = mismatched[:4] if mismatched.size else np.arange(min(4, len(x)))
        result.layers = localize(keras_model, fb_model, x[pick])
        result.first_divergence = next((r for r in result.layers if not r.within_tolerance), None)
        if result.first_divergence is None and mismatched.size:
            # The reference executor computes the ops as defined and agrees with
            # Keras; the interpreter's kernels round differently (e.g. LCE's
            # optimised bconv kernels at sign ties). Localize what the verdict
            # is about: the interpreter's own intermediates, same kernel.
            runtime = localize(keras_model, fb_model, x[pick], kernel=run.kernel)
            first = next((r for r in runtime if not r.within_tolerance), None)
            if first is not None:
                result.layers, result.first_divergence = runtime, first
                result.notes.append(
                    "the reference executor agrees with Keras at every layer; the layers "
                    f"below come from LCE's interpreter ({run.kernel} kernel), whose outputs "
                    "were compared"
                )
        result.localization_seconds = time.perf_counter() - started
        _explain(result)
    return result


def quick_check(
    keras_model: Any,
    flatbuffer: bytes,
    test_data: Path | None,
    *,
    samples: int = 8,
    kernel: str = "indirect",
) -> ValidationResult:
    """A few samples through both sides, for ``export``'s report.

    Uses the test split if there is one, sample photographs for ImageNet-size
    models, and otherwise seeded uniform [0, 1) inputs (``data`` says which).
    """
    started = time.perf_counter()
    fb_model = ir.read(flatbuffer)
    graph = fb_model.subgraphs[0]
    input_shape = tuple(graph.tensors[graph.inputs[0]].shape[1:])
    try:
        x, y, source = load_data(None, test_data, fb_model, input_shape)
    except UsageProblem:
        x = np.random.default_rng(0).uniform(0, 1, (samples, *input_shape)).astype(np.float32)
        y, source = None, "random uniform [0, 1) inputs"
    x, y = x[:samples], (y[:samples] if y is not None else None)
    fed = io_quant.quantize_inputs(fb_model, x)
    with InterpreterRun(flatbuffer, fed, kernel=kernel, workers=0) as run:
        result = _compare(keras_model, fb_model, x, y, run, layers=False)
    result.data, result.kernel = source, kernel
    result.seconds = time.perf_counter() - started
    return result


def _failure_line(result: ValidationResult) -> str:
    line = f"parity check failed: {'; '.join(result.failures)}"
    first = result.first_divergence
    if first is not None:
        line += f"; first divergence at Keras layer {first.keras_layer} ({', '.join(first.ops)})"
    return line


def _explain(result: ValidationResult) -> None:
    """Turn the first divergence into a note; tie-only differences are not failures."""
    first = result.first_divergence
    if first is None:
        if not result.passed:
            result.notes.append(
                "no matched layer exceeds tolerance; the difference arises in ops that "
                "correspond to no Keras layer output"
            )
        return
    flips = ""
    if first.flipped_signs is not None:
        flips = (
            f", {_share(first.flipped_signs)} of its input signs flipped "
            f"({_share(first.flipped_at_ties or 0.0)} at ties)"
        )
    result.notes.append(
        f"first divergence: Keras layer {first.keras_layer} -> {', '.join(first.ops)} "
        f"(tensor {first.tensor}): max abs error {first.max_abs_error:.3g}, "
        f"cosine {first.cosine:.6f}{flips}; cause: {first.cause}"
    )
    if first.cause == "ties" and result.top1_agreement >= 1.0 - TOP1_DISAGREEMENT_ALLOWED:
        result.failures = [f for f in result.failures if not f.startswith("samples within")]
        result.passed = not result.failures
        result.notes.append(
            "the output differences start at sign ties (Keras values within float "
            "rounding of zero), not at a conversion fault"
        )


# --- data ------------------------------------------------------------------------------


def load_data(
    data: str | Path | None,
    test_data: Path | None,
    fb_model: ir.Model,
    input_shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Inputs ``(N, *input_shape)`` float32, labels or None, and a description."""
    if data is None:
        if test_data is not None:
            return (*_load_npz(test_data, input_shape), str(test_data))
        if len(input_shape) == 3 and input_shape[2] == 3 and min(input_shape[:2]) >= 64:
            from bnnconvert.preprocessing import PRESETS

            return _photos(PRESETS["imagenet"], input_shape), None, "scikit-image photographs"
        raise UsageProblem(
            "Expected data to validate on: the checkpoint has no test_split.npz beside it; "
            "pass --data with an .npz (x, y) or a folder of images"
        )
    path = Path(data)
    if path.is_dir():
        return _load_folder(path, fb_model, input_shape), None, str(path)
    if path.suffix == ".npz" and path.is_file():
        return (*_load_npz(path, input_shape), str(path))
    raise UsageProblem(f"Expected --data to be an .npz file or a folder of images, got {path}")


def _load_npz(path: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            x = np.asarray(arrays["x"], dtype=np.float32)
            y = np.asarray(arrays["y"]).astype(np.int64) if "y" in arrays else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageProblem(f"{path}: expected an .npz with an array 'x' (and 'y'): {e}") from e
    if x.shape[1:] != input_shape:
        raise UsageProblem(
            f"{path}: expected x of shape (N, {', '.join(map(str, input_shape))}), got {x.shape}"
        )
    if y is not None and y.shape != (x.shape[0],):
        raise UsageProblem(f"{path}: expected y of shape ({x.shape[0]},), got {y.shape}")
    return x, y


def _spec_for(fb_model: ir.Model, input_shape: tuple[int, ...]) -> Any:
    from bnnconvert.metadata import read_metadata
    from bnnconvert.preprocessing import PreprocessingSpec

    metadata = read_metadata(fb_model)
    if metadata and metadata.get("preprocessing"):
        return PreprocessingSpec.from_dict(metadata["preprocessing"])
    color = "gray" if input_shape[-1] == 1 else "rgb"
    return PreprocessingSpec(color=color, fit="stretch", scale=255.0, mean=(0.0,), std=(1.0,))


def _load_folder(folder: Path, fb_model: ir.Model, input_shape: tuple[int, ...]) -> np.ndarray:
    from bnnconvert.preprocessing import load_image, preprocess

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageProblem(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}); give a folder of images or an .npz"
        )
    spec = _spec_for(fb_model, input_shape)
    images = []
    for file in files:
        rgb = load_image(file, input_shape[0], input_shape[1])  # size-checked before decoding
        images.append(preprocess(rgb, spec, input_shape[0], input_shape[1])[0])
    return np.stack(images)


def _photos(spec: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    import skimage.data

    from bnnconvert.preprocessing import preprocess

    images = []
    for name in PHOTOS:
        rgb = np.asarray(getattr(skimage.data, name)())[..., :3]
        images.append(preprocess(rgb.astype(np.uint8), spec, input_shape[0], input_shape[1])[0])
    return np.stack(images)


# --- running both sides ----------------------------------------------------------------


def _keras_predict(model: Any, x: np.ndarray, batch: int = 16) -> np.ndarray:
    tf = _tf.tensorflow()
    call = tf.function(lambda a: model(a, training=False))
    parts = [np.asarray(call(x[i : i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(parts).reshape(len(x), -1)


def default_workers() -> int:
    """Interpreter worker processes by default: one per usable CPU but one (at least one).

    Keras, in this process, is the slower side (BinaryDenseNet28 at 224 px:
    about 12 samples/s on one core against 20 for LCE's indirect kernel), so
    it keeps a core of its own and gets the rest when the workers finish.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) - 1)


class InterpreterRun:
    """The LCE interpreter over every sample, in worker processes when that pays.

    The interpreter predicts one sample at a time and holds the GIL, so using
    more than one core means processes. Forked children cannot use LCE's
    Python wrapper (its pybind11 NumPy types break across ``fork``) and
    ``spawn`` would re-run the caller's script, so each worker is a fresh
    ``python -c`` process that reads the model and its share of the inputs
    from a temporary directory, prints one line per finished sample and
    writes its outputs back. Workers start when the run is entered, so the
    caller's Keras run overlaps with them; :meth:`result` gathers the
    outputs, flattened to ``(N, -1)``.
    """

    def __init__(
        self,
        flatbuffer: bytes,
        x: np.ndarray,
        *,
        kernel: str = "indirect",
        workers: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.flatbuffer, self.x, self.kernel = flatbuffer, x, kernel
        if workers is None:
            workers = default_workers()
        if workers < 0:
            raise UsageProblem(f"Expected a worker count of at least 0, got {workers}")
        self.workers = min(workers, len(x))
        self.report = progress or (lambda done, total: None)
        self.folder: Path | None = None
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> InterpreterRun:
        n = len(self.x)
        if self.workers < 1 or n < _PARALLEL_MIN_SAMPLES:
            return self
        self.folder = Path(tempfile.mkdtemp(prefix="bnnconvert-validate-"))
        (self.folder / "model.tflite").write_bytes(self.flatbuffer)
        bounds = np.linspace(0, n, self.workers + 1).astype(int)
        for k in range(self.workers):
            part = self.folder / f"part{k}"
            np.save(part.with_suffix(".in.npy"), self.x[bounds[k] : bounds[k + 1]])
            command = [sys.executable, "-c", _WORKER_CODE, str(self.folder), part.name, self.kernel]
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.procs.append((proc, part))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def result(self) -> np.ndarray:
        n = len(self.x)
        if not self.procs:
            interpreter = _tf.lce_interpreter(self.flatbuffer, **KERNELS[self.kernel])
            outputs = []
            for i in range(n):
                outputs.append(np.asarray(interpreter.predict(self.x[i : i + 1])).reshape(1, -1))
                self.report(i + 1, n)
            return np.concatenate(outputs)
        done = 0
        with selectors.DefaultSelector() as selector:
            for proc, _ in self.procs:
                assert proc.stdout is not None
                selector.register(proc.stdout, selectors.EVENT_READ)
            open_pipes = len(self.procs)
            while open_pipes:
                for key, _ in selector.select():
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if not line:
                        selector.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    done += 1
                    self.report(done, n)
        outputs = []
        for proc, part in self.procs:
            assert proc.stderr is not None
            errors = proc.stderr.read().decode(errors="replace").strip().splitlines()
            if proc.wait() != 0:
                raise FlatbufferProblem(
                    "LCE's interpreter failed on the model in a worker process: "
                    f"{errors[-1] if errors else f'exit code {proc.returncode}'}"
                )
            outputs.append(np.load(part.with_suffix(".out.npy")))
        return np.concatenate(outputs)


def _worker_main(folder: str, part: str, kernel: str) -> None:
    """Body of an interpreter worker process (see :class:`InterpreterRun`).

    The worker loads LCE's compiled interpreter extension directly
    (:func:`bnnconvert.devices.runner.load_interpreter_module`, about 30 ms)
    instead of through ``larq_compute_engine``'s package, whose ``__init__``
    imports TensorFlow (about 5 s per worker, which used to cost more than the
    worker saved). The parent keeps :func:`bnnconvert._tf.lce_interpreter`:
    TensorFlow is loaded there anyway, and loading the same pybind11
    extension a second time under another module name is not safe.
    """
    from bnnconvert.devices.runner import load_interpreter_module

    base = Path(folder)
    x = np.load(base / f"{part}.in.npy")
    options = KERNELS[kernel]
    interpreter = load_interpreter_module().LiteInterpreter(
        (base / "model.tflite").read_bytes(),
        1,  # threads: LCE's x86 binary kernels are single-threaded
        options.get("use_reference_bconv", False),
        options.get("use_indirect_bgemm", False),
        False,  # no XNNPACK delegate, as in the parent
    )
    outputs = []
    for i in range(len(x)):
        (out,) = interpreter.predict([x[i : i + 1]])
        outputs.append(np.asarray(out).reshape(1, -1))
        sys.stdout.write("1\n")
        sys.stdout.flush()
    np.save(base / f"{part}.out.npy", np.concatenate(outputs))


_WORKER_CODE = (
    "import sys; from bnnconvert.validate import _worker_main; _worker_main(*sys.argv[1:])"
)


# --- comparing outputs -----------------------------------------------------------------


def _within(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Per sample: every element within ``atol + rtol * max|a|``."""
    scale = np.abs(a).max(axis=1)
    return np.abs(a - b).max(axis=1) <= atol + rtol * scale


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = (a64 * b64).sum(axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)


def compare_outputs(
    keras_out: np.ndarray, fb_out: np.ndarray, labels: np.ndarray | None
) -> ValidationResult:
    """Statistics and verdict for two ``(N, classes)`` output arrays."""
    n = len(keras_out)
    diff = np.abs(keras_out - fb_out)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(max_abs / max(float(np.abs(keras_out).max()), 1e-12))
    cos = _cosine(keras_out, fb_out)
    top1_k, top1_f = keras_out.argmax(1), fb_out.argmax(1)
    top1 = float(np.mean(top1_k == top1_f))
    top5 = None
    if keras_out.shape[1] > 5:
        k5 = np.argsort(-keras_out, axis=1)[:, :5]
        f5 = np.argsort(-fb_out, axis=1)[:, :5]
        top5 = float(np.mean([set(a) == set(b) for a, b in zip(k5, f5, strict=True)]))
    within = float(np.mean(_within(keras_out, fb_out, ATOL, RTOL)))
    failures = []
    allowed_top1 = math.floor(TOP1_DISAGREEMENT_ALLOWED * n)
    if int(np.sum(top1_k != top1_f)) > allowed_top1:
        failures.append(f"top-1 agreement {top1:.2%} (at most {allowed_top1} of {n} may differ)")
    allowed_mismatch = math.floor(MISMATCH_ALLOWED * n)
    if round((1.0 - within) * n) > allowed_mismatch:
        failures.append(
            f"samples within tolerance {within:.2%} (atol {ATOL}, rtol {RTOL}; "
            f"at most {allowed_mismatch} of {n} may differ)"
        )
    keras_acc = fb_acc = None
    if labels is not None:
        keras_acc = float(np.mean(top1_k == labels))
        fb_acc = float(np.mean(top1_f == labels))
    return ValidationResult(
        model_path="",
        checkpoint="",
        data="",
        samples=n,
        kernel="",
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        cosine_min=float(cos.min()) if n else 1.0,
        cosine_mean=float(cos.mean()) if n else 1.0,
        top1_agreement=top1,
        top5_agreement=top5,
        samples_within_tolerance=within,
        keras_accuracy=keras_acc,
        flatbuffer_accuracy=fb_acc,
        passed=not failures,
        failures=failures,
    )


# --- localization ----------------------------------------------------------------------


def _layer_of(name: str, prefix: str, layer_names: set[str]) -> str | None:
    """The Keras layer a tensor name's ``model/layer/...`` segment names, if any."""
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    head, slash, _ = rest.partition("/")
    if head in layer_names:
        return head
    if not slash:  # the converter truncated the name inside the layer name
        found = [n for n in layer_names if n.startswith(head)]
        return found[0] if len(found) == 1 else None
    return None


def match_layers(keras_model: Any, fb_model: ir.Model) -> list[tuple[str, int, list[str]]]:
    """Pairs (Keras layer, flatbuffer tensor, ops the layer became), in execution order.

    A tensor belongs to the layer its name's first ``;`` segment names (the
    converter names a fused op after the last layer it absorbed, e.g. a bconv
    followed by a batch norm after the batch norm); each layer is matched to
    its last such float tensor with the layer's output shape.
    """
    graph = fb_model.subgraphs[0]
    prefix = f"{keras_model.name}/"
    layers = {layer.name: layer for layer in keras_model.layers}
    names = set(layers)
    last: dict[str, int] = {}
    ops: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    for position, op in enumerate(graph.operators):
        for out in op.outputs:
            tensor = graph.tensors[out]
            segments = tensor.name.split(";")
            for segment in segments:
                layer = _layer_of(segment, prefix, names)
                if layer is not None and op.opcode not in ops.setdefault(layer, []):
                    ops[layer].append(op.opcode)
            owner = _layer_of(segments[0], prefix, names)
            if owner is None or tensor.dtype != "float32":
                continue
            shape = layers[owner].output_shape
            if isinstance(shape, list) or tuple(shape[1:]) != tuple(tensor.shape[1:]):
                continue
            if _affine_continues(fb_model, out, prefix + owner + "/"):
                continue
            last[owner] = out
            order[owner] = position
    ranked = sorted(last, key=lambda name: order[name])
    return [(name, last[name], ops[name]) for name in ranked]


def _affine_continues(fb_model: ir.Model, tensor: int, layer_prefix: str) -> bool:
    """True if ``tensor`` is only half of its layer's affine chain.

    A batch norm becomes ``MUL`` then ``ADD``; when the ``ADD`` absorbs a
    following ReLU it is named after the ReLU, and the ``MUL``'s tensor would
    wrongly stand for the batch norm's output.
    """
    graph = fb_model.subgraphs[0]
    readers = ir.consumers(graph, tensor)
    if len(readers) != 1:
        return False
    op = graph.operators[readers[0]]
    if op.opcode not in ("ADD", "SUB", "MUL"):
        return False
    other = [i for i in op.inputs if i != tensor]
    constant = bool(other) and all(ir.tensor_array(fb_model, graph, i) is not None for i in other)
    return constant and not graph.tensors[op.outputs[0]].name.startswith(layer_prefix)


def _binary_input(keras_model: Any, fb_model: ir.Model, tensor: int) -> tuple[str, int] | None:
    """For a tensor an LceBconv2d writes: (its QuantConv2D layer, its bitpacked input)."""
    graph = fb_model.subgraphs[0]
    position = ir.producer(graph, tensor)
    if position is None or graph.operators[position].opcode != "LceBconv2d":
        return None
    op = graph.operators[position]
    prefix = f"{keras_model.name}/"
    quant_layers = {layer.name for layer in keras_model.layers if "Quant" in type(layer).__name__}
    candidates = [graph.tensors[op.inputs[0]].name, graph.tensors[tensor].name]
    for name in candidates:
        for segment in name.split(";"):
            layer = _layer_of(segment, prefix, quant_layers)
            if layer is not None:
                return layer, op.inputs[0]
    return None


def _flip_stats(signs: np.ndarray, keras_in: np.ndarray) -> tuple[float, float]:
    """Share of flipped signs and share flipped at ties (per-channel polarity aligned).

    A channel whose signs disagree on more than half the positions is compared
    inverted: bnnconvert's sign-scale folding negates such channels and flips
    the filter bits instead, which is exact.
    """
    expected = np.where(keras_in < 0, -1.0, 1.0)
    channels = signs.shape[-1]
    differ = signs.reshape(-1, channels) != expected.reshape(-1, channels)
    inverted = differ.mean(axis=0) > 0.5
    flips = np.where(inverted, ~differ, differ)
    tie = np.abs(keras_in.reshape(-1, channels)) <= TIE_RTOL * max(
        float(np.abs(keras_in).max()), 1e-30
    )
    total = flips.size
    return float(flips.sum() / total), float((flips & tie).sum() / total)


def localize(
    keras_model: Any, fb_model: ir.Model, x: np.ndarray, *, kernel: str | None = None
) -> list[LayerReport]:
    """Compare every matched layer's output on ``x`` with Keras.

    The flatbuffer's intermediates come from the reference executor, or with
    ``kernel`` (a :data:`KERNELS` name) from LCE's interpreter running that
    kernel on a copy of the model that outputs them.
    """
    keras = _tf.keras()
    pairs = match_layers(keras_model, fb_model)
    if not pairs:
        return []
    binary = {tensor: _binary_input(keras_model, fb_model, tensor) for _, tensor, _ in pairs}
    if kernel is None:
        values = reference.run(fb_model, [io_quant.quantize_inputs(fb_model, x)])
    else:
        needed = [tensor for _, tensor, _ in pairs]
        needed += [info[1] for info in binary.values() if info is not None]
        values = _interpreter_values(
            fb_model, io_quant.quantize_inputs(fb_model, x), needed, kernel
        )
    wanted = [name for name, _, _ in pairs]
    inputs_of = sorted({b[0] for b in binary.values() if b is not None})
    outputs = [keras_model.get_layer(n).output for n in wanted]
    outputs += [keras_model.get_layer(n).input for n in inputs_of]
    probe = keras.Model(keras_model.inputs, outputs)
    results = probe.predict(x, batch_size=8, verbose=0)
    results = results if isinstance(results, list) else [results]
    keras_values = dict(zip(wanted, results[: len(wanted)], strict=True))
    keras_inputs = dict(zip(inputs_of, results[len(wanted) :], strict=True))
    graph = fb_model.subgraphs[0]
    reports = []
    for name, tensor, ops in pairs:
        ours = values[tensor].reshape(len(x), -1).astype(np.float64)
        theirs = np.asarray(keras_values[name]).reshape(len(x), -1).astype(np.float64)
        diff = np.abs(ours - theirs)
        scale = float(np.abs(theirs).max()) or 1.0
        max_abs = float(diff.max())
        report = LayerReport(
            keras_layer=name,
            keras_class=type(keras_model.get_layer(name)).__name__,
            tensor=graph.tensors[tensor].name,
            ops=ops,
            max_abs_error=max_abs,
            max_rel_error=max_abs / scale,
            cosine=float(_cosine(ours.reshape(1, -1), theirs.reshape(1, -1))[0]),
            within_tolerance=max_abs <= LAYER_ATOL + LAYER_RTOL * scale,
        )
        info = binary[tensor]
        if info is not None:
            layer, packed = info
            keras_in = np.asarray(keras_inputs[layer])
            signs = ir.unpack_bits(values[packed], keras_in.shape[-1])
            report.binary_input_layer = layer
            report.flipped_signs, report.flipped_at_ties = _flip_stats(signs, keras_in)
        reports.append(report)
    return reports


def _interpreter_values(
    fb_model: ir.Model, x: np.ndarray, tensors: list[int], kernel: str
) -> dict[int, np.ndarray]:
    """``tensors`` (distinct op outputs) as LCE's interpreter computes them on ``x``."""
    tensors = list(dict.fromkeys(tensors))
    cut = ir.write(reference.with_outputs(fb_model, tensors))
    outputs = _tf.lce_interpreter(cut, **KERNELS[kernel]).predict(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return dict(zip(tensors, outputs, strict=True))


def _share(fraction: float) -> str:
    """A percentage that keeps one flipped sign in millions visible (not ``0.000%``)."""
    return f"{100 * fraction:.3g}%"


def render_layers(reports: Sequence[LayerReport]) -> list[str]:
    """Plain text lines for a layer table (for the CLI)."""
    lines = []
    for r in reports:
        flips = ""
        if r.flipped_signs is not None:
            flips = f"  flips {_share(r.flipped_signs)} (ties {_share(r.flipped_at_ties or 0.0)})"
        lines.append(
            f"{r.cause:5}  {r.keras_layer:32} {'+'.join(r.ops):40} "
            f"max abs {r.max_abs_error:.3g}  cos {r.cosine:.6f}{flips}"
        )
    return lines
