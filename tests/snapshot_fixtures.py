"""A fake /proc for the snapshot tests: text files in the kernel's formats, binary kpage files.

:func:`write_fake_proc` writes a machine of two zones, 8 pageblocks each, whose every
PFN is laid out by hand below, together with what the classification must make of it
(:class:`FakeMachine`): the page class, the page state (slab still RECLAIMABLE, as
:func:`sweep.snapshot.classify.classify_pages` returns it), the final page state, the
hole mask and the pageblock migratetypes. buddyinfo and pagetypeinfo's free counts are
derived from the expected page states, so a correct classification reproduces them
exactly.

PFN map (absolute PFNs; zone DMA starts at PFN 1, zone Normal at 4096):

=====  ===========  ===============================================================
block  PFNs         content
=====  ===========  ===============================================================
0      0-511        PFN 0 outside the span; 1-158 RESERVED (RAM); 159-255 RESERVED
                    but not System RAM (holes); 256-511 a free order-8 block
1      512-1023     a free order-9 block
2-3    1024-2047    a free order-10 block
4      2048-2559    an order-2 THP folio, slab, page table, flagless, MMAP-only,
                    LRU pages, a free order-4 block, an LRU run
5      2560-3071    an order-9 THP (PMD-mapped anon)
6      3072-3583    slab, with an order-3 slab compound, and free order-0 pages
7      3584-4095    one hugetlb page (2 MiB)
8-9    4096-5119    a free order-10 block
10     5120-5631    irregular compounds: LRU at an unaligned head, a 3-page non-LRU
                    compound, an order-1 folio, an LRU compound without THP; a
                    3-page free run; the huge zero page's kind (THP, not LRU)
11     5632-6143    page tables, offline, reserved and flagless pages, some LRU
12     6144-6655    not System RAM, kpageflags 0 (a 6.x hole)
13     6656-7167    6656-6911 NOPAGE (a 4.12 hole, not System RAM); the rest LRU
14     7168-7679    slab and free pages, LRU
15     7680-8191    flagless and unmapped: an uninitialised memmap (unmanaged)
=====  ===========  ===============================================================

``kernel="4.12"`` writes compound tails with COMPOUND_TAIL only (SLAB and LRU on
heads), as 4.12's stable_page_flags() does; the expected result is the same.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kernels import buddy
from kernels.zone import (
    FREE,
    MOVABLE,
    NR_MIGRATETYPES,
    PAGEBLOCK_NR_PAGES,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
    folio_head_code,
    folio_tail_code,
)
from sweep.snapshot import classify as c

NR_PFNS = 8192
P = PAGEBLOCK_NR_PAGES

F_LOCKED, F_REFERENCED, F_UPTODATE, F_DIRTY = 1 << 0, 1 << 2, 1 << 3, 1 << 4
F_LRU, F_ACTIVE, F_SLAB, F_BUDDY = 1 << 5, 1 << 6, 1 << 7, 1 << 10
F_MMAP, F_ANON, F_SWAPBACKED = 1 << 11, 1 << 12, 1 << 14
F_HEAD, F_TAIL, F_HUGE, F_NOPAGE = 1 << 15, 1 << 16, 1 << 17, 1 << 20
F_THP, F_OFFLINE, F_ZERO_PAGE, F_PGTABLE = 1 << 22, 1 << 23, 1 << 24, 1 << 26
F_RESERVED = 1 << 32

ANON_LRU = F_LRU | F_ANON | F_SWAPBACKED | F_MMAP | F_UPTODATE
FILE_LRU = F_LRU | F_UPTODATE | F_REFERENCED


@dataclasses.dataclass(frozen=True)
class FakeZone:
    node: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    base_pfn: int
    nr_pages: int
    block_totals: dict[str, int]  # pagetypeinfo "Number of blocks type"
    pcp_count: int
    buddyinfo: np.ndarray  # (11,) from the expected page states

    @property
    def span(self) -> slice:
        return slice(self.base_pfn, self.base_pfn + self.nr_pages)


@dataclasses.dataclass(frozen=True)
class FakeMachine:
    """What was written and what the classification must find (absolute PFN arrays)."""

    root: Path
    kernel: str
    flags: np.ndarray  # (NR_PFNS,) u64 kpageflags
    count: np.ndarray  # (NR_PFNS,) u64 kpagecount
    page_class: np.ndarray  # (NR_PFNS,) uint8; the class (HOLE..KERNEL) of each PFN
    raw_state: np.ndarray  # (NR_PFNS,) uint8; classify_pages's codes (slab RECLAIMABLE)
    page_state: np.ndarray  # (NR_PFNS,) uint8; final codes (slab by pageblock type)
    hole: np.ndarray  # (NR_PFNS,) bool; final holes (with /proc/iomem, block 15 unmanaged)
    pageblock_migratetype: np.ndarray  # (NR_PFNS // 512,) int8
    zones: tuple[FakeZone, ...]


class _Layout:
    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self.flags = np.zeros(NR_PFNS, dtype=np.uint64)
        self.count = np.zeros(NR_PFNS, dtype=np.uint64)
        self.cls = np.full(NR_PFNS, c.KERNEL, dtype=np.uint8)
        self.state = np.full(NR_PFNS, UNMOVABLE, dtype=np.uint8)

    def put(self, pfn: int, n: int, flags: int, cls: int, code: int, count: int = 0) -> None:
        self.flags[pfn : pfn + n] = flags
        self.cls[pfn : pfn + n] = cls
        self.state[pfn : pfn + n] = code
        self.count[pfn : pfn + n] = count

    def free(self, pfn: int, n: int) -> None:
        self.put(pfn, n, F_BUDDY, c.FREE_CLASS, FREE)

    def lru(self, pfn: int, n: int, flags: int = ANON_LRU) -> None:
        self.put(pfn, n, flags, c.LRU, MOVABLE, count=1 if flags & F_MMAP else 0)

    def compound(
        self, pfn: int, n: int, head: int, tail_extra: int, cls: int, codes: tuple[int, int]
    ) -> None:
        """A compound page: head flags ``head``; tails carry the folio flags in 6.x."""
        tail = F_TAIL | (head & ~F_HEAD if self.kernel != "4.12" else tail_extra)
        self.put(pfn, 1, head | F_HEAD, cls, codes[0], count=1 if head & F_MMAP else 0)
        self.put(pfn + 1, n - 1, tail, cls, codes[1])

    def folio(self, pfn: int, order: int, flags: int = ANON_LRU) -> None:
        codes = (folio_head_code(order), folio_tail_code(order))
        self.compound(pfn, 1 << order, flags | F_THP, F_THP, c.FOLIO, codes)


def _layout(kernel: str) -> _Layout:
    m = _Layout(kernel)
    # Zone DMA: PFNs 1..4095 (PFN 0 outside, RESERVED as on x86).
    m.put(0, 1, F_RESERVED, c.HOLE, UNMOVABLE)
    m.put(1, 158, F_RESERVED, c.RESERVED, UNMOVABLE)
    m.put(159, 97, F_RESERVED, c.HOLE, UNMOVABLE)  # not System RAM
    m.free(256, 256)
    m.free(512, 512)
    m.free(1024, 1024)
    # Block 4: a mixed movable block.
    b = 2048
    m.folio(b, 2)
    m.put(b + 4, 1, F_SLAB, c.SLAB, RECLAIMABLE)
    m.put(b + 5, 1, F_PGTABLE, c.PGTABLE, UNMOVABLE)
    m.put(b + 6, 1, 0, c.KERNEL, UNMOVABLE)  # vmalloc / kernel stack / pcp page
    m.put(b + 7, 1, F_MMAP, c.KERNEL, UNMOVABLE, count=1)  # driver-mapped
    m.lru(b + 8, 8, FILE_LRU | F_DIRTY)
    m.free(b + 16, 16)
    m.lru(b + 32, P - 32)
    m.put(b + 40, 1, ANON_LRU | F_LOCKED, c.LRU, MOVABLE, count=1)
    # Block 5: an order-9 THP.
    m.folio(2560, 9)
    # Block 6: slab, an order-3 slab compound, free order-0 pages.
    b = 3072
    m.put(b, P, F_SLAB, c.SLAB, RECLAIMABLE)
    m.compound(b + 8, 8, F_SLAB, 0, c.SLAB, (RECLAIMABLE, RECLAIMABLE))
    for pfn in range(b + 33, b + 200, 4):  # odd, isolated: order 0, no free buddy
        m.free(pfn, 1)
    # Block 7: one hugetlb page.
    m.compound(3584, P, F_HUGE, F_HUGE, c.HUGETLB, (UNMOVABLE, UNMOVABLE))

    # Zone Normal: PFNs 4096..8191.
    m.free(4096, 1024)
    b = 5120  # block 10: irregular compounds
    m.lru(b, P, FILE_LRU)
    m.compound(b + 2, 4, ANON_LRU | F_THP, F_THP, c.LRU, (MOVABLE, MOVABLE))  # unaligned
    m.compound(b + 8, 3, 0, 0, c.KERNEL, (UNMOVABLE, UNMOVABLE))  # not LRU, not 2**k
    m.folio(b + 12, 1)  # a clean order-1 folio
    m.compound(b + 14, 2, FILE_LRU, 0, c.LRU, (MOVABLE, MOVABLE))  # LRU, no THP flag
    m.free(b + 16, 3)  # a free run of 3: orders 1 and 0
    m.put(b + 19, 1, ANON_LRU, c.LRU, MOVABLE, count=2)
    m.compound(b + 32, 32, F_THP | F_ZERO_PAGE, F_THP, c.KERNEL, (UNMOVABLE, UNMOVABLE))
    m.lru(b + 64, 64, ANON_LRU | F_ACTIVE)
    m.folio(b + 128, 7)
    b = 5632  # block 11: kernel-heavy
    m.put(b, P, 0, c.KERNEL, UNMOVABLE)
    m.put(b, 100, F_PGTABLE, c.PGTABLE, UNMOVABLE)
    m.put(b + 100, 50, F_OFFLINE, c.OFFLINE, UNMOVABLE)
    m.put(b + 150, 10, F_RESERVED, c.RESERVED, UNMOVABLE)
    m.put(b + 160, 20, F_SLAB, c.SLAB, RECLAIMABLE)
    m.lru(b + 400, 100)
    m.free(b + 500, 4)
    m.put(6144, P, 0, c.HOLE, UNMOVABLE)  # block 12: not System RAM
    m.put(6656, 256, F_NOPAGE, c.HOLE, UNMOVABLE)  # block 13
    m.lru(6912, 256, FILE_LRU)
    b = 7168  # block 14: slab-heavy
    m.put(b, P, F_SLAB, c.SLAB, RECLAIMABLE)
    m.free(b + 256, 128)
    m.lru(b + 400, 50)
    m.put(7680, P, 0, c.KERNEL, UNMOVABLE)  # block 15: unmanaged (found in finish_zone)
    return m


def _zoneinfo_zone(z: FakeZone, node_stats: dict[str, int] | None, stats: dict[str, int]) -> str:
    out = [f"Node {z.node}, zone {z.name:>8s}"]
    if node_stats is not None:
        out.append("  per-node stats")
        out += [f"      {k:<12s} {v}" for k, v in node_stats.items()]
    free = int((z.buddyinfo << np.arange(11)).sum())
    out += [
        f"  pages free     {free}",
        "        boost    0",
        f"        min      {z.managed // 100}",
        f"        low      {z.managed // 80}",
        f"        high     {z.managed // 60}",
        f"        promo    {z.managed // 50}",
        f"        spanned  {z.spanned}",
        f"        present  {z.present}",
        f"        managed  {z.managed}",
        "        cma      0",
        "        protection: (0, 3019, 5707, 5707, 5707)",
        f"      {'nr_free_pages':<12s} {free}",
    ]
    out += [f"      {k:<12s} {v}" for k, v in stats.items()]
    out.append("  pagesets")
    counts = (z.pcp_count // 2, z.pcp_count - z.pcp_count // 2)
    for cpu, count in enumerate(counts):
        out += [
            f"    cpu: {cpu}",
            f"              count:    {count}",
            "              high:     0",
            "              batch:    1",
            "              high_min: 27",
            "              high_max: 240",
            "  vm stats threshold: 4",
        ]
    out += ["  node_unreclaimable:  0", f"  start_pfn:           {z.start_pfn}"]
    return "\n".join(out) + "\n"


def _empty_zone(name: str) -> str:
    return (
        f"Node 0, zone {name:>8s}\n  pages free     0\n        boost    0\n"
        "        min      32\n        low      32\n        high     32\n        promo    32\n"
        "        spanned  0\n        present  0\n        managed  0\n        cma      0\n"
        "        protection: (0, 0, 0, 0, 0)\n"
    )


def _pagetypeinfo(zones: tuple[FakeZone, ...], state: np.ndarray, mt: np.ndarray) -> str:
    types = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")  # no CMA
    index = {"Unmovable": 0, "Movable": 1, "Reclaimable": 2, "HighAtomic": 3, "Isolate": 5}
    lines = ["Page block order: 9", "Pages per block:  512", ""]
    head = f"{'Free pages count per migrate type at order':<43s} "
    lines.append(head + "".join(f"{o:6d} " for o in range(11)))
    for z in zones:
        s = state[z.span][None, :]
        b = mt[z.base_pfn // P : (z.base_pfn + z.nr_pages) // P][None, :]
        free = buddy.pagetypeinfo(s, b)[0]
        assert free.shape[0] == NR_MIGRATETYPES
        for t in types:
            counts = "".join(f"{int(x):6d} " for x in free[index[t]])
            lines.append(f"Node {z.node:4d}, zone {z.name:>8s}, type {t:>12s} {counts}")
    lines.append("")
    lines.append(f"{'Number of blocks type ':<23s}" + "".join(f"{t:>12s} " for t in types))
    for z in zones:
        counts = "".join(f"{z.block_totals[t]:12d} " for t in types)
        lines.append(f"Node {z.node}, zone {z.name:>8s} {counts}")
    return "\n".join(lines) + "\n"


IOMEM = """\
00000000-00000fff : Reserved
00001000-0009efff : System RAM
0009f000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-017fffff : System RAM
  00200000-002fffff : Kernel code
