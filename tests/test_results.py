"""Result Dataset: labelled, self-describing, and unchanged by a netCDF round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels.zone import MIGRATETYPE_NAMES, PAGE_KIND_NAMES
from sweep.results import (
    CompactNodeResult,
    build_dataset,
    format_buddyinfo,
    format_counters,
    write_netcdf,
)

COUNTERS = (
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "lru_lock_acquisitions",
)


def make_result(nr_zones: int = 3, seed: int = 0) -> CompactNodeResult:
    rng = np.random.default_rng(seed)  # test data only; kernels never use np.random

    def ints(*shape: int, high: int = 1000) -> np.ndarray:
        return rng.integers(0, high, size=(nr_zones, *shape), dtype=np.int64)

    return CompactNodeResult(
        counters={name: ints() for name in (*COUNTERS, "some_new_counter")},
        compaction_cost=rng.random(nr_zones),
        buddyinfo=ints(2, 11),
        pagetypeinfo=ints(2, 6, 11),
        nr_free_pages=ints(2),
        unusable_index=ints(2, 11, high=1001),
        fragmentation_index=ints(2, 11, high=2001) - 1000,
        page_counts=ints(2, 5),
        timings={"compact": 0.5},
    )


ATTRS = {
    "title": "test",
    "Conventions": "CF-1.11",
    "kernel_profile": "v6_19",
    "skip_pinned": True,
    "check_invariants": np.bool_(False),
    "dropped": None,
    "config": "zone:\n  name: tiny\n",
}


def test_dataset_layout() -> None:
    result = make_result()
    ds = build_dataset(result, ATTRS)
    assert dict(ds.sizes) == {
        "replicate": 3,
        "snapshot": 2,
        "buddy_order": 11,
        "migratetype": 6,
        "page_kind": 5,
    }
    assert ds.migratetype.values.tolist() == list(MIGRATETYPE_NAMES)
    assert ds.page_kind.values.tolist() == list(PAGE_KIND_NAMES)
    assert ds.snapshot.values.tolist() == ["initial", "final"]
    assert ds.buddy_order.values.tolist() == list(range(11))
    # counters flow through by name, including ones this module has never heard of
    for name in (*COUNTERS, "some_new_counter", "compaction_cost"):
        assert ds[name].dims == ("replicate",)
    np.testing.assert_array_equal(ds.buddyinfo.sel(snapshot="final"), result.buddyinfo[:, 1])
    # extfrag indices are stored as the kernel prints them: thousandths / 1000
    np.testing.assert_allclose(ds.fragmentation_index.values, result.fragmentation_index / 1000)
    assert ds.unusable_index.dtype == np.float64
    # bools become 0/1, None is dropped (netCDF has neither)
    assert ds.attrs["skip_pinned"] == 1 and ds.attrs["check_invariants"] == 0
    assert "dropped" not in ds.attrs


def test_every_variable_has_units_and_long_name() -> None:
    ds = build_dataset(make_result(), ATTRS)
    for name, var in ds.variables.items():
        assert var.attrs.get("long_name"), name
        if name in ds.data_vars:
            assert var.attrs.get("units"), name


def test_netcdf_round_trip_is_identical(tmp_path: Path) -> None:
    ds = build_dataset(make_result(nr_zones=5, seed=1), ATTRS)
    path = write_netcdf(ds, tmp_path / "sub" / "result.nc")
    assert path == tmp_path / "sub" / "result.nc"
    assert [p.name for p in path.parent.iterdir()] == ["result.nc"]  # no temp file left
    with xr.open_dataset(path, engine="netcdf4") as back:
        back.load()
    xr.testing.assert_identical(back, ds)
    for name in ds.data_vars:
        assert back[name].dtype == ds[name].dtype, name


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    good = build_dataset(make_result(), ATTRS)
    path = write_netcdf(good, tmp_path / "result.nc")
    bad = good.assign_attrs(unserialisable={"a": 1})  # netCDF rejects dict attributes
    with pytest.raises(TypeError):
        write_netcdf(bad, path)
    assert [p.name for p in tmp_path.iterdir()] == ["result.nc"]
    with xr.open_dataset(path, engine="netcdf4") as back:
        xr.testing.assert_identical(back.load(), good)


def test_text_summary() -> None:
    result = make_result(nr_zones=10)
    lines = format_buddyinfo(result.buddyinfo[:, 0], max_lines=8)
    assert len(lines) == 9 and lines[-1] == "# ... 2 more replicates in result.nc"
    assert lines[0].startswith("Node 0, zone   Normal ")
    assert [int(x) for x in lines[3].split()[4:]] == result.buddyinfo[3, 0].tolist()
    table = format_counters(result)
    assert table[0].split() == ["counter", "mean", "min", "max"]
    assert [row.split()[0] for row in table[1:]] == [
        *COUNTERS,
        "some_new_counter",
        "compaction_cost",
    ]
