"""Quantized layers that read the same tensor with the same input sign.

LCE emits one ``LceQuantize`` for them, named after one of them, feeding one
op per layer: an ``LceBconv2d`` where the kernel is binary, an
``LceDequantize`` -> float ``CONV_2D`` where it is not. Each op belongs to the
layer its own output names, never to the sibling the shared sign is named
after: the audit must say which sibling stayed float (and ``--strict``
refuse it), and ``validate`` must name the sibling whose filter is broken.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_validate_faults import flip_filter

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.audit import audit
from bnnconvert.errors import CheckFailed
from bnnconvert.export import export
from bnnconvert.mapping import map_layers
from bnnconvert.models import randomize_batchnorm
from bnnconvert.validate import validate

BINARY = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
          "kernel_constraint": "weight_clip", "padding": "same", "use_bias": False,
          "pad_values": 1.0}  # fmt: skip
FLOAT_KERNEL = {**BINARY, "kernel_quantizer": None, "kernel_constraint": None}


def _siblings(name: str, a: dict, b: dict, b_size: int = 1):
    """16x16x3 -> stem -> BN -> (branch_a 3x3 -> bn_a) + (branch_b -> bn_b) -> pool -> dense."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    ya = lq.layers.QuantConv2D(32, 3, name="branch_a", **a)(x)
    ya = keras.layers.BatchNormalization(name="bn_a")(ya)
    yb = lq.layers.QuantConv2D(32, b_size, name="branch_b", **b)(x)
    yb = keras.layers.BatchNormalization(name="bn_b")(yb)
    y = keras.layers.Add(name="add")([ya, yb])
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(y), name=name)


def _approx_and_swish():
    """Two binary convs on one tensor with approx_sign and swish_sign inputs, concatenated."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    branches = [
        lq.layers.QuantConv2D(32, 3, name=name, **{**BINARY, "input_quantizer": f"{name}_sign"})(x)
        for name in ("approx", "swish")
    ]
    y = keras.layers.Concatenate(name="cat")(branches)
    y = keras.layers.BatchNormalization(name="bn_cat")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(y), name="signs")


def _chains():
    """Two binary convs on one sign, each writing bitpacked signs for a binary conv after it."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    ends = []
    for b in "ab":
        y = lq.layers.QuantConv2D(32, 3, name=f"branch_{b}", **BINARY)(x)
        y = keras.layers.BatchNormalization(name=f"bn_{b}")(y)
        y = lq.layers.QuantConv2D(32, 3, name=f"next_{b}", **BINARY)(y)
        ends.append(keras.layers.BatchNormalization(name=f"bn2_{b}")(y))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.Add(name="add")(ends))
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(y), name="bc")


