"""A corpus of small BNN shapes people build, each converted by the real LCE converter.

Every case states what the audit must say (which layers became binary, which
finding and fix the others get) and its multiply-accumulates counted by hand
from the layer shapes (formulas in :mod:`bnnconvert.macs`), and the converted
model must compute what Keras computes (LCE's interpreter, a few inputs).
Each model is converted the way ``export`` does it: the QuantDense rewrite,
LCE, the default exact passes, the rewrite record. Batch norms get realistic
statistics (:func:`bnnconvert.models.randomize_batchnorm`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from mapping_checks import check_groups_in_isolation

from bnnconvert import _tf, convert, ir, passes, rewrites
from bnnconvert.audit import AuditResult, audit
from bnnconvert.models import randomize_batchnorm


def _q(filters: int, kernel: int | tuple[int, int] = 3, name: str = "", **overrides) -> Any:
    """A binary QuantConv2D (sign input and kernel, weight clip, no bias, SAME)."""
    options = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
        "padding": "same",
        "name": name or None,
    }
    options.update(overrides)
    return _tf.larq().layers.QuantConv2D(filters, kernel, **options)


def _bn(name: str) -> Any:
    return _tf.keras().layers.BatchNormalization(name=name)


def _head(x: Any, classes: int = 10) -> Any:
    keras = _tf.keras()
    return keras.layers.Dense(classes, name="head")(
        keras.layers.GlobalAveragePooling2D(name="gap")(x)
    )


def _stem(x: Any, filters: int = 32) -> Any:
    conv = _tf.keras().layers.Conv2D(filters, 3, padding="same", use_bias=False, name="stem")
    return _bn("bn0")(conv(x))


# --- the models -------------------------------------------------------------------------


def plain_bnn(x):
    y = _q(32, name="q1", pad_values=1.0)(_stem(x))
    y = _tf.keras().layers.MaxPool2D(2, name="pool")(_bn("bn1")(y))
    y = _q(32, name="q2")(y)  # pad_values=0: an info note
    return _head(_bn("bn2")(y))


def bireal(x):
    x = _stem(x)
    for k in (1, 2):
        y = _bn(f"bn{k}")(_q(32, name=f"q{k}", pad_values=1.0)(x))
        x = _tf.keras().layers.Add(name=f"shortcut{k}")([x, y])
    return _head(x)


def quicknet(x):
    y = _bn("bn1")(_q(64, name="q1", pad_values=1.0)(_stem(x)))  # bitpacked output for q2
    y = _bn("bn2")(_q(64, name="q2", pad_values=1.0)(y))
    return _head(y)


def xnor(x):
    y = _q(32, name="q1", kernel_quantizer="magnitude_aware_sign")(_bn("bn0")(x))
    return _head(_bn("bn1")(y))


def dorefa(x):
    quantizer = _tf.larq().quantizers.DoReFa(k_bit=2, mode="activations")
    y = _q(32, name="q1", pad_values=1.0, input_quantizer=quantizer)(_bn("bn0")(x))
    return _head(_bn("bn1")(y))


def grouped(x):
    y = _bn("bn1")(_q(32, name="g32", groups=2, pad_values=1.0)(_bn("bn0")(x)))  # 64 in: 32/group
    y = _q(32, name="g16", groups=2, pad_values=1.0)(y)  # 32 in: 16 per group
    return _head(_bn("bn2")(y))


def depthwise(x):
    lq = _tf.larq()
    y = lq.layers.QuantDepthwiseConv2D(
        3, padding="same", input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
        depthwise_constraint="weight_clip", use_bias=False, name="dw",
    )(_bn("bn0")(x))  # fmt: skip
    y = _q(32, name="q1", pad_values=1.0)(_bn("bn1")(y))
    return _head(_bn("bn2")(y))


def dilated_dense_block(x):
    keras = _tf.keras()
    for k in (1, 2):
        y = _q(32, name=f"q{k}", dilation_rate=2, pad_values=1.0)(_bn(f"bn{k}")(x))
        x = keras.layers.Concatenate(name=f"concat{k}")([x, y])
    return _head(x)


def strided(x):
    y = _q(32, name="same2", strides=2, pad_values=1.0)(_bn("bn0")(x))  # 16 -> 8
    y = _q(32, name="valid2", strides=2, padding="valid")(_bn("bn1")(y))  # 8 -> 3
    return _head(_bn("bn2")(y))


def conv1d(x):
    keras, lq = _tf.keras(), _tf.larq()
    y = lq.layers.QuantConv1D(
        32, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip", use_bias=False, name="c1",
    )(_bn("bn0")(x))  # fmt: skip
    y = keras.layers.GlobalAveragePooling1D(name="gap")(_bn("bn1")(y))
    return keras.layers.Dense(10, name="head")(y)


def transposed_decoder(x):
    lq = _tf.larq()
    y = _bn("bn1")(_q(32, name="q1", pad_values=1.0)(_bn("bn0")(x)))
    return lq.layers.QuantConv2DTranspose(
        16, 3, strides=2, padding="same", input_quantizer="ste_sign",
        kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False,
        name="up",
    )(y)  # fmt: skip


def dense_heads(x):
    keras, lq = _tf.keras(), _tf.larq()
    y = _bn("bn1")(_q(32, name="q1", pad_values=1.0)(_bn("bn0")(x)))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Reshape((1, 1, 32), name="to_map")(y)
    y = _bn("bn2")(_q(64, 1, name="head_conv")(y))
    y = keras.layers.Flatten(name="flat")(y)
    return lq.layers.QuantDense(
        10, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip", name="head_dense",
    )(y)  # fmt: skip


def two_outputs(x):
    b1 = _q(32, name="b1")(_stem(x))
    features = _bn("features")(b1)
    y = _bn("bn2")(_q(32, name="b2")(features))
    logits = _tf.keras().layers.Dense(10, name="logits")(
        _tf.keras().layers.GlobalAveragePooling2D(name="gap")(y)
    )
    return [features, logits]


def dynamic_input(x):
    return _head(_bn("bn1")(_q(32, name="q1", pad_values=1.0)(_stem(x))))


# --- the expectations -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A model shape and what bnnconvert must say about it.

    ``errors``: layer -> (finding code, text its fix contains); ``infos``:
    (layer, code) pairs that must be among the info findings. MACs by hand.
    """

    body: Callable[[Any], Any]
    input_shape: tuple[int | None, ...]
    binary: set[str]
    binary_macs: int
    float_macs: int
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    infos: set[tuple[str, str]] = field(default_factory=set)
    convert_shape: tuple[int, ...] | None = None  # for a dynamic input
    rewrite: bool = True


