"""Readers of the /proc files a snapshot is made from (kernel-model.md 9.1-9.4).

Every reader takes ``proc_root`` (default ``/proc``), so tests can point it at a
directory holding files of the same names: ``zoneinfo``, ``buddyinfo``, ``pagetypeinfo``,
``vmstat``, ``iomem``, and ``kpageflags`` / ``kpagecount`` as binary arrays of
little-endian u64. The text parsers take the text alone and name the file and line of
anything they cannot read (:class:`~sweep.snapshot.file.SnapshotError`).

Formats, as printed by mm/vmstat.c and fs/proc/page.c in v4.12 and v6.x:

* ``zoneinfo``: ``Node N, zone NAME`` then ``key value`` lines; the node's counters under
  ``per-node stats`` (printed in the node's first zone), ``pages free N``, the watermarks,
  ``spanned``/``present``/``managed``, the zone counters, ``pagesets`` with one
  ``count:`` per CPU, and ``start_pfn:``. Zones with nothing present print no pagesets
  and no ``start_pfn``.
* ``buddyinfo``: ``Node N, zone NAME`` then the free blocks of each order.
* ``pagetypeinfo`` (root only in 6.x): free blocks per migratetype and order
  (6.19 prints ``>100000`` above 100000), then ``Number of blocks type`` with the type
  columns the kernel was built with (CMA and Isolate may be missing).
* ``kpageflags`` / ``kpagecount``: u64 per PFN at offset ``pfn * 8`` (root only).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sweep.snapshot.file import SnapshotError

PROC = Path("/proc")
KPAGE_CHUNK = 1 << 16  # PFNs per read of kpageflags / kpagecount: 512 KiB of u64
KPF_NOPAGE = 20  # kpageflags bit of a PFN without a struct page (beyond the last PFN)

_ZONE_HEADER = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s*$")
_BUDDY_LINE = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s+(.*)$")
_FREE_LINE = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)\s+(.*)$")
_KEY_VALUE = re.compile(r"^([A-Za-z_][\w ]*?):?\s+(-?\d+)$")

# zoneinfo keys of the watermarks and sizes, and the ZoneInfo fields they fill.
_ZONE_FIELDS = {
    "min": "wmark_min",
    "low": "wmark_low",
    "high": "wmark_high",
    "spanned": "spanned",
    "present": "present",
    "managed": "managed",
    "start_pfn": "start_pfn",
    "pages free": "free_pages",
}
_PCP_KEYS = {"cpu", "count", "high", "batch", "high_min", "high_max", "vm stats threshold"}


@dataclasses.dataclass(frozen=True)
class ZoneInfo:
    """One zone of /proc/zoneinfo."""

    node: int
    name: str
    start_pfn: int  # -1 when not printed (a zone with nothing present)
    spanned: int
    present: int
    managed: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    free_pages: int  # "pages free"
    pcp_count: int | None  # sum of the per-cpu "count:" lines; None without pagesets
    stats: dict[str, int]  # the zone's counters (nr_free_pages, nr_zone_active_anon, ...)
    node_stats: dict[str, int]  # its node's "per-node stats" (shared by the node's zones)

    def stat(self, name: str) -> int | None:
        """Counter ``name`` from the zone's counters, else its node's (4.12 vs 6.x)."""
        if name in self.stats:
            return self.stats[name]
        return self.node_stats.get(name)


@dataclasses.dataclass(frozen=True)
class PageTypeInfo:
    """/proc/pagetypeinfo: free blocks per type and order, pageblocks per type."""

    pageblock_order: int
    free: dict[tuple[int, str], dict[str, np.ndarray]]  # (node, zone) -> type -> (orders,)
    blocks: dict[tuple[int, str], dict[str, int]]  # (node, zone) -> type -> pageblocks
    block_types: tuple[str, ...]  # the "Number of blocks type" columns, in file order
    capped: bool  # some free count was printed as ">100000" (read as 100000)


def _error(source: str, lineno: int, line: str, why: str) -> SnapshotError:
    return SnapshotError(f"{source} line {lineno}: {why}: {line.strip()!r}")


def parse_zoneinfo(text: str, source: str = "/proc/zoneinfo") -> list[ZoneInfo]:
    """The zones of a /proc/zoneinfo text, in file order (all of them, spanned 0 too)."""
    zones: list[ZoneInfo] = []
    node_stats: dict[int, dict[str, int]] = {}
    current: dict | None = None
    section = "zone"  # "node" (per-node stats), "zone" or "pcp" (pagesets)

    def finish() -> None:
        if current is None:
            return
        missing = [k for k in ("spanned", "present", "managed") if k not in current["fields"]]
        if missing:
            raise SnapshotError(
                f"{source}: zone {current['node']}:{current['name']} has no "
                f"{', '.join(missing)} line"
            )
        f = current["fields"]
        zones.append(
            ZoneInfo(
                node=current["node"],
                name=current["name"],
                start_pfn=f.get("start_pfn", -1),
                spanned=f["spanned"],
                present=f["present"],
                managed=f["managed"],
                wmark_min=f.get("wmark_min", 0),
                wmark_low=f.get("wmark_low", 0),
                wmark_high=f.get("wmark_high", 0),
                free_pages=f.get("free_pages", 0),
                pcp_count=current["pcp"],
                stats=current["stats"],
                node_stats=node_stats.setdefault(current["node"], {}),
            )
        )

    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        m = _ZONE_HEADER.match(stripped)
        if m:
            finish()
            node = int(m.group(1))
            current = {"node": node, "name": m.group(2), "fields": {}, "stats": {}, "pcp": None}
            node_stats.setdefault(node, {})
            section = "zone"
            continue
        if current is None:
            raise _error(source, lineno, line, "text before the first 'Node N, zone NAME' line")
        if stripped == "per-node stats":
            section = "node"
            continue
        if stripped == "pagesets":
            section = "pcp"
            current["pcp"] = 0
            continue
        if stripped.startswith("protection:"):
            continue
        m = _KEY_VALUE.match(stripped)
        if not m:
            raise _error(source, lineno, line, "not a 'name value' line")
        key, value = m.group(1).strip(), int(m.group(2))
        if key == "pages free":
            section = "zone"
        if section == "pcp" and key in _PCP_KEYS:
            if key == "count":
                current["pcp"] += value
            continue
        if section == "node":
            node_stats[current["node"]][key] = value
        elif key in _ZONE_FIELDS:
            current["fields"][_ZONE_FIELDS[key]] = value
        else:
            current["stats"][key] = value
    finish()
    if not zones:
        raise SnapshotError(f"{source}: no 'Node N, zone NAME' lines")
    return zones


def parse_buddyinfo(
    text: str, source: str = "/proc/buddyinfo"
) -> dict[tuple[int, str], np.ndarray]:
    """``(node, zone name) -> (orders,)`` int64 free blocks per order."""
    out: dict[tuple[int, str], np.ndarray] = {}
    width = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _BUDDY_LINE.match(line.strip())
        if not m:
            raise _error(source, lineno, line, "not a 'Node N, zone NAME counts...' line")
        try:
            counts = np.array([int(c) for c in m.group(3).split()], dtype=np.int64)
        except ValueError:
            raise _error(source, lineno, line, "a count is not an integer") from None
        if width is None:
            width = counts.size
        if counts.size != width or width == 0:
            raise _error(source, lineno, line, f"{counts.size} orders where {width} were before")
        out[(int(m.group(1)), m.group(2))] = counts
    if not out:
        raise SnapshotError(f"{source}: no zone lines")
    return out


def _count(token: str) -> tuple[int, bool]:
    """A pagetypeinfo free count; 6.19 prints ``>100000`` above its cap."""
    if token.startswith(">"):
        return int(token[1:]), True
    return int(token), False


def parse_pagetypeinfo(text: str, source: str = "/proc/pagetypeinfo") -> PageTypeInfo:
    """Free blocks per migratetype and order, and the pageblock counts per type."""
    pageblock_order = None
    free: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    blocks: dict[tuple[int, str], dict[str, int]] = {}
    block_types: tuple[str, ...] = ()
    capped = False
    table = None  # "free", "blocks" or "skip" (CONFIG_PAGE_OWNER's mixed-blocks table)
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            if stripped.startswith("Page block order:"):
                pageblock_order = int(stripped.split(":", 1)[1])
            elif stripped.startswith("Pages per block:"):
                continue
            elif stripped.startswith("Free pages count per migrate type"):
                table = "free"
            elif stripped.startswith("Number of blocks type"):
                table = "blocks"
                block_types = tuple(stripped[len("Number of blocks type") :].split())
            elif stripped.startswith("Number of mixed blocks"):
                table = "skip"
            elif table == "free":
                m = _FREE_LINE.match(stripped)
                if not m:
                    raise ValueError("not a free-count line")
                parsed = [_count(t) for t in m.group(4).split()]
                capped |= any(c for _, c in parsed)
                key = (int(m.group(1)), m.group(2).rstrip(","))
                counts = np.array([v for v, _ in parsed], dtype=np.int64)
                free.setdefault(key, {})[m.group(3)] = counts
            elif table == "blocks":
                m = _BUDDY_LINE.match(stripped)
                if not m:
                    raise ValueError("not a block-count line")
                values = [int(v) for v in m.group(3).split()]
                if len(values) != len(block_types):
                    raise ValueError(f"{len(values)} counts for {len(block_types)} types")
                blocks[(int(m.group(1)), m.group(2))] = dict(zip(block_types, values, strict=True))
            elif table == "skip":
                continue
            else:
                raise ValueError("unexpected line")
        except ValueError as exc:
            raise _error(source, lineno, line, str(exc)) from None
    if pageblock_order is None:
        raise SnapshotError(f"{source}: no 'Page block order:' line")
    return PageTypeInfo(pageblock_order, free, blocks, block_types, capped)


def parse_vmstat(text: str, source: str = "/proc/vmstat") -> dict[str, int]:
    """``name -> value`` of every /proc/vmstat line."""
    out = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise _error(source, lineno, line, "not a 'name value' line")
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            raise _error(source, lineno, line, "the value is not an integer") from None
    return out


def parse_iomem(text: str) -> list[tuple[int, int]]:
    """``[(first byte, last byte)]`` of the "System RAM" ranges of /proc/iomem.

    Empty when the addresses are hidden (a non-root reader sees them all as zero).
    """
    ranges = []
    for line in text.splitlines():
        span, _, name = line.partition(" : ")
        if name.strip() != "System RAM":
            continue
        try:
            first, last = (int(x, 16) for x in span.strip().split("-"))
        except ValueError:
            continue
        ranges.append((first, last))
    if all(first == 0 and last == 0 for first, last in ranges):
        return []
    return ranges


def read_text(name: str, proc_root: Path = PROC) -> str:
    """The text of ``proc_root/name``; OSError (missing, no permission) passes through."""
    return (Path(proc_root) / name).read_text(encoding="ascii", errors="replace")


def read_zoneinfo(proc_root: Path = PROC) -> list[ZoneInfo]:
    path = Path(proc_root) / "zoneinfo"
    return parse_zoneinfo(read_text("zoneinfo", proc_root), str(path))


def read_buddyinfo(proc_root: Path = PROC) -> dict[tuple[int, str], np.ndarray]:
    path = Path(proc_root) / "buddyinfo"
    return parse_buddyinfo(read_text("buddyinfo", proc_root), str(path))


def read_pagetypeinfo(proc_root: Path = PROC) -> PageTypeInfo:
    path = Path(proc_root) / "pagetypeinfo"
    return parse_pagetypeinfo(read_text("pagetypeinfo", proc_root), str(path))


def read_vmstat(proc_root: Path = PROC) -> dict[str, int]:
    path = Path(proc_root) / "vmstat"
    return parse_vmstat(read_text("vmstat", proc_root), str(path))


def read_iomem(proc_root: Path = PROC) -> list[tuple[int, int]]:
    return parse_iomem(read_text("iomem", proc_root))


def _read_u64(path: Path, start_pfn: int, nr_pages: int, fill: int) -> np.ndarray:
    """u64 ``[start_pfn, start_pfn + nr_pages)`` of a kpage file; ``fill`` past its end."""
    out = np.fromfile(path, dtype="<u8", count=nr_pages, offset=start_pfn * 8)
    if out.size < nr_pages:  # the kernel stops at max_pfn
        out = np.concatenate([out, np.full(nr_pages - out.size, fill, dtype="<u8")])
    return out


def read_kpageflags(start_pfn: int, nr_pages: int, proc_root: Path = PROC) -> np.ndarray:
    """``(nr_pages,)`` u64 kpageflags of ``[start_pfn, start_pfn + nr_pages)``.

    PFNs past the end of the file read as NOPAGE. One read: see :func:`iter_kpages` for
    large ranges.
    """
    return _read_u64(Path(proc_root) / "kpageflags", start_pfn, nr_pages, 1 << KPF_NOPAGE)


def read_kpagecount(start_pfn: int, nr_pages: int, proc_root: Path = PROC) -> np.ndarray:
    """``(nr_pages,)`` u64 kpagecount (map counts) of ``[start_pfn, start_pfn + nr_pages)``."""
    return _read_u64(Path(proc_root) / "kpagecount", start_pfn, nr_pages, 0)


def iter_kpages(
    start_pfn: int,
    nr_pages: int,
    proc_root: Path = PROC,
    *,
    chunk_pages: int = KPAGE_CHUNK,
    with_count: bool = True,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """``(pfn, kpageflags, kpagecount or None)`` chunks covering the range, in PFN order.

    ``chunk_pages`` bounds the memory held at once (two u64 per PFN), so a 128 GiB zone
    (33.5 M PFNs) is read 512 KiB at a time. kpagecount is None when ``with_count`` is
    false. OSError (no such file, permission denied) passes through.
    """
    end = start_pfn + nr_pages
    for pfn in range(start_pfn, end, chunk_pages):
        n = min(chunk_pages, end - pfn)
        flags = read_kpageflags(pfn, n, proc_root)
        count = read_kpagecount(pfn, n, proc_root) if with_count else None
        yield pfn, flags, count
