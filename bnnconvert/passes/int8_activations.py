"""Full int8 for the float layers: calibrated fake-quant ranges in the Keras graph.

LCE's converter turns a float conv/dense whose input and output pass through
``tf.quantization.fake_quant_with_min_max_args`` into an int8 ``CONV_2D`` /
``FULLY_CONNECTED`` (weights quantized per channel by the converter), with
``QUANTIZE`` / ``DEQUANTIZE`` where int8 meets float. This module measures the
ranges on calibration data and rebuilds the Keras model with those nodes,
before conversion; binary layers are untouched. (The converter's
``experimental_default_int8_range`` is not a substitute: one guessed range for
every tensor gave wrong outputs.)

A model may carry fake-quant nodes of its own (``tf.quantization`` ops,
TensorFlow's QAT layers): :func:`own_fake_quant` names them, layers already
between them are not calibrated again, and with nothing left to calibrate the
pass returns the model unchanged with a note. For an int8 graph input or
output (``--input-type`` / ``--output-type int8``) a node is added at that
edge where no int8 layer already sits (:func:`io_layers`).

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
WRAPPER_SUFFIX = "_int8"
"""A wrapped float layer ``X`` is named ``X_int8`` (its ops' tensor names carry that name)."""


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


FAKE_QUANT_FUNCTIONS = frozenset(
    {
        "quantization.fake_quant_with_min_max_args",
        "quantization.fake_quant_with_min_max_vars",
        "quantization.fake_quant_with_min_max_args_per_channel",
        "quantization.fake_quant_with_min_max_vars_per_channel",
        "quantization.quantize_and_dequantize",
        "quantization.quantize_and_dequantize_v2",
    }
)
"""``tf.*`` functions that put a training-time quantization node in a Keras graph."""
QAT_LAYER_CLASSES = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"})
"""TensorFlow Model Optimization's quantization-aware-training layers."""


def _all_layers(model: Any) -> list[Any]:
    """Layers of ``model`` and of the models nested in it, depth first."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _all_layers(layer)
    return found


def is_fake_quant(layer: Any) -> bool:
    """Whether ``layer`` is a fake-quant node: a ``tf.quantization`` op, a QAT layer, or ours."""
    if type(layer).__name__ in QAT_LAYER_CLASSES or type(layer).__name__ == "FakeQuantAround":
        return True
    config = layer.get_config() if type(layer).__name__ == "TFOpLambda" else {}
    return config.get("function") in FAKE_QUANT_FUNCTIONS


def own_fake_quant(model: Any) -> list[str]:
    """Names of the layers that put the model's own fake-quant nodes in its graph."""
    return [layer.name for layer in _all_layers(model) if is_fake_quant(layer)]


def _neighbours(layer: Any) -> tuple[list[Any], list[Any]]:
    """The layers feeding ``layer`` and the layers it feeds (all call sites)."""
    before = []
    for node in layer._inbound_nodes:
        inbound = node.inbound_layers
        before += list(inbound) if isinstance(inbound, list | tuple) else [inbound]
    after = [node.outbound_layer for node in layer._outbound_nodes]
    return before, after


def float_layers(model: Any) -> list[Any]:
    """The float conv, depthwise and dense layers of ``model`` that still need ranges.

    A layer already between fake-quant nodes of the model's own (every input
    from one, every output into one) is skipped: its ranges are set.
    """
    keras = _tf.keras()
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    found = []
    for layer in model.layers:
        if not isinstance(layer, kinds) or getattr(layer, "input_quantizer", None) is not None:
            continue
        before, after = _neighbours(layer)
        if before and after and all(map(is_fake_quant, before + after)):
            continue
        found.append(layer)
    return found


def _range(value: np.ndarray) -> tuple[float, float]:
    """(min, max) of ``value``, widened to include 0 (int8 must represent 0 exactly)."""
    return min(float(value.min()), 0.0), max(float(value.max()), 0.0)


def calibrate(
    model: Any, x: np.ndarray, layers: list[Any] | None = None
) -> dict[str, tuple[tuple[float, float], ...]]:
    """Input and output (min, max) of each float layer on ``x``; ranges include 0.

    Arguments:
        model: the Keras model.
        x: calibration inputs ``(N, *input_shape)`` float32.
        layers: the layers to measure (default: :func:`float_layers`).

    Returns:
        Layer name -> ((input min, max), (output min, max)); empty, without
        running the model, when there is no layer to measure.
    """
    keras = _tf.keras()
    layers = float_layers(model) if layers is None else layers
    if not layers:
        return {}
    probe = keras.Model(model.inputs, [t for layer in layers for t in (layer.input, layer.output)])
    values = probe.predict(x, batch_size=32, verbose=0)
    ranges = {}
    for i, layer in enumerate(layers):
        ranges[layer.name] = tuple(_range(v) for v in values[2 * i : 2 * i + 2])
    return ranges


@functools.cache
def _wrapper_class() -> type:
    tf, keras = _tf.tensorflow(), _tf.keras()

    class FakeQuantAround(keras.layers.Layer):
        """Runs ``inner`` between fake-quant nodes with fixed (min, max) ranges.

        Either range may be None: no node on that side.
        """

        def __init__(self, inner: Any, input_range, output_range, **kwargs: Any) -> None:
            super().__init__(name=f"{inner.name}{WRAPPER_SUFFIX}", **kwargs)
            self.inner = inner
            self.input_range = tuple(input_range) if input_range is not None else None
            self.output_range = tuple(output_range) if output_range is not None else None

        def call(self, inputs: Any) -> Any:
            if self.input_range is not None:
                lo, hi = self.input_range
                inputs = tf.nest.map_structure(
                    lambda t: tf.quantization.fake_quant_with_min_max_args(t, lo, hi, num_bits=8),
                    inputs,
                )
            outputs = self.inner(inputs)
            if self.output_range is None:
                return outputs
            lo, hi = self.output_range
            return tf.quantization.fake_quant_with_min_max_args(outputs, lo, hi, num_bits=8)

    return FakeQuantAround


def _model_input_layer(model: Any) -> Any:
    return model.inputs[0]._keras_history.layer


def _int8_at(layer: Any, wrapped: set[str]) -> bool:
    """Whether ``layer``'s output will be int8: a fake-quant node or a wrapped layer."""
    return layer.name in wrapped or is_fake_quant(layer)


def io_layers(model: Any, wrapped: set[str]) -> tuple[list[str], dict[int, str]]:
    """Layers that need a fake-quant node so the graph input / outputs come out int8.

    Arguments:
        model: the Keras model (one input, any number of outputs).
        wrapped: names of the layers that get fake-quant nodes anyway.

    Returns:
        The consumers of the model input that are neither fake-quant nodes nor
        wrapped (they get one on their input), and, by model output index, the
        layer producing each output whose value is not int8 already (int8: a
        fake-quant node, a wrapped layer, or an activation right after one;
        TFLite has int8 kernels for them).
    """
    keras = _tf.keras()
    members = {layer.name for layer in model.layers}
    source = _model_input_layer(model)
    consumers = [
        node.outbound_layer
        for node in source._outbound_nodes
        if node.outbound_layer.name in members
    ]
    need_input = [c.name for c in consumers if not _int8_at(c, wrapped)]
    activations = (keras.layers.Activation, keras.layers.Softmax, keras.layers.ReLU)
    need_output = {}
    for k, output in enumerate(model.outputs):
        producer = output._keras_history.layer
        before, _ = _neighbours(producer)
        ends_int8 = _int8_at(producer, wrapped) or (
            isinstance(producer, activations) and len(before) == 1 and _int8_at(before[0], wrapped)
        )
        if not ends_int8:
            need_output[k] = producer.name
    return need_input, need_output


def with_int8_float_layers(
    model: Any, x: np.ndarray, *, int8_input: bool = False, int8_output: bool = False
) -> tuple[Any, PassStats]:
    """A copy of ``model`` with calibrated fake-quant around each float conv/dense.

    Arguments:
        model: the float Keras model (fixed input shape).
        x: calibration inputs, preprocessed like the model's inputs.
        int8_input: also make sure the graph input passes through a fake-quant
            node (range: that of ``x``), so LCE's converter can make it int8.
        int8_output: the same for the graph output (range: measured on ``x``).

    Returns:
        The rebuilt model (same weights) and the pass statistics (layers wrapped,
        samples used, ranges). With nothing to calibrate (no float conv/dense
        outside the model's own fake-quant nodes, no edge to quantize) the
        model itself, with zero rewrites and a ``note`` saying so.
    """
    keras = _tf.keras()
    ranges = calibrate(model, x)
    need_input, need_output = io_layers(model, set(ranges))
    wrap_input = set(need_input) if int8_input else set()
    wrap_output = need_output if int8_output else {}
    own = own_fake_quant(model)
    stats = PassStats(NAME)
    if not ranges and not wrap_input and not wrap_output:
        reason = "the model's own fake-quant nodes set its int8 ranges" if own else "nothing int8"
        stats.details = {
            "note": f"no float conv/dense layer left to calibrate ({reason}); model unchanged",
            "own_fake_quant": own,
        }
        return model, stats
    input_range = _range(x)
    output_ranges: dict[str, tuple[float, float]] = {}
    if wrap_output:
        outputs = model.predict(x, batch_size=32, verbose=0)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for k, name in wrap_output.items():
            lo, hi = _range(np.asarray(outputs[k]))
            seen = output_ranges.get(name, (lo, hi))  # one layer may give two outputs
            output_ranges[name] = (min(lo, seen[0]), max(hi, seen[1]))
    wrapper = _wrapper_class()

    def clone(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        in_range, out_range = ranges.get(layer.name, (None, None))
        if layer.name in wrap_input:
            in_range = input_range
        if layer.name in output_ranges:
            out_range = output_ranges[layer.name]
        if in_range is None and out_range is None:
            return fresh
        return wrapper(fresh, in_range, out_range)

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    rebuilt.set_weights(model.get_weights())
    stats.rewrites = len(ranges)
    stats.details = {
        "calibration_samples": len(x),
        "ranges": {name: [list(r) for r in pair] for name, pair in ranges.items()},
        "own_fake_quant": own,
    }
    if wrap_input:
        stats.details["input_range"] = {"layers": sorted(wrap_input), "range": list(input_range)}
    if output_ranges:
        stats.details["output_ranges"] = {name: list(r) for name, r in output_ranges.items()}
    return rebuilt, stats
