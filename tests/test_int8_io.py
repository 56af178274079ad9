"""int8 input/output tensors (``--input-type`` / ``--output-type``), end to end.

The bundled digits BinaryDenseNet (32x32, trained, so its batch norms and
margins are real) is exported in full int8 with every combination of input
and output type, validated against the Keras fake-quant model it was
converted from, and benchmarked on the host. An int8 edge must change nothing
but the edge: fed through :mod:`bnnconvert.io_quant`, every variant gives
exactly the float-edged model's outputs. The refusals are checked before any
conversion.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_tiny_bnn

from bnnconvert import _tf, checkpoint, convert, io_quant, ir, metadata, targets
from bnnconvert.bench import bench
from bnnconvert.cli.main import run
from bnnconvert.errors import ConversionProblem, FlatbufferProblem, UsageProblem
from bnnconvert.export import export
from bnnconvert.passes import OptimizeOptions, int8_float_layers
from bnnconvert.validate import validate

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "digits"
COMBINATIONS = list(itertools.product(("float32", "int8"), repeat=2))
FULL_INT8 = OptimizeOptions(int8_activations=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny untrained BNN as a .keras file with a test split (uniform [0, 1) inputs)."""
    folder = tmp_path_factory.mktemp("tiny-int8")
    model = make_tiny_bnn(seed=3)
    x = np.random.default_rng(3).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    model.save(folder / "model.keras")
    np.savez(folder / "test_split.npz", x=x, y=model.predict(x, verbose=0).argmax(-1))
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The bundled model in full int8, once per (input type, output type)."""
    out = tmp_path_factory.mktemp("exports")
    return {
        (i, o): export(
            BUNDLED, output_dir=out / f"{i}-{o}", optimize=FULL_INT8, input_type=i, output_type=o
        )
        for i, o in COMBINATIONS
    }


def fake_quant_keras(folder: Path, input_type: str, output_type: str):
    """The Keras model with the fake-quant nodes export converted (same calibration)."""
    loaded = checkpoint.load(folder)
    rebuilt, _ = int8_float_layers(
        loaded.model,
        FULL_INT8,
        loaded.test_data,
        int8_input=input_type == "int8",
        int8_output=output_type == "int8",
    )
    return rebuilt


def outputs(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    """Float outputs of any variant: inputs quantized, outputs dequantized as the model says."""
    model = ir.read(flatbuffer)
    raw = _tf.lce_interpreter(flatbuffer).predict(io_quant.quantize_inputs(model, x))
    return io_quant.dequantize_outputs(model, raw)


@pytest.mark.slow
@pytest.mark.parametrize(("input_type", "output_type"), COMBINATIONS)
def test_each_combination_exports_validates_and_benchmarks(
    exports, tmp_path, input_type, output_type
):
    result = exports[(input_type, output_type)]
    data = result.model_path.read_bytes()
    graph = ir.read(data).subgraphs[0]
    assert graph.tensors[graph.inputs[0]].dtype == input_type
    assert graph.tensors[graph.outputs[0]].dtype == output_type
    assert result.op_counts["LceBconv2d"] == 9 and "QUANTIZE" in result.op_counts

    # export.json and the metadata carry the parameters an app quantizes with.
    report = json.loads(result.report_path.read_text())
    record = report["quantization"]
    assert record["lossy"] is True and report["validation"]["lossy"] is True
    assert record["sources"] == ["int8 from ranges calibrated by --int8-activations"]
    embedded = metadata.read_metadata(data)
    for which, wanted in (("input", input_type), ("output", output_type)):
        signature = report["signature"][f"{which}s"][0]
        assert signature["dtype"] == record[which]["dtype"] == embedded[which]["dtype"] == wanted
        if wanted == "int8":
            params = {k: record[which][k] for k in ("scale", "zero_point")}
            assert embedded[which]["quantization"] == signature["quantization"] == params
        else:
            assert embedded[which]["quantization"] is None and signature["quantization"] is None
    if input_type == "int8":  # the digits inputs are in [0, 1]
        assert record["input"]["zero_point"] == -128
        assert record["input"]["scale"] == pytest.approx(1 / 255, rel=1e-6)
    if output_type == "int8":  # TFLite's int8 softmax: 1/256 steps from -128
        assert (record["output"]["scale"], record["output"]["zero_point"]) == (1 / 256, -128)

    # An int8 edge changes only the edge: same outputs as the float-edged model.
    x = np.load(BUNDLED / "test_split.npz")["x"][:32]
    reference = outputs(exports[("float32", "float32")].model_path.read_bytes(), x)
    np.testing.assert_array_equal(outputs(data, x), reference)

    # Parity with the Keras fake-quant model it came from, on the float test split.
    checked = validate(
        BUNDLED,
        result.model_path,
        keras_model=fake_quant_keras(BUNDLED, input_type, output_type),
        workers=0,
    )
    assert checked.samples == 360
    assert checked.top1_agreement >= 0.99
    assert checked.flatbuffer_accuracy >= 0.98
    notes = io_quant.io_notes(ir.read(data))
    assert checked.notes[: len(notes)] == notes
    if input_type == "int8":
        assert notes[0] == "inputs quantized with scale 0.00392157, zero point -128"
    if output_type == "int8":
        assert notes[-1] == "outputs dequantized with scale 0.00390625, zero point -128"

    # The host runner feeds the model in its own input type.
    measured = bench([result.model_path], output_dir=tmp_path, runs=3, autotune=False)
    (measurement,) = measured.measurements
    assert len(measurement.samples_us) == 3 and min(measurement.samples_us) > 0


def test_int8_edges_of_a_float_model_are_refused_before_conversion(tiny_dir, tmp_path):
    steps: list[str] = []
    with pytest.raises(UsageProblem) as caught:
        export(tiny_dir, output_dir=tmp_path, input_type="int8", step=steps.append)
    assert str(caught.value) == (
        "Expected int8_activations= or a model with its own fake-quant nodes for "
        "an int8 input_type=, got a float model; add int8_activations="
    )
    assert not any(s.startswith("Converting") for s in steps)
    assert not (tmp_path / "model.tflite").exists()


def test_unknown_io_type_is_refused_before_loading(tiny_dir, tmp_path):
    steps: list[str] = []
    with pytest.raises(UsageProblem, match=r"^Expected output_type= to be one of float32, int8, "):
        export(tiny_dir, output_dir=tmp_path, output_type="uint8", step=steps.append)
    assert steps == []


def test_cli_says_it_in_one_line(tiny_dir, tmp_path, capsys):
    argv = ["export", str(tiny_dir), "-o", str(tmp_path), "--output-type", "int8"]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "an int8 --output-type, got a float model; add --int8-activations" in err


def test_a_flatbuffer_lce_made_with_int8_io_validates(tiny_dir, tmp_path):
    """LCE's own converter with inference_input/output_type int8: validate feeds it."""
    tf = _tf.tensorflow()
    keras_fq = fake_quant_keras(tiny_dir, "int8", "int8")
    made = {
        kind: bytes(
            _tf.lce().convert_keras_model(
                keras_fq, inference_input_type=kind, inference_output_type=kind
            )
        )
        for kind in (tf.int8, tf.float32)
    }
    interpreter = _tf.lce_interpreter(made[tf.int8])
    assert [np.dtype(t) for t in interpreter.input_types] == [np.int8]
    assert [np.dtype(t) for t in interpreter.output_types] == [np.int8]
    x = np.load(tiny_dir / "test_split.npz")["x"]
    np.testing.assert_array_equal(outputs(made[tf.int8], x), outputs(made[tf.float32], x))
    path = tmp_path / "lce.tflite"
    path.write_bytes(made[tf.int8])
    checked = validate(tiny_dir, path, keras_model=keras_fq, workers=0)
    assert checked.samples == 16
    assert checked.notes[:2] == io_quant.io_notes(ir.read(made[tf.int8]))
    assert checked.notes[0].startswith("inputs quantized with scale 0.00392")


