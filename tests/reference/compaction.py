"""Per-zone reference of whole-zone compaction: the oracle for kernels/compaction.py.

Plain Python over one zone's list of page-state codes, in the control flow and names of
mm/compaction.c (kernel-model.md 4.3-4.7, 4.11). It is slow on purpose: every PFN is
visited the way ``isolate_migratepages_block()`` and ``isolate_freepages_block()`` visit
it, state changes are applied as they happen, and nothing relies on the prefix-sum
algebra of the batched kernel.

What is modelled: ``compact_zone()`` as called by ``compact_node()`` for
``echo 1 > /proc/sys/vm/compact_memory``: ``order = -1``, ``MIGRATE_SYNC``,
``whole_zone``, ``ignore_skip_hint`` (so skip bits are neither read nor needed), for the
``v4_12`` and ``v6_19`` kernel profiles.

Model simplifications (shared with the batched kernel and documented there):

* The zone is zone-relative (PFN 0 is the zone start); ``zone_start_pfn`` is taken as
  non-zero and pageblock aligned, so ``last_migrated_pfn == 0`` means "none".
* Free isolation is page-granular and exact-demand (performance-notes.md 1.2): the free
  scanner isolates exactly the free pages the current migration needs, one PFN at a
  time, instead of whole buddy blocks. A free page is isolatable when the head of its
  buddy block lies in the same pageblock (the tail half of an order-10 block, whose head
  is in the pageblock below, is skipped page by page as in the kernel).
* A pinned page that fails migration does not take a target first.
* ``migrate_pages()`` walks its list in ascending PFN order (the kernel's list is in
  reverse isolation order); this only matters in the last batch of a run.
* A folio of order k needs 2**k targets at once; if the free scanner cannot supply
  them, migration stops with ``-ENOMEM`` (the kernel would split the folio and retry
  its base pages). The folio lands intact when its targets form one naturally aligned
  run (what a free buddy block of order >= k gives ``compaction_alloc()``), otherwise it
  is split into base pages at the destination (``try_split_folio()``), counted in
  ``migrate_folio_split``.
* Freed source pages go to the per-cpu lists and reach the buddy allocator only when the
  run ends (order -1 runs never drain in ``check_drain``), so no scanner sees them merge.
* LRU-lock acquisitions are counted on the isolation side: one per
  ``compact_lock_irqsave()`` in ``isolate_migratepages_block()``.
"""

from __future__ import annotations

import dataclasses

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
)

ISOLATE_ABORT, ISOLATE_NONE, ISOLATE_SUCCESS = range(3)
ENOMEM = -12

# Reference-only transient states (never seen outside a run).
_PCP_FREE = 0xFE  # freed source page waiting on a per-cpu list
_ISOLATED_FREE = 0xFD  # free page isolated by the free scanner, not yet used


@dataclasses.dataclass
class CompactCounters:
    """The counters one compact_zone() run adds (kernel names, page units)."""

    compact_migrate_scanned: int = 0
    compact_free_scanned: int = 0
    compact_isolated: int = 0
    pgmigrate_success: int = 0
    pgmigrate_fail: int = 0
    lru_lock_acquisitions: int = 0
    migrate_folio_split: int = 0


@dataclasses.dataclass
class CompactControl:
    """struct compact_control, for one whole-zone run."""

    zone: list[int]
    pageblock_migratetype: list[int]
    profile: KernelProfile
    skip_pinned: bool
    migrate_pfn: int = 0
    free_pfn: int = 0
    finish_pageblock: bool = False
    migratepages: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (pfn, nr_pages)
    freepages: list[int] = dataclasses.field(default_factory=list)
    counters: CompactCounters = dataclasses.field(default_factory=CompactCounters)

    @property
    def nr_pages(self) -> int:
        return len(self.zone)

    @property
    def v6(self) -> bool:
        return self.profile == KernelProfile.V6_19


def pageblock_start_pfn(pfn: int) -> int:
    return pfn & ~(PAGEBLOCK_NR_PAGES - 1)


