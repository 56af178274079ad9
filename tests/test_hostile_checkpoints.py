"""Hostile checkpoints (issue 14): refused with their message, exit 2, payload never run.

Every hostile file is built here with a benign payload that creates a marker
file in ``tmp_path``. Where plain Keras runs the payload, a control load
proves it is live before bnnconvert is shown to refuse it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import hostile_files as hf
import numpy as np
import pytest

from bnnconvert import _tf, checkpoint
from bnnconvert.checkpoint_files import MAX_CONFIG_BYTES
from bnnconvert.cli.main import run
from bnnconvert.errors import BnnConvertError, CheckpointProblem, UsageProblem
from bnnconvert.export import export as export_api
from bnnconvert.h5_check import check_h5
from bnnconvert.validate import validate as validate_api

REFUSED = (
    "refused: re-save it with stock Keras/Larq, "
    "or pass --trust-checkpoint if you trust where this file comes from"
)
CODE = "which bnnconvert never executes; rebuild it from built-in Keras/Larq layers, or pass "
TRUST = "--trust-checkpoint if you trust where this file comes from"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """The tiny base model as ``.keras`` and ``.h5``."""
    folder = tmp_path_factory.mktemp("base")
    model = hf.base_model()
    model.save(folder / "base.keras")
    model.save(folder / "base.h5")
    return {"keras": folder / "base.keras", "h5": folder / "base.h5"}


def _export(path: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = run(["export", str(path), "-o", str(out), "--no-validate", *extra])
    return code, capsys.readouterr().err.strip()


def _plain_keras_load(path: Path) -> None:
    """What bnnconvert must not do: Keras's own loader, in its safe mode."""
    # The payload runs (or not) before Keras gives up on the rest of the file.
    with contextlib.suppress(Exception):
        _tf.keras().models.load_model(path, compile=False, safe_mode=True)


def _keras_with(base: Path, folder: Path, name: str, layer: dict) -> Path:
    return hf.rewrite_keras_config(
        base, folder / f"{name}.keras", hf.with_layer(hf.keras_config(base), layer)
    )


def _h5_with(base: Path, folder: Path, name: str, layer: dict) -> Path:
    path = folder / f"{name}.h5"
    shutil.copy(base, path)
    return hf.rewrite_h5_config(path, hf.with_layer(hf.h5_config(base), layer))


def _hidden_lambda(base, tmp_path, marker):
    path = _keras_with(
        base["keras"], tmp_path, "hidden", hf.hidden_lambda_layer(marker, "keras.layers")
    )
    message = (
        f"{path}: layer 'evil' attribute 'registered_name': class_name 'QuantConv2D' but "
        f"registered_name 'Lambda' (Keras would build the registered object instead); {REFUSED}"
    )
    return path, message


def _keras_src_module(base, tmp_path, marker):
    path = _keras_with(base["keras"], tmp_path, "src", hf.lambda_by_module_layer(marker))
    message = (
        f"{path}: layer 'evil' attribute 'class_name': a Lambda layer runs a Python function "
        f"serialized in the file, {CODE}{TRUST}"
    )
    return path, message


def _tf_op(fmt):
    def build(base, tmp_path, marker):
        write = _keras_with if fmt == "keras" else _h5_with
        path = write(base[fmt], tmp_path, "tfop", hf.tf_op_layer(marker))
        message = (
            f"{path}: layer 'tf.io.write_file' attribute 'class_name': a TFOpLambda layer runs "
            f"a TensorFlow function named in the file, {CODE}{TRUST}"
        )
        return path, message

    return build


def _rnn_wrapper(base, tmp_path, marker):
    path = hf.rnn_wrapper_h5(tmp_path / "rnn.h5", marker)
    message = (
        f"{path}: layer 'rnn' attribute 'cell': a ResidualWrapper runs Python bytecode stored "
        f"in the file (residual_fn), {CODE}{TRUST}"
    )
    return path, message


