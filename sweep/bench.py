"""Benchmarks, outside the test suite: ``python -m sweep.bench {compaction,launcher,tick,suite}``.

Every speed is reported as a ratio against a baseline measured in the same run:

- ``compaction``: the batched NumPy kernel against the per-zone reference
  (tests/reference/compaction.py) on the same zones. The reference's results are also
  compared with the batched ones, so a run doubles as an exactness check on large zones.
- ``launcher``: the Ray launcher's driver time per cell of a multirun, the fast path
  (sweep.cells) against every cell through Hydra (``hydra.launcher.compose=hydra``, the
  launcher as it was before), checking that both give the same job files and sweep.nc.

- ``suite``: every case (compaction, buddyinfo, the tick loop) with every baseline in one
  run, with bandwidth floors (sweep/bench_suite.py).

Results go to stdout as a table and to ``outputs/bench/<case>-<time>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kernels.compaction import CompactParams, compact_node
from kernels.fragment import FragmentParams, make_zone_state
from kernels.rng import zone_seed
from kernels.zone import KernelProfile, ZoneState
from sweep.bench_tick import TICK_CASES, bench_tick
from sweep.memory import keep_freed_memory

GIB_PAGES = 262144
CASES = {"1x128g": (1, 128 * GIB_PAGES), "64x1g": (64, GIB_PAGES)}


def bench_zone_params(nr_pages: int, seeds: np.ndarray) -> FragmentParams:
    """The main job's default workload: random_mix with folios, pinned pages, pollution."""
    full = lambda v: np.full(seeds.shape[0], v, dtype=np.float64)  # noqa: E731
    return FragmentParams(
        layout="random_mix",
        nr_pages=nr_pages,
        seed=seeds,
        free_fraction=full(0.4),
        unmovable_fraction=full(0.02),
        reclaimable_fraction=full(0.02),
        pinned_fraction=full(0.01),
        pollution=full(0.1),
        folio_fraction=full(0.25),
        folio_orders=(2, 4, 9),
    )


def _zones(nr_zones: int, nr_pages: int, seed: int) -> ZoneState:
    """Zones of :func:`bench_zone_params` (NumPy)."""
    params = bench_zone_params(nr_pages, zone_seed(seed, np.arange(nr_zones)))
    return make_zone_state(np, params, 65536, 10)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _reference_repo_path() -> None:
    """tests/ is not installed; the benchmark runs from a checkout."""
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def bench_compaction(
    case: str, profile: KernelProfile, repeat: int, reference_zones: int | None, seed: int
) -> dict:
    nr_zones, nr_pages = CASES[case]
    t0 = time.perf_counter()
    state = _zones(nr_zones, nr_pages, seed)
    init_s = time.perf_counter() - t0
    skip_pinned = np.ones(nr_zones, dtype=bool)
    params = CompactParams(profile, skip_pinned)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        new, counters = compact_node(state, params)
        times.append(time.perf_counter() - t0)
    batched_s = min(times)
    pages = nr_zones * nr_pages
    row = {
        "case": case,
        "profile": profile.name.lower(),
        "zones": nr_zones,
        "pages_per_zone": nr_pages,
        "init_s": init_s,
        "batched_s": batched_s,
        "batched_pages_per_s": pages / batched_s,
        "pgmigrate_success": int(counters.pgmigrate_success.sum()),
    }
    n_ref = nr_zones if reference_zones is None else min(reference_zones, nr_zones)
    if n_ref > 0:
        _reference_repo_path()
        from tests.reference.compaction import compact_zone

        t0 = time.perf_counter()
        mismatches = 0
        for z in range(n_ref):
            print(f"  reference zone {z + 1}/{n_ref} ...", file=sys.stderr, flush=True)
            ref_state, ref_c = compact_zone(
                state.page_state[z], state.pageblock_migratetype[z], profile, True
            )
            same = dataclasses.asdict(ref_c) == {
                f.name: int(getattr(counters, f.name)[z]) for f in dataclasses.fields(counters)
            } and np.array_equal(np.asarray(ref_state, np.uint8), new.page_state[z])
            mismatches += not same
        ref_s = time.perf_counter() - t0
        ref_rate = n_ref * nr_pages / ref_s
        row.update(
            reference_zones=n_ref,
            reference_s=ref_s,
            reference_pages_per_s=ref_rate,
            speedup=row["batched_pages_per_s"] / ref_rate,
            reference_mismatches=mismatches,
        )
    return row


