"""Per-zone reference of the time-stepped model: the oracle for kernels/tick.py.

Plain Python over one zone, in the control flow and with the names of mm/page_alloc.c,
mm/compaction.c and mm/vmscan.c, implementing ``docs/tick-model.md`` ("TM x") literally.
Sections "KM x.y" refer to the shared ``kernel-model.md``. It is slow on purpose: every
free, split, claim and scanner step is applied one at a time as the specification writes
it, and nothing relies on the bulk algebra of the batched engine.

State (:class:`ZoneRef`): per page ``kind`` (a bytearray of the TM 1 codes),
``buddy_order`` / ``list_mt`` / ``key`` (TM 2), per pageblock ``block_mt`` and ``skip``,
and plain ints for the zone scalars. The free lists ``free_area[o].free_list[mt]`` are
dicts ``head pfn -> key`` (so ``nr_free[o][mt]`` is their length) plus a max-heap with
lazy deletion to find ``first(o, mt)``, the head with the largest key (KM 11.2).

Every kernel function named in TM 2-4 is a module-level function taking the zone first
(``__rmqueue_smallest(z, order, mt)`` and so on); module level so that the
double-underscore names are not mangled.

Choices where the specification leaves room are marked ``# SPEC:`` in the code.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field

import numpy as np

from kernels.metrics import extfrag_for_order, fragmentation_index
from kernels.program import (
    ANON,
    BACKGROUND_KINDS,
    COUNTERS,
    FILE,
    FREE,
    GFP_MOVABLE,
    GFP_NOWAIT,
    GFP_THP,
    HELD,
    ISOFREE,
    KCOMPACTD_NONE,
    KCOMPACTD_PROACTIVE_DEMAND,
    KCOMPACTD_PROACTIVE_SCORE,
    KIND_MIGRATETYPE,
    LRU_KINDS,
    MT_CMA,
    PIN,
    RECL,
    SCALARS,
    STREAM_ALLOC,
    STREAM_FREE,
    TRIAL_FIELDS,
    UNMOV,
    Phase,
    Program,
    TickResult,
    TickZones,
    weight_thresholds,
)
from kernels.rng import hash_u64
from kernels.zone import KernelProfile, setup_per_zone_wmarks
from tests.reference import regions  # regions (seed 002): sorted lists, handshake, worker

MAX_PAGE_ORDER = 10
NR_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
SWAP_CLUSTER_MAX = 32
MAX_RECLAIM_RETRIES = 16  # kswapd_failures that make a node hopeless (mm/vmscan.c)

# Migratetypes (KM 2.8) and the fallback table (KM 2.4).
MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
U, M, R = MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE
NR_PCPTYPES = 3
# CMA (tick-model.md 7.1): free lists are indexed 0..MIGRATE_CMA (list 3, HIGHATOMIC, unused).
MIGRATE_CMA = MT_CMA
NR_LIST_TYPES = MIGRATE_CMA + 1
FALLBACKS = {U: (R, M), M: (R, U), R: (U, M)}

# enum migrate_mode (include/linux/migrate_mode.h).
MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC = 0, 1, 2


class CompactResult(enum.Enum):
    """The compact_result values the model uses (TM 3.3); only compared for equality."""

    SKIPPED = "skipped"
    DEFERRED = "deferred"
    CONTINUE = "continue"
    PARTIAL_SKIPPED = "partial_skipped"
    COMPLETE = "complete"
    SUCCESS = "success"
    CONTENDED = "contended"


COMPACT_SKIPPED = CompactResult.SKIPPED
COMPACT_DEFERRED = CompactResult.DEFERRED
COMPACT_CONTINUE = CompactResult.CONTINUE
COMPACT_PARTIAL_SKIPPED = CompactResult.PARTIAL_SKIPPED
COMPACT_COMPLETE = CompactResult.COMPLETE
COMPACT_SUCCESS = CompactResult.SUCCESS
COMPACT_CONTENDED = CompactResult.CONTENDED


# ---------------------------------------------------------------------------------------
# Zone state
# ---------------------------------------------------------------------------------------


class ZoneRef:
    """One zone's state (TM 1-4): pages, pageblocks, free lists and zone/node scalars."""

    def __init__(
        self,
        kind_row: np.ndarray,
        block_mt_row: np.ndarray,
        zone: TickZones,
        program: Program,
        profile: KernelProfile,
    ) -> None:
        kind_row = np.asarray(kind_row).reshape(-1)
        block_mt_row = np.asarray(block_mt_row).reshape(-1)
        n = int(kind_row.shape[0])
        if n % (2 * PAGEBLOCK_NR_PAGES) or n == 0:
            raise ValueError(f"N must be a positive multiple of 1024, got {n}")
        if block_mt_row.shape[0] != n // PAGEBLOCK_NR_PAGES:
            raise ValueError("block_mt must have N / 512 entries")
        if kind_row.min() < FREE or kind_row.max() > HELD:
            raise ValueError("initial kinds must be FREE..HELD (no ISOFREE)")
        if block_mt_row.min() < U or not set(block_mt_row.tolist()) <= {U, M, R, MIGRATE_CMA}:
            raise ValueError("block_mt must be UNMOVABLE, MOVABLE, RECLAIMABLE or CMA")
        _check_cma_layout(block_mt_row)  # tick-model.md 7.1
        if zone.nr_zones != 1:
            raise ValueError("the reference runs one zone: pass zones[i]")
        zone.validate()

        self.N = n
        self.B = n // PAGEBLOCK_NR_PAGES
        # a KernelProfile, its value or its name ("v6_19"), as kernels.tick accepts
        self.profile = (
            KernelProfile[profile.upper()] if isinstance(profile, str) else KernelProfile(profile)
        )
        self.v6 = self.profile == KernelProfile.V6_19
        self.program = program

        # Per-zone policy (TM 4).
        self.seed = np.uint64(zone.seed[0])
        self.attempt_order = int(zone.attempt_order[0])
        self.kcompactd_mode = int(zone.kcompactd[0])
        self.skip_pinned = bool(zone.skip_pinned[0])
        self.stop_below_watermark = bool(zone.stop_below_watermark[0])
        self.proactiveness = int(zone.proactiveness[0])
        # regions (seed 002, TM 6): region size, sorted lists, handshake and worker state
        regions.init_regions(
            self,
            int(zone.region_blocks[0]),
            bool(zone.sorted_freelists[0]),
            bool(zone.region_evacuation[0]),
            bool(zone.region_worker_delayed[0]),
        )
        self.contig_method = int(zone.contig_method[0])  # tick-model.md 7
        self.busy_file = float(zone.busy_file[0])

        # Pages and pageblocks (TM 1, 2).
        self.kind = bytearray(kind_row.astype(np.uint8).tobytes())
        self.block_mt = [int(x) for x in block_mt_row]
        self.skip = [False] * self.B
        self.buddy_order = [-1] * n
        self.list_mt = [-1] * n  # meaningful at heads only
        self.key = [0] * n  # meaningful at heads only
        self.clock = 0
        # free_area[o].free_list[mt] as {head pfn: key}; _heaps[o][mt] holds (-key, pfn)
        # entries, stale ones skipped lazily by first().
        self.free_list: list[list[dict[int, int]]] = [
            [{} for _ in range(NR_LIST_TYPES)] for _ in range(NR_ORDERS)
        ]
        self._heaps: list[list[list[tuple[int, int]]]] = [
            [[] for _ in range(NR_LIST_TYPES)] for _ in range(NR_ORDERS)
        ]

        # Watermarks (TM 2.3).
        self.wmark_min = self.wmark_low = self.wmark_high = 0
        self.set_watermarks(int(zone.min_free_kbytes[0]))

        # Compaction state (TM 3).
        # SPEC: the initial cached positions are the reset values (reset_cached_positions()
        # at zone init): cached_migrate = 0, cached_free = B - 1.
        self.cached_migrate = 0
        self.cached_free = self.B - 1
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = NR_ORDERS
        self.compact_blockskip_flush = False

        # kcompactd (TM 3.6).
        self.kcompactd_max_order = 0
        self.kcompactd_pending = False
        self.demand = [0] * NR_ORDERS
        self.proactive_next = program.proactive_period - 1

        # kswapd (TM 3.6).
        # SPEC: kswapd starts asleep (kswapd_order 0, kswapd_reclaimed 0) and the reclaim
        # CLOCK hand reclaim_cursor starts at PFN 0.
        self.kswapd_awake = False
        self.kswapd_order = 0
        self.kswapd_failures = 0
        self.kswapd_reclaimed = 0
        self.reclaim_cursor = 0

        self.counters = dict.fromkeys(COUNTERS, 0)

        if self.v6:
            # An order-10 free block over two pageblocks of different types: the upper one
            # takes the lower one's type, as __free_one_page()'s merge retypes the buddy
            # (TM 2 "Initial state").
            for block in range(0, self.B, 2):
                start = block << PAGEBLOCK_ORDER
                span = self.kind[start : start + 2 * PAGEBLOCK_NR_PAGES]
                if span.count(FREE) == 2 * PAGEBLOCK_NR_PAGES:
                    self.block_mt[block + 1] = self.block_mt[block]

        self._init_free_lists()

    # -- setup ---------------------------------------------------------------------------

    def set_watermarks(self, min_free_kbytes: int) -> None:
        """__setup_per_zone_wmarks() for a one-zone node (KM 3.1)."""
        wmin, wlow, whigh = setup_per_zone_wmarks(
            np.array([self.N], dtype=np.int64),
            np.array([min_free_kbytes], dtype=np.int64),
            np.array([self.program.watermark_scale_factor], dtype=np.int64),
        )
        self.wmark_min, self.wmark_low, self.wmark_high = int(wmin[0]), int(wlow[0]), int(whigh[0])

    def _init_free_lists(self) -> None:
        """Boot-time free lists (TM 2 "Initial state", KM 2.2).

        The free blocks are the greedy decomposition of the FREE runs into the largest
        naturally aligned blocks; they are added in ascending PFN order, to the tail in
        6.19 (FPI_TO_TAIL: the lowest PFN comes first) and to the head in 4.12.
        """
        pfn = 0
        while pfn < self.N:
            if self.kind[pfn] != FREE:
                pfn += 1
                continue
            order = MAX_PAGE_ORDER
            while order > 0 and (
                pfn & ((1 << order) - 1)
                or self.kind[pfn : pfn + (1 << order)].count(FREE) != 1 << order
            ):
                order -= 1
            mt = self.block_mt[pfn >> PAGEBLOCK_ORDER]
            add_to_free_list(self, pfn, order, mt, tail=self.v6)
            pfn += 1 << order

    # -- small accessors -----------------------------------------------------------------

    def nr_free(self, order: int, mt: int) -> int:
        """free_area[order].free_list[mt] length: heads of that order on that list."""
        return len(self.free_list[order][mt])

    def nr_free_all(self) -> list[int]:
        """free_area[o].nr_free for every order (the three types summed): buddyinfo."""
        return [sum(len(lst) for lst in self.free_list[o]) for o in range(NR_ORDERS)]

    def nr_free_pages(self) -> int:
        """NR_FREE_PAGES: pages of kind FREE (ISOFREE pages are not counted), TM 2."""
        return self.kind.count(FREE)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def nr_free_cma_pages(self) -> int:
        """NR_FREE_CMA_PAGES: the pages of the heads on the CMA lists (tick-model.md 7.1)."""
        return sum(len(self.free_list[o][MIGRATE_CMA]) << o for o in range(NR_ORDERS))


