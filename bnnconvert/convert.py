"""Keras model -> LCE flatbuffer, through LCE's own MLIR converter."""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from typing import Any

from bnnconvert import _tf, ir
from bnnconvert.errors import ConversionProblem, UsageProblem, first_line
from bnnconvert.io_quant import IO_TYPES
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


def check_input_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """``shape`` (a Python caller's ``input_shape``) as three positive whole numbers.

    Raises:
        UsageProblem: not three whole numbers of at least 1.
    """
    try:
        checked = tuple(operator.index(d) for d in shape)
    except TypeError:
        checked = ()
    if isinstance(shape, str) or len(checked) != 3 or min(checked) < 1:
        raise UsageProblem(
            f"Expected input_shape= as three positive whole numbers (height, width, channels), "
            f"got {shape!r}; e.g. (224, 224, 3)"
        )
    return checked  # type: ignore[return-value]


def with_input_shape(model: Any, shape: Sequence[int] | None) -> Any:
    """Return ``model`` with a fixed ``(H, W, C)`` input, rebuilding it if needed.

    A rebuilt model keeps the input's name and dtype (the flatbuffer's
    signature input is named after it) and every layer's name, so its outputs'.

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
                f"The model's input shape {current} is not fixed; "
                "pass input_shape= (height, width, channels)"
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
            f"Expected input_shape= with {current[-1]} channels like the model, got {shape}"
        )
    keras = _tf.keras()
    try:
        image = keras.Input(shape, name=model.input_names[0], dtype=model.inputs[0].dtype)
        clone = keras.models.clone_model(model, input_tensors=image)
        clone.set_weights(model.get_weights())
    except Exception as e:
        raise UsageProblem(
            f"The model cannot be rebuilt for input shape {shape} ({first_line(e)})"
        ) from e
    return clone


def check_io_types(input_type: str, output_type: str, *, int8_model: bool | None = None) -> None:
    """Check ``--input-type`` / ``--output-type`` before conversion.

    Arguments:
        input_type, output_type: ``"float32"`` or ``"int8"`` (LCE's
            ``inference_input_type`` / ``inference_output_type``).
        int8_model: whether the graph will carry int8 ranges (``--int8-activations``
            or the model's own fake-quant nodes); an int8 edge needs them.
            None (before the model is loaded) checks the names only.

    Raises:
        UsageProblem: an unknown type, or int8 asked of a model without ranges.
    """
    edges = (("input_type=", input_type), ("output_type=", output_type))
    for argument, value in edges:
        if value not in IO_TYPES:
            raise UsageProblem(
                f"Expected {argument} to be one of {', '.join(IO_TYPES)}, got {value!r}"
            )
    if int8_model is False:
        for argument, value in edges:
            if value == "int8":
                raise UsageProblem(
                    "Expected int8_activations= or a model with its own fake-quant nodes for "
                    f"an int8 {argument}, got a float model; add int8_activations="
                )


def convert(
    model: Any, target: Target, *, input_type: str = "float32", output_type: str = "float32"
) -> tuple[bytes, float]:
    """Convert with LCE's ``convert_keras_model``; return (flatbuffer, seconds).

    Arguments:
        model: the Keras model (with fake-quant nodes for int8 input/output).
        target: the ``--target`` preset (its LCE back end is used).
        input_type, output_type: ``"float32"`` or ``"int8"``: the graph input /
            output tensor type (LCE's ``inference_input_type`` / ``_output_type``).

    Raises:
        ConversionProblem: LCE's converter failed, or the input/output did not
            come out int8 as asked (LCE leaves a float edge as it is when no
            fake-quant node sits there).
    """
    tf, lce = _tf.tensorflow(), _tf.lce()
    types = {"float32": tf.float32, "int8": tf.int8}
    start = time.perf_counter()
    try:
        flatbuffer = lce.convert_keras_model(
            model,
            target=target.lce_target,
            inference_input_type=types[input_type],
            inference_output_type=types[output_type],
        )
    except Exception as e:
        raise ConversionProblem(
            f"LCE's converter failed on {model.name}: {str(e).strip().splitlines()[0][:300]}"
        ) from e
    seconds = time.perf_counter() - start
    if (input_type, output_type) != ("float32", "float32"):
        _check_io(bytes(flatbuffer), input_type, output_type)
    return bytes(flatbuffer), seconds


def _check_io(flatbuffer: bytes, input_type: str, output_type: str) -> None:
    """Raise if an int8 edge asked for came out float (LCE says nothing then)."""
    graph = ir.read(flatbuffer).subgraphs[0]
    for which, wanted, indices in (
        ("input", input_type, graph.inputs),
        ("output", output_type, graph.outputs),
    ):
        got = graph.tensors[indices[0]].dtype
        if wanted != got:
            raise ConversionProblem(
                f"Expected an {wanted} {which} after conversion, got {got}: no fake-quant node "
                f"sits at the model's {which}; add one there "
                f"(tf.quantization.fake_quant_with_min_max_args) or use --int8-activations"
            )
