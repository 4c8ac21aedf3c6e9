"""``python -m sweep.report SWEEP_DIR [--out DIR]``: figures and a summary table of a sweep.

Reads the ``sweep.nc`` of a ``hydra/launcher=ray`` sweep (:func:`sweep.results.open_sweep`)
and writes three PNG figures, atomically (temp file + rename), to ``DIR`` (default
``SWEEP_DIR/report/``):

* ``free_blocks_by_order.png``: 1 - extfrag/unusable_index per buddy order before and
  after compaction (the fraction of free memory an order-k allocation could use), and
  extfrag/extfrag_index at order 9 (pageblock order);
* ``buddyinfo_heatmap.png``: /proc/buddyinfo free blocks per order for every cell,
  before and after, on a log colour scale;
* ``counters.png``: the /proc/vmstat compaction counters and LRU-lock acquisitions.

The figures group by the first swept key (the first sweep dimension) and take the mean
over the replicates and the other swept keys, with min-max bars; each title says so.
Then one row per cell is printed: the swept keys' values and the means over replicates
of the main counters, the compaction cost and the free pages in blocks of order >= 9.

Bad input (not a directory, no or unreadable sweep.nc, not a compaction-sweep result)
ends with one ``error: ...`` line and exit status 2 before anything is written. Figures
are drawn with matplotlib's object API on the Agg canvas: no pyplot, no GUI.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from kernels.compaction import CompactCounters
from sweep.results import COUNTER_ATTRS, SWEEP_FILE, open_sweep

EXIT_BAD_INPUT = 2
REPORT_DIR = "report"
PAGEBLOCK_ORDER = 9  # the order the "high order" columns and panels use (THP, pageblock)
# The kernel's counters and the LRU-lock count (migrate_folio_split is simulator-only).
COUNTERS = tuple(
    f.name for f in dataclasses.fields(CompactCounters) if f.name != "migrate_folio_split"
)
TABLE_COLUMNS = (
    "pgmigrate_success",
    "pgmigrate_fail",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compaction_cost",
)
FREE_HIGH_COLUMN = f"free_pct_order>={PAGEBLOCK_ORDER}_after"
REQUIRED = (*COUNTERS, "compaction_cost", "buddyinfo", "unusable_index", "fragmentation_index")
CELL_DIMS = ("replicate", "snapshot", "buddy_order")
# The label of the one group of a sweep.nc without a swept key (a single cell).
SINGLE_CELL = "cell"
# Free-block heatmaps annotate each cell with its value up to this many rows.
ANNOTATE_ROWS = 24


class ReportError(ValueError):
    """Bad input for the report: the message is printed as one ``error:`` line."""


# --------------------------------------------------------------------------------------
# Input


def load_sweep(sweep_dir: Path) -> xr.Dataset:
    """Open and check the ``sweep.nc`` of ``sweep_dir``; raise :class:`ReportError`."""
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a directory (give a sweep directory)")
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        raise ReportError(
            f"{path}: no such file (not a hydra/launcher=ray sweep, or not every cell finished)"
        )
    try:
        ds = open_sweep(sweep_dir)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()
        raise ReportError(
            f"{path}: cannot read it ({type(exc).__name__}: {reason[0] if reason else ''})"
        ) from exc
    missing = [name for name in REQUIRED if name not in ds.data_vars]
    missing += [dim for dim in CELL_DIMS if dim not in ds.dims]
    if missing:
        raise ReportError(f"{path}: not a compaction-sweep sweep.nc (no {', '.join(missing)})")
    return ds


def swept_dims(ds: xr.Dataset) -> list[str]:
    """The sweep dimensions, in command-line order: the ``swept_keys`` attribute, or else
    the dimensions of ``buddyinfo`` before ``replicate``."""
    keys = [k for k in str(ds.attrs.get("swept_keys", "")).split(",") if k]
    if keys and all(k in ds.dims for k in keys):
        return keys
    dims = list(ds["buddyinfo"].dims)
    return dims[: dims.index("replicate")]


def with_swept_dims(ds: xr.Dataset) -> tuple[xr.Dataset, list[str]]:
    """``ds`` and its swept keys; a sweep.nc of one cell gets a one-value ``cell`` dim."""
    keys = swept_dims(ds)
    if keys:
        return ds, keys
    return ds.expand_dims({SINGLE_CELL: ["single cell"]}), [SINGLE_CELL]


def value_label(value: object) -> str:
    """A swept value as text: ``0.1``, ``v6_19``, ``True``."""
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    if isinstance(value, bytes):
        return value.decode()
    return str(value.item() if isinstance(value, np.generic) else value)


def reduce_dims(da: xr.DataArray, keep: Sequence[str]) -> list[str]:
    """The dimensions of ``da`` not in ``keep``: those a figure averages over."""
    return [d for d in da.dims if d not in keep]


def over_text(dims: Sequence[str]) -> str:
    """``"replicate and seed"``: the dims a figure averages over, for its title."""
    dims = list(dims)
    return dims[0] if len(dims) == 1 else ", ".join(dims[:-1]) + " and " + dims[-1]


def mean_min_max(
    da: xr.DataArray, keep: Sequence[str]
) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray, list[str]]:
    """Mean, minimum and maximum of ``da`` over every dim not in ``keep`` (NaN, from cells
    missing in an irregular sweep, skipped), and the dims reduced."""
    dims = reduce_dims(da, keep)
    da = da.astype(np.float64)
    return da.mean(dims), da.min(dims), da.max(dims), dims


# --------------------------------------------------------------------------------------
# Summary table


def free_pct_at_least(buddyinfo: xr.DataArray, order: int) -> xr.DataArray:
    """Percent of free pages that are in blocks of at least ``order``, from buddyinfo."""
    pages = buddyinfo * (2 ** buddyinfo["buddy_order"])
    total = pages.sum("buddy_order")
    high = pages.where(buddyinfo["buddy_order"] >= order, 0).sum("buddy_order")
    return (100.0 * high / total.where(total > 0)).astype(np.float64)


def summary_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per cell (the swept keys' values as index), means over the replicates (and
    any other non-swept dim) of :data:`TABLE_COLUMNS` and the free pages in blocks of
    order >= 9 after compaction, in percent. Cells missing in an irregular sweep are left
    out."""
    ds, keys = with_swept_dims(ds)
    columns: dict[str, xr.DataArray] = {}
    for name in TABLE_COLUMNS:
        da = ds[name].astype(np.float64)
        columns[name] = da.mean(reduce_dims(da, keys))
    free = free_pct_at_least(ds["buddyinfo"].sel(snapshot="final"), PAGEBLOCK_ORDER)
    columns[FREE_HIGH_COLUMN] = free.mean(reduce_dims(free, keys))
    frame = xr.Dataset(columns).to_dataframe()[list(columns)]
    frame = frame.reorder_levels(keys) if len(keys) > 1 else frame
    return frame.dropna(how="all")


