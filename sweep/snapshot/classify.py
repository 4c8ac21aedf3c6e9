"""kpageflags (+ kpagecount) to page states, and pageblock migratetypes inferred.

Follows kernel-model.md 9.5 (first match wins) and 9.6, over whole PFN arrays with
NumPy; the only Python loops are over chunks of a zone and over <= 10 orders.

Page classes (:data:`CLASS_NAMES`), in rule order:

==========  =========================================  ==============================
class       kpageflags                                 page state
==========  =========================================  ==============================
hole        NOPAGE, outside the zone span, not System  UNMOVABLE, ``hole`` set
            RAM in /proc/iomem, or an unmanaged
            flagless pageblock (:func:`unmanaged_blocks`)
free        BUDDY (set on every page of a free block)  FREE
reserved    RESERVED                                   UNMOVABLE
hugetlb     HUGE                                       UNMOVABLE (compaction skips it)
slab        SLAB                                       RECLAIMABLE in RECLAIMABLE
                                                       pageblocks, else UNMOVABLE
pgtable     PGTABLE                                    UNMOVABLE
offline     OFFLINE (4.12: BALLOON)                    UNMOVABLE (no balloon migration)
folio       LRU head with THP, 2**k - 1 tails, aligned  folio head/tail codes, order k
lru         LRU                                        MOVABLE
kernel      anything else: no flags (vmalloc, kernel    UNMOVABLE
            stacks, pcp-cached free pages), MMAP
            without LRU, other compound pages
==========  =========================================  ==============================

Compound pages: a COMPOUND_TAIL belongs to the COMPOUND_HEAD before it when only tails
lie between them; it is classified with its head's flags OR-ed into its own (4.12 shows
SLAB and LRU on heads only). An LRU compound that is a clean folio (THP flag on the
head, 2**k pages with 1 <= k <= 9, head PFN divisible by 2**k) gets the folio codes;
an LRU compound that is not becomes base MOVABLE pages, and a non-LRU one follows its
head's class (slab, hugetlb, ...; kernel when nothing else matches). Tails with no head
before them in the array keep their own flags.

Pins are invisible (kpagecount is a map count), so no page is PINNED.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kernels import buddy
from kernels.zone import (
    FREE,
    MAX_FOLIO_ORDER,
    MOVABLE,
    ORDER_SHIFT,
    PAGEBLOCK_NR_PAGES,
    RECLAIMABLE,
    TAIL_FLAG,
    UNMOVABLE,
    MigrateType,
)
from sweep.snapshot.file import ZoneArrays, free_pages, zone_extent
from sweep.snapshot.procfs import KPAGE_CHUNK, ZoneInfo, iter_kpages

# kpageflags bits (include/uapi/linux/kernel-page-flags.h; kernel-model.md 9.4).
KPF_LRU = 5
KPF_SLAB = 7
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_NOPAGE = 20
KPF_THP = 22
KPF_OFFLINE = 23  # 4.12: KPF_BALLOON
KPF_PGTABLE = 26
KPF_RESERVED = 32

# Page classes, in rule order (module docstring).
HOLE, FREE_CLASS, RESERVED, HUGETLB, SLAB, PGTABLE, OFFLINE, FOLIO, LRU, KERNEL = range(10)
CLASS_NAMES = (
    "hole",
    "free",
    "reserved",
    "hugetlb",
    "slab",
    "pgtable",
    "offline",
    "folio",
    "lru",
    "kernel",
)
NR_CLASSES = len(CLASS_NAMES)
# Classes that are kernel allocations for the pageblock inference (kernel-model.md 9.6).
# Reserved pages are not: memmap_init marks their pageblocks MOVABLE at boot.
NONMOVABLE_CLASSES = (SLAB, PGTABLE, OFFLINE, KERNEL)

_U64 = np.uint64
_ZERO = np.uint64(0)


def _bit(flags: np.ndarray, bit: int) -> np.ndarray:
    return (flags & _U64(1 << bit)) != _ZERO


@dataclasses.dataclass(frozen=True)
class PageClasses:
    """Classification of a PFN range (pageblock aligned, a whole number of pageblocks)."""

    page_state: np.ndarray  # (n,) uint8; kernels.zone codes; slab pages as RECLAIMABLE
    page_class: np.ndarray  # (n,) uint8; class (HOLE..KERNEL) of each PFN
    zero: np.ndarray  # (n,) bool; kpageflags 0 and kpagecount 0 (or no kpagecount)

    def block_counts(self) -> np.ndarray:
        """``(n // 512, NR_CLASSES)`` int64: pages of each class per pageblock."""
        return class_counts_per_block(self.page_class)


def class_counts_per_block(page_class: np.ndarray) -> np.ndarray:
    """``(B, NR_CLASSES)`` int64 pages of each class in each 512-page pageblock."""
    nr_blocks = page_class.size // PAGEBLOCK_NR_PAGES
    block = np.repeat(np.arange(nr_blocks, dtype=np.int64), PAGEBLOCK_NR_PAGES)
    flat = np.bincount(block * NR_CLASSES + page_class, minlength=nr_blocks * NR_CLASSES)
    return flat.reshape(nr_blocks, NR_CLASSES)


def classify_pages(
    kpageflags: np.ndarray,
    kpagecount: np.ndarray | None = None,
    *,
    base_pfn: int = 0,
    hole: np.ndarray | None = None,
) -> PageClasses:
    """Classify PFNs ``base_pfn ..`` from their kpageflags (kernel-model.md 9.5).

    ``hole`` (bool, same length) marks PFNs known to lie outside the zone or outside
    System RAM. Slab pages come out as RECLAIMABLE; :func:`resolve_slab` turns those
    outside RECLAIMABLE pageblocks into UNMOVABLE once the pageblock types are known.
    """
    flags = np.asarray(kpageflags, dtype=np.uint64)
    n = flags.size
    idx = np.arange(n, dtype=np.int64)
    is_head = _bit(flags, KPF_COMPOUND_HEAD)
    is_tail = _bit(flags, KPF_COMPOUND_TAIL)

    # Compound owner: the nearest non-tail at or before each PFN; a tail is attached when
    # that PFN is a compound head (only tails in between).
    last_nontail = np.maximum.accumulate(np.where(is_tail, -1, idx))
    attached = is_tail & (last_nontail >= 0)
    attached[attached] = is_head[last_nontail[attached]]
    eff = flags.copy()
    owners = last_nontail[attached]
    eff[attached] |= flags[owners]

    # Size of each compound head's run: the next non-tail after it, minus its PFN.
    next_nontail = np.minimum.accumulate(np.where(is_tail, n, idx)[::-1])[::-1]
    run_end = np.append(next_nontail[1:], n)  # first non-tail strictly after each PFN
    size = np.where(is_head, run_end - idx, 0)
    pow2 = (size & (size - 1)) == 0
    folio_head = (
        is_head
        & _bit(flags, KPF_LRU)
        & _bit(flags, KPF_THP)
        & (size >= 2)
        & (size <= 1 << MAX_FOLIO_ORDER)
        & pow2
        & ((base_pfn + idx) % np.maximum(size, 1) == 0)
    )
    order = np.zeros(n, dtype=np.uint8)
    order[folio_head] = np.log2(size[folio_head]).astype(np.uint8)
    in_folio = folio_head.copy()
    in_folio[attached] = folio_head[owners]
    order[attached] = order[owners]

    # First match wins: apply the rules from last to first.
    page_class = np.full(n, KERNEL, dtype=np.uint8)
    for cls, mask in (
        (LRU, _bit(eff, KPF_LRU)),
        (FOLIO, in_folio & _bit(eff, KPF_LRU)),
        (OFFLINE, _bit(eff, KPF_OFFLINE)),
        (PGTABLE, _bit(eff, KPF_PGTABLE)),
        (SLAB, _bit(eff, KPF_SLAB)),
        (HUGETLB, _bit(eff, KPF_HUGE)),
        (RESERVED, _bit(eff, KPF_RESERVED)),
        (FREE_CLASS, _bit(flags, KPF_BUDDY)),
    ):
        page_class[mask] = cls
    nopage = _bit(flags, KPF_NOPAGE)
    if hole is not None:
        nopage |= np.asarray(hole, dtype=bool)
    page_class[nopage] = HOLE
    # A folio is whole or not at all: one whose pages did not all come out as folio pages
    # (a racing BUDDY tail, a hole) becomes base pages.
    owner = np.where(attached, last_nontail, idx)
    broken = np.zeros(n, dtype=bool)
    broken[owner[in_folio & (page_class != FOLIO)]] = True
    page_class[(page_class == FOLIO) & broken[owner]] = LRU

    page_state = np.full(n, UNMOVABLE, dtype=np.uint8)
    page_state[page_class == FREE_CLASS] = FREE
    page_state[page_class == LRU] = MOVABLE
    page_state[page_class == SLAB] = RECLAIMABLE
    folio = page_class == FOLIO
    codes = MOVABLE | (order << ORDER_SHIFT) | np.where(attached, TAIL_FLAG, 0).astype(np.uint8)
    page_state[folio] = codes[folio]

    zero = flags == _ZERO
    if kpagecount is not None:
        zero &= np.asarray(kpagecount, dtype=np.uint64) == _ZERO
    return PageClasses(page_state=page_state, page_class=page_class, zero=zero)


def unmanaged_blocks(
    block_counts: np.ndarray, zero_blocks: np.ndarray, unmanaged_pages: int
) -> np.ndarray:
    """``(B,)`` bool: whole flagless pageblocks taken to have no initialised memmap.

    A zone's pages that are present but neither managed by the buddy allocator nor
    PG_reserved (``present - managed - reserved``) have struct pages that were never
    initialised, e.g. with deferred struct-page init: kpageflags shows them as 0, and
    /proc/pagetypeinfo does not count their pageblocks. The highest pageblocks that are
    entirely flagless (``zero_blocks``: kpageflags and kpagecount 0 on all 512 pages), at
    most ``unmanaged_pages // 512`` of them, are marked. Deferred init fills zones from
    the bottom up, so the uninitialised part is at the top.
    """
    nr = max(0, int(unmanaged_pages)) // PAGEBLOCK_NR_PAGES
    candidates = np.flatnonzero(zero_blocks & (block_counts[:, HOLE] == 0))
    out = np.zeros(block_counts.shape[0], dtype=bool)
    if nr:
        out[candidates[::-1][:nr]] = True
    return out


# /proc/pagetypeinfo's type names (migratetype_names[], mm/vmstat.c).
_TYPE_BY_NAME = {
    "Unmovable": MigrateType.UNMOVABLE,
    "Movable": MigrateType.MOVABLE,
    "Reclaimable": MigrateType.RECLAIMABLE,
    "HighAtomic": MigrateType.HIGHATOMIC,
    "CMA": MigrateType.CMA,
    "Isolate": MigrateType.ISOLATE,
}


@dataclasses.dataclass(frozen=True)
class BlockFit:
    """Pageblock migratetypes and how they were obtained."""

    pageblock_migratetype: np.ndarray  # (B,) int8
    fitted: bool  # True: fitted to /proc/pagetypeinfo's block counts; False: simple rule
    notes: tuple[str, ...]


def infer_pageblock_migratetype(
    block_counts: np.ndarray, block_totals: Mapping[str, int] | None = None
) -> BlockFit:
    """Pageblock migratetypes from the page classes of each block (kernel-model.md 9.6).

    Blocks that are all holes are UNMOVABLE and take no part. Every other block is
    ranked by its share of kernel allocations (slab, page tables, offline and flagless
    pages; reserved pages and hugetlb pages do not count) among its pages.

    With ``block_totals`` (pagetypeinfo's "Number of blocks type" of the zone), the
    counts are met exactly where the blocks allow: the top ``Unmovable + Reclaimable``
    blocks of the ranking hold the kernel allocations, and of those the ``Reclaimable``
    ones with the largest slab share become RECLAIMABLE, the rest UNMOVABLE; HighAtomic
    and then Isolate blocks are the next in the ranking (represented as such, not folded
    into UNMOVABLE); CMA blocks are the lowest in the ranking (the most movable), taken
    from the top of the zone; all others are MOVABLE.

    Without totals, the simple rule: a block whose kernel allocations outnumber its
    movable (LRU and hugetlb) pages is RECLAIMABLE when slab pages are the larger part
    of them and UNMOVABLE otherwise; every other block is MOVABLE.
    """
    counts = np.asarray(block_counts, dtype=np.int64)
    nr_blocks = counts.shape[0]
    holes = counts[:, HOLE] == PAGEBLOCK_NR_PAGES
    kernel = counts[:, list(NONMOVABLE_CLASSES)].sum(axis=1)
    slab = counts[:, SLAB]
    movable = counts[:, [FOLIO, LRU, HUGETLB]].sum(axis=1)
    mt = np.full(nr_blocks, int(MigrateType.MOVABLE), dtype=np.int8)
    mt[holes] = int(MigrateType.UNMOVABLE)
    notes: list[str] = []

    if block_totals is None:
        nonmovable = ~holes & (kernel > 0) & (kernel > movable)
        mt[nonmovable & (2 * slab > kernel)] = int(MigrateType.RECLAIMABLE)
        mt[nonmovable & (2 * slab <= kernel)] = int(MigrateType.UNMOVABLE)
        return BlockFit(mt, False, ())

    totals = {t: 0 for t in _TYPE_BY_NAME}
    for name, value in block_totals.items():
        if name not in _TYPE_BY_NAME:
            notes.append(
                f"pageblock type {name!r} of /proc/pagetypeinfo is unknown; counted as Movable"
            )
            name = "Movable"
        totals[name] += int(value)
    live = np.flatnonzero(~holes)
    wanted = sum(totals.values())
    if wanted != live.size:
        notes.append(
            f"/proc/pagetypeinfo counts {wanted} pageblocks, the snapshot has {live.size} "
            "that are not all holes; the type counts were met as far as the blocks allow"
        )
    pages = PAGEBLOCK_NR_PAGES - counts[live, HOLE]
    share = kernel[live] / np.maximum(pages, 1)
    # Ranking: kernel-allocation share, then kernel pages, then low PFN first.
    rank = np.lexsort((live, -kernel[live], -share))
    ranked = live[rank]
    nr_u, nr_r = totals["Unmovable"], totals["Reclaimable"]
    nr_kernel_blocks = min(nr_u + nr_r, ranked.size)
    top = ranked[:nr_kernel_blocks]
    slab_share = slab[top] / np.maximum(kernel[top], 1)
    by_slab = top[np.lexsort((top, -slab[top], -slab_share))]
    nr_r_fit = min(nr_r, by_slab.size)
    mt[by_slab[:nr_r_fit]] = int(MigrateType.RECLAIMABLE)
    mt[by_slab[nr_r_fit:]] = int(MigrateType.UNMOVABLE)
    pos = nr_kernel_blocks
    for name in ("HighAtomic", "Isolate"):
        take = ranked[pos : pos + totals[name]]
        mt[take] = int(_TYPE_BY_NAME[name])
        pos += take.size
    rest = ranked[pos:]
    nr_cma = min(totals["CMA"], rest.size)
    if nr_cma:
        # Lowest share first; among equals, the highest PFNs.
        least = rest[np.lexsort((-rest, share[rank][pos:]))]
        mt[least[:nr_cma]] = int(MigrateType.CMA)
    return BlockFit(mt, True, tuple(notes))


def resolve_slab(page_state: np.ndarray, pageblock_migratetype: np.ndarray) -> np.ndarray:
    """Slab pages (RECLAIMABLE codes) outside RECLAIMABLE pageblocks become UNMOVABLE.

    Reclaimable and unmovable slab cannot be told apart per PFN (kernel-model.md 9.6);
    the pageblock's type decides. Returns a new array.
    """
    out = np.array(page_state, dtype=np.uint8, copy=True)
    block_mt = np.repeat(np.asarray(pageblock_migratetype), PAGEBLOCK_NR_PAGES)
    out[(out == RECLAIMABLE) & (block_mt != int(MigrateType.RECLAIMABLE))] = UNMOVABLE
    return out


def ram_hole_mask(
    base_pfn: int, nr_pages: int, system_ram: Iterable[tuple[int, int]]
) -> np.ndarray:
    """``(nr_pages,)`` bool: PFNs not wholly inside a System RAM range of /proc/iomem."""
    hole = np.ones(nr_pages, dtype=bool)
    page = 1 << 12
    for first, last in system_ram:
        lo = max(-(-first // page), base_pfn)  # first whole page
        hi = min((last + 1) // page, base_pfn + nr_pages)  # one past the last whole page
        if hi > lo:
            hole[lo - base_pfn : hi - base_pfn] = False
    return hole


@dataclasses.dataclass
class ZoneScan:
    """A zone being read from kpageflags: its arrays, allocated before the read starts.

    :func:`prepare_zone` allocates and touches every array up front, so that the
    snapshot's own memory does not change the free pages while /proc/buddyinfo and
    kpageflags are read; :func:`scan_zone` fills them and :func:`finish_zone` turns
    them into the zone's arrays.
    """

    info: ZoneInfo
    base_pfn: int
    outside: np.ndarray  # (N,) bool; outside the span or not System RAM
    page_state: np.ndarray  # (N,) uint8
    hole: np.ndarray  # (N,) bool
    block_counts: np.ndarray  # (B, NR_CLASSES) int64
    zero_blocks: np.ndarray  # (B,) bool; every page with kpageflags 0 and kpagecount 0
    ram_known: bool  # outside includes /proc/iomem's non-RAM PFNs


def prepare_zone(info: ZoneInfo, system_ram: Sequence[tuple[int, int]] = ()) -> ZoneScan:
    """Allocate (and touch) the arrays of one zone's scan."""
    base, nr_pages = zone_extent(info.start_pfn, info.spanned)
    nr_blocks = nr_pages // PAGEBLOCK_NR_PAGES
    outside = np.ones(nr_pages, dtype=bool)
    outside[info.start_pfn - base : info.start_pfn + info.spanned - base] = False
    if system_ram:
        outside |= ram_hole_mask(base, nr_pages, system_ram)
    return ZoneScan(
        info=info,
        base_pfn=base,
        outside=outside,
        page_state=np.full(nr_pages, UNMOVABLE, dtype=np.uint8),
        hole=np.ones(nr_pages, dtype=bool),
        block_counts=np.full((nr_blocks, NR_CLASSES), 0, dtype=np.int64),
        zero_blocks=np.ones(nr_blocks, dtype=bool),
        ram_known=bool(system_ram),
    )


def warm_up(chunk_pages: int = KPAGE_CHUNK) -> None:
    """Classify a dummy chunk twice, so the allocator holds the memory a scan reuses.

    A scan's temporaries would otherwise take free pages from the zones while they are
    being read (glibc keeps freed blocks of this size after the first round).
    """
    flags = np.zeros(chunk_pages, dtype=np.uint64)
    for _ in range(2):
        classify_pages(flags, flags, base_pfn=0).block_counts()


def scan_zone(scan: ZoneScan, proc_root: Path, chunk_pages: int = KPAGE_CHUNK) -> None:
    """Read and classify the zone's PFNs, ``chunk_pages`` at a time, into ``scan``."""
    nr_pages = scan.page_state.size
    base = scan.base_pfn
    with_count = (Path(proc_root) / "kpagecount").exists()
    for start, flags, count in iter_kpages(
        base, nr_pages, proc_root, chunk_pages=chunk_pages, with_count=with_count
    ):
        lo, hi = start - base, start - base + flags.size
        pc = classify_pages(flags, count, base_pfn=start, hole=scan.outside[lo:hi])
        scan.page_state[lo:hi] = pc.page_state
        scan.hole[lo:hi] = pc.page_class == HOLE
        b0, b1 = lo // PAGEBLOCK_NR_PAGES, hi // PAGEBLOCK_NR_PAGES
        scan.block_counts[b0:b1] = pc.block_counts()
        scan.zero_blocks[b0:b1] = pc.zero.reshape(-1, PAGEBLOCK_NR_PAGES).all(axis=1)


def finish_zone(
    scan: ZoneScan, buddyinfo: np.ndarray, block_totals: Mapping[str, int] | None = None
) -> ZoneArrays:
    """The zone's arrays from a finished scan.

    Marks unmanaged flagless pageblocks as holes, infers the pageblock types and
    resolves slab pages. The notes record where the pages disagree with zoneinfo
    (present, managed) or with ``buddyinfo`` (read just before the scan).
    """
    info = scan.info
    label = f"zone {info.node}:{info.name}"
    notes: list[str] = []
    page_state, hole, block_counts = scan.page_state, scan.hole, scan.block_counts
    nr_blocks = block_counts.shape[0]

    # Page counts against zoneinfo: present = spanned - holes; managed <= present.
    in_memory = page_state.size - int(block_counts[:, HOLE].sum())
    reserved = int(block_counts[:, RESERVED].sum())
    if in_memory != info.present:
        how = "System RAM in /proc/iomem" if scan.ram_known else "no /proc/iomem addresses"
        notes.append(
            f"{label}: {in_memory} PFNs of the span have memory ({how}), zoneinfo present "
            f"is {info.present} ({in_memory - info.present:+d})"
        )
    unmanaged = unmanaged_blocks(
        block_counts, scan.zero_blocks, info.present - info.managed - reserved
    )
    nr_unmanaged = int(unmanaged.sum()) * PAGEBLOCK_NR_PAGES
    if nr_unmanaged:
        hole.reshape(nr_blocks, PAGEBLOCK_NR_PAGES)[unmanaged] = True
        page_state.reshape(nr_blocks, PAGEBLOCK_NR_PAGES)[unmanaged] = UNMOVABLE
        block_counts[unmanaged] = 0
        block_counts[unmanaged, HOLE] = PAGEBLOCK_NR_PAGES
        notes.append(
            f"{label}: {nr_unmanaged} present pages ({nr_unmanaged // PAGEBLOCK_NR_PAGES} "
            "whole pageblocks) have no page flags and are neither managed nor reserved "
            f"(present - managed - reserved = {info.present - info.managed - reserved}): "
            "uninitialised memmap (deferred struct page init), marked as holes"
        )
    unaccounted = info.present - info.managed - reserved - nr_unmanaged
    if unaccounted:
        notes.append(
            f"{label}: present - managed = {info.present - info.managed} pages, but "
            f"{reserved} PG_reserved pages"
            + (f" and {nr_unmanaged} uninitialised ones" if nr_unmanaged else "")
            + f" were found ({unaccounted:+d})"
        )

    fit = infer_pageblock_migratetype(block_counts, block_totals)
    notes.extend(f"{label}: {n}" for n in fit.notes)
    page_state = resolve_slab(page_state, fit.pageblock_migratetype)

    derived = np.asarray(buddy.buddyinfo(page_state[None, :])[0], dtype=np.int64)
    diff = derived - np.asarray(buddyinfo, dtype=np.int64)
    if diff.any():
        got, read = free_pages(derived), free_pages(buddyinfo)
        notes.append(
            f"{label}: free blocks from kpageflags minus /proc/buddyinfo, orders 0..10: "
            f"{' '.join(f'{int(d):+d}' if d else '0' for d in diff)} ({got} free pages vs "
            f"{read}, {got - read:+d}; /proc is read without locks)"
        )
    if info.pcp_count:
        notes.append(
            f"{label}: {info.pcp_count} free pages on per-cpu lists (zoneinfo pagesets) are "
            "not visible as free: they have no flags and are classified UNMOVABLE"
        )
    return ZoneArrays(scan.base_pfn, page_state, hole, fit.pageblock_migratetype, tuple(notes))


def classify_zone(
    info: ZoneInfo,
    buddyinfo: np.ndarray,
    block_totals: Mapping[str, int] | None,
    system_ram: Sequence[tuple[int, int]],
    proc_root: Path,
) -> ZoneArrays:
    """One zone's arrays from ``proc_root``'s kpageflags (and kpagecount if there).

    :func:`prepare_zone`, :func:`scan_zone` and :func:`finish_zone` in one call.
    """
    scan = prepare_zone(info, system_ram)
    scan_zone(scan, proc_root)
    return finish_zone(scan, buddyinfo, block_totals)
