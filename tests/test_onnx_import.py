"""The ONNX front end without PyTorch: untrusted files, the sign fusions, padding, a graph export.

Graphs are written with ``onnx.helper`` here; the PyTorch-exported families are
in ``test_onnx_families.py`` and the bundled model in ``test_onnx_bundled.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bnnconvert import checkpoint
from bnnconvert.onnx_import import OnnxProblem, fusions, graph
from bnnconvert.onnx_import.builder import padding_mode, trim_unused_end

C = 32
SIZE = 8


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(nodes: list, initializers: list, output_shape: list[int]) -> onnx.ModelProto:
    graph_proto = helper.make_graph(
        nodes,
        "test_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        initializers,
    )
    return helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])


def binary_classifier(sign: str = "where") -> onnx.ModelProto:
    """BN -> sign (``Where(x >= 0, 1, -1)`` or detach trick) -> ±α conv -> GAP -> Gemm."""
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0.05, 0.2, C).astype(np.float32)
    weights = np.where(rng.normal(size=(C, C, 3, 3)) < 0, -1.0, 1.0) * alpha[:, None, None, None]
    initializers = [
        _const("gamma", rng.uniform(0.5, 1.5, C) * rng.choice([-1, 1], C, p=[0.2, 0.8])),
        _const("beta", rng.normal(0, 0.3, C)),
        _const("mean", rng.normal(0, 0.5, C)),
        _const("var", rng.uniform(0.5, 2.0, C)),
        _const("zero", np.array(0.0)),
        _const("one", np.array(1.0)),
        _const("minus_one", np.array(-1.0)),
        _const("w", weights),
        _const("fc_w", rng.normal(0, 0.3, (10, C))),
        _const("fc_b", rng.normal(0, 0.1, 10)),
    ]
    nodes = [
        helper.make_node(
            "BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["bn"], name="/block/bn"
        )
    ]
    if sign == "where":
        nodes += [
            helper.make_node("GreaterOrEqual", ["bn", "zero"], ["ge"], name="/block/ge"),
            helper.make_node("Where", ["ge", "one", "minus_one"], ["s"], name="/block/where"),
        ]
    elif sign == "pool_pad":  # sign -> max-pool -> explicit top/left zero padding
        nodes += [
            helper.make_node("Sign", ["bn"], ["raw_sign"], name="/block/Sign"),
            helper.make_node(
                "MaxPool",
                ["raw_sign"],
                ["pooled"],
                name="/block/pool",
                kernel_shape=[2, 2],
                strides=[2, 2],
            ),
            helper.make_node("Pad", ["pooled", "pads"], ["s"], name="/block/pad"),
        ]
        initializers.append(
            numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 0, 0], np.int64), "pads")
        )
    else:  # x + (sign(x) - x).detach()
        nodes += [
            helper.make_node("Sign", ["bn"], ["raw_sign"], name="/block/Sign"),
            helper.make_node("Sub", ["raw_sign", "bn"], ["diff"], name="/block/Sub"),
            helper.make_node("Add", ["bn", "diff"], ["s"], name="/block/Add"),
        ]
    nodes += [
        helper.make_node(
            "Conv",
            ["s", "w"],
            ["conv"],
            name="/block/conv/Conv",
            kernel_shape=[3, 3],
            pads=[0, 0, 0, 0] if sign == "pool_pad" else [1, 1, 1, 1],
        ),
        helper.make_node("GlobalAveragePool", ["conv"], ["pool"], name="/head/pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="/head/Flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="/head/fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], name="/head/Softmax", axis=1),
    ]
    return _model(nodes, initializers, ["N", 10])


def _write(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# --- untrusted files -------------------------------------------------------------------


def test_garbage_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    with pytest.raises(OnnxProblem, match=r"^.*bad\.onnx: not an ONNX model \(.*\); re-export it$"):
        checkpoint.load(path)


def test_custom_domain_op_is_refused_before_anything_runs(tmp_path: Path) -> None:
    model = _model(
        [helper.make_node("MyOp", ["x"], ["y"], name="/evil", domain="com.example")],
        [],
        ["N", C, SIZE, SIZE],
    )
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    path = _write(model, tmp_path / "custom.onnx")
    with pytest.raises(OnnxProblem) as error:
        checkpoint.load(path)
    assert str(error.value) == (
        f"{path}: node '/evil' is MyOp from custom domain 'com.example', which needs code "
        "bnnconvert will not load; export the model with standard ONNX ops only"
    )


@pytest.mark.parametrize(
    ("shape", "tail"),
    [
        ([1, 1, 64], "[1, 1, 64] float; expected a float image (N, C, H, W) with fixed C, H and "
         "W: a 3-D input is not an image: bnnconvert converts 2-D conv nets only"),
        (["N", C, "H", SIZE], f"['?', {C}, '?', {SIZE}] float; expected a float image (N, C, H, "
         "W) with fixed C, H and W: export it with a fixed input size"),
    ],
)  # fmt: skip
def test_an_input_that_is_not_a_fixed_image_says_what_it_is(tmp_path, shape, tail) -> None:
    graph_proto = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="/relu")],
        "not_an_image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])
    path = _write(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxProblem) as error:
        checkpoint.load(path)
    assert str(error.value) == f"{path}: input 'x' is {tail}"


def test_unsupported_op_names_node_op_and_what_to_do(tmp_path: Path) -> None:
    model = _model(
        [helper.make_node("Erf", ["x"], ["y"], name="/features/gelu/Erf")], [], ["N", C, SIZE, SIZE]
    )
    path = _write(model, tmp_path / "erf.onnx")
    with pytest.raises(OnnxProblem) as error:
        checkpoint.load(path)
    message = str(error.value)
    assert message.startswith(
        f"{path}: node '/features/gelu/Erf' (Erf): this op is not supported by bnnconvert's "
        "ONNX import; replace it with one of: Abs, Add,"
    )
    assert "\n" not in message


def test_cli_exit_code_2_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not onnx")
    done = subprocess.run(
        [sys.executable, "-m", "bnnconvert", "export", str(path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.onnx: not an ONNX model" in lines[0]


# --- fusions ---------------------------------------------------------------------------


@pytest.mark.parametrize("sign", ["where", "detach"])
def test_sign_patterns_become_one_binary_sign(sign: str) -> None:
    nodes = graph.from_proto(binary_classifier(sign))
    counts = fusions.fuse_all(nodes)
    assert counts == {"where_sign": int(sign == "where"), "straight_through": int(sign != "where")}
    ops = [node.op for node in nodes.nodes]
    expected_sign = "BinarySign" if sign == "where" else "Sign"
    assert ops == [
        "BatchNormalization",
        expected_sign,
        "Conv",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Softmax",
    ]


def test_where_with_other_values_is_left_alone() -> None:
    model = binary_classifier("where")
    for tensor in model.graph.initializer:
        if tensor.name == "one":
            tensor.CopyFrom(_const("one", np.array(2.0)))
    nodes = graph.from_proto(model)
    assert fusions.fuse_where_sign(nodes) == 0
    assert "Where" in [node.op for node in nodes.nodes]


def test_layer_names_are_onnx_names_with_dots() -> None:
    assert graph.layer_name("/features/features.1/bn/BatchNormalization") == (
        "features.1.bn.BatchNormalization"
    )
    assert graph.layer_name("/block/conv/Conv") == "block.conv.Conv"
    assert graph.layer_name("/a b:c") == "a_b_c"


# --- padding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "stride", "pads", "mode"),
    [
        (16, 1, (1, 1, 1, 1), "same"),
        (16, 2, (1, 1, 1, 1), "explicit"),  # PyTorch pads the top; SAME pads the bottom
        (15, 2, (1, 1, 1, 1), "same"),
        (16, 1, (0, 0, 0, 0), "valid"),
    ],
)
def test_padding_mode_for_a_3x3_conv(size: int, stride: int, pads: tuple, mode: str) -> None:
    assert padding_mode((size, size), (3, 3), (stride, stride), (1, 1), pads) == mode


def test_unused_end_padding_is_trimmed() -> None:
    assert trim_unused_end((16, 16), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)) == (1, 1, 0, 0)
    assert trim_unused_end((15, 15), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)) == (1, 1, 1, 1)


# --- a graph through export -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sign", "bconvs", "findings"),
    [
        ("where", 1, set()),
        ("detach", 1, {"onnx-sign-at-zero"}),
        # the pool moves before the sign; the padding SAME cannot express doubles the conv
        ("pool_pad", 2, {"onnx-sign-at-zero", "onnx-explicit-padding"}),
    ],
)
def test_hand_written_graph_exports_binary_and_matches_onnx_runtime(
    sign: str, bconvs: int, findings: set[str], tmp_path: Path
) -> None:
    from bnnconvert.export import export

    path = _write(binary_classifier(sign), tmp_path / f"{sign}.onnx")
    result = export(path, target="arm64", output_dir=tmp_path / "out")
    assert result.op_counts.get("LceBconv2d") == bconvs
    assert result.parity.passed, result.parity.failures
    assert all(q.binary for q in result.audit.quantized)
    assert "block.conv.Conv" in {q.name for q in result.audit.quantized}
    assert {d.code for d in result.audit.diagnostics if d.code.startswith("onnx-")} == findings


def test_strict_refuses_a_conv_of_binary_weights_on_a_float_input(tmp_path: Path) -> None:
    """Weights of ±α but no sign on the input: the conv stays float, and --strict says so
    (it passed, while the Keras equivalent, no input quantizer, fails --strict)."""
    from bnnconvert.errors import CheckFailed
    from bnnconvert.export import export

    signs = np.random.default_rng(0).choice([-0.5, 0.5], (C, C, 3, 3))
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="/features/conv", pads=[1, 1, 1, 1])],
        [_const("w", signs)],
        ["N", C, SIZE, SIZE],
    )
    path = _write(model, tmp_path / "float_input.onnx")
    with pytest.raises(CheckFailed) as failed:
        export(path, output_dir=tmp_path / "out", strict=True, validate=False)
    assert str(failed.value).startswith(
        "--strict: 1 layer(s) marked binary did not become LceBconv2d: features.conv "
        "(onnx-float-input); "
    )
    loose = export(path, output_dir=tmp_path / "loose", validate=False)
    found = [(d.code, d.severity) for d in loose.audit.diagnostics]
    assert found == [("onnx-float-input", "error")]