def _check_cma_layout(block_mt_row: np.ndarray) -> None:
    """CMA blocks form one area at the top of the zone, in whole 1024-page chunks (TM 7.1)."""
    cma = [i for i, t in enumerate(block_mt_row.tolist()) if t == MIGRATE_CMA]
    if cma and (
        cma != list(range(len(block_mt_row) - len(cma), len(block_mt_row))) or len(cma) % 2
    ):
        raise ValueError("CMA pageblocks must be one area at the top, in whole 1024-page chunks")


# ---------------------------------------------------------------------------------------
# Free lists (KM 2.1, 11.2)
# ---------------------------------------------------------------------------------------


def add_to_free_list(z: ZoneRef, pfn: int, order: int, mt: int, tail: bool) -> None:
    """__add_to_free_list(): list_add (key = +(++clock)) or list_add_tail (-(++clock))."""
    z.clock += 1
    key = -z.clock if tail else z.clock
    z.buddy_order[pfn] = order
    z.list_mt[pfn] = mt
    z.key[pfn] = key
    z.free_list[order][mt][pfn] = key
    # regions (seed 002): the heap orders by (region if sorted lists else 0, -key)
    heapq.heappush(z._heaps[order][mt], (regions.heap_rank(z, pfn), -key, pfn))
    regions.add_to_freelist_handshake(z)  # regions (seed 002): add_to_freelist()


def del_page_from_free_list(z: ZoneRef, pfn: int) -> None:
    """__del_page_from_free_list(): buddy_order[pfn] = -1 (TM 2.2 del(h))."""
    order = z.buddy_order[pfn]
    del z.free_list[order][z.list_mt[pfn]][pfn]
    z.buddy_order[pfn] = -1


def move_to_free_list(z: ZoneRef, pfn: int, mt: int, tail: bool) -> None:
    """move_to_free_list() (list_move_tail, 6.19) / list_move (head, 4.12)."""
    order = z.buddy_order[pfn]
    del z.free_list[order][z.list_mt[pfn]][pfn]
    add_to_free_list(z, pfn, order, mt, tail)


def first(z: ZoneRef, order: int, mt: int) -> int | None:
    """The first entry of free_area[order].free_list[mt]: the largest key, or None."""
    heap = z._heaps[order][mt]
    members = z.free_list[order][mt]
    while heap:
        _, neg_key, pfn = heap[0]  # regions (seed 002): entries lead with heap_rank()
        if members.get(pfn) == -neg_key:
            return pfn
        heapq.heappop(heap)  # stale: removed or re-keyed since it was pushed
    return None


# ---------------------------------------------------------------------------------------
# Freeing (TM 2.1, KM 2.2)
# ---------------------------------------------------------------------------------------


def __free_one_page(z: ZoneRef, pfn: int, order: int) -> None:
    """Mirrors __free_one_page(), mm/page_alloc.c (KM 2.2), as TM 2.1 writes it.

    The caller has set the pages FREE. Merges with free buddies up to order 10 (ignoring
    types: 4.12 merges across types without isolation, 6.19 across mergeable types and
    retypes the buddy's block, change_pageblock_range()), then adds the block at the tail
    when the next-order buddy is a free head (buddy_merge_likely / 4.12's
    ``order < MAX_ORDER - 2`` test), at the head otherwise.
    """
    mt = z.block_mt[pfn >> PAGEBLOCK_ORDER]  # get_pfnblock_migratetype() at free time
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if z.buddy_order[buddy_pfn] != order:  # not PageBuddy of this order
            break
        del_page_from_free_list(z, buddy_pfn)
        if z.v6 and order >= PAGEBLOCK_ORDER and z.block_mt[buddy_pfn >> PAGEBLOCK_ORDER] != mt:
            z.block_mt[buddy_pfn >> PAGEBLOCK_ORDER] = mt  # change_pageblock_range(buddy, 9, mt)
        pfn &= ~(1 << order)
        order += 1
    higher_buddy = (pfn & ~(1 << order)) ^ (2 << order)
    to_tail = order < MAX_PAGE_ORDER - 1 and z.buddy_order[higher_buddy] == order + 1
    add_to_free_list(z, pfn, order, mt, tail=to_tail)


def free_pages_ascending(z: ZoneRef, pfns: list[int]) -> None:
    """Free many order-0 pages (TM 2.1): ascending PFN, each FREE then __free_one_page()."""
    for pfn in sorted(pfns):
        z.kind[pfn] = FREE
        __free_one_page(z, pfn, 0)


