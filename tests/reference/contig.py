"""Per-zone reference of the contiguous-allocation trials (docs/tick-model.md 7, "TM 7").

Plain Python over one :class:`tests.reference.tick.ZoneRef`, in the control flow and
with the names of mm/page_alloc.c (``alloc_contig_range``), mm/page_isolation.c
(``start_isolate_page_range``, ``test_pages_isolated``, ``undo_isolate_page_range``),
mm/cma.c (``cma_alloc``, ``cma_release``) and Minchan Kim's 2020 ``alloc_pages_bulk``
RFC (KM 8.1-8.3, 12(d)). The oracle for :mod:`kernels.contig`. Slow on purpose: every
page is looked at one at a time, every migration target is one ``get_page`` call.
"""

from __future__ import annotations

import numpy as np

from kernels.program import (
    ANON,
    CONFIG_CMA_ALIGNMENT,
    CONTIG_BULK,
    CONTIG_BULK_RANGE,
    CONTIG_CMA_ORDER,
    CONTIG_CMA_ORDER10,
    CONTIG_CMA_RANGE,
    CONTIG_NONE,
    FILE,
    HELD,
    ISOFREE,
    MT_CMA,
    PIN,
    RECL,
    STREAM_BUSY,
    TRIAL_FIELDS,
    UNMOV,
    Phase,
)
from kernels.rng import hash_u64
from tests.reference.tick import (
    MIGRATE_MOVABLE,
    PAGEBLOCK_ORDER,
    ZoneRef,
    del_page_from_free_list,
    free_pages_ascending,
    get_page,
)

MAX_ORDER_NR_PAGES = 1024
COMPACT_CLUSTER_MAX = 32  # pages isolate_migratepages_range() isolates per batch
OK, EBUSY, ENOMEM = 0, -16, -12


class Trial:
    """The results of one trial (TRIAL_FIELDS) and its busy-page draw."""

    def __init__(self, z: ZoneRef, index: int) -> None:
        self.index = index
        self.thr = int(z.busy_file * 2.0**53)  # h >> 11 < thr: the FILE page is busy
        self.values = dict.fromkeys(TRIAL_FIELDS, 0)
        self.held: list[int] = []  # pages this trial allocated (cma_release frees them)

    def busy(self, z: ZoneRef, pfn: int) -> bool:
        """TM 7.3: a PIN page, or a FILE page drawn busy ("fs write") for this trial."""
        if z.kind[pfn] == PIN:
            return True
        if z.kind[pfn] != FILE or self.thr == 0:
            return False
        counter = np.array([self.index * z.N + pfn], dtype=np.uint64)
        h = hash_u64(np, z.seed, np.uint64(0), np.uint64(STREAM_BUSY), counter)
        return int(h[0]) >> 11 < self.thr


def cma_area(z: ZoneRef) -> tuple[int, int]:
    """(base pfn, end pfn) of the CMA area: the CMA pageblocks at the top (TM 7.1)."""
    nr_blocks = sum(1 for t in z.block_mt if t == MT_CMA)
    return z.N - (nr_blocks << PAGEBLOCK_ORDER), z.N


def has_unmovable_pages(z: ZoneRef, block: int) -> bool:
    """Mirrors has_unmovable_pages() for set_migratetype_isolate() (KM 8.1).

    A CMA block passes without a scan (MEMORY_OFFLINE / CMA_ALLOC); otherwise any page
    that is neither free nor on the LRU (UNMOV, RECL, HELD) is unmovable.
    """
    if z.block_mt[block] == MT_CMA:
        return False
    start = block << PAGEBLOCK_ORDER
    span = z.kind[start : start + (1 << PAGEBLOCK_ORDER)]
    return any(span.count(k) for k in (UNMOV, RECL, HELD))


