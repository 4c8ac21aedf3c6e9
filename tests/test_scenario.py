"""The time-stepped workloads end to end: configs, programs, the CLI, result.nc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels.program import (
    CONTIG_NAMES,
    COUNTERS,
    GFP_MOVABLE,
    GFP_NOWAIT,
    GFP_THP,
    KCOMPACTD_PROACTIVE_DEMAND,
    KCOMPACTD_PROACTIVE_SCORE,
    KCOMPACTD_REACTIVE,
    MT_CMA,
)
from sweep.config import ConfigError, compose_config
from sweep.scenario import (
    attempt_interval_ms,
    build_program,
    kcompactd_mode,
    run_scenario_batch,
    success_runs,
)
from tests.clirun import run_sweep

# 8 pageblocks cannot spare whole unmovable/reclaimable blocks next to 94 % pinned memory.
TINY_PINNED = ["zone=tiny", "workload.unmovable_fraction=0", "workload.reclaimable_fraction=0"]
TINY_STRESS = [
    "workload=stress_highalloc",
    "zone=tiny",
    "replicates=2",
    "workload.warmup_ticks=20",
]


def test_stress_highalloc_program_follows_mmtests() -> None:
    cfg = compose_config(["workload=stress_highalloc", "zone=1g"])
    prog = build_program(cfg)
    assert [p.name for p in prog.phases] == ["warmup", "pass1", "pass2", "pass3"]
    # MS_DELAY for order 9 at 16 MB/s is 125 ms; HIGHALLOC_COUNT is 95 % of memory.
    assert prog.tick_ms == 125.0 == attempt_interval_ms(9, 16)
    assert attempt_interval_ms(4, 16) == 3
    count = (262144 >> 9) * 95 // 100
    for p in prog.phases[1:]:
        assert p.ticks == count and p.attempt_every == 1 and p.keep
        assert p.attempt_gfp == GFP_NOWAIT
    warm, pass1, _, pass3 = prog.phases
    assert warm.attempt_every == 0 and warm.allocs_per_tick > pass1.allocs_per_tick > 0
    assert pass3.kill_anon and pass3.drop_caches and pass3.min_free_kbytes == 1024
    assert pass3.allocs_per_tick == pass3.frees_per_tick == 0
    cfg4 = compose_config(["workload=stress_highalloc", "zone=1g", "order=4"])
    prog4 = build_program(cfg4)
    assert prog4.tick_ms == 3.0 and prog4.phases[1].ticks == (262144 >> 4) * 95 // 100


@pytest.mark.parametrize(
    ("overrides", "gfp"),
    [
        (["workload=holepunch"], GFP_NOWAIT),
        (["workload=pinned"], GFP_THP),
        (["workload=stress_highalloc", "workload.gfp=movable"], GFP_MOVABLE),
    ],
)
def test_workload_gfp(overrides: list[str], gfp: int) -> None:
    prog = build_program(compose_config(overrides))
    assert all(p.attempt_gfp == gfp for p in prog.phases if p.attempt_every)


def test_kcompactd_auto_follows_the_kernel() -> None:
    assert kcompactd_mode(compose_config(["kernel=v4_12"])) == KCOMPACTD_REACTIVE
    assert kcompactd_mode(compose_config(["kernel=v6_19"])) == KCOMPACTD_PROACTIVE_SCORE
    demand = compose_config(["policy=proactive_demand", "workload=holepunch"])
    assert kcompactd_mode(demand) == KCOMPACTD_PROACTIVE_DEMAND
    assert demand.policy.stop_below_watermark


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["workload=holepunch", "order=2", "workload.gfp=movable"], "order"),
        (["workload=holepunch", "order=11"], "order"),
        (["workload=pinned", "workload.attempts=0"], "workload.attempts"),
        (["workload=holepunch", "policy.kcompactd=eager"], "policy.kcompactd"),
        (["workload=holepunch", "zone.nr_pages=1536"], "zone.nr_pages"),
        (["workload=stress_highalloc", "workload.load_mix=[0.5,0.5]"], "workload.load_mix"),
        (["workload=holepunch", "workload.gfp=atomic"], "workload.gfp"),
        (["workload=holepunch", "workload.layout=random_mix"], "workload.layout"),
        (["workload=pinned", "workload.pinned_fraction=0.99"], "workload."),
        (["order=4"], "order"),  # compact_node is whole-zone only
        (["workload=holepunch", "zone.min_free_kbytes=64"], "zone.min_free_kbytes"),
        (["workload=stress_highalloc", "workload.tick_ms=5"], "workload.tick_ms"),
        (
            ["workload=stress_highalloc", "zone=tiny", "workload.rested_min_free_kbytes=8192"],
            "workload.rested_min_free_kbytes",
        ),
        (["policy=proactive_demand"], "policy.kcompactd"),  # no kcompactd in compact_node
        (["workload=bulk_alloc", "workload.method=dma"], "workload.method"),
        (["workload=bulk_alloc", "workload.cma_mb=502"], "workload.cma_mb"),
        (["workload=bulk_alloc", "zone=tiny"], "workload.cma_mb"),  # 500 MB > 16 MB zone
        (["workload=bulk_alloc", "workload.count=32001"], "workload.count"),  # > 500 MB
        (["workload=bulk_alloc", "workload.trials=0"], "workload.trials"),
        (["workload=bulk_alloc", "workload.trial_every=0"], "workload.trial_every"),
        (["workload=bulk_alloc", "workload.busy_file=1.5"], "workload.busy_file"),
        (["workload=bulk_alloc", "workload.gfp=thp"], "workload.gfp"),
        (["workload=bulk_alloc", "workload.load_mix=[1,1,0,0]"], "workload.load_mix"),
        (["workload=bulk_alloc", "workload.load_occupancy=0"], "workload.load_occupancy"),
        (["workload=bulk_alloc", "order=11"], "order"),
    ],
)
def test_bad_scenario_input_names_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(overrides)
    assert str(info.value).startswith(key), str(info.value)


def test_bad_scenario_input_on_the_command_line_leaves_nothing(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "workload=pinned", "workload.attempts=-3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: workload.attempts")
    assert not (tmp_path / "outputs").exists()


def test_success_runs() -> None:
    assert success_runs(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=np.int8)) == (2.0, 3)
    assert success_runs(np.array([0, 0], dtype=np.int8)) == (0.0, 0)


@pytest.mark.parametrize(
    "overrides",
    [
        ["workload=holepunch", "zone=tiny", "workload.attempts=40", "replicates=2"],
        ["workload=pinned", *TINY_PINNED, "workload.attempts=6", "replicates=2", "kernel=v4_12"],
        [*TINY_STRESS, "order=9"],
    ],
    ids=["holepunch", "pinned", "stress_highalloc"],
)
def test_scenario_cli_writes_result(tmp_path: Path, overrides: list[str]) -> None:
    run_dir = tmp_path / "run"
    proc = run_sweep(tmp_path, *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "Success %" in proc.stdout and "zone-ticks" in proc.stdout
    with xr.open_dataset(run_dir / "result.nc") as ds:
        assert ds.sizes["replicate"] == 2 and ds.sizes["buddy_order"] == 11
        for name in COUNTERS:
            assert ds[name].dims == ("replicate", "phase"), name
        stall = ds.compact_stall.values
        assert (stall == ds.compact_success.values + ds.compact_fail.values).all()
        rate = ds.success_rate.values
        assert np.nanmin(rate) >= 0 and np.nanmax(rate) <= 100
        assert int(ds.alloc_attempts.sum()) == ds.sizes["attempt"] * 2
        assert ds.attempt_success.sum() == ds.alloc_success.sum()
        assert ds.attrs["workload"] == overrides[0].split("=")[1]
        assert (ds.page_counts.sum("page_kind") == 4096).all()


def test_scenario_batch_equals_cells_alone() -> None:
    """Cells packed into one batch give what each gives alone (batch invariance)."""
    base = ["workload=holepunch", "zone=tiny", "workload.attempts=30", "replicates=2"]
    cfgs = [
        compose_config([*base, "seed=1"]),
        compose_config([*base, "seed=2", "policy=proactive_demand"]),
        compose_config([*base, "seed=3", "order=9"]),
    ]
    together = run_scenario_batch(cfgs, np)
    for cfg, got in zip(cfgs, together, strict=True):
        [alone] = run_scenario_batch([cfg], np)
        np.testing.assert_array_equal(got.counters, alone.counters)
        np.testing.assert_array_equal(got.attempts, alone.attempts)
        np.testing.assert_array_equal(got.buddyinfo, alone.buddyinfo)


def test_pinned_policy_direction() -> None:
    """Seed 003: skipping pinned pages removes (nearly) all migration failures and LRU locks."""
    base = ["workload=pinned", *TINY_PINNED, "workload.attempts=8", "replicates=2"]
    [skip] = run_scenario_batch([compose_config([*base, "policy=default"])], np)
    [isolate] = run_scenario_batch([compose_config([*base, "policy=isolate_pinned"])], np)
    idx = {name: i for i, name in enumerate(COUNTERS)}
    fails = idx["pgmigrate_fail"]
    assert isolate.counters[..., fails].sum() > 0
    # Without pins in the way the only failures left are -ENOMEM (out of free targets).
    assert skip.counters[..., fails].sum() * 10 <= isolate.counters[..., fails].sum()
    locks = idx["lru_lock_acquisitions"]
    assert isolate.counters[..., locks].sum() > skip.counters[..., locks].sum()


def test_final_state_check_catches_corruption() -> None:
    from kernels.tick import run_program
    from kernels.zone import KernelProfile
    from sweep.scenario import ScenarioInvariantError, cell_inputs, check_final_state

    cfg = compose_config(["workload=holepunch", "zone=tiny", "workload.attempts=5"])
    cell = cell_inputs(cfg, np)
    res = run_program(cell.kind, cell.block_mt, cell.zones, cell.program, KernelProfile.V6_19)
    check_final_state(res)  # a real run passes
    broken = np.flatnonzero(res.buddy_order[1] >= 0)[0]
    res.kind[1, broken] = 1  # an allocated page inside a free block
    with pytest.raises(ScenarioInvariantError, match="free pages"):
        check_final_state(res)


def test_scenario_sweep_under_the_ray_launcher(tmp_path: Path) -> None:
    """A time-stepped grid through hydra/launcher=ray: sweep.nc equals each cell run alone."""
    from sweep.results import open_sweep

    sweep_dir = tmp_path / "grid"
    base = ["workload=holepunch", "zone=tiny", "workload.attempts=12", "replicates=2"]
    proc = run_sweep(
        tmp_path,
        "-m",
        "hydra/launcher=ray",
        *base,
        "policy=reactive,proactive_demand",
        "kernel=v4_12,v6_19",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = open_sweep(sweep_dir)
    assert ds.sizes["policy"] == 2 and ds.sizes["kernel"] == 2 and ds.sizes["replicate"] == 2
    for policy in ("reactive", "proactive_demand"):
        for kernel in ("v4_12", "v6_19"):
            cfg = compose_config([*base, f"policy={policy}", f"kernel={kernel}"])
            [alone] = run_scenario_batch([cfg], np)
            cell = ds.sel(policy=policy, kernel=kernel)
            for i, name in enumerate(COUNTERS):
                np.testing.assert_array_equal(cell[name].values, alone.counters[:, :, i])
            np.testing.assert_array_equal(cell.attempt_success.values, alone.attempts)


def test_progress_line_reports_and_finishes() -> None:
    import io

    from sweep.scenario import ProgressLine

    out = io.StringIO()
    line = ProgressLine("# run", every=0.0, stream=out)
    line(1, 4)
    line(4, 4)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("# run: tick 1/4 (25%)")
    assert lines[-1].startswith("# run: tick 4/4 (100%)")


def test_attempt_migratetype_follows_the_gfp_class() -> None:
    from kernels.zone import MigrateType

    nowait = build_program(compose_config(["workload=holepunch"]))
    assert nowait.phases[0].attempt_mt == MigrateType.UNMOVABLE  # GFP_NOWAIT: no __GFP_MOVABLE
    thp = build_program(compose_config(["workload=pinned"]))
    assert thp.phases[0].attempt_mt == MigrateType.MOVABLE
    forced = build_program(compose_config(["workload=holepunch", "workload.attempt_mt=movable"]))
    assert forced.phases[0].attempt_mt == MigrateType.MOVABLE


def test_sweep_dataset_joins_cells_with_different_time_axes() -> None:
    """order=4,9 of stress_highalloc: different tick lengths and attempt counts join outer."""
    from sweep.launcher import sweep_dataset
    from sweep.scenario import build_scenario_dataset

    parts = []
    for order in (4, 9):
        cfg = compose_config([*TINY_STRESS, f"order={order}", "replicates=1"])
        [res] = run_scenario_batch([cfg], np)
        parts.append(({"order": order}, build_scenario_dataset(res, {})))
    out = sweep_dataset(parts, ["order"], {})
    sizes = [p[1].sizes["attempt"] for p in parts]
    assert out.sizes["attempt"] == max(sizes) and sizes[0] != sizes[1]
    short = int(np.argmin(sizes))
    tail = out.attempt_success.isel(order=short, attempt=slice(min(sizes), None))
    assert bool(tail.isnull().all())  # padding, not made-up outcomes
    for i, (_, ds) in enumerate(parts):
        np.testing.assert_array_equal(out.alloc_success.isel(order=i).values, ds.alloc_success)


def test_every_scenario_variable_has_units_and_long_name(tmp_path: Path) -> None:
    from sweep.scenario import build_scenario_dataset

    cfg = compose_config(["workload=holepunch", "zone=tiny", "workload.attempts=3"])
    [res] = run_scenario_batch([cfg], np)
    ds = build_scenario_dataset(res, {"title": "t"})
    for name, var in ds.data_vars.items():
        assert var.attrs.get("units") and var.attrs.get("long_name"), name


TINY_BULK = [
    "workload=bulk_alloc",
    "zone=tiny",
    "replicates=2",
    "workload.cma_mb=4",
    "workload.count=40",
    "workload.trials=2",
    "workload.trial_every=2",
    "workload.warmup_ticks=10",
]


def test_bulk_alloc_program_follows_the_seed() -> None:
    """Seed 004's setup: 1.5 GB zone, 500 MB CMA at the top, 10 trials of 4800 x order 4
    under stress_highalloc's build load; no high-order attempts."""
    from sweep.scenario import cell_inputs

    cfg = compose_config(["workload=bulk_alloc", "zone=1g5", "replicates=1"])
    prog = build_program(cfg)
    assert [p.name for p in prog.phases] == ["warmup", "trials"]
    warm, trials = prog.phases
    assert prog.n_trials == 10 and trials.contig_every == 10 and trials.ticks == 100
    assert (trials.contig_count, trials.contig_order) == (4800, 4)
    assert prog.n_attempts == 0 and warm.contig_every == 0
    assert trials.allocs_per_tick == 200 and warm.allocs_per_tick == 5899  # 1.5 zones / 100
    assert trials.alloc_weights == warm.alloc_weights == (0.45, 0.45, 0.03, 0.07)
    cell = cell_inputs(cfg, np)
    blocks = 393216 // 512
    assert (cell.block_mt[0, blocks - 250 :] == MT_CMA).all()  # 500 MB = 250 pageblocks
    assert (cell.block_mt[0, : blocks - 250] == 1).all() and (cell.kind == 0).all()
    assert cell.zones.contig_method[0] == CONTIG_NAMES.index("bulk")
    assert cell.zones.busy_file[0] == 0.01


