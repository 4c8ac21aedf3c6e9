"""Reference buddy view and fragmentation metrics for ONE zone, in plain Python.

Written after the kernel's words, one PFN at a time, with Python ints and lists and no
vectorisation. It is slow and meant to be obviously right: the oracle for
kernels/buddy.py and kernels/metrics.py.

The zone's free blocks are those that eager merging in __free_one_page()
(mm/page_alloc.c) leaves behind. Walk the PFNs upward. At a free PFN, the head of a free
block has the largest order o <= MAX_PAGE_ORDER such that pfn % 2**o == 0 and all 2**o
pages from pfn are free and inside the zone. Skip over that block and go on.
"""

from __future__ import annotations

MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
NR_MIGRATETYPES = 6
FREE = 0  # page-state code of a free page (kernels/zone.py)


def free_blocks(codes: list[int]) -> list[tuple[int, int]]:
    """``[(head_pfn, order), ...]`` of the zone's free buddy blocks, ascending PFN."""
    nr_pages = len(codes)
    blocks = []
    pfn = 0
    while pfn < nr_pages:
        if codes[pfn] != FREE:
            pfn += 1
            continue
        order = 0
        for o in range(MAX_PAGE_ORDER, 0, -1):
            size = 1 << o
            if (
                pfn % size == 0
                and pfn + size <= nr_pages
                and all(codes[p] == FREE for p in range(pfn, pfn + size))
            ):
                order = o
                break
        blocks.append((pfn, order))
        pfn += 1 << order
    return blocks


def buddyinfo(codes: list[int]) -> list[int]:
    """``free_area[order].nr_free`` for orders 0..10 (frag_show_print(), mm/vmstat.c)."""
    nr_free = [0] * NR_PAGE_ORDERS
    for _, order in free_blocks(codes):
        nr_free[order] += 1
    return nr_free


def pagetypeinfo(codes: list[int], pageblock_migratetype: list[int]) -> list[list[int]]:
    """``nr_free[migratetype][order]``, migratetype of the head's pageblock.

    Mirrors pagetypeinfo_showfree_print(), mm/vmstat.c, under 6.19 freelist hygiene.
    """
    nr_free = [[0] * NR_PAGE_ORDERS for _ in range(NR_MIGRATETYPES)]
    for pfn, order in free_blocks(codes):
        migratetype = pageblock_migratetype[pfn >> PAGEBLOCK_ORDER]
        nr_free[migratetype][order] += 1
    return nr_free


def nr_free_pages(codes: list[int]) -> int:
    """Free pages: the sum of ``2**order`` over the free blocks."""
    return sum(1 << order for _, order in free_blocks(codes))


def free_block_heads(codes: list[int]) -> list[int]:
    """Per PFN: the order of the free block headed there, -1 elsewhere."""
    heads = [-1] * len(codes)
    for pfn, order in free_blocks(codes):
        heads[pfn] = order
    return heads


def fill_contig_page_info(nr_free: list[int], suitable_order: int) -> tuple[int, int, int]:
    """``(free_pages, free_blocks_total, free_blocks_suitable)``.

    Mirrors fill_contig_page_info(), mm/vmstat.c.
    """
    free_pages = 0
    free_blocks_total = 0
    free_blocks_suitable = 0
    for order in range(NR_PAGE_ORDERS):
        blocks = nr_free[order]
        free_blocks_total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            free_blocks_suitable += blocks << (order - suitable_order)
    return free_pages, free_blocks_total, free_blocks_suitable


def _div_u64(a: int, b: int) -> int:
    assert a >= 0 and b > 0
    return a // b


def unusable_free_index(order: int, nr_free: list[int]) -> int:
    """Mirrors unusable_free_index(), mm/vmstat.c (thousandths)."""
    free_pages, _, free_blocks_suitable = fill_contig_page_info(nr_free, order)
    # No free memory is interpreted as all free memory is unusable
    if free_pages == 0:
        return 1000
    return _div_u64((free_pages - (free_blocks_suitable << order)) * 1000, free_pages)


def fragmentation_index(order: int, nr_free: list[int]) -> int:
    """Mirrors __fragmentation_index(), mm/vmstat.c (thousandths)."""
    free_pages, free_blocks_total, free_blocks_suitable = fill_contig_page_info(nr_free, order)
    requested = 1 << order
    if order > MAX_PAGE_ORDER:
        return 0
    if not free_blocks_total:
        return 0
    # Fragmentation index only makes sense when a request would fail
    if free_blocks_suitable:
        return -1000
    return 1000 - _div_u64(1000 + _div_u64(free_pages * 1000, requested), free_blocks_total)


def extfrag_for_order(order: int, nr_free: list[int]) -> int:
    """Mirrors extfrag_for_order(), mm/vmstat.c (percent)."""
    free_pages, _, free_blocks_suitable = fill_contig_page_info(nr_free, order)
    if free_pages == 0:
        return 0
    return _div_u64((free_pages - (free_blocks_suitable << order)) * 100, free_pages)