def _empty_metadata(base, tmp_path, marker):
    path = hf.saved_model_with_resource(tmp_path / "sm", marker)
    (path / "keras_metadata.pb").write_bytes(b"")
    message = (
        f"{path}: a SavedModel with empty Keras metadata can only be loaded by running graphs "
        "stored in it; re-save it with tf-keras model.save('model.keras'), or pass "
        "--trust-checkpoint if you trust where it comes from"
    )
    return path, message


def _revived_layer(base, tmp_path, marker):
    path = hf.saved_model_with_custom_layer(tmp_path / "sm", marker)
    message = (
        f"{path / 'keras_metadata.pb'}: layer 'scale' attribute 'class_name': layer class "
        "'Scale' is not a built-in Keras/Larq layer bnnconvert loads (custom code is never "
        "run); use a built-in Keras/Larq layer, or pass --trust-checkpoint (Keras then runs "
        "the layer's graph stored in the SavedModel) if you trust this checkpoint"
    )
    return path, message


def _run_revived(path: Path) -> None:
    model = _tf.keras().models.load_model(path, compile=False)
    model(np.ones((1, 3), "float32"))


HOSTILE = {
    "hidden Lambda via registered_name (.keras)": (_hidden_lambda, _plain_keras_load),
    "Lambda from module keras.src.layers (.keras)": (_keras_src_module, _plain_keras_load),
    "TFOpLambda io.write_file (.keras)": (_tf_op("keras"), _plain_keras_load),
    "TFOpLambda io.write_file (.h5)": (_tf_op("h5"), _plain_keras_load),
    "RNN ResidualWrapper bytecode (.h5)": (_rnn_wrapper, _plain_keras_load),
    "SavedModel with empty keras_metadata.pb": (_empty_metadata, _plain_keras_load),
    "SavedModel with a revived custom layer": (_revived_layer, _run_revived),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_checkpoint_is_refused_and_its_payload_never_runs(
    kind, base, tmp_path, capsys
) -> None:
    build, control = HOSTILE[kind]
    marker = tmp_path / "marker"
    path, message = build(base, tmp_path, marker)

    control(path)  # the payload is live: plain Keras runs it
    assert marker.exists(), "the hostile file's payload did not run under plain Keras"
    marker.unlink()

    code, err = _export(path, tmp_path / "out", capsys)
    assert (code, err) == (2, f"error: {message}")
    assert not marker.exists()
    assert not (tmp_path / "out" / "model.tflite").exists()


def test_savedmodel_resource_initializers_never_run(tmp_path) -> None:
    """A tracked resource whose initializer writes: the model loads, the initializer never runs."""
    marker = tmp_path / "marker"
    path = hf.saved_model_with_resource(tmp_path / "sm", marker)
    loaded = checkpoint.load(path)
    assert loaded.format == "savedmodel" and loaded.model.name == "tiny"
    assert not marker.exists()
    _tf.keras().models.load_model(path, compile=False)  # control: TF's loader runs it
    assert marker.exists()


@pytest.mark.parametrize("name", ["labels.txt", "preprocessing.txt", "test_split.npz"])
def test_side_file_symlinked_outside_the_checkpoint_is_refused(
    name, base, tmp_path, capsys
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the user's private key")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(base["keras"], folder / "model.keras")
    (folder / name).symlink_to(secret)
    code, err = _export(folder / "model.keras", tmp_path / "out", capsys)
    assert (code, err) == (
        2,
        f"error: {folder / name}: a symlink or a path outside the checkpoint folder; "
        "bnnconvert reads side files only from inside the checkpoint; copy the file there, "
        "or give it explicitly on the command line",
    )
    assert not (tmp_path / "out" / "model.tflite").exists()


def test_symlinked_bnnconvert_json_is_refused(tmp_path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"architecture": "binarydensenet28"}))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "bnnconvert.json").symlink_to(outside)
    with pytest.raises(CheckpointProblem, match="a symlink or a path outside the checkpoint"):
        checkpoint.load(folder)


