"""Shared fixtures: small real BNNs, converted by the real LCE converter."""

from __future__ import annotations

import pytest

from bnnconvert import _tf
from bnnconvert.models import randomize_batchnorm


def make_tiny_bnn(seed: int = 0, input_shape: tuple[int, int, int] = (32, 32, 3)):
    """A small BinaryDenseNet-like Keras model with non-trivial BN statistics.

    Float 3x3 stem -> two (BN -> binary 3x3 conv -> concat) layers ->
    BN -> ReLU -> global average pool -> Dense(10) -> softmax. Batch-norm
    statistics are randomised (means, variances, gammas of both signs) so no
    activation sits exactly on a sign tie (see DESIGN.md, "Ties at zero").
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


@pytest.fixture(scope="session")
def tiny_bnn():
    """A small Keras BNN (32x32x3 in, 10 classes)."""
    return make_tiny_bnn()


@pytest.fixture(scope="session")
def tiny_bnn_tflite(tiny_bnn) -> bytes:
    """``tiny_bnn`` converted by LCE's converter (arm target)."""
    return _tf.lce().convert_keras_model(tiny_bnn)
