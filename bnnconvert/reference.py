"""A numpy reference executor for the TFLite/LCE flatbuffers bnnconvert emits.

Written from the op definitions (LCE's op documentation and kernels), not by calling
the LCE interpreter, so that it can check the interpreter and expose every
intermediate tensor::

    from bnnconvert import ir, reference

    model = ir.read(Path("model.tflite").read_bytes())
    values = reference.run(model, [x])          # x: (N, H, W, C), any batch size N
    logits = values[model.subgraphs[0].outputs[0]]

Semantics worth knowing:

- ``LceBconv2d`` computes the ±1 dot product ``dot = K - 2 * popcount(x xor w)``
  over the window (``K = kh * kw * Cin_per_group``); outside the image a
  ``pad_values=1`` input counts as +1 and a ``pad_values=0`` input as 0 (so it
  adds nothing to ``dot``). The fused activation clamps ``dot``; the float
  output is then ``float(K - dot) * m + b`` with LCE's folded
  ``m = -multiplier``, ``b = bias + K * multiplier`` (in float32, as LCE's
  reference kernel does). int8 output divides ``m, b`` by the output scale and
  adds the zero point, rounds half away from zero and saturates. Bitpacked
  output sets bit ``o`` (meaning -1) when ``popcount > output_threshold[o]``.
  These integer results are bit-exact with LCE; float results agree with LCE's
  optimised kernels to float rounding (they add the zero-padding correction
  after the multiplier instead of before).
- Builtin ops on int8/uint8 tensors are computed on dequantized values in
  float and requantized (round half away from zero): within one quantization
  step of TFLite's fixed-point kernels, not bit-exact.
- Batch size is free: the model's batch of 1 is replaced by the inputs' batch
  (``RESHAPE`` targets that start with 1 follow it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from bnnconvert import ir
from bnnconvert.errors import FlatbufferProblem, UsageProblem
from bnnconvert.reference_ops import ACTIVATION_RANGE, OPS, activate, round_half_away

Values = dict[int, np.ndarray]
OpFn = Callable[["_Context", ir.Operator], list[np.ndarray]]
Substitute = Callable[[int, list[np.ndarray]], list[np.ndarray]]
"""Called with (operator position, its stored outputs); returns the outputs to keep."""

_QUANTIZED = ("int8", "uint8", "int16")


def supported_ops() -> list[str]:
    """Operator names :func:`run` can execute."""
    return sorted(_OPS)


def first_unsupported(model: ir.Model, *, subgraph: int = 0) -> tuple[int, str] | None:
    """(position, op name) of the first operator :func:`run` cannot execute, or None."""
    for position, op in enumerate(model.subgraphs[subgraph].operators):
        if op.opcode not in _OPS:
            return position, op.opcode
    return None


def run(
    model: ir.Model,
    inputs: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    *,
    subgraph: int = 0,
    until: int | None = None,
    substitute: Substitute | None = None,
) -> Values:
    """Execute ``model`` on ``inputs``; return every tensor it computed.

    Arguments:
        model: a model from :func:`bnnconvert.ir.read`.
        inputs: arrays for the subgraph's inputs, in order (or by tensor index),
            each with a leading batch dimension of any size.
        subgraph: which subgraph to run.
        until: run only the operators before this position (e.g. the one
            :func:`first_unsupported` names).
        substitute: called after each operator; what it returns replaces the
            operator's outputs for the ops after it (how ``validate`` feeds
            each layer its Keras inputs).

    Returns:
        Tensor index -> array, for the inputs and every operator output
        (int8 tensors as int8, bitpacked tensors as int32 words).

    Raises:
        FlatbufferProblem: an operator this executor does not implement, or
            one whose options it cannot handle (the message names the op).
        UsageProblem: missing inputs or inputs of the wrong shape.
    """
    graph = model.subgraphs[subgraph]
    if not isinstance(inputs, Mapping):
        if len(inputs) != len(graph.inputs):
            raise UsageProblem(
                f"Expected {len(graph.inputs)} input array(s) for the model, got {len(inputs)}"
            )
        inputs = dict(zip(graph.inputs, inputs, strict=True))
    ctx = _Context(model, graph)
    for index in graph.inputs:
        if index not in inputs:
            raise UsageProblem(f"Expected an array for input tensor {graph.tensors[index].name!r}")
        array = np.asarray(inputs[index])
        tensor = graph.tensors[index]
        if list(array.shape[1:]) != list(tensor.shape[1:]):
            dims = ", ".join(map(str, tensor.shape[1:]))
            raise UsageProblem(
                f"Expected input {tensor.name!r} of shape (N, {dims}), got {array.shape}"
            )
        ctx.values[index] = array.astype(tensor.dtype, copy=False)
    for position, op in enumerate(graph.operators[:until]):
        fn = _OPS.get(op.opcode)
        if fn is None:
            raise FlatbufferProblem(
                f"Operator {position} is {op.opcode}, which the reference executor does not "
                f"implement; it implements {', '.join(supported_ops())}"
            )
        results = [ctx.store(i, v) for i, v in zip(op.outputs, fn(ctx, op), strict=True)]
        if substitute is not None:
            results = substitute(position, results)
        ctx.values.update(zip(op.outputs, results, strict=True))
    return ctx.values


class _Context:
    """Tensor values of one run, with constant lookup and (de)quantization."""

    def __init__(self, model: ir.Model, graph: ir.Subgraph) -> None:
        self.model = model
        self.graph = graph
        self.values: Values = {}
        self.batch = 1

    def raw(self, index: int) -> np.ndarray:
        """The stored array of a tensor (constant data or a computed value)."""
        if index in self.values:
            return self.values[index]
        data = ir.tensor_array(self.model, self.graph, index)
        if data is None:
            raise FlatbufferProblem(
                f"Tensor {self.graph.tensors[index].name!r} is read before any op writes it "
                "and has no constant data; the graph is not in execution order"
            )
        return data

    def real(self, index: int) -> np.ndarray:
        """A tensor's real value as float32 (dequantized if it is quantized)."""
        value = self.raw(index)
        quant = self.graph.tensors[index].quantization
        if quant is not None and quant.scale and value.dtype.kind in "iu":
            scale, zero = _quant_params(quant, value.ndim)
            return ((value.astype(np.float64) - zero) * scale).astype(np.float32)
        return value.astype(np.float32, copy=False)

    def store(self, index: int, value: np.ndarray) -> np.ndarray:
        """Convert a float result to the output tensor's dtype (quantizing if needed)."""
        tensor = self.graph.tensors[index]
        if tensor.dtype in _QUANTIZED and value.dtype.kind == "f":
            return quantize(value, tensor)
        return value.astype(tensor.dtype, copy=False)

    def options(self, op: ir.Operator) -> dict:
        return op.options or {}


