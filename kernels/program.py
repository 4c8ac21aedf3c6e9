"""Definitions shared by the time-stepped engine and its reference: kinds, programs, results.

The model itself is specified in ``docs/tick-model.md``; :mod:`kernels.tick` runs it
batched over zones and ``tests/reference/tick.py`` runs it for one zone in the kernel's
control flow. Both take a :class:`Program` (the phases of a workload, shared by a batch)
and per-zone :class:`TickZones` arrays (so one batch can mix orders and policies), and
return a :class:`TickResult`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.zone import MigrateType

# Page kinds of the tick model (docs/tick-model.md section 1).
FREE = 0
ANON = 1
FILE = 2
UNMOV = 3
RECL = 4
PIN = 5
HELD = 6
ISOFREE = 7
KIND_NAMES = ("free", "anon", "file", "unmovable", "reclaimable", "pinned", "held", "isofree")
LRU_KINDS = (ANON, FILE, PIN)
BACKGROUND_KINDS = (ANON, FILE, UNMOV, RECL)  # order of Phase.alloc_weights

# Allocation migratetype of a background kind (HELD uses the attempt's migratetype).
KIND_MIGRATETYPE = {
    ANON: int(MigrateType.MOVABLE),
    FILE: int(MigrateType.MOVABLE),
    PIN: int(MigrateType.MOVABLE),
    UNMOV: int(MigrateType.UNMOVABLE),
    RECL: int(MigrateType.RECLAIMABLE),
}

# GFP classes of a phase's high-order attempts (docs/tick-model.md section 4, step 4).
GFP_NOWAIT = 0  # GFP_NOWAIT: no direct reclaim or compaction (seed 000)
GFP_MOVABLE = 1  # GFP_HIGHUSER_MOVABLE, costly: async compaction, reclaim, sync-light (KM 10.4)
GFP_THP = 2  # GFP_TRANSHUGE | __GFP_NORETRY: async compaction only (KM 4.10)
GFP_NAMES = ("nowait", "movable", "thp")

# kcompactd modes (conf/policy: kcompactd).
KCOMPACTD_NONE = 0
KCOMPACTD_REACTIVE = 1
KCOMPACTD_PROACTIVE_DEMAND = 2
KCOMPACTD_PROACTIVE_SCORE = 3
KCOMPACTD_NAMES = ("none", "reactive", "proactive_demand", "proactive_score")

# Random streams (docs/tick-model.md section 4).
STREAM_FREE = 1
STREAM_ALLOC = 2
STREAM_BUSY = 4  # contig trials: which FILE pages are busy (tick-model.md 7.3)

# MIGRATE_CMA pageblocks (tick-model.md 7.1; kernel enum value 4, after HIGHATOMIC = 3).
MT_CMA = 4

# Contiguous-allocation trial methods (tick-model.md 7, TickZones.contig_method).
CONTIG_NONE = 0
CONTIG_CMA_RANGE = 1  # one cma_alloc of count << order pages
CONTIG_CMA_ORDER = 2  # count cma_alloc calls of 1 << order pages
CONTIG_CMA_ORDER10 = 3  # cma_alloc of 1024-page chunks split into order-`order` pieces
CONTIG_BULK = 4  # alloc_pages_bulk(cma area, order, count): best effort, per chunk
CONTIG_BULK_RANGE = 5  # alloc_pages_bulk(cma base, base + count << order, ...): no spare
CONTIG_NAMES = ("none", "cma_range", "cma_order4", "cma_order10", "bulk", "bulk_range")
CONFIG_CMA_ALIGNMENT = 8  # the DMA API's cma_alloc(align = min(get_order(size), 8))
# Per-trial results (TickResult.trials[..., i]).
TRIAL_FIELDS = ("obtained", "complete", "migrated", "reclaimed", "windows", "scanned")

# Per-zone counters, cumulative; the results report them per phase.
COUNTERS = (
    "compact_stall",
    "compact_success",
    "compact_fail",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "compact_daemon_wake",
    "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "lru_lock_acquisitions",
    "alloc_attempts",
    "alloc_success",
    "alloc_background",
    "alloc_background_fail",
    "kswapd_wake",
    "pgsteal_kswapd",
    "direct_reclaimed",
    "region_evacuations",  # regions (seed 002): mem_power_ctrl work runs (tick-model.md 6)
)
COUNTER_INDEX = {name: i for i, name in enumerate(COUNTERS)}

# Final per-zone scalars every implementation reports (TickResult.scalars).
SCALARS = (
    "clock",
    "cached_migrate",
    "cached_free",
    "compact_considered",
    "compact_defer_shift",
    "compact_order_failed",
    "compact_blockskip_flush",
    "kswapd_awake",
    "kswapd_order",
    "kswapd_failures",
    "kcompactd_max_order",
    "reclaim_cursor",
    "wmark_min",
    "wmark_low",
    "wmark_high",
    "mpc_region",  # regions (seed 002): the region noted by the alloc path, -1 = none
)


@dataclass(frozen=True)
class Phase:
    """One phase of a program; every zone of a batch runs the same phases."""

    name: str
    ticks: int
    frees_per_tick: int = 0
    allocs_per_tick: int = 0
    alloc_weights: tuple[float, float, float, float] = (0.5, 0.5, 0.0, 0.0)  # ANON FILE UNMOV RECL
    free_kinds: tuple[int, ...] = BACKGROUND_KINDS
    attempt_every: int = 0  # 0: no high-order attempts
    attempt_gfp: int = GFP_NOWAIT
    attempt_mt: int = int(MigrateType.MOVABLE)
    keep: bool = False  # successful attempts stay allocated (HELD) until the phase ends
    kill_anon: bool = False  # phase start: free every ANON page
    drop_caches: bool = False  # phase start: free every FILE and RECL page
    min_free_kbytes: int = 0  # phase start: recompute watermarks with this (0 = keep)
    # contiguous-allocation trials (tick-model.md 7.4): one every contig_every ticks
    contig_every: int = 0  # 0: no trials
    contig_count: int = 4800  # pieces of 2^contig_order pages a trial asks for
    contig_order: int = 4

    def __post_init__(self) -> None:
        if self.ticks < 0 or self.frees_per_tick < 0 or self.allocs_per_tick < 0:
            raise ValueError(f"phase {self.name}: negative tick or event count")
        if self.attempt_every < 0:
            raise ValueError(f"phase {self.name}: attempt_every < 0")
        if len(self.alloc_weights) != 4 or min(self.alloc_weights) < 0:
            raise ValueError(f"phase {self.name}: alloc_weights must be 4 non-negative numbers")
        if self.allocs_per_tick and not math.isclose(sum(self.alloc_weights), 1.0, abs_tol=1e-9):
            raise ValueError(f"phase {self.name}: alloc_weights must sum to 1")
        if self.attempt_gfp not in (GFP_NOWAIT, GFP_MOVABLE, GFP_THP):
            raise ValueError(f"phase {self.name}: unknown attempt_gfp {self.attempt_gfp}")
        if self.contig_every < 0 or self.contig_count < 1 or not 0 <= self.contig_order <= 10:
            raise ValueError(
                f"phase {self.name}: contig_every >= 0, contig_count >= 1 and "
                "0 <= contig_order <= 10 required"
            )

    @property
    def n_trials(self) -> int:
        return self.ticks // self.contig_every if self.contig_every else 0

    @property
    def n_attempts(self) -> int:
        return self.ticks // self.attempt_every if self.attempt_every else 0


@dataclass(frozen=True)
class Program:
    """The phases of a workload plus its time base."""

    phases: tuple[Phase, ...]
    tick_ms: float = 100.0
    sample_every: int = 1
    kswapd_rounds: int = 32  # reclaim rounds of SWAP_CLUSTER_MAX pages per tick
    watermark_scale_factor: int = 10

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a program needs at least one phase")
        if self.sample_every < 1 or self.tick_ms <= 0 or self.kswapd_rounds < 0:
            raise ValueError("sample_every >= 1, tick_ms > 0 and kswapd_rounds >= 0 required")

    @property
    def n_ticks(self) -> int:
        return sum(p.ticks for p in self.phases)

    @property
    def n_attempts(self) -> int:
        return sum(p.n_attempts for p in self.phases)

    @property
    def n_trials(self) -> int:
        return sum(p.n_trials for p in self.phases)

    @property
    def n_samples(self) -> int:
        return self.n_ticks // self.sample_every

    @property
    def proactive_period(self) -> int:
        """Ticks per 500 ms proactive-compaction timeout (KM 5.3)."""
        return max(1, math.ceil(500.0 / self.tick_ms))


@dataclass(frozen=True)
class TickZones:
    """Per-zone inputs, each ``(Z,)``; NumPy arrays (the engine moves them to its backend)."""

    seed: np.ndarray  # uint64, kernels.rng.zone_seed
    attempt_order: np.ndarray  # int64, 1..10
    kcompactd: np.ndarray  # int64, KCOMPACTD_*
    skip_pinned: np.ndarray  # bool
    stop_below_watermark: np.ndarray  # bool (seed 000 patch 5)
    proactiveness: np.ndarray  # int64, 0..100
    min_free_kbytes: np.ndarray  # int64
    # Memory regions (seed 002, tick-model.md 6); the defaults are the plain buddy.
    region_blocks: np.ndarray  # int64, pageblocks per memory region (a power of two)
    sorted_freelists: np.ndarray  # bool, free lists sorted by region (Bhat's sorted-buddy)
    region_evacuation: np.ndarray  # bool, the alloc/free handshake and its evacuation work
    region_worker_delayed: np.ndarray  # bool, the worker runs after the next tick's frees
    contig_method: np.ndarray | None = None  # int64 CONTIG_*, tick-model.md 7 (None: none)
    busy_file: np.ndarray | None = None  # float64 share of FILE pages busy in a trial

    def __post_init__(self) -> None:
        z_n = self.seed.shape[0]
        if self.contig_method is None:
            object.__setattr__(self, "contig_method", np.zeros(z_n, dtype=np.int64))
        if self.busy_file is None:
            object.__setattr__(self, "busy_file", np.zeros(z_n, dtype=np.float64))

    @classmethod
    def create(cls, nr_zones: int, **values: Any) -> TickZones:
        """Broadcast scalars or sequences to ``(nr_zones,)`` arrays of the right dtypes."""
        defaults = {
            "seed": np.arange(nr_zones, dtype=np.uint64),
            "attempt_order": 9,
            "kcompactd": KCOMPACTD_REACTIVE,
            "skip_pinned": True,
            "stop_below_watermark": False,
            "proactiveness": 20,
            "min_free_kbytes": 4096,
            "region_blocks": 256,  # 512 MiB: the test machine's hardware region (seed 002)
            "sorted_freelists": False,
            "region_evacuation": False,
            "region_worker_delayed": False,
            "contig_method": CONTIG_NONE,
            "busy_file": 0.0,
        }
        unknown = set(values) - set(defaults)
        if unknown:
            raise TypeError(f"unknown TickZones fields: {sorted(unknown)}")
        defaults.update(values)
        dtypes = {
            "seed": np.uint64,
            "skip_pinned": bool,
            "stop_below_watermark": bool,
            "busy_file": np.float64,
        }
        dtypes.update(sorted_freelists=bool, region_evacuation=bool, region_worker_delayed=bool)
        arrays = {
            k: np.broadcast_to(np.asarray(v, dtype=dtypes.get(k, np.int64)), (nr_zones,)).copy()
            for k, v in defaults.items()
        }
        return cls(**arrays)

    @property
    def nr_zones(self) -> int:
        return int(self.seed.shape[0])

    def __getitem__(self, zones: Any) -> TickZones:
        return TickZones(
            **{f: np.atleast_1d(getattr(self, f)[zones]) for f in self.__dataclass_fields__}
        )

    def validate(self) -> None:
        bad = (self.attempt_order < 1) | (self.attempt_order > 10)
        if bad.any():
            raise ValueError(f"attempt_order must be in 1..10, got {self.attempt_order[bad][0]}")
        if ((self.kcompactd < 0) | (self.kcompactd >= len(KCOMPACTD_NAMES))).any():
            raise ValueError("unknown kcompactd mode")
        if ((self.proactiveness < 0) | (self.proactiveness > 100)).any():
            raise ValueError("proactiveness must be in 0..100")
        if (self.min_free_kbytes < 128).any():
            raise ValueError("min_free_kbytes must be >= 128")
        rb = self.region_blocks
        bad = (rb < 1) | ((rb & (rb - 1)) != 0)
        if bad.any():
            raise ValueError(f"region_blocks must be a power of two >= 1, got {rb[bad][0]}")
        if ((self.contig_method < 0) | (self.contig_method >= len(CONTIG_NAMES))).any():
            raise ValueError("unknown contig_method")
        if not ((self.busy_file >= 0) & (self.busy_file <= 1)).all():
            raise ValueError("busy_file must be in [0, 1]")


@dataclass
class TickResult:
    """What a program run returns (NumPy arrays, zone axis first)."""

    kind: np.ndarray  # (Z, N) uint8, final kinds
    block_mt: np.ndarray  # (Z, B) int8
    skip: np.ndarray  # (Z, B) bool
    buddy_order: np.ndarray  # (Z, N) int8
    list_mt: np.ndarray  # (Z, N) int8, meaningful where buddy_order >= 0
    key: np.ndarray  # (Z, N) int64, meaningful where buddy_order >= 0
    counters: np.ndarray  # (Z, P, C) int64, cumulative COUNTERS at the end of each phase
    buddyinfo: np.ndarray  # (Z, S, 11) int64, free heads per order at each sample
    nr_free: np.ndarray  # (Z, S) int64, NR_FREE at each sample
    attempts: np.ndarray  # (Z, n_attempts) int8, 1 success / 0 failure
    scalars: dict[str, np.ndarray] = field(default_factory=dict)  # SCALARS, (Z,) int64 each
    # (Z, S) int64: memory regions with every page FREE at each sample (seed 002)
    free_regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    trials: np.ndarray | None = None  # (Z, n_trials, len(TRIAL_FIELDS)) int64 (tick-model 7)


def weight_thresholds(weights: tuple[float, ...]) -> list[int]:
    """Cumulative 32-bit thresholds of a background-allocation kind mix.

    The kind of event ``j`` is the first ``k`` with ``(h >> 32) < thr[k]``; the last
    threshold is ``2**32`` so every draw lands somewhere.
    """
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    thr = [int(math.floor(c * 2.0**32)) for c in cum]
    thr[-1] = 1 << 32
    return thr
