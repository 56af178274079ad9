"""A global pooling before a binary ``QuantDense`` rebuilt as a 1x1 conv.

The rewrite puts a ``Reshape`` named after the dense layer in front of its
conv; LCE fuses it into the pooling's ``MEAN``, whose tensor then carries the
dense layer's name first (``<model>/qdense/qdense_to_1x1/Reshape;<model>/gap/
Mean``). The ``MEAN`` still computes the pooling: the audit, ``validate
--layers`` and a first divergence in the pooling must say ``gap``, as they do
without the rewrite.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.audit import audit
from bnnconvert.export import export
from bnnconvert.mapping import map_layers
from bnnconvert.models import randomize_batchnorm
from bnnconvert.validate import validate

BINARY = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
          "kernel_constraint": "weight_clip", "use_bias": False}  # fmt: skip


def _head(pooling: str):
    """16x16x3 -> stem -> BN -> binary conv -> BN -> ``pooling`` -> QuantDense -> BN -> softmax."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, name="conv", **BINARY)(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = getattr(keras.layers, pooling)(name="gap")(x)
    x = lq.layers.QuantDense(10, name="qdense", **BINARY)(x)
    x = keras.layers.BatchNormalization(name="bn_head")(x)
    return keras.Model(inp, keras.layers.Activation("softmax", name="probs")(x), name="head")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(folder with 16 samples, model, flatbuffer, folder of the same weights with max pooling)."""
    _tf.keras().utils.set_random_seed(6)
    model = _head("GlobalAveragePooling2D")
    randomize_batchnorm(model, 6)
    x = np.random.default_rng(6).uniform(0, 1, (16, 16, 16, 3)).astype(np.float32)
    folders = []
    for pooling, built in (("avg", model), ("max", _head("GlobalMaxPooling2D"))):
        built.set_weights(model.get_weights())  # pooling has no weights: the same list
        folder = tmp_path_factory.mktemp(pooling)
        built.save(folder / "model.keras")
        np.savez(folder / "test_split.npz", x=x)
        folders.append(folder)
    export(folders[0], output_dir=folders[0] / "out", validate_samples=0)
    flatbuffer = (folders[0] / "out" / "model.tflite").read_bytes()
    return folders[0], checkpoint.load(folders[0]).model, flatbuffer, folders[1]


def test_premise_the_mean_carries_the_dense_layers_name_first(exported) -> None:
    graph = ir.read(exported[2]).subgraphs[0]
    (mean,) = [op for op in graph.operators if op.opcode == "MEAN"]
    assert graph.tensors[mean.outputs[0]].name.startswith("head/qdense/qdense_to_1x1/Reshape;")


def test_mean_belongs_to_the_pooling(exported) -> None:
    _, model, flatbuffer, _ = exported
    lm = map_layers(model, flatbuffer)
    graph = lm.graph
    (mean,) = [i for i, op in enumerate(graph.operators) if op.opcode == "MEAN"]
    assert lm.owner[mean] == "gap"
    assert [graph.operators[i].opcode for i in lm.layers["gap"].own_ops] == ["MEAN"]
    assert [graph.operators[i].opcode for i in lm.layers["qdense"].own_ops] == [
        "LceQuantize",
        "LceBconv2d",
    ]
    rows = {m.name: m.op_types for m in audit(model, flatbuffer).layers}
    assert rows["gap"] == ["MEAN"]


def test_layers_rows_and_first_divergence_name_the_pooling(exported, tmp_path) -> None:
    folder, model, flatbuffer, max_folder = exported
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(folder, path, keras_model=model, layers=True, workers=0, samples=8)
    assert result.verdict == "pass"
    rows = [(r.keras_layer, r.ops, r.compared_with) for r in result.layers]
    assert ("gap", ["MEAN"], "gap") in rows
    assert next(r for r in rows if r[0] == "qdense")[1] == ["LceQuantize"]
    maxed = checkpoint.load(max_folder).model  # Keras pools by max, the flatbuffer by mean
    result = validate(max_folder, path, keras_model=maxed, layers=True, workers=0, samples=8)
    first = result.first_divergence
    assert result.verdict == "fail"
    assert first is not None and (first.keras_layer, first.ops) == ("gap", ["MEAN"])
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {"gap"}