def _quant_params(quant: ir.Quantization, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale = np.asarray(quant.scale, dtype=np.float64)
    zero = np.asarray(quant.zero_point or [0] * len(quant.scale), dtype=np.float64)
    if scale.size > 1:
        shape = [1] * ndim
        shape[quant.quantized_dimension] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return scale, zero


def quantize(value: np.ndarray, tensor: ir.Tensor) -> np.ndarray:
    """``round(value / scale) + zero_point``, saturated to the tensor's integer dtype."""
    if tensor.quantization is None or not tensor.quantization.scale:
        raise FlatbufferProblem(f"Tensor {tensor.name!r} is {tensor.dtype} without quantization")
    scale, zero = _quant_params(tensor.quantization, value.ndim)
    info = np.iinfo(tensor.dtype)
    q = round_half_away(value.astype(np.float64) / scale) + zero
    return np.clip(q, info.min, info.max).astype(tensor.dtype)


# --- windows -------------------------------------------------------------------------


def _out_and_pad(size: int, k: int, stride: int, dilation: int, same: bool) -> tuple[int, int]:
    """Output size and padding before, as TFLite computes them."""
    effective = (k - 1) * dilation + 1
    if same:
        out = -(-size // stride)
        total = max((out - 1) * stride + effective - size, 0)
        return out, total // 2
    return (size - effective + stride) // stride, 0


def _windows(
    x: np.ndarray,
    k: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    same: bool,
    fill: float | int,
) -> tuple[list[np.ndarray], int, int]:
    """The ``kh*kw`` shifted views ``(N, OH, OW, C)`` of ``x`` (padded with ``fill``)."""
    _, h, w, _ = x.shape
    oh, top = _out_and_pad(h, k[0], stride[0], dilation[0], same)
    ow, left = _out_and_pad(w, k[1], stride[1], dilation[1], same)
    need_h = (oh - 1) * stride[0] + (k[0] - 1) * dilation[0] + 1
    need_w = (ow - 1) * stride[1] + (k[1] - 1) * dilation[1] + 1
    bottom, right = max(need_h - h - top, 0), max(need_w - w - left, 0)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    views = []
    for i in range(k[0]):
        for j in range(k[1]):
            y0, x0 = i * dilation[0], j * dilation[1]
            views.append(
                x[:, y0 : y0 + (oh - 1) * stride[0] + 1 : stride[0],
                  x0 : x0 + (ow - 1) * stride[1] + 1 : stride[1], :]
            )  # fmt: skip
    return views, oh, ow


def _im2col(views: list[np.ndarray]) -> np.ndarray:
    """Stack window views into ``(N, OH, OW, kh*kw*C)`` (filter order HWI)."""
    return np.concatenate(views, axis=-1)


# --- LCE ops ---------------------------------------------------------------------------


def _lce_quantize(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    tensor = ctx.graph.tensors[op.inputs[0]]
    if x.dtype == np.bool_:
        negative = ~x
    elif x.dtype.kind in "iu":
        quant = tensor.quantization
        zero = quant.zero_point[0] if quant is not None and quant.zero_point else 0
        negative = x < zero
    else:
        negative = x < 0
    return [ir.pack_bits(np.where(negative, -1.0, 1.0).astype(np.float32))]


def _lce_dequantize(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    out = ctx.graph.tensors[op.outputs[0]]
    signs = ir.unpack_bits(ctx.raw(op.inputs[0]), out.shape[-1])
    if out.dtype == "int8":
        quant = out.quantization
        if quant is None or not quant.scale:
            raise FlatbufferProblem(f"LceDequantize output {out.name!r} is int8 without a scale")
        offset = int(round_half_away(np.float64(1.0 / np.float32(quant.scale[0]))))
        zero = quant.zero_point[0] if quant.zero_point else 0
        plus, minus = min(127, zero + offset), max(-128, zero - offset)
        return [np.where(signs > 0, plus, minus).astype(np.int8)]
    return [signs]


def _lce_bconv2d(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    o = ctx.options(op)
    try:
        cin = int(o["channels_in"])
        stride = (int(o["stride_height"]), int(o["stride_width"]))
        dilation = (int(o["dilation_height_factor"]), int(o["dilation_width_factor"]))
        same = int(o["padding"]) == 0
        pad_value = int(o["pad_values"])
        activation = int(o["fused_activation_function"])
    except KeyError as e:
        raise FlatbufferProblem(f"LceBconv2d is missing the custom option {e}") from e
    packed = ctx.raw(op.inputs[0])
    filters = ctx.raw(op.inputs[1])
    cout, kh, kw, words_per_group = filters.shape
    words = packed.shape[-1]
    groups = words // words_per_group
    cin_group = cin // groups
    if groups < 1 or words % words_per_group or cin % groups or (groups > 1 and cin_group % 32):
        raise FlatbufferProblem(
            f"LceBconv2d with {cin} input channels in {words} words cannot use filters of "
            f"{words_per_group} words per output channel"
        )
    x = ir.unpack_bits(packed, cin)
    fill = 1.0 if pad_value == 1 else 0.0
    views, oh, ow = _windows(x, (kh, kw), stride, dilation, same, fill)
    n = x.shape[0]
    k = kh * kw * cin_group
    per_group = cout // groups
    dot = np.empty((n * oh * ow, cout), dtype=np.float32)
    for g in range(groups):
        cols = _im2col([v[..., g * cin_group : (g + 1) * cin_group] for v in views])
        w = ir.unpack_bits(filters[g * per_group : (g + 1) * per_group], cin_group)
        dot[:, g * per_group : (g + 1) * per_group] = (
            cols.reshape(-1, k) @ w.reshape(per_group, k).T
        )
    # Integers below 2**24: exact in float32 whatever the summation order.
    dot_int = dot.astype(np.int64).reshape(n, oh, ow, cout)
    out = ctx.graph.tensors[op.outputs[0]]
    if out.dtype == "int32":
        thresholds = ctx.raw(op.inputs[4]).astype(np.int64)
        # popcount = (K - dot) / 2 > threshold  <=>  K - dot > 2 * threshold
        negative = (k - dot_int) > 2 * thresholds
        return [ir.pack_bits(np.where(negative, -1.0, 1.0).astype(np.float32))]
    lo, hi = ACTIVATION_RANGE.get(activation, (None, None))
    if lo is None:
        raise FlatbufferProblem(f"LceBconv2d has unknown fused activation {activation}")
    clamped = np.clip(dot_int, max(lo, -k), min(hi, k))
    backwards = (k - clamped).astype(np.float32)  # = 2 * popcount, LCE's accumulator form
    mul = ctx.raw(op.inputs[2]).astype(np.float64)
    bias = ctx.raw(op.inputs[3]).astype(np.float64)
    scale, zero = 1.0, 0.0
    if out.dtype == "int8":
        quant = out.quantization
        if quant is None or not quant.scale:
            raise FlatbufferProblem(f"LceBconv2d output {out.name!r} is int8 without a scale")
        scale = float(np.float32(quant.scale[0]))
        zero = float(quant.zero_point[0]) if quant.zero_point else 0.0
    folded_mul = (-mul / scale).astype(np.float32)
    folded_bias = ((bias + k * mul) / scale + zero).astype(np.float32)
    y = backwards * folded_mul + folded_bias
    if out.dtype == "int8":
        return [np.clip(round_half_away(y), -128, 127).astype(np.int8)]
    return [y]


def _lce_bmaxpool2d(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    o = ctx.options(op)
    words = ctx.raw(op.inputs[0]).view(np.uint32)
    views, _, _ = _windows(
        words,
        (int(o["filter_height"]), int(o["filter_width"])),
        (int(o["stride_height"]), int(o["stride_width"])),
        (1, 1),
        int(o["padding"]) == 0,
        np.uint32(0xFFFFFFFF),  # all ones: neutral for AND (outside the image is ignored)
    )
    result = views[0].copy()
    for view in views[1:]:
        np.bitwise_and(result, view, out=result)
    return [result.view(np.int32)]


# --- builtin ops -----------------------------------------------------------------------


def _conv_2d(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    o = ctx.options(op)
    x = ctx.real(op.inputs[0])
    w = ctx.real(op.inputs[1])  # OHWI
    cout, kh, kw, cin_group = w.shape
    groups = x.shape[-1] // cin_group
    views, oh, ow = _windows(
        x,
        (kh, kw),
        (o.get("stride_h", 1), o.get("stride_w", 1)),
        (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)),
        o.get("padding", 0) == 0,
        0.0,
    )
    per_group = cout // groups
    parts = []
    for g in range(groups):
        cols = _im2col([v[..., g * cin_group : (g + 1) * cin_group] for v in views])
        wg = w[g * per_group : (g + 1) * per_group].reshape(per_group, -1)
        parts.append(cols.reshape(-1, wg.shape[1]) @ wg.T)
    y = np.concatenate(parts, axis=-1).reshape(x.shape[0], oh, ow, cout)
    y = _with_bias(ctx, op, y)
    return [activate(y, o.get("fused_activation_function", 0), op.opcode)]


def _with_bias(ctx: _Context, op: ir.Operator, y: np.ndarray) -> np.ndarray:
    """Add the optional bias (input 2) of a float conv / dense op."""
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        return y + ctx.real(op.inputs[2])
    return y


def _depthwise_conv_2d(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    o = ctx.options(op)
    x = ctx.real(op.inputs[0])
    w = ctx.real(op.inputs[1])  # 1, kh, kw, Cin * multiplier
    _, kh, kw, cout = w.shape
    multiplier = cout // x.shape[-1]
    views, oh, ow = _windows(
        x,
        (kh, kw),
        (o.get("stride_h", 1), o.get("stride_w", 1)),
        (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)),
        o.get("padding", 0) == 0,
        0.0,
    )
    y = np.zeros((x.shape[0], oh, ow, cout), dtype=np.float32)
    for view, tap in zip(views, w.reshape(kh * kw, cout), strict=True):
        y += np.repeat(view, multiplier, axis=-1) * tap
    y = _with_bias(ctx, op, y)
    return [activate(y, o.get("fused_activation_function", 0), op.opcode)]


def _fully_connected(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    o = ctx.options(op)
    x = ctx.real(op.inputs[0])
    w = ctx.real(op.inputs[1])
    y = x.reshape(-1, w.shape[1]) @ w.T
    y = _with_bias(ctx, op, y)
    if o.get("keep_num_dims"):
        y = y.reshape(*x.shape[:-1], w.shape[0])
    return [activate(y, o.get("fused_activation_function", 0), op.opcode)]


def _pool(ctx: _Context, op: ir.Operator, kind: str) -> list[np.ndarray]:
    o = ctx.options(op)
    x = ctx.real(op.inputs[0])
    k = (o["filter_height"], o["filter_width"])
    stride = (o.get("stride_h", 1), o.get("stride_w", 1))
    same = o.get("padding", 0) == 0
    if kind == "max":
        views, _, _ = _windows(x, k, stride, (1, 1), same, -np.inf)
        y = np.maximum.reduce(views)
    else:
        views, _, _ = _windows(x, k, stride, (1, 1), same, 0.0)
        ones = np.ones((1, *x.shape[1:3], 1), dtype=np.float32)
        counts, _, _ = _windows(ones, k, stride, (1, 1), same, 0.0)
        y = np.add.reduce(views) / np.add.reduce(counts)
    return [activate(y.astype(np.float32), o.get("fused_activation_function", 0), op.opcode)]


def _concatenation(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    o = ctx.options(op)
    parts = [ctx.real(i) for i in op.inputs]
    y = np.concatenate(parts, axis=int(o.get("axis", 0)))
    return [activate(y, o.get("fused_activation_function", 0), op.opcode)]


def _pad(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.real(op.inputs[0])
    paddings = [tuple(int(v) for v in row) for row in ctx.raw(op.inputs[1])]
    value = 0.0
    if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = float(ctx.real(op.inputs[2]).reshape(-1)[0])
    return [np.pad(x, paddings, constant_values=value)]


def _reshape(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape = [int(v) for v in ctx.raw(op.inputs[1]).reshape(-1)]
    else:
        shape = [int(v) for v in ctx.options(op).get("new_shape", [])]
    if shape and shape[0] == 1 and x.shape and x.shape[0] != 1:
        shape[0] = -1 if -1 not in shape else x.shape[0]  # follow the run's batch size
    return [x.reshape(shape)]


def _softmax(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.real(op.inputs[0]).astype(np.float64) * float(ctx.options(op).get("beta", 1.0))
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return [(e / e.sum(axis=-1, keepdims=True)).astype(np.float32)]


def _quantize(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    return [quantize(ctx.real(op.inputs[0]), ctx.graph.tensors[op.outputs[0]])]


def _dequantize(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    return [ctx.real(op.inputs[0])]


def _squeeze(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    dims = ctx.options(op).get("squeeze_dims") or [i for i, d in enumerate(x.shape) if d == 1]
    return [np.squeeze(x, axis=tuple(int(d) % x.ndim for d in dims))]


def _transpose_conv(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    """Inputs: output shape, filter OHWI, data, optional bias (TFLite's order)."""
    o = ctx.options(op)
    out_shape = [int(v) for v in ctx.raw(op.inputs[0]).reshape(-1)]
    w = ctx.real(op.inputs[1])
    x = ctx.real(op.inputs[2])
    cout, kh, kw, _ = w.shape
    stride = (o.get("stride_h", 1), o.get("stride_w", 1))
    same = o.get("padding", 0) == 0
    # Padding as for the forward conv that maps the output back onto the input.
    _, top = _out_and_pad(out_shape[1], kh, stride[0], 1, same)
    _, left = _out_and_pad(out_shape[2], kw, stride[1], 1, same)
    n, h, width, cin = x.shape
    full_h = max((h - 1) * stride[0] + kh, out_shape[1] + top)
    full_w = max((width - 1) * stride[1] + kw, out_shape[2] + left)
    y = np.zeros((n, full_h, full_w, cout), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            contribution = x.reshape(-1, cin) @ w[:, i, j, :].T
            y[:, i : i + (h - 1) * stride[0] + 1 : stride[0],
                 j : j + (width - 1) * stride[1] + 1 : stride[1]] += contribution.reshape(
                n, h, width, cout
            )  # fmt: skip
    y = y[:, top : top + out_shape[1], left : left + out_shape[2]]
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        y = y + ctx.real(op.inputs[3])
    return [activate(y, o.get("fused_activation_function", 0), op.opcode)]


_OPS: dict[str, OpFn] = {
    **OPS,
    "LceQuantize": _lce_quantize,
    "LceDequantize": _lce_dequantize,
    "LceBconv2d": _lce_bconv2d,
    "LceBMaxPool2d": _lce_bmaxpool2d,
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "TRANSPOSE_CONV": _transpose_conv,
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": lambda ctx, op: _pool(ctx, op, "max"),
    "AVERAGE_POOL_2D": lambda ctx, op: _pool(ctx, op, "average"),
    "CONCATENATION": _concatenation,
    "PAD": _pad,
    "PADV2": _pad,
    "RESHAPE": _reshape,
    "SQUEEZE": _squeeze,
    "SOFTMAX": _softmax,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
}


def with_outputs(model: ir.Model, tensors: Sequence[int], *, subgraph: int = 0) -> ir.Model:
    """A copy of ``model`` whose subgraph outputs are ``tensors`` (signatures dropped).

    Running the copy in the LCE interpreter exposes those intermediate tensors,
    which the interpreter otherwise does not return: the way to compare the
    interpreter with :func:`run` tensor by tensor.
    """
    clone = copy.deepcopy(model)
    clone.subgraphs[subgraph].outputs = [int(t) for t in tensors]
    clone.signature_defs = []
    return clone
