"""Benchmarks, outside the test suite: ``python -m sweep.bench compaction``.

Every speed is reported as a ratio against a baseline measured in the same run on the
same zones: the batched NumPy kernel against the per-zone reference
(tests/reference/compaction.py). The reference's results are also compared with the
batched ones, so a benchmark run doubles as an exactness check on large zones.
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

import numpy as np

from kernels.compaction import CompactParams, compact_node
from kernels.fragment import FragmentParams, make_zone_state
from kernels.rng import zone_seed
from kernels.zone import KernelProfile, ZoneState
from sweep.memory import keep_freed_memory

GIB_PAGES = 262144
CASES = {"1x128g": (1, 128 * GIB_PAGES), "64x1g": (64, GIB_PAGES)}


def _zones(nr_zones: int, nr_pages: int, seed: int) -> ZoneState:
    """The main job's default workload: random_mix with folios, pinned pages, pollution."""
    full = lambda v: np.full(nr_zones, v, dtype=np.float64)  # noqa: E731
    params = FragmentParams(
        layout="random_mix",
        nr_pages=nr_pages,
        seed=zone_seed(seed, np.arange(nr_zones)),
        free_fraction=full(0.4),
        unmovable_fraction=full(0.02),
        reclaimable_fraction=full(0.02),
        pinned_fraction=full(0.01),
        pollution=full(0.1),
        folio_fraction=full(0.25),
        folio_orders=(2, 4, 9),
    )
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
