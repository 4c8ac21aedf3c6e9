"""Config -> kernel params: typed config objects in, frozen params with a zone axis out.

Every per-zone knob becomes a ``(Z,)`` array with Z = ``replicates``, one zone per
replicate, so later issues can pack several cells into one batch by concatenating
these arrays. Kernels never see a Hydra or OmegaConf object.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kernels.compaction import CompactParams
from kernels.fragment import FragmentParams, fragment_counts
from kernels.rng import zone_seed
from kernels.zone import default_min_free_kbytes
from sweep.config import PROFILES, ConfigError, SweepConfig


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
    enough to run before a run directory exists.
    """
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
