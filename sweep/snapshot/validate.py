"""Check the simulator against the real kernel: ``python -m sweep.snapshot validate --compact``.

:func:`run_validation` takes snapshot A of this machine (page states from
/proc/kpageflags: synthesis is refused here), writes ``1`` to
/proc/sys/vm/compact_memory (the kernel compacts every zone of every node, as
``compact_nodes()`` does), takes snapshot B, and simulates the same whole-zone
compaction on each zone of A with :func:`kernels.compaction.compact_node`. It returns a
:class:`ValidationReport`: per zone the buddyinfo read before (A) and after (B), the
simulated one, the error per order, the conservation checks; the /proc/vmstat counter
deltas across the write against the simulated sums; and what else changed between A
and B that compaction cannot have done. :func:`format_report` renders it; the parts that
limit the comparison come first, not in a footnote.

:func:`compare` is a pure function of two snapshots and the simulation, so the report
can be tested without root.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kernels import buddy
from kernels.compaction import CompactParams, compact_node
from kernels.zone import (
    FREE,
    MIGRATETYPE_NAMES,
    MOVABLE,
    NR_PAGE_ORDERS,
    PAGE_KIND_NAMES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    KernelProfile,
    ZoneState,
    page_kind,
)
from sweep.expand import zone_arrays, zone_label
from sweep.snapshot import Snapshot, SnapshotError, ZoneSnapshot, procfs, take_snapshot

# /proc/vmstat counters compared; compact_stall counts direct compactions (allocations
# that stalled), which compact_memory never does: a non-zero delta means other activity.
COUNTERS = (
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "compact_stall",
)
# Counters that betray compaction outside the write (kcompactd, proactive, direct).
ACTIVITY_COUNTERS = (*COUNTERS, "compact_daemon_wake", "compact_daemon_migrate_scanned")
COMPACT_MEMORY = "sys/vm/compact_memory"


class ValidateError(RuntimeError):
    """A precondition of ``validate --compact`` does not hold (one-line reason)."""


@dataclasses.dataclass(frozen=True)
class ZoneComparison:
    """One zone: real (A, B) and simulated buddyinfo, and what else changed in A -> B."""

    label: str  # "<node>:<name>"
    node: int
    name: str
    nr_pages: int  # pages in the simulated array (the span in whole pageblocks)
    hole_pages: int  # PFNs of the array that are not memory (stored as unmovable pages)
    hole_pageblocks: int  # pageblocks holding at least one hole page
    proc_a: np.ndarray  # (11,) /proc/buddyinfo at A
    model_a: np.ndarray  # (11,) buddyinfo of A's page states: where the simulation starts
    proc_b: np.ndarray  # (11,) /proc/buddyinfo at B
    model_b: np.ndarray  # (11,) buddyinfo of B's page states
    sim: np.ndarray  # (11,) simulated buddyinfo after compaction of A
    kinds_a: np.ndarray  # (5,) pages per kind (PAGE_KIND_NAMES) in A, holes excluded
    kinds_b: np.ndarray  # (5,) likewise in B (zeros when the layout changed)
    kinds_sim: np.ndarray  # (5,) likewise after the simulation
    same_layout: bool  # A and B cover the same PFNs (else no per-PFN comparison)
    kernel_allocated: int  # PFNs not unmovable/reclaimable in A that are in B
    kernel_freed: int  # PFNs unmovable/reclaimable in A that are not in B
    kernel_relabelled: int  # unmovable in A and reclaimable in B, or the reverse
    pcp_a: int | None  # pages on per-cpu lists at A (/proc/zoneinfo), None if unknown
    pcp_b: int | None
    counters: Mapping[str, int]  # simulated counters of this zone
    # free pages per pageblock migratetype at A: the model's (inferred block types) and
    # /proc/pagetypeinfo's (None when it was not read)
    free_by_type_model: Mapping[str, int] = dataclasses.field(default_factory=dict)
    free_by_type_real: Mapping[str, int] | None = None

    @staticmethod
    def free_pages(counts: np.ndarray) -> int:
        return int((np.asarray(counts, dtype=np.int64) << np.arange(NR_PAGE_ORDERS)).sum())

    @property
    def holes_scanned_bound(self) -> int:
        """Upper bound of the hole PFNs in the simulated compact_migrate_scanned."""
        return min(self.hole_pages, int(self.counters.get("compact_migrate_scanned", 0)))

    @property
    def conservation_ok(self) -> bool:
        """Compaction conserves free pages and never touches unmovable/reclaimable pages."""
        ur = [UNMOVABLE, RECLAIMABLE]
        return (
            self.free_pages(self.sim) == self.free_pages(self.model_a)
            and int(self.kinds_sim[FREE]) == int(self.kinds_a[FREE])
            and (self.kinds_sim[ur] == self.kinds_a[ur]).all()
            and int(self.kinds_sim.sum()) == int(self.kinds_a.sum())
        )


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """Everything ``validate --compact`` found; :func:`format_report` prints it."""

    hostname: str
    kernel_release: str
    profile: KernelProfile
    profile_note: str
    compact_seconds: float  # wall time of the write to compact_memory
    real_delta: Mapping[str, int]  # /proc/vmstat deltas across the write
    outside_delta: Mapping[str, int]  # deltas while the snapshots were read (should be 0)
    zones: tuple[ZoneComparison, ...]
    snapshot_notes: tuple[str, ...]  # notes of both snapshots ("A: ..." / "B: ..." if they differ)
    own_growth_pages: int | None = None  # this process's resident pages gained from A to B

    @property
    def simulated(self) -> dict[str, int]:
        """Simulated counters summed over the zones (compact_stall: always 0)."""
        return {name: sum(int(z.counters.get(name, 0)) for z in self.zones) for name in COUNTERS}

    @property
    def conservation_ok(self) -> bool:
        return all(z.conservation_ok for z in self.zones)


# --------------------------------------------------------------------------------------
# Reading and writing /proc


def plan(proc_root: Path = Path("/proc")) -> list[str]:
    """What :func:`run_validation` does, step by step, for the user to read first."""
    return [
        "validate --compact will, on this machine:",
        f"  1. read {proc_root}/vmstat, then take snapshot A: {proc_root}/zoneinfo, "
        f"{proc_root}/buddyinfo and every PFN of {proc_root}/kpageflags (root only; page "
        "states are never synthesised here)",
        f"  2. write 1 to {proc_root}/{COMPACT_MEMORY}: the real kernel compacts all zones "
        "of all nodes now (harmless; it takes seconds and briefly costs CPU)",
        f"  3. read {proc_root}/vmstat again and take snapshot B",
        "  4. simulate the same whole-zone compaction on each zone of A and print the real "
        "(B) and simulated buddyinfo, their error per order, and the counter deltas",
        "  Nothing is written to disk.",
    ]


def check_preconditions(proc_root: Path = Path("/proc"), *, require_root: bool = True) -> None:
    """Raise :class:`ValidateError` unless this process can run the validation."""
    if require_root and os.geteuid() != 0:
        raise ValidateError(
            "validate --compact must run as root: it reads /proc/kpageflags and writes "
            "/proc/sys/vm/compact_memory (try: sudo .venv/bin/python -m sweep.snapshot "
            "validate --compact)"
        )
    kpageflags = proc_root / "kpageflags"
    if not os.access(kpageflags, os.R_OK):
        raise ValidateError(
            f"{kpageflags} is not readable (it needs root and CONFIG_PROC_PAGE_MONITOR)"
        )
    compact = proc_root / COMPACT_MEMORY
    if not compact.exists():
        raise ValidateError(f"{compact} does not exist (kernel built without CONFIG_COMPACTION?)")
    if not os.access(compact, os.W_OK):
        raise ValidateError(f"{compact} is not writable")


def read_vmstat(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """``/proc/vmstat`` as a dict of integers."""
    return procfs.read_vmstat(proc_root)


def read_pcp_counts(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """Pages on the per-cpu lists of each zone (``/proc/zoneinfo`` pagesets ``count``)."""
    try:
        zones = procfs.read_zoneinfo(proc_root)
    except (OSError, SnapshotError):
        return {}
    return {f"{z.node}:{z.name}": z.pcp_count for z in zones if z.pcp_count is not None}


def resident_pages() -> int | None:
    """This process's resident pages (``VmRSS`` of /proc/self/status), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 4
    except (OSError, ValueError, IndexError):
        return None
    return None


