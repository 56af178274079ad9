"""The graph IR: plain dataclasses for a TFLite model, and small editing helpers.

Indices work as in the flatbuffer: operators name tensors by their index in
``Subgraph.tensors`` (``-1`` for an omitted optional input) and tensors name
their constant data by an index into ``Model.buffers`` (``0``, the empty
buffer, for "no constant data"). Metadata buffers are not in ``buffers``:
they live in ``Model.metadata`` and are appended when the model is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnnconvert.ir.schema import BUILTIN_CODES

# dtype name -> bytes per element, for the dtypes whose data size follows from the shape.
ITEMSIZE: dict[str, int] = {
    name: np.dtype(name).itemsize
    for name in (
        "float32", "float16", "float64", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
    )
}  # fmt: skip


@dataclass
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``, per tensor or per axis."""

    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    quantized_dimension: int = 0
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)


@dataclass
class Tensor:
    """A tensor: ``dtype`` is a numpy dtype name (or "string", "int4", "resource", ...)."""

    name: str
    shape: list[int]
    dtype: str
    buffer: int = 0
    quantization: Quantization | None = None
    shape_signature: list[int] | None = None
    is_variable: bool = False
    has_rank: bool = False

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape, dtype=object)) if self.shape else 1


@dataclass
class Operator:
    """One op. ``opcode`` is a builtin name ("CONV_2D") or a custom code ("LceBconv2d").

    ``options`` holds builtin options by their schema.fbs field name (enum values as
    ints; ``options_type`` names the options table, e.g. "Conv2DOptions"; fields left
    out are written with the schema's defaults) or, for
    custom ops, the decoded flexbuffers map. ``raw_custom_options`` keeps custom
    options that are not a flexbuffers map of scalars, written back unchanged.
    """

    opcode: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    options_type: str | None = None
    version: int = 1
    intermediates: list[int] = field(default_factory=list)
    raw_custom_options: bytes | None = None

    @property
    def is_custom(self) -> bool:
        return self.opcode not in BUILTIN_CODES


@dataclass
class Subgraph:
    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    name: str = ""


@dataclass
class SignatureDef:
    """A named entry point: signature names -> tensor indices in ``subgraph_index``."""

    key: str
    subgraph_index: int
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)


@dataclass
class Model:
    subgraphs: list[Subgraph] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    metadata: dict[str, bytes] = field(default_factory=dict)
    signature_defs: list[SignatureDef] = field(default_factory=list)
    version: int = 3
    description: str = ""


def _subgraph(model: Model, subgraph: Subgraph | int) -> Subgraph:
    return model.subgraphs[subgraph] if isinstance(subgraph, int) else subgraph


def tensor_array(model: Model, subgraph: Subgraph | int, tensor_index: int) -> np.ndarray | None:
    """The constant data of a tensor as a read-only array, or None if it has none.

    Raises:
        ValueError: for dtypes without a fixed element size ("string", "int4", ...).
    """
    tensor = _subgraph(model, subgraph).tensors[tensor_index]
    data = model.buffers[tensor.buffer]
    if not data:
        return None
    if tensor.dtype not in ITEMSIZE:
        raise ValueError(f"tensor {tensor.name!r} has dtype {tensor.dtype}; cannot view its data")
    return np.frombuffer(data, dtype=np.dtype(tensor.dtype).newbyteorder("<")).reshape(tensor.shape)


def add_buffer(model: Model, data: bytes) -> int:
    """Append a buffer; return its index."""
    model.buffers.append(bytes(data))
    return len(model.buffers) - 1


def add_tensor(
    model: Model,
    subgraph: Subgraph | int,
    name: str,
    shape: list[int] | tuple[int, ...],
    dtype: str,
    data: np.ndarray | None = None,
    quantization: Quantization | None = None,
) -> int:
    """Append a tensor (with constant ``data`` in a new buffer if given); return its index."""
    graph = _subgraph(model, subgraph)
    graph.tensors.append(Tensor(name, list(shape), dtype, quantization=quantization))
    index = len(graph.tensors) - 1
    if data is not None:
        set_tensor_array(model, graph, index, data)
    return index


