"""Zones synthesised from /proc/buddyinfo and /proc/zoneinfo when kpageflags is unreadable.

Without root, the page layout is not visible. What is visible: each zone's span,
present and managed pages, watermarks, the free blocks per order (/proc/buddyinfo),
the zone and node counters of /proc/zoneinfo (LRU, slab, page tables, kernel stacks)
and, if readable, the pageblock counts per type (/proc/pagetypeinfo). A synthesised
zone matches all of that exactly, and its free blocks are exactly buddyinfo's; how the
pages are arranged inside the pageblocks is made up, from a seed.

Construction (every step vectorised; loops run over orders only):

1. **Free blocks** (greedy, order 10 down to 0; :func:`_place_free`). A free block of
   order k < 10 must have a non-free page in its buddy, or the buddy allocator would
   have merged the two. Each order takes naturally aligned slots whose pages are all
   still available: first slots whose buddy already holds a non-free page, then slots
   whose buddy gets one of its pages reserved as a non-free *witness* (the page
   farthest from the block, so the rest of the buddy stays usable for smaller blocks).
   Among equals the slots are drawn at random (seeded), so big blocks are spread over
   the zone and small ones settle next to non-free pages, as in the staircase
   ``[allocated][order 0][order 1][order 2]...`` that one allocated page can serve.
2. **Holes and reserved pages.** Holes (spanned - present) and reserved pages
   (present - managed) sit at the top of the span (holes highest) when the free blocks
   fit below them all; a zone that is nearly all free needs non-free pages between its
   free blocks, so then as many as allow it stay at the top (whole pageblocks fewer at
   a time) and the rest are the highest non-free pages below.
3. **Kinds.** The allocated pages (managed - free) are movable, reclaimable and
   unmovable in the proportions of the zoneinfo counters (LRU pages for movable; slab
   reclaimable; slab unreclaimable, page tables, kernel stacks and the unaccounted rest
   for unmovable); node counters are shared among the node's zones by their non-LRU
   allocated pages. Pageblock types: pageblocks holding free pages are MOVABLE, the
   counts of pagetypeinfo (else ``ceil(pages / 512)`` per non-movable kind) are drawn
   from the allocated pageblocks, and each kind fills the pageblocks of its own type
   first (the overflow goes elsewhere at random).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from kernels import buddy
from kernels.rng import hash_u64
from kernels.zone import (
    FREE,
    MAX_PAGE_ORDER,
    MOVABLE,
    NR_PAGE_ORDERS,
    PAGEBLOCK_NR_PAGES,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
)
from sweep.snapshot.file import SnapshotError, ZoneArrays, free_pages, zone_extent
from sweep.snapshot.procfs import ZoneInfo

SYNTH_NOTE = "page layout inside pageblocks is synthesised from /proc/buddyinfo"

# Random streams (kernels.rng): one per independent choice.
_STREAM_TYPES = 200  # and 201
_STREAM_KINDS = 202
# Pageblock types drawn from the wholly allocated pageblocks, in this order.
_TYPED = (
    MigrateType.UNMOVABLE,
    MigrateType.RECLAIMABLE,
    MigrateType.HIGHATOMIC,
    MigrateType.ISOLATE,
    MigrateType.CMA,
)

_LRU_COUNTERS = (
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
)
_RECLAIMABLE_COUNTERS = ("nr_slab_reclaimable", "nr_kernel_misc_reclaimable")
_UNMOVABLE_COUNTERS = ("nr_slab_unreclaimable", "nr_page_table_pages", "nr_sec_page_table_pages")
_KB_COUNTERS = ("nr_kernel_stack",)  # in KiB


@dataclasses.dataclass(frozen=True)
class KindCounts:
    """Allocated pages of a zone by kind (they sum to managed - free)."""

    movable: int
    reclaimable: int
    unmovable: int


def allocation_kinds(
    zones: Sequence[ZoneInfo], buddyinfo: Mapping[tuple[int, str], np.ndarray]
) -> dict[tuple[int, str], KindCounts]:
    """Allocated pages per kind of each zone, from the zoneinfo counters.

    Movable: the zone's LRU counters (capped at its allocated pages). The rest is
    kernel memory: reclaimable slab (+ nr_kernel_misc_reclaimable) is reclaimable and
    everything else unmovable. Node counters (6.x) go to the node's zones in
    proportion to their non-LRU allocated pages; zone counters (4.12) stay in the zone.
    When the counters name more kernel pages than the zone has, they are scaled down.
    """
    out: dict[tuple[int, str], KindCounts] = {}
    allocated: dict[tuple[int, str], tuple[int, int]] = {}
    kernel_by_node: dict[int, int] = {}
    for z in zones:
        key = (z.node, z.name)
        free = free_pages(buddyinfo.get(key, np.zeros(NR_PAGE_ORDERS, np.int64)))
        total = max(0, z.managed - free)
        lru = sum(z.stats.get(name, 0) for name in _LRU_COUNTERS)
        movable = min(lru, total)
        allocated[key] = (total, movable)
        kernel_by_node[z.node] = kernel_by_node.get(z.node, 0) + total - movable
    for z in zones:
        key = (z.node, z.name)
        total, movable = allocated[key]
        kernel = total - movable

        def counter(names: Sequence[str], z: ZoneInfo = z, kernel: int = kernel) -> float:
            value = 0.0
            for name in names:
                if name in z.stats:  # a zone counter (4.12)
                    value += z.stats[name]
                elif name in z.node_stats and kernel_by_node[z.node]:
                    value += z.node_stats[name] * kernel / kernel_by_node[z.node]
            return value

        reclaimable = counter(_RECLAIMABLE_COUNTERS)
        unmovable = counter(_UNMOVABLE_COUNTERS) + counter(_KB_COUNTERS) / 4
        if reclaimable + unmovable > kernel:
            reclaimable = kernel * reclaimable / (reclaimable + unmovable)
        nr_reclaimable = min(kernel, int(round(reclaimable)))
        out[key] = KindCounts(movable, nr_reclaimable, kernel - nr_reclaimable)
    return out


def _keys(seed: int, zone_index: int, stream: int, n: int) -> np.ndarray:
    return hash_u64(np, seed, zone_index, stream, np.arange(n, dtype=np.uint64)).reshape(n)


def _random_order(seed: int, zone_index: int, stream: int, items: np.ndarray) -> np.ndarray:
    """``items`` in a seeded random order (keys hashed from the item values)."""
    items = np.asarray(items, dtype=np.int64)
    keys = hash_u64(np, seed, zone_index, stream, items.astype(np.uint64)).reshape(items.size)
    return items[np.argsort(keys, kind="stable")]


_WORD_OF_ONES = (
    np.uint8(1),
    np.uint16(0x0101),
    np.uint32(0x01010101),
    np.uint64(0x0101010101010101),
)
_WORD_TYPES = (np.uint8, np.uint16, np.uint32, np.uint64)


def _slots(mask: np.ndarray, k: int, *, every: bool) -> np.ndarray:
    """Per naturally aligned ``2**k``-page slot: are all (``every``) / any of its pages set?

    Reads 1, 2, 4 or 8 bools as one word, then halves: no reductions over short rows.
    """
    j = min(k, 3)
    words = mask.view(np.uint8).view(_WORD_TYPES[j])
    flags = words == _WORD_OF_ONES[j] if every else words != 0
    for _ in range(j, k):
        even, odd = flags[0 : flags.size // 2 * 2 : 2], flags[1 : flags.size // 2 * 2 : 2]
        flags = (even & odd) if every else (even | odd)  # an incomplete last slot drops
    return flags


def _buddy_flags(flags: np.ndarray, beyond: bool) -> np.ndarray:
    """``flags`` of each slot's buddy (slot ``i ^ 1``); ``beyond`` for a last odd slot."""
    out = np.empty_like(flags)
    even = flags.size // 2 * 2
    out[0:even:2] = flags[1:even:2]
    out[1:even:2] = flags[0:even:2]
    if flags.size % 2:
        out[-1] = beyond
    return out


