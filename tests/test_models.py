"""BinaryDenseNet definitions: parameter counts, stems, h5 topology, LCE binarization."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BUNDLED, slow_after_first

from bnnconvert import _tf, checkpoint, convert, ir, models

PUBLISHED_PARAMS = {
    "binarydensenet28": 5_150_504,
    "binarydensenet37": 8_734_120,
    "binarydensenet37dilated": 8_734_120,
    "binarydensenet45": 13_939_240,
}


@pytest.mark.parametrize("variant", slow_after_first(sorted(PUBLISHED_PARAMS)))
def test_parameter_counts_match_the_published_table(variant: str) -> None:
    model = models.binary_densenet(variant, (224, 224, 3), 1000)
    assert model.count_params() == PUBLISHED_PARAMS[variant]


def test_large_input_stem_is_7x7_stride2_bn_relu_pool() -> None:
    model = models.binary_densenet28((224, 224, 3), 1000)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2)
    assert [layer.name for layer in model.layers[1:5]] == [
        "stem_conv",
        "stem_bn",
        "stem_relu",
        "stem_pool",
    ]


def test_small_input_stem_is_one_3x3_conv() -> None:
    model = models.binary_densenet28((32, 32, 3), 10)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (3, 3) and stem.strides == (1, 1)
    assert model.layers[2].name == "block1_layer1_bn"
    assert model.output_shape == (None, 10)


def test_dilated_variant_skips_pooling_before_dilated_blocks() -> None:
    model = models.binary_densenet37_dilated((224, 224, 3), 1000)
    names = {layer.name for layer in model.layers}
    assert "transition1_pool" in names
    assert "transition2_pool" not in names and "transition3_pool" not in names
    assert model.get_layer("block4_layer1_bconv").dilation_rate == (4, 4)


def test_unknown_architecture_names_the_choices() -> None:
    from bnnconvert.errors import UsageProblem

    with pytest.raises(UsageProblem, match=r"binarydensenet28.*got 'resnet18'"):
        models.architecture("resnet18")


def _published_style_binary_densenet28(num_classes: int):
    """BinaryDenseNet28 written the way the published larq-zoo model was built.

    Default Keras layer names, ``layers.concatenate``, identical layer order:
    the published ``binary_densenet_28_weights.h5`` was saved from such a model.
    """
    keras = _tf.keras()
    lq = _tf.larq()

    def bn():
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)

    image = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False)(image)
    x = keras.layers.Activation("relu")(bn()(x))
    x = keras.layers.MaxPool2D(3, strides=2, padding="same")(x)
    for block, depth in enumerate((6, 6, 6, 5)):
        for _ in range(depth):
            y = bn()(x)
            y = lq.layers.QuantConv2D(
                64,
                3,
                padding="same",
                use_bias=False,
                input_quantizer=lq.quantizers.SteSign(1.3),
                kernel_quantizer=lq.quantizers.SteSign(1.3),
                kernel_constraint=lq.constraints.WeightClip(1.3),
            )(y)
            x = keras.layers.concatenate([x, y])
        if block < 3:
            x = bn()(x)
            x = keras.layers.MaxPooling2D(2, strides=2)(x)
            x = keras.layers.Activation("relu")(x)
            width = round(x.shape[-1] // (2.7, 2.7, 2.2)[block] / 32) * 32
            x = keras.layers.Conv2D(width, 1, use_bias=False)(x)
    x = keras.layers.Activation("relu")(bn()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes)(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(image, x)


def test_published_style_weights_h5_loads_by_topology(tmp_path) -> None:
    reference = _published_style_binary_densenet28(num_classes=16)
    rng = np.random.default_rng(0)
    reference.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    )
    path = tmp_path / "binary_densenet_28_weights.h5"
    reference.save_weights(path)

    ours = models.binary_densenet28((224, 224, 3), 16)
    ours.load_weights(path)
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("variant", slow_after_first(sorted(PUBLISHED_PARAMS)))
def test_every_binary_conv_becomes_lce_bconv2d(variant: str) -> None:
    lq = _tf.larq()
    model = models.binary_densenet(variant, (32, 32, 3), 10)
    binary_layers = [layer for layer in model.layers if isinstance(layer, lq.layers.QuantConv2D)]
    graph = ir.read(_tf.lce().convert_keras_model(model))
    ops = [op.opcode for op in graph.subgraphs[0].operators]
    assert ops.count("LceBconv2d") == len(binary_layers)
    assert "CONV_2D" in ops  # stem and transitions stay float
    assert ops.count("CONV_2D") == 1 + len(models.architecture(variant).layers) - 1


@pytest.fixture(scope="module")
def bundled_weights_h5(tmp_path_factory):
    """The bundled digits model's weights alone, as ``model.save_weights('….h5')`` writes them."""
    path = tmp_path_factory.mktemp("weights") / "digits_weights.h5"
    checkpoint.load(BUNDLED).model.save_weights(path)
    return path


def test_bundled_weights_h5_exports_with_arch_like_the_bundled_model(
    bundled_weights_h5, bundled_export, cli, tmp_path
) -> None:
    out = tmp_path / "out"
    argv = [str(bundled_weights_h5), "--arch", "binarydensenet_digits", "-o", str(out)]
    code, _, err = cli("export", *argv, "--no-validate")
    assert code == 0, err
    x = np.load(BUNDLED / "test_split.npz")["x"][:16]
    ours = _tf.lce_interpreter((out / "model.tflite").read_bytes()).predict(x)
    theirs = _tf.lce_interpreter(bundled_export.model_path.read_bytes()).predict(x)
    np.testing.assert_array_equal(ours, theirs)
    assert len(set(np.argmax(ours, axis=1))) > 3  # real predictions, not one class


def test_weights_h5_keeps_its_stem_at_another_input_size(bundled_weights_h5) -> None:
    # The digits weights have the 3x3 stem; 64 px would pick the 7x7 one.
    loaded = checkpoint.load(
        bundled_weights_h5, arch="binarydensenet_digits", input_shape=(64, 64, 1)
    )
    assert loaded.model.get_layer("stem_conv").kernel_size == (3, 3)
    bundled = convert.with_input_shape(checkpoint.load(BUNDLED).model, (64, 64, 1))
    x = np.random.default_rng(0).uniform(0, 1, (4, 64, 64, 1)).astype("float32")
    np.testing.assert_array_equal(loaded.model(x).numpy(), bundled(x).numpy())


def test_a_variant_builds_for_its_own_input_by_default() -> None:
    model = models.binary_densenet("binarydensenet_digits")
    assert (model.input_shape, model.output_shape) == ((None, 32, 32, 1), (None, 10))
    assert model.get_layer("stem_conv").kernel_size == (3, 3)
