"""Per-zone reference of memory regions (seed 002, docs/tick-model.md section 6, "TM 6").

Srivatsa Bhat's 2013 "[Sorted-buddy] mm: Memory Power Management" RFC (KM 12(e), 11.7(5)):
free lists sorted by memory region, and the alloc/free handshake of its patch 14 that
queues a worker (``mem_power_ctrl.work``) to evacuate a freshly used region. Plain Python
over one :class:`tests.reference.tick.ZoneRef`, in the patch's names:

* ``region_of(z, pfn)``: ``page_zone_region_id()``;
* ``first`` of a sorted list (``free_list->next_region`` first, then LIFO): the heap entry
  of a head is ``(region, -key, pfn)`` (``heap_rank``), so the heap top is the lowest
  region's head with the largest key;
* ``rmqueue_del_from_freelist(z, page)``: the alloc half of the handshake, then the
  deletion;
* ``add_to_freelist_handshake(z)``: the free half (``add_to_freelist()``), called by every
  insertion into a free list;
* ``mem_power_work(z)``: the worker (patch 15 is not in the seed; TM 6.3 models it).

The hooks in ``tests/reference/tick.py`` are marked ``# regions (seed 002)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernels.program import ANON, FILE, FREE, PIN

if TYPE_CHECKING:  # pragma: no cover
    from tests.reference.tick import ZoneRef

PAGEBLOCK_ORDER = 9
MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 1, 2
SWAP_WINDOW = 32  # LRU-lock window of the compaction model (TM 3.4)


def init_regions(
    z: ZoneRef, region_blocks: int, sorted_lists: bool, evacuation: bool, delayed: bool
) -> None:
    """struct zone_mem_region / mem_power_ctrl state of one zone (TM 6.1)."""
    z.region_pages = region_blocks << PAGEBLOCK_ORDER
    z.nr_regions = -(-z.N // z.region_pages)
    z.sorted_freelists = sorted_lists
    z.region_evacuation = evacuation
    z.region_worker_delayed = delayed  # the worker runs after the next tick's frees (TM 6.4)
    z.mpc_region = -1  # mem_power_ctrl.region (NULL = -1)
    z.mpc_work_in_progress = False  # is_mem_pwr_work_in_progress()


def region_of(z: ZoneRef, pfn: int) -> int:
    """page_zone_region_id(): the memory region of a page."""
    return pfn // z.region_pages


def region_span(z: ZoneRef, region: int) -> tuple[int, int]:
    """[start, end) PFNs of a region; the last one may be partial (its present_pages)."""
    start = region * z.region_pages
    return start, min(start + z.region_pages, z.N)


def region_entirely_free(z: ZoneRef, region: int) -> bool:
    """zmr->nr_free == zmr->present_pages: every page of the region is in a free block."""
    start, end = region_span(z, region)
    return z.kind[start:end].count(FREE) == end - start


def heap_rank(z: ZoneRef, pfn: int) -> int:
    """The leading heap key of a free head: its region (sorted lists), else 0 (plain)."""
    return region_of(z, pfn) if z.sorted_freelists else 0


def nr_free_regions(z: ZoneRef) -> int:
    """Regions with every page free (the power-down candidates sampled by TM 4 step 6)."""
    return sum(region_entirely_free(z, r) for r in range(z.nr_regions))


def note_fresh_region(z: ZoneRef, page: int) -> None:
    """The alloc half of the handshake (patch 14, rmqueue_del_from_freelist()).

    The first allocation in a region that was entirely free notes that region, unless it
    is region 0, the block was not on a MOVABLE / RECLAIMABLE list
    (get_freepage_migratetype(); no CMA here) or work is already in progress.
    """
    if not z.region_evacuation:
        return
    region = region_of(z, page)
    if region == 0 or not region_entirely_free(z, region):
        return
    if z.list_mt[page] in (MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE):
        if not z.mpc_work_in_progress:
            z.mpc_region = region


def add_to_freelist_handshake(z: ZoneRef) -> None:
    """The free half (patch 14, add_to_freelist()): queue the worker for a noted region."""
    if z.region_evacuation and not z.mpc_work_in_progress and z.mpc_region >= 0:
        z.mpc_work_in_progress = True  # set_mem_pwr_work_in_progress(); queue_work()


def rmqueue_del_from_freelist(z: ZoneRef, page: int) -> None:
    """Mirrors rmqueue_del_from_freelist() of seed 002's patch 14: note, then delete."""
    from tests.reference.tick import del_page_from_free_list

    note_fresh_region(z, page)
    del_page_from_free_list(z, page)


def mem_power_work(z: ZoneRef) -> None:
    """The queued worker: evacuate the noted region (TM 6.3; patch 15 is not in the seed).

    Compaction-style migration of the region's LRU pages, pageblock by pageblock in
    ascending PFN order (isolate_migratepages_range() + migrate_pages()), with targets
    from the (region-sorted) page allocator, get_page(0, wmark_min, MOVABLE), instead of
    a free scanner. A target in the same or a higher region is no gain: it is freed back
    and the work stops, as it does when the allocator has no page.
    """
    from tests.reference.tick import MIGRATE_MOVABLE as M
    from tests.reference.tick import free_pages_ascending, get_page

    region = z.mpc_region
    z.count("region_evacuations")
    start, end = region_span(z, region)
    isolate_kinds = (ANON, FILE) if z.skip_pinned else (ANON, FILE, PIN)
    stop = False
    for block_start in range(start, end, 1 << PAGEBLOCK_ORDER):
        block_end = block_start + (1 << PAGEBLOCK_ORDER)
        pfn = block_start  # the migrate scanner's walk, as in process_source_block()
        while pfn < block_end:
            order = z.buddy_order[pfn]
            if order >= 0:
                z.count("compact_migrate_scanned", (1 << order) if z.v6 else 1)
                pfn += 1 << order
            else:
                z.count("compact_migrate_scanned")
                pfn += 1
        cand = [p for p in range(block_start, block_end) if z.kind[p] in isolate_kinds]
        z.count("compact_isolated", len(cand))
        z.count("lru_lock_acquisitions", len({p // SWAP_WINDOW for p in cand}))
        migrated = []
        for src in cand:
            if z.kind[src] == PIN:
                z.count("pgmigrate_fail")  # pinned: -EAGAIN, never takes a target
                continue
            target = get_page(z, 0, z.wmark_min, M)
            if target is not None and region_of(z, target) >= region:
                # no gain: the target goes back to the allocator (__free_one_page)
                free_pages_ascending(z, [target])
                target = None
            if target is None:
                z.count("pgmigrate_fail")
                stop = True
                break
            z.kind[target] = z.kind[src]  # the source stays allocated until freed below
            migrated.append(src)
            z.count("pgmigrate_success")
        free_pages_ascending(z, migrated)
        if stop:
            break
    z.mpc_region = -1
    z.mpc_work_in_progress = False
