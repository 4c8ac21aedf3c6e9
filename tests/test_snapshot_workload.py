"""workload=snapshot: pins on snapshot zones, the config checks and end-to-end runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kernels import buddy
from kernels import fragment as frag
from kernels.backend import gpu_available
from kernels.fragment import FragmentParams, fragment, inject_pins
from kernels.zone import (
    FREE,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
    folio_head_code,
    folio_tail_code,
)
from sweep.config import ConfigError, compose_config
from sweep.expand import check_feasible, select_zones, zone_arrays
from sweep.runner import run_snapshot
from sweep.snapshot import FORMAT_VERSION, Snapshot, ZoneSnapshot, save_snapshot, take_snapshot
from tests.clirun import run_sweep
from tests.snapshot_fixtures import write_fake_proc

P = PAGEBLOCK_NR_PAGES


# --------------------------------------------------------------------------------------
# kernels.fragment.inject_pins


def mixed_zone(rng: np.random.Generator, nr_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """A zone with every page kind, folios, and blocks of each type."""
    mt = rng.choice(
        [int(MigrateType.MOVABLE), int(MigrateType.UNMOVABLE), int(MigrateType.RECLAIMABLE)],
        size=nr_blocks,
        p=[0.7, 0.2, 0.1],
    ).astype(np.int8)
    mt[0] = int(MigrateType.MOVABLE)
    mt[-1] = int(MigrateType.UNMOVABLE)
    s = rng.choice(
        np.array([FREE, MOVABLE, UNMOVABLE, RECLAIMABLE], dtype=np.uint8),
        size=nr_blocks * P,
        p=[0.3, 0.55, 0.1, 0.05],
    )
    for head in range(0, nr_blocks * P, 64):  # an order-4 folio every 64 pages
        if rng.random() < 0.3:
            s[head] = folio_head_code(4)
            s[head + 1 : head + 16] = folio_tail_code(4)
    return s, mt


def eligible_mask(s: np.ndarray, mt: np.ndarray) -> np.ndarray:
    return (s == MOVABLE) & (np.repeat(mt, P, axis=-1) == int(MigrateType.MOVABLE))


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.25, 0.5, 1.0])
def test_inject_pins_exact_count_and_only_movable_base_pages(fraction: float) -> None:
    rng = np.random.default_rng(7)
    zones = [mixed_zone(rng, 6) for _ in range(3)]
    s = np.stack([z[0] for z in zones])
    mt = np.stack([z[1] for z in zones])
    seeds = np.arange(3, dtype=np.uint64) + 11
    original = s.copy()
    out = inject_pins(np, s, mt, seeds, fraction)
    assert out.dtype == np.uint8 and out.shape == s.shape
    np.testing.assert_array_equal(s, original)  # the input is left alone
    changed = out != s
    elig = eligible_mask(s, mt)
    # Only eligible pages change, and they change to PINNED.
    assert not (changed & ~elig).any()
    assert (out[changed] == PINNED).all()
    for z in range(3):
        m = int(elig[z].sum())
        assert int(changed[z].sum()) == int(np.floor(fraction * m + 0.5))
    # Folio pages, non-movable kinds and pages in non-movable blocks are never pinned.
    assert (out[s >= 8] == s[s >= 8]).all()
    assert (out[np.repeat(mt, P, axis=1) != int(MigrateType.MOVABLE)] != PINNED).all()


def test_inject_pins_reproducible_and_seeded_per_zone() -> None:
    rng = np.random.default_rng(3)
    s, mt = mixed_zone(rng, 4)
    batch = np.stack([s, s, s])
    mts = np.stack([mt, mt, mt])
    seeds = np.array([5, 6, 5], dtype=np.uint64)
    a = inject_pins(np, batch, mts, seeds, 0.2)
    b = inject_pins(np, batch, mts, seeds, 0.2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], a[2])  # same seed, same zone: same pins
    assert (a[0] != a[1]).any()  # another seed: other pins, same count
    assert (a[0] == PINNED).sum() == (a[1] == PINNED).sum()


def test_inject_pins_batch_invariance_and_per_zone_fractions() -> None:
    rng = np.random.default_rng(11)
    zones = [mixed_zone(rng, 5) for _ in range(4)]
    s = np.stack([z[0] for z in zones])
    mt = np.stack([z[1] for z in zones])
    seeds = np.array([1, 2, 3, 4], dtype=np.uint64)
    fractions = np.array([0.1, 0.0, 0.7, 0.3])
    batch = inject_pins(np, s, mt, seeds, fractions)
    for z in range(4):
        alone = inject_pins(np, s[z : z + 1], mt[z : z + 1], seeds[z : z + 1], fractions[z])
        np.testing.assert_array_equal(batch[z], alone[0])
    np.testing.assert_array_equal(batch[1], s[1])  # fraction 0: unchanged


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_inject_pins_gpu_matches_numpy() -> None:
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(5)
    zones = [mixed_zone(rng, 8) for _ in range(3)]
    s = np.stack([z[0] for z in zones])
    mt = np.stack([z[1] for z in zones])
    seeds = np.array([9, 8, 7], dtype=np.uint64)
    expected = inject_pins(np, s, mt, seeds, [0.3, 0.0, 0.9])
    got = inject_pins(cp, cp.asarray(s), cp.asarray(mt), cp.asarray(seeds), [0.3, 0.0, 0.9])
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), expected)


def test_inject_pins_rejects_a_fraction_out_of_range() -> None:
    s, mt = mixed_zone(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="pinned_fraction"):
        inject_pins(np, s[None], mt[None], np.array([1], np.uint64), 1.5)


def test_inject_pins_uses_its_own_stream() -> None:
    assert (
        frag._STREAM_PINS
        not in (
            frag._STREAM_PAGEBLOCK,
            frag._STREAM_PAGES,
            frag._STREAM_KEPT,
        )
        and frag._STREAM_PINS < frag._STREAM_FOLIO
    )


# --------------------------------------------------------------------------------------
# Snapshot files for the workload (built directly, from the project's fragmenter)


def make_zone(node: int, name: str, start_pfn: int, nr_blocks: int, seed: int) -> ZoneSnapshot:
    """A zone of ``nr_blocks`` pageblocks at ``start_pfn`` (1024-aligned), random_mix pages.

    The first 100 PFNs are a hole (stored as unmovable pages, as the snapshot core does).
    """
    params = FragmentParams.create(
        "random_mix",
        nr_blocks * P,
        seed=[seed],
        free_fraction=0.35,
        unmovable_fraction=0.03,
        reclaimable_fraction=0.02,
        pollution=0.1,
        folio_fraction=0.2,
        folio_orders=(2, 4),
    )
    page_state, mt = fragment(np, params)
    page_state, mt = page_state[0].copy(), mt[0].copy()
    hole = np.zeros(page_state.shape, dtype=bool)
    hole[:100] = True
    page_state[:100] = UNMOVABLE
    n = page_state.size
    return ZoneSnapshot(
        node=node,
        name=name,
        start_pfn=start_pfn + 100,
        spanned=n - 100,
        present=n - 100,
        managed=n - 164,
        wmark_min=40 + seed,
        wmark_low=50 + seed,
        wmark_high=60 + seed,
        base_pfn=start_pfn,
        page_state=page_state,
        hole=hole,
        pageblock_migratetype=mt,
        buddyinfo=np.asarray(buddy.buddyinfo(page_state[None])[0], dtype=np.int64),
    )


def make_snapshot(source: str = "kpageflags") -> Snapshot:
    """Two zones of one node, as ``python -m sweep.snapshot save`` would store them."""
    zones = (make_zone(0, "DMA32", 4096, 8, 1), make_zone(0, "Normal", 1 << 20, 16, 2))
    return Snapshot(
        format_version=FORMAT_VERSION,
        created="2026-11-22T01:00:00+00:00",
        hostname="fixture-host",
        kernel_release="6.18.0-test",
        source=source,
        notes=("built by tests/test_snapshot_workload.py",),
        zones=zones,
        vmstat={"compact_migrate_scanned": 0, "pgmigrate_success": 0},
        raw={
            "buddyinfo": "".join(
                buddy.format_buddyinfo(z.buddyinfo, z.node, z.name) for z in zones
            ),
        },
    )


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snap") / "fixture.npz"
    save_snapshot(make_snapshot(), path)
    return path


def test_zone_arrays_keep_buddy_alignment() -> None:
    zone = make_zone(0, "Normal", 1 << 20, 8, 3)
    page_state, mt, hole, pad = zone_arrays(zone)
    assert pad == 0 and page_state is not None and (page_state == zone.page_state).all()
    shifted = dataclasses.replace(zone, base_pfn=zone.base_pfn + P, start_pfn=zone.start_pfn + P)
    page_state, mt, hole, pad = zone_arrays(shifted)
    assert pad == P and page_state.size == zone.page_state.size + P
    assert hole[:P].all() and (page_state[:P] == UNMOVABLE).all()
    assert mt[0] == int(MigrateType.UNMOVABLE) and mt.size == page_state.size // P


def test_snapshot_run_in_process(snapshot_file: Path) -> None:
    config = compose_config(
        ["workload=snapshot", f"workload.path={snapshot_file}", "replicates=3", "backend=numpy"]
    )
    snapshot, results = run_snapshot(config, np)
    assert [r.label for r in results] == ["0:DMA32", "0:Normal"]
    for r, zone in zip(results, snapshot.zones, strict=True):
        assert r.result.nr_zones == 3
        # No pins: the replicates are identical copies.
        assert (r.result.buddyinfo == r.result.buddyinfo[0]).all()
        np.testing.assert_array_equal(
            r.result.buddyinfo[0, 0], buddy.buddyinfo(zone.page_state[None])[0]
        )
        assert r.result.page_counts[0, 0].sum() == zone.page_state.size
        assert r.result.page_counts[0, 0, PINNED] == 0
        assert r.result.counters["pgmigrate_success"][0] > 0
        # Compaction conserves free pages and leaves unmovable/reclaimable pages alone.
        counts = r.result.page_counts[0]
        assert counts[0, FREE] == counts[1, FREE]
        assert (counts[0, [UNMOVABLE, RECLAIMABLE]] == counts[1, [UNMOVABLE, RECLAIMABLE]]).all()


def test_snapshot_run_on_the_fake_machine(tmp_path: Path) -> None:
    """A snapshot taken from tests/snapshot_fixtures.py's fake /proc runs as a workload."""
    machine = write_fake_proc(tmp_path / "proc")
    path = tmp_path / "fake.npz"
    save_snapshot(take_snapshot(machine.root, allow_synthesis=False), path)
    config = compose_config(
        [
            "workload=snapshot",
            f"workload.path={path}",
            "workload.pinned_fraction=0.5",
            "replicates=2",
            "backend=numpy",
        ]
    )
    snapshot, results = run_snapshot(config, np)
    assert [r.label for r in results] == ["0:DMA", "0:Normal"]
    for r, zone in zip(results, machine.zones, strict=True):
        np.testing.assert_array_equal(r.result.buddyinfo[0, 0], zone.buddyinfo)
        assert r.result.page_counts[0, 0].sum() == zone.nr_pages
        assert r.params.zone.wmark_min == snapshot.zone(zone.name).wmark_min


