"""Shared helpers for the graph-pass tests: run graphs, expose intermediates, compare."""

from __future__ import annotations

import numpy as np

from bnnconvert import _tf, ir, reference

KERNELS = {
    "reference": {"use_reference_bconv": True},
    "indirect": {"use_indirect_bgemm": True},
    "default": {},
}


def convert(model) -> bytes:
    """LCE's converter, arm target (what export uses for arm64)."""
    return bytes(_tf.lce().convert_keras_model(model))


def predict(flatbuffer: bytes, x: np.ndarray, **kernel) -> np.ndarray:
    """The first model output for a batch, in the LCE interpreter."""
    out = _tf.lce_interpreter(flatbuffer, **kernel).predict(x)
    return out[0] if isinstance(out, list) else out


def named_outputs(flatbuffer: bytes, names: list[str], x: np.ndarray, **kernel) -> dict:
    """The tensors called ``names`` (intermediates included), by name, in the LCE interpreter."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    index = {t.name: i for i, t in enumerate(graph.tensors)}
    wanted = [index[name] for name in names]
    out = _tf.lce_interpreter(ir.write(reference.with_outputs(model, wanted)), **kernel).predict(x)
    out = out if isinstance(out, list) else [out]
    return dict(zip(names, out, strict=True))


def opcodes_before_quantizers(flatbuffer: bytes) -> list[str]:
    """The opcode producing each ``LceQuantize`` input ("input" for a graph input)."""
    graph = ir.read(flatbuffer).subgraphs[0]
    found = []
    for op in graph.operators:
        if op.opcode == "LceQuantize":
            p = ir.producer(graph, op.inputs[0])
            found.append("input" if p is None else graph.operators[p].opcode)
    return found


def pre_sign_muls(flatbuffer: bytes) -> int:
    """MULs on the elementwise path (MUL/ADD/SUB) straight into an ``LceQuantize``."""
    graph = ir.read(flatbuffer).subgraphs[0]
    count = 0
    for op in graph.operators:
        if op.opcode != "LceQuantize":
            continue
        p = ir.producer(graph, op.inputs[0])
        while p is not None and graph.operators[p].opcode in ("MUL", "ADD", "SUB"):
            count += graph.operators[p].opcode == "MUL"
            p = ir.producer(graph, graph.operators[p].inputs[0])
    return count


def assert_fold_exact(stock: bytes, folded: bytes, x: np.ndarray, **kernel) -> int:
    """Every bitpacked tensor and binary-conv output of ``folded`` equals ``stock``'s.

    Quantized tensors are compared after undoing the folded sign flips (the XOR
    of the stock and folded filters of their first consumer). Returns how many
    bitpacked tensors were compared.
    """
    model = ir.read(folded)
    graph = model.subgraphs[0]
    stock_model = ir.read(stock)
    stock_graph = stock_model.subgraphs[0]
    stock_index = {t.name: i for i, t in enumerate(stock_graph.tensors)}
    packed, conv_out, masks = [], [], {}
    for op in graph.operators:
        if op.opcode == "LceQuantize":
            name = graph.tensors[op.outputs[0]].name
            packed.append(name)
            users = ir.consumers(graph, op.outputs[0])
            mask = 0
            if users and graph.operators[users[0]].opcode == "LceBconv2d":
                conv = graph.operators[users[0]]
                stock_conv = stock_graph.operators[ir.consumers(stock_graph, stock_index[name])[0]]
                new = ir.tensor_array(model, graph, conv.inputs[1])
                old = ir.tensor_array(stock_model, stock_graph, stock_conv.inputs[1])
                mask = (new ^ old)[0, 0, 0]
            masks[name] = mask
        if op.opcode == "LceBconv2d":
            conv_out.append(graph.tensors[op.outputs[0]].name)
    names = packed + conv_out
    ours = named_outputs(folded, names, x, **kernel)
    theirs = named_outputs(stock, names, x, **kernel)
    for name in packed:
        np.testing.assert_array_equal(ours[name] ^ masks[name], theirs[name], err_msg=name)
    for name in conv_out:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    np.testing.assert_array_equal(predict(folded, x, **kernel), predict(stock, x, **kernel))
    return len(packed)
