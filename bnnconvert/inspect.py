"""What is inside a TFLite/LCE flatbuffer: ops, weights, MACs, what is binary.

Definitions (all counts are per inference at the batch size stored in the
model, which is 1 for LCE's converter):

- **MACs** are counted from shapes for the ops that dominate compute:
  ``LceBconv2d`` is *binary*: ``OH·OW·Cout·kh·kw·Cin_g`` (``Cin_g`` = input
  channels per group, i.e. ``channels_in`` unless the filter is grouped);
  ``CONV_2D`` likewise, ``DEPTHWISE_CONV_2D``: ``OH·OW·C·kh·kw`` (times the
  depth multiplier, already in ``C``), ``FULLY_CONNECTED``: output elements ×
  input depth are *float* (whatever the storage type, int8 included).
  Element-wise ops, pooling and the batch-norm ``MUL``/``ADD`` are not counted.
- **Weights** are constant tensors, each counted once:
  *binary* = bitpacked ``LceBconv2d`` filters (parameters = ±1 weights, bytes =
  the packed words); *float* = weights and biases of the float compute ops
  above, by storage dtype (float32, float16, int8, ...), followed through a
  ``DEQUANTIZE`` when the converter stored them as float16 or int8; *other* =
  every other constant (batch-norm scales and offsets, ``LceBconv2d``
  multipliers, biases and thresholds, shape operands).
- **Float-equivalent size** = file size − binary weight bytes + 4 bytes per
  binary parameter (every binary weight stored as float32);
  **compression ratio** = float-equivalent size / file size.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bnnconvert import ir, metadata
from bnnconvert.errors import FlatbufferProblem, UsageProblem

FLOAT_COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
BINARY_COMPUTE_OPS = ("LceBconv2d",)
_ENUM_OPTIONS = {"padding": ir.PADDING, "fused_activation_function": ir.ACTIVATIONS}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    constant: bool


@dataclass
class OpInfo:
    subgraph: int
    index: int
    type: str
    inputs: list[TensorInfo | None]
    outputs: list[TensorInfo]
    options: dict[str, Any]
    macs: int = 0
    mac_kind: str | None = None  # "binary", "float" or None (not counted)


@dataclass
class WeightGroup:
    tensors: int = 0
    parameters: int = 0
    bytes: int = 0


@dataclass
class InspectResult:
    source: str
    size_bytes: int
    ops: list[OpInfo]
    op_histogram: dict[str, int]
    binary_weights: WeightGroup
    float_weights: dict[str, WeightGroup]  # by storage dtype
    other_constants: WeightGroup
    binary_macs: int
    float_macs: int
    float_equivalent_bytes: int
    metadata: dict[str, str]  # name -> short decoded view
    subgraphs: int = 1
    model_info: dict[str, str] = field(default_factory=dict)  # bnnconvert metadata, summarised
    notes: list[str] = field(default_factory=list)

    @property
    def binary_mac_share(self) -> float:
        total = self.binary_macs + self.float_macs
        return self.binary_macs / total if total else 0.0

    @property
    def compression_ratio(self) -> float:
        return self.float_equivalent_bytes / self.size_bytes if self.size_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["binary_mac_share"] = self.binary_mac_share
        out["compression_ratio"] = self.compression_ratio
        return out


def _load(model: Path | str | bytes) -> tuple[str, bytes]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(model)
    path = Path(model)
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError as e:
        raise UsageProblem(f"{path}: no such file; give the path of a .tflite model") from e
    except IsADirectoryError as e:
        raise UsageProblem(f"{path} is a directory; give the path of a .tflite model") from e
    except OSError as e:
        raise UsageProblem(f"{path}: cannot read it ({e.strerror}); check the path") from e


def _options_view(op: ir.Operator) -> dict[str, Any]:
    view = {}
    for key, value in op.options.items():
        names = _ENUM_OPTIONS.get(key)
        view[key] = names.get(value, value) if names and isinstance(value, int) else value
    if op.raw_custom_options is not None:
        view["raw_custom_options_bytes"] = len(op.raw_custom_options)
    return view


def _metadata_view(data: bytes, limit: int = 80) -> str:
    text = data.rstrip(b"\0")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes>"
    try:
        decoded = json.dumps(json.loads(decoded), separators=(",", ":"))
    except ValueError:
        if not decoded.isprintable():
            return f"<{len(data)} bytes>"
    return decoded if len(decoded) <= limit else decoded[: limit - 3] + "..."


def _per_image(shape: list[int]) -> int:
    """Elements of an activation shape without its batch dimension."""
    n = 1
    for dim in shape[1:]:
        n *= max(dim, 0)
    return n


def _bconv_channels(op: ir.Operator, filter_shape: list[int]) -> int:
    """Input channels per group of a bconv: ``channels_in``, capped by the packed filter depth."""
    packed = filter_shape[-1] * 32 if filter_shape else 0
    channels_in = op.options.get("channels_in")
    if not isinstance(channels_in, int) or isinstance(channels_in, bool) or channels_in < 0:
        return packed
    return min(channels_in, packed)


def _count_macs(op: ir.Operator, graph: ir.Subgraph) -> tuple[int, str | None]:
    if (
        op.opcode not in FLOAT_COMPUTE_OPS + BINARY_COMPUTE_OPS
        or len(op.inputs) < 2
        or op.inputs[1] < 0
        or not op.outputs
    ):
        return 0, None
    weights = graph.tensors[op.inputs[1]].shape
    out = graph.tensors[op.outputs[0]].shape
    if any(dim < 0 for dim in weights):
        return 0, None
    if op.opcode == "LceBconv2d" and len(weights) == 4:
        return _per_image(out) * weights[1] * weights[2] * _bconv_channels(op, weights), "binary"
    if op.opcode == "CONV_2D" and len(weights) == 4:
        return _per_image(out) * weights[1] * weights[2] * weights[3], "float"
    if op.opcode == "DEPTHWISE_CONV_2D" and len(weights) == 4:
        return _per_image(out) * weights[1] * weights[2], "float"
    if op.opcode == "FULLY_CONNECTED" and len(weights) == 2:
        return _per_image(out) * weights[1], "float"
    return 0, None


def _weight_source(
    graph: ir.Subgraph, tensor_index: int, model: ir.Model, producers: dict[int, int]
) -> int | None:
    """The constant behind an op input, looking through one DEQUANTIZE."""
    if tensor_index < 0:
        return None
    if model.buffers[graph.tensors[tensor_index].buffer]:
        return tensor_index
    producer = producers.get(tensor_index)
    if producer is not None and graph.operators[producer].opcode == "DEQUANTIZE":
        inputs = graph.operators[producer].inputs
        if inputs and inputs[0] >= 0 and model.buffers[graph.tensors[inputs[0]].buffer]:
            return inputs[0]
    return None


def inspect_model(model: Path | str | bytes) -> InspectResult:
    """Describe a TFLite/LCE model: per-op table, weights, MACs, size, metadata.

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
    binary_macs = float_macs = 0
    binary_weights, other = WeightGroup(), WeightGroup()
    float_weights: dict[str, WeightGroup] = {}
    role: dict[tuple[int, int], str] = {}  # (subgraph, tensor) -> "binary" / "float"
    binary_channels: dict[tuple[int, int], int] = {}  # (subgraph, filter) -> channels per group
    for s, graph in enumerate(graph_ir.subgraphs):
        producers = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}

        def info(t: int, graph: ir.Subgraph = graph) -> TensorInfo | None:
            if t < 0:
                return None
            tensor = graph.tensors[t]
            constant = bool(graph_ir.buffers[tensor.buffer])
            return TensorInfo(t, tensor.name, tensor.shape, tensor.dtype, constant)

        for i, op in enumerate(graph.operators):
            macs, kind = _count_macs(op, graph)
            binary_macs += macs if kind == "binary" else 0
            float_macs += macs if kind == "float" else 0
            inputs = [info(t) for t in op.inputs]
            outputs = [info(t) for t in op.outputs]
            ops.append(OpInfo(s, i, op.opcode, inputs, outputs, _options_view(op), macs, kind))
            if kind == "binary":
                weight = _weight_source(graph, op.inputs[1], graph_ir, producers)
                if weight is not None:
                    role[s, weight] = "binary"
                    shape = graph.tensors[op.inputs[1]].shape
                    binary_channels[s, weight] = _bconv_channels(op, shape)
            elif kind == "float":
                for t in op.inputs[1:3]:
                    weight = _weight_source(graph, t, graph_ir, producers)
                    if weight is not None:
                        role.setdefault((s, weight), "float")
        for t, tensor in enumerate(graph.tensors):
            size = len(graph_ir.buffers[tensor.buffer])
            if not size:
                continue
            kind = role.get((s, t))
            if kind == "binary":
                group = binary_weights
                params = 1
                for dim in tensor.shape[:-1]:
                    params *= dim
                params *= binary_channels[s, t]
            else:
                group = float_weights.setdefault(tensor.dtype, WeightGroup()) if kind else other
                params = tensor.num_elements
            group.tensors += 1
            group.parameters += params
            group.bytes += size
    model_info, notes = _model_info(graph_ir)
    float_equivalent = len(data) - binary_weights.bytes + 4 * binary_weights.parameters
    histogram = Counter(op.type for op in ops)
    return InspectResult(
        source=source,
        size_bytes=len(data),
        ops=ops,
        op_histogram=dict(histogram.most_common()),
        binary_weights=binary_weights,
        float_weights=float_weights,
        other_constants=other,
        binary_macs=binary_macs,
        float_macs=float_macs,
        float_equivalent_bytes=float_equivalent,
        metadata={k: _metadata_view(v) for k, v in graph_ir.metadata.items()},
        subgraphs=len(graph_ir.subgraphs),
        model_info=model_info,
        notes=notes,
    )


