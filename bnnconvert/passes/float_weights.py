"""Compact storage for the weights of the float layers (lossy, opt-in).

- ``fp16``: float conv/depthwise/dense weights and biases stored as float16,
  each behind a ``DEQUANTIZE`` op (TFLite dequantizes a constant once, at the
  first inference), the same form as TensorFlow's float16 post-training
  quantization. Arithmetic stays float32.
- ``int8``: ``CONV_2D`` weights as per-output-channel symmetric int8 (scale
  ``max|w| / 127``, zero point 0) and ``FULLY_CONNECTED`` weights as
  per-tensor symmetric int8; activations stay float and TFLite runs its
  hybrid kernels, which quantize the input on the fly: the form of
  TensorFlow's dynamic-range quantization (conv op version 5; dense version 9
  with ``asymmetric_quantize_inputs``). TensorFlow 2.21 writes per-channel
  dense as version 12, which the TFLite inside LCE 0.16 does not register, so
  dense stays per-tensor. Depthwise convs stay float, as in TensorFlow.

Binary layers are untouched: their filters are already one bit per weight and
LCE needs float32 multipliers and biases.
"""

from __future__ import annotations

import numpy as np

from bnnconvert import ir
from bnnconvert.graph import GraphIndex
from bnnconvert.passes.stats import PassStats

MODES = ("fp32", "fp16", "int8")

_FP16_INPUTS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2)}
_INT8_VERSIONS = {"CONV_2D": 5, "FULLY_CONNECTED": 9}
_FP16_MAX = float(np.finfo(np.float16).max)


def _float_constant(model: ir.Model, graph: ir.Subgraph, t: int) -> np.ndarray | None:
    if t < 0 or graph.tensors[t].dtype != "float32" or graph.tensors[t].quantization:
        return None
    return ir.tensor_array(model, graph, t)


def to_fp16(model: ir.Model) -> PassStats:
    """Store float conv/dense weights and biases as float16 + ``DEQUANTIZE`` (in place)."""
    stats = PassStats("float_weights_fp16")
    for graph in model.subgraphs:
        done: set[int] = set()
        dequantize: list[ir.Operator] = []
        for op in graph.operators:
            for position in _FP16_INPUTS.get(op.opcode, ()):
                t = op.inputs[position] if position < len(op.inputs) else -1
                data = _float_constant(model, graph, t)
                if t in done or data is None:
                    continue
                if np.abs(data).max(initial=0.0) > _FP16_MAX:
                    stats.skipped["values beyond float16 range"] += 1
                    continue
                done.add(t)
                tensor = graph.tensors[t]
                half = ir.add_tensor(model, graph, tensor.name + "/fp16", tensor.shape,
                                     "float16", data.astype(np.float16))  # fmt: skip
                tensor.buffer = 0
                dequantize.append(ir.Operator("DEQUANTIZE", [half], [t], version=3))
                stats.rewrites += 1
        graph.operators[:0] = dequantize
        stats.ops_added += len(dequantize)
    return stats


def quantize_symmetric(
    weights: np.ndarray, per_channel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8: ``(q, scale)``, one scale per row (axis 0) or one in all.

    ``weights ≈ q * scale`` broadcast along axis 0; all-zero rows get scale 1.
    """
    flat = weights.reshape(weights.shape[0], -1).astype(np.float64)
    peak = np.abs(flat).max(axis=1) if per_channel else np.full(1, np.abs(flat).max())
    scale = peak / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    divisor = scale[:, None] if per_channel else scale[0]
    q = np.clip(np.round(flat / divisor), -127, 127).astype(np.int8)
    return q.reshape(weights.shape), scale


def to_int8(model: ir.Model) -> PassStats:
    """Store ``CONV_2D`` / ``FULLY_CONNECTED`` weights as int8 for hybrid kernels (in place)."""
    stats = PassStats("float_weights_int8")
    for g in range(len(model.subgraphs)):
        index = GraphIndex(model, g)
        graph = index.graph
        for op in graph.operators:
            if op.opcode not in _INT8_VERSIONS or len(op.inputs) < 2:
                continue
            t = op.inputs[1]
            data = _float_constant(model, graph, t)
            if data is None or graph.tensors[op.inputs[0]].dtype != "float32":
                continue
            if len(index.consumers(t)) != 1:
                stats.skipped["weights shared between ops"] += 1
                continue
            dense = op.opcode == "FULLY_CONNECTED"
            q, scale = quantize_symmetric(data, per_channel=not dense)
            ir.set_tensor_array(model, graph, t, q)
            graph.tensors[t].quantization = ir.Quantization(
                scale=scale.tolist(), zero_point=[0] * scale.size, quantized_dimension=0
            )
            op.version = max(op.version, _INT8_VERSIONS[op.opcode])
            if dense:
                op.options["asymmetric_quantize_inputs"] = True
            stats.rewrites += 1
    return stats
