"""float_weights (fp16, int8 weight-only) and int8_activations (full int8 float layers).

Accuracy bars (issue 6): fp16 keeps top-1 agreement with the float model at
100 % on the bundled test split; int8 weight-only and full int8 keep test
accuracy within 1 point of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from passes_helpers import KERNELS, convert, predict

from bnnconvert import checkpoint, ir
from bnnconvert.errors import UsageProblem
from bnnconvert.passes import OptimizeOptions, int8_activations, int8_float_layers, optimize
from bnnconvert.passes.float_weights import quantize_symmetric, to_fp16, to_int8

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "digits"


@pytest.fixture(scope="module")
def bundled():
    loaded = checkpoint.load(BUNDLED)
    data = np.load(loaded.test_data)
    return loaded, convert(loaded.model), data["x"], data["y"]


def _ops(fb: bytes) -> list[str]:
    return [op.opcode for op in ir.read(fb).subgraphs[0].operators]


def test_fp16_puts_float_weights_behind_dequantize(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    filters = {t: graph.tensors[t].buffer for op in graph.operators
               if op.opcode == "LceBconv2d" for t in op.inputs[1:2]}  # fmt: skip
    stats = to_fp16(model)
    # stem conv weights, dense weights and bias (the stem has no bias)
    assert stats.rewrites == 3 and stats.ops_added == 3
    dequantize = [op for op in graph.operators if op.opcode == "DEQUANTIZE"]
    assert len(dequantize) == 3
    assert all(graph.tensors[op.inputs[0]].dtype == "float16" for op in dequantize)
    assert all(graph.tensors[op.outputs[0]].buffer == 0 for op in dequantize)
    assert {t: graph.tensors[t].buffer for t in filters} == filters  # binary filters untouched


def test_int8_weights_are_per_channel_for_conv_and_per_tensor_for_dense(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    stats = to_int8(model)
    assert stats.rewrites == 2
    for op in graph.operators:
        if op.opcode in ("CONV_2D", "FULLY_CONNECTED"):
            w = graph.tensors[op.inputs[1]]
            assert w.dtype == "int8"
            expected = w.shape[0] if op.opcode == "CONV_2D" else 1
            assert len(w.quantization.scale) == expected
            assert set(w.quantization.zero_point) == {0}


def test_quantize_symmetric_round_trips_within_half_a_step():
    w = np.random.default_rng(0).normal(size=(8, 3, 3, 5)).astype(np.float32)
    w[3] = 0.0  # an all-zero channel gets scale 1, not a division by zero
    q, scale = quantize_symmetric(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    err = np.abs(q * scale[:, None, None, None] - w)
    assert np.all(err <= scale[:, None, None, None] / 2 + 1e-7)
    assert scale[3] == 1.0


def test_float_weight_passes_leave_a_graph_without_float_layers_alone(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    graph.operators = [op for op in graph.operators if op.opcode not in ("CONV_2D",
                       "FULLY_CONNECTED")]  # fmt: skip
    assert to_fp16(model).rewrites == 0
    assert to_int8(model).rewrites == 0


def test_fp16_keeps_top1_agreement_100_percent_on_the_bundled_split(bundled):
    _, stock, x, _ = bundled
    fp16, stats = optimize(stock, OptimizeOptions(float_weights="fp16"))
    assert len(fp16) <= 0.7 * len(stock)
    assert _ops(fp16).count("DEQUANTIZE") == stats[1].rewrites > 0
    for kernel in ("indirect", "default"):
        ours = predict(fp16, x, **KERNELS[kernel]).argmax(-1)
        theirs = predict(stock, x, **KERNELS[kernel]).argmax(-1)
        np.testing.assert_array_equal(ours, theirs)


def test_int8_weights_keep_accuracy_within_one_point(bundled):
    _, stock, x, y = bundled
    int8, _ = optimize(stock, OptimizeOptions(float_weights="int8"))
    assert len(int8) <= 0.6 * len(stock)
    float_acc = (predict(stock, x, **KERNELS["indirect"]).argmax(-1) == y).mean()
    for kernel in ("indirect", "default"):  # hybrid CONV_2D / FULLY_CONNECTED kernels run
        acc = (predict(int8, x, **KERNELS[kernel]).argmax(-1) == y).mean()
        assert acc >= float_acc - 0.01, (kernel, acc, float_acc)


def test_full_int8_float_layers_keep_accuracy_within_one_point(bundled):
    loaded, stock, x, y = bundled
    rebuilt, stats = int8_float_layers(
        loaded.model, OptimizeOptions(int8_activations=True), loaded.test_data
    )
    assert stats.rewrites == 4  # stem, two transitions, classifier
    full, _ = optimize(convert(rebuilt))
    model = ir.read(full)
    graph = model.subgraphs[0]
    for op in graph.operators:
        if op.opcode in ("CONV_2D", "FULLY_CONNECTED"):
            assert graph.tensors[op.inputs[0]].dtype == "int8"
            assert graph.tensors[op.inputs[1]].dtype == "int8"
    assert len(full) <= 0.65 * len(stock)
    float_acc = (predict(stock, x, **KERNELS["indirect"]).argmax(-1) == y).mean()
    acc = (predict(full, x, **KERNELS["indirect"]).argmax(-1) == y).mean()
    assert acc >= float_acc - 0.01, (acc, float_acc)


def test_calibration_data_is_checked(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, images=np.zeros((2, 32, 32, 1)))
    with pytest.raises(UsageProblem, match="array named 'x'"):
        int8_activations.load_calibration(path, (32, 32, 1))
    np.savez(path, x=np.zeros((2, 28, 28, 1)))
    with pytest.raises(UsageProblem, match=r"shape \(N, 32, 32, 1\), got \(2, 28, 28, 1\)"):
        int8_activations.load_calibration(path, (32, 32, 1))
    with pytest.raises(UsageProblem, match="Cannot read calibration data"):
        int8_activations.load_calibration(tmp_path / "missing.npz", (32, 32, 1))


def test_option_combinations_are_checked():
    with pytest.raises(UsageProblem, match="float_weights= to be one of fp32, fp16, int8"):
        OptimizeOptions(float_weights="bf16")
    with pytest.raises(UsageProblem, match="calibration= only together"):
        OptimizeOptions(calibration=Path("x.npz"))
    with pytest.raises(UsageProblem, match="--no-optimize alone"):
        OptimizeOptions(float_weights="fp16").with_raw_output()
    raw = OptimizeOptions().with_raw_output()
    assert raw.passes() == []
