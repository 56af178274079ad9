"""A small, mutable view of a folded ONNX graph: nodes, constants, producers and consumers.

Fusions (:mod:`bnnconvert.onnx_import.fusions`) rewrite it; the Keras builder
reads it. Built once from the ``onnx.ModelProto``; the proto is not changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_NOT_IN_LAYER_NAMES = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass
class Node:
    """One ONNX node. ``layer`` is the Keras layer name it becomes (its ONNX name, sanitized)."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    layer: str = ""


@dataclass
class Graph:
    """Nodes in topological order, constant values, and the single input/output names."""

    nodes: list[Node]
    constants: dict[str, np.ndarray]
    input: str
    output: str
    name: str

    def producer(self, tensor: str) -> Node | None:
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [node for node in self.nodes if tensor in node.inputs]

    def constant(self, tensor: str) -> np.ndarray | None:
        """The value of ``tensor`` if it is a constant (initializer or folded), else None."""
        return self.constants.get(tensor)

    def rename_uses(self, old: str, new: str) -> None:
        """Make every reader of ``old`` read ``new`` instead."""
        for node in self.nodes:
            node.inputs = [new if name == old else name for name in node.inputs]

    def drop_unused(self) -> int:
        """Remove nodes the output does not depend on; return how many."""
        needed = {self.output}
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(out in needed for out in node.outputs):
                kept.append(node)
                needed.update(node.inputs)
        dropped = len(self.nodes) - len(kept)
        self.nodes = kept[::-1]
        return dropped


def layer_name(onnx_name: str) -> str:
    """The Keras layer name for an ONNX node name, in PyTorch's module naming.

    ``/features/features.3/bn/BatchNormalization`` -> ``features.3.bn.BatchNormalization``:
    ``/`` becomes ``.`` (Keras and TFLite use ``/`` as scope separator), and a
    scope that repeats its parent's name (PyTorch's ``Sequential`` children)
    replaces it. Short names matter: LCE cuts tensor names at 50 characters.
    """
    parts: list[str] = []
    for part in onnx_name.strip("/").split("/"):
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    name = _NOT_IN_LAYER_NAMES.sub("_", ".".join(parts))
    return name.lstrip("._-") or "node"


def from_proto(model: Any) -> Graph:
    """Index a folded, checked ``onnx.ModelProto`` (see :mod:`.reading`)."""
    from onnx import helper, numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes: list[Node] = []
    used: set[str] = set()
    for index, proto in enumerate(model.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        if proto.op_type == "Constant" and "value" in attrs:
            constants[proto.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        attrs = {
            k: numpy_helper.to_array(v) if hasattr(v, "data_type") else v for k, v in attrs.items()
        }
        onnx_name = proto.name or f"{proto.op_type}_{index}"
        keras_name = layer_name(onnx_name)
        while keras_name in used:
            keras_name += "_"
        used.add(keras_name)
        nodes.append(
            Node(onnx_name, proto.op_type, list(proto.input), list(proto.output), attrs, keras_name)
        )
    weights = {t.name for t in model.graph.initializer}
    (graph_input,) = [i.name for i in model.graph.input if i.name not in weights]
    return Graph(
        nodes, constants, graph_input, model.graph.output[0].name, model.graph.name or "onnx"
    )
