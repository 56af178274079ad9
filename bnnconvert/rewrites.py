"""Exact Keras rewrites before conversion: a binary ``QuantDense`` becomes a 1x1 ``QuantConv2D``.

LCE has no binary dense op: a ``QuantDense`` with sign input and kernel
quantizers becomes ``LceQuantize -> LceDequantize -> FULLY_CONNECTED`` in
float. A dense layer on ``(..., C)`` is a 1x1 convolution over the positions,
so the layer is rebuilt as one nested ``Sequential`` named like the layer::

    Reshape((P, 1, C)) -> QuantConv2D(units, 1) -> Reshape((..., units))

(``P`` = product of the leading dimensions: a 1x1 map for a ``(None, C)``
input), with the same quantizers, constraint, bias and activation and the
kernel reshaped to ``(1, 1, C, units)``. The sums are the same ±1 products in
the same terms, so the result is exact; LCE then emits ``LceBconv2d``.
Tensor names keep the layer's name (``<model>/<layer>/...``), so the layer
mapping finds the ops under the original ``QuantDense``.

Example:
    >>> rewritten, done = rewrite_for_lce(keras_model)
    >>> [r.layer for r in done]
    ['qdense_binary']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bnnconvert import _tf, ir
from bnnconvert.pass_records import add_records
from bnnconvert.passes.stats import PassStats

KIND = "quantdense_as_conv"
_SIGN_INPUT = frozenset(
    {"ste_sign", "approx_sign", "swish_sign", "SteSign", "ApproxSign", "SwishSign"}
)
_BINARY_KERNEL = _SIGN_INPUT | {"magnitude_aware_sign", "MagnitudeAwareSign"}


@dataclass(frozen=True)
class Rewrite:
    """One layer rebuilt before conversion (``export.json`` lists ``to_dict()``)."""

    layer: str
    from_class: str
    to: str
    reshape_in: str
    reshape_out: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}


def _name(quantizer: Any) -> str | None:
    if quantizer is None:
        return None
    return getattr(quantizer, "__name__", None) or type(quantizer).__name__


def _is_binary_dense(layer: Any) -> bool:
    """A ``QuantDense`` with a sign input quantizer, a binary kernel quantizer, static input."""
    if type(layer).__name__ != "QuantDense" or not hasattr(layer, "input_quantizer"):
        return False
    shape = layer.input_shape
    return (
        _name(layer.input_quantizer) in _SIGN_INPUT
        and _name(layer.kernel_quantizer) in _BINARY_KERNEL
        and isinstance(shape, tuple)
        and all(d is not None for d in shape[1:])
    )


def _as_conv(layer: Any) -> tuple[Any, Rewrite]:
    """The nested Sequential (not built yet) that computes ``layer`` as a 1x1 conv."""
    keras, lq = _tf.keras(), _tf.larq()
    lead, channels = tuple(layer.input_shape[1:-1]), int(layer.input_shape[-1])
    positions = int(np.prod(lead, dtype=np.int64)) if lead else 1
    names = (f"{layer.name}_to_1x1", layer.name, f"{layer.name}_from_1x1")
    conv = lq.layers.QuantConv2D(
        layer.units,
        1,
        input_quantizer=layer.input_quantizer,
        kernel_quantizer=layer.kernel_quantizer,
        kernel_constraint=layer.kernel_constraint,
        use_bias=layer.use_bias,
        activation=layer.activation,
        name=names[1],
    )
    block = keras.Sequential(
        [
            keras.layers.Reshape((positions, 1, channels), name=names[0]),
            conv,
            keras.layers.Reshape((*lead, layer.units), name=names[2]),
        ],
        name=layer.name,
    )
    return block, Rewrite(layer.name, "QuantDense", "1x1 QuantConv2D", names[0], names[2])


def _conv_weights(layer: Any) -> list[np.ndarray]:
    """The dense layer's weights for its 1x1 conv: kernel ``(1, 1, C, units)``, the rest as is."""
    kernel, *rest = layer.get_weights()
    return [kernel.reshape(1, 1, *kernel.shape), *rest]


def rewrite_for_lce(keras_model: Any) -> tuple[Any, list[Rewrite]]:
    """``keras_model`` with every binary ``QuantDense`` rebuilt as a 1x1 ``QuantConv2D``.

    The other layers are copies with the same weights (``keras_model`` is left
    as it is). A model that is not functional or sequential, or has no such
    layer, is returned as it is.

    Returns:
        The model to convert and the rewrites made (empty: the same model).
    """
    keras = _tf.keras()
    targets = [layer for layer in keras_model.layers if _is_binary_dense(layer)]
    if not targets or not getattr(keras_model, "_is_graph_network", False):
        return keras_model, []
    done: list[Rewrite] = []

    def clone(layer: Any) -> Any:
        if layer in targets:
            block, rewrite = _as_conv(layer)
            done.append(rewrite)
            return block
        return layer.__class__.from_config(layer.get_config())

    rebuilt = keras.models.clone_model(keras_model, clone_function=clone)
    rebuilt._name = keras_model.name  # tensor names start with the model's name
    for layer in keras_model.layers:
        if layer in targets:
            rebuilt.get_layer(layer.name).get_layer(layer.name).set_weights(_conv_weights(layer))
        elif layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt, done


def record(flatbuffer: bytes, rewrites: list[Rewrite]) -> bytes:
    """``flatbuffer`` with ``rewrites`` recorded in its ``bnnconvert.passes`` metadata."""
    if not rewrites:
        return flatbuffer
    model = ir.read(flatbuffer)
    add_records(
        model,
        KIND,
        [
            {"layer": r.layer, "reshape_in": r.reshape_in, "reshape_out": r.reshape_out}
            for r in rewrites
        ],
    )
    return ir.write(model)


def rewrite_stats(rewrites: list[Rewrite]) -> PassStats:
    """The rewrites as a ``passes`` entry of ``export.json`` (layers under ``layers``)."""
    stats = PassStats(KIND, rewrites=len(rewrites))
    stats.details = {"layers": [r.to_dict() for r in rewrites]}
    return stats
