"""Snapshots of a machine's memory zones: the data model, taking one, and the file.

A :class:`Snapshot` holds, per zone, the page state of every PFN (kernels.zone codes),
a hole mask, the pageblock migratetypes and /proc/buddyinfo as read, plus the machine's
identity, /proc/vmstat, the raw /proc texts it was made from and notes on everything
that was inferred or synthesised. :func:`take_snapshot` reads /proc (kpageflags as root,
else a synthesis from /proc/buddyinfo); :func:`save_snapshot` and :func:`load_snapshot`
write and read the file.

File format (``format_version`` 1): a compressed ``.npz`` (zip of ``.npy`` members, read
with ``allow_pickle=False``) holding ``metadata``, the UTF-8 bytes (uint8) of a JSON
object with ``magic`` = ``"compaction-sweep-snapshot"``, ``format_version`` and every
scalar field, and per zone ``i`` the arrays ``zone<i>.page_state`` (uint8),
``zone<i>.hole`` (bool), ``zone<i>.pageblock_migratetype`` (int8) and
``zone<i>.buddyinfo`` (int64). page_state is mostly long runs and compresses well.

This module is the bottom layer of ``sweep.snapshot``: the readers (procfs, classify,
synth) import it for :class:`SnapshotError`, so :func:`take_snapshot` imports them when
it runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from kernels.zone import (
    MAX_FOLIO_ORDER,
    MAX_PAGE_ORDER,
    NR_MIGRATETYPES,
    NR_PAGE_ORDERS,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    UNMOVABLE,
    folio_head_code,
    folio_tail_code,
)

MAGIC = "compaction-sweep-snapshot"
FORMAT_VERSION = 1
SOURCES = ("kpageflags", "synthesised")
ZONE_ARRAYS = ("page_state", "hole", "pageblock_migratetype", "buddyinfo")
ZONE_SCALARS = (
    "node",
    "name",
    "start_pfn",
    "spanned",
    "present",
    "managed",
    "wmark_min",
    "wmark_low",
    "wmark_high",
    "base_pfn",
)
PROC = Path("/proc")

# Valid page-state codes: the five kinds and the folio heads and tails of orders 1..9.
_VALID_CODE = np.zeros(256, dtype=bool)
_VALID_CODE[:5] = True
for _k in range(1, MAX_FOLIO_ORDER + 1):
    _VALID_CODE[folio_head_code(_k)] = _VALID_CODE[folio_tail_code(_k)] = True
del _k


class SnapshotError(ValueError):
    """A snapshot cannot be taken, read or written; the message names the file and why."""


@dataclasses.dataclass(frozen=True)
class ZoneArrays:
    """One zone's arrays as a reader (classify or synth) made them, and its notes."""

    base_pfn: int
    page_state: np.ndarray  # (N,) uint8
    hole: np.ndarray  # (N,) bool
    pageblock_migratetype: np.ndarray  # (N // 512,) int8
    notes: tuple[str, ...]


def _folio_problem(page_state: np.ndarray) -> str | None:
    """Why the folios of ``page_state`` are not whole and aligned, or None.

    Per order k, over the naturally aligned ``2**k``-page slots: every head starts a
    slot whose other pages are all its tails, and there are no other tails.
    """
    for k in range(1, MAX_FOLIO_ORDER + 1):
        size = 1 << k
        is_head = page_state == folio_head_code(k)
        nr_heads = int(np.count_nonzero(is_head))
        if nr_heads == 0 and not (page_state == folio_tail_code(k)).any():
            continue
        rows = page_state.size // size
        head_rows = is_head[: rows * size].reshape(rows, size)[:, 0]
        if int(np.count_nonzero(head_rows)) != nr_heads:
            return f"an order-{k} folio head is not aligned to {size} pages"
        is_tail = (page_state[: rows * size] == folio_tail_code(k)).reshape(rows, size)
        nr_tails = int(np.count_nonzero(is_tail))
        if nr_tails != nr_heads * (size - 1) or not is_tail[head_rows][:, 1:].all():
            return f"an order-{k} folio is not its head followed by {size - 1} tail pages"
    return None