def test_io_quant_round_trip_uses_the_tensors_own_parameters():
    x = np.array([[0.0, 0.25, 0.75, -0.25, -0.75, 1.3, 1000.0, -1000.0]], np.float32)
    quant = ir.Quantization(scale=[0.5], zero_point=[-10])
    graph = ir.Subgraph([ir.Tensor("in", [1, 8], "int8", quantization=quant)], [], [0], [0])
    model = ir.Model([graph])
    fed = io_quant.quantize_inputs(model, x)
    # The Java core (TensorQuantizationTest) expects exactly these bytes.
    np.testing.assert_array_equal(fed, [[-10, -9, -8, -11, -12, -7, 127, -128]])
    back = io_quant.dequantize_outputs(model, fed)
    np.testing.assert_array_equal(back, [[0.0, 0.5, 1.0, -0.5, -1.0, 1.5, 68.5, -59.0]])
    assert io_quant.io_notes(model) == [
        "inputs quantized with scale 0.5, zero point -10",
        "outputs dequantized with scale 0.5, zero point -10",
    ]


def test_per_channel_or_parameterless_edges_are_refused():
    with_two = ir.Tensor("t", [1, 2], "int8", quantization=ir.Quantization([0.1, 0.2], [0, 0]))
    one_scale = r"^Expected one scale on the graph tensor 't', got 2"
    with pytest.raises(FlatbufferProblem, match=one_scale):
        io_quant.tensor_quantization(with_two)
    parameters = r"^Expected scale and zero point on the int8 tensor 'u'"
    with pytest.raises(FlatbufferProblem, match=parameters):
        io_quant.tensor_quantization(ir.Tensor("u", [1], "int8"))
    assert io_quant.tensor_quantization(ir.Tensor("f", [1], "float32")) is None


def test_int8_asked_where_no_fake_quant_sits_fails_after_conversion(tmp_path):
    """A model whose own fake-quant sits mid-graph: LCE leaves the input float, we say so."""
    tf, keras, lq = _tf.tensorflow(), _tf.keras(), _tf.larq()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3)(inp)
    x = tf.quantization.fake_quant_with_min_max_args(x, -3.0, 3.0)
    x = lq.layers.QuantConv2D(8, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
    model = keras.Model(inp, x)
    with pytest.raises(ConversionProblem) as caught:
        convert.convert(model, targets.target("arm64"), input_type="int8")
    assert str(caught.value) == (
        "Expected an int8 input after conversion, got float32: no fake-quant node sits at the "
        "model's input; add one there (tf.quantization.fake_quant_with_min_max_args) or use "
        "--int8-activations"
    )
