"""Multirun cells composed the fast way: Hydra once per config-group choice, values applied.

Hydra's own launchers compose every cell from scratch (``load_sweep_config``: defaults
list, config files, merge), about 0.13 s a cell on the development VM, and BasicSweeper
does it once more per cell to validate the batch. A sweep of value overrides
(``seed=range(1000)``) repeats the same composition a thousand times.

:class:`CellComposer` splits each cell's overrides the way Hydra does
(``create_defaults_list``: an override whose key is a config group, and any ``hydra``
override, changes *what is composed*; every other one is a config override applied
after composition) and

1. composes once, through Hydra's own ``load_sweep_config``, per distinct tuple of group
   and hydra overrides (the *base*);
2. applies the cell's config overrides to a copy of the base's task config with Hydra's
   own ``ConfigLoaderImpl._apply_overrides_to_config`` (the function Hydra calls after
   composition), so typing, struct mode, ``+``/``++``/``~`` behave as in Hydra;
3. renders the job's ``.hydra/{config,hydra,overrides}.yaml`` from plain containers with
   libyaml and OmegaConf's string representer (the same text as ``OmegaConf.to_yaml``),
   setting the per-job fields Hydra sets (``job.id``, ``job.num``, ``job.override_dirname``,
   ``overrides.task``, ``runtime.output_dir``).

:meth:`CellComposer.fast_path_problem` names any Hydra setting for which this would not
give what Hydra gives (callbacks, a custom ``hydra.sweep.subdir``, job logging to another
file, task config reading the ``hydra`` node); the launcher then composes every cell
through Hydra instead. tests/test_cells.py checks the result against Hydra's run_job.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra import initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf._utils import OmegaConfDumper

from sweep.config import CONF_DIR, CONFIG_NAME, register_configs

# What Hydra's defaults put in these keys; anything else takes the Hydra path.
DEFAULT_SUBDIR = "${hydra.job.num}"
DEFAULT_LOG_FILE = "${hydra.runtime.output_dir}/${hydra.job.name}.log"


class _Dumper(getattr(yaml, "CDumper", yaml.Dumper)):  # type: ignore[misc]
    """libyaml's emitter with OmegaConf's representer for strings (OmegaConf.to_yaml)."""


_Dumper.add_representer(str, OmegaConfDumper.str_representer)


def dump_yaml(container: Any) -> str:
    """``OmegaConf.to_yaml`` of a plain container (dicts, lists, scalars), about 5x faster."""
    return yaml.dump(
        container, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=_Dumper
    )


@contextlib.contextmanager
def multirun_session(
    overrides: Sequence[str], config_name: str = CONFIG_NAME
) -> Iterator[tuple[HydraContext, DictConfig]]:
    """Hydra set up as ``python -m sweep -m <overrides>`` sets it up, without running:
    ``(hydra context, master config)``. The cells are ``sweep.config.sweep_cells`` of the
    master's ``hydra.overrides.task``. Raises Hydra's and OmegaConf's exceptions."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="sweep"):
        gh = GlobalHydra.instance().hydra
        assert gh is not None
        master = gh.compose_config(
            config_name, overrides=list(overrides), run_mode=RunMode.MULTIRUN
        )
        yield HydraContext(config_loader=gh.config_loader, callbacks=Callbacks(master)), master


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


@functools.lru_cache(maxsize=1 << 16)
def parse_override(line: str) -> Override:
    """One override, parsed once per process (Hydra's ANTLR parser takes about 1 ms)."""
    return _parser().parse_overrides([line])[0]


def parse_overrides(lines: Sequence[str]) -> list[Override]:
    """``OverridesParser.parse_overrides`` with :func:`parse_override`'s cache."""
    return [parse_override(line) for line in lines]


@dataclasses.dataclass(frozen=True)
class Checked:
    """A cell's task config as composed and checked before Hydra started."""

    task_cfg: DictConfig
    config_yaml: str
    saved_yaml: str
    config: Any  # the validated sweep.config.SweepConfig


# Cells checked by sweep.app.check_multirun in this process, by (config name, the master
# config's task overrides), then by the cell's overrides: the launcher of the same
# multirun takes their task configs instead of composing and checking them again (the
# task config does not depend on the hydra node; CellComposer refuses configs where it
# would).
_CHECKED: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], Checked]] = {}


def _master_key(master: DictConfig) -> tuple[str, tuple[str, ...]]:
    return str(master.hydra.job.config_name), tuple(str(o) for o in master.hydra.overrides.task)


