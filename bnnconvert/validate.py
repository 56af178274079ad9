"""``validate``: prove that a flatbuffer computes what its Keras checkpoint computes.

Both run on the same inputs; every output is compared (paired by name and
shape, :mod:`bnnconvert.validation.outputs`) against stated thresholds. When
they disagree, or when asked with ``layers=True``, every layer is checked in
isolation (:mod:`bnnconvert.validation.localize`) to name the first layer the
flatbuffer computes wrongly. The verdict is one of:

- ``pass``: the outputs agree within tolerance;
- ``pass (ties)``: the outputs differ, every layer passes in isolation, and
  LCE's interpreter departs from Keras first where signs flipped at values
  within float rounding of zero: float rounding at ties, not a conversion
  fault (a warning with the counts; ``fail_on_ties`` makes it a failure);
- ``fail``: with the first layer that fails in isolation, when there is one.

Lossy exports (fp16/int8 weights, int8 activations: found in the graph,
recorded in ``export.json`` beside the model, or forced with ``lossy=True``)
are judged by top-1 agreement and accuracy within stated limits, and
localization attributes their differences to the quantized ops ("int8
quantization"), not to faults.

Example:
    >>> from bnnconvert.validate import validate
    >>> result = validate("models/digits", "exports/digits-arm64/model.tflite")
    >>> result.verdict, result.top1_agreement
    ('pass', 1.0)

Before anything runs, the flatbuffer's embedded model name and the layer
names in its tensors are compared with the checkpoint
(:mod:`bnnconvert.validation.identity`): a flatbuffer exported from another
checkpoint is refused in one line. A checkpoint with another (or dynamic)
input size runs at the flatbuffer's static shape, rebuilt as ``export
--input-shape`` rebuilds it.

Which runtime. The flatbuffer runs in LCE's interpreter with the indirect
BGEMM binary kernel (``kernel="indirect"``): LCE's fast x86 kernel, which
computes the float output transform and the zero-padding correction in the
same order as the ARM kernels that ship, so a tie that flips on the device
flips here too. ``kernel="reference"`` selects LCE's reference kernel, which
agrees with Keras bit for bit at ties.

Speed. Keras runs in this process while LCE's interpreter runs in worker
processes (:mod:`bnnconvert.validation.runner`), which take samples one at a
time, so this process can take some too once Keras is done. Keras outputs are
cached per (checkpoint bytes, data) (:mod:`bnnconvert.validation.cache`), so
validating a re-exported model costs only the flatbuffer side. The
interpreter's samples are compared as they arrive: once localization is
certain and its samples settled (:mod:`bnnconvert.validation.overlap`), the
model is loaded (on a warm cache) and the layers checked while the workers
finish.

Reproducibility. Keras (TensorFlow 2.21 with oneDNN, CPU) was checked to be
bit for bit reproducible on BinaryDenseNet28 at 224 px with randomised batch
norms: across runs and processes, batch sizes 1/4/8/16, one or two intra-op
threads, and under CPU contention. What does differ is the interpreter's float
rounding against Keras: a sign input within rounding of zero can flip
(deterministically) and the flip propagates; that is what ``pass (ties)``
names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert import io_quant, ir
from bnnconvert.errors import (
    BnnConvertError,
    CheckFailed,
    FlatbufferProblem,
    UsageProblem,
    check_path,
    check_whole_number,
)
from bnnconvert.validation import cache, localize, outputs
from bnnconvert.validation.data import Data, data_digest, data_notes, load_data, range_notes
from bnnconvert.validation.identity import check_origin
from bnnconvert.validation.localize import LayerReport
from bnnconvert.validation.outputs import OutputReport
from bnnconvert.validation.overlap import SamplePlan
from bnnconvert.validation.runner import (
    KERNELS,
    InterpreterRun,
    Progress,
    default_workers,
    keras_batches,
)

__all__ = ["KERNELS", "LayerReport", "ValidationResult", "quick_check", "validate"]

PASS, PASS_TIES, FAIL, NOT_CHECKED = "pass", "pass (ties)", "fail", "not checked"
KERAS, ONNX_RUNTIME = "Keras", "ONNX Runtime"
RANDOM_INPUTS = "random uniform [0, 1) inputs"
"""``quick_check``'s data when there is no test split and the model is not ImageNet-size."""
"""What computes the reference outputs (``ValidationResult.reference``)."""
LOCALIZATION_SAMPLES = 4
"""Samples checked layer by layer (fewer when the model's activations are large)."""

