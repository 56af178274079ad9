"""Export audit: which ops each Keras layer became, and why a binary layer stayed float.

LCE's converter never says when a layer it could not binarize stays a float
op. The audit compares the Keras model with the flatbuffer the converter
produced and explains:

- for every Keras layer, the ops it became, and whether that mapping was read
  from tensor names (certain) or inferred from graph structure (stated as such);
- for every larq quantized layer, whether it became ``LceBconv2d`` and, if not,
  each reason found and its fix;
- for every batch norm, whether it was fused and into what;
- which float layers dominate the multiply-accumulates.

How the mapping works. LCE names activation tensors after the TensorFlow ops
they came from, ``<model>/<layer>/<op>``; ops fused together get the names
joined with ``;``, and the converter cuts names at 50 characters, so a name
can lose its later layers. A ``LceBconv2d`` is named through its input (the
layer's own input quantizer), because a bconv that writes bitpacked output
takes the *next* layer's quantizer name. Ops with no usable name (graph
outputs are called ``StatefulPartitionedCall:0``, constants ``arith.constant``)
are traced through the graph: a graph output belongs to the Keras output layer
(or the nearest upstream layer that can own that op type). Layers left without
ops are matched to a compatible op of a Keras neighbour (a batch norm to the
conv before it, a max-pool to a pooling op, ...). MACs come from
:mod:`bnnconvert.macs` and are counted once, for the op's
owning layer.

What LCE 0.16 was seen to do (tests/test_audit.py converts one model per case):
a ``QuantDense`` becomes ``LceQuantize -> LceDequantize -> FULLY_CONNECTED``; a
conv without input quantizer a plain ``CONV_2D``; a non-sign input quantizer
(DoReFa, SteHeaviside) stays float ops before a ``CONV_2D``; a kernel that is not
``±alpha`` per output channel after its quantizer (none, SteTern, DoReFa with
``k_bit > 1``) ``LceQuantize -> LceDequantize -> CONV_2D``, whereas
MagnitudeAwareSign and 1-bit DoReFa kernels do become ``LceBconv2d`` (the scale
moves into the multiplier); a grouped conv with a channel count per group that
is not a multiple of 32 stays ``CONV_2D`` (the converter prints an error but
still succeeds).

Example:
    >>> report = audit(keras_model, flatbuffer)
    >>> [q.name for q in report.quantized if q.marked_binary and not q.binary]
    ['dense_head']
    >>> print(report.to_markdown())
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bnnconvert import ir

BINARY_OP = "LceBconv2d"
KERNEL_OPS = ("LceBconv2d", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
AFFINE_OPS = ("MUL", "ADD", "SUB")
_SIGN_QUANTIZERS = "ste_sign, approx_sign or swish_sign"
_FOLD_PASS = "fold_sign_scale"
_TOP_FLOAT_LAYERS = 3


@dataclass
class Diagnostic:
    """One finding. ``severity`` is "error" (a layer marked binary stayed float) or "info".

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
    binary_macs: int = 0
    float_macs: int = 0


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


@dataclass
class BatchNormOutcome:
    """What became of one BatchNormalization.

    ``outcome``: "fused-into-bconv", "folded-into-conv", "before-sign" (float
    ``MUL``/``ADD`` left in front of an ``LceQuantize``), "float-ops" or "not-found".
    """

    name: str
    outcome: str
    detail: str
    ops: list[int] = field(default_factory=list)


@dataclass
class FloatMacShare:
    layer: str
    op_types: list[str]
    macs: int
    share: float  # of all counted MACs, binary and float