DENSE_10_FROM_32 = 32 * 10  # head Dense(10) after a 32-channel global pool
STEM_8 = 8 * 8 * 32 * 9 * 3  # Conv2D(32, 3) on an 8x8x3 input
BCONV_8_32_32 = 8 * 8 * 32 * 9 * 32  # 3x3, 32 -> 32 channels on 8x8

CASES = {
    "plain_bnn": Case(
        plain_bnn, (16, 16, 3), {"q1", "q2"},
        binary_macs=16 * 16 * 32 * 9 * 32 + BCONV_8_32_32,
        float_macs=16 * 16 * 32 * 9 * 3 + DENSE_10_FROM_32,
        infos={("q2", "pad-values-zero")},
    ),
    "bireal_real_shortcuts": Case(
        bireal, (8, 8, 3), {"q1", "q2"},
        binary_macs=2 * BCONV_8_32_32, float_macs=STEM_8 + DENSE_10_FROM_32,
    ),
    "quicknet_bitpacked_chain": Case(
        quicknet, (8, 8, 3), {"q1", "q2"},
        binary_macs=8 * 8 * 64 * 9 * 32 + 8 * 8 * 64 * 9 * 64,
        float_macs=STEM_8 + 64 * 10,
    ),
    "xnor_magnitude_aware_sign": Case(
        xnor, (8, 8, 32), {"q1"}, binary_macs=BCONV_8_32_32, float_macs=DENSE_10_FROM_32,
        # folded into a threshold by the default passes (pad_values=0: channels may flip)
        infos={("bn0", "bn-before-sign"), ("q1", "pad-values-zero")},
    ),
    "dorefa_activations": Case(
        dorefa, (8, 8, 32), set(),
        binary_macs=0, float_macs=BCONV_8_32_32 + DENSE_10_FROM_32,
        errors={"q1": ("unsupported-input-quantizer", "ste_sign")},
    ),
    "grouped_32_and_16_per_group": Case(
        grouped, (8, 8, 64), {"g32"},
        binary_macs=8 * 8 * 32 * 9 * 32,  # Cin per group 32
        float_macs=8 * 8 * 32 * 9 * 16 + DENSE_10_FROM_32,  # Cin per group 16
        errors={"g16": ("grouped-channels", "groups=1")},
    ),
    "depthwise": Case(
        depthwise, (8, 8, 32), {"q1"},
        binary_macs=BCONV_8_32_32, float_macs=8 * 8 * 32 * 9 + DENSE_10_FROM_32,
        errors={"dw": ("no-binary-op", "grouped")},
    ),
    "dilated_dense_block": Case(
        dilated_dense_block, (8, 8, 32), {"q1", "q2"},
        binary_macs=BCONV_8_32_32 + 8 * 8 * 32 * 9 * 64, float_macs=96 * 10,
    ),
    "strided_same_valid": Case(
        strided, (16, 16, 32), {"same2", "valid2"},
        binary_macs=BCONV_8_32_32 + 3 * 3 * 32 * 9 * 32, float_macs=DENSE_10_FROM_32,
    ),
    "binary_conv1d": Case(
        conv1d, (16, 32), set(),
        binary_macs=0, float_macs=16 * 32 * 3 * 32 + DENSE_10_FROM_32,
        errors={"c1": ("no-binary-op", "kernel_size (1, k)")},
    ),
    "transposed_conv_decoder": Case(
        transposed_decoder, (8, 8, 32), {"q1"},
        binary_macs=BCONV_8_32_32, float_macs=8 * 8 * 32 * 9 * 16,  # IH*IW*Cin*kh*kw*Cout
        errors={"up": ("no-binary-op", "QuantConv2D")},
    ),
    "binary_dense_heads": Case(
        dense_heads, (8, 8, 32), {"q1", "head_conv", "head_dense"},
        binary_macs=BCONV_8_32_32 + 32 * 64 + 64 * 10, float_macs=0,
        infos={("head_dense", "rewritten-as-1x1-conv")},
    ),
    "binary_dense_heads_no_rewrite": Case(
        dense_heads, (8, 8, 32), {"q1", "head_conv"},
        binary_macs=BCONV_8_32_32 + 32 * 64, float_macs=64 * 10,
        errors={"head_dense": ("quant-dense", "1x1 QuantConv2D")}, rewrite=False,
    ),
    "two_outputs": Case(
        two_outputs, (8, 8, 3), {"b1", "b2"},
        binary_macs=2 * BCONV_8_32_32, float_macs=STEM_8 + DENSE_10_FROM_32,
    ),
    "dynamic_input_shape": Case(
        dynamic_input, (None, None, 3), {"q1"},
        binary_macs=BCONV_8_32_32, float_macs=STEM_8 + DENSE_10_FROM_32, convert_shape=(8, 8, 3),
    ),
}  # fmt: skip


