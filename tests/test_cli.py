"""``python -m sweep`` end to end, in a subprocess, on tiny zones."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels.backend import gpu_available
from kernels.compaction import CompactCounters
from sweep.config import compose_config
from sweep.runner import InvariantError, check_invariants, run_compact_node, take_snapshot
from tests.clirun import run_sweep

BUDDYINFO_LINE = re.compile(r"^Node +\d+, zone +Normal( +\d+){11} ?$")
COUNTERS = [f.name for f in dataclasses.fields(CompactCounters)]


def buddyinfo_blocks(stdout: str) -> list[list[str]]:
    """Runs of consecutive /proc/buddyinfo lines, each after a ``# ... buddyinfo`` heading."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("#") and "buddyinfo" in line:
            current = []
            blocks.append(current)
        elif current is not None and BUDDYINFO_LINE.match(line):
            current.append(line)
        else:
            current = None
    return blocks


@pytest.mark.parametrize(
    "extra",
    [[], ["kernel=v4_12"], ["policy=isolate_pinned", "workload.pinned_fraction=0.1"]],
    ids=["v6_19", "v4_12", "isolate_pinned"],
)
def test_compact_node_run(tmp_path: Path, extra: list[str]) -> None:
    run_dir = tmp_path / "run"
    proc = run_sweep(
        tmp_path,
        "workload=compact_node",
        "zone=tiny",
        "replicates=3",
        *extra,
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    before, after = buddyinfo_blocks(proc.stdout)
    assert len(before) == len(after) == 3
    assert [line.split(",")[0] for line in after] == ["Node 0", "Node 1", "Node 2"]
    assert "before compaction" in proc.stdout and "after compaction" in proc.stdout
    for name in [*COUNTERS, "compaction_cost"]:
        assert re.search(rf"^{name} ", proc.stdout, re.M), name

    with xr.open_dataset(run_dir / "result.nc", engine="netcdf4") as ds:
        ds.load()
    assert dict(ds.sizes) == {
        "replicate": 3,
        "snapshot": 2,
        "buddy_order": 11,
        "migratetype": 6,
        "page_kind": 5,
    }
    assert ds.snapshot.values.tolist() == ["initial", "final"]
    for name in [*COUNTERS, "compaction_cost"]:
        assert ds[name].dims == ("replicate",)
    assert ds.buddyinfo.dims == ("replicate", "snapshot", "buddy_order")
    assert ds.pagetypeinfo.dims == ("replicate", "snapshot", "migratetype", "buddy_order")
    assert ds.page_counts.sum("page_kind").values.tolist() == [[4096, 4096]] * 3
    free_pages = (ds.buddyinfo * 2**ds.buddy_order).sum("buddy_order")
    np.testing.assert_array_equal(free_pages.values, ds.nr_free_pages.values)
    assert float(ds.fragmentation_index.min()) >= -1.0 and float(ds.unusable_index.max()) <= 1.0
    for var in ds.data_vars.values():
        assert var.attrs["units"] and var.attrs["long_name"], var.name
    assert ds.attrs["Conventions"] == "CF-1.11"
    profile = "v4_12" if "kernel=v4_12" in extra else "v6_19"
    assert ds.attrs["kernel_profile"] == profile
    assert ds.attrs["skip_pinned"] == (0 if "policy=isolate_pinned" in extra else 1)
    assert "replicates: 3" in ds.attrs["config"] and ds.attrs["code_version"]
    if "policy=isolate_pinned" in extra:
        assert int(ds.pgmigrate_fail.min()) > 0  # pinned pages are isolated, then fail

    # Hydra's own run record sits beside the result; nothing is left in the cwd.
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert not list(run_dir.glob(".result.nc.*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "workload.pinned_fraction=1.5",
            "error: workload.pinned_fraction=1.5 is out of range [0, 1]",
        ),
        ("policy.skip_pined=false", "error: policy.skip_pined is not a config key"),
        ("order=11", "error: order=11 is out of range [-1, 10]"),
    ],
)
def test_bad_override_fails_before_any_run_directory(
    tmp_path: Path, override: str, message: str
) -> None:
    run_dir = tmp_path / "run"
    proc = run_sweep(tmp_path, "zone=tiny", override, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not run_dir.exists()
    assert list(tmp_path.iterdir()) == []  # no outputs/ either


def test_bad_multirun_cell_fails_before_any_sweep_directory(tmp_path: Path) -> None:
    proc = run_sweep(
        tmp_path,
        "-m",
        "zone=tiny",
        "workload.pinned_fraction=0,1.5",
        f"hydra.sweep.dir={tmp_path / 'multi'}",
    )
    assert proc.returncode == 2
    assert "error: workload.pinned_fraction=1.5" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(gpu_available(), reason="a GPU is present, so backend=cupy is valid")
def test_cupy_backend_without_gpu_is_a_clean_error(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "zone=tiny", "backend=cupy", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: backend=cupy")
    assert list(tmp_path.iterdir()) == []


def test_invariant_check_catches_a_lost_page() -> None:
    config = compose_config(["zone=tiny", "replicates=2", "backend=numpy"])
    result = run_compact_node(config, np)  # checks the invariants itself
    assert result.page_counts.sum(axis=2).tolist() == [[4096, 4096]] * 2

    from kernels.fragment import make_zone_state
    from sweep.expand import compact_node_params

    params = compact_node_params(config, np)
    state = make_zone_state(
        np, params.fragment, params.min_free_kbytes, params.watermark_scale_factor
    )
    before = take_snapshot(state)
    check_invariants(before, before, 4096)
    page_state = state.page_state.copy()
    free = np.flatnonzero(page_state[1] == 0)[0]
    page_state[1, free] = 2  # a free page of replicate 1 turns unmovable
    broken = take_snapshot(dataclasses.replace(state, page_state=page_state))
    with pytest.raises(InvariantError, match=r"unmovable pages changed.*\(replicates \[1\]\)"):
        check_invariants(before, broken, 4096)
