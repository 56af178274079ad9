"""LCE's bitpacking: signs along the last axis packed into int32 words.

Element ``i`` of each group of 32 sits in bit ``i`` (least significant first);
bit 1 means -1 (``x < 0``), so 0.0 packs as +1; padding bits are 0.
"""

from __future__ import annotations

import numpy as np


def packed_words(channels: int) -> int:
    """``ceil(channels / 32)``: int32 words per bitpacked row."""
    return -(-channels // 32)


def pack_bits(x: np.ndarray) -> np.ndarray:
    """Pack the signs of ``x[..., C]`` into int32 ``[..., ceil(C/32)]``.

    >>> pack_bits(np.array([-1.0, 1.0, -0.5, 0.0])).tolist()
    [5]
    """
    x = np.asarray(x)
    channels = x.shape[-1]
    bits = np.zeros((*x.shape[:-1], packed_words(channels) * 32), dtype=bool)
    bits[..., :channels] = x < 0
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<i4").astype(np.int32)


def unpack_bits(words: np.ndarray, channels: int) -> np.ndarray:
    """Unpack int32 ``[..., W]`` words into ±1 float32 ``[..., channels]``.

    Raises:
        ValueError: if ``channels`` needs more or fewer than ``W`` words.
    """
    words = np.asarray(words)
    if words.shape[-1] != packed_words(channels):
        raise ValueError(
            f"{channels} channels pack into {packed_words(channels)} words, got {words.shape[-1]}"
        )
    as_bytes = np.ascontiguousarray(words, dtype="<i4").view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :channels]
    return (1.0 - 2.0 * bits).astype(np.float32)