def trigger_compaction(proc_root: Path = Path("/proc")) -> float:
    """Write ``1`` to compact_memory (the kernel compacts every zone); return the seconds."""
    t0 = time.perf_counter()
    with open(proc_root / COMPACT_MEMORY, "w") as f:
        f.write("1\n")
    return time.perf_counter() - t0


def profile_for_release(release: str) -> tuple[KernelProfile, str]:
    """The kernel profile used to simulate Linux ``release``, and what that means."""
    match = re.match(r"(\d+)\.(\d+)", release)
    major, minor = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if (major, minor) == (6, 19):
        return KernelProfile.V6_19, f"Linux {release}: simulated with the v6_19 profile"
    if major >= 5:
        return KernelProfile.V6_19, (
            f"Linux {release}: simulated with the v6_19 profile (kernel-model.md 13), an "
            "approximation for this release: rules that changed between it and 6.19 are "
            "modelled as in 6.19"
        )
    return KernelProfile.V4_12, (
        f"Linux {release}: simulated with the v4_12 profile, an approximation for this "
        "release" + ("" if (major, minor) == (4, 12) else " (rules as in 4.12)")
    )


# --------------------------------------------------------------------------------------
# Simulation and comparison


@dataclasses.dataclass(frozen=True)
class SimulatedZone:
    """One zone of snapshot A, before and after the simulated compaction."""

    before: np.ndarray  # (N,) uint8 page states (padded: sweep.expand.zone_arrays)
    after: np.ndarray  # (N,) uint8
    hole: np.ndarray  # (N,) bool
    pageblock_migratetype: np.ndarray  # (N // 512,) int8, inferred
    counters: dict[str, int]