def _model_info(model: ir.Model) -> tuple[dict[str, str], list[str]]:
    """The ``bnnconvert`` metadata entry summarised, or a note saying why it cannot be."""
    try:
        found = metadata.read_metadata(model)
        return (metadata.summary(found) if found is not None else {}), []
    except FlatbufferProblem as e:
        return {}, [str(e)]
    # A JSON entry of the wrong shape (missing keys, wrong types) from another tool.
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return {}, [
            f"the {metadata.NAME!r} metadata entry lacks fields bnnconvert writes "
            f"({type(e).__name__}: {e}); re-export the model to refresh it"
        ]


def _tensor_cell(t: TensorInfo | None) -> str:
    if t is None:
        return "–"
    shape = "x".join(str(d) for d in t.shape) or "scalar"
    return f"{t.index}:{shape} {t.dtype}{' (const)' if t.constant else ''}"


def _fmt_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def render_markdown(result: InspectResult) -> str:
    """The inspect report as Markdown: summary, weights, metadata, then one row per op."""
    fw = result.float_weights
    float_total = WeightGroup(
        sum(g.tensors for g in fw.values()),
        sum(g.parameters for g in fw.values()),
        sum(g.bytes for g in fw.values()),
    )
    float_kinds = ", ".join(f"{k}: {g.parameters:,}" for k, g in fw.items()) or "none"
    lines = [
        f"# {result.source}",
        "",
        f"- size: {result.size_bytes:,} bytes; float-equivalent {result.float_equivalent_bytes:,} "
        f"bytes; compression ratio {result.compression_ratio:.2f}x",
        f"- MACs: {result.binary_macs:,} binary, {result.float_macs:,} float; "
        f"binary share {result.binary_mac_share:.1%}",
        "- ops: " + ", ".join(f"{k} {v}" for k, v in result.op_histogram.items()),
        "",
        "| weights | tensors | parameters | bytes |",
        "|---|---:|---:|---:|",
    ]
    for name, g in (
        ("binary (bitpacked)", result.binary_weights),
        (f"float ({float_kinds})", float_total),
        ("other constants", result.other_constants),
    ):
        lines.append(f"| {name} | {g.tensors} | {g.parameters:,} | {g.bytes:,} |")
    if result.model_info:
        lines += ["", "| model | |", "|---|---|"]
        lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in result.model_info.items()]
    if result.metadata:
        lines += ["", "| metadata | value |", "|---|---|"]
        lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in result.metadata.items()]
    lines += [f"\nnote: {note}" for note in result.notes]
    lines += ["", "| # | op | inputs | outputs | options | MACs |", "|---:|---|---|---|---|---:|"]
    for op in result.ops:
        macs = f"{op.macs:,} {op.mac_kind}" if op.mac_kind else ""
        number = f"{op.subgraph}.{op.index}" if result.subgraphs > 1 else str(op.index)
        lines.append(
            f"| {number} | {op.type} | {'<br>'.join(_tensor_cell(t) for t in op.inputs)} "
            f"| {'<br>'.join(_tensor_cell(t) for t in op.outputs)} "
            f"| {_fmt_options(op.options)} | {macs} |"
        )
    return "\n".join(lines) + "\n"