def _place_free(
    counts: np.ndarray, usable: np.ndarray, seed: int, zone_index: int
) -> np.ndarray | None:
    """Free mask ``(N,)`` with exactly ``counts[k]`` free blocks of each order, or None.

    Greedy from order 10 down (module docstring, step 1). Free pages go only on
    ``usable`` PFNs; the others are *fixed* non-free pages. A free block of order k < 10
    needs a non-free page in its buddy, so that it cannot merge. Candidate slots (naturally
    aligned, every page still available), in order of preference:

    1. the buddy already holds a fixed page (no cost);
    2. the buddy holds no fixed page but some available ones, not all: one of those (the
       farthest from the block) becomes a fixed non-free *witness*;
    3. both halves of a pair are available: one half, chosen at random, is the block and
       the far end of the other half its witness.

    Among equals the choice is random (seeded). Slots whose buddy is all free pages are
    never taken. Returns None when some order finds too few slots.
    """
    nr_pages = usable.size
    avail = usable.copy()  # may still become free
    fixed = ~usable  # will be non-free
    free = np.zeros(nr_pages, dtype=bool)
    for k in range(MAX_PAGE_ORDER, -1, -1):
        need = int(counts[k])
        if need == 0:
            continue
        size = 1 << k
        nr_slots = nr_pages // size
        slot_avail = _slots(avail, k, every=True)
        stream = 16 * k
        if k == MAX_PAGE_ORDER:  # no merging above MAX_PAGE_ORDER
            ranked = [_random_order(seed, zone_index, stream, np.flatnonzero(slot_avail))]
            witness_of = [False]
        else:
            slot_fixed = _slots(fixed, k, every=False)
            slot_some = _slots(avail, k, every=False)
            # A slot without a buddy in the array has it outside the zone: non-free.
            buddy_fixed = _buddy_flags(slot_fixed, True)
            cheap = slot_avail & buddy_fixed
            single = (
                slot_avail
                & ~buddy_fixed
                & _buddy_flags(slot_some, False)
                & ~_buddy_flags(slot_avail, False)
            )
            nr_pairs = nr_slots // 2
            pairs = np.flatnonzero(
                slot_avail[0 : 2 * nr_pairs : 2] & slot_avail[1 : 2 * nr_pairs : 2]
            )
            side = (_keys(seed, zone_index, stream + 1, pairs.size) & np.uint64(1)).astype(int)
            ranked = [
                _random_order(seed, zone_index, stream + 2, np.flatnonzero(cheap)),
                _random_order(seed, zone_index, stream + 3, np.flatnonzero(single)),
                _random_order(seed, zone_index, stream + 4, 2 * pairs + side),
            ]
            witness_of = [False, True, True]
        taken = []
        for group, needs_witness in zip(ranked, witness_of, strict=True):
            chosen = group[: need - sum(t.size for t in taken)]
            taken.append(chosen)
            if not needs_witness or chosen.size == 0:
                continue
            # The witness: the buddy's available page farthest from the block.
            low = chosen % 2 == 0  # the block is the lower half: its buddy is above
            bud = chosen ^ 1
            rows = avail[bud[:, None] * size + np.arange(size)]
            last = size - 1 - np.argmax(rows[:, ::-1], axis=1)
            witness = bud * size + np.where(low, last, np.argmax(rows, axis=1))
            avail[witness] = False
            fixed[witness] = True
        chosen = np.concatenate(taken)
        if chosen.size < need:
            return None
        mask = np.zeros(nr_slots, dtype=bool)
        mask[chosen] = True
        pages = np.flatnonzero(np.repeat(mask, size))
        free[pages] = True
        avail[pages] = False
    return free


