"""What is inside a TFLite/LCE flatbuffer: ops, weights, MACs, signatures, metadata.

Definitions (all counts are per inference at the batch size stored in the
model, which is 1 for LCE's converter):

- **MACs**: :mod:`bnnconvert.macs` defines them per op, and their kind
  (``binary``, ``int8``, ``int16``, ``float``).
- **Weights** are constant tensors, each counted once: the filter and bias of
  every op that gets MACs, followed through a ``DEQUANTIZE`` when the converter
  stored them as float16 or int8. They are grouped by kind: ``binary
  (bitpacked)`` = ``LceBconv2d`` filters (parameters = ±1 weights, bytes = the
  packed words); ``int8``, ``fp16``, ``float32`` (or another storage dtype);
  ``bias (int32)`` = the integer biases of quantized ops. *Other constants* are
  everything else (batch-norm scales and offsets, ``LceBconv2d`` multipliers,
  biases and thresholds, shape operands).
- **Float-equivalent size** = file size − the bytes of all weights + 4 bytes per
  weight parameter (every weight stored as float32);
  **compression ratio** = float-equivalent size / file size.
- **Signatures**: each entry point (SignatureDef) with its inputs, outputs and
  the MACs of its subgraph (and of the subgraphs its control-flow ops call).
  A model without SignatureDefs gets one unnamed entry for subgraph 0.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bnnconvert import ir, macs, metadata, tflite_metadata
from bnnconvert.errors import FlatbufferProblem, UsageProblem, check_path

_ENUM_OPTIONS = {"padding": ir.PADDING, "fused_activation_function": ir.ACTIVATIONS}
BINARY_WEIGHTS = "binary (bitpacked)"
"""The weight-group label of bitpacked ``LceBconv2d`` filters."""


@dataclass
class QuantInfo:
    """Affine quantization of a tensor: ``real = scale · (q − zero_point)``.

    ``axis`` is the quantized dimension when there is one scale per channel, else None.
    """

    scale: list[float]
    zero_point: list[int]
    axis: int | None = None

    def describe(self) -> str:
        """``scale 0.00392, zero point -128`` or ``per-channel ×32, axis 0, scale 0.001–0.02``."""
        if len(self.scale) == 1:
            zero = self.zero_point[0] if self.zero_point else 0
            return f"scale {self.scale[0]:.6g}, zero point {zero}"
        zeros = sorted(set(self.zero_point)) or [0]
        zero = f"zero points {zeros[0]}–{zeros[-1]}" if len(zeros) > 1 else f"zero point {zeros[0]}"
        return (
            f"per-channel ×{len(self.scale)}, axis {self.axis}, "
            f"scale {min(self.scale):.3g}–{max(self.scale):.3g}, {zero}"
        )


@dataclass
class TensorInfo:
    """A tensor as an op or signature sees it: index in its subgraph, name, shape, dtype."""

    index: int
    name: str
    shape: list[int]
    dtype: str
    constant: bool
    quantization: QuantInfo | None = None


@dataclass
class OpInfo:
    """One op: its tensors (None for an omitted optional input), decoded options, MACs."""

    subgraph: int
    index: int
    type: str
    inputs: list[TensorInfo | None]
    outputs: list[TensorInfo]
    options: dict[str, Any]
    macs: int = 0
    mac_kind: str | None = None  # one of macs.KINDS, or None (not counted)


@dataclass
class WeightGroup:
    """Constant tensors of one kind: how many, their parameters, their stored bytes."""

    tensors: int = 0
    parameters: int = 0
    bytes: int = 0


@dataclass
class SignatureInfo:
    """One entry point: its name, subgraph, named inputs and outputs, and its MACs by kind."""

    key: str
    subgraph: int
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    macs: dict[str, int]


@dataclass
class InspectResult(macs.MacsByKind):
    """What :func:`inspect_model` found. ``metadata`` holds every metadata entry decoded in
    full (JSON entries and ``TFLITE_METADATA`` as dicts, text as text, anything else as
    ``{"undecoded_bytes": N}``); ``model_info`` is the short display form of the
    ``bnnconvert`` entry (not part of :meth:`to_dict`)."""

    source: str
    size_bytes: int
    ops: list[OpInfo]
    op_histogram: dict[str, int]
    weights: dict[str, WeightGroup]  # by kind label, binary first
    other_constants: WeightGroup
    macs: dict[str, int]  # all subgraphs, by kind (macs.KINDS)
    float_equivalent_bytes: int
    signatures: list[SignatureInfo]
    metadata: dict[str, Any]
    subgraphs: int = 1
    model_info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"<InspectResult {self.source}: {len(self.ops)} ops, {self.size_bytes / 1024:.1f} KiB, "
            f"{self.binary_mac_share:.1%} of MACs binary>"
        )

    @property
    def binary_weights(self) -> WeightGroup:
        return self.weights.get(BINARY_WEIGHTS, WeightGroup())

    @property
    def compression_ratio(self) -> float:
        return self.float_equivalent_bytes / self.size_bytes if self.size_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values: numbers as numbers, metadata in full."""
        out = asdict(self)
        del out["model_info"]
        out["binary_mac_share"] = self.binary_mac_share
        out["compression_ratio"] = self.compression_ratio
        return out


