"""Bit-plane helpers shared by the batched kernels: packing, popcount, bit select.

Bit planes are packed little-endian (bit i of byte j is page 8*j + i), so a ``uint32``
view holds one 32-page window and a ``uint64`` view one 64-page word on a
little-endian host (x86-64 and every CUDA device).
"""

from __future__ import annotations

from typing import Any

_M1 = 0x5555555555555555
_M2 = 0x3333333333333333
_M4 = 0x0F0F0F0F0F0F0F0F
_H01 = 0x0101010101010101


def pack_bits(xp: Any, mask: Any) -> Any:
    """Pack a boolean (..., M) array into (..., M // 8) uint8, little bit order."""
    return xp.packbits(mask, axis=-1, bitorder="little")


def popcount(xp: Any, words: Any) -> Any:
    """Number of set bits of each unsigned integer (any unsigned dtype), as uint8.

    Uses ``xp.bitwise_count`` where the backend has it, else the SWAR popcount
    (Hacker's Delight 5-2), which gives the same bits on every backend.
    """
    if hasattr(xp, "bitwise_count"):
        return xp.bitwise_count(words)
    x = words.astype(xp.uint64)
    x = x - ((x >> xp.uint64(1)) & xp.uint64(_M1))
    x = (x & xp.uint64(_M2)) + ((x >> xp.uint64(2)) & xp.uint64(_M2))
    x = (x + (x >> xp.uint64(4))) & xp.uint64(_M4)
    return ((x * xp.uint64(_H01)) >> xp.uint64(56)).astype(xp.uint8)


def select_bit(xp: Any, words: Any, rank: Any) -> Any:
    """Index of the ``rank``-th (0-based) set bit of each uint64 word, by bisection.

    ``rank`` must be smaller than the word's popcount; returns int64.
    """
    w = words.astype(xp.uint64)
    r = xp.asarray(rank).astype(xp.int64)
    pos = xp.zeros(w.shape, dtype=xp.int64)
    for half in (32, 16, 8, 4, 2, 1):
        low = w & xp.uint64((1 << half) - 1)
        n_low = popcount(xp, low).astype(xp.int64)
        go_high = r >= n_low
        r = xp.where(go_high, r - n_low, r)
        pos = xp.where(go_high, pos + half, pos)
        w = xp.where(go_high, w >> xp.uint64(half), low)
    return pos


def lowest_bit(xp: Any, words: Any) -> Any:
    """Index of the lowest set bit of each uint64 word (64 for zero), int64."""
    w = words.astype(xp.uint64)
    isolated = w & (~w + xp.uint64(1))
    n = popcount(xp, isolated - xp.uint64(1)).astype(xp.int64)
    return xp.where(w == 0, 64, n)
