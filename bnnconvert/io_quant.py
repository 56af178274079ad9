"""Quantized model inputs and outputs: float data in, int8 to the model, float back out.

A model exported with ``--input-type int8`` / ``--output-type int8`` takes and
gives int8 tensors with affine parameters (``real = scale * (q - zero_point)``)
of their own. Tools that hold float data (``validate``, tests, an app)
quantize each input and dequantize each output with exactly those parameters;
float tensors pass through unchanged.

Example:
    >>> model = ir.read(flatbuffer)
    >>> fed = quantize_inputs(model, x)             # float32 (N, H, W, C) -> int8
    >>> scores = dequantize_outputs(model, raw)     # int8 (N, classes) -> float32
    >>> io_notes(model)
    ['inputs quantized with scale 0.00392157, zero point -128']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bnnconvert import ir
from bnnconvert.errors import FlatbufferProblem
from bnnconvert.reference import quantize

IO_TYPES = ("float32", "int8")
"""The input/output tensor types ``export`` can produce (LCE's ``inference_*_type``)."""


@dataclass(frozen=True)
class IoQuantization:
    """One quantized graph input or output: its dtype and per-tensor parameters."""

    tensor: str
    dtype: str
    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        """``{"dtype", "scale", "zero_point"}`` as written to export.json and the metadata."""
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


def tensor_quantization(tensor: ir.Tensor) -> IoQuantization | None:
    """The parameters of a quantized I/O tensor; None for a float one.

    Raises:
        FlatbufferProblem: an integer tensor without parameters, or with one
            per channel (TFLite gives graph inputs/outputs one scale).
    """
    if tensor.dtype not in ("int8", "uint8", "int16"):
        return None
    quant = tensor.quantization
    if quant is None or not quant.scale:
        raise FlatbufferProblem(
            f"Expected scale and zero point on the {tensor.dtype} tensor {tensor.name!r}, "
            "got none; the model cannot be fed float data"
        )
    if len(quant.scale) != 1:
        raise FlatbufferProblem(
            f"Expected one scale on the graph tensor {tensor.name!r}, got "
            f"{len(quant.scale)} (per channel); bnnconvert feeds per-tensor quantized I/O only"
        )
    zero_point = int(quant.zero_point[0]) if quant.zero_point else 0
    return IoQuantization(tensor.name, tensor.dtype, float(quant.scale[0]), zero_point)


def io_quantization(model: ir.Model, which: str) -> list[IoQuantization | None]:
    """Per graph input (``which="inputs"``) or output (``"outputs"``): its quantization."""
    graph = model.subgraphs[0]
    indices = graph.inputs if which == "inputs" else graph.outputs
    return [tensor_quantization(graph.tensors[i]) for i in indices]


def quantize_inputs(model: ir.Model, x: np.ndarray) -> np.ndarray:
    """The model's first input as it must be fed: ``x`` itself if float, else quantized.

    Arguments:
        model: the flatbuffer's graph.
        x: float inputs ``(N, *input_shape)``, preprocessed like the model's.

    Returns:
        ``x`` as float32, or ``round(x / scale) + zero_point`` saturated to the
        input's integer dtype.
    """
    graph = model.subgraphs[0]
    tensor = graph.tensors[graph.inputs[0]]
    if tensor_quantization(tensor) is None:
        return np.asarray(x, dtype=np.float32)
    return quantize(np.asarray(x, dtype=np.float32), tensor)


def dequantize_outputs(model: ir.Model, y: np.ndarray) -> np.ndarray:
    """The model's first output ``y`` as float32: ``scale * (y - zero_point)`` if quantized."""
    (quant, *_) = io_quantization(model, "outputs")
    if quant is None:
        return np.asarray(y, dtype=np.float32)
    return (quant.scale * (np.asarray(y, dtype=np.float64) - quant.zero_point)).astype(np.float32)


def io_notes(model: ir.Model) -> list[str]:
    """What a float-data tool does at the model's edges, one line per quantized side."""
    notes = []
    for which, verb in (("inputs", "quantized"), ("outputs", "dequantized")):
        for quant in io_quantization(model, which):
            if quant is not None:
                notes.append(
                    f"{which} {verb} with scale {quant.scale:.6g}, zero point {quant.zero_point}"
                )
                break
    return notes


def quantization_record(
    model: ir.Model, *, calibrated: bool, own_fake_quant: list[str]
) -> dict[str, Any] | None:
    """``export.json``'s ``quantization``: where the int8 came from and the edges' parameters.

    Arguments:
        model: the exported graph.
        calibrated: whether ``--int8-activations`` added calibrated ranges.
        own_fake_quant: names of the model's own fake-quant layers.

    Returns:
        None for a float model; else ``{"lossy": true, "sources": [...],
        "own_fake_quant_layers": [...], "input": ..., "output": ...}``, with
        each edge as :meth:`IoQuantization.to_dict` or ``{"dtype": "float32"}``.
    """
    if not calibrated and not own_fake_quant:
        return None
    sources = []
    if own_fake_quant:
        sources.append("int8 from the model's own quantization nodes")
    if calibrated:
        sources.append("int8 from ranges calibrated by --int8-activations")
    graph = model.subgraphs[0]
    edges = {}
    for which, indices in (("input", graph.inputs), ("output", graph.outputs)):
        tensor = graph.tensors[indices[0]]
        quant = tensor_quantization(tensor)
        edges[which] = quant.to_dict() if quant is not None else {"dtype": tensor.dtype}
    return {
        "lossy": True,
        "sources": sources,
        "own_fake_quant_layers": list(own_fake_quant),
        **edges,
    }
