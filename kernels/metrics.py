"""External-fragmentation metrics from buddyinfo counts, in exact integer arithmetic.

Mirrors mm/vmstat.c (kernel-model.md 6): fill_contig_page_info(), unusable_free_index(),
__fragmentation_index() and extfrag_for_order(), batched over zones and all orders at
once. Input is ``counts`` ``(Z, 11)`` int64 (``free_area[order].nr_free``, e.g. from
kernels.buddy.buddyinfo); outputs are ``(Z, 11)`` int64 indexed by the requested order.

The kernel divides unsigned 64-bit values (``div_u64``). Every dividend and divisor here
is non-negative, so floor division equals the kernel's truncation. The only negative
results come from the final ``1000 - ...`` subtraction, which the kernel also does
(wrapping in unsigned arithmetic, then converted to ``int``).

Layer rule: pure array code (NumPy or CuPy, namespace taken from the input); imports
only ``kernels.backend`` and ``kernels.zone``.
"""

from __future__ import annotations

from kernels.backend import Array, array_namespace
from kernels.zone import NR_PAGE_ORDERS


def fill_contig_page_info(counts: Array) -> tuple[Array, Array, Array]:
    """``(free_pages (Z, 1), free_blocks_total (Z, 1), free_blocks_suitable (Z, 11))``.

    Mirrors fill_contig_page_info(), mm/vmstat.c, for every ``suitable_order`` 0..10
    at once: ``free_blocks_suitable[:, s] = sum_{o >= s} nr_free[o] << (o - s)``, in units
    of ``2**s`` pages.
    """
    xp = array_namespace(counts)
    counts = xp.asarray(counts, dtype=xp.int64)
    orders = xp.arange(NR_PAGE_ORDERS, dtype=xp.int64)
    free_pages = (counts << orders).sum(axis=1, keepdims=True)
    free_blocks_total = counts.sum(axis=1, keepdims=True)
    # suitable[s] = nr_free[s] + 2 * suitable[s + 1]  (Horner form of the shifted sum)
    columns = [counts[:, NR_PAGE_ORDERS - 1]]
    for order in range(NR_PAGE_ORDERS - 2, -1, -1):
        columns.append(counts[:, order] + 2 * columns[-1])
    free_blocks_suitable = xp.stack(columns[::-1], axis=1)
    return free_pages, free_blocks_total, free_blocks_suitable


def _unusable_pages(counts: Array) -> tuple[Array, Array]:
    """``(free_pages (Z, 1), free pages in blocks smaller than 2**order (Z, 11))``."""
    xp = array_namespace(counts)
    free_pages, _, suitable = fill_contig_page_info(counts)
    orders = xp.arange(NR_PAGE_ORDERS, dtype=xp.int64)
    return free_pages, free_pages - (suitable << orders)


def unusable_free_index(counts: Array) -> Array:
    """``(Z, 11)`` int64 unusable free space index, thousandths.

    Mirrors unusable_free_index(), mm/vmstat.c: ``1000`` when the zone has no free
    pages ("all free memory is unusable"), else
    ``(free_pages - (free_blocks_suitable << order)) * 1000 / free_pages``.
    """
    xp = array_namespace(counts)
    free_pages, unusable = _unusable_pages(counts)
    safe = xp.maximum(free_pages, 1)
    return xp.where(free_pages == 0, 1000, unusable * 1000 // safe)


def fragmentation_index(counts: Array) -> Array:
    """``(Z, 11)`` int64 fragmentation index, thousandths.

    Mirrors __fragmentation_index(), mm/vmstat.c: ``0`` with no free blocks, ``-1000``
    when a suitable block exists (the request would succeed), else
    ``1000 - (1000 + free_pages * 1000 / 2**order) / free_blocks_total``.
    """
    xp = array_namespace(counts)
    free_pages, free_blocks_total, suitable = fill_contig_page_info(counts)
    orders = xp.arange(NR_PAGE_ORDERS, dtype=xp.int64)
    safe_total = xp.maximum(free_blocks_total, 1)
    # div_u64(free_pages * 1000, 1 << order): a shift, the dividend being non-negative
    index = 1000 - (1000 + ((free_pages * 1000) >> orders)) // safe_total
    index = xp.where(suitable > 0, -1000, index)
    return xp.where(free_blocks_total == 0, 0, index)


def extfrag_for_order(counts: Array) -> Array:
    """``(Z, 11)`` int64 external fragmentation for each order, percent.

    Mirrors extfrag_for_order(), mm/vmstat.c (6.19, proactive compaction score):
    ``0`` when the zone has no free pages, else
    ``(free_pages - (free_blocks_suitable << order)) * 100 / free_pages``.
    """
    xp = array_namespace(counts)
    free_pages, unusable = _unusable_pages(counts)
    safe = xp.maximum(free_pages, 1)
    return xp.where(free_pages == 0, 0, unusable * 100 // safe)