@dataclass
class AuditResult:
    """The audit of one conversion; ``to_dict()`` for JSON, ``to_markdown()`` for people."""

    model_name: str
    ops: int
    binary_macs: int
    float_macs: int
    layers: list[LayerMapping]
    quantized: list[QuantizedLayer]
    batch_norms: list[BatchNormOutcome]
    float_mac_leaders: list[FloatMacShare]
    diagnostics: list[Diagnostic]
    unmapped_ops: list[dict[str, Any]] = field(default_factory=list)

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
    def stayed_float(self) -> list[QuantizedLayer]:
        """Layers marked binary (a quantized layer with quantizers) that did not become binary."""
        return [q for q in self.quantized if q.marked_binary and not q.binary]

    @property
    def binary_mac_share(self) -> float:
        total = self.binary_macs + self.float_macs
        return self.binary_macs / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = {
            "quantized_layers": len(self.quantized),
            "marked_binary": sum(q.marked_binary for q in self.quantized),
            "became_binary": sum(q.binary for q in self.quantized),
            "stayed_float": [q.name for q in self.stayed_float],
            "batch_norms_fused": sum(
                b.outcome in ("fused-into-bconv", "folded-into-conv") for b in self.batch_norms
            ),
            "batch_norms": len(self.batch_norms),
            "binary_mac_share": round(self.binary_mac_share, 6),
            "errors": sum(d.severity == "error" for d in self.diagnostics),
        }
        return out

    def to_markdown(self) -> str:
        """The audit as Markdown (no timestamps or paths, so it is stable)."""
        from bnnconvert.audit_markdown import render

        return render(self)


# --- the Keras side -------------------------------------------------------------------


class _KerasGraph:
    """Top-level layers of a functional/sequential tf-keras model and their edges."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.layers = {layer.name: layer for layer in model.layers}
        ids = {id(layer): layer.name for layer in model.layers}
        self.inbound: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, layer in self.layers.items():
            for node in getattr(layer, "_inbound_nodes", []):
                parents = node.inbound_layers
                parents = parents if isinstance(parents, (list, tuple)) else [parents]
                for parent in parents:
                    if id(parent) in ids and ids[id(parent)] not in self.inbound[name]:
                        self.inbound[name].append(ids[id(parent)])
        self.outbound: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, parents in self.inbound.items():
            for parent in parents:
                self.outbound[parent].append(name)
        self.output_layers = [n for n in getattr(model, "output_names", []) if n in self.layers]

    def ancestors(self, name: str, hops: int) -> Iterable[str]:
        """Layers up to ``hops`` steps upstream, nearest first (first inbound path)."""
        frontier = [name]
        for _ in range(hops):
            frontier = [p for n in frontier for p in self.inbound.get(n, [])]
            yield from frontier


def _class(layer: Any) -> str:
    return type(layer).__name__


def _has_kernel(layer: Any) -> bool:
    return any(hasattr(layer, a) for a in ("kernel", "depthwise_kernel"))


def _is_quantized(layer: Any) -> bool:
    return hasattr(layer, "input_quantizer")


def _owns(layer: Any, opcode: str) -> bool:
    """Whether ``layer`` can be the layer an op of type ``opcode`` computes."""
    cls = _class(layer)
    if opcode in KERNEL_OPS:
        return _has_kernel(layer) and (opcode != BINARY_OP or _is_quantized(layer))
    if opcode in ("MAX_POOL_2D", "LceBMaxPool2d"):
        return "MaxPool" in cls
    if opcode == "AVERAGE_POOL_2D":
        return "AveragePool" in cls and "Global" not in cls
    if opcode == "CONCATENATION":
        return cls == "Concatenate"
    return True


def _quantizer_name(quantizer: Any) -> str | None:
    if quantizer is None:
        return None
    return getattr(quantizer, "__name__", None) or _class(quantizer)


def _kernel_quantizer(layer: Any) -> Any:
    for attr in ("kernel_quantizer", "depthwise_quantizer"):
        if hasattr(layer, attr):
            return getattr(layer, attr)
    return None


# --- the flatbuffer side --------------------------------------------------------------


def _layers_in_name(name: str, model_name: str, known: dict[str, Any]) -> list[str]:
    """Layer names in a tensor name; a segment cut short inside its layer name is skipped."""
    found: list[str] = []
    for segment in name.split(";"):
        parts = segment.split("/")
        cut = len(parts) < 3  # a layer name must be followed by "/"
        if not cut and parts[0] == model_name and parts[1] in known and parts[1] not in found:
            found.append(parts[1])
    return found


def _is_constant(model: ir.Model, graph: ir.Subgraph, t: int) -> bool:
    return t >= 0 and bool(model.buffers[graph.tensors[t].buffer])


class _Mapping:
    """Op <-> layer associations; ``owner`` is the one layer an op's MACs count for."""

    def __init__(self, n_ops: int) -> None:
        self.layer_ops: dict[str, list[int]] = {}
        self.how: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.owner: dict[int, str] = {}
        self.n_ops = n_ops

    def add(self, layer: str, op: int, how: str) -> None:
        ops = self.layer_ops.setdefault(layer, [])
        if op not in ops:
            ops.append(op)
            ops.sort()
        if self.how.get(layer) != "name":
            self.how[layer] = how

    def ops_of(self, layer: str) -> list[int]:
        return self.layer_ops.get(layer, [])