def test_h5_external_storage_is_refused(tmp_path, capsys) -> None:
    secret = tmp_path / "secret.bin"
    path = hf.h5_with_external_storage(tmp_path / "ext.h5", secret)
    model = _tf.keras().models.load_model(path, compile=False)  # control: the file leaks
    assert model.get_layer("dense").kernel.numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    code, err = _export(path, tmp_path / "out", capsys)
    assert (code, err) == (
        2,
        f"error: {path}: HDF5 dataset /model_weights/dense/dense/kernel:0 stores its data in "
        f"an external file ('{secret}'); a checkpoint must hold its own data; refused",
    )


def test_h5_external_links_and_virtual_datasets_are_refused(tmp_path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.ones(4, "float32")
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f["weights/kernel"] = h5py.ExternalLink(str(other), "/data")
    with pytest.raises(CheckpointProblem) as refused:
        check_h5(linked, linked)
    assert str(refused.value) == (
        f"{linked}: HDF5 object /weights/kernel is an external link to '{other}'; "
        "a checkpoint must hold its own data; refused"
    )
    virtual = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(4,), dtype="float32")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(4,))
    with h5py.File(virtual, "w") as f:
        f.create_virtual_dataset("kernel", layout)
    with pytest.raises(CheckpointProblem, match="/kernel is a virtual dataset"):
        check_h5(virtual, virtual)


def test_inflating_keras_config_is_refused_before_reading(base, tmp_path) -> None:
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(base["keras"]) as src:
        members = {n: src.read(n) for n in src.namelist() if n != "config.json"}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        with archive.open("config.json", "w", force_zip64=True) as member:
            for _ in range((MAX_CONFIG_BYTES >> 20) * 4):  # 64 MiB of spaces, ~64 KiB zipped
                member.write(b" " * (1 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointProblem) as refused:
        checkpoint.load(path)
    assert str(refused.value) == (
        f"{path}: its config.json inflates to 64 MiB, more than the 16 MiB bnnconvert reads; "
        "refused"
    )


def test_fifo_checkpoint_is_refused_without_blocking(tmp_path, capsys) -> None:
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    code, err = _export(fifo, tmp_path / "out", capsys)
    assert code == 2 and "is a FIFO (named pipe)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"architecture": "binarydensenet28", "num_classes": "10"},
            "Expected num_classes to be a whole number from 1 to 100000, got '10'",
        ),
        (
            {"architecture": "binarydensenet28", "num_classes": 3e9},
            "Expected num_classes to be a whole number from 1 to 100000, got 3000000000.0",
        ),
        (
            {"architecture": "binarydensenet28", "input_shape": [224, True, 3]},
            "Expected input_shape W to be a whole number from 1 to 4096, got True",
        ),
        (
            {"architecture": 28},
            'expected {"architecture": "binarydensenet28", "input_shape": [H, W, C], '
            "\"num_classes\": N}, got {'architecture': 28}",
        ),
    ],
    ids=["num_classes-a-string", "num_classes-3e9", "input_shape-a-bool", "architecture-a-number"],
)
def test_bnnconvert_json_is_validated(config, expected, tmp_path, capsys) -> None:
    (tmp_path / "bnnconvert.json").write_text(json.dumps(config))
    code, err = _export(tmp_path, tmp_path / "out", capsys)
    assert (code, err) == (2, f"error: {tmp_path / 'bnnconvert.json'}: {expected}")


# --- --trust-checkpoint ---------------------------------------------------------


@pytest.fixture(scope="module")
def lambda_keras(tmp_path_factory) -> Path:
    keras = _tf.keras()
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inp)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    keras.Model(inp, x).save(path)
    return path