def _load(model: Path | str | bytes) -> tuple[str, bytes]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(model)
    check_path("model", model)
    path = Path(model)
    return str(path), ir.load_bytes(path)  # stat-checked, size-capped, identifier first


def _options_view(op: ir.Operator) -> dict[str, Any]:
    view = {}
    for key, value in op.options.items():
        names = _ENUM_OPTIONS.get(key)
        view[key] = names.get(value, value) if names and isinstance(value, int) else value
    if op.raw_custom_options is not None:
        view["raw_custom_options_bytes"] = len(op.raw_custom_options)
    return view


def _quant_info(tensor: ir.Tensor) -> QuantInfo | None:
    q = tensor.quantization
    if q is None or not q.scale:
        return None
    axis = q.quantized_dimension if len(q.scale) > 1 else None
    return QuantInfo([float(s) for s in q.scale], [int(z) for z in q.zero_point], axis)


def _weight_label(tensor: ir.Tensor, is_bias: bool) -> str:
    if is_bias and tensor.dtype.startswith(("int", "uint")):
        return f"bias ({tensor.dtype})"
    return "fp16" if tensor.dtype == "float16" else tensor.dtype


def _called_subgraphs(model: ir.Model, start: int) -> list[int]:
    """``start`` and every subgraph its control-flow ops (WHILE, IF, CALL_ONCE ...) reach."""
    seen, todo = [start], [start]
    while todo:
        for op in model.subgraphs[todo.pop()].operators:
            for key, value in op.options.items():
                called = key.endswith("subgraph_index") and isinstance(value, int)
                if called and 0 <= value < len(model.subgraphs) and value not in seen:
                    seen.append(value)
                    todo.append(value)
    return seen


def inspect_model(model: Path | str | bytes) -> InspectResult:
    """Describe a TFLite/LCE model: per-op table, weights, MACs, signatures, size, metadata.

    Arguments:
        model: a path to a ``.tflite`` file, or its bytes.
    Raises:
        UsageProblem: the file cannot be read.
        FlatbufferProblem: it is not a valid TFLite flatbuffer.
    """
    source, data = _load(model)
    try:
        graph_ir = ir.read(data)
    except FlatbufferProblem as e:
        raise FlatbufferProblem(f"{source}: {e}") from e
    ops: list[OpInfo] = []
    weights: dict[str, WeightGroup] = {}
    other = WeightGroup()
    per_subgraph: list[dict[str, int]] = []
    infos: list[list[TensorInfo]] = []
    for s, graph in enumerate(graph_ir.subgraphs):
        tensors = [
            TensorInfo(
                t,
                tensor.name,
                tensor.shape,
                tensor.dtype,
                bool(graph_ir.buffers[tensor.buffer]),
                _quant_info(tensor),
            )
            for t, tensor in enumerate(graph.tensors)
        ]
        infos.append(tensors)
        written_by = macs.producers(graph)
        counted = [macs.count_op(graph_ir, graph, op, written_by) for op in graph.operators]
        per_subgraph.append(macs.totals(counted))
        ops += [
            OpInfo(
                s,
                i,
                op.opcode,
                [tensors[t] if t >= 0 else None for t in op.inputs],
                [tensors[t] for t in op.outputs],
                _options_view(op),
                c.macs if c else 0,
                c.kind if c else None,
            )
            for i, (op, c) in enumerate(zip(graph.operators, counted, strict=True))
        ]
        _add_weights(graph_ir, graph, counted, written_by, weights, other)
    weight_bytes = sum(g.bytes for g in weights.values())
    weight_params = sum(g.parameters for g in weights.values())
    entries, model_info, notes = _metadata(graph_ir, data)
    ordered = {k: weights[k] for k in sorted(weights, key=lambda k: k != BINARY_WEIGHTS)}
    return InspectResult(
        source=source,
        size_bytes=len(data),
        ops=ops,
        op_histogram=dict(Counter(op.type for op in ops).most_common()),
        weights=ordered,
        other_constants=other,
        macs={k: sum(m[k] for m in per_subgraph) for k in macs.KINDS},
        float_equivalent_bytes=len(data) - weight_bytes + 4 * weight_params,
        signatures=_signatures(graph_ir, infos, per_subgraph),
        metadata=entries,
        subgraphs=len(graph_ir.subgraphs),
        model_info=model_info,
        notes=notes,
    )