def _map_ops(kg: _KerasGraph, model: ir.Model, graph: ir.Subgraph) -> _Mapping:
    mapping = _Mapping(len(graph.operators))
    name = kg.model.name
    producers = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}

    def named(t: int) -> list[str]:
        return _layers_in_name(graph.tensors[t].name, name, kg.layers) if t >= 0 else []

    unnamed: list[int] = []
    for i, op in enumerate(graph.operators):
        if op.opcode == BINARY_OP:
            layers = named(op.inputs[0])
            if graph.tensors[op.outputs[0]].dtype != "int32":  # bitpacked: next layer's name
                layers += [n for n in named(op.outputs[0]) if n not in layers]
        else:
            layers = [n for t in op.outputs for n in named(t)]
        if not layers:  # weights are sometimes named after their layer
            layers = [n for t in op.inputs if _is_constant(model, graph, t) for n in named(t)]
        if not layers:
            unnamed.append(i)
            continue
        for layer in layers:
            mapping.add(layer, i, "name")
        owners = [n for n in layers if _owns(kg.layers[n], op.opcode)]
        if owners:
            mapping.owner[i] = owners[0]
            continue
        # Named after a layer that cannot compute it (a binary max-pool takes the
        # next layer's quantizer name): find the owner upstream.
        for candidate in kg.ancestors(layers[0], hops=3):
            if (
                _owns(kg.layers[candidate], op.opcode)
                and _class(kg.layers[candidate]) != "InputLayer"
            ):
                mapping.add(candidate, i, "structure")
                mapping.owner[i] = candidate
                break
        else:
            mapping.owner[i] = layers[0]

    for i in unnamed:
        op = graph.operators[i]
        owner = _owner_by_structure(kg, mapping, graph, producers, i)
        if owner is not None:
            mapping.add(owner, i, "structure")
            mapping.owner[i] = owner
    return mapping


def _owner_by_structure(
    kg: _KerasGraph, mapping: _Mapping, graph: ir.Subgraph, producers: dict[int, int], i: int
) -> str | None:
    op = graph.operators[i]
    for k, t in enumerate(graph.outputs):
        if t in op.outputs and k < len(kg.output_layers):
            start = kg.output_layers[k]
            for candidate in [start, *kg.ancestors(start, hops=4)]:
                if _owns(kg.layers[candidate], op.opcode):
                    return candidate
    for t in op.inputs:
        source = producers.get(t)
        if source is None or source not in mapping.owner:
            continue
        upstream = mapping.owner[source]
        for candidate in [upstream, *kg.outbound.get(upstream, [])]:
            if _owns(kg.layers[candidate], op.opcode) and candidate not in mapping.layer_ops:
                return candidate
    return None


