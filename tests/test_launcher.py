"""``hydra/launcher=ray``: packing, sweep.nc, resume, worker loss, failures, bad input.

The multiruns run ``python -m sweep`` in a subprocess, each starting its own local Ray
(about 4 s); the in-process tests share the session's Ray (``ray_local``).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels.compaction import CompactCounters
from sweep.config import compose_config
from sweep.launcher import FAULT_ENV, Progress, plan_batches, run_batch, sweep_dataset, swept_keys
from sweep.results import open_sweep, write_netcdf
from sweep.runner import run_compact_node

COUNTERS = [f.name for f in dataclasses.fields(CompactCounters)]
GRID = [
    "policy=default,isolate_pinned",
    "kernel=v4_12,v6_19",
    "seed=0,1",
    "zone=tiny",
    "replicates=2",
]
NR_CELLS = 8


def multirun(
    cwd: Path, sweep_dir: Path, *overrides: str, ray: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "sweep", "-m"]
    if ray:
        args.append("hydra/launcher=ray")
    return subprocess.run(
        [*args, *overrides, f"hydra.sweep.dir={sweep_dir}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def cell_dataset(path: Path) -> xr.Dataset:
    return xr.load_dataset(path).drop_attrs()


def assert_same_numbers(a: xr.Dataset, b: xr.Dataset) -> None:
    """Every variable and coordinate equal, bit for bit (attributes aside)."""
    xr.testing.assert_equal(a.drop_attrs(), b.drop_attrs())


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8-cell grid run once with the Ray launcher (default packing: 2 tasks)."""
    root = tmp_path_factory.mktemp("ray_sweep")
    proc = multirun(root, root / "sweep", *GRID)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "2 Ray tasks" in proc.stdout + proc.stderr
    return root / "sweep"


# --------------------------------------------------------------------------------------
# Packing


def test_plan_batches_groups_and_never_splits_a_cell() -> None:
    cfgs = [
        compose_config(o)
        for o in (
            ["zone=tiny", "replicates=3"],  # 0: v6_19
            ["zone=tiny", "replicates=3", "kernel=v4_12"],  # 1: other profile
            ["zone=tiny", "replicates=3", "policy=isolate_pinned", "seed=5"],  # 2: same as 0
            ["zone=tiny", "replicates=9"],  # 3: bigger than the batch: alone
            ["zone=tiny", "replicates=2", "workload.pinned_fraction=0.1"],  # 4: packs with 2
            ["zone=1g", "replicates=1"],  # 5: other shape
            ["zone=tiny", "replicates=1", "workload.folio_orders=[2]"],  # 6: static param
        )
    ]
    assert plan_batches(cfgs, zones_per_task=6) == [[0, 2], [3], [4], [1], [5], [6]]
    assert plan_batches(cfgs, zones_per_task=1000) == [[0, 2, 3, 4], [1], [5], [6]]
    assert plan_batches(cfgs, zones_per_task=1) == [[0], [2], [3], [4], [1], [5], [6]]


def test_packed_batch_equals_cells_run_alone(ray_local) -> None:
    cfgs = [
        compose_config(["zone=tiny", "replicates=2", "seed=3"]),
        compose_config(
            ["zone=tiny", "replicates=3", "policy=isolate_pinned", "workload.pinned_fraction=0.1"]
        ),
        compose_config(["zone=tiny", "replicates=1", "zone.watermark_scale_factor=200"]),
    ]
    remote = ray_local.remote(run_batch)
    backend, results, _seconds = ray_local.get(remote.remote(cfgs))
    assert backend == "numpy"
    assert [r.nr_zones for r in results] == [2, 3, 1]
    for cfg, packed in zip(cfgs, results, strict=True):
        alone = run_compact_node(cfg, np)
        for name in COUNTERS:
            np.testing.assert_array_equal(packed.counters[name], alone.counters[name], name)
        for name in ("buddyinfo", "pagetypeinfo", "page_counts", "compaction_cost"):
            np.testing.assert_array_equal(getattr(packed, name), getattr(alone, name), name)


def test_swept_keys_are_named_as_given() -> None:
    cells = [["kernel=v4_12", "workload.pinned_fraction=0.1", "zone=tiny"]]
    cells.append(["kernel=v6_19", "workload.pinned_fraction=0.1", "zone=tiny"])
    cli = ["kernel=v4_12,v6_19", "workload.pinned_fraction=0.1", "zone=tiny"]
    assert swept_keys(cli, cells) == ["kernel"]
    assert swept_keys(["seed=range(2)", "kernel=v6_19"], [["seed=0"], ["seed=1"]]) == ["seed"]


