"""Compiled sequential CPU baseline of whole-zone compaction (Numba), exact like the kernel.

This is the "straightforward CPU simulator" of performance-notes.md 5 ("Fair CPU
baselines", item 1: ``cbase.c``): the compiled sequential page-by-page scanner loop, with
the zones run in parallel because they are independent. It implements the same model as
tests/reference/compaction.py (the oracle: ``compact_zone()`` as ``compact_node()`` calls
it for ``echo 1 > /proc/sys/vm/compact_memory``, order -1, MIGRATE_SYNC, whole_zone,
ignore_skip_hint; kernel-model.md 4.3-4.7, 4.11; both kernel profiles, per-zone
``skip_pinned``, large folios) in the reference's control flow and names: the migrate
scanner walks up one ``isolate_migratepages_block()`` batch at a time, ``migrate_pages()``
asks ``compaction_alloc()`` for targets, and the free scanner walks pageblocks down,
each bottom-up, PFN by PFN. It gives the same page states and counters as
``kernels.compaction.compact_node`` (which computes the run with prefix sums instead).

What a careful C programmer would write: one ``@numba.njit`` function over one zone's
``uint8`` row, no Python objects and no allocation inside the compiled code (the caller
passes, per zone, a 512-entry migrate list, a 512-entry free list and one byte per
pageblock). The helpers are compiled without Numba's reference-counted runtime
(``_nrt=False``, which also rules out any allocation), and those on the per-page path are
inlined at the Numba IR level: with NRT, every helper call that passes an array costs
atomic reference-count updates, which made the page loop about five times slower.

Buddy orders are derived on the fly as the reference derives them (maximal naturally
aligned free runs), with a lazily filled per-pageblock "entirely free" cache so that the
order-9/10 cases cost one look-up. The cache holds for the whole run: an entirely free
pageblock is never changed (it is no migration target, the upper half of an order-10
block yields none, and the migrate scanner does not change free pages), and a pageblock
that is not entirely free never becomes so (freed sources sit on the per-cpu lists until
the run ends). Isolated free pages are not marked (the reference marks them): no scanner
looks at them again before they are used or the run ends.

Threading: ``parallel=True`` runs the zones in a ``numba.prange`` loop on Numba's
threading layer, one zone per iteration, with ``numba.get_num_threads()`` threads (set
``NUMBA_NUM_THREADS`` or call ``numba.set_num_threads()``); ``parallel=False`` runs the
same per-zone kernel in a plain loop on the calling thread, for a per-core figure.
Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numba
import numpy as np

from kernels.compaction import CompactCounters, CompactParams
from kernels.zone import (
    COMPACT_CLUSTER_MAX,
    FREE,
    KIND_MASK,
    MAX_PAGE_ORDER,
    MOVABLE,
    ORDER_MASK,
    ORDER_SHIFT,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    PINNED,
    TAIL_FLAG,
    KernelProfile,
    MigrateType,
    ZoneState,
)

P = PAGEBLOCK_NR_PAGES
_PCP_FREE = 0xFE  # freed source page waiting on a per-cpu list (as in the reference)
_ISOLATED_FREE = 0xFD  # reference-only transient state; checked for fidelity, never written
_MT_MOVABLE = int(MigrateType.MOVABLE)
_MT_CMA = int(MigrateType.CMA)

# Counter slots, in CompactCounters field order.
_MIG_SCANNED, _FREE_SCANNED, _ISOLATED, _SUCCESS, _FAIL, _LRU, _SPLIT = range(7)
_NR_COUNTERS = 7
_FIELDS = tuple(f.name for f in dataclasses.fields(CompactCounters))
assert len(_FIELDS) == _NR_COUNTERS

# No NRT: nothing here allocates (the caller passes every buffer), and without NRT passing
# arrays between the helpers costs no atomic reference counting (5x on random zones).
# The helpers on the per-page path are inlined into _compact_zone at the Numba IR level
# (2x more); _block_free, a cached look-up, is not (less compile time, same speed).
_jit = numba.njit(cache=True, nogil=True, _nrt=False)
_inline = numba.njit(cache=True, nogil=True, _nrt=False, inline="always")


@_jit
def _block_free(row: Any, ff: Any, b: int) -> bool:
    """True if pageblock ``b`` is entirely free (cached in ``ff``: -1 unknown, 0, 1)."""
    v = ff[b]
    if v < 0:
        v = 1
        base = b * P
        for i in range(P):
            if row[base + i] != FREE:
                v = 0
                break
        ff[b] = v
    return v == 1


@_inline
def _page_buddy_order(row: Any, ff: Any, nb: int, pfn: int) -> int:
    """buddy_order(page) if PageBuddy(page) (a free block head), else -1.

    Mirrors page_buddy_order() / buddy_block() of the reference: the block holding a free
    page is the largest naturally aligned, entirely free block around it, up to
    MAX_PAGE_ORDER and within the zone (eager merging in __free_one_page(), KM 2.2).
    """
    if row[pfn] != FREE:
        return -1
    b = pfn >> PAGEBLOCK_ORDER
    if _block_free(row, ff, b):
        buddy = b ^ 1
        if buddy < nb and _block_free(row, ff, buddy):  # an order-10 block
            return MAX_PAGE_ORDER if pfn == (b & ~1) * P else -1
        return PAGEBLOCK_ORDER if pfn == b * P else -1
    # Not entirely free: the block holding pfn has order <= pageblock_order - 1.
    order = 0
    for o in range(1, PAGEBLOCK_ORDER):
        half = 1 << (o - 1)
        start = pfn & ~((1 << o) - 1)
        other = start if pfn & half else start + half  # the half not holding pfn
        ok = True
        for p in range(other, other + half):
            if row[p] != FREE:
                ok = False
                break
        if not ok:
            break
        order = o
    return order if pfn & ((1 << order) - 1) == 0 else -1


@_inline
def _isolate_migratepages_block(
    row, ff, nb, low_pfn, end_pfn, v6, skip_pinned, finish_pageblock, mig, cnt
):
    """Isolate movable pages from [low_pfn, end_pfn) into ``mig``; returns (low_pfn, nr).

    Mirrors isolate_migratepages_block(), mm/compaction.c (KM 4.5.2 and its 4.12
    differences), as the reference does.
    """
    nr_scanned = 0
    nr_isolated = 0
    nr_mig = 0
    locked = False
    while low_pfn < end_pfn:
        # Periodically drop the lock (if held) regardless of its contention.
        if low_pfn % COMPACT_CLUSTER_MAX == 0:
            locked = False
        nr_scanned += 1
        code = row[low_pfn]

        freepage_order = _page_buddy_order(row, ff, nb, low_pfn)
        if freepage_order >= 0:  # PageBuddy(page)
            if freepage_order > 0:
                low_pfn += (1 << freepage_order) - 1
                if v6:  # 6.19 counts the PFNs covered; 4.12 counts struct pages visited
                    nr_scanned += (1 << freepage_order) - 1
            low_pfn += 1
            continue

        order = (code & ORDER_MASK) >> ORDER_SHIFT
        if order > 0 and not code & TAIL_FLAG:  # PageCompound(page): a folio head
            # 4.12 skips every compound page; 6.19 skip_isolation_on_order().
            if not v6 or order >= PAGEBLOCK_ORDER:
                low_pfn += (1 << order) - 1
                if v6:
                    nr_scanned += (1 << order) - 1
                low_pfn += 1  # isolate_fail
                continue

        kind = code & KIND_MASK
        if (
            (kind != MOVABLE and kind != PINNED)
            or code & TAIL_FLAG
            or code == _PCP_FREE
            or code == _ISOLATED_FREE
        ):
            low_pfn += 1  # !PageLRU: isolate_fail
            continue

        if kind == PINNED and skip_pinned:
            # 6.19 leaves through isolate_fail_put, which drops the LRU lock; 4.12's
            # isolate_fail keeps it.
            if v6:
                locked = False
            low_pfn += 1
            continue

        if not locked:  # compact_lock_irqsave()
            locked = True
            cnt[_LRU] += 1

        # isolate_success
        nr_pages = 1 << order
        mig[nr_mig] = low_pfn
        nr_mig += 1
        nr_isolated += nr_pages
        nr_scanned += nr_pages - 1
        low_pfn += nr_pages - 1
        # 6.19: nr_migratepages >= COMPACT_CLUSTER_MAX && !finish_pageblock;
        # 4.12: nr_migratepages == COMPACT_CLUSTER_MAX (it never isolates folios).
        if v6:
            stop = nr_isolated >= COMPACT_CLUSTER_MAX and not finish_pageblock
        else:
            stop = nr_isolated == COMPACT_CLUSTER_MAX
        if stop:
            low_pfn += 1
            break
        low_pfn += 1

    # The PageBuddy() check could have potentially brought us outside the range.
    if low_pfn > end_pfn:
        low_pfn = end_pfn
    cnt[_MIG_SCANNED] += nr_scanned
    cnt[_ISOLATED] += nr_isolated
    return low_pfn, nr_mig


@_inline
def _isolate_freepages_block(row, ff, start_pfn, end_pfn, nr_needed, fp, nr_free, v6, cnt):
    """Isolate free pages from [start_pfn, end_pfn) until ``nr_needed`` are held in ``fp``.

    Mirrors isolate_freepages_block(..., stride=1, strict=false), page-granular, as the
    reference does. Returns (next pfn, pages held). Isolated pages are not marked: no
    scanner looks at them again before they are used or the run ends.
    """
    b = start_pfn >> PAGEBLOCK_ORDER
    # The upper half of an order-10 free block: its buddy head lies in the pageblock
    # below, so none of its pages is isolated here.
    upper_half = (b & 1) == 1 and _block_free(row, ff, b) and _block_free(row, ff, b - 1)
    blockpfn = start_pfn
    nr_scanned = 0
    total_isolated = 0
    while blockpfn < end_pfn:
        nr_scanned += 1
        code = row[blockpfn]
        order = (code & ORDER_MASK) >> ORDER_SHIFT
        if order > 0 and not code & TAIL_FLAG:  # PageCompound(page): skip it whole
            if v6 and blockpfn + (1 << order) <= end_pfn:
                nr_scanned += (1 << order) - 1
            blockpfn += 1 << order
            continue
        if code == FREE and not upper_half:
            fp[nr_free] = blockpfn
            nr_free += 1
            total_isolated += 1
            if nr_free >= nr_needed:
                blockpfn += 1
                break
        blockpfn += 1
    cnt[_FREE_SCANNED] += nr_scanned
    cnt[_ISOLATED] += total_isolated
    return min(blockpfn, end_pfn), nr_free


@_inline
def _suitable_migration_target(row, ff, nb, mt, block_start_pfn) -> bool:
    """Mirrors suitable_migration_target(): looks at the block's first page only."""
    if _page_buddy_order(row, ff, nb, block_start_pfn) >= PAGEBLOCK_ORDER:
        return False
    t = mt[block_start_pfn >> PAGEBLOCK_ORDER]
    return t == _MT_MOVABLE or t == _MT_CMA


