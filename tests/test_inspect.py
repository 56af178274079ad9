"""inspect: figures against hand counts, BinaryDenseNet28 against the published MACs, CLI errors.

Every op kind that gets MACs is counted in a tiny model converted by the real converter
(LCE's, or TensorFlow's for int8 and signature models) and compared with a count by hand.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from bnnconvert import _tf, ir
from bnnconvert.cli.main import run
from bnnconvert.errors import FlatbufferProblem, UsageProblem
from bnnconvert.inspect import inspect_model
from bnnconvert.models import randomize_batchnorm
from bnnconvert.reports.inspect_text import metadata_rows, render_markdown

# The tiny BNN (tests/conftest.py) on a 32x32x3 input, counted by hand:
# stem Conv2D 3x3, 3 -> 32 channels; binary convs 3x3, 32 -> 32 and 64 -> 32; Dense 96 -> 10.
OUT = 32 * 32 * 32  # every conv writes 32x32 pixels x 32 channels
STEM_MACS = OUT * 3 * 3 * 3
BCONV_MACS = OUT * 3 * 3 * 32 + OUT * 3 * 3 * 64
DENSE_MACS = 96 * 10
BINARY_PARAMS = 32 * 3 * 3 * 32 + 32 * 3 * 3 * 64
BINARY_BYTES = 4 * (32 * 3 * 3 * 1 + 32 * 3 * 3 * 2)  # ceil(32/32)=1 and ceil(64/32)=2 words
# Float weights: stem kernel + the zero bias LCE gives the stem + the dense kernel (no bias).
FLOAT_PARAMS = 32 * 3 * 3 * 3 + 32 + 96 * 10
# Other constants: the three batch norms as MUL+ADD vectors (32, 64, 96 channels), the
# bconvs' shared post-activation multiplier (32) and the MEAN's axes (2).
OTHER_PARAMS = 2 * (32 + 64 + 96) + 32 + 2


def test_hand_counts(tiny_bnn_tflite):
    result = inspect_model(tiny_bnn_tflite)
    assert result.binary_macs == BCONV_MACS == 28_311_552
    assert result.float_macs == STEM_MACS + DENSE_MACS
    assert result.binary_mac_share == pytest.approx(
        BCONV_MACS / (BCONV_MACS + STEM_MACS + DENSE_MACS)
    )
    assert (result.binary_weights.parameters, result.binary_weights.bytes) == (
        BINARY_PARAMS,
        BINARY_BYTES,
    )
    assert result.binary_weights.tensors == 2
    assert list(result.weights) == ["binary (bitpacked)", "float32"]
    assert result.weights["float32"].parameters == FLOAT_PARAMS
    assert result.weights["float32"].bytes == 4 * FLOAT_PARAMS
    assert result.other_constants.parameters == OTHER_PARAMS
    size = len(tiny_bnn_tflite)
    assert result.float_equivalent_bytes == size - BINARY_BYTES + 4 * BINARY_PARAMS
    assert result.compression_ratio == pytest.approx(result.float_equivalent_bytes / size)
    assert result.op_histogram == {
        "MUL": 3, "ADD": 3, "LceQuantize": 2, "LceBconv2d": 2, "CONCATENATION": 2,
        "CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1,
    }  # fmt: skip


def test_per_op_rows_decode_lce_options(tiny_bnn_tflite):
    result = inspect_model(tiny_bnn_tflite)
    bconv = next(op for op in result.ops if op.type == "LceBconv2d")
    assert bconv.mac_kind == "binary" and bconv.macs == OUT * 3 * 3 * 32
    assert bconv.options["padding"] == "SAME" and bconv.options["channels_in"] == 32
    assert bconv.inputs[1].dtype == "int32" and bconv.inputs[1].constant
    assert bconv.inputs[1].shape == [32, 3, 3, 1]
    assert bconv.inputs[4] is None  # no output threshold: float output
    assert bconv.outputs[0].shape == [1, 32, 32, 32]


def test_metadata_and_json(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    model.metadata["custom"] = json.dumps({"architecture": "tiny", "classes": 10}).encode()
    model.metadata["blob"] = bytes(range(256))
    result = inspect_model(ir.write(model))
    assert result.metadata["custom"] == {"architecture": "tiny", "classes": 10}
    assert result.metadata["blob"] == {"undecoded_bytes": 256}
    assert result.metadata["min_runtime_version"].startswith("1.")
    rows = metadata_rows(result)
    assert rows["custom"] == '{"architecture":"tiny","classes":10}'
    assert rows["blob"] == "<256 bytes>"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["macs"] == {"binary": BCONV_MACS, "int8": 0, "int16": 0, "float": 885_696}
    assert data["metadata"]["custom"]["classes"] == 10 and "compression_ratio" in data


def test_an_empty_text_entry_is_named_not_left_blank(tiny_bnn_tflite):
    """TFLite pads min_runtime_version with NULs; one the converter left unset is all NULs."""
    model = ir.read(tiny_bnn_tflite)
    model.metadata["min_runtime_version"] = b"\0" * 16
    result = inspect_model(ir.write(model))
    assert result.metadata["min_runtime_version"] == ""
    assert metadata_rows(result)["min_runtime_version"] == "not recorded (the entry is empty)"
    assert "| min_runtime_version | not recorded (the entry is empty) |" in render_markdown(result)


def test_markdown_rendering(tiny_bnn_tflite):
    text = render_markdown(inspect_model(tiny_bnn_tflite))
    assert "- MACs: 28,311,552 binary, 885,696 float; binary share 97.0%" in text
    assert f"| binary (bitpacked) | 2 | {BINARY_PARAMS:,} | {BINARY_BYTES:,} |" in text
    assert "| 4 | LceBconv2d | 17:1x32x32x1 int32" in text


def test_float16_weights_are_followed_through_dequantize(tiny_bnn_tflite):
    """Stem weights stored as float16 behind a DEQUANTIZE still count as float weights."""
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    stem = graph.operators[0]
    assert stem.opcode == "CONV_2D"
    weights = ir.tensor_array(model, graph, stem.inputs[1])
    half = ir.add_tensor(model, graph, "stem_fp16", weights.shape, "float16", weights.astype("f2"))
    graph.tensors[stem.inputs[1]].buffer = 0  # now computed by the DEQUANTIZE
    graph.operators.insert(0, ir.Operator("DEQUANTIZE", [half], [stem.inputs[1]]))
    data = ir.write(model)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    before, after = (_tf.lce_interpreter(d).predict(x) for d in (tiny_bnn_tflite, data))
    np.testing.assert_allclose(after, before, atol=2e-2)  # float16 rounding of the stem only
    result = inspect_model(data)
    assert result.weights["fp16"].parameters == 32 * 3 * 3 * 3
    assert result.weights["fp16"].bytes == 2 * 32 * 3 * 3 * 3
    assert result.weights["float32"].parameters == FLOAT_PARAMS - 32 * 3 * 3 * 3
    # Every weight counts 4 bytes in the float equivalent, float16 ones included.
    stem = 32 * 3 * 3 * 3
    weight_bytes = BINARY_BYTES + 2 * stem + 4 * (FLOAT_PARAMS - stem)
    expected = len(data) - weight_bytes + 4 * (BINARY_PARAMS + FLOAT_PARAMS)
    assert result.float_equivalent_bytes == expected
    assert result.float_macs == STEM_MACS + DENSE_MACS


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, d: None, "no such file"),
        (lambda p, d: p.write_bytes(d[:4] + b"ABCD" + d[8:]), "not a TFLite flatbuffer"),
        (lambda p, d: p.write_bytes(d[: len(d) // 3]), "truncated?"),
        (lambda p, d: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a TFLite"),
        (lambda p, d: p.write_bytes(d[:8] + bytes(56) + d[64:]), "corrupt TFLite"),
    ],
    ids=["missing", "wrong-identifier", "truncated", "random", "zeroed-header"],
)
def test_cli_errors_are_one_line_exit_2(tiny_bnn_tflite, tmp_path, capsys, make, message):
    path = tmp_path / "model.tflite"
    make(path, tiny_bnn_tflite)
    code = run(["inspect", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert message in captured.err
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_cli_directory_is_a_usage_problem(tmp_path):
    with pytest.raises(UsageProblem, match="is a directory"):
        inspect_model(tmp_path)


def test_library_names_the_file(tmp_path):
    path = tmp_path / "x.tflite"
    path.write_bytes(b"12345678")
    with pytest.raises(FlatbufferProblem, match=r"x\.tflite: not a TFLite flatbuffer"):
        inspect_model(path)


def test_cli_table_and_json(tiny_bnn_tflite, tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_bytes(tiny_bnn_tflite)
    assert run(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "compression ratio" in out
    assert "28,311,552 binary, 885,696 float; binary share 97.0%" in out
    assert re.search(rf"binary \(bitpacked\) +2 +{BINARY_PARAMS:,} +{BINARY_BYTES:,} ", out)
    # Op 4, the first bconv: packed input -> float output, its filter and two more constants.
    row = next(line for line in out.splitlines() if line.lstrip().startswith("4  LceBconv2d"))
    assert "1x32x32x1 i32 → 1x32x32x32 f32" in row and "32x3x3x1 i32 +2" in row
    assert "SAME, cin 32" in row and row.rstrip().endswith("9.44M")
    assert "<br>" not in out and "|" not in out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 120
    assert run(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["macs"]["binary"] == BCONV_MACS
    assert data["ops"][4]["type"] == "LceBconv2d"


def test_cli_markdown_is_the_library_rendering(tiny_bnn_tflite, tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_bytes(tiny_bnn_tflite)
    assert run(["inspect", str(path), "--markdown"]) == 0
    assert capsys.readouterr().out == render_markdown(inspect_model(path))
    assert run(["inspect", str(path), "--markdown", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "choose one output format" in captured.err


def test_short_options_drop_defaults_and_merge_pairs():
    from bnnconvert.cli.inspect_view import short_options

    pool = {
        "padding": "VALID", "stride_w": 2, "stride_h": 2, "filter_width": 2,
        "filter_height": 2, "fused_activation_function": "RELU",
    }  # fmt: skip
    assert short_options(pool) == "VALID, stride 2, pool 2x2, relu"
    conv = {
        "padding": "SAME", "stride_w": 1, "stride_h": 2, "fused_activation_function": "NONE",
        "dilation_w_factor": 1, "dilation_h_factor": 1, "quantized_bias_type": 0,
    }  # fmt: skip
    assert short_options(conv) == "SAME, stride 2x1"
    assert short_options({"keep_dims": False, "beta": 1.0, "axis": 3}) == "axis 3"


@pytest.mark.slow
def test_binary_densenet28_matches_published_macs():
    """BinaryDenseNet28 at 224x224: the published 3,587,383,296 binary / 202,484,224 float MACs.

    Those figures count exactly what inspect counts: the 23 binary 3x3 convs (binary);
    the 7x7 stride-2 stem (118,013,952), the three 1x1 transition convs after their
    max pools (56,197,120 + 20,471,808 + 7,225,344) and the dense layer's weights
    (576 x 1000 = 576,000, bias not counted) (float). Batch norms, pooling,
    concatenation and the global average pool are not counted.
    """
    from bnnconvert.models import binary_densenet28

    data = _tf.lce().convert_keras_model(binary_densenet28())
    start = time.perf_counter()
    model = ir.read(data)
    assert time.perf_counter() - start < 1.0  # ~4 MB of buffers, read as bytes
    # The full-size model survives the IR round trip bit for bit in the interpreter.
    x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype(np.float32)
    outputs = [
        _tf.lce_interpreter(d, use_indirect_bgemm=True).predict(x) for d in (data, ir.write(model))
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    result = inspect_model(data)
    assert result.binary_macs == 3_587_383_296
    assert result.float_macs == 202_484_224
    assert result.op_histogram["LceBconv2d"] == 6 + 6 + 6 + 5
    assert result.binary_weights.tensors == 23


def test_bnnconvert_metadata_is_summarised(tiny_bnn_tflite):
    from bnnconvert import metadata

    data = metadata.embed_metadata(tiny_bnn_tflite, name="tiny", target="arm64")
    result = inspect_model(data)
    assert result.model_info["model"] == "tiny v1"
    assert "target arm64" in result.model_info["producer"]
    assert result.notes == []
    assert "| model | tiny v1 |" in render_markdown(result)


@pytest.mark.parametrize(
    ("entry", "note"),
    [
        (b"\xff not json", "Expected UTF-8 JSON"),
        (b'{"schema_version": 1, "model": 5}', "lacks fields bnnconvert writes"),
    ],
)
def test_malformed_bnnconvert_metadata_is_a_note(tiny_bnn_tflite, entry, note):
    model = ir.read(tiny_bnn_tflite)
    model.metadata["bnnconvert"] = entry
    result = inspect_model(ir.write(model))
    assert result.model_info == {}
    assert len(result.notes) == 1 and note in result.notes[0]
    assert result.binary_macs == BCONV_MACS  # the rest of the report is still there


# A bconv -> BN -> bconv -> sign chain on a 12x12x3 input: LCE writes both bconvs' outputs
# bitpacked (1 and 2 int32 words per pixel), yet MACs follow the filters' 64 output channels.
CHAIN_STEM = 12 * 12 * 32 * 3 * 3 * 3  # float Conv2D 3 -> 32
CHAIN_BINARY = 12 * 12 * 64 * 3 * 3 * 32 + 12 * 12 * 64 * 3 * 3 * 64  # 32 -> 64, 64 -> 64


@pytest.fixture(scope="module")
def bitpacked_chain():
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(9)
    kw = dict(
        input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
        padding="same", pad_values=1.0,
    )  # fmt: skip
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(64, 3, **kw)(x)
    x = keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(64, 3, **kw)(x)
    x = keras.layers.BatchNormalization()(x)
    x = lq.quantizers.SteSign()(x)
    model = keras.Model(inp, x)
    randomize_batchnorm(model, 9)
    return model, _tf.lce().convert_keras_model(model)


def test_bitpacked_output_bconvs_count_filter_channels(bitpacked_chain):
    keras_model, data = bitpacked_chain
    result = inspect_model(data)
    bconvs = [op for op in result.ops if op.type == "LceBconv2d"]
    assert [op.outputs[0].shape[-1] for op in bconvs] == [2, 2]  # bitpacked words
    assert [op.macs for op in bconvs] == [2_654_208, 5_308_416]
    assert result.macs == {"binary": CHAIN_BINARY, "int8": 0, "int16": 0, "float": CHAIN_STEM}
    assert CHAIN_BINARY == 7_962_624
    assert f"{result.binary_mac_share:.1%}" == "98.5%"
    # The export audit counts with the same module.
    from bnnconvert.audit import audit

    found = audit(keras_model, data)
    assert (found.binary_macs, found.float_macs) == (CHAIN_BINARY, CHAIN_STEM)


@pytest.mark.parametrize(
    ("per_group", "op", "kind"),
    [(32, "LceBconv2d", "binary"), (16, "CONV_2D", "float")],
    ids=["32-per-group-binary", "16-per-group-float"],
)
def test_grouped_convolutions_count_channels_per_group(per_group, op, kind):
    """64 -> 64 channels, 3x3, on 8x8: LCE binarizes groups of 32 channels, not of 16."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((8, 8, 64))
    x = lq.layers.QuantConv2D(
        64, 3, groups=64 // per_group, padding="same", input_quantizer="ste_sign",
        kernel_quantizer="ste_sign", use_bias=False,
    )(inp)  # fmt: skip
    result = inspect_model(_tf.lce().convert_keras_model(keras.Model(inp, x)))
    (counted,) = [o for o in result.ops if o.mac_kind]
    assert (counted.type, counted.mac_kind) == (op, kind)
    assert counted.macs == 8 * 8 * 64 * 3 * 3 * per_group


