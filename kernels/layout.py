"""Packed page state (bit planes) and memory-bounded compaction batches.

The compaction model keeps one ``uint8`` code per PFN (kernels/zone.py: page kind in
bits 0-2, folio order in bits 3-6, compound-tail flag in bit 7). Six bit planes hold the
same information in 0.75 bytes per page, one bit per page each, as ``(Z, N / 64)``
``uint64`` words (bit ``i % 64`` of word ``i // 64`` is PFN ``i``, the layout of
kernels/bits.py and kernels.buddy.free_bitmap_words):

==============  =======================================  ===========================
plane           set for                                  kernel analogue
==============  =======================================  ===========================
``free``        FREE                                     PageBuddy (block or tail)
``movable``     MOVABLE, base pages and folio pages      PageLRU, movable
``pinned``      PINNED                                   LRU page with a GUP pin
``reclaimable`` RECLAIMABLE                              reclaimable slab
``head``        head page of a large folio (order >= 1)  PageHead
``tail``        tail page of a large folio               PageTail
==============  =======================================  ===========================

UNMOVABLE pages are the pages in none of the first four planes. The folio order is not
stored: folios are naturally aligned and never cross a pageblock (kernels/zone.py), so
the order of a head at PFN ``h`` is the largest ``k`` with ``h % 2**k == 0`` and pages
``h + 1 .. h + 2**k - 1`` all tails (the next page is not a tail of this folio), as
the kernel keeps the order beside PageHead rather than in every page
(include/linux/mm.h, folio_order()). Bytes per page (performance-notes.md 3.2):
``/proc/buddyinfo`` reads the free plane only, 0.125 B/page instead of 1; compaction's
page pass 1 needs free, movable, pinned, head and tail (0.625 B/page) instead of 1.

:func:`compact_node_chunked` runs :func:`kernels.compaction.compact_node` over groups of
zones sized from its measured peak working memory per page, so that a batch of any
size fits a memory budget (performance-notes.md 3.2, capacity).

Layer rule: array code only (NumPy or CuPy, namespace from the inputs); imports only
``kernels``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kernels.backend import Array, array_namespace, is_cupy, to_numpy
from kernels.buddy import _aligned_free
from kernels.compaction import CompactCounters, CompactParams, compact_node
from kernels.zone import (
    FREE,
    KIND_MASK,
    MAX_FOLIO_ORDER,
    MOVABLE,
    ORDER_SHIFT,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    RECLAIMABLE,
    TAIL_FLAG,
    UNMOVABLE,
    ZoneState,
)

WORD_BITS = 64
PLANES = ("free", "movable", "pinned", "reclaimable", "head", "tail")
BYTES_PER_PAGE = len(PLANES) / 8  # 0.75
BUDDYINFO_BYTES_PER_PAGE = 1 / 8  # the free plane

# Peak working memory of kernels.compaction.compact_node beyond its input, measured with
# tracemalloc (NumPy 2.4, v6_19, the benchmark's random_mix layout; see
# measure_compact_peak): 6.7-6.8 B/page on one 1 GiB zone, whose page passes run over the
# whole zone at once as they do on a GPU (4.4 B/page on a 128 GiB zone, where NumPy runs
# them in 1 M-page chunks; 5.8 B/page for v4_12), of which 1 B/page is the result. On top
# of that each zone costs about 58 KiB (the (Z, 512) stop-window arrays: 5.1 MB for
# 64 x 16 MiB zones, 9.3 MB for 64 x 64 MiB). The budget model rounds both up.
COMPACT_PEAK_BYTES_PER_PAGE = 7.0
COMPACT_PEAK_BYTES_PER_ZONE = 64 * 1024


def _chunks(xp: Any, total: int) -> list[tuple[int, int]]:
    """Bounds of page chunks over a flat page axis (multiples of a pageblock).

    NumPy: 1 M pages, so the per-page temporaries stay in cache (as
    kernels.compaction's page passes). CuPy: 256 M pages, so packing a batch of
    1000 x 128 GiB zones needs a few GiB of temporaries rather than a copy per plane.
    """
    step = 1 << 28 if is_cupy(xp) else 1 << 20
    return [(lo, min(lo + step, total)) for lo in range(0, total, step)]


@dataclasses.dataclass(frozen=True, slots=True)
class PackedZone:
    """Bit-plane page state of Z zones of N pages: six ``(Z, N / 64)`` uint64 planes."""

    free: Any
    movable: Any
    pinned: Any
    reclaimable: Any
    head: Any
    tail: Any

    @property
    def nr_zones(self) -> int:
        return int(self.free.shape[0])

    @property
    def nr_pages(self) -> int:
        return int(self.free.shape[1]) * WORD_BITS

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, name).nbytes) for name in PLANES)


def _check_page_state(page_state: Array) -> None:
    if getattr(page_state, "ndim", None) != 2 or page_state.dtype != np.uint8:
        raise ValueError(
            "page_state must be a (Z, N) uint8 array, got "
            f"{getattr(page_state, 'dtype', type(page_state))} of shape "
            f"{getattr(page_state, 'shape', None)}"
        )
    if page_state.shape[1] % PAGEBLOCK_NR_PAGES:
        raise ValueError(
            f"page_state has {page_state.shape[1]} pages per zone, not a whole number of "
            f"{PAGEBLOCK_NR_PAGES}-page pageblocks"
        )


def pack_planes(page_state: Array, *, check: bool = False) -> PackedZone:
    """Pack ``(Z, N)`` uint8 page states (kernels/zone.py codes) into bit planes.

    The input must be a valid zone state (codes of kernels/zone.py, folios naturally
    aligned and whole), as every kernel of this project produces. ``check=True`` unpacks
    the result again and raises ``ValueError`` naming the first page that does not
    survive the round trip (a code outside the encoding or a malformed folio); it costs
    an unpack and a compare.
    """
    _check_page_state(page_state)
    xp = array_namespace(page_state)
    z_n, n = page_state.shape
    flat = page_state.reshape(-1)
    out = {name: xp.empty(z_n * n // 8, dtype=xp.uint8) for name in PLANES}
    for lo, hi in _chunks(xp, z_n * n):
        c = flat[lo:hi]
        sl = slice(lo // 8, hi // 8)
        movable = (c & KIND_MASK) == MOVABLE
        tail = c >= TAIL_FLAG
        out["free"][sl] = xp.packbits(c == FREE, bitorder="little")
        out["movable"][sl] = xp.packbits(movable, bitorder="little")
        out["pinned"][sl] = xp.packbits(c == PINNED, bitorder="little")
        out["reclaimable"][sl] = xp.packbits(c == RECLAIMABLE, bitorder="little")
        out["head"][sl] = xp.packbits(movable & (c > MOVABLE) & ~tail, bitorder="little")
        out["tail"][sl] = xp.packbits(tail, bitorder="little")
    packed = PackedZone(
        **{k: v.view(xp.uint64).reshape(z_n, n // WORD_BITS) for k, v in out.items()}
    )
    if check:
        bad = unpack(packed) != page_state
        if bool(bad.any()):
            z, pfn = (int(i) for i in to_numpy(xp.argwhere(bad)[0]))
            raise ValueError(
                f"page_state[{z}, {pfn}] = {int(page_state[z, pfn])} cannot be packed: not a "
                "kernels/zone.py code or not part of a whole, naturally aligned folio"
            )
    return packed


def _folio_order(xp: Any, head: Array, tail: Array) -> Array:
    """Folio order of every page of a flat chunk (0 outside large folios), uint8.

    ``head``/``tail`` are bool, length a multiple of 512. An aligned 2**k group is an
    order->=k folio iff its first page is a head and all others are tails; the order of
    a page is the largest such k among the groups holding it (the group one size up
    starting at the same head holds a non-tail; one starting below holds the head).
    """
    order = xp.zeros(head.shape, dtype=xp.uint8)
    for k in range(1, MAX_FOLIO_ORDER + 1):
        size = 1 << k
        groups = tail.reshape(-1, size)
        folio = head[::size] & groups[:, 1:].all(axis=1)
        order = xp.where(xp.repeat(folio, size), xp.uint8(k), order)
    return order


def unpack(packed: PackedZone) -> Array:
    """``(Z, N)`` uint8 page states of a :class:`PackedZone` (inverse of pack_planes)."""
    xp = array_namespace(packed.free)
    z_n, n = packed.nr_zones, packed.nr_pages
    bits = {k: getattr(packed, k).reshape(-1).view(xp.uint8) for k in PLANES}
    out = xp.empty(z_n * n, dtype=xp.uint8)
    for lo, hi in _chunks(xp, z_n * n):
        sl = slice(lo // 8, hi // 8)
        b = {k: xp.unpackbits(v[sl], bitorder="little").astype(bool) for k, v in bits.items()}
        unmovable = ~(b["free"] | b["movable"] | b["pinned"] | b["reclaimable"])
        code = (
            b["movable"].astype(xp.uint8) * xp.uint8(MOVABLE)
            | unmovable.astype(xp.uint8) * xp.uint8(UNMOVABLE)
            | b["reclaimable"].astype(xp.uint8) * xp.uint8(RECLAIMABLE)
            | b["pinned"].astype(xp.uint8) * xp.uint8(PINNED)
        )
        order = _folio_order(xp, b["head"], b["tail"])
        code |= order << xp.uint8(ORDER_SHIFT)
        code |= b["tail"].astype(xp.uint8) << xp.uint8(7)
        out[lo:hi] = code
    return out.reshape(z_n, n)


def buddyinfo_packed(packed: PackedZone) -> Array:
    """``(Z, 11)`` int64 free blocks per order, reading only the free plane.

    Mirrors frag_show_print(), mm/vmstat.c (/proc/buddyinfo, kernel-model.md 9.1), equal
    to kernels.buddy.buddyinfo() of the unpacked state (same counting,
    ``count[k] = A(k) - 2 A(k + 1)``, on the same words).
    """
    return buddyinfo_words(packed.free)


def buddyinfo_words(free_words: Array) -> Array:
    """``(Z, 11)`` int64 free blocks per order from a ``(Z, N / 64)`` uint64 free plane
    (:attr:`PackedZone.free`, or kernels.buddy.free_bitmap_words of a uint8 state)."""
    xp = array_namespace(free_words)
    per_word, flags = _aligned_free(free_words)
    allfree = [c.sum(axis=1, dtype=xp.int64) for c in per_word]
    allfree += [f.sum(axis=1, dtype=xp.int64) for f in flags]
    counts = xp.stack(allfree, axis=1)
    counts[:, :-1] -= 2 * counts[:, 1:]
    return counts


def compaction_planes(packed: PackedZone, v6: bool, skip_pinned: Array) -> dict[str, Array]:
    """kernels.compaction's page-pass-1 planes computed from bit planes, not from bytes.

    The array twin of ``kernels.compaction._planes`` (same keys, same ``(Z, N / 8)``
    uint8 bytes) for a state kept packed: word operations on 0.625 B/page instead of
    five compares and packs over 1 B/page. ``suc`` in 6.19 leaves out order-9 THPs,
    which are never isolated (skip_isolation_on_order(), mm/compaction.c): a pageblock
    whose first page is a head and whose other 511 pages are tails.
    """
    xp = array_namespace(packed.free)
    z_n, w_n = packed.free.shape
    u8 = lambda words: words.view(xp.uint8)  # noqa: E731  (little-endian: same bytes)
    mov, tail, head = packed.movable, packed.tail, packed.head
    if v6:
        words = PAGEBLOCK_NR_PAGES // WORD_BITS
        hb = head.reshape(z_n, -1, words)
        tb = tail.reshape(z_n, -1, words)
        ones = xp.uint64(0xFFFFFFFFFFFFFFFF)
        thp = (
            ((hb[:, :, 0] & xp.uint64(1)) != 0)
            & (tb[:, :, 0] == (ones ^ xp.uint64(1)))
            & (tb[:, :, 1:] == ones).all(axis=2)
        )
        suc = mov & ~xp.repeat(xp.where(thp, ones, xp.uint64(0)), words, axis=1)
        unit_head = suc & ~tail
        pl = {
            "free": packed.free,
            "suc": suc,
            "pin": packed.pinned,
            "head": unit_head,
            "folio": unit_head & head,
        }
    else:
        pl = {"free": packed.free, "suc": mov & ~head & ~tail, "pin": packed.pinned, "tail": tail}
    pl = {k: u8(v) for k, v in pl.items()}
    keep = xp.where(xp.asarray(skip_pinned, dtype=bool).reshape(z_n), 0, 0xFF)
    keep = keep.astype(xp.uint8)[:, None]
    pl["pin_iso"] = pl["pin"] & keep
    pl["iso_head"] = (pl["head"] if v6 else pl["suc"]) | pl["pin_iso"]
    if v6:
        pl["drop"] = pl["pin"] & ~keep
    return pl


# --------------------------------------------------------------------------------------
# Memory-bounded compaction batches


def compact_peak_bytes(nr_zones: int, nr_pages: int) -> int:
    """Budget-model peak working memory of compact_node on ``nr_zones`` zones, in bytes."""
    return int(
        COMPACT_PEAK_BYTES_PER_PAGE * nr_zones * nr_pages + COMPACT_PEAK_BYTES_PER_ZONE * nr_zones
    )


def zones_per_chunk(nr_pages: int, max_bytes: int) -> int:
    """Most zones of ``nr_pages`` pages whose compaction fits ``max_bytes`` (>= 1)."""
    one = compact_peak_bytes(1, nr_pages)
    if max_bytes < one:
        raise ValueError(
            f"max_bytes={max_bytes} is below the working memory of one {nr_pages}-page zone "
            f"({one} bytes at {COMPACT_PEAK_BYTES_PER_PAGE} B/page + "
            f"{COMPACT_PEAK_BYTES_PER_ZONE} B/zone); a zone cannot be split"
        )
    return max_bytes // one


def compact_node_chunked(
    state: ZoneState, params: CompactParams, max_bytes: int, *, in_place: bool = False
) -> tuple[ZoneState, CompactCounters]:
    """compact_node() over groups of zones whose working memory fits ``max_bytes``.

    Mirrors compact_zone() as compact_node() calls it (mm/compaction.c), through
    :func:`kernels.compaction.compact_node`; zones are independent, so the result equals
    one call on the whole batch exactly. Each group's peak working memory beyond its
    input is at most ``max_bytes`` by the measured model
    (:data:`COMPACT_PEAK_BYTES_PER_PAGE`, :data:`COMPACT_PEAK_BYTES_PER_ZONE`). The
    result array is allocated once; with ``in_place=True`` each group's rows of
    ``state.page_state`` are overwritten instead (the input is consumed), so a batch
    needs one copy of its page states rather than two.
    """
    s = state.page_state
    _check_page_state(s)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int | np.integer):
        raise ValueError(f"max_bytes must be an integer number of bytes, got {max_bytes!r}")
    xp = array_namespace(s)
    z_n, n = s.shape
    step = zones_per_chunk(n, int(max_bytes))
    skip = xp.asarray(params.skip_pinned, dtype=bool).reshape(z_n)
    if step >= z_n and not in_place:
        return compact_node(state, dataclasses.replace(params, skip_pinned=skip))
    out = s if in_place else xp.empty_like(s)
    parts = []
    for lo in range(0, z_n, step):
        hi = min(lo + step, z_n)
        new, counters = compact_node(
            state[lo:hi], dataclasses.replace(params, skip_pinned=skip[lo:hi])
        )
        out[lo:hi] = new.page_state
        parts.append(counters)
        del new
    counters = CompactCounters(
        **{
            f.name: xp.concatenate([getattr(c, f.name) for c in parts])
            for f in dataclasses.fields(CompactCounters)
        }
    )
    return dataclasses.replace(state, page_state=out), counters


def measure_compact_peak(state: ZoneState, params: CompactParams) -> dict[str, float]:
    """Peak memory of one compact_node call beyond its input, by tracemalloc (NumPy only).

    Returns ``peak_bytes``, ``bytes_per_page`` and ``result_bytes_per_page`` (what is
    still allocated afterwards: the new page states).
    """
    import tracemalloc

    if array_namespace(state.page_state) is not np:
        raise ValueError("measure_compact_peak needs NumPy arrays (tracemalloc sees host memory)")
    pages = state.nr_zones * state.nr_pages
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        new, counters = compact_node(state, params)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    del new, counters
    return {
        "peak_bytes": float(peak - before),
        "bytes_per_page": (peak - before) / pages,
        "result_bytes_per_page": (current - before) / pages,
    }
