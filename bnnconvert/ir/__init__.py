"""The TFLite graph IR: the one place in bnnconvert that touches the flatbuffer schema.

Read a model, change it, write it back::

    from bnnconvert import ir

    model = ir.read(Path("model.tflite").read_bytes())
    graph = model.subgraphs[0]
    for op in graph.operators:
        if op.opcode == "LceBconv2d":
            weights = ir.tensor_array(model, graph, op.inputs[1])   # bitpacked int32 OHWI
            signs = ir.unpack_bits(weights, op.options["channels_in"])
    data = ir.write(model)

``read`` verifies first and raises only :class:`bnnconvert.errors.FlatbufferProblem`
on bad input. Importing this package does not import TensorFlow.
"""

from bnnconvert.ir.bits import pack_bits, packed_words, unpack_bits
from bnnconvert.ir.custom_options import (
    LCE_OPTIONS,
    check_lce_options,
    decode_custom_options,
    encode_custom_options,
)
from bnnconvert.ir.model import (
    Model,
    Operator,
    Quantization,
    SignatureDef,
    Subgraph,
    Tensor,
    add_buffer,
    add_tensor,
    consumers,
    producer,
    prune,
    remove_ops,
    replace_uses,
    set_tensor_array,
    tensor_array,
)
from bnnconvert.ir.reader import check_declared_sizes, load_bytes, read, verify
from bnnconvert.ir.schema import ACTIVATIONS, PADDING
from bnnconvert.ir.writer import write

__all__ = [
    "ACTIVATIONS",
    "LCE_OPTIONS",
    "PADDING",
    "Model",
    "Operator",
    "Quantization",
    "SignatureDef",
    "Subgraph",
    "Tensor",
    "add_buffer",
    "add_tensor",
    "check_declared_sizes",
    "check_lce_options",
    "consumers",
    "decode_custom_options",
    "encode_custom_options",
    "load_bytes",
    "pack_bits",
    "packed_words",
    "producer",
    "prune",
    "read",
    "remove_ops",
    "replace_uses",
    "set_tensor_array",
    "tensor_array",
    "unpack_bits",
    "verify",
    "write",
]