def test_bulk_alloc_cli_writes_trials(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_sweep(tmp_path, *TINY_BULK, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "bulk_alloc trials (bulk)" in proc.stdout
    with xr.open_dataset(run_dir / "result.nc") as ds:
        assert ds.sizes["trial"] == 2 and ds.sizes["replicate"] == 2
        got = ds.trial_obtained.values
        assert (got >= 0).all() and (got <= 40).all() and got.sum() > 0
        assert (ds.trial_complete.values == (got == 40)).all()
        assert (ds.trials_complete.values == (got == 40).sum(axis=1)).all()
        assert (ds.trial_windows.values == 1).all()  # one alloc_pages_bulk call
        assert list(ds.trial_time.values) == [1.2, 1.4]  # 10 warm-up ticks + 2, + 4
        assert ds.trial_migrated.attrs["units"] == "pages"
        for name, var in ds.data_vars.items():
            assert var.attrs.get("units") and var.attrs.get("long_name"), name


def test_bulk_alloc_methods_batch_together() -> None:
    """Cells differing only in workload.method / busy_file share one batch (the method is
    a per-zone array) and give what each gives alone; the range method fails where the
    best-effort one does not."""
    from sweep.scenario import scenario_batch_key

    cfgs = [
        compose_config([*TINY_BULK, f"workload.method={m}", "workload.busy_file=0.2"])
        for m in ("bulk", "cma_range", "cma_order10")
    ]
    assert len({scenario_batch_key(c) for c in cfgs}) == 1
    together = run_scenario_batch(cfgs, np, check_invariants=True)
    for cfg, got in zip(cfgs, together, strict=True):
        [alone] = run_scenario_batch([cfg], np)
        np.testing.assert_array_equal(got.trials, alone.trials)
        np.testing.assert_array_equal(got.counters, alone.counters)
    obtained = [r.trials[:, :, 0] for r in together]
    assert (obtained[0] > 0).all() and (obtained[1] == 0).all()  # bulk vs one 640-page range
