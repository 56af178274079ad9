"""Custom operator options: flexbuffers maps, as LCE's ops use them.

LCE ops keep their attributes in a flexbuffers map of scalars, e.g.
``LceBconv2d``: ``{"channels_in": 64, "padding": 0, "stride_height": 1, ...}``.
"""

from __future__ import annotations

import struct
from typing import Any

from flatbuffers import flexbuffers

LCE_OPTIONS: dict[str, tuple[str, ...]] = {
    "LceBconv2d": (
        "channels_in",
        "dilation_height_factor",
        "dilation_width_factor",
        "fused_activation_function",
        "pad_values",
        "padding",
        "stride_height",
        "stride_width",
    ),
    "LceBMaxPool2d": ("filter_height", "filter_width", "padding", "stride_height", "stride_width"),
    "LceQuantize": (),
    "LceDequantize": (),
}
"""The option names of each LCE op (all ints; LCE's op documentation gives their meaning)."""

Scalar = bool | int | float | str

# LCE's maps have at most 8 keys in ~200 bytes; anything far larger stays raw bytes.
_MAX_DECODED_BYTES = 4096
_MAX_DECODED_KEYS = 64


def decode_custom_options(raw: bytes) -> dict[str, Scalar] | None:
    """Decode a flexbuffers map of scalars; None if ``raw`` is anything else.

    Only small flat maps are decoded: nested vectors and maps could be a DAG
    whose expansion is exponential in the size of the bytes, and the
    flexbuffers reader copies the rest of the buffer to find each key's end.
    """
    if len(raw) > _MAX_DECODED_BYTES:
        return None
    try:
        root = flexbuffers.GetRoot(bytes(raw))
        if not root.IsMap:
            return None
        mapping = root.AsMap
        n = len(mapping)
        if n > _MAX_DECODED_KEYS:
            return None
        keys, values = mapping.Keys, mapping.Values
        out: dict[str, Scalar] = {}
        for i in range(n):
            value = values[i]
            if value.IsBool:
                out[keys[i].AsKey] = value.AsBool
            elif value.IsInt:
                out[keys[i].AsKey] = value.AsInt
            elif value.IsFloat:
                out[keys[i].AsKey] = value.AsFloat
            elif value.IsString:
                out[keys[i].AsKey] = value.AsString
            else:
                return None
        return out
    # What flexbuffers' reader raises on bytes that are not what they claim;
    # KeyError: a zero-length slice looked up in its byte-width table.
    except (struct.error, ValueError, IndexError, KeyError, OverflowError, RecursionError):
        return None


def encode_custom_options(options: dict[str, Any]) -> bytes:
    """Encode a map of scalars as flexbuffers (numpy scalars become Python ones)."""
    plain: dict[str, Scalar] = {}
    for key, value in options.items():
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"custom option {key!r} must be a scalar, got {value!r}")
        plain[str(key)] = value
    return bytes(flexbuffers.Dumps(plain))


def check_lce_options(opcode: str, options: dict[str, Any]) -> None:
    """Raise ValueError unless ``options`` has exactly the LCE op's option names."""
    expected = set(LCE_OPTIONS[opcode])
    if set(options) != expected:
        raise ValueError(f"{opcode} options must be {sorted(expected)}, got {sorted(options)}")
