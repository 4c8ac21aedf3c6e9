"""The Hydra app behind ``python -m sweep``: check the config, run the job, write results.

:func:`cli` is the entry point. It registers the config schemas, composes and checks
the config from the command line *before* Hydra creates a run directory
(:func:`check_argv`), and only then hands over to the ``@hydra.main`` task
:func:`main`. Bad input therefore ends with a one-line ``error: <key>...`` message,
exit status 2, and nothing written under ``outputs/``.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import hydra
import numpy as np
import xarray as xr
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kernels.backend import BackendError, get_xp
from kernels.buddy import format_buddyinfo as format_line
from kernels.program import KCOMPACTD_NAMES
from sweep.cells import CellComposer, multirun_session, parse_overrides, remember_checked
from sweep.config import (
    CONF_DIR,
    CONFIG_NAME,
    ConfigError,
    SweepConfig,
    compose_config,
    composition_error,
    register_configs,
    reject_zone_overrides,
    scenario_order,
    sweep_cells,
    to_config,
    validate,
)
from sweep.expand import check_feasible, effective_min_free_kbytes, is_snapshot_workload
from sweep.launcher import LauncherOptions
from sweep.memory import keep_freed_memory
from sweep.results import (
    build_dataset,
    build_zone_dataset,
    format_buddyinfo,
    format_counters,
    write_netcdf,
)
from sweep.runner import run_compact_node, run_snapshot
from sweep.scenario import (
    NUMBA_HINT,
    ProgressLine,
    build_program,
    build_scenario_dataset,
    format_phase_table,
    format_trial_table,
    is_scenario,
    kcompactd_mode,
    numba_can_run,
    run_scenario_batch,
)
from sweep.version import cell_hash, code_version

log = logging.getLogger(__name__)

RESULT_FILE = "result.nc"
EXIT_CONFIG_ERROR = 2


def check_argv(argv: Sequence[str]) -> None:
    """Validate the config of every job that ``argv`` would run; raise :class:`ConfigError`.

    Modes that run no job (``--help``, ``--cfg``, ``--info``, ...) and custom config
    directories are left to Hydra; :func:`main` validates again in any case. The
    arguments are parsed with Hydra's own parser (an internal API of the pinned
    hydra-core 1.3.8), so they mean here exactly what they mean to ``@hydra.main``.
    """
    args, _unknown = get_args_parser().parse_known_args(list(argv))
    if (
        args.help
        or args.hydra_help
        or args.cfg
        or args.info
        or args.shell_completion
        or args.experimental_rerun
        or args.config_path
        or args.config_dir
    ):
        return
    config_name = args.config_name or CONFIG_NAME
    multirun = args.multirun or any(
        o.replace(" ", "") == "hydra.mode=MULTIRUN" for o in args.overrides
    )
    if multirun:
        check_multirun(args.overrides, config_name)
        return
    config = compose_config(list(args.overrides), config_name=config_name)
    check_feasible(config)
    select_backend(config.backend)


def check_multirun(overrides: Sequence[str], config_name: str = CONFIG_NAME) -> int:
    """Validate every cell of a multirun and its launcher's options; return the cell count.

    Composes the master config as Hydra's multirun does, expands the sweep as the basic
    sweeper does (sweep.config.sweep_cells) and composes each cell with
    :class:`sweep.cells.CellComposer` (Hydra once per config-group choice, the same
    config as Hydra's own composition). Raises :class:`ConfigError`.
    """
    backends: set[str] = set()
    try:
        with multirun_session(overrides, config_name) as (hydra_context, master):
            ray_launcher = str(OmegaConf.select(master, "hydra.launcher._target_")).endswith(
                ".RayLauncher"
            )
            if ray_launcher:
                launcher_options(master.hydra.launcher).check()
            task_overrides = list(master.hydra.overrides.task)
            composer = CellComposer(hydra_context.config_loader, master)
            cells = sweep_cells(task_overrides)
            for cell in cells:
                if any(o.is_sweep_override() for o in parse_overrides(cell)):
                    return len(cells)  # not a discrete sweep: the sweeper rejects it
                composed = composer.compose(cell)
                config = to_config(composed.task_cfg)
                validate(config)
                if is_snapshot_workload(config):
                    reject_zone_overrides(cell)
                check_feasible(config)
                if config.backend not in backends:
                    select_backend(config.backend)
                    backends.add(config.backend)
                if ray_launcher:
                    remember_checked(master, composed, config)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise composition_error(exc) from exc
    return len(cells)


def launcher_options(node: DictConfig) -> LauncherOptions:
    """The ``hydra.launcher`` node of ``hydra/launcher=ray`` as :class:`LauncherOptions`."""
    return LauncherOptions(
        address=None if node.address is None else str(node.address),
        num_cpus=node.num_cpus,
        zones_per_task=int(node.zones_per_task),
        max_retries=int(node.max_retries),
        compose=str(node.compose),
        task_memory_gb=None if node.get("task_memory_gb") is None else float(node.task_memory_gb),
    )


def select_backend(backend: str) -> ModuleType:
    """The array namespace for ``backend``; a missing GPU is a :class:`ConfigError`.

    ``numba`` (the compiled tick engine, sweep/compiled_tick.py) builds its zones with
    NumPy; a missing Numba is a ConfigError saying how to install it.
    """
    if backend in ("numba", "numba_cuda"):
        try:
            import sweep.compiled_tick  # noqa: F401  (imports and loads Numba)
        except ImportError as exc:
            raise ConfigError("backend", f"={backend} needs Numba ({exc}): {NUMBA_HINT}") from exc
        if backend == "numba_cuda":
            from sweep.cuda_tick import is_simulator, unavailable

            why = unavailable()
            if why and not is_simulator():  # the simulator only when asked for by hand
                raise ConfigError(
                    "backend",
                    f"=numba_cuda needs a CUDA GPU: {why}; use backend=numba on a CPU",
                )
        return np
    try:
        return get_xp(backend)
    except BackendError as exc:
        raise ConfigError("backend", f"={backend}: {exc}") from exc


def backend_name(config: SweepConfig, xp: ModuleType) -> str:
    """What ran the cells, for result.nc's ``backend`` attribute: numpy, cupy, numba or
    numba_cuda."""
    return config.backend if config.backend in ("numba", "numba_cuda") else xp.__name__


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> str:
    """Hydra task: one run (``compact_node`` or ``snapshot``) in the Hydra run directory."""
    return str(run_job(cfg, Path(HydraConfig.get().runtime.output_dir)))


def run_job(cfg: DictConfig, output_dir: Path) -> Path:
    """Run the job for a composed ``cfg``; print the summary, write ``result.nc``."""
    config = to_config(cfg)
    validate(config)
    check_feasible(config)
    xp = select_backend(config.backend)
    if is_snapshot_workload(config):
        return run_snapshot_job(cfg, config, xp, output_dir)
    if is_scenario(config):
        return run_scenario_job(cfg, config, xp, output_dir)
    result = run_compact_node(config, xp)

    zone = f"zone {config.zone.name}, {config.zone.nr_pages:,} pages"
    print(f"# /proc/buddyinfo before compaction ({zone}; Node N = replicate N)")
    print("\n".join(format_buddyinfo(result.buddyinfo[:, 0])))
    print(f"# /proc/buddyinfo after compaction ({zone}; Node N = replicate N)")
    print("\n".join(format_buddyinfo(result.buddyinfo[:, 1])))
    print(f"# compaction counters over {result.nr_zones} replicates (/proc/vmstat names)")
    print("\n".join(format_counters(result)))

    attrs = compact_node_attrs(cfg, config, xp.__name__)
    path = write_netcdf(build_dataset(result, attrs), output_dir / RESULT_FILE)
    log.info("wrote %s", path)
    print(f"# result: {path}")
    return path


def compact_node_attrs(cfg: DictConfig, config: SweepConfig, backend: str) -> dict[str, object]:
    """Global attributes of a ``compact_node`` result.nc (``backend``: the array module)."""
    return result_attrs(config, OmegaConf.to_yaml(cfg, resolve=True), _task_overrides(), backend)


def result_attrs(
    config: SweepConfig, config_yaml: str, overrides: Sequence[str], backend: str
) -> dict[str, object]:
    """Global attributes of a result.nc (``workload=snapshot``: the common
    ones, to which :func:`snapshot_dataset` adds the snapshot's), from the cell's resolved
    config (``config_yaml``) and its task overrides: no Hydra state, so a launcher can
    build them for cells it never runs through Hydra's run_job."""
    attrs = _common_attrs(config, config_yaml, overrides, backend)
    if is_snapshot_workload(config):
        return attrs
    attrs["title"] = f"compaction-sweep: {config.workload.name} of {config.zone.name} zones"
    attrs["min_free_kbytes"] = effective_min_free_kbytes(config)
    if is_scenario(config):
        program = build_program(config)
        attrs.update(
            order=scenario_order(config),
            gfp=config.workload.gfp,
            kcompactd=KCOMPACTD_NAMES[kcompactd_mode(config)],
            stop_below_watermark=config.policy.stop_below_watermark,
            tick_ms=program.tick_ms,
            ticks=program.n_ticks,
        )
    return attrs


def _task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def common_attrs(cfg: DictConfig, config: SweepConfig, backend: str) -> dict[str, object]:
    """Global attributes of result.nc shared by every workload (see :func:`_common_attrs`)."""
    return _common_attrs(config, OmegaConf.to_yaml(cfg, resolve=True), _task_overrides(), backend)


def _common_attrs(
    config: SweepConfig, config_yaml: str, overrides: Sequence[str], backend: str
) -> dict[str, object]:
    """Global attributes of result.nc shared by every workload.

    ``cell_hash`` (sweep.version.cell_hash) identifies the inputs; a sweep run again
    skips the cells whose result.nc carries the hash they would get now.
    """
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {
        "title": f"compaction-sweep: {config.workload.name}",
        "source": f"compaction-sweep {code_version()} (batched compaction simulator)",
        "history": f"{now} python -m sweep {' '.join(overrides)}".rstrip(),
        "Conventions": "CF-1.11",
        "code_version": code_version(),
        "kernel_profile": config.kernel.profile,
        "workload": config.workload.name,
        "skip_pinned": config.policy.skip_pinned,
        "backend": backend,
        "config": config_yaml,
        "cell_hash": cell_hash(config_yaml),
    }


def run_snapshot_job(
    cfg: DictConfig, config: SweepConfig, xp: ModuleType, output_dir: Path
) -> Path:
    """``workload=snapshot``: compact the snapshot's zones; print per zone; write result.nc."""
    snapshot, zone_results = run_snapshot(config, xp)
    nr_rep = config.replicates
    source = (
        "page states from /proc/kpageflags"
        if snapshot.source == "kpageflags"
        else "page states SYNTHESISED (no root when it was saved: the layout inside the "
        "pageblocks is made up; python -m sweep.snapshot show FILE has the notes)"
    )
    print(
        f"# snapshot {config.workload.path}: {snapshot.hostname}, Linux "
        f"{snapshot.kernel_release}, taken {snapshot.created}, {source}"
    )
    print(
        "# zone sizes and watermarks are the snapshot's (the zone group is not used); "
        f"pinned_fraction={config.workload.pinned_fraction:g}"
        + (
            "; no pins injected, so all replicates are identical"
            if config.workload.pinned_fraction == 0
            else ""
        )
    )
    for zr in zone_results:
        zone, result = zr.params.zone, zr.result
        pages = int(result.page_counts[0, 0].sum())
        print(
            f"# zone {zr.label}: {pages:,} pages simulated (spanned {zone.spanned:,}, managed "
            f"{zone.managed:,}), watermarks min/low/high {zone.wmark_min:,}/{zone.wmark_low:,}/"
            f"{zone.wmark_high:,}"
        )
        print("# /proc/buddyinfo when the snapshot was taken (read from /proc)")
        print(format_line(zone.buddyinfo, zone.node, zone.name).rstrip("\n"))
        print("# /proc/buddyinfo before compaction (the snapshot's page states)")
        print(format_line(result.buddyinfo[0, 0], zone.node, zone.name).rstrip("\n"))
        after = result.buddyinfo[:, 1]
        if (after == after[0]).all():
            print(f"# /proc/buddyinfo after compaction (the same in all {nr_rep} replicates)")
            print(format_line(after[0], zone.node, zone.name).rstrip("\n"))
        else:
            shown = min(nr_rep, 8)
            print(
                f"# /proc/buddyinfo after compaction (one line per replicate, r = 0..{shown - 1}"
                + (f" of {nr_rep}" if shown < nr_rep else "")
                + ")"
            )
            for r in range(shown):
                print(format_line(after[r], zone.node, zone.name).rstrip("\n"))
        print(f"# compaction counters of zone {zr.label} over {nr_rep} replicates")
        print("\n".join(format_counters(result)))

    ds = snapshot_dataset(config, common_attrs(cfg, config, xp.__name__), snapshot, zone_results)
    path = write_netcdf(ds, output_dir / RESULT_FILE)
    log.info("wrote %s", path)
    print(f"# result: {path}")
    return path


def snapshot_dataset(
    config: SweepConfig, attrs: dict[str, object], snapshot: Any, zone_results: Sequence[Any]
) -> xr.Dataset:
    """The result.nc Dataset of a ``workload=snapshot`` run (sweep.runner.run_snapshot's
    snapshot and zone results; ``attrs``: the common attributes, see :func:`common_attrs`)."""
    attrs = dict(attrs)
    attrs.update(
        title=f"compaction-sweep: snapshot of {snapshot.hostname}, zones "
        + ", ".join(zr.label for zr in zone_results),
        snapshot_path=str(Path(config.workload.path).expanduser().resolve()),
        snapshot_source=snapshot.source,
        snapshot_hostname=snapshot.hostname,
        snapshot_kernel_release=snapshot.kernel_release,
        snapshot_created=snapshot.created,
        pinned_fraction=float(config.workload.pinned_fraction),
    )
    zone_values = {
        zr.label: {
            "zone_pages": int(zr.result.page_counts[0, 0].sum()),
            "zone_start_pfn": zr.params.zone.start_pfn,
            "zone_managed": zr.params.zone.managed,
            "wmark_min": zr.params.zone.wmark_min,
            "wmark_low": zr.params.zone.wmark_low,
            "wmark_high": zr.params.zone.wmark_high,
        }
        for zr in zone_results
    }
    return build_zone_dataset({zr.label: zr.result for zr in zone_results}, zone_values, attrs)


def scenario_attrs(cfg: DictConfig, config: SweepConfig, backend: str) -> dict[str, object]:
    """Global attributes of a time-stepped workload's result.nc (:func:`result_attrs`)."""
    return result_attrs(config, OmegaConf.to_yaml(cfg, resolve=True), _task_overrides(), backend)


def run_scenario_job(
    cfg: DictConfig, config: SweepConfig, xp: ModuleType, output_dir: Path
) -> Path:
    """A time-stepped workload: run its program, print a per-phase table, write result.nc."""
    program = build_program(config)
    zone = f"zone {config.zone.name}, {config.zone.nr_pages:,} pages"
    print(
        f"# {config.workload.name}: {len(program.phases)} phase(s), {program.n_ticks:,} ticks of "
        f"{program.tick_ms:g} ms, order {scenario_order(config)} {config.workload.gfp} attempts, "
        f"kcompactd {KCOMPACTD_NAMES[kcompactd_mode(config)]}, kernel {config.kernel.profile}; "
        f"{zone}, {config.replicates} replicates"
    )
    if config.backend == "numba":
        print(
            "# backend numba: the compiled engine (sweep/compiled_tick.py), one call for all "
            "ticks; its first use compiles it (20-30 s, then cached on disk)"
        )
    elif config.backend == "numba_cuda":
        print(
            "# backend numba_cuda: the compiled engine on the GPU, one thread per zone "
            "(sweep/cuda_tick.py), one launch per chunk of ticks; its first use compiles it"
        )
    elif xp is np and numba_can_run(config):
        print(
            "# hint: on a CPU, backend=numba runs this workload 20-25x faster with the same "
            f"results (the compiled engine; {NUMBA_HINT})"
        )
    t0 = time.perf_counter()
    [result] = run_scenario_batch(
        [config],
        xp,
        check_invariants=config.check_invariants,
        progress=ProgressLine(f"# {config.workload.name}"),
    )
    seconds = time.perf_counter() - t0
    print(f"# /proc/buddyinfo at the start ({zone}; Node N = replicate N)")
    print("\n".join(format_buddyinfo(result.buddyinfo[:, 0])))
    print("# /proc/buddyinfo at the end")
    print("\n".join(format_buddyinfo(result.buddyinfo[:, 1])))
    print(f"# per phase, mean over {result.nr_zones} replicates (/proc/vmstat names)")
    print("\n".join(format_phase_table(result)))
    if result.trials is not None:
        print(f"# {config.workload.name} trials ({config.workload.method}), per replicate")
        print("\n".join(format_trial_table(result)))
    zone_ticks = program.n_ticks * result.nr_zones
    print(f"# {zone_ticks:,} zone-ticks in {seconds:.2f} s ({zone_ticks / seconds:,.0f}/s)")
    attrs = scenario_attrs(cfg, config, backend_name(config, xp))
    path = write_netcdf(build_scenario_dataset(result, attrs), output_dir / RESULT_FILE)
    log.info("wrote %s", path)
    print(f"# result: {path}")
    return path


def cli() -> None:
    """``python -m sweep``: validate first, then run the Hydra app on ``sys.argv``."""
    register_configs()
    try:
        check_argv(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    keep_freed_memory()
    main()
