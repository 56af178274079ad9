"""Export audit: which ops each Keras layer became, and why a binary layer stayed float.

LCE's converter never says when a layer it could not binarize stays a float
op. The audit compares the Keras model with the flatbuffer the converter
produced and explains:

- for every Keras layer, the ops it became, and whether that mapping was read
  from tensor names (certain) or inferred from graph structure (stated as such);
- for every larq quantized layer, whether it became ``LceBconv2d`` and, if not,
  each reason found and its fix;
- for every batch norm, whether it was fused and into what;
- which non-binary layers (float, int8 or int16, by :data:`bnnconvert.macs.KINDS`)
  dominate the multiply-accumulates.

How the mapping works: :mod:`bnnconvert.mapping` (by tensor names and graph
structure, never by output position), which also reads what bnnconvert's
passes recorded in the model. MACs come from :mod:`bnnconvert.macs`, by kind
(the same counts ``inspect`` gives), and are counted once, for the op's owning layer.

What LCE 0.16 was seen to do (tests/test_audit.py converts one model per case):
a ``QuantDense`` becomes ``LceQuantize -> LceDequantize -> FULLY_CONNECTED``; a
conv without input quantizer a plain ``CONV_2D``; a non-sign input quantizer
(DoReFa, SteHeaviside) stays float ops before a ``CONV_2D``; a kernel that is not
``±alpha`` per output channel after its quantizer (none, SteTern, DoReFa with
``k_bit > 1``) ``LceQuantize -> LceDequantize -> CONV_2D``, whereas
MagnitudeAwareSign and 1-bit DoReFa kernels do become ``LceBconv2d`` (the scale
moves into the multiplier); a grouped conv with a channel count per group that
is not a multiple of 32 stays ``CONV_2D`` (the converter prints an error but
still succeeds); ``QuantConv1D``, ``QuantDepthwiseConv2D`` and
``QuantConv2DTranspose`` stay float ops (their input sign may be computed by
the previous bconv's bitpacked output, which is not their fault).

When the audit cannot see the Keras layers (no Larq layer at the top level,
and the ops are computed by one nested/revived model or ``Lambda``: a
subclassed SavedModel or a signature-only SavedModel loaded with
``--trust-checkpoint``), it says so (``opaque``) and counts the ops instead
(``ops_with_macs``); it then judges the ops (``op_level_errors``, what
``--strict`` holds such a model to): a float kernel op after ``LceDequantize``,
or no binary op at all.

On LCE's ``xcore`` back end every binary conv stays ``LceQuantize ->
LceDequantize -> CONV_2D`` by design (for XMOS's own tools to lower): the
audit gives that reason (``xcore-back-end``) first for every layer marked
binary, and any reason the layer would not be binary on ARM after it.

A ``ZeroPadding2D`` that LCE 0.16 merges into a strided VALID conv as SAME
padding that pads differently (wrong outputs) is an error finding on the
conv (:mod:`bnnconvert.audit_padding`).

What is not an error: a first layer that reads the network input with only a
kernel quantizer (Larq's recommended practice: an info note, not "marked
binary"); a ``QuantDense`` that :mod:`bnnconvert.rewrites` turned into a 1x1
conv (an info note). A Larq layer is recognised by its class even when Keras
revived it from a SavedModel without its quantizers (``quantizers_lost``).

Example:
    >>> report = audit(keras_model, flatbuffer)
    >>> [q.name for q in report.quantized if q.marked_binary and not q.binary]
    ['dense_head']
    >>> from bnnconvert.reports.audit_markdown import render
    >>> print(render(report))
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bnnconvert import audit_padding, ir
from bnnconvert import macs as mac_count
from bnnconvert.graph import (
    AFFINE_OPS,
    BINARY_CONV,
    DEQUANTIZE,
    FLOAT_KERNEL_OPS,
    KERNEL_OPS,
    QUANTIZE,
)
from bnnconvert.mapping import SIGNS, THRESHOLD, LayerMap, class_name, is_quantized, map_layers

_SIGN_QUANTIZERS = "ste_sign, approx_sign or swish_sign"
_SIGN_QUANTIZER_NAMES = frozenset(
    {"ste_sign", "approx_sign", "swish_sign", "SteSign", "ApproxSign", "SwishSign"}
)
_FOLD_PASS = "fold_sign_scale"
OP_LEVEL_CODES = ("float-op-after-signs", "no-binary-op")
"""Findings on the ops of a model whose Keras layers the audit cannot see."""
_TOP_NON_BINARY_LAYERS = 3


@dataclass
class Diagnostic:
    """One finding. ``severity`` is "error" (a layer marked binary stayed float, or wrong
    outputs) or "info".

    ``message`` and ``fix`` do not repeat the layer name, so equal findings
    on many layers can be grouped.
    """

    code: str
    severity: str
    layer: str
    message: str
    fix: str = ""


@dataclass
class LayerMapping:
    """The ops one Keras layer became. ``mapped_by``: "name", "structure" or "none"."""

    name: str
    class_name: str
    ops: list[int]
    op_types: list[str]
    mapped_by: str
    note: str = ""
    macs: dict[str, int] = field(default_factory=dict)  # kind (macs.KINDS) -> MACs, non-zero only


@dataclass
class QuantizedLayer:
    """A larq quantized layer and what it became."""

    name: str
    class_name: str
    input_quantizer: str | None
    kernel_quantizer: str | None
    marked_binary: bool  # it has at least one quantizer
    binary: bool  # it became LceBconv2d
    became: list[str]  # compute op types (or every op type if it has no compute op)
    quantizers_lost: bool = False  # a Larq class revived by Keras without its quantizers


@dataclass
class BatchNormOutcome:
    """What became of one BatchNormalization.

    ``outcome``: "fused-into-bconv", "folded-into-conv", "folded-into-threshold"
    (bnnconvert's fold pass made it one threshold ``ADD`` before the sign),
    "before-sign" (float ``MUL``/``ADD`` left in front of an ``LceQuantize``),
    "float-ops" or "not-found".
    """

    name: str
    outcome: str
    detail: str
    ops: list[int] = field(default_factory=list)


@dataclass
class MacShare:
    """A layer's non-binary MACs of one kind (``float``, ``int8`` or ``int16``)."""

    layer: str
    kind: str
    op_types: list[str]
    macs: int
    share: float  # of all counted MACs, of every kind


@dataclass
class AuditResult(mac_count.MacsByKind):
    """The audit of one conversion; ``to_dict()`` for JSON.

    For people: :func:`bnnconvert.reports.audit_markdown.render` (this module does not
    import its renderer).
    """

    model_name: str
    ops: int
    macs: dict[str, int]  # by kind, every kind of macs.KINDS present (as inspect counts them)
    layers: list[LayerMapping]
    quantized: list[QuantizedLayer]
    batch_norms: list[BatchNormOutcome]
    non_binary_mac_leaders: list[MacShare]
    diagnostics: list[Diagnostic]
    unmapped_ops: list[dict[str, Any]] = field(default_factory=list)
    rewrites: list[dict[str, Any]] = field(default_factory=list)  # done before conversion
    # Why the audit cannot see the Keras layers ("" when it can), e.g. "a subclassed
    # model ('Net') seen as one layer"; then ``ops_with_macs`` is the per-op account.
    opaque: str = ""
    ops_with_macs: dict[str, int] = field(default_factory=dict)  # op type -> count

    def record_folding(self, folded: int, left_alone: int) -> None:
        """Say in the ``bn-before-sign`` findings what our fold pass did about them.

        ``folded`` / ``left_alone``: chains the ``fold_sign_scale`` pass rewrote
        or skipped in this export (see its entry in ``passes``).
        """
        notes = [d for d in self.diagnostics if d.code == "bn-before-sign"]
        if not notes or folded == 0:
            return
        if left_alone == 0:
            fix = f"done: {_FOLD_PASS} folded every one into a per-channel threshold ADD"
        else:
            fix = (
                f"{_FOLD_PASS} folded {folded} such chains and left {left_alone} alone "
                "(see its skipped reasons under passes)"
            )
        for d in notes:
            d.fix = fix

    @property
    def op_level_errors(self) -> list[Diagnostic]:
        """The op-level findings an opaque model is judged by (``--strict``); [] otherwise."""
        return [d for d in self.diagnostics if self.opaque and d.code in OP_LEVEL_CODES]

    @property
    def stayed_float(self) -> list[QuantizedLayer]:
        """Layers marked binary (a quantized layer with quantizers) that did not become binary."""
        return [q for q in self.quantized if q.marked_binary and not q.binary]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = {
            "quantized_layers": len(self.quantized),
            "quantized_by_class": self.by_class,
            "quantizers_lost": [q.name for q in self.quantized if q.quantizers_lost],
            "marked_binary": sum(q.marked_binary for q in self.quantized),
            "became_binary": sum(q.binary for q in self.quantized),
            "stayed_float": [q.name for q in self.stayed_float],
            "batch_norms_fused": sum(
                b.outcome in ("fused-into-bconv", "folded-into-conv") for b in self.batch_norms
            ),
            "batch_norms_folded": sum(
                b.outcome == "folded-into-threshold" for b in self.batch_norms
            ),
            "batch_norms": len(self.batch_norms),
            "macs": dict(self.macs),
            "binary_mac_share": round(self.binary_mac_share, 6),
            "opaque": self.opaque,
            "ops_with_macs": dict(self.ops_with_macs),
            "errors": sum(d.severity == "error" for d in self.diagnostics),
        }
        return out

    @property
    def by_class(self) -> dict[str, int]:
        """Larq quantized layers per class, e.g. ``{"QuantConv2D": 3, "QuantDense": 1}``."""
        counts: dict[str, int] = {}
        for q in self.quantized:
            counts[q.class_name] = counts.get(q.class_name, 0) + 1
        return counts


# --- the Keras side -------------------------------------------------------------------


def _quantizer_name(quantizer: Any) -> str | None:
    if quantizer is None:
        return None
    return getattr(quantizer, "__name__", None) or class_name(quantizer)


def _kernel_quantizer(layer: Any) -> Any:
    for attr in ("kernel_quantizer", "depthwise_quantizer"):
        if hasattr(layer, attr):
            return getattr(layer, attr)
    return None


def _quantizers_lost(layer: Any) -> bool:
    """A Larq layer class revived by Keras without its quantizer attributes."""
    return not hasattr(layer, "input_quantizer")


def _reads_network_input(lm: LayerMap, name: str) -> bool:
    """Whether every Keras input of the layer is a model input (a first layer)."""
    parents = lm.keras.inbound.get(name, [])
    return bool(parents) and all(p in lm.keras.input_layers for p in parents)


def _input_signs_fused_upstream(lm: LayerMap, name: str) -> bool:
    """Whether the layer's ops read bitpacked signs computed by an earlier op."""
    layer = lm.layers[name]
    if any(lm.graph.operators[i].opcode == DEQUANTIZE for i in layer.own_ops):
        return True
    return any(ref.meaning == SIGNS for ref in layer.inputs)


# --- diagnoses ------------------------------------------------------------------------


def _kernel_is_binary(layer: Any) -> tuple[bool, str]:
    """Whether the quantized kernel is ±alpha in every output channel; a short description."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return True, ""
    from bnnconvert import _tf

    latent = np.asarray(getattr(kernel, "latent_variable", kernel).numpy())
    quantizer = getattr(layer, "kernel_quantizer", None)
    if quantizer is not None:
        latent = np.asarray(quantizer(_tf.tensorflow().constant(latent)))
    values = latent.astype(np.float64)
    per_channel = np.abs(values.reshape(-1, values.shape[-1]))
    ok = bool(np.all(per_channel > 0) and np.allclose(per_channel, per_channel[:1], rtol=1e-5))
    distinct = np.unique(np.round(values, 6))
    shown = ", ".join(f"{v:g}" for v in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
    return ok, f"{len(distinct)} distinct values ({shown})"


def _group_fix(channels_in: int, channels_out: int) -> str:
    options = [
        g
        for g in range(1, channels_in + 1)
        if channels_in % g == 0 and channels_out % g == 0 and (channels_in // g) % 32 == 0
    ]
    if max(options, default=1) == 1:
        return "use groups=1, or widen the input to a multiple of 32 channels per group"
    return f"use groups={max(options)} (or fewer) so each group has a multiple of 32 channels"


def _reasons_not_binary(
    layer: Any, op_types: list[str], signs_fused: bool
) -> list[tuple[str, str, str]]:
    """(code, message, fix) for each reason a quantized layer is not binary.

    ``signs_fused``: its input sign was applied, fused into an earlier op's
    bitpacked output, so its input quantizer is not at fault.
    """
    cls = class_name(layer)
    if _quantizers_lost(layer):
        return [
            (
                "quantizers-lost",
                f"{cls} lost its quantizers when it was saved: Keras revived it from the "
                "SavedModel's graph without input_quantizer/kernel_quantizer (a quantizer "
                "that is not a built-in Larq one, e.g. a user-written function, cannot be "
                "restored), so its binary intent is lost and it runs in float",
                "use built-in Larq quantizers (ste_sign, MagnitudeAwareSign, ...) and save "
                "again, or load with --trust-checkpoint --custom-objects FILE.py",
            )
        ]
    reasons: list[tuple[str, str, str]] = []
    if cls == "QuantDense":
        reasons.append(
            (
                "quant-dense",
                "QuantDense has no binary op in LCE: it runs as a float FULLY_CONNECTED",
                "use a 1x1 QuantConv2D (on a 1x1 feature map, e.g. after "
                "GlobalAveragePooling2D(keepdims=True)) instead",
            )
        )
    elif cls in ("QuantDepthwiseConv2D", "QuantSeparableConv2D"):
        reasons.append(
            (
                "no-binary-op",
                f"{cls} has no binary op in LCE: it runs as a float convolution",
                "use a QuantConv2D (grouped, with a multiple of 32 channels per group)",
            )
        )
    elif cls == "QuantConv1D":
        reasons.append(
            (
                "no-binary-op",
                "LCE has no binary op for QuantConv1D: it runs as a float CONV_2D between reshapes",
                "reshape to (1, length, channels) and use a QuantConv2D with kernel_size (1, k)",
            )
        )
    elif cls != "QuantConv2D":
        reasons.append(
            (
                "no-binary-op",
                f"LCE has no binary op for {cls}",
                "use a QuantConv2D (2-D, not transposed)",
            )
        )
    input_quantizer = _quantizer_name(layer.input_quantizer)
    if input_quantizer is None:
        reasons.append(
            (
                "no-input-quantizer",
                "no input_quantizer: only the weights are binary, the conv runs in float",
                f"set input_quantizer to {_SIGN_QUANTIZERS} and fine-tune",
            )
        )
    elif input_quantizer not in _SIGN_QUANTIZER_NAMES and not signs_fused:
        what = "DoReFa" if "dorefa" in input_quantizer.lower() else input_quantizer
        reasons.append(
            (
                "unsupported-input-quantizer",
                f"{what} (input_quantizer) is not supported by LCE: it binarizes only sign "
                "quantizers, so the input stays float and the conv runs in float",
                f"use input_quantizer {_SIGN_QUANTIZERS} and fine-tune",
            )
        )
    binary_kernel, values = _kernel_is_binary(layer)
    if not binary_kernel:
        quantizer = (
            _quantizer_name(getattr(layer, "kernel_quantizer", None)) or "no kernel_quantizer"
        )
        reasons.append(
            (
                "kernel-not-binary",
                f"kernel is not ±1 (per output channel ±alpha) after {quantizer}: {values}; "
                "only the inputs are binary, the conv runs in float",
                "use kernel_quantizer ste_sign (or magnitude_aware_sign) with "
                "kernel_constraint weight_clip and fine-tune",
            )
        )
    groups = int(getattr(layer, "groups", 1) or 1)
    if groups > 1 and cls == "QuantConv2D":
        channels_in = (
            int(layer.input_spec.axes[-1]) if layer.input_spec and layer.input_spec.axes else 0
        )
        channels_in = channels_in or int(layer.kernel.shape[-2]) * groups
        per_group = channels_in // groups
        if per_group % 32:
            reasons.append(
                (
                    "grouped-channels",
                    f"grouped conv with {per_group} input channels per group "
                    f"({channels_in}/{groups}): LCE's binary grouped conv needs a multiple of 32",
                    _group_fix(channels_in, int(layer.filters)),
                )
            )
    return reasons


def _pad_value_notes(op: ir.Operator, graph: ir.Subgraph) -> tuple[str, str, str, str] | None:
    """(code, severity, message, fix) of a zero-padded ``LceBconv2d``, or None.

    LCE 0.16's optimized kernels correct zero padding only for a float output
    without a fused activation (``bconv2d.cc``: otherwise only the reference
    kernel, with an even number of input channels, runs the op).
    """
    filt = graph.tensors[op.inputs[1]].shape
    spatial = len(filt) == 4 and (filt[1] > 1 or filt[2] > 1)
    same = ir.PADDING.get(int(op.options.get("padding", -1))) == "SAME"
    if not (same and op.options.get("pad_values") == 0 and spatial):
        return None
    output = graph.tensors[op.outputs[0]].dtype
    if output != "float32" or op.options.get("fused_activation_function", 0):
        what = f"an {output} output" if output != "float32" else "a fused activation"
        return (
            "pad-values-zero-unsupported",
            "error",
            f"pad_values=0 with {what}: LCE's optimized binary kernels cannot run it "
            "(they correct zero padding only for a float output without a fused activation); "
            "the interpreter refuses the model",
            "set pad_values=1.0 on the QuantConv2D and fine-tune (border outputs change), "
            "or export without int8 activations",
        )
    return (
        "pad-values-zero",
        "info",
        "pad_values=0 costs a padding correction; pad_values=1 is free "
        "(SAME padding with zeros, which are not ±1, needs LCE to correct the border outputs)",
        "set pad_values=1.0 on the QuantConv2D and fine-tune (border outputs change)",
    )


def _batch_norm_outcome(name: str, lm: LayerMap) -> BatchNormOutcome:
    graph, ops = lm.graph, lm.layers[name].ops
    if not ops:
        return BatchNormOutcome(name, "not-found", lm.layers[name].note or "no op found")
    opcodes = [graph.operators[i].opcode for i in ops]
    for i, opcode in zip(ops, opcodes, strict=True):
        if opcode in KERNEL_OPS:
            owner = lm.owner.get(i, "?")
            if opcode == BINARY_CONV:
                bitpacked = graph.tensors[graph.operators[i].outputs[0]].dtype == "int32"
                into = (
                    "output_threshold (bitpacked output)"
                    if bitpacked
                    else ("post_activation_multiplier and post_activation_bias")
                )
                return BatchNormOutcome(
                    name,
                    "fused-into-bconv",
                    f"fused into {owner}'s LceBconv2d (op {i}): {into}",
                    [i],
                )
            return BatchNormOutcome(
                name,
                "folded-into-conv",
                f"folded into {owner}'s {opcode} (op {i}) weights and bias",
                [i],
            )
    affine = [i for i, opcode in zip(ops, opcodes, strict=True) if opcode in AFFINE_OPS]
    if affine:
        last = graph.operators[affine[-1]]
        kinds = "/".join(dict.fromkeys(graph.operators[i].opcode for i in affine))
        where = ("op " if len(affine) == 1 else "ops ") + ", ".join(map(str, affine))
        signs = [
            c
            for t in last.outputs
            for c in lm.index.consumers(t)
            if graph.operators[c].opcode == QUANTIZE
        ]
        if signs:
            quantized = lm.owner.get(signs[0], "?")
            output = lm.layers[name].output
            if output is not None and output.meaning == THRESHOLD:
                flipped = len(output.flipped_channels)
                detail = (
                    f"folded by {_FOLD_PASS} into a per-channel threshold ADD ({where}) before "
                    f"the sign of {quantized} (LceQuantize, op {signs[0]}); "
                    f"{flipped} channel(s) with negative scale have their sign inverted"
                )
                return BatchNormOutcome(name, "folded-into-threshold", detail, affine)
            detail = (
                f"left as float {kinds} ({where}) before the sign "
                f"of {quantized} (LceQuantize, op {signs[0]})"
            )
            return BatchNormOutcome(name, "before-sign", detail, affine)
        return BatchNormOutcome(name, "float-ops", f"left as float {kinds} ({where})", affine)
    listed = ", ".join(f"{o} (op {i})" for i, o in zip(ops, opcodes, strict=True))
    return BatchNormOutcome(name, "float-ops", f"merged into {listed}", ops)


_XCORE_BACK_END = (
    "xcore-back-end",
    "LCE 0.16's xcore back end leaves every binary conv as LceQuantize -> LceDequantize -> "
    "float CONV_2D with ±1 weights by design, for XMOS's own tools to lower: LCE's binary "
    "kernels are not used",
    "use --target arm64, armv7 or x86_64 for LCE's binary kernels; keep --target xcore only "
    "to hand the model to XMOS's tools",
)


def _quantized_layer(
    lm: LayerMap, name: str, layer: Any, op_types: list[str], back_end: str
) -> tuple[QuantizedLayer, list[Diagnostic]]:
    """What became of one Larq quantized layer on LCE back end ``back_end``, and the findings."""
    cls = class_name(layer)
    compute = [t for t in op_types if t in KERNEL_OPS] or op_types
    binary = BINARY_CONV in op_types
    if _quantizers_lost(layer):
        entry = QuantizedLayer(name, cls, None, None, True, binary, compute, quantizers_lost=True)
    else:
        input_q = _quantizer_name(layer.input_quantizer)
        kernel_q = _quantizer_name(_kernel_quantizer(layer))
        marked = input_q is not None or kernel_q is not None
        entry = QuantizedLayer(name, cls, input_q, kernel_q, marked, binary, compute)
        if input_q is None and kernel_q is not None and _reads_network_input(lm, name):
            entry.marked_binary = False  # binary weights on real inputs, by design
            return entry, [
                Diagnostic(
                    "first-layer-float-input",
                    "info",
                    name,
                    "first layer with binary weights reading the network input without an "
                    "input_quantizer (the practice Larq recommends): it runs as a float "
                    f"{'/'.join(compute)} with ±1 weights",
                    "none needed; binarizing raw pixels usually costs accuracy",
                )
            ]
    if entry.quantizers_lost and binary:
        return entry, [
            Diagnostic(
                "quantizers-lost",
                "info",
                name,
                f"{cls} lost its quantizers when it was saved, but LCE found the sign in the "
                "SavedModel's graph: it became LceBconv2d",
                "none needed; save with built-in Larq quantizers to keep the layer's config",
            )
        ]
    if not entry.marked_binary or binary:
        return entry, []
    found = _reasons_not_binary(layer, op_types, _input_signs_fused_upstream(lm, name))
    if back_end == "xcore":
        found = [_XCORE_BACK_END, *found]
    found = found or [
        (
            "unknown",
            f"LCE kept it as {', '.join(compute) or 'no op'}; bnnconvert does not recognise why",
            "check its quantizers and channel counts; report it to bnnconvert",
        )
    ]
    return entry, [Diagnostic(c, "error", name, m, f) for c, m, f in found]


def _own_quantization_notes(keras_model: Any, lm: LayerMap) -> list[Diagnostic]:
    """An info finding per QUANTIZE op that the model's own fake-quant nodes put there."""
    from bnnconvert.passes.int8_activations import own_fake_quant

    own = set(own_fake_quant(keras_model))
    if not own:
        return []
    notes = []
    for i, op in enumerate(lm.graph.operators):
        layer = lm.owner.get(i)
        if op.opcode == "QUANTIZE" and layer in own:
            notes.append(
                Diagnostic(
                    "own-quantization",
                    "info",
                    layer,
                    f"int8 from the model's own quantization nodes (QUANTIZE, op {i}): "
                    "outputs differ from float by design",
                    "validate judges this export as lossy",
                )
            )
    return notes


def _opaque_reason(lm: LayerMap, op_macs: list[mac_count.OpMacs | None]) -> str:
    """Why the audit cannot see the model's Keras layers, or "" when it can.

    No Larq layer at the top level, and a nested or revived model or a ``Lambda``
    there computes the counted ops (or they are traced to no layer at all): a
    subclassed SavedModel, or a SavedModel's signature wrapped in a Lambda.
    """
    if any(is_quantized(layer) for layer in lm.keras.layers.values()):
        return ""
    counted = [i for i, c in enumerate(op_macs) if c is not None]
    for name, layer in lm.keras.layers.items():
        nested = hasattr(layer, "layers") and hasattr(layer, "inputs")
        if not nested and class_name(layer) != "Lambda":
            continue
        if counted and all(lm.owner.get(i, name) == name for i in counted):
            if nested:
                return f"a subclassed or nested model ('{class_name(layer)}') is one layer to it"
            return f"a Lambda ('{name}') calls a SavedModel signature or function"
    return ""


def _opaque_op_findings(
    lm: LayerMap, op_macs: list[mac_count.OpMacs | None], by_kind: dict[str, int]
) -> list[Diagnostic]:
    """Op-level errors for a model whose Keras layers the audit cannot see.

    Without layers there is no "marked binary" to hold ops to, so the ops are
    judged by what LCE 0.16 emits:

    - a float kernel op reading ``LceDequantize``'s ±1 output is LCE's form of
      a layer with a sign input that it could not binarize (a ``QuantDense``, a
      kernel that is not ±1 per channel, the xcore back end);
    - no binary op at all while float or int kernel ops count MACs: nothing in
      the model runs binary.

    The findings are on the layer that computes the ops (``lm.owner``).
    """
    graph = lm.graph
    after_signs = [
        i
        for i, op in enumerate(graph.operators)
        if op.opcode in FLOAT_KERNEL_OPS
        and (made_by := lm.index.producer(op.inputs[0])) is not None
        and graph.operators[made_by].opcode == DEQUANTIZE
    ]
    counted = [i for i, c in enumerate(op_macs) if c is not None]
    owner = lm.owner.get(counted[0], "") if counted else ""
    found = []
    if after_signs:
        kinds = ", ".join(sorted({graph.operators[i].opcode for i in after_signs}))
        found.append(
            Diagnostic(
                "float-op-after-signs",
                "error",
                owner,
                f"{len(after_signs)} float {kinds} op(s) read signs that LceDequantize turned "
                f"back into ±1 floats (ops {', '.join(map(str, after_signs))}): layers with a "
                "sign input that LCE could not binarize",
                "give each such layer a sign kernel quantizer (QuantConv2D, not QuantDense), "
                "use an ARM target, and save it as a Keras model so the audit can name it",
            )
        )
    if counted and by_kind.get("binary", 0) == 0:
        found.append(
            Diagnostic(
                "no-binary-op",
                "error",
                owner,
                f"no LCE binary op: {sum(by_kind.values()):,} MACs, none binary",
                "give the binary layers Larq sign quantizers (input and kernel) before export",
            )
        )
    return found


def _non_binary_leaders(
    lm: LayerMap, op_macs: list[mac_count.OpMacs | None], total: int
) -> list[MacShare]:
    """The layers with the most non-binary MACs, one entry per (layer, kind), largest first."""
    found: dict[tuple[str, str], MacShare] = {}
    for i, counted in enumerate(op_macs):
        if counted is None or counted.kind == "binary" or i not in lm.owner:
            continue
        key = (lm.owner[i], counted.kind)
        entry = found.setdefault(key, MacShare(key[0], key[1], [], 0, 0.0))
        entry.macs += counted.macs
        opcode = lm.graph.operators[i].opcode
        if opcode not in entry.op_types:
            entry.op_types.append(opcode)
    leaders = sorted(found.values(), key=lambda m: m.macs, reverse=True)[:_TOP_NON_BINARY_LAYERS]
    for m in leaders:
        m.share = m.macs / total if total else 0.0
    return leaders


# --- the entry point ------------------------------------------------------------------


def audit(keras_model: Any, flatbuffer: bytes | ir.Model, *, back_end: str = "arm") -> AuditResult:
    """Audit how LCE converted ``keras_model`` into ``flatbuffer``.

    Arguments:
        keras_model: the tf-keras model that was converted (top-level layers
            are audited; a nested model counts as one layer).
        flatbuffer: the converted model, as bytes or as a :class:`bnnconvert.ir.Model`.
        back_end: the LCE back end it was converted for (``Target.lce_target``:
            "arm" or "xcore").

    Returns:
        An :class:`AuditResult`.

    Raises:
        FlatbufferProblem: ``flatbuffer`` is bytes that are not a valid TFLite model.
    """
    lm = map_layers(keras_model, flatbuffer)
    model, graph = lm.model, lm.graph
    op_macs = mac_count.count_subgraph(model, graph)

    macs: dict[str, dict[str, int]] = {}  # layer -> kind -> MACs
    for i, counted in enumerate(op_macs):
        if counted is not None and i in lm.owner:
            per = macs.setdefault(lm.owner[i], {})
            per[counted.kind] = per.get(counted.kind, 0) + counted.macs
    by_kind = mac_count.totals(op_macs)

    layers: list[LayerMapping] = []
    quantized: list[QuantizedLayer] = []
    batch_norms: list[BatchNormOutcome] = []
    diagnostics: list[Diagnostic] = []
    rewritten = {r.get("layer") for r in lm.rewrites}
    for name, layer in lm.keras.layers.items():
        mapped = lm.layers[name]
        op_types = [graph.operators[i].opcode for i in mapped.ops]
        layers.append(
            LayerMapping(
                name,
                mapped.class_name,
                mapped.ops,
                op_types,
                mapped.mapped_by,
                mapped.note,
                macs.get(name, {}),
            )
        )
        if is_quantized(layer):
            entry, found = _quantized_layer(lm, name, layer, op_types, back_end)
            quantized.append(entry)
            diagnostics += found
            if name in rewritten:
                diagnostics.append(
                    Diagnostic(
                        "rewritten-as-1x1-conv",
                        "info",
                        name,
                        f"{entry.class_name} rebuilt before conversion as Reshape -> 1x1 "
                        "QuantConv2D -> Reshape (exact), so LCE could make it "
                        f"{'LceBconv2d' if entry.binary else ', '.join(entry.became)}",
                        "none needed (--no-rewrite keeps the layer as it is)",
                    )
                )
            for i in mapped.own_ops:
                if graph.operators[i].opcode == BINARY_CONV:
                    note = _pad_value_notes(graph.operators[i], graph)
                    if note:
                        diagnostics.append(Diagnostic(note[0], note[1], name, note[2], note[3]))
                        break
        if class_name(layer) == "BatchNormalization":
            outcome = _batch_norm_outcome(name, lm)
            batch_norms.append(outcome)
            if outcome.outcome in ("before-sign", "folded-into-threshold"):
                diagnostics.append(
                    Diagnostic(
                        "bn-before-sign",
                        "info",
                        name,
                        "batch norm before a sign stays float MUL/ADD over its whole input "
                        "(LCE 0.16 does not fold it)",
                        f"enable bnnconvert's {_FOLD_PASS} pass, which folds it into one "
                        "per-channel threshold",
                    )
                )
    diagnostics += _own_quantization_notes(keras_model, lm)
    opaque = _opaque_reason(lm, op_macs)
    if opaque:
        diagnostics += _opaque_op_findings(lm, op_macs, by_kind)
    diagnostics += [
        Diagnostic(audit_padding.CODE, "error", f.conv, f.message, f.fix)
        for f in audit_padding.pad_stride_findings(lm)
    ]

    return AuditResult(
        model_name=keras_model.name,
        ops=len(graph.operators),
        macs=by_kind,
        layers=layers,
        quantized=quantized,
        batch_norms=batch_norms,
        non_binary_mac_leaders=_non_binary_leaders(lm, op_macs, sum(by_kind.values())),
        diagnostics=diagnostics,
        unmapped_ops=[{"index": i, "type": graph.operators[i].opcode} for i in lm.unmapped_ops()],
        rewrites=list(lm.rewrites),
        opaque=opaque,
        ops_with_macs=dict(
            Counter(
                graph.operators[i].opcode for i, c in enumerate(op_macs) if c is not None
            ).most_common()
        ),
    )
