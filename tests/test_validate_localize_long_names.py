"""Localization when layer names are longer than LCE keeps in tensor names.

LCE cuts ``<model>/<layer>`` to 50 characters and adds a counter, so layers
sharing a long prefix (Keras names in nested models) all leave the same cut
name. The mapping then goes by structure (op order, shapes, graph edges), and
must tie each op to the layer it computes as names would: one row per layer,
and a planted fault named exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import renamed, slow_after_first
from test_validate_faults import flip_filter
from test_validate_models import MODELS

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.export import export
from bnnconvert.mapping import map_layers
from bnnconvert.models import randomize_batchnorm
from bnnconvert.passes import OptimizeOptions
from bnnconvert.validate import validate

PREFIX = "binary_densenet_backbone_functional_submodel_"  # 45 characters
OWNERS = [  # the layer computing each op, as the same model with short names maps
    "stem_conv",
    "block1_bn",  # the folded threshold ADD
    "block1_bconv",  # LceQuantize
    "block1_bconv",  # LceBconv2d
    "block1_concat",
    "block2_bn",
    "block2_bconv",
    "block2_bconv",
    "block2_concat",
    "block3_bn",
    "block3_bconv",
    "block3_bconv",
    "block3_concat",
    "head_bn",  # MUL
    "head_relu",  # ADD with the ReLU fused
    "head_pool",
    "head_dense",
]


def _long_named_model(prefix: str):
    """Stem conv, three (BN -> binary conv -> concat) blocks, BN -> ReLU -> pool -> dense."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(0)
    binary = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
              "kernel_constraint": "weight_clip", "padding": "same", "use_bias": False}  # fmt: skip
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name=prefix + "stem_conv")(inp)
    for k in (1, 2, 3):
        y = keras.layers.BatchNormalization(name=f"{prefix}block{k}_bn")(x)
        y = lq.layers.QuantConv2D(32, 3, name=f"{prefix}block{k}_bconv", **binary)(y)
        x = keras.layers.Concatenate(name=f"{prefix}block{k}_concat")([x, y])
    x = keras.layers.BatchNormalization(name=prefix + "head_bn")(x)
    x = keras.layers.Activation("relu", name=prefix + "head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name=prefix + "head_pool")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name=prefix + "head_dense")(x), name="nets")
    randomize_batchnorm(model, seed=3)
    return model


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    """The long-named model saved with 8 samples (also its int8 calibration data)."""
    folder = tmp_path_factory.mktemp("long-names")
    _long_named_model(PREFIX).save(folder / "model.keras")
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype(np.float32)
    np.savez(folder / "test_split.npz", x=x)
    return folder


def _exported(folder, name: str, optimize: OptimizeOptions):
    export(folder, output_dir=folder / name, optimize=optimize, validate_samples=0)
    return folder, checkpoint.load(folder).model, (folder / name / "model.tflite").read_bytes()


@pytest.fixture(scope="module")
def long_named(checkpoint_folder):
    """The checkpoint folder, its model and its default export."""
    return _exported(checkpoint_folder, "default", OptimizeOptions())


@pytest.fixture(scope="module")
def long_named_int8(checkpoint_folder):
    """The same with int8 activations (float layers become int8 between QUANTIZE/DEQUANTIZE)."""
    return _exported(checkpoint_folder, "int8", OptimizeOptions(int8_activations=True))


def test_cut_names_are_mapped_by_structure_op_by_op(long_named) -> None:
    _, model, flatbuffer = long_named
    graph = ir.read(flatbuffer).subgraphs[0]
    assert {graph.tensors[op.outputs[0]].name[:50] for op in graph.operators[:-1]} == {
        "nets/binary_densenet_backbone_functional_submodel_"[:50]
    }  # every name but the graph output's is cut to the shared prefix
    lm = map_layers(model, flatbuffer)
    assert [lm.owner[i].removeprefix(PREFIX) for i in range(len(graph.operators))] == OWNERS
    assert lm.layers[PREFIX + "block2_bconv"].mapped_by == "structure"


def test_validate_layers_shows_one_row_per_layer(long_named, tmp_path) -> None:
    folder, model, flatbuffer = long_named
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(folder, path, keras_model=model, layers=True, workers=0)
    assert (result.verdict, result.failures) == ("pass", [])
    assert [r.keras_layer.removeprefix(PREFIX) for r in result.layers] == [
        o
        for o in OWNERS
        if o != "head_bn"  # the MUL writes no anchor
    ]
    assert {r.cause for r in result.layers} == {"ok"}


def test_int8_export_shows_one_row_per_layer(long_named_int8, tmp_path) -> None:
    folder, model, flatbuffer = long_named_int8
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(folder, path, keras_model=model, layers=True, workers=0)
    assert (result.verdict, result.failures) == ("pass", [])
    rows = [(r.keras_layer.removeprefix(PREFIX), r.ops, r.cause) for r in result.layers]
    assert rows[:2] + rows[-3:] == [
        ("stem_conv", ["QUANTIZE", "CONV_2D", "DEQUANTIZE"], "int8 quantization"),
        ("block1_bn", ["ADD"], "ok"),
        ("head_relu", ["MUL", "ADD"], "ok"),
        ("head_pool", ["MEAN", "QUANTIZE"], "int8 quantization"),
        ("head_dense", ["FULLY_CONNECTED", "DEQUANTIZE"], "int8 quantization"),
    ]
    assert [r[0] for r in rows[2:-3]] == OWNERS[2:13]


@pytest.mark.parametrize("variant", ["long_named", "long_named_int8"])
def test_planted_fault_in_the_middle_binary_conv_is_named(variant, request, tmp_path) -> None:
    folder, model, flatbuffer = request.getfixturevalue(variant)
    fb = ir.read(flatbuffer)
    graph = fb.subgraphs[0]
    middle = [op for op in graph.operators if op.opcode == "LceBconv2d"][1]
    flip_filter(fb, middle)
    path = tmp_path / "broken.tflite"
    path.write_bytes(ir.write(fb))
    result = validate(folder, path, keras_model=model, workers=0)
    assert result.verdict == "fail"
    assert result.first_divergence is not None
    assert result.first_divergence.keras_layer == PREFIX + "block2_bconv"
    assert result.first_divergence.ops == ["LceBconv2d"]
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {PREFIX + "block2_bconv"}


@pytest.fixture(scope="module", params=slow_after_first(["dorefa", "quant_dense", "two_outputs"]))
def short_and_long(request, tmp_path_factory):
    """validate --layers rows (prefix removed) of one model saved with short and long names."""
    _tf.keras().utils.set_random_seed(4)
    short = MODELS[request.param][0]()
    randomize_batchnorm(short, 4)
    rows = {}
    for prefix in ("", PREFIX):
        model = renamed(short, lambda name, p=prefix: p + name) if prefix else short
        folder = tmp_path_factory.mktemp(request.param)
        model.save(folder / "model.keras")
        x = np.random.default_rng(4).uniform(0, 1, (8, *model.input_shape[1:]))
        np.savez(folder / "test_split.npz", x=x.astype(np.float32))
        _, model, flatbuffer = _exported(folder, "default", OptimizeOptions())
        (folder / "m.tflite").write_bytes(flatbuffer)
        result = validate(folder, folder / "m.tflite", keras_model=model, layers=True, workers=0)
        rows[prefix] = [
            (r.keras_layer.removeprefix(prefix), r.compared_with.removeprefix(prefix), r.cause)
            for r in result.layers
        ]
    return rows[""], rows[PREFIX]


def test_long_names_give_the_rows_short_names_give(short_and_long) -> None:
    """A fused batch norm, a DoReFa quantizer's ops, a rewritten QuantDense, two outputs."""
    short, long = short_and_long
    assert long == short
    assert {cause for _, _, cause in long} == {"ok"}
