"""``export``: checkpoint -> LCE flatbuffer + report, written atomically.

Example:
    >>> from bnnconvert.export import export
    >>> result = export("models/digits", target="arm64", output_dir="out/digits")
    >>> result.model_path
    PosixPath('out/digits/model.tflite')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from bnnconvert import (
    __version__,
    _tf,
    audit,
    checkpoint,
    convert,
    export_report,
    io_quant,
    ir,
    metadata,
    passes,
    targets,
)
from bnnconvert import rewrites as keras_rewrites
from bnnconvert.atomic import check_writable_dir, describe_os_error, write_files
from bnnconvert.checkpoint_files import side_file
from bnnconvert.errors import OutputProblem, UsageProblem, check_path
from bnnconvert.json_report import report_json
from bnnconvert.passes import fold_sign_scale
from bnnconvert.passes.int8_activations import own_fake_quant
from bnnconvert.preprocessing import PreprocessingSpec, parse_preprocessing
from bnnconvert.reports import export_markdown
from bnnconvert.validation.cache import weights_digest

MODEL_NAME = "model.tflite"
PREPROCESSING_FILE = "preprocessing.txt"
REPORT_NAME = "export.json"
# Every file an export writes (or removes) in its output directory.
_OUTPUT_NAMES = (
    MODEL_NAME,
    export_report.REJECTED_MODEL_NAME,
    REPORT_NAME,
    export_report.MARKDOWN_NAME,
)
_VERSIONED = ("tensorflow", "tf-keras", "larq", "larq-compute-engine", "flatbuffers", "numpy")

Step = Callable[[str], None]


@dataclass(repr=False)
class ExportResult:
    """What ``export`` wrote and measured; ``to_dict()`` is ``export.json``.

    ``audit`` is the conversion audit of the written graph, ``passes`` the
    statistics of each graph pass in the order they ran, ``parity`` the quick
    parity check (None when skipped), ``strict_passed`` the ``--strict``
    verdict (None when not asked for).
    """

    model_path: Path
    report_path: Path
    target: targets.Target
    checkpoint: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    op_counts: dict[str, int]
    model_bytes: int
    sha256: str
    conversion_seconds: float
    total_seconds: float
    audit: audit.AuditResult
    passes: list[passes.PassStats] = field(default_factory=list)
    lce_model_bytes: int = 0
    optimized_model_bytes: int = 0
    parity: Any = None  # bnnconvert.validate.ValidationResult (imported lazily)
    lossy: bool = False
    strict_passed: bool | None = None
    embedded_metadata: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None  # io_quant.quantization_record
    step_seconds: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        parity = "skipped" if self.parity is None else self.parity_dict()["verdict"]
        return (
            f"ExportResult({str(self.model_path)!r}, target={self.target.name!r}, "
            f"{self.model_bytes / 1024:.1f} KiB, parity={parity})"
        )

    def parity_dict(self) -> dict[str, Any]:
        """The parity check as recorded under ``validation`` in ``export.json``."""
        if self.parity is None:
            return {}
        data = self.parity.to_dict()
        data.setdefault("verdict", "passed" if data.get("passed") else "failed")
        # Lossy weights/activations move outputs beyond float tolerance by design;
        # for them, top-1 agreement is the figure that matters.
        data["lossy"] = self.lossy
        return data

    def to_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "bnnconvert_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": str(self.model_path),
            "target": self.target.to_dict(),
            "checkpoint": self.checkpoint,
            "signature": {"inputs": self.inputs, "outputs": self.outputs},
            "op_counts": self.op_counts,
            "sizes": {"model_bytes": self.model_bytes},
            "sha256": self.sha256,
            "timings": {
                "conversion_seconds": round(self.conversion_seconds, 3),
                "total_seconds": round(self.total_seconds, 3),
                "steps": {name: round(sec, 3) for name, sec in self.step_seconds.items()},
            },
            "versions": self.versions,
            "audit": self.audit.to_dict(),
            "passes": [s.to_dict() for s in self.passes],
            "optimization": {
                "lce_model_bytes": self.lce_model_bytes,
                "optimized_model_bytes": self.optimized_model_bytes,
            },
        }
        if self.parity is not None:
            report["validation"] = self.parity_dict()
        if self.strict_passed is not None:
            report["strict"] = {"passed": self.strict_passed}
        if self.quantization is not None:
            report["quantization"] = self.quantization
        return report


class StepClock:
    """Announce each slow step through ``step`` and time it.

    A step lasts until the next one starts (or :meth:`stop`); its time is
    recorded under the first word of its description, lower-cased
    ("Converting with LCE" -> ``converting``).
    """

    def __init__(self, step: Step | None) -> None:
        self._step = step
        self._name: str | None = None
        self._started = 0.0
        self.seconds: dict[str, float] = {}

    def __call__(self, text: str) -> None:
        self._close()
        self._name = text.split()[0].lower()
        self._started = time.perf_counter()
        if self._step is not None:
            self._step(text)

    def _close(self) -> None:
        if self._name is not None:
            elapsed = time.perf_counter() - self._started
            self.seconds[self._name] = self.seconds.get(self._name, 0.0) + elapsed
            self._name = None

    def stop(self) -> dict[str, float]:
        """End the current step; return seconds per step name."""
        self._close()
        return dict(self.seconds)


def tool_versions() -> dict[str, str]:
    """Versions of the stack, for reports."""
    versions = {"bnnconvert": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


_GENERIC_STEMS = frozenset({"model", "checkpoint", "weights", "saved_model", "best", "last"})


def default_output_dir(ckpt: Path, target_name: str) -> Path:
    """``exports/<model name>-<target>`` in the working directory.

    The model name is the checkpoint's file stem, or its folder's name when the
    stem says nothing about the model (``models/digits/model.keras`` -> ``digits``).
    """
    resolved = ckpt.resolve()
    if resolved.is_dir():
        stem = resolved.name
    elif resolved.stem.lower() in _GENERIC_STEMS and resolved.parent.name:
        stem = resolved.parent.name
    else:
        stem = resolved.stem
    return Path("exports") / f"{stem}-{target_name}"


def _signature(model: ir.Model, which: str) -> list[dict[str, Any]]:
    graph = model.subgraphs[0]
    indices = graph.inputs if which == "inputs" else graph.outputs
    return [
        {
            "name": graph.tensors[i].name,
            "shape": list(graph.tensors[i].shape),
            "dtype": graph.tensors[i].dtype,
            "quantization": _edge_quantization(graph.tensors[i]),
        }
        for i in indices
    ]


def _edge_quantization(tensor: ir.Tensor) -> dict[str, Any] | None:
    """``{"scale", "zero_point"}`` of an int8 graph input/output, as in the metadata; None."""
    quant = io_quant.tensor_quantization(tensor)
    return None if quant is None else {"scale": quant.scale, "zero_point": quant.zero_point}


def op_histogram(model: ir.Model) -> dict[str, int]:
    """Operator type -> count over all subgraphs, most frequent first."""
    counts = Counter(op.opcode for graph in model.subgraphs for op in graph.operators)
    return dict(counts.most_common())


def export(
    ckpt: str | Path,
    *,
    target: str = "arm64",
    output_dir: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
    progress: Step | None = None,
    step: Step | None = None,
    strict: bool = False,
    optimize: passes.OptimizeOptions | bool | None = None,
    float_weights: str | None = None,
    int8_activations: bool | None = None,
    calibration: str | Path | None = None,
    rewrite: bool = True,
    labels: str | Path | None = None,
    preprocessing: str | None = None,
    validate: bool = True,
    validate_samples: int = 8,
    input_type: str = "float32",
    output_type: str = "float32",
    trust_checkpoint: bool = False,
    custom_objects: str | Path | None = None,
) -> ExportResult:
    """Convert the checkpoint at ``ckpt`` and write ``model.tflite`` + ``export.json``.

    Arguments:
        ckpt: any checkpoint form :func:`bnnconvert.checkpoint.load` accepts.
        target: one of :data:`bnnconvert.targets.TARGETS`.
        output_dir: where to write; default ``exports/<name>-<target>``.
        input_shape: ``(H, W, C)`` to convert for (rebuilds the model if needed).
        arch: architecture for weights-only checkpoints.
        num_classes: classes for ``arch`` (default: from the weights).
        progress: called with a short description as each slow step starts
            (``step`` is its older name, kept for existing callers).
        strict: fail if a layer marked binary did not become a binary op; the
            reports are still written and the model as ``model.rejected.tflite``.
        optimize: graph passes to run (default or True: the exact ones, see
            :mod:`bnnconvert.passes`; False: none, ``--no-optimize``); export.json
            lists each under ``passes``.
        float_weights, int8_activations, calibration: set these fields of
            ``optimize`` (``--float-weights`` etc.): ``"fp32"``, ``"fp16"`` or
            ``"int8"`` float-weight storage; int8 float layers calibrated on the
            ``.npz`` ``calibration`` (default: the test split beside ``ckpt``).
        rewrite: rebuild each binary ``QuantDense`` as a 1x1 ``QuantConv2D`` before
            conversion (exact, :mod:`bnnconvert.rewrites`); False is ``--no-rewrite``.
        labels: label file (one per line) to embed; default ``labels.txt``
            beside the checkpoint, if there is one.
        preprocessing: preprocessing spec or preset to embed (see
            :func:`bnnconvert.preprocessing.parse_preprocessing`); default the
            contents of ``preprocessing.txt`` beside the checkpoint, if any.
        validate: run the quick parity check recorded under ``validation``
            (:func:`bnnconvert.validate.quick_check`); False is ``--no-validate``.
        validate_samples: inputs for that check; 0 skips it too.
        input_type, output_type: ``"float32"`` or ``"int8"`` graph input/output
            (LCE's ``inference_input_type``/``inference_output_type``); int8
            needs ``int8_activations`` or the model's own fake-quant.
        trust_checkpoint: load through Keras's own unsafe loader, so the
            checkpoint's code may run (:func:`bnnconvert.checkpoint.load`); never a default.
        custom_objects: a Python file of classes/functions to register (only
            with ``trust_checkpoint``).

    Returns:
        An :class:`ExportResult`; its files are complete on disk.

    Raises:
        BnnConvertError: a one-line problem (bad checkpoint, conversion, output).
        CheckFailed: ``strict`` and a layer marked binary stayed float; its ``result``
            is the :class:`ExportResult` (reports written, the model as
            ``model.rejected.tflite``).
    """
    started = time.perf_counter()
    say = StepClock(progress or step)
    preset = targets.target(target)
    input_shape = convert.check_input_shape(input_shape) if input_shape is not None else None
    overrides = {
        "float_weights": float_weights,
        "int8_activations": int8_activations,
        "calibration": Path(calibration) if calibration is not None else None,
    }
    if not isinstance(optimize, (passes.OptimizeOptions, bool, type(None))):
        raise UsageProblem(
            "Expected optimize= as True, False (--no-optimize) or a "
            f"bnnconvert.passes.OptimizeOptions, got {optimize!r}"
        )
    options = replace(  # checked here, before the slow steps
        optimize if isinstance(optimize, passes.OptimizeOptions) else passes.OptimizeOptions(),
        **{name: value for name, value in overrides.items() if value is not None},
    )
    if optimize is False:
        options = options.with_raw_output()
    check_path("ckpt", ckpt)
    ckpt = Path(ckpt)
    out = Path(output_dir) if output_dir is not None else default_output_dir(ckpt, preset.name)

    # Arguments and the output location are checked before the slow steps.
    app = _app_metadata(ckpt, labels, preprocessing)
    convert.check_io_types(input_type, output_type)
    check_writable_dir(out, _OUTPUT_NAMES)

    say("Loading checkpoint")
    loaded = checkpoint.load(
        ckpt,
        arch=arch,
        input_shape=input_shape,
        num_classes=num_classes,
        trust=trust_checkpoint,
        custom_objects=custom_objects,
    )
    keras_model = convert.with_input_shape(loaded.model, input_shape)
    pass_stats: list[passes.PassStats] = []
    to_convert, rewrites = (
        keras_rewrites.rewrite_for_lce(keras_model) if rewrite else (keras_model, [])
    )
    if rewrites:
        pass_stats.append(keras_rewrites.rewrite_stats(rewrites))
    before_int8 = to_convert
    own_quant = own_fake_quant(keras_model)
    convert.check_io_types(
        input_type, output_type, int8_model=options.int8_activations or bool(own_quant)
    )
    if options.int8_activations:
        say("Calibrating int8 ranges for the float layers")
        to_convert, calibrated = passes.int8_float_layers(
            to_convert,
            options,
            loaded.test_data,
            int8_input=input_type == "int8",
            int8_output=output_type == "int8",
        )
        pass_stats.append(calibrated)

    say(f"Converting with LCE ({preset.lce_target} back end)")
    with _tf.quiet_native():
        flatbuffer, conversion_seconds = convert.convert(
            to_convert, preset, input_type=input_type, output_type=output_type
        )
    say("Optimizing the graph")
    lce_bytes = len(flatbuffer)
    flatbuffer, optimized = passes.optimize(flatbuffer, options)
    pass_stats += optimized
    flatbuffer = keras_rewrites.record(flatbuffer, rewrites)
    optimized_bytes = len(flatbuffer)
    graph = ir.read(flatbuffer)
    # The audit describes the graph we write, so its op numbers match model.tflite.
    say("Auditing the conversion")
    report = audit.audit(keras_model, graph, back_end=preset.lce_target)
    report.diagnostics += loaded.findings  # what the ONNX import found, by ONNX node
    for stats in optimized:
        if stats.name == fold_sign_scale.NAME:
            report.record_folding(stats.rewrites, sum(stats.skipped.values()))
    failure = export_report.strict_failure(report, out) if strict else None

    say("Writing")
    weights = weights_digest(loaded.model)  # what validate compares its checkpoint with
    flatbuffer = _with_metadata(flatbuffer, keras_model.name, weights, preset, app)
    digest = hashlib.sha256(flatbuffer).hexdigest()
    result = ExportResult(
        model_path=out / MODEL_NAME,
        report_path=out / REPORT_NAME,
        target=preset,
        checkpoint=loaded.describe(),
        inputs=_signature(graph, "inputs"),
        outputs=_signature(graph, "outputs"),
        op_counts=op_histogram(graph),
        model_bytes=len(flatbuffer),
        sha256=digest,
        conversion_seconds=conversion_seconds,
        total_seconds=0.0,
        audit=report,
        passes=pass_stats,
        lce_model_bytes=lce_bytes,
        optimized_model_bytes=optimized_bytes,
        lossy=options.lossy or bool(own_quant),
        quantization=io_quant.quantization_record(
            graph, calibrated=to_convert is not before_int8, own_fake_quant=own_quant
        ),
        embedded_metadata=metadata.read_metadata(flatbuffer),
        versions=tool_versions(),
    )
    if validate and validate_samples > 0:
        say("Checking parity with the Keras model")
        from bnnconvert.validate import quick_check

        result.parity = quick_check(
            keras_model,
            flatbuffer,
            loaded.test_data,
            samples=validate_samples,
            reference_run=loaded.reference_run,
        )
    if strict:
        result.strict_passed = failure is None
    if failure is not None:
        result.model_path = out / export_report.REJECTED_MODEL_NAME
    result.total_seconds = time.perf_counter() - started
    result.step_seconds = say.stop()
    _write_outputs(out, flatbuffer, result)
    if failure is not None:
        failure.result = result  # the reports were written: callers can still use it
        raise failure
    return result


@dataclass
class _AppMetadata:
    """Labels and preprocessing to embed, read and checked before any slow work."""

    labels: list[str] | None
    preprocessing: PreprocessingSpec | None


def _app_metadata(ckpt: Path, labels: str | Path | None, preprocessing: str | None) -> _AppMetadata:
    """Read ``--labels`` / ``--preprocessing`` (default: the files beside ``ckpt``).

    Raises:
        UsageProblem: a missing or malformed label file, an unknown preset or key.
    """
    labels_path = Path(labels) if labels is not None else side_file(ckpt, metadata.LABEL_FILE)
    if preprocessing is None and (spec_file := side_file(ckpt, PREPROCESSING_FILE)):
        preprocessing = spec_file.read_text().strip()
    return _AppMetadata(
        labels=metadata.load_labels(labels_path) if labels_path else None,
        preprocessing=parse_preprocessing(preprocessing) if preprocessing else None,
    )


def _with_metadata(
    flatbuffer: bytes, name: str, weights: str | None, preset: targets.Target, app: _AppMetadata
) -> bytes:
    """Embed the app-facing metadata (last step: later IR rewrites drop the label zip)."""
    return metadata.embed_metadata(
        flatbuffer,
        name=name,
        target=preset.name,
        labels=app.labels,
        preprocessing=app.preprocessing,
        weights_sha256=weights,
    )


def _write_outputs(out: Path, flatbuffer: bytes, result: ExportResult) -> None:
    """The model and its reports, all written in full before any replaces an old file.

    Exactly one of ``model.tflite`` / ``model.rejected.tflite`` is left, so the
    directory never pairs a report with a model from an earlier run (nor, when a
    write fails, a new model with the old reports).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        model_names = (MODEL_NAME, export_report.REJECTED_MODEL_NAME)
        for name in _OUTPUT_NAMES:
            for stale in out.glob(f".{name}.*.tmp"):  # left by a killed export
                stale.unlink()
        report = report_json(result.to_dict()) + "\n"
        write_files({
            result.model_path: flatbuffer,
            result.report_path: report.encode(),
            out / export_report.MARKDOWN_NAME: export_markdown.render(result).encode(),
        })  # fmt: skip
        for other in model_names:
            if out / other != result.model_path:
                (out / other).unlink(missing_ok=True)
    except OSError as e:
        raise OutputProblem(f"could not write to {out}: {describe_os_error(e)}") from e
