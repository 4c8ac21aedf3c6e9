"""sweep.cells: the fast composition gives what Hydra's own composition and run_job give.

For every cell of a small grid with config-group overrides (``policy``, ``kernel``),
value overrides (``seed``, ``workload.pinned_fraction``) and a value override inside a
group (``policy.skip_pinned``), the cell is composed twice: through Hydra
(``load_sweep_config`` + ``run_job``, as Hydra's basic launcher does) and through
:class:`sweep.cells.CellComposer`. The task configs, the resolved YAML that the cell hash
is taken of, and the three ``.hydra`` files must be the same, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import run_job
from omegaconf import OmegaConf, open_dict

from sweep.cells import CellComposer, dump_yaml, multirun_session, task_config
from sweep.config import sweep_cells

GRID = [
    "hydra/launcher=ray",
    "zone=tiny",
    "replicates=1",
    "policy=default,isolate_pinned",
    "kernel=v4_12,v6_19",
    "seed=0,7",
    "workload.pinned_fraction=0.0,0.05",
    "policy.skip_pinned=false",
    "zone.watermark_scale_factor=20",
]


def _read(job_dir: Path) -> dict[str, str]:
    return {
        name: (job_dir / ".hydra" / name).read_text()
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml")
    }


def test_fast_composition_equals_hydra(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    with multirun_session([*GRID, f"hydra.sweep.dir={sweep_dir}"]) as (ctx, master):
        cells = sweep_cells(list(master.hydra.overrides.task))
        assert len(cells) == 16
        composer = CellComposer(ctx.config_loader, master)
        orig = HydraConfig.instance().cfg
        for num, overrides in enumerate(cells):
            # Hydra: what BasicLauncher does for job `num`
            sweep_config = ctx.config_loader.load_sweep_config(master, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = num
                sweep_config.hydra.job.num = num
            ret = run_job(
                hydra_context=ctx,
                task_function=lambda cfg: None,
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            hydra_files = _read(sweep_dir / str(num))
            hydra_task = task_config(sweep_config)

            # The fast path, into another directory
            cell = composer.compose(overrides)
            fast_dir = tmp_path / "fast" / str(num)
            files, log_name = composer.job_files(cell, num, sweep_dir / str(num))
            assert log_name == "sweep.log" and (sweep_dir / str(num) / log_name).is_file()
            for rel, text in files.items():
                (fast_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (fast_dir / rel).write_text(text)

            assert _read(fast_dir) == hydra_files, overrides
            assert cell.task_cfg == hydra_task
            assert OmegaConf.get_type(cell.task_cfg) is OmegaConf.get_type(hydra_task)
            assert cell.config_yaml == OmegaConf.to_yaml(hydra_task, resolve=True)
            assert cell.task_overrides == ret.overrides
            assert composer.working_dir(sweep_dir / str(num)) == ret.working_dir
        HydraConfig.instance().cfg = orig
        # one Hydra composition per (policy, kernel) choice, not one per cell
        assert len(composer.bases) == 4
        assert composer.fast_path_problem() is None


def test_fast_composition_raises_what_hydra_raises() -> None:
    with multirun_session(["zone=tiny"]) as (ctx, master):
        composer = CellComposer(ctx.config_loader, master)
        for bad in (["policy.skip_pined=false"], ["workload.pinned_fraction=abc"]):
            with pytest.raises(Exception) as fast:
                composer.compose(bad)
            with pytest.raises(Exception) as slow:
                ctx.config_loader.load_sweep_config(master, bad)
            assert type(fast.value) is type(slow.value)
            assert type(fast.value.__cause__) is type(slow.value.__cause__)


def test_non_default_hydra_settings_take_the_hydra_path(tmp_path: Path) -> None:
    with multirun_session(["zone=tiny", "hydra.sweep.subdir=${hydra.job.override_dirname}"]) as (
        ctx,
        master,
    ):
        composer = CellComposer(ctx.config_loader, master)
        composer.compose(["seed=1"])
        assert "hydra.sweep.subdir" in str(composer.fast_path_problem())


def test_dump_yaml_is_omegaconf_to_yaml() -> None:
    container = {"a": "1", "b": "true", "c": "1e3", "d": [1, "x: y", None], "e": {"f": 0.5}}
    assert dump_yaml(container) == OmegaConf.to_yaml(OmegaConf.create(container))
