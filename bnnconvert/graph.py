"""A graph index built once: who writes and who reads each tensor; op families.

``ir.producer`` / ``ir.consumers`` scan every operator; code that asks in a
loop builds a :class:`GraphIndex` once instead, and edits through it (or
builds a new one) so the index stays true::

    index = GraphIndex(model)              # subgraph 0
    p = index.producer(t)                  # op index or None
    readers = index.consumers(t)           # op indices, in graph order
    index.set_input(readers[0], 0, other)  # rewire one input, index updated

The op families below are the one list of which TFLite/LCE op types play
which role, used by the audit, the layer mapping, MAC counting and the passes.
"""

from __future__ import annotations

from bnnconvert import ir

BINARY_CONV = "LceBconv2d"
QUANTIZE = "LceQuantize"  # float -> bitpacked signs
DEQUANTIZE = "LceDequantize"  # bitpacked signs -> float +-1
BINARY_MAX_POOL = "LceBMaxPool2d"
FLOAT_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
"""Non-binary ops that multiply an input by a weight tensor (their MACs are float, int8 or
int16 by their tensors' types: :mod:`bnnconvert.macs`)."""
KERNEL_OPS = (BINARY_CONV, *FLOAT_KERNEL_OPS)
"""Every op that computes a layer with a kernel (conv, dense, transposed conv)."""
AFFINE_OPS = ("MUL", "ADD", "SUB")
"""Element-wise ops a batch norm (or a folded threshold) becomes."""
MAX_POOL_OPS = ("MAX_POOL_2D", BINARY_MAX_POOL)


class GraphIndex:
    """Producer and consumers of every tensor of one subgraph, built in one pass.

    Arguments:
        model: the model (constant data is looked up in its buffers).
        subgraph: which subgraph to index.
    """

    def __init__(self, model: ir.Model, subgraph: int = 0) -> None:
        self.model = model
        self.graph = model.subgraphs[subgraph]
        self._producer: dict[int, int] = {}
        self._consumers: dict[int, list[int]] = {}
        for i, op in enumerate(self.graph.operators):
            for t in op.outputs:
                self._producer[t] = i
            for t in dict.fromkeys(op.inputs):
                if t >= 0:
                    self._consumers.setdefault(t, []).append(i)
        self._outputs = set(self.graph.outputs)

    def producer(self, tensor: int) -> int | None:
        """Index of the op that writes ``tensor``, or None (graph input, constant)."""
        return self._producer.get(tensor)

    def consumers(self, tensor: int) -> list[int]:
        """Indices of the ops that read ``tensor``, in graph order."""
        return list(self._consumers.get(tensor, ()))

    def is_constant(self, tensor: int) -> bool:
        """Whether ``tensor`` (``-1``: an omitted input, not constant) holds constant data."""
        return tensor >= 0 and bool(self.model.buffers[self.graph.tensors[tensor].buffer])

    def is_graph_output(self, tensor: int) -> bool:
        return tensor in self._outputs

    def opcode(self, op: int) -> str:
        return self.graph.operators[op].opcode

    def set_input(self, op: int, position: int, tensor: int) -> None:
        """Make input ``position`` of op ``op`` read ``tensor``, keeping the index true."""
        operator = self.graph.operators[op]
        old = operator.inputs[position]
        operator.inputs[position] = tensor
        if old >= 0 and old not in operator.inputs:
            self._consumers[old].remove(op)
        readers = self._consumers.setdefault(tensor, [])
        if op not in readers:
            readers.append(op)
            readers.sort()

    def replace_op(self, index: int, op: ir.Operator) -> None:
        """Put ``op`` at ``index`` (same position in the graph), keeping the index true."""
        old = self.graph.operators[index]
        for t in dict.fromkeys(old.inputs):
            if t >= 0:
                self._consumers[t].remove(index)
        for t in old.outputs:
            del self._producer[t]
        self.graph.operators[index] = op
        for t in op.outputs:
            self._producer[t] = index
        for t in dict.fromkeys(op.inputs):
            if t >= 0:
                readers = self._consumers.setdefault(t, [])
                readers.append(index)
                readers.sort()