def __free_pages(z: ZoneRef, pfn: int, order: int) -> None:
    """Free an allocated block of 2**order pages as one unit (a HELD block, TM 2.1)."""
    z.kind[pfn : pfn + (1 << order)] = bytes([FREE]) * (1 << order)
    __free_one_page(z, pfn, order)


# ---------------------------------------------------------------------------------------
# Allocation (TM 2.2, KM 2.3, 2.4)
# ---------------------------------------------------------------------------------------


def expand(z: ZoneRef, page: int, low: int, high: int, mt: int) -> None:
    """Mirrors expand(), mm/page_alloc.c: the upper halves go to the list heads (KM 2.3)."""
    while high > low:
        high -= 1
        add_to_free_list(z, page + (1 << high), high, mt, tail=False)


def __rmqueue_smallest(z: ZoneRef, order: int, mt: int) -> int | None:
    """Mirrors __rmqueue_smallest(): the first entry of the smallest non-empty list."""
    for current_order in range(order, NR_ORDERS):
        page = first(z, current_order, mt)
        if page is not None:
            regions.rmqueue_del_from_freelist(z, page)  # regions (seed 002): handshake
            expand(z, page, order, current_order, mt)
            return page
    return None


def can_claim(order: int, mt: int) -> bool:
    """should_try_claim_block() (6.19) / can_steal_fallback() (4.12), KM 2.4."""
    return order >= PAGEBLOCK_ORDER // 2 or mt in (U, R)


def find_suitable_fallback(z: ZoneRef, order: int, mt: int) -> int | None:
    """The first fallback type of mt with a non-empty list at this order, or None."""
    for fallback_mt in FALLBACKS[mt]:
        if z.nr_free(order, fallback_mt) > 0:
            return fallback_mt
    return None


def _set_block_types(z: ZoneRef, page: int, order: int, mt: int) -> None:
    """change_pageblock_range(): retype the 1 (order 9) or 2 (order 10) blocks of page."""
    for block in range(page >> PAGEBLOCK_ORDER, (page + (1 << order)) >> PAGEBLOCK_ORDER):
        z.block_mt[block] = mt


def _block_free_and_movable(z: ZoneRef, block: int) -> tuple[int, int]:
    """(#FREE pages, #ANON|FILE|PIN pages) of a pageblock (prep_move_freepages_block)."""
    pages = z.kind[block << PAGEBLOCK_ORDER : (block + 1) << PAGEBLOCK_ORDER]
    return pages.count(FREE), sum(pages.count(k) for k in LRU_KINDS)


def _alike_pages(mt: int, block_type: int, free_pages: int, movable_pages: int) -> int:
    """The "alike" pages of try_to_claim_block() / steal_suitable_fallback() (KM 2.4)."""
    if mt == M:
        return movable_pages
    if block_type == M:
        return PAGEBLOCK_NR_PAGES - free_pages - movable_pages
    return 0


def __rmqueue_claim(z: ZoneRef, order: int, mt: int) -> int | None:
    """Mirrors __rmqueue_claim() + try_to_claim_block(), 6.19 (KM 2.4): largest first."""
    for current_order in range(MAX_PAGE_ORDER, order - 1, -1):
        if not can_claim(current_order, mt):
            break  # find_suitable_fallback() == -2
        fallback_mt = find_suitable_fallback(z, current_order, mt)
        if fallback_mt is None:
            continue
        page = first(z, current_order, fallback_mt)
        # try_to_claim_block()
        if current_order >= PAGEBLOCK_ORDER:
            regions.rmqueue_del_from_freelist(z, page)  # regions (seed 002): handshake
            _set_block_types(z, page, current_order, mt)
            expand(z, page, order, current_order, mt)
            return page
        block = page >> PAGEBLOCK_ORDER
        free_pages, movable_pages = _block_free_and_movable(z, block)
        alike = _alike_pages(mt, fallback_mt, free_pages, movable_pages)
        if free_pages + alike >= PAGEBLOCK_NR_PAGES // 2:
            # __move_freepages_block(): every free head of the block, ascending PFN,
            # move_to_free_list() = list_move_tail.
            start = block << PAGEBLOCK_ORDER
            for pfn in range(start, start + PAGEBLOCK_NR_PAGES):
                if z.buddy_order[pfn] >= 0:
                    move_to_free_list(z, pfn, mt, tail=True)
            z.block_mt[block] = mt
            return __rmqueue_smallest(z, order, mt)
        # not claimed: try the next smaller order
    return None


def __rmqueue_steal(z: ZoneRef, order: int, mt: int) -> int | None:
    """Mirrors __rmqueue_steal(), 6.19: smallest first, the block keeps its type."""
    for current_order in range(order, NR_ORDERS):
        fallback_mt = find_suitable_fallback(z, current_order, mt)
        if fallback_mt is None:
            continue
        page = first(z, current_order, fallback_mt)
        regions.rmqueue_del_from_freelist(z, page)  # regions (seed 002): handshake
        expand(z, page, order, current_order, fallback_mt)  # page_del_and_expand()
        return page
    return None


def steal_suitable_fallback(z: ZoneRef, page: int, start_type: int, whole_block: bool) -> None:
    """Mirrors steal_suitable_fallback(), 4.12 (KM 2.4)."""
    old_block_type = z.block_mt[page >> PAGEBLOCK_ORDER]
    current_order = z.buddy_order[page]
    if current_order >= PAGEBLOCK_ORDER:
        _set_block_types(z, page, current_order, start_type)
        move_to_free_list(z, page, start_type, tail=False)  # single_page: list_move
        return
    if not whole_block:
        move_to_free_list(z, page, start_type, tail=False)  # single_page: list_move
        return
    # move_freepages_block(): every free head of the block to start_type's lists (list_move,
    # head), counting free pages and PageLRU pages; the block is retyped only if enough.
    block = page >> PAGEBLOCK_ORDER
    start = block << PAGEBLOCK_ORDER
    free_pages = movable_pages = 0
    pfn = start
    while pfn < start + PAGEBLOCK_NR_PAGES:
        head_order = z.buddy_order[pfn]
        if head_order >= 0:
            move_to_free_list(z, pfn, start_type, tail=False)
            free_pages += 1 << head_order
            pfn += 1 << head_order
            continue
        if z.kind[pfn] in LRU_KINDS:
            movable_pages += 1
        pfn += 1
    # (free_pages == 0 -> single_page cannot happen: page itself is free, TM 2.2.)
    alike = _alike_pages(start_type, old_block_type, free_pages, movable_pages)
    if free_pages + alike >= PAGEBLOCK_NR_PAGES // 2:
        z.block_mt[block] = start_type


def __rmqueue_fallback(z: ZoneRef, order: int, start_mt: int) -> bool:
    """Mirrors __rmqueue_fallback(), 4.12: largest first; True if a block was stolen."""
    for current_order in range(MAX_PAGE_ORDER, order - 1, -1):
        fallback_mt = find_suitable_fallback(z, current_order, start_mt)
        if fallback_mt is None:
            continue
        page = first(z, current_order, fallback_mt)
        steal_suitable_fallback(z, page, start_mt, can_claim(current_order, start_mt))
        return True
    return False


def __rmqueue(z: ZoneRef, order: int, mt: int) -> int | None:
    """Mirrors __rmqueue() of the profile (KM 2.3); no ALLOC_NOFRAGMENT.

    CMA (TM 7.1): only MOVABLE requests (ALLOC_CMA) take CMA pages: 6.19 first when
    NR_FREE_CMA_PAGES > NR_FREE_PAGES / 2, then after MOVABLE; 4.12 __rmqueue_cma_fallback
    after MOVABLE, before the fallbacks. Fallback, claim and steal never touch CMA.
    """
    if z.v6:
        page = None
        if mt == M and z.nr_free_cma_pages() > z.nr_free_pages() // 2:
            page = __rmqueue_smallest(z, order, MIGRATE_CMA)
        if page is None:
            page = __rmqueue_smallest(z, order, mt)
        if page is None and mt == M:
            page = __rmqueue_smallest(z, order, MIGRATE_CMA)  # __rmqueue_cma_fallback
        if page is None:
            page = __rmqueue_claim(z, order, mt)
        if page is None:
            page = __rmqueue_steal(z, order, mt)
        return page
    while True:  # 4.12: retry after every successful fallback
        page = __rmqueue_smallest(z, order, mt)
        if page is None and mt == M:
            page = __rmqueue_smallest(z, order, MIGRATE_CMA)  # __rmqueue_cma_fallback
        if page is not None:
            return page
        if not __rmqueue_fallback(z, order, mt):
            return None