ReferenceRun = Callable[[np.ndarray], np.ndarray]


@dataclass
class ValidationResult:
    """What ``validate`` measured and concluded; ``to_dict()`` is its JSON report.

    The top-level figures summarize every output (worst error, lowest cosine);
    ``top1_agreement`` and the accuracies are those of the class-score output
    (None without one). ``outputs`` has each output's own figures.
    ``reference`` names what computed the outputs the flatbuffer is compared
    with: ``Keras``, or ``ONNX Runtime`` for an ONNX file; ``keras_accuracy``,
    ``keras_cache`` and ``keras_seconds`` are that reference's (the names
    stay for compatibility).
    """

    model_path: str
    checkpoint: str
    data: str
    samples: int
    kernel: str
    verdict: str
    passed: bool
    lossy: bool = False
    outputs: list[OutputReport] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    layers: list[LayerReport] = field(default_factory=list)
    first_divergence: LayerReport | None = None
    tie_flips: int = 0
    judged_by_layers: str = ""
    reference: str = KERAS
    keras_cache: str = "off"
    seconds: float = 0.0
    keras_seconds: float = 0.0
    localization_seconds: float = 0.0
    localized_samples: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"<ValidationResult {self.verdict}: {self.samples} samples, "
            f"max abs error {self.max_abs_error:.3g}, cosine min {self.cosine_min:.6f}>"
        )

    @property
    def _classes(self) -> OutputReport | None:
        scores = [o for o in self.outputs if o.is_class_scores]
        return scores[-1] if scores else None

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((o.max_rel_error for o in self.outputs), default=0.0)

    @property
    def cosine_min(self) -> float:
        return min((o.cosine_min for o in self.outputs), default=1.0)

    @property
    def cosine_mean(self) -> float:
        return min((o.cosine_mean for o in self.outputs), default=1.0)

    @property
    def samples_within_tolerance(self) -> float:
        return min((o.samples_within_tolerance for o in self.outputs), default=1.0)

    @property
    def top1_agreement(self) -> float | None:
        return self._classes.top1_agreement if self._classes else None

    @property
    def top5_agreement(self) -> float | None:
        return self._classes.top5_agreement if self._classes else None

    @property
    def keras_accuracy(self) -> float | None:
        return self._classes.keras_accuracy if self._classes else None

    @property
    def flatbuffer_accuracy(self) -> float | None:
        return self._classes.flatbuffer_accuracy if self._classes else None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outputs"] = [o.to_dict() for o in self.outputs]
        for name in (
            "max_abs_error", "max_rel_error", "cosine_min", "cosine_mean",
            "samples_within_tolerance", "top1_agreement", "top5_agreement",
            "keras_accuracy", "flatbuffer_accuracy",
        ):  # fmt: skip
            data[name] = getattr(self, name)
        data["thresholds"] = {
            "top1_disagreement_allowed": outputs.TOP1_DISAGREEMENT_ALLOWED,
            "atol": outputs.ATOL,
            "rtol": outputs.RTOL,
            "mismatch_allowed": outputs.MISMATCH_ALLOWED,
            "lossy_top1_disagreement_allowed": outputs.LOSSY_TOP1_DISAGREEMENT_ALLOWED,
            "lossy_accuracy_drop_allowed": outputs.LOSSY_ACCURACY_DROP_ALLOWED,
            "lossy_cosine_min": outputs.LOSSY_COSINE_MIN,
            "layer_atol": localize.LAYER_ATOL,
            "layer_rtol": localize.LAYER_RTOL,
            "tie_rtol": localize.TIE_RTOL,
            "quant_rtol": localize.QUANT_RTOL,
        }
        data["samples_per_second"] = round(self.samples_per_second, 2)
        for name in ("seconds", "keras_seconds", "localization_seconds"):
            data[name] = round(data[name], 3)
        return data

    def summary(self) -> str:
        """One line: verdict and the headline numbers."""
        text = f"{self.verdict.upper()}: {self.samples} samples"
        if self.lossy:
            text += " (lossy export)"
        if self.top1_agreement is not None:
            text += f", top-1 agreement {self.top1_agreement:.2%}"
        text += f", max abs error {self.max_abs_error:.3g}, min cosine {self.cosine_min:.6f}"
        if self.keras_accuracy is not None:
            text += (
                f", accuracy {self.reference} {self.keras_accuracy:.2%} / "
                f"flatbuffer {self.flatbuffer_accuracy:.2%}"
            )
        return text


