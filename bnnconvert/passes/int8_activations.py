"""Full int8 for the float layers: calibrated fake-quant ranges in the Keras graph.

LCE's converter turns a float conv/dense whose input and output pass through
``tf.quantization.fake_quant_with_min_max_args`` into an int8 ``CONV_2D`` /
``FULLY_CONNECTED`` (weights quantized per channel by the converter), with
``QUANTIZE`` / ``DEQUANTIZE`` where int8 meets float. This module measures the
ranges on calibration data and rebuilds the Keras model with those nodes,
before conversion; binary layers are untouched. (The converter's
``experimental_default_int8_range`` is not a substitute: one guessed range for
every tensor gave wrong outputs.)

Example:
    >>> x = load_calibration("calib.npz", input_shape=(32, 32, 1))
    >>> quantizable, stats = with_int8_float_layers(model, x)
    >>> flatbuffer = lce.convert_keras_model(quantizable)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert import _tf
from bnnconvert.errors import UsageProblem
from bnnconvert.passes.stats import PassStats

NAME = "int8_activations"
MAX_SAMPLES = 512  # min/max ranges settle long before; keeps calibration quick


def load_calibration(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Read calibration inputs: an ``.npz`` with an ``x`` array of shape ``(N, *input_shape)``.

    Raises:
        UsageProblem: missing file, no ``x``, or the wrong shape.
    """
    path = Path(path)
    try:
        with np.load(path) as data:
            if "x" not in data.files:
                raise UsageProblem(
                    f"Expected an array named 'x' in {path}, found {', '.join(data.files)}; "
                    "save inputs with np.savez(path, x=inputs)"
                )
            x = np.asarray(data["x"], dtype=np.float32)
    except (OSError, ValueError) as e:
        raise UsageProblem(
            f"Cannot read calibration data {path}: {e}; pass an .npz with an 'x' array"
        ) from e
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape) or not len(x):
        raise UsageProblem(
            f"Expected calibration x of shape (N, {', '.join(map(str, input_shape))}), "
            f"got {x.shape} in {path}; preprocess it like the model's inputs"
        )
    return x[:MAX_SAMPLES]


def float_layers(model: Any) -> list[Any]:
    """The float (not binarized) conv, depthwise and dense layers of ``model``."""
    keras = _tf.keras()
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    return [
        layer
        for layer in model.layers
        if isinstance(layer, kinds) and getattr(layer, "input_quantizer", None) is None
    ]


def calibrate(model: Any, x: np.ndarray) -> dict[str, tuple[tuple[float, float], ...]]:
    """Input and output (min, max) of each float layer on ``x``; ranges include 0."""
    keras = _tf.keras()
    layers = float_layers(model)
    probe = keras.Model(model.inputs, [t for layer in layers for t in (layer.input, layer.output)])
    values = probe.predict(x, batch_size=32, verbose=0)
    ranges = {}
    for i, layer in enumerate(layers):
        pair = values[2 * i : 2 * i + 2]
        ranges[layer.name] = tuple(
            (min(float(v.min()), 0.0), max(float(v.max()), 0.0)) for v in pair
        )
    return ranges


@functools.cache
def _wrapper_class() -> type:
    tf, keras = _tf.tensorflow(), _tf.keras()

    class FakeQuantAround(keras.layers.Layer):
        """Runs ``inner`` between two fake-quant nodes with fixed (min, max) ranges."""

        def __init__(self, inner: Any, input_range, output_range, **kwargs: Any) -> None:
            super().__init__(name=f"{inner.name}_int8", **kwargs)
            self.inner = inner
            self.input_range = tuple(input_range)
            self.output_range = tuple(output_range)

        def call(self, inputs: Any) -> Any:
            lo, hi = self.input_range
            x = tf.quantization.fake_quant_with_min_max_args(inputs, lo, hi, num_bits=8)
            lo, hi = self.output_range
            return tf.quantization.fake_quant_with_min_max_args(self.inner(x), lo, hi, num_bits=8)

    return FakeQuantAround


def with_int8_float_layers(model: Any, x: np.ndarray) -> tuple[Any, PassStats]:
    """A copy of ``model`` with calibrated fake-quant around each float conv/dense.

    Arguments:
        model: the float Keras model (fixed input shape).
        x: calibration inputs, preprocessed like the model's inputs.

    Returns:
        The rebuilt model (same weights) and the pass statistics (layers wrapped,
        samples used, ranges).
    """
    keras = _tf.keras()
    ranges = calibrate(model, x)
    wrapper = _wrapper_class()

    def clone(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        return wrapper(fresh, *ranges[layer.name]) if layer.name in ranges else fresh

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    rebuilt.set_weights(model.get_weights())
    stats = PassStats(NAME, rewrites=len(ranges))
    stats.details = {
        "calibration_samples": len(x),
        "ranges": {name: [list(r) for r in pair] for name, pair in ranges.items()},
    }
    return rebuilt, stats