MODELS = {
    "float_then_binary": lambda: _siblings("fb", FLOAT_KERNEL, BINARY),
    "binary_then_float": lambda: _siblings("bf", BINARY, FLOAT_KERNEL),
    "two_binary": lambda: _siblings("bb", BINARY, BINARY),
    "two_binary_same_shape": lambda: _siblings("bs", BINARY, BINARY, b_size=3),
    "approx_and_swish": _approx_and_swish,
    "two_binary_bitpacked": _chains,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (checkpoint folder with 16 samples, model, flatbuffer, strict's refusal or "")."""
    found: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in found:
            _tf.keras().utils.set_random_seed(5)
            model = MODELS[name]()
            randomize_batchnorm(model, 5)
            folder = tmp_path_factory.mktemp(name)
            model.save(folder / "model.keras")
            x = np.random.default_rng(5).uniform(0, 1, (16, 16, 16, 3)).astype(np.float32)
            np.savez(folder / "test_split.npz", x=x)
            try:
                export(folder, output_dir=folder / "out", validate_samples=0, strict=True)
                refused = ""
            except CheckFailed as e:
                refused = str(e)
            written = next((folder / "out").glob("model*.tflite"))
            model = checkpoint.load(folder).model
            found[name] = (folder, model, written.read_bytes(), refused)
        return found[name]

    return get


def _bconvs_by_output_name(flatbuffer: bytes) -> dict[str, int]:
    """Layer an ``LceBconv2d``'s output tensor names -> op index (its own, not its input's).

    A float output is named ``.../<layer>/QuantConv2D...``; a bitpacked one after
    the sign of ``next_<x>``, the layer after ``branch_<x>``.
    """
    graph = ir.read(flatbuffer).subgraphs[0]
    found = {}
    for i, op in enumerate(graph.operators):
        if op.opcode == "LceBconv2d":
            name = graph.tensors[op.outputs[0]].name
            bitpacked = graph.tensors[op.outputs[0]].dtype == "int32"
            for layer in ("branch_a", "branch_b", "approx", "swish", "next_a", "next_b"):
                if bitpacked and f"/{layer}/" in name:
                    found.setdefault(layer.replace("next_", "branch_"), i)
                elif f"/{layer}/QuantConv2D" in name or f"/{layer}/" in name.split(";")[-1]:
                    found.setdefault(layer, i)
    return found


def _quantized_rows(result) -> list[tuple]:
    errors = {d.layer: d.code for d in result.diagnostics if d.severity == "error"}
    return [(q.name, q.became, q.binary, errors.get(q.name)) for q in result.quantized]


def test_premise_one_sign_feeds_both_siblings(exported) -> None:
    for name in MODELS:
        graph = ir.read(exported(name)[2]).subgraphs[0]
        assert [op.opcode for op in graph.operators].count("LceQuantize") == 1, name


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("float_then_binary", [("branch_a", ["CONV_2D"], False, "kernel-not-binary"),
                               ("branch_b", ["LceBconv2d"], True, None)]),
        ("binary_then_float", [("branch_a", ["LceBconv2d"], True, None),
                               ("branch_b", ["CONV_2D"], False, "kernel-not-binary")]),
        ("two_binary", [("branch_a", ["LceBconv2d"], True, None),
                        ("branch_b", ["LceBconv2d"], True, None)]),
        ("approx_and_swish", [("approx", ["LceBconv2d"], True, None),
                              ("swish", ["LceBconv2d"], True, None)]),
        ("two_binary_bitpacked", [(n, ["LceBconv2d"], True, None)
                                  for n in ("branch_a", "branch_b", "next_a", "next_b")]),
    ],
)  # fmt: skip
def test_audit_gives_each_sibling_its_own_op(exported, name, rows) -> None:
    _, model, flatbuffer, _ = exported(name)
    result = audit(model, flatbuffer)
    assert _quantized_rows(result) == rows
    assert result.unmapped_ops == []
    lm = map_layers(model, flatbuffer)
    (sign,) = [i for i, op in enumerate(lm.graph.operators) if op.opcode == "LceQuantize"]
    assert [n for n, m in lm.layers.items() if sign in m.ops] == [r[0] for r in rows[:2]]
    for layer, op in _bconvs_by_output_name(flatbuffer).items():
        assert lm.owner[op] == layer
        computing = [n for n, m in lm.layers.items() if op in m.ops]
        assert [n for n in computing if lm.layers[n].class_name != "BatchNormalization"] == [layer]


@pytest.mark.parametrize(("name", "stayed"), [("float_then_binary", "branch_a"),
                                              ("binary_then_float", "branch_b")])  # fmt: skip
def test_strict_refuses_the_float_sibling(exported, name, stayed) -> None:
    folder, model, flatbuffer, refused = exported(name)
    out = folder / "out"
    assert refused == (
        f"--strict: 1 layer(s) marked binary did not become LceBconv2d: {stayed} "
        f"(kernel-not-binary); the model was written as {out / 'model.rejected.tflite'} "
        f"(no {out / 'model.tflite'}), reasons and fixes in {out / 'export.md'}"
    )
    result = audit(model, flatbuffer)
    fused = {b.name: b.detail for b in result.batch_norms}
    binary = "bn_b" if stayed == "branch_a" else "bn_a"
    owner = "branch_b" if stayed == "branch_a" else "branch_a"
    assert fused[binary].startswith(f"fused into {owner}'s LceBconv2d (op ")
    assert fused["bn_" + stayed[-1]].startswith(f"folded into {stayed}'s CONV_2D (op ")
    macs = {m.name: m.macs for m in result.layers}
    assert set(macs[stayed]) == {"float"} and set(macs[owner]) == {"binary"}


@pytest.mark.parametrize("name", ["two_binary", "two_binary_same_shape", "two_binary_bitpacked"])
@pytest.mark.parametrize("broken", ["branch_a", "branch_b"])
def test_planted_filter_fault_names_its_sibling(exported, tmp_path, name, broken) -> None:
    folder, model, flatbuffer, _ = exported(name)
    fb = ir.read(flatbuffer)
    op = fb.subgraphs[0].operators[_bconvs_by_output_name(flatbuffer)[broken]]
    flip_filter(fb, op)
    path = tmp_path / "broken.tflite"
    path.write_bytes(ir.write(fb))
    result = validate(folder, path, keras_model=model, layers=True, workers=0, samples=8)
    assert result.verdict == "fail"
    first = result.first_divergence
    assert first is not None and (first.keras_layer, first.cause) == (broken, "fault")
    assert first.ops == ["LceBconv2d"]
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {broken}