def validate(
    ckpt: str | Path,
    model_path: str | Path,
    *,
    data: Data = None,
    samples: int | None = None,
    layers: bool = False,
    kernel: str = "indirect",
    workers: int | None = None,
    lossy: bool = False,
    fail_on_ties: bool = False,
    use_cache: bool = True,
    raise_on_fail: bool = False,
    progress: Progress | None = None,
    keras_model: Any = None,
    trust_checkpoint: bool = False,
    custom_objects: str | Path | None = None,
) -> ValidationResult:
    """Run the checkpoint and the flatbuffer on the same inputs and compare them.

    Arguments:
        ckpt: checkpoint (any form :func:`bnnconvert.checkpoint.load` accepts).
        model_path: the ``.tflite`` file to check.
        data: ``.npz`` (``x``, optional ``y``), a folder of images, an array ``x``
            ``(N, H, W, C)`` or a tuple ``(x, y)`` (``y``: class indices); default:
            the checkpoint's test split, or sample photographs for ImageNet-size models.
        samples: use at most this many inputs (the first ones).
        layers: always check layer by layer, not only when the outputs differ.
        kernel: LCE binary kernel: ``indirect`` (default), ``reference`` or ``default``.
        workers: worker processes for the LCE interpreter; 0 runs it in this
            process after Keras (default: one per CPU but one, which stays with
            Keras; one per CPU when the Keras outputs come from the cache).
        lossy: judge as a lossy export even if nothing says it is one.
        fail_on_ties: make ``pass (ties)`` a failure (``passed`` False).
        use_cache: read and write cached Keras outputs (only when ``keras_model`` is None).
        raise_on_fail: raise :class:`CheckFailed` when the check fails.
        progress: called with (done, total) as flatbuffer samples finish.
        keras_model: an already loaded Keras model to use instead of loading ``ckpt``.
        trust_checkpoint, custom_objects: as for :func:`bnnconvert.checkpoint.load`
            (``trust``, ``custom_objects``).

    Returns:
        A :class:`ValidationResult`.

    Raises:
        UsageProblem: bad arguments or data; WrongCheckpoint: the flatbuffer was
            not exported from ``ckpt``; CheckpointProblem / FlatbufferProblem:
            unreadable inputs; CheckFailed: with ``raise_on_fail`` and a failed check.
    """
    from bnnconvert import checkpoint
    from bnnconvert.checkpoint_files import side_file

    started = time.perf_counter()
    checkpoint.check_trust(trust_checkpoint, custom_objects)  # even when the cache would hit
    if kernel not in KERNELS:
        raise UsageProblem(f"Expected kernel= to be one of {', '.join(KERNELS)}, got {kernel!r}")
    check_whole_number("samples", samples)
    if samples is not None and samples < 1:
        raise UsageProblem(f"Expected samples= of at least 1, got {samples}")
    check_path("ckpt", ckpt)
    check_path("model_path", model_path)
    model_path = Path(model_path)
    flatbuffer = ir.load_bytes(model_path)
    try:
        fb_model = ir.read(flatbuffer)
    except FlatbufferProblem as e:
        raise FlatbufferProblem(f"{model_path}: {e}") from e
    ir.check_declared_sizes(fb_model)
    input_shape = _single_input_shape(fb_model)
    ckpt_path = Path(ckpt)

    def load_keras() -> tuple[Any, ReferenceRun | None]:
        if keras_model is not None:
            return keras_model, None
        loaded = checkpoint.load(ckpt, trust=trust_checkpoint, custom_objects=custom_objects)
        return loaded.model, loaded.reference_run

    beside = side_file(ckpt_path, checkpoint.TEST_SPLIT_NAME) if data is None else None
    try:
        x, y, source = load_data(data, beside, fb_model, input_shape, samples=samples)
    except BnnConvertError as data_problem:
        # Origin first: a wrong or ambiguous checkpoint explains a data problem too.
        origin = cache.KerasSummary.of(load_keras()[0], weights=keras_model is None)
        check_origin(origin, fb_model, ckpt, model_path)
        raise data_problem from None
    lossy = lossy or exported_as_lossy(model_path) or graph_is_lossy(fb_model)
    key = None
    if use_cache and keras_model is None and ckpt_path.exists():
        loading = cache.loading_digest(trust_checkpoint, custom_objects)
        key = cache.entry_key(
            cache.checkpoint_digest(ckpt_path), data_digest(x), input_shape, loading
        )

    keras_started = time.perf_counter()
    cached = cache.load(key) if key else None
    if workers is None and cached is not None:
        workers = default_workers() + 1  # no Keras to run: every core interprets
    # The interpreter workers start first; Keras runs in this process meanwhile.
    with InterpreterRun(
        flatbuffer, fb_model, x, kernel=kernel, workers=workers, progress=progress
    ) as run:
        model, batches = None, None
        if cached is not None:
            reference_outputs, summary = cached
            check_origin(summary, fb_model, ckpt, model_path)
        else:
            model, reference_run = load_keras()
            # The weights digest of a model given as keras_model is not compared.
            origin = cache.KerasSummary.of(model, weights=keras_model is None)
            check_origin(origin, fb_model, ckpt, model_path)
            model = _at_shape(model, input_shape)
            summary = replace(
                cache.KerasSummary.of(model, weights=False), weights_sha256=origin.weights_sha256
            )
            batches = _reference_batches(model, reference_run, x)
        plan = SamplePlan(_pair_outputs(summary, fb_model)[0], len(x), always=layers or lossy)
        if cached is not None:
            plan.add_reference(reference_outputs)
        overlap = _Overlap(run, plan, fb_model, x, kernel, lossy=lossy, model=model)
        overlap.keras_seconds = time.perf_counter() - keras_started
        overlap.collect(lambda: _at_shape(load_keras()[0], input_shape), batches)
        fb_outputs = run.result()
    if cached is None:
        reference_outputs = plan.reference_outputs()
        if key:
            cache.store(key, reference_outputs, summary)
    result = _judge(
        summary, fb_model, x, y, reference_outputs, fb_outputs, lossy=lossy, kernel=kernel
    )
    result.keras_cache = "off" if key is None else ("hit" if cached is not None else "miss")
    result.notes += data_notes(data, len(x), samples, fb_model) + range_notes(x, fb_model)
    # checkpoint.load runs an .onnx file in ONNX Runtime (LoadedCheckpoint.reference_run).
    onnx = keras_model is None and ckpt_path.suffix.lower() == ".onnx"
    result.reference = ONNX_RUNTIME if onnx else KERAS
    result.keras_seconds = overlap.keras_seconds
    if layers or result.lossy or not result.passed:
        # Lossy outputs are judged loosely; isolation is what finds a wrong layer in them.
        loading = time.perf_counter()
        model = overlap.model or _at_shape(load_keras()[0], input_shape)
        loading = time.perf_counter() - loading
        _localize(result, model, fb_model, x, kernel, early=overlap.isolated)
        result.localization_seconds += loading + overlap.seconds
    _conclude(result, fail_on_ties=fail_on_ties)
    result.model_path, result.checkpoint, result.data = str(model_path), str(ckpt), source
    result.seconds = time.perf_counter() - started
    if raise_on_fail and not result.passed:
        raise CheckFailed(failure_line(result))
    return result