# --------------------------------------------------------------------------------------
# End to end


def test_ray_sweep_layout_and_sweep_nc(ray_sweep: Path) -> None:
    for num in range(NR_CELLS):
        job = ray_sweep / str(num)
        for name in (
            "result.nc",
            ".hydra/config.yaml",
            ".hydra/hydra.yaml",
            ".hydra/overrides.yaml",
        ):
            assert (job / name).is_file(), job / name
        ds = xr.load_dataset(job / "result.nc")
        assert ds.sizes["replicate"] == 2
        assert len(ds.attrs["cell_hash"]) == 64
    assert (ray_sweep / "multirun.yaml").is_file()

    sweep = open_sweep(ray_sweep)
    assert list(sweep.sizes.items())[:4] == [
        ("policy", 2),
        ("kernel", 2),
        ("seed", 2),
        ("replicate", 2),
    ]
    assert {"snapshot", "buddy_order", "migratetype", "page_kind"} <= set(sweep.dims)
    assert sweep.policy.values.tolist() == ["default", "isolate_pinned"]
    assert sweep.kernel.values.tolist() == ["v4_12", "v6_19"]
    assert sweep.seed.values.tolist() == [0, 1]
    assert sweep.pgmigrate_success.dtype == np.int64
    assert sorted(sweep.job_dir.values.ravel().tolist()) == [str(n) for n in range(NR_CELLS)]
    # each cell's slice of sweep.nc is its result.nc
    for num in range(NR_CELLS):
        cell = xr.load_dataset(ray_sweep / str(num) / "result.nc")
        overrides = (ray_sweep / str(num) / ".hydra" / "overrides.yaml").read_text()
        sel = {
            "policy": "isolate_pinned" if "policy=isolate_pinned" in overrides else "default",
            "kernel": "v4_12" if "kernel=v4_12" in overrides else "v6_19",
            "seed": 1 if "seed=1" in overrides else 0,
        }
        part = sweep.sel(sel).drop_vars(["policy", "kernel", "seed", "cell_hash", "job_dir"])
        assert_same_numbers(part, cell)
        assert str(sweep.cell_hash.sel(sel).item()) == cell.attrs["cell_hash"]