@_inline
def _isolate_freepages(row, ff, nb, mt, free_pfn, migrate_pfn, nr_needed, fp, nr_free, v6, cnt):
    """Walk pageblocks down from free_pfn collecting targets. Mirrors isolate_freepages().

    Returns (new free_pfn, pages held).
    """
    n = row.shape[0]
    isolate_start_pfn = free_pfn
    block_start_pfn = isolate_start_pfn & ~(P - 1)
    block_end_pfn = min(block_start_pfn + P, n)
    low_pfn = (migrate_pfn & ~(P - 1)) + P
    while block_start_pfn >= low_pfn:
        if _suitable_migration_target(row, ff, nb, mt, block_start_pfn):
            isolate_start_pfn, nr_free = _isolate_freepages_block(
                row, ff, isolate_start_pfn, block_end_pfn, nr_needed, fp, nr_free, v6, cnt
            )
            if nr_free >= nr_needed:
                if isolate_start_pfn >= block_end_pfn:
                    # Restart at previous pageblock if more freepages can be isolated.
                    isolate_start_pfn = block_start_pfn - P
                break
        block_end_pfn = block_start_pfn
        block_start_pfn -= P
        isolate_start_pfn = block_start_pfn
    return isolate_start_pfn, nr_free


@_inline
def _migrate_pages(row, ff, nb, mt, mig, nr_mig, fp, nr_free, free_pfn, migrate_pfn, v6, cnt):
    """Migrate the isolated units in ascending PFN order; returns (err, free_pfn, nr_free).

    Mirrors migrate_pages(), mm/migrate.c, with compaction_alloc() inlined: a pinned page
    fails (counted once); -ENOMEM (err 1) stops the whole list, counting the unit that got
    no target as failed. A folio lands intact on a naturally aligned run of targets,
    otherwise it is split into base pages (migrate_folio_split).
    """
    for i in range(nr_mig):
        src = mig[i]
        code = row[src]
        if code & KIND_MASK == PINNED:
            cnt[_FAIL] += 1
            continue
        nr_pages = 1 << ((code & ORDER_MASK) >> ORDER_SHIFT)
        # compaction_alloc()
        if nr_free < nr_pages:
            free_pfn, nr_free = _isolate_freepages(
                row, ff, nb, mt, free_pfn, migrate_pfn, nr_pages, fp, nr_free, v6, cnt
            )
        if nr_free < nr_pages:
            cnt[_FAIL] += nr_pages
            return 1, free_pfn, nr_free
        t0 = fp[0]
        intact = t0 % nr_pages == 0
        if intact:
            for j in range(1, nr_pages):
                if fp[j] != t0 + j:
                    intact = False
                    break
        if nr_pages > 1 and not intact:
            cnt[_SPLIT] += 1
        for j in range(nr_pages):
            row[fp[j]] = row[src + j] if intact else MOVABLE
        for j in range(nr_pages):
            row[src + j] = _PCP_FREE
        cnt[_SUCCESS] += nr_pages
        # Take the first nr_pages targets off the free list (exact demand leaves none).
        for j in range(nr_free - nr_pages):
            fp[j] = fp[j + nr_pages]
        nr_free -= nr_pages
    return 0, free_pfn, nr_free


