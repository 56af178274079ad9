"""The graph IR: round trips through the LCE interpreter, rewrites, verify, bitpacking."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bnnconvert import _tf, ir
from bnnconvert.errors import FlatbufferProblem
from bnnconvert.ir.schema import fb

ROOT = Path(__file__).resolve().parents[1]


def predict(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    # Importing LCE's interpreter imports TensorFlow; set it up for Keras 2 first, or a
    # later _tf.keras() in the same process finds Keras 3 (reported to the lead).
    _tf.tensorflow()
    return np.asarray(_tf.lce_interpreter(flatbuffer).predict(x))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)


def test_import_does_not_import_tensorflow():
    code = "import sys, bnnconvert.ir; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_round_trip_gives_identical_outputs(tiny_bnn_tflite, images):
    model = ir.read(tiny_bnn_tflite)
    written = ir.write(model)
    assert ir.read(written) == model
    np.testing.assert_array_equal(predict(written, images), predict(tiny_bnn_tflite, images))


def test_round_trip_keeps_metadata_and_signatures(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    assert "min_runtime_version" in model.metadata
    model.metadata["bnnconvert"] = b'{"version": 1}'
    again = ir.read(ir.write(model))
    assert again.metadata == model.metadata
    assert again.signature_defs == model.signature_defs
    assert [s.key for s in again.signature_defs] == ["serving_default"]


def test_changed_constant_changes_output_as_expected(tiny_bnn_tflite, images):
    """Scale the dense layer's weights and bias by 0: every logit is 0, softmax is uniform."""
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    (fc,) = [op for op in graph.operators if op.opcode == "FULLY_CONNECTED"]
    weights = ir.tensor_array(model, graph, fc.inputs[1])
    assert weights.shape == (10, 96) and weights.dtype == np.float32
    ir.set_tensor_array(model, graph, fc.inputs[1], np.zeros_like(weights))
    out = predict(ir.write(model), images)
    np.testing.assert_allclose(out, np.full((3, 10), 0.1), rtol=1e-6)
    assert not np.allclose(predict(tiny_bnn_tflite, images), 0.1)


def test_flipping_bconv_filter_signs_is_seen_by_the_interpreter(tiny_bnn_tflite, images):
    """Negating every binary weight of the last bconv = its output negated (before bias)."""
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    bconv = [op for op in graph.operators if op.opcode == "LceBconv2d"][-1]
    packed = ir.tensor_array(model, graph, bconv.inputs[1])
    signs = ir.unpack_bits(packed, bconv.options["channels_in"])
    ir.set_tensor_array(model, graph, bconv.inputs[1], ir.pack_bits(-signs))
    changed = predict(ir.write(model), images)
    assert not np.allclose(changed, predict(tiny_bnn_tflite, images))
    ir.set_tensor_array(model, graph, bconv.inputs[1], ir.pack_bits(signs))
    np.testing.assert_array_equal(
        predict(ir.write(model), images), predict(tiny_bnn_tflite, images)
    )


# --- verify: each kind of damage, made precisely on a real model -------------------


def patch_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value & 0xFFFFFFFF) + data[at + 4 :]


def field_position(table, slot: int) -> int:
    """Byte offset of a table field (vtable slot number) in the file."""
    offset = table._tab.Offset(4 + 2 * slot)
    assert offset, "field not present"
    return table._tab.Pos + offset


def root(data: bytes):
    return fb.Model.GetRootAs(data, 0)


def rewritten(data: bytes, edit) -> bytes:
    model = ir.read(data)
    edit(model)
    return ir.write(model)


def cycle(model: ir.Model) -> None:
    graph = model.subgraphs[0]
    graph.operators[1].inputs[0] = graph.operators[5].outputs[0]  # MUL reads a later concat


def bad_tensor_index(model: ir.Model) -> None:
    model.subgraphs[0].operators[0].inputs[0] = 1000


def bad_buffer_index(model: ir.Model) -> None:
    model.subgraphs[0].tensors[3].buffer = 1000


def bad_shape(model: ir.Model) -> None:
    model.subgraphs[0].tensors[3].shape = [10, 95]


def bad_signature_subgraph(model: ir.Model) -> None:
    model.signature_defs[0].subgraph_index = 7


def overrun_buffer(data: bytes) -> bytes:
    """Make the largest buffer's length field claim more bytes than the file has."""
    buffers = [root(data).Buffers(i) for i in range(root(data).BuffersLength())]
    largest = max(buffers, key=lambda b: b.DataLength())
    length_at = largest._tab.Vector(largest._tab.Offset(4)) - 4
    return patch_u32(data, length_at, len(data))


def bad_opcode_index(data: bytes) -> bytes:
    ops = root(data).Subgraphs(0)
    op = next(
        ops.Operators(i) for i in range(ops.OperatorsLength()) if ops.Operators(i).OpcodeIndex()
    )
    return patch_u32(data, field_position(op, 0), 200)


