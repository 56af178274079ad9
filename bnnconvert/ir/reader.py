"""Read and verify TFLite flatbuffers into the graph IR, safely on any input bytes.

The flatbuffers Python runtime does no verification: on corrupt input it
raises ``struct.error``, ``IndexError``, ``ValueError`` (numpy views past the
end), ``UnicodeDecodeError`` ..., or quietly returns garbage. Here every
decoding step runs inside one ``try`` that turns exactly those into a
:class:`FlatbufferProblem`, every vector length is checked against the file
size before it is walked, and everything materialised is charged to a budget
proportional to the file size, so aliased tables cannot make decoding
quadratic. The decoded model is then checked for dangling indices, data that
disagrees with shapes, and cycles.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert.errors import FlatbufferProblem
from bnnconvert.ir.custom_options import decode_custom_options
from bnnconvert.ir.model import (
    ITEMSIZE,
    Model,
    Operator,
    Quantization,
    SignatureDef,
    Subgraph,
    Tensor,
)
from bnnconvert.ir.schema import (
    BUILTIN_CODES,
    BUILTIN_OPS,
    CUSTOM_CODE,
    DTYPES,
    FILE_IDENTIFIER,
    OPTIONS2_TYPES,
    OPTIONS_TYPES,
    fb,
    snake_case,
)
from bnnconvert.limits import (
    MAX_INPUT_BYTES,
    MAX_MODEL_BYTES,
    MAX_TENSOR_BYTES,
    check_regular_file,
    read_regular_file,
)

# What the flatbuffers runtime (and numpy views on it) raise on bytes that do not
# hold what the schema says. UnicodeDecodeError is a ValueError.
_DECODE_ERRORS = (struct.error, ValueError, IndexError, OverflowError, RecursionError)

_BUDGET_FACTOR = 4  # bytes of decoded content allowed per byte of file (aliasing guard)
_BUDGET_SLACK = 1 << 16


def _corrupt(what: str) -> FlatbufferProblem:
    return FlatbufferProblem(
        f"corrupt TFLite flatbuffer: {what}; re-export the model or copy the file again"
    )


def _describe(e: Exception, size: int) -> str:
    """What a runtime decoding error means for the file, in words."""
    if isinstance(e, struct.error):
        return f"an offset points past the end of the {size}-byte file (truncated?)"
    if isinstance(e, UnicodeDecodeError):
        return "a string is not valid UTF-8"
    if str(e).startswith("bad number"):
        return "an offset points before the start of the file"
    if str(e).startswith("buffer is smaller than requested size"):
        return f"a vector runs past the end of the {size}-byte file (truncated?)"
    return f"{type(e).__name__}: {e}"


class _Decoder:
    """Walks one flatbuffer with bounds checks; ``where`` names the current table."""

    def __init__(self, data: bytes) -> None:
        self.buf = data
        self.size = len(data)
        self.budget = _BUDGET_FACTOR * self.size + _BUDGET_SLACK
        self.where = "model header"

    def fail(self, what: str) -> FlatbufferProblem:
        return _corrupt(f"{what} ({self.where})")

    def charge(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise self.fail(
                f"the tables declare more content than a {self.size}-byte file can hold"
            )

    def count(self, n: int, what: str, elem_size: int = 4) -> int:
        """Check that a vector of ``n`` elements can fit in the file."""
        if n * elem_size > self.size:
            raise self.fail(f"{n} {what} cannot fit in a {self.size}-byte file")
        self.charge(n)
        return n

    def text(self, raw: bytes | None) -> str:
        if raw is None:
            return ""
        self.charge(len(raw))
        return raw.decode("utf-8")

    def numbers(self, table: Any, name: str) -> list[int]:
        """A scalar vector field as a Python list (empty when absent)."""
        if getattr(table, name + "IsNone")():
            return []
        values = getattr(table, name + "AsNumpy")()
        self.charge(values.size)
        return values.tolist()

    def vector_bytes(self, table: Any, slot: int) -> bytes | None:
        """A ``[ubyte]`` field (vtable slot number), bounds-checked; None when absent."""
        tab = table._tab
        o = tab.Offset(4 + 2 * slot)
        if not o:
            return None
        start = tab.Vector(o)
        n = tab.VectorLen(o)
        if start < 0 or start + n > self.size:
            raise self.fail(f"{n} bytes at offset {start} overrun the {self.size}-byte file")
        self.charge(n)
        return self.buf[start : start + n]

    def external(self, offset: int, size: int) -> bytes:
        """Data stored after the flatbuffer (``offset``/``size`` fields, >2 GB models)."""
        if offset + size > self.size:
            raise self.fail(f"{size} bytes at offset {offset} overrun the {self.size}-byte file")
        self.charge(size)
        return self.buf[offset : offset + size]


def _decode_model(d: _Decoder) -> tuple[Model, list[tuple[str, int]]]:
    root = fb.Model.GetRootAs(d.buf, 0)
    model = Model(version=root.Version(), buffers=[])
    model.description = d.text(root.Description())

    d.where = "operator codes"
    n_opcodes = d.count(root.OperatorCodesLength(), "operator codes")
    opcodes = [_decode_opcode(d, root.OperatorCodes(i)) for i in range(n_opcodes)]

    d.where = "buffers"
    n_buffers = d.count(root.BuffersLength(), "buffers")
    for i in range(n_buffers):
        d.where = f"buffer {i}"
        buffer = root.Buffers(i)
        data = d.vector_bytes(buffer, 0)
        if data is None and buffer.Offset() > 1:
            data = d.external(buffer.Offset(), buffer.Size())
        model.buffers.append(data or b"")

    d.where = "subgraphs"
    for i in range(d.count(root.SubgraphsLength(), "subgraphs")):
        d.where = f"subgraph {i}"
        model.subgraphs.append(_decode_subgraph(d, root.Subgraphs(i), opcodes, i))

    metadata = []
    d.where = "metadata"
    for i in range(d.count(root.MetadataLength(), "metadata entries")):
        d.where = f"metadata entry {i}"
        entry = root.Metadata(i)
        metadata.append((d.text(entry.Name()), entry.Buffer()))

    d.where = "signature defs"
    for i in range(d.count(root.SignatureDefsLength(), "signature defs")):
        d.where = f"signature def {i}"
        sig = root.SignatureDefs(i)
        maps = []
        for length, get in ((sig.InputsLength, sig.Inputs), (sig.OutputsLength, sig.Outputs)):
            entries = (get(k) for k in range(d.count(length(), "signature tensors")))
            maps.append({d.text(m.Name()): m.TensorIndex() for m in entries})
        key = d.text(sig.SignatureKey())
        model.signature_defs.append(SignatureDef(key, sig.SubgraphIndex(), maps[0], maps[1]))
    return model, metadata


def _decode_opcode(d: _Decoder, code: Any) -> tuple[str, int]:
    number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if number == CUSTOM_CODE:
        name = d.text(code.CustomCode())
        if not name or name in BUILTIN_CODES:
            raise d.fail(f"custom operator code {name!r} is empty or a builtin name")
        return name, code.Version()
    if number not in BUILTIN_OPS:
        raise d.fail(f"unknown builtin operator code {number}")
    return BUILTIN_OPS[number], code.Version()


def _decode_subgraph(
    d: _Decoder, graph: Any, opcodes: list[tuple[str, int]], index: int
) -> Subgraph:
    out = Subgraph(name=d.text(graph.Name()))
    out.inputs = d.numbers(graph, "Inputs")
    out.outputs = d.numbers(graph, "Outputs")
    for i in range(d.count(graph.TensorsLength(), "tensors")):
        d.where = f"tensor {i} of subgraph {index}"
        out.tensors.append(_decode_tensor(d, graph.Tensors(i)))
    options_cache: dict[Any, Any] = {}  # options table position or custom bytes -> decoded
    for i in range(d.count(graph.OperatorsLength(), "operators")):
        d.where = f"operator {i} of subgraph {index}"
        out.operators.append(_decode_operator(d, graph.Operators(i), opcodes, options_cache))
    return out


def _decode_tensor(d: _Decoder, t: Any) -> Tensor:
    type_code = t.Type()
    if type_code not in DTYPES:
        raise d.fail(f"unknown tensor type {type_code}")
    if t.Sparsity() is not None or not t.VariantTensorsIsNone():
        raise FlatbufferProblem(
            f"sparse and variant tensors are not supported by bnnconvert ({d.where}); "
            "export the model without sparsity"
        )
    tensor = Tensor(
        name=d.text(t.Name()),
        shape=d.numbers(t, "Shape"),
        dtype=DTYPES[type_code],
        buffer=t.Buffer(),
        is_variable=bool(t.IsVariable()),
        has_rank=bool(t.HasRank()),
    )
    if not t.ShapeSignatureIsNone():
        tensor.shape_signature = d.numbers(t, "ShapeSignature")
    q = t.Quantization()
    if q is not None:
        if q.DetailsType():
            raise FlatbufferProblem(
                f"custom quantization details are not supported by bnnconvert ({d.where})"
            )
        quant = Quantization(
            scale=d.numbers(q, "Scale"),
            zero_point=d.numbers(q, "ZeroPoint"),
            quantized_dimension=q.QuantizedDimension(),
            min=d.numbers(q, "Min"),
            max=d.numbers(q, "Max"),
        )
        if quant != Quantization():
            tensor.quantization = quant
    return tensor


def _decode_operator(
    d: _Decoder,
    op: Any,
    opcodes: list[tuple[str, int]],
    cache: dict[Any, Any],
) -> Operator:
    index = op.OpcodeIndex()
    if index >= len(opcodes):
        raise d.fail(f"operator code index {index} is out of range (0..{len(opcodes) - 1})")
    name, version = opcodes[index]
    out = Operator(
        opcode=name,
        inputs=d.numbers(op, "Inputs"),
        outputs=d.numbers(op, "Outputs"),
        version=version,
        intermediates=d.numbers(op, "Intermediates"),
    )
    kind1, kind2 = op.BuiltinOptionsType(), op.BuiltinOptions2Type()
    if kind1 and kind2:
        raise d.fail("both builtin_options and builtin_options_2 are set")
    if kind1 or kind2:
        table = op.BuiltinOptions() if kind1 else op.BuiltinOptions2()
        key = (kind1, kind2, table.Pos if table is not None else -1)
        if key not in cache:  # aliased options tables are decoded once
            cache[key] = _decode_options(d, kind1, kind2, table)
        out.options_type, options = cache[key]
        out.options = dict(options)
    raw = d.vector_bytes(op, 5)
    if raw is None and op.LargeCustomOptionsOffset() > 1:
        raw = d.external(op.LargeCustomOptionsOffset(), op.LargeCustomOptionsSize())
    if raw:
        if not out.is_custom:
            raise d.fail(f"builtin operator {name} has custom options")
        if raw not in cache:  # the same options bytes are decoded once
            cache[raw] = decode_custom_options(raw)
        decoded = cache[raw]
        if decoded is None:
            out.raw_custom_options = raw
        else:
            out.options = dict(decoded)
    return out


def _decode_options(
    d: _Decoder, kind1: int, kind2: int, table: Any
) -> tuple[str | None, dict[str, Any]]:
    names = OPTIONS_TYPES if kind1 else OPTIONS2_TYPES
    kind = kind1 or kind2
    if kind not in names or table is None:
        raise d.fail(f"unknown builtin options type {kind}")
    creator = fb.BuiltinOptionsCreator if kind1 else fb.BuiltinOptions2Creator
    obj = creator(kind, table)
    options: dict[str, Any] = {}
    for attr, value in vars(obj).items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        elif value is not None and not isinstance(value, (int, float, bool, str)):
            raise FlatbufferProblem(
                f"{names[kind]} holds nested tables, which bnnconvert does not support ({d.where})"
            )
        d.charge(1 + (len(value) if isinstance(value, (list, str)) else 0))
        options[snake_case(attr)] = value
    return names[kind], options


def _check_indices(model: Model, metadata: list[tuple[str, int]]) -> None:
    n_sub, n_buf = len(model.subgraphs), len(model.buffers)
    if not n_sub:
        raise _corrupt("the model has no subgraphs")
    for name, b in metadata:
        if b >= n_buf:
            raise _corrupt(f"metadata {name!r} names buffer {b}, but there are {n_buf} buffers")
    for s, graph in enumerate(model.subgraphs):
        n_t = len(graph.tensors)

        def bad(what: str, value: int, limit: int, s: int = s) -> FlatbufferProblem:
            return _corrupt(f"{what} is {value}, out of range 0..{limit - 1} (subgraph {s})")

        for t_index, tensor in enumerate(graph.tensors):
            if tensor.buffer >= n_buf:
                raise bad(f"buffer index of tensor {t_index}", tensor.buffer, n_buf)
        for t in graph.inputs + graph.outputs:
            if not 0 <= t < n_t:
                raise bad("subgraph input/output tensor index", t, n_t)
        for o, op in enumerate(graph.operators):
            for t in op.inputs:
                if not -1 <= t < n_t:
                    raise bad(f"input tensor index of operator {o}", t, n_t)
            for t in op.outputs + op.intermediates:
                if not 0 <= t < n_t:
                    raise bad(f"output tensor index of operator {o}", t, n_t)
            for key, value in op.options.items():
                if key.endswith("subgraph_index") and not (
                    isinstance(value, int) and 0 <= value < n_sub
                ):
                    raise bad(f"{key} of operator {o}", value, n_sub)
    for sig in model.signature_defs:
        if not 0 <= sig.subgraph_index < n_sub:
            raise _corrupt(
                f"signature {sig.key!r} names subgraph {sig.subgraph_index}, but there are {n_sub}"
            )
        n_t = len(model.subgraphs[sig.subgraph_index].tensors)
        for t in [*sig.inputs.values(), *sig.outputs.values()]:
            if not 0 <= t < n_t:
                raise _corrupt(
                    f"signature {sig.key!r} names tensor {t}, but its subgraph has {n_t}"
                )


def _check_data_sizes(model: Model) -> None:
    for s, graph in enumerate(model.subgraphs):
        for t_index, tensor in enumerate(graph.tensors):
            if any(dim < -1 for dim in tensor.shape):
                raise _corrupt(
                    f"tensor {t_index} ({tensor.name!r}, subgraph {s}) has shape {tensor.shape}"
                )
            data = model.buffers[tensor.buffer]
            if not data or (tensor.dtype not in ITEMSIZE and tensor.dtype != "int4"):
                continue
            n = tensor.num_elements
            expected = (n + 1) // 2 if tensor.dtype == "int4" else n * ITEMSIZE[tensor.dtype]
            if min(tensor.shape, default=0) < 0 or expected != len(data):
                raise _corrupt(
                    f"tensor {t_index} ({tensor.name!r}, subgraph {s}) "
                    f"has shape {tensor.shape} {tensor.dtype} = {expected} bytes, but its "
                    f"buffer {tensor.buffer} holds {len(data)} bytes"
                )


def _check_acyclic(model: Model) -> None:
    for s, graph in enumerate(model.subgraphs):
        producer: dict[int, int] = {}
        for o, op in enumerate(graph.operators):
            for t in op.outputs:
                if t in producer:
                    raise _corrupt(
                        f"tensor {t} of subgraph {s} is written by operators {producer[t]} and {o}"
                    )
                producer[t] = o
        # Kahn's algorithm over op -> op edges through tensors.
        n = len(graph.operators)
        indegree = [0] * n
        users: list[list[int]] = [[] for _ in range(n)]
        for o, op in enumerate(graph.operators):
            for src in {producer[t] for t in op.inputs if t in producer}:
                indegree[o] += 1
                users[src].append(o)
        ready = [o for o in range(n) if not indegree[o]]
        done = 0
        while ready:
            o = ready.pop()
            done += 1
            for user in users[o]:
                indegree[user] -= 1
                if not indegree[user]:
                    ready.append(user)
        if done != n:
            stuck = next(o for o in range(n) if indegree[o])
            raise _corrupt(
                f"the operators of subgraph {s} form a cycle "
                f"(through operator {stuck}, {graph.operators[stuck].opcode})"
            )


def _split_metadata(model: Model, metadata: list[tuple[str, int]]) -> None:
    """Move metadata buffers out of ``model.buffers`` into ``model.metadata``."""
    for name, b in metadata:
        model.metadata[name] = model.buffers[b]
    tensor_buffers = {0} | {t.buffer for g in model.subgraphs for t in g.tensors}
    drop = {b for _, b in metadata} - tensor_buffers
    if not drop:
        return
    new_index, kept = {}, []
    for i, data in enumerate(model.buffers):
        if i not in drop:
            new_index[i] = len(kept)
            kept.append(data)
    model.buffers = kept
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.buffer = new_index[tensor.buffer]


def _check_identifier(head: bytes, size: int) -> None:
    """Raise unless the first 8 bytes of a ``size``-byte file carry the ``TFL3`` identifier."""
    if size < 8:
        raise FlatbufferProblem(
            f"not a TFLite flatbuffer: the file is {size} bytes long, too short for one; "
            "give a .tflite model file"
        )
    if head[4:8] != FILE_IDENTIFIER:
        raise FlatbufferProblem(
            f"not a TFLite flatbuffer: bytes 4..8 of this {size}-byte file are {head[4:8]!r}, "
            f"not the identifier {FILE_IDENTIFIER!r}; give a .tflite model file"
        )


def load_bytes(path: Path | str) -> bytes:
    """The bytes of a ``.tflite`` file, checked before they are read.

    The path must be a regular file of at most :data:`~bnnconvert.limits.MAX_MODEL_BYTES`
    (``os.stat``, nothing opened), and its first 8 bytes must carry the ``TFL3``
    identifier before the rest is read. The bytes are not decoded: pass them to
    :func:`read`.

    Raises:
        UsageProblem: missing, not a regular file (directory, FIFO, device) or too large.
        FlatbufferProblem: no ``TFL3`` identifier.
    """
    what = "a .tflite model"
    size = check_regular_file(path, MAX_MODEL_BYTES, what)
    try:
        _check_identifier(read_regular_file(path, MAX_MODEL_BYTES, what, head=8), size)
    except FlatbufferProblem as e:
        raise FlatbufferProblem(f"{path}: {e}") from e
    return read_regular_file(path, MAX_MODEL_BYTES, what)


def _declared_bytes(tensor: Tensor) -> int:
    """Bytes the interpreter allocates for ``tensor`` (unknown dims ``-1`` count as 1)."""
    n = 1
    for dim in tensor.shape:
        n *= max(dim, 1)
    return n * ITEMSIZE.get(tensor.dtype, 8)


def check_declared_sizes(
    model: Model,
    *,
    max_input_bytes: int = MAX_INPUT_BYTES,
    max_tensor_bytes: int = MAX_TENSOR_BYTES,
) -> None:
    """Refuse a model whose declared tensors are too large to allocate, before running it.

    A few kilobytes of flatbuffer can declare a ``1x30000x30000`` input, which an
    interpreter (and the random or image inputs made for it) would allocate.

    Arguments:
        model: a model from :func:`read`.
        max_input_bytes: cap on one sample of one input of any subgraph.
        max_tensor_bytes: cap on any non-constant tensor.

    Raises:
        FlatbufferProblem: naming the tensor, its shape and size, and the cap.
    """
    for s, graph in enumerate(model.subgraphs):
        inputs = set(graph.inputs)
        for t, tensor in enumerate(graph.tensors):
            cap = max_input_bytes if t in inputs else max_tensor_bytes
            if model.buffers[tensor.buffer] or _declared_bytes(tensor) <= cap:
                continue
            role = "input" if t in inputs else "tensor"
            raise FlatbufferProblem(
                f"the model declares {role} {tensor.name!r} (subgraph {s}) of shape "
                f"{tensor.shape} {tensor.dtype}, {_declared_bytes(tensor) / (1 << 20):.0f} MiB, "
                f"over bnnconvert's {cap >> 20} MiB limit per {role}; "
                "export the model with a smaller input shape"
            )


def read(data: bytes) -> Model:
    """Verify a TFLite flatbuffer and decode it into the graph IR.

    Raises:
        FlatbufferProblem: one line saying what is wrong, for any bytes that are
            not a well-formed TFLite model (never another exception).
    """
    data = bytes(data)
    _check_identifier(data[:8], len(data))
    decoder = _Decoder(data)
    try:
        try:
            model, metadata = _decode_model(decoder)
        except TypeError as e:
            # flatbuffers' enforce_number() rejects an offset that came out negative.
            if not str(e).startswith("bad number"):
                raise
            raise ValueError(str(e)) from e
    except _DECODE_ERRORS as e:
        raise _corrupt(f"{_describe(e, len(data))} (in {decoder.where})") from e
    _check_indices(model, metadata)
    _check_data_sizes(model)
    _check_acyclic(model)
    _split_metadata(model, metadata)
    return model


def verify(data: bytes) -> None:
    """Raise :class:`FlatbufferProblem` unless ``data`` is a well-formed TFLite model."""
    read(data)
