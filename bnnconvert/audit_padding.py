"""LCE 0.16's padding fusion that changes results: ``ZeroPadding2D`` -> strided VALID conv.

LCE's converter (its ``-tfl-fuse-padding`` pass) replaces ``PAD -> CONV_2D``
(or ``DEPTHWISE_CONV_2D``) with VALID padding by one conv with SAME padding
when, in both spatial dimensions, the explicit padding ``(before, after)`` has
SAME's shape (``before == total // 2``, ``after == (total + 1) // 2``) and the
output size is ``ceil(input / stride)``. It does not check that SAME pads the
same amount: with a stride above 1, SAME pads only what its windows need,
``max((out - 1) * stride + kernel_extent - input, 0)``, and puts the smaller
half first. Where that first half differs from ``before``, every window is
shifted and the outputs are wrong. Measured with the real converter and
interpreter (a sweep of sizes, pads, strides, kernels and dilations; max error
about 1 on unit inputs): ``ZeroPadding2D(1)`` before a ``Conv2D(3, strides=2)``
on an even input is the common case; stride 1 and odd inputs there are
exact. A ``QuantConv2D`` with an input quantizer is not affected (its sign op
sits between the pad and the conv); one without (a binary-weight first
layer) becomes a float ``CONV_2D`` and is.

The fix that keeps the trained model's outputs: drop the trailing padding its
windows never read (``(input + total - kernel_extent) % stride`` rows or
columns); LCE then keeps the ``PAD`` (or fuses it correctly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bnnconvert import ir
from bnnconvert.mapping import LayerMap, class_name

CODE = "lce-pad-stride-bug"
_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class PadStrideFinding:
    """A ZeroPadding2D that LCE merged into the strided conv ``conv`` with different padding."""

    conv: str
    message: str
    fix: str


def _same_before(size: int, stride: int, extent: int) -> int:
    """The padding SAME puts before the input, for one spatial dimension."""
    out = -(-size // stride)
    return max((out - 1) * stride + extent - size, 0) // 2


def trimmed_padding(
    size: int, before: int, after: int, stride: int, extent: int
) -> tuple[int, int]:
    """``(before, after)`` without the trailing padding no window reads, for one dimension.

    Arguments:
        size: input size; before, after: zero padding; stride; extent: the
            kernel's dilated extent, ``(k - 1) * dilation + 1``.
    Returns:
        Padding with the same outputs that LCE 0.16 keeps as a ``PAD`` (or
        merges into SAME correctly): use it when building a padded strided conv.
    """
    unread = (size + before + after - extent) % stride
    return before, max(after - unread, 0)


def _conv_geometry(layer: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(strides, kernel extents) of a conv layer with VALID padding that reads its input as is."""
    if getattr(layer, "padding", None) != "valid":
        return None
    if getattr(layer, "input_quantizer", None) is not None:
        return None  # its sign op sits between the pad and the conv
    kernel = getattr(layer, "kernel_size", None)
    strides = getattr(layer, "strides", None)
    dilation = getattr(layer, "dilation_rate", (1, 1))
    if not kernel or not strides or len(kernel) != 2 or len(strides) != 2:
        return None
    extents = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True))
    return (int(strides[0]), int(strides[1])), (int(extents[0]), int(extents[1]))


def pad_stride_findings(lm: LayerMap) -> list[PadStrideFinding]:
    """Every ``ZeroPadding2D -> conv`` pair LCE merged into a conv that pads differently.

    A pair counts only where the flatbuffer confirms the merge (the conv's op
    has SAME padding although the Keras layer is VALID) and the padding SAME
    puts first differs from the ``ZeroPadding2D``'s in some spatial dimension.
    """
    found = []
    for name, layer in lm.keras.layers.items():
        channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
        if class_name(layer) != "ZeroPadding2D" or not channels_last:
            continue
        shape = getattr(layer, "input_shape", None)
        if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:3]:
            continue
        pads = tuple(tuple(int(p) for p in dim) for dim in layer.padding)
        for reader in lm.keras.outbound.get(name, []):
            geometry = _conv_geometry(lm.keras.layers[reader])
            own = lm.layers[reader].own_ops
            ops = [i for i in own if lm.graph.operators[i].opcode in _CONV_OPS]
            if geometry is None or not ops:
                continue
            padding = int(lm.graph.operators[ops[0]].options.get("padding", -1))
            if ir.PADDING.get(padding) != "SAME":
                continue
            strides, extents = geometry
            sizes = (int(shape[1]), int(shape[2]))
            same = tuple(_same_before(*args) for args in zip(sizes, strides, extents, strict=True))
            if all(p[0] == b for p, b in zip(pads, same, strict=True)):
                continue
            fixed = tuple(
                trimmed_padding(size, p[0], p[1], s, e)
                for size, p, s, e in zip(sizes, pads, strides, extents, strict=True)
            )
            found.append(
                PadStrideFinding(
                    reader,
                    f"LCE 0.16 merges ZeroPadding2D '{name}' (padding {pads}) into this "
                    f"stride-{strides[0]}x{strides[1]} conv as SAME padding, which on its "
                    f"{sizes[0]}x{sizes[1]} input pads {same[0]} row(s) and {same[1]} column(s) "
                    "first instead: every window is shifted and the outputs are wrong",
                    f"set ZeroPadding2D padding to {fixed} (the rows/columns dropped are never "
                    "read, so the outputs stay as trained and LCE keeps the PAD); or, to mean "
                    "SAME, drop it and use padding='same' on the conv (retrain)",
                )
            )
    return found
