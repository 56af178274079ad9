"""bnnconvert against LCE's own converter, on the model families of LCE's end-to-end tests.

Rebuilt from reading LCE's ``larq_compute_engine/tests/end2end_test.py`` (not
copied), at 32x32 so they convert in seconds, with realistic batch norms
instead of LCE's one epoch of training:

- a functional toy model: float stem, three residual binary blocks with zero
  and one padding, with and without a ReLU;
- a sequential one with a float->bitpacked and a bitpacked->bitpacked binary
  max pool (an odd 3x2 window with strides 1x2) and negative BN scales;
- one with its own fake-quant nodes (``fake_quant_with_min_max_vars``,
  range -3..3) around every binary layer, for int8.

``export --no-optimize`` must be op for op what LCE's ``convert_keras_model``
gives for the same checkpoint, and a model with its own fake-quant must be
recognised as int8 and lossy, with ``--int8-activations`` a no-op. (Its
``tf.quantization`` nodes are ``TFOpLambda`` layers, which the safe loader
refuses: these checkpoints load with ``trust_checkpoint``.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.export import export
from bnnconvert.models import randomize_batchnorm
from bnnconvert.passes import OptimizeOptions

RAW = OptimizeOptions().with_raw_output()
SHAPE = (32, 32, 3)


def toy_functional():
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input(SHAPE)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same")(inp)
    for pad_values, activation in ((0.0, "relu"), (1.0, "relu"), (1.0, None)):
        shortcut = x
        x = lq.layers.QuantConv2D(
            32,
            3,
            padding="same",
            pad_values=pad_values,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign",
            use_bias=False,
            activation=activation,
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.7)(x)
        x = keras.layers.add([x, shortcut])
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x), name="toy_functional")


def toy_sequential():
    keras, lq = _tf.keras(), _tf.larq()

    def binary(strides: int = 1):
        return lq.layers.QuantConv2D(
            32,
            3,
            strides=strides,
            padding="same",
            pad_values=1.0,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign",
            use_bias=False,
        )

    return keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(16, 3, strides=2, padding="same"),
            keras.layers.BatchNormalization(momentum=0.7),
            keras.layers.MaxPooling2D(2),  # float -> bitpacked binary max pool
            binary(),
            keras.layers.BatchNormalization(momentum=0.7),
            binary(strides=2),
            keras.layers.BatchNormalization(momentum=0.7),
            keras.layers.MaxPooling2D((3, 2), strides=(1, 2)),  # bitpacked -> bitpacked
            binary(),
            keras.layers.BatchNormalization(momentum=0.7),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="toy_sequential",
    )


def toy_int8():
    tf, keras, lq = _tf.tensorflow(), _tf.keras(), _tf.larq()

    def quant(t):
        return tf.quantization.fake_quant_with_min_max_vars(t, -3.0, 3.0)

    inp = keras.Input(SHAPE)
    x = quant(inp)
    for _ in range(2):
        x = lq.layers.QuantConv2D(
            12, 3, strides=2, input_quantizer="ste_sign", kernel_quantizer="ste_sign"
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.7)(x)
        x = quant(x)
    x = quant(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, x, name="toy_int8")


FAMILIES = {"functional": toy_functional, "sequential": toy_sequential, "int8": toy_int8}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each family saved as .keras with realistic batch norms and a small test split."""
    keras = _tf.keras()
    folders = {}
    for seed, (name, build) in enumerate(FAMILIES.items()):
        keras.utils.set_random_seed(seed)
        model = build()
        randomize_batchnorm(model, seed)
        folder = tmp_path_factory.mktemp(name)
        model.save(folder / "model.keras")
        x = np.random.default_rng(seed).uniform(-1, 1, (8, *SHAPE)).astype(np.float32)
        np.savez(folder / "test_split.npz", x=x)
        folders[name] = folder
    return folders


