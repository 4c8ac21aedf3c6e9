"""The time-stepped workloads: holepunch, stress_highalloc and pinned (docs/tick-model.md).

A cell's config becomes a :class:`kernels.program.Program` (its phases, shared by every
zone of a batch), per-zone :class:`kernels.program.TickZones` arrays and an initial page
array; :func:`run_scenario_batch` runs a batch of cells with one
:func:`kernels.tick.run_program` call and splits the result per cell;
:func:`build_scenario_dataset` labels one cell's arrays as an xarray Dataset.

Each workload mirrors one seed experiment (``docs/seeds.md`` has the numbers):

* ``holepunch`` (seed 000, patches 2-4): a file fills the zone, every other page is
  punched, then one GFP_NOWAIT attempt per tick; successes are kept.
* ``stress_highalloc`` (kernel-model.md 10): a build-like load warms an empty zone up,
  then pass 1 and pass 2 under load and pass 3 at rest (load killed, caches dropped,
  ``min_free_kbytes = 1024``), each ``percent`` % of memory in order-``k`` attempts.
* ``pinned`` (seed 003): ~94 % of the zone pinned, THP faults with direct compaction.
* ``regions`` (seed 002): a build-like load in cycles on an empty zone; memory regions
  kept entirely free over time with plain or region-sorted free lists and evacuation.
* ``bulk_alloc`` (seed 004): stress_highalloc's build load on a zone with a CMA area at
  its top, then ``trials`` contiguous allocations of ``count`` order-k pieces by one
  method (cma_alloc of one range, of order-k pieces, of order-10 chunks, or
  alloc_pages_bulk; docs/tick-model.md 7), spaced by ``trial_every`` load ticks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from kernels import metrics
from kernels.backend import to_numpy
from kernels.fragment import FragmentParams, fragment, fragment_counts
from kernels.program import (
    CONTIG_NAMES,
    COUNTER_INDEX,
    COUNTERS,
    FREE,
    GFP_NAMES,
    ISOFREE,
    KCOMPACTD_NAMES,
    KCOMPACTD_PROACTIVE_SCORE,
    KCOMPACTD_REACTIVE,
    KIND_NAMES,
    MT_CMA,
    TRIAL_FIELDS,
    Phase,
    Program,
    TickResult,
    TickZones,
)
from kernels.rng import zone_seed
from kernels.zone import NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, MigrateType
from sweep.config import (
    ATTEMPT_MIGRATETYPES,
    COMPILED_TICK_BACKENDS,
    PROFILES,
    BulkAllocConfig,
    ConfigError,
    HolepunchConfig,
    PinnedConfig,
    RegionsConfig,
    ScenarioConfig,
    StressHighallocConfig,
    SweepConfig,
    region_blocks,
    scenario_order,
)
from sweep.expand import effective_min_free_kbytes
from sweep.results import COUNTER_ATTRS, VARIABLE_ATTRS, netcdf_attrs

SCENARIO_KINDS = KIND_NAMES[:ISOFREE]  # page kinds outside a compaction run

TICK_COUNTER_ATTRS: dict[str, dict[str, str]] = {
    "compact_stall": {
        "units": "1",
        "long_name": "direct compactions that ran (/proc/vmstat compact_stall)",
    },
    "compact_success": {
        "units": "1",
        "long_name": "direct compactions after which the allocation succeeded (compact_success)",
    },
    "compact_fail": {
        "units": "1",
        "long_name": "direct compactions after which the allocation failed (compact_fail)",
    },
    "compact_daemon_wake": {
        "units": "1",
        "long_name": "kcompactd wake-ups that did work (/proc/vmstat compact_daemon_wake)",
    },
    "compact_daemon_migrate_scanned": {
        "units": "pages",
        "long_name": "pages scanned by kcompactd's migrate scanner "
        "(/proc/vmstat compact_daemon_migrate_scanned)",
    },
    "compact_daemon_free_scanned": {
        "units": "pages",
        "long_name": "pages scanned by kcompactd's free scanner (compact_daemon_free_scanned)",
    },
    "alloc_attempts": {"units": "1", "long_name": "high-order allocation attempts"},
    "alloc_success": {"units": "1", "long_name": "high-order allocation attempts that succeeded"},
    "alloc_background": {"units": "pages", "long_name": "background order-0 allocations"},
    "alloc_background_fail": {
        "units": "pages",
        "long_name": "background order-0 allocations that failed even after direct reclaim",
    },
    "kswapd_wake": {"units": "1", "long_name": "kswapd wake-ups"},
    "pgsteal_kswapd": {
        "units": "pages",
        "long_name": "page cache reclaimed by kswapd (/proc/vmstat pgsteal_kswapd)",
    },
    "direct_reclaimed": {
        "units": "pages",
        "long_name": "page cache reclaimed by direct reclaim (pgsteal_direct)",
    },
    "region_evacuations": {
        "units": "1",
        "long_name": "memory-region evacuation work runs (seed 002 mem_power_ctrl worker)",
    },
}


@dataclasses.dataclass(frozen=True)
class ScenarioCell:
    """One cell's inputs: its program, per-zone arrays and initial zones (host arrays)."""

    program: Program
    zones: TickZones
    kind: np.ndarray  # (Z, N) uint8
    block_mt: np.ndarray  # (Z, B) int8


