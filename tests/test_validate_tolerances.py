"""Layer tolerances tight enough to name a small fault in the layer that has it.

Two faults a tester planted used to pass in isolation, and a failing run then
blamed a later layer: a float offset of ~5e-5 of the layer's range on one
channel of a binary conv's post-activation bias (the float tolerance was
1e-4 + 1e-3 of the range), and one int8 weight of an ``--int8-activations``
export moved by 40 or 60 steps (the int8 tolerance was 4 % of the range).
Each is now a fault of its own layer; the unplanted exports still pass with
no ``fault`` row. The figures behind the tolerances are next to the constants
in ``bnnconvert/validation/localize.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BUNDLED
from test_validate_faults import replace_constant

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.export import export
from bnnconvert.models import randomize_batchnorm
from bnnconvert.passes import OptimizeOptions
from bnnconvert.validate import validate

# The offset planted on the bias, as a share of the binary conv's output range.
BIAS_OFFSET = 5e-5


def _residual_bnn():
    """A QuickNet-like tiny BNN: stem, two (binary conv -> BN -> add) blocks, dense head."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(1)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)  # fmt: skip
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    for block in ("b1", "b2"):
        y = lq.layers.QuantConv2D(16, 3, padding="same", name=f"{block}_conv", **binary)(x)
        y = keras.layers.BatchNormalization(name=f"{block}_bn")(y)
        x = keras.layers.Add(name=f"{block}_add")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10, name="head")(x)
    model = keras.Model(inp, x, name="residual_bnn")
    randomize_batchnorm(model, seed=1)
    return model


@pytest.fixture(scope="module")
def residual_bnn(tmp_path_factory):
    """The tiny residual BNN exported (float): (folder, Keras model, flatbuffer, b1_bn's range).

    The range is max|b1_bn| on the 4 samples isolation checks, the scale of its tolerance.
    """
    model = _residual_bnn()
    folder = tmp_path_factory.mktemp("residual")
    model.save(folder / "model.keras")
    x = np.random.default_rng(1).normal(size=(8, 16, 16, 3)).astype(np.float32)
    np.savez(folder / "test_split.npz", x=x)
    out = folder / "out"
    export(folder, output_dir=out, validate_samples=0)
    probe = _tf.keras().Model(model.inputs, model.get_layer("b1_bn").output)
    scale = float(np.abs(probe(x[:4], training=False)).max())
    return folder, checkpoint.load(folder).model, (out / "model.tflite").read_bytes(), scale


def offset_bconv_bias(flatbuffer: bytes, channel: int, offset: float) -> bytes:
    """Add ``offset`` to ``channel``'s post-activation bias of the first ``LceBconv2d``."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    op = next(o for o in graph.operators if o.opcode == "LceBconv2d")
    bias = ir.tensor_array(model, graph, op.inputs[3]).copy()
    bias[channel] += np.float32(offset)
    replace_constant(model, op, 3, bias)
    return ir.write(model)


def test_unplanted_residual_bnn_passes_with_no_fault_row(residual_bnn, tmp_path):
    folder, model, flatbuffer, _ = residual_bnn
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(folder, path, keras_model=model, layers=True, workers=0)
    assert (result.verdict, result.failures) == ("pass", [])
    assert [r.cause for r in result.layers if r.cause != "ok"] == []
    assert {r.keras_layer for r in result.layers} >= {"stem", "b1_conv", "b2_conv", "head"}


def test_bias_offset_of_5e_5_of_the_range_is_a_fault_of_its_binary_conv(residual_bnn, tmp_path):
    folder, model, flatbuffer, scale = residual_bnn
    path = tmp_path / "broken.tflite"
    path.write_bytes(offset_bconv_bias(flatbuffer, channel=3, offset=BIAS_OFFSET * scale))
    result = validate(folder, path, keras_model=model, layers=True, workers=0)
    assert result.verdict == "fail"
    first = result.first_divergence
    assert first is not None and (first.keras_layer, first.cause) == ("b1_conv", "fault")
    assert first.compared_with == "b1_bn"
    assert first.max_abs_error == pytest.approx(BIAS_OFFSET * scale, rel=0.05)
    assert first.max_abs_error > 2 * first.tolerance
    # Fed Keras's own values, every other layer agrees.
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {"b1_conv"}


@pytest.fixture(scope="module")
def digits_int8(tmp_path_factory):
    """The bundled digits model exported with ``--int8-activations``: (Keras model, flatbuffer)."""
    out = tmp_path_factory.mktemp("digits-int8")
    export(BUNDLED, output_dir=out, optimize=OptimizeOptions(int8_activations=True),
           validate_samples=0)  # fmt: skip
    return checkpoint.load(BUNDLED).model, (out / "model.tflite").read_bytes()


def move_int8_weight(flatbuffer: bytes, conv: int, element: int, delta: int) -> tuple[bytes, int]:
    """Add ``delta`` steps to one int8 weight of the ``conv``-th ``CONV_2D``: (flatbuffer, old)."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    op = [o for o in graph.operators if o.opcode == "CONV_2D"][conv]
    weights = ir.tensor_array(model, graph, op.inputs[1]).copy()
    flat = weights.reshape(-1)
    old = int(flat[element])
    flat[element] = old + delta
    replace_constant(model, op, 1, weights)
    return ir.write(model), old


def test_unplanted_int8_digits_passes_with_no_fault_row(digits_int8, tmp_path):
    model, flatbuffer = digits_int8
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(BUNDLED, path, keras_model=model, samples=24, layers=True, workers=0)
    assert (result.verdict, result.lossy) == ("pass", True)
    assert not [r.keras_layer for r in result.layers if r.cause == "fault"]


@pytest.mark.parametrize(
    ("conv", "element", "old", "delta", "layer"),
    [(0, 5, -33, 40, "stem_conv"), (1, 100, 6, 60, "transition1_conv")],
)
def test_int8_weight_moved_by_40_to_60_steps_is_a_fault_of_its_layer(
    digits_int8, tmp_path, conv, element, old, delta, layer
):
    model, flatbuffer = digits_int8
    planted, was = move_int8_weight(flatbuffer, conv, element, delta)
    assert was == old
    path = tmp_path / "broken.tflite"
    path.write_bytes(planted)
    result = validate(BUNDLED, path, keras_model=model, samples=24, workers=0)
    assert result.verdict == "fail"
    first = result.first_divergence
    assert first is not None and (first.keras_layer, first.cause) == (layer, "fault")
    assert first.quantized == "int8"
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {layer}
