"""``hydra/launcher=ray``: compaction-sweep's batching Ray launcher, as a Hydra plugin.

Hydra imports every module under ``hydra_plugins`` when it discovers plugins, so this one
stays light: it registers the config and forwards ``launch()`` to :mod:`sweep.launcher`,
which holds the logic (and imports Ray only when a sweep runs).

Keys (``hydra.launcher.<key>=...``):

- ``address``: ``null`` starts a local Ray for the sweep; ``auto`` joins a running
  cluster (e.g. one started in a Slurm allocation); or a ``host:port``.
- ``num_cpus``: cores of the local Ray (``null``: all).
- ``zones_per_task``: the most zones packed into one kernel call (one Ray task).
- ``max_retries``: how often Ray retries a task whose worker process died.
- ``compose``: ``fast`` (default) composes once per config-group choice and writes each
  job's ``.hydra`` files itself; ``hydra`` runs every cell through Hydra's
  ``load_sweep_config`` and ``run_job`` (the same files, about 0.5 s a cell).

``hydra/sweeper=compaction_sweep`` (the default in conf/config.yaml) is Hydra's basic
sweeper without its per-cell re-composition when this launcher, which composes and
checks every cell itself before running any, is in use.
"""

# No ``from __future__ import annotations``: Hydra's plugin discovery loads this module
# without registering it in sys.modules, where dataclasses would look string annotations up.
from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.compaction_sweep_launcher.ray_launcher.RayLauncher"
    address: str | None = None
    num_cpus: int | None = None
    zones_per_task: int = 64
    max_retries: int = 3
    compose: str = "fast"
    task_memory_gb: float | None = None


ConfigStore.instance().store(
    group="hydra/launcher",
    name="ray",
    node=RayLauncherConf,
    provider="compaction_sweep_launcher",
)


class RayLauncher(Launcher):
    """Packs multirun cells into batched Ray tasks (sweep.launcher)."""

    # launch() composes and checks every cell before it runs any (CompactionSweeper).
    checks_every_cell = True

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        zones_per_task: int = 64,
        max_retries: int = 3,
        compose: str = "fast",
        task_memory_gb: float | None = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.num_cpus = num_cpus
        self.zones_per_task = zones_per_task
        self.max_retries = max_retries
        self.compose = compose
        self.task_memory_gb = task_memory_gb
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from sweep.launcher import LauncherOptions, launch

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        options = LauncherOptions(
            address=None if self.address is None else str(self.address),
            num_cpus=self.num_cpus,
            zones_per_task=int(self.zones_per_task),
            max_retries=int(self.max_retries),
            compose=str(self.compose),
            task_memory_gb=None if self.task_memory_gb is None else float(self.task_memory_gb),
        )
        return launch(
            options,
            self.hydra_context,
            self.task_function,
            self.config,
            job_overrides,
            initial_job_idx,
        )


@dataclass
class CompactionSweeperConf:
    _target_: str = "hydra_plugins.compaction_sweep_launcher.ray_launcher.CompactionSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="compaction_sweep",
    node=CompactionSweeperConf,
    provider="compaction_sweep_launcher",
)


class CompactionSweeper(BasicSweeper):
    """Hydra's basic sweeper (same grid, same batches), with a cheaper batch check.

    BasicSweeper composes every cell once more before launching a batch, only to fail
    early; with ``hydra/launcher=ray`` that is skipped, since the launcher composes and
    checks every cell before it runs any. Other launchers get the same check through
    sweep.cells (Hydra once per config-group choice).
    """

    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None) -> None:
        # BasicSweeper.__init__'s fields, without its super(BasicSweeper, self) call: Hydra's
        # plugin scan re-executes hydra's core plugin modules, after which that call fails
        # for a subclass of the BasicSweeper imported before the scan.
        Sweeper.__init__(self)
        self.overrides = None
        self.batch_index = 0
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.hydra_context = None
        self.config = None
        self.launcher = None

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if getattr(self.launcher, "checks_every_cell", False):
            return
        from sweep.cells import CellComposer

        assert self.hydra_context is not None and self.config is not None
        composer = CellComposer(self.hydra_context.config_loader, self.config)
        for overrides in batch:
            composer.compose(overrides)
