"""Run one cell: build the zones, compact them, measure before and after.

``run_compact_node`` is the ``compact_node`` workload: every replicate zone is built by
the fragmenter and then compacted as a whole (``echo 1 > /proc/sys/vm/compact_memory``,
order -1). ``run_snapshot`` is the ``snapshot`` workload: the replicates are copies of a
zone read from a real machine (one batch per zone, as zones differ in size), with pins
injected. Both return NumPy arrays only (:class:`sweep.results.CompactNodeResult`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kernels import buddy, compaction, fragment, metrics
from kernels.backend import to_numpy
from kernels.zone import (
    FREE,
    MOVABLE,
    PAGE_KIND_NAMES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    ZoneState,
    page_kind,
)
from sweep.config import SweepConfig
from sweep.expand import (
    SnapshotZoneParams,
    compact_node_batch_params,
    snapshot_params,
    snapshot_zone_state,
)
from sweep.results import CompactNodeResult

log = logging.getLogger(__name__)


class InvariantError(RuntimeError):
    """A conservation check failed after compaction: a simulator bug, not bad input."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Zone metrics at one moment, as NumPy arrays with the zone axis first."""

    buddyinfo: np.ndarray  # (Z, 11) int64
    pagetypeinfo: np.ndarray  # (Z, 6, 11) int64
    nr_free_pages: np.ndarray  # (Z,) int64
    unusable_index: np.ndarray  # (Z, 11) int64 thousandths
    fragmentation_index: np.ndarray  # (Z, 11) int64 thousandths
    page_counts: np.ndarray  # (Z, 5) int64; PAGE_KIND_NAMES


def take_snapshot(state: ZoneState) -> Snapshot:
    """Measure ``state`` the way /proc/buddyinfo, pagetypeinfo and debugfs extfrag do."""
    counts = buddy.buddyinfo(state.page_state)
    kinds = page_kind(state.page_state)
    xp_counts = [(kinds == k).sum(axis=1) for k in range(len(PAGE_KIND_NAMES))]
    return Snapshot(
        buddyinfo=to_numpy(counts).astype(np.int64),
        pagetypeinfo=to_numpy(
            buddy.pagetypeinfo(state.page_state, state.pageblock_migratetype)
        ).astype(np.int64),
        nr_free_pages=to_numpy(buddy.nr_free_pages(state.page_state)).astype(np.int64),
        unusable_index=to_numpy(metrics.unusable_free_index(counts)).astype(np.int64),
        fragmentation_index=to_numpy(metrics.fragmentation_index(counts)).astype(np.int64),
        page_counts=np.stack([to_numpy(c) for c in xp_counts], axis=1).astype(np.int64),
    )


def check_invariants(before: Snapshot, after: Snapshot, nr_pages: int) -> None:
    """Raise :class:`InvariantError` unless every zone conserved its pages.

    Per zone and snapshot: the page kinds sum to ``nr_pages``; free pages equal the
    pages in buddy free blocks (sum of nr_free[o] << o) and nr_free_pages. Across
    compaction: unmovable and reclaimable pages are untouched and free + movable +
    pinned pages are conserved (migration turns a movable page into a free one and a
    free one into a movable one).
    """
    orders = np.arange(before.buddyinfo.shape[-1])
    problems: list[str] = []

    def bad(mask: np.ndarray, what: str) -> None:
        zones = np.flatnonzero(mask)
        if zones.size:
            problems.append(
                f"{what} (replicates {zones[:8].tolist()}{'...' if zones.size > 8 else ''})"
            )

    for label, snap in (("initial", before), ("final", after)):
        bad(
            snap.page_counts.sum(axis=1) != nr_pages,
            f"{label}: page kinds do not sum to {nr_pages}",
        )
        buddy_pages = (snap.buddyinfo << orders).sum(axis=1)
        bad(
            snap.page_counts[:, FREE] != buddy_pages,
            f"{label}: free pages != sum(buddyinfo << order)",
        )
        bad(snap.nr_free_pages != buddy_pages, f"{label}: nr_free_pages != sum(buddyinfo << order)")
    for kind in (UNMOVABLE, RECLAIMABLE):
        bad(
            before.page_counts[:, kind] != after.page_counts[:, kind],
            f"{PAGE_KIND_NAMES[kind]} pages changed during compaction",
        )
    mobile = [FREE, MOVABLE, PINNED]
    bad(
        before.page_counts[:, mobile].sum(axis=1) != after.page_counts[:, mobile].sum(axis=1),
        "free + movable + pinned pages not conserved by compaction",
    )
    if problems:
        raise InvariantError("invariant violated: " + "; ".join(problems))


