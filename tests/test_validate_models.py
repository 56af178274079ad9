"""Model shapes ``validate`` must handle: several outputs, dynamic inputs, ops beyond binary convs.

Also: a flatbuffer from another checkpoint is refused, ties are a verdict of
their own, and Keras outputs are cached.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import BUNDLED
from test_validate import make_border_tie_bnn
from test_validate_faults import plant, replace_constant

from bnnconvert import _tf, checkpoint, ir
from bnnconvert.cli.main import run
from bnnconvert.errors import CheckFailed, UsageProblem
from bnnconvert.export import export
from bnnconvert.metadata import read_metadata
from bnnconvert.models import randomize_batchnorm
from bnnconvert.validate import quick_check, validate
from bnnconvert.validation import cache
from bnnconvert.validation.cache import weights_digest
from bnnconvert.validation.identity import WrongCheckpoint
from bnnconvert.validation.outputs import pair_outputs

BINARY = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
    "use_bias": False,
    "padding": "same",
}


def _stem(inp):
    keras = _tf.keras()
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    return keras.layers.BatchNormalization(name="stem_bn")(x)


def _head(x):
    keras = _tf.keras()
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(10, name="logits")(x)


def two_outputs():
    """A feature map (a batch norm that also feeds a binary conv) and logits."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((12, 12, 3))
    x = lq.layers.QuantConv2D(32, 3, name="b1", **BINARY)(_stem(inp))
    features = keras.layers.BatchNormalization(name="features")(x)
    x = lq.layers.QuantConv2D(32, 3, name="b2", **BINARY)(features)
    x = keras.layers.BatchNormalization(name="b2_bn")(x)
    return keras.Model(inp, [features, _head(x)], name="two_outputs")


def dynamic():
    """``Input((None, None, 3))``: exported and validated at 16x16."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((None, None, 3))
    x = lq.layers.QuantConv2D(32, 3, name="b1", **BINARY)(_stem(inp))
    return keras.Model(inp, _head(keras.layers.BatchNormalization(name="b1_bn")(x)), name="dyn")


def dorefa():
    """A 2-bit DoReFa input quantizer: LCE emits ROUND (kept float)."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((12, 12, 3))
    x = lq.layers.QuantConv2D(
        32, 3, padding="same", use_bias=False, name="dorefa_conv",
        input_quantizer=lq.quantizers.DoReFaQuantizer(k_bit=2),
        kernel_quantizer=lq.quantizers.DoReFaQuantizer(k_bit=2, mode="weights"),
    )(_stem(inp))  # fmt: skip
    x = keras.layers.BatchNormalization(name="dorefa_bn")(x)
    x = lq.layers.QuantConv2D(32, 3, name="b1", **BINARY)(x)
    return keras.Model(inp, _head(x), name="dorefa")


def transposed():
    """A binary and a float transposed conv (stride 2)."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2DTranspose(
        32, 3, strides=2, padding="same", name="bdeconv", input_quantizer="ste_sign",
        kernel_quantizer="ste_sign", use_bias=False,
    )(_stem(inp))  # fmt: skip
    x = keras.layers.BatchNormalization(name="bdeconv_bn")(x)
    x = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", name="deconv")(x)
    return keras.Model(inp, _head(x), name="transposed")


def quant_dense():
    """BinaryNet-style head: batch norm -> binary QuantDense (rebuilt as a 1x1 conv)."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2D(32, 3, name="b1", **BINARY)(_stem(inp))
    x = keras.layers.Flatten(name="flatten")(keras.layers.BatchNormalization(name="b1_bn")(x))
    x = lq.layers.QuantDense(
        64, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name="qdense"
    )(x)
    x = keras.layers.BatchNormalization(name="qdense_bn")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="quant_dense")


MODELS = {
    "two_outputs": (two_outputs, (12, 12, 3), "LceBconv2d"),
    "dynamic": (dynamic, (16, 16, 3), "LceBconv2d"),
    "dorefa": (dorefa, (12, 12, 3), "ROUND"),
    "transposed": (transposed, (8, 8, 3), "TRANSPOSE_CONV"),
    "quant_dense": (quant_dense, (8, 8, 3), "LceBconv2d"),
}


