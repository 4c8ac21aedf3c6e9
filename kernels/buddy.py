"""Buddy free lists derived from page states: /proc/buddyinfo and /proc/pagetypeinfo.

The buddy allocator merges eagerly: __free_one_page() (mm/page_alloc.c,
kernel-model.md 2.2) joins a freed block with its free buddy until the buddy is not free
or MAX_PAGE_ORDER is reached. All our migratetypes are mergeable, so the free blocks are
exactly the maximal naturally aligned free runs of at most ``2**MAX_PAGE_ORDER`` pages.
They can be derived from the FREE bitmap alone, with no free lists to keep in step:

    count[k] = A(k) - 2 * A(k + 1)   (k < MAX_PAGE_ORDER),   count[MAX_PAGE_ORDER] = A(10)

where ``A(k)`` is the number of naturally aligned ``2**k``-page slots that are all free.
An all-free slot is a free block of order exactly k iff its parent slot is not all free.
The zone starts at PFN 0 and an order-10 block must lie wholly inside the zone.

Implementation (performance-notes.md 2.2): the FREE bitmap is packed into uint64 words
(bit ``i % 64`` of word ``i // 64``). Orders 0-6 are counted inside each word with
``a &= a >> 2**k`` halving steps and a popcount. Orders 7-10 pair up the words'
"all ones" flags.

Layer rule: pure array code (NumPy or CuPy, namespace taken from the input); imports
only ``kernels.backend``, ``kernels.bits`` and ``kernels.zone``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.backend import Array, array_namespace, to_numpy
from kernels.bits import popcount
from kernels.zone import FREE, MAX_PAGE_ORDER, NR_MIGRATETYPES, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES

WORD_BITS = 64
WORD_ORDER = 6  # log2(WORD_BITS)
U64 = np.uint64
# _HALVING_MASKS[k]: bit positions that are multiples of 2**(k + 1), for k = 0..5.
_HALVING_MASKS = tuple(
    U64(sum(1 << p for p in range(0, WORD_BITS, 1 << (k + 1)))) for k in range(WORD_ORDER)
)


def free_bitmap_words(page_state: Array) -> Array:
    """``(Z, N / 64)`` uint64: bit ``i % 64`` of word ``i // 64`` set iff PFN i is FREE."""
    xp = array_namespace(page_state)
    nr_zones, nr_pages = page_state.shape
    if nr_pages % PAGEBLOCK_NR_PAGES:
        raise ValueError(f"zone of {nr_pages} pages is not a whole number of pageblocks")
    # Rows are whole bytes long, so packing the flat array packs each row.
    packed = xp.packbits((page_state == FREE).reshape(-1), bitorder="little")
    return packed.view(xp.uint64).reshape(nr_zones, nr_pages // WORD_BITS)


def _aligned_free(words: Array) -> tuple[list[Array], list[Array]]:
    """Per-word all-free slot counts for orders 0..5 and all-free flags for orders 6..10.

    Returns ``(per_word, flags)``: ``per_word[k]`` (Z, W) uint8 is the number of all-free
    aligned ``2**k`` slots in each word (k = 0..5); ``flags[j]`` (Z, W >> j) bool says
    whether each aligned ``2**(6 + j)`` slot is all free (j = 0..4; the order-10 flags
    cover only whole 1024-page slots).
    """
    xp = array_namespace(words)
    per_word = []
    a = words
    for k in range(WORD_ORDER):
        per_word.append(popcount(xp, a))
        a = a & (a >> U64(1 << k)) & _HALVING_MASKS[k]
    flags = [a != 0]
    for _ in range(WORD_ORDER, MAX_PAGE_ORDER):
        f = flags[-1]
        pairs = f.shape[1] // 2
        flags.append(f[:, 0 : 2 * pairs : 2] & f[:, 1 : 2 * pairs : 2])
    return per_word, flags


def buddyinfo(page_state: Array) -> Array:
    """``(Z, 11)`` int64 free blocks per order: ``free_area[order].nr_free``.

    Mirrors frag_show_print(), mm/vmstat.c (/proc/buddyinfo, kernel-model.md 9.1) for free
    lists built by __free_one_page(), mm/page_alloc.c.
    """
    xp = array_namespace(page_state)
    per_word, flags = _aligned_free(free_bitmap_words(page_state))
    allfree = [c.sum(axis=1, dtype=xp.int64) for c in per_word]
    allfree += [f.sum(axis=1, dtype=xp.int64) for f in flags]
    counts = xp.stack(allfree, axis=1)  # (Z, 11): A(k)
    counts[:, :MAX_PAGE_ORDER] -= 2 * counts[:, 1:]
    return counts


def pagetypeinfo(page_state: Array, pageblock_migratetype: Array) -> Array:
    """``(Z, 6, 11)`` int64 free blocks per migratetype and order.

    Mirrors pagetypeinfo_showfree_print(), mm/vmstat.c (kernel-model.md 9.2), with 6.19
    freelist hygiene: a free block is on the list of its head's pageblock migratetype.
    An order-10 block spans two pageblocks and counts for the first.
    """
    xp = array_namespace(page_state, pageblock_migratetype)
    nr_zones, nr_blocks = pageblock_migratetype.shape
    per_word, flags = _aligned_free(free_bitmap_words(page_state))
    words_per_block = PAGEBLOCK_NR_PAGES // WORD_BITS
    # A(k) per pageblock, orders 0..9: (Z, B) each.
    allfree = [
        c.reshape(nr_zones, nr_blocks, words_per_block).sum(axis=2, dtype=xp.int64)
        for c in per_word
    ]
    for j, f in enumerate(flags[:-1]):
        allfree.append(
            f.reshape(nr_zones, nr_blocks, words_per_block >> j).sum(axis=2, dtype=xp.int64)
        )
    per_block = xp.stack(allfree, axis=2)  # (Z, B, 10)
    per_block[:, :, :-1] -= 2 * per_block[:, :, 1:]
    pair_free = flags[-1].astype(xp.int64)  # (Z, B // 2): both blocks of the pair all free
    nr_pairs = pair_free.shape[1]
    order10 = xp.zeros((nr_zones, nr_blocks), dtype=xp.int64)
    order10[:, 0 : 2 * nr_pairs : 2] = pair_free
    per_block[:, : 2 * nr_pairs, -1] -= xp.repeat(pair_free, 2, axis=1)  # order 9 halves merged
    per_block = xp.concatenate([per_block, order10[:, :, None]], axis=2)  # (Z, B, 11)
    out = xp.zeros((nr_zones, NR_MIGRATETYPES, NR_PAGE_ORDERS), dtype=xp.int64)
    for mt in range(NR_MIGRATETYPES):
        in_type = (pageblock_migratetype == mt)[:, :, None]
        out[:, mt, :] = xp.where(in_type, per_block, 0).sum(axis=1)
    return out


def nr_free_pages(page_state: Array) -> Array:
    """``(Z,)`` int64 free pages, ``sum(count[k] << k)``.

    Like NR_FREE_PAGES (kernel-model.md 2.1), but blocks on MIGRATE_ISOLATE lists are
    counted too: this is the free memory /proc/buddyinfo shows.
    """
    xp = array_namespace(page_state)
    return (page_state == FREE).sum(axis=1, dtype=xp.int64)


def free_block_heads(page_state: Array) -> Array:
    """``(Z, N)`` int8: the buddy order at each free block's head PFN, -1 elsewhere.

    Mirrors buddy_order() / page_private of PageBuddy heads (include/linux/mm.h). It is
    a per-order pass over the pages, meant for tests and small zones.
    """
    xp = array_namespace(page_state)
    nr_zones, nr_pages = page_state.shape
    free = page_state == FREE
    heads = xp.full((nr_zones, nr_pages), -1, dtype=xp.int8)
    parent_free = None  # all-free flags of the 2**(k + 1) slots, (Z, N >> (k + 1))
    for k in range(MAX_PAGE_ORDER, -1, -1):
        size = 1 << k
        whole = nr_pages // size * size
        slot_free = free[:, :whole].reshape(nr_zones, whole // size, size).all(axis=2)
        is_head = slot_free.copy()
        if parent_free is not None:
            covered = xp.repeat(parent_free, 2, axis=1)  # (Z, 2 * nr_parents)
            is_head[:, : covered.shape[1]] &= ~covered
        starts = heads[:, 0:whole:size]  # (Z, whole // size) view of the slots' first PFNs
        starts[...] = xp.where(is_head, k, starts)
        parent_free = slot_free
    return heads


def format_buddyinfo(counts: Any, node: int = 0, zone_name: str = "Normal") -> str:
    """One /proc/buddyinfo line, newline included, for an ``(11,)`` count vector.

    Mirrors frag_show_print(), mm/vmstat.c: ``"Node %d, zone %8s "`` then ``"%6lu "`` per
    order, then ``'\\n'`` (so the line ends in a space before the newline).
    """
    counts = to_numpy(counts).reshape(-1)
    if counts.shape[0] != NR_PAGE_ORDERS:
        raise ValueError(f"counts must have {NR_PAGE_ORDERS} orders, got {counts.shape[0]}")
    return f"Node {node:d}, zone {zone_name:>8s} " + "".join(f"{int(c):6d} " for c in counts) + "\n"
