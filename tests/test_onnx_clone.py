"""The ONNX importer's own Keras layers survive ``get_config``/``from_config`` and cloning.

``--int8-activations`` and ``--input-shape`` rebuild the model layer by layer
(``keras.models.clone_model``), so a layer without a config of its own cannot
be exported either way. Part one rebuilds every layer class of
``onnx_import/layers.py`` from its config and compares outputs bit for bit;
part two exports a PyTorch BNN holding these layers both ways and validates
the flatbuffers (needs the ``torch`` extra).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bnnconvert import _tf
from bnnconvert.convert import with_input_shape
from bnnconvert.errors import UsageProblem
from bnnconvert.onnx_import import layers

keras = _tf.keras()

RNG = np.random.default_rng(0)
CHANNELS = 4
# one or more instances of every layer class of layers.py, with arguments as the importer passes
CASES: dict[str, list[Any]] = {
    "ChannelAffine": [
        lambda: layers.ChannelAffine(
            RNG.normal(size=(1, 1, 1, CHANNELS)).astype(np.float32),
            RNG.normal(size=CHANNELS).astype(np.float32),
        ),
        lambda: layers.ChannelAffine(np.float32(1 / 3), None),
        lambda: layers.ChannelAffine(bias=np.float32(-0.1)),
    ],
    "Pad2D": [
        lambda: layers.Pad2D((1, 0, 2, 1), 0.7),
        lambda: layers.Pad2D((0, 1, 0, 1), float(np.finfo(np.float32).min)),
    ],
    "Clip": [lambda: layers.Clip(-1.0, 1.0), lambda: layers.Clip(None, 0.3)],
    "Abs": [layers.Abs],
    "ChannelMean": [layers.ChannelMean],
    "Round": [layers.Round],
}


def _layer_classes() -> set[str]:
    return {
        name
        for name, value in vars(layers).items()
        if inspect.isclass(value)
        and issubclass(value, keras.layers.Layer)
        and value.__module__ == layers.__name__
    }


def _image() -> np.ndarray:
    return (RNG.normal(size=(2, 5, 6, CHANNELS)) * 3).astype(np.float32)


def test_every_layer_class_has_a_case() -> None:
    assert set(CASES) == _layer_classes()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(m, id=f"{name}-{i}")
        for name, makes in CASES.items()
        for i, m in enumerate(makes)
    ],
)
def test_layer_rebuilt_from_its_config_computes_the_same_bits(make: Any) -> None:
    layer = make()
    x = _image()
    expected = np.asarray(layer(x))
    config = layer.get_config()
    json.dumps(config)  # plain lists and numbers, no numpy

    rebuilt = type(layer).from_config(config)
    got = np.asarray(rebuilt(x))

    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert rebuilt.get_config() == config


def test_clone_model_rebuilds_a_model_of_every_layer_class() -> None:
    image = keras.Input((5, 6, CHANNELS), name="image")
    y = image
    for makes in CASES.values():
        for make in makes:
            y = make()(y)
    model = keras.Model(image, y)
    x = _image()

    clone = keras.models.clone_model(model)
    bigger = with_input_shape(model, (7, 9, CHANNELS))

    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    assert bigger.output_shape == (None, 7 + 1 + 2, 9 + 1 + 1 + 1, 1)


class _NoConfig(keras.layers.Layer):
    """A layer keras cannot rebuild: an array argument and no get_config."""

    def __init__(self, table: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table

    def call(self, x: Any) -> Any:
        return x


def test_a_model_that_cannot_be_rebuilt_says_why_in_one_line() -> None:
    image = keras.Input((4, 4, 1), name="image")
    model = keras.Model(image, _NoConfig(np.zeros(2))(image))

    with pytest.raises(UsageProblem) as caught:
        with_input_shape(model, (8, 8, 1))

    assert str(caught.value) == (
        "The model cannot be rebuilt for input shape (8, 8, 1) "
        "(Layer _NoConfig was created by passing)"
    )


# --- a PyTorch BNN holding the importer's layers, exported both ways ----------------------


@pytest.fixture(scope="module")
def onnx_bnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float stem, BN, ``x * gain + offset`` (ChannelAffine), Hardtanh (Clip), a
    0.5-filled pad (Pad2D), a binary conv, BN, head; 16x16 RGB, 10 classes."""
    torch = pytest.importorskip("torch", reason="needs the torch extra (./setup.sh --test)")
    from test_onnx_families import BinaryConv, export_onnx, head
    from torch import nn
    from torch.nn import functional

    class StemAffinePadBNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn0 = nn.BatchNorm2d(16)
            self.gain = nn.Parameter(torch.rand(1, 16, 1, 1) + 0.5)
            self.offset = nn.Parameter(torch.randn(1, 16, 1, 1) * 0.2)
            self.binary = BinaryConv(16, 16, scaled=True)
            self.bn1 = nn.BatchNorm2d(16)
            self.head = head(16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = functional.hardtanh(self.bn0(self.stem(x)) * self.gain + self.offset)
            x = functional.pad(x, (1, 0, 1, 0), value=0.5)
            return self.head(self.bn1(self.binary(x)))

    torch.manual_seed(0)
    return export_onnx(StemAffinePadBNN(), tmp_path_factory.mktemp("onnx") / "bnn.onnx")


def _images(tmp_path: Path, height: int, width: int) -> Path:
    """16 images ``(16, height, width, 3)`` float32, uniform in [-1, 1], as an ``.npz``."""
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (16, height, width, 3)).astype(np.float32)
    path = tmp_path / f"x{height}x{width}.npz"
    np.savez(path, x=x)
    return path