def pageblock_end_pfn(pfn: int) -> int:
    return pageblock_start_pfn(pfn) + PAGEBLOCK_NR_PAGES


def buddy_block(zone: list[int], pfn: int) -> tuple[int, int]:
    """(head pfn, order) of the free buddy block holding free page ``pfn``.

    The buddy allocator merges eagerly (__free_one_page()), so the block holding a free
    page is the largest naturally aligned, entirely free block around it, up to
    MAX_PAGE_ORDER and within the zone.
    """
    head, order = pfn, 0
    for o in range(1, MAX_PAGE_ORDER + 1):
        start = pfn & ~((1 << o) - 1)
        end = start + (1 << o)
        if end > len(zone) or any(zone[p] != FREE for p in range(start, end)):
            break
        head, order = start, o
    return head, order


def page_buddy_order(zone: list[int], pfn: int) -> int:
    """buddy_order(page) if PageBuddy(page) (a free block head), else -1."""
    if zone[pfn] != FREE:
        return -1
    head, order = buddy_block(zone, pfn)
    return order if head == pfn else -1


def compact_scanners_met(cc: CompactControl) -> bool:
    """Mirrors compact_scanners_met(), mm/compaction.c."""
    return (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER)


def isolate_migratepages_block(cc: CompactControl, low_pfn: int, end_pfn: int) -> int:
    """Isolate movable pages from [low_pfn, end_pfn) onto cc.migratepages.

    Mirrors isolate_migratepages_block(), mm/compaction.c (kernel-model.md 4.5.2 and its
    4.12 differences).
    """
    zone, c = cc.zone, cc.counters
    nr_scanned = 0
    nr_isolated = 0
    locked = False
    while low_pfn < end_pfn:
        # Periodically drop the lock (if held) regardless of its contention.
        if low_pfn % COMPACT_CLUSTER_MAX == 0:
            locked = False
        nr_scanned += 1
        code = zone[low_pfn]
        kind = code & KIND_MASK

        freepage_order = page_buddy_order(zone, low_pfn)
        if freepage_order >= 0:  # PageBuddy(page)
            if freepage_order > 0:
                low_pfn += (1 << freepage_order) - 1
                if cc.v6:  # 6.19 counts the PFNs covered; 4.12 counts struct pages visited
                    nr_scanned += (1 << freepage_order) - 1
            low_pfn += 1
            continue

        order = (code & ORDER_MASK) >> ORDER_SHIFT
        if order > 0 and not code & TAIL_FLAG:  # PageCompound(page): a folio head
            # 4.12 skips every compound page; 6.19 skip_isolation_on_order(): for
            # compact_memory only order >= pageblock_order.
            if not cc.v6 or order >= PAGEBLOCK_ORDER:
                low_pfn += (1 << order) - 1
                if cc.v6:
                    nr_scanned += (1 << order) - 1
                low_pfn += 1  # isolate_fail
                continue

        if kind not in (MOVABLE, PINNED) or code & TAIL_FLAG or code in (_PCP_FREE, _ISOLATED_FREE):
            low_pfn += 1  # !PageLRU: isolate_fail
            continue

        if kind == PINNED and cc.skip_pinned:
            # Migration will fail if an anonymous page is pinned in memory, so avoid
            # taking lru_lock and isolating it unnecessarily. 6.19 reaches this check
            # holding a folio reference and leaves through isolate_fail_put, which drops
            # the LRU lock; 4.12's isolate_fail keeps it.
            if cc.v6:
                locked = False
            low_pfn += 1
            continue

        if not locked:  # compact_lock_irqsave()
            locked = True
            c.lru_lock_acquisitions += 1

        # isolate_success
        nr_pages = 1 << order
        cc.migratepages.append((low_pfn, nr_pages))
        nr_isolated += nr_pages
        nr_scanned += nr_pages - 1
        low_pfn += nr_pages - 1
        # 6.19: nr_migratepages >= COMPACT_CLUSTER_MAX && !finish_pageblock;
        # 4.12: nr_migratepages == COMPACT_CLUSTER_MAX (it never isolates folios).
        if (
            (nr_isolated >= COMPACT_CLUSTER_MAX and not cc.finish_pageblock)
            if cc.v6
            else (nr_isolated == COMPACT_CLUSTER_MAX)
        ):
            low_pfn += 1
            break
        low_pfn += 1

    # The PageBuddy() check could have potentially brought us outside the range.
    if low_pfn > end_pfn:
        low_pfn = end_pfn
    c.compact_migrate_scanned += nr_scanned
    c.compact_isolated += nr_isolated
    return low_pfn