def _saved(name: str, folder: Path) -> tuple[Path, Path]:
    """Build ``name``, give its batch norms real statistics, save it and 16 inputs."""
    build, shape, _ = MODELS[name]
    _tf.keras().utils.set_random_seed(4)
    model = build()
    randomize_batchnorm(model, 4)
    ckpt = folder / "model.keras"
    model.save(ckpt)
    x = np.random.default_rng(4).uniform(0, 1, (16, *shape)).astype(np.float32)
    np.savez(folder / "data.npz", x=x)
    return ckpt, folder / "data.npz"


@pytest.mark.slow  # an export and a validation per model: ~20 s each on 2 busy cores
@pytest.mark.parametrize("name", MODELS)
def test_exports_and_validates(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path / "cache"))
    ckpt, data = _saved(name, tmp_path)
    _, shape, op = MODELS[name]
    exported = export(ckpt, output_dir=tmp_path / "out", input_shape=shape)
    model = ir.read(exported.model_path.read_bytes())
    assert op in {o.opcode for o in model.subgraphs[0].operators}
    assert exported.parity.verdict == "pass", exported.parity.unchecked
    recorded = json.loads(exported.report_path.read_text())["validation"]
    assert recorded["verdict"] == "pass" and recorded["unchecked"] == []
    result = validate(ckpt, exported.model_path, data=data, layers=True, workers=0)
    assert result.verdict == "pass", (result.failures, result.notes, result.unchecked)
    assert not [r for r in result.layers if r.cause == "fault"]
    if name == "two_outputs":
        # TFLite lists the outputs in the other order; they are paired by name.
        graph = model.subgraphs[0]
        assert graph.tensors[graph.outputs[0]].shape == [1, 10]
        assert [(o.name, o.shape) for o in result.outputs] == [
            ("features", [12, 12, 32]),
            ("logits", [10]),
        ]
        assert result.outputs[1].top1_agreement == 1.0
        # Without a signature, the outputs are still paired (by shape), never by position.
        model.signature_defs = []
        pairs, unpaired = pair_outputs(["features", "logits"], [(12, 12, 32), (10,)], model)
        assert [(p.name, p.flatbuffer_index, p.matched_by) for p in pairs] == [
            ("features", 1, "shape"),
            ("logits", 0, "shape"),
        ]
        assert unpaired == []
        _, unpaired = pair_outputs(["a", "b"], [(10,), (10,)], model)
        assert unpaired == [
            "output a (10) not compared: its shape is ambiguous",
            "output b (10) not compared: its shape is ambiguous",
        ]


@pytest.mark.slow
def test_wrong_checkpoint_is_refused(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    ckpt, data = _saved("two_outputs", first)
    other, _ = _saved("dorefa", second)  # another model, same input shape
    exported = export(ckpt, output_dir=first / "out", validate_samples=0)
    with pytest.raises(WrongCheckpoint) as caught:
        validate(other, exported.model_path, data=data)
    assert str(caught.value).startswith(f"{exported.model_path} was not exported from {other} (")
    assert "it embeds the model name 'two_outputs', the checkpoint's is 'dorefa'" in str(
        caught.value
    )
    assert run(["validate", str(other), str(exported.model_path), "--data", str(data)]) == 2
    assert "was not exported from" in capsys.readouterr().err


@pytest.mark.slow
def test_keras_outputs_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path / "cache"))
    ckpt, data = _saved("dynamic", tmp_path)
    exported = export(ckpt, output_dir=tmp_path / "out", input_shape=(16, 16, 3))
    cold = validate(ckpt, exported.model_path, data=data, workers=0)
    warm = validate(ckpt, exported.model_path, data=data, workers=0)
    assert (cold.keras_cache, warm.keras_cache) == ("miss", "hit")
    assert warm.max_abs_error == cold.max_abs_error and warm.verdict == "pass"
    assert validate(ckpt, exported.model_path, data=data, samples=8).keras_cache == "miss"
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    cache.trim(tmp_path / "cache", max_bytes=1)
    assert not list((tmp_path / "cache").glob("*.npz"))


@pytest.fixture(scope="module")
def tie_model():
    keras_model = make_border_tie_bnn()
    return keras_model, bytes(_tf.lce().convert_keras_model(keras_model))


