"""Config -> kernel params: typed config objects in, frozen params with a zone axis out.

Every per-zone knob becomes a ``(Z,)`` array with Z = ``replicates``, one zone per
replicate, so later issues can pack several cells into one batch by concatenating
these arrays. Kernels never see a Hydra or OmegaConf object.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernels.compaction import CompactParams
from kernels.fragment import FRACTION_FIELDS, FragmentParams, fragment_counts, inject_pins
from kernels.rng import hash_u64, zone_seed
from kernels.zone import (
    MAX_PAGE_ORDER,
    PAGEBLOCK_NR_PAGES,
    UNMOVABLE,
    MigrateType,
    ZoneState,
    default_min_free_kbytes,
)
from sweep.config import (
    PROFILES,
    ConfigError,
    ScenarioConfig,
    SnapshotWorkloadConfig,
    SweepConfig,
    parse_zone_selector,
)

if TYPE_CHECKING:
    from sweep.snapshot import Snapshot, ZoneSnapshot


@dataclasses.dataclass(frozen=True)
class CompactNodeParams:
    """Kernel params of one ``compact_node`` cell. Z = replicates."""

    fragment: FragmentParams  # fragmenter params, per-zone fields (Z,)
    compact: CompactParams  # compaction profile and policy, per-zone fields (Z,)
    min_free_kbytes: np.ndarray  # (Z,) int64; vm.min_free_kbytes
    watermark_scale_factor: np.ndarray  # (Z,) int64; vm.watermark_scale_factor

    @property
    def nr_zones(self) -> int:
        return int(self.min_free_kbytes.shape[0])


def fragment_params(cfg: SweepConfig) -> FragmentParams:
    """Fragmenter params (host arrays) for the ``cfg.replicates`` zones of ``cfg``."""
    wl = cfg.workload
    replicate_ids = np.arange(cfg.replicates, dtype=np.uint64)
    return FragmentParams.create(
        layout=wl.layout,
        nr_pages=cfg.zone.nr_pages,
        seed=zone_seed(cfg.seed, replicate_ids),
        free_fraction=wl.free_fraction,
        unmovable_fraction=wl.unmovable_fraction,
        reclaimable_fraction=wl.reclaimable_fraction,
        pinned_fraction=wl.pinned_fraction,
        pollution=wl.pollution,
        folio_fraction=wl.folio_fraction,
        folio_orders=tuple(int(o) for o in wl.folio_orders),
    )


def check_feasible(cfg: SweepConfig) -> None:
    """Raise :class:`ConfigError` if the fragmenter cannot lay out the requested zones.

    Runs the fragmenter's exact host-side counts (no page arrays), so it is cheap
    enough to run before a run directory exists. With ``workload=snapshot`` it loads the
    snapshot file (cached) and checks that ``workload.zone`` names zones in it.
    """
    if is_snapshot_workload(cfg):
        select_zones(load_workload_snapshot(cfg), str(cfg.workload.zone))
        return
    if isinstance(cfg.workload, ScenarioConfig):
        from sweep.scenario import check_scenario_feasible

        check_scenario_feasible(cfg)
        return
    try:
        fragment_counts(fragment_params(cfg))
    except ValueError as exc:
        raise ConfigError("workload", f": {exc}") from exc


def effective_min_free_kbytes(cfg: SweepConfig) -> int:
    """``zone.min_free_kbytes``, or the kernel's boot-time default when it is null.

    The zone is all of lowmem on a single-zone node (kernels.zone.setup_per_zone_wmarks).
    """
    if cfg.zone.min_free_kbytes is not None:
        return cfg.zone.min_free_kbytes
    profile = PROFILES[cfg.kernel.profile]
    return default_min_free_kbytes(lowmem_kbytes=cfg.zone.nr_pages * 4, profile=profile)


def compact_node_params(cfg: SweepConfig, xp: Any) -> CompactNodeParams:
    """Build the params of a ``compact_node`` run of ``cfg.replicates`` zones on ``xp``."""
    nr_zones = cfg.replicates
    profile = PROFILES[cfg.kernel.profile]

    fragment = fragment_params(cfg)
    min_free_kbytes = effective_min_free_kbytes(cfg)
    compact = CompactParams(
        profile=profile,
        skip_pinned=xp.asarray(np.full(nr_zones, cfg.policy.skip_pinned, dtype=bool)),
    )
    return CompactNodeParams(
        fragment=fragment,
        compact=compact,
        min_free_kbytes=np.full(nr_zones, min_free_kbytes, dtype=np.int64),
        watermark_scale_factor=np.full(nr_zones, cfg.zone.watermark_scale_factor, dtype=np.int64),
    )


def batch_key(cfg: SweepConfig) -> tuple[Any, ...]:
    """What cells must share to run in one ``compact_node`` call: shapes and static params.

    The zone size fixes the array shapes; the kernel profile is static in CompactParams;
    the layout and folio orders are static in FragmentParams; the backend picks the
    array library. Everything else (fractions, seeds, skip_pinned, watermarks) is a
    per-zone array, so cells that differ only there can share a batch.
    """
    if is_snapshot_workload(cfg):
        raise ValueError("workload=snapshot cells are not packed into compact_node batches")
    if isinstance(cfg.workload, ScenarioConfig):
        from sweep.scenario import scenario_batch_key

        return scenario_batch_key(cfg)
    wl = cfg.workload
    return (
        wl.name,
        cfg.zone.nr_pages,
        cfg.kernel.profile,
        cfg.backend,
        wl.layout,
        tuple(int(o) for o in wl.folio_orders),
    )


def compact_node_batch_params(cfgs: Sequence[SweepConfig], xp: Any) -> CompactNodeParams:
    """The params of several ``compact_node`` cells joined along the zone axis.

    Cell ``i`` gets zones ``sum(replicates[:i]) ...`` in order; each zone keeps the seed
    and per-zone knobs it has in a run of its cell alone, so the results per zone are the
    same. The cells must have the same :func:`batch_key`.
    """
    if not cfgs:
        raise ValueError("no cells to batch")
    keys = {batch_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"cells with different static params cannot share a batch: {keys}")
    parts = [compact_node_params(c, np) for c in cfgs]

    def cat(arrays: Sequence[Any]) -> np.ndarray:
        return np.concatenate([np.asarray(a) for a in arrays])

    first = parts[0].fragment
    fragment = dataclasses.replace(
        first,
        seed=cat([p.fragment.seed for p in parts]),
        **{name: cat([getattr(p.fragment, name) for p in parts]) for name in FRACTION_FIELDS},
    )
    compact = CompactParams(
        profile=parts[0].compact.profile,
        skip_pinned=xp.asarray(cat([p.compact.skip_pinned for p in parts])),
    )
    return CompactNodeParams(
        fragment=fragment,
        compact=compact,
        min_free_kbytes=cat([p.min_free_kbytes for p in parts]),
        watermark_scale_factor=cat([p.watermark_scale_factor for p in parts]),
    )


# --------------------------------------------------------------------------------------
# workload=snapshot: zones read from a real machine (sweep.snapshot)

# A zone array must start at a MAX_PAGE_ORDER-aligned PFN for the buddy blocks that
# kernels.buddy derives (zone-relative alignment) to be the kernel's (absolute alignment).
BUDDY_ALIGN = 1 << MAX_PAGE_ORDER


def is_snapshot_workload(cfg: SweepConfig) -> bool:
    return isinstance(cfg.workload, SnapshotWorkloadConfig)


@functools.lru_cache(maxsize=2)
def _load_snapshot_cached(path: str, mtime_ns: int, size: int) -> Snapshot:
    from sweep.snapshot import load_snapshot

    return load_snapshot(path)


def load_workload_snapshot(cfg: SweepConfig) -> Snapshot:
    """The snapshot named by ``workload.path``; any problem is a :class:`ConfigError`.

    Loaded once per process for a given file version (the config check and the run
    share it).
    """
    from sweep.snapshot import SnapshotError

    given = str(cfg.workload.path)
    path = Path(given).expanduser()
    key = "workload.path"
    if not path.exists():
        raise ConfigError(
            key, f"={given}: no such file (write one with python -m sweep.snapshot save)"
        )
    if not path.is_file():
        raise ConfigError(key, f"={given} is not a file")
    try:
        st = path.stat()
        return _load_snapshot_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)
    except SnapshotError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(key, f"={given}: not a usable snapshot: {reason}") from exc
    except OSError as exc:
        raise ConfigError(key, f"={given}: cannot read it ({exc.strerror or exc})") from exc


def zone_label(zone: ZoneSnapshot) -> str:
    """``"<node>:<name>"``, e.g. ``"0:Normal"``: the zone coordinate of result.nc."""
    return f"{zone.node}:{zone.name}"


def select_zones(snapshot: Snapshot, selector: str) -> list[tuple[int, ZoneSnapshot]]:
    """``(index in snapshot.zones, zone)`` of the zones chosen by ``workload.zone``.

    ``all``: every zone of the snapshot. ``Name`` (case-insensitive): the zone of that
    name; an error if several nodes have one (then ``N:Name`` picks one). ``N:Name``:
    zone Name of node N. Unknown names are a :class:`ConfigError` listing the zones.
    """
    zones = list(enumerate(snapshot.zones))
    if not zones:
        raise ConfigError("workload.path", ": the snapshot holds no zones")
    wanted = parse_zone_selector(selector)
    if wanted is None:
        return zones
    node, name = wanted
    chosen = [
        (i, z)
        for i, z in zones
        if z.name.lower() == name.lower() and (node is None or z.node == node)
    ]
    available = ", ".join(zone_label(z) for _, z in zones)
    if not chosen:
        raise ConfigError(
            "workload.zone", f"={selector}: no such zone in the snapshot (it has {available})"
        )
    if len(chosen) > 1:
        raise ConfigError(
            "workload.zone",
            f"={selector} is on several nodes ({', '.join(zone_label(z) for _, z in chosen)}): "
            "choose one as N:Name",
        )
    return chosen


def zone_arrays(zone: ZoneSnapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(page_state (N,), pageblock_migratetype (B,), hole (N,), pad)`` of a snapshot zone.

    The arrays start at ``zone.base_pfn - pad``: when ``base_pfn`` is not
    ``BUDDY_ALIGN``-aligned, ``pad`` = 512 hole pages (UNMOVABLE, in an UNMOVABLE
    pageblock) are put in front so that buddy blocks keep their absolute alignment.
    """
    page_state = np.asarray(zone.page_state, dtype=np.uint8)
    mt = np.asarray(zone.pageblock_migratetype, dtype=np.int8)
    hole = np.asarray(zone.hole, dtype=bool)
    pad = int(zone.base_pfn) % BUDDY_ALIGN
    if pad:
        assert pad % PAGEBLOCK_NR_PAGES == 0, zone.base_pfn
        page_state = np.concatenate([np.full(pad, UNMOVABLE, dtype=np.uint8), page_state])
        mt = np.concatenate(
            [np.full(pad // PAGEBLOCK_NR_PAGES, int(MigrateType.UNMOVABLE), np.int8), mt]
        )
        hole = np.concatenate([np.ones(pad, dtype=bool), hole])
    return page_state, mt, hole, pad


@dataclasses.dataclass(frozen=True)
class SnapshotZoneParams:
    """Kernel params of one snapshot zone: a batch of Z = replicates copies of it."""

    index: int  # the zone's index in snapshot.zones
    label: str  # "<node>:<name>"
    zone: ZoneSnapshot
    seeds: np.ndarray  # (Z,) uint64; pin seeds, from (seed, zone index, replicate)
    pinned_fraction: float  # workload.pinned_fraction
    compact: CompactParams  # compaction profile and policy, per-zone fields (Z,)

    @property
    def nr_zones(self) -> int:
        return int(self.seeds.shape[0])


def snapshot_pin_seeds(base_seed: int, zone_index: int, nr_replicates: int) -> np.ndarray:
    """``(Z,)`` uint64 seeds of the pins of replicate ``r`` of snapshot zone ``zone_index``."""
    replicate_ids = np.arange(nr_replicates, dtype=np.uint64)
    return np.asarray(hash_u64(np, base_seed, 1 + zone_index, 0, replicate_ids), dtype=np.uint64)


def snapshot_params(cfg: SweepConfig, xp: Any) -> tuple[Snapshot, list[SnapshotZoneParams]]:
    """The snapshot of ``workload.path`` and the params of each zone chosen by ``workload.zone``."""
    snapshot = load_workload_snapshot(cfg)
    profile = PROFILES[cfg.kernel.profile]
    params = []
    for index, zone in select_zones(snapshot, str(cfg.workload.zone)):
        params.append(
            SnapshotZoneParams(
                index=index,
                label=zone_label(zone),
                zone=zone,
                seeds=snapshot_pin_seeds(cfg.seed, index, cfg.replicates),
                pinned_fraction=float(cfg.workload.pinned_fraction),
                compact=CompactParams(
                    profile=profile,
                    skip_pinned=xp.asarray(np.full(cfg.replicates, cfg.policy.skip_pinned, bool)),
                ),
            )
        )
    return snapshot, params


def snapshot_zone_state(xp: Any, params: SnapshotZoneParams) -> ZoneState:
    """Z copies of the snapshot zone on ``xp``, pins injected, the snapshot's watermarks."""
    page_state, mt, _hole, _pad = zone_arrays(params.zone)
    nr_zones = params.nr_zones
    pages = xp.empty((nr_zones, page_state.shape[0]), dtype=xp.uint8)
    pages[...] = xp.asarray(page_state)[None, :]
    blocks = xp.empty((nr_zones, mt.shape[0]), dtype=xp.int8)
    blocks[...] = xp.asarray(mt)[None, :]
    if params.pinned_fraction > 0:
        pages = inject_pins(xp, pages, blocks, params.seeds, params.pinned_fraction)

    def per_zone(value: int) -> Any:
        return xp.asarray(np.full(nr_zones, int(value), dtype=np.int64))

    return ZoneState(
        page_state=pages,
        pageblock_migratetype=blocks,
        wmark_min=per_zone(params.zone.wmark_min),
        wmark_low=per_zone(params.zone.wmark_low),
        wmark_high=per_zone(params.zone.wmark_high),
    )
