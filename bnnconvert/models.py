"""BinaryDenseNet (Bethge et al., 2019) as published, and small variants.

The published variants use growth rate 64, 64 initial filters, no
bottleneck and no scaling factors. A dense layer is BN -> binary 3x3 conv
(``ste_sign`` on input and kernel, clip 1.3, weight clip 1.3, ``same``
padding, no bias) -> concatenate with its input. A transition is BN -> max-pool 2x2 (skipped when
the next block is dilated) -> ReLU -> float 1x1 conv to
``round((C // r) / 32) * 32`` channels. The stem is a 7x7 stride-2 conv, BN,
ReLU and 3x3 max-pool for inputs of 50 px or more, one 3x3 conv below (or as
asked with ``small_stem``). Layers are created in the same order as the
published models, so the published ``binary_densenet_*_weights.h5`` files
load into these definitions by topology (``model.load_weights(path)``).

Example:
    >>> model = binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    >>> model.count_params()
    5150504
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bnnconvert import _tf
from bnnconvert.errors import UsageProblem

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
SMALL_INPUT = 50  # inputs narrower than this get the 3x3 stride-1 stem


@dataclass(frozen=True)
class BinaryDenseNetSpec:
    """The hyper-parameters that tell BinaryDenseNet variants apart."""

    name: str
    layers: tuple[int, ...]
    reductions: tuple[float, ...]
    dilations: tuple[int, ...]
    growth_rate: int = 64
    initial_filters: int = 64
    input_shape: tuple[int, int, int] = (224, 224, 3)  # the variant's own (H, W, C)
    num_classes: int = 1000


SPECS: dict[str, BinaryDenseNetSpec] = {
    "binarydensenet28": BinaryDenseNetSpec(
        "binary_densenet28", (6, 6, 6, 5), (2.7, 2.7, 2.2), (1, 1, 1, 1)
    ),
    "binarydensenet37": BinaryDenseNetSpec(
        "binary_densenet37", (6, 8, 12, 6), (3.3, 3.3, 4.0), (1, 1, 1, 1)
    ),
    "binarydensenet37dilated": BinaryDenseNetSpec(
        "binary_densenet37_dilated", (6, 8, 12, 6), (3.3, 3.3, 4.0), (1, 1, 2, 4)
    ),
    "binarydensenet45": BinaryDenseNetSpec(
        "binary_densenet45", (6, 12, 14, 8), (2.7, 3.3, 4.0), (1, 1, 1, 1)
    ),
    # The bundled digits model (models/digits/): three blocks of three
    # 32-filter binary layers on a 32x32x1 input, 10 classes.
    "binarydensenet_digits": BinaryDenseNetSpec(
        "binary_densenet_digits", (3, 3, 3), (2.0, 2.0), (1, 1, 1), 32, 32, (32, 32, 1), 10
    ),
}


def _binary_conv_kwargs(dilation: int) -> dict[str, Any]:
    lq = _tf.larq()
    return {
        "kernel_size": 3,
        "dilation_rate": dilation,
        "padding": "same",
        "use_bias": False,
        "input_quantizer": lq.quantizers.SteSign(clip_value=1.3),
        "kernel_quantizer": lq.quantizers.SteSign(clip_value=1.3),
        "kernel_constraint": lq.constraints.WeightClip(clip_value=1.3),
        "kernel_initializer": "glorot_normal",
    }


def _batch_norm(name: str) -> Any:
    keras = _tf.keras()
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def build_binary_densenet(
    spec: BinaryDenseNetSpec,
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    small_stem: bool | None = None,
) -> Any:
    """Build a BinaryDenseNet Keras model (tf-keras functional API).

    Arguments:
        spec: the variant's hyper-parameters (see ``SPECS``).
        input_shape: ``(height, width, channels)`` (default: ``spec.input_shape``).
        num_classes: width of the final Dense + softmax (default: ``spec.num_classes``).
        small_stem: one 3x3 conv as the stem rather than 7x7 stride 2, BN, ReLU
            and max-pool (default: for inputs narrower than 50 px), e.g. to
            load weights made with the other stem at another input size.

    Returns:
        An uncompiled ``tf_keras.Model`` named ``spec.name``.

    Raises:
        UsageProblem: for a malformed input shape or class count.
    """
    keras = _tf.keras()
    lq = _tf.larq()
    shape = tuple(int(d) for d in (input_shape or spec.input_shape))
    num_classes = spec.num_classes if num_classes is None else num_classes
    if len(shape) != 3 or min(shape) < 1:
        raise UsageProblem(
            f"Expected input_shape as (height, width, channels) of positive ints, got {shape}"
        )
    if num_classes < 1:
        raise UsageProblem(f"Expected num_classes >= 1, got {num_classes}")

    if small_stem is None:
        small_stem = shape[0] < SMALL_INPUT
    image = keras.Input(shape, name="image")
    if small_stem:
        x = keras.layers.Conv2D(
            spec.initial_filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(image)
    else:
        x = keras.layers.Conv2D(
            spec.initial_filters,
            7,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(image)
        x = _batch_norm("stem_bn")(x)
        x = keras.layers.Activation("relu", name="stem_relu")(x)
        x = keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_pool")(x)

    for block, (depth, dilation) in enumerate(
        zip(spec.layers, spec.dilations, strict=True), start=1
    ):
        for layer in range(1, depth + 1):
            prefix = f"block{block}_layer{layer}"
            y = _batch_norm(f"{prefix}_bn")(x)
            y = lq.layers.QuantConv2D(
                spec.growth_rate, name=f"{prefix}_bconv", **_binary_conv_kwargs(dilation)
            )(y)
            x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, y])
        if block < len(spec.layers):
            prefix = f"transition{block}"
            x = _batch_norm(f"{prefix}_bn")(x)
            if spec.dilations[block] == 1:
                x = keras.layers.MaxPool2D(2, strides=2, name=f"{prefix}_pool")(x)
            x = keras.layers.Activation("relu", name=f"{prefix}_relu")(x)
            width = round((x.shape[-1] // spec.reductions[block - 1]) / 32) * 32
            x = keras.layers.Conv2D(
                int(width),
                1,
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"{prefix}_conv",
            )(x)

    x = _batch_norm("head_bn")(x)
    x = keras.layers.Activation("relu", name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="he_normal", name="head_dense")(x)
    x = keras.layers.Activation("softmax", dtype="float32", name="head_softmax")(x)
    return keras.Model(image, x, name=spec.name)


def randomize_batchnorm(model: Any, seed: int = 0) -> None:
    """Give every BatchNormalization realistic, non-trivial statistics.

    For untrained models in tests and benchmarks: gammas of both signs (20 %
    negative), non-zero betas and means, variances in [0.5, 2]. A freshly
    initialised batch norm (mean 0, beta 0) puts activations exactly on sign
    ties, where LCE's optimised kernels and Keras legitimately disagree.
    """
    import numpy as np

    keras = _tf.keras()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            sign = rng.choice([-1.0, 1.0], size=n, p=[0.2, 0.8])
            layer.set_weights(
                [
                    (sign * rng.uniform(0.5, 1.5, n)).astype("float32"),
                    rng.normal(0.0, 0.3, n).astype("float32"),
                    rng.normal(0.0, 0.5, n).astype("float32"),
                    rng.uniform(0.5, 2.0, n).astype("float32"),
                ]
            )


def architecture(name: str) -> BinaryDenseNetSpec:
    """Look up a variant by its command-line name (``binarydensenet28`` ...)."""
    key = name.lower().replace("-", "").replace("_", "")
    for candidate, spec in SPECS.items():
        if candidate.replace("_", "") == key:
            return spec
    raise UsageProblem(f"Expected an architecture among {', '.join(SPECS)}, got {name!r}")


def binary_densenet(
    variant: str, input_shape: Sequence[int] | None = None, num_classes: int | None = None
) -> Any:
    """Build the BinaryDenseNet variant named ``variant`` (see ``SPECS``; defaults: its own)."""
    return build_binary_densenet(
        architecture(variant), input_shape=input_shape, num_classes=num_classes
    )


def _factory(variant: str) -> Callable[..., Any]:
    def build(input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> Any:
        return binary_densenet(variant, input_shape, num_classes)

    build.__name__ = variant.replace("binarydensenet", "binary_densenet")
    build.__doc__ = f"Build {SPECS[variant].name} (see :func:`build_binary_densenet`)."
    return build


binary_densenet28 = _factory("binarydensenet28")
binary_densenet37 = _factory("binarydensenet37")
binary_densenet37_dilated = _factory("binarydensenet37dilated")
binary_densenet45 = _factory("binarydensenet45")