def _float_kernels_model():
    """TRANSPOSE_CONV (stride 2) -> DEPTHWISE_CONV_2D (x2) -> CONV_3D, all with non-zero biases."""
    keras = _tf.keras()
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 4))
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(inp)  # 12x12x8
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid")(x)  # 10x10x16
    x = keras.layers.Reshape((10, 10, 16, 1))(x)
    x = keras.layers.Conv3D(2, 2)(x)  # 9x9x15x2
    model = keras.Model(inp, x)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 1, layer.bias.shape).astype("float32"))
    return model


def test_transpose_depthwise_conv3d_by_hand():
    data = _tf.lce().convert_keras_model(_float_kernels_model())
    result = inspect_model(data)
    counted = {op.type: op.macs for op in result.ops if op.mac_kind}
    assert {op.mac_kind for op in result.ops if op.mac_kind} == {"float"}
    assert counted == {
        "TRANSPOSE_CONV": 6 * 6 * 4 * 3 * 3 * 8,  # input pixels x Cin x kh x kw x Cout
        "DEPTHWISE_CONV_2D": 10 * 10 * 16 * 3 * 3,
        "CONV_3D": 9 * 9 * 15 * 2 * 2 * 2 * 2 * 1,
    }
    assert result.float_macs == sum(counted.values())
    kernels = 8 * 3 * 3 * 4 + 3 * 3 * 16 + 2 * 2 * 2 * 1 * 2
    biases = 8 + 16  # the converter gives CONV_3D its bias as a separate ADD (other constants)
    assert result.weights["float32"].parameters == kernels + biases
    assert result.other_constants.parameters == 4 + 5 + 2  # output shape, reshape, ADD's bias


