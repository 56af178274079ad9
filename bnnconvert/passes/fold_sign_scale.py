"""Fold the per-channel affine ops before a sign into one threshold ``ADD``.

LCE's converter leaves the batch norm in front of every ``ste_sign`` as float
ops on the whole (concatenated) feature map::

    x -> MUL(a) -> ADD(b) -> LceQuantize -> LceBconv2d

Only the sign of ``a*x + b`` survives the quantizer, and
``sign(a*x + b) = sign(a) * sign(x + b/a)``. This pass rewrites the chain to::

    x -> ADD(c) -> LceQuantize -> LceBconv2d'      (no ADD at all when every c is 0)

and folds ``sign(a) < 0`` into every consuming ``LceBconv2d`` by flipping the
bits of those input channels in its bitpacked filter. Flipping is exact for a
binary conv: ``(-x)*(-w) = x*w`` on every real pixel, and zero padding
(``pad_values=0``) contributes nothing either way; LCE derives its zero-padding
correction from the filter at prepare time, so it follows the flipped filter.
With ``pad_values=1`` a padded pixel is ``+1`` in every channel, so a flipped
channel would change the border outputs: such chains are left alone unless
the conv has no padding at all.

Exactness and ties. Rather than computing ``b/a`` in floating point, the pass
finds, per channel, the exact float32 threshold ``T`` at which the stock
graph's bit changes: the chain is monotone in ``x`` (each op is ``x*k``,
``x+k``, ``x-k``, ``k-x`` or a clamp), so its bit ``f(x) < 0`` is a ray on the
float line, and a binary search over the 2^32 ordered float32 values, with
the ops evaluated in float32 exactly as TFLite evaluates them, finds the
boundary. The new graph computes ``x + (-T) < 0``, i.e. ``x < T`` exactly
(IEEE addition is exactly zero only when ``x == T``, never ``-0.0``). So for
every input whose product ``a*x`` does not underflow, the bitpacked tensor
is bit-identical to the stock graph's on x86, ties included: an exact zero
``a*x + b == 0`` gives bit 0 (+1) in both, which is larq's ``sign(0) = +1``.

Two corner cases are decided on purpose:

- A channel whose threshold is zero or subnormal with ``a > 0`` (``b == 0``)
  gets ``T = 0``: ``x < 0``, the real-number answer. (Stock float32 sends
  ``a*x`` for subnormal negative ``x`` to ``-0.0``, which x86 reads as +1 and
  LCE's NEON bitpacking, which reads the sign bit, as -1.) When every channel
  has ``T = 0`` the ``ADD`` is dropped; an input of exactly ``-0.0`` then packs
  as -1 on aarch64 and +1 on x86, as it does in a stock graph's ``MUL`` without
  ``ADD``.
- With ``a < 0`` and ``b == 0`` the threshold is the smallest positive
  subnormal, so ``x = 0`` still gives larq's +1 after the flip (a plain
  ``x < 0`` would give -1 there).

A channel with ``a == 0`` is constant: its bit is that of ``b``. It becomes
``x + inf`` (always +1) or ``x - inf`` (always -1), exact for finite inputs.

Left alone (each counted in ``PassStats.skipped``): an intermediate tensor
read by anything but the next op of the chain (e.g. a concatenation), a
flip needed where the quantized tensor feeds something other than the input
of an ungrouped ``LceBconv2d`` or is a graph output, a flip into a conv with
``pad_values=1`` and real padding, non-float32 data, non-finite constants,
fused activations other than RELU/RELU6/RELU_N1_TO_1, and a chain that is
already a single op (nothing to remove).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnnconvert import ir
from bnnconvert.graph import AFFINE_OPS, BINARY_CONV, QUANTIZE, GraphIndex
from bnnconvert.pass_records import add_records, unique_name
from bnnconvert.passes.stats import PassStats

NAME = "fold_sign_scale"
THRESHOLD_SUFFIX = "#threshold"
SIGNS_SUFFIX = "#signs_folded"
_CLAMPS = {0: None, 1: (0.0, np.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}  # fused activations
_FLT_MAX = np.float32(np.finfo(np.float32).max)
_SMALLEST_NORMAL = np.float32(np.finfo(np.float32).tiny)


@dataclass
class _Step:
    """One op of a chain: ``kind`` is "mul", "add", "sub" (x - k) or "rsub" (k - x)."""

    op_index: int
    kind: str
    constant: np.ndarray  # float32 [C]
    clamp: tuple[float, float] | None


def _ordered(values: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys with the same order (-0.0 just below +0.0)."""
    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits)


def _from_ordered(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys < 0, (-(keys + 1)) | -0x80000000, keys).astype(np.int32)
    return bits.view(np.float32)