def simulate(snapshot: Snapshot, profile: KernelProfile) -> dict[str, SimulatedZone]:
    """Whole-zone compaction (order -1, skip_pinned) of every zone of ``snapshot``."""
    out = {}
    for zone in snapshot.zones:
        page_state, mt, hole, _pad = zone_arrays(zone)
        state = ZoneState(
            page_state=page_state[None, :].copy(),
            pageblock_migratetype=mt[None, :].copy(),
            wmark_min=np.array([zone.wmark_min], dtype=np.int64),
            wmark_low=np.array([zone.wmark_low], dtype=np.int64),
            wmark_high=np.array([zone.wmark_high], dtype=np.int64),
        )
        after, counters = compact_node(
            state, CompactParams(profile=profile, skip_pinned=np.array([True]))
        )
        out[zone_label(zone)] = SimulatedZone(
            before=page_state,
            after=np.asarray(after.page_state[0]),
            hole=hole,
            pageblock_migratetype=mt,
            counters={
                f.name: int(np.asarray(getattr(counters, f.name))[0])
                for f in dataclasses.fields(counters)
            },
        )
    return out


def _kinds(page_state: np.ndarray, hole: np.ndarray) -> np.ndarray:
    kinds = page_kind(page_state[~hole])
    return np.bincount(kinds, minlength=len(PAGE_KIND_NAMES))[: len(PAGE_KIND_NAMES)].astype(
        np.int64
    )


def _buddyinfo(page_state: np.ndarray) -> np.ndarray:
    return np.asarray(buddy.buddyinfo(page_state[None, :])[0], dtype=np.int64)