def test_batch_matmul_with_a_constant_by_hand():
    tf = _tf.tensorflow()
    w = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 7)).astype("float32"))

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 3, 5], tf.float32)])
        def project(self, x):
            return tf.linalg.matmul(x, w)

    module = Module()
    functions = [module.project.get_concrete_function()]
    data = tf.lite.TFLiteConverter.from_concrete_functions(functions, module).convert()
    result = inspect_model(data)
    assert [(op.type, op.macs, op.mac_kind) for op in result.ops] == [
        ("BATCH_MATMUL", 2 * 3 * 7 * 5, "float")
    ]
    assert result.weights["float32"].parameters == 2 * 5 * 7


@pytest.fixture(scope="module")
def int8_mobilenet() -> bytes:
    """A MobileNet-style block on 32x32x3, fully int8 (TFLiteConverter, representative data)."""
    tf, keras = _tf.tensorflow(), _tf.keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.uniform(0, 1, (1, 32, 32, 3)).astype("float32")]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, x))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


INT8_MACS = 16 * 16 * 8 * 3 * 3 * 3 + 16 * 16 * 8 * 3 * 3 + 16 * 16 * 16 * 8 + 16 * 10
INT8_WEIGHTS = 8 * 3 * 3 * 3 + 3 * 3 * 8 + 16 * 8 + 10 * 16


