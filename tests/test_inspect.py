"""inspect: figures against hand counts, BinaryDenseNet28 against the published MACs, CLI errors."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from bnnconvert import _tf, ir
from bnnconvert.cli.main import run
from bnnconvert.errors import FlatbufferProblem, UsageProblem
from bnnconvert.inspect import inspect_model, render_markdown

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
    assert list(result.float_weights) == ["float32"]
    assert result.float_weights["float32"].parameters == FLOAT_PARAMS
    assert result.float_weights["float32"].bytes == 4 * FLOAT_PARAMS
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
    model.metadata["bnnconvert"] = json.dumps({"architecture": "tiny", "classes": 10}).encode()
    model.metadata["blob"] = bytes(range(256))
    result = inspect_model(ir.write(model))
    assert result.metadata["bnnconvert"] == '{"architecture":"tiny","classes":10}'
    assert result.metadata["blob"] == "<256 bytes>"
    assert result.metadata["min_runtime_version"].startswith("1.")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["binary_macs"] == BCONV_MACS and "compression_ratio" in data


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
    assert result.float_weights["float16"].parameters == 32 * 3 * 3 * 3
    assert result.float_weights["float16"].bytes == 2 * 32 * 3 * 3 * 3
    assert result.float_weights["float32"].parameters == FLOAT_PARAMS - 32 * 3 * 3 * 3
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
    assert data["binary_macs"] == BCONV_MACS
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