def remember_checked(master: DictConfig, cell: ComposedCell, config: Any) -> None:
    """Record ``cell`` (composed against ``master`` and validated as ``config``)."""
    _CHECKED.setdefault(_master_key(master), {})[tuple(cell.overrides)] = Checked(
        cell.task_cfg, cell.config_yaml, cell.saved_yaml, config
    )


def forget_checked() -> None:
    _CHECKED.clear()


def task_config(sweep_config: DictConfig) -> DictConfig:
    """The config the task function sees: the sweep config without its ``hydra`` node."""
    task_cfg = sweep_config.copy()
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


@dataclasses.dataclass
class Base:
    """One composition through Hydra, shared by the cells with the same group choices."""

    task_cfg: DictConfig  # composed task config (struct mode as Hydra leaves it)
    hydra: dict[str, Any]  # {"hydra": ...} as a plain container, unresolved
    task_yaml: str  # OmegaConf.to_yaml(task_cfg), unresolved
    resolved_yaml: str  # OmegaConf.to_yaml(task_cfg, resolve=True)
    problem: str | None  # why the fast path would differ from Hydra's, or None


@dataclasses.dataclass
class ComposedCell:
    """One cell's task config and what its job directory's ``.hydra`` files need."""

    overrides: list[str]
    task_cfg: DictConfig
    config_yaml: str  # resolved task config: result.nc's "config", the cell hash
    saved_yaml: str  # unresolved task config: .hydra/config.yaml
    task_overrides: list[str]  # hydra.overrides.task
    override_dirname: str
    base: Base
    config: Any = None  # the validated SweepConfig when the cell was checked before


