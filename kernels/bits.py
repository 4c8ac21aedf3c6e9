"""Bit-plane helpers shared by the batched kernels: packing, popcount, bit select.

Bit planes are packed little-endian (bit i of byte j is page 8*j + i), so a ``uint32``
view holds one 32-page window and a ``uint64`` view one 64-page word on a
little-endian host (x86-64 and every CUDA device).
"""

from __future__ import annotations

import functools
from typing import Any

_M1 = 0x5555555555555555
_M2 = 0x3333333333333333
_M4 = 0x0F0F0F0F0F0F0F0F
_H01 = 0x0101010101010101


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


_L8 = 0x0101010101010101
_H8 = 0x8080808080808080


_SELECT_IN_BYTE = [0] * 2048  # position of the k-th set bit of byte value b at [8 b + k]
for _b in range(256):
    for _k, _bit in enumerate(i for i in range(8) if _b >> i & 1):
        _SELECT_IN_BYTE[8 * _b + _k] = _bit
_BYTE_POPCOUNT = [bin(b).count("1") for b in range(256)]


@functools.cache
def _byte_tables(xp: Any) -> tuple[Any, Any]:
    """(select-in-byte table, byte popcounts) as int64 arrays of backend ``xp``, built once."""
    return xp.asarray(_SELECT_IN_BYTE, dtype=xp.int64), xp.asarray(_BYTE_POPCOUNT, dtype=xp.int64)


def select_bit(xp: Any, words: Any, rank: Any) -> Any:
    """Index of the ``rank``-th (0-based) set bit of each uint64 word, int64.

    Broadword select (S. Vigna, "Broadword implementation of rank/select queries",
    2008): SWAR byte popcounts, their running sums by one multiply, a bytewise compare
    to find the byte, and a 2048-entry table for the bit inside it. ``rank`` must be
    smaller than the word's popcount.
    """
    u64 = xp.uint64
    x = words.astype(u64)
    r = xp.asarray(rank).astype(u64)
    c = x - ((x >> u64(1)) & u64(_M1))
    c = (c & u64(_M2)) + ((c >> u64(2)) & u64(_M2))
    c = (c + (c >> u64(4))) & u64(_M4)
    cum = c * u64(_L8)  # byte i: set bits in bytes 0..i
    above = ((cum | u64(_H8)) - (r + u64(1)) * u64(_L8)) & u64(
        _H8
    )  # bytes whose running sum > rank
    # (clamped so that an out-of-range rank still yields an in-range position)
    byte_idx = xp.minimum(u64(8) - popcount(xp, above).astype(u64), u64(7))
    shift = byte_idx * u64(8)
    before = ((cum << u64(8)) >> shift) & u64(0xFF)
    byte = (x >> shift) & u64(0xFF)
    k = (r - before).astype(xp.int64)
    table, _ = _byte_tables(xp)
    return shift.astype(xp.int64) + table[byte.astype(xp.int64) * 8 + xp.clip(k, 0, 7)]


def set_bit_positions(xp: Any, packed: Any) -> tuple[Any, Any]:
    """Every set bit of a packed (Z, M) uint8 plane (M a multiple of 8): (row, bit index).

    Finds the non-zero 64-bit words first (few, for sparse planes), then their
    non-zero bytes, then expands each byte with lookup tables.
    """
    z_n = packed.shape[0]
    words = packed.view(xp.uint64).reshape(z_n, -1)
    zw, wi = xp.nonzero(words)
    as_bytes = xp.ascontiguousarray(words[zw, wi]).view(xp.uint8)  # 8 bytes per word
    nzb = xp.flatnonzero(as_bytes)
    val = as_bytes[nzb].astype(xp.int64)
    row = zw[nzb // 8]
    first_bit = wi[nzb // 8].astype(xp.int64) * 64 + (nzb % 8) * 8
    table, pop = _byte_tables(xp)
    cnt = pop[val]
    rep, k = repeat_index(xp, cnt)
    bit = table[val[rep] * 8 + k]
    return row[rep], first_bit[rep] + bit


def repeat_index(xp: Any, counts: Any) -> tuple[Any, Any]:
    """For counts c_i: the index i repeated c_i times, and 0..c_i-1 within each repeat.

    Portable ``repeat(arange(n), counts)`` (CuPy's repeat takes no array of counts).
    """
    ends = xp.cumsum(counts)
    total = int(ends[-1]) if counts.shape[0] else 0
    pos = xp.arange(total, dtype=xp.int64)
    idx = xp.searchsorted(ends, pos, side="right")
    return idx, pos - (ends - counts)[idx]


def lowest_bit(xp: Any, words: Any) -> Any:
    """Index of the lowest set bit of each uint64 word (64 for zero), int64."""
    w = words.astype(xp.uint64)
    isolated = w & (~w + xp.uint64(1))
    n = popcount(xp, isolated - xp.uint64(1)).astype(xp.int64)
    return xp.where(w == 0, 64, n)
