"""``validate``: parity on the bundled model, planted faults found and named, photos at 224."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BUNDLED, randomize_batchnorm

from bnnconvert import _tf, checkpoint, convert, ir, models, targets
from bnnconvert.cli.main import run
from bnnconvert.errors import CheckFailed, for_command_line
from bnnconvert.validate import failure_line, validate


@pytest.fixture(scope="module")
def bundled():
    loaded = checkpoint.load(BUNDLED)
    flatbuffer, _ = convert.convert(loaded.model, targets.target("arm64"))
    return loaded.model, flatbuffer


def test_bundled_model_validates(bundled, tmp_path):
    keras_model, flatbuffer = bundled
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(BUNDLED, path, keras_model=keras_model, workers=2)
    assert result.passed, result.failures
    assert result.samples == 360
    assert result.top1_agreement == 1.0
    assert result.keras_accuracy == result.flatbuffer_accuracy > 0.98
    assert result.max_abs_error < 1e-4


def plant(flatbuffer: bytes, layer: str, fault: str) -> bytes:
    """Break ``layer``'s LceBconv2d: flip channel 5's filter bits, or scale its multiplier."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    op = next(
        op
        for op in graph.operators
        if op.opcode == "LceBconv2d" and f"/{layer}/" in graph.tensors[op.outputs[0]].name
    )
    if fault == "filter":
        filters = ir.tensor_array(model, graph, op.inputs[1]).copy()
        filters[5] = ~filters[5]
        ir.set_tensor_array(model, graph, op.inputs[1], filters)
    else:
        multiplier = ir.tensor_array(model, graph, op.inputs[2]).copy()
        multiplier[5] *= 1.5
        # The converter shares one multiplier tensor between convs: give this one its own.
        op.inputs[2] = ir.add_tensor(
            model, graph, "planted_multiplier", [32], "float32", multiplier
        )
    return ir.write(model)


@pytest.mark.parametrize(
    ("layer", "fault"), [("block2_layer2_bconv", "filter"), ("block1_layer3_bconv", "multiplier")]
)
def test_planted_fault_is_found_and_named(bundled, tmp_path, layer, fault):
    keras_model, flatbuffer = bundled
    path = tmp_path / "broken.tflite"
    path.write_bytes(plant(flatbuffer, layer, fault))
    result = validate(BUNDLED, path, keras_model=keras_model, samples=24)
    assert not result.passed
    first = result.first_divergence
    assert first is not None and first.keras_layer == layer
    assert first.cause == "fault"
    assert first.ops == ["LceBconv2d"]
    # Fed Keras's own inputs, the layers after it agree: the fault stays put.
    assert [r.keras_layer for r in result.layers if r.cause == "fault"] == [layer]
    with pytest.raises(CheckFailed, match=f"first divergence at Keras layer {layer}"):
        validate(BUNDLED, path, keras_model=keras_model, samples=24, raise_on_fail=True)


def test_cli_exit_codes(bundled, tmp_path, capsys):
    _, flatbuffer = bundled
    good, bad = tmp_path / "good.tflite", tmp_path / "bad.tflite"
    good.write_bytes(flatbuffer)
    bad.write_bytes(plant(flatbuffer, "block1_layer1_bconv", "filter"))
    assert run(["validate", str(BUNDLED), str(good), "--samples", "8"]) == 0
    assert "PASS: 8 samples" in capsys.readouterr().out
    assert run(["validate", str(BUNDLED), str(bad), "--samples", "8"]) == 1
    captured = capsys.readouterr()
    assert "first divergence at Keras layer block1_layer1_bconv (LceBconv2d)" in captured.err
    assert run(["validate", str(BUNDLED), str(good), "--samples", "0"]) == 2


def test_npz_data_and_bad_data(bundled, tmp_path):
    keras_model, flatbuffer = bundled
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    x = np.random.default_rng(0).uniform(0, 1, (5, 32, 32, 1)).astype(np.float32)
    np.savez(tmp_path / "random.npz", x=x)
    result = validate(BUNDLED, path, data=tmp_path / "random.npz", keras_model=keras_model)
    assert result.passed and result.keras_accuracy is None and result.samples == 5
    np.savez(tmp_path / "wrong.npz", x=x[:, :16])
    from bnnconvert.errors import UsageProblem

    with pytest.raises(UsageProblem, match=r"expected x of shape \(N, 32, 32, 1\)"):
        validate(BUNDLED, path, data=tmp_path / "wrong.npz", keras_model=keras_model)


@pytest.mark.slow
def test_imagenet_size_binary_densenet_on_photos(tmp_path):
    _tf.keras().utils.set_random_seed(28)  # one model, not a new random one per run
    keras_model = models.binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    randomize_batchnorm(keras_model, 28)
    flatbuffer = bytes(_tf.lce().convert_keras_model(keras_model))
    path = tmp_path / "bdn28.tflite"
    path.write_bytes(flatbuffer)
    result = validate(tmp_path, path, keras_model=keras_model, samples=3, layers=True)
    assert result.data == "scikit-image photographs"
    assert result.top1_agreement == 1.0
    assert result.passed, (result.failures, result.notes)
    assert len(result.layers) > 50