def _print_table(rows: list[dict]) -> None:
    head = (
        f"{'case':8} {'profile':7} {'batched':>10} {'batched pages/s':>16} "
        f"{'reference pages/s':>18} {'ratio':>8} {'exact':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ref = (
            f"{r['reference_pages_per_s'] / 1e6:12.2f} M/s" if "reference_s" in r else f"{'-':>16}"
        )
        ratio = f"{r['speedup']:7.0f}x" if "speedup" in r else f"{'-':>8}"
        exact = ("yes" if r["reference_mismatches"] == 0 else "NO") if "reference_s" in r else "-"
        print(
            f"{r['case']:8} {r['profile']:7} {r['batched_s'] * 1e3:8.1f}ms "
            f"{r['batched_pages_per_s'] / 1e6:12.1f} M/s"
            f"  {ref} {ratio} {exact:>6}"
        )


# --------------------------------------------------------------------------------------
# launcher: driver time per cell


LAUNCHER_GRIDS = {
    # cells -> the multirun overrides of a sweep of that many tiny zones
    "seed": lambda n: ["zone=tiny", "replicates=1", f"seed=range(0,{n})"],
    "mixed": lambda n: [
        "zone=tiny",
        "replicates=1",
        "policy=default,isolate_pinned",
        "kernel=v4_12,v6_19",
        f"seed=range(0,{max(n // 4, 1)})",
    ],
}