def _evaluate(steps: list[_Step], x: np.ndarray) -> np.ndarray:
    """The stock chain in float32, as TFLite computes it, per channel."""
    v = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for step in steps:
            k = step.constant
            if step.kind == "mul":
                v = v * k
            elif step.kind == "add":
                v = v + k
            elif step.kind == "sub":
                v = v - k
            else:
                v = k - v
            if step.clamp is not None:
                v = np.minimum(np.maximum(v, np.float32(step.clamp[0])), np.float32(step.clamp[1]))
    return v.astype(np.float32)


def thresholds(steps: list[_Step]) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: the ``ADD`` constant ``c`` and whether the channel's sign flips.

    The stock bit is ``chain(x) < 0``; the new one is ``(x + c < 0) xor flip``.
    """
    lo = np.full_like(steps[0].constant, -_FLT_MAX)
    hi = np.full_like(steps[0].constant, _FLT_MAX)
    bit_lo = _evaluate(steps, lo) < 0
    bit_hi = _evaluate(steps, hi) < 0
    # Smallest float whose bit equals bit_hi (binary search on ordered keys).
    lo_key, hi_key = _ordered(lo), _ordered(hi)
    varying = bit_lo != bit_hi
    while np.any(varying & (hi_key - lo_key > 1)):
        mid_key = lo_key + (hi_key - lo_key) // 2
        same = (_evaluate(steps, _from_ordered(mid_key)) < 0) == bit_hi
        hi_key = np.where(varying & same, mid_key, hi_key)
        lo_key = np.where(varying & ~same, mid_key, lo_key)
    threshold = _from_ordered(hi_key)
    flip = varying & bit_hi
    increasing = varying & ~bit_hi
    threshold = np.where(
        increasing & (np.abs(threshold) < _SMALLEST_NORMAL), np.float32(0), threshold
    )
    constant = np.where(varying, -threshold, np.where(bit_lo, -np.inf, np.inf))
    constant = np.where(constant == 0, np.float32(0), constant)  # never -0.0
    return constant.astype(np.float32), flip


def _channel_constant(model: ir.Model, graph: ir.Subgraph, t: int, channels: int):
    """A float32 constant broadcast along the last axis to ``[channels]``, or None."""
    data = ir.tensor_array(model, graph, t)
    if data is None or data.dtype != np.float32 or not np.all(np.isfinite(data)):
        return None
    if data.size == 1:
        return np.full(channels, data.reshape(()), dtype=np.float32)
    if data.shape[-1] == channels and data.size == channels:
        return data.reshape(channels).astype(np.float32)
    return None


def _step(model: ir.Model, graph: ir.Subgraph, index: int, out: int) -> tuple[int, _Step] | None:
    """If op ``index`` is a per-channel affine op producing ``out``, (its data input, step)."""
    op = graph.operators[index]
    if op.opcode not in AFFINE_OPS or len(op.inputs) != 2 or op.outputs != [out]:
        return None
    activation = op.options.get("fused_activation_function", 0)
    if activation not in _CLAMPS:
        return None
    shape = graph.tensors[out].shape
    channels = shape[-1] if shape else 0
    for data_pos in (0, 1):
        t, k = op.inputs[data_pos], op.inputs[1 - data_pos]
        tensor = graph.tensors[t]
        if model.buffers[tensor.buffer] or tensor.dtype != "float32" or tensor.shape != shape:
            continue
        constant = _channel_constant(model, graph, k, channels)
        if constant is None:
            return None
        kind = {"MUL": "mul", "ADD": "add"}.get(op.opcode) or ("sub" if data_pos == 0 else "rsub")
        return t, _Step(index, kind, constant, _CLAMPS[activation])
    return None


def _padding_is_zero(graph: ir.Subgraph, op: ir.Operator) -> bool:
    """True if the conv reads no padded pixel (VALID, or SAME that pads nothing)."""
    if op.options.get("padding") == 1:
        return True
    _, height, width, _ = graph.tensors[op.inputs[0]].shape
    _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    for size, k, stride, dilation in (
        (height, kh, op.options["stride_height"], op.options["dilation_height_factor"]),
        (width, kw, op.options["stride_width"], op.options["dilation_width_factor"]),
    ):
        out = -(-size // stride)
        if (out - 1) * stride + (k - 1) * dilation + 1 > size:
            return False
    return True


def _flip_problem(index: GraphIndex, packed: int) -> str | None:
    """Why the input channels of ``packed``'s consumers cannot be flipped, or None."""
    model, graph = index.model, index.graph
    if index.is_graph_output(packed):
        return "quantized tensor is a graph output"
    users = index.consumers(packed)
    if not users:
        return "quantized tensor is unused"
    for u in users:
        op = graph.operators[u]
        if op.opcode != BINARY_CONV or op.inputs[0] != packed or packed in op.inputs[1:]:
            return f"quantized tensor feeds {op.opcode}"
        filt = graph.tensors[op.inputs[1]]
        if ir.tensor_array(model, graph, op.inputs[1]) is None:
            return "binary conv filter is not constant"
        if filt.shape[-1] != ir.packed_words(op.options["channels_in"]):
            return "grouped binary conv"
        if op.options.get("pad_values") == 1 and not _padding_is_zero(graph, op):
            return "binary conv pads with +1 (pad_values=1)"
    return None


