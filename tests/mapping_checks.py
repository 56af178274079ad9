"""Checks of a layer mapping against Keras, shared by the mapping and corpus tests.

The flatbuffer side is computed by the reference executor, so a mapping that
names the wrong tensor, or gives it the wrong meaning, fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnnconvert import _tf, reference
from bnnconvert.mapping import (
    VALUE,
    LayerMap,
    TensorRef,
    as_flatbuffer_input,
    flatbuffer_signs,
    keras_signs,
    map_layers,
)


def keras_outputs(model: Any, names: list[str], x: np.ndarray, lm: LayerMap) -> dict[str, Any]:
    """Keras values of ``names``' outputs (a model input by its position in ``lm.inputs``)."""
    inputs = list(lm.inputs)
    tensors = [
        model.inputs[inputs.index(n)] if n in lm.inputs else model.get_layer(n).output
        for n in names
    ]
    values = _tf.keras().Model(model.inputs, tensors).predict(x, verbose=0)
    return dict(zip(names, values if isinstance(values, list) else [values], strict=True))


def _assert_same(ref: TensorRef, ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    if ref.meaning == VALUE:
        scale = float(np.abs(theirs).max())
        np.testing.assert_allclose(
            ours.reshape(theirs.shape), theirs, rtol=0, atol=1e-4 + 1e-4 * scale, err_msg=what
        )
    else:
        np.testing.assert_array_equal(
            flatbuffer_signs(ref, ours, theirs.shape[-1]), keras_signs(theirs), err_msg=what
        )


def check_every_output(model: Any, flatbuffer: bytes, seed: int = 0) -> dict[str, str]:
    """Each mapped layer output against Keras (whole-model run); return layer -> meaning."""
    lm = map_layers(model, flatbuffer)
    x = np.random.default_rng(seed).uniform(-1, 1, (1, *model.input_shape[1:])).astype("float32")
    values = reference.run(lm.model, [x])
    mapped = {n: layer.output for n, layer in lm.layers.items() if layer.output is not None}
    expected = keras_outputs(model, list(mapped), x, lm)
    for name, ref in mapped.items():
        _assert_same(ref, values[ref.tensor], expected[name], name)
    return {n: ref.meaning for n, ref in mapped.items()}


def check_groups_in_isolation(model: Any, flatbuffer: bytes, seed: int = 3) -> int:
    """Each layer group's ops, fed Keras's own values for its inputs, give Keras's output.

    Every group input is replaced by the Keras value it stands for (converted
    with :func:`bnnconvert.mapping.as_flatbuffer_input`), so no error can
    propagate from one group to the next. Returns the number of groups.
    """
    lm = map_layers(model, flatbuffer)
    groups = lm.groups()
    assert not [g.layers for g in groups if any(not r.layer for r in g.inputs)], "unknown input"
    x = np.random.default_rng(seed).uniform(-1, 1, (1, *model.input_shape[1:])).astype("float32")
    names = sorted({r.layer for g in groups for r in [*g.inputs, g.output]})
    expected = keras_outputs(model, names, x, lm)
    feed = {r.tensor: as_flatbuffer_input(r, expected[r.layer]) for g in groups for r in g.inputs}

    def keras_inputs(position: int, results: list[np.ndarray]) -> list[np.ndarray]:
        outputs = lm.graph.operators[position].outputs
        return [feed.get(t, v) for t, v in zip(outputs, results, strict=True)]

    values = reference.run(lm.model, [x], substitute=keras_inputs)
    for group in groups:
        _assert_same(group.output, values[group.output.tensor], expected[group.output.layer],
                     "+".join(group.layers))  # fmt: skip
    return len(groups)
