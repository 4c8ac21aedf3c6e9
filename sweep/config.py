"""Typed config schemas (Hydra structured configs) and value validation.

The dataclasses here are the schema of every config group; the YAML presets under
``conf/<group>/`` extend them (``defaults: [base_<group>, _self_]``). They are plain,
not frozen, dataclasses: YAML cannot extend a frozen node (Hydra issue 724). The
frozen, array-valued kernel params are built from them in :mod:`sweep.expand`.

Hydra itself rejects unknown keys and wrong types when it composes the config;
:func:`validate` rejects impossible values. Both surface as :class:`ConfigError`,
a one-line message that names the dotted key.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from kernels.backend import BACKENDS
from kernels.fragment import FRACTION_FIELDS as FRACTION_KEYS
from kernels.fragment import FREE_QUARTER_MAX_FOLIO_ORDER, LAYOUTS
from kernels.program import CONTIG_NAMES, GFP_NAMES, KCOMPACTD_NAMES
from kernels.zone import (
    MAX_FOLIO_ORDER,
    MAX_PAGE_ORDER,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    KernelProfile,
)

# kernels.backend's array backends, "numba": the compiled sequential tick engine
# (sweep/compiled_tick.py, the `numba` extra), for the time-stepped workloads on a CPU, and
# "numba_cuda": the same engine on a GPU, one CUDA thread per zone (sweep/cuda_tick.py).
SWEEP_BACKENDS = (*BACKENDS, "numba", "numba_cuda")
COMPILED_TICK_BACKENDS = ("numba", "numba_cuda")

CONFIG_NAME = "config"
GROUPS = ("zone", "kernel", "policy", "workload")
PAGE_FRACTION_KEYS = (
    "free_fraction",
    "unmovable_fraction",
    "reclaimable_fraction",
    "pinned_fraction",
)
PROFILES = {"v4_12": KernelProfile.V4_12, "v6_19": KernelProfile.V6_19}
KCOMPACTD_MODES = ("auto", *KCOMPACTD_NAMES)
GFP_CLASSES = GFP_NAMES
ATTEMPT_MIGRATETYPES = ("unmovable", "movable", "reclaimable")  # MigrateType 0, 1, 2
BULK_METHODS = CONTIG_NAMES[1:]  # workload=bulk_alloc's methods (tick-model.md 7.4)
# vm.watermark_scale_factor sysctl range: [1, 1000] until 5.x raised the ceiling to 3000.
WATERMARK_SCALE_FACTOR_MAX = {"v4_12": 1000, "v6_19": 3000}


def _conf_dir() -> str:
    """The config tree: ``sweep/conf`` in a wheel, ``conf/`` at the repository root otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return str(candidate)
    return str(here.parent / "conf")


CONF_DIR = _conf_dir()