def test_snapshot_pins_differ_per_replicate_but_not_in_count(snapshot_file: Path) -> None:
    config = compose_config(
        [
            "workload=snapshot",
            f"workload.path={snapshot_file}",
            "workload.zone=0:Normal",
            "workload.pinned_fraction=0.2",
            "policy=isolate_pinned",
            "replicates=2",
            "backend=numpy",
        ]
    )
    snapshot, results = run_snapshot(config, np)
    (r,) = results
    zone = snapshot.zone("Normal")
    eligible = int(eligible_mask(zone.page_state, zone.pageblock_migratetype).sum())
    pinned = r.result.page_counts[:, 0, PINNED]
    assert pinned.tolist() == [int(np.floor(0.2 * eligible + 0.5))] * 2
    assert (r.result.counters["pgmigrate_fail"] > 0).all()  # isolated, then failing
    again = run_snapshot(config, np)[1][0]
    np.testing.assert_array_equal(again.result.buddyinfo, r.result.buddyinfo)


def test_snapshot_workload_writes_a_zone_dimension(tmp_path: Path, snapshot_file: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_sweep(
        tmp_path,
        "workload=snapshot",
        f"workload.path={snapshot_file}",
        "replicates=2",
        "workload.pinned_fraction=0.05",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    for name in ("DMA32", "Normal"):
        lines = [line for line in out.splitlines() if line.startswith("Node 0, zone ")]
        assert any(line.split()[3] == name for line in lines), out
    assert "the zone group is not used" in out
    assert "# compaction counters of zone 0:Normal over 2 replicates" in out
    with xr.open_dataset(run_dir / "result.nc", engine="netcdf4") as ds:
        ds.load()
    assert ds.zone.values.tolist() == ["0:DMA32", "0:Normal"]
    assert ds.buddyinfo.dims == ("zone", "replicate", "snapshot", "buddy_order")
    assert ds.pgmigrate_success.dims == ("zone", "replicate")
    assert ds.zone_pages.values.tolist() == [8 * P, 16 * P]
    assert ds.wmark_min.values.tolist() == [41, 42]
    assert (
        ds.page_counts.sum("page_kind").sel(zone="0:Normal").values.tolist() == [[16 * P] * 2] * 2
    )
    free = (ds.buddyinfo * 2**ds.buddy_order).sum("buddy_order")
    np.testing.assert_array_equal(free.values, ds.nr_free_pages.values)
    for var in ds.data_vars.values():
        assert var.attrs["units"] and var.attrs["long_name"], var.name
    assert ds.attrs["workload"] == "snapshot" and ds.attrs["snapshot_source"] == "kpageflags"
    assert ds.attrs["snapshot_hostname"] == "fixture-host"
    assert "min_free_kbytes" not in ds.attrs


def test_bad_snapshot_inputs_fail_before_any_run_directory(
    tmp_path: Path, snapshot_file: Path
) -> None:
    garbled = tmp_path / "garbled.npz"
    garbled.write_bytes(b"PK\x03\x04 this is not a zip archive at all" * 10)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3), b=np.ones(4))
    cases = {
        "missing-path": (["workload=snapshot"], "workload.path is missing"),
        "no-such-file": (
            ["workload=snapshot", f"workload.path={tmp_path / 'nope.npz'}"],
            "workload.path=",
        ),
        "garbled": (["workload=snapshot", f"workload.path={garbled}"], "workload.path="),
        "foreign": (["workload=snapshot", f"workload.path={foreign}"], "workload.path="),
        "unknown-zone": (
            ["workload=snapshot", f"workload.path={snapshot_file}", "workload.zone=HighMem"],
            "workload.zone=HighMem: no such zone in the snapshot (it has 0:DMA32, 0:Normal)",
        ),
        "zone-group": (
            ["workload=snapshot", f"workload.path={snapshot_file}", "zone=tiny"],
            "zone=tiny cannot be used with workload=snapshot",
        ),
    }
    # All at once: each is a Python start-up, and they are independent.
    procs = {}
    for name, (overrides, _) in cases.items():
        cwd = tmp_path / name
        cwd.mkdir()
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "sweep", *overrides, f"hydra.run.dir={cwd / 'run'}"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, (_, message) in cases.items():
        stdout, stderr = procs[name].communicate(timeout=120)
        assert procs[name].returncode == 2, (name, stderr, stdout)
        assert stderr.startswith("error: ") and message in stderr, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1, (name, stderr)
        assert "Traceback" not in stderr + stdout
        assert list((tmp_path / name).iterdir()) == [], name  # no run dir, no outputs/


def test_snapshot_config_errors_name_their_key(snapshot_file: Path) -> None:
    base = ["workload=snapshot", f"workload.path={snapshot_file}"]
    cases = [
        (["workload.zone=1:"], "workload.zone='1:' is not 'all'"),
        (["workload.zone=1:Normal"], "workload.zone=1:Normal: no such zone"),
        (["workload.pinned_fraction=1.5"], "workload.pinned_fraction=1.5 is out of range"),
        (["workload.layout=random_mix"], "workload.layout is not a config key here"),
        (["zone.nr_pages=1024"], "zone.nr_pages=1024 cannot be used with workload=snapshot"),
        (["order=2"], "order=2 cannot be used with workload=snapshot"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError) as info:
            check_feasible(compose_config(base + extra))
        assert message in str(info.value), (extra, str(info.value))
    config = compose_config([*base, "workload.zone=normal"])  # names are case-insensitive
    check_feasible(config)
    (zone,) = select_zones(make_snapshot(), "0:normal")
    assert zone[1].name == "Normal" and zone[0] == 1