def _map_leftover_layers(kg: _KerasGraph, mapping: _Mapping, graph: ir.Subgraph) -> None:
    """Give layers without ops the compatible op of a neighbour, saying so."""
    for name, layer in kg.layers.items():
        if mapping.ops_of(name):
            continue
        cls = _class(layer)
        if cls == "InputLayer":
            mapping.notes[name] = "graph input"
            continue
        if cls in ("Dropout", "SpatialDropout2D", "GaussianNoise", "ActivityRegularization"):
            mapping.notes[name] = "no op: identity at inference"
            continue
        merge_types: tuple[str, ...]
        if cls == "BatchNormalization":
            merge_types = KERNEL_OPS + AFFINE_OPS
        elif cls in ("Activation", "ReLU"):
            merge_types = tuple(op.opcode for op in graph.operators)  # fused activation
        else:
            merge_types = ()
        neighbours = kg.inbound.get(name, []) + kg.outbound.get(name, [])
        for neighbour in neighbours:
            ops = [i for i in mapping.ops_of(neighbour) if graph.operators[i].opcode in merge_types]
            if cls == "BatchNormalization" and neighbour in kg.inbound.get(name, []):
                ops = [i for i in ops if graph.operators[i].opcode in KERNEL_OPS]
            if ops:
                op = ops[-1] if neighbour in kg.inbound.get(name, []) else ops[0]
                mapping.add(name, op, "structure")
                mapping.notes[name] = f"no op named after it; merged into op {op} of {neighbour}"
                break
        else:
            mapping.notes[name] = "no op found (folded away by the converter, or its name was cut)"


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


def _reasons_not_binary(layer: Any, op_types: list[str]) -> list[tuple[str, str, str]]:
    """(code, message, fix) for each reason a quantized layer is not binary."""
    cls = _class(layer)
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
    elif "LceQuantize" not in op_types:
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


def _pad_value_notes(op: ir.Operator, graph: ir.Subgraph) -> tuple[str, str, str] | None:
    filt = graph.tensors[op.inputs[1]].shape
    spatial = len(filt) == 4 and (filt[1] > 1 or filt[2] > 1)
    same = ir.PADDING.get(int(op.options.get("padding", -1))) == "SAME"
    if same and op.options.get("pad_values") == 0 and spatial:
        return (
            "pad-values-zero",
            "pad_values=0 costs a padding correction; pad_values=1 is free "
            "(SAME padding with zeros, which are not ±1, needs LCE to correct the border outputs)",
            "set pad_values=1.0 on the QuantConv2D and fine-tune (border outputs change)",
        )
    return None


def _batch_norm_outcome(
    name: str, ops: list[int], kg: _KerasGraph, mapping: _Mapping, graph: ir.Subgraph
) -> BatchNormOutcome:
    if not ops:
        return BatchNormOutcome(name, "not-found", mapping.notes.get(name, "no op found"))
    opcodes = [graph.operators[i].opcode for i in ops]
    for i, opcode in zip(ops, opcodes, strict=True):
        if opcode in KERNEL_OPS:
            owner = mapping.owner.get(i, "?")
            if opcode == BINARY_OP:
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
            for c in ir.consumers(graph, t)
            if graph.operators[c].opcode == "LceQuantize"
        ]
        if signs:
            quantized = mapping.owner.get(signs[0], "?")
            return BatchNormOutcome(
                name,
                "before-sign",
                f"left as float {kinds} ({where}) before the sign "
                f"of {quantized} (LceQuantize, op {signs[0]})",
                affine,
            )
        return BatchNormOutcome(name, "float-ops", f"left as float {kinds} ({where})", affine)
    listed = ", ".join(f"{o} (op {i})" for i, o in zip(ops, opcodes, strict=True))
    return BatchNormOutcome(name, "float-ops", f"merged into {listed}", ops)


# --- the entry point ------------------------------------------------------------------