def start_isolate_page_range(z: ZoneRef, lo: int, hi: int) -> int:
    """Isolate [lo, hi): -EBUSY if a block has unmovable pages, else the free pages leave
    the allocator (kind ISOFREE, off the free lists, out of NR_FREE_PAGES)."""
    for block in range(lo >> PAGEBLOCK_ORDER, hi >> PAGEBLOCK_ORDER):
        if has_unmovable_pages(z, block):
            return EBUSY
    pfn = lo
    while pfn < hi:
        order = z.buddy_order[pfn]
        if order >= 0:
            del_page_from_free_list(z, pfn)
            z.kind[pfn : pfn + (1 << order)] = bytes([ISOFREE]) * (1 << order)
            pfn += 1 << order
        else:
            pfn += 1
    return OK


def undo_isolate_page_range(z: ZoneRef, lo: int, hi: int) -> None:
    """The isolated free pages go back to the buddy: ascending __free_one_page(p, 0)."""
    free_pages_ascending(z, [p for p in range(lo, hi) if z.kind[p] == ISOFREE])


def __alloc_contig_migrate_range(
    z: ZoneRef, tr: Trial, start: int, end: int, best_effort: bool
) -> int:
    """Mirrors __alloc_contig_migrate_range() (KM 8.1), TM 7.3.

    Batches of COMPACT_CLUSTER_MAX isolated pages, ascending: the clean page cache of the
    batch is dropped (reclaim_clean_pages_from_list), the anon pages migrate to targets
    from the page allocator (get_page(0, MIN, MOVABLE), outside the isolated blocks),
    busy pages fail. A batch with a failure ends the range with -EBUSY (5 tries),
    unless best_effort (alloc_pages_bulk); no target ends it with -ENOMEM.
    """
    cand = [p for p in range(start, end) if z.kind[p] in (ANON, FILE, PIN)]
    for b in range(0, len(cand), COMPACT_CLUSTER_MAX):
        batch = cand[b : b + COMPACT_CLUSTER_MAX]
        busy = [p for p in batch if tr.busy(z, p)]
        for p in batch:  # reclaim_clean_pages_from_list()
            if z.kind[p] == FILE and p not in busy:
                z.kind[p] = ISOFREE
                tr.values["reclaimed"] += 1
        for p in batch:  # migrate_pages(), list order
            if p in busy:
                z.count("pgmigrate_fail")
                continue
            if z.kind[p] != ANON:
                continue
            target = get_page(z, 0, z.wmark_min, MIGRATE_MOVABLE)  # alloc_migration_target
            if target is None:
                tr.values["scanned"] += p + 1 - start
                return ENOMEM
            z.kind[target] = ANON
            z.kind[p] = ISOFREE
            z.count("pgmigrate_success")
            tr.values["migrated"] += 1
        if busy and not best_effort:
            tr.values["scanned"] += batch[-1] + 1 - start
            return EBUSY
    tr.values["scanned"] += end - start
    return OK


