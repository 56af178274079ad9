"""Every checkpoint form round-trips; every bad input is one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnnconvert import _tf, checkpoint, models
from bnnconvert.cli.main import run
from bnnconvert.errors import CheckpointProblem


@pytest.fixture(scope="module")
def small_model():
    """The digits architecture with random weights and non-trivial BN stats."""
    from bnnconvert.models import randomize_batchnorm

    model = models.binary_densenet("binarydensenet_digits", (32, 32, 1), 10)
    randomize_batchnorm(model, seed=3)
    return model


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 1)).astype("float32")


def _same_outputs(a, b, x) -> None:
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), atol=1e-6)


def test_keras_file_round_trips(tmp_path, small_model, sample) -> None:
    small_model.save(tmp_path / "m.keras")
    loaded = checkpoint.load(tmp_path / "m.keras")
    assert loaded.format == "keras"
    _same_outputs(small_model, loaded.model, sample)


@pytest.mark.parametrize("name", ["m.keras", "m.h5"])
def test_a_model_saved_after_compile_loads(tmp_path, small_model, sample, name) -> None:
    """The usual Larq workflow: compile, fit, save. The optimizer, loss and metrics in the
    file are never deserialized (the model is loaded with compile=False), so they pass
    (a named model's ``compile_config`` used to be refused as "a serialized 'Adam' object")."""
    keras = _tf.keras()
    model = keras.models.clone_model(small_model)
    model.set_weights(small_model.get_weights())
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.save(tmp_path / name)
    loaded = checkpoint.load(tmp_path / name)
    _same_outputs(small_model, loaded.model, sample)


def test_directory_with_exactly_one_file_round_trips(tmp_path, small_model, sample) -> None:
    small_model.save(tmp_path / "only.h5")
    loaded = checkpoint.load(tmp_path)
    assert loaded.format == "h5" and loaded.path.name == "only.h5"
    _same_outputs(small_model, loaded.model, sample)


def test_saved_model_is_rebuilt_from_config_and_variables_only(
    tmp_path, small_model, sample, monkeypatch
) -> None:
    """No TensorFlow or Keras SavedModel loader runs; every weight equals the original."""
    small_model.save(tmp_path / "sm", save_format="tf")
    tf, keras = _tf.tensorflow(), _tf.keras()

    def forbidden(*args, **kwargs):
        raise AssertionError("a SavedModel loader that runs the file's graphs was called")

    monkeypatch.setattr(tf.saved_model, "load", forbidden)
    monkeypatch.setattr(keras.models, "load_model", forbidden)
    loaded = checkpoint.load(tmp_path / "sm")
    assert loaded.format == "savedmodel" and not loaded.trusted
    original = {w.name: w.numpy() for w in small_model.weights}
    restored = {w.name: w.numpy() for w in loaded.model.weights}
    assert original.keys() == restored.keys() and len(original) > 0
    for name, value in original.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    _same_outputs(small_model, loaded.model, sample)


def test_tf_checkpoint_with_config_round_trips(tmp_path, small_model, sample) -> None:
    small_model.save_weights(str(tmp_path / "ckpt"))
    (tmp_path / "bnnconvert.json").write_text(
        json.dumps(
            {"architecture": "binarydensenet_digits", "input_shape": [32, 32, 1], "num_classes": 10}
        )
    )
    loaded = checkpoint.load(tmp_path)
    assert loaded.format == "tf-checkpoint"
    _same_outputs(small_model, loaded.model, sample)


def test_weights_h5_with_arch_round_trips(tmp_path, small_model, sample) -> None:
    small_model.save_weights(tmp_path / "weights.h5")
    loaded = checkpoint.load(
        tmp_path / "weights.h5", arch="binarydensenet_digits", input_shape=(32, 32, 1)
    )
    assert loaded.format == "h5-weights" and loaded.model.output_shape == (None, 10)
    _same_outputs(small_model, loaded.model, sample)


def test_bundled_checkpoint_carries_its_test_split() -> None:
    loaded = checkpoint.load(Path(__file__).parents[1] / "models" / "digits")
    assert loaded.test_data is not None and loaded.test_data.name == "test_split.npz"


def _varied_model():
    """Stock Keras/Larq objects of every kind the allowlist covers, in one tiny model."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(
        8,
        3,
        padding="same",
        kernel_initializer=keras.initializers.Constant(0.05),
        kernel_regularizer=keras.regularizers.L2(1e-4),
        kernel_constraint=keras.constraints.MaxNorm(2.0),
    )(x)
    x = keras.layers.BatchNormalization()(x)
    x = lq.quantizers.SteSign(name="sign_layer")(x)
    y = lq.layers.QuantDepthwiseConv2D(
        3,
        padding="same",
        input_quantizer=lq.quantizers.SteHeaviside(),
        depthwise_quantizer=lq.quantizers.DoReFa(k_bit=1, mode="weights"),
        depthwise_constraint="weight_clip",
    )(x)
    x = keras.layers.Add()([x, y])
    x = lq.layers.QuantConv2D(
        8,
        3,
        input_quantizer="approx_sign",
        kernel_quantizer=lq.quantizers.MagnitudeAwareSign(),
        activation="relu",
    )(x)
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    x = keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(4, kernel_quantizer="ste_sign", input_quantizer="ste_sign")(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inp, x, name="varied")


@pytest.mark.parametrize("form", ["m.keras", "m.h5", "sm"])
def test_stock_objects_of_every_kind_pass_the_allowlist(tmp_path, form) -> None:
    model = _varied_model()
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / form, **({"save_format": "tf"} if form == "sm" else {}))
    _same_outputs(model, checkpoint.load(tmp_path / form).model, x)


def _lambda_model():
    keras = _tf.keras()
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layers_are_refused_without_running_them(tmp_path, suffix) -> None:
    path = tmp_path / f"lambda{suffix}"
    _lambda_model().save(path)
    with pytest.raises(CheckpointProblem, match="Lambda layer"):
        checkpoint.load(path)


def test_untrusted_module_in_config_is_refused(tmp_path, small_model) -> None:
    import zipfile

    small_model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as src:
        files = {name: src.read(name) for name in src.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1]["module"] = "os"
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as dst:
        for name, data in files.items():
            dst.writestr(name, data)
    with pytest.raises(CheckpointProblem) as refused:
        checkpoint.load(tmp_path / "evil.keras")
    assert str(refused.value) == (
        f"{tmp_path / 'evil.keras'}: layer 'stem_conv' attribute 'module': 'Conv2D' from "
        "module 'os', but Keras/Larq save it from 'keras.layers'; refused: re-save it with "
        "stock Keras/Larq, or pass trust_checkpoint= if you trust where this file comes from"
    )


def _bad_inputs(tmp_path: Path, small_model) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "notes.txt").write_text("hello")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.h5").write_bytes(b"")
    (two / "b.keras").write_bytes(b"")
    small_model.save_weights(tmp_path / "weights.h5")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    wrong = tmp_path / "wrong_classes"
    wrong.mkdir()
    small_model.save_weights(str(wrong / "ckpt"))
    (wrong / "bnnconvert.json").write_text(
        json.dumps(
            {"architecture": "binarydensenet_digits", "input_shape": [32, 32, 1], "num_classes": 7}
        )
    )
    return {
        "missing": ([str(tmp_path / "nope")], "no such file or directory"),
        "unknown format": ([str(tmp_path / "notes.txt")], "unknown checkpoint format '.txt'"),
        "two checkpoints": ([str(two)], "several checkpoints (a.h5, b.keras); name one file"),
        "weights without arch": ([str(tmp_path / "weights.h5")], "holds weights only"),
        "wrong arch": (
            [str(tmp_path / "weights.h5"), "--arch", "binarydensenet28"],
            "do not fit binary_densenet28",
        ),
        "shape mismatch": ([str(wrong)], "do not fit binarydensenet_digits as configured"),
        "not a zip": ([str(tmp_path / "broken.keras")], "not a valid .keras archive"),
        "unknown arch": (
            [str(tmp_path / "weights.h5"), "--arch", "vgg"],
            "Expected an architecture",
        ),
    }


def test_bad_checkpoints_give_one_line_and_exit_2(tmp_path, small_model, capsys) -> None:
    failures = []
    for case, (args, expected) in _bad_inputs(tmp_path, small_model).items():
        code = run(["export", *args, "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        if code != 2 or expected not in err or "Traceback" in err or len(err.splitlines()) != 1:
            failures.append(f"{case}: exit {code}, stderr {err!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_published_zoo_file_name_is_accepted_with_arch(tmp_path, small_model) -> None:
    folder = tmp_path / "zoo"
    folder.mkdir()
    small_model.save_weights(folder / "weights.h5")
    shutil.copy(folder / "weights.h5", folder / "binary_densenet_28_weights.h5")
    (folder / "weights.h5").unlink()
    loaded = checkpoint.load(folder, arch="binarydensenet_digits", input_shape=(32, 32, 1))
    assert loaded.architecture == "binary_densenet_digits"


_LOAD_ALL = """
import sys
from bnnconvert import checkpoint
for arg in sys.argv[1:]:
    path, _, arch = arg.partition("@")
    shape = (32, 32, 1) if arch else None
    print(checkpoint.load(path, arch=arch or None, input_shape=shape).format)
"""


def _clean_env() -> dict[str, str]:
    """What ``env -i PATH=/usr/bin:/bin HOME=$HOME`` leaves: no TF_* variables at all."""
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def test_every_format_loads_quietly_from_a_clean_environment(tmp_path, small_model) -> None:
    """Issue 11.1: no TF_USE_LEGACY_KERAS, no TF_CPP_MIN_LOG_LEVEL, nothing on stderr."""
    small_model.save(tmp_path / "m.keras")
    small_model.save(tmp_path / "m.h5")
    small_model.save(tmp_path / "sm", save_format="tf")
    small_model.save_weights(tmp_path / "weights.h5")
    (tmp_path / "tfckpt").mkdir()
    small_model.save_weights(str(tmp_path / "tfckpt" / "ckpt"))
    (tmp_path / "tfckpt" / "bnnconvert.json").write_text(
        json.dumps(
            {"architecture": "binarydensenet_digits", "input_shape": [32, 32, 1], "num_classes": 10}
        )
    )
    args = [
        str(tmp_path / "sm"),
        str(tmp_path / "m.keras"),
        str(tmp_path / "m.h5"),
        str(tmp_path / "tfckpt"),
        f"{tmp_path / 'weights.h5'}@binarydensenet_digits",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL, *args],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.stderr == ""
    assert done.stdout.split() == ["savedmodel", "keras", "h5", "tf-checkpoint", "h5-weights"]


@pytest.mark.slow
def test_cli_exports_a_saved_model_from_a_clean_shell(tmp_path, small_model) -> None:
    """``env -i PATH=/usr/bin:/bin HOME=$HOME bnnconvert export SAVEDMODEL``: stderr stays empty."""
    small_model.save(tmp_path / "sm", save_format="tf")
    bnnconvert = Path(sys.executable).parent / "bnnconvert"
    done = subprocess.run(
        [
            str(bnnconvert),
            "export",
            str(tmp_path / "sm"),
            "-o",
            str(tmp_path / "out"),
            "--no-validate",
        ],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "out" / "model.tflite").is_file()
