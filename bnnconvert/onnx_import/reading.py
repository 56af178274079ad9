"""Read an untrusted ONNX file: size cap, checker, standard ops only, shape inference, folding.

Nothing in the file is executed: custom-domain ops (which would need a custom
op library) and functions are refused before anything runs, and the standard
ops are only evaluated by onnxsim's constant folding (ONNX Runtime, standard
kernels) and later by ONNX Runtime as the validation reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnnconvert.errors import first_line
from bnnconvert.limits import read_regular_file
from bnnconvert.onnx_import.errors import OnnxProblem

MAX_BYTES = 512 * 1024 * 1024  # protobuf's own limit is 2 GiB; BNNs are far smaller
_STANDARD_DOMAINS = ("", "ai.onnx")


def read_checked(path: Path) -> Any:
    """Load ``path`` as an ``onnx.ModelProto`` that passed the checker and shape inference.

    Arguments:
        path: an ``.onnx`` file (external data files are not followed).

    Returns:
        The model with inferred shapes.

    Raises:
        OnnxProblem: too large, not ONNX, invalid, custom ops, or several inputs.
    """
    import onnx

    try:
        size = path.stat().st_size
    except OSError as e:
        raise OnnxProblem(f"{path}: cannot read it ({e.strerror or e})") from e
    if size > MAX_BYTES:
        raise OnnxProblem(
            f"{path}: {size / 2**20:.0f} MiB is more than the {MAX_BYTES // 2**20} MiB "
            "bnnconvert reads from an ONNX file; export a smaller model"
        )
    data = read_regular_file(path, MAX_BYTES, "an .onnx model")  # a FIFO would block
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise OnnxProblem(f"{path}: not an ONNX model ({first_line(e)}); re-export it") from e
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise OnnxProblem(
            f"{path}: weights are stored in external files, which bnnconvert does not follow; "
            "export with the weights inside the .onnx file"
        )
    if model.functions:
        raise OnnxProblem(
            f"{path}: defines local functions ({model.functions[0].name}); export without "
            "custom functions (standard ONNX ops only)"
        )
    for node in model.graph.node:
        if node.domain not in _STANDARD_DOMAINS:
            raise OnnxProblem(
                f"{path}: node {node.name!r} is {node.op_type} from custom domain "
                f"{node.domain!r}, which needs code bnnconvert will not load; export the model "
                "with standard ONNX ops only"
            )
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:
        raise OnnxProblem(
            f"{path}: the ONNX checker rejects it: {first_line(e)}; re-export it"
        ) from e
    inputs = _graph_inputs(model)
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise OnnxProblem(
            f"{path}: has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
            "bnnconvert converts single-input, single-output image models"
        )
    return model


def _graph_inputs(model: Any) -> list[Any]:
    """Graph inputs that are not initializers (older exporters list weights as inputs)."""
    weights = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def input_shape(model: Any, path: Path) -> tuple[int, int, int, int]:
    """The NCHW input shape with the batch dimension set to 1.

    Raises:
        OnnxProblem: the input is not a 4-D float image with fixed C, H and W.
    """
    import onnx

    (graph_input,) = _graph_inputs(model)
    tensor = graph_input.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or None in dims[1:]:
        shape = ["?" if d is None else d for d in dims]
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            fix = "export it with a float input"
        elif len(dims) != 4:
            fix = f"a {len(dims)}-D input is not an image: bnnconvert converts 2-D conv nets only"
        else:
            fix = "export it with a fixed input size"
        raise OnnxProblem(
            f"{path}: input {graph_input.name!r} is {shape} "
            f"{onnx.TensorProto.DataType.Name(tensor.elem_type).lower()}; expected a float "
            f"image (N, C, H, W) with fixed C, H and W: {fix}"
        )
    return (1, int(dims[1]), int(dims[2]), int(dims[3]))


def fold_constants(model: Any, path: Path) -> Any:
    """Fold everything computed from constants (e.g. ``Sign(W) * mean|W|``) with onnxsim.

    The batch dimension is fixed at 1 for folding, so shape computations from
    ``x.view(x.size(0), -1)`` fold to constants too. Batch norms are kept (not
    fused into convolutions) so they stay visible to LCE's converter and the audit.

    Raises:
        OnnxProblem: onnxsim could not process the model.
    """
    import onnxsim

    (graph_input,) = _graph_inputs(model)
    shape = list(input_shape(model, path))
    try:
        folded, _ = onnxsim.simplify(
            model,
            skip_fuse_bn=True,
            overwrite_input_shapes={graph_input.name: shape},
            import_custom_schemas=False,
        )
    except Exception as e:
        raise OnnxProblem(
            f"{path}: constant folding (onnxsim) failed: {first_line(e)}; check the model "
            "in ONNX Runtime"
        ) from e
    return folded
