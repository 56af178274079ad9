"""Localization of full-int8 exports: an int8 op is judged on its Keras input, not a rounded one.

Fed into an int8 tensor, a Keras value used to be rounded to that tensor's
scale first, so an int8 op downstream carried its input's rounding as if it
were its own error: a softmax reading logits of a wide range (one step ~0.2)
moved by up to a quarter of that step and was called a ``fault`` although it
is only int8 quantization. A planted fault in the same export is still named.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_tiny_bnn
from test_validate_faults import plant

from bnnconvert import checkpoint
from bnnconvert.export import export
from bnnconvert.passes import OptimizeOptions
from bnnconvert.validate import validate


@pytest.fixture(scope="module")
def confident_int8(tmp_path_factory):
    """A tiny BNN with confident logits (dense kernel x6), exported in full int8.

    Returns the checkpoint folder, the model, the flatbuffer and the names of
    the stem conv, the dense layer and the softmax (Keras numbers them per process).
    """
    model = make_tiny_bnn(seed=0, input_shape=(16, 16, 3))
    names = [model.layers[k].name for k in (1, -2, -1)]
    dense = model.layers[-2]
    kernel, bias = dense.get_weights()
    dense.set_weights([6 * kernel, bias])
    folder = tmp_path_factory.mktemp("confident")
    model.save(folder / "model.keras")
    x = np.random.default_rng(0).normal(size=(64, 16, 16, 3)).astype(np.float32)
    # The least confident samples first (localization checks the first 4): where a
    # softmax is most sensitive to its input; none so close to a tie that int8 flips it.
    top = model.predict(x, verbose=0).max(axis=1)
    order = [i for i in np.argsort(top) if top[i] >= 0.6]
    np.savez(folder / "test_split.npz", x=x[order[:16]])
    out = folder / "out"
    export(folder, output_dir=out, optimize=OptimizeOptions(int8_activations=True),
           validate_samples=0)  # fmt: skip
    return folder, checkpoint.load(folder).model, (out / "model.tflite").read_bytes(), names


def test_int8_softmax_on_wide_logits_is_quantization_not_a_fault(confident_int8, tmp_path):
    folder, model, flatbuffer, (stem, dense, softmax) = confident_int8
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)
    result = validate(folder, path, keras_model=model, layers=True, workers=0)
    assert (result.verdict, result.lossy, result.failures) == ("pass", True, [])
    causes = {r.keras_layer: r.cause for r in result.layers if r.cause != "ok"}
    assert causes == dict.fromkeys([stem, dense, softmax], "int8 quantization")
    row = next(r for r in result.layers if r.keras_layer == softmax)
    assert row.ops == ["SOFTMAX", "DEQUANTIZE"]
    # Only the int8 softmax output's own step (1/256) is left of the difference.
    assert row.max_abs_error <= 1 / 256 < row.tolerance


def test_planted_dense_fault_in_the_same_export_is_named(confident_int8, tmp_path):
    folder, model, flatbuffer, (_, dense, _) = confident_int8
    path = tmp_path / "broken.tflite"
    path.write_bytes(plant(flatbuffer, "float_weight", dense))
    result = validate(folder, path, keras_model=model, workers=0)
    assert result.verdict == "fail"
    assert result.first_divergence is not None
    assert result.first_divergence.keras_layer == dense
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {dense}
