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
"""

# No ``from __future__ import annotations``: Hydra's plugin discovery loads this module
# without registering it in sys.modules, where dataclasses would look string annotations up.
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.compaction_sweep_launcher.ray_launcher.RayLauncher"
    address: str | None = None
    num_cpus: int | None = None
    zones_per_task: int = 64
    max_retries: int = 3


ConfigStore.instance().store(
    group="hydra/launcher",
    name="ray",
    node=RayLauncherConf,
    provider="compaction_sweep_launcher",
)


class RayLauncher(Launcher):
    """Packs multirun cells into batched Ray tasks (sweep.launcher)."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        zones_per_task: int = 64,
        max_retries: int = 3,
    ) -> None:
        super().__init__()
        self.address = address
        self.num_cpus = num_cpus
        self.zones_per_task = zones_per_task
        self.max_retries = max_retries
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
        )
        return launch(
            options,
            self.hydra_context,
            self.task_function,
            self.config,
            job_overrides,
            initial_job_idx,
        )