def make_border_tie_bnn():
    """Binary conv -> untrained batch norm (fused bias exactly 0) -> binary conv, 16x16.

    Zero-padded border pixels of the first binary conv sum to exactly 0;
    Keras signs them +1, LCE's reference kernel (and the reference executor)
    agree, and LCE's optimised kernels land a hair below zero (README,
    "Ties at zero"), so the second conv's input signs flip at the borders.
    """
    keras = _tf.keras()
    lq = _tf.larq()
    keras.utils.set_random_seed(3)
    binary = {
        "padding": "same",
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
    }
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization(name="bn_stem")(x)
    x = lq.layers.QuantConv2D(32, 3, name="bconv_a", **binary)(x)
    x = keras.layers.BatchNormalization(name="bn_untrained")(x)
    x = lq.layers.QuantConv2D(32, 3, name="bconv_b", **binary)(x)
    x = keras.layers.Flatten()(x)  # no pooling: a flipped border sign shows in the output
    x = keras.layers.Dense(10)(x)
    model = keras.Model(inp, keras.layers.Activation("softmax", dtype="float32")(x))
    randomize_batchnorm(model, 3)
    untrained = model.get_layer("bn_untrained")  # gamma 1, beta 0, mean 0, variance 1
    untrained.set_weights([np.full(32, v, "float32") for v in (1.0, 0.0, 0.0, 1.0)])
    return model


def test_tie_flips_in_the_interpreter_are_localized_as_ties(tmp_path):
    """The reference executor agrees with Keras here; the localization must then use
    the interpreter's own intermediates and name the tie, not report an unexplained fault."""
    keras_model = make_border_tie_bnn()
    path = tmp_path / "ties.tflite"
    path.write_bytes(bytes(_tf.lce().convert_keras_model(keras_model)))
    x = np.random.default_rng(0).uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    common = {"data": tmp_path / "x.npz", "keras_model": keras_model, "workers": 0}
    result = validate(tmp_path, path, kernel="indirect", **common)
    assert result.samples_within_tolerance < 1.0  # the interpreter really differs
    assert result.verdict == "pass (ties)" and result.passed, (result.failures, result.notes)
    assert not [r for r in result.layers if r.cause == "fault"]  # all pass in isolation
    first = result.first_divergence
    assert first is not None and first.compared_with == "bn_untrained", result.notes
    assert first.cause == "ties"
    assert first.flipped_signs and first.flipped_signs == first.flipped_at_ties
    assert result.tie_flips == first.tie_flips > 0
    strict = validate(tmp_path, path, kernel="indirect", fail_on_ties=True, **common)
    assert strict.verdict == "pass (ties)" and not strict.passed
    ties_line = f"differences only at ties ({strict.tie_flips} sign flips)"
    assert failure_line(strict).endswith(f"{ties_line}, fail_on_ties= set")
    assert for_command_line(failure_line(strict)).endswith(f"{ties_line}, --fail-on-ties set")
    exact = validate(tmp_path, path, kernel="reference", **common)
    assert exact.verdict == "pass" and exact.max_abs_error < 1e-5


def test_top5_agreement_is_the_reference_class_among_the_flatbuffer_top5():
    from bnnconvert.validation.outputs import compare_output

    keras = np.array([[0.1, 0.5, 0.2, 0.09, 0.06, 0.05, 0.0]] * 3, dtype=np.float32)
    ours = np.array(
        [
            [0.0, 0.99, 0.0, 0.0, 0.0, 0.0, 0.01],  # int8 softmax: most classes are exactly 0
            [0.6, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0],  # class 1 ties at 0 with four others: top 5
            [0.5, 0.0, 0.4, 0.3, 0.2, 0.1, 0.05],  # six classes beat class 1
        ],
        dtype=np.float32,
    )
    report = compare_output("scores", keras, ours, None, lossy=True)
    assert report.top1_agreement == pytest.approx(1 / 3)
    assert report.top5_agreement == pytest.approx(2 / 3)


def test_top5_agreement_is_never_below_top1():
    from bnnconvert.validation.outputs import compare_output

    rng = np.random.default_rng(0)
    keras = rng.dirichlet(np.full(10, 0.3), size=200).astype(np.float32)
    for step in (1 / 256, 1 / 16):  # int8-like and coarser quantization of the scores
        ours = np.round(keras / step) * step
        report = compare_output("scores", keras, ours, None, lossy=True)
        assert report.top5_agreement >= report.top1_agreement > 0.5


def test_cache_key_changes_with_bnnconvert_source(tmp_path, monkeypatch):
    import shutil

    from bnnconvert.validation import cache

    package = tmp_path / "bnnconvert"
    shutil.copytree(cache.PACKAGE_ROOT / "onnx_import", package / "onnx_import")
    shutil.copy(cache.PACKAGE_ROOT / "checkpoint.py", package / "checkpoint.py")
    monkeypatch.setattr(cache, "PACKAGE_ROOT", package)
    before = cache.entry_key("ckpt", "data", (32, 32, 1))
    assert cache.entry_key("ckpt", "data", (32, 32, 1)) == before
    importer = next((package / "onnx_import").glob("*.py"))
    importer.write_text(importer.read_text() + "\n# layer names changed\n")
    cache.source_digest.cache_clear()  # a new process: the digest is computed once per process
    changed = cache.entry_key("ckpt", "data", (32, 32, 1))
    assert changed != before
    (package / "onnx_import" / "README.txt").write_text("not code")
    cache.source_digest.cache_clear()
    assert cache.entry_key("ckpt", "data", (32, 32, 1)) == changed