def test_ties_pass_with_counts_and_a_real_fault_still_fails(tie_model, tmp_path, capsys):
    keras_model, flatbuffer = tie_model
    x = np.random.default_rng(0).uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    common = {"data": tmp_path / "x.npz", "keras_model": keras_model, "workers": 0}
    path = tmp_path / "ties.tflite"
    path.write_bytes(flatbuffer)
    result = validate(tmp_path, path, **common)
    assert result.verdict == "pass (ties)" and result.passed
    assert result.tie_flips > 0
    assert f"where {result.tie_flips} of " in result.notes[-1]
    dense = next(layer.name for layer in keras_model.layers if type(layer).__name__ == "Dense")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(plant(flatbuffer, "float_weight", dense))
    failed = validate(tmp_path, broken, **common)
    assert failed.verdict == "fail"
    assert failed.first_divergence is not None and failed.first_divergence.keras_layer == dense
    with pytest.raises(CheckFailed, match=f"first divergence at Keras layer {dense} "):
        validate(tmp_path, broken, raise_on_fail=True, **common)


def test_ties_in_the_first_samples_do_not_hide_a_fault_in_a_later_one(tie_model, tmp_path):
    """Samples 0-4 differ only at ties; the planted fault shows only in sample 5.

    The first four differing samples are localized and pass; the sample farthest
    from Keras is checked too, and names the fault (this used to be "pass (ties)").
    """
    keras_model, flatbuffer = tie_model
    x = np.random.default_rng(0).uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)
    x[:5, :, :, 2] = 0  # the fault below reads input channel 2 only
    np.savez(tmp_path / "x.npz", x=x)
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    (stem,) = [op for op in graph.operators if op.opcode == "CONV_2D"]
    weights = ir.tensor_array(model, graph, stem.inputs[1]).copy()  # OHWI
    weights[5, :, :, 2] += 1.0
    replace_constant(model, stem, 1, weights)
    path = tmp_path / "broken.tflite"
    path.write_bytes(ir.write(model))
    result = validate(tmp_path, path, data=tmp_path / "x.npz", keras_model=keras_model, workers=0)
    assert result.outputs[0].mismatched == [0, 1, 2, 3, 4, 5]
    assert result.verdict == "fail"
    assert result.first_divergence.keras_layer == keras_model.layers[1].name  # the stem conv
    assert result.localized_samples == [5]
    assert result.notes[-1].endswith("cause: fault (checked on sample 5 of 6, counted from 0)")


def test_a_batch_norm_folded_into_the_next_dense_layer_is_no_false_fault(tmp_path):
    """Dense -> BatchNormalization -> Dense: the converter moves the first dense layer's
    bias and the batch norm into the second, so the first FULLY_CONNECTED's output is
    neither layer's value. It used to be compared as the batch norm's and called a fault."""
    keras = _tf.keras()
    keras.utils.set_random_seed(7)
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Flatten(name="flatten")(_stem(inp))
    x = keras.layers.Dense(64, name="wide_dense")(x)
    x = keras.layers.BatchNormalization(name="bn_dense")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="dense_bn_dense")
    randomize_batchnorm(model, 7)
    rng = np.random.default_rng(0)
    for name in ("wide_dense", "logits"):  # biases like trained ones
        layer = model.get_layer(name)
        layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    flatbuffer = bytes(_tf.lce().convert_keras_model(model))
    graph = ir.read(flatbuffer).subgraphs[0]
    dense = [op for op in graph.operators if op.opcode == "FULLY_CONNECTED"]
    assert [len([t for t in op.inputs if t >= 0]) for op in dense] == [2, 3]  # no bias first
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    x = np.random.default_rng(7).uniform(0, 1, (8, 6, 6, 3)).astype(np.float32)
    result = validate(tmp_path, path, data=x, keras_model=model, layers=True, workers=0)
    assert result.verdict == "pass", (result.failures, result.notes)
    rows = {(r.keras_layer, r.compared_with, "+".join(r.ops), r.cause) for r in result.layers}
    assert ("logits", "logits", "FULLY_CONNECTED+FULLY_CONNECTED", "ok") in rows
    assert not [r for r in result.layers if r.compared_with in ("wide_dense", "bn_dense")]


