"""``python -m sweep.report``: figures, summary table and bad input.

The sweep.nc files are built in-process, without Ray: each cell runs
:func:`sweep.runner.run_compact_node` on tiny zones and the cells are joined with the
launcher's own :func:`sweep.launcher.sweep_dataset`, as ``hydra/launcher=ray`` does.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread

from sweep.config import compose_config
from sweep.launcher import sweep_dataset
from sweep.report import FIGURES, FREE_HIGH_COLUMN, main, summary_frame
from sweep.results import SWEEP_FILE, build_dataset, open_sweep, write_netcdf
from sweep.runner import run_compact_node

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = ["zone=tiny", "replicates=2"]
ONE_KEY = {"policy": ["default", "isolate_pinned"]}
TWO_KEYS = {"kernel": ["v4_12", "v6_19"], "workload.pinned_fraction": [0.0, 0.1]}


def make_sweep(sweep_dir: Path, grid: dict[str, list], *fixed: str) -> Path:
    """Run every cell of ``grid`` (key -> values) on tiny zones, with the ``fixed``
    overrides; write ``sweep.nc``."""
    keys = list(grid)
    parts = []
    for num, combo in enumerate(itertools.product(*grid.values())):
        coords = dict(zip(keys, combo, strict=True))
        overrides = [*BASE, *fixed, *(f"{k}={v}" for k, v in coords.items())]
        ds = build_dataset(run_compact_node(compose_config(overrides), np), {})
        ds = ds.assign(cell_hash=((), f"hash{num}"), job_dir=((), str(num)))
        parts.append((coords, ds))
    attrs = {"swept_keys": ",".join(keys), "cells": len(parts)}
    write_netcdf(sweep_dataset(parts, keys, attrs), sweep_dir / SWEEP_FILE)
    return sweep_dir


@pytest.fixture(scope="module")
def one_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("one_key"), ONE_KEY, "workload.pinned_fraction=0.05")


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("two_keys"), TWO_KEYS, "policy=isolate_pinned")


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweep.report", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The summary table: header and rows, split on whitespace."""
    lines = [line for line in stdout.splitlines() if line and not line.startswith("#")]
    return [line.split() for line in lines]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 20_000, (path, len(data))
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert float(pixels[..., :3].var()) > 1e-3, f"{path} looks blank"


@pytest.mark.parametrize("sweep", ["one_key", "two_keys"])
def test_cli_writes_figures_and_table(sweep: str, request: pytest.FixtureRequest) -> None:
    sweep_dir: Path = request.getfixturevalue(sweep)
    proc = report(str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    out = sweep_dir / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)  # no temp files left
    for name in FIGURES:
        assert_png(out / name)

    ds = open_sweep(sweep_dir)
    keys = ds.attrs["swept_keys"].split(",")
    header, *rows = table_rows(proc.stdout)
    assert header[: len(keys)] == keys
    assert header[len(keys) :] == [
        "pgmigrate_success",
        "pgmigrate_fail",
        "compact_migrate_scanned",
        "compact_free_scanned",
        "compaction_cost",
        FREE_HIGH_COLUMN,
    ]
    assert len(rows) == int(np.prod([ds.sizes[k] for k in keys]))
    for row in rows:
        sel = {}
        for key, text in zip(keys, row, strict=False):
            coord = ds[key].values
            sel[key] = coord.dtype.type(text) if coord.dtype.kind in "fi" else text
        cell = ds.sel(sel)
        numbers = [float(v.replace(",", "")) for v in row[len(keys) :]]
        for name, got in zip(header[len(keys) : -2], numbers, strict=False):
            assert got == pytest.approx(float(cell[name].mean()), abs=0.05), (row, name)
        assert numbers[-2] == pytest.approx(float(cell.compaction_cost.mean()), abs=5e-5)
        final = cell.buddyinfo.sel(snapshot="final")
        pages = final * 2**final.buddy_order
        pct = 100 * pages.sel(buddy_order=[9, 10]).sum("buddy_order") / pages.sum("buddy_order")
        assert numbers[-1] == pytest.approx(float(pct.mean()), abs=0.05), row


def test_summary_frame_matches_dataset(two_keys: Path) -> None:
    ds = open_sweep(two_keys)
    frame = summary_frame(ds)
    assert list(frame.index.names) == list(TWO_KEYS)
    assert len(frame) == 4
    for (kernel, pinned), row in frame.iterrows():
        cell = ds.sel({"kernel": kernel, "workload.pinned_fraction": pinned})
        for name in ("pgmigrate_success", "pgmigrate_fail", "compaction_cost"):
            assert row[name] == pytest.approx(float(cell[name].mean()))
    # Pinned pages isolated (policy=isolate_pinned) fail to migrate.
    fail = frame["pgmigrate_fail"]
    pinned = fail.xs(0.1, level="workload.pinned_fraction")
    assert (pinned > 10 * fail.xs(0.0, level="workload.pinned_fraction")).all()


def test_out_dir_and_irregular_sweep(two_keys: Path, tmp_path: Path) -> None:
    """A sweep missing a combination (NaN cells) still reports the cells it has."""
    ds = open_sweep(two_keys).drop_encoding()
    irregular = tmp_path / "irregular"
    parts = [
        (
            {"kernel": k, "workload.pinned_fraction": p},
            ds.sel(kernel=k)
            .sel({"workload.pinned_fraction": p})
            .drop_vars(["kernel", "workload.pinned_fraction"]),
        )
        for k, p in [("v4_12", 0.0), ("v6_19", 0.0), ("v6_19", 0.1)]
    ]
    keys = list(TWO_KEYS)
    write_netcdf(sweep_dataset(parts, keys, {"swept_keys": ",".join(keys)}), irregular / SWEEP_FILE)
    out = tmp_path / "figs"
    assert main([str(irregular), "--out", str(out)]) == 0
    assert len(summary_frame(open_sweep(irregular))) == 3
    for name in FIGURES:
        assert_png(out / name)
    assert not (irregular / "report").exists()


def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, one_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_sweep = tmp_path / "empty"
    not_a_sweep.mkdir()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / SWEEP_FILE).write_bytes(b"not a netCDF file\n")
    other = tmp_path / "other"
    other.mkdir()
    write_netcdf(xr.Dataset({"x": ("replicate", [1, 2])}), other / SWEEP_FILE)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        ([str(tmp_path / "missing")], "is not a directory"),
        ([str(a_file)], "is not a directory"),
        ([str(not_a_sweep)], "sweep.nc: no such file"),
        ([str(garbage)], "sweep.nc: cannot read it"),
        ([str(other)], "not a compaction-sweep sweep.nc"),
        ([str(one_key), "--out", str(a_file)], "is not a directory"),
    ]
    before = sorted(tmp_path.rglob("*"))
    for args, message in cases:
        assert main(args) == 2, args
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert out == "", args
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    proc = report(str(garbage))  # the same through ``python -m sweep.report``
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("error: ") and "cannot read it" in proc.stderr
    assert sorted(tmp_path.rglob("*")) == before