@_jit
def _compact_zone(row, mt, v6, skip_pinned, cnt, ff, mig, fp):
    """Compact one whole zone in place (``row``: its page states); counters into ``cnt``.

    Mirrors compact_zone() for compact_node(): order -1, MIGRATE_SYNC, whole_zone,
    ignore_skip_hint (KM 4.3). For order -1 __compact_finished() returns COMPACT_CONTINUE
    until the scanners meet, so the run ends when they meet or when migrate_pages() runs
    out of targets. Freed sources reach the buddy allocator when the run ends.
    """
    n = row.shape[0]
    nb = n // P
    ff[:] = -1
    nr_free = 0
    migrate_pfn = 0
    free_pfn = (n - 1) & ~(P - 1)
    last_migrated_pfn = -1  # the kernel's 0: none yet
    finish_pageblock = False
    while (free_pfn >> PAGEBLOCK_ORDER) > (migrate_pfn >> PAGEBLOCK_ORDER):
        if v6:
            # Avoid multiple rescans of the same pageblock: the first rescan captures the
            # entire pageblock for migration.
            finish_pageblock = last_migrated_pfn >= 0 and (last_migrated_pfn & ~(P - 1)) == (
                migrate_pfn & ~(P - 1)
            )
        # isolate_migratepages(): the first block below free_pfn is taken.
        block_end_pfn = (migrate_pfn & ~(P - 1)) + P
        nr_mig = 0
        if block_end_pfn <= free_pfn:
            migrate_pfn, nr_mig = _isolate_migratepages_block(
                row, ff, nb, migrate_pfn, block_end_pfn, v6, skip_pinned, finish_pageblock,
                mig, cnt,
            )  # fmt: skip
        if nr_mig == 0:  # ISOLATE_NONE
            continue
        last_migrated_pfn = (migrate_pfn - 1) & ~(P - 1)
        err, free_pfn, nr_free = _migrate_pages(
            row, ff, nb, mt, mig, nr_mig, fp, nr_free, free_pfn, migrate_pfn, v6, cnt
        )
        if err:
            break  # COMPACT_CONTENDED (or the scanners met): out of free targets
    # Drain the per-cpu lists: every freed source lies below migrate_pfn. Unused targets
    # were never marked, so release_free_list() has nothing to do.
    for pfn in range(min(migrate_pfn, n)):
        if row[pfn] == _PCP_FREE:
            row[pfn] = FREE