def quick_check(
    keras_model: Any,
    flatbuffer: bytes,
    test_data: Path | None,
    *,
    samples: int = 8,
    kernel: str = "indirect",
    reference_run: ReferenceRun | None = None,
) -> ValidationResult:
    """A few samples through both sides, for ``export``'s report; never raises.

    The same comparison as :func:`validate` (every output, lossy limits,
    localization on failure). Uses the test split if there is one, sample
    photographs for ImageNet-size models, and otherwise seeded uniform [0, 1)
    inputs (``data`` says which). ``reference_run`` computes the reference
    outputs instead of Keras (ONNX Runtime for an ONNX file). Whatever cannot
    be checked is said in ``unchecked`` (verdict ``not checked`` when nothing
    could be), so the export goes on.
    """
    started = time.perf_counter()
    result = ValidationResult("", "", "", 0, kernel, NOT_CHECKED, True)
    try:
        fb_model = ir.read(flatbuffer)
        ir.check_declared_sizes(fb_model)  # inputs are made for it below
        input_shape = _single_input_shape(fb_model)
        refused = None
        try:
            x, y, source = load_data(None, test_data, fb_model, input_shape, samples=samples)
        except UsageProblem as e:
            refused = e if test_data is not None else None
            x = np.random.default_rng(0).uniform(0, 1, (samples, *input_shape))
            x, y, source = x.astype(np.float32), None, RANDOM_INPUTS
        with InterpreterRun(flatbuffer, fb_model, x, kernel=kernel, workers=0) as run:
            model = _at_shape(keras_model, input_shape)
            reference_outputs = _reference_outputs(model, reference_run, x)
            fb_outputs = run.result()
        summary = cache.KerasSummary.of(model, weights=False)
        result = _judge(
            summary, fb_model, x, y, reference_outputs, fb_outputs,
            lossy=graph_is_lossy(fb_model), kernel=kernel,
        )  # fmt: skip
        result.data = source
        if refused is not None:  # the user's test split: say why (without validate's advice)
            result.unchecked.append(f"test split not used: {str(refused).split('; ')[0]}")
        result.reference = ONNX_RUNTIME if reference_run is not None else KERAS
        if result.lossy or not result.passed:
            _localize(result, model, fb_model, x, kernel)
        _conclude(result, fail_on_ties=False)
    except BnnConvertError as e:
        result.unchecked.append(f"parity not checked: {e}")
    result.seconds = time.perf_counter() - started
    return result