def zone_problem(zone: ZoneSnapshot) -> str | None:
    """Why ``zone``'s fields are inconsistent, or None (the checks of :func:`load_snapshot`)."""
    for name in ZONE_SCALARS:
        value = getattr(zone, name)
        want = str if name == "name" else int
        if not isinstance(value, want) or isinstance(value, bool):
            return f"{name} must be {want.__name__}, not {type(value).__name__}"
    if not zone.name:
        return "name is empty"
    expect = {
        "page_state": (np.uint8, 1),
        "hole": (np.bool_, 1),
        "pageblock_migratetype": (np.int8, 1),
        "buddyinfo": (np.int64, 1),
    }
    for name, (dtype, ndim) in expect.items():
        a = getattr(zone, name)
        if not isinstance(a, np.ndarray):
            return f"{name} is {type(a).__name__}, not a NumPy array"
        if a.dtype != dtype or a.ndim != ndim:
            return f"{name} is {a.ndim}-d {a.dtype}, want 1-d {np.dtype(dtype)}"
    n = zone.page_state.size
    if n == 0 or n % PAGEBLOCK_NR_PAGES:
        return f"page_state has {n} pages, not a positive multiple of {PAGEBLOCK_NR_PAGES}"
    if zone.hole.size != n:
        return f"hole has {zone.hole.size} entries for {n} pages"
    if zone.pageblock_migratetype.size != n // PAGEBLOCK_NR_PAGES:
        return (
            f"pageblock_migratetype has {zone.pageblock_migratetype.size} entries for "
            f"{n // PAGEBLOCK_NR_PAGES} pageblocks"
        )
    mt = zone.pageblock_migratetype
    if ((mt < 0) | (mt >= NR_MIGRATETYPES)).any():
        return f"pageblock_migratetype holds a value outside 0..{NR_MIGRATETYPES - 1}"
    if zone.buddyinfo.size != NR_PAGE_ORDERS:
        return f"buddyinfo has {zone.buddyinfo.size} orders, want {NR_PAGE_ORDERS}"
    if (zone.buddyinfo < 0).any():
        return "buddyinfo has a negative count"
    bad = ~_VALID_CODE[zone.page_state]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return (
            f"page_state has an invalid code {int(zone.page_state[i])} at PFN {zone.base_pfn + i}"
        )
    if (zone.page_state[zone.hole] != UNMOVABLE).any():
        return "a hole page is not UNMOVABLE"
    if zone.base_pfn < 0 or zone.base_pfn % PAGEBLOCK_NR_PAGES:
        return f"base_pfn {zone.base_pfn} is not a pageblock-aligned PFN"
    if not 0 <= zone.managed <= zone.present <= zone.spanned:
        return (
            f"sizes must satisfy 0 <= managed <= present <= spanned (managed {zone.managed}, "
            f"present {zone.present}, spanned {zone.spanned})"
        )
    lo, hi = zone.start_pfn - zone.base_pfn, zone.start_pfn + zone.spanned - zone.base_pfn
    if lo < 0 or hi > n or hi - lo != zone.spanned:
        return (
            f"span [{zone.start_pfn}, {zone.start_pfn + zone.spanned}) is not inside the arrays "
            f"[{zone.base_pfn}, {zone.base_pfn + n})"
        )
    if not (zone.hole[:lo].all() and zone.hole[hi:].all()):
        return "a PFN outside the zone span is not marked as a hole"
    return _folio_problem(zone.page_state)


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