def test_lambda_model_loads_only_with_trust_checkpoint(lambda_keras, tmp_path, capsys) -> None:
    code, err = _export(lambda_keras, tmp_path / "refused", capsys)
    assert (code, err) == (
        2,
        f"error: {lambda_keras}: layer 'double' attribute 'class_name': a Lambda layer runs a "
        f"Python function serialized in the file, {CODE}{TRUST}",
    )
    code, err = _export(lambda_keras, tmp_path / "trusted", capsys, "--trust-checkpoint")
    assert code == 0
    assert err == f"warning: {checkpoint.TRUST_WARNING}"
    assert (tmp_path / "trusted" / "model.tflite").is_file()


def test_a_cached_trusted_run_does_not_let_an_untrusted_one_pass(
    lambda_keras, tmp_path, capsys, monkeypatch
) -> None:
    """The Keras outputs of a trusted run are not read back without trust: the untrusted run
    loads the checkpoint itself and is refused (it used to pass on the warm cache)."""
    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert run(["export", str(lambda_keras), "-o", str(out), "--trust-checkpoint"]) == 0
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)))
    argv = ["validate", str(lambda_keras), str(out / "model.tflite"), "--data",
            str(tmp_path / "x.npz")]  # fmt: skip
    assert run([*argv, "--trust-checkpoint"]) == 0
    capsys.readouterr()
    assert run(argv) == 2
    assert "a Lambda layer runs" in capsys.readouterr().err
    assert validate_api(lambda_keras, out / "model.tflite", data=tmp_path / "x.npz",
                        trust_checkpoint=True).keras_cache == "hit"  # fmt: skip


@pytest.mark.parametrize("value", ["false", 1, None])
def test_trust_checkpoint_must_be_a_bool(lambda_keras, tmp_path, value) -> None:
    """A string "false" (read from a config file, say) must not turn on unsafe loading."""
    message = f"Expected trust_checkpoint= as True or False, got {value!r}"
    with pytest.raises(UsageProblem) as info:
        checkpoint.load(lambda_keras, trust=value)
    assert str(info.value) == message
    with pytest.raises(UsageProblem, match="Expected trust_checkpoint= as True or False"):
        export_api(lambda_keras, output_dir=tmp_path / "out", trust_checkpoint=value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_custom_objects_need_trust_and_register_the_users_function(suffix, tmp_path) -> None:
    keras, lq, tf = _tf.keras(), _tf.larq(), _tf.tensorflow()

    def xnor_weight_scale(x):
        return lq.quantizers.ste_sign(x) * tf.reduce_mean(tf.abs(x), axis=[0, 1, 2])

    inp = keras.Input((4, 4, 2))
    out = lq.layers.QuantConv2D(
        2, 3, kernel_quantizer=xnor_weight_scale, input_quantizer="ste_sign", name="xnor1"
    )(inp)
    path = tmp_path / f"custom{suffix}"
    keras.Model(inp, out).save(path)
    module = tmp_path / "my_quantizers.py"
    module.write_text(
        "import larq as lq\nimport tensorflow as tf\n\n\n"
        "def xnor_weight_scale(x):\n"
        "    return lq.quantizers.ste_sign(x) * tf.reduce_mean(tf.abs(x), axis=[0, 1, 2])\n"
    )
    with pytest.raises(CheckpointProblem) as refused:
        checkpoint.load(path)
    assert str(refused.value) == (
        f"{path}: layer 'xnor1' attribute 'kernel_quantizer': quantizer function "
        "'xnor_weight_scale' is not a built-in Keras/Larq quantizer bnnconvert loads (custom "
        'code is never run); use the built-in lq.quantizers.MagnitudeAwareSign ("magnitude_'
        'aware_sign"), or pass trust_checkpoint= with custom_objects= FILE.py if you trust '
        "this checkpoint"
    )
    with pytest.raises(BnnConvertError, match="custom_objects= runs the given file's code"):
        checkpoint.load(path, custom_objects=module)
    if suffix == ".h5":  # tf-keras cannot read a function quantizer back from .h5 at all
        with pytest.raises(CheckpointProblem) as failed:
            checkpoint.load(path, trust=True, custom_objects=module)
        assert str(failed.value).startswith(
            f"{path}: Keras could not load it even with trust_checkpoint=: Unknown "
            "quantization function: 'function'."
        )
        return
    loaded = checkpoint.load(path, trust=True, custom_objects=module)
    assert loaded.trusted
    assert loaded.model.get_layer("xnor1").kernel_quantizer.__name__ == "xnor_weight_scale"
    lacking = tmp_path / "other_quantizers.py"
    lacking.write_text("def other(x):\n    return x\n")
    with pytest.raises(CheckpointProblem) as failed:
        checkpoint.load(path, trust=True, custom_objects=lacking)
    assert str(failed.value).endswith(
        f"; {lacking} defines other: does the checkpoint name one of its own that the file lacks?"
    )


def test_subclassed_saved_model_needs_trust_and_then_converts_as_one_graph(tmp_path) -> None:
    keras, lq = _tf.keras(), _tf.larq()

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = lq.layers.QuantConv2D(
                2, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign"
            )

        def call(self, x):
            return x + self.conv(x)

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.block = Block()
            self.pool = keras.layers.GlobalAveragePooling2D()

        def call(self, x):
            return self.pool(self.block(x))

    x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype("float32")
    net = Net()
    expected = net(x).numpy()
    net.save(tmp_path / "sm", save_format="tf")
    with pytest.raises(CheckpointProblem) as refused:
        checkpoint.load(tmp_path / "sm")
    assert str(refused.value) == (
        f"{tmp_path / 'sm'}: a subclassed Keras model ('Net', not Functional or Sequential) "
        "can only be loaded by running graphs stored in it (as .keras, by running its class's "
        "code); rebuild it as a Functional model (keras.Model(inputs, outputs) of the same "
        "layers), copy the weights over and save that with model.save('model.keras'), or pass "
        "trust_checkpoint= if you trust where it comes from"
    )
    loaded = checkpoint.load(tmp_path / "sm", trust=True)
    assert loaded.trusted and loaded.model.input_shape == (None, 4, 4, 2)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), expected, atol=1e-6)


