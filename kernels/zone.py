"""Zone state: per-page states, pageblock migratetypes and watermarks, zone axis first.

Mirrors the parts of ``struct zone`` and ``struct page`` that compaction reads
(include/linux/mmzone.h, include/linux/page-flags.h; kernel-model.md 1, 3.1, 11.1).

Page-state encoding (one ``uint8`` per PFN)
-------------------------------------------
The low three bits are the page kind:

====  ===========  ==================================================================
code  kind         kernel analogue
====  ===========  ==================================================================
0     FREE         part of a PageBuddy block; the buddy structure (heads and orders)
                   is *derived* from the free bitmap as maximal naturally aligned free
                   runs up to MAX_PAGE_ORDER, which is what eager merging in
                   __free_one_page() leaves behind (DESIGN.md 3)
1     MOVABLE      LRU page (anon or file), migratable
2     UNMOVABLE    kernel / slab / page tables: not on the LRU, never isolated
3     RECLAIMABLE  reclaimable slab: not on the LRU, never isolated by compaction
4     PINNED       anon LRU page with an extra (GUP/RDMA) reference: rejected before
                   isolation by the pinned check, or isolated and then failing
                   migration, depending on the ``skip_pinned`` policy (seed 003)
====  ===========  ==================================================================

Compound pages (a large folio or THP of order k, 1 <= k <= 9) are MOVABLE pages whose
code also carries the folio order in bits 3-6; tail pages set bit 7:

* head of an order-k folio: ``MOVABLE | k << 3``          (9, 17, ..., 73)
* tail of an order-k folio: ``MOVABLE | k << 3 | 0x80``   (137, 145, ..., 201)

A folio is naturally aligned (head PFN divisible by 2**k) and so never crosses a
pageblock. Every page of a folio carries its order, so a pageblock summary can tell
isolatable folio pages from order-9 THP pages without looking at the head.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import numpy as np

KERNEL_REF = "v4.12 / v6.19 (kernel-model.md)"

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGEBLOCK_ORDER = 9  # pageblock_order on x86-64: HPAGE_PMD_ORDER
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
MAX_PAGE_ORDER = 10  # 6.19 spelling, inclusive; 4.12 spells it MAX_ORDER = 11 (exclusive)
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX
PAGE_ALLOC_COSTLY_ORDER = 3

# Page kinds (low three bits of the page-state code).
FREE = 0
MOVABLE = 1
UNMOVABLE = 2
RECLAIMABLE = 3
PINNED = 4
KIND_MASK = 0x07
ORDER_SHIFT = 3
ORDER_MASK = 0x78
TAIL_FLAG = 0x80
MAX_FOLIO_ORDER = PAGEBLOCK_ORDER

PAGE_KIND_NAMES = ("free", "movable", "unmovable", "reclaimable", "pinned")


class MigrateType(enum.IntEnum):
    """Pageblock migratetypes, in the kernel's ``enum migratetype`` order."""

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3
    CMA = 4
    ISOLATE = 5


MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
NR_MIGRATETYPES = len(MIGRATETYPE_NAMES)


class KernelProfile(enum.IntEnum):
    """Behaviour profiles whose switches come from kernel-model.md 13."""

    V4_12 = 0
    V6_19 = 1


def folio_head_code(order: int) -> int:
    """Page-state code of the head page of an order-``order`` movable folio."""
    if order == 0:
        return MOVABLE
    return MOVABLE | (order << ORDER_SHIFT)


def folio_tail_code(order: int) -> int:
    """Page-state code of a tail page of an order-``order`` movable folio."""
    return MOVABLE | (order << ORDER_SHIFT) | TAIL_FLAG


def page_kind(code: Any) -> Any:
    """Page kind (FREE..PINNED) of page-state codes (works on ints and arrays)."""
    return code & KIND_MASK