@dataclasses.dataclass(frozen=True)
class ScenarioResult:
    """One cell's results (NumPy, zone axis first); counters are per-phase deltas."""

    phases: tuple[str, ...]
    counters: np.ndarray  # (Z, P, C) int64, per phase
    buddyinfo: np.ndarray  # (Z, 2, 11) int64, initial and final
    page_counts: np.ndarray  # (Z, 2, 7) int64, SCENARIO_KINDS
    samples_buddyinfo: np.ndarray  # (Z, S, 11)
    samples_nr_free: np.ndarray  # (Z, S)
    sample_time_s: np.ndarray  # (S,)
    attempts: np.ndarray  # (Z, A) int8
    attempt_phase: np.ndarray  # (A,) int64 phase index of each attempt
    scalars: Mapping[str, np.ndarray]
    # (Z, S) memory regions with every page free at each sample (seed 002)
    samples_free_regions: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.int64)
    )
    nr_regions: int = 0  # memory regions of the zone (the last one may be partial)
    trials: np.ndarray | None = None  # (Z, T, len(TRIAL_FIELDS)) int64, bulk_alloc only
    trial_time_s: np.ndarray | None = None  # (T,) simulated time of each trial

    @property
    def nr_zones(self) -> int:
        return int(self.counters.shape[0])


def is_scenario(cfg: SweepConfig) -> bool:
    return isinstance(cfg.workload, ScenarioConfig)


def kcompactd_mode(cfg: SweepConfig) -> int:
    """``policy.kcompactd`` as a KCOMPACTD_* code; ``auto`` follows the kernel profile."""
    mode = cfg.policy.kcompactd
    if mode == "auto":
        return KCOMPACTD_REACTIVE if cfg.kernel.profile == "v4_12" else KCOMPACTD_PROACTIVE_SCORE
    return KCOMPACTD_NAMES.index(mode)