@dataclasses.dataclass(frozen=True, eq=False)
class ZoneSnapshot:
    """One zone of a machine: sizes and watermarks from /proc/zoneinfo, page arrays.

    The arrays cover ``[base_pfn, base_pfn + N)``; PFNs outside the zone span are holes.
    Construction checks consistency and raises :class:`SnapshotError`.
    """

    node: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    base_pfn: int  # pageblock-aligned start of the arrays (<= start_pfn)
    page_state: np.ndarray  # (N,) uint8; kernels.zone codes, N a multiple of 512
    hole: np.ndarray  # (N,) bool; PFN outside the span or without (initialised) memmap
    pageblock_migratetype: np.ndarray  # (N // 512,) int8; MigrateType
    buddyinfo: np.ndarray  # (11,) int64; /proc/buddyinfo as read at snapshot time

    def __post_init__(self) -> None:
        problem = zone_problem(self)
        if problem:
            raise SnapshotError(f"zone {self.node}:{self.name}: {problem}")

    @property
    def nr_pages(self) -> int:
        """N, the PFNs covered by the arrays (holes included)."""
        return int(self.page_state.size)

    @property
    def label(self) -> str:
        """``"<node>:<name>"``, e.g. ``"0:Normal"``."""
        return f"{self.node}:{self.name}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZoneSnapshot):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in ZONE_SCALARS) and all(
            _arrays_equal(getattr(self, n), getattr(other, n)) for n in ZONE_ARRAYS
        )

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True, eq=False)
class Snapshot:
    """A machine's zones at one moment, and how they were obtained."""

    format_version: int  # FORMAT_VERSION
    created: str  # ISO 8601, UTC
    hostname: str
    kernel_release: str
    source: str  # "kpageflags" | "synthesised"
    notes: tuple[str, ...]  # what is inferred or synthesised, mismatches seen while reading
    zones: tuple[ZoneSnapshot, ...]
    vmstat: dict[str, int]
    raw: dict[str, str]  # raw text of the /proc files read: zoneinfo, buddyinfo, ...

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise SnapshotError(
                f"format_version {self.format_version!r}; this program handles {FORMAT_VERSION}"
            )
        if self.source not in SOURCES:
            raise SnapshotError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        if not isinstance(self.zones, tuple) or not all(
            isinstance(z, ZoneSnapshot) for z in self.zones
        ):
            raise SnapshotError("zones must be a tuple of ZoneSnapshot")
        if not isinstance(self.notes, tuple) or not all(isinstance(n, str) for n in self.notes):
            raise SnapshotError("notes must be a tuple of str")

    def zone(self, name_or_index: str | int) -> ZoneSnapshot:
        """The zone ``"Normal"`` (case-insensitive; one node only), ``"0:Normal"`` or index."""
        available = ", ".join(z.label for z in self.zones) or "none"
        if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
            if 0 <= name_or_index < len(self.zones):
                return self.zones[name_or_index]
            raise SnapshotError(
                f"no zone {name_or_index}: the snapshot has {len(self.zones)} zones ({available})"
            )
        text = str(name_or_index).strip()
        m = re.fullmatch(r"(?:(\d+):)?(\S+)", text)
        if m is None:
            raise SnapshotError(f"no zone {text!r} in the snapshot (it has {available})")
        node = None if m.group(1) is None else int(m.group(1))
        chosen = [
            z
            for z in self.zones
            if z.name.lower() == m.group(2).lower() and (node is None or z.node == node)
        ]
        if not chosen:
            raise SnapshotError(f"no zone {text!r} in the snapshot (it has {available})")
        if len(chosen) > 1:
            raise SnapshotError(
                f"zone {text!r} is on several nodes ({', '.join(z.label for z in chosen)}): "
                "say which as N:Name"
            )
        return chosen[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return all(
            getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self)
        )

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------------------
# Taking a snapshot


def _read_optional(proc_root: Path, name: str) -> str | None:
    try:
        return (proc_root / name).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _read_required(proc_root: Path, name: str) -> str:
    path = proc_root / name
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read it ({exc.strerror or exc})") from exc


def _kpageflags_readable(proc_root: Path) -> str | None:
    """None when ``kpageflags`` can be read, else why not."""
    path = proc_root / "kpageflags"
    try:
        with open(path, "rb") as f:
            f.read(8)
    except OSError as exc:
        return f"{path} is not readable ({exc.strerror or exc}; it needs root)"
    return None


def free_pages(counts: np.ndarray) -> int:
    """Pages in free blocks: ``sum(count[k] << k)`` of a buddyinfo count vector."""
    c = np.asarray(counts, dtype=np.int64)
    return int((c << np.arange(c.size, dtype=np.int64)).sum())