def _block_type_counts(
    kinds: KindCounts, block_totals: Mapping[str, int] | None
) -> dict[MigrateType, int]:
    """Pageblocks wanted per type: pagetypeinfo's counts, else the kinds' pages / 512."""
    if block_totals is not None:
        names = {t.name.lower(): t for t in MigrateType}
        out = {t: 0 for t in MigrateType}
        for name, value in block_totals.items():
            mt = names.get(name.lower(), MigrateType.MOVABLE)
            out[mt] += int(value)
        return out
    out = {t: 0 for t in MigrateType}
    out[MigrateType.UNMOVABLE] = -(-kinds.unmovable // PAGEBLOCK_NR_PAGES)
    out[MigrateType.RECLAIMABLE] = -(-kinds.reclaimable // PAGEBLOCK_NR_PAGES)
    return out


def synthesise_zone(
    info: ZoneInfo,
    buddyinfo: np.ndarray,
    kinds: KindCounts,
    *,
    seed: int = 0,
    zone_index: int = 0,
    block_totals: Mapping[str, int] | None = None,
) -> ZoneArrays:
    """A zone whose free blocks are exactly ``buddyinfo`` and whose counts are zoneinfo's.

    See the module docstring. ``zone_index`` separates the random streams of the zones
    of one snapshot. Raises :class:`SnapshotError` when the numbers cannot all hold
    (more free pages than managed ones, or no room for the free blocks).
    """
    label = f"zone {info.node}:{info.name}"
    counts = np.asarray(buddyinfo, dtype=np.int64)
    if counts.shape != (NR_PAGE_ORDERS,) or (counts < 0).any():
        raise SnapshotError(f"{label}: buddyinfo must be {NR_PAGE_ORDERS} counts >= 0")
    nr_free = free_pages(counts)
    start, spanned, present, managed = info.start_pfn, info.spanned, info.present, info.managed
    if start < 0 or not 0 <= managed <= present <= spanned:
        raise SnapshotError(
            f"{label}: zoneinfo sizes are inconsistent (start_pfn {start}, spanned {spanned}, "
            f"present {present}, managed {managed})"
        )
    if nr_free > managed:
        raise SnapshotError(
            f"{label}: /proc/buddyinfo has {nr_free} free pages, more than the {managed} "
            "managed pages of /proc/zoneinfo"
        )
    base, nr_pages = zone_extent(start, spanned)
    lo, hi = start - base, start + spanned - base  # the span, as array offsets

    def span_part(first: int, end: int) -> np.ndarray:
        """Mask of the array offsets ``[first, end)``."""
        mask = np.zeros(nr_pages, dtype=bool)
        mask[first:end] = True
        return mask

    in_span = span_part(lo, hi)
    notes: list[str] = []

    # Holes and reserved pages at the top of the span: all of them if the free blocks fit
    # below, else as many as allow it (whole pageblocks fewer at a time).
    nr_hole, nr_reserved = spanned - present, present - managed

    def place(at_top: int) -> np.ndarray | None:
        usable = span_part(lo, hi - at_top)
        return _place_free(counts, usable, seed, zone_index)

    at_top = nr_hole + nr_reserved
    free = place(at_top)
    if free is None:
        fits, fails = 0, -(-at_top // PAGEBLOCK_NR_PAGES)  # in pageblocks
        free = place(0)
        if free is None:
            raise SnapshotError(
                f"{label}: no room for the free blocks of /proc/buddyinfo "
                f"({' '.join(str(int(c)) for c in counts)}) in {spanned} pages"
            )
        while fails - fits > 1:
            mid = (fits + fails) // 2
            if place(mid * PAGEBLOCK_NR_PAGES) is None:
                fails = mid
            else:
                fits = mid
        at_top = fits * PAGEBLOCK_NR_PAGES
        free = place(at_top)
        notes.append(
            f"{label}: {nr_hole + nr_reserved - at_top} of the {nr_hole + nr_reserved} hole "
            "and reserved pages are the highest non-free pages below the top of the span, "
            "between the free blocks (these do not fit below them all)"
        )

    # Pageblocks kept wholly allocated for the non-movable types (free pages stay in
    # MOVABLE pageblocks): as many as wanted and the allocated pages fill, if the free
    # blocks still fit around them.
    nr_blocks = nr_pages // PAGEBLOCK_NR_PAGES
    wanted = _block_type_counts(kinds, block_totals)
    nr_typed = sum(wanted[t] for t in _TYPED if t != MigrateType.CMA)
    nr_typed = min(nr_typed, (managed - nr_free) // PAGEBLOCK_NR_PAGES)
    usable_blocks = span_part(lo, hi - at_top).reshape(nr_blocks, PAGEBLOCK_NR_PAGES).all(axis=1)
    spare = _random_order(seed, zone_index, _STREAM_TYPES, np.flatnonzero(usable_blocks))
    nr_typed = min(nr_typed, spare.size)

    def place_typed(nr: int) -> np.ndarray | None:
        usable = span_part(lo, hi - at_top)
        usable.reshape(nr_blocks, PAGEBLOCK_NR_PAGES)[spare[:nr]] = False
        return _place_free(counts, usable, seed, zone_index)

    typed_free = place_typed(nr_typed) if nr_typed else free
    if typed_free is None:
        fits, fails = 0, nr_typed
        while fails - fits > 1:
            mid = (fits + fails) // 2
            if place_typed(mid) is None:
                fails = mid
            else:
                fits = mid
        nr_typed = fits
        typed_free = place_typed(nr_typed)
    free = typed_free
    typed_first = spare[:nr_typed]

    nonfree = in_span & ~free
    top_first = hi - at_top
    hole_in = span_part(hi - min(at_top, nr_hole), hi)
    reserved = span_part(top_first, hi - min(at_top, nr_hole))
    # The rest of the holes, then of the reserved pages: the highest non-free pages below.
    below = np.flatnonzero(nonfree[:top_first])[::-1]
    rest_hole = nr_hole - min(at_top, nr_hole)
    rest_reserved = nr_reserved - (at_top - min(at_top, nr_hole))
    hole_in[below[:rest_hole]] = True
    reserved[below[rest_hole : rest_hole + rest_reserved]] = True
    hole = ~in_span | hole_in
    allocated = nonfree & ~hole_in & ~reserved

    # Pageblock types.
    def per_block(mask: np.ndarray) -> np.ndarray:
        return mask.reshape(nr_blocks, PAGEBLOCK_NR_PAGES).any(axis=1)

    mt = np.full(nr_blocks, int(MigrateType.MOVABLE), dtype=np.int8)
    mt[hole.reshape(nr_blocks, PAGEBLOCK_NR_PAGES).all(axis=1)] = int(MigrateType.UNMOVABLE)
    candidates = per_block(allocated) & ~per_block(free)
    first = np.zeros(nr_blocks, dtype=bool)
    first[typed_first] = True
    others = _random_order(seed, zone_index, _STREAM_TYPES + 1, np.flatnonzero(candidates & ~first))
    cand = np.concatenate([typed_first[candidates[typed_first]], others])
    pos = 0
    short = []
    for t in _TYPED:
        take = cand[pos : pos + wanted[t]]
        mt[take] = int(t)
        pos += take.size
        if take.size < wanted[t] and block_totals is not None:
            short.append(f"{t.name.title()} {take.size} of {wanted[t]}")
    if short:
        notes.append(
            f"{label}: pagetypeinfo's pageblock counts not met (free blocks stay in Movable "
            f"pageblocks and too few pageblocks are wholly allocated): {', '.join(short)}"
        )

    # Kinds of the allocated pages: each kind fills the pageblocks of its type first.
    page_state = np.full(nr_pages, UNMOVABLE, dtype=np.uint8)
    page_state[free] = FREE
    where = np.flatnonzero(allocated)
    block_mt = mt[where // PAGEBLOCK_NR_PAGES]
    group = np.full(where.size, 2, dtype=np.int64)  # 0 unmovable, 1 reclaimable, 2 movable
    group[
        np.isin(block_mt, [MigrateType.UNMOVABLE, MigrateType.HIGHATOMIC, MigrateType.ISOLATE])
    ] = 0
    group[block_mt == int(MigrateType.RECLAIMABLE)] = 1
    keys = hash_u64(np, seed, zone_index, _STREAM_KINDS, where.astype(np.uint64)).reshape(
        where.size
    )
    shuffled = where[np.lexsort((keys, group))]
    sizes = np.bincount(group, minlength=3)
    want = np.array([kinds.unmovable, kinds.reclaimable, kinds.movable], dtype=np.int64)
    if int(want.sum()) != where.size:
        raise SnapshotError(
            f"{label}: {where.size} allocated pages but the kinds add up to {int(want.sum())}"
        )
    home = np.minimum(want, sizes)
    codes = np.array([UNMOVABLE, RECLAIMABLE, MOVABLE], dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    leftover_slots = []
    for g in range(3):
        page_state[shuffled[starts[g] : starts[g] + home[g]]] = codes[g]
        leftover_slots.append(shuffled[starts[g] + home[g] : starts[g] + sizes[g]])
    slots = np.concatenate(leftover_slots)
    slots = slots[np.argsort(keys[np.searchsorted(where, slots)], kind="stable")]
    page_state[slots] = np.repeat(codes, want - home)

    got = buddy.buddyinfo(page_state[None, :])[0]
    if not np.array_equal(got, counts):
        raise SnapshotError(f"{label}: synthesised buddyinfo {got.tolist()} != {counts.tolist()}")
    return ZoneArrays(base, page_state, hole, mt, tuple(notes))