@numba.njit(cache=True, parallel=True)
def _compact_zones_parallel(s, mt, v6, skip_pinned, cnt, ff, mig, fp):
    """Every zone of the batch, in parallel over zones (numba.prange)."""
    for z in numba.prange(s.shape[0]):
        _compact_zone(s[z], mt[z], v6, skip_pinned[z], cnt[z], ff[z], mig[z], fp[z])


@_jit
def _compact_zones_serial(s, mt, v6, skip_pinned, cnt, ff, mig, fp):
    """The same, one zone after another on the calling thread."""
    for z in range(s.shape[0]):
        _compact_zone(s[z], mt[z], v6, skip_pinned[z], cnt[z], ff[z], mig[z], fp[z])


def _reject_gpu(name: str, value: Any) -> None:
    if type(value).__module__.split(".")[0] == "cupy" or hasattr(value, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} is a CuPy (GPU) array; compact_node_compiled takes NumPy arrays only "
            "(use kernels.compaction.compact_node on the GPU, or copy with .get())"
        )


def _numpy_only(name: str, value: Any) -> np.ndarray:
    _reject_gpu(name, value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    return value


def compact_node_compiled(
    state: ZoneState, params: CompactParams, *, parallel: bool = True
) -> tuple[ZoneState, CompactCounters]:
    """Compact every zone of the batch, page by page, with exactly compact_node()'s results.

    Mirrors compact_zone() (order -1, MIGRATE_SYNC, whole_zone, ignore_skip_hint),
    mm/compaction.c, as tests/reference/compaction.py does, compiled. Same inputs and
    outputs as ``kernels.compaction.compact_node`` (watermarks unchanged, the input state
    untouched); NumPy arrays only. ``parallel=False`` runs the zones one after another on
    the calling thread.
    """
    s = _numpy_only("state.page_state", state.page_state)
    mt = _numpy_only("state.pageblock_migratetype", state.pageblock_migratetype)
    if s.ndim != 2 or s.dtype != np.uint8:
        raise ValueError(
            f"state.page_state must be a (Z, N) uint8 array, got {s.dtype} of shape {s.shape}"
        )
    z_n, n = s.shape
    if n == 0 or n % P:
        raise ValueError(f"state.page_state: N={n} is not a whole number of {P}-page pageblocks")
    if mt.shape != (z_n, n // P):
        raise ValueError(
            f"state.pageblock_migratetype must have shape {(z_n, n // P)}, got {mt.shape}"
        )
    if params.profile not in (KernelProfile.V4_12, KernelProfile.V6_19):
        raise ValueError(f"params.profile must be a KernelProfile, got {params.profile!r}")
    _reject_gpu("params.skip_pinned", params.skip_pinned)
    skip_pinned = np.asarray(params.skip_pinned, dtype=bool)
    if skip_pinned.ndim == 0:
        skip_pinned = np.full(z_n, bool(skip_pinned))
    if skip_pinned.shape != (z_n,):
        raise ValueError(f"params.skip_pinned must have shape ({z_n},), got {skip_pinned.shape}")

    out = np.array(s, order="C")  # a copy: the input state is not written
    mt_c = np.ascontiguousarray(mt, dtype=np.int8)
    cnt = np.zeros((z_n, _NR_COUNTERS), dtype=np.int64)
    v6 = params.profile == KernelProfile.V6_19
    run = _compact_zones_parallel if parallel else _compact_zones_serial
    ff = np.empty((z_n, n // P), dtype=np.int8)  # per pageblock: entirely free? (-1 unknown)
    mig = np.empty((z_n, P), dtype=np.int64)  # cc->migratepages (PFNs of unit heads)
    fp = np.empty((z_n, P), dtype=np.int64)  # cc->freepages (isolated free PFNs)
    run(out, mt_c, v6, np.ascontiguousarray(skip_pinned), cnt, ff, mig, fp)
    counters = CompactCounters(**{name: cnt[:, i].copy() for i, name in enumerate(_FIELDS)})
    return dataclasses.replace(state, page_state=out), counters