def set_tensor_array(
    model: Model, subgraph: Subgraph | int, tensor_index: int, array: np.ndarray
) -> None:
    """Make ``array`` the tensor's constant data; its shape and dtype follow the array.

    The tensor gets a buffer of its own if it had none or shared one.
    """
    graph = _subgraph(model, subgraph)
    tensor = graph.tensors[tensor_index]
    array = np.asarray(array)
    dtype = array.dtype.name
    if dtype not in ITEMSIZE:
        raise ValueError(f"cannot store a {dtype} array in a TFLite tensor")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    shared = tensor.buffer == 0 or any(
        t.buffer == tensor.buffer and t is not tensor for g in model.subgraphs for t in g.tensors
    )
    if shared:
        tensor.buffer = add_buffer(model, data)
    else:
        model.buffers[tensor.buffer] = data
    tensor.dtype = dtype
    tensor.shape = list(array.shape)
    if tensor.shape_signature is not None:
        tensor.shape_signature = list(array.shape)


def producer(subgraph: Subgraph, tensor_index: int) -> int | None:
    """Index of the op that writes ``tensor_index``, or None."""
    for i, op in enumerate(subgraph.operators):
        if tensor_index in op.outputs:
            return i
    return None


def consumers(subgraph: Subgraph, tensor_index: int) -> list[int]:
    """Indices of the ops that read ``tensor_index``."""
    return [i for i, op in enumerate(subgraph.operators) if tensor_index in op.inputs]


def replace_uses(subgraph: Subgraph, old: int, new: int) -> int:
    """Make every op input and subgraph output that reads ``old`` read ``new``; return the count."""
    count = 0
    for op in subgraph.operators:
        for k, t in enumerate(op.inputs):
            if t == old:
                op.inputs[k] = new
                count += 1
    for k, t in enumerate(subgraph.outputs):
        if t == old:
            subgraph.outputs[k] = new
            count += 1
    return count


def remove_ops(subgraph: Subgraph, op_indices: list[int] | set[int]) -> None:
    """Delete operators (tensors stay; call :func:`prune` to drop the unused ones)."""
    drop = set(op_indices)
    subgraph.operators = [op for i, op in enumerate(subgraph.operators) if i not in drop]


def prune(model: Model) -> None:
    """Drop tensors nothing refers to and buffers no tensor refers to; renumber.

    Tensor indices in operators, subgraph inputs/outputs and signature defs are
    renumbered together, so signature defs stay consistent.
    """
    for g_index, graph in enumerate(model.subgraphs):
        used = set(graph.inputs) | set(graph.outputs)
        for op in graph.operators:
            used.update(op.inputs)
            used.update(op.outputs)
            used.update(op.intermediates)
        for sig in model.signature_defs:
            if sig.subgraph_index == g_index:
                used.update(sig.inputs.values())
                used.update(sig.outputs.values())
        used.discard(-1)
        keep = sorted(used)
        new_index = {old: new for new, old in enumerate(keep)}
        new_index[-1] = -1
        graph.tensors = [graph.tensors[i] for i in keep]
        graph.inputs = [new_index[i] for i in graph.inputs]
        graph.outputs = [new_index[i] for i in graph.outputs]
        for op in graph.operators:
            op.inputs = [new_index[i] for i in op.inputs]
            op.outputs = [new_index[i] for i in op.outputs]
            op.intermediates = [new_index[i] for i in op.intermediates]
        for sig in model.signature_defs:
            if sig.subgraph_index == g_index:
                sig.inputs = {k: new_index[v] for k, v in sig.inputs.items()}
                sig.outputs = {k: new_index[v] for k, v in sig.outputs.items()}
    used_buffers = sorted({0} | {t.buffer for g in model.subgraphs for t in g.tensors})
    new_buffer = {old: new for new, old in enumerate(used_buffers)}
    model.buffers = [model.buffers[i] for i in used_buffers]
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.buffer = new_buffer[tensor.buffer]