def compound_order(code: Any) -> Any:
    """Folio order of page-state codes: 0 for base pages and non-movable kinds."""
    return (code & ORDER_MASK) >> ORDER_SHIFT


def is_tail(code: Any) -> Any:
    """True for compound tail pages."""
    return (code & TAIL_FLAG) != 0


def pageblock_count(nr_pages: int) -> int:
    """Number of pageblocks in a zone of ``nr_pages`` pages (must be whole)."""
    if nr_pages <= 0 or nr_pages % PAGEBLOCK_NR_PAGES:
        raise ValueError(
            f"zone of {nr_pages} pages is not a whole number of "
            f"{PAGEBLOCK_NR_PAGES}-page pageblocks"
        )
    return nr_pages // PAGEBLOCK_NR_PAGES


@dataclasses.dataclass(frozen=True, slots=True)
class ZoneState:
    """Per-zone memory state, struct-of-arrays. Z zones, N pages, B = N / 512 pageblocks."""

    page_state: Any  # (Z, N) uint8; page-state code per PFN (module docstring)
    pageblock_migratetype: Any  # (Z, B) int8; MigrateType of each pageblock
    wmark_min: Any  # (Z,) int64; _watermark[WMARK_MIN] in pages
    wmark_low: Any  # (Z,) int64; _watermark[WMARK_LOW]
    wmark_high: Any  # (Z,) int64; _watermark[WMARK_HIGH]

    @property
    def nr_zones(self) -> int:
        return int(self.page_state.shape[0])

    @property
    def nr_pages(self) -> int:
        return int(self.page_state.shape[1])

    @property
    def nr_pageblocks(self) -> int:
        return int(self.pageblock_migratetype.shape[1])

    def __getitem__(self, zones: Any) -> ZoneState:
        """Select zones (an int, slice or index array) keeping the zone axis."""
        if isinstance(zones, int):
            zones = slice(zones, zones + 1)
        return ZoneState(*(getattr(self, f.name)[zones] for f in dataclasses.fields(self)))


def int_sqrt(x: int) -> int:
    """Integer square root, as lib/math/int_sqrt.c."""
    return math.isqrt(x)


def default_min_free_kbytes(lowmem_kbytes: int, profile: KernelProfile) -> int:
    """min_free_kbytes at boot: int_sqrt(lowmem_kbytes * 16), clamped.

    Mirrors init_per_zone_wmark_min() (4.12) / calculate_min_free_kbytes() (6.19),
    mm/page_alloc.c; clamp [128, 65536] in 4.12 and [128, 262144] in 6.19
    (kernel-model.md 1, 3.1). The khugepaged raise for THP is not applied here.
    """
    upper = 65536 if profile == KernelProfile.V4_12 else 262144
    return max(128, min(upper, int_sqrt(lowmem_kbytes * 16)))


def setup_per_zone_wmarks(
    managed_pages: np.ndarray, min_free_kbytes: np.ndarray, watermark_scale_factor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Watermarks of a single-zone node, in pages.

    Mirrors __setup_per_zone_wmarks(), mm/page_alloc.c (kernel-model.md 3.1) for one
    non-highmem zone that holds all of lowmem, so its proportional share of
    ``pages_min`` is all of it::

        min  = min_free_kbytes >> (PAGE_SHIFT - 10)
        tmp  = max(min >> 2, managed * watermark_scale_factor / 10000)
        low  = min + tmp;  high = min + 2 * tmp
    """
    managed = np.asarray(managed_pages, dtype=np.int64)
    pages_min = np.asarray(min_free_kbytes, dtype=np.int64) >> (PAGE_SHIFT - 10)
    tmp = pages_min * managed // managed  # proportional share: the zone holds all lowmem
    wmin = tmp
    scale = np.asarray(watermark_scale_factor, dtype=np.int64)
    tmp = np.maximum(tmp >> 2, managed * scale // 10000)
    return wmin, wmin + tmp, wmin + 2 * tmp
