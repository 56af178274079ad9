"""Rewrite the ways PyTorch code writes a binarizing sign into one ``BinarySign`` node.

Each fusion matches one pattern, leaves the graph alone where it does not
match exactly, and returns how many rewrites it made. ``BinarySign`` (an
internal op, never written to a file) has the input ``x`` and attributes
``threshold`` (a constant: +1 where ``x >= threshold``, or ``x > threshold``)
and ``at_zero``: what the PyTorch graph gives exactly at the threshold
(``"+1"`` like LCE, ``"-1"`` or ``"0"`` (``torch.sign``), a tie when they differ).

- :func:`fuse_where_sign`: ``Where(x >= t, 1, -1)``, ``Where(x > t, 1, -1)``,
  ``Where(x < t, -1, 1)``, ``Where(x <= t, -1, 1)``;
- :func:`fuse_straight_through`: the detach trick ``p + (sign(x) - p).detach()``,
  exported as ``Add(p, Sub(Sign(x), p))`` (either operand order), and
  ``(p - p.detach()) + sign(x).detach()``, exported as ``Add(Sub(p, p), Sign(x))``:
  at inference both are ``sign(x)`` up to float rounding, so readers take the sign.
"""

from __future__ import annotations

import numpy as np

from bnnconvert.onnx_import.graph import Graph, Node

SIGN_OPS = ("Sign", "BinarySign")
# comparison -> (value where true, value where false, at_zero) for a +-1 sign of x - t
_WHERE_FORMS = {
    ("GreaterOrEqual", 1.0, -1.0): "+1",
    ("Greater", 1.0, -1.0): "-1",
    ("Less", -1.0, 1.0): "+1",
    ("LessOrEqual", -1.0, 1.0): "-1",
}


def _uniform(value: np.ndarray | None) -> float | None:
    """The single value of an all-equal constant, else None."""
    if value is None or value.size == 0:
        return None
    flat = np.asarray(value, dtype=np.float64).ravel()
    return float(flat[0]) if np.all(flat == flat[0]) else None


def fuse_where_sign(graph: Graph) -> int:
    """``Where(Cmp(x, t), +-1, -+1)`` -> ``BinarySign(x, threshold=t)``; returns the count."""
    count = 0
    for i, node in enumerate(graph.nodes):
        if node.op != "Where":
            continue
        condition = graph.producer(node.inputs[0])
        if condition is None or len(condition.inputs) != 2:
            continue
        threshold = graph.constant(condition.inputs[1])
        if threshold is None or graph.constant(condition.inputs[0]) is not None:
            continue
        key = (
            condition.op,
            _uniform(graph.constant(node.inputs[1])),
            _uniform(graph.constant(node.inputs[2])),
        )
        at_zero = _WHERE_FORMS.get(key)  # type: ignore[call-overload]
        if at_zero is None:
            continue
        graph.nodes[i] = Node(
            node.name,
            "BinarySign",
            [condition.inputs[0]],
            node.outputs,
            {"threshold": np.asarray(threshold, np.float32), "at_zero": at_zero, "form": "Where"},
            node.layer,
        )
        count += 1
    graph.drop_unused()
    return count


def _sign_of(graph: Graph, tensor: str) -> bool:
    producer = graph.producer(tensor)
    return producer is not None and producer.op in SIGN_OPS


def fuse_straight_through(graph: Graph) -> int:
    """Read the straight-through detach trick as the sign it computes; returns the count."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "Add" or node.outputs[0] == graph.output:
            continue
        sign = None
        for sub_input, other in ((0, 1), (1, 0)):
            sub = graph.producer(node.inputs[sub_input])
            if sub is None or sub.op != "Sub":
                continue
            partner = node.inputs[other]
            if sub.inputs[1] == partner and _sign_of(graph, sub.inputs[0]):
                sign = sub.inputs[0]  # p + (sign(x) - p)
            elif sub.inputs[0] == sub.inputs[1] and _sign_of(graph, partner):
                sign = partner  # (p - p) + sign(x)
            if sign is not None:
                break
        if sign is None:
            continue
        graph.rename_uses(node.outputs[0], sign)
        count += 1
    graph.drop_unused()
    return count


def fuse_all(graph: Graph) -> dict[str, int]:
    """Run every fusion in order; rewrites per fusion."""
    return {
        "where_sign": fuse_where_sign(graph),
        "straight_through": fuse_straight_through(graph),
    }
