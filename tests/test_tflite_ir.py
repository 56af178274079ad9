"""The graph IR: round trips through the LCE interpreter, rewrites, verify, bitpacking."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bnnconvert import _tf, ir


def predict(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    return np.asarray(_tf.lce_interpreter(flatbuffer).predict(x))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)


def test_import_does_not_import_tensorflow():
    code = "import sys, bnnconvert.ir; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_round_trip_gives_identical_outputs(tiny_bnn_tflite, images):
    model = ir.read(tiny_bnn_tflite)
    written = ir.write(model)
    assert ir.read(written) == model
    np.testing.assert_array_equal(predict(written, images), predict(tiny_bnn_tflite, images))


def test_round_trip_keeps_metadata_and_signatures(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    assert "min_runtime_version" in model.metadata
    model.metadata["bnnconvert"] = b'{"version": 1}'
    again = ir.read(ir.write(model))
    assert again.metadata == model.metadata
    assert again.signature_defs == model.signature_defs
    assert [s.key for s in again.signature_defs] == ["serving_default"]


def test_changed_constant_changes_output_as_expected(tiny_bnn_tflite, images):
    """Scale the dense layer's weights and bias by 0: every logit is 0, softmax is uniform."""
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    (fc,) = [op for op in graph.operators if op.opcode == "FULLY_CONNECTED"]
    weights = ir.tensor_array(model, graph, fc.inputs[1])
    assert weights.shape == (10, 96) and weights.dtype == np.float32
    ir.set_tensor_array(model, graph, fc.inputs[1], np.zeros_like(weights))
    out = predict(ir.write(model), images)
    np.testing.assert_allclose(out, np.full((3, 10), 0.1), rtol=1e-6)
    assert not np.allclose(predict(tiny_bnn_tflite, images), 0.1)


def test_flipping_bconv_filter_signs_is_seen_by_the_interpreter(tiny_bnn_tflite, images):
    """Negating every binary weight of the last bconv = its output negated (before bias)."""
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    bconv = [op for op in graph.operators if op.opcode == "LceBconv2d"][-1]
    packed = ir.tensor_array(model, graph, bconv.inputs[1])
    signs = ir.unpack_bits(packed, bconv.options["channels_in"])
    ir.set_tensor_array(model, graph, bconv.inputs[1], ir.pack_bits(-signs))
    changed = predict(ir.write(model), images)
    assert not np.allclose(changed, predict(tiny_bnn_tflite, images))
    ir.set_tensor_array(model, graph, bconv.inputs[1], ir.pack_bits(signs))
    np.testing.assert_array_equal(
        predict(ir.write(model), images), predict(tiny_bnn_tflite, images)
    )
