"""Bad input to a ``hydra/launcher=ray`` multirun: one line naming the key, exit status 2,
no sweep directory, no Ray.

Each case runs ``python -m sweep``'s entry point (sweep.app.cli) in this process, so the
whole table costs about a second; tests/test_launcher.py runs some of the same cases as a
real subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sweep.app import EXIT_CONFIG_ERROR, check_multirun, cli

BASE = ["-m", "hydra/launcher=ray", "zone=tiny", "replicates=1", "seed=0,1"]

CASES = {
    "unknown-launcher-key": (
        ["hydra.launcher.zones_per_taks=3"],
        "error: hydra.launcher.zones_per_taks is not a config key",
    ),
    "zones-per-task-0": (
        ["hydra.launcher.zones_per_task=0"],
        "error: hydra.launcher.zones_per_task=0 must be >= 1",
    ),
    "num-cpus-negative": (
        ["hydra.launcher.num_cpus=-1"],
        "error: hydra.launcher.num_cpus=-1 must be >= 1",
    ),
    "max-retries-negative": (
        ["hydra.launcher.max_retries=-1"],
        "error: hydra.launcher.max_retries=-1 must be >= 0",
    ),
    "task-memory-zero": (
        ["hydra.launcher.task_memory_gb=0"],
        "error: hydra.launcher.task_memory_gb=0.0 must be > 0",
    ),
    "launcher-wrong-type": (
        ["hydra.launcher.zones_per_task=many"],
        "error: hydra.launcher.zones_per_task: Value 'many'",
    ),
    "unknown-config-key": (
        ["policy.skip_pined=false"],
        "error: policy.skip_pined is not a config key (did you mean policy.skip_pinned?)",
    ),
    "value-out-of-range": (
        ["workload.pinned_fraction=0.2,1.5"],
        "error: workload.pinned_fraction=1.5 is out of range [0, 1]",
    ),
    "sweep-over-missing-key": (["no_such_key=1,2"], "error: no_such_key is not a config key"),
    "sweep-over-missing-option": (
        ["zone=tiny,17g"],
        "error: zone=17g is not a known option",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_before_any_directory(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    extra, message = CASES[case]
    monkeypatch.chdir(tmp_path)
    sweep_dir = tmp_path / "sweep"
    monkeypatch.setattr(sys, "argv", ["sweep", *BASE, *extra, f"hydra.sweep.dir={sweep_dir}"])
    with pytest.raises(SystemExit) as exit_:
        cli()
    assert exit_.value.code == EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(message), lines[0]
    assert list(tmp_path.iterdir()) == []  # no multirun/, no sweep dir, no outputs/


def test_check_multirun_counts_and_accepts_a_good_sweep() -> None:
    overrides = ["hydra/launcher=ray", "zone=tiny", "replicates=1", "seed=range(3)"]
    assert check_multirun([*overrides, "policy=default,isolate_pinned"]) == 6
