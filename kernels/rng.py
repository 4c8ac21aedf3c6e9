"""Counter-based random numbers: identical bits on NumPy and CuPy.

Every random value is a pure function of (seed, zone, stream, counter), computed with
wrapping ``uint64`` array arithmetic (the splitmix64 output function). There is no
generator state, so any single zone can be replayed alone and both backends give the
same bits. ``np.random`` / ``cupy.random`` are never used by the kernels
(style.md 2.6: their streams differ between backends and CuPy versions).

Conventions:

* ``seeds`` are ``(Z,)`` uint64, one per zone; the caller folds the replicate or zone id
  into it (:func:`zone_seed`), so a zone's values depend only on its own seed.
* ``stream`` separates independent uses within one zone (a small Python int).
* ``counter`` indexes the values within a stream.

Exact-count random choices ("exactly m of n items") sort random keys. The sorted values
are *sort words*: ``group | top key bits | item index``. They are unique, so the result
is the same on both backends, and a plain value sort is several times faster than an
argsort. :func:`random_runs` then cuts each row's random order into runs of given
lengths by comparing every word with the run boundaries' words, with no scatter.

Layer rule: pure array code; imports only :mod:`kernels.backend`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from kernels.backend import Array, array_namespace

U64 = np.uint64
GOLDEN_GAMMA = U64(0x9E3779B97F4A7C15)  # splitmix64 increment (2**64 / golden ratio)
_MIX1 = U64(0xBF58476D1CE4E5B9)
_MIX2 = U64(0x94D049BB133111EB)
_ZONE_SALT = U64(0xD6E8FEB86659FD93)
_STREAM_SALT = U64(0xA0761D6478BD642F)
_SEED_SALT = U64(0xE7037ED1A0B428DB)
_MASK64 = (1 << 64) - 1
_INV_2_53 = 1.0 / (1 << 53)
_MIN_KEY_BITS = 16


def _as_u64(xp: ModuleType, x: Any) -> Array:
    """``x`` as a uint64 array (signed inputs wrap modulo 2**64)."""
    if isinstance(x, int):
        return xp.asarray(x & _MASK64, dtype=xp.uint64)
    a = xp.asarray(x)
    return a if a.dtype == xp.uint64 else a.astype(xp.uint64)


def mix64(x: Array) -> Array:
    """splitmix64 output function (Stafford's "Mix13"); a bijection on uint64.

    ``mix64(GOLDEN_GAMMA)`` is the first output of splitmix64 seeded with 0
    (0xE220A8397B1DCDAF). Always returns a new array.
    """
    xp = array_namespace(x)
    x = xp.asarray(x, dtype=xp.uint64)
    if x.ndim == 0:  # NumPy 0-d results decay to scalars, whose overflow would warn
        return mix64(x.reshape(1)).reshape(())
    return _mix64_inplace(x.copy())


def _mix64_inplace(z: Array, tmp: Array | None = None) -> Array:
    """:func:`mix64` of ``z`` in place; ``tmp`` (same shape and dtype) avoids temporaries."""
    xp = array_namespace(z)
    for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, None)):
        if tmp is None:
            z ^= z >> U64(shift)
        else:
            xp.right_shift(z, U64(shift), out=tmp)
            z ^= tmp
        if multiplier is not None:
            z *= multiplier
    return z


def _sequence_base(xp: ModuleType, seed: Array, zone: Array, stream: Array) -> Array:
    """Start of the splitmix64 sequence selected by (seed, zone, stream); ndim >= 1."""
    base = mix64(seed ^ _SEED_SALT)
    base = mix64(base ^ mix64(zone + _ZONE_SALT))
    return mix64(base ^ mix64(stream + _STREAM_SALT))


def hash_u64(xp: ModuleType, seed: Any, zone: Any, stream: Any, counter: Any) -> Array:
    """Hash (seed, zone, stream, counter) to uint64; all four broadcast together.

    ``seed``, ``zone`` and ``stream`` select a splitmix64 sequence and ``counter`` indexes
    into it: ``mix64(base + (counter + 1) * GOLDEN_GAMMA)``. The per-sequence part is
    computed at the broadcast shape of the first three (e.g. ``(Z, 1)``), so a ``(Z, 1)``
    seed against an ``(n,)`` counter costs one mix per output.
    """
    values = [_as_u64(xp, v) for v in (seed, zone, stream, counter)]
    scalar = all(v.ndim == 0 for v in values)
    # NumPy 0-d results decay to scalars, whose wrapping arithmetic warns: work in >= 1-d.
    seed, zone, stream, counter = (v.reshape(1) if v.ndim == 0 else v for v in values)
    state = (counter + U64(1)) * GOLDEN_GAMMA
    z = _mix64_inplace(state + _sequence_base(xp, seed, zone, stream))
    return z.reshape(()) if scalar else z


def uniform01(xp: ModuleType, seed: Any, zone: Any, stream: Any, counter: Any) -> Array:
    """float64 in [0, 1) from the top 53 bits of :func:`hash_u64` (exact on both backends)."""
    h = hash_u64(xp, seed, zone, stream, counter)
    return (h >> U64(11)).astype(xp.float64) * _INV_2_53


def zone_seed(base_seed: int, replicate_ids: Any) -> Array:
    """Per-zone seeds ``(Z,)`` uint64 from a run's base seed and replicate/zone ids.

    The namespace follows ``replicate_ids`` (a CuPy array gives CuPy seeds).
    """
    xp = array_namespace(replicate_ids)
    ids = _as_u64(xp, replicate_ids)
    return hash_u64(xp, base_seed, 0, 0, ids).reshape(ids.shape)


def random_keys(xp: ModuleType, seeds: Array, stream: int, n: int) -> Array:
    """``(Z, n)`` uint64 keys with ``key[z, i] = hash_u64(seeds[z], 0, stream, i)``."""
    seeds = _as_u64(xp, seeds)
    return hash_u64(xp, seeds[:, None], 0, stream, xp.arange(n, dtype=xp.uint64))


def _word_layout(n: int, group_bits: int) -> tuple[int, int]:
    """``(index bits, key bits)`` of the sort words for ``n`` items."""
    idx_bits = max(1, (n - 1).bit_length())
    key_bits = 64 - group_bits - idx_bits
    if key_bits < _MIN_KEY_BITS:
        raise ValueError(f"{n} items with {group_bits} group bits leave too few random key bits")
    return idx_bits, key_bits


_INDEX_CHUNK = 512  # index fills broadcast (n / 512, 1) + (512,) instead of allocating arange(n)


def _index_parts(xp: ModuleType, n: int, offset: int = 0) -> tuple[Any, ...]:
    """Broadcastable pieces whose sum (equally, bitwise or) over ``(n / C, C)`` is the index.

    Writing ``arange(n)`` through these pieces avoids an ``n``-element temporary.
    """
    if n % _INDEX_CHUNK:
        return (xp.arange(offset, n + offset, dtype=xp.uint64),)
    hi = xp.arange(n // _INDEX_CHUNK, dtype=xp.uint64)[:, None] * U64(_INDEX_CHUNK) + U64(offset)
    return hi, xp.arange(_INDEX_CHUNK, dtype=xp.uint64)


def _chunked(words: Array) -> Array:
    """``(R, n)`` viewed as ``(R, n / C, C)`` when ``n`` is a multiple of the chunk."""
    rows, n = words.shape
    return words.reshape(rows, n // _INDEX_CHUNK, _INDEX_CHUNK) if n % _INDEX_CHUNK == 0 else words


def _compose_words(
    xp: ModuleType, words: Array, group: Array | None, group_bits: int, tmp: Array | None
) -> Array:
    """Turn ``(R, n)`` uint64 keys into sort words in place (module docstring)."""
    n = words.shape[-1]
    idx_bits, key_bits = _word_layout(n, group_bits)
    words >>= U64(64 - key_bits)
    words <<= U64(idx_bits)
    view = _chunked(words)
    for part in _index_parts(xp, n):  # bit fields do not overlap: or == add
        view |= part
    if group is not None:
        high = xp.empty(words.shape, dtype=xp.uint64) if tmp is None else tmp
        high[...] = group
        high <<= U64(64 - group_bits)
        words |= high
    return words


def sort_words(
    xp: ModuleType, keys: Array, group: Array | None = None, group_bits: int = 0
) -> Array:
    """``(R, n)`` uint64 sort words ``group | top key bits | index`` of given keys (a copy).

    Sorting a row of words orders its items by (group, key, index), i.e. a stable argsort
    of the keys truncated to their top ``64 - group_bits - ceil(log2 n)`` bits, with
    ``group`` (small unsigned ints < 2**group_bits, or bools) first.
    """
    return _compose_words(xp, keys.astype(xp.uint64), group, group_bits, None)


def random_words(
    xp: ModuleType,
    seeds: Array,
    stream: int,
    n: int,
    group: Array | None = None,
    group_bits: int = 0,
    *,
    scratch: Array | None = None,
) -> Array:
    """``sort_words(xp, random_keys(xp, seeds, stream, n), group, group_bits)``, in place.

    Generates the keys in the ``(Z, n)`` result buffer with one ``(Z, n)`` uint64
    scratch buffer (given, or allocated and dropped) and no other ``n``-sized
    temporaries: about 16 bytes per item for the very large zones.
    """
    seeds = _as_u64(xp, seeds)
    stream = _as_u64(xp, stream).reshape(1)
    base = _sequence_base(xp, seeds[:, None], xp.zeros(1, dtype=xp.uint64), stream)  # (Z, 1)
    words = xp.empty((seeds.shape[0], n), dtype=xp.uint64)
    view = _chunked(words)
    parts = _index_parts(xp, n, offset=1)  # counter + 1
    view[...] = parts[0]
    for part in parts[1:]:
        view += part
    words *= GOLDEN_GAMMA
    words += base
    tmp = xp.empty_like(words) if scratch is None else scratch
    _mix64_inplace(words, tmp)
    return _compose_words(xp, words, group, group_bits, tmp)


def order_from_words(words: Array) -> Array:
    """Per-row item order ``(R, n)`` int64 from sort words (sorted copy, index bits)."""
    xp = array_namespace(words)
    idx_bits, _ = _word_layout(words.shape[-1], 0)
    ordered = xp.sort(words, axis=-1)
    ordered &= U64((1 << idx_bits) - 1)
    return ordered.view(xp.int64)


def keyed_order(
    xp: ModuleType, keys: Array, group: Array | None = None, group_bits: int = 0
) -> Array:
    """Per-row order of items sorted by (group, key, index): ``(R, n)`` int64 item indices."""
    return order_from_words(sort_words(xp, keys, group, group_bits))


def runs_from_words(words: Array, lengths: Any, *, scratch: Array | None = None) -> Array:
    """``(R, n)`` uint8 run index: each row's items, in sort-word order, cut into runs.

    ``lengths`` ``(R, K)`` (K <= 255) gives each run's length, in order; a row's lengths
    should sum to ``n`` (items past the sum join the last run). Item i of row r is in run
    j iff its rank in the sorted row lies in ``[sum(lengths[r, :j]), sum(lengths[r, :j+1]))``.
    This is computed as the number of run boundaries whose last word is below the
    item's word, so the row is sorted once (a copy, into ``scratch`` if given) and never
    scattered.
    """
    xp = array_namespace(words)
    nr_rows, n = words.shape
    lengths = xp.asarray(lengths, dtype=xp.int64)
    ends = xp.cumsum(lengths, axis=1)[:, :-1]  # (R, K - 1) run boundaries (ranks)
    if scratch is None:
        ordered = xp.sort(words, axis=-1)
    else:
        ordered = scratch.reshape(words.shape)
        ordered[...] = words
        ordered.sort(axis=-1)
    last_before = xp.take_along_axis(ordered, xp.clip(ends - 1, 0, n - 1), axis=1)
    del ordered
    at_start = ends <= 0  # an empty prefix: every item is past this boundary
    run = xp.zeros((nr_rows, n), dtype=xp.uint8)
    past = xp.empty((nr_rows, n), dtype=bool)
    for j in range(ends.shape[1]):
        xp.greater(words, last_before[:, j : j + 1], out=past)
        past |= at_start[:, j : j + 1]
        run += past.view(xp.uint8)
    return run


def random_runs(
    xp: ModuleType,
    seeds: Array,
    stream: int,
    lengths: Any,
    group: Array | None = None,
    group_bits: int = 0,
) -> Array:
    """``(Z, n)`` uint8: exactly ``lengths[z, j]`` items of row z in run j, at random.

    With ``group``, the runs are filled group by group (group 0 first), each group's
    items in random order: a run boundary placed at a group's size confines runs to it.
    ``n`` is the sum of each row of ``lengths``.
    """
    lengths_host = np.asarray(lengths.get() if hasattr(lengths, "get") else lengths, dtype=np.int64)
    n = int(lengths_host[0].sum())
    seeds = _as_u64(xp, seeds)
    scratch = xp.empty((seeds.shape[0], n), dtype=xp.uint64)
    words = random_words(xp, seeds, stream, n, group, group_bits, scratch=scratch)
    return runs_from_words(words, lengths, scratch=scratch)


def choose_exact(xp: ModuleType, keys: Array, m: Array) -> Array:
    """``(Z, n)`` bool mask selecting exactly ``min(m[z], n)`` items of each row at random.

    The chosen items are those with the ``m[z]`` smallest keys (ties broken by index).
    """
    n = keys.shape[1]
    m = xp.clip(xp.asarray(m, dtype=xp.int64), 0, n)
    return runs_from_words(sort_words(xp, keys), xp.stack([m, n - m], axis=1)) == 0
