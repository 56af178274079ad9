"""Per-layer isolated checking: which layer, if any, the flatbuffer computes wrongly.

Every flatbuffer tensor that :mod:`bnnconvert.mapping` ties to a Keras layer
output (an *anchor*) is checked in isolation. The reference executor
(:mod:`bnnconvert.reference`) runs the graph once; after each op, an anchor's
computed value is compared with Keras and then *replaced* by Keras's own value
(in the tensor's meaning: the value, the signs before a folded threshold, the
bitpacked signs). So the ops between anchors, the *segment*, always start
from Keras's inputs, and a sign flipped at a tie upstream cannot make a
correct layer downstream look wrong.

Where meaning is preserved, comparisons are:

- a value (float) within ``LAYER_ATOL + LAYER_RTOL * max|keras|``;
- a threshold before a sign, and bitpacked signs, as signs: the flatbuffer's
  signs (flipped channels undone) against larq's ``sign(y)`` of the Keras
  output. A flip where ``|y|`` is within float rounding of zero
  (``TIE_RTOL * max|y|``) is a tie, not a fault;
- a segment with quantized data (int8 or fp16 weights, int8 tensors), with
  an extra :data:`QUANT_RTOL` of the output's scale (plus two steps of an
  int8 output, also one a ``DEQUANTIZE`` makes float), and sign flips within
  that band of zero counted as quantization. Errors within it are "int8
  quantization" / "fp16 quantization", not faults.

An int8 anchor is fed Keras's value unrounded: the reference executor
computes int8 ops on real values, and reads a float array in an int8 tensor
as one. Rounded to the tensor's scale first, the input's rounding would count
as the next segment's error, amplified by its op (a softmax on logits of a
wide range, a dense layer of many inputs), although it belongs to the
quantization of the anchor, judged where the anchor is computed.

The first anchor beyond its tolerance is the fault: its segment's ops, the
Keras layer that owns the segment's kernel op (or else the op computing the
anchor), the error statistics and the share of flipped signs. If the
reference executor lacks an op, the anchors after it are not checked (one
line says so); nothing else stops.

Ties in LCE's interpreter. The reference executor rounds like Keras at exact
ties more often than LCE's optimised kernels do, so a difference that comes
from a tie flipping in the interpreter does not show in isolation. When every
layer passes in isolation, :func:`interpreter_tie_check` reads the
interpreter's own values at the anchors and finds the first that departs from
Keras: if only signs at ties flipped there, the outputs differ through float
rounding at ties.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bnnconvert import _tf, io_quant, ir, reference
from bnnconvert.graph import KERNEL_OPS, GraphIndex
from bnnconvert.mapping import (
    SIGNS,
    THRESHOLD,
    UNKNOWN,
    VALUE,
    LayerMap,
    TensorRef,
    as_flatbuffer_input,
    flatbuffer_signs,
    map_layers,
)

# A float value's tolerance in isolation: LAYER_ATOL + LAYER_RTOL * max|keras|.
# Measured on 25 correct exports, 4 samples each (the bundled model in every
# export mode, the ONNX digits model, BinaryDenseNet28 at 224 px, the shared
# cases, QuickNet-, Bi-Real- and DoReFa-style models, wide float layers;
# benchmarks/layer_errors.py prints the repository's part of them):
# float32 rounding moves a layer by at most 1.7e-6 of its max|keras| (a dense
# layer of 12288 inputs whose batch norm, folded in, divides by a spread ~10x
# below the mean; 9e-7 on BinaryDenseNet28 at 224 px, <= 6e-7 on the bundled
# and shared-case models). LAYER_RTOL is 12x that; a post-activation bias off
# by 3e-4 on a QuickNet block (4.9e-5 of its range) is 2.4x beyond it.
# LAYER_ATOL only keeps a floor for an all-zero value.
LAYER_ATOL = 1e-6
LAYER_RTOL = 2e-5
# The same for LCE's interpreter run whole (interpreter_tie_check): not
# isolated, its values carry every upstream layer's rounding (measured: up to
# 7e-6 of the scale inside a model, 3.5e-5 at a softmax on logits of ~85).
INTERPRETER_RTOL = 1e-3
# A sign flip counts as a tie when the Keras value before the sign is within
# TIE_RTOL of that tensor's largest magnitude (float32 noise, not a fault).
TIE_RTOL = 1e-5
# Extra tolerance of a segment with quantized data, relative to its output's
# scale (int8 tensors also get two of their steps). Measured on the same
# exports: int8 weights with float activations (--float-weights int8) move a
# layer by at most 0.64 % of its scale; with int8 activations every layer
# stays within its two steps (bundled model, cases, QuickNet, a dense layer of
# 12288 inputs); fp16 weights by at most 0.043 %. "int8" is 2.3x the largest,
# and one int8 weight moved by 40 or 60 steps on the bundled model's int8
# export (3.0-3.3 % beyond the steps) is 2x beyond it; "fp16" is 11x.
QUANT_RTOL = {"int8": 0.015, "fp16": 0.005}
# Keras values of every anchor are held in memory; a budget for choosing how
# many samples to localize on (BinaryDenseNet28 at 224 px: ~300 MB a sample).
MEMORY_BUDGET_BYTES = 600 << 20
_INTEGER_DTYPES = ("int8", "uint8", "int16")
# Ops the reference executor runs on a quantized input's stored integers, not its
# real value: an anchor they read is fed rounded.
_READS_STORED_INTEGERS = ("CAST", "PACK", "SELECT", "SELECT_V2")


@dataclass
class LayerReport:
    """One anchor: the Keras layer computing it and how its isolated result compares.

    ``cause``: "ok", "ties" (only sign flips within float rounding of zero),
    "int8 quantization" / "fp16 quantization" (within the quantized segment's
    tolerance) or "fault".

    ``keras_layer`` owns the segment's last kernel op (conv, dense: where its
    weights are), else the op that writes ``tensor``; ``compared_with`` is
    the Keras layer whose output ``tensor`` holds, as ``meaning``; ``ops``
    the op types of the segment computed from Keras inputs.
    """

    keras_layer: str
    keras_class: str
    tensor: str
    compared_with: str
    meaning: str
    ops: list[str]
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    cosine: float = 1.0
    tolerance: float = 0.0
    flipped_signs: float | None = None
    flipped_at_ties: float | None = None
    sign_count: int = 0
    tie_flips: int = 0
    quantized: str | None = None
    cause: str = "ok"

    @property
    def within_tolerance(self) -> bool:
        return self.cause != "fault"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Localization:
    """What the isolated check found."""

    layers: list[LayerReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: int = 0
    # The Keras layer values it compared with, for interpreter_tie_check on the same samples.
    keras_values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def first_fault(self) -> LayerReport | None:
        return next((r for r in self.layers if r.cause == "fault"), None)


def localization_samples(keras_model: Any, wanted: int) -> int:
    """How many samples fit :data:`MEMORY_BUDGET_BYTES` (at least 1, at most ``wanted``)."""
    per_sample = 0
    for layer in keras_model.layers:
        shape = layer.output_shape
        if isinstance(shape, tuple):
            per_sample += 4 * int(np.prod([d or 1 for d in shape[1:]]))
    return max(1, min(wanted, MEMORY_BUDGET_BYTES // max(3 * per_sample, 1)))


def keras_layer_values(keras_model: Any, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The Keras outputs of the named layers on ``x`` (float32, batch first).

    Run eagerly, in batches of 8: on the few samples localization checks,
    tracing a graph as ``predict`` does costs more than it saves
    (BinaryDenseNet28 at 224 px, one sample: 1.3 s -> 0.25 s, bit for bit the
    same values; larger batches may differ from a traced graph in float
    rounding, which the layer tolerances and the tie band allow for).
    """
    keras = _tf.keras()
    probe = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in names])
    parts = []
    for i in range(0, len(x), 8):
        out = probe(x[i : i + 8], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        parts.append([np.asarray(o, dtype=np.float32) for o in out])
    columns = zip(*parts, strict=True)
    return {n: np.concatenate(c) for n, c in zip(names, columns, strict=True)}


class _Segments:
    """For each op: the ops computed since the nearest anchors upstream (its segment)."""

    def __init__(self, fb_model: ir.Model, anchors: set[int]) -> None:
        self.index = GraphIndex(fb_model)
        self.graph = self.index.graph
        self.anchors = anchors

    def ops(self, op: int) -> list[int]:
        seen, stack = {op}, [op]
        while stack:
            for t in self.graph.operators[stack.pop()].inputs:
                if t < 0 or t in self.anchors:
                    continue
                p = self.index.producer(t)
                if p is not None and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return sorted(seen)

    def quantized(self, ops: list[int]) -> str | None:
        """ "int8" or "fp16" if the segment reads or writes quantized data, else None."""
        kinds = set()
        for i in ops:
            op = self.graph.operators[i]
            for t in [*op.inputs, *op.outputs]:
                dtype = self.graph.tensors[t].dtype if t >= 0 else ""
                if dtype in _INTEGER_DTYPES:
                    kinds.add("int8")
                elif dtype == "float16":
                    kinds.add("fp16")
        return "int8" if "int8" in kinds else ("fp16" if kinds else None)


def _flips(signs: np.ndarray, keras_value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flipped signs (vs larq's ``sign(y)``, +1 at 0) and ``|y|`` at each, flattened."""
    expected = np.where(keras_value < 0, -1.0, 1.0)
    flips = signs.reshape(expected.shape) != expected
    return flips.reshape(-1), np.abs(keras_value).reshape(-1)


class _Checker:
    """The substitute hook of one isolated run: compare each anchor, then feed Keras's value."""

    def __init__(
        self,
        lm: LayerMap,
        fb_model: ir.Model,
        keras_values: dict[str, np.ndarray],
        rtol: float = LAYER_RTOL,
    ) -> None:
        self.lm, self.graph, self.rtol = lm, fb_model.subgraphs[0], rtol
        self.keras_values = keras_values
        anchors = {
            t: ref
            for t in range(len(self.graph.tensors))
            if (ref := lm.tensor(t)) is not None
            and ref.meaning != UNKNOWN
            and ref.layer in keras_values
            and t not in self.graph.inputs
        }
        self.anchors = anchors
        self.segments = _Segments(fb_model, set(anchors) | set(self.graph.inputs))
        self.reports: list[LayerReport] = []

    def __call__(self, position: int, outputs: list[np.ndarray]) -> list[np.ndarray]:
        op = self.graph.operators[position]
        replaced = []
        for t, value in zip(op.outputs, outputs, strict=True):
            ref = self.anchors.get(t)
            if ref is None:
                replaced.append(value)
                continue
            keras_value = self.keras_values[ref.layer]
            self.reports.append(self.compare(position, ref, value, keras_value))
            replaced.append(self._keras_as_tensor(ref, keras_value, value))
        return replaced

    def _keras_as_tensor(self, ref: TensorRef, keras_value: np.ndarray, ours: np.ndarray):
        tensor = self.graph.tensors[ref.tensor]
        # Same elements, maybe another layout (a dense layer run as a 1x1 conv: N,1,1,C).
        fed = as_flatbuffer_input(ref, keras_value).reshape(ours.shape)
        if ref.meaning == VALUE and tensor.dtype in _INTEGER_DTYPES:
            readers = self.segments.index.consumers(ref.tensor)
            if any(self.graph.operators[r].opcode in _READS_STORED_INTEGERS for r in readers):
                return reference.quantize(fed, tensor)
            return fed  # the real value, unrounded (see the module docstring)
        return fed.astype(ours.dtype, copy=False)

    def _int8_holding(self, t: int) -> ir.Tensor | None:
        """The int8 tensor whose steps tensor ``t``'s value has: itself, or a DEQUANTIZE's input."""
        tensor = self.graph.tensors[t]
        if tensor.dtype in _INTEGER_DTYPES:
            return tensor
        producer = self.segments.index.producer(t)
        if producer is not None and self.graph.operators[producer].opcode == "DEQUANTIZE":
            source = self.graph.tensors[self.graph.operators[producer].inputs[0]]
            return source if source.dtype in _INTEGER_DTYPES else None
        return None

    def compare(
        self, position: int, ref: TensorRef, ours: np.ndarray, keras_value: np.ndarray
    ) -> LayerReport:
        segment = self.segments.ops(position)
        kernels = [i for i in segment if self.graph.operators[i].opcode in KERNEL_OPS]
        owner = self.lm.owner.get(kernels[-1] if kernels else position) or ref.layer
        quantized = self.segments.quantized(segment)
        layer = self.lm.keras.layers.get(owner)
        report = LayerReport(
            keras_layer=owner,
            keras_class=type(layer).__name__ if layer is not None else "",
            tensor=ref.name,
            compared_with=ref.layer,
            meaning=ref.meaning,
            ops=[self.graph.operators[i].opcode for i in segment],
            quantized=quantized,
        )
        scale = float(np.abs(keras_value).max()) if keras_value.size else 0.0
        extra = QUANT_RTOL[quantized] * scale if quantized else 0.0
        if ref.meaning == VALUE:
            self._compare_values(report, ref, ours, keras_value, scale, extra)
        else:
            signs = flatbuffer_signs(ref, ours, int(keras_value.shape[-1]))
            flips, magnitude = _flips(signs, keras_value)
            band = TIE_RTOL * max(scale, 1e-30)
            ties = int((flips & (magnitude <= band)).sum())
            beyond = int((flips & (magnitude > band + extra)).sum())
            report.sign_count, report.tie_flips = flips.size, ties
            report.flipped_signs = float(flips.mean()) if flips.size else 0.0
            report.flipped_at_ties = ties / max(flips.size, 1)
            if beyond:
                report.cause = "fault"
            elif flips.sum() > ties:
                report.cause = f"{quantized} quantization"
            elif ties:
                report.cause = "ties"
        return report

    def _compare_values(
        self,
        report: LayerReport,
        ref: TensorRef,
        ours: np.ndarray,
        keras_value: np.ndarray,
        scale: float,
        extra: float,
    ) -> None:
        tensor = self.graph.tensors[ref.tensor]
        real = ours
        stepped = self._int8_holding(ref.tensor)
        if stepped is not None and stepped.quantization is not None:
            quant = io_quant.tensor_quantization(stepped)
            if quant is not None:
                if stepped is tensor:
                    real = (quant.scale * (ours.astype(np.float64) - quant.zero_point)).astype(
                        np.float32
                    )
                extra += 2 * quant.scale
                # An int8 tensor saturates at its calibrated range: that is quantization.
                info = np.iinfo(stepped.dtype)
                keras_value = np.clip(
                    keras_value,
                    quant.scale * (info.min - quant.zero_point),
                    quant.scale * (info.max - quant.zero_point),
                )
        a = keras_value.reshape(len(keras_value), -1).astype(np.float64)
        b = real.reshape(len(real), -1).astype(np.float64)
        finite = bool(np.all(np.isfinite(b)))
        diff = np.abs(a - b) if finite else np.full_like(a, np.inf)
        report.max_abs_error = float(diff.max()) if diff.size else 0.0
        report.max_rel_error = report.max_abs_error / max(scale, 1e-12)
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        report.cosine = float((a * b).sum() / norms) if finite and norms > 0 else float(finite)
        report.tolerance = LAYER_ATOL + self.rtol * scale
        if report.max_abs_error > report.tolerance + extra:
            report.cause = "fault"
        elif report.max_abs_error > report.tolerance:
            report.cause = f"{report.quantized} quantization"
        report.tolerance += extra


def _batch_leads(fb_model: ir.Model) -> bool:
    """Whether every computed tensor keeps the batch axis first (size 1 in the model).

    Not so where a layer folds the batch into other axes (LayerNormalization
    reduces over ``N, H, W`` reshaped together); those graphs are replayed on
    one sample.
    """
    graph = fb_model.subgraphs[0]
    return all(
        graph.tensors[t].shape[:1] in ([], [1]) for op in graph.operators for t in op.outputs
    )


def localize(keras_model: Any, fb_model: ir.Model, x: np.ndarray) -> Localization:
    """Check every mapped layer of the flatbuffer in isolation on ``x`` (float inputs).

    Arguments:
        keras_model: the checkpoint's Keras model, at the flatbuffer's input shape.
        fb_model: the flatbuffer's graph.
        x: a few float32 inputs ``(n, *input_shape)`` (only the first is used when
            the graph moves the batch axis).

    Returns:
        A :class:`Localization`: one :class:`LayerReport` per anchor, in graph order.
    """
    if not _batch_leads(fb_model):
        x = x[:1]  # the reference executor runs a batch only where the batch axis leads
    result = Localization(samples=len(x))
    lm = map_layers(keras_model, fb_model)
    needed = sorted(
        {
            ref.layer
            for t in range(len(fb_model.subgraphs[0].tensors))
            if (ref := lm.tensor(t)) is not None and ref.meaning != UNKNOWN
        }
        & {n for n in lm.keras.layers if isinstance(lm.keras.layers[n].output_shape, tuple)}
    )
    if not needed:
        result.notes.append(
            "no flatbuffer tensor could be tied to a Keras layer; nothing localized"
        )
        return result
    keras_values = keras_layer_values(keras_model, needed, x)
    result.keras_values = keras_values
    checker = _Checker(lm, fb_model, keras_values)
    missing = reference.first_unsupported(fb_model)
    until = None
    if missing is not None:
        until, opcode = missing
        result.notes.append(
            f"layers from operator {until} ({opcode}) on are not checked: the reference "
            "executor does not implement it"
        )
    reference.run(fb_model, [io_quant.quantize_inputs(fb_model, x)], until=until,
                  substitute=checker)  # fmt: skip
    result.layers = checker.reports
    return result


def interpreter_tie_check(
    keras_model: Any,
    fb_model: ir.Model,
    x: np.ndarray,
    kernel_options: dict[str, bool],
    keras_values: dict[str, np.ndarray] | None = None,
) -> tuple[LayerReport | None, str]:
    """Where LCE's interpreter first departs from Keras, as compared at the anchors.

    Not isolated: the interpreter runs the whole graph. Only its first
    departure means something: upstream of it everything agreed.
    ``keras_values``: Keras layer values already computed on ``x`` (those of
    :func:`localize`); only the layers missing from them are run.

    Returns:
        (the first departing anchor's report or None, a one-line description).
    """
    lm = map_layers(keras_model, fb_model)
    graph = fb_model.subgraphs[0]
    anchors = [
        t
        for op in graph.operators
        for t in op.outputs
        if (ref := lm.tensor(t)) is not None and ref.meaning in (VALUE, THRESHOLD, SIGNS)
        and isinstance(lm.keras.layers[ref.layer].output_shape, tuple)
    ]  # fmt: skip
    if not anchors:
        return None, "no flatbuffer tensor could be tied to a Keras layer"
    anchors = list(dict.fromkeys(anchors))
    cut = ir.write(reference.with_outputs(fb_model, anchors))
    interpreter = _tf.lce_interpreter(cut, **kernel_options)
    fed = io_quant.quantize_inputs(fb_model, x)
    outs = interpreter.predict(fed)
    outs = outs if isinstance(outs, list) else [outs]
    known = keras_values or {}
    names = {lm.tensor(t).layer for t in anchors} - known.keys()  # type: ignore[union-attr]
    keras_values = {**known, **(keras_layer_values(keras_model, sorted(names), x) if names else {})}
    checker = _Checker(lm, fb_model, keras_values, rtol=INTERPRETER_RTOL)
    position = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    for t, value in zip(anchors, outs, strict=True):
        ref = checker.anchors.get(t)
        if ref is None:
            continue
        report = checker.compare(position[t], ref, np.asarray(value), keras_values[ref.layer])
        if report.cause != "ok":
            return report, ""
    return None, "LCE's interpreter agrees with Keras at every mapped layer"
