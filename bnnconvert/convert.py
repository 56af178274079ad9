"""Keras model -> LCE flatbuffer, through LCE's own MLIR converter."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bnnconvert import _tf
from bnnconvert.errors import ConversionProblem, UsageProblem
from bnnconvert.targets import Target


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """Parse ``"H,W,C"`` (as given to ``--input-shape``)."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UsageProblem(f"Expected --input-shape as H,W,C (e.g. 224,224,3), got {text!r}")
    return shape  # type: ignore[return-value]


def with_input_shape(model: Any, shape: Sequence[int] | None) -> Any:
    """Return ``model`` with a fixed ``(H, W, C)`` input, rebuilding it if needed.

    Raises:
        UsageProblem: if the model has no fixed input size and none was given,
            or the given one does not fit its layers.
    """
    current = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if current is None:
        raise UsageProblem("Expected a model with one image input; this one has several")
    if shape is None:
        if any(d is None for d in current):
            raise UsageProblem(
                f"The model's input shape {current} is not fixed; pass --input-shape H,W,C"
            )
        return model
    shape = tuple(int(d) for d in shape)
    if shape == current:
        return model
    if (
        any(c is not None and c != s for c, s in zip(current, shape, strict=True))
        and current[-1] != shape[-1]
    ):
        raise UsageProblem(
            f"Expected --input-shape with {current[-1]} channels like the model, got {shape}"
        )
    keras = _tf.keras()
    try:
        clone = keras.models.clone_model(model, input_tensors=keras.Input(shape))
        clone.set_weights(model.get_weights())
    except Exception as e:
        raise UsageProblem(
            f"The model cannot be rebuilt for input shape {shape} ({str(e).splitlines()[0][:200]})"
        ) from e
    return clone


def convert(model: Any, target: Target) -> tuple[bytes, float]:
    """Convert with LCE's ``convert_keras_model``; return (flatbuffer, seconds)."""
    lce = _tf.lce()
    start = time.perf_counter()
    try:
        flatbuffer = lce.convert_keras_model(model, target=target.lce_target)
    except Exception as e:
        raise ConversionProblem(
            f"LCE's converter failed on {model.name}: {str(e).strip().splitlines()[0][:300]}"
        ) from e
    return bytes(flatbuffer), time.perf_counter() - start