def rmqueue(z: ZoneRef, order: int, mt: int) -> int | None:
    """rmqueue(): no per-cpu lists in this model (TM 2.1), straight to __rmqueue()."""
    return __rmqueue(z, order, mt)


# ---------------------------------------------------------------------------------------
# Watermarks (TM 2.3, KM 3.2)
# ---------------------------------------------------------------------------------------


def zone_watermark_ok(z: ZoneRef, order: int, mark: int, alloc_cma: bool = True) -> bool:
    """Mirrors __zone_watermark_ok() with no reserves, boost or lowmem_reserve.

    Without ALLOC_CMA the free CMA pages are subtracted and the CMA lists do not count
    for order > 0 (TM 7.1); with no CMA blocks both forms agree.
    """
    free_pages = z.nr_free_pages() - ((1 << order) - 1)
    if not alloc_cma:
        free_pages -= z.nr_free_cma_pages()
    if free_pages <= mark:
        return False
    if order == 0:
        return True
    types = (U, M, R, MIGRATE_CMA) if alloc_cma else (U, M, R)
    return any(z.nr_free(o, mt) > 0 for o in range(order, NR_ORDERS) for mt in types)


def get_page(z: ZoneRef, order: int, mark: int, mt: int) -> int | None:
    """get_page_from_freelist() for the one zone: rmqueue() if the watermark is met."""
    if zone_watermark_ok(z, order, mark, alloc_cma=mt == M):
        return rmqueue(z, order, mt)
    return None


# ---------------------------------------------------------------------------------------
# Compaction suitability and deferral (TM 3.1, 3.2; KM 4.2, 4.9)
# ---------------------------------------------------------------------------------------


def _buddyinfo_counts(z: ZoneRef) -> np.ndarray:
    return np.array([z.nr_free_all()], dtype=np.int64)  # (1, 11)


def __compaction_suitable(z: ZoneRef, order: int) -> bool:
    """Mirrors __compaction_suitable(): order-0 check at MIN + compact_gap (+LOW-MIN)."""
    watermark = z.wmark_min + (2 << order)  # compact_gap(order)
    if order > 3:  # PAGE_ALLOC_COSTLY_ORDER
        watermark += z.wmark_low - z.wmark_min
    return z.nr_free_pages() > watermark


def fragindex_ok(z: ZoneRef, order: int) -> bool:
    """Costly orders: not (0 <= fragmentation_index <= sysctl_extfrag_threshold = 500)."""
    if order <= 3:
        return True
    index = int(fragmentation_index(_buddyinfo_counts(z))[0, order])
    return not (0 <= index <= 500)


def compaction_suitable(z: ZoneRef, order: int, alloc_cma: bool = False) -> CompactResult:
    """compaction_suit_allocation_order() / 4.12 compaction_suitable(), mark = MIN.

    alloc_cma: the caller's ALLOC_CMA (direct compaction for a MOVABLE request; kcompactd
    has none), TM 7.1.
    """
    if zone_watermark_ok(z, order, z.wmark_min, alloc_cma):
        return COMPACT_SUCCESS
    if not __compaction_suitable(z, order) or not fragindex_ok(z, order):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


def compaction_deferred(z: ZoneRef, order: int) -> bool:
    """Mirrors compaction_deferred(), mm/compaction.c (KM 4.9)."""
    if order < z.compact_order_failed:
        return False
    z.compact_considered += 1
    if z.compact_considered >= 1 << z.compact_defer_shift:
        z.compact_considered = 1 << z.compact_defer_shift
        return False
    return True


def defer_compaction(z: ZoneRef, order: int) -> None:
    """Mirrors defer_compaction() (KM 4.9)."""
    z.compact_considered = 0
    z.compact_defer_shift = min(z.compact_defer_shift + 1, 6)  # COMPACT_MAX_DEFER_SHIFT
    if order < z.compact_order_failed:
        z.compact_order_failed = order


def compaction_defer_reset(z: ZoneRef, order: int, alloc_success: bool) -> None:
    """Mirrors compaction_defer_reset() (KM 4.9)."""
    if alloc_success:
        z.compact_considered = 0
        z.compact_defer_shift = 0
    if order >= z.compact_order_failed:
        z.compact_order_failed = order + 1


def compaction_restarting(z: ZoneRef, order: int) -> bool:
    """Mirrors compaction_restarting() (KM 4.9)."""
    return (
        order >= z.compact_order_failed
        and z.compact_defer_shift == 6
        and z.compact_considered >= 1 << 6
    )


def __reset_isolation_suitable(z: ZoneRef) -> None:
    """Mirrors __reset_isolation_suitable() (KM 4.8); 6.19 only after a flagged sweep.

    Simplification (TM 3): 6.19's sampled reset clears every skip bit.
    """
    if z.v6 and not z.compact_blockskip_flush:
        return
    z.skip = [False] * z.B
    z.cached_migrate = 0  # reset_cached_positions()
    z.cached_free = z.B - 1
    z.compact_blockskip_flush = False


def reset_isolation_suitable(z: ZoneRef) -> None:
    """Mirrors reset_isolation_suitable(pgdat), called by kswapd going to sleep."""
    if z.compact_blockskip_flush:
        __reset_isolation_suitable(z)


# ---------------------------------------------------------------------------------------
# compact_zone (TM 3.3-3.5; KM 4.3-4.8)
# ---------------------------------------------------------------------------------------


@dataclass
class CompactControl:
    """struct compact_control plus the scanner positions of one run, in pageblocks.

    ``m`` is the migrate scanner's block (cc->migrate_pfn >> 9), ``f`` the free
    scanner's block, ``iso`` the free scanner's next PFN (isolate_start_pfn), and
    ``freepages`` the pool of ISOFREE pages (cc->freepages), a min-heap of PFNs.
    """

    order: int
    mode: int
    migratetype: int
    direct: bool
    whole_zone: bool
    ignore_skip_hint: bool
    proactive: bool = False
    demand: bool = False
    m: int = 0
    f: int = 0
    iso: int = 0
    isolated_in_f: int = 0
    freepages: list[int] = field(default_factory=list)
    total_migrate_scanned: int = 0
    total_free_scanned: int = 0


def fragmentation_score(z: ZoneRef) -> int:
    """fragmentation_score_zone(): extfrag_for_order() at COMPACTION_HPAGE_ORDER (KM 5.3)."""
    return int(extfrag_for_order(_buddyinfo_counts(z))[0, PAGEBLOCK_ORDER])


def node_score(z: ZoneRef) -> int:
    """fragmentation_score_node() of a one-zone node: N * s // (N + 1) (KM errata 10)."""
    return z.N * fragmentation_score(z) // (z.N + 1)