def isolate_migratepages(cc: CompactControl) -> int:
    """Isolate a batch from the next pageblock. Mirrors isolate_migratepages()."""
    low_pfn = cc.migrate_pfn
    block_start_pfn = pageblock_start_pfn(low_pfn)
    block_end_pfn = block_start_pfn + PAGEBLOCK_NR_PAGES
    # sync compaction scans every pageblock type (suitable_migration_source), and
    # ignore_skip_hint ignores skip bits, so the first block below free_pfn is taken.
    if block_end_pfn <= cc.free_pfn:
        cc.migrate_pfn = isolate_migratepages_block(cc, low_pfn, block_end_pfn)
    return ISOLATE_SUCCESS if cc.migratepages else ISOLATE_NONE


def suitable_migration_target(cc: CompactControl, block_start_pfn: int) -> bool:
    """Mirrors suitable_migration_target(): looks at the block's first page only."""
    if page_buddy_order(cc.zone, block_start_pfn) >= PAGEBLOCK_ORDER:  # order -1: pageblock_order
        return False
    mt = cc.pageblock_migratetype[block_start_pfn >> PAGEBLOCK_ORDER]
    return mt in (MigrateType.MOVABLE, MigrateType.CMA)


def isolate_freepages_block(
    cc: CompactControl, start_pfn: int, end_pfn: int, nr_needed: int
) -> int:
    """Isolate free pages from [start_pfn, end_pfn) until nr_needed are held.

    Mirrors isolate_freepages_block(..., stride=1, strict=false), page-granular.
    """
    zone, c = cc.zone, cc.counters
    block_start_pfn = pageblock_start_pfn(start_pfn)
    blockpfn = start_pfn
    nr_scanned = 0
    total_isolated = 0
    while blockpfn < end_pfn:
        nr_scanned += 1
        code = zone[blockpfn]
        order = (code & ORDER_MASK) >> ORDER_SHIFT
        if order > 0 and not code & TAIL_FLAG:  # PageCompound(page): skip it whole
            if cc.v6 and blockpfn + (1 << order) <= end_pfn:
                nr_scanned += (1 << order) - 1
            blockpfn += 1 << order
            continue
        if code == FREE and buddy_block(zone, blockpfn)[0] >= block_start_pfn:
            zone[blockpfn] = _ISOLATED_FREE
            cc.freepages.append(blockpfn)
            total_isolated += 1
            if len(cc.freepages) >= nr_needed:
                blockpfn += 1
                break
        blockpfn += 1
    c.compact_free_scanned += nr_scanned
    c.compact_isolated += total_isolated
    return min(blockpfn, end_pfn)


def isolate_freepages(cc: CompactControl, nr_needed: int) -> None:
    """Walk pageblocks down from free_pfn collecting targets. Mirrors isolate_freepages()."""
    isolate_start_pfn = cc.free_pfn
    block_start_pfn = pageblock_start_pfn(isolate_start_pfn)
    block_end_pfn = min(block_start_pfn + PAGEBLOCK_NR_PAGES, cc.nr_pages)
    low_pfn = pageblock_end_pfn(cc.migrate_pfn)
    while block_start_pfn >= low_pfn:
        if suitable_migration_target(cc, block_start_pfn):
            isolate_start_pfn = isolate_freepages_block(
                cc, isolate_start_pfn, block_end_pfn, nr_needed
            )
            if len(cc.freepages) >= nr_needed:
                if isolate_start_pfn >= block_end_pfn:
                    # Restart at previous pageblock if more freepages can be isolated.
                    isolate_start_pfn = block_start_pfn - PAGEBLOCK_NR_PAGES
                break
        block_end_pfn = block_start_pfn
        block_start_pfn -= PAGEBLOCK_NR_PAGES
        isolate_start_pfn = block_start_pfn
    cc.free_pfn = isolate_start_pfn