def test_signature_only_saved_model_needs_trust_and_then_converts(tmp_path, capsys) -> None:
    """``tf.saved_model.save`` without Keras: refused; trusted, its serving signature converts."""
    tf, keras, lq = _tf.tensorflow(), _tf.keras(), _tf.larq()
    net = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(32, 3, padding="same"),
            lq.layers.QuantConv2D(
                32, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False
            ),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )

    class Serving(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def serve(self, image):
            return {"scores": self.model(image)}

    module = Serving(net)
    path = tmp_path / "plain"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    code, err = _export(path, tmp_path / "refused", capsys)
    assert (code, err) == (
        2,
        f"error: {path}: a SavedModel without Keras metadata can only be loaded by running "
        "graphs stored in it; re-save it with tf-keras model.save('model.keras'), or pass "
        "--trust-checkpoint if you trust where it comes from",
    )
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    loaded = checkpoint.load(path, trust=True)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), net(x).numpy(), atol=1e-6)
    out = tmp_path / "trusted"
    code = run(["export", str(path), "-o", str(out), "--no-validate", "--trust-checkpoint"])
    assert (code, capsys.readouterr().err.strip()) == (0, f"warning: {checkpoint.TRUST_WARNING}")
    report = json.loads((out / "export.json").read_text())
    assert report["op_counts"].get("LceBconv2d") == 1


# --- the one TFOpLambda accepted: TensorFlow's fake-quant ops (LCE's int8 route) ----------