def absurd_tensor_count(data: bytes) -> bytes:
    graph = root(data).Subgraphs(0)
    vector = graph._tab.Vector(graph._tab.Offset(4))
    return patch_u32(data, vector - 4, 0x7FFFFFFF)


def random_with_identifier(data: bytes) -> bytes:
    noise = np.random.default_rng(0).bytes(len(data))
    return noise[:4] + b"TFL3" + noise[8:]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: d[:4] + b"XXXX" + d[8:], "not a TFLite flatbuffer: bytes 4..8"),
        (lambda d: b"", "not a TFLite flatbuffer"),
        (lambda d: d[: len(d) // 2], "past the end of the"),
        (lambda d: d[:-1], "truncated?"),
        (lambda d: rewritten(d, bad_tensor_index), "input tensor index of operator 0 is 1000"),
        (lambda d: rewritten(d, bad_buffer_index), "buffer index of tensor 3 is 1000"),
        (lambda d: rewritten(d, bad_shape), "has shape [10, 95] float32 = 3800 bytes"),
        (lambda d: rewritten(d, cycle), "the operators of subgraph 0 form a cycle"),
        (lambda d: rewritten(d, bad_signature_subgraph), "names subgraph 7"),
        (overrun_buffer, "overrun the"),
        (bad_opcode_index, "operator code index 200 is out of range"),
        (absurd_tensor_count, "2147483647 tensors cannot fit"),
        (random_with_identifier, "corrupt TFLite flatbuffer"),
    ],
)
def test_verify_rejects_with_one_line(tiny_bnn_tflite, corrupt, message):
    with pytest.raises(FlatbufferProblem) as info:
        ir.verify(corrupt(tiny_bnn_tflite))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_verify_accepts_the_real_model(tiny_bnn_tflite):
    ir.verify(tiny_bnn_tflite)


def test_fuzz_smoke(tiny_bnn_tflite, tmp_path):
    """2,000 mutated models: each accepted (and rewritable) or rejected, none crash or hang."""
    spec = importlib.util.spec_from_file_location("fuzz_ir", ROOT / "benchmarks/fuzz_ir.py")
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_ir"] = fuzz  # dataclasses look their module up while the class is built
    spec.loader.exec_module(fuzz)
    seeds = [fuzz.Seed(tiny_bnn_tflite, fuzz.table_offsets(tiny_bnn_tflite))]
    tally = fuzz.run_chunk((seeds, 1, 2000, 2.0, str(tmp_path)))
    assert (tally.crashed, tally.hung) == (0, 0), tally.problems[:3]
    assert tally.accepted > 50 and tally.rejected > 1000


# --- bitpacking ---------------------------------------------------------------------


def test_pack_bits_convention():
    x = np.array([-1.0, 1.0, -0.5, 0.0, -0.0, 2.0])
    assert ir.pack_bits(x).tolist() == [0b101]  # bit i = element i; 1 means negative
    x = -np.ones(33)
    assert ir.pack_bits(x).tolist() == [-1, 1]  # 32 ones, then 1 bit and zero padding
    assert ir.pack_bits(x).dtype == np.int32


@pytest.mark.parametrize("channels", [1, 31, 32, 33, 64, 100])
def test_unpack_inverts_pack(channels):
    x = np.random.default_rng(channels).normal(size=(2, 3, channels))
    words = ir.pack_bits(x)
    assert words.shape == (2, 3, ir.packed_words(channels))
    np.testing.assert_array_equal(ir.unpack_bits(words, channels), np.where(x < 0, -1.0, 1.0))


def test_unpack_matches_lce_bconv_filters(tiny_bnn, tiny_bnn_tflite):
    """LCE's bitpacked OHWI filters are the signs of the Keras HWIO kernels."""
    lq = _tf.larq()
    kernels = [
        layer.get_weights()[0]
        for layer in tiny_bnn.layers
        if isinstance(layer, lq.layers.QuantConv2D)
    ]
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    bconvs = [op for op in graph.operators if op.opcode == "LceBconv2d"]
    assert len(bconvs) == len(kernels) == 2
    for op, kernel in zip(bconvs, kernels, strict=True):
        signs = ir.unpack_bits(
            ir.tensor_array(model, graph, op.inputs[1]), op.options["channels_in"]
        )
        expected = np.where(kernel < 0, -1.0, 1.0).transpose(3, 0, 1, 2)
        np.testing.assert_array_equal(signs, expected)


# --- LCE options and editing helpers --------------------------------------------------