def _flip_filters(index: GraphIndex, packed: int, flip: np.ndarray) -> int:
    """XOR the flipped input channels into every consuming bconv's filter; return count."""
    model, graph = index.model, index.graph
    mask = ir.pack_bits(np.where(flip, -1.0, 1.0))
    count = 0
    for u in index.consumers(packed):
        op = graph.operators[u]
        f = op.inputs[1]
        flipped = ir.tensor_array(model, graph, f) ^ mask
        if len(index.consumers(f)) > 1:  # filter shared with another op: copy it
            tensor = graph.tensors[f]
            copy = ir.add_tensor(model, graph, tensor.name + "/sign_folded",
                                 tensor.shape, tensor.dtype, flipped)  # fmt: skip
            index.set_input(u, 1, copy)
        else:
            ir.set_tensor_array(model, graph, f, flipped)
        count += 1
    return count


def _chain(index: GraphIndex, quantize: int) -> tuple[int, list[_Step]] | str:
    """Walk back from a quantizer over single-use affine ops; (x, steps) or a skip reason."""
    steps: list[_Step] = []
    t = index.graph.operators[quantize].inputs[0]
    reason = "no affine op before the quantizer"
    while True:
        p = index.producer(t)
        if p is None:
            break
        found = _step(index.model, index.graph, p, t)
        if found is None:
            break
        if index.is_graph_output(t) or len(index.consumers(t)) != 1:
            reason = "an intermediate is used elsewhere"
            break
        t, step = found
        steps.insert(0, step)
    return (t, steps) if steps else reason


def fold_sign_scale(model: ir.Model) -> PassStats:
    """Rewrite every foldable affine chain before an ``LceQuantize`` (in place).

    Each rewrite is recorded in the model (:mod:`bnnconvert.pass_records`,
    kind ``fold_sign_scale``): the threshold tensor is renamed
    ``<name>#threshold`` (``<name>`` is the batch norm's output it replaces) and
    its record lists the flipped channels, so the layer mapping knows that it
    holds a threshold before a sign, not the batch norm's output.

    Returns:
        Counts: ``rewrites`` (chains folded), ops removed/added, and in
        ``details`` the channels flipped and binary-conv filters rewritten.
    """
    stats = PassStats(NAME)
    flipped_channels = filters = 0
    records: list[dict[str, object]] = []
    for graph_index in range(len(model.subgraphs)):
        index = GraphIndex(model, graph_index)
        graph = index.graph
        names = {t.name for t in graph.tensors}
        quantizers = [i for i, op in enumerate(graph.operators) if op.opcode == QUANTIZE]
        drop: set[int] = set()
        for q in quantizers:
            found = _chain(index, q)
            if isinstance(found, str):
                if found != "no affine op before the quantizer":
                    stats.skipped[found] += 1
                continue
            x, steps = found
            if graph.tensors[graph.operators[q].inputs[0]].dtype != "float32":
                stats.skipped["not float32"] += 1
                continue
            constant, flip = thresholds(steps)
            keep_add = bool(np.any(constant != 0))
            if len(steps) <= int(keep_add):
                stats.skipped["already a single threshold op"] += 1
                continue
            packed = graph.operators[q].outputs[0]
            if flip.any():
                problem = _flip_problem(index, packed)
                if problem:
                    stats.skipped[problem] += 1
                    continue
                filters += _flip_filters(index, packed, flip)
                flipped_channels += int(flip.sum())
            last = steps[-1].op_index
            drop.update(s.op_index for s in steps[:-1])
            final = graph.operators[last].outputs[0]
            stood_for = graph.tensors[final].name
            record: dict[str, object] = {
                "stood_for": stood_for,
                "flipped_channels": [int(c) for c in np.flatnonzero(flip)],
            }
            if keep_add:
                c = ir.add_tensor(model, graph, stood_for + "/sign_threshold", [constant.size],
                                  "float32", constant)  # fmt: skip
                index.replace_op(last, ir.Operator(
                    "ADD", [x, c], [final], {"fused_activation_function": 0,
                                             "pot_scale_int16": True}, "AddOptions",
                ))  # fmt: skip
                graph.tensors[final].name = unique_name(graph, stood_for + THRESHOLD_SUFFIX, names)
                record["threshold"] = graph.tensors[final].name
            else:
                drop.add(last)
                index.set_input(q, 0, x)
                graph.tensors[packed].name = unique_name(
                    graph, graph.tensors[packed].name + SIGNS_SUFFIX, names
                )
                record["threshold"] = None
            record["signs"] = graph.tensors[packed].name
            records.append(record)
            stats.rewrites += 1
            stats.ops_removed += len(steps)
            stats.ops_added += int(keep_add)
        ir.remove_ops(graph, drop)
    add_records(model, NAME, records)
    stats.details = {"channels_flipped": flipped_channels, "bconv_filters_rewritten": filters}
    return stats
