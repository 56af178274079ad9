"""The numpy reference executor against LCE's interpreter, tensor by tensor.

Every test cuts the converted graph so that every op output is a model
output (``reference.with_outputs``), runs it in the LCE interpreter and
compares each tensor with ``reference.run``: integer tensors (bitpacked
words, int8) bit for bit, float tensors to a relative tolerance of 1e-5 of
the tensor's scale (float32 rounding; LCE's optimised kernels add the
zero-padding correction after the multiplier, the reference before).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BUNDLED, randomize_batchnorm, slow_after_first

from bnnconvert import _tf, ir, models, reference
from bnnconvert.errors import FlatbufferProblem

KERNELS = {
    "reference": {"use_reference_bconv": True},
    "indirect": {"use_indirect_bgemm": True},
    "default": {},
}


def interpreter_tensors(model: ir.Model, x: np.ndarray, **kernel) -> dict[int, np.ndarray]:
    """Every op output of ``model`` as the LCE interpreter computes it, one sample at a time."""
    graph = model.subgraphs[0]
    wanted = [t for op in graph.operators for t in op.outputs]
    interpreter = _tf.lce_interpreter(ir.write(reference.with_outputs(model, wanted)), **kernel)
    outputs = interpreter.predict(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return dict(zip(wanted, outputs, strict=True))


def assert_agree(model: ir.Model, x: np.ndarray, **kernel) -> int:
    """Compare every op output; return how many integer tensors matched exactly."""
    graph = model.subgraphs[0]
    ours = reference.run(model, [x])
    theirs = interpreter_tensors(model, x, **kernel)
    exact = 0
    problems = []
    for index, expected in theirs.items():
        tensor = graph.tensors[index]
        got = ours[index]
        assert got.shape == expected.shape, tensor.name
        assert got.dtype == expected.dtype, tensor.name
        if got.dtype.kind in "iub":
            if not np.array_equal(got, expected):
                problems.append(f"{tensor.name}: {np.mean(got != expected):.3%} differ")
            exact += 1
        else:
            scale = max(float(np.abs(expected).max()), 1e-6)
            err = float(np.abs(got - expected).max()) / scale
            if err > 1e-5:
                problems.append(f"{tensor.name}: max error {err:.2e} of scale {scale:.3g}")
    assert not problems, "\n".join(problems)
    return exact


def binary_conv_model(case: dict, seed: int):
    """One or two binary convs with the options in ``case`` (see ``SWEEP``)."""
    keras = _tf.keras()
    lq = _tf.larq()
    keras.utils.set_random_seed(seed)
    inp = keras.Input((case["h"], case["w"], case["cin"]))
    conv = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
    }
    x = lq.layers.QuantConv2D(
        case["cout"],
        case["k"],
        strides=case["stride"],
        dilation_rate=case["dilation"],
        padding=case["padding"],
        pad_values=float(case["pad_values"]),
        groups=case.get("groups", 1),
        **conv,
    )(inp)
    after = case["after"]
    if after.startswith("bn"):
        x = keras.layers.BatchNormalization()(x)
    if after in ("relu", "bn_relu"):
        x = keras.layers.ReLU()(x)
    if after == "bn_maxpool_bconv":
        x = keras.layers.MaxPool2D(2, padding="same")(x)
    if after in ("bn_bconv", "bn_maxpool_bconv"):
        x = lq.layers.QuantConv2D(40, 3, padding="same", pad_values=1.0, **conv)(x)
        x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inp, x)
    randomize_batchnorm(model, seed)
    return model


# Seeded sweep over LceBconv2d's options; each entry names what it covers.
SWEEP = [
    dict(h=9, w=7, cin=13, cout=8, k=3, stride=1, dilation=1, padding="same", pad_values=0,
         after="bn"),  # zero-padding correction, channels not a multiple of 32
    dict(h=8, w=11, cin=40, cout=33, k=3, stride=2, dilation=1, padding="same", pad_values=1,
         after="bn_relu"),  # stride 2, one-padding, BN + ReLU after
    dict(h=12, w=10, cin=70, cout=64, k=3, stride=1, dilation=2, padding="same", pad_values=0,
         after="none"),  # dilation with zero padding
    dict(h=10, w=10, cin=35, cout=16, k=5, stride=2, dilation=1, padding="valid", pad_values=0,
         after="relu"),  # VALID, 5x5, fused ReLU (multiplier 1, bias 0)
    dict(h=7, w=9, cin=64, cout=48, k=3, stride=1, dilation=1, padding="same", pad_values=1,
         after="bn_bconv"),  # bitpacked output with thresholds between binary convs
    dict(h=10, w=8, cin=20, cout=70, k=3, stride=1, dilation=1, padding="valid", pad_values=0,
         after="bn_maxpool_bconv"),  # max-pool before a quantizer -> LceBMaxPool2d
    dict(h=6, w=6, cin=64, cout=32, k=1, stride=1, dilation=1, padding="same", pad_values=1,
         after="bn", groups=2),  # grouped binary conv (32 channels per group)
    dict(h=9, w=13, cin=96, cout=40, k=3, stride=(2, 1), dilation=1, padding="same",
         pad_values=0, after="bn"),  # unequal strides
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(SWEEP)))
def test_binary_conv_sweep_matches_interpreter(index):
    case = SWEEP[index]
    model = ir.read(bytes(_tf.lce().convert_keras_model(binary_conv_model(case, index))))
    opcodes = {op.opcode for op in model.subgraphs[0].operators}
    assert "LceBconv2d" in opcodes
    if case["after"] == "bn_maxpool_bconv":
        assert "LceBMaxPool2d" in opcodes
    x = np.random.default_rng(index).normal(size=(3, case["h"], case["w"], case["cin"]))
    x = x.astype(np.float32)
    for name, kernel in KERNELS.items():
        if name == "default" and case.get("groups", 1) > 1:
            continue  # LCE's default (im2col BGEMM) kernel refuses grouped convs
        zero_padded = case["padding"] == "same" and case["pad_values"] == 0
        if name == "reference" and zero_padded and case["cin"] % 2:
            continue  # LCE's reference kernel zero-pads only an even number of channels
        assert assert_agree(model, x, **kernel) >= 1


def test_bitpacked_output_is_exercised():
    model = ir.read(bytes(_tf.lce().convert_keras_model(binary_conv_model(SWEEP[4], 4))))
    graph = model.subgraphs[0]
    bconvs = [op for op in graph.operators if op.opcode == "LceBconv2d"]
    assert graph.tensors[bconvs[0].outputs[0]].dtype == "int32"


def int8_output_variant(model: ir.Model, scale: float, zero_point: int) -> ir.Model:
    """Cut after the first LceBconv2d and make its output int8 (LCE supports it)."""
    graph = model.subgraphs[0]
    op = next(op for op in graph.operators if op.opcode == "LceBconv2d")
    clone = reference.with_outputs(model, [op.outputs[0]])
    tensor = clone.subgraphs[0].tensors[op.outputs[0]]
    tensor.dtype = "int8"
    tensor.quantization = ir.Quantization(scale=[scale], zero_point=[zero_point])
    position = graph.operators.index(op)
    clone.subgraphs[0].operators = clone.subgraphs[0].operators[: position + 1]
    ir.prune(clone)
    return clone


@pytest.mark.parametrize(
    ("case_index", "scale", "zero_point"),
    [(1, 0.05, 3), (3, 0.5, -10), (2, 0.02, 0)],  # saturating, coarse, zero-padded
)
def test_int8_bconv_output_is_bit_exact(case_index, scale, zero_point):
    case = SWEEP[case_index]
    model = ir.read(bytes(_tf.lce().convert_keras_model(binary_conv_model(case, case_index))))
    variant = int8_output_variant(model, scale, zero_point)
    x = np.random.default_rng(7).normal(size=(2, case["h"], case["w"], case["cin"]))
    x = x.astype(np.float32)
    kernels = [KERNELS["reference"]]
    if case["pad_values"] == 1 or case["padding"] == "valid":
        kernels.append(KERNELS["indirect"])  # zero padding needs float output in LCE's fast kernels
    for kernel in kernels:
        ours = reference.run(variant, [x])[variant.subgraphs[0].outputs[0]]
        theirs = _tf.lce_interpreter(ir.write(variant), **kernel).predict(x)
        assert ours.dtype == np.int8
        np.testing.assert_array_equal(ours, theirs)
        assert len(np.unique(ours)) > 3


def test_tiny_bnn_every_tensor(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert assert_agree(model, x, **KERNELS["indirect"]) >= 2


def test_bundled_model_every_tensor():
    from bnnconvert import checkpoint, convert, targets

    loaded = checkpoint.load(BUNDLED)
    flatbuffer, _ = convert.convert(loaded.model, targets.target("arm64"))
    model = ir.read(flatbuffer)
    x = np.load(loaded.test_data)["x"][:4]
    for kernel in KERNELS.values():
        assert assert_agree(model, x, **kernel) >= 9


@pytest.mark.parametrize("variant", slow_after_first(["28", "37", "45"]))
def test_binary_densenet_small_input(variant):
    keras_model = getattr(models, f"binary_densenet{variant}")(
        input_shape=(32, 32, 3), num_classes=10
    )
    randomize_batchnorm(keras_model, int(variant))
    model = ir.read(bytes(_tf.lce().convert_keras_model(keras_model)))
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert assert_agree(model, x, **KERNELS["indirect"]) > 10


def test_batch_size_is_free(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    x = np.random.default_rng(3).normal(size=(5, 32, 32, 3)).astype(np.float32)
    out = model.subgraphs[0].outputs[0]
    together = reference.run(model, [x])[out]
    apart = np.concatenate([reference.run(model, [x[i : i + 1]])[out] for i in range(5)])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-7)


def dorefa_and_heaviside_model():
    """DoReFa (ROUND) and SteHeaviside (SIGN) input quantizers: LCE keeps them float."""
    keras = _tf.keras()
    lq = _tf.larq()
    keras.utils.set_random_seed(11)
    inp = keras.Input((8, 8, 8))
    x = keras.layers.BatchNormalization()(inp)
    x = lq.layers.QuantConv2D(
        16,
        3,
        padding="same",
        input_quantizer=lq.quantizers.DoReFaQuantizer(k_bit=2),
        kernel_quantizer=lq.quantizers.DoReFaQuantizer(k_bit=2, mode="weights"),
        use_bias=False,
    )(x)
    x = keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(
        8, 3, input_quantizer="ste_heaviside", kernel_quantizer="ste_sign", use_bias=False
    )(x)
    return keras.Model(inp, x)


def transposed_conv_model():
    """A binary and a float transposed conv (SAME stride 2, VALID stride 1, bias)."""
    keras = _tf.keras()
    lq = _tf.larq()
    keras.utils.set_random_seed(12)
    inp = keras.Input((5, 6, 32))
    x = keras.layers.BatchNormalization()(inp)
    x = lq.layers.QuantConv2DTranspose(
        32,
        3,
        strides=2,
        padding="same",
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        use_bias=False,
    )(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = keras.layers.Conv2DTranspose(4, (2, 3), padding="valid")(x)
    return keras.Model(inp, x)


def activations_model():
    """PReLU, LeakyReLU, hard swish, ELU, hard sigmoid, swish, SELU."""
    keras = _tf.keras()
    tf = _tf.tensorflow()
    keras.utils.set_random_seed(13)
    inp = keras.Input((6, 6, 8))
    x = keras.layers.Conv2D(8, 1)(inp)
    x = keras.layers.PReLU(shared_axes=[1, 2])(x)
    x = keras.layers.LeakyReLU(0.1)(x)
    x = x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)  # the hard-swish pattern -> HARD_SWISH
    for name in ("elu", "hard_sigmoid", "swish", "selu", "tanh"):
        x = keras.layers.Activation(name)(keras.layers.Conv2D(8, 1)(x))
    return keras.Model(inp, x)


def tensor_ops_model():
    """Split, crop, pad, permute, resize, stack/unstack, gather and element-wise math."""
    keras = _tf.keras()
    tf = _tf.tensorflow()
    keras.utils.set_random_seed(14)
    inp = keras.Input((8, 8, 6))
    a, b = tf.split(inp, 2, axis=-1)
    a = keras.layers.ZeroPadding2D(1)(keras.layers.Cropping2D(1)(a))
    b = keras.layers.Permute((2, 1, 3))(b)
    a = keras.layers.AveragePooling2D(2)(keras.layers.UpSampling2D(2)(a))
    b = keras.layers.MaxPool2D(2)(keras.layers.UpSampling2D(2, interpolation="bilinear")(b))
    first, second = tf.unstack(tf.stack([a, b], axis=1), axis=1)
    x = (
        tf.abs(first)
        + tf.sign(second)
        + tf.math.squared_difference(first, second)
        + first / (tf.abs(second) + 1.0)
        + tf.pow(tf.abs(first) + 0.5, 1.5)
    )
    x = tf.gather(x, [2, 0, 1], axis=-1)
    x = tf.sqrt(tf.abs(x)) + tf.math.rsqrt(tf.abs(x) + 1.0) + tf.exp(-x) + tf.math.log(x * x + 1)
    return keras.Model(inp, keras.layers.GlobalMaxPooling2D()(x))


# Models whose ops LCE 0.16 emits for Larq layers beyond the binary conv path,
# and the op each must exercise.
OP_COVERAGE = {
    "dorefa_and_heaviside": (dorefa_and_heaviside_model, {"ROUND", "SIGN", "CONV_2D"}),
    "transposed_conv": (transposed_conv_model, {"TRANSPOSE_CONV", "LceDequantize"}),
    "activations": (activations_model, {"PRELU", "LEAKY_RELU", "HARD_SWISH", "ELU"}),
    "tensor_ops": (
        tensor_ops_model,
        {
            "SPLIT", "STRIDED_SLICE", "TRANSPOSE", "PACK", "UNPACK", "RESIZE_BILINEAR",
            "RESIZE_NEAREST_NEIGHBOR", "GATHER", "ABS", "SIGN", "SQUARED_DIFFERENCE", "DIV",
            "POW", "RSQRT", "REDUCE_MAX",
        },
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", OP_COVERAGE)
def test_op_coverage_matches_interpreter(name):
    build, expected_ops = OP_COVERAGE[name]
    keras_model = build()
    randomize_batchnorm(keras_model, 5)
    model = ir.read(bytes(_tf.lce().convert_keras_model(keras_model)))
    opcodes = {op.opcode for op in model.subgraphs[0].operators}
    assert expected_ops <= opcodes, expected_ops - opcodes
    assert reference.first_unsupported(model) is None
    shape = keras_model.input_shape[1:]
    x = np.random.default_rng(2).normal(size=(3, *shape)).astype(np.float32)
    assert_agree(model, x, **KERNELS["indirect"])


def test_run_stops_before_an_unsupported_op(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    graph = model.subgraphs[0]
    graph.operators[3].opcode = "LceFancyNewOp"
    assert reference.first_unsupported(model) == (3, "LceFancyNewOp")
    x = np.zeros((1, 32, 32, 3), np.float32)
    values = reference.run(model, [x], until=3)
    assert graph.operators[2].outputs[0] in values
    assert graph.operators[3].outputs[0] not in values


def test_unknown_op_names_the_op(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    model.subgraphs[0].operators[0].opcode = "LceFancyNewOp"
    x = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(
        FlatbufferProblem, match=r"Operator 0 is LceFancyNewOp, which the reference"
    ):
        reference.run(model, [x])