@dataclass
class Converted:
    keras_model: Any  # at the converted shape, as the user wrote it (no rewrite)
    flatbuffer: bytes
    audit: AuditResult


@functools.cache
def _converted(name: str) -> Converted:
    """``CASES[name]`` built, converted and audited as ``export`` does (once per session)."""
    case = CASES[name]
    keras = _tf.keras()
    keras.utils.set_random_seed(sorted(CASES).index(name))
    inp = keras.Input(case.input_shape, name="x")
    model = keras.Model(inp, case.body(inp), name=name)
    randomize_batchnorm(model, seed=len(name))
    model = convert.with_input_shape(model, case.convert_shape)
    to_convert, done = rewrites.rewrite_for_lce(model) if case.rewrite else (model, [])
    with _tf.quiet_native():  # LCE prints its grouped-conv complaint on fd 2
        flatbuffer = _tf.lce().convert_keras_model(to_convert)
    flatbuffer, _ = passes.optimize(flatbuffer)
    flatbuffer = rewrites.record(flatbuffer, done)
    return Converted(model, flatbuffer, audit(model, flatbuffer))


@pytest.mark.parametrize("name", CASES)
def test_audit_names_what_became_binary_and_why_not(name) -> None:
    case, result = CASES[name], _converted(name).audit
    assert {q.name for q in result.quantized if q.binary} == case.binary
    errors = {d.layer: d for d in result.diagnostics if d.severity == "error"}
    assert {layer: d.code for layer, d in errors.items()} == {
        layer: code for layer, (code, _) in case.errors.items()
    }
    for layer, (_, fix) in case.errors.items():
        assert fix in errors[layer].fix
    infos = {(d.layer, d.code) for d in result.diagnostics if d.severity == "info"}
    assert case.infos <= infos
    assert not result.unmapped_ops