def _single_input_shape(fb_model: ir.Model) -> tuple[int, ...]:
    graph = fb_model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise FlatbufferProblem(
            f"Expected a model with one input, got {len(graph.inputs)}; validate feeds "
            "single-input models"
        )
    return tuple(graph.tensors[graph.inputs[0]].shape[1:])


def _at_shape(keras_model: Any, input_shape: tuple[int, ...]) -> Any:
    """The Keras model at the flatbuffer's static input shape (rebuilt as export does)."""
    from bnnconvert.convert import with_input_shape

    if tuple(keras_model.input_shape[1:]) == input_shape:
        return keras_model
    return with_input_shape(keras_model, input_shape)


def _reference_batches(
    model: Any, reference_run: ReferenceRun | None, x: np.ndarray
) -> Iterator[list[np.ndarray]]:
    """The reference's outputs on ``x`` in batches (Keras), or all at once (``reference_run``)."""
    if reference_run is None:
        yield from keras_batches(model, x)
        return
    out = reference_run(x)
    yield [np.asarray(o, dtype=np.float32) for o in (out if isinstance(out, list) else [out])]


def _reference_outputs(
    model: Any, reference_run: ReferenceRun | None, x: np.ndarray
) -> list[np.ndarray]:
    batches = _reference_batches(model, reference_run, x)
    return [np.concatenate(column) for column in zip(*batches, strict=True)]


def exported_as_lossy(model_path: Path) -> bool:
    """Whether the ``export.json`` beside ``model_path`` records a lossy export."""
    report_path = model_path.parent / "export.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(report, dict):
        return False
    sections = [report.get("validation"), report.get("quantization")]
    return any(isinstance(s, dict) and s.get("lossy") is True for s in sections)


def graph_is_lossy(fb_model: ir.Model) -> bool:
    """Whether the graph holds fp16 or int8 data (weights or activations)."""
    return any(
        t.dtype in ("float16", "int8", "uint8", "int16")
        for g in fb_model.subgraphs
        for t in g.tensors
    )


def _pair_outputs(
    summary: cache.KerasSummary, fb_model: ir.Model
) -> tuple[list[outputs.OutputPair], list[str]]:
    shapes = [tuple(s) for s in summary.output_shapes]
    return outputs.pair_outputs(summary.output_names, shapes, fb_model)


