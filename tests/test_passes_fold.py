"""fold_sign_scale: the threshold maths, graphs it rewrites, graphs it must leave alone.

Parity is bit-exact: every bitpacked tensor (after undoing the folded flips),
every binary-conv output and the model output must be identical to LCE's own
graph, in all three LCE kernels and in the reference executor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import make_tiny_bnn, randomize_batchnorm
from passes_helpers import (
    KERNELS,
    assert_fold_exact,
    convert,
    opcodes_before_quantizers,
    pre_sign_muls,
    predict,
)

from bnnconvert import _tf, ir, models, reference
from bnnconvert.passes import OptimizeOptions, fold_sign_scale, optimize
from bnnconvert.passes.fold_sign_scale import _Step, thresholds

FOLD_ONLY = OptimizeOptions(cleanup=False)
BUNDLED = Path(__file__).resolve().parents[1] / "models" / "digits"


def _stock_bits(steps: list[_Step], x: np.ndarray) -> np.ndarray:
    return fold_sign_scale._evaluate(steps, x) < 0


def _folded_bits(steps: list[_Step], x: np.ndarray) -> np.ndarray:
    c, flip = thresholds(steps)
    with np.errstate(invalid="ignore"):
        return ((x + c) < 0) ^ flip


def _probe(c: np.ndarray) -> np.ndarray:
    """Inputs per channel: wide random values, exact zeros, and ±4 ulps around -c."""
    rng = np.random.default_rng(1)
    n = c.size
    wide = rng.normal(size=(200, n)) * 10.0 ** rng.integers(-30, 30, size=(200, n))
    finite = np.where(np.isfinite(c), -c, 0).astype(np.float32)
    near = [finite]
    for direction in (np.inf, -np.inf):
        v = finite
        for _ in range(4):
            v = np.nextafter(v, np.float32(direction))
            near.append(v)
    extremes = np.array([[0.0] * n, [-0.0] * n, [1e-30] * n, [-1e-30] * n])
    x = np.concatenate([wide, np.stack(near), extremes]).astype(np.float32)
    # Subnormal inputs are out of scope (stock float32 underflows a*x there).
    return np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x).astype(np.float32)


@pytest.mark.parametrize("seed", range(4), ids=lambda seed: f"seed{seed}")
def test_thresholds_reproduce_the_stock_chain_exactly(seed):
    rng = np.random.default_rng(seed)
    n = 64
    a = (rng.normal(size=n) * 10.0 ** rng.integers(-3, 3, size=n)).astype(np.float32)
    a[:4] = 0.0  # constant channels
    b = rng.normal(size=n).astype(np.float32)
    b[4:12] = 0.0  # ties at x == 0
    steps = [_Step(0, "mul", a, None), _Step(1, "add", b, None)]
    c, _ = thresholds(steps)
    x = _probe(c)
    np.testing.assert_array_equal(_folded_bits(steps, x), _stock_bits(steps, x))


@pytest.mark.parametrize(
    "kinds",
    [("sub", "mul"), ("rsub",), ("mul",), ("add", "mul", "add"), ("mul_relu", "add")],
    ids="-then-".join,
)
def test_thresholds_cover_sub_reversed_sub_and_clamps(kinds):
    rng = np.random.default_rng(7)
    n = 32
    steps = []
    for i, kind in enumerate(kinds):
        clamp = (0.0, np.inf) if kind.endswith("_relu") else None
        k = rng.normal(size=n).astype(np.float32)
        steps.append(_Step(i, kind.removesuffix("_relu"), k, clamp))
    c, _ = thresholds(steps)
    x = _probe(c)
    np.testing.assert_array_equal(_folded_bits(steps, x), _stock_bits(steps, x))


def test_exact_ties_give_larq_plus_one():
    # a*x + b == 0 exactly at x = 1.5; and b == 0 at x == 0, for both signs of a.
    a = np.array([2.0, -2.0, 3.0, -3.0], dtype=np.float32)
    b = np.array([-3.0, 3.0, 0.0, 0.0], dtype=np.float32)
    steps = [_Step(0, "mul", a, None), _Step(1, "add", b, None)]
    x = np.array([[1.5, 1.5, 0.0, 0.0]], dtype=np.float32)
    assert not _stock_bits(steps, x).any()  # sign(0) = +1, as larq
    assert not _folded_bits(steps, x).any()


@pytest.fixture(scope="module")
def tiny_stock() -> bytes:
    return convert(make_tiny_bnn(seed=3))


@pytest.mark.parametrize("kernel", KERNELS)
def test_folds_tiny_bnn_with_negative_gammas_bit_exactly(tiny_stock, kernel):
    folded, stats = optimize(tiny_stock, FOLD_ONLY)
    assert opcodes_before_quantizers(tiny_stock) == ["ADD", "ADD"]
    assert opcodes_before_quantizers(folded) == ["ADD", "ADD"]
    mul_count = [
        [op.opcode for op in ir.read(fb).subgraphs[0].operators].count("MUL")
        for fb in (tiny_stock, folded)
    ]
    assert mul_count[1] == mul_count[0] - 2
    assert stats[0].rewrites == 2 and stats[0].ops_removed == 4 and stats[0].ops_added == 2
    assert stats[0].details["channels_flipped"] > 0  # some gammas are negative
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
    assert assert_fold_exact(tiny_stock, folded, x, **KERNELS[kernel]) == 2


def test_tiny_bnn_fold_agrees_in_the_reference_executor(tiny_stock):
    folded, _ = optimize(tiny_stock)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    stock_model, folded_model = ir.read(tiny_stock), ir.read(folded)
    ours = reference.run(folded_model, [x])[folded_model.subgraphs[0].outputs[0]]
    theirs = reference.run(stock_model, [x])[stock_model.subgraphs[0].outputs[0]]
    np.testing.assert_array_equal(ours, theirs)


def _bn_sign_conv(pad_values: float = 0.0, share_bn_output: bool = False, two_convs=False):
    """concat(input, conv) -> BN -> binary conv(s); optionally BN output also concatenated.

    The BN follows a concatenation, as in BinaryDenseNet, so the converter cannot
    fold it into the float conv and leaves it as MUL + ADD.
    """
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(5)
    inp = keras.Input((12, 12, 8))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.Concatenate()([inp, x])
    y = keras.layers.BatchNormalization()(x)
    kwargs = dict(padding="same", pad_values=pad_values, input_quantizer="ste_sign",
                  kernel_quantizer="ste_sign", use_bias=False)  # fmt: skip
    outs = [lq.layers.QuantConv2D(32, 3, **kwargs)(y)]
    if two_convs:
        outs.append(lq.layers.QuantConv2D(32, 3, strides=2, **kwargs)(y))
        outs[1] = keras.layers.UpSampling2D()(outs[1])
    if share_bn_output:
        outs.append(y)
    out = keras.layers.Concatenate()(outs) if len(outs) > 1 else outs[0]
    model = keras.Model(inp, out)
    randomize_batchnorm(model, seed=5)
    return model


def _set_gamma(model, gamma_fn) -> None:
    keras = _tf.keras()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma_fn(gamma), beta, mean, var])


def _x(shape=(2, 12, 12, 8), seed=2) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_leaves_bn_alone_when_its_output_is_also_concatenated():
    stock = convert(_bn_sign_conv(share_bn_output=True))
    folded, stats = optimize(stock, FOLD_ONLY)
    assert stats[0].rewrites == 0
    assert stats[0].skipped["an intermediate is used elsewhere"] == 1
    assert opcodes_before_quantizers(folded) == opcodes_before_quantizers(stock)
    np.testing.assert_array_equal(predict(folded, _x()), predict(stock, _x()))


def test_quantized_tensor_feeding_two_binary_convs_flips_both():
    model = _bn_sign_conv(two_convs=True)
    _set_gamma(model, lambda g: -np.abs(g))  # every channel flips
    stock = convert(model)
    folded, stats = optimize(stock, FOLD_ONLY)
    graph = ir.read(folded).subgraphs[0]
    quantizers = [op for op in graph.operators if op.opcode == "LceQuantize"]
    assert stats[0].details["channels_flipped"] == 40 * len(quantizers)
    assert stats[0].details["bconv_filters_rewritten"] == 2
    for kernel in KERNELS.values():
        assert_fold_exact(stock, folded, _x(), **kernel)


def test_pad_values_one_with_negative_scale_is_left_alone():
    stock = convert(_bn_sign_conv(pad_values=1.0))
    folded, stats = optimize(stock, FOLD_ONLY)
    assert stats[0].rewrites == 0
    assert stats[0].skipped["binary conv pads with +1 (pad_values=1)"] == 1
    np.testing.assert_array_equal(predict(folded, _x()), predict(stock, _x()))


def test_flipping_into_pad_values_one_would_break_the_borders(monkeypatch):
    """Why the guard exists: with +1 padding a flipped channel changes border outputs only."""
    stock = convert(_bn_sign_conv(pad_values=1.0))
    monkeypatch.setattr(fold_sign_scale, "_flip_problem", lambda *args: None)
    forced, stats = optimize(stock, FOLD_ONLY)
    assert stats[0].details["channels_flipped"] > 0
    ours, theirs = predict(forced, _x()), predict(stock, _x())
    differs = np.any(ours != theirs, axis=(0, 3))
    assert differs[0].any() or differs[-1].any() or differs[:, 0].any() or differs[:, -1].any()
    assert not differs[1:-1, 1:-1].any()  # the interior is exact


def test_pad_values_one_with_positive_scale_folds_exactly():
    model = _bn_sign_conv(pad_values=1.0)
    _set_gamma(model, np.abs)
    stock = convert(model)
    folded, stats = optimize(stock, FOLD_ONLY)
    assert stats[0].rewrites == 1 and stats[0].details["channels_flipped"] == 0
    for kernel in KERNELS.values():
        assert_fold_exact(stock, folded, _x(), **kernel)


def test_zero_scale_channels_fold_to_constant_signs():
    model = _bn_sign_conv()
    _set_gamma(model, lambda g: np.where(np.arange(g.size) % 5 == 0, 0.0, g).astype(g.dtype))
    stock = convert(model)
    folded, stats = optimize(stock, FOLD_ONLY)
    assert stats[0].rewrites == 1
    for kernel in KERNELS.values():
        assert_fold_exact(stock, folded, _x(), **kernel)


def test_bundled_model_folds_every_pre_sign_mul_bit_exactly():
    from bnnconvert import checkpoint

    loaded = checkpoint.load(BUNDLED)
    stock = convert(loaded.model)
    folded, stats = optimize(stock)
    assert pre_sign_muls(stock) == 9
    assert pre_sign_muls(folded) == 0
    assert stats[0].rewrites == 9
    x = np.load(loaded.test_data)["x"]
    assert_fold_exact(stock, folded, x[:40], **KERNELS["indirect"])
    # All 360 held-out digits: identical outputs.
    np.testing.assert_array_equal(
        predict(folded, x, **KERNELS["indirect"]), predict(stock, x, **KERNELS["indirect"])
    )


@pytest.mark.parametrize(
    "variant",
    ["28", pytest.param("37", marks=pytest.mark.slow), pytest.param("45", marks=pytest.mark.slow)],
)
def test_binary_densenet_with_random_bn_statistics_folds_bit_exactly(variant):
    model = models.binary_densenet(
        "binarydensenet" + variant, input_shape=(32, 32, 3), num_classes=10
    )
    randomize_batchnorm(model, seed=11)
    stock = convert(model)
    folded, stats = optimize(stock)
    assert pre_sign_muls(stock) > 0
    assert pre_sign_muls(folded) == 0
    assert stats[0].details["channels_flipped"] > 0
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert_fold_exact(stock, folded, x, **KERNELS["indirect"])
    assert_fold_exact(stock, folded, x[:1], **KERNELS["reference"])