def fragmentation_score_wmark(z: ZoneRef, low: bool) -> int:
    """fragmentation_score_wmark(), 6.19 (KM 5.3)."""
    wmark_low = 100 - z.proactiveness
    if low:
        return wmark_low
    return min(wmark_low + min(10, wmark_low // 2), 100)


def demand_met(z: ZoneRef) -> bool:
    """The proactive_demand stop rule (TM 3.6, KM 5.5; not upstream)."""
    nr_free = z.nr_free_all()
    for order in range(1, NR_ORDERS):
        if z.demand[order] > 0:
            available = sum(nr_free[j] << (j - order) for j in range(order, NR_ORDERS))
            if available < z.demand[order]:
                return False
    return True


def compact_finished(z: ZoneRef, cc: CompactControl) -> CompactResult:
    """Mirrors compact_finished() / __compact_finished() (KM 4.4), block granularity."""
    if cc.f <= cc.m:  # compact_scanners_met()
        z.cached_migrate = 0  # reset_cached_positions()
        z.cached_free = z.B - 1
        if cc.direct:
            z.compact_blockskip_flush = True
        return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
    if cc.proactive:
        if fragmentation_score(z) <= fragmentation_score_wmark(z, low=True):
            return COMPACT_SUCCESS
        return COMPACT_CONTINUE
    if cc.order == -1:
        return COMPACT_CONTINUE
    if z.stop_below_watermark and not __compaction_suitable(z, cc.order):
        return COMPACT_PARTIAL_SKIPPED  # seed 000 patch 5 (KM 4.2 end, 5.5)
    if cc.demand and any(z.demand[1:]):
        return COMPACT_SUCCESS if demand_met(z) else COMPACT_CONTINUE
    for order in range(cc.order, NR_ORDERS):
        if z.nr_free(order, cc.migratetype) > 0:
            return COMPACT_SUCCESS
        if cc.migratetype == M and z.nr_free(order, MIGRATE_CMA) > 0:
            return COMPACT_SUCCESS  # CONFIG_CMA: a MOVABLE request can use a CMA page
        if can_claim(order, cc.migratetype) and any(
            z.nr_free(order, fallback_mt) > 0 for fallback_mt in FALLBACKS[cc.migratetype]
        ):
            return COMPACT_SUCCESS
    return COMPACT_CONTINUE


def isolation_suitable(z: ZoneRef, cc: CompactControl, block: int) -> bool:
    """isolation_suitable(): skip_ok(m) of TM 3.3."""
    return cc.ignore_skip_hint or not z.skip[block]


def suitable_migration_source(z: ZoneRef, cc: CompactControl, block: int) -> bool:
    """suitable_migration_source() (6.19) / migrate_async_suitable() (4.12): async_ok(m)."""
    if z.v6:
        if not (cc.mode == MIGRATE_ASYNC and cc.direct):
            return True
        if cc.migratetype == M:
            return z.block_mt[block] in (M, MIGRATE_CMA)  # is_migrate_movable()
        return z.block_mt[block] == cc.migratetype
    return cc.mode != MIGRATE_ASYNC or z.block_mt[block] in (M, MIGRATE_CMA)


def isolate_migratepages(z: ZoneRef, cc: CompactControl) -> bool:
    """Mirrors isolate_migratepages()'s block loop (KM 4.5.1): find the next source block.

    Returns False when the scanners met (compact_finished() then sees it).
    """
    while cc.m < cc.f and not (
        isolation_suitable(z, cc, cc.m) and suitable_migration_source(z, cc, cc.m)
    ):
        if z.v6 and isolation_suitable(z, cc, cc.m):
            # !suitable_migration_source: update_cached_migrate(cc, block_end_pfn)
            z.cached_migrate = max(z.cached_migrate, cc.m + 1)
        cc.m += 1
    return cc.m < cc.f


def suitable_migration_target(z: ZoneRef, cc: CompactControl, block: int) -> bool:
    """target_ok(f) of TM 3.5: isolation_suitable() + suitable_migration_target()."""
    if not isolation_suitable(z, cc, block):
        return False
    if z.block_mt[block] not in (M, MIGRATE_CMA):  # is_migrate_movable()
        return False
    start = block << PAGEBLOCK_ORDER
    limit = cc.order if cc.order > 0 else PAGEBLOCK_ORDER
    return not (z.kind[start] == FREE and z.buddy_order[start] >= limit)


def update_pageblock_skip_free(z: ZoneRef, cc: CompactControl, block: int, isolated: int) -> None:
    """after_target_block(f, isolated) of TM 3.5 (KM 4.8)."""
    if z.v6 or (not cc.ignore_skip_hint and isolated == 0):
        z.skip[block] = True
        z.cached_free = min(z.cached_free, block - 1)


def update_pageblock_skip_migrate(
    z: ZoneRef, cc: CompactControl, block: int, isolated: int
) -> None:
    """after_source_block(m, isolated) of TM 3.4 (KM 4.8, errata 3-5)."""
    if z.v6 or (not cc.ignore_skip_hint and isolated == 0):
        z.skip[block] = True
        z.cached_migrate = max(z.cached_migrate, block + 1)


def isolate_freepages(z: ZoneRef, cc: CompactControl, need: int) -> None:
    """Mirrors isolate_freepages() + isolate_freepages_block() (TM 3.5, KM 4.6).

    Walks pageblocks down from f, each upward from its start, isolating whole free buddy
    blocks (kind -> ISOFREE) until the pool holds ``need`` pages. Stride 1, no fast search.
    """
    while len(cc.freepages) < need:
        if cc.f <= cc.m:
            return  # scanners met
        if cc.iso == cc.f << PAGEBLOCK_ORDER and not suitable_migration_target(z, cc, cc.f):
            cc.f -= 1
            cc.iso = cc.f << PAGEBLOCK_ORDER
            continue
        if cc.iso == (cc.f + 1) << PAGEBLOCK_ORDER:  # block fully scanned
            update_pageblock_skip_free(z, cc, cc.f, cc.isolated_in_f)
            cc.f -= 1
            cc.iso = cc.f << PAGEBLOCK_ORDER
            cc.isolated_in_f = 0
            continue
        pfn = cc.iso
        order = z.buddy_order[pfn]
        if z.kind[pfn] == FREE and order >= 0:  # PageBuddy
            # __isolate_free_page(): order-0 watermark check at MIN + 2^order
            if not z.nr_free_pages() > z.wmark_min + (1 << order):
                return
            del_page_from_free_list(z, pfn)
            nr_pages = 1 << order
            z.kind[pfn : pfn + nr_pages] = bytes([ISOFREE]) * nr_pages
            for target in range(pfn, pfn + nr_pages):
                heapq.heappush(cc.freepages, target)
            cc.isolated_in_f += nr_pages
            z.count("compact_isolated", nr_pages)  # COMPACTISOLATED counts both scanners
            cc.total_free_scanned += nr_pages if z.v6 else 1
            cc.iso = pfn + nr_pages
        else:  # !PageBuddy (allocated, or a tail of an order-10 block from below)
            cc.total_free_scanned += 1
            cc.iso = pfn + 1


def process_source_block(z: ZoneRef, cc: CompactControl) -> bool:
    """isolate_migratepages_block() + migrate_pages() + freeing, one block (TM 3.4).

    Returns False when the run ends COMPACT_CONTENDED (-ENOMEM before the scanners met).
    """
    m = cc.m
    start = m << PAGEBLOCK_ORDER
    end = start + PAGEBLOCK_NR_PAGES

    # The scanner's walk: free heads are jumped over (6.19 counts their span, 4.12 one
    # struct page), every other page is visited.
    pfn = start
    while pfn < end:
        order = z.buddy_order[pfn]
        if order >= 0:
            cc.total_migrate_scanned += (1 << order) if z.v6 else 1
            pfn += 1 << order
        else:
            cc.total_migrate_scanned += 1
            pfn += 1
    # An order-10 head at the block start: isolate_migratepages_block() clamps low_pfn to
    # end_pfn, so block m + 1 is processed next, its free tails visited one by one.
    step = 1

    isolate_kinds = (ANON, FILE) if z.skip_pinned else (ANON, FILE, PIN)
    cand = [p for p in range(start, end) if z.kind[p] in isolate_kinds]
    if cc.mode == MIGRATE_ASYNC and cc.direct and cc.order > 0:
        # skip_on_failure: a non-isolatable page spoils its whole cc->order-aligned chunk.
        chunk = min(1 << cc.order, PAGEBLOCK_NR_PAGES)
        ok_kinds = (FREE, ANON, FILE) if z.skip_pinned else (FREE, ANON, FILE, PIN)
        spoiled = {p // chunk for p in range(start, end) if z.kind[p] not in ok_kinds}
        cand = [p for p in cand if p // chunk not in spoiled]
    z.count("compact_isolated", len(cand))  # the free scanner adds its own (TM 3.5)
    z.count("lru_lock_acquisitions", len({p >> 5 for p in cand}))

    need = sum(1 for p in cand if z.kind[p] != PIN)
    if len(cc.freepages) < need:
        isolate_freepages(z, cc, need)

    # migrate_pages(): ascending over the candidates, targets lowest PFN first.
    enomem = False
    migrated = []
    for src in cand:
        if z.kind[src] == PIN:
            z.count("pgmigrate_fail")  # -EAGAIN on every pass; never takes a target
            continue
        if not cc.freepages:
            z.count("pgmigrate_fail")  # compaction_alloc() returned NULL: -ENOMEM
            enomem = True
            break
        target = heapq.heappop(cc.freepages)
        z.kind[target] = z.kind[src]
        z.kind[src] = FREE
        migrated.append(src)
        z.count("pgmigrate_success")
    free_pages_ascending(z, migrated)

    if enomem:
        if cc.f > cc.m:
            return False  # COMPACT_CONTENDED: no after_source_block
        cc.m += step
        return True
    update_pageblock_skip_migrate(z, cc, m, len(cand))
    cc.m += step
    return True


def release_freepages(z: ZoneRef, cc: CompactControl) -> None:
    """release_free_list(): unused targets back to the buddy; cached_free moves up."""
    pool = sorted(cc.freepages)
    cc.freepages = []
    free_pages_ascending(z, pool)
    if pool:
        z.cached_free = max(z.cached_free, pool[-1] >> PAGEBLOCK_ORDER)


def compact_zone(z: ZoneRef, cc: CompactControl) -> CompactResult:
    """Mirrors compact_zone(), mm/compaction.c (TM 3.3, KM 4.3)."""
    if cc.order > 0 and not cc.proactive:
        ret = compaction_suitable(z, cc.order, alloc_cma=cc.migratetype == M)
        if ret != COMPACT_CONTINUE:
            return ret
    if cc.order > 0 and compaction_restarting(z, cc.order):
        __reset_isolation_suitable(z)
    if cc.whole_zone:
        cc.m = 0
        cc.f = z.B - 1
    else:
        cc.m = z.cached_migrate
        cc.f = z.cached_free
        if cc.m == 0:
            cc.whole_zone = True
    cc.iso = cc.f << PAGEBLOCK_ORDER
    cc.isolated_in_f = 0

    while True:
        ret = compact_finished(z, cc)
        if ret != COMPACT_CONTINUE:
            break
        if not isolate_migratepages(z, cc):
            continue  # the scanners met: compact_finished() reports it
        if not process_source_block(z, cc):
            ret = COMPACT_CONTENDED
            break

    release_freepages(z, cc)
    z.count("compact_migrate_scanned", cc.total_migrate_scanned)
    z.count("compact_free_scanned", cc.total_free_scanned)
    return ret


# ---------------------------------------------------------------------------------------
# Callers: direct compaction, kswapd, kcompactd, proactive compaction (TM 3.6)
# ---------------------------------------------------------------------------------------


def direct_compact(z: ZoneRef, order: int, prio: int, mt: int) -> tuple[int | None, CompactResult]:
    """__alloc_pages_direct_compact() + try_to_compact_pages() on one zone (KM 4.10)."""
    if compaction_deferred(z, order):
        status = COMPACT_DEFERRED
    else:
        cc = CompactControl(
            order=order,
            mode=prio,
            migratetype=mt,
            direct=True,
            whole_zone=False,
            ignore_skip_hint=False,
        )
        status = compact_zone(z, cc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(z, order, False)
        elif prio != MIGRATE_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            defer_compaction(z, order)
    # 6.19: only SKIPPED avoids the stall; 4.12: result <= COMPACT_INACTIVE (= DEFERRED).
    if status == COMPACT_SKIPPED or (not z.v6 and status == COMPACT_DEFERRED):
        return None, status
    z.count("compact_stall")
    page = get_page(z, order, z.wmark_min, mt)
    if page is not None:
        z.compact_blockskip_flush = False
        compaction_defer_reset(z, order, True)
        z.count("compact_success")
    else:
        z.count("compact_fail")
    return page, status


def reclaim(z: ZoneRef, nr_to_reclaim: int) -> int:
    """Shrink the page cache: the first nr FILE pages from the CLOCK hand (TM 3.6)."""
    taken: list[int] = []
    cursor = z.reclaim_cursor
    for lo, hi in ((cursor, z.N), (0, cursor)):  # wrapping once around the zone
        pfn = lo
        while len(taken) < nr_to_reclaim:
            pfn = z.kind.find(FILE, pfn, hi)
            if pfn < 0:
                break
            taken.append(pfn)
            pfn += 1
    if taken:
        z.kswapd_failures = 0  # reclaim made progress
        # SPEC: "the last taken pfn" is the last one in the hand's walk order (after a
        # wrap it is below the cursor), not the highest PFN taken.
        z.reclaim_cursor = (taken[-1] + 1) % z.N
        free_pages_ascending(z, taken)
    return len(taken)


def wakeup_kcompactd(z: ZoneRef, order: int) -> None:
    """Mirrors wakeup_kcompactd() + kcompactd_node_suitable() (KM 5.1)."""
    if order == 0 or z.kcompactd_mode == KCOMPACTD_NONE:
        return
    if z.kcompactd_mode == KCOMPACTD_PROACTIVE_DEMAND and any(z.demand[1:]):
        order = max(order, max(o for o in range(1, NR_ORDERS) if z.demand[o] > 0))
    z.kcompactd_max_order = max(z.kcompactd_max_order, order)
    if compaction_suitable(z, z.kcompactd_max_order) == COMPACT_CONTINUE:
        z.kcompactd_pending = True


def wakeup_kswapd(z: ZoneRef, order: int, direct_reclaim_allowed: bool) -> None:
    """Mirrors wakeup_kswapd() (KM 5.1): 6.19 wakes kcompactd for a balanced node."""
    # Hopeless node (kswapd_failures >= MAX_RECLAIM_RETRIES) or pgdat_balanced(): 4.12
    # returns; 6.19 wakes kcompactd for requests that cannot reclaim directly.
    if z.kswapd_failures >= MAX_RECLAIM_RETRIES or zone_watermark_ok(
        z,
        order,
        z.wmark_high,
        alloc_cma=False,  # pgdat_balanced(): alloc_flags 0
    ):
        if z.v6 and not direct_reclaim_allowed:
            wakeup_kcompactd(z, order)
        return
    if not z.kswapd_awake:
        z.kswapd_awake = True
        z.kswapd_reclaimed = 0
        z.count("kswapd_wake")
    z.kswapd_order = max(z.kswapd_order, order)


def kswapd_try_to_sleep(z: ZoneRef) -> None:
    """kswapd_try_to_sleep(): reset skip bits if flagged, kick kcompactd, sleep."""
    reset_isolation_suitable(z)
    wakeup_kcompactd(z, z.kswapd_order)
    z.kswapd_awake = False
    z.kswapd_order = 0


def kswapd_step(z: ZoneRef) -> None:
    """One tick of kswapd (balance_pgdat(), KM 5.1, 11.4), up to kswapd_rounds rounds."""
    if not z.kswapd_awake:
        return
    # SPEC: when every round reclaimed something without balancing the node, kswapd stays
    # awake into the next tick; the balance test is not repeated after the last round.
    for _ in range(z.program.kswapd_rounds):
        # kswapd_shrink_node(): order -> 0 once compact_gap(order) pages were reclaimed
        order = z.kswapd_order if z.kswapd_reclaimed < (2 << z.kswapd_order) else 0
        if zone_watermark_ok(z, order, z.wmark_high, alloc_cma=False):
            kswapd_try_to_sleep(z)
            return
        nr = reclaim(z, SWAP_CLUSTER_MAX)
        z.kswapd_reclaimed += nr
        z.count("pgsteal_kswapd", nr)
        if nr == 0:  # nothing to reclaim: the node is hopeless
            z.kswapd_failures = MAX_RECLAIM_RETRIES
            kswapd_try_to_sleep(z)  # prepare_kswapd_sleep() is true for a hopeless node
            return


def kcompactd_do_work(z: ZoneRef) -> None:
    """Mirrors kcompactd_do_work() (KM 5.2) for the one zone."""
    z.count("compact_daemon_wake")
    order = z.kcompactd_max_order
    if not compaction_deferred(z, order) and compaction_suitable(z, order) == COMPACT_CONTINUE:
        cc = CompactControl(
            order=order,
            mode=MIGRATE_SYNC_LIGHT,
            migratetype=U,  # GFP_KERNEL
            direct=False,
            whole_zone=False,
            ignore_skip_hint=not z.v6,
            demand=z.kcompactd_mode == KCOMPACTD_PROACTIVE_DEMAND,
        )
        status = compact_zone(z, cc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(z, order, False)
        elif status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            defer_compaction(z, order)
        z.count("compact_daemon_migrate_scanned", cc.total_migrate_scanned)
        z.count("compact_daemon_free_scanned", cc.total_free_scanned)
    z.kcompactd_max_order = 0
    z.kcompactd_pending = False
    z.demand = [0] * NR_ORDERS


def proactive_compact_timer(z: ZoneRef, t: int) -> None:
    """The 500 ms timeout of kcompactd(): should_proactive_compact_node() (KM 5.3)."""
    # SPEC: mode proactive_score runs this timer under both profiles (TM 3.6 does not tie
    # it to 6.19, although 4.12 has no proactive compaction).
    if t < z.proactive_next:
        return
    period = z.program.proactive_period
    z.proactive_next = t + period
    if (
        z.proactiveness > 0
        and not z.kswapd_awake
        and node_score(z) > fragmentation_score_wmark(z, low=False)
    ):
        prev_score = node_score(z)
        cc = CompactControl(
            order=-1,
            mode=MIGRATE_SYNC_LIGHT,
            migratetype=U,
            direct=False,
            whole_zone=True,
            ignore_skip_hint=True,
            proactive=True,
        )
        compact_zone(z, cc)  # compact_node(pgdat, proactive=true)
        z.count("compact_daemon_migrate_scanned", cc.total_migrate_scanned)
        z.count("compact_daemon_free_scanned", cc.total_free_scanned)
        if node_score(z) >= prev_score:
            z.proactive_next = t + 64 * period  # back off: 500 ms << COMPACT_MAX_DEFER_SHIFT


# ---------------------------------------------------------------------------------------
# The tick loop (TM 4)
# ---------------------------------------------------------------------------------------


def _hashes(z: ZoneRef, stream: int, first_counter: int, count: int) -> list[int]:
    """h(stream, counter) for counters first_counter .. first_counter + count - 1."""
    counters = np.arange(first_counter, first_counter + count, dtype=np.uint64)
    values = hash_u64(np, z.seed, np.uint64(0), np.uint64(stream), counters)
    return [int(v) for v in values]


def phase_start(z: ZoneRef, phase: Phase) -> None:
    """Step 1: kill_anon / drop_caches (one ascending free sequence), min_free_kbytes."""
    kinds = set()
    if phase.kill_anon:
        kinds.add(ANON)
    if phase.drop_caches:
        kinds.update((FILE, RECL))
    if kinds:
        free_pages_ascending(z, [p for p in range(z.N) if z.kind[p] in kinds])
    if phase.min_free_kbytes:
        z.set_watermarks(phase.min_free_kbytes)


def background_frees(z: ZoneRef, phase: Phase, t: int) -> None:
    """Step 2: F probes; the distinct probed pages of a free_kinds kind are freed."""
    nr = phase.frees_per_tick
    if nr == 0:
        return
    probes = {h % z.N for h in _hashes(z, STREAM_FREE, t * nr, nr)}
    free_pages_ascending(z, [p for p in probes if z.kind[p] in phase.free_kinds])


def background_allocs(z: ZoneRef, phase: Phase, t: int) -> None:
    """Step 3: A order-0 allocations of kinds drawn from alloc_weights."""
    nr = phase.allocs_per_tick
    if nr == 0:
        return
    thresholds = weight_thresholds(phase.alloc_weights)
    for h in _hashes(z, STREAM_ALLOC, t * nr, nr):
        r = h >> 32
        kind = BACKGROUND_KINDS[next(k for k, thr in enumerate(thresholds) if r < thr)]
        mt = KIND_MIGRATETYPE[kind]
        if zone_watermark_ok(z, 0, z.wmark_low, alloc_cma=mt == M):
            page = rmqueue(z, 0, mt)
        else:
            wakeup_kswapd(z, 0, True)
            page = get_page(z, 0, z.wmark_min, mt)
            if page is None:
                z.count("direct_reclaimed", reclaim(z, SWAP_CLUSTER_MAX))
                page = get_page(z, 0, z.wmark_min, mt)
        if page is not None:
            z.kind[page] = kind
            z.count("alloc_background")
        else:
            z.count("alloc_background_fail")


def high_order_attempt(z: ZoneRef, phase: Phase, held: list[tuple[int, int]]) -> int:
    """Step 4: one high-order attempt (__alloc_pages + the slow path, KM 4.10)."""
    order = z.attempt_order
    mt = phase.attempt_mt
    gfp = phase.attempt_gfp
    z.count("alloc_attempts")
    if zone_watermark_ok(z, order, z.wmark_low, alloc_cma=mt == M):  # fast path
        page = rmqueue(z, order, mt)
    else:
        z.demand[order] += 1
        wakeup_kswapd(z, order, gfp != GFP_NOWAIT)
        page = get_page(z, order, z.wmark_min, mt)
        if page is None and gfp == GFP_MOVABLE:  # GFP_HIGHUSER_MOVABLE, costly (KM 10.4)
            page, status = direct_compact(z, order, MIGRATE_ASYNC, mt)
            if page is None:
                z.count("direct_reclaimed", reclaim(z, SWAP_CLUSTER_MAX))
                page = get_page(z, order, z.wmark_min, mt)
            if page is None:
                page, status = direct_compact(z, order, MIGRATE_SYNC_LIGHT, mt)
        if page is None and gfp == GFP_THP:  # GFP_TRANSHUGE | __GFP_NORETRY (KM 4.10)
            page, status = direct_compact(z, order, MIGRATE_ASYNC, mt)
            if page is None and not (
                status == COMPACT_DEFERRED or (z.v6 and status == COMPACT_SKIPPED)
            ):
                z.count("direct_reclaimed", reclaim(z, SWAP_CLUSTER_MAX))
                page = get_page(z, order, z.wmark_min, mt)
                if page is None:
                    page, status = direct_compact(z, order, MIGRATE_ASYNC, mt)
    if page is None:
        return 0
    z.count("alloc_success")
    z.kind[page : page + (1 << order)] = bytes([HELD]) * (1 << order)
    if phase.keep:
        held.append((page, order))
    else:
        __free_pages(z, page, order)
    return 1


def tick(
    z: ZoneRef,
    phase: Phase,
    t: int,
    i: int,
    held: list[tuple[int, int]],
    attempts: list[int],
    samples: list[tuple[list[int], int, int]],
    trials: list[list[int]] | None = None,
) -> None:
    """One tick (TM 4): t is the global tick index, i the index within the phase."""
    if i == 0:
        phase_start(z, phase)
    background_frees(z, phase, t)
    if z.mpc_work_in_progress and z.region_worker_delayed:  # regions (seed 002): TM 6.4
        regions.mem_power_work(z)
    background_allocs(z, phase, t)
    every = phase.attempt_every
    if every > 0 and i % every == every - 1:
        attempts.append(high_order_attempt(z, phase, held))
    every = phase.contig_every
    if every > 0 and i % every == every - 1:  # step 4b (TM 7.4)
        from tests.reference.contig import contig_trial

        trials.append(contig_trial(z, phase, len(trials)))
    kswapd_step(z)
    if (
        z.v6
        and z.kcompactd_mode != KCOMPACTD_NONE
        and (t + 1) % z.program.proactive_period == 0
        and z.kcompactd_max_order > 0
    ):
        z.kcompactd_pending = True  # the 500 ms wait timed out with work requested (TM 3.6)
    if z.kcompactd_pending:
        kcompactd_do_work(z)
    if z.kcompactd_mode == KCOMPACTD_PROACTIVE_SCORE:
        proactive_compact_timer(z, t)
    if z.mpc_work_in_progress and not z.region_worker_delayed:  # regions (seed 002), TM 6.4
        regions.mem_power_work(z)
    every = z.program.sample_every
    if t % every == every - 1:
        # regions (seed 002): the third entry, regions with every page free
        samples.append((z.nr_free_all(), z.nr_free_pages(), regions.nr_free_regions(z)))


def check_zone_invariants(z: ZoneRef) -> None:
    """TM 4 invariants on the live state (outside compaction runs); raises AssertionError."""
    assert ISOFREE not in z.kind, "ISOFREE outside a compaction run"
    heads = {p: o for p, o in enumerate(z.buddy_order) if o >= 0}
    expected = {}
    pfn = 0
    while pfn < z.N:
        if z.kind[pfn] != FREE:
            pfn += 1
            continue
        order = MAX_PAGE_ORDER
        while order > 0 and (
            pfn & ((1 << order) - 1) or z.kind[pfn : pfn + (1 << order)].count(FREE) != 1 << order
        ):
            order -= 1
        expected[pfn] = order
        pfn += 1 << order
    assert heads == expected, "free blocks are not the maximal aligned FREE runs"
    assert sum(1 << o for o in heads.values()) == z.nr_free_pages()
    for order in range(NR_ORDERS):
        for mt in (U, M, R, MIGRATE_CMA):
            for p in z.free_list[order][mt]:
                assert heads.get(p) == order and z.list_mt[p] == mt
    assert sum(len(d) for lists in z.free_list for d in lists) == len(heads)
    if z.v6:
        for p in heads:
            assert z.list_mt[p] == z.block_mt[p >> PAGEBLOCK_ORDER], "list_mt != block_mt"
    for p in heads:  # TM 7.1, both profiles: CMA blocks hold CMA heads only, and vice versa
        cma_block = z.block_mt[p >> PAGEBLOCK_ORDER] == MIGRATE_CMA
        assert cma_block == (z.list_mt[p] == MIGRATE_CMA), "CMA head off the CMA list"
    for b, t in enumerate(z.block_mt):
        if t == MIGRATE_CMA:
            span = z.kind[b << PAGEBLOCK_ORDER : (b + 1) << PAGEBLOCK_ORDER]
            assert span.count(UNMOV) == span.count(RECL) == 0, "unmovable page in a CMA block"
    c = z.counters
    assert c["compact_stall"] == c["compact_success"] + c["compact_fail"]
    assert c["compact_daemon_migrate_scanned"] <= c["compact_migrate_scanned"]
    assert c["compact_daemon_free_scanned"] <= c["compact_free_scanned"]
    assert z.mpc_region >= 0 or not z.mpc_work_in_progress, "work queued without a region"


def _check_program(z: ZoneRef, program: Program) -> None:
    for phase in program.phases:
        bad = [k for k in phase.free_kinds if k not in (ANON, FILE, UNMOV, RECL, PIN)]
        if bad:
            # SPEC: probes free allocated order-0 pages only; FREE (a double free) and HELD
            # (part of a remembered high-order block) are rejected.
            raise ValueError(f"phase {phase.name}: free_kinds may not contain {bad}")
        # SPEC: TM 4 says movable and thp attempts "need attempt_order > 3"; the reference
        # rejects such programs instead of running them.
        if phase.attempt_every and phase.attempt_gfp != GFP_NOWAIT and z.attempt_order <= 3:
            raise ValueError(f"phase {phase.name}: movable/thp attempts need attempt_order > 3")


def run_program_ref(
    kind_row: np.ndarray,
    block_mt_row: np.ndarray,
    zone: TickZones,
    program: Program,
    profile: KernelProfile,
    *,
    check_invariants: bool = False,
) -> TickResult:
    """Run ``program`` on one zone (TM 4); the oracle for kernels.tick.run_program.

    ``kind_row`` (N,) kinds FREE..HELD, ``block_mt_row`` (B,) in {0, 1, 2}, ``zone`` a
    one-zone TickZones. Every array of the result has a leading zone axis of length 1.
    """
    z = ZoneRef(kind_row, block_mt_row, zone, program, profile)
    _check_program(z, program)
    counters = np.zeros((1, len(program.phases), len(COUNTERS)), dtype=np.int64)
    attempts: list[int] = []
    samples: list[tuple[list[int], int, int]] = []
    trials: list[list[int]] = []
    t = 0
    for phase_index, phase in enumerate(program.phases):
        held: list[tuple[int, int]] = []
        # SPEC: a phase with ticks == 0 has no first tick, so its start actions
        # (kill_anon, drop_caches, min_free_kbytes) are not applied; its counters are.
        for i in range(phase.ticks):
            tick(z, phase, t, i, held, attempts, samples, trials)
            t += 1
            if check_invariants:
                check_zone_invariants(z)
        for page, order in reversed(held):  # __free_pages in reverse order (KM 10.1)
            __free_pages(z, page, order)
        if check_invariants:
            check_zone_invariants(z)
        counters[0, phase_index] = [z.counters[name] for name in COUNTERS]
    return _result(z, counters, attempts, samples, trials)


def _result(
    z: ZoneRef,
    counters: np.ndarray,
    attempts: list[int],
    samples: list[tuple[list[int], int, int]],
    trials: list[list[int]] | None = None,
) -> TickResult:
    buddy_order = np.array(z.buddy_order, dtype=np.int8)
    heads = buddy_order >= 0
    # SPEC: list_mt and key are meaningful at heads only; the results report list_mt = -1
    # and key = 0 on every other page so that whole arrays can be compared.
    list_mt = np.where(heads, np.array(z.list_mt, dtype=np.int8), np.int8(-1)).astype(np.int8)
    key = np.where(heads, np.array(z.key, dtype=np.int64), np.int64(0)).astype(np.int64)
    buddyinfo = np.array([s[0] for s in samples], dtype=np.int64).reshape(-1, NR_ORDERS)
    nr_free = np.array([s[1] for s in samples], dtype=np.int64)
    scalar_values = {
        "clock": z.clock,
        "cached_migrate": z.cached_migrate,
        "cached_free": z.cached_free,
        "compact_considered": z.compact_considered,
        "compact_defer_shift": z.compact_defer_shift,
        "compact_order_failed": z.compact_order_failed,
        "compact_blockskip_flush": int(z.compact_blockskip_flush),
        "kswapd_awake": int(z.kswapd_awake),
        "kswapd_order": z.kswapd_order,
        "kswapd_failures": z.kswapd_failures,
        "kcompactd_max_order": z.kcompactd_max_order,
        "reclaim_cursor": z.reclaim_cursor,
        "wmark_min": z.wmark_min,
        "wmark_low": z.wmark_low,
        "wmark_high": z.wmark_high,
        "mpc_region": z.mpc_region,  # regions (seed 002)
    }
    assert tuple(scalar_values) == SCALARS
    return TickResult(
        kind=np.frombuffer(bytes(z.kind), dtype=np.uint8).reshape(1, -1).copy(),
        block_mt=np.array([z.block_mt], dtype=np.int8),
        skip=np.array([z.skip], dtype=bool),
        buddy_order=buddy_order.reshape(1, -1),
        list_mt=list_mt.reshape(1, -1),
        key=key.reshape(1, -1),
        counters=counters,
        buddyinfo=buddyinfo.reshape(1, -1, NR_ORDERS),
        nr_free=nr_free.reshape(1, -1),
        attempts=np.array(attempts, dtype=np.int8).reshape(1, -1),
        scalars={name: np.array([v], dtype=np.int64) for name, v in scalar_values.items()},
        free_regions=np.array([s[2] for s in samples], dtype=np.int64).reshape(1, -1),
        trials=np.array(trials or [], dtype=np.int64).reshape(1, -1, len(TRIAL_FIELDS)),
    )
