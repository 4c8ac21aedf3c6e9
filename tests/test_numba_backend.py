"""backend=numba: the time-stepped workloads on the compiled engine (sweep/compiled_tick.py)
give the batched engine's result.nc, and what it cannot run is refused before any run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels.program import COUNTERS
from sweep.app import backend_name, select_backend
from sweep.config import ConfigError, compose_config, validate
from sweep.expand import check_feasible
from sweep.scenario import numba_can_run, run_scenario_batch
from tests.clirun import run_sweep
from tests.test_scenario import TINY_PINNED, TINY_STRESS

CELLS = {
    "holepunch": ["workload=holepunch", "zone=tiny", "workload.attempts=40", "replicates=3"],
    "pinned": ["workload=pinned", *TINY_PINNED, "workload.attempts=6", "replicates=2"],
    "stress_highalloc": [*TINY_STRESS, "order=9", "kernel=v4_12"],
    "regions_plain": [
        "workload=regions",
        "zone.nr_pages=32768",
        "workload.region_mb=16",
        "replicates=2",
        "policy=default",
        "workload.cycle_ticks=30",
        "workload.load_pages_per_s=1250",
    ],  # fmt: skip
}


def assert_same_result(ra, rb, name: str) -> None:
    """Two ScenarioResults are equal in every field (arrays, scalars, shapes)."""
    for f in dataclasses.fields(ra):
        x, y = getattr(ra, f.name), getattr(rb, f.name)
        if f.name == "scalars":
            assert set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x), name
        elif x is None or isinstance(x, int | tuple):
            assert x == y, f"{name}: {f.name}"
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"{name}: {f.name}")


@pytest.mark.parametrize("name", sorted(CELLS))
def test_numba_equals_numpy_in_process(name: str, monkeypatch) -> None:
    import sweep.compiled_tick as ct

    calls = []
    real = ct.run_program_compiled

    def spy(*a, **kw):
        calls.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(ct, "run_program_compiled", spy)
    overrides = CELLS[name]
    a = compose_config([*overrides, "backend=numpy"])
    b = compose_config([*overrides, "backend=numba"])
    for cfg in (a, b):
        validate(cfg)
        check_feasible(cfg)
    [ra] = run_scenario_batch([a], select_backend("numpy"))
    [rb] = run_scenario_batch([b], select_backend("numba"), compiled_parallel=False)
    assert_same_result(ra, rb, name)
    assert ra.counters.sum() > 0  # something happened
    assert calls == [{"parallel": False}]  # the numba cell ran on the compiled engine, once
    assert backend_name(b, np) == "numba" and backend_name(a, np) == "numpy"


def test_numba_cli_writes_the_numpy_result(tmp_path: Path) -> None:
    out, logs = {}, {}
    for backend in ("numpy", "numba"):
        run_dir = tmp_path / backend
        proc = run_sweep(
            tmp_path, *CELLS["stress_highalloc"], f"backend={backend}", f"hydra.run.dir={run_dir}"
        )
        assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
        out[backend] = xr.load_dataset(run_dir / "result.nc")
        logs[backend] = proc.stdout
    a, b = out["numpy"], out["numba"]
    assert a.attrs["backend"] == "numpy" and b.attrs["backend"] == "numba"
    assert "hint: on a CPU, backend=numba" in logs["numpy"] and "hint" not in logs["numba"]
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        assert a[v].equals(b[v]), v
    for name in COUNTERS:
        assert name in b


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["workload=compact_node", "zone=tiny"], "time-stepped workloads only"),
        (["workload=bulk_alloc"], "MIGRATE_CMA"),
        (["workload=regions", "policy=regions_sorted"], "sorted_freelists"),
        (["workload=regions", "policy=regions"], "sorted_freelists"),
    ],
)
def test_numba_refuses_what_it_cannot_run(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match="backend") as exc:
        cfg = compose_config([*overrides, "backend=numba"])
        validate(cfg)
        check_feasible(cfg)
    assert words in str(exc.value)
    if "MIGRATE_CMA" in words or "sorted" in words:  # the hint must not suggest it
        assert not numba_can_run(compose_config(overrides))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_numba_hint_only_where_numba_runs(name: str) -> None:
    cfg = compose_config([*CELLS[name], "backend=numba"])
    assert numba_can_run(cfg)
    validate(cfg)
    check_feasible(cfg)  # no ConfigError: the hint's promise holds


def test_numba_refusal_on_the_command_line_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_sweep(tmp_path, "workload=bulk_alloc", "backend=numba", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2, proc.stderr
    assert "backend=numba does not support MIGRATE_CMA" in proc.stderr
    assert not run_dir.exists()


def test_numba_under_the_ray_launcher(tmp_path: Path) -> None:
    """A grid through hydra/launcher=ray on the compiled engine: each cell as numpy alone."""
    from sweep.results import open_sweep

    sweep_dir = tmp_path / "grid"
    base = ["workload=holepunch", "zone=tiny", "workload.attempts=12", "replicates=2"]
    proc = run_sweep(
        tmp_path, "-m", "hydra/launcher=ray", *base, "backend=numba", "kernel=v4_12,v6_19",
        f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = open_sweep(sweep_dir)
    for kernel in ("v4_12", "v6_19"):
        [alone] = run_scenario_batch([compose_config([*base, f"kernel={kernel}"])], np)
        cell = ds.sel(kernel=kernel)
        for i, name in enumerate(COUNTERS):
            np.testing.assert_array_equal(cell[name].values, alone.counters[:, :, i])


@pytest.mark.parametrize("name", ["pinned", "stress_highalloc"])
def test_numba_cuda_equals_numpy_in_process(name: str, monkeypatch) -> None:
    """backend=numba_cuda: the cells run on sweep.cuda_tick (on Numba's CUDA simulator
    without a GPU, tests/conftest.py), with progress per chunk, and give NumPy's result."""
    import sweep.cuda_tick as cuda_tick

    calls = []
    real = cuda_tick.run_program_cuda

    def spy(*a, **kw):
        calls.append(sorted(kw))
        return real(*a, **kw)

    monkeypatch.setattr(cuda_tick, "run_program_cuda", spy)
    a = compose_config([*CELLS[name], "backend=numpy"])
    b = compose_config([*CELLS[name], "backend=numba_cuda"])
    for cfg in (a, b):
        validate(cfg)
        check_feasible(cfg)
    [ra] = run_scenario_batch([a], select_backend("numpy"))
    seen = []
    [rb] = run_scenario_batch(
        [b], select_backend("numba_cuda"), progress=lambda t, n: seen.append((t, n))
    )
    assert_same_result(ra, rb, name)
    assert calls == [["progress"]]
    assert seen and seen[-1][0] == seen[-1][1] and len(seen) >= 1
    assert backend_name(b, np) == "numba_cuda"


def test_numba_cuda_without_a_gpu_is_a_config_error(monkeypatch) -> None:
    """Off the simulator and with no GPU: a ConfigError naming the need, before any run."""
    import sweep.cuda_tick as cuda_tick

    monkeypatch.setattr(cuda_tick, "is_simulator", lambda: False)
    monkeypatch.setattr(cuda_tick, "unavailable", lambda: "no CUDA GPU (test)")
    with pytest.raises(ConfigError, match=r"numba_cuda needs a CUDA GPU: no CUDA GPU \(test\)"):
        select_backend("numba_cuda")
    with pytest.raises(ConfigError, match=r"=numba_cuda runs the time-stepped workloads only"):
        compose_config(["workload=compact_node", "zone=tiny", "backend=numba_cuda"])