def compare_zone(
    zone_a: ZoneSnapshot,
    zone_b: ZoneSnapshot | None,
    sim: SimulatedZone,
    pcp_a: int | None = None,
    pcp_b: int | None = None,
    free_by_type_real: Mapping[str, int] | None = None,
) -> ZoneComparison:
    """Compare one zone of snapshots A and B with its simulation."""
    hole = sim.hole
    ur = np.isin(page_kind(sim.before), [UNMOVABLE, RECLAIMABLE]) & ~hole
    same_layout = False
    allocated = freed = relabelled = 0
    kinds_b = np.zeros(len(PAGE_KIND_NAMES), dtype=np.int64)
    model_b = np.zeros(NR_PAGE_ORDERS, dtype=np.int64)
    proc_b = np.zeros(NR_PAGE_ORDERS, dtype=np.int64)
    if zone_b is not None:
        proc_b = np.asarray(zone_b.buddyinfo, dtype=np.int64)
        state_b, _mt_b, hole_b, _ = zone_arrays(zone_b)
        model_b = _buddyinfo(state_b)
        same_layout = (
            zone_b.base_pfn == zone_a.base_pfn
            and state_b.shape == sim.before.shape
            and bool((hole_b == hole).all())
        )
        if same_layout:
            kinds_b = _kinds(state_b, hole)
            kind_a, kind_b = page_kind(sim.before), page_kind(state_b)
            ur_b = np.isin(kind_b, [UNMOVABLE, RECLAIMABLE]) & ~hole
            allocated = int((ur_b & ~ur).sum())
            freed = int((ur & ~ur_b).sum())
            relabelled = int((ur & ur_b & (kind_a != kind_b)).sum())
    return ZoneComparison(
        label=zone_label(zone_a),
        node=int(zone_a.node),
        name=str(zone_a.name),
        nr_pages=int(sim.before.shape[0]),
        hole_pages=int(hole.sum()),
        hole_pageblocks=int(hole.reshape(-1, 512).any(axis=1).sum()),
        proc_a=np.asarray(zone_a.buddyinfo, dtype=np.int64),
        model_a=_buddyinfo(sim.before),
        proc_b=proc_b,
        model_b=model_b,
        sim=_buddyinfo(sim.after),
        kinds_a=_kinds(sim.before, hole),
        kinds_b=kinds_b,
        kinds_sim=_kinds(sim.after, hole),
        same_layout=same_layout,
        kernel_allocated=allocated,
        kernel_freed=freed,
        kernel_relabelled=relabelled,
        pcp_a=pcp_a,
        pcp_b=pcp_b,
        counters=dict(sim.counters),
        free_by_type_model=_free_by_type(sim),
        free_by_type_real=free_by_type_real,
    )


def _free_by_type(sim: SimulatedZone) -> dict[str, int]:
    """Free pages per pageblock migratetype of a zone before compaction (inferred types)."""
    per_type = buddy.pagetypeinfo(sim.before[None], sim.pageblock_migratetype[None])[0]
    pages = (per_type << np.arange(per_type.shape[1])).sum(axis=1)
    return {name: int(pages[i]) for i, name in enumerate(MIGRATETYPE_NAMES)}


def _real_free_by_type(snapshot: Snapshot) -> dict[str, dict[str, int]]:
    """Free pages per migratetype list from the raw /proc/pagetypeinfo of a snapshot."""
    text = snapshot.raw.get("pagetypeinfo")
    if not text:
        return {}
    try:
        info = procfs.parse_pagetypeinfo(text)
    except SnapshotError:
        return {}
    orders = np.arange(NR_PAGE_ORDERS)
    return {
        f"{node}:{zone}": {
            t: int((np.asarray(c)[:NR_PAGE_ORDERS] << orders).sum()) for t, c in types.items()
        }
        for (node, zone), types in info.free.items()
    }


def _delta(after: Mapping[str, int], before: Mapping[str, int], names: Sequence[str]) -> dict:
    return {name: int(after.get(name, 0)) - int(before.get(name, 0)) for name in names}