def test_an_op_the_reference_lacks_leaves_later_layers_unchecked(tmp_path):
    keras = _tf.keras()
    tf = _tf.tensorflow()
    _tf.keras().utils.set_random_seed(5)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.Dense(4, name="dense")(keras.layers.Flatten(name="flatten")(x))
    model = keras.Model(inp, tf.nn.log_softmax(x), name="log_softmax")
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(_tf.lce().convert_keras_model(model)))
    x = np.random.default_rng(5).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    result = validate(tmp_path, path, data=tmp_path / "x.npz", keras_model=model, layers=True)
    assert result.verdict == "pass"
    assert [r.keras_layer for r in result.layers] == ["conv", "flatten", "dense"]
    assert result.unchecked == [
        "layers from operator 3 (LOG_SOFTMAX) on are not checked: the reference executor "
        "does not implement it"
    ]


def test_layer_norm_folding_the_batch_is_localized_without_false_faults(tmp_path):
    """LayerNormalization reduces over the batch axis reshaped with H, W: replayed per sample."""
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(6)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.LayerNormalization(name="ln")(keras.layers.Conv2D(32, 3, name="conv")(inp))
    x = lq.layers.QuantConv2D(32, 3, name="b1", **BINARY)(x)
    model = keras.Model(inp, _head(x), name="layer_norm")
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(_tf.lce().convert_keras_model(model)))
    x = np.random.default_rng(6).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    result = validate(tmp_path, path, data=tmp_path / "x.npz", keras_model=model, layers=True)
    assert result.verdict == "pass"
    assert {r.keras_layer: r.cause for r in result.layers}["ln"] == "ok"
    assert not [r for r in result.layers if r.cause == "fault"]


def test_quick_check_never_aborts(tiny_bnn, tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    model.subgraphs[0].inputs.append(model.subgraphs[0].inputs[0])  # two inputs: unsupported
    result = quick_check(tiny_bnn, ir.write(model), None)
    assert result.verdict == "not checked"
    assert result.unchecked == [
        "parity not checked: Expected a model with one input, got 2; validate feeds "
        "single-input models"
    ]


def test_other_weights_are_another_checkpoint(tmp_path, monkeypatch):
    """The same network with other weights is refused (cold and warm); a re-saved copy is not."""
    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path / "cache"))
    data = BUNDLED / "test_split.npz"
    exported = export(BUNDLED, output_dir=tmp_path / "out", validate_samples=0)
    model = checkpoint.load(BUNDLED).model
    digest = weights_digest(model)
    assert read_metadata(exported.model_path.read_bytes())["model"]["weights_sha256"] == digest
    resaved = tmp_path / "resaved.h5"
    model.save(resaved)
    assert validate(resaved, exported.model_path, samples=16, data=data).verdict == "pass"
    stem = model.get_layer("stem_conv")
    stem.set_weights([w * 1.01 for w in stem.get_weights()])
    other = tmp_path / "other.keras"
    model.save(other)
    expected = (
        f"{exported.model_path} was not exported from {other} (it was exported from other "
        f"weights (sha256 {digest[:12]}..., the checkpoint's are {weights_digest(model)[:12]}...))"
    )
    with pytest.raises(WrongCheckpoint) as caught:
        validate(other, exported.model_path, samples=16, data=data)
    assert str(caught.value) == expected
    # Warm: the Keras outputs of `other` cached (by validating its own export) carry its digest.
    own = export(other, output_dir=tmp_path / "own", validate_samples=0)
    assert validate(other, own.model_path, samples=16, data=data).keras_cache == "miss"
    with pytest.raises(WrongCheckpoint) as caught:
        validate(other, exported.model_path, samples=16, data=data)
    assert str(caught.value) == expected
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # resaved's and other's


def test_custom_objects_without_trust_is_refused_on_a_warm_cache_too(tmp_path, monkeypatch):
    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path / "cache"))
    exported = export(BUNDLED, output_dir=tmp_path / "out", validate_samples=0)
    assert validate(BUNDLED, exported.model_path, samples=8).keras_cache == "miss"
    objects = tmp_path / "objects.py"
    objects.write_text("")
    with pytest.raises(UsageProblem) as caught:
        validate(BUNDLED, exported.model_path, samples=8, custom_objects=objects)
    assert str(caught.value) == (
        "custom_objects= runs the given file's code: pass trust_checkpoint= with it"
    )