def zone_extent(start_pfn: int, spanned: int) -> tuple[int, int]:
    """``(base_pfn, nr_pages)`` of a zone's arrays.

    From the MAX_PAGE_ORDER-aligned PFN at or below ``start_pfn`` to the pageblock
    boundary at or above the span's end. The 1024-page alignment keeps buddy blocks at
    their absolute alignment in kernels.buddy, which counts from the array start.
    """
    align = 1 << MAX_PAGE_ORDER
    base = start_pfn // align * align
    end = -(-(start_pfn + spanned) // PAGEBLOCK_NR_PAGES) * PAGEBLOCK_NR_PAGES
    return base, end - base


def take_snapshot(
    proc_root: Path = PROC, *, seed: int = 0, allow_synthesis: bool = True
) -> Snapshot:
    """Read this machine's zones from ``proc_root`` (default /proc).

    With a readable ``kpageflags`` every PFN is classified (:mod:`.classify`); without
    one (not root) and with ``allow_synthesis``, each zone is synthesised from
    /proc/buddyinfo and /proc/zoneinfo (:mod:`.synth`, seeded by ``seed``), else a
    :class:`SnapshotError`. Zones with no span are left out. Reading a live /proc is
    racy: differences between the classified pages and /proc/buddyinfo or zoneinfo are
    recorded in ``notes``, not raised.
    """
    from sweep.snapshot import classify, procfs, synth  # they import this module

    proc_root = Path(proc_root)
    raw: dict[str, str] = {}
    notes: list[str] = []
    raw["zoneinfo"] = _read_required(proc_root, "zoneinfo")
    zoneinfo = procfs.parse_zoneinfo(raw["zoneinfo"], str(proc_root / "zoneinfo"))
    zones = [z for z in zoneinfo if z.spanned > 0]
    for z in zones:
        if z.start_pfn < 0:
            raise SnapshotError(
                f"{proc_root / 'zoneinfo'}: zone {z.node}:{z.name} spans {z.spanned} pages "
                "but has no start_pfn line"
            )
    vmstat: dict[str, int] = {}
    text = _read_optional(proc_root, "vmstat")
    if text is not None:
        raw["vmstat"] = text
        vmstat = procfs.parse_vmstat(text, str(proc_root / "vmstat"))
    else:
        notes.append(f"{proc_root / 'vmstat'} was not readable")
    system_ram: list[tuple[int, int]] = []
    text = _read_optional(proc_root, "iomem")
    if text is not None:
        raw["iomem"] = text
        system_ram = procfs.parse_iomem(text)
    unreadable = _kpageflags_readable(proc_root)
    if unreadable and not allow_synthesis:
        raise SnapshotError(f"{unreadable}, and synthesis was not allowed")

    # The scans' arrays are allocated before buddyinfo is read, so that our own memory
    # does not move the free pages between the two reads.
    scans = [] if unreadable else [classify.prepare_zone(z, system_ram) for z in zones]
    if scans:
        classify.warm_up()
    raw["buddyinfo"] = _read_required(proc_root, "buddyinfo")
    text = _read_optional(proc_root, "pagetypeinfo")
    for scan in scans:
        classify.scan_zone(scan, proc_root)
    buddyinfo = procfs.parse_buddyinfo(raw["buddyinfo"], str(proc_root / "buddyinfo"))
    pagetypeinfo = None
    if text is not None:
        raw["pagetypeinfo"] = text
        pagetypeinfo = procfs.parse_pagetypeinfo(text, str(proc_root / "pagetypeinfo"))
        if pagetypeinfo.pageblock_order != PAGEBLOCK_ORDER:
            raise SnapshotError(
                f"{proc_root / 'pagetypeinfo'}: pageblock order {pagetypeinfo.pageblock_order}; "
                f"the simulator has {PAGEBLOCK_ORDER} (x86-64)"
            )
    else:
        notes.append(f"{proc_root / 'pagetypeinfo'} was not readable (root only)")
    for counts in buddyinfo.values():
        if counts.size != NR_PAGE_ORDERS:
            raise SnapshotError(
                f"{proc_root / 'buddyinfo'}: {counts.size} orders; the simulator has "
                f"{NR_PAGE_ORDERS} (MAX_PAGE_ORDER 10, x86-64)"
            )
    source = "kpageflags" if unreadable is None else "synthesised"
    kinds = synth.allocation_kinds(zones, buddyinfo) if unreadable else {}

    out = []
    for index, z in enumerate(zones):
        key = (z.node, z.name)
        read = buddyinfo.get(key)
        if read is None:
            read = np.zeros(NR_PAGE_ORDERS, dtype=np.int64)
            notes.append(f"zone {z.node}:{z.name} has no /proc/buddyinfo line; no free blocks")
        totals = pagetypeinfo.blocks.get(key) if pagetypeinfo else None
        if unreadable is None:
            made = classify.finish_zone(scans[index], read, totals)
            scans[index] = None  # its arrays now belong to the zone
        else:
            made = synth.synthesise_zone(
                z, read, kinds[key], seed=seed, zone_index=index, block_totals=totals
            )
        notes.extend(made.notes)
        out.append(
            ZoneSnapshot(
                node=z.node,
                name=z.name,
                start_pfn=z.start_pfn,
                spanned=z.spanned,
                present=z.present,
                managed=z.managed,
                wmark_min=z.wmark_min,
                wmark_low=z.wmark_low,
                wmark_high=z.wmark_high,
                base_pfn=made.base_pfn,
                page_state=made.page_state,
                hole=made.hole,
                pageblock_migratetype=made.pageblock_migratetype,
                buddyinfo=np.asarray(read, dtype=np.int64),
            )
        )

    if unreadable is None:
        fitted = "fitted to the counts of /proc/pagetypeinfo" if pagetypeinfo else "simple rule"
        notes += [
            f"pageblock migratetypes are inferred from the page classes ({fitted}; "
            "per-block types need page_owner)",
            "slab pages are RECLAIMABLE in RECLAIMABLE pageblocks and UNMOVABLE elsewhere "
            "(kpageflags does not tell them apart)",
            "pins are invisible (kpagecount is a map count, not a reference count): no page "
            "is PINNED",
        ]
    else:
        notes[:0] = [
            synth.SYNTH_NOTE,
            f"{unreadable}: the free blocks per order, zone sizes, watermarks and pageblock "
            f"counts are this machine's; positions and page kinds are synthesised with seed "
            f"{seed}",
            "holes (spanned - present) and reserved pages (present - managed) are put at the "
            "top of each zone's span; synthesised zones hold base pages only: no large "
            "folios, no pinned pages",
        ]
    return Snapshot(
        format_version=FORMAT_VERSION,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        hostname=(_read_optional(proc_root, "sys/kernel/hostname") or os.uname().nodename).strip(),
        kernel_release=(
            _read_optional(proc_root, "sys/kernel/osrelease") or os.uname().release
        ).strip(),
        source=source,
        notes=tuple(notes),
        zones=tuple(out),
        vmstat=vmstat,
        raw=raw,
    )


# --------------------------------------------------------------------------------------
# The file


def _metadata(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "magic": MAGIC,
        "format_version": snapshot.format_version,
        "created": snapshot.created,
        "hostname": snapshot.hostname,
        "kernel_release": snapshot.kernel_release,
        "source": snapshot.source,
        "notes": list(snapshot.notes),
        "vmstat": dict(snapshot.vmstat),
        "raw": dict(snapshot.raw),
        "zones": [{name: getattr(z, name) for name in ZONE_SCALARS} for z in snapshot.zones],
    }


def save_snapshot(snapshot: Snapshot, path: str | os.PathLike[str]) -> None:
    """Write ``snapshot`` to ``path`` (compressed .npz) atomically: temp file, then rename.

    The directory must exist. On any failure nothing is left behind and a
    :class:`SnapshotError` names the file and the problem.
    """
    path = Path(path)
    if not isinstance(snapshot, Snapshot):
        raise SnapshotError(f"cannot write {path}: not a Snapshot ({type(snapshot).__name__})")
    for z in snapshot.zones:
        problem = zone_problem(z)
        if problem:
            raise SnapshotError(f"cannot write {path}: zone {z.label}: {problem}")
    if not path.parent.is_dir():
        raise SnapshotError(f"cannot write {path}: directory {path.parent} does not exist")
    arrays: dict[str, np.ndarray] = {
        "metadata": np.frombuffer(json.dumps(_metadata(snapshot)).encode("utf-8"), np.uint8)
    }
    for i, z in enumerate(snapshot.zones):
        for name in ZONE_ARRAYS:
            arrays[f"zone{i}.{name}"] = getattr(z, name)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise SnapshotError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _check_metadata(meta: Any) -> str | None:
    """Why the metadata object is not a version-1 snapshot's, or None."""
    if not isinstance(meta, dict):
        return "metadata is not a JSON object"
    if meta.get("magic") != MAGIC:
        return "not a compaction-sweep snapshot (its metadata has no snapshot magic)"
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        return f"format version {version!r}; this program reads version {FORMAT_VERSION}"
    for key in ("created", "hostname", "kernel_release", "source"):
        if not isinstance(meta.get(key), str):
            return f"metadata {key!r} is missing or not a string"
    notes = meta.get("notes")
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        return "metadata 'notes' is not a list of strings"
    for key, kind in (("vmstat", int), ("raw", str)):
        d = meta.get(key)
        if not isinstance(d, dict) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in d.values()
        ):
            return f"metadata {key!r} is not an object of {kind.__name__} values"
    zones = meta.get("zones")
    if not isinstance(zones, list) or not all(isinstance(z, dict) for z in zones):
        return "metadata 'zones' is not a list of objects"
    for i, z in enumerate(zones):
        missing = [k for k in ZONE_SCALARS if k not in z]
        if missing:
            return f"metadata of zone {i} has no {', '.join(missing)}"
    return None


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read and check a snapshot file; any problem is a one-line :class:`SnapshotError`.

    Checks the magic, the format version, that exactly the expected arrays are there
    with their dtypes and shapes, and every zone's consistency (:func:`zone_problem`).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if head.startswith(b"\x93NUMPY"[:4]):
        raise SnapshotError(f"{path}: not a snapshot (a single .npy array, not an .npz archive)")
    if head not in _ZIP_MAGIC:
        raise SnapshotError(f"{path}: not a snapshot file (not an .npz/zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "metadata" not in keys:
                listed = ", ".join(sorted(keys)[:5]) or "nothing"
                raise SnapshotError(
                    f"{path}: not a compaction-sweep snapshot (no metadata entry; it holds "
                    f"{listed})"
                )
            blob = npz["metadata"]
            if blob.dtype != np.uint8 or blob.ndim != 1:
                raise SnapshotError(f"{path}: not a compaction-sweep snapshot (bad metadata entry)")
            try:
                meta = json.loads(blob.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SnapshotError(f"{path}: the metadata is garbled ({exc})") from None
            problem = _check_metadata(meta)
            if problem:
                raise SnapshotError(f"{path}: {problem}")
            expected = {"metadata"} | {
                f"zone{i}.{name}" for i in range(len(meta["zones"])) for name in ZONE_ARRAYS
            }
            if keys - expected:
                raise SnapshotError(f"{path}: unexpected entry {sorted(keys - expected)[0]}")
            if expected - keys:
                raise SnapshotError(f"{path}: missing array {sorted(expected - keys)[0]}")
            arrays = {name: npz[name] for name in sorted(expected - {"metadata"})}
    except SnapshotError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise SnapshotError(f"{path}: truncated or corrupt archive ({exc})") from None
    except (ValueError, OSError, KeyError) as exc:
        raise SnapshotError(f"{path}: unreadable snapshot data ({exc})") from None

    zones = []
    for i, z in enumerate(meta["zones"]):
        fields = {name: z[name] for name in ZONE_SCALARS}
        fields.update({name: arrays[f"zone{i}.{name}"] for name in ZONE_ARRAYS})
        try:
            zones.append(ZoneSnapshot(**fields))
        except SnapshotError as exc:
            raise SnapshotError(f"{path}: {exc}") from None
    try:
        return Snapshot(
            format_version=meta["format_version"],
            created=meta["created"],
            hostname=meta["hostname"],
            kernel_release=meta["kernel_release"],
            source=meta["source"],
            notes=tuple(meta["notes"]),
            zones=tuple(zones),
            vmstat=dict(meta["vmstat"]),
            raw=dict(meta["raw"]),
        )
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
