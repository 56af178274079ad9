"""The Keras-layer <-> flatbuffer mapping on small models converted by the real LCE converter.

Every mapped tensor is checked against the Keras layer's own output on the
same input (the reference executor computes the flatbuffer side), so a
mapping that names the wrong tensor, or the wrong meaning, fails.
"""

from __future__ import annotations

import pytest
from mapping_checks import check_every_output, check_groups_in_isolation

from bnnconvert import _tf, ir, metadata, passes
from bnnconvert.mapping import (
    SIGNS,
    THRESHOLD,
    VALUE,
    layers_in_name,
    map_layers,
)
from bnnconvert.models import randomize_batchnorm
from bnnconvert.pass_records import METADATA_NAME, read_records

_BINARY = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
    "use_bias": False,
    "padding": "same",
}


def _two_outputs():
    """A feature map and logits, as in a public LCE report (TFLite reverses the outputs)."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = lq.layers.QuantConv2D(32, 3, name="b1", **_BINARY)(x)
    features = keras.layers.BatchNormalization(name="features")(x)
    x = lq.layers.QuantConv2D(32, 3, name="b2", **_BINARY)(features)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, [features, logits], name="two")
    randomize_batchnorm(model, 1)
    return model


def _chain():
    """BN before each sign (folded by the pass), a binary max-pool, a bitpacked output."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = lq.layers.QuantConv2D(32, 3, name="q1", **_BINARY)(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.MaxPool2D(2, name="pool")(x)
    x = lq.layers.QuantConv2D(64, 3, name="q2", pad_values=1.0, **_BINARY)(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = lq.layers.QuantConv2D(64, 3, name="q3", pad_values=1.0, **_BINARY)(x)
    x = keras.layers.BatchNormalization(name="bn4")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(10, name="head")(x)
    model = keras.Model(inp, x, name="chain")
    randomize_batchnorm(model, 2)
    return model


@pytest.fixture(scope="module")
def two_outputs():
    model = _two_outputs()
    return model, _tf.lce().convert_keras_model(model)


@pytest.fixture(scope="module")
def chain():
    model = _chain()
    return model, _tf.lce().convert_keras_model(model)


def test_tensor_names_are_parsed_with_cuts_and_renames() -> None:
    known = ["conv2d", "conv2d_1", "block10_bn", "bn"]
    assert layers_in_name("m/bn/FusedBatchNormV3;m/conv2d/Conv2D", "m", known) == [
        "bn",
        "conv2d",
    ]
    assert layers_in_name("m/bn/FusedBatchNormV31#threshold", "m", known) == ["bn"]
    assert layers_in_name("m/conv2d/Conv2D;m/block1", "m", known) == ["conv2d", "block10_bn"]
    assert layers_in_name("m/conv2d/Conv2D;m/conv", "m", known) == ["conv2d"]  # ambiguous cut
    assert layers_in_name("other/bn/Mul", "m", known) == []


def test_default_export_maps_folded_batch_norms_as_thresholds(chain) -> None:
    model, flatbuffer = chain
    optimized, _ = passes.optimize(flatbuffer)
    # The record survives the metadata that export embeds last.
    optimized = metadata.embed_metadata(optimized, name="chain", target="arm64")
    folds = read_records(ir.read(optimized))["fold_sign_scale"]
    assert folds and all(r["threshold"].endswith("#threshold") for r in folds)
    lm = map_layers(model, optimized)
    bn1 = lm.layers["bn1"]
    assert bn1.output is not None and bn1.output.meaning == THRESHOLD
    assert list(bn1.output.flipped_channels) == next(
        r["flipped_channels"] for r in folds if r["threshold"] == bn1.output.name
    )
    assert bn1.signs is not None and bn1.signs.flipped_channels == bn1.output.flipped_channels
    assert lm.layers["q1"].inputs == [bn1.output]
    meanings = check_every_output(model, optimized)
    assert meanings["bn1"] == THRESHOLD
    assert meanings["bn3"] == SIGNS  # q2 writes bitpacked output for q3
    assert meanings["head"] == VALUE
    assert not lm.unmapped_ops()


def test_no_optimize_export_maps_batch_norm_values(chain) -> None:
    model, flatbuffer = chain
    lm = map_layers(model, flatbuffer)
    assert METADATA_NAME not in lm.model.metadata and not lm.folds
    meanings = check_every_output(model, flatbuffer)
    assert meanings["bn1"] == VALUE and meanings["relu"] == VALUE
    assert lm.layers["q1"].output is None and lm.layers["q1"].fused_into == "bn2"


def test_binary_max_pool_owns_the_sign_before_it(chain) -> None:
    model, flatbuffer = chain
    lm = map_layers(model, flatbuffer)
    pool = next(g for g in lm.groups() if g.layers == ["pool"])
    assert [lm.graph.operators[i].opcode for i in pool.ops] == ["LceQuantize", "LceBMaxPool2d"]
    assert pool.output.meaning == SIGNS and pool.output.layer == "pool"
    assert [r.layer for r in pool.inputs] == ["bn2"]
    q2 = next(g for g in lm.groups() if "q2" in g.layers)
    assert q2.layers == ["q2", "bn3"] and q2.inputs == [pool.output]


def test_two_outputs_map_by_name_not_position(two_outputs) -> None:
    model, flatbuffer = two_outputs
    lm = map_layers(model, flatbuffer)
    graph = lm.graph
    assert [graph.tensors[t].name for t in graph.outputs] != list(lm.outputs)  # reversed
    logits = lm.layers["logits"]
    assert [graph.operators[i].opcode for i in logits.own_ops] == ["FULLY_CONNECTED"]
    assert logits.output is not None and logits.output.tensor == lm.outputs["logits"]
    assert lm.layers["features"].output.tensor == lm.outputs["features"]
    assert "FULLY_CONNECTED" not in [graph.operators[i].opcode for i in lm.layers["b2"].ops]
    check_every_output(model, flatbuffer)


def test_groups_fed_keras_values_reproduce_keras_outputs(chain) -> None:
    model, flatbuffer = chain
    assert check_groups_in_isolation(model, passes.optimize(flatbuffer)[0]) >= 8
    assert check_groups_in_isolation(model, flatbuffer) >= 8


def test_sequential_model_input_is_mapped_to_its_hidden_input_layer() -> None:
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            lq.layers.QuantConv2D(32, 3, kernel_quantizer="ste_sign", input_shape=(8, 8, 3)),
            keras.layers.BatchNormalization(),
            lq.layers.QuantConv2D(32, 3, **_BINARY),
        ],
        name="seq",
    )
    randomize_batchnorm(model, 3)
    lm = map_layers(model, _tf.lce().convert_keras_model(model))
    [(name, tensor)] = lm.inputs.items()
    assert lm.graph.inputs == [tensor]
    assert name not in [layer.name for layer in model.layers]  # Sequential hides it
    first = model.layers[0].name
    assert lm.keras.inbound[first] == [name]
    assert [(r.tensor, r.layer, r.meaning) for r in lm.layers[first].inputs] == [
        (tensor, name, VALUE)
    ]
    check_every_output(model, _tf.lce().convert_keras_model(model))


def test_graph_index_agrees_with_a_scan_and_stays_true_through_edits(chain) -> None:
    from bnnconvert.graph import GraphIndex

    model = ir.read(chain[1])
    index, graph = GraphIndex(model), model.subgraphs[0]

    def agrees() -> None:
        for t in range(len(graph.tensors)):
            assert index.producer(t) == ir.producer(graph, t)
            assert index.consumers(t) == ir.consumers(graph, t)

    agrees()
    quantize = next(i for i, op in enumerate(graph.operators) if op.opcode == "LceQuantize")
    index.set_input(quantize, 0, graph.inputs[0])
    agrees()
    op = graph.operators[quantize]
    index.replace_op(quantize, ir.Operator("RELU", [graph.inputs[0]], list(op.outputs)))
    agrees()
    assert index.is_constant(graph.operators[0].inputs[1])  # the stem conv's filter
    assert not index.is_constant(graph.inputs[0]) and not index.is_constant(-1)
