"""cleanup: dead ops, tensors and buffers go; identical constants share one buffer."""

from __future__ import annotations

import copy

import numpy as np
from passes_helpers import KERNELS, predict

from bnnconvert import ir
from bnnconvert.passes import OptimizeOptions, optimize
from bnnconvert.passes.cleanup import cleanup

CLEANUP_ONLY = OptimizeOptions(fold_sign_scale=False)


def _with_dead_and_duplicate(stock: bytes) -> bytes:
    """Add a dead MUL branch and a second copy of a constant used by a live op."""
    model = ir.read(stock)
    graph = model.subgraphs[0]
    data_in = graph.operators[0].outputs[0]
    shape = graph.tensors[data_in].shape
    scale = np.full(shape[-1], 2.0, np.float32)
    scale_t = ir.add_tensor(model, graph, "dead/scale", [shape[-1]], "float32", scale)
    dead_out = ir.add_tensor(model, graph, "dead/out", shape, "float32")
    options = {"fused_activation_function": 0}
    dead = ir.Operator("MUL", [data_in, scale_t], [dead_out], options, "MulOptions")
    graph.operators.insert(1, dead)
    # Duplicate the filter of the first LceBconv2d into a fresh buffer.
    conv = next(op for op in graph.operators if op.opcode == "LceBconv2d")
    t = graph.tensors[conv.inputs[1]]
    data = ir.tensor_array(model, graph, conv.inputs[1]).copy()
    conv.inputs[1] = ir.add_tensor(model, graph, t.name + "/copy", t.shape, t.dtype, data)
    return ir.write(model)


def test_removes_dead_op_and_shares_duplicate_constant(tiny_bnn_tflite):
    messy = _with_dead_and_duplicate(tiny_bnn_tflite)
    cleaned, stats = optimize(messy, CLEANUP_ONLY)
    (s,) = stats
    assert s.ops_removed == 1
    assert s.details["tensors_sharing_a_buffer"] >= 1
    assert s.details["tensors_removed"] >= 3  # dead output, its constant, the unused filter
    assert s.bytes_saved > 0
    names = {t.name for t in ir.read(cleaned).subgraphs[0].tensors}
    assert "dead/out" not in names and "dead/scale" not in names
    assert len(cleaned) <= len(tiny_bnn_tflite)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    for kernel in KERNELS.values():
        np.testing.assert_array_equal(predict(cleaned, x, **kernel), predict(messy, x, **kernel))


def test_leaves_a_clean_graph_alone(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    before = copy.deepcopy(model)
    stats = cleanup(model)
    assert stats.ops_removed == 0
    assert [op.opcode for op in model.subgraphs[0].operators] == [
        op.opcode for op in before.subgraphs[0].operators
    ]
    # LCE already shares identical constants (e.g. the zero bias); nothing else to merge.
    assert len(model.buffers) <= len(before.buffers)


def test_keeps_graph_outputs_and_custom_ops_even_if_unread(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    quantize_out = next(op for op in graph.operators if op.opcode == "LceQuantize").outputs[0]
    graph.outputs.append(quantize_out)  # an extra output nothing else reads
    stats = cleanup(model)
    assert stats.ops_removed == 0
    assert graph.tensors[graph.outputs[-1]].dtype == "int32"
