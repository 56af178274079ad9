"""The few Keras layers ONNX graphs need beyond Keras and Larq's own (imports TensorFlow).

Each lowers to the plain TensorFlow ops LCE's converter already understands:
``ChannelAffine`` to ``MUL``/``ADD`` with constants (fused into a preceding
binary conv's multiplier and bias), ``Pad2D`` to ``PAD``/``PADV2``, ``Clip``
to ``MINIMUM``/``MAXIMUM`` (``RELU_N1_TO_1`` for Hardtanh), ``Abs`` to ``ABS``,
``ChannelMean`` to ``MEAN`` over the channel axis, ``Round`` to ``ROUND``.

Every layer rebuilds from its ``get_config()`` (plain lists and numbers, fit
for JSON) to compute the same bits, so ``keras.models.clone_model`` works on
an imported model (``--int8-activations``, ``--input-shape``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bnnconvert import _tf

keras = _tf.keras()
tf = _tf.tensorflow()


class ChannelAffine(keras.layers.Layer):
    """``x * scale + bias`` with constants broadcast over NHWC (either may be None)."""

    def __init__(
        self, scale: np.ndarray | None = None, bias: np.ndarray | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.scale = None if scale is None else np.asarray(scale, np.float32)
        self.bias = None if bias is None else np.asarray(bias, np.float32)

    def call(self, x: Any) -> Any:
        if self.scale is not None:
            x = x * tf.constant(self.scale)
        if self.bias is not None:
            x = x + tf.constant(self.bias)
        return x

    def get_config(self) -> dict[str, Any]:
        """The base config plus ``scale`` and ``bias`` as nested lists of floats (or None)."""
        return {**super().get_config(), "scale": _as_list(self.scale), "bias": _as_list(self.bias)}


def _as_list(array: np.ndarray | None) -> Any:
    """A float32 array as nested Python floats (exact: float64 holds every float32)."""
    return None if array is None else array.tolist()


class Pad2D(keras.layers.Layer):
    """Pad H and W of an NHWC tensor by ``(top, left, bottom, right)`` with ``value``."""

    def __init__(self, pads: Sequence[int], value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pads = tuple(int(p) for p in pads)
        self.value = float(value)

    def call(self, x: Any) -> Any:
        top, left, bottom, right = self.pads
        return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=self.value)

    def get_config(self) -> dict[str, Any]:
        """The base config plus ``pads`` (a list of 4 ints) and ``value``."""
        return {**super().get_config(), "pads": list(self.pads), "value": self.value}


class Clip(keras.layers.Layer):
    """``min(max(x, low), high)``; ``None`` leaves that side open."""

    def __init__(self, low: float | None, high: float | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low = None if low is None else float(low)
        self.high = None if high is None else float(high)

    def call(self, x: Any) -> Any:
        if self.low is not None:
            x = tf.maximum(x, self.low)
        if self.high is not None:
            x = tf.minimum(x, self.high)
        return x

    def get_config(self) -> dict[str, Any]:
        """The base config plus ``low`` and ``high``."""
        return {**super().get_config(), "low": self.low, "high": self.high}


class Abs(keras.layers.Layer):
    """``|x|``."""

    def call(self, x: Any) -> Any:
        return tf.abs(x)


class ChannelMean(keras.layers.Layer):
    """The mean over the channel (last) axis, kept as a size-1 axis."""

    def call(self, x: Any) -> Any:
        return tf.reduce_mean(x, axis=-1, keepdims=True)


class Round(keras.layers.Layer):
    """Round to the nearest integer, ties to even (ONNX ``Round``, ``torch.round``)."""

    def call(self, x: Any) -> Any:
        return tf.round(x)