def format_summary(frame: pd.DataFrame) -> list[str]:
    """The summary table as aligned text lines, the swept keys first."""
    keys = list(frame.index.names)
    rows: list[list[str]] = []
    for index, row in frame.iterrows():
        values = index if isinstance(index, tuple) else (index,)
        cells = [value_label(v) for v in values]
        for name in frame.columns:
            value = row[name]
            if name == "compaction_cost":
                cells.append(f"{value:.4f}")
            elif name == FREE_HIGH_COLUMN:
                cells.append(f"{value:.1f}")
            else:
                cells.append(f"{value:,.1f}")
        rows.append(cells)
    header = [*keys, *frame.columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    nr_keys = len(keys)

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i < nr_keys else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(r) for r in rows)]


# --------------------------------------------------------------------------------------
# Figures


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` with Agg and write it to ``path`` atomically (temp file + rename)."""
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def group_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours (tab10, or a sampled viridis beyond 10 groups)."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](i / max(n - 1, 1)) for i in range(n)]


def plot_free_blocks_by_order(ds: xr.Dataset, path: Path) -> Path:
    """1 - unusable_index per order, initial (dashed) and final (solid), one colour per
    value of the first swept key; and extfrag_index at order 9 per value."""
    ds, keys = with_swept_dims(ds)
    first = keys[0]
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_fi = fig.subplots(1, 2, width_ratios=[2.2, 1])
    usable = 1.0 - ds["unusable_index"]
    mean, lo, hi, over = mean_min_max(usable, [first, "snapshot", "buddy_order"])
    orders = ds["buddy_order"].values
    values = ds[first].values
    colours = group_colours(len(values))
    for value, colour in zip(values, colours, strict=True):
        for snapshot, style, marker in (("initial", "--", "x"), ("final", "-", "o")):
            sel = {first: value, "snapshot": snapshot}
            ax.plot(
                orders,
                mean.sel(sel).values,
                linestyle=style,
                marker=marker,
                color=colour,
                label=f"{first}={value_label(value)}, {snapshot}",
            )
            ax.fill_between(
                orders, lo.sel(sel).values, hi.sel(sel).values, color=colour, alpha=0.12
            )
    ax.set_xticks(orders)
    ax.set_xlabel("buddy order k (block of 2^k 4 KiB pages)")
    ax.set_ylabel("fraction of free pages in blocks of order >= k\n(1 - extfrag/unusable_index)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("free memory an order-k allocation could use\n(dashed: before, solid: after)")

    fi_mean, fi_lo, fi_hi, _ = mean_min_max(
        ds["fragmentation_index"].sel(buddy_order=PAGEBLOCK_ORDER), [first, "snapshot"]
    )
    x = np.arange(len(values))
    for offset, snapshot, marker in ((-0.12, "initial", "x"), (0.12, "final", "o")):
        m = fi_mean.sel(snapshot=snapshot).values
        low, high = fi_lo.sel(snapshot=snapshot).values, fi_hi.sel(snapshot=snapshot).values
        err = np.stack([m - low, high - m])
        ax_fi.errorbar(
            x + offset,
            m,
            yerr=err,
            fmt=marker,
            capsize=4,
            color="tab:gray" if snapshot == "initial" else "black",
            label="before" if snapshot == "initial" else "after",
        )
    ax_fi.axhline(-1, color="tab:green", linewidth=0.8, linestyle=":")
    ax_fi.set_xticks(x, [value_label(v) for v in values], rotation=30 if len(x) > 4 else 0)
    ax_fi.set_xlabel(first)
    ax_fi.set_ylabel(
        f"extfrag_index at order {PAGEBLOCK_ORDER}\n(-1: would succeed, toward 1: fragmentation)"
    )
    ax_fi.set_ylim(-1.1, 1.1)
    ax_fi.grid(alpha=0.3)
    ax_fi.legend(fontsize="small")
    ax_fi.set_title(f"fragmentation index, order {PAGEBLOCK_ORDER}")
    fig.suptitle(
        f"compact_node: free blocks by order, by {first}; mean over {over_text(over)} "
        "(band/bars: min-max)"
    )
    return save_figure(fig, path)


def heatmap_rows(ds: xr.Dataset, keys: Sequence[str]) -> tuple[xr.DataArray, list[str], list[str]]:
    """Mean buddyinfo per cell: dims (row, snapshot, buddy_order), row labels, and the
    dims averaged over. Cells missing in an irregular sweep are dropped."""
    buddyinfo = ds["buddyinfo"].astype(np.float64)
    over = reduce_dims(buddyinfo, [*keys, "snapshot", "buddy_order"])
    mean = buddyinfo.mean(over).stack(row=list(keys)).transpose("row", "snapshot", ...)
    keep = ~mean.isnull().all(["snapshot", "buddy_order"])
    mean = mean.isel(row=np.flatnonzero(keep.values))
    labels = []
    for index in mean["row"].values:
        values = index if isinstance(index, tuple) else (index,)
        labels.append(", ".join(f"{k}={value_label(v)}" for k, v in zip(keys, values, strict=True)))
    return mean.drop_vars([*keys, "row"], errors="ignore"), labels, over


def plot_buddyinfo_heatmap(ds: xr.Dataset, path: Path) -> Path:
    """/proc/buddyinfo free blocks per order, one row per cell, before and after."""
    ds, keys = with_swept_dims(ds)
    mean, labels, over = heatmap_rows(ds, keys)
    data = mean.values  # (cells, 2, orders)
    positive = data[np.isfinite(data) & (data > 0)]
    vmin = float(positive.min()) if positive.size else 0.1
    vmax = max(float(positive.max()) if positive.size else 1.0, vmin * 10)
    nr_rows = len(labels)
    fig = Figure(figsize=(14, min(2.5 + 0.35 * nr_rows, 60)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    norm = LogNorm(vmin=vmin, vmax=vmax)
    orders = ds["buddy_order"].values
    image = None
    for ax, snapshot in zip(axes, ("initial", "final"), strict=True):
        grid = data[:, list(ds["snapshot"].values).index(snapshot), :]
        masked = np.ma.masked_where(~(grid > 0), grid)
        image = ax.imshow(masked, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_xticks(range(len(orders)), [str(o) for o in orders])
        ax.set_xlabel("buddy order")
        ax.set_title(f"{'before' if snapshot == 'initial' else 'after'} compaction ({snapshot})")
        if nr_rows <= ANNOTATE_ROWS:
            for (row, col), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    dark = value <= 0 or norm(value) > 0.6
                    ax.text(
                        col,
                        row,
                        f"{value:.3g}",
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="black" if dark else "white",
                    )
    axes[0].set_yticks(range(nr_rows), labels, fontsize="small" if nr_rows <= 40 else "xx-small")
    axes[0].set_ylabel("cell (swept keys)")
    fig.colorbar(image, ax=axes, label="free blocks (/proc/buddyinfo nr_free), log; grey: 0")
    fig.suptitle(
        f"/proc/buddyinfo per cell, mean over {over_text(over)}"
        if over
        else "/proc/buddyinfo per cell"
    )
    return save_figure(fig, path)


def plot_counters(ds: xr.Dataset, path: Path) -> Path:
    """The compaction counters per value of the first swept key: mean, min-max bars."""
    ds, keys = with_swept_dims(ds)
    first = keys[0]
    values = ds[first].values
    fig = Figure(figsize=(14, 8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    colours = group_colours(len(values))
    x = np.arange(len(values))
    over: list[str] = []
    for ax, name in zip(axes, COUNTERS, strict=True):
        mean, lo, hi, over = mean_min_max(ds[name], [first])
        m, low, high = mean.values, lo.values, hi.values
        ax.bar(x, m, color=colours, yerr=np.stack([m - low, high - m]), capsize=5)
        finite = np.concatenate([low[np.isfinite(low)], high[np.isfinite(high)]])
        top = float(finite.max()) if finite.size else 0.0
        positive = finite[finite > 0]
        if top > 0 and top > 100 * max(float(positive.min()) if positive.size else 1.0, 1.0):
            if (finite <= 0).any():
                ax.set_yscale("symlog", linthresh=1)
                scale = "symlog"
            else:
                ax.set_yscale("log")
                scale = "log"
        else:
            scale = "linear"
        # sweep.nc drops the cells' variable attributes: take the units from results.py.
        units = COUNTER_ATTRS[name]["units"]
        ax.set_ylabel(f"{'pages' if units == 'pages' else 'acquisitions'} per run ({scale})")
        ax.set_title(name)
        ax.set_xticks(x, [value_label(v) for v in values], rotation=30 if len(x) > 4 else 0)
        ax.set_xlabel(first)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"/proc/vmstat compaction counters and LRU-lock acquisitions by {first}; "
        f"mean over {over_text(over)} (bars: min-max)"
    )
    return save_figure(fig, path)


FIGURES = {
    "free_blocks_by_order.png": plot_free_blocks_by_order,
    "buddyinfo_heatmap.png": plot_buddyinfo_heatmap,
    "counters.png": plot_counters,
}


def write_report(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """Write every figure of :data:`FIGURES` to ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [plot(ds, out_dir / name) for name, plot in FIGURES.items()]


# --------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.report",
        description="Figures (PNG) and a summary table of a hydra/launcher=ray sweep.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds sweep.nc)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: SWEEP_DIR/report)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; return the exit status (2 on bad input, nothing written)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out_dir = args.out if args.out is not None else args.sweep_dir / REPORT_DIR
    try:
        ds = load_sweep(args.sweep_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ReportError(f"--out {out_dir} exists and is not a directory")
        frame = summary_frame(ds)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    paths = write_report(ds, out_dir)
    keys = list(frame.index.names)
    cells = f"{len(frame)} cell{'' if len(frame) == 1 else 's'}"
    print(
        f"# {args.sweep_dir}: {cells} over {', '.join(keys)}; "
        f"means over {ds.sizes['replicate']} replicates"
    )
    print("\n".join(format_summary(frame)))
    for path in paths:
        print(f"# figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
