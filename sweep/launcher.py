"""The batching Ray launcher behind ``hydra/launcher=ray`` (the Hydra plugin is a thin shim).

Hydra's sweeper hands :func:`launch` every cell of a multirun at once. In the driver:

1. **Compose** each cell's config, validate it (sweep.config.validate,
   sweep.expand.check_feasible) and compute its content hash (sweep.version.cell_hash).
   With ``compose=fast`` (the default) :class:`sweep.cells.CellComposer` does it: Hydra
   composes once per config-group choice and the cell's value overrides are applied as
   Hydra applies them (cells already checked by sweep.app before Hydra started are not
   composed again); with ``compose=hydra`` each cell goes through Hydra's
   ``load_sweep_config`` as in Hydra's basic launcher. Any bad cell raises before a Ray
   task exists (sweep.app checks them all before Hydra creates the sweep directory).
2. **Resume**: a cell whose job directory holds a ``result.nc`` with the same
   ``cell_hash`` attribute is not recomputed.
3. **Pack** the other cells: cells with the same :func:`sweep.expand.batch_key` (array
   shapes and static params) are packed, in cell order, into batches of at most
   ``zones_per_task`` zones (a cell brings its ``replicates`` zones and is never split; a
   bigger cell runs alone). One Ray task per batch runs :func:`run_batch`: one
   fragmenter call and one ``compact_node`` call for all its zones, split back per cell.
4. **Stream**: as batches finish (``ray.wait``), each cell's job is completed: with
   ``compose=fast`` the driver has written every job directory's ``.hydra/`` files (the
   text Hydra's ``run_job`` writes) and log up front, the Ray task writes the cells'
   ``result.nc`` files (atomically) and the driver logs a line and makes the JobReturn;
   with ``compose=hydra`` each cell goes through Hydra's ``run_job`` with a task function
   that writes its ``result.nc``. A failed batch marks its cells FAILED with the batch's
   exception; others go on.
5. **Merge**: when every cell is done, ``sweep.nc`` in the sweep directory holds all
   cells along one dimension per swept key (:func:`sweep_dataset`). If any cell failed
   it is not written (a stale one is removed); running the sweep again computes only the
   missing cells.

``workload=snapshot`` cells are not packed: each runs as a Ray task of its own
(:func:`run_snapshot_cell`: every chosen zone of the snapshot file, ``replicates``
copies each), with the same result.nc as the basic launcher writes. Their cells join
``sweep.nc`` when they share the same zones.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from sweep.cells import CellComposer, ComposedCell, parse_overrides, task_config
from sweep.config import ConfigError, SweepConfig, to_config, validate
from sweep.expand import batch_key, check_feasible, is_snapshot_workload
from sweep.results import SWEEP_FILE, CompactNodeResult, build_dataset, write_netcdf
from sweep.version import cell_hash, code_version

if TYPE_CHECKING:
    from hydra.types import HydraContext, TaskFunction

log = logging.getLogger(__name__)

RESULT_FILE = "result.nc"  # sweep.app.RESULT_FILE
# Test hook, read in the driver and handed to every task: "exit-once:PATH" makes the
# first task attempt that creates PATH kill its worker process (os._exit); "raise-seed:N"
# makes every batch holding a cell with seed N raise. Never set it outside tests.
FAULT_ENV = "COMPACTION_SWEEP_TEST_FAULT"


COMPOSE_MODES = ("fast", "hydra")


@dataclasses.dataclass(frozen=True)
class LauncherOptions:
    """``hydra.launcher`` keys of ``hydra/launcher=ray``."""

    address: str | None = None  # None: start a local Ray; "auto": join a running cluster
    num_cpus: int | None = None  # local Ray only; None: all cores
    zones_per_task: int = 64  # most zones in one kernel call (one Ray task)
    max_retries: int = 3  # Ray retries of a task whose worker died
    # "fast": compose once per config-group choice, write job files directly (sweep.cells);
    # "hydra": every cell through Hydra's load_sweep_config and run_job (slow, the reference).
    compose: str = "fast"
    # Memory one task's arrays may take; None: a quarter of this machine's RAM. Batches are
    # cut so their estimated arrays fit (a single cell that does not fit runs alone).
    task_memory_gb: float | None = None

    def check(self) -> None:
        if self.zones_per_task < 1:
            raise ConfigError(
                "hydra.launcher.zones_per_task", f"={self.zones_per_task} must be >= 1"
            )
        if self.max_retries < 0:
            raise ConfigError("hydra.launcher.max_retries", f"={self.max_retries} must be >= 0")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError("hydra.launcher.num_cpus", f"={self.num_cpus} must be >= 1")
        if self.task_memory_gb is not None and not self.task_memory_gb > 0:
            raise ConfigError(
                "hydra.launcher.task_memory_gb", f"={self.task_memory_gb} must be > 0"
            )
        if self.compose not in COMPOSE_MODES:
            raise ConfigError(
                "hydra.launcher.compose",
                f"={self.compose!r} is not one of {', '.join(COMPOSE_MODES)}",
            )


@dataclasses.dataclass(eq=False)
class Cell:
    """One multirun cell as the driver sees it."""

    index: int  # position in the launch() call's job_overrides
    overrides: list[str]
    task_cfg: DictConfig  # the config the task function would see (no hydra node)
    config: SweepConfig
    config_yaml: str  # resolved task config (no hydra node): result.nc's "config"
    hash: str  # sweep.version.cell_hash(config_yaml)
    job_dir: Path  # absolute ${hydra.sweep.dir}/${hydra.sweep.subdir}
    # Hydra path: the config as load_sweep_config composed it, job id/num set.
    sweep_config: DictConfig | None = None
    # Fast path: what sweep.cells composed (the .hydra files are rendered from it).
    composed: ComposedCell | None = None

    @property
    def zones(self) -> int:
        return self.config.replicates

    @property
    def result_path(self) -> Path:
        return self.job_dir / RESULT_FILE


# --------------------------------------------------------------------------------------
# Planning (pure)


# Peak bytes per simulated page of a task (NumPy): compact_node keeps the uint8 page state,
# bit planes and per-pageblock plans; the tick engine (kind, buddy order, list and group
# codes, an int64 key, bulk-free temporaries) peaked at 30-97 B/page (tracemalloc, 4 x 1 GiB
# zones: pinned, holepunch, stress_highalloc). The cap is per task; Ray still runs up to
# num_cpus tasks at once.
BYTES_PER_PAGE = {"compact_node": 16, "scenario": 100}


def zone_bytes(cfg: SweepConfig) -> int:
    """Estimated peak bytes of one zone of ``cfg`` in a task (snapshot cells run alone)."""
    from sweep.scenario import is_scenario

    kind = "scenario" if is_scenario(cfg) else "compact_node"
    return cfg.zone.nr_pages * BYTES_PER_PAGE[kind]


def default_task_memory() -> int:
    """A quarter of this machine's physical memory, in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        return 4 << 30