def alloc_contig_range(z: ZoneRef, tr: Trial, start: int, end: int) -> int:
    """Mirrors alloc_contig_range() (KM 8.1, TM 7.3): all or nothing; [start, end) HELD."""
    lo = start & ~(MAX_ORDER_NR_PAGES - 1)  # pfn_max_align_down / _up (TM 7.3)
    hi = -(-end // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
    tr.values["windows"] += 1
    ret = start_isolate_page_range(z, lo, hi)
    if ret != OK:
        return ret
    ret = __alloc_contig_migrate_range(z, tr, start, end, best_effort=False)
    if ret == OK:  # test_pages_isolated(): every page of the range is a free isolated page
        if z.kind[start:end].count(ISOFREE) == end - start:
            z.kind[start:end] = bytes([HELD]) * (end - start)
            tr.held.extend(range(start, end))
        else:
            ret = EBUSY
    undo_isolate_page_range(z, lo, hi)
    return ret


def cma_alloc(z: ZoneRef, tr: Trial, bitmap: list[bool], count: int, align: int) -> int | None:
    """Mirrors cma_alloc() / cma_range_alloc() (KM 8.2): sliding aligned windows.

    ``bitmap`` has one entry per page of the CMA area (order_per_bit 0): set where this
    trial's earlier cma_alloc() calls allocated.
    """
    base, end = cma_area(z)
    mask = (1 << align) - 1
    start = 0
    while True:
        # bitmap_find_next_zero_area_off(): the first aligned index >= start with a clear run
        bitmap_no = (start + mask) & ~mask
        while bitmap_no + count <= end - base and any(bitmap[bitmap_no : bitmap_no + count]):
            bitmap_no += mask + 1
        if bitmap_no + count > end - base:
            return None
        pfn = base + bitmap_no
        ret = alloc_contig_range(z, tr, pfn, pfn + count)
        if ret == OK:
            bitmap[bitmap_no : bitmap_no + count] = [True] * count
            return pfn
        if ret != EBUSY:
            return None
        start = bitmap_no + mask + 1  # -EBUSY: the next aligned window


def alloc_pages_bulk(z: ZoneRef, tr: Trial, start: int, end: int, order: int, nr_elem: int) -> int:
    """Minchan Kim's alloc_pages_bulk() RFC (KM 8.3, TM 7.3): best-effort migration over
    [start, end), then every aligned 2^order chunk that is entirely free is taken, in
    ascending order, until nr_elem; returns the number taken."""
    lo = start & ~(MAX_ORDER_NR_PAGES - 1)
    hi = -(-end // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
    tr.values["windows"] += 1
    if start_isolate_page_range(z, lo, hi) != OK:
        return 0
    __alloc_contig_migrate_range(z, tr, start, end, best_effort=True)
    got = 0
    size = 1 << order
    chunk = (start + size - 1) & ~(size - 1)
    while chunk + size <= end and got < nr_elem:
        if z.kind[chunk : chunk + size].count(ISOFREE) == size:
            z.kind[chunk : chunk + size] = bytes([HELD]) * size
            tr.held.extend(range(chunk, chunk + size))
            got += 1
        chunk += size
    undo_isolate_page_range(z, lo, hi)
    return got


def get_order(nr_pages: int) -> int:
    """get_order() of a size in pages: the smallest o with 2^o >= nr_pages."""
    return max(0, (nr_pages - 1).bit_length())


def contig_trial(z: ZoneRef, phase: Phase, index: int) -> list[int]:
    """One trial (TM 7.4) of the zone's contig_method; its pages are released at once."""
    tr = Trial(z, index)
    method = z.contig_method
    count, order = phase.contig_count, phase.contig_order
    base, end = cma_area(z)
    bitmap = [False] * (end - base)
    got = 0
    if method == CONTIG_CMA_RANGE:
        nr = count << order
        if cma_alloc(z, tr, bitmap, nr, min(get_order(nr), CONFIG_CMA_ALIGNMENT)) is not None:
            got = count
    elif method == CONTIG_CMA_ORDER:
        while got < count:
            if cma_alloc(z, tr, bitmap, 1 << order, min(order, CONFIG_CMA_ALIGNMENT)) is None:
                break
            got += 1
    elif method == CONTIG_CMA_ORDER10:
        per = MAX_ORDER_NR_PAGES >> order
        align = min(get_order(MAX_ORDER_NR_PAGES), CONFIG_CMA_ALIGNMENT)
        while got < count:
            if cma_alloc(z, tr, bitmap, MAX_ORDER_NR_PAGES, align) is None:
                break
            got = min(count, got + per)
    elif method == CONTIG_BULK:
        got = alloc_pages_bulk(z, tr, base, end, order, count)
    elif method == CONTIG_BULK_RANGE:  # TM 7.4: [base, min(end, base + count << order))
        got = alloc_pages_bulk(z, tr, base, min(end, base + (count << order)), order, count)
    else:
        assert method == CONTIG_NONE
    # cma_release() / __free_pages() of every piece: one ascending order-0 free sequence
    free_pages_ascending(z, tr.held)
    tr.values["obtained"] = got
    tr.values["complete"] = int(got >= count)
    return [tr.values[name] for name in TRIAL_FIELDS]