def op_table(flatbuffer: bytes) -> list[tuple]:
    """Every op with its options and, per input/output, shape, dtype, quantization, constant."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]

    def tensor(index: int) -> tuple:
        if index < 0:
            return ("absent",)
        t = graph.tensors[index]
        q = t.quantization
        quant = (tuple(q.scale), tuple(q.zero_point)) if q is not None and q.scale else None
        data = ir.tensor_array(model, graph, index)
        return (tuple(t.shape), t.dtype, quant, None if data is None else data.tobytes())

    return [
        (
            op.opcode,
            json.dumps(op.options, sort_keys=True, default=str),
            tuple(map(tensor, op.inputs)),
            tuple(map(tensor, op.outputs)),
        )
        for op in graph.operators
    ]


def lce_direct(folder, **kwargs) -> bytes:
    model = checkpoint.load(folder, trust=True).model
    return bytes(_tf.lce().convert_keras_model(model, **kwargs))


@pytest.mark.parametrize("family", ["functional", "sequential"])
def test_no_optimize_export_is_op_for_op_lces_conversion(checkpoints, family, tmp_path):
    result = export(checkpoints[family], output_dir=tmp_path, optimize=RAW)
    ours = op_table(result.model_path.read_bytes())
    theirs = op_table(lce_direct(checkpoints[family]))
    assert [op[0] for op in ours] == [op[0] for op in theirs]
    assert ours == theirs
    assert result.parity.passed and not result.lossy and result.quantization is None
    if family == "sequential":
        assert result.op_counts["LceBMaxPool2d"] == 2


def test_own_fake_quant_model_with_int8_io_matches_lce_and_is_lossy(checkpoints, tmp_path):
    tf = _tf.tensorflow()
    folder = checkpoints["int8"]
    result = export(
        folder,
        output_dir=tmp_path,
        optimize=RAW,
        input_type="int8",
        output_type="int8",
        trust_checkpoint=True,
    )
    made = lce_direct(folder, inference_input_type=tf.int8, inference_output_type=tf.int8)
    assert op_table(result.model_path.read_bytes()) == op_table(made)
    report = json.loads(result.report_path.read_text())
    record = report["quantization"]
    assert record["sources"] == ["int8 from the model's own quantization nodes"]
    assert len(record["own_fake_quant_layers"]) == 4
    # -3..3 in 8 bits: scale 6/255, zero point 0 (LCE nudges the range so 0 is exact).
    assert record["input"] == {"dtype": "int8", "scale": pytest.approx(6 / 255), "zero_point": 0}
    assert record["output"]["dtype"] == "int8"
    assert report["validation"]["lossy"] is True


def test_int8_activations_on_a_model_with_nothing_to_calibrate_is_a_no_op(checkpoints, tmp_path):
    folder = checkpoints["int8"]
    result = export(
        folder,
        output_dir=tmp_path / "a",
        optimize=OptimizeOptions(int8_activations=True),
        trust_checkpoint=True,
    )
    (calibration, *_) = result.passes
    assert calibration.name == "int8_activations" and calibration.rewrites == 0
    assert calibration.details["note"] == (
        "no float conv/dense layer left to calibrate (the model's own fake-quant nodes set its "
        "int8 ranges); model unchanged"
    )
    plain = export(folder, output_dir=tmp_path / "b", trust_checkpoint=True)
    assert op_table(result.model_path.read_bytes()) == op_table(plain.model_path.read_bytes())
    assert result.quantization["sources"] == ["int8 from the model's own quantization nodes"]
    assert result.lossy and plain.lossy


def test_cli_prints_the_note_not_a_traceback(checkpoints, tmp_path, capsys):
    from bnnconvert.cli.main import run

    folder = checkpoints["int8"]
    argv = ["export", str(folder), "-o", str(tmp_path), "--int8-activations", "--trust-checkpoint"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "note:   int8_activations: no float conv/dense layer left to calibrate" in out
    assert "int8:   int8 from the model's own quantization nodes; input float32" in out
