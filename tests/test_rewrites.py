"""The exact QuantDense -> 1x1 QuantConv2D rewrite, through the real LCE converter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bnnconvert import _tf, ir
from bnnconvert.cli.main import run
from bnnconvert.models import randomize_batchnorm
from bnnconvert.rewrites import rewrite_for_lce

_BINARY = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
}


def _dense_head(input_shape: tuple[int, ...] = (8, 8, 3)):
    """Conv stem -> BN -> Flatten -> binary QuantDense -> BN -> binary QuantDense(bias)."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(4)
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = lq.layers.QuantDense(64, use_bias=False, name="qdense1", **_BINARY)(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = lq.layers.QuantDense(10, name="qdense2", **_BINARY)(x)
    model = keras.Model(inp, x, name="dense_head")
    randomize_batchnorm(model, 4)
    model.get_layer("qdense2").bias.assign(np.linspace(-1, 1, 10).astype(np.float32))
    return model


def _sequence_dense():
    """A QuantDense on a (positions, channels) input: a 1x1 conv over 4 positions."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(5)
    inp = keras.Input((4, 48))
    x = keras.layers.Dense(48, name="embed")(inp)
    x = lq.layers.QuantDense(32, use_bias=False, name="qdense", **_BINARY)(x)
    return keras.Model(inp, x, name="sequence")


@pytest.mark.parametrize("build", [_dense_head, _sequence_dense])
def test_rewritten_model_computes_the_same_in_keras_and_keeps_the_original(build) -> None:
    model = build()
    rewritten, done = rewrite_for_lce(model)
    assert [r.layer for r in done] == [q for q in ("qdense1", "qdense2", "qdense") if q in
                                       [layer.name for layer in model.layers]]  # fmt: skip
    assert rewritten.name == model.name and rewritten is not model
    assert type(model.get_layer(done[0].layer)).__name__ == "QuantDense"  # left as it was
    x = np.random.default_rng(0).normal(0, 1, (8, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(rewritten.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_without_binary_dense_is_not_rebuilt(tiny_bnn) -> None:
    assert rewrite_for_lce(tiny_bnn) == (tiny_bnn, [])


@pytest.fixture(scope="module")
def dense_head_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dense_head")
    model = _dense_head()
    model.save(folder / "dense_head.keras")
    x = np.random.default_rng(1).normal(0, 1, (16, 8, 8, 3)).astype(np.float32)
    np.savez(folder / "test_split.npz", x=x)
    return folder / "dense_head.keras", model, x


def _export(ckpt, out, *flags: str) -> tuple[dict, bytes]:
    assert run(["export", str(ckpt), "-o", str(out), "--json", *flags]) == 0
    return json.loads((out / "export.json").read_text()), (out / "model.tflite").read_bytes()


def test_binary_dense_layers_export_as_exact_bconvs(dense_head_ckpt, tmp_path, capsys) -> None:
    ckpt, model, x = dense_head_ckpt
    report, flatbuffer = _export(ckpt, tmp_path / "out")
    assert report["op_counts"]["LceBconv2d"] == 2
    assert "FULLY_CONNECTED" not in report["op_counts"]
    [entry] = [p for p in report["passes"] if p["name"] == "quantdense_as_conv"]
    assert entry["rewrites"] == 2
    assert [r["layer"] for r in entry["layers"]] == ["qdense1", "qdense2"]
    audit = report["audit"]
    assert audit["summary"]["became_binary"] == 2 and audit["summary"]["stayed_float"] == []
    assert [d["layer"] for d in audit["diagnostics"] if d["code"] == "rewritten-as-1x1-conv"] == [
        "qdense1",
        "qdense2",
    ]
    assert report["validation"]["passed"]
    # Exactness: the flatbuffer in LCE's interpreter against the original Keras model.
    interpreter = _tf.lce_interpreter(flatbuffer)
    ours = np.concatenate([np.asarray(interpreter.predict(x[i : i + 1])) for i in range(len(x))])
    np.testing.assert_allclose(ours, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    graph = ir.read(flatbuffer).subgraphs[0]
    assert sum(op.opcode == "LceBconv2d" for op in graph.operators) == 2
    capsys.readouterr()
    assert run(["validate", str(ckpt), str(tmp_path / "out" / "model.tflite")]) == 0
    assert "PASS" in capsys.readouterr().out


def test_no_rewrite_keeps_float_dense_with_the_fix(dense_head_ckpt, tmp_path) -> None:
    ckpt, _, _ = dense_head_ckpt
    report, _ = _export(ckpt, tmp_path / "out", "--no-rewrite")
    assert "LceBconv2d" not in report["op_counts"]
    assert report["op_counts"]["FULLY_CONNECTED"] == 2
    assert not [p for p in report["passes"] if p["name"] == "quantdense_as_conv"]
    assert report["audit"]["summary"]["stayed_float"] == ["qdense1", "qdense2"]
    fixes = {d["fix"] for d in report["audit"]["diagnostics"] if d["code"] == "quant-dense"}
    assert fixes and all("1x1 QuantConv2D" in f for f in fixes)