def compare(
    snapshot_a: Snapshot,
    snapshot_b: Snapshot,
    sims: Mapping[str, SimulatedZone],
    *,
    vmstat: Sequence[Mapping[str, int]],
    compact_seconds: float,
    profile: KernelProfile,
    profile_note: str,
    pcp_a: Mapping[str, int] | None = None,
    pcp_b: Mapping[str, int] | None = None,
    own_growth_pages: int | None = None,
) -> ValidationReport:
    """The report for snapshots A and B, the simulation of A, and four vmstat readings.

    ``vmstat`` = (before A, just before the write, just after it, after B): the
    comparison uses the deltas across the write; the others show compaction activity
    while the snapshots were read, which the comparison cannot separate.
    """
    v0, v1, v2, v3 = vmstat
    zones_b = {zone_label(z): z for z in snapshot_b.zones}
    pcp_a, pcp_b = pcp_a or {}, pcp_b or {}
    real_by_type = _real_free_by_type(snapshot_a)
    zones = tuple(
        compare_zone(
            zone,
            zones_b.get(zone_label(zone)),
            sims[zone_label(zone)],
            pcp_a.get(zone_label(zone)),
            pcp_b.get(zone_label(zone)),
            real_by_type.get(zone_label(zone)),
        )
        for zone in snapshot_a.zones
    )
    before, after = _delta(v1, v0, ACTIVITY_COUNTERS), _delta(v3, v2, ACTIVITY_COUNTERS)
    outside = {name: before[name] + after[name] for name in ACTIVITY_COUNTERS}
    both = [n for n in snapshot_a.notes if n in snapshot_b.notes]
    notes = tuple(
        both
        + [f"A: {n}" for n in snapshot_a.notes if n not in both]
        + [f"B: {n}" for n in snapshot_b.notes if n not in both]
    )
    return ValidationReport(
        hostname=snapshot_a.hostname,
        kernel_release=snapshot_a.kernel_release,
        profile=profile,
        profile_note=profile_note,
        compact_seconds=compact_seconds,
        real_delta=_delta(v2, v1, COUNTERS),
        outside_delta=outside,
        zones=zones,
        snapshot_notes=notes,
        own_growth_pages=own_growth_pages,
    )


def run_validation(
    proc_root: Path = Path("/proc"),
    *,
    require_root: bool = True,
    say: Callable[[str], None] = print,
) -> ValidationReport:
    """Snapshot, compact for real, snapshot, simulate, compare (module docstring)."""
    check_preconditions(proc_root, require_root=require_root)
    say("# reading /proc/vmstat and taking snapshot A")
    t0 = time.perf_counter()
    v0 = read_vmstat(proc_root)
    snapshot_a = take_snapshot(proc_root, allow_synthesis=False)
    pcp_a = read_pcp_counts(proc_root)
    say(f"# snapshot A taken in {time.perf_counter() - t0:.1f} s (source {snapshot_a.source})")
    rss_a = resident_pages()
    v1 = read_vmstat(proc_root)
    say(f"# writing 1 to {proc_root}/{COMPACT_MEMORY} (the kernel compacts every zone now)")
    seconds = trigger_compaction(proc_root)
    v2 = read_vmstat(proc_root)
    say(f"# the kernel's compaction took {seconds:.2f} s; taking snapshot B")
    snapshot_b = take_snapshot(proc_root, allow_synthesis=False)
    pcp_b = read_pcp_counts(proc_root)
    v3 = read_vmstat(proc_root)
    rss_b = resident_pages()
    profile, note = profile_for_release(snapshot_a.kernel_release)
    say(f"# simulating compact_node on snapshot A ({note.partition(': ')[2]})")
    sims = simulate(snapshot_a, profile)
    return compare(
        snapshot_a,
        snapshot_b,
        sims,
        vmstat=(v0, v1, v2, v3),
        compact_seconds=seconds,
        profile=profile,
        profile_note=note,
        pcp_a=pcp_a,
        pcp_b=pcp_b,
        own_growth_pages=None if rss_a is None or rss_b is None else rss_b - rss_a,
    )


# --------------------------------------------------------------------------------------
# Formatting


def _rel(sim: int, real: int) -> str:
    if real == 0:
        return "-" if sim == 0 else "n/a"
    return f"{100.0 * (sim - real) / real:+.1f}%"