def _stack(initial: np.ndarray, final: np.ndarray) -> np.ndarray:
    return np.stack([initial, final], axis=1)


def run_compact_node(cfg: SweepConfig, xp: Any) -> CompactNodeResult:
    """Build ``cfg.replicates`` zones, compact each whole zone, return the measurements."""
    return run_compact_node_batch([cfg], xp)[0]


def run_compact_node_batch(cfgs: Sequence[SweepConfig], xp: Any) -> list[CompactNodeResult]:
    """Run several ``compact_node`` cells with one fragmenter and one compact_node call.

    The cells must share :func:`sweep.expand.batch_key`; their zones are joined along
    the zone axis (cell order, ``replicates`` zones each) and the results are split back:
    one :class:`CompactNodeResult` per cell, equal to what :func:`run_compact_node` gives
    for that cell alone. Invariants are checked for the cells that ask for it.
    """
    cfgs = list(cfgs)
    params = compact_node_batch_params(cfgs, xp)
    cfg = cfgs[0]
    nr_zones, nr_pages = params.nr_zones, cfg.zone.nr_pages
    timings: dict[str, float] = {}

    log.info(
        "initialising %d zone%s of %s pages (%s, layout %s) on %s%s",
        nr_zones,
        "" if nr_zones == 1 else "s",
        f"{nr_pages:,}",
        cfg.zone.name,
        cfg.workload.layout,
        xp.__name__,
        f" for {len(cfgs)} cells" if len(cfgs) > 1 else "",
    )
    t0 = time.perf_counter()
    state = fragment.make_zone_state(
        xp, params.fragment, params.min_free_kbytes, params.watermark_scale_factor
    )
    before = take_snapshot(state)  # its host copies also wait for the device
    timings["init"] = time.perf_counter() - t0
    log.info("initialised and measured in %.2f s", timings["init"])

    sizes = [c.replicates for c in cfgs]
    check = np.repeat([c.check_invariants for c in cfgs], sizes)
    policies = sorted({str(c.policy.skip_pinned) for c in cfgs})
    result = _compact_and_measure(
        state, params.compact, before, timings, check, cfg.kernel.name, "/".join(policies)
    )
    return split_result(result, sizes)


def split_result(result: CompactNodeResult, sizes: Sequence[int]) -> list[CompactNodeResult]:
    """Cut a batch result along the zone axis into consecutive parts of ``sizes`` zones."""
    if sum(sizes) != result.nr_zones:
        raise ValueError(f"sizes {list(sizes)} do not add up to {result.nr_zones} zones")
    if len(sizes) == 1:
        return [result]
    bounds = np.cumsum([0, *sizes])
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        parts.append(
            CompactNodeResult(
                counters={k: v[lo:hi].copy() for k, v in result.counters.items()},
                compaction_cost=result.compaction_cost[lo:hi].copy(),
                buddyinfo=result.buddyinfo[lo:hi].copy(),
                pagetypeinfo=result.pagetypeinfo[lo:hi].copy(),
                nr_free_pages=result.nr_free_pages[lo:hi].copy(),
                unusable_index=result.unusable_index[lo:hi].copy(),
                fragmentation_index=result.fragmentation_index[lo:hi].copy(),
                page_counts=result.page_counts[lo:hi].copy(),
                timings=dict(result.timings),
            )
        )
    return parts


def compact_and_measure(
    cfg: SweepConfig,
    state: ZoneState,
    compact_params: compaction.CompactParams,
    before: Snapshot,
    timings: dict[str, float],
) -> CompactNodeResult:
    """Compact every zone of ``state`` as a whole, measure, check the invariants."""
    check = np.full(state.nr_zones, cfg.check_invariants, dtype=bool)
    return _compact_and_measure(
        state, compact_params, before, timings, check, cfg.kernel.name, str(cfg.policy.skip_pinned)
    )