def plan_batches(
    configs: Sequence[SweepConfig], zones_per_task: int, memory_bytes: int | None = None
) -> list[list[int]]:
    """Pack cells into batches: lists of indices into ``configs``.

    Cells are grouped by :func:`sweep.expand.batch_key` (groups in order of first
    appearance, cells in their order) and each group is cut into runs of at most
    ``zones_per_task`` zones and, when ``memory_bytes`` is given, of at most that many
    estimated bytes (:func:`zone_bytes`); a cell is never split, and a cell with more
    zones or bytes than that forms a batch alone, as does every ``workload=snapshot`` cell.
    """
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, cfg in enumerate(configs):
        key = ("snapshot", i) if is_snapshot_workload(cfg) else batch_key(cfg)
        groups.setdefault(key, []).append(i)
    batches: list[list[int]] = []
    for members in groups.values():
        current: list[int] = []
        zones = nbytes = 0
        for i in members:
            size = configs[i].replicates
            cell_bytes = 0 if is_snapshot_workload(configs[i]) else size * zone_bytes(configs[i])
            too_big = memory_bytes is not None and nbytes + cell_bytes > memory_bytes
            if current and (zones + size > zones_per_task or too_big):
                batches.append(current)
                current, zones, nbytes = [], 0, 0
            current.append(i)
            zones += size
            nbytes += cell_bytes
        if current:
            batches.append(current)
    return batches


# --------------------------------------------------------------------------------------
# The Ray task


def run_batch(
    configs: Sequence[SweepConfig], fault: str | None = None
) -> tuple[str, list[CompactNodeResult], float]:
    """Run one packed batch (one kernel call); ``(backend module name, results, seconds)``.

    Runs in a Ray worker; returns NumPy arrays only, one result per cell in order.
    """
    from sweep.app import backend_name, select_backend
    from sweep.runner import run_compact_node_batch
    from sweep.scenario import is_scenario, run_scenario_batch

    t0 = time.perf_counter()
    _inject_fault(fault, configs)
    xp = select_backend(configs[0].backend)
    if is_scenario(configs[0]):  # time-stepped workloads: one kernels.tick run per batch
        results = run_scenario_batch(
            configs, xp, check_invariants=configs[0].check_invariants,
            compiled_parallel=False,  # backend=numba: one thread, as Ray gave the task one CPU
        )  # fmt: skip
    else:
        results = run_compact_node_batch(configs, xp)
    return backend_name(configs[0], xp), results, time.perf_counter() - t0


