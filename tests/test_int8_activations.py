"""int8_activations on the Keras graph: what it calibrates, what it leaves alone, its edges."""

from __future__ import annotations

import numpy as np
import pytest

from bnnconvert import _tf, convert, ir, targets
from bnnconvert.models import randomize_batchnorm
from bnnconvert.passes import int8_activations

X = np.random.default_rng(0).uniform(0, 1, (16, 16, 16, 3)).astype(np.float32)


def fake_quant(t):
    return _tf.tensorflow().quantization.fake_quant_with_min_max_args(t, -4.0, 4.0)


def binary_conv():
    return _tf.larq().layers.QuantConv2D(
        32, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign"
    )


def test_layers_between_the_models_own_fake_quant_nodes_are_not_calibrated_again():
    keras = _tf.keras()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="plain")(inp)
    x = fake_quant(x)
    x = keras.layers.Conv2D(8, 3, name="quantized")(x)
    x = fake_quant(x)
    model = keras.Model(inp, x)
    assert [layer.name for layer in int8_activations.float_layers(model)] == ["plain"]
    own = int8_activations.own_fake_quant(model)
    assert own == [model.layers[2].name, model.layers[4].name]  # Keras numbers them per session
    assert all(name.startswith("tf.quantization.fake_quant_with_min_max_args") for name in own)
    ranges = int8_activations.calibrate(model, X)
    assert list(ranges) == ["plain"]
    (lo, hi), (out_lo, out_hi) = ranges["plain"]
    assert lo == 0.0 and hi == pytest.approx(float(X.max())) and out_lo < 0 < out_hi


def test_a_float_model_without_float_layers_is_left_alone_with_a_note():
    keras = _tf.keras()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.BatchNormalization()(inp)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(binary_conv()(x)))
    assert int8_activations.calibrate(model, X) == {}
    same, stats = int8_activations.with_int8_float_layers(model, X)
    assert same is model and stats.rewrites == 0
    assert stats.details == {
        "note": "no float conv/dense layer left to calibrate (nothing int8); model unchanged",
        "own_fake_quant": [],
    }


def test_int8_edges_get_fake_quant_nodes_where_no_int8_layer_sits():
    """Input straight into a batch norm, output from a plain pooling: both need a node."""
    keras = _tf.keras()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.BatchNormalization(name="bn")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(binary_conv()(x))
    model = keras.Model(inp, x)
    randomize_batchnorm(model, 0)
    rebuilt, stats = int8_activations.with_int8_float_layers(
        model, X, int8_input=True, int8_output=True
    )
    assert stats.rewrites == 0  # no float conv/dense: only the edges
    assert stats.details["input_range"] == {"layers": ["bn"], "range": [0.0, float(X.max())]}
    assert list(stats.details["output_ranges"]) == ["pool"]
    flatbuffer, _ = convert.convert(
        rebuilt, targets.target("arm64"), input_type="int8", output_type="int8"
    )
    graph = ir.read(flatbuffer).subgraphs[0]
    assert graph.tensors[graph.inputs[0]].dtype == "int8"
    assert graph.tensors[graph.outputs[0]].dtype == "int8"


def test_edges_already_int8_get_no_extra_node():
    """A wrapped float stem takes the input; a softmax after a wrapped dense gives the output."""
    keras = _tf.keras()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inp)
    x = keras.layers.GlobalAveragePooling2D()(binary_conv()(x))
    x = keras.layers.Activation("softmax")(keras.layers.Dense(4, name="head")(x))
    model = keras.Model(inp, x)
    _, stats = int8_activations.with_int8_float_layers(model, X, int8_input=True, int8_output=True)
    assert stats.rewrites == 2
    assert "input_range" not in stats.details and "output_ranges" not in stats.details


def test_each_output_of_a_two_output_model_gets_its_own_range():
    """A feature map and logits: both come out int8, each with the range measured on it.

    (The output range used to be measured on ``predict`` taken as one array: an
    internal error for two outputs.)
    """
    keras = _tf.keras()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    features = keras.layers.BatchNormalization(name="features")(binary_conv()(x))
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    model = keras.Model(inp, [features, keras.layers.Dense(4, name="logits")(pooled)])
    randomize_batchnorm(model, 1)
    rebuilt, stats = int8_activations.with_int8_float_layers(model, X, int8_output=True)
    feature_map, logits = model.predict(X, verbose=0)
    assert stats.details["output_ranges"] == {
        "features": [min(float(feature_map.min()), 0.0), max(float(feature_map.max()), 0.0)]
    }  # the logits come from a wrapped dense layer: int8 already
    assert stats.details["ranges"]["logits"][1] == [
        min(float(logits.min()), 0.0), max(float(logits.max()), 0.0)
    ]  # fmt: skip
    flatbuffer, _ = convert.convert(rebuilt, targets.target("arm64"), output_type="int8")
    graph = ir.read(flatbuffer).subgraphs[0]
    assert [graph.tensors[t].dtype for t in graph.outputs] == ["int8", "int8"]