@pytest.mark.torch
def test_onnx_bnn_with_importer_layers_exports_int8_and_validates_lossy(
    onnx_bnn: Path, tmp_path: Path
) -> None:
    from bnnconvert.export import export
    from bnnconvert.onnx_import import load
    from bnnconvert.validate import validate

    kinds = {type(layer).__name__ for layer in load(onnx_bnn).model.layers}
    assert {"ChannelAffine", "Clip", "Pad2D"} <= kinds
    data = _images(tmp_path, 16, 16)

    result = export(
        onnx_bnn,
        target="arm64",
        output_dir=tmp_path / "out",
        int8_activations=True,
        calibration=data,
        validate=False,
    )
    report = validate(onnx_bnn, result.model_path, data=data)

    assert result.op_counts.get("LceBconv2d", 0) == 1
    assert result.lossy
    assert report.lossy and report.passed and report.verdict == "pass", report.summary()


@pytest.mark.torch
def test_onnx_bnn_with_importer_layers_exports_at_another_input_shape_and_validates(
    onnx_bnn: Path, tmp_path: Path
) -> None:
    from bnnconvert.export import export
    from bnnconvert.validate import validate

    result = export(onnx_bnn, target="arm64", output_dir=tmp_path / "out", input_shape=(24, 20, 3))
    report = validate(onnx_bnn, result.model_path, data=_images(tmp_path, 24, 20))

    assert result.op_counts.get("LceBconv2d", 0) == 1
    assert result.parity is not None and result.parity.passed, result.parity.failures
    assert result.parity.reference == "ONNX Runtime"
    assert (report.reference, report.samples, report.verdict) == ("ONNX Runtime", 16, "pass")
    assert report.top1_agreement == 1.0


def test_onnx_runtime_reference_that_cannot_run_at_another_size_says_so(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bnnconvert.onnx_import import OnnxProblem
    from bnnconvert.onnx_import.runtime import OnnxRuntimeReference

    flat = numpy_helper.from_array(np.array([1, 32], np.int64), "flat")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "flat"], ["y"])],  # x.view(1, 32): 4x4 only
        "fixed_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [flat],
    )
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    reference = OnnxRuntimeReference(path)
    x = np.arange(32, dtype=np.float32).reshape(1, 4, 4, 2)

    assert reference(x).tolist() == [x.transpose(0, 3, 1, 2).ravel().tolist()]
    with pytest.raises(OnnxProblem) as caught:
        reference(np.zeros((1, 6, 6, 2), np.float32))

    message = str(caught.value)
    assert message.startswith(
        f"{path}: ONNX Runtime cannot run it for (C, H, W) inputs (2, 6, 6) ("
    )
    assert message.endswith("); validate at its own input size (2, 4, 4)")
    assert "\n" not in message