def _judge(
    summary: cache.KerasSummary,
    fb_model: ir.Model,
    x: np.ndarray,
    y: np.ndarray | None,
    reference_outputs: list[np.ndarray],
    fb_outputs: list[np.ndarray],
    *,
    lossy: bool,
    kernel: str,
) -> ValidationResult:
    """Compare every paired output; the verdict on outputs alone."""
    pairs, unpaired = _pair_outputs(summary, fb_model)
    if not pairs:
        raise FlatbufferProblem(
            f"Expected the flatbuffer's outputs to match the checkpoint's by name or shape; "
            f"none does ({'; '.join(unpaired)})"
        )
    reports = [
        outputs.compare_output(
            p.name, reference_outputs[p.keras_index], fb_outputs[p.flatbuffer_index], y,
            lossy=lossy,
        )
        for p in pairs
    ]  # fmt: skip
    many = len(reports) > 1
    failures = [f"{r.name}: {f}" if many else f for r in reports for f in r.failures]
    return ValidationResult(
        "", "", "", len(x), kernel, FAIL if failures else PASS, not failures, lossy=lossy,
        outputs=reports, failures=failures, notes=io_quant.io_notes(fb_model), unchecked=unpaired,
    )  # fmt: skip


@dataclass
class _Isolated:
    """One localization: the samples, what isolation found, the interpreter's tie check."""

    pick: list[int]
    found: localize.Localization
    tie_check: bool
    ties: tuple[LayerReport | None, str] = (None, "")
    seconds: float = 0.0


def _isolate(
    keras_model: Any, fb_model: ir.Model, x: np.ndarray, pick: list[int], kernel: str,
    *, tie_check: bool,
) -> _Isolated:  # fmt: skip
    """Check every layer in isolation on ``x[pick]``; then, if asked and no layer fails,
    where LCE's interpreter first departs from Keras."""
    started = time.perf_counter()
    found = localize.localize(keras_model, fb_model, x[pick])
    done = _Isolated(pick, found, tie_check)
    if tie_check and found.first_fault is None:
        same = found.samples == len(pick)  # localize keeps one sample on some graphs
        done.ties = localize.interpreter_tie_check(
            keras_model, fb_model, x[pick], KERNELS[kernel], found.keras_values if same else None
        )
    done.seconds = time.perf_counter() - started
    return done


class _Overlap:
    """While the interpreter workers run: Keras batch by batch, and localization once settled.

    Both sides' samples are compared as they come in (:class:`SamplePlan`).
    Once localization is certain and its samples are settled, the model is
    loaded (when the Keras outputs came from the cache) and the layers are
    checked in isolation before Keras goes on, so the workers overlap with
    it; with Keras done, this process interprets samples too
    (:meth:`InterpreterRun.may_run_here`) or waits for the workers.
    """

    def __init__(
        self, run: InterpreterRun, plan: SamplePlan, fb_model: ir.Model, x: np.ndarray,
        kernel: str, *, lossy: bool, model: Any,
    ) -> None:  # fmt: skip
        self.run, self.plan, self.fb_model, self.x = run, plan, fb_model, x
        self.kernel, self.lossy, self.model = kernel, lossy, model
        self.isolated: _Isolated | None = None
        self.count: int | None = None  # samples to localize on (set once the model is known)
        self.seconds = 0.0  # spent loading the model and localizing
        self.keras_seconds = 0.0  # spent running Keras (the caller adds its loading)

    def collect(
        self, load_model: Callable[[], Any], batches: Iterator[list[np.ndarray]] | None
    ) -> None:
        """Until both sides are done: localize once settled (loading the model if need be),
        else run the next Keras batch (``batches``), else interpret or wait."""
        batches = batches or iter(())
        keras_done = False
        while not (self.run.finished and keras_done):
            self._add(self.run.wait(0))
            started = time.perf_counter()
            if self.plan.needed and self.model is None:
                self.model = load_model()
            elif self.plan.needed and self.isolated is None and (pick := self._pick()):
                certain_failure = len(self.plan.mismatched) > self.plan.allowed
                self.isolated = _isolate(
                    self.model, self.fb_model, self.x, pick, self.kernel,
                    tie_check=certain_failure and not self.lossy,
                )  # fmt: skip
            elif not keras_done:
                batch = next(batches, None)
                keras_done = batch is None
                if batch is not None:
                    self.plan.add_reference(batch)
                self.keras_seconds += time.perf_counter() - started
                continue
            else:
                self._interpret_or_wait()
                continue
            self.seconds += time.perf_counter() - started

    def _pick(self) -> list[int] | None:
        if self.count is None:
            self.count = localize.localization_samples(self.model, LOCALIZATION_SAMPLES)
        return self.plan.pick(self.count)

    def _interpret_or_wait(self) -> None:
        i = self.run.run_here() if self.run.may_run_here() else None
        if i is not None:
            self._add([i])
        else:
            self._add(self.run.wait(None))

    def _add(self, arrived: list[int]) -> None:
        for i in arrived:
            self.plan.add(i, self.run.sample(i))


