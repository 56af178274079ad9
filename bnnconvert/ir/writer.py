"""Write the graph IR back to a TFLite flatbuffer with the generated object API."""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np

from bnnconvert.ir.custom_options import encode_custom_options
from bnnconvert.ir.model import Model, Operator, Subgraph, Tensor
from bnnconvert.ir.schema import (
    BUILTIN_CODES,
    CUSTOM_CODE,
    DTYPE_CODES,
    FILE_IDENTIFIER,
    OPTIONS2_TYPES,
    OPTIONS_TYPES,
    PLACEHOLDER_FOR_GREATER_OP_CODES,
    fb,
    options_fields,
)

_BUFFER_ALIGNMENT = 16  # as TFLite's own writer: lets kernels read constants in place
_OPTIONS_CODES = {name: code for code, name in OPTIONS_TYPES.items()}
_OPTIONS2_CODES = {name: code for code, name in OPTIONS2_TYPES.items()}


class _AlignedBufferT(fb.BufferT):
    """A buffer whose data vector starts on a 16-byte boundary."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.payload = data

    def Pack(self, builder: flatbuffers.Builder) -> int:
        vector = None
        if self.payload:
            n = len(self.payload)
            builder.StartVector(1, n, _BUFFER_ALIGNMENT)
            builder.head -= n
            builder.Bytes[builder.head : builder.head + n] = self.payload
            vector = builder.EndVector()
        fb.BufferStart(builder)
        if vector is not None:
            fb.BufferAddData(builder, vector)
        return fb.BufferEnd(builder)


def _int32s(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


def _tensor(tensor: Tensor) -> Any:
    if tensor.dtype not in DTYPE_CODES:
        raise ValueError(
            f"tensor {tensor.name!r} has dtype {tensor.dtype!r}; expected one of "
            f"{', '.join(DTYPE_CODES)}"
        )
    out = fb.TensorT()
    out.shape = _int32s(tensor.shape)
    out.type = DTYPE_CODES[tensor.dtype]
    out.buffer = tensor.buffer
    out.name = tensor.name
    out.isVariable = tensor.is_variable
    out.hasRank = tensor.has_rank
    if tensor.shape_signature is not None:
        out.shapeSignature = _int32s(tensor.shape_signature)
    q = tensor.quantization
    if q is not None:
        out.quantization = fb.QuantizationParametersT()
        out.quantization.scale = np.asarray(q.scale, dtype=np.float32)
        out.quantization.zeroPoint = np.asarray(q.zero_point, dtype=np.int64)
        out.quantization.quantizedDimension = q.quantized_dimension
        if q.min:
            out.quantization.min = np.asarray(q.min, dtype=np.float32)
        if q.max:
            out.quantization.max = np.asarray(q.max, dtype=np.float32)
    return out


def _builtin_options(op: Operator) -> Any:
    fields = options_fields(op.options_type)
    obj = getattr(fb, op.options_type + "T")()
    for key, value in op.options.items():
        if key not in fields:
            raise ValueError(f"{op.options_type} has no field {key!r}; fields: {sorted(fields)}")
        setattr(obj, fields[key], value)
    return obj


def _operator(op: Operator, opcode_index: int) -> Any:
    out = fb.OperatorT()
    out.opcodeIndex = opcode_index
    out.inputs = _int32s(op.inputs)
    out.outputs = _int32s(op.outputs)
    if op.intermediates:
        out.intermediates = _int32s(op.intermediates)
    if op.is_custom:
        raw = op.raw_custom_options
        if raw is None and op.options:
            raw = encode_custom_options(op.options)
        if raw:
            out.customOptions = np.frombuffer(raw, dtype=np.uint8)
    elif op.options_type in _OPTIONS_CODES:
        out.builtinOptionsType = _OPTIONS_CODES[op.options_type]
        out.builtinOptions = _builtin_options(op)
    elif op.options_type in _OPTIONS2_CODES:
        out.builtinOptions2Type = _OPTIONS2_CODES[op.options_type]
        out.builtinOptions2 = _builtin_options(op)
    elif op.options_type is not None:
        raise ValueError(f"unknown options type {op.options_type!r} for {op.opcode}")
    return out


def _opcode(name: str, version: int) -> Any:
    out = fb.OperatorCodeT()
    out.version = version
    if name in BUILTIN_CODES:
        out.builtinCode = BUILTIN_CODES[name]
    else:
        out.builtinCode = CUSTOM_CODE
        out.customCode = name
    out.deprecatedBuiltinCode = min(out.builtinCode, PLACEHOLDER_FOR_GREATER_OP_CODES)
    return out


def _subgraph(graph: Subgraph, opcode_index: dict[tuple[str, int], int]) -> Any:
    out = fb.SubGraphT()
    out.tensors = [_tensor(t) for t in graph.tensors]
    out.inputs = _int32s(graph.inputs)
    out.outputs = _int32s(graph.outputs)
    out.operators = [_operator(op, opcode_index[op.opcode, op.version]) for op in graph.operators]
    out.name = graph.name
    return out


def write(model: Model) -> bytes:
    """Serialise the graph IR to TFLite flatbuffer bytes (file identifier ``TFL3``).

    Metadata entries are appended as buffers after the tensor buffers.
    """
    opcode_index: dict[tuple[str, int], int] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            opcode_index.setdefault((op.opcode, op.version), len(opcode_index))
    out = fb.ModelT()
    out.version = model.version
    out.description = model.description
    out.operatorCodes = [_opcode(name, version) for name, version in opcode_index]
    out.subgraphs = [_subgraph(g, opcode_index) for g in model.subgraphs]
    buffers = list(model.buffers) or [b""]
    out.metadata = []
    for name, data in model.metadata.items():
        entry = fb.MetadataT()
        entry.name = name
        entry.buffer = len(buffers)
        buffers.append(data)
        out.metadata.append(entry)
    out.buffers = [_AlignedBufferT(data) for data in buffers]
    out.signatureDefs = []
    for sig in model.signature_defs:
        entry = fb.SignatureDefT()
        entry.signatureKey = sig.key
        entry.subgraphIndex = sig.subgraph_index
        entry.inputs, entry.outputs = [], []
        for names, target in ((sig.inputs, entry.inputs), (sig.outputs, entry.outputs)):
            for name, index in names.items():
                tensor_map = fb.TensorMapT()
                tensor_map.name, tensor_map.tensorIndex = name, index
                target.append(tensor_map)
        out.signatureDefs.append(entry)
    size = sum(len(b) + _BUFFER_ALIGNMENT for b in buffers) + (1 << 16)
    builder = flatbuffers.Builder(size)
    builder.Finish(out.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