class ConfigError(ValueError):
    """An invalid configuration value. ``str()`` is one line that starts with the key.

    ``message`` continues the key: ``"=1.5 is out of range [0, 1]"`` or ``" is ..."``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key + message)
        self.key = key


@dataclass
class ZoneConfig:
    name: str = MISSING
    nr_pages: int = MISSING  # zone size in 4 KiB pages (managed pages; whole pageblocks)
    pageblock_order: int = PAGEBLOCK_ORDER  # only 9 (x86-64 HPAGE_PMD_ORDER) is supported
    max_order: int = MAX_PAGE_ORDER  # MAX_PAGE_ORDER, inclusive; only 10 is supported
    min_free_kbytes: int | None = None  # vm.min_free_kbytes; null = kernel default at boot
    watermark_scale_factor: int = 10  # vm.watermark_scale_factor, in 1/10000 of the zone


@dataclass
class KernelConfig:
    name: str = MISSING
    profile: str = MISSING  # "v4_12" | "v6_19": kernels.zone.KernelProfile


@dataclass
class PolicyConfig:
    name: str = MISSING
    # Seed 003: skip pinned (elevated refcount) pages before isolation, as upstream does
    # in both profiles; false emulates the pre-2014 isolate-then-fail behaviour.
    skip_pinned: bool = True
    # kcompactd mode of the time-stepped workloads (docs/tick-model.md 3.6): auto (the
    # kernel profile's own: reactive for v4_12, proactive_score for v6_19), none,
    # reactive, proactive_demand (seed 000 patch 6) or proactive_score (kernel >= 5.9).
    kcompactd: str = "auto"
    proactiveness: int = 20  # vm.compaction_proactiveness (proactive_score)
    stop_below_watermark: bool = False  # seed 000 patch 5: stop when free < watermark
    # Seed 002 (Bhat's memory regions, docs/tick-model.md 6): free lists sorted by memory
    # region (allocate from the lowest region first), and the alloc/free handshake that
    # queues a worker to evacuate a freshly used region. Time-stepped workloads only.
    sorted_freelists: bool = False
    region_evacuation: bool = False
    # false: the worker runs at the end of the tick that queued it (the seed's code);
    # true: after the next tick's frees (a worker that waits for memory to be freed)
    region_worker_delayed: bool = False


@dataclass
class WorkloadConfig:
    name: str = MISSING


@dataclass
class CompactNodeConfig(WorkloadConfig):
    """Whole-zone compaction, as ``echo 1 > /proc/sys/vm/compact_memory``."""

    layout: str = "random_mix"  # fragmenter layout: LAYOUTS (kernels.fragment)
    free_fraction: float = 0.4  # fraction of the zone's pages left free
    unmovable_fraction: float = 0.02  # fraction of pages UNMOVABLE
    reclaimable_fraction: float = 0.02  # fraction of pages RECLAIMABLE
    pinned_fraction: float = 0.0  # fraction of pages PINNED (movable type, cannot migrate)
    pollution: float = 0.1  # share of unmovable/reclaimable pages placed in movable pageblocks
    folio_fraction: float = 0.25  # share of movable pages in large folios (0 for holepunch)
    folio_orders: list[int] = field(default_factory=lambda: [2, 4, 9])  # folio orders, 1..9


@dataclass
class SnapshotWorkloadConfig(WorkloadConfig):
    """Whole-zone compaction of zones read from a snapshot of a real machine.

    ``python -m sweep.snapshot save`` writes the file. Zone sizes and watermarks come
    from the snapshot, so the ``zone`` group is not used (setting it is an error).
    """

    path: str = MISSING  # snapshot file (.npz) written by `python -m sweep.snapshot save`
    zone: str = "all"  # "all", a zone name ("Normal", "DMA32") or "N:Name" for node N
    pinned_fraction: float = 0.0  # share of movable base pages in MOVABLE blocks pinned


@dataclass
class ScenarioConfig(WorkloadConfig):
    """Common keys of the time-stepped workloads (docs/tick-model.md)."""

    gfp: str = "nowait"  # high-order attempts: nowait | movable | thp (GFP_NAMES)
    # migratetype of the attempts: auto (gfp_migratetype() of the GFP class: GFP_NOWAIT has
    # no __GFP_MOVABLE, so unmovable; movable and thp are movable) | unmovable | movable |
    # reclaimable
    attempt_mt: str = "auto"
    default_order: int = 4  # attempt order when the top-level order is -1
    sample_every: int = 10  # ticks between buddyinfo samples
    kswapd_rounds: int = 32  # reclaim rounds of 32 pages kswapd may do per tick


@dataclass
class HolepunchConfig(ScenarioConfig):
    """Seed 000 patches 2-4: punch every other page of a file, then GFP_NOWAIT attempts."""

    free_fraction: float = 0.0  # free memory before punching (above the file)
    unmovable_fraction: float = 0.0
    reclaimable_fraction: float = 0.0
    file_fraction: float = 0.0  # movable pages that are reclaimable page cache
    tick_ms: float = 10.0  # simulated time per tick
    attempts: int = 2000  # high-order attempts, one per tick
    keep: bool = True  # successful attempts stay allocated (free memory runs out)


@dataclass
class StressHighallocConfig(ScenarioConfig):
    """mmtests stress-highalloc (kernel-model.md 10): build-like load, passes 1, 2, 3."""

    mb_per_sec: int = 16  # HIGHALLOC_ALLOC_RATE: attempt interval (4096 << order) / rate
    percent: int = 95  # HIGHALLOC_PERCENTAGE: attempts per pass cover this much of memory
    load_pages_per_s: int = 2000  # background allocations per second of simulated time
    load_mix: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.03, 0.07])
    load_occupancy: float = 0.9  # probe frees balance allocations at this occupancy
    warmup_turnover: float = 1.5  # warm-up allocates this many zones' worth of pages
    warmup_ticks: int = 100  # over this many ticks (load alone, from an empty zone)
    rested_min_free_kbytes: int = 1024  # min_free_kbytes for pass 3 (at rest)


@dataclass
class PinnedConfig(ScenarioConfig):
    """Seed 003: most of the zone pinned (RDMA), THP faults with direct compaction."""

    free_fraction: float = 0.04
    pinned_fraction: float = 0.9375  # ~120 GB of 128 GB
    unmovable_fraction: float = 0.01
    reclaimable_fraction: float = 0.005
    pollution: float = 0.0  # share of unmovable/reclaimable pages inside movable blocks
    file_fraction: float = 0.5  # movable pages that are reclaimable page cache
    tick_ms: float = 100.0  # simulated time per tick
    attempts: int = 64  # THP faults, one per tick
    keep: bool = True


@dataclass
class RegionsConfig(ScenarioConfig):
    """Seed 002: a build-like load in cycles; memory regions kept entirely free over time.

    Each cycle is ``cycle_ticks`` ticks of a background load (``load_pages_per_s``, kinds
    ``load_mix``) whose random frees balance it at ``load_occupancy`` of the zone; every
    cycle after the first starts as a build ends: its anonymous memory freed and the
    caches dropped. No high-order attempts.
    """

    region_mb: int = 512  # memory region size (MiB): the RFC's test machine, KM 12(e)
    cycles: int = 3  # build cycles
    cycle_ticks: int = 300  # ticks per cycle
    tick_ms: float = 100.0  # simulated time per tick
    load_pages_per_s: int = 10000  # background allocations per second of simulated time
    load_mix: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.03, 0.07])
    load_occupancy: float = 0.6  # probe frees balance allocations at this share of the zone


@dataclass
class BulkAllocConfig(ScenarioConfig):
    """Seed 004: count x order-k pieces from a CMA area under a kernel-build-like load,
    by cma_alloc (one range, order-k calls, order-10 chunks) or alloc_pages_bulk."""

    method: str = "bulk"  # cma_range | cma_order4 | cma_order10 | bulk | bulk_range
    cma_mb: int = 500  # CMA area at the top of the zone, MiB, whole 4 MiB (1024-page) chunks
    count: int = 4800  # pieces of order `order` (default_order) each trial asks for
    trials: int = 10
    trial_every: int = 10  # load ticks between trials (the first after trial_every ticks)
    busy_file: float = 0.01  # share of page-cache pages busy (fs write) during a trial
    tick_ms: float = 100.0  # simulated time per tick
    load_pages_per_s: int = 2000  # stress_highalloc's build load (kernel-model.md 10)
    load_mix: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.03, 0.07])
    load_occupancy: float = 0.9
    warmup_turnover: float = 1.5
    warmup_ticks: int = 100


@dataclass
class SweepConfig:
    zone: ZoneConfig = MISSING
    kernel: KernelConfig = MISSING
    policy: PolicyConfig = MISSING
    # A WorkloadConfig subclass, chosen by the workload group option.
    workload: WorkloadConfig = MISSING
    # compact_node/snapshot: -1 only (whole zone). Time-stepped workloads: the order of
    # the high-order attempts, 1..10; -1 takes the workload's default_order.
    order: int = -1
    replicates: int = 4  # zones per cell, each from its own seed; the Z axis
    seed: int = 0  # base seed; replicate r uses kernels.rng.zone_seed(seed, r)
    # "auto" | "numpy" | "cupy" | "numba" | "numba_cuda" (the last two: time-stepped
    # workloads on sweep.compiled_tick's engine, on the CPU or one GPU thread per zone)
    backend: str = "auto"
    check_invariants: bool = True  # conservation checks after compaction


def register_configs() -> None:
    """Store the schemas as ``base_config`` and ``base_<group>``. Idempotent."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=SweepConfig)
    cs.store(group="zone", name="base_zone", node=ZoneConfig)
    cs.store(group="kernel", name="base_kernel", node=KernelConfig)
    cs.store(group="policy", name="base_policy", node=PolicyConfig)
    cs.store(group="workload", name="base_compact_node", node=CompactNodeConfig)
    cs.store(group="workload", name="base_snapshot", node=SnapshotWorkloadConfig)
    cs.store(group="workload", name="base_holepunch", node=HolepunchConfig)
    cs.store(group="workload", name="base_stress_highalloc", node=StressHighallocConfig)
    cs.store(group="workload", name="base_pinned", node=PinnedConfig)
    cs.store(group="workload", name="base_regions", node=RegionsConfig)
    cs.store(group="workload", name="base_bulk_alloc", node=BulkAllocConfig)