def test_lce_options_decode_and_encode(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    bconv = next(op for op in model.subgraphs[0].operators if op.opcode == "LceBconv2d")
    ir.check_lce_options("LceBconv2d", bconv.options)
    assert bconv.options["channels_in"] == 32 and bconv.options["padding"] == 0
    raw = ir.encode_custom_options(bconv.options)
    assert ir.decode_custom_options(raw) == bconv.options
    assert ir.decode_custom_options(b"\x01\x02") is None
    with pytest.raises(ValueError, match="must be"):
        ir.check_lce_options("LceBMaxPool2d", bconv.options)


def test_prune_renumbers_and_keeps_signatures(tiny_bnn_tflite, images):
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    unused = ir.add_tensor(model, graph, "unused", [4], "float32", np.ones(4, np.float32))
    assert graph.tensors[unused].buffer == len(model.buffers) - 1
    graph.tensors.insert(0, ir.Tensor("dead", [1], "float32"))  # shift every index by one
    for op in graph.operators:
        op.inputs = [t + 1 if t >= 0 else t for t in op.inputs]
        op.outputs = [t + 1 for t in op.outputs]
    graph.inputs = [t + 1 for t in graph.inputs]
    graph.outputs = [t + 1 for t in graph.outputs]
    for sig in model.signature_defs:
        sig.inputs = {k: v + 1 for k, v in sig.inputs.items()}
        sig.outputs = {k: v + 1 for k, v in sig.outputs.items()}
    ir.prune(model)
    assert ir.read(ir.write(model)) == ir.read(tiny_bnn_tflite)
    np.testing.assert_array_equal(
        predict(ir.write(model), images), predict(tiny_bnn_tflite, images)
    )


def test_read_is_fast_on_large_buffers(tiny_bnn_tflite):
    """A model with 8 MB of constants reads in well under a second."""
    model = ir.read(tiny_bnn_tflite)
    ir.add_tensor(model, 0, "big", [2048, 1024], "float32", np.ones((2048, 1024), np.float32))
    data = ir.write(model)
    start = time.perf_counter()
    ir.read(data)
    assert time.perf_counter() - start < 1.0


def test_model_built_from_scratch_runs():
    """A graph made only with the IR helpers (50 chained ADDs of 1) loads and computes 50."""
    model = ir.Model(subgraphs=[ir.Subgraph()])
    graph = model.subgraphs[0]
    previous = ir.add_tensor(model, graph, "x", [1, 4], "float32")
    one = ir.add_tensor(model, graph, "one", [4], "float32", np.ones(4, np.float32))
    for i in range(50):
        out = ir.add_tensor(model, graph, f"sum{i}", [1, 4], "float32")
        add = ir.Operator("ADD", [previous, one], [out], {"fused_activation_function": 0})
        add.options_type = "AddOptions"
        graph.operators.append(add)
        previous = out
    graph.inputs, graph.outputs = [0], [previous]
    data = ir.write(model)
    again = ir.read(data)
    assert again.subgraphs[0].tensors == graph.tensors
    assert again.subgraphs[0].operators[0].options == {  # omitted options take schema defaults
        "fused_activation_function": 0,
        "pot_scale_int16": True,
    }
    np.testing.assert_array_equal(
        predict(data, np.zeros((1, 4), np.float32)), np.full((1, 4), 50.0)
    )


def single_op_model(opcode: str, x_shape: list[int], x_dtype: str, y_shape, y_dtype) -> bytes:
    model = ir.Model(subgraphs=[ir.Subgraph()])
    graph = model.subgraphs[0]
    x = ir.add_tensor(model, graph, "x", x_shape, x_dtype)
    y = ir.add_tensor(model, graph, "y", y_shape, y_dtype)
    graph.operators.append(ir.Operator(opcode, [x], [y]))
    graph.inputs, graph.outputs = [x], [y]
    return ir.write(model)


@pytest.mark.parametrize("channels", [1, 31, 32, 33, 70])
def test_pack_bits_matches_lce_quantize(channels):
    """LCE's own LceQuantize kernel packs exactly as pack_bits; LceDequantize as unpack_bits."""
    words = ir.packed_words(channels)
    x = np.random.default_rng(channels).normal(size=(1, 2, 3, channels)).astype(np.float32)
    x[0, 0, 0, 0] = 0.0  # zero packs as +1
    quantize = single_op_model(
        "LceQuantize", [1, 2, 3, channels], "float32", [1, 2, 3, words], "int32"
    )
    np.testing.assert_array_equal(predict(quantize, x), ir.pack_bits(x))
    dequantize = single_op_model(
        "LceDequantize", [1, 2, 3, words], "int32", [1, 2, 3, channels], "float32"
    )
    np.testing.assert_array_equal(
        predict(dequantize, ir.pack_bits(x)), ir.unpack_bits(ir.pack_bits(x), channels)
    )


def test_bmaxpool_options_round_trip(tmp_path):
    """MaxPool before a binary conv's quantizer becomes LceBMaxPool2d; its options decode."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same")(inp)
    x = keras.layers.MaxPool2D(2)(x)
    x = lq.layers.QuantConv2D(
        32, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False
    )(x)
    data = _tf.lce().convert_keras_model(keras.Model(inp, x))
    model = ir.read(data)
    (pool,) = [op for op in model.subgraphs[0].operators if op.opcode == "LceBMaxPool2d"]
    ir.check_lce_options("LceBMaxPool2d", pool.options)
    assert (pool.options["filter_height"], pool.options["stride_width"]) == (2, 2)
    images = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(predict(ir.write(model), images), predict(data, images))
