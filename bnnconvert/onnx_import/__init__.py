"""PyTorch BNNs through ONNX: an ``.onnx`` file -> a Larq/Keras model -> LCE as usual.

Design. ``bnnconvert export MODEL.onnx`` does not emit a flatbuffer of its own:
it turns the ONNX graph into the Larq/Keras model (NHWC) that a Larq user
would have written, and everything downstream (LCE's converter, bnnconvert's
passes, audit, metadata and ``validate``) runs unchanged on it. Keras layer
names are the ONNX node names (``/`` written as ``.``, see
:func:`.graph.layer_name`), so the audit and validation name ONNX nodes; the
model is named after the file (its folder for ``model.onnx``).

Steps (each its own module):

1. :mod:`.reading`: the file is untrusted. It is size-capped, parsed and
   checked with ``onnx`` (checker, strict shape inference); custom-domain ops
   and local functions are refused, so no custom op library is ever loaded and
   nothing in the file runs except standard ONNX ops. One input, one output.
2. Constant folding with onnxsim (batch fixed at 1; batch norms kept): weights
   computed from a latent parameter (``Sign(W) * mean|W|``) become constants.
3. :mod:`.fusions`: the ways PyTorch code writes a binarizing sign
   (``Where(x >= t, 1, -1)`` and variants, the straight-through detach trick)
   become one ``BinarySign`` node; unused nodes are dropped.
4. :mod:`.builder`: nodes become Keras layers. A sign read by a ``Conv`` /
   ``Gemm`` / ``MatMul`` whose weights are ``±α`` per output channel becomes a
   Larq ``QuantConv2D`` (``ste_sign`` input and kernel quantizers, a dense one
   as a 1x1 conv) plus a per-channel scale that LCE fuses into the binary
   conv's multiplier. What cannot be binarized exactly stays float, and the
   builder records why as audit findings naming the ONNX node.
5. :mod:`.runtime`: ONNX Runtime runs the original file as the reference for
   ``validate`` and export's parity check (inputs NHWC, transposed to NCHW).

Example:
    >>> from bnnconvert.onnx_import import load
    >>> loaded = load(Path("models/torch_digits/model.onnx"))
    >>> loaded.model.name, loaded.model.input_shape
    ('torch_digits', (None, 32, 32, 1))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnnconvert.onnx_import.errors import OnnxProblem

SUFFIX = ".onnx"
_GENERIC_STEMS = ("model", "checkpoint", "best", "last", "export")

__all__ = ["SUFFIX", "OnnxProblem", "build_keras", "load"]


def build_keras(path: Path) -> Any:
    """Read, check, fold and fuse ``path``; return the :class:`.builder.Built` Keras model.

    Raises:
        OnnxProblem: one line naming the file, and the node and op type when one is at fault.
    """
    from bnnconvert.onnx_import import builder, fusions, graph, reading

    model = reading.read_checked(path)
    shape = reading.input_shape(model, path)
    folded = reading.fold_constants(model, path)
    nodes = graph.from_proto(folded)
    fusions.fuse_all(nodes)
    name = path.parent.name if path.stem.lower() in _GENERIC_STEMS else path.stem
    return builder.KerasBuilder(nodes, shape, str(path), name or "onnx_model").build()


def load(path: Path, test_data: Path | None = None) -> Any:
    """The ONNX file at ``path`` as a :class:`bnnconvert.checkpoint.LoadedCheckpoint`.

    Its ``model`` is the Keras model, ``findings`` the ONNX-specific audit
    findings and ``reference_run`` ONNX Runtime on the original file (NHWC in, as
    the flatbuffer takes it).

    Raises:
        OnnxProblem: see :func:`build_keras`.
    """
    from bnnconvert.checkpoint import LoadedCheckpoint
    from bnnconvert.onnx_import.runtime import OnnxRuntimeReference

    built = build_keras(path)
    return LoadedCheckpoint(
        built.model,
        path,
        "onnx",
        None,
        test_data,
        findings=built.findings,
        reference_run=OnnxRuntimeReference(path),
    )