def _localize(
    result: ValidationResult, keras_model: Any, fb_model: ir.Model, x: np.ndarray, kernel: str,
    *, early: _Isolated | None = None,
) -> None:  # fmt: skip
    """Check every layer in isolation; on unexplained differences, look at the interpreter.

    The layers are checked on the first differing samples (the first samples when
    none differ) and, if those show no fault, on the differing sample farthest
    from Keras (:attr:`OutputReport.farthest`) too.

    ``early``: a localization already run while the interpreter ran; used if it
    chose the same samples and the same tie check as the outputs now call for.
    """
    started = time.perf_counter()
    mismatched = sorted({i for o in result.outputs for i in o.mismatched})
    count = localize.localization_samples(keras_model, LOCALIZATION_SAMPLES)
    pick = mismatched[:count] or list(range(min(count, len(x))))
    tie_check = bool(result.failures) and not result.lossy
    if early is not None and early.pick == pick and early.tie_check == tie_check:
        done = early
    else:
        done = _isolate(keras_model, fb_model, x, pick, kernel, tie_check=tie_check)
    localized = done.pick[: done.found.samples]
    # Ties in the first samples must not hide a fault that shows only later: the
    # sample farthest from Keras is checked too.
    farthest = sorted({o.farthest for o in result.outputs if o.farthest is not None})
    farthest = [i for i in farthest if i not in localized]
    if tie_check and farthest and not _finds_fault(done):
        extra = _isolate(keras_model, fb_model, x, farthest, kernel, tie_check=True)
        if _finds_fault(extra):
            done, localized = extra, []
        localized += extra.pick[: extra.found.samples]
    result.layers = done.found.layers
    result.localized_samples = localized
    result.unchecked += done.found.notes
    result.first_divergence = done.found.first_fault
    first, note = done.ties
    if first is not None and first.cause == "ties":
        result.tie_flips = first.tie_flips
        result.first_divergence = first
    elif first is not None:
        first.cause = "fault"
        result.first_divergence = first
        result.notes.append(
            f"every layer agrees with Keras in the reference executor, but LCE's "
            f"interpreter ({kernel} kernel) departs at {first.keras_layer}"
        )
    elif note:
        result.notes.append(note)
    result.localization_seconds = time.perf_counter() - started


def _finds_fault(done: _Isolated) -> bool:
    """Whether a layer fails in isolation, or LCE's interpreter departs other than at ties."""
    first = done.ties[0]
    return done.found.first_fault is not None or (first is not None and first.cause != "ties")


def _conclude(result: ValidationResult, *, fail_on_ties: bool) -> None:
    """Set the verdict from the outputs and the localization; explain it in notes."""
    first = result.first_divergence
    _decide_small_sample(result)
    if first is not None and first.cause == "ties" and result.failures:
        result.verdict = PASS_TIES
        result.passed = not fail_on_ties
        result.notes.append(
            f"outputs differ only through float rounding at ties: every layer passes in "
            f"isolation ({checked_on(result)}); LCE's interpreter first departs from Keras at "
            f"{first.compared_with} ({first.meaning}), where {first.tie_flips} of "
            f"{first.sign_count} signs flipped there, all within float rounding of zero"
        )
        return
    if first is not None and first.cause == "fault":
        result.notes.append(f"{_fault_line(first)} ({checked_on(result)})")
        if not result.failures:
            result.failures.append(
                f"layer {first.keras_layer} differs from Keras in isolation (its outputs "
                "still agree on these samples)"
            )
    elif result.failures and result.lossy:
        quantized = [r for r in result.layers if r.cause.endswith("quantization")]
        values = [r for r in result.layers if r.max_abs_error > 0]
        if quantized:
            result.notes.append(
                f"every layer is within its quantization tolerance in isolation; the "
                f"difference comes from {quantized[0].cause} ({len(quantized)} layer(s), "
                f"first {quantized[0].keras_layer})"
            )
        elif values:
            worst = max(values, key=lambda r: r.max_rel_error)
            result.notes.append(
                f"every layer agrees with Keras within float tolerance in isolation (largest "
                f"error {worst.max_rel_error:.2g} of its scale, at {worst.keras_layer}); the "
                "lossy export's small per-layer errors add up to the difference"
            )
    elif result.failures and result.layers:
        result.notes.append(
            "every checked layer agrees with Keras in isolation; the difference arises in "
            "ops that correspond to no Keras layer output"
        )
    result.verdict = FAIL if result.failures else PASS
    result.passed = not result.failures