def _fake_quant_model():
    tf, keras = _tf.tensorflow(), _tf.keras()
    inp = keras.Input((8, 8, 3))
    x = tf.quantization.fake_quant_with_min_max_args(inp, min=-1.0, max=1.0)
    x = keras.layers.Conv2D(4, 3)(x)
    x = tf.quantization.fake_quant_with_min_max_args(x, min=-4.0, max=4.0)
    return keras.Model(inp, x)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_fake_quant_ops_load_without_trust(tmp_path, suffix) -> None:
    model = _fake_quant_model()
    model.save(tmp_path / f"fq{suffix}")
    loaded = checkpoint.load(tmp_path / f"fq{suffix}").model
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def _fake_quant_layer(**changes) -> dict:
    layer = {
        "module": "tf_keras.src.layers.core.tf_op_layer",
        "class_name": "TFOpLambda",
        "registered_name": "TFOpLambda",
        "config": {
            "name": "fq",
            "trainable": True,
            "dtype": "float32",
            "function": "quantization.fake_quant_with_min_max_args",
        },
        "name": "fq",
        "inbound_nodes": [["input_1", 0, 0, {"min": -1.0, "max": 1.0}]],
    }
    config = changes.pop("config", {})
    layer.update(changes)
    layer["config"] = {**layer["config"], **config}
    return layer


@pytest.mark.parametrize(
    "layer",
    [
        _fake_quant_layer(config={"function": "io.write_file"}),
        _fake_quant_layer(registered_name="Lambda"),
        _fake_quant_layer(module="keras.src.layers"),
        _fake_quant_layer(config={"extra": "x"}),
        _fake_quant_layer(inbound_nodes=[["input_1", 0, 0, {"name": "x", "min": "0"}]]),
    ],
    ids=["other-function", "registered-as-lambda", "other-module", "extra-key", "string-arg"],
)
def test_tf_op_layers_other_than_plain_fake_quant_are_refused(layer) -> None:
    from bnnconvert.config_allowlist import check_config

    config = {"class_name": "Functional", "config": {"name": "m", "layers": [layer]}}
    with pytest.raises(CheckpointProblem, match="layer 'fq'"):
        check_config(config, "model.keras")


# --- graphs Keras cannot rebuild: its rebuild loop would wait forever ----------------------


def _rewire(config: dict, layer: str, inbound: list) -> dict:
    config = json.loads(json.dumps(config))
    [entry] = [e for e in config["config"]["layers"] if e["name"] == layer]
    entry["inbound_nodes"] = inbound
    return config


@pytest.mark.parametrize(
    ("layer", "inbound", "reason"),
    [
        ("bin", [[["stem", 3, 0, {}]]], "reads node 3 of layer 'stem', which the model does not"),
        ("bin", [[["ghost", 0, 0, {}]]], "reads node 0 of layer 'ghost', which the model does not"),
        ("stem", [[["pool", 0, 0, {}]]], "its inputs depend on its own output (a cycle"),
    ],
    ids=["missing-node", "missing-layer", "cycle"],
)
def test_graphs_keras_would_rebuild_forever_are_refused(
    base, tmp_path, capsys, layer, inbound, reason
) -> None:
    config = _rewire(hf.keras_config(base["keras"]), layer, inbound)
    path = hf.rewrite_keras_config(base["keras"], tmp_path / "loop.keras", config)
    code, err = _export(path, tmp_path / "out", capsys)
    assert code == 2
    assert reason in err and err.startswith(f"error: {path}: layer ")
    assert not (tmp_path / "out").exists()


def test_the_cache_key_follows_the_custom_objects_files_code(tmp_path) -> None:
    """Editing the custom objects file changes what the model computes: a new cache entry."""
    from bnnconvert.validation.cache import entry_key, loading_digest

    module = tmp_path / "quantizers.py"
    module.write_text("def my_sign(x):\n    return x\n")
    before = entry_key("ckpt", "data", (8, 8, 1), loading_digest(True, module))
    module.write_text("def my_sign(x):\n    return -x\n")
    after = entry_key("ckpt", "data", (8, 8, 1), loading_digest(True, module))
    keys = {before, after, entry_key("ckpt", "data", (8, 8, 1), loading_digest(True, None))}
    assert len(keys | {entry_key("ckpt", "data", (8, 8, 1), loading_digest(False, None))}) == 4
