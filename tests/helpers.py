"""Helpers shared by the tests: repository paths and small real BNNs.

Import them (``from helpers import BUNDLED, make_tiny_bnn``); ``conftest.py``
only turns some of them into fixtures. Paths are absolute, so tests pass from
any working directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bnnconvert import _tf, ir
from bnnconvert.models import randomize_batchnorm

REPO = Path(__file__).resolve().parents[1]
# The bundled, really trained digits BinaryDenseNet (checkpoint directory).
BUNDLED = REPO / "models" / "digits"


def make_tiny_bnn(seed: int = 0, input_shape: tuple[int, int, int] = (32, 32, 3)):
    """A small BinaryDenseNet-like Keras model with non-trivial BN statistics.

    Float 3x3 stem -> two (BN -> binary 3x3 conv -> concat) layers ->
    BN -> ReLU -> global average pool -> Dense(10) -> softmax. Batch-norm
    statistics are randomised (means, variances, gammas of both signs) so no
    activation sits exactly on a sign tie (README, "Ties at zero").
    """
    keras = _tf.keras()
    lq = _tf.larq()
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    for _ in range(2):
        y = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        y = lq.layers.QuantConv2D(
            32,
            3,
            padding="same",
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign",
            kernel_constraint="weight_clip",
            use_bias=False,
        )(y)
        x = keras.layers.Concatenate()([x, y])
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    model = keras.Model(inp, x, name="tiny_bnn")
    randomize_batchnorm(model, seed)
    return model


def slow_after_first(values: Iterable[Any]) -> list[Any]:
    """A sweep's parametrize values: the first always runs, the rest are marked ``slow``.

    For sweeps over model variants or options where one case proves the code
    path and the others (each a conversion of seconds to minutes) add coverage.
    """
    first, *rest = list(values)
    return [first, *(pytest.param(v, marks=pytest.mark.slow) for v in rest)]


def relu_model(shape: tuple[int, ...] = (1, 4), opcode: str = "RELU", name: str = "in") -> bytes:
    """A one-op float32 flatbuffer ``in -> opcode -> out`` with the given input shape."""
    graph = ir.Subgraph(
        tensors=[ir.Tensor(name, list(shape), "float32"), ir.Tensor("out", list(shape), "float32")],
        operators=[ir.Operator(opcode, [0], [1])],
        inputs=[0],
        outputs=[1],
    )
    return ir.write(ir.Model(subgraphs=[graph]))


def renamed(model, rename: Callable[[str], str]):
    """``model`` with every layer but its inputs named ``rename(name)``, same weights."""
    config = model.get_config()
    names = {layer["name"] for layer in config["layers"] if layer["class_name"] != "InputLayer"}

    def walk(node):  # inbound nodes and output layers: [layer name, node, tensor, ...]
        if isinstance(node, list) and node and isinstance(node[0], str) and node[0] in names:
            return [rename(node[0]), *node[1:]]
        return [walk(n) for n in node] if isinstance(node, list) else node

    for layer in config["layers"]:
        if layer["name"] in names:
            layer["name"] = layer["config"]["name"] = rename(layer["name"])
        layer["inbound_nodes"] = walk(layer["inbound_nodes"])
    config["output_layers"] = walk(config["output_layers"])
    lq = _tf.larq()
    model_copy = _tf.keras().Model.from_config(
        config, custom_objects={**vars(lq.layers), **vars(lq.quantizers)}
    )
    model_copy.set_weights(model.get_weights())
    return model_copy
