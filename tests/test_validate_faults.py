"""Planted faults in exported flatbuffers: each fails ``validate`` and names exactly its layer.

The bundled model is exported the way users get it: default (optimized:
batch norms before signs folded into threshold ``ADD``s), fp16 weights, and
full int8 for the float layers. Each fault is planted in the written
flatbuffer; per-layer isolation must name the layer it was planted in, and
the unplanted exports must pass with no ``fault`` row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnnconvert import checkpoint, ir, passes
from bnnconvert.export import export
from bnnconvert.validate import validate

BUNDLED = Path("models/digits")
VARIANTS = {
    "default": passes.OptimizeOptions(),
    "fp16": passes.OptimizeOptions(float_weights="fp16"),
    "int8": passes.OptimizeOptions(int8_activations=True),
}
FAULTS = [
    ("filter", "block1_layer1_bconv"),  # first LceBconv2d
    ("filter", "block2_layer2_bconv"),  # a middle one
    ("filter", "block3_layer3_bconv"),  # the last one
    ("multiplier", "block2_layer1_bconv"),
    ("float_weight", "transition1_conv"),
    ("float_weight", "head_dense"),
    ("threshold", "block2_layer3_bn"),  # a batch norm folded into a threshold ADD
]


@pytest.fixture(scope="module")
def keras_model():
    return checkpoint.load(BUNDLED).model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The bundled model exported per variant, once, when a test first asks for it."""
    found: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in found:
            out = tmp_path_factory.mktemp(name)
            export(BUNDLED, output_dir=out, optimize=VARIANTS[name], validate_samples=0)
            found[name] = (out / "model.tflite").read_bytes()
        return found[name]

    return get


def _op(model: ir.Model, opcodes: tuple[str, ...], layer: str) -> ir.Operator:
    """The op of ``opcodes`` whose tensors (outputs first, then inputs) name ``layer``."""
    graph = model.subgraphs[0]
    for op in graph.operators:
        names = [graph.tensors[t].name for t in [*op.outputs, *op.inputs] if t >= 0]
        if op.opcode in opcodes and any(f"/{layer}/" in n or f"/{layer}_" in n for n in names):
            return op
    raise AssertionError(f"no {opcodes} op of {layer}")


def replace_constant(model: ir.Model, op: ir.Operator, position: int, value: np.ndarray) -> None:
    """Give ``op`` its own copy of a constant input, changed (constants may be shared)."""
    graph = model.subgraphs[0]
    old = graph.tensors[op.inputs[position]]
    new = ir.add_tensor(model, graph, old.name + "/planted", list(value.shape), old.dtype, value)
    graph.tensors[new].quantization = old.quantization
    op.inputs[position] = new


def flip_filter(model: ir.Model, op: ir.Operator) -> None:
    """Flip every bit of output channel 5's filter of the ``LceBconv2d`` ``op``, in ``model``."""
    filters = ir.tensor_array(model, model.subgraphs[0], op.inputs[1]).copy()
    filters[5] = ~filters[5]
    replace_constant(model, op, 1, filters)


def plant(flatbuffer: bytes, fault: str, layer: str) -> bytes:
    """Break one thing of ``layer`` in the flatbuffer (see ``FAULTS``)."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    if fault == "filter":
        flip_filter(model, _op(model, ("LceBconv2d",), layer))
        return ir.write(model)
    if fault == "multiplier":
        op = _op(model, ("LceBconv2d",), layer)
        position = 2
        value = ir.tensor_array(model, graph, op.inputs[position]).copy()
        value[5] *= 1.5
    elif fault == "float_weight":
        op = _op(model, ("CONV_2D", "FULLY_CONNECTED"), layer)
        position = 1
        if ir.tensor_array(model, graph, op.inputs[1]) is None:  # fp16 behind DEQUANTIZE
            op = next(o for o in graph.operators if o.outputs == [op.inputs[1]])
            position = 0
        value = ir.tensor_array(model, graph, op.inputs[position]).copy()
        value[3] = -2 * value[3] if value.dtype.kind == "f" else -value[3]
    else:
        op = _op(model, ("ADD",), layer)
        position = 1
        value = ir.tensor_array(model, graph, op.inputs[1]).copy()
        value[4] += 1.0  # channel 4's threshold moved
    replace_constant(model, op, position, value)
    return ir.write(model)


def _check(keras_model, path: Path, **kwargs):
    return validate(BUNDLED, path, keras_model=keras_model, samples=24, workers=0, **kwargs)


@pytest.mark.parametrize("variant", ["default", pytest.param("fp16", marks=pytest.mark.slow),
                                     pytest.param("int8", marks=pytest.mark.slow)])  # fmt: skip
def test_unplanted_export_passes_with_no_fault_row(keras_model, exports, tmp_path, variant):
    path = tmp_path / "model.tflite"
    path.write_bytes(exports(variant))
    result = _check(keras_model, path, layers=True)
    assert result.verdict == "pass", (result.failures, result.notes)
    assert result.lossy == (variant != "default")
    assert len(result.layers) > 40
    assert not [r.keras_layer for r in result.layers if r.cause == "fault"]
    assert {r.meaning for r in result.layers} == {"value", "threshold-before-sign",
                                                  "bitpacked-signs"}  # fmt: skip
    if variant == "int8":  # differences are attributed to quantization, not called faults
        assert any(r.cause == "int8 quantization" for r in result.layers)


@pytest.mark.parametrize(("fault", "layer"), FAULTS)
@pytest.mark.parametrize("variant", ["default", pytest.param("fp16", marks=pytest.mark.slow),
                                     pytest.param("int8", marks=pytest.mark.slow)])  # fmt: skip
def test_planted_fault_fails_and_names_its_layer(
    keras_model, exports, tmp_path, variant, fault, layer
):
    path = tmp_path / "broken.tflite"
    path.write_bytes(plant(exports(variant), fault, layer))
    result = _check(keras_model, path)
    assert result.verdict == "fail" and not result.passed
    first = result.first_divergence
    assert first is not None and first.cause == "fault"
    assert first.keras_layer == layer, (first, result.notes)
    # Fed Keras's own inputs, the layers after it agree: only the planted layer is a fault.
    assert {r.keras_layer for r in result.layers if r.cause == "fault"} == {layer}
    if fault == "threshold":
        assert first.meaning == "threshold-before-sign"
        assert 0 < first.flipped_signs < 0.01 and first.flipped_at_ties == 0
    assert any(n.startswith(f"first divergence: Keras layer {layer} -> ") for n in result.notes)