def _line(counts: np.ndarray, zone: ZoneComparison) -> str:
    return buddy.format_buddyinfo(counts, zone.node, zone.name).rstrip("\n")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def format_limits(report: ValidationReport) -> list[str]:
    """What limits the comparison, per zone: printed before the comparison itself."""
    out = ["# What else changed between snapshots A and B, and what the model cannot see"]
    out.append(f"#   {report.profile_note}.")
    out.append(
        "#   (c) Migration for other reasons (reclaim, NUMA balancing, demotion, CMA, "
        "hotplug) between A and B cannot be told apart from compaction's: pgmigrate_* count "
        "them all, and pages moved for other reasons are in B."
    )
    out.append(
        "#   Pins (GUP/RDMA) are invisible in /proc: A has none, so the simulation migrates "
        "pages the kernel may have had to skip (its failures are in pgmigrate_fail)."
    )
    if report.own_growth_pages is not None:
        out.append(
            f"#   This program's own resident memory changed by {report.own_growth_pages:+,} "
            "pages between A and B (reading snapshot B): part of the changes below."
        )
    for z in report.zones:
        fa, fb = z.free_pages(z.proc_a), z.free_pages(z.proc_b)
        out.append(f"#   zone {z.label}:")
        line = (
            f"#     (a) free pages (/proc/buddyinfo) A {fa:,} -> B {fb:,}: {fb - fa:+,} pages "
            "allocated or freed by others (compaction itself conserves free pages)"
        )
        if z.pcp_a is not None and z.pcp_b is not None:
            ga, gb = fa + z.pcp_a, fb + z.pcp_b
            line += f"; with the per-cpu lists A {ga:,} -> B {gb:,} ({gb - ga:+,})"
        out.append(line)
        if z.same_layout:
            out.append(
                f"#     (b) PFNs whose class among unmovable/reclaimable changed A -> B: "
                f"{z.kernel_allocated + z.kernel_freed + z.kernel_relabelled:,} "
                f"({z.kernel_allocated:,} became kernel pages, {z.kernel_freed:,} stopped "
                f"being kernel pages, {z.kernel_relabelled:,} unmovable <-> reclaimable, as "
                "slab pages follow their pageblock's inferred type); compaction never touches "
                "these"
            )
        else:
            out.append(
                "#     (b) the zone's PFN range or holes changed between A and B (memory "
                "hotplug, deferred memmap init?): no per-PFN comparison"
            )
        if z.hole_pages:
            out.append(
                f"#     (d) {z.hole_pages:,} hole PFNs in "
                f"{_plural(z.hole_pageblocks, 'pageblock')}: "
                "the model stores them as unmovable pages and its migrate scanner walks those "
                f"it reaches (up to {z.holes_scanned_bound:,} of this zone's simulated "
                "compact_migrate_scanned); the kernel's scanners skip them"
            )
        else:
            out.append("#     (d) no holes in the zone's span")
        pcp = (
            f"{z.pcp_a:,} at A, {z.pcp_b:,} at B"
            if z.pcp_a is not None and z.pcp_b is not None
            else "count unknown"
        )
        out.append(
            f"#     (e) per-cpu (pcp) free pages are invisible ({pcp}): kpageflags shows them "
            "as allocated (the model holds them as unmovable), buddyinfo leaves them out, and "
            "pages freed by the real compaction wait there before reaching the buddy lists"
        )
        da, db = z.free_pages(z.model_a) - fa, z.free_pages(z.model_b) - fb
        out.append(
            f"#     classification: free pages from kpageflags minus /proc/buddyinfo: A {da:+,}, "
            f"B {db:+,} (the two are read at slightly different moments)"
        )
    outside = {k: v for k, v in report.outside_delta.items() if v}
    if outside:
        out.append(
            "#   compaction counters moved while the snapshots were read (other compaction, "
            "e.g. kcompactd or direct): " + ", ".join(f"{k} {v:+,}" for k, v in outside.items())
        )
    else:
        out.append("#   no compaction counter moved while the snapshots were read")
    if report.real_delta.get("compact_stall", 0):
        out.append(
            "#   compact_stall moved across the write: direct compaction ran at the same time"
        )
    for note in report.snapshot_notes:
        out.append(f"#   snapshot note: {note}")
    return out