def to_config(cfg: DictConfig) -> SweepConfig:
    """Resolve a composed DictConfig into the typed schema objects."""
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise omegaconf_error(exc) from exc
    assert isinstance(obj, SweepConfig), type(obj)
    # ``+key=value`` appends keys past the schema; OmegaConf keeps them as attributes.
    extra = _extra_keys(obj)
    if extra:
        raise ConfigError(extra[0], f" is not a config key{_suggest(extra[0])}")
    return obj


def _extra_keys(obj: object, prefix: str = "") -> list[str]:
    """Attributes of a schema object (recursively) that are not dataclass fields."""
    fields = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    extra = [f"{prefix}{key}" for key in vars(obj) if key not in fields]
    for name in sorted(fields):
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            extra += _extra_keys(value, f"{prefix}{name}.")
    return extra


def _suggest(key: str) -> str:
    known = _known_keys()
    if key in known:  # e.g. workload.layout with workload=snapshot
        return " here (it belongs to another workload option)"
    hint = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return f" (did you mean {hint[0]}?)" if hint else ""


def _check_range(key: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ConfigError(key, f"={value} is out of range [{lo}, {hi}]")


def validate(cfg: SweepConfig) -> None:
    """Reject impossible values with a :class:`ConfigError` naming the key.

    Types and unknown keys were already checked by Hydra when it composed ``cfg``.
    """
    zone = cfg.zone
    if zone.pageblock_order != PAGEBLOCK_ORDER:
        raise ConfigError(
            "zone.pageblock_order",
            f"={zone.pageblock_order} is not supported (only {PAGEBLOCK_ORDER}, x86-64)",
        )
    if zone.max_order != MAX_PAGE_ORDER:
        raise ConfigError(
            "zone.max_order", f"={zone.max_order} is not supported (only {MAX_PAGE_ORDER})"
        )
    if zone.nr_pages < PAGEBLOCK_NR_PAGES:
        raise ConfigError(
            "zone.nr_pages",
            f"={zone.nr_pages} is smaller than one pageblock ({PAGEBLOCK_NR_PAGES} pages)",
        )
    if zone.nr_pages % PAGEBLOCK_NR_PAGES:
        raise ConfigError(
            "zone.nr_pages",
            f"={zone.nr_pages} is not a multiple of the pageblock size "
            f"({PAGEBLOCK_NR_PAGES} pages)",
        )
    if zone.min_free_kbytes is not None:
        _check_range("zone.min_free_kbytes", zone.min_free_kbytes, 0, zone.nr_pages * 4)

    if cfg.kernel.profile not in PROFILES:
        raise ConfigError(
            "kernel.profile", f"={cfg.kernel.profile!r} is not one of {', '.join(PROFILES)}"
        )
    _check_range(
        "zone.watermark_scale_factor",
        zone.watermark_scale_factor,
        1,
        WATERMARK_SCALE_FACTOR_MAX[cfg.kernel.profile],
    )

    if cfg.policy.kcompactd not in KCOMPACTD_MODES:
        raise ConfigError(
            "policy.kcompactd",
            f"={cfg.policy.kcompactd!r} is not one of {', '.join(KCOMPACTD_MODES)}",
        )
    _check_range("policy.proactiveness", cfg.policy.proactiveness, 0, 100)

    wl = cfg.workload
    _check_range("order", cfg.order, -1, MAX_PAGE_ORDER)
    if isinstance(wl, ScenarioConfig):
        _validate_scenario(cfg, wl)
    elif isinstance(wl, SnapshotWorkloadConfig):
        _validate_snapshot_workload(wl)
    else:
        _validate_compact_node(wl)

    if not isinstance(wl, ScenarioConfig):
        pol = cfg.policy
        unused = [
            (key, value)
            for key, value, default in (
                ("kcompactd", pol.kcompactd, "auto"),
                ("proactiveness", pol.proactiveness, 20),
                ("stop_below_watermark", pol.stop_below_watermark, False),
                ("sorted_freelists", pol.sorted_freelists, False),
                ("region_evacuation", pol.region_evacuation, False),
                ("region_worker_delayed", pol.region_worker_delayed, False),
            )
            if value != default
        ]
        if unused:
            key, value = unused[0]
            raise ConfigError(
                f"policy.{key}",
                f"={value} has no effect with workload={wl.name} (one whole-zone compaction, no "
                "kcompactd): use a time-stepped workload (holepunch, stress_highalloc, pinned, "
                "regions, bulk_alloc) "
                "or policy=default/isolate_pinned",
            )
    if not isinstance(wl, ScenarioConfig) and cfg.order != -1:
        raise ConfigError(
            "order",
            f"={cfg.order} cannot be used with workload={wl.name}: it compacts the whole "
            "zone (order -1, as /proc/sys/vm/compact_memory); leave order=-1",
        )
    if cfg.replicates < 1:
        raise ConfigError("replicates", f"={cfg.replicates} must be >= 1")
    _check_range("seed", cfg.seed, 0, 2**64 - 1)
    if cfg.backend not in SWEEP_BACKENDS:
        raise ConfigError("backend", f"={cfg.backend!r} is not one of {', '.join(SWEEP_BACKENDS)}")
    if cfg.backend in COMPILED_TICK_BACKENDS and not isinstance(wl, ScenarioConfig):
        raise ConfigError(
            "backend",
            f"={cfg.backend} runs the time-stepped workloads only (the compiled engine of "
            f"sweep/compiled_tick.py); workload={wl.name} runs the batched kernels, which "
            "are faster than a compiled scan there: use backend=numpy (or auto)",
        )


_ZONE_SELECTOR = re.compile(r"(?:(\d+):)?([A-Za-z][A-Za-z0-9_]*)")


def parse_zone_selector(selector: str) -> tuple[int | None, str] | None:
    """``workload.zone`` as ``(node or None, zone name)``; None for ``all``.

    Raises :class:`ConfigError` for anything that is not ``all``, ``Name`` or ``N:Name``.
    """
    if selector == "all":
        return None
    match = _ZONE_SELECTOR.fullmatch(selector)
    if match is None:
        raise ConfigError(
            "workload.zone",
            f"={selector!r} is not 'all', a zone name (Normal, DMA32, ...) or 'N:Name' "
            "(zone Name of node N)",
        )
    node = None if match.group(1) is None else int(match.group(1))
    return node, match.group(2)


def _validate_snapshot_workload(wl: SnapshotWorkloadConfig) -> None:
    """Values of ``workload=snapshot``; the file itself is checked in sweep.expand."""
    if not str(wl.path).strip():
        raise ConfigError("workload.path", "='' is empty: give the snapshot file to simulate")
    parse_zone_selector(str(wl.zone))
    _check_range("workload.pinned_fraction", wl.pinned_fraction, 0, 1)


def scenario_order(cfg: SweepConfig) -> int:
    """The attempt order of a time-stepped workload (``order``, or its default_order)."""
    assert isinstance(cfg.workload, ScenarioConfig)
    return cfg.workload.default_order if cfg.order == -1 else cfg.order


def _validate_scenario(cfg: SweepConfig, wl: ScenarioConfig) -> None:
    """Values of the time-stepped workloads (holepunch, stress_highalloc, pinned, regions,
    bulk_alloc)."""
    if cfg.zone.nr_pages % 1024:
        raise ConfigError(
            "zone.nr_pages",
            f"={cfg.zone.nr_pages} must be a multiple of 1024 (whole order-10 blocks) for "
            f"workload={wl.name}",
        )
    if wl.gfp not in GFP_CLASSES:
        raise ConfigError("workload.gfp", f"={wl.gfp!r} is not one of {', '.join(GFP_CLASSES)}")
    if wl.attempt_mt not in ("auto", *ATTEMPT_MIGRATETYPES):
        raise ConfigError(
            "workload.attempt_mt",
            f"={wl.attempt_mt!r} is not one of auto, {', '.join(ATTEMPT_MIGRATETYPES)}",
        )
    _check_range("workload.default_order", wl.default_order, 1, MAX_PAGE_ORDER)
    order = scenario_order(cfg)
    if order < 1:
        raise ConfigError("order", f"={cfg.order} is not an allocation order (1..{MAX_PAGE_ORDER})")
    if wl.gfp != "nowait" and order <= 3:
        raise ConfigError(
            "order",
            f"={order} with workload.gfp={wl.gfp}: only costly orders (> 3) are modelled for "
            "direct compaction (kernel-model.md 4.10); use 4..10 or gfp=nowait",
        )
    if hasattr(wl, "file_fraction"):
        _check_range("workload.file_fraction", wl.file_fraction, 0, 1)
    if hasattr(wl, "tick_ms") and not wl.tick_ms > 0:
        raise ConfigError("workload.tick_ms", f"={wl.tick_ms} must be > 0")
    mfk = cfg.zone.min_free_kbytes
    if mfk is not None and mfk < 128:
        raise ConfigError(
            "zone.min_free_kbytes",
            f"={mfk} is below 128, the smallest value the time-stepped model takes",
        )
    if wl.sample_every < 1:
        raise ConfigError("workload.sample_every", f"={wl.sample_every} must be >= 1")
    if wl.kswapd_rounds < 0:
        raise ConfigError("workload.kswapd_rounds", f"={wl.kswapd_rounds} must be >= 0")
    fractions = [
        k
        for k in ("free_fraction", "unmovable_fraction", "reclaimable_fraction", "pinned_fraction")
        if hasattr(wl, k)
    ]
    for key in fractions:
        _check_range(f"workload.{key}", getattr(wl, key), 0, 1)
    total = sum(getattr(wl, k) for k in fractions)
    if total > 1 + 1e-9:
        names = " + ".join(f"workload.{key}" for key in fractions)
        raise ConfigError(names, f" = {total:g} exceeds 1 (the rest of the zone is movable)")
    if hasattr(wl, "pollution"):
        _check_range("workload.pollution", wl.pollution, 0, 1)
    if hasattr(wl, "attempts") and wl.attempts < 1:
        raise ConfigError("workload.attempts", f"={wl.attempts} must be >= 1")
    if isinstance(wl, RegionsConfig):
        _validate_regions(cfg, wl)
    if isinstance(wl, BulkAllocConfig):
        _validate_bulk_alloc(cfg, wl)
    if isinstance(wl, StressHighallocConfig):
        if wl.mb_per_sec < 1:
            raise ConfigError("workload.mb_per_sec", f"={wl.mb_per_sec} must be >= 1")
        _check_range("workload.percent", wl.percent, 1, 100)
    if isinstance(wl, StressHighallocConfig | BulkAllocConfig):
        if len(wl.load_mix) != 4 or min(wl.load_mix) < 0 or abs(sum(wl.load_mix) - 1) > 1e-6:
            raise ConfigError(
                "workload.load_mix",
                f"={list(wl.load_mix)} must be 4 non-negative shares (anon, file, unmovable, "
                "reclaimable) summing to 1",
            )
        _check_range("workload.load_occupancy", wl.load_occupancy, 0.05, 1)
        if wl.load_pages_per_s < 0:
            raise ConfigError("workload.load_pages_per_s", f"={wl.load_pages_per_s} must be >= 0")
        _check_range("workload.warmup_turnover", wl.warmup_turnover, 0, 100)
        if wl.warmup_ticks < 1:
            raise ConfigError("workload.warmup_ticks", f"={wl.warmup_ticks} must be >= 1")
    if isinstance(wl, StressHighallocConfig):
        _check_range(
            "workload.rested_min_free_kbytes",
            wl.rested_min_free_kbytes,
            128,
            min(65536, cfg.zone.nr_pages * 4 // 4),  # at most a quarter of the zone
        )


def region_blocks(wl: RegionsConfig) -> int:
    """Pageblocks (2 MiB) per memory region of ``workload.region_mb``."""
    return wl.region_mb * 256 // PAGEBLOCK_NR_PAGES


def _validate_regions(cfg: SweepConfig, wl: RegionsConfig) -> None:
    """Values of ``workload=regions`` (seed 002)."""
    mb = wl.region_mb
    if mb < 2 or mb & (mb - 1):
        raise ConfigError(
            "workload.region_mb",
            f"={mb} must be a power of two >= 2 (whole 2 MiB pageblocks, 2^k of them)",
        )
    if mb * 256 > cfg.zone.nr_pages:
        raise ConfigError(
            "workload.region_mb",
            f"={mb} is larger than the zone ({cfg.zone.nr_pages * 4 // 1024} MiB): "
            "give at least one whole region",
        )
    if wl.cycles < 1:
        raise ConfigError("workload.cycles", f"={wl.cycles} must be >= 1")
    if wl.cycle_ticks < 1:
        raise ConfigError("workload.cycle_ticks", f"={wl.cycle_ticks} must be >= 1")
    if wl.load_pages_per_s < 0:
        raise ConfigError("workload.load_pages_per_s", f"={wl.load_pages_per_s} must be >= 0")
    if len(wl.load_mix) != 4 or min(wl.load_mix) < 0 or abs(sum(wl.load_mix) - 1) > 1e-6:
        raise ConfigError(
            "workload.load_mix",
            f"={list(wl.load_mix)} must be 4 non-negative shares (anon, file, unmovable, "
            "reclaimable) summing to 1",
        )
    _check_range("workload.load_occupancy", wl.load_occupancy, 0.05, 1)


def _validate_bulk_alloc(cfg: SweepConfig, wl: BulkAllocConfig) -> None:
    """Values of ``workload=bulk_alloc`` (seed 004, docs/tick-model.md 7)."""
    if wl.method not in BULK_METHODS:
        raise ConfigError(
            "workload.method", f"={wl.method!r} is not one of {', '.join(BULK_METHODS)}"
        )
    zone_mb = cfg.zone.nr_pages // 256
    if wl.cma_mb % 4 or not 4 <= wl.cma_mb < zone_mb:
        raise ConfigError(
            "workload.cma_mb",
            f"={wl.cma_mb} must be a multiple of 4 (whole 1024-page chunks) in [4, {zone_mb}) "
            f"(zone.nr_pages={cfg.zone.nr_pages} is {zone_mb} MiB)",
        )
    order = scenario_order(cfg)
    pieces = (wl.cma_mb * 256) >> order
    if not 1 <= wl.count <= pieces:
        raise ConfigError(
            "workload.count",
            f"={wl.count} must be in [1, {pieces}] (order-{order} pieces in workload.cma_mb="
            f"{wl.cma_mb})",
        )
    if wl.trials < 1:
        raise ConfigError("workload.trials", f"={wl.trials} must be >= 1")
    if wl.trial_every < 1:
        raise ConfigError("workload.trial_every", f"={wl.trial_every} must be >= 1")
    _check_range("workload.busy_file", wl.busy_file, 0, 1)
    if wl.gfp != "nowait" or wl.attempt_mt != "auto":
        key = "workload.gfp" if wl.gfp != "nowait" else "workload.attempt_mt"
        raise ConfigError(key, " has no effect with workload=bulk_alloc (no high-order attempts)")
    for key in ("sorted_freelists", "region_evacuation", "region_worker_delayed"):
        if getattr(cfg.policy, key):
            raise ConfigError(
                f"policy.{key}",
                "=true is not modelled with workload=bulk_alloc: memory regions (seed 002) "
                "and CMA pageblocks (seed 004) together are not specified "
                "(docs/tick-model.md 6, 7)",
            )


def _validate_compact_node(wl: CompactNodeConfig) -> None:
    """Values of ``workload=compact_node``."""
    if wl.layout not in LAYOUTS:
        raise ConfigError("workload.layout", f"={wl.layout!r} is not one of {', '.join(LAYOUTS)}")
    for key in FRACTION_KEYS:
        _check_range(f"workload.{key}", getattr(wl, key), 0, 1)
    # free_quarter always frees 3/4 of every pageblock: free_fraction is unused there.
    kinds = [
        k for k in PAGE_FRACTION_KEYS if not (wl.layout == "free_quarter" and k == "free_fraction")
    ]
    total = sum(getattr(wl, key) for key in kinds)
    if total > 1 + 1e-9:
        names = " + ".join(f"workload.{key}" for key in kinds)
        raise ConfigError(names, f" = {total:g} exceeds 1 (the rest of the zone is movable)")
    orders = list(wl.folio_orders)
    max_folio_order = (
        FREE_QUARTER_MAX_FOLIO_ORDER if wl.layout == "free_quarter" else MAX_FOLIO_ORDER
    )
    for order in orders:
        if not 1 <= order <= max_folio_order:
            raise ConfigError(
                "workload.folio_orders",
                f"={orders}: folio order {order} is out of range [1, {max_folio_order}]"
                + (" for workload.layout=free_quarter" if wl.layout == "free_quarter" else ""),
            )
    if len(set(orders)) != len(orders):
        raise ConfigError("workload.folio_orders", f"={orders} repeats an order")
    if wl.folio_fraction > 0 and not orders:
        raise ConfigError("workload.folio_orders", "=[] is empty but workload.folio_fraction > 0")
    if wl.layout == "holepunch" and wl.folio_fraction > 0:
        raise ConfigError(
            "workload.folio_fraction",
            f"={wl.folio_fraction} must be 0 with workload.layout=holepunch "
            "(punching holes splits large folios)",
        )


def _known_keys() -> list[str]:
    schema = {
        "zone": [ZoneConfig],
        "kernel": [KernelConfig],
        "policy": [PolicyConfig],
        "workload": [
            CompactNodeConfig,
            SnapshotWorkloadConfig,
            HolepunchConfig,
            StressHighallocConfig,
            PinnedConfig,
            RegionsConfig,
            BulkAllocConfig,
        ],
    }
    keys = [f.name for f in dataclasses.fields(SweepConfig)]
    for group, classes in schema.items():
        for cls in classes:
            keys += [f"{group}.{f.name}" for f in dataclasses.fields(cls)]
    return sorted(set(keys))


def omegaconf_error(exc: BaseException) -> ConfigError:
    """Turn an OmegaConf error (unknown key, wrong type, missing value) into one line."""
    key = getattr(exc, "full_key", None) or "config"
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ConfigKeyError | ConfigAttributeError):
        return ConfigError(key, f" is not a config key{_suggest(key)}")
    if isinstance(exc, MissingMandatoryValue):
        return ConfigError(key, " is missing: it has no default, so it must be set")
    return ConfigError(key, f": {msg}")


def composition_error(exc: BaseException) -> ConfigError:
    """Turn a Hydra composition failure into a :class:`ConfigError` (one line)."""
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        # "Could not find 'zone/17g'": an unknown option of a config group.
        group, _, option = (exc.missing_cfg_file or "").partition("/")
        options = sorted(o for o in exc.options if not o.startswith("base_"))
        return ConfigError(
            f"{group}={option}" if group else "config",
            f" is not a known option (available: {', '.join(options)})",
        )
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, OmegaConfBaseException):
            return omegaconf_error(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, OmegaConfBaseException):
        return omegaconf_error(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return ConfigError("config", ": " + ("; ".join(lines) if lines else type(exc).__name__))


def compose_config(overrides: Sequence[str], config_name: str = CONFIG_NAME) -> SweepConfig:
    """Compose and validate the config for ``overrides`` without running anything.

    Raises :class:`ConfigError` (one line, naming the key) for an unknown key, a wrong
    type, an unknown group option or an impossible value.
    """
    register_configs()
    overrides = list(overrides)
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="sweep"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # ValueError: hydra's defaults list rejects some malformed overrides ("=3") this way.
        raise composition_error(exc) from exc
    config = to_config(cfg)
    validate(config)
    if isinstance(config.workload, SnapshotWorkloadConfig):
        reject_zone_overrides(overrides)
    return config


def reject_zone_overrides(overrides: Sequence[str]) -> None:
    """Raise :class:`ConfigError` if ``overrides`` set the ``zone`` group or a ``zone.*`` key.

    With ``workload=snapshot`` the zones, their sizes and their watermarks come from the
    snapshot file, so a zone preset or key would be silently ignored: refuse it instead.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise composition_error(exc) from exc
    for override in parsed:
        key = override.key_or_group
        if key == "zone" or key.startswith("zone."):
            value = override.get_value_element_as_str() if override.value() is not None else ""
            raise ConfigError(
                key,
                f"{'=' + value if value else ''} cannot be used with workload=snapshot: the "
                "zones, their sizes and watermarks come from the snapshot file (choose zones "
                "with workload.zone)",
            )


def sweep_cells(overrides: Sequence[str]) -> list[list[str]]:
    """Expand multirun sweep overrides (``order=1,2``, ``seed=range(4)``) into cells.

    Mirrors hydra's BasicSweeper.split_arguments; non-discrete sweeps (intervals) are
    left for the sweeper to reject.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise composition_error(exc) from exc
    lists: list[list[str]] = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                return [list(overrides)]
            lists.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            lists.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(cell) for cell in itertools.product(*lists)]