def _launcher_phases(
    mode: str, overrides: list[str], sweep_dir: Path, zones_per_task: int
) -> dict[str, Any]:
    """Run the driver's side of ``python -m sweep -m hydra/launcher=ray <overrides>`` in this
    process, the Ray tasks replaced by in-process calls whose time is measured apart.

    Phases: ``check`` (sweep.app's check before Hydra starts), ``sweeper`` (the sweeper's
    batch validation), ``launch`` (the launcher's driver work: compose, plan, job files,
    JobReturns, sweep.nc). ``mode`` is ``hydra`` (before: every cell composed by Hydra
    three times and finished by run_job) or ``fast``.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins

    from sweep.app import check_multirun, select_backend
    from sweep.cells import multirun_session
    from sweep.config import compose_config, sweep_cells
    from sweep.expand import check_feasible
    from sweep.launcher import LauncherOptions, launch, run_batch, run_batch_write

    argv = ["hydra/launcher=ray", *overrides, f"hydra.sweep.dir={sweep_dir.absolute()}"]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if mode == "hydra":  # sweep.app.check_argv before sweep.cells: compose_config per cell
        with_launcher = ["hydra/launcher=ray", *overrides]
        for cell in sweep_cells(with_launcher):
            config = compose_config(cell)
            check_feasible(config)
            select_backend(config.backend)
    else:
        check_multirun(argv)
    timings["check"] = time.perf_counter() - t0

    worker = {"s": 0.0, "write_s": 0.0}

    def runner(batches, options, on_done, fault=None, outputs=None) -> None:
        for i, batch in enumerate(batches):
            t = time.perf_counter()
            if outputs is None or outputs[i] is None:
                backend, results, _ = run_batch(batch, fault)
            else:
                backend, results, write_s = run_batch_write(batch, outputs[i], fault)
                worker["write_s"] += write_s
            worker["s"] += time.perf_counter() - t
            on_done(i, results, backend, 0.0)

    with multirun_session(argv) as (ctx, master):
        cells = sweep_cells(list(master.hydra.overrides.task))
        sweeper = Plugins.instance().instantiate_sweeper(
            hydra_context=ctx, task_function=lambda cfg: None, config=master
        )
        t0 = time.perf_counter()
        if mode == "hydra":  # Hydra's BasicSweeper.validate_batch_is_legal, as before
            for cell in cells:
                ctx.config_loader.load_sweep_config(master, list(cell))
        else:  # CompactionSweeper's (nothing under the Ray launcher)
            sweeper.validate_batch_is_legal(cells)
        timings["sweeper"] = time.perf_counter() - t0
        HydraConfig.instance().set_config(master)
        options = LauncherOptions(zones_per_task=zones_per_task, compose=mode)
        t0 = time.perf_counter()
        returns = launch(options, ctx, None, master, cells, 0, runner=runner)  # type: ignore[arg-type]
        timings["launch"] = time.perf_counter() - t0 - worker["s"]
    assert len(returns) == len(cells) and all(r.status.name == "COMPLETED" for r in returns)
    total = sum(timings.values())
    return {
        "mode": mode,
        "cells": len(cells),
        "driver_ms_per_cell": 1e3 * total / len(cells),
        "phase_ms_per_cell": {k: 1e3 * v / len(cells) for k, v in timings.items()},
        "worker_ms_per_cell": 1e3 * worker["s"] / len(cells),
        "worker_write_ms_per_cell": 1e3 * worker["write_s"] / len(cells),
    }


def _same_sweeps(a: Path, b: Path, nr_cells: int) -> dict[str, bool]:
    """Whether two sweep dirs hold the same sweep.nc numbers and the same job files."""
    import xarray as xr

    from sweep.results import open_sweep

    same_nc = open_sweep(a).drop_attrs().identical(open_sweep(b).drop_attrs())
    same_files = True
    for num in range(nr_cells):
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            ta = (a / str(num) / ".hydra" / name).read_text().replace(str(a), "SWEEP")
            tb = (b / str(num) / ".hydra" / name).read_text().replace(str(b), "SWEEP")
            same_files &= ta == tb
        ra = xr.load_dataset(a / str(num) / "result.nc")
        rb = xr.load_dataset(b / str(num) / "result.nc")
        same_nc &= ra.drop_attrs().identical(rb.drop_attrs())
        same_nc &= ra.attrs["cell_hash"] == rb.attrs["cell_hash"]
    return {"same_sweep_nc_and_results": bool(same_nc), "same_job_files": bool(same_files)}


def bench_launcher(
    cells: int, baseline_cells: int, grid: str, zones_per_task: int, workdir: Path
) -> dict[str, Any]:
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    before_small = _launcher_phases(
        "hydra", LAUNCHER_GRIDS[grid](baseline_cells), workdir / "hydra", zones_per_task
    )
    after_small = _launcher_phases(
        "fast", LAUNCHER_GRIDS[grid](baseline_cells), workdir / "fast-small", zones_per_task
    )
    check = _same_sweeps(workdir / "hydra", workdir / "fast-small", before_small["cells"])
    after = _launcher_phases("fast", LAUNCHER_GRIDS[grid](cells), workdir / "fast", zones_per_task)
    return {
        "grid": grid,
        "overrides": LAUNCHER_GRIDS[grid](cells),
        "before": before_small,
        "after_same_cells": after_small,
        "after": after,
        "ratio_same_cells": before_small["driver_ms_per_cell"] / after_small["driver_ms_per_cell"],
        "ratio": before_small["driver_ms_per_cell"] / after["driver_ms_per_cell"],
        **check,
    }


def _print_launcher(r: dict[str, Any]) -> None:
    head = (
        f"{'path':28} {'cells':>6} {'driver ms/cell':>15} {'check':>7} {'sweeper':>8} "
        f"{'launch':>7} {'worker ms/cell':>15}"
    )
    print(head)
    print("-" * len(head))
    for label, row in (
        ("before (compose=hydra)", r["before"]),
        ("after (compose=fast)", r["after_same_cells"]),
        ("after (compose=fast)", r["after"]),
    ):
        ph = row["phase_ms_per_cell"]
        print(
            f"{label:28} {row['cells']:6d} {row['driver_ms_per_cell']:15.2f} {ph['check']:7.2f} "
            f"{ph['sweeper']:8.2f} {ph['launch']:7.2f} {row['worker_ms_per_cell']:15.2f}"
        )
    print(
        f"ratio before/after: {r['ratio_same_cells']:.1f}x on the same {r['before']['cells']} "
        f"cells, {r['ratio']:.1f}x against {r['after']['cells']} cells; same sweep.nc and "
        f"results: {r['same_sweep_nc_and_results']}; same .hydra files: {r['same_job_files']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.bench", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser(
        "compaction", help="whole-zone compaction: batched NumPy vs the per-zone reference"
    )
    c.add_argument("--case", choices=sorted(CASES), action="append", help="default: all cases")
    c.add_argument("--profile", choices=["v4_12", "v6_19"], action="append", help="default: both")
    c.add_argument("--repeat", type=int, default=3, help="batched runs per case (best is reported)")
    c.add_argument(
        "--reference-zones",
        type=int,
        default=None,
        help="run the reference on only the first K zones of a case (default: all; 0 skips it)",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="outputs/bench", help="folder for the JSON record")
    c.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="do not keep freed memory in the heap (see sweep/memory.py)",
    )
    lp = sub.add_parser(
        "launcher",
        help="Ray launcher driver time per cell: the fast path vs every cell through Hydra",
    )
    lp.add_argument("--cells", type=int, default=1000, help="cells of the fast-path run")
    lp.add_argument(
        "--baseline-cells",
        type=int,
        default=100,
        help="cells of the compose=hydra run (about 0.5 s each) and of a fast run to compare",
    )
    lp.add_argument("--grid", choices=sorted(LAUNCHER_GRIDS), default="seed")
    lp.add_argument("--zones-per-task", type=int, default=64)
    lp.add_argument("--out", default="outputs/bench", help="folder for the JSON record")
    lp.add_argument("--keep", action="store_true", help="keep the sweep directories")
    tp = sub.add_parser(
        "tick", help="time-stepped engine: zone-ticks/s, batched vs the per-zone reference"
    )
    tp.add_argument("--case", choices=sorted(TICK_CASES), action="append", help="default: 64x4g")
    tp.add_argument("--profile", choices=["v4_12", "v6_19"], action="append", help="default: both")
    tp.add_argument("--ticks", type=int, default=50, help="timed ticks (after a warm-up)")
    tp.add_argument("--events", type=int, default=64, help="background allocations per tick")
    tp.add_argument(
        "--reference-zones", type=int, default=1, help="zones the reference runs (0 skips it)"
    )
    tp.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    tp.add_argument(
        "--count-syncs", type=int, default=5, metavar="TICKS",
        help="ticks run again on sweep.synccount to count CuPy's host reads per tick (0: skip)",
    )  # fmt: skip
    tp.add_argument("--no-compiled", action="store_true", help="skip the compiled (Numba) baseline")
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--out", default="outputs/bench", help="folder for the JSON record")
    from sweep.bench_suite import add_parser as add_suite_parser
    from sweep.bench_suite import main_suite

    add_suite_parser(sub)
    args = parser.parse_args(argv)
    if args.what == "suite":
        return main_suite(args)
    if args.what == "launcher":
        return main_launcher(args)
    if args.what == "tick":
        return main_tick(args)
    heap_kept = False if args.glibc_defaults else keep_freed_memory()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    cases = args.case or ["1x128g", "64x1g"]
    profiles = [KernelProfile[p.upper()] for p in (args.profile or ["v6_19", "v4_12"])]
    rows = []
    for case in cases:
        for profile in profiles:
            print(
                f"{case} {profile.name.lower()}: building zones and timing ...",
                file=sys.stderr,
                flush=True,
            )
            rows.append(
                bench_compaction(case, profile, args.repeat, args.reference_zones, args.seed)
            )
    print(f"allocator: {'freed memory kept in the heap' if heap_kept else 'glibc defaults'}")
    _print_table(rows)
    record = {
        "benchmark": "compaction",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
        },
        "note": (
            "NumPy runs these kernels on one core; ratio = batched pages/s / "
            "reference pages/s, same zones, same run"
        ),
        "freed_memory_kept_in_heap": heap_kept,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compaction-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 1 if any(r.get("reference_mismatches") for r in rows) else 0


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
    }


def _write_record(out: Path, name: str, record: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    return path


def main_launcher(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    if args.cells < 1 or args.baseline_cells < 1:
        raise SystemExit("--cells and --baseline-cells must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="launcher-", dir=out))
    try:
        print(
            f"launcher: {args.baseline_cells} cells through Hydra, then {args.baseline_cells} "
            f"and {args.cells} cells on the fast path (sweep dirs in {workdir}) ...",
            file=sys.stderr,
            flush=True,
        )
        r = bench_launcher(args.cells, args.baseline_cells, args.grid, args.zones_per_task, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    _print_launcher(r)
    record = {
        "benchmark": "launcher",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "note": (
            "driver ms/cell = check before Hydra starts + sweeper batch validation + the "
            "launcher's driver work (compose, job files, JobReturns, sweep.nc), measured in "
            "one process; the Ray tasks run in-process and their time (worker ms/cell: "
            "compute, and with compose=fast the result.nc writes) is left out of it"
        ),
        **r,
    }
    print(f"wrote {_write_record(out, 'launcher', record)}")
    ok = r["same_sweep_nc_and_results"] and r["same_job_files"]
    return 0 if ok else 1


def main_tick(args: argparse.Namespace) -> int:
    heap_kept = keep_freed_memory()
    if args.ticks < 1 or args.events < 0 or args.reference_zones < 0 or args.count_syncs < 0:
        raise SystemExit(
            "--ticks >= 1, --events >= 0, --reference-zones >= 0 and --count-syncs >= 0 required"
        )
    rows = []
    for case in args.case or ["64x4g"]:
        for profile in [KernelProfile[p.upper()] for p in (args.profile or ["v6_19", "v4_12"])]:
            print(f"tick {case} {profile.name.lower()} ...", file=sys.stderr, flush=True)
            rows.append(
                bench_tick(
                    case,
                    profile,
                    args.ticks,
                    args.events,
                    args.reference_zones,
                    args.seed,
                    args.backend,
                    args.count_syncs,
                    compiled=not args.no_compiled,
                )
            )
    print(
        f"{'case':8} {'profile':7} {'backend':7} {'ms/zone-tick':>13} {'loop only':>10} "
        f"{'zone-ticks/s':>13} {'reference zt/s':>15} {'ratio':>8} {'exact':>6} "
        f"{'syncs/tick':>10} {'ops/tick':>9} "
        f"{'compiled zt/s':>14} {'1-thread zt/s':>14} {'same':>6}"
    )
    for r in rows:
        ref = f"{r['reference_zone_ticks_per_s']:15,.1f}" if "reference_s" in r else f"{'-':>15}"
        ratio = f"{r['ratio']:7.1f}x" if "reference_s" in r else f"{'-':>8}"
        exact = ("yes" if r["exact"] else "NO") if "reference_s" in r else "-"
        if "compiled_s" in r:
            comp = (
                f"{r['compiled_zone_ticks_per_s']:14,.0f} "
                f"{r['compiled_1t_zone_ticks_per_s']:14,.0f} "
                f"{'yes' if r['compiled_exact'] else 'NO':>6}"
            )
        else:
            comp = f"{'-':>14} {'-':>14} {'-':>6}"
        print(
            f"{r['case']:8} {r['profile']:7} {r['backend']:7} "
            f"{r['batched_ms_per_zone_tick']:13.3f} {r['loop_ms_per_zone_tick']:10.3f} "
            f"{r['batched_zone_ticks_per_s']:13,.0f} "
            f"{ref} {ratio} {exact:>6} "
            + (
                f"{r['host_syncs_per_tick']:10.1f} {r['array_ops_per_tick']:9.0f}"
                if "host_syncs_per_tick" in r
                else f"{'-':>10} {'-':>9}"
            )
            + f" {comp}"
        )
    record = {
        "benchmark": "tick",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "note": (
            "stress-highalloc-like pass after a warm-up (load + one nowait order-9 attempt per "
            "tick, kswapd, reactive kcompactd); ratio = batched zone-ticks/s / reference "
            "zone-ticks/s on the reference's zones, same run, both whole calls; loop only = "
            "ticks 2..T of the batched call, without building the state and copying results "
            "out; exact = identical TickResult; syncs/tick = host reads a CuPy run of the "
            "loop would make per tick (sweep.synccount, counted on NumPy), ops/tick = its "
            "array operations per tick (about CuPy's kernel launches); compiled = "
            "sweep.compiled_tick on every zone (parallel over zones, and on one thread), "
            "exact = == batched"
        ),
        "freed_memory_kept_in_heap": heap_kept,
        "rows": rows,
    }
    print(f"wrote {_write_record(Path(args.out), 'tick', record)}")
    ok = all(r.get("exact", True) and r.get("compiled_exact", True) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