@pytest.mark.parametrize("name", CASES)
def test_macs_match_the_count_by_hand(name) -> None:
    case, result = CASES[name], _converted(name).audit
    assert (result.binary_macs, result.float_macs) == (case.binary_macs, case.float_macs)


@pytest.mark.parametrize("name", CASES)
def test_converted_model_computes_what_keras_computes(name) -> None:
    converted = _converted(name)
    model = converted.keras_model
    x = np.random.default_rng(7).uniform(-1, 1, (3, *model.input_shape[1:])).astype(np.float32)
    expected = model.predict(x, verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    interpreter = _tf.lce_interpreter(converted.flatbuffer, use_indirect_bgemm=True)
    graph = ir.read(converted.flatbuffer).subgraphs[0]
    names = [graph.tensors[t].name for t in graph.outputs]
    runs = [interpreter.predict(x[i : i + 1]) for i in range(len(x))]
    runs = [r if isinstance(r, list) else [r] for r in runs]
    for keras_out in expected:
        # match outputs by shape (the two-output case: TFLite reverses them)
        [position] = [
            p
            for p, t in enumerate(graph.outputs)
            if graph.tensors[t].shape[1:] == list(keras_out.shape[1:])
        ]
        ours = np.concatenate([np.asarray(r[position]) for r in runs])
        scale = float(np.abs(keras_out).max())
        np.testing.assert_allclose(
            ours, keras_out, rtol=0, atol=1e-4 + 1e-3 * scale, err_msg=names[position]
        )


@pytest.mark.parametrize("name", CASES)
def test_every_layer_group_alone_gives_the_keras_output(name) -> None:
    """The mapping that validate localizes with: each group run on Keras's own inputs."""
    converted = _converted(name)
    assert check_groups_in_isolation(converted.keras_model, converted.flatbuffer) >= 3


def test_two_outputs_audit_maps_logits_to_its_fully_connected() -> None:
    layers = {m.name: m for m in _converted("two_outputs").audit.layers}
    assert layers["logits"].op_types == ["FULLY_CONNECTED"]
    assert "FULLY_CONNECTED" not in layers["b2"].op_types + layers["features"].op_types


def test_batch_norm_before_a_sign_is_described_as_the_folded_threshold() -> None:
    outcomes = _converted("xnor_magnitude_aware_sign").audit.batch_norms
    [bn0] = [b for b in outcomes if b.name == "bn0"]
    assert bn0.outcome == "folded-into-threshold"
    assert bn0.detail.startswith("folded by fold_sign_scale into a per-channel threshold ADD")


def test_quicknet_batch_norm_becomes_the_bitpacked_output_threshold() -> None:
    outcome = {b.name: b for b in _converted("quicknet_bitpacked_chain").audit.batch_norms}
    assert outcome["bn1"].outcome == "fused-into-bconv"
    assert "output_threshold (bitpacked output)" in outcome["bn1"].detail