def attempt_interval_ms(order: int, mb_per_sec: int) -> int:
    """stress-highalloc's MS_DELAY = (PAGESIZE << order) / (MB_PER_SEC*1048576/1000), >= 1."""
    return max(1, (4096 << order) // (mb_per_sec * 1048576 // 1000))


def attempt_migratetype(wl: ScenarioConfig) -> int:
    """``workload.attempt_mt`` as a migratetype; ``auto`` is gfp_migratetype() of the GFP
    class (KM 2.8): GFP_NOWAIT carries no __GFP_MOVABLE, so its requests are UNMOVABLE;
    GFP_HIGHUSER_MOVABLE and GFP_TRANSHUGE are MOVABLE."""
    if wl.attempt_mt == "auto":
        return int(MigrateType.UNMOVABLE if wl.gfp == "nowait" else MigrateType.MOVABLE)
    return ATTEMPT_MIGRATETYPES.index(wl.attempt_mt)


def build_program(cfg: SweepConfig) -> Program:
    """The phases of ``cfg``'s workload (identical for every replicate of the cell)."""
    wl = cfg.workload
    assert isinstance(wl, ScenarioConfig)
    order = scenario_order(cfg)
    gfp = GFP_NAMES.index(wl.gfp)
    mt = attempt_migratetype(wl)
    common = dict(sample_every=wl.sample_every, kswapd_rounds=wl.kswapd_rounds)
    common["watermark_scale_factor"] = cfg.zone.watermark_scale_factor
    attempt = dict(attempt_every=1, attempt_gfp=gfp, attempt_mt=mt)
    if isinstance(wl, HolepunchConfig | PinnedConfig):
        phase = Phase(name=wl.name, ticks=wl.attempts, keep=wl.keep, **attempt)
        return Program(phases=(phase,), tick_ms=wl.tick_ms, **common)
    if isinstance(wl, RegionsConfig):
        return _regions_program(wl, common)
    if isinstance(wl, BulkAllocConfig):
        return _bulk_alloc_program(cfg, wl, order, common)
    assert isinstance(wl, StressHighallocConfig)
    n = cfg.zone.nr_pages
    tick_ms = attempt_interval_ms(order, wl.mb_per_sec)
    count = max(1, (n >> order) * wl.percent // 100)  # HIGHALLOC_COUNT
    warmup, load = _load_phase(wl, n, tick_ms)
    phases = (
        warmup,
        Phase(
            name="pass1",
            ticks=count,
            keep=True,
            **load,
            **attempt,
        ),
        Phase(
            name="pass2",
            ticks=count,
            keep=True,
            **load,
            **attempt,
        ),
        Phase(
            name="pass3",
            ticks=count,
            keep=True,
            kill_anon=True,
            drop_caches=True,
            min_free_kbytes=wl.rested_min_free_kbytes,
            **attempt,
        ),
    )
    return Program(phases=phases, tick_ms=float(tick_ms), **common)


def _regions_program(wl: RegionsConfig, common: dict[str, Any]) -> Program:
    """Seed 002's load: ``cycles`` builds; each after the first starts as one ends."""
    allocs = round(wl.load_pages_per_s * wl.tick_ms / 1000)
    total = float(sum(wl.load_mix))
    mix = tuple(float(x) / total for x in wl.load_mix)
    phases = tuple(
        Phase(
            name=f"build{c + 1}",
            ticks=wl.cycle_ticks,
            allocs_per_tick=allocs,
            frees_per_tick=round(allocs / wl.load_occupancy),
            alloc_weights=mix,
            kill_anon=c > 0,  # the previous build's processes exit
            drop_caches=c > 0,  # and its page cache and slab are dropped
        )
        for c in range(wl.cycles)
    )
    return Program(phases=phases, tick_ms=wl.tick_ms, **common)


def region_keys(cfg: SweepConfig) -> dict[str, Any]:
    """The TickZones region fields of a cell (seed 002); the plain buddy by default."""
    wl = cfg.workload
    keys: dict[str, Any] = {
        "sorted_freelists": cfg.policy.sorted_freelists,
        "region_evacuation": cfg.policy.region_evacuation,
        "region_worker_delayed": cfg.policy.region_worker_delayed,
    }
    if isinstance(wl, RegionsConfig):
        keys["region_blocks"] = region_blocks(wl)
    return keys


def uses_regions(cfg: SweepConfig) -> bool:
    """Whether a cell reports memory regions: workload=regions or a region policy."""
    pol = cfg.policy
    return isinstance(cfg.workload, RegionsConfig) or pol.sorted_freelists or pol.region_evacuation


def _load_phase(
    wl: StressHighallocConfig | BulkAllocConfig, n: int, tick_ms: float
) -> tuple[Phase, dict[str, Any]]:
    """stress_highalloc's build load: its warm-up phase (from an empty zone) and the
    keywords of a phase under load at ``tick_ms`` per tick."""
    allocs = round(wl.load_pages_per_s * tick_ms / 1000)
    warm_allocs = math.ceil(wl.warmup_turnover * n / wl.warmup_ticks)
    total = float(sum(wl.load_mix))  # validated to sum to 1 within 1e-6; make it exact
    mix = tuple(float(x) / total for x in wl.load_mix)
    warmup = Phase(
        name="warmup",
        ticks=wl.warmup_ticks,
        allocs_per_tick=warm_allocs,
        frees_per_tick=round(warm_allocs / wl.load_occupancy),
        alloc_weights=mix,
    )
    load = dict(
        allocs_per_tick=allocs,
        frees_per_tick=round(allocs / wl.load_occupancy),
        alloc_weights=mix,
    )
    return warmup, load


def _bulk_alloc_program(
    cfg: SweepConfig, wl: BulkAllocConfig, order: int, common: dict[str, Any]
) -> Program:
    """Seed 004: the build load warms the zone up, then ``trials`` trials, one every
    ``trial_every`` load ticks (tick-model.md 7.4); no high-order attempts."""
    warmup, load = _load_phase(wl, cfg.zone.nr_pages, wl.tick_ms)
    trials = Phase(
        name="trials",
        ticks=wl.trials * wl.trial_every,
        contig_every=wl.trial_every,
        contig_count=wl.count,
        contig_order=order,
        **load,
    )
    return Program(phases=(warmup, trials), tick_ms=wl.tick_ms, **common)


def initial_zones(cfg: SweepConfig, xp: Any, seeds: np.ndarray) -> tuple[Any, Any]:
    """Initial ``(kind (Z, N) uint8, block_mt (Z, B) int8)`` of the cell's zones."""
    from kernels.tick import initial_kinds

    wl = cfg.workload
    n = cfg.zone.nr_pages
    z = seeds.shape[0]
    if isinstance(wl, StressHighallocConfig | RegionsConfig | BulkAllocConfig):
        # A freshly booted zone: everything free, every pageblock MOVABLE; bulk_alloc: the
        # top cma_mb MiB are MIGRATE_CMA pageblocks (tick-model.md 7.1).
        kind = xp.zeros((z, n), dtype=xp.uint8)
        block_mt = xp.full((z, n // PAGEBLOCK_NR_PAGES), int(MigrateType.MOVABLE), dtype=xp.int8)
        if isinstance(wl, BulkAllocConfig):
            block_mt[:, n // PAGEBLOCK_NR_PAGES - wl.cma_mb * 256 // PAGEBLOCK_NR_PAGES :] = MT_CMA
        return kind, block_mt
    page_state, block_mt = fragment(xp, _fragment_params(cfg, seeds))
    return initial_kinds(page_state, xp.asarray(seeds), wl.file_fraction), block_mt


def _fragment_params(cfg: SweepConfig, seeds: np.ndarray) -> FragmentParams:
    wl = cfg.workload
    return FragmentParams.create(
        layout="holepunch" if isinstance(wl, HolepunchConfig) else "random_mix",
        nr_pages=cfg.zone.nr_pages,
        seed=seeds,
        free_fraction=wl.free_fraction,
        unmovable_fraction=wl.unmovable_fraction,
        reclaimable_fraction=wl.reclaimable_fraction,
        pinned_fraction=getattr(wl, "pinned_fraction", 0.0),
        pollution=getattr(wl, "pollution", 0.0),
    )


def check_scenario_feasible(cfg: SweepConfig) -> None:
    """Raise :class:`ConfigError` if the initial zones cannot be laid out (host counts only)."""
    try:  # the program and per-zone arrays the run will build (cheap: no page arrays)
        program = build_program(cfg)
        seeds = zone_seed(cfg.seed, np.arange(cfg.replicates, dtype=np.uint64))
        zones = TickZones.create(
            cfg.replicates,
            seed=seeds,
            attempt_order=scenario_order(cfg),
            kcompactd=kcompactd_mode(cfg),
            proactiveness=cfg.policy.proactiveness,
            min_free_kbytes=effective_min_free_kbytes(cfg),
            **region_keys(cfg),
            **_contig_fields(cfg),
        )
        zones.validate()
    except ValueError as exc:
        raise ConfigError("workload", f": {exc}") from exc
    if cfg.backend in COMPILED_TICK_BACKENDS:
        _check_compiled_supports(cfg, zones, program)
    if isinstance(cfg.workload, StressHighallocConfig | RegionsConfig | BulkAllocConfig):
        return
    try:
        fragment_counts(_fragment_params(cfg, seeds))
    except ValueError as exc:
        raise ConfigError("workload", f": {exc}") from exc


def _check_compiled_supports(cfg: SweepConfig, zones: TickZones, program: Program) -> None:
    """backend=numba / numba_cuda: the compiled engine implements tick-model.md 1-5
    (sweep.compiled_tick); a ConfigError names what it does not, before anything runs."""
    try:
        from sweep.compiled_tick import unsupported
    except ImportError as exc:
        raise ConfigError("backend", f"={cfg.backend} needs Numba ({exc}): {NUMBA_HINT}") from exc
    why = "MIGRATE_CMA pageblocks (cma_mb)" if getattr(cfg.workload, "cma_mb", 0) else None
    why = why or unsupported(zones, program)
    if why is not None:
        raise ConfigError(
            "backend",
            f"={cfg.backend} does not support {why} (workload={cfg.workload.name}, "
            f"policy={cfg.policy.name}): use backend=numpy (or auto)",
        )


NUMBA_HINT = "pip install -e '.[numba]'"


def numba_can_run(cfg: SweepConfig) -> bool:
    """Whether backend=numba supports this cell (no CMA, no sorted/evacuating region lists:
    what _check_compiled_supports refuses), decided from the config alone, without Numba."""
    if isinstance(cfg.workload, BulkAllocConfig):
        return False
    pol = cfg.policy
    return not (pol.sorted_freelists or pol.region_evacuation or pol.region_worker_delayed)


def _contig_fields(cfg: SweepConfig) -> dict[str, Any]:
    """bulk_alloc's per-zone TickZones fields (tick-model.md 7.2): the method and busy share.
    Per zone, so cells that differ only in them share one batch (scenario_batch_key)."""
    wl = cfg.workload
    if not isinstance(wl, BulkAllocConfig):
        return {}
    return {"contig_method": CONTIG_NAMES.index(wl.method), "busy_file": wl.busy_file}


def cell_inputs(cfg: SweepConfig, xp: Any) -> ScenarioCell:
    """Program, per-zone arrays and initial zones of one cell (Z = replicates)."""
    seeds = zone_seed(cfg.seed, np.arange(cfg.replicates, dtype=np.uint64))
    zones = TickZones.create(
        cfg.replicates,
        seed=seeds,
        attempt_order=scenario_order(cfg),
        kcompactd=kcompactd_mode(cfg),
        skip_pinned=cfg.policy.skip_pinned,
        stop_below_watermark=cfg.policy.stop_below_watermark,
        proactiveness=cfg.policy.proactiveness,
        min_free_kbytes=effective_min_free_kbytes(cfg),
        **region_keys(cfg),
        **_contig_fields(cfg),
    )
    zones.validate()
    kind, block_mt = initial_zones(cfg, xp, seeds)
    return ScenarioCell(build_program(cfg), zones, kind, block_mt)


def scenario_batch_key(cfg: SweepConfig) -> tuple[Any, ...]:
    """Cells with equal keys share one run_program call (same program, shapes, profile)."""
    return (
        "scenario",
        cfg.workload.name,
        cfg.zone.nr_pages,
        cfg.kernel.profile,
        cfg.backend,
        build_program(cfg),
    )


def _buddy_counts(kind: np.ndarray) -> np.ndarray:
    """Free blocks per order ``(Z, 11)`` of a kinds array (maximal aligned FREE runs)."""
    from kernels.buddy import buddyinfo

    return np.asarray(buddyinfo((kind == FREE).astype(np.uint8) ^ 1), dtype=np.int64)


def _kind_counts(kind: np.ndarray) -> np.ndarray:
    return np.stack([(kind == k).sum(axis=1) for k in range(len(SCENARIO_KINDS))], axis=1)


class ScenarioInvariantError(RuntimeError):
    """The final state broke a tick-model invariant: a simulator bug, not bad input."""


def check_final_state(res: TickResult) -> None:
    """The invariants of docs/tick-model.md section 4 on a run's final state.

    Raises :class:`ScenarioInvariantError` naming the zones. (``run_program(...,
    check_invariants=True)`` checks them after every tick; that costs O(N) per tick.)
    """
    problems = []
    kind = res.kind
    heads = res.buddy_order >= 0
    free_pages = (kind == FREE).sum(axis=1)
    head_pages = np.where(heads, 1 << np.maximum(res.buddy_order, 0).astype(np.int64), 0).sum(1)
    if (kind >= ISOFREE).any():
        problems.append("ISOFREE pages outside a compaction run")
    if (head_pages != free_pages).any():
        problems.append("free pages != pages in buddy free blocks")
    expected = _buddy_counts(kind)
    got = np.stack([(res.buddy_order == o).sum(axis=1) for o in range(NR_PAGE_ORDERS)], axis=1)
    if (expected != got).any():
        problems.append("free blocks are not the maximal aligned runs of free pages")
    c = res.counters[:, -1]
    stall, ok, fail = (
        c[:, COUNTER_INDEX[k]] for k in ("compact_stall", "compact_success", "compact_fail")
    )
    if (stall != ok + fail).any():
        problems.append("compact_stall != compact_success + compact_fail")
    for side in ("migrate", "free"):
        daemon = c[:, COUNTER_INDEX[f"compact_daemon_{side}_scanned"]]
        if (daemon > c[:, COUNTER_INDEX[f"compact_{side}_scanned"]]).any():
            problems.append(f"compact_daemon_{side}_scanned > compact_{side}_scanned")
    if problems:
        raise ScenarioInvariantError("invariant violated: " + "; ".join(problems))


def run_scenario_batch(
    cfgs: Sequence[SweepConfig],
    xp: Any,
    *,
    check_invariants: bool = False,
    check_every_tick: bool = False,
    progress: Callable[[int, int], None] | None = None,
    compiled_parallel: bool = True,
) -> list[ScenarioResult]:
    """Run cells sharing a :func:`scenario_batch_key` as one batch; one result per cell.

    ``check_invariants`` checks the final state (cheap); ``check_every_tick`` makes the
    engine check after every tick (a debugging aid: O(N) work per tick). With
    ``backend=numba`` the cells run on the compiled engine (sweep.compiled_tick), over the
    zones in parallel threads unless ``compiled_parallel`` is false (one Ray task, one CPU);
    with ``backend=numba_cuda`` on the same engine on the GPU, one thread per zone
    (sweep.cuda_tick), with progress after each chunk of ticks.
    """
    from kernels.tick import run_program

    assert cfgs and all(scenario_batch_key(c) == scenario_batch_key(cfgs[0]) for c in cfgs)
    cells = [cell_inputs(cfg, xp) for cfg in cfgs]
    program = cells[0].program
    kind = xp.concatenate([c.kind for c in cells], axis=0)
    block_mt = xp.concatenate([c.block_mt for c in cells], axis=0)
    zones = TickZones(
        **{
            f: np.concatenate([getattr(c.zones, f) for c in cells])
            for f in TickZones.__dataclass_fields__
        }
    )
    kind0 = to_numpy(kind)
    profile = PROFILES[cfgs[0].kernel.profile]
    if cfgs[0].backend == "numba":  # the compiled engine: same results (tests/test_compiled_tick)
        from sweep.compiled_tick import run_program_compiled

        if check_every_tick:
            raise ValueError("check_every_tick needs the batched engine (backend=numpy)")
        if progress is not None:
            progress(0, program.n_ticks)  # one compiled call: no per-tick progress
        res = run_program_compiled(
            kind0, to_numpy(block_mt), zones, program, profile, parallel=compiled_parallel
        )
        if progress is not None:
            progress(program.n_ticks, program.n_ticks)
    elif cfgs[0].backend == "numba_cuda":  # the same engine on the GPU (tests/test_cuda_tick)
        from sweep.cuda_tick import run_program_cuda

        if check_every_tick:
            raise ValueError("check_every_tick needs the batched engine (backend=numpy)")
        res = run_program_cuda(
            kind0, to_numpy(block_mt), zones, program, profile, progress=progress
        )
    else:
        res = run_program(
            kind, block_mt, zones, program, profile, backend=cfgs[0].backend,
            check_invariants=check_every_tick, progress=progress,
        )  # fmt: skip
    if check_invariants:
        check_final_state(res)
    results = []
    start = 0
    for cfg in cfgs:
        sl = slice(start, start + cfg.replicates)
        start += cfg.replicates
        results.append(_cell_result(program, kind0[sl], res, sl))
        if uses_regions(cfg):  # seed 002: the regions sampled over time
            rb = int(cells[len(results) - 1].zones.region_blocks[0])
            results[-1] = dataclasses.replace(
                results[-1],
                samples_free_regions=res.free_regions[sl],
                nr_regions=-(-(kind.shape[1] // PAGEBLOCK_NR_PAGES) // rb),
            )
    return results


def _cell_result(program: Program, kind0: np.ndarray, res: TickResult, sl: slice) -> ScenarioResult:
    cumulative = res.counters[sl]
    per_phase = np.diff(cumulative, axis=1, prepend=np.zeros_like(cumulative[:, :1]))
    final = res.kind[sl]
    phase_of_attempt = np.concatenate(
        [np.full(p.n_attempts, i, dtype=np.int64) for i, p in enumerate(program.phases)]
    )
    return ScenarioResult(
        phases=tuple(p.name for p in program.phases),
        counters=per_phase,
        buddyinfo=np.stack([_buddy_counts(kind0), _buddy_counts(final)], axis=1),
        page_counts=np.stack([_kind_counts(kind0), _kind_counts(final)], axis=1),
        samples_buddyinfo=res.buddyinfo[sl],
        samples_nr_free=res.nr_free[sl],
        sample_time_s=(np.arange(program.n_samples) + 1)
        * program.sample_every
        * program.tick_ms
        / 1000.0,
        attempts=res.attempts[sl],
        attempt_phase=phase_of_attempt,
        scalars={k: v[sl] for k, v in res.scalars.items()},
        trials=None if res.trials is None or program.n_trials == 0 else res.trials[sl],
        trial_time_s=_trial_times(program),
    )


def _trial_times(program: Program) -> np.ndarray:
    """Simulated time (s) at the end of each trial's tick (tick-model.md 7.4)."""
    times, t0 = [], 0
    for ph in program.phases:
        if ph.contig_every:
            ticks = np.arange(ph.contig_every, ph.n_trials * ph.contig_every + 1, ph.contig_every)
            times.append(t0 + ticks)
        t0 += ph.ticks
    ticks_all = np.concatenate(times) if times else np.zeros(0, dtype=np.int64)
    return ticks_all * program.tick_ms / 1000.0


class ProgressLine:
    """``progress(done, total)`` for run_program: a line on stderr at most every ``every`` s.

    On a terminal the line is rewritten in place; otherwise plain lines (logs, CI).
    """

    def __init__(self, label: str, every: float = 5.0, stream: Any = None) -> None:
        import sys
        import time

        self.label, self.every = label, every
        self.stream = stream if stream is not None else sys.stderr
        self.clock = time.monotonic
        self.start = self.last = self.clock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        spent = now - self.start
        eta = spent * (total - done) / done if done else float("nan")
        text = (
            f"{self.label}: tick {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%), "
            f"{spent:.0f} s, ETA {eta:.0f} s"
        )
        end = "\r" if self.tty and done < total else "\n"
        print(text, end=end, file=self.stream, flush=True)


def success_runs(outcomes: np.ndarray) -> tuple[float, int]:
    """Mean and longest run of consecutive successes in one zone's attempt log."""
    runs, current = [], 0
    for ok in outcomes.tolist():
        if ok == 1:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return (float(np.mean(runs)) if runs else 0.0), (max(runs) if runs else 0)


def success_rate(result: ScenarioResult) -> np.ndarray:
    """Success 1/2/3 style: ``alloc_success * 100 // alloc_attempts`` per phase, NaN if none."""
    ok = result.counters[:, :, COUNTER_INDEX["alloc_success"]]
    tried = result.counters[:, :, COUNTER_INDEX["alloc_attempts"]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tried > 0, (ok * 100 // np.maximum(tried, 1)).astype(np.float64), np.nan)


def compaction_cost(counters: np.ndarray) -> np.ndarray:
    """mmtests "Compaction cost" (kernel-model.md 7) of ``(..., C)`` counters."""
    c = {name: counters[..., i].astype(np.float64) for i, name in enumerate(COUNTERS)}
    return (
        7 * c["compact_migrate_scanned"]
        + 19 * c["compact_isolated"]
        + 1038 * c["pgmigrate_success"]
        + 14 * c["pgmigrate_fail"]
    ) / 1e6


def build_scenario_dataset(result: ScenarioResult, attrs: Mapping[str, Any]) -> xr.Dataset:
    """Label one cell's arrays: dims replicate, phase, snapshot, buddy_order, time, attempt."""
    rep, order = "replicate", "buddy_order"
    data_vars: dict[str, Any] = {}
    for i, name in enumerate(COUNTERS):
        a = (
            COUNTER_ATTRS.get(name)
            or TICK_COUNTER_ATTRS.get(name)
            or {"units": "1", "long_name": name}
        )
        data_vars[name] = ((rep, "phase"), result.counters[:, :, i], a)
    data_vars["success_rate"] = (
        (rep, "phase"),
        success_rate(result),
        {
            "units": "percent",
            "long_name": "high-order attempts that succeeded, integer percent as mmtests "
            "prints Success 1/2/3 (NaN: no attempts in the phase)",
        },
    )
    data_vars["compaction_cost"] = (
        (rep, "phase"),
        compaction_cost(result.counters),
        VARIABLE_ATTRS["compaction_cost"],
    )
    counts = result.buddyinfo
    data_vars["buddyinfo"] = ((rep, "snapshot", order), counts, VARIABLE_ATTRS["buddyinfo"])
    data_vars["nr_free_pages"] = (
        (rep, "snapshot"),
        (counts << np.arange(NR_PAGE_ORDERS)).sum(axis=-1),
        VARIABLE_ATTRS["nr_free_pages"],
    )
    for name, fn in (
        ("unusable_index", metrics.unusable_free_index),
        ("fragmentation_index", metrics.fragmentation_index),
    ):
        data_vars[name] = (
            (rep, "snapshot", order),
            np.asarray(fn(counts.reshape(-1, NR_PAGE_ORDERS)), dtype=np.int64).reshape(counts.shape)
            / 1000.0,
            VARIABLE_ATTRS[name],
        )
    data_vars["page_counts"] = (
        (rep, "snapshot", "page_kind"),
        result.page_counts,
        {"units": "pages", "long_name": "pages of each kind (tick-model kinds)"},
    )
    data_vars["buddyinfo_over_time"] = (
        (rep, "time", order),
        result.samples_buddyinfo,
        {"units": "blocks", "long_name": "free blocks per order, sampled over simulated time"},
    )
    data_vars["nr_free_pages_over_time"] = (
        (rep, "time"),
        result.samples_nr_free,
        {"units": "pages", "long_name": "free pages, sampled over simulated time"},
    )
    if isinstance(result.nr_regions, int) and result.nr_regions > 0:
        data_vars["free_regions_over_time"] = (
            (rep, "time"),
            result.samples_free_regions,
            {
                "units": "regions",
                "long_name": "memory regions with every page free (power-down candidates, "
                f"seed 002), sampled over simulated time; the zone has {result.nr_regions}",
            },
        )
    data_vars["attempt_success"] = (
        (rep, "attempt"),
        result.attempts,
        {"units": "1", "long_name": "outcome of each high-order attempt (1 success, 0 failure)"},
    )
    runs = [success_runs(result.attempts[z]) for z in range(result.nr_zones)]
    data_vars["mean_success_run"] = (
        (rep,),
        np.array([r[0] for r in runs]),
        {"units": "attempts", "long_name": "mean length of runs of consecutive successes"},
    )
    data_vars["longest_success_run"] = (
        (rep,),
        np.array([r[1] for r in runs], dtype=np.int64),
        {"units": "attempts", "long_name": "longest run of consecutive successes"},
    )
    coords = {
        rep: (rep, np.arange(result.nr_zones), {"long_name": "replicate zone (seed stream)"}),
        **_trial_variables(result, data_vars),
        "phase": ("phase", list(result.phases), {"long_name": "workload phase"}),
        "snapshot": ("snapshot", ["initial", "final"], {"long_name": "start or end of the run"}),
        order: (order, np.arange(NR_PAGE_ORDERS), {"long_name": "buddy order"}),
        "page_kind": ("page_kind", list(SCENARIO_KINDS), {"long_name": "page kind"}),
        "time": ("time", result.sample_time_s, {"units": "s", "long_name": "simulated time"}),
        "attempt": ("attempt", np.arange(result.attempts.shape[1]), {"long_name": "attempt"}),
        "attempt_phase": (
            "attempt",
            np.array(result.phases)[result.attempt_phase]
            if result.attempt_phase.size
            else np.array([], dtype=str),
            {"long_name": "phase of the attempt"},
        ),
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=netcdf_attrs(attrs))


TRIAL_ATTRS: dict[str, dict[str, str]] = {
    "obtained": {"units": "pieces", "long_name": "order-k pieces the trial obtained"},
    "complete": {"units": "1", "long_name": "trial obtained all count pieces (1) or not (0)"},
    "migrated": {"units": "pages", "long_name": "pages the trial migrated out of its ranges"},
    "reclaimed": {
        "units": "pages",
        "long_name": "clean page cache the trial dropped (reclaim_clean_pages_from_list)",
    },
    "windows": {
        "units": "1",
        "long_name": "ranges tried: alloc_contig_range (cma_alloc windows) or alloc_pages_bulk "
        "calls (stands in for latency)",
    },
    "scanned": {"units": "pages", "long_name": "pages the trial's migration passes scanned"},
}


def _trial_variables(result: ScenarioResult, data_vars: dict[str, Any]) -> dict[str, Any]:
    """bulk_alloc's per-trial results (tick-model.md 7.4) into data_vars; its coords."""
    if result.trials is None:
        return {}
    rep = "replicate"
    for i, name in enumerate(TRIAL_FIELDS):
        data_vars[f"trial_{name}"] = ((rep, "trial"), result.trials[:, :, i], TRIAL_ATTRS[name])
    data_vars["trials_complete"] = (
        (rep,),
        result.trials[:, :, TRIAL_FIELDS.index("complete")].sum(axis=1),
        {"units": "trials", "long_name": "trials that obtained all count pieces"},
    )
    trial = np.arange(result.trials.shape[1])
    return {
        "trial": ("trial", trial, {"long_name": "contiguous-allocation trial"}),
        "trial_time": (
            "trial",
            result.trial_time_s,
            {"units": "s", "long_name": "simulated time of the trial"},
        ),
    }


def format_trial_table(result: ScenarioResult) -> list[str]:
    """Per replicate: pieces obtained per trial, complete trials, mean migrated/windows."""
    if result.trials is None:
        return []
    tr = result.trials
    f = {name: i for i, name in enumerate(TRIAL_FIELDS)}
    lines = []
    for z in range(tr.shape[0]):
        mean = {k: tr[z, :, f[k]].mean() for k in ("migrated", "reclaimed", "windows", "scanned")}
        lines.append(
            f"replicate {z}: obtained {tr[z, :, f['obtained']].tolist()}; complete "
            f"{int(tr[z, :, f['complete']].sum())}/{tr.shape[1]}; per trial: "
            + ", ".join(f"{k} {v:.0f}" for k, v in mean.items())
        )
    return lines


def format_phase_table(result: ScenarioResult) -> list[str]:
    """Per-phase means over replicates of the seed-000 table's counters, as text lines."""
    names = (
        "alloc_attempts",
        "alloc_success",
        "compact_daemon_wake",
        "compact_stall",
        "compact_success",
        "compact_fail",
        "pgmigrate_success",
        "pgmigrate_fail",
        "compact_isolated",
        "compact_migrate_scanned",
        "compact_free_scanned",
        "lru_lock_acquisitions",
        "pgsteal_kswapd",
    )
    width = max(len(n) for n in names) + 2
    head = "".join(f"{p:>14}" for p in result.phases)
    lines = [f"{'':{width}}{head}"]
    rate = success_rate(result)
    means = [float(np.nanmean(col)) if np.isfinite(col).any() else float("nan") for col in rate.T]
    lines.append(f"{'Success %':{width}}" + "".join(f"{m:>14.2f}" for m in means))
    for name in names:
        v = result.counters[:, :, COUNTER_INDEX[name]].mean(axis=0)
        lines.append(f"{name:{width}}" + "".join(f"{x:>14,.1f}" for x in v))
    cost = compaction_cost(result.counters).mean(axis=0)
    lines.append(f"{'compaction_cost':{width}}" + "".join(f"{x:>14,.3f}" for x in cost))
    if result.nr_regions > 0:  # seed 002: evacuations and regions kept entirely free
        v = result.counters[:, :, COUNTER_INDEX["region_evacuations"]].mean(axis=0)
        lines.append(f"{'region_evacuations':{width}}" + "".join(f"{x:>14,.1f}" for x in v))
        fr = result.samples_free_regions
        if fr.size:
            lines.append(
                f"# free regions (of {result.nr_regions}), mean over replicates: "
                f"mean of samples {fr.mean():.2f}, min {fr.mean(axis=0).min():.2f}, "
                f"final {fr[:, -1].mean():.2f}"
            )
    return lines
