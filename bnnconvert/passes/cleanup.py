"""Exact clean-up: drop dead ops, tensors and buffers; share identical constants."""

from __future__ import annotations

import copy

from bnnconvert import ir
from bnnconvert.passes.stats import PassStats

NAME = "cleanup"

# Ops whose effect is not (only) their outputs: never removed as dead (nor are
# custom ops other than LCE's own, whose semantics we do not know).
_STATEFUL = frozenset(
    {"ASSIGN_VARIABLE", "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "WHILE", "IF", "CALL"}
)


def _remove_dead_ops(model: ir.Model, graph: ir.Subgraph, g_index: int) -> int:
    """Remove ops none of whose outputs is read, repeatedly; return how many."""
    keep_alive = set(graph.outputs)
    for sig in model.signature_defs:
        if sig.subgraph_index == g_index:
            keep_alive.update(sig.outputs.values())
    removed = 0
    while True:
        read = set(keep_alive)
        for op in graph.operators:
            read.update(op.inputs)
        dead = {
            i
            for i, op in enumerate(graph.operators)
            if op.outputs
            and not (op.is_custom and op.opcode not in ir.LCE_OPTIONS)
            and op.opcode not in _STATEFUL
            and not any(t in read for t in op.outputs)
        }
        if not dead:
            return removed
        ir.remove_ops(graph, dead)
        removed += len(dead)


def _remove_all_dead_ops(model: ir.Model) -> int:
    """Remove dead ops in every subgraph; return how many."""
    return sum(_remove_dead_ops(model, g, i) for i, g in enumerate(model.subgraphs))


def live_size(model: ir.Model) -> int:
    """Bytes of ``model``'s serialization without its dead ops, tensors and buffers.

    ``model`` is left as it is (a copy is pruned). The same dead-code rule as
    :func:`cleanup`, without sharing identical constants.
    """
    live = copy.deepcopy(model)
    _remove_all_dead_ops(live)
    ir.prune(live)
    return len(ir.write(live))


def _share_buffers(model: ir.Model) -> int:
    """Point tensors with byte-identical constant data at one buffer; return merges."""
    first: dict[bytes, int] = {}
    merged = 0
    remap: dict[int, int] = {}
    for index, data in enumerate(model.buffers):
        if not data:
            continue
        if data in first:
            remap[index] = first[data]
        else:
            first[data] = index
    variable = {t.buffer for g in model.subgraphs for t in g.tensors if t.is_variable}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            target = remap.get(tensor.buffer)
            if target is not None and tensor.buffer not in variable and target not in variable:
                tensor.buffer = target
                merged += 1
    return merged


def cleanup(model: ir.Model) -> PassStats:
    """Remove dead ops, unused tensors and buffers, and duplicate constant buffers (in place)."""
    stats = PassStats(NAME)
    tensors_before = sum(len(g.tensors) for g in model.subgraphs)
    buffers_before = len(model.buffers)
    stats.ops_removed = _remove_all_dead_ops(model)
    shared = _share_buffers(model)
    ir.prune(model)
    stats.rewrites = stats.ops_removed + shared
    stats.details = {
        "tensors_removed": tensors_before - sum(len(g.tensors) for g in model.subgraphs),
        "buffers_removed": buffers_before - len(model.buffers),
        "tensors_sharing_a_buffer": shared,
    }
    return stats
