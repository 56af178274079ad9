"""Multiply-accumulates per op: the one definition that ``inspect`` and the export audit use.

Counts are per inference at the batch size stored in the model (1 for LCE's
converter); the batch dimension (dimension 0) of activations is left out.
``OH, OW`` (``OD``) are the output's spatial sizes, ``IH, IW`` (``ID``) the
input's, ``kh, kw`` (``kd``) the filter's, ``Cout`` its output channels and
``Cin_g`` its input channels per group:

- ``LceBconv2d`` (*binary*): ``OH·OW·Cout·kh·kw·Cin_g``. ``Cout`` is the
  filter's dimension 0 (the length of the post-activation multiplier), never
  the output tensor's last dimension, which counts 32-bit words when the op
  writes bitpacked output. ``Cin_g`` is the ``channels_in`` option, capped by
  the packed filter depth × 32 (the channels of one group).
- ``CONV_2D``: ``OH·OW·Cout·kh·kw·Cin_g`` (filter ``[Cout, kh, kw, Cin_g]``).
- ``DEPTHWISE_CONV_2D``: ``OH·OW·Cout·kh·kw`` (filter ``[1, kh, kw, Cout]``; the
  depth multiplier is already in ``Cout``).
- ``FULLY_CONNECTED``: output elements × input depth (filter ``[Cout, Cin]``).
- ``TRANSPOSE_CONV``: ``IH·IW·Cin·kh·kw·Cout`` (filter ``[Cout, kh, kw, Cin]``):
  every input pixel is multiplied into a ``kh×kw×Cout`` window of the output,
  the standard count for a transposed convolution (the same as the forward
  convolution it is the gradient of). TFLite's op has no groups.
- ``CONV_3D``: ``OD·OH·OW·Cout·kd·kh·kw·Cin_g`` (filter ``[kd, kh, kw, Cin_g, Cout]``);
  ``CONV_3D_TRANSPOSE``: ``ID·IH·IW·Cin·kd·kh·kw·Cout`` (filter ``[kd, kh, kw, Cout, Cin]``).
- ``BATCH_MATMUL`` with a constant operand: output elements × the contracted
  dimension (``BATCH_MATMUL`` of two activations is not counted).

Biases, batch-norm ``MUL``/``ADD``, element-wise ops and pooling are not counted.

The *kind* of the MACs is what the kernel computes in: ``binary`` for
``LceBconv2d``; ``int8`` when the activation input is int8/uint8, or float with
int8 weights stored as they are (TFLite's hybrid kernels quantize the input
and multiply in int8); ``int16`` for int16 activations; ``float`` otherwise
(float32, or float16 weights behind a ``DEQUANTIZE``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bnnconvert import ir

KINDS = ("binary", "int8", "int16", "float")
"""MAC kinds, in the order reports list them."""


@dataclass(frozen=True)
class OpMacs:
    """The MACs of one op and the op inputs that hold its weights.

    Attributes:
        macs: multiply-accumulates per inference.
        kind: one of :data:`KINDS`.
        filter: op-input position of the filter/weight tensor.
        bias: op-input position of the bias, or None when the op has none.
    """

    macs: int
    kind: str
    filter: int
    bias: int | None


# opcode -> (activation input, filter input, bias input) positions.
_LAYOUT: dict[str, tuple[int, int, int | None]] = {
    "LceBconv2d": (0, 1, None),
    "CONV_2D": (0, 1, 2),
    "DEPTHWISE_CONV_2D": (0, 1, 2),
    "FULLY_CONNECTED": (0, 1, 2),
    "TRANSPOSE_CONV": (2, 1, 3),
    "CONV_3D": (0, 1, 2),
    "CONV_3D_TRANSPOSE": (2, 1, 3),
}
COUNTED_OPS = (*_LAYOUT, "BATCH_MATMUL")
"""The ops that get MACs."""


def _product(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def producers(graph: ir.Subgraph) -> dict[int, int]:
    """Tensor index -> index of the op that writes it, for every op output of ``graph``."""
    return {t: i for i, op in enumerate(graph.operators) for t in op.outputs}


def constant_source(
    model: ir.Model, graph: ir.Subgraph, tensor_index: int, written_by: dict[int, int]
) -> int | None:
    """The constant tensor behind an op input, looking through one ``DEQUANTIZE``; or None.

    Arguments:
        tensor_index: an op input (``-1`` for an omitted optional input).
        written_by: :func:`producers` of ``graph``.
    Returns:
        The index of the tensor that holds the data: ``tensor_index`` itself, the
        input of the ``DEQUANTIZE`` that writes it, or None for an activation.
    """
    if tensor_index < 0:
        return None
    if model.buffers[graph.tensors[tensor_index].buffer]:
        return tensor_index
    producer = written_by.get(tensor_index)
    if producer is not None and graph.operators[producer].opcode == "DEQUANTIZE":
        source = graph.operators[producer].inputs[0]
        if source >= 0 and model.buffers[graph.tensors[source].buffer]:
            return source
    return None


def bconv_channels(op: ir.Operator, filter_shape: list[int]) -> int:
    """Input channels per group of an ``LceBconv2d``: ``channels_in``, capped by packed depth."""
    packed = filter_shape[-1] * 32 if filter_shape else 0
    channels_in = op.options.get("channels_in")
    if not isinstance(channels_in, int) or isinstance(channels_in, bool) or channels_in < 0:
        return packed
    return min(channels_in, packed)


def _kind(model: ir.Model, graph: ir.Subgraph, activation: int, weights: int) -> str:
    dtype = graph.tensors[activation].dtype if activation >= 0 else "float32"
    if dtype in ("int8", "uint8"):
        return "int8"
    if dtype == "int16":
        return "int16"
    stored = graph.tensors[weights]
    if stored.dtype in ("int8", "uint8", "int4") and model.buffers[stored.buffer]:
        return "int8"  # hybrid kernel: weights used as stored, input quantized on the fly
    return "float"


def count_op(
    model: ir.Model, graph: ir.Subgraph, op: ir.Operator, written_by: dict[int, int]
) -> OpMacs | None:
    """The MACs of ``op`` (see the module docstring), or None if it is not counted.

    Ops with unknown (``-1``) dimensions, missing inputs or unexpected ranks are not counted.

    Arguments:
        written_by: :func:`producers` of ``graph``.
    """
    if op.opcode == "BATCH_MATMUL":
        return _batch_matmul(model, graph, op, written_by)
    layout = _LAYOUT.get(op.opcode)
    if layout is None or not op.outputs or op.outputs[0] < 0:
        return None
    act, filt, bias = layout
    if len(op.inputs) <= max(act, filt) or op.inputs[filt] < 0 or op.inputs[act] < 0:
        return None
    w = graph.tensors[op.inputs[filt]].shape
    out = graph.tensors[op.outputs[0]].shape
    inp = graph.tensors[op.inputs[act]].shape
    if any(d < 0 for d in w + out + inp):
        return None
    bias_at = bias if bias is not None and len(op.inputs) > bias and op.inputs[bias] >= 0 else None
    code = op.opcode
    if code in ("LceBconv2d", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and len(w) != 4:
        return None
    if code == "LceBconv2d" and len(out) == 4:
        macs = _product(out[1:3]) * w[0] * w[1] * w[2] * bconv_channels(op, w)
        return OpMacs(macs, "binary", filt, None)
    if code == "CONV_2D" and len(out) == 4:
        macs = _product(out[1:3]) * w[0] * w[1] * w[2] * w[3]
    elif code == "DEPTHWISE_CONV_2D" and len(out) == 4:
        macs = _product(out[1:3]) * w[1] * w[2] * w[3]
    elif code == "FULLY_CONNECTED" and len(w) == 2 and out:
        macs = _product(out[1:] if len(out) > 1 else out) * w[1]
    elif code == "TRANSPOSE_CONV" and len(inp) == 4:
        macs = _product(inp[1:3]) * inp[3] * w[1] * w[2] * w[0]
    elif code == "CONV_3D" and len(w) == 5 and len(out) == 5:
        macs = _product(out[1:4]) * _product(w)
    elif code == "CONV_3D_TRANSPOSE" and len(w) == 5 and len(inp) == 5:
        macs = _product(inp[1:4]) * _product(w)
    else:
        return None
    return OpMacs(macs, _kind(model, graph, op.inputs[act], op.inputs[filt]), filt, bias_at)


def _batch_matmul(
    model: ir.Model, graph: ir.Subgraph, op: ir.Operator, written_by: dict[int, int]
) -> OpMacs | None:
    if len(op.inputs) < 2 or not op.outputs or min(op.inputs[:2]) < 0:
        return None
    constant = [constant_source(model, graph, t, written_by) is not None for t in op.inputs[:2]]
    if constant == [False, False] or constant == [True, True]:
        return None
    weights = 1 if constant[1] else 0
    a = graph.tensors[op.inputs[0]].shape
    out = graph.tensors[op.outputs[0]].shape
    if len(a) < 2 or any(d < 0 for d in a + out):
        return None
    depth = a[-2] if op.options.get("adj_x") else a[-1]
    macs = _product(out) * depth
    kind = _kind(model, graph, op.inputs[1 - weights], op.inputs[weights])
    return OpMacs(macs, kind, weights, None)


def count_subgraph(model: ir.Model, graph: ir.Subgraph) -> list[OpMacs | None]:
    """:func:`count_op` for every op of ``graph``, in op order."""
    written_by = producers(graph)
    return [count_op(model, graph, op, written_by) for op in graph.operators]


def totals(counted: list[OpMacs | None]) -> dict[str, int]:
    """MACs summed by kind; every kind of :data:`KINDS` present (0 when none)."""
    sums = dict.fromkeys(KINDS, 0)
    for c in counted:
        if c is not None:
            sums[c.kind] += c.macs
    return sums


def binary_share(by_kind: dict[str, int]) -> float:
    """Binary MACs over all counted MACs (0.0 when nothing is counted)."""
    total = sum(by_kind.values())
    return by_kind.get("binary", 0) / total if total else 0.0


class MacsByKind:
    """Read-only views of a ``macs`` dict (kind -> MACs, see :func:`totals`) on a result."""

    macs: dict[str, int]

    @property
    def binary_macs(self) -> int:
        return self.macs["binary"]

    @property
    def float_macs(self) -> int:
        """MACs computed in float (int8/int16 MACs are not float: see ``macs``)."""
        return self.macs["float"]

    @property
    def int8_macs(self) -> int:
        return self.macs["int8"]

    @property
    def binary_mac_share(self) -> float:
        return binary_share(self.macs)