def test_packed_equals_basic_launcher(ray_sweep: Path, tmp_path: Path) -> None:
    proc = multirun(tmp_path, tmp_path / "basic", *GRID, ray=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for num in range(NR_CELLS):
        packed = xr.load_dataset(ray_sweep / str(num) / "result.nc")
        alone = xr.load_dataset(tmp_path / "basic" / str(num) / "result.nc")
        assert packed.attrs["cell_hash"] == alone.attrs["cell_hash"]
        assert packed.attrs["config"] == alone.attrs["config"]
        assert_same_numbers(packed, alone)


def test_resume_skips_cells_that_are_done(ray_sweep: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(ray_sweep, sweep_dir)
    (sweep_dir / "3" / "result.nc").unlink()
    kept = {n: (sweep_dir / str(n) / "result.nc").stat() for n in range(NR_CELLS) if n != 3}
    proc = multirun(tmp_path, sweep_dir, *GRID)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "7 up to date" in proc.stdout + proc.stderr
    for n, st in kept.items():
        now = (sweep_dir / str(n) / "result.nc").stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), n
    assert_same_numbers(
        xr.load_dataset(sweep_dir / "3" / "result.nc"),
        xr.load_dataset(ray_sweep / "3" / "result.nc"),
    )
    assert_same_numbers(open_sweep(sweep_dir), open_sweep(ray_sweep))


def test_worker_killed_mid_sweep_is_retried(ray_sweep: Path, tmp_path: Path) -> None:
    marker = tmp_path / "killed-once"
    proc = multirun(
        tmp_path,
        tmp_path / "sweep",
        *GRID,
        "hydra.launcher.zones_per_task=4",  # 4 tasks of 2 cells
        env={FAULT_ENV: f"exit-once:{marker}"},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert marker.exists()  # a worker process did exit mid-sweep
    assert "4 Ray tasks" in proc.stdout + proc.stderr
    sweep = open_sweep(tmp_path / "sweep")
    job_dirs = sweep.job_dir.values.ravel().tolist()
    assert sorted(job_dirs) == [str(n) for n in range(NR_CELLS)]  # every cell exactly once
    # (cell_hash is left out: it changes with the code version, e.g. a commit meanwhile)
    left_out = ["job_dir", "cell_hash"]
    assert_same_numbers(sweep.drop_vars(left_out), open_sweep(ray_sweep).drop_vars(left_out))


def test_failing_batch_fails_only_its_cells(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = multirun(
        tmp_path,
        sweep_dir,
        "kernel=v4_12,v6_19",
        "seed=0,1",
        "zone=tiny",
        "replicates=2",
        "hydra.launcher.zones_per_task=2",  # one cell per task
        env={FAULT_ENV: "raise-seed:1"},
    )
    assert proc.returncode != 0
    assert "injected failure in a batch with seed=1" in proc.stderr + proc.stdout
    for num in range(4):
        overrides = (sweep_dir / str(num) / ".hydra" / "overrides.yaml").read_text()
        assert (sweep_dir / str(num) / "result.nc").exists() == ("seed=0" in overrides), num
    assert not (sweep_dir / "sweep.nc").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy.skip_pined=false,true"], "policy.skip_pined is not a config key"),
        (["workload.pinned_fraction=0.5,1.5"], "workload.pinned_fraction=1.5 is out of range"),
        (["no_such_key=1,2"], "no_such_key is not a config key"),
        (
            ["workload=snapshot", "workload.path=x.npz", "seed=0,1"],
            "workload.path=x.npz: no such file",
        ),
        (["seed=0,1", "hydra.launcher.zones_per_task=0"], "hydra.launcher.zones_per_task=0"),
    ],
    ids=["unknown-key", "out-of-range", "sweep-over-missing-key", "no-snapshot", "launcher-value"],
)
def test_bad_input_fails_before_any_task(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    sweep_dir = tmp_path / "sweep"
    zone = [] if "workload=snapshot" in overrides else ["zone=tiny"]
    proc = multirun(tmp_path, sweep_dir, *zone, "replicates=1", *overrides)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]
    assert not sweep_dir.exists()
    assert not (tmp_path / "multirun").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_live_line_on_a_tty_and_log_lines_otherwise(caplog) -> None:
    term = _Terminal()
    progress = Progress(nr_cells=4, nr_batches=2, nr_zones=8, stream=term)
    progress.batch_done(cells=2, zones=4, seconds=0.5, error=None)
    progress.batch_done(cells=2, zones=4, seconds=0.5, error=None)
    progress.close()
    lines = term.getvalue().split("\r")
    assert lines[1].startswith("[sweep] 2/4 cells, ") and "zones/s, ETA" in lines[1]
    assert lines[2].startswith("[sweep] 4/4 cells, ") and lines[2].endswith("\n")

    plain = io.StringIO()
    progress = Progress(nr_cells=4, nr_batches=2, nr_zones=8, stream=plain)
    with caplog.at_level(logging.INFO, logger="sweep.launcher"):
        progress.batch_done(cells=3, zones=6, seconds=1.25, error=None)
        progress.batch_done(cells=1, zones=2, seconds=0.0, error="RuntimeError: boom")
    assert plain.getvalue() == ""
    assert caplog.messages == [
        "batch 1/2: 3 cells, 6 zones, 1.25 s",
        "batch 2/2: 1 cells, 2 zones FAILED: RuntimeError: boom",
    ]


def _cell(value: int) -> xr.Dataset:
    return xr.Dataset(
        {"pgmigrate_success": ("replicate", np.array([value, value + 1], dtype=np.int64))},
        coords={"replicate": [0, 1]},
    )


def test_sweep_dataset_one_key_and_irregular_reloaded_cells(tmp_path: Path) -> None:
    """One swept key needs no MultiIndex; cells reloaded from result.nc (resume) keep no
    integer encoding that would turn a missing combination's NaN into garbage."""
    one = sweep_dataset(
        [({"policy": "b"}, _cell(20)), ({"policy": "a"}, _cell(10))], ["policy"], {}
    )
    assert list(one.policy.values) == ["a", "b"]
    assert one.pgmigrate_success.sel(policy="b").values.tolist() == [20, 21]

    path = tmp_path / "cell.nc"
    write_netcdf(_cell(30), path)
    reloaded = xr.open_dataset(path).load()
    parts = [
        ({"policy": "a", "seed": 0}, _cell(10)),
        ({"policy": "a", "seed": 1}, reloaded),
        ({"policy": "b", "seed": 0}, _cell(20)),
    ]
    ds = sweep_dataset(parts, ["policy", "seed"], {})
    write_netcdf(ds, tmp_path / "sweep.nc")
    back = xr.open_dataset(tmp_path / "sweep.nc").load()
    assert back.pgmigrate_success.sel(policy="a", seed=1).values.tolist() == [30, 31]
    assert np.isnan(back.pgmigrate_success.sel(policy="b", seed=1).values).all()


def test_grid_fast_path_equals_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """write_sweep stacks a full grid with NumPy (sweep.launcher._grid_dataset); it must
    give the Dataset that xr.concat + unstack gives, variable attributes included."""
    import sweep.launcher as launcher

    parts = []
    for n, (policy, seed) in enumerate([("b", 1), ("a", 0), ("b", 0), ("a", 1)]):
        ds = _cell(10 * n).assign(cost=("replicate", np.array([0.5, 1.5]) * n))
        ds["pgmigrate_success"].attrs = {"units": "pages", "long_name": "migrated"}
        ds["replicate"].attrs = {"long_name": "replicate zone"}
        parts.append(({"policy": policy, "seed": seed}, ds.assign(job_dir=((), str(n)))))
    fast = sweep_dataset(parts, ["policy", "seed"], {"title": "t"})
    monkeypatch.setattr(launcher, "_grid_dataset", lambda *a, **k: None)
    general = sweep_dataset(parts, ["policy", "seed"], {"title": "t"})
    xr.testing.assert_identical(fast, general)
    assert fast.pgmigrate_success.attrs["units"] == "pages"
    assert fast.pgmigrate_success.sel(policy="b", seed=0).values.tolist() == [20, 21]


def test_snapshot_sweep_runs_each_cell_as_its_own_task(tmp_path: Path) -> None:
    """workload=snapshot under the Ray launcher: one Ray task per cell, result.nc as the
    basic launcher writes it (same numbers as the cell run in process), sweep.nc over the
    swept keys with the snapshot's zone dimension."""
    from sweep.app import snapshot_dataset
    from sweep.runner import run_snapshot
    from sweep.snapshot import save_snapshot
    from tests.test_snapshot_workload import make_snapshot

    save_snapshot(make_snapshot(), tmp_path / "snap.npz")
    grid = [
        "workload=snapshot",
        "workload.path=snap.npz",  # relative to the driver's directory
        "replicates=2",
        "kernel=v4_12,v6_19",
        "workload.pinned_fraction=0.0,0.05",
    ]
    proc = multirun(tmp_path, tmp_path / "sweep", *grid)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "-> 4 Ray tasks" in proc.stdout + proc.stderr
    sweep = open_sweep(tmp_path / "sweep")
    assert list(sweep.sizes)[:4] == ["kernel", "workload.pinned_fraction", "zone", "replicate"]
    assert sweep.zone.values.tolist() == ["0:DMA32", "0:Normal"]
    for num in range(4):
        job = tmp_path / "sweep" / str(num)
        cell = xr.load_dataset(job / "result.nc")
        assert cell.attrs["snapshot_hostname"] == "fixture-host"
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        kernel = "v4_12" if "kernel=v4_12" in overrides else "v6_19"
        fraction = 0.05 if "pinned_fraction=0.05" in overrides else 0.0
        cfg = compose_config(
            ["workload=snapshot", f"workload.path={tmp_path / 'snap.npz'}", "replicates=2"]
            + [f"kernel={kernel}", f"workload.pinned_fraction={fraction}"]
        )
        alone = snapshot_dataset(cfg, {}, *run_snapshot(cfg, np))
        assert_same_numbers(cell, alone)
        part = sweep.sel(kernel=kernel, **{"workload.pinned_fraction": fraction})
        assert_same_numbers(
            part.drop_vars(["kernel", "workload.pinned_fraction"])[list(alone.data_vars)], alone
        )


def test_task_gpus_asks_for_a_gpu_only_where_there_is_one() -> None:
    from sweep.launcher import task_gpus

    assert task_gpus("auto", 8.0) == 1 and task_gpus("cupy", 1.0) == 1
    assert task_gpus("numpy", 8.0) == 0
    assert task_gpus("auto", 0.0) == 0 and task_gpus("cupy", 0.0) == 0


def test_plan_batches_caps_estimated_memory() -> None:
    """Batches are cut so their arrays fit ``memory_bytes``; a cell is never split."""
    from sweep.config import compose_config
    from sweep.launcher import plan_batches, zone_bytes

    cfgs = [compose_config(["zone=1g", "replicates=4", f"seed={s}"]) for s in range(4)]
    per_cell = 4 * zone_bytes(cfgs[0])
    assert plan_batches(cfgs, 64) == [[0, 1, 2, 3]]
    assert plan_batches(cfgs, 64, memory_bytes=2 * per_cell) == [[0, 1], [2, 3]]
    assert plan_batches(cfgs, 64, memory_bytes=per_cell // 2) == [[0], [1], [2], [3]]
    tick = compose_config(["workload=holepunch", "zone=1g"])
    assert zone_bytes(tick) > zone_bytes(cfgs[0])  # the tick engine keeps more per page