class CellComposer:
    """Compose cells against one multirun's master config (see the module docstring)."""

    def __init__(self, config_loader: Any, master_config: DictConfig) -> None:
        self.loader = config_loader
        self.master = master_config
        self.checked = _CHECKED.get(_master_key(master_config), {})
        self.bases: dict[tuple[str, ...], Base] = {}
        self._groups: dict[str, bool] = {}
        dirname = master_config.hydra.job.config.override_dirname
        self.kv_sep = str(dirname.kv_sep)
        self.item_sep = str(dirname.item_sep)
        self.exclude_keys = list(dirname.exclude_keys)

    # -- composition -------------------------------------------------------------------

    def _is_group(self, override: Override) -> bool:
        """As hydra's defaults list decides: a config group, unless the value is a dict."""
        key = override.key_or_group
        if key not in self._groups:
            self._groups[key] = bool(self.loader.repository.group_exists(key))
        return self._groups[key] and not isinstance(override.value(), dict)

    def base(self, base_overrides: tuple[str, ...]) -> Base:
        """The composed base for these group/hydra overrides (Hydra's load_sweep_config)."""
        found = self.bases.get(base_overrides)
        if found is not None:
            return found
        full = self.loader.load_sweep_config(self.master, list(base_overrides))
        hydra_node = OmegaConf.masked_copy(full, "hydra")
        hydra = OmegaConf.to_container(hydra_node, resolve=False, enum_to_str=True)
        assert isinstance(hydra, dict)
        task_cfg = task_config(full)
        task_yaml = OmegaConf.to_yaml(task_cfg)
        base = Base(
            task_cfg=task_cfg,
            hydra=hydra,
            task_yaml=task_yaml,
            resolved_yaml=task_yaml if "${" not in task_yaml else "",
            problem=self._problem(hydra, OmegaConf.to_yaml(hydra_node), task_yaml, task_cfg),
        )
        self.bases[base_overrides] = base
        return base

    def compose(self, overrides: Sequence[str]) -> ComposedCell:
        """Compose one cell; Hydra's exceptions (HydraException, OmegaConf errors) pass."""
        parsed = parse_overrides(list(overrides))
        base_ovs = tuple(o.input_line for o in parsed if o.is_hydra_override() or self._is_group(o))
        value_ovs = [o for o in parsed if not (o.is_hydra_override() or self._is_group(o))]
        base = self.base(base_ovs)  # type: ignore[arg-type]
        checked = self.checked.get(tuple(overrides))
        config = None
        if checked is not None:
            task_cfg, config_yaml = checked.task_cfg, checked.config_yaml
            saved_yaml, config = checked.saved_yaml, checked.config
        elif value_ovs:
            task_cfg = copy.deepcopy(base.task_cfg)
            ConfigLoaderImpl._apply_overrides_to_config(value_ovs, task_cfg)
            container = OmegaConf.to_container(task_cfg, resolve=False, enum_to_str=True)
            saved_yaml = dump_yaml(container)
            if "${" in saved_yaml:
                config_yaml = OmegaConf.to_yaml(task_cfg, resolve=True)
            else:
                config_yaml = saved_yaml
        else:
            task_cfg = copy.deepcopy(base.task_cfg)
            saved_yaml = base.task_yaml
            config_yaml = base.resolved_yaml or OmegaConf.to_yaml(task_cfg, resolve=True)
        app = [o for o in parsed if not o.is_hydra_override()]
        return ComposedCell(
            overrides=list(overrides),
            task_cfg=task_cfg,
            config_yaml=config_yaml,
            saved_yaml=saved_yaml,
            task_overrides=[str(o.input_line) for o in app],
            override_dirname=get_overrides_dirname(
                overrides=app,
                exclude_keys=self.exclude_keys,
                item_sep=self.item_sep,
                kv_sep=self.kv_sep,
            ),
            base=base,
            config=config,
        )

    # -- when the fast path is exact -----------------------------------------------------

    def _problem(
        self, hydra: dict[str, Any], hydra_yaml: str, task_yaml: str, task_cfg: DictConfig
    ) -> str | None:
        """Why this base's cells would not come out as Hydra makes them, or None."""
        hydra = hydra["hydra"]
        if hydra.get("callbacks"):
            return "hydra.callbacks are set (their hooks run per job in Hydra's run_job)"
        if hydra["sweep"]["subdir"] != DEFAULT_SUBDIR:
            return f"hydra.sweep.subdir={hydra['sweep']['subdir']} (only {DEFAULT_SUBDIR})"
        sweep_dir = str(hydra["sweep"]["dir"])
        if "${" in sweep_dir.replace("${now:", ""):
            return f"hydra.sweep.dir={sweep_dir} interpolates other keys"
        master_sweep = OmegaConf.to_container(self.master.hydra.sweep, resolve=False)
        if sweep_dir != str(master_sweep["dir"]):  # type: ignore[index]
            return f"a cell sets hydra.sweep.dir={sweep_dir}"
        handlers = (hydra.get("job_logging") or {}).get("handlers") or {}
        files = [h.get("filename") for h in handlers.values() if isinstance(h, dict)]
        files = [f for f in files if f is not None]
        if files not in ([], [DEFAULT_LOG_FILE]):
            return f"hydra.job_logging writes {files} (only {DEFAULT_LOG_FILE})"
        if "${hydra" in task_yaml or "hydra:" in task_yaml:
            return "the task config interpolates the hydra node"
        container = OmegaConf.to_container(task_cfg, resolve=False, enum_to_str=True)
        if dump_yaml(container) != task_yaml or dump_yaml({"hydra": hydra}) != hydra_yaml:
            return "libyaml renders this config differently from OmegaConf.to_yaml"
        return None

    def fast_path_problem(self) -> str | None:
        """Why the fast path must not be used for the bases composed so far, or None."""
        for base in self.bases.values():
            if base.problem:
                return base.problem
        return None

    # -- the job directory -----------------------------------------------------------------

    def job_files(
        self, cell: ComposedCell, job_num: int, job_dir: Path
    ) -> tuple[dict[str, str], str | None]:
        """The texts of ``.hydra/{config,hydra,overrides}.yaml`` (keyed by path relative to
        the job dir; empty when ``hydra.output_subdir`` is null) and the job log's name."""
        base = cell.base.hydra["hydra"]
        hydra = dict(base)
        hydra["job"] = dict(base["job"], id=str(job_num), num=job_num)  # JobConf.id: str
        hydra["job"]["override_dirname"] = cell.override_dirname
        hydra["overrides"] = dict(base["overrides"], task=list(cell.task_overrides))
        hydra["runtime"] = dict(base["runtime"], output_dir=os.path.abspath(job_dir))
        handlers = (base.get("job_logging") or {}).get("handlers") or {}
        has_log = any(isinstance(h, dict) and h.get("filename") for h in handlers.values())
        log_name = f"{base['job']['name']}.log" if has_log else None
        subdir = base.get("output_subdir")
        if subdir is None:
            return {}, log_name
        return {
            f"{subdir}/config.yaml": cell.saved_yaml,
            f"{subdir}/hydra.yaml": dump_yaml({"hydra": hydra}),
            f"{subdir}/overrides.yaml": dump_yaml(list(cell.task_overrides)),
        }, log_name

    def working_dir(self, job_dir: Path) -> str:
        """``JobReturn.working_dir`` as run_job sets it (the job dir only with chdir)."""
        return str(job_dir) if self.master.hydra.job.chdir else os.getcwd()
