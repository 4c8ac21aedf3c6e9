"""Tick-loop benchmark: ``python -m sweep.bench tick`` (docs/tick-model.md).

The batched engine (:func:`kernels.tick.run_program`) and the per-zone reference
(``tests/reference/tick.py``) run the same program on the same zones in the same run;
the report gives zone-ticks per second for both, their ratio, and whether the results
are identical on the zones the reference ran. The compiled baseline
(:func:`sweep.compiled_tick.run_program_compiled`) runs every zone too, parallel over
zones and on one thread, checked identical to the batched result. The default case is
the issue's: 64 zones of 4 GiB under a stress-highalloc-like load (kernel-build
background allocations and frees, kswapd, kcompactd, one GFP_NOWAIT order-9 attempt per
tick).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from kernels.program import (
    KCOMPACTD_REACTIVE,
    Phase,
    Program,
    TickResult,
    TickZones,
)
from kernels.rng import zone_seed
from kernels.zone import PAGEBLOCK_NR_PAGES, KernelProfile, MigrateType

GIB_PAGES = 262144
TICK_CASES = {"64x4g": (64, 4 * GIB_PAGES), "8x256m": (8, GIB_PAGES // 4), "64x16m": (64, 4096)}


MIX = (0.45, 0.45, 0.03, 0.07)  # anon, page cache, unmovable, reclaimable: a kernel build


def warmup_program(nr_pages: int) -> Program:
    """Fill an empty zone to ~90 % with the build-like mix in 20 ticks (not timed)."""
    warm = -(-nr_pages * 3 // 2 // 20)
    phase = Phase(
        "warmup", 20, allocs_per_tick=warm, frees_per_tick=warm * 10 // 9, alloc_weights=MIX
    )
    return Program(phases=(phase,), tick_ms=125.0, sample_every=20)


def tick_program(nr_pages: int, ticks: int, events_per_tick: int) -> Program:
    """A stress-highalloc pass on a warmed-up zone: load + one nowait order-9 attempt per tick."""
    mix = MIX
    return Program(
        phases=(
            Phase(
                "pass",
                ticks,
                allocs_per_tick=events_per_tick,
                frees_per_tick=events_per_tick * 10 // 9,
                alloc_weights=mix,
                attempt_every=1,
                keep=True,
            ),
        ),
        tick_ms=125.0,
        sample_every=max(1, ticks),
    )


def _inputs(nr_zones: int, nr_pages: int, seed: int) -> tuple[np.ndarray, np.ndarray, TickZones]:
    kind = np.zeros((nr_zones, nr_pages), dtype=np.uint8)
    block_mt = np.full(
        (nr_zones, nr_pages // PAGEBLOCK_NR_PAGES), int(MigrateType.MOVABLE), dtype=np.int8
    )
    zones = TickZones.create(
        nr_zones,
        seed=zone_seed(seed, np.arange(nr_zones)),
        attempt_order=9,
        kcompactd=KCOMPACTD_REACTIVE,
        min_free_kbytes=max(128, int(np.sqrt(nr_pages * 4 * 16))),
    )
    return kind, block_mt, zones


def results_equal(a: TickResult, b: TickResult) -> bool:
    for f in dataclasses.fields(TickResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "scalars":
            if set(x) != set(y) or any(not np.array_equal(x[k], y[k]) for k in x):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def _bench_compiled(
    kind: np.ndarray,
    block_mt: np.ndarray,
    zones: TickZones,
    program: Program,
    profile: KernelProfile,
    batched: TickResult,
) -> dict[str, Any]:
    """sweep.compiled_tick on the same zones: parallel over zones, then one thread
    (nothing but the reason when Numba is not installed: the `bench` extra)."""
    try:
        import numba

        from sweep.compiled_tick import run_program_compiled
    except ImportError as exc:
        return dict(compiled_unavailable=f"{type(exc).__name__}: {exc}")

    t0 = time.perf_counter()  # the first calls compile (or load the on-disk cache)
    one = dataclasses.replace(program, phases=(dataclasses.replace(program.phases[0], ticks=1),))
    for parallel in (True, False):
        run_program_compiled(kind[:1], block_mt[:1], zones[:1], one, profile, parallel=parallel)
    out: dict[str, Any] = dict(
        compiled_first_calls_s=time.perf_counter() - t0, compiled_threads=numba.get_num_threads()
    )
    exact = True
    nr_zone_ticks = kind.shape[0] * program.n_ticks
    for name, parallel in (("compiled", True), ("compiled_1t", False)):
        t0 = time.perf_counter()
        res = run_program_compiled(kind, block_mt, zones, program, profile, parallel=parallel)
        seconds = time.perf_counter() - t0
        exact &= results_equal(res, batched)
        out[f"{name}_s"] = seconds
        out[f"{name}_zone_ticks_per_s"] = nr_zone_ticks / seconds
    out["compiled_exact"] = bool(exact)
    return out


def bench_tick(
    case: str,
    profile: KernelProfile,
    ticks: int,
    events_per_tick: int,
    reference_zones: int,
    seed: int,
    backend: str = "numpy",
    count_ticks: int = 0,
    compiled: bool = True,
) -> dict[str, Any]:
    """Time the batched engine on ``case``, the compiled baseline on every zone (parallel
    and on one thread, checked == batched) and the reference on its first K zones.

    With ``count_ticks``, the same pass runs that many more ticks (+1) on
    ``sweep.synccount``'s counting namespace (untimed): the host reads per tick a CuPy
    run of the loop would make, and its array operations per tick (about CuPy's kernel
    launches), over ticks 2..T like the loop-only time."""
    from kernels.tick import run_program

    nr_zones, nr_pages = TICK_CASES[case]
    kind, block_mt, zones = _inputs(nr_zones, nr_pages, seed)
    program = tick_program(nr_pages, ticks, events_per_tick)
    # Warm the zones up once (untimed); both engines start the timed pass from its pages
    # and pageblock types (free-list keys rebuilt in boot order, as for any initial state).
    warm = run_program(kind, block_mt, zones, warmup_program(nr_pages), profile)
    kind, block_mt = warm.kind, warm.block_mt
    stamps: list[float] = []  # after every tick: the loop apart from setup and results
    t0 = time.perf_counter()
    res = run_program(
        kind, block_mt, zones, program, profile, backend=backend,
        progress=lambda done, total: stamps.append(time.perf_counter()),
    )  # fmt: skip
    batched_s = time.perf_counter() - t0
    loop_s = stamps[-1] - stamps[0]  # ticks 2..T: state built, results not yet copied out
    row: dict[str, Any] = dict(
        case=case,
        profile=profile.name.lower(),
        zones=nr_zones,
        pages_per_zone=nr_pages,
        ticks=ticks,
        events_per_tick=events_per_tick,
        backend=backend,
        batched_s=batched_s,
        batched_zone_ticks_per_s=nr_zones * ticks / batched_s,
        batched_ms_per_zone_tick=batched_s * 1e3 / (nr_zones * ticks),
        setup_and_result_s=batched_s - loop_s * ticks / max(ticks - 1, 1),
        loop_ms_per_zone_tick=(
            loop_s * 1e3 / (nr_zones * (ticks - 1)) if ticks > 1 else float("nan")
        ),
    )
    if count_ticks:
        row.update(
            count_syncs(kind, block_mt, zones, nr_pages, count_ticks, events_per_tick, profile)
        )
    if compiled:
        row.update(_bench_compiled(kind, block_mt, zones, program, profile, res))
    k = min(reference_zones, nr_zones)
    if k:
        from sweep.bench import _reference_repo_path

        _reference_repo_path()
        from tests.reference.tick import run_program_ref

        ref_s = 0.0
        same = True
        for z in range(k):
            t0 = time.perf_counter()
            ref = run_program_ref(kind[z], block_mt[z], zones[z], program, profile)
            ref_s += time.perf_counter() - t0
            mine = TickResult(
                **{
                    f.name: (
                        {s: v[z : z + 1] for s, v in res.scalars.items()}
                        if f.name == "scalars"
                        else getattr(res, f.name)[z : z + 1]
                    )
                    for f in dataclasses.fields(TickResult)
                }
            )
            same &= results_equal(mine, ref)
        row.update(
            reference_zones=k,
            reference_s=ref_s,
            reference_zone_ticks_per_s=k * ticks / ref_s,
            ratio=row["batched_zone_ticks_per_s"] / (k * ticks / ref_s),
            exact=bool(same),
        )
    return row


def count_syncs(
    kind: np.ndarray,
    block_mt: np.ndarray,
    zones: TickZones,
    nr_pages: int,
    ticks: int,
    events_per_tick: int,
    profile: KernelProfile,
) -> dict[str, Any]:
    """Host reads and array operations per tick of the tick pass (ticks 2..ticks+1)."""
    from kernels.tick import run_program_on
    from sweep import synccount

    marks: list[tuple[int, int]] = []

    def mark(done: int, total: int) -> None:
        marks.append((synccount.total(), synccount.LAUNCHES[0]))

    with synccount.counting() as c:
        run_program_on(
            synccount.xp, kind, block_mt, zones, tick_program(nr_pages, ticks + 1, events_per_tick),
            profile, progress=mark,
        )  # fmt: skip
    (s0, o0), (s1, o1) = marks[0], marks[-1]
    return dict(
        host_syncs_per_tick=(s1 - s0) / ticks,
        array_ops_per_tick=(o1 - o0) / ticks,
        host_syncs_by_kind={k: v for k, v in c.items() if k != "(array operations)"},
    )