def _compact_and_measure(
    state: ZoneState,
    compact_params: compaction.CompactParams,
    before: Snapshot,
    timings: dict[str, float],
    check: np.ndarray,
    kernel_name: str,
    skip_pinned: str,
) -> CompactNodeResult:
    """:func:`compact_and_measure` with the invariants checked in the zones ``check`` marks."""
    nr_zones, nr_pages = state.nr_zones, state.nr_pages
    log.info(
        "compacting %d zone%s (kernel %s, skip_pinned=%s)",
        nr_zones,
        "" if nr_zones == 1 else "s",
        kernel_name,
        skip_pinned,
    )
    t0 = time.perf_counter()
    state, counters = compaction.compact_node(state, compact_params)
    counter_arrays = {
        f.name: to_numpy(getattr(counters, f.name)).astype(np.int64)
        for f in dataclasses.fields(counters)
    }
    cost = to_numpy(compaction.compaction_cost(counters)).astype(np.float64)
    timings["compact"] = time.perf_counter() - t0
    log.info(
        "compacted in %.2f s (%s pages/s)",
        timings["compact"],
        f"{nr_zones * nr_pages / max(timings['compact'], 1e-9):,.0f}",
    )

    t0 = time.perf_counter()
    after = take_snapshot(state)
    if check.any():
        check_invariants(_zones(before, check), _zones(after, check), nr_pages)
    timings["measure"] = time.perf_counter() - t0
    log.info(
        "measured in %.2f s%s",
        timings["measure"],
        "; invariants hold in every zone" if check.any() else "",
    )

    return CompactNodeResult(
        counters=counter_arrays,
        compaction_cost=cost,
        buddyinfo=_stack(before.buddyinfo, after.buddyinfo),
        pagetypeinfo=_stack(before.pagetypeinfo, after.pagetypeinfo),
        nr_free_pages=_stack(before.nr_free_pages, after.nr_free_pages),
        unusable_index=_stack(before.unusable_index, after.unusable_index),
        fragmentation_index=_stack(before.fragmentation_index, after.fragmentation_index),
        page_counts=_stack(before.page_counts, after.page_counts),
        timings=timings,
    )


def _zones(snap: Snapshot, mask: np.ndarray) -> Snapshot:
    """The zones of ``snap`` selected by ``mask``."""
    return Snapshot(**{f.name: getattr(snap, f.name)[mask] for f in dataclasses.fields(snap)})


@dataclasses.dataclass(frozen=True)
class SnapshotZoneResult:
    """The result of one snapshot zone: its params and its replicates' measurements."""

    params: SnapshotZoneParams
    result: CompactNodeResult

    @property
    def label(self) -> str:
        return self.params.label


def run_snapshot(cfg: SweepConfig, xp: Any) -> tuple[Any, list[SnapshotZoneResult]]:
    """Compact each chosen zone of the snapshot, ``cfg.replicates`` copies at a time.

    Returns the snapshot and one :class:`SnapshotZoneResult` per zone, in snapshot order.
    """
    snapshot, zone_params = snapshot_params(cfg, xp)
    log.info(
        "snapshot %s: %s, Linux %s, taken %s (source %s); %d zone%s chosen (%s)",
        cfg.workload.path,
        snapshot.hostname,
        snapshot.kernel_release,
        snapshot.created,
        snapshot.source,
        len(zone_params),
        "" if len(zone_params) == 1 else "s",
        ", ".join(p.label for p in zone_params),
    )
    if cfg.workload.pinned_fraction == 0:
        log.info(
            "workload.pinned_fraction=0: no pins are injected, so all %d replicates of a "
            "zone are identical (replicates differ only in their injected pins)",
            cfg.replicates,
        )
    results = []
    for params in zone_params:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        state = snapshot_zone_state(xp, params)
        before = take_snapshot(state)
        timings["init"] = time.perf_counter() - t0
        log.info(
            "zone %s: %d cop%s of %s pages on %s, pinned_fraction=%g (%s pages pinned in "
            "replicate 0), initialised and measured in %.2f s",
            params.label,
            params.nr_zones,
            "y" if params.nr_zones == 1 else "ies",
            f"{state.nr_pages:,}",
            xp.__name__,
            params.pinned_fraction,
            f"{int(before.page_counts[0, PINNED]):,}",
            timings["init"],
        )
        result = compact_and_measure(cfg, state, params.compact, before, timings)
        results.append(SnapshotZoneResult(params=params, result=result))
    return snapshot, results
