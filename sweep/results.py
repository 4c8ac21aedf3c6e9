"""Results of a run: NumPy arrays in, a labelled xarray Dataset (and netCDF) out.

:func:`build_dataset` is a pure function of the arrays in a :class:`CompactNodeResult`
and the run's metadata; :func:`write_netcdf` writes a Dataset atomically (temp file +
rename); :func:`format_buddyinfo` and :func:`format_counters` render the text summary
printed at the end of a run. Variables keep the kernel's names (/proc/vmstat,
/proc/buddyinfo) so they can be compared with a real machine.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kernels.buddy import format_buddyinfo as format_line
from kernels.zone import MIGRATETYPE_NAMES, NR_PAGE_ORDERS, PAGE_KIND_NAMES

SNAPSHOTS = ("initial", "final")
ENGINE = "netcdf4"

# Attributes of the CompactCounters fields (kernels.compaction); a counter without an
# entry here still lands in the Dataset, with a generic long_name.
COUNTER_ATTRS: dict[str, dict[str, str]] = {
    "compact_migrate_scanned": {
        "units": "pages",
        "long_name": "pages scanned by the migrate scanner (/proc/vmstat compact_migrate_scanned)",
    },
    "compact_free_scanned": {
        "units": "pages",
        "long_name": "pages scanned by the free scanner (/proc/vmstat compact_free_scanned)",
    },
    "compact_isolated": {
        "units": "pages",
        "long_name": "pages isolated by both compaction scanners (/proc/vmstat compact_isolated)",
    },
    "pgmigrate_success": {
        "units": "pages",
        "long_name": "pages migrated successfully (/proc/vmstat pgmigrate_success)",
    },
    "pgmigrate_fail": {
        "units": "pages",
        "long_name": "pages that failed to migrate (/proc/vmstat pgmigrate_fail)",
    },
    "lru_lock_acquisitions": {
        "units": "1",
        "long_name": "LRU lock acquisitions in isolate_migratepages_block() (seed 003)",
    },
    "migrate_folio_split": {
        "units": "1",
        "long_name": "large folios split for lack of an aligned free target (simulator counter)",
    },
}

VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "compaction_cost": {
        "units": "1",
        "long_name": "mmtests compaction cost: (7*migrate_scanned + 19*isolated "
        "+ 1038*pgmigrate_success + 14*pgmigrate_fail) / 1e6 (kernel-model.md 7)",
    },
    "buddyinfo": {
        "units": "blocks",
        "long_name": "free blocks per order, all migratetypes (/proc/buddyinfo nr_free)",
    },
    "pagetypeinfo": {
        "units": "blocks",
        "long_name": "free blocks per migratetype and order (/proc/pagetypeinfo free counts)",
    },
    "nr_free_pages": {
        "units": "pages",
        "long_name": "free pages in the zone (/proc/vmstat nr_free_pages)",
    },
    "unusable_index": {
        "units": "1",
        "long_name": "unusable free space index: fraction of free memory in blocks smaller "
        "than the order (debugfs extfrag/unusable_index)",
    },
    "fragmentation_index": {
        "units": "1",
        "long_name": "fragmentation index: toward 1 failure is due to fragmentation, toward 0 "
        "to lack of memory, -1 an allocation would succeed (debugfs extfrag/extfrag_index)",
    },
    "page_counts": {
        "units": "pages",
        "long_name": "pages of each kind in the zone (simulator page state)",
    },
}


@dataclasses.dataclass(frozen=True)
class CompactNodeResult:
    """NumPy results of one compact_node run of Z zones. Snapshot axis: initial, final."""

    counters: Mapping[str, np.ndarray]  # name -> (Z,) int64; CompactCounters fields
    compaction_cost: np.ndarray  # (Z,) float64; mmtests formula
    buddyinfo: np.ndarray  # (Z, 2, 11) int64; free blocks per order
    pagetypeinfo: np.ndarray  # (Z, 2, 6, 11) int64; free blocks per migratetype and order
    nr_free_pages: np.ndarray  # (Z, 2) int64
    unusable_index: np.ndarray  # (Z, 2, 11) int64; thousandths, as the kernel computes it
    fragmentation_index: np.ndarray  # (Z, 2, 11) int64; thousandths
    page_counts: np.ndarray  # (Z, 2, 5) int64; pages per kind (PAGE_KIND_NAMES)
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)  # phase -> seconds

    @property
    def nr_zones(self) -> int:
        return int(self.buddyinfo.shape[0])


def build_dataset(result: CompactNodeResult, attrs: Mapping[str, Any]) -> xr.Dataset:
    """Label the arrays of ``result`` as a Dataset; ``attrs`` become global attributes.

    Dimensions: ``replicate``, ``snapshot`` (initial, final), ``buddy_order`` (0..10),
    ``migratetype`` and ``page_kind``. The extfrag indices are stored as the kernel
    prints them (value / 1000). Boolean attributes are stored as 0/1.
    """
    nr_zones = result.nr_zones
    rep, snap, order = "replicate", "snapshot", "buddy_order"
    data_vars: dict[str, Any] = {}
    for name, values in result.counters.items():
        attrs_ = COUNTER_ATTRS.get(
            name, {"units": "1", "long_name": f"{name} (kernels.compaction)"}
        )
        data_vars[name] = ((rep,), np.asarray(values, dtype=np.int64), attrs_)
    data_vars["compaction_cost"] = (
        (rep,),
        np.asarray(result.compaction_cost, dtype=np.float64),
        VARIABLE_ATTRS["compaction_cost"],
    )
    data_vars["buddyinfo"] = (
        (rep, snap, order),
        np.asarray(result.buddyinfo, dtype=np.int64),
        VARIABLE_ATTRS["buddyinfo"],
    )
    data_vars["pagetypeinfo"] = (
        (rep, snap, "migratetype", order),
        np.asarray(result.pagetypeinfo, dtype=np.int64),
        VARIABLE_ATTRS["pagetypeinfo"],
    )
    data_vars["nr_free_pages"] = (
        (rep, snap),
        np.asarray(result.nr_free_pages, dtype=np.int64),
        VARIABLE_ATTRS["nr_free_pages"],
    )
    for name in ("unusable_index", "fragmentation_index"):
        thousandths = np.asarray(getattr(result, name), dtype=np.int64)
        data_vars[name] = ((rep, snap, order), thousandths / 1000.0, VARIABLE_ATTRS[name])
    data_vars["page_counts"] = (
        (rep, snap, "page_kind"),
        np.asarray(result.page_counts, dtype=np.int64),
        VARIABLE_ATTRS["page_counts"],
    )
    coords = {
        rep: (
            rep,
            np.arange(nr_zones, dtype=np.int64),
            {"long_name": "replicate zone (seed stream)", "units": "1"},
        ),
        snap: (
            snap,
            list(SNAPSHOTS),
            {"long_name": "before (initial) or after (final) compaction"},
        ),
        order: (
            order,
            np.arange(NR_PAGE_ORDERS, dtype=np.int64),
            {"long_name": "buddy order", "units": "1"},
        ),
        "migratetype": (
            "migratetype",
            list(MIGRATETYPE_NAMES),
            {"long_name": "pageblock migratetype"},
        ),
        "page_kind": ("page_kind", list(PAGE_KIND_NAMES), {"long_name": "page kind"}),
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=netcdf_attrs(attrs))


ZONE_VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "zone_pages": {
        "units": "pages",
        "long_name": "pages in the simulated zone array: the zone's span rounded out to whole "
        "pageblocks, holes included as unmovable pages (snapshot zone)",
    },
    "zone_start_pfn": {"units": "1", "long_name": "first PFN of the zone (/proc/zoneinfo)"},
    "zone_managed": {"units": "pages", "long_name": "managed pages (/proc/zoneinfo managed)"},
    "wmark_min": {"units": "pages", "long_name": "min watermark (/proc/zoneinfo min)"},
    "wmark_low": {"units": "pages", "long_name": "low watermark (/proc/zoneinfo low)"},
    "wmark_high": {"units": "pages", "long_name": "high watermark (/proc/zoneinfo high)"},
}


def build_zone_dataset(
    results: Mapping[str, CompactNodeResult],
    zone_values: Mapping[str, Mapping[str, int]],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """:func:`build_dataset` of each zone's result, labelled by zone.

    ``results`` and ``zone_values`` (per zone, ``ZONE_VARIABLE_ATTRS`` name -> value) are
    keyed by zone label (``"0:Normal"``). Several zones are joined along a ``zone``
    dimension; a single zone gets a scalar ``zone`` coordinate.
    """
    zone_coord_attrs = {"long_name": "zone of the snapshot (node:name)"}
    parts = []
    for label, result in results.items():
        ds = build_dataset(result, attrs)
        for name, value in zone_values[label].items():
            ds[name] = ((), np.int64(value), ZONE_VARIABLE_ATTRS[name])
        parts.append(ds.assign_coords(zone=((), label, zone_coord_attrs)))
    if len(parts) == 1:
        return parts[0]
    ds = xr.concat(
        parts,
        dim="zone",
        data_vars="all",
        coords="different",
        compat="equals",
        join="exact",
        combine_attrs="override",
    )
    ds["zone"].attrs.update(zone_coord_attrs)
    return ds


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Make attribute values netCDF-safe: bool -> 0/1, None dropped, others kept."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool | np.bool_):
            value = int(value)
        out[key] = value
    return out


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine=ENGINE, format="NETCDF4")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def format_buddyinfo(
    buddyinfo: np.ndarray, zone_name: str = "Normal", max_lines: int = 8
) -> list[str]:
    """Lines in /proc/buddyinfo format, one per replicate zone (``Node <replicate>``).

    Uses kernels.buddy.format_buddyinfo for each line; at most ``max_lines`` zones are
    shown, followed by a ``#`` comment saying how many were left out.
    """
    lines = [
        format_line(buddyinfo[z], node=z, zone_name=zone_name).rstrip("\n")
        for z in range(min(len(buddyinfo), max_lines))
    ]
    if len(buddyinfo) > max_lines:
        lines.append(f"# ... {len(buddyinfo) - max_lines} more replicates in result.nc")
    return lines


def format_counters(result: CompactNodeResult) -> list[str]:
    """A table of every counter (and compaction_cost): mean, min and max over replicates."""
    rows: list[tuple[str, np.ndarray]] = [(k, np.asarray(v)) for k, v in result.counters.items()]
    rows.append(("compaction_cost", np.asarray(result.compaction_cost, dtype=np.float64)))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'counter':<{width}}  {'mean':>14}  {'min':>14}  {'max':>14}"]
    for name, values in rows:
        if np.issubdtype(values.dtype, np.integer):
            lo, hi = f"{int(values.min()):,}", f"{int(values.max()):,}"
            mean = f"{values.mean():,.1f}"
        else:
            lo, hi, mean = f"{values.min():.4f}", f"{values.max():.4f}", f"{values.mean():.4f}"
        lines.append(f"{name:<{width}}  {mean:>14}  {lo:>14}  {hi:>14}")
    return lines


SWEEP_FILE = "sweep.nc"
# sweep.nc files above this size open lazily as dask arrays (when dask is installed).
DASK_THRESHOLD_BYTES = 512 * 1024**2


def open_sweep(sweep_dir: str | os.PathLike[str]) -> xr.Dataset:
    """The ``sweep.nc`` of a sweep directory (written by ``hydra/launcher=ray``).

    Dimensions: one per swept config key (named as given on the command line, e.g.
    ``policy``, ``workload.pinned_fraction``), then ``replicate`` and each cell's own
    dims. Loaded into memory, or chunked with dask when the file is large and dask is
    installed (it is not a dependency).
    """
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (has the sweep finished every cell?)")
    if path.stat().st_size > DASK_THRESHOLD_BYTES:
        try:
            import dask  # noqa: F401
        except ImportError:
            pass
        else:
            return xr.open_dataset(path, engine=ENGINE, chunks={})
    return xr.load_dataset(path, engine=ENGINE)