def _decide_small_sample(result: ValidationResult) -> None:
    """Judge a lossy export's differences that too few samples cannot judge by the layers.

    Below :data:`~bnnconvert.validation.outputs.LOSSY_MIN_SAMPLES_TOP1` samples
    the 2 % top-1 allowance is no sample, so one flipped prediction would fail
    any lossy export. Differences that chance explains at the lossy limits
    (:func:`~bnnconvert.validation.outputs.consistent_count`) are left
    undecided by the outputs; when every checked layer is within its quantization
    tolerance in isolation, the differences are quantization's and the verdict
    stands on the layers (said in ``judged_by_layers``); when a layer fails or
    none could be checked, they are failures.
    """
    many = len(result.outputs) > 1
    undecided = [(r.name, u) for r in result.outputs for u in r.undecided]
    if not undecided:
        return
    first = result.first_divergence
    if not result.layers or (first is not None and first.cause == "fault"):
        result.failures += [f"{name}: {u.failure}" if many else u.failure for name, u in undecided]
        return
    quantized = [r.cause for r in result.layers if r.cause.endswith("quantization")]
    what = " and ".join(dict.fromkeys(u.what for _, u in undecided))
    counts = ", ".join(f"{name}: {u.counts}" if many else u.counts for name, u in undecided)
    needed = max(u.needed for _, u in undecided)
    result.judged_by_layers = (
        f"too few samples to judge a lossy export by {what} ({result.samples} < {needed}; "
        f"{counts}, within chance at the lossy limits): every layer is within its "
        "quantization tolerance in isolation, so the "
        f"differences come from {quantized[0] if quantized else 'quantization'}"
    )


def share_text(fraction: float) -> str:
    """A percentage that keeps one flipped sign in millions visible (not ``0.000%``)."""
    return f"{100 * fraction:.3g}%"


def checked_on(result: ValidationResult) -> str:
    """Which samples the layers were checked on, e.g. "checked on sample 3 of 64" (0-based)."""
    picked = result.localized_samples
    which = f"sample {picked[0]}" if len(picked) == 1 else f"samples {', '.join(map(str, picked))}"
    return f"checked on {which} of {result.samples}, counted from 0"


def _fault_line(first: LayerReport) -> str:
    if first.flipped_signs is not None:
        stats = (
            f": {share_text(first.flipped_signs)} of its signs flipped "
            f"({share_text(first.flipped_at_ties or 0.0)} at ties)"
        )
    else:
        stats = f": max abs error {first.max_abs_error:.3g}, cosine {first.cosine:.6f}"
    return (
        f"first divergence: Keras layer {first.keras_layer} -> {', '.join(first.ops)} "
        f"(tensor {first.tensor}){stats}; cause: {first.cause}"
    )


def failure_line(result: ValidationResult) -> str:
    """The one-line failure message of a failed check."""
    line = f"parity check failed: {'; '.join(result.failures) or result.verdict}"
    first = result.first_divergence
    if first is not None and first.cause == "fault":
        line += f"; first divergence at Keras layer {first.keras_layer} ({', '.join(first.ops)})"
    elif result.verdict == PASS_TIES:
        line += f"; differences only at ties ({result.tie_flips} sign flips), fail_on_ties= set"
    return line