def run_snapshot_cell(
    config: SweepConfig, output: tuple[str | None, dict[str, Any]], fault: str | None = None
) -> tuple[str, list[xr.Dataset], float]:
    """Run one ``workload=snapshot`` cell (sweep.runner.run_snapshot) in a Ray worker:
    ``(backend module name, [the cell's result.nc Dataset], seconds)``. ``output``: the
    result.nc path (written here when given) and the common attributes."""
    from sweep.app import select_backend, snapshot_dataset
    from sweep.runner import run_snapshot

    t0 = time.perf_counter()
    _inject_fault(fault, [config])
    xp = select_backend(config.backend)
    snapshot, zone_results = run_snapshot(config, xp)
    path, attrs = output
    ds = snapshot_dataset(config, {**attrs, "backend": xp.__name__}, snapshot, zone_results)
    if path is not None:
        write_netcdf(ds, path)
    return xp.__name__, [ds], time.perf_counter() - t0


def _inject_fault(fault: str | None, configs: Sequence[SweepConfig]) -> None:
    """The test hook of :data:`FAULT_ENV` (does nothing when ``fault`` is empty)."""
    if not fault:
        return
    kind, _, arg = fault.partition(":")
    if kind == "exit-once":
        try:
            fd = os.open(arg, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)  # real worker death: Ray must retry the task elsewhere
    elif kind == "raise-seed":
        if any(cfg.seed == int(arg) for cfg in configs):
            raise RuntimeError(f"injected failure in a batch with seed={arg} ({FAULT_ENV})")
    else:
        raise ValueError(f"{FAULT_ENV}={fault!r}: expected exit-once:PATH or raise-seed:N")


# --------------------------------------------------------------------------------------
# Ray


def ensure_ray(options: LauncherOptions) -> Any:
    """The ``ray`` module, initialised once per process (a local cluster unless ``address``)."""
    import ray

    if ray.is_initialized():
        return ray
    if options.address is None:
        # Ray 2.60 turns token auth on for new local clusters and prints about it.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            num_cpus=options.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    else:
        ray.init(address=options.address, log_to_driver=False, logging_level="ERROR")
    return ray


