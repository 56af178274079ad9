"""Builtin TFLite ops of the reference executor other than convolutions and LCE's own.

Element-wise math, comparisons, reductions, and ops that only move data
(slicing, splitting, stacking, transposing, gathering, resizing), written from
TFLite's reference kernels. They are what LCE 0.16 emits for the layers and
quantizers Larq offers besides the binary convolutions: ``ROUND`` for DoReFa,
``SIGN`` for ``SteHeaviside``, ``PRELU``, ``LEAKY_RELU``, ``HARD_SWISH``,
``ELU``, ``STRIDED_SLICE`` for ``Cropping2D``, ``TRANSPOSE`` for ``Permute``,
``RESIZE_*`` for ``UpSampling2D``, ``SQUARED_DIFFERENCE`` and ``RSQRT`` for
``LayerNormalization``, and so on.

Every function takes the run's context (:class:`bnnconvert.reference._Context`)
and the operator, and returns the operator's outputs. Float math is done on
the tensors' real values (dequantized if quantized); ops that only move data
keep the stored dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bnnconvert import ir
from bnnconvert.errors import FlatbufferProblem

if TYPE_CHECKING:
    from bnnconvert.reference import _Context

OpFn = Callable[["_Context", ir.Operator], list[np.ndarray]]

# Fused activation (TFLite ActivationFunctionType) -> (min, max) of the result.
ACTIVATION_RANGE: dict[int, tuple[float, float]] = {
    0: (-np.inf, np.inf),
    1: (0.0, np.inf),
    2: (-1.0, 1.0),
    3: (0.0, 6.0),
}


def activate(x: np.ndarray, code: int, opcode: str) -> np.ndarray:
    """Apply a fused activation (NONE, RELU, RELU_N1_TO_1 or RELU6) to ``x``.

    Raises:
        FlatbufferProblem: another activation (TANH, SIGN_BIT ...).
    """
    if code not in ACTIVATION_RANGE:
        raise FlatbufferProblem(
            f"{opcode} has fused activation {ir.ACTIVATIONS.get(code, code)}, which the "
            "reference executor does not implement (it does NONE, RELU, RELU_N1_TO_1, RELU6)"
        )
    lo, hi = ACTIVATION_RANGE[code]
    return x if code == 0 else np.clip(x, lo, hi)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (``std::round``, TFLite's ``TfLiteRound``)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _axis(value: int, ndim: int) -> int:
    return int(value) % ndim


# --- element-wise ----------------------------------------------------------------------


def binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpFn:
    """A broadcasting two-input float op with an optional fused activation."""

    def apply(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = fn(ctx.real(op.inputs[0]), ctx.real(op.inputs[1]))
        return [activate(y, ctx.options(op).get("fused_activation_function", 0), op.opcode)]

    return apply


def unary(fn: Callable[[np.ndarray], np.ndarray]) -> OpFn:
    """A one-input float op, computed in float64 and rounded to float32 once."""

    def apply(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return [fn(ctx.real(op.inputs[0]).astype(np.float64)).astype(np.float32)]

    return apply


def unary32(fn: Callable[[np.ndarray], np.ndarray]) -> OpFn:
    """A one-input float op computed in float32, for ops that are exact there."""

    def apply(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
        return [fn(ctx.real(op.inputs[0]))]

    return apply


def clip(lo: float, hi: float) -> OpFn:
    """``RELU``-style clamps."""
    return unary32(lambda x: np.clip(x, lo, hi))


def compare(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpFn:
    """A broadcasting comparison with a boolean result."""

    def apply(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
        return [fn(ctx.real(op.inputs[0]), ctx.real(op.inputs[1]))]

    return apply


def _select(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    condition = ctx.raw(op.inputs[0]).astype(bool)
    if op.opcode == "SELECT" and condition.ndim == 1 and ctx.raw(op.inputs[1]).ndim > 1:
        condition = condition.reshape(-1, *([1] * (ctx.raw(op.inputs[1]).ndim - 1)))
    return [np.where(condition, ctx.raw(op.inputs[1]), ctx.raw(op.inputs[2]))]


def _leaky_relu(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.real(op.inputs[0])
    alpha = np.float32(ctx.options(op).get("alpha", 0.2))
    return [np.where(x >= 0, x, x * alpha)]


def _prelu(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x, alpha = ctx.real(op.inputs[0]), ctx.real(op.inputs[1])
    return [np.where(x >= 0, x, x * alpha).astype(np.float32)]


def _hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, np.expm1(np.minimum(x, 0.0)), x)


def _cast(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    out = ctx.graph.tensors[op.outputs[0]]
    return [ctx.raw(op.inputs[0]).astype(out.dtype)]


# --- reductions ------------------------------------------------------------------------


def reduce(fn: Callable[..., np.ndarray], *, in_float64: bool = False) -> OpFn:
    """``MEAN``, ``SUM``, ``REDUCE_MAX`` ... over the axes in input 1."""

    def apply(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
        x = ctx.real(op.inputs[0])
        axes = tuple(sorted({_axis(a, x.ndim) for a in np.atleast_1d(ctx.raw(op.inputs[1]))}))
        keep = bool(ctx.options(op).get("keep_dims", False))
        if in_float64:
            x = x.astype(np.float64)
        return [np.asarray(fn(x, axis=axes, keepdims=keep)).astype(np.float32)]

    return apply


# --- moving data -----------------------------------------------------------------------


def _transpose(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    perm = [int(p) for p in ctx.raw(op.inputs[1]).reshape(-1)]
    return [np.transpose(ctx.raw(op.inputs[0]), perm)]


def _pack(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    parts = [ctx.raw(i) for i in op.inputs]
    axis = int(ctx.options(op).get("axis", 0))
    return [np.stack(parts, axis=axis % (parts[0].ndim + 1))]


def _unpack(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    axis = _axis(ctx.options(op).get("axis", 0), x.ndim)
    return [np.take(x, i, axis=axis) for i in range(x.shape[axis])]


def _split(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[1])
    axis = _axis(ctx.raw(op.inputs[0]).reshape(-1)[0], x.ndim)
    return list(np.split(x, len(op.outputs), axis=axis))


def _split_v(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    sizes = [int(s) for s in ctx.raw(op.inputs[1]).reshape(-1)]
    axis = _axis(ctx.raw(op.inputs[2]).reshape(-1)[0], x.ndim)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _slice(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    begin = [int(b) for b in ctx.raw(op.inputs[1]).reshape(-1)]
    size = [int(s) for s in ctx.raw(op.inputs[2]).reshape(-1)]
    if size and size[0] == 1 and begin[0] == 0 and x.shape[0] != 1:
        size[0] = -1  # the whole batch: the model's batch of 1 follows the run's
    ends = [
        x.shape[d] if s == -1 else b + s for d, (b, s) in enumerate(zip(begin, size, strict=True))
    ]
    index = tuple(slice(b, e) for b, e in zip(begin, ends, strict=True))
    return [x[index]]


def _strided_slice(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    o = ctx.options(op)
    begin = [int(v) for v in ctx.raw(op.inputs[1]).reshape(-1)]
    end = [int(v) for v in ctx.raw(op.inputs[2]).reshape(-1)]
    strides = [int(v) for v in ctx.raw(op.inputs[3]).reshape(-1)]
    if o.get("ellipsis_mask") or o.get("new_axis_mask"):
        raise FlatbufferProblem(
            "STRIDED_SLICE with an ellipsis or new-axis mask is not implemented by the "
            "reference executor"
        )
    begin_mask, end_mask = int(o.get("begin_mask", 0)), int(o.get("end_mask", 0))
    shrink = int(o.get("shrink_axis_mask", 0))
    index: list[slice | int] = []
    for d in range(len(begin)):
        if shrink >> d & 1:
            index.append(begin[d] % x.shape[d])
            continue
        stop: int | None = begin[d] + end[d] if o.get("offset") else end[d]
        start: int | None = None if begin_mask >> d & 1 else begin[d]
        if end_mask >> d & 1:
            stop = None
        elif d == 0 and start in (0, None) and stop == 1 and x.shape[0] != 1:
            stop = None  # the whole batch: the model's batch of 1 follows the run's
        index.append(slice(start, stop, strides[d]))
    return [np.asarray(x[tuple(index)])]


def _gather(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    indices = ctx.raw(op.inputs[1]).astype(np.int64)
    o = ctx.options(op)
    if int(o.get("batch_dims", 0)):
        raise FlatbufferProblem(
            "GATHER with batch_dims is not implemented by the reference executor"
        )
    return [np.take(x, indices, axis=_axis(o.get("axis", 0), x.ndim))]


def _resize_sources(
    out_size: int, in_size: int, align_corners: bool, half_pixel: bool
) -> tuple[np.ndarray, np.float32, np.float32]:
    """Output positions, scale and half-pixel offset along one axis (float32, as TFLite)."""
    if align_corners and out_size > 1:
        scale = np.float32((in_size - 1) / (out_size - 1))
    else:
        scale = np.float32(in_size / out_size)
    positions = np.arange(out_size, dtype=np.float32)
    offset = np.float32(0.5) if half_pixel else np.float32(0.0)
    return positions, scale, offset


def _resize_nearest(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.raw(op.inputs[0])
    o = ctx.options(op)
    align, half = bool(o.get("align_corners")), bool(o.get("half_pixel_centers"))
    out_h, out_w = (int(v) for v in ctx.raw(op.inputs[1]).reshape(-1))
    rows = []
    for out_size, in_size in ((out_h, x.shape[1]), (out_w, x.shape[2])):
        positions, scale, offset = _resize_sources(out_size, in_size, align, half)
        source = (positions + offset) * scale
        index = round_half_away(source) if align else np.floor(source)
        index = np.minimum(index.astype(np.int64), in_size - 1)
        rows.append(np.maximum(index, 0) if half else index)
    return [x[:, rows[0]][:, :, rows[1]]]


def _resize_bilinear(ctx: _Context, op: ir.Operator) -> list[np.ndarray]:
    x = ctx.real(op.inputs[0])
    o = ctx.options(op)
    align, half = bool(o.get("align_corners")), bool(o.get("half_pixel_centers"))
    out_h, out_w = (int(v) for v in ctx.raw(op.inputs[1]).reshape(-1))
    axes = []
    for out_size, in_size in ((out_h, x.shape[1]), (out_w, x.shape[2])):
        positions, scale, offset = _resize_sources(out_size, in_size, align, half)
        source = (positions + offset) * scale - offset if half else positions * scale
        lower = np.maximum(np.floor(source).astype(np.int64), 0)
        upper = np.minimum(np.ceil(source).astype(np.int64), in_size - 1)
        axes.append((lower, upper, (source - lower).astype(np.float32)))
    (y0, y1, dy), (x0, x1, dx) = axes
    dy, dx = dy[None, :, None, None], dx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - dx) + x[:, y0][:, :, x1] * dx
    bottom = x[:, y1][:, :, x0] * (1 - dx) + x[:, y1][:, :, x1] * dx
    return [(top * (1 - dy) + bottom * dy).astype(np.float32)]


OPS: dict[str, OpFn] = {
    "ADD": binary(np.add),
    "SUB": binary(np.subtract),
    "MUL": binary(np.multiply),
    "DIV": binary(np.divide),
    "POW": binary(np.power),
    "SQUARED_DIFFERENCE": binary(lambda a, b: np.square(a - b)),
    "MAXIMUM": binary(np.maximum),
    "MINIMUM": binary(np.minimum),
    "GREATER": compare(np.greater),
    "GREATER_EQUAL": compare(np.greater_equal),
    "LESS": compare(np.less),
    "LESS_EQUAL": compare(np.less_equal),
    "EQUAL": compare(np.equal),
    "NOT_EQUAL": compare(np.not_equal),
    "SELECT": _select,
    "SELECT_V2": _select,
    "RELU": clip(0.0, np.inf),
    "RELU6": clip(0.0, 6.0),
    "RELU_N1_TO_1": clip(-1.0, 1.0),
    "LEAKY_RELU": _leaky_relu,
    "PRELU": _prelu,
    "HARD_SWISH": unary32(_hard_swish),
    "ELU": unary(_elu),
    "LOGISTIC": unary(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "TANH": unary(np.tanh),
    "EXP": unary(np.exp),
    "LOG": unary(np.log),
    "SQRT": unary(np.sqrt),
    "RSQRT": unary(lambda x: 1.0 / np.sqrt(x)),
    "ABS": unary32(np.abs),
    "NEG": unary32(np.negative),
    "SIGN": unary32(np.sign),
    "ROUND": unary32(np.rint),  # TFLite rounds half to even
    "FLOOR": unary32(np.floor),
    "CEIL": unary32(np.ceil),
    "SQUARE": unary32(np.square),
    "CAST": _cast,
    "MEAN": reduce(np.mean, in_float64=True),
    "SUM": reduce(np.sum, in_float64=True),
    "REDUCE_MAX": reduce(np.max),
    "REDUCE_MIN": reduce(np.min),
    "REDUCE_PROD": reduce(np.prod, in_float64=True),
    "TRANSPOSE": _transpose,
    "PACK": _pack,
    "UNPACK": _unpack,
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "SLICE": _slice,
    "STRIDED_SLICE": _strided_slice,
    "GATHER": _gather,
    "RESIZE_NEAREST_NEIGHBOR": _resize_nearest,
    "RESIZE_BILINEAR": _resize_bilinear,
}
"""Op name -> implementation, merged into :mod:`bnnconvert.reference`'s table."""