def _add_weights(
    model: ir.Model,
    graph: ir.Subgraph,
    counted: list[macs.OpMacs | None],
    written_by: dict[int, int],
    weights: dict[str, WeightGroup],
    other: WeightGroup,
) -> None:
    """Add every constant of ``graph`` to its weight group (by kind) or to ``other``."""
    role: dict[int, str] = {}  # weight tensor -> weight-group label
    binary_channels: dict[int, int] = {}
    for op, c in zip(graph.operators, counted, strict=True):
        if c is None:
            continue
        for position, is_bias in ((c.filter, False), (c.bias, True)):
            if position is None:
                continue
            source = macs.constant_source(model, graph, op.inputs[position], written_by)
            if source is None or source in role:
                continue
            if c.kind == "binary":
                role[source] = BINARY_WEIGHTS
                shape = graph.tensors[op.inputs[position]].shape
                binary_channels[source] = macs.bconv_channels(op, shape)
            else:
                role[source] = _weight_label(graph.tensors[source], is_bias)
    for t, tensor in enumerate(graph.tensors):
        size = len(model.buffers[tensor.buffer])
        if not size:
            continue
        label = role.get(t)
        params = tensor.num_elements
        if label == BINARY_WEIGHTS:
            depth = tensor.shape[-1] if tensor.shape else 1
            params = params // max(depth, 1) * binary_channels[t]
        group = weights.setdefault(label, WeightGroup()) if label else other
        group.tensors += 1
        group.parameters += params
        group.bytes += size


def _signatures(
    model: ir.Model, infos: list[list[TensorInfo]], per_subgraph: list[dict[str, int]]
) -> list[SignatureInfo]:
    defs = model.signature_defs
    if not defs and model.subgraphs:
        graph = model.subgraphs[0]
        defs = [
            ir.SignatureDef(
                "",
                0,
                {graph.tensors[t].name: t for t in graph.inputs},
                {graph.tensors[t].name: t for t in graph.outputs},
            )
        ]
    found = []
    for d in defs:
        if not 0 <= d.subgraph_index < len(model.subgraphs):
            continue
        tensors = infos[d.subgraph_index]
        reached = _called_subgraphs(model, d.subgraph_index)
        found.append(
            SignatureInfo(
                key=d.key,
                subgraph=d.subgraph_index,
                inputs={k: tensors[t] for k, t in d.inputs.items() if 0 <= t < len(tensors)},
                outputs={k: tensors[t] for k, t in d.outputs.items() if 0 <= t < len(tensors)},
                macs={k: sum(per_subgraph[s][k] for s in reached) for k in macs.KINDS},
            )
        )
    return found


def _metadata(model: ir.Model, data: bytes) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Every metadata entry decoded, the ``bnnconvert`` entry summarised, and notes on failures."""
    entries: dict[str, Any] = {}
    model_info: dict[str, str] = {}
    notes: list[str] = []
    for name, raw in model.metadata.items():
        try:
            if name == metadata.NAME:
                found = metadata.read_metadata(model)
                entries[name] = found
                if found is not None:
                    model_info = metadata.summary(found)
            elif name == tflite_metadata.NAME:
                entries[name] = metadata.read_tflite_metadata(model)
            else:
                entries[name] = _generic_entry(raw)
        except FlatbufferProblem as e:
            entries[name] = {"undecoded_bytes": len(raw)}
            notes.append(str(e))
        except UsageProblem as e:  # preprocessing this version cannot describe
            notes.append(f"the {name!r} metadata entry: {e}")
        # A JSON entry of the wrong shape (missing keys, wrong types) from another tool.
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            notes.append(
                f"the {name!r} metadata entry lacks fields bnnconvert writes "
                f"({type(e).__name__}: {e}); re-export the model to refresh it"
            )
    files = tflite_metadata.associated_file_names(data)
    if files:
        entries["associated_files"] = files
    return entries, model_info, notes


def _generic_entry(raw: bytes) -> Any:
    """JSON as its value, printable UTF-8 as text, anything else as its size."""
    text = raw.rstrip(b"\0")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return {"undecoded_bytes": len(raw)}
    try:
        return json.loads(decoded)
    except ValueError:
        return decoded if decoded.isprintable() else {"undecoded_bytes": len(raw)}