def task_error(exc: BaseException) -> BaseException:
    """The exception to report for a failed task: the task's own one when Ray wraps it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def task_gpus(backend: str, cluster_gpus: float) -> int:
    """GPUs a batch's Ray task asks for: one where the cluster has GPUs and the backend may
    use one (``auto``, ``cupy`` or ``numba_cuda``), none otherwise, so CPU-only clusters
    still run.

    On a cluster without GPUs a ``cupy`` batch asks for none and fails in the worker with
    the backend's own error (kernels.backend.BackendError), naming the problem.
    """
    return 1 if cluster_gpus >= 1 and backend in ("auto", "cupy", "numba_cuda") else 0


def run_batches(
    batches: Sequence[Sequence[SweepConfig]],
    options: LauncherOptions,
    on_done: Callable[[int, list[Any] | BaseException, str, float], None],
    fault: str | None = None,
    outputs: Sequence[Sequence[tuple[str | None, dict[str, Any]]] | None] | None = None,
) -> None:
    """Run each batch as one Ray task; call ``on_done(batch, results or error, backend, s)``
    as each finishes (completion order, no barrier). ``outputs[i]``, when given, holds
    each cell's result.nc path and attributes: the task then writes the cells' result.nc
    files (:func:`run_batch_write`) and the results are the cells' datasets. A
    ``workload=snapshot`` batch (one cell, with its ``outputs``; a None path: not
    written) runs :func:`run_snapshot_cell`."""
    ray = ensure_ray(options)
    opts = {"num_cpus": 1, "max_retries": options.max_retries, "retry_exceptions": False}
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    remotes: dict[tuple[Callable, int], Any] = {}

    def remote(f: Callable, gpus: int) -> Any:
        if (f, gpus) not in remotes:
            remotes[f, gpus] = ray.remote(f).options(**opts, num_gpus=gpus)
        return remotes[f, gpus]

    def submit(i: int, batch: Sequence[SweepConfig]) -> Any:
        out = outputs[i] if outputs is not None else None
        gpus = task_gpus(batch[0].backend, cluster_gpus)
        if is_snapshot_workload(batch[0]):
            assert len(batch) == 1 and out is not None
            return remote(run_snapshot_cell, gpus).remote(batch[0], out[0], fault)
        if out is None:
            return remote(run_batch, gpus).remote(list(batch), fault)
        return remote(run_batch_write, gpus).remote(list(batch), list(out), fault)

    pending = {submit(i, batch): i for i, batch in enumerate(batches)}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i = pending.pop(ref)
            try:
                backend, results, seconds = ray.get(ref)
            except Exception as exc:  # a task error or a worker lost for good
                on_done(i, task_error(exc), "", 0.0)
            else:
                on_done(i, results, backend, seconds)


# --------------------------------------------------------------------------------------
# Progress


class Progress:
    """One live line on a TTY; otherwise an INFO line per batch."""

    def __init__(self, nr_cells: int, nr_batches: int, nr_zones: int, stream: IO[str]) -> None:
        self.nr_cells, self.nr_batches, self.nr_zones = nr_cells, nr_batches, nr_zones
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.cells = self.zones = self.batches = 0
        self.t0 = time.perf_counter()

    def batch_done(self, cells: int, zones: int, seconds: float, error: str | None) -> None:
        self.batches += 1
        self.cells += cells
        self.zones += zones
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.zones / elapsed
        if self.tty:
            eta = (self.nr_zones - self.zones) / rate if rate > 0 else 0.0
            self.stream.write(
                f"\r[sweep] {self.cells}/{self.nr_cells} cells, {rate:,.0f} zones/s, "
                f"ETA {eta:.0f} s\x1b[K"
            )
            self.stream.flush()
            if error:
                log.error("batch failed (%d cells): %s", cells, error)
        elif error:
            log.error(
                "batch %d/%d: %d cells, %d zones FAILED: %s",
                self.batches,
                self.nr_batches,
                cells,
                zones,
                error,
            )
        else:
            log.info(
                "batch %d/%d: %d cells, %d zones, %.2f s",
                self.batches,
                self.nr_batches,
                cells,
                zones,
                seconds,
            )

    def close(self) -> None:
        if self.tty and self.batches:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------
# sweep.nc


def swept_keys(cli_overrides: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    """The sweep dimensions: keys swept on the command line, then any other key whose
    value differs between cells (named as given, without a ``+``/``~`` prefix)."""
    parser = OverridesParser.create()
    keys: list[str] = []
    for override in parser.parse_overrides(list(cli_overrides)):
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    values: dict[str, set[str]] = {}
    order: list[str] = []
    for cell in cells:
        for override in parse_overrides(list(cell)):
            key = override.key_or_group
            if key not in values:
                values[key] = set()
                order.append(key)
            values[key].add(override.get_value_element_as_str())
    keys += [k for k in order if k not in keys and len(values[k]) > 1]
    return keys


def cell_coords(overrides: Sequence[str], task_cfg: DictConfig, keys: Sequence[str]) -> dict:
    """The coordinate of a cell on each swept key: the config value (int, float, bool,
    str) of a key, the option name of a config group (``policy=default``)."""
    given = {o.key_or_group: o.get_value_element_as_str() for o in parse_overrides(list(overrides))}
    coords: dict[str, Any] = {}
    for key in keys:
        value = OmegaConf.select(task_cfg, key, default=None)
        if value is None or isinstance(value, DictConfig | ListConfig):
            value = given.get(key, "")
        coords[key] = value
    return coords


def sweep_dataset(
    parts: Sequence[tuple[dict[str, Any], xr.Dataset]], keys: Sequence[str], attrs: dict
) -> xr.Dataset:
    """Join the cells' datasets along one dimension per swept key.

    ``parts``: ``(coords on the swept keys, cell dataset)`` per cell. A full grid keeps
    the variables' dtypes; an irregular sweep leaves NaN where a combination is missing.
    """
    if keys:
        fast = _grid_dataset(parts, keys)
        if fast is not None:
            return fast.assign_attrs(attrs)
    # Cells reloaded from result.nc (resume) carry netCDF encodings (integer dtypes,
    # fill values) that would mis-encode the NaNs of an irregular sweep: drop them.
    datasets = [ds.drop_attrs(deep=False).drop_encoding() for _, ds in parts]
    if not keys:
        if len(datasets) != 1:
            raise ValueError(f"{len(datasets)} cells but no swept key to tell them apart")
        return datasets[0].assign_attrs(attrs)
    combos = [tuple(coords[k] for k in keys) for coords, _ in parts]
    if len(set(combos)) != len(combos):
        raise ValueError(f"two cells have the same values of the swept keys {list(keys)}")
    # Time-stepped cells with different programs (e.g. order=4,9 of stress_highalloc) have
    # different time and attempt axes: those join outer (NaN where a cell has no value).
    # Anything else must line up exactly.
    ragged = all("time" in ds.dims and "attempt" in ds.dims for ds in datasets)
    joined = xr.concat(
        [
            ds.assign_coords({k: coords[k] for k in keys})
            for (coords, _), ds in zip(parts, datasets, strict=True)
        ],
        dim="cell",
        data_vars="all",
        coords="different",
        compat="equals",
        join="outer" if ragged else "exact",
        combine_attrs="drop",
    )
    if len(keys) == 1:  # unstack needs a MultiIndex, which one key does not make
        out = joined.swap_dims(cell=keys[0]).sortby(keys[0])
    else:
        out = joined.set_index(cell=list(keys)).unstack("cell")
    out = out.transpose(*keys, ...)
    for name, var in datasets[0].variables.items():  # concat's "drop" dropped them too
        if name in out.variables:
            out[name].attrs = dict(var.attrs)
    for key in keys:
        out[key].attrs["long_name"] = f"swept config key {key}"
    return out.assign_attrs(attrs)


def _grid_dataset(
    parts: Sequence[tuple[dict[str, Any], xr.Dataset]],
    keys: Sequence[str],
    scalars: Sequence[dict[str, Any]] | None = None,
) -> xr.Dataset | None:
    """:func:`sweep_dataset` of a full grid, stacked with NumPy (xr.concat of a thousand
    cells and unstack cost ~5 ms a cell); None where it does not apply (an irregular or
    mixed-type sweep, cells with different variables or coordinates): the caller then
    takes the general path, which gives the same Dataset. ``scalars``: per cell, extra
    0-d variables (as if assigned to the cell's dataset)."""
    coords = [c for c, _ in parts]
    datasets = [ds for _, ds in parts]
    levels = []
    for key in keys:
        values = [c[key] for c in coords]
        if len({type(v) for v in values}) != 1:
            return None
        try:
            levels.append(sorted(set(values)))
        except TypeError:
            return None
    shape = tuple(len(level) for level in levels)
    if math.prod(shape) != len(parts):
        return None
    index = [{v: i for i, v in enumerate(level)} for level in levels]
    flat = np.ravel_multi_index(
        tuple(np.array([index[k][c[key]] for c in coords]) for k, key in enumerate(keys)),
        shape,
    )
    if len(np.unique(flat)) != len(parts):
        return None
    order = np.argsort(flat)
    first = datasets[0].variables
    names = list(datasets[0].data_vars)
    coord_names = list(datasets[0].coords)
    for ds in datasets[1:]:
        variables = ds.variables
        if list(ds.data_vars) != names or list(ds.coords) != coord_names:
            return None
        for name in coord_names:
            a, b = first[name].values, variables[name].values
            if a.dtype != b.dtype or not np.array_equal(a, b):
                return None
        if any(variables[name].dims != first[name].dims for name in names):
            return None
    data_vars = {}
    for name in names:
        stacked = np.stack([datasets[i].variables[name].values for i in order])
        data_vars[name] = (
            (*keys, *first[name].dims),
            stacked.reshape(shape + stacked.shape[1:]),
            dict(first[name].attrs),
        )
    for name in scalars[0] if scalars else ():
        values = np.array([scalars[i][name] for i in order])
        data_vars[name] = (tuple(keys), values.reshape(shape))
    grid = {key: (key, np.array(level)) for key, level in zip(keys, levels, strict=True)}
    out = xr.Dataset(data_vars, coords={**grid, **datasets[0].drop_vars(names).coords})
    for key in keys:
        out[key].attrs["long_name"] = f"swept config key {key}"
    return out


def write_sweep(
    sweep_dir: Path,
    cells: Sequence[Cell],
    datasets: dict[int, xr.Dataset],
    cli_overrides: Sequence[str],
) -> Path:
    """Build and write ``sweep.nc`` (atomically) from every cell's dataset."""
    keys = swept_keys(cli_overrides, [c.overrides for c in cells])
    parts, scalars = [], []
    for cell in cells:
        ds = datasets.get(cell.index)
        if ds is None:
            ds = xr.load_dataset(cell.result_path)
        scalars.append(
            {
                "cell_hash": ds.attrs.get("cell_hash", cell.hash),
                "job_dir": os.path.relpath(cell.job_dir, sweep_dir),
            }
        )
        parts.append((cell_coords(cell.overrides, cell.task_cfg, keys), ds))
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    attrs = {
        "title": f"compaction-sweep: sweep of {len(cells)} cells over {', '.join(keys) or '-'}",
        "source": f"compaction-sweep {code_version()} (batched compaction simulator)",
        "history": f"{now} python -m sweep -m {' '.join(cli_overrides)}".rstrip(),
        "Conventions": "CF-1.11",
        "code_version": code_version(),
        "swept_keys": ",".join(keys),
        "cells": len(cells),
    }
    ds = _grid_dataset(parts, keys, scalars) if keys else None
    if ds is None:
        parts = [
            (coords, cell_ds.assign({k: ((), v) for k, v in extra.items()}))
            for (coords, cell_ds), extra in zip(parts, scalars, strict=True)
        ]
        ds = sweep_dataset(parts, keys, attrs)
    ds = ds.assign_attrs(attrs)
    ds["cell_hash"].attrs["long_name"] = "content hash of the cell (sweep.version.cell_hash)"
    ds["job_dir"].attrs["long_name"] = "the cell's Hydra job directory, relative to the sweep"
    return write_netcdf(ds, sweep_dir / SWEEP_FILE)


# --------------------------------------------------------------------------------------
# The launcher


def stored_hash(path: Path) -> str | None:
    """The ``cell_hash`` attribute of an existing result.nc; None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        import netCDF4

        with netCDF4.Dataset(path, "r") as nc:
            return str(nc.getncattr("cell_hash")) if "cell_hash" in nc.ncattrs() else None
    except OSError:
        return None


def compose_cells(
    hydra_context: HydraContext,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[Cell]:
    """Compose, validate and hash every cell; raise :class:`ConfigError` on the first bad one."""
    cells = []
    orig_hydra_cfg = HydraConfig.instance().cfg
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        job_dir = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
            OmegaConf.select(sweep_config, "hydra.sweep.subdir")
        )
        task_cfg = task_config(sweep_config)
        typed = to_config(task_cfg)
        validate(typed)
        check_feasible(typed)
        config_yaml = OmegaConf.to_yaml(task_cfg, resolve=True)
        cells.append(
            Cell(
                index=i,
                overrides=list(overrides),
                task_cfg=task_cfg,
                sweep_config=sweep_config,
                config=typed,
                config_yaml=config_yaml,
                hash=cell_hash(config_yaml),
                job_dir=job_dir.absolute(),
            )
        )
    HydraConfig.instance().cfg = orig_hydra_cfg
    return cells


def compose_cells_fast(
    composer: CellComposer,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    sweep_dir: Path,
) -> list[Cell]:
    """:func:`compose_cells` through :class:`sweep.cells.CellComposer`: Hydra composes once
    per config-group choice; the same validation and hashes, the same configs."""
    cells = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        composed = composer.compose(overrides)
        typed = composed.config
        if typed is None:  # not checked before Hydra started (sweep.app.check_multirun)
            typed = to_config(composed.task_cfg)
            validate(typed)
            check_feasible(typed)
        cells.append(
            Cell(
                index=i,
                overrides=list(overrides),
                task_cfg=composed.task_cfg,
                config=typed,
                config_yaml=composed.config_yaml,
                hash=cell_hash(composed.config_yaml),
                job_dir=sweep_dir / str(idx),  # hydra.sweep.subdir=${hydra.job.num}
                composed=composed,
            )
        )
    return cells


def result_dataset(result: Any, attrs: dict[str, Any]) -> xr.Dataset:
    """A cell's result.nc Dataset: compact_node or time-stepped (sweep.scenario) results."""
    from sweep.scenario import ScenarioResult, build_scenario_dataset

    if isinstance(result, ScenarioResult):
        return build_scenario_dataset(result, attrs)
    return build_dataset(result, attrs)


def run_batch_write(
    configs: Sequence[SweepConfig],
    outputs: Sequence[tuple[str, dict[str, Any]]],
    fault: str | None = None,
) -> tuple[str, list[xr.Dataset], float]:
    """:func:`run_batch`, then each cell's result.nc written here, in the worker
    (``outputs``: its path and global attributes, ``backend`` filled in here); returns
    ``(backend, the cells' datasets, seconds)``."""
    backend, results, _ = run_batch(configs, fault)
    t0 = time.perf_counter()
    datasets = []
    for result, (path, attrs) in zip(results, outputs, strict=True):
        ds = result_dataset(result, {**attrs, "backend": backend})
        write_netcdf(ds, path)
        datasets.append(ds)
    return backend, datasets, time.perf_counter() - t0


class FastJobs:
    """The fast path's per-cell Hydra job: its ``.hydra`` files, log and JobReturn, written
    without Hydra's run_job (sweep.cells renders what run_job would write)."""

    def __init__(self, composer: CellComposer, config: DictConfig) -> None:
        from hydra.core.utils import JobRuntime

        self.composer = composer
        self.task_name = JobRuntime.instance().get("name")
        fmt = OmegaConf.select(config, "hydra.job_logging.formatters.simple.format")
        self.formatter = logging.Formatter(
            str(fmt) if fmt else "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
        )
        self.log_names: dict[int, str | None] = {}

    def write_files(self, cells: Sequence[Cell]) -> None:
        """Every cell's ``.hydra/{config,hydra,overrides}.yaml`` and (empty) job log."""
        made: set[Path] = set()
        for cell in cells:
            assert cell.composed is not None
            files, log_name = self.composer.job_files(
                cell.composed, int(cell.job_dir.name), cell.job_dir
            )
            self.log_names[cell.index] = log_name
            for rel, text in files.items():
                path = cell.job_dir / rel
                if path.parent not in made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    made.add(path.parent)
                path.write_text(text, encoding="utf-8")
            if cell.job_dir not in made:
                cell.job_dir.mkdir(parents=True, exist_ok=True)
                made.add(cell.job_dir)
            if log_name:
                (cell.job_dir / log_name).touch()

    def log(self, cell: Cell, level: int, message: str) -> None:
        """One line in the cell's job log, in the job log's format."""
        name = self.log_names.get(cell.index)
        if not name:
            return
        record = logging.LogRecord(__name__, level, __file__, 0, message, None, None)
        with open(cell.job_dir / name, "a", encoding="utf-8") as f:
            f.write(self.formatter.format(record) + "\n")

    def job_return(self, cell: Cell, status: JobStatus, value: Any) -> JobReturn:
        assert cell.composed is not None
        return JobReturn(
            overrides=list(cell.composed.task_overrides),
            cfg=cell.task_cfg,
            hydra_cfg=None,  # not built (it costs more than the rest of the cell)
            working_dir=self.composer.working_dir(cell.job_dir),
            task_name=self.task_name,
            status=status,
            _return_value=value,
        )


def launch(
    options: LauncherOptions,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    runner: Callable[..., None] | None = None,
) -> list[JobReturn]:
    """Run a multirun batch of cells as packed Ray tasks; one JobReturn per cell, in order.

    ``task_function`` (the app's) is not called: the cells run as packed batches. With
    ``compose=fast`` (the default) the cells are composed by :class:`CellComposer`, the
    driver writes each job's ``.hydra`` files and log itself, and the Ray tasks write the
    result.nc files; with ``compose=hydra`` (or when :meth:`CellComposer.fast_path_problem`
    finds a Hydra setting it cannot honour) every cell goes through Hydra's
    load_sweep_config and run_job. ``runner`` replaces :func:`run_batches` (benchmarks).
    """
    del task_function
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    options.check()
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    fast: FastJobs | None = None
    if options.compose == "fast":
        composer = CellComposer(hydra_context.config_loader, config)
        cells = compose_cells_fast(composer, job_overrides, initial_job_idx, sweep_dir)
        problem = composer.fast_path_problem()
        if problem is None:
            fast = FastJobs(composer, config)
        else:
            log.info("Ray launcher: composing every cell through Hydra: %s", problem)
    if fast is None:
        cells = compose_cells(hydra_context, config, job_overrides, initial_job_idx)

    sweep_dir.mkdir(parents=True, exist_ok=True)
    up_to_date = [stored_hash(c.result_path) == c.hash for c in cells]
    todo = [c for c, ok in zip(cells, up_to_date, strict=True) if not ok]
    done = [c for c, ok in zip(cells, up_to_date, strict=True) if ok]
    batches = [
        [todo[i] for i in b]
        for b in plan_batches(
            [c.config for c in todo],
            options.zones_per_task,
            default_task_memory()
            if options.task_memory_gb is None
            else int(options.task_memory_gb * 2**30),
        )
    ]
    log.info(
        "Ray launcher: %d cells (%d up to date, not recomputed) -> %d Ray tasks of <= %d zones; "
        "sweep dir %s",
        len(cells),
        len(done),
        len(batches),
        options.zones_per_task,
        sweep_dir,
    )

    returns: dict[int, JobReturn] = {}
    datasets: dict[int, xr.Dataset] = {}

    def finish(cell: Cell, task: Callable[[DictConfig], Any]) -> None:
        assert cell.sweep_config is not None
        returns[cell.index] = run_job(
            hydra_context=hydra_context,
            task_function=task,
            config=cell.sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)

    if fast is not None:
        fast.write_files(cells)
        for cell in done:
            fast.log(cell, logging.INFO, f"{RESULT_FILE} is up to date (cell_hash {cell.hash})")
            returns[cell.index] = fast.job_return(cell, JobStatus.COMPLETED, str(cell.result_path))
    else:
        for cell in done:
            finish(cell, lambda _cfg, path=cell.result_path: str(path))

    def write_result(cell: Cell, result: CompactNodeResult | xr.Dataset, backend: str) -> Callable:
        def task(cfg: DictConfig) -> str:
            from sweep.app import compact_node_attrs

            if isinstance(result, xr.Dataset):  # workload=snapshot: built by the task
                ds = result
            else:
                ds = result_dataset(result, compact_node_attrs(cfg, cell.config, backend))
            out = Path(HydraConfig.get().runtime.output_dir) / RESULT_FILE
            path = write_netcdf(ds, out)
            datasets[cell.index] = ds
            return str(path)

        return task

    def fail(error: BaseException) -> Callable:
        def task(_cfg: DictConfig) -> None:
            raise error

        return task

    progress = Progress(len(todo), len(batches), sum(c.zones for c in todo), sys.stderr)

    def on_done(i: int, outcome: list | BaseException, backend: str, seconds: float) -> None:
        batch = batches[i]
        error = None if not isinstance(outcome, BaseException) else _one_line(outcome)
        for j, cell in enumerate(batch):
            if fast is not None:
                if isinstance(outcome, BaseException):
                    fast.log(cell, logging.ERROR, f"failed: {error}")
                    returns[cell.index] = fast.job_return(cell, JobStatus.FAILED, outcome)
                else:
                    datasets[cell.index] = outcome[j]
                    fast.log(
                        cell,
                        logging.INFO,
                        f"wrote {cell.result_path} (Ray task {i + 1}/{len(batches)}: "
                        f"{len(batch)} cells, {backend})",
                    )
                    returns[cell.index] = fast.job_return(
                        cell, JobStatus.COMPLETED, str(cell.result_path)
                    )
            elif isinstance(outcome, BaseException):
                finish(cell, fail(outcome))
            else:
                finish(cell, write_result(cell, outcome[j], backend))
        progress.batch_done(len(batch), sum(c.zones for c in batch), seconds, error)

    if batches:
        fault = os.environ.get(FAULT_ENV) or None
        outputs = [_outputs(b, fast is not None) for b in batches]
        try:
            (runner or run_batches)(
                [[_for_worker(c.config) for c in b] for b in batches],
                options,
                on_done,
                fault,
                outputs,
            )
        finally:
            progress.close()

    ordered = [returns[c.index] for c in cells]
    failed = [r for r in ordered if r.status != JobStatus.COMPLETED]
    sweep_file = sweep_dir / SWEEP_FILE
    if failed:
        sweep_file.unlink(missing_ok=True)
        log.error(
            "%d of %d cells failed; %s not written (run the sweep again to compute the "
            "missing cells only)",
            len(failed),
            len(cells),
            SWEEP_FILE,
        )
    else:
        cli = list(config.hydra.overrides.task)
        try:
            path = write_sweep(sweep_dir, cells, datasets, cli)
        except ValueError as exc:  # e.g. snapshot cells of different zones
            sweep_file.unlink(missing_ok=True)
            log.error(
                "every cell has its result.nc, but %s was not written: the cells do not "
                "join into one dataset (%s)",
                SWEEP_FILE,
                _one_line(exc),
            )
        else:
            log.info("wrote %s", path)
    return ordered


def _outputs(batch: Sequence[Cell], fast: bool) -> list[tuple[str | None, dict]] | None:
    """What run_batches needs to have a batch's tasks write result.nc (fast path) or build
    a snapshot cell's dataset: per cell, the path (None: the driver writes it) and the
    common attributes (sweep.app.result_attrs; the task adds ``backend``)."""
    from sweep.app import result_attrs

    if not fast and not is_snapshot_workload(batch[0].config):
        return None
    out = []
    for c in batch:
        if c.composed is not None:
            overrides = list(c.composed.task_overrides)
        else:
            assert c.sweep_config is not None
            overrides = list(c.sweep_config.hydra.overrides.task)
        attrs = result_attrs(c.config, c.config_yaml, overrides, "")
        out.append((str(c.result_path) if fast else None, attrs))
    return out


def _for_worker(config: SweepConfig) -> SweepConfig:
    """``config`` as a Ray task gets it: a snapshot path made absolute (the driver's
    directory need not be the worker's)."""
    if not is_snapshot_workload(config):
        return config
    path = str(Path(str(config.workload.path)).expanduser().absolute())
    return dataclasses.replace(config, workload=dataclasses.replace(config.workload, path=path))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
