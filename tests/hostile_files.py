"""Build hostile checkpoints whose payload is benign: each creates a marker file.

Each builder writes a file (or folder) of one kind from issue 14 into ``folder``
and returns its path; loading it through Keras without bnnconvert's checks
creates ``marker`` (the tests prove that for the kinds where plain Keras runs
the payload, so a refusal is a refusal of live code).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import h5py

from bnnconvert import _tf


def base_model() -> Any:
    """A tiny functional BNN: input -> float conv -> binary conv -> pool."""
    keras, lq = _tf.keras(), _tf.larq()
    inp = keras.Input((4, 4, 1), name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", name="stem")(inp)
    x = lq.layers.QuantConv2D(
        2, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="bin"
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, x, name="tiny")


def rewrite_keras_config(src: Path, dst: Path, config: dict[str, Any]) -> Path:
    """Copy the ``.keras`` archive ``src`` to ``dst`` with ``config.json`` replaced."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def keras_config(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def rewrite_h5_config(path: Path, config: dict[str, Any]) -> Path:
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    return path


def h5_config(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def _append_layer(config: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """Add ``layer`` to a Functional config and make it the model's output."""
    config["config"]["layers"].append(layer)
    config["config"]["output_layers"] = [[layer["config"]["name"], 0, 0]]
    return config


def hidden_lambda_layer(marker: Path, module: str | None) -> dict[str, Any]:
    """A "QuantConv2D" whose registered_name is Lambda: ``open(marker, mode="w")``."""
    layer = {
        "class_name": "QuantConv2D",
        "registered_name": "Lambda",
        "config": {
            "name": "evil",
            "trainable": True,
            "dtype": "float32",
            "function": {"class_name": "function", "config": "open", "module": "builtins"},
            "function_type": "function",
            "module": "builtins",
            "output_shape": None,
            "output_shape_type": "raw",
            "output_shape_module": None,
            "arguments": {"mode": "w"},
        },
        "name": "evil",
        "inbound_nodes": [["_CONSTANT_VALUE", -1, str(marker), {}]],
    }
    if module is not None:
        layer["module"] = module
    return layer


def lambda_by_module_layer(marker: Path) -> dict[str, Any]:
    """A Lambda spelled from ``keras.src.layers``, calling ``open(marker, mode="w")``."""
    layer = hidden_lambda_layer(marker, "keras.src.layers")
    layer["class_name"] = "Lambda"
    layer["registered_name"] = None
    return layer


def tf_op_layer(marker: Path) -> dict[str, Any]:
    """A ``TFOpLambda`` calling ``tf.io.write_file(marker, "pwned")`` on constants."""
    return {
        "module": "keras.layers",
        "class_name": "TFOpLambda",
        "registered_name": "TFOpLambda",
        "config": {
            "name": "tf.io.write_file",
            "trainable": True,
            "dtype": "float32",
            "function": "io.write_file",
        },
        "name": "tf.io.write_file",
        # A node may be a bare entry: Keras then calls the layer on the constant itself.
        "inbound_nodes": [["_CONSTANT_VALUE", -1, str(marker), {"contents": "pwned"}]],
    }


def with_layer(config: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    return _append_layer(json.loads(json.dumps(config)), layer)


def rnn_wrapper_h5(path: Path, marker: Path) -> Path:
    """An ``.h5`` with an RNN whose ResidualWrapper carries marshalled ``residual_fn`` bytecode."""
    keras = _tf.keras()
    from tf_keras.src.layers.rnn.cell_wrappers import ResidualWrapper

    def residual(inputs, outputs, _marker=str(marker)):
        open(_marker, "w").close()  # the payload
        return outputs

    inp = keras.Input((2, 3))
    cell = ResidualWrapper(keras.layers.SimpleRNNCell(3), residual_fn=residual)
    out = keras.layers.RNN(cell, name="rnn")(inp)
    keras.Model(inp, out).save(path)
    marker.unlink()  # building the model traced the payload once
    return path


def _marker_resource(marker: Path) -> Any:
    """A TensorFlow resource whose initializer writes ``marker`` (runs when TF restores it)."""
    tf = _tf.tensorflow()

    class MarkerResource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[])

        def _initialize(self):
            tf.io.write_file(str(marker), "pwned")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    return MarkerResource()


def saved_model_with_resource(folder: Path, marker: Path) -> Path:
    """A functional Keras SavedModel that also tracks a resource whose initializer writes."""
    model = base_model()
    model.marker_resource = _marker_resource(marker)
    model.save(folder, save_format="tf")
    return folder


def saved_model_with_custom_layer(folder: Path, marker: Path) -> Path:
    """A functional SavedModel with a custom layer, revived from its traced (writing) call."""
    keras, tf = _tf.keras(), _tf.tensorflow()

    class Scale(keras.layers.Layer):
        def call(self, x):
            tf.io.write_file(str(marker), "pwned")
            return x * 2.0

    inp = keras.Input((3,))
    model = keras.Model(inp, Scale(name="scale")(inp))
    model.save(folder, save_format="tf")
    marker.unlink(missing_ok=True)  # saving traces the call
    return folder


def h5_with_external_storage(path: Path, secret: Path) -> Path:
    """A full-model ``.h5`` whose Dense kernel reads its bytes from ``secret``."""
    keras = _tf.keras()
    inp = keras.Input((2,))
    keras.Model(inp, keras.layers.Dense(2, name="dense")(inp)).save(path)
    secret.write_bytes(b"\x00\x00\x80\x3f" * 4)  # four float32 1.0
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense/dense"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", shape=(2, 2), dtype="<f4", external=[(str(secret), 0, 16)])
    return path
