"""Was this flatbuffer exported from this checkpoint? Checked before anything runs.

Comparing a flatbuffer with the wrong checkpoint gives numbers that mean
nothing (and a localization that blames some layer), so ``validate`` first
compares what the flatbuffer says about its origin with the checkpoint:

- the digest of the Keras weights that ``export`` embeds in the metadata
  (:func:`~bnnconvert.validation.cache.weights_digest`): the same network
  with other weights (retrained, another epoch's checkpoint) is another
  model, and only this tells them apart;
- the model name that ``export`` embeds in the metadata;
- the names LCE's converter gives tensors (``<model>/<layer>/...``): the
  model name and the layers they refer to must exist in the checkpoint.

When they disagree the answer is "MODEL was not exported from CKPT (...)".
An input shape that differs alone is no reason: ``export --input-shape``
rebuilds a model for another size, and ``validate`` runs the checkpoint at
the flatbuffer's static shape the same way.
"""

from __future__ import annotations

from pathlib import Path

from bnnconvert import ir
from bnnconvert.errors import UsageProblem
from bnnconvert.mapping import layers_starting
from bnnconvert.passes.int8_activations import WRAPPER_SUFFIX
from bnnconvert.validation.cache import KerasSummary

# Below this share of referenced layer names found in the checkpoint, the
# flatbuffer describes another network (renaming a few layers is not enough
# to reach it by accident).
MIN_LAYER_NAMES_FOUND = 0.5


class WrongCheckpoint(UsageProblem):
    """The flatbuffer was exported from another checkpoint."""


def _tensor_prefixes(graph: ir.Subgraph) -> dict[str, set[str]]:
    """First name segment -> second segments, over every ``;``-joined tensor name."""
    found: dict[str, set[str]] = {}
    for tensor in graph.tensors:
        for part in tensor.name.split(";"):
            head, slash, rest = part.partition("/")
            if slash and rest:
                found.setdefault(head, set()).add(rest.partition("/")[0])
    return found


def _embedded(fb_model: ir.Model, key: str) -> str | None:
    """A non-empty string of the metadata's ``model`` section, as ``export`` embeds it."""
    from bnnconvert.metadata import read_metadata

    metadata = read_metadata(fb_model)
    model = metadata.get("model") if metadata else None
    value = model.get(key) if isinstance(model, dict) else None
    return value if isinstance(value, str) and value else None


def mismatch_reasons(keras: KerasSummary, fb_model: ir.Model) -> list[str]:
    """Why the flatbuffer cannot come from the Keras model ``keras``; empty when it can.

    Arguments:
        keras: a summary of the checkpoint's Keras model (its weights digest None:
            not compared).
        fb_model: the flatbuffer's graph.
    """
    reasons = []
    name = keras.name
    weights = _embedded(fb_model, "weights_sha256")
    if weights and keras.weights_sha256 and weights != keras.weights_sha256:
        reasons.append(
            f"it was exported from other weights (sha256 {weights[:12]}..., the "
            f"checkpoint's are {keras.weights_sha256[:12]}...)"
        )
    embedded = _embedded(fb_model, "name")
    if embedded is not None and embedded != name:
        reasons.append(f"it embeds the model name {embedded!r}, the checkpoint's is {name!r}")
    prefixes = _tensor_prefixes(fb_model.subgraphs[0])
    layers = set(keras.layers)
    if prefixes and name not in prefixes:
        named = max(prefixes, key=lambda p: len(prefixes[p]))
        if len(prefixes[named]) > 1 and embedded is None:
            reasons.append(f"its tensors are named after the model {named!r}, not {name!r}")
    # --int8-activations names a wrapped float layer X "X_int8".
    referenced = {n.removesuffix(WRAPPER_SUFFIX) for n in prefixes.get(name, set())}
    if referenced:
        found = {n for n in referenced if n in layers or layers_starting(n, layers)}
        if len(found) < MIN_LAYER_NAMES_FOUND * len(referenced):
            missing = sorted(referenced - layers)
            reasons.append(
                f"{len(missing)} of the {len(referenced)} layer names it refers to are not in "
                f"the checkpoint (e.g. {', '.join(missing[:3])})"
            )
    return reasons


def check_origin(
    keras: KerasSummary, fb_model: ir.Model, ckpt: str | Path, model: str | Path
) -> None:
    """Raise unless the flatbuffer's names correspond to the checkpoint.

    An input shape that differs is not a reason on its own: ``export
    --input-shape`` rebuilds the model for another size, and ``validate``
    runs the checkpoint at the flatbuffer's shape.

    Raises:
        WrongCheckpoint: "MODEL was not exported from CKPT (...)", with the reasons.
    """
    reasons = mismatch_reasons(keras, fb_model)
    if not reasons:
        return
    graph = fb_model.subgraphs[0]
    shape = tuple(graph.tensors[graph.inputs[0]].shape[1:])
    keras_shape = tuple(keras.input_shape)
    if len(keras_shape) != len(shape) or any(
        k is not None and k != s for k, s in zip(keras_shape, shape, strict=True)
    ):
        reasons.append(f"its input is {shape}, the checkpoint's {keras_shape}")
    raise WrongCheckpoint(f"{model} was not exported from {ckpt} ({'; '.join(reasons)})")