def test_full_int8_model_labels_int8(int8_mobilenet, tmp_path, capsys):
    result = inspect_model(int8_mobilenet)
    assert result.macs == {"binary": 0, "int8": INT8_MACS, "int16": 0, "float": 0}
    assert {op.mac_kind for op in result.ops if op.macs} == {"int8"}
    assert list(result.weights) == ["int8", "bias (int32)"]
    assert (result.weights["int8"].parameters, result.weights["int8"].bytes) == (
        INT8_WEIGHTS,
        INT8_WEIGHTS,
    )
    assert result.weights["bias (int32)"].parameters == 8 + 8 + 16  # the dense has no bias
    # Each int8 weight counts 4 bytes in the float equivalent (int32 biases already do).
    assert result.float_equivalent_bytes == len(int8_mobilenet) + 3 * INT8_WEIGHTS
    text = render_markdown(result)
    assert "- MACs: 0 binary, 106,656 int8, 0 float; binary share 0.0%" in text
    assert "float (" not in text and "| int8 | 4 | 576 | 576 |" in text
    path = tmp_path / "int8.tflite"
    path.write_bytes(int8_mobilenet)
    assert run(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 binary, 106,656 int8, 0 float" in out
    assert re.search(r"bias \(int32\) +3 +32 +128 ", out)


def test_quantization_in_all_three_views(int8_mobilenet, tmp_path, capsys):
    result = inspect_model(int8_mobilenet)
    (signature,) = result.signatures
    (image,) = signature.inputs.values()
    assert image.quantization is not None
    (scale,) = image.quantization.scale
    assert scale == pytest.approx(1 / 255, rel=1e-4)  # calibrated on 0..1 inputs
    assert image.quantization.zero_point == [-128] and image.quantization.axis is None
    shown = f"1x32x32x3 int8 (scale {scale:.6g}, zero point -128)"
    filters = result.ops[0].inputs[1].quantization
    assert filters is not None and len(filters.scale) == 8 and filters.axis == 0
    per_channel = (
        f"per-channel ×8, axis 0, scale {min(filters.scale):.3g}–{max(filters.scale):.3g}, "
        "zero point 0"
    )
    markdown = render_markdown(result)
    assert shown in markdown and per_channel in markdown
    path = tmp_path / "int8.tflite"
    path.write_bytes(int8_mobilenet)
    assert run(["inspect", str(path)]) == 0
    assert shown in capsys.readouterr().out
    assert run(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (json_input,) = data["signatures"][0]["inputs"].values()
    assert json_input["quantization"] == {
        "scale": [scale], "zero_point": [-128], "axis": None,
    }  # fmt: skip
    assert data["ops"][0]["inputs"][1]["quantization"]["scale"] == filters.scale


def test_each_signature_with_its_own_macs(tmp_path, capsys):
    tf = _tf.tensorflow()
    rng = np.random.default_rng(1)

    class TwoEntries(tf.Module):
        def __init__(self):
            self.filters = tf.constant(rng.normal(size=(3, 3, 2, 4)).astype("float32"))
            self.dense = tf.constant(rng.normal(size=(6, 5)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 2], tf.float32, name="image")])
        def encode(self, image):
            return {"features": tf.nn.conv2d(image, self.filters, 1, "SAME")}

        @tf.function(input_signature=[tf.TensorSpec([1, 6], tf.float32, name="vector")])
        def classify(self, vector):
            return {"scores": tf.matmul(vector, self.dense)}

    module = TwoEntries()
    functions = [module.encode.get_concrete_function(), module.classify.get_concrete_function()]
    data = tf.lite.TFLiteConverter.from_concrete_functions(functions, module).convert()
    result = inspect_model(data)
    found = {s.key: s for s in result.signatures}
    assert set(found) == {"encode", "classify"}
    assert list(found["encode"].inputs) == ["image"]
    assert list(found["encode"].outputs) == ["features"]
    assert found["encode"].outputs["features"].shape == [1, 8, 8, 4]
    assert found["encode"].macs["float"] == 8 * 8 * 4 * 3 * 3 * 2
    assert found["classify"].macs["float"] == 5 * 6
    assert result.float_macs == 8 * 8 * 4 * 3 * 3 * 2 + 5 * 6
    path = tmp_path / "two.tflite"
    path.write_bytes(data)
    assert run(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(all 2 signatures; each below)" in out
    assert re.search(r"signature 'encode' \(subgraph \d\) +MACs 0 binary, 4,608 float", out)
    assert re.search(r"output scores +1x5 float32", out)
    markdown = render_markdown(result)
    assert "| signature 'classify' (subgraph" in markdown and "MACs 0 binary, 30 float" in markdown


def test_standard_metadata_is_decoded_and_json_is_complete(tiny_bnn_tflite, tmp_path, capsys):
    from bnnconvert import metadata
    from bnnconvert.preprocessing import parse_preprocessing

    labels = [f"class {i}" for i in range(10)]
    data = metadata.embed_metadata(
        tiny_bnn_tflite,
        name="tiny",
        target="arm64",
        labels=labels,
        preprocessing=parse_preprocessing("imagenet"),
    )
    result = inspect_model(data)
    standard = result.metadata["TFLITE_METADATA"]
    assert standard["name"] == "tiny" and standard["outputs"][0]["label_file"] == "labels.txt"
    assert result.metadata["associated_files"] == ["labels.txt"]
    row = metadata_rows(result)["TFLITE_METADATA"]
    assert row == (
        "tiny v1; input image: rgb image, (pixel − [123.7,116.3,103.5]) / [58.4,57.12,57.38], "
        "range [-2.118,-2.036,-1.804]..[2.249,2.429,2.64]; "
        "output probability: range 0..1, labels in labels.txt"
    )
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    assert run(["inspect", str(path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["metadata"]["bnnconvert"] == metadata.read_metadata(data)
    assert found["metadata"]["bnnconvert"]["labels"] == labels  # all ten, not cut off
    assert found["metadata"]["bnnconvert"]["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert found["metadata"]["TFLITE_METADATA"]["inputs"][0]["std"] == pytest.approx(
        [0.229 * 255, 0.224 * 255, 0.225 * 255]
    )
    assert "model_info" not in found


def test_two_outputs_each_described_by_name(tmp_path, capsys):
    """A feature map and logits as outputs: only the (1, N) one is a classifier."""
    from bnnconvert import metadata

    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(16)
    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(32, 3, padding="same", **kw)(x)
    features = keras.layers.BatchNormalization(name="features")(x)
    x = lq.layers.QuantConv2D(32, 3, padding="same", **kw)(features)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(x))
    logits = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, [features, logits])
    randomize_batchnorm(model, 16)
    data = metadata.embed_metadata(
        _tf.lce().convert_keras_model(model),
        name="two",
        target="arm64",
        labels=[f"c{i}" for i in range(10)],
    )
    result = inspect_model(data)
    assert result.model_info["output features"] == "tensor 1x12x12x32 float32"
    assert result.model_info["output logits"] == "10 classes (logits)"
    assert "output" not in result.model_info
    (signature,) = result.signatures
    assert {k: t.shape for k, t in signature.outputs.items()} == {
        "features": [1, 12, 12, 32],
        "logits": [1, 10],
    }
    assert (
        "output features: Output tensor 1x12x12x32 float32"
        in metadata_rows(result)["TFLITE_METADATA"]
    )
    path = tmp_path / "two.tflite"
    path.write_bytes(data)
    assert run(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"output features +tensor 1x12x12x32 float32", out)
    assert re.search(r"output logits +10 classes \(logits\)", out)
    assert "logits\n" not in out and "32 logits" not in out


def test_hybrid_int8_weights_compute_in_int8():
    """Dynamic-range quantization: int8 weights used as stored by TFLite's hybrid kernels."""
    tf, keras = _tf.tensorflow(), _tf.keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(64, 3, padding="same")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(1100)(x)  # large enough for the converter to quantize it
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, x))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    result = inspect_model(converter.convert())
    counted = [(o.type, o.inputs[0].dtype, o.inputs[1].dtype, o.mac_kind) for o in result.ops]
    assert [c for c in counted if c[3]] == [
        ("CONV_2D", "float32", "int8", "int8"),
        ("FULLY_CONNECTED", "float32", "int8", "int8"),
    ]
    assert result.macs["int8"] == 8 * 8 * 64 * 3 * 3 * 3 + 1100 * 64
    assert result.weights["int8"].parameters == 64 * 3 * 3 * 3 + 1100 * 64
    assert result.weights["float32"].parameters == 64  # the conv's float bias


def test_float_weights_int8_pass_makes_hybrid_int8_ops(tiny_bnn_tflite):
    """bnnconvert's weight-only int8 storage feeds int8 weights to the float ops directly."""
    from bnnconvert.passes import OptimizeOptions, optimize

    smaller, _ = optimize(tiny_bnn_tflite, OptimizeOptions(float_weights="int8"))
    result = inspect_model(smaller)
    assert result.macs == {
        "binary": BCONV_MACS, "int8": STEM_MACS + DENSE_MACS, "int16": 0, "float": 0,
    }  # fmt: skip
    assert result.weights["int8"].parameters == 32 * 3 * 3 * 3 + 96 * 10