01800000-01afffff : PCI Bus 0000:00
01b00000-01ffffff : System RAM
fec00000-fec003ff : IOAPIC 0
"""

VMSTAT = """\
nr_free_pages 2000
nr_zone_inactive_anon 100
nr_slab_reclaimable 700
compact_migrate_scanned 12345
compact_free_scanned 678
compact_isolated 90
pgmigrate_success 80
pgmigrate_fail 1
"""


def write_fake_proc(
    root: Path,
    *,
    kernel: str = "6.19",
    kpageflags: bool = True,
    pagetypeinfo: bool = True,
    iomem: bool = True,
) -> FakeMachine:
    """Write the fake machine's /proc files under ``root`` and return what to expect."""
    root.mkdir(parents=True, exist_ok=True)
    m = _layout(kernel)
    mt = np.full(NR_PFNS // P, int(MigrateType.MOVABLE), dtype=np.int8)
    mt[[4, 11]] = int(MigrateType.UNMOVABLE)
    mt[[6, 14]] = int(MigrateType.RECLAIMABLE)
    mt[[12, 15]] = int(MigrateType.UNMOVABLE)  # all holes
    block_mt = np.repeat(mt, P)
    final = m.state.copy()
    final[(m.cls == c.SLAB) & (block_mt != int(MigrateType.RECLAIMABLE))] = UNMOVABLE
    hole = m.cls == c.HOLE
    unmanaged = np.zeros(NR_PFNS, dtype=bool)
    unmanaged[7680:8192] = True

    zones = []
    for node, name, start, end, base, totals, pcp in (
        (0, "DMA", 1, 4096, 0, {"Unmovable": 1, "Movable": 6, "Reclaimable": 1}, 0),
        (0, "Normal", 4096, 8192, 4096, {"Unmovable": 1, "Movable": 4, "Reclaimable": 1}, 12),
    ):
        span = slice(start, end)
        present = int((~hole[span]).sum())  # the unmanaged block is present
        reserved = int((m.cls[span] == c.RESERVED).sum())
        managed = present - reserved - int(unmanaged[span].sum())
        zones.append(
            FakeZone(
                node=node,
                name=name,
                start_pfn=start,
                spanned=end - start,
                present=present,
                managed=managed,
                base_pfn=base,
                nr_pages=end - base,
                block_totals={**totals, "HighAtomic": 0, "Isolate": 0},
                pcp_count=pcp,
                buddyinfo=buddy.buddyinfo(final[base:end][None, :])[0],
            )
        )
    zones_t = tuple(zones)

    node_stats = {
        "nr_inactive_anon": 600,
        "nr_active_anon": 64,
        "nr_inactive_file": 900,
        "nr_active_file": 10,
        "nr_unevictable": 0,
        "nr_slab_reclaimable": 700,
        "nr_slab_unreclaimable": 300,
        "nr_kernel_stack": 64,
        "nr_page_table_pages": 101,
    }
    dma, normal = zones_t
    zone_stats = [
        {"nr_zone_inactive_anon": 500, "nr_zone_active_anon": 0, "nr_zone_inactive_file": 300},
        {"nr_zone_inactive_anon": 100, "nr_zone_active_anon": 64, "nr_zone_inactive_file": 600},
    ]
    text = _zoneinfo_zone(dma, node_stats, zone_stats[0])
    text += _zoneinfo_zone(normal, None, zone_stats[1])
    text += _empty_zone("Movable") + _empty_zone("Device")
    (root / "zoneinfo").write_text(text)
    (root / "buddyinfo").write_text(
        "".join(buddy.format_buddyinfo(z.buddyinfo, z.node, z.name) for z in zones_t)
    )
    if pagetypeinfo:
        (root / "pagetypeinfo").write_text(_pagetypeinfo(zones_t, final, mt))
    (root / "vmstat").write_text(VMSTAT)
    if iomem:
        (root / "iomem").write_text(IOMEM)
    if kpageflags:
        m.flags.astype("<u8").tofile(root / "kpageflags")
        m.count.astype("<u8").tofile(root / "kpagecount")
    (root / "sys" / "kernel").mkdir(parents=True, exist_ok=True)
    (root / "sys" / "kernel" / "osrelease").write_text(f"{kernel}.0-fixture\n")
    (root / "sys" / "kernel" / "hostname").write_text("fixture-host\n")
    return FakeMachine(
        root=root,
        kernel=kernel,
        flags=m.flags,
        count=m.count,
        page_class=m.cls,
        raw_state=m.state,
        page_state=final,
        hole=hole | unmanaged,
        pageblock_migratetype=mt,
        zones=zones_t,
    )
