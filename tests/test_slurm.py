"""slurm/sweep.sbatch and hydra/launcher=submitit_slurm on a real (local, one-node) cluster.

The cluster is the one slurm/setup-local-cluster.sh starts (.ci/run starts it before the
tests and stops it after, and sets COMPACTION_SWEEP_REQUIRE_SLURM=1). Without Slurm
installed these tests are skipped, unless COMPACTION_SWEEP_REQUIRE_SLURM is set: then
they fail. With Slurm installed but no cluster running, the fixture starts one with the
setup script (root only) and stops what it started.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sweep.app import check_multirun
from sweep.cells import multirun_session
from sweep.config import compose_config
from sweep.results import build_dataset, open_sweep
from sweep.runner import run_compact_node

ROOT = Path(__file__).resolve().parent.parent
SLURM_DIR = ROOT / "slurm"
STATE = Path(os.environ.get("COMPACTION_SWEEP_SLURM_DIR", "/tmp/compaction-sweep-slurm"))
REQUIRED = bool(os.environ.get("COMPACTION_SWEEP_REQUIRE_SLURM"))
GRID = ["zone=tiny", "replicates=2", "policy=default,isolate_pinned", "seed=0,1"]


def _slurm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SLURM_CONF", str(STATE / "etc" / "slurm.conf"))
    return env


def _cluster_up(env: dict[str, str]) -> bool:
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(re.search(r"idle|mixed|allocated", out.stdout))


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    """The environment for Slurm clients of a running local cluster."""
    if shutil.which("sbatch") is None:
        if REQUIRED:
            pytest.fail("COMPACTION_SWEEP_REQUIRE_SLURM is set but Slurm is not installed")
        pytest.skip("Slurm is not installed (bash slurm/setup-local-cluster.sh installs it)")
    env = _slurm_env()
    started = False
    if not _cluster_up(env):
        if os.geteuid() != 0:
            pytest.fail("no Slurm cluster is running and starting one needs root")
        subprocess.run(["bash", str(SLURM_DIR / "setup-local-cluster.sh")], check=True)
        started = True
    assert _cluster_up(env)
    yield env
    if started:
        subprocess.run(["bash", str(SLURM_DIR / "stop-local-cluster.sh")], check=False)


def _wait_for_job(job_id: str, env: dict[str, str], timeout: float) -> tuple[str, str]:
    """Poll ``scontrol show job`` (no accounting here) until the job ends: (state, exit code)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        state = re.search(r"JobState=(\S+)", out)
        if state and state.group(1) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            code = re.search(r"ExitCode=(\S+)", out)
            return state.group(1), code.group(1) if code else "?"
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], env=env, check=False)
            pytest.fail(f"Slurm job {job_id} still {state and state.group(1)} after {timeout} s")
        time.sleep(0.5)


@pytest.mark.slurm
def test_sweep_sbatch_on_the_local_cluster(slurm_env: dict[str, str], tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    log = tmp_path / "slurm-%j.out"
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--output={log}",
            f"--chdir={ROOT}",
            str(SLURM_DIR / "sweep.sbatch"),
            *GRID,
            f"hydra.sweep.dir={sweep_dir}",
        ],
        env={**slurm_env, "COMPACTION_SWEEP_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    job_id = submit.stdout.strip().split(";")[0]
    state, code = _wait_for_job(job_id, slurm_env, timeout=240)
    out = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert (state, code) == ("COMPLETED", "0:0"), out
    assert "Ray head on" in out and "sweep exited with status 0" in out, out

    ds = open_sweep(sweep_dir)
    assert list(ds.sizes.items())[:3] == [("policy", 2), ("seed", 2), ("replicate", 2)]
    assert ds.policy.values.tolist() == ["default", "isolate_pinned"]
    assert ds.seed.values.tolist() == [0, 1]
    # The same numbers as each cell run locally, alone, without Ray or Slurm.
    for policy in ("default", "isolate_pinned"):
        for seed in (0, 1):
            cfg = compose_config(["zone=tiny", "replicates=2", f"policy={policy}", f"seed={seed}"])
            local = build_dataset(run_compact_node(cfg, np), {})
            part = ds.sel(policy=policy, seed=seed).drop_vars(["policy", "seed"])
            xr.testing.assert_equal(part[list(local.data_vars)].drop_attrs(), local.drop_attrs())
            assert len(str(part.cell_hash.item())) == 64


def _submitit_installed() -> bool:
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        if REQUIRED:
            pytest.fail(
                "COMPACTION_SWEEP_REQUIRE_SLURM is set but the slurm extra is not installed"
            )
        return False
    return True


SUBMITIT = [
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.timeout_min=5",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]


def test_submitit_slurm_composes() -> None:
    """With the ``slurm`` extra installed, hydra/launcher=submitit_slurm composes and a
    sweep through it is checked like any other (no cluster needed)."""
    if not _submitit_installed():
        pytest.skip('the slurm extra is not installed (pip install -e ".[slurm]")')
    with multirun_session([*SUBMITIT, "zone=tiny"]) as (_ctx, master):
        assert master.hydra.launcher._target_.endswith(".SlurmLauncher")
        assert master.hydra.launcher.partition == "debug"
    assert check_multirun([*SUBMITIT, "zone=tiny", "replicates=1", "seed=0,1"]) == 2


@pytest.mark.slurm
def test_submitit_slurm_sweep_on_the_local_cluster(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    if not _submitit_installed():
        pytest.skip('the slurm extra is not installed (pip install -e ".[slurm]")')
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "-m", *SUBMITIT, "zone=tiny", "replicates=2", "seed=0,1"]
        + [f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for num, seed in enumerate((0, 1)):
        cell = xr.load_dataset(sweep_dir / str(num) / "result.nc")
        assert (sweep_dir / str(num) / ".hydra" / "overrides.yaml").is_file()
        local = build_dataset(
            run_compact_node(compose_config(["zone=tiny", "replicates=2", f"seed={seed}"]), np),
            {},
        )
        xr.testing.assert_equal(cell.drop_attrs(), local.drop_attrs())