def format_zone(z: ZoneComparison) -> list[str]:
    """Buddyinfo lines and the per-order table of one zone."""
    out = [
        f"# zone {z.label} ({z.nr_pages:,} pages): /proc/buddyinfo",
        f"{_line(z.proc_a, z)}   # real, before (A)",
        f"{_line(z.proc_b, z)}   # real, after (B)",
        f"{_line(z.sim, z)}   # simulated, after (from A's page states)",
        f"# zone {z.label}: free blocks per order",
        f"{'order':>5} {'real A':>9} {'model A':>9} {'real B':>9} {'sim B':>9} "
        f"{'sim-real':>9} {'rel':>8}",
    ]
    for o in range(NR_PAGE_ORDERS):
        real, sim = int(z.proc_b[o]), int(z.sim[o])
        out.append(
            f"{o:>5} {int(z.proc_a[o]):>9,} {int(z.model_a[o]):>9,} {real:>9,} {sim:>9,} "
            f"{sim - real:>+9,} {_rel(sim, real):>8}"
        )
    fa, fm, fb, fs = (z.free_pages(c) for c in (z.proc_a, z.model_a, z.proc_b, z.sim))
    out.append(f"{'pages':>5} {fa:>9,} {fm:>9,} {fb:>9,} {fs:>9,} {fs - fb:>+9,} {_rel(fs, fb):>8}")
    out.append(
        f"# zone {z.label}: conservation "
        + ("holds" if z.conservation_ok else "FAILS")
        + f": simulated free pages {fs:,} = model A {fm:,}; unmovable+reclaimable pages "
        f"{int(z.kinds_a[[UNMOVABLE, RECLAIMABLE]].sum()):,} before and "
        f"{int(z.kinds_sim[[UNMOVABLE, RECLAIMABLE]].sum()):,} after; movable "
        f"{int(z.kinds_a[MOVABLE]):,}, pinned {int(z.kinds_a[PINNED]):,}"
    )
    if z.free_by_type_real is not None:
        # Per-pageblock types are not in /proc: the model's are inferred. Only free pages
        # in MOVABLE pageblocks are migration targets, so this is where inference errors show.
        pairs = [
            f"{t} {z.free_by_type_real.get(t, 0):,} vs {z.free_by_type_model.get(t, 0):,}"
            for t in ("Unmovable", "Movable", "Reclaimable")
        ]
        out.append(
            f"# zone {z.label}: free pages per migratetype at A, /proc/pagetypeinfo vs the "
            "model's inferred pageblock types (targets come only from Movable): " + "; ".join(pairs)
        )
    return out


def format_counters(report: ValidationReport) -> list[str]:
    """The /proc/vmstat deltas across the write against the simulated sums over zones."""
    sim = report.simulated
    width = max(len(n) for n in COUNTERS)
    out = [
        f"# /proc/vmstat deltas across the write vs simulated (sum over {len(report.zones)} zones)",
        f"{'counter':<{width}} {'real':>12} {'simulated':>12} {'sim-real':>12} {'rel':>8}",
    ]
    for name in COUNTERS:
        real, s = int(report.real_delta.get(name, 0)), int(sim[name])
        out.append(f"{name:<{width}} {real:>12,} {s:>12,} {s - real:>+12,} {_rel(s, real):>8}")
    holes = sum(z.holes_scanned_bound for z in report.zones)
    if holes:
        out.append(
            f"# simulated compact_migrate_scanned includes up to {holes:,} hole PFNs (d), which "
            "the kernel skips; real counters include every compaction and migration in the "
            "window (c)"
        )
    return out


def format_report(report: ValidationReport) -> list[str]:
    """The whole report: limits first, then each zone, then the counters."""
    out = [
        f"# {report.hostname}, Linux {report.kernel_release}; the kernel's compaction took "
        f"{report.compact_seconds:.2f} s",
        *format_limits(report),
    ]
    for z in report.zones:
        out += format_zone(z)
    out += format_counters(report)
    out.append(
        "# conservation checks: "
        + ("hold in every zone" if report.conservation_ok else "FAIL (a simulator bug)")
    )
    return out