def compaction_alloc(cc: CompactControl, nr_pages: int) -> list[int] | None:
    """Targets for one source unit of nr_pages pages, or None (-ENOMEM)."""
    if len(cc.freepages) < nr_pages:
        isolate_freepages(cc, nr_pages)
    if len(cc.freepages) < nr_pages:
        return None
    targets, cc.freepages = cc.freepages[:nr_pages], cc.freepages[nr_pages:]
    return targets


def migrate_pages(cc: CompactControl) -> int:
    """Migrate cc.migratepages; returns 0, or ENOMEM when targets ran out.

    Mirrors migrate_pages(), mm/migrate.c: a pinned page fails (its extra reference
    makes the expected-refcount check fail on every pass) and is counted once; -ENOMEM
    stops the whole list, counting the unit that got no target as failed.
    """
    zone, c = cc.zone, cc.counters
    for src, nr_pages in sorted(cc.migratepages):
        code = zone[src]
        if code & KIND_MASK == PINNED:
            c.pgmigrate_fail += 1
            continue
        targets = compaction_alloc(cc, nr_pages)
        if targets is None:
            c.pgmigrate_fail += nr_pages
            return ENOMEM
        intact = targets[0] % nr_pages == 0 and targets == list(
            range(targets[0], targets[0] + nr_pages)
        )
        if nr_pages > 1 and not intact:
            c.migrate_folio_split += 1
        for i, dst in enumerate(targets):
            if intact:
                zone[dst] = zone[src + i]
            else:
                zone[dst] = MOVABLE
        for i in range(nr_pages):
            zone[src + i] = _PCP_FREE
        c.pgmigrate_success += nr_pages
    return 0


def compact_zone(
    page_state: list[int],
    pageblock_migratetype: list[int],
    profile: KernelProfile,
    skip_pinned: bool,
) -> tuple[list[int], CompactCounters]:
    """Compact one whole zone; returns the new page states and the counters.

    Mirrors compact_zone() for compact_node(): order -1, MIGRATE_SYNC, whole_zone,
    ignore_skip_hint (kernel-model.md 4.3). For order -1, __compact_finished() returns
    COMPACT_CONTINUE until the scanners meet, so the run ends when they meet or when
    migrate_pages() runs out of targets.
    """
    cc = CompactControl(
        [int(x) for x in page_state], [int(x) for x in pageblock_migratetype], profile, skip_pinned
    )
    cc.migrate_pfn = 0
    cc.free_pfn = pageblock_start_pfn(cc.nr_pages - 1)
    last_migrated_pfn: int | None = None  # the kernel's 0: none yet
    while not compact_scanners_met(cc):
        if cc.v6:
            # Avoid multiple rescans of the same pageblock: the first rescan captures the
            # entire pageblock for migration.
            cc.finish_pageblock = last_migrated_pfn is not None and pageblock_start_pfn(
                last_migrated_pfn
            ) == pageblock_start_pfn(cc.migrate_pfn)
        if isolate_migratepages(cc) == ISOLATE_NONE:
            continue
        last_migrated_pfn = pageblock_start_pfn(cc.migrate_pfn - 1)
        err = migrate_pages(cc)
        cc.migratepages = []
        if err == ENOMEM and not compact_scanners_met(cc):
            break  # COMPACT_CONTENDED: out of free targets
    # release_free_list(): unused targets go back to the buddy; drain the pcp lists.
    zone = [FREE if s in (_PCP_FREE, _ISOLATED_FREE) else s for s in cc.zone]
    return zone, cc.counters
