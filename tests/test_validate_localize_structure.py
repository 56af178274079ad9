"""Localization where a layer's value is held in another layout than Keras's.

The default export rebuilds a binary ``QuantDense`` as ``Reshape -> 1x1
LceBconv2d -> Reshape``. When a dense layer after it reads the conv's
``(1, 1, 1, C)`` output directly, the reshape back is gone and that tensor
holds the binary layer's (and its fused batch norm's) ``(C,)`` output: it must
be compared there. When the reshape back stays (a BinaryNet head ending in
``QuantDense -> BatchNormalization -> softmax``), the conv's output is only a
step of it. Either way a fault in the binary dense filter names that layer.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_validate_faults import flip_filter
from test_validate_models import BINARY, quant_dense

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.export import export
from bnnconvert.models import randomize_batchnorm
from bnnconvert.validate import validate


def binarynet_head():
    """BinaryNet's head: flatten -> QuantDense -> BN -> QuantDense -> BN -> softmax."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = lq.layers.QuantConv2D(32, 3, name="b1", **BINARY)(x)
    x = keras.layers.Flatten(name="flatten")(keras.layers.BatchNormalization(name="b1_bn")(x))
    dense = {k: v for k, v in BINARY.items() if k != "padding"}
    x = lq.layers.QuantDense(64, name="qd1", **dense)(x)
    x = keras.layers.BatchNormalization(name="qd1_bn")(x)
    x = lq.layers.QuantDense(10, name="qd2", **dense)(x)
    x = keras.layers.BatchNormalization(name="qd2_bn")(x)
    return keras.Model(inp, keras.layers.Activation("softmax", name="probs")(x), name="binarynet")


MODELS = {  # builder, the last rows of validate --layers, the binary dense layer to break
    "dense_after": (quant_dense, [
        ("qdense", "flatten", ["RESHAPE", "LceQuantize"]),
        ("qdense", "qdense_bn", ["LceBconv2d"]),
        ("logits", "logits", ["FULLY_CONNECTED"]),
    ], "qdense"),
    "binarynet": (binarynet_head, [
        ("qd1", "flatten", ["RESHAPE", "LceQuantize"]),
        ("qd1", "qd1_bn", ["LceBconv2d"]),
        ("qd2", "qd2_bn", ["LceBconv2d", "RESHAPE"]),
        ("probs", "probs", ["SOFTMAX"]),
    ], "qd2"),
}  # fmt: skip


@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory):
    """(name, checkpoint folder with 16 samples, model, default export) per model."""
    _tf.keras().utils.set_random_seed(4)
    model = MODELS[request.param][0]()
    randomize_batchnorm(model, 4)
    folder = tmp_path_factory.mktemp(request.param)
    model.save(folder / "model.keras")
    x = np.random.default_rng(4).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    np.savez(folder / "test_split.npz", x=x)
    export(folder, output_dir=folder / "out", validate_samples=0)
    flatbuffer = (folder / "out" / "model.tflite").read_bytes()
    return request.param, folder, checkpoint.load(folder).model, flatbuffer


def test_binary_dense_layers_are_compared_at_their_outputs(exported, tmp_path):
    name, folder, model, flatbuffer = exported
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(folder, path, keras_model=model, layers=True, workers=0)
    assert (result.verdict, result.failures) == ("pass", [])
    expected = MODELS[name][1]
    rows = [(r.keras_layer, r.compared_with, r.ops) for r in result.layers]
    assert rows[-len(expected) :] == expected
    assert {r.cause for r in result.layers} == {"ok"}


def test_a_fault_in_the_last_binary_dense_filter_is_named(exported, tmp_path):
    name, folder, model, flatbuffer = exported
    fb = ir.read(flatbuffer)
    graph = fb.subgraphs[0]
    dense = [op for op in graph.operators if op.opcode == "LceBconv2d"][-1]
    flip_filter(fb, dense)
    path = tmp_path / "broken.tflite"
    path.write_bytes(ir.write(fb))
    result = validate(folder, path, keras_model=model, workers=0)
    assert result.verdict == "fail"
    assert result.first_divergence is not None
    layer = MODELS[name][2]
    assert result.first_divergence.keras_layer == layer
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {layer}