def audit(keras_model: Any, flatbuffer: bytes | ir.Model) -> AuditResult:
    """Audit how LCE converted ``keras_model`` into ``flatbuffer``.

    Arguments:
        keras_model: the tf-keras model that was converted (top-level layers
            are audited; a nested model counts as one layer).
        flatbuffer: the converted model, as bytes or as a :class:`bnnconvert.ir.Model`.

    Returns:
        An :class:`AuditResult`.

    Raises:
        FlatbufferProblem: ``flatbuffer`` is bytes that are not a valid TFLite model.
    """
    from bnnconvert import macs as mac_count

    model = ir.read(flatbuffer) if isinstance(flatbuffer, (bytes, bytearray)) else flatbuffer
    graph = model.subgraphs[0]
    op_macs = mac_count.count_subgraph(model, graph)

    kg = _KerasGraph(keras_model)
    mapping = _map_ops(kg, model, graph)
    _map_leftover_layers(kg, mapping, graph)

    macs: dict[str, dict[str, int]] = {}
    # The audit splits binary from everything else: int8/int16 MACs count as "float" here.
    for i, counted in enumerate(op_macs):
        if counted is not None and i in mapping.owner:
            per = macs.setdefault(mapping.owner[i], {"binary": 0, "float": 0})
            per["binary" if counted.kind == "binary" else "float"] += counted.macs
    by_kind = mac_count.totals(op_macs)
    binary_macs = by_kind["binary"]
    float_macs = sum(by_kind.values()) - binary_macs

    layers: list[LayerMapping] = []
    quantized: list[QuantizedLayer] = []
    batch_norms: list[BatchNormOutcome] = []
    diagnostics: list[Diagnostic] = []
    for name, layer in kg.layers.items():
        ops = mapping.ops_of(name)
        op_types = [graph.operators[i].opcode for i in ops]
        layers.append(
            LayerMapping(
                name,
                _class(layer),
                ops,
                op_types,
                mapping.how.get(name, "none"),
                mapping.notes.get(name, ""),
                macs.get(name, {}).get("binary", 0),
                macs.get(name, {}).get("float", 0),
            )
        )
        if _is_quantized(layer):
            input_q = _quantizer_name(layer.input_quantizer)
            kernel_q = _quantizer_name(_kernel_quantizer(layer))
            binary = BINARY_OP in op_types
            compute = [t for t in op_types if t in KERNEL_OPS] or op_types
            marked = input_q is not None or kernel_q is not None
            quantized.append(
                QuantizedLayer(name, _class(layer), input_q, kernel_q, marked, binary, compute)
            )
            if marked and not binary:
                found = _reasons_not_binary(layer, op_types) or [
                    (
                        "unknown",
                        f"LCE kept it as {', '.join(compute) or 'no op'}; bnnconvert does not "
                        "recognise why",
                        "check its quantizers and channel counts; report it to bnnconvert",
                    )
                ]
                diagnostics += [Diagnostic(c, "error", name, m, f) for c, m, f in found]
            for i in ops:
                if graph.operators[i].opcode == BINARY_OP and mapping.owner.get(i) == name:
                    note = _pad_value_notes(graph.operators[i], graph)
                    if note:
                        diagnostics.append(Diagnostic(note[0], "info", name, note[1], note[2]))
                        break
        if _class(layer) == "BatchNormalization":
            outcome = _batch_norm_outcome(name, ops, kg, mapping, graph)
            batch_norms.append(outcome)
            if outcome.outcome == "before-sign":
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

    total = binary_macs + float_macs
    leaders = sorted((m for m in layers if m.float_macs), key=lambda m: m.float_macs, reverse=True)[
        :_TOP_FLOAT_LAYERS
    ]
    unmapped = [
        {"index": i, "type": op.opcode}
        for i, op in enumerate(graph.operators)
        if not any(i in ops for ops in mapping.layer_ops.values())
    ]
    return AuditResult(
        model_name=keras_model.name,
        ops=len(graph.operators),
        binary_macs=binary_macs,
        float_macs=float_macs,
        layers=layers,
        quantized=quantized,
        batch_norms=batch_norms,
        float_mac_leaders=[
            FloatMacShare(
                m.name,
                [t for t in m.op_types if t in KERNEL_OPS],
                m.float_macs,
                m.float_macs / total if total else 0.0,
            )
            for m in leaders
        ],
        diagnostics=diagnostics,
        unmapped_ops=unmapped,
    )
