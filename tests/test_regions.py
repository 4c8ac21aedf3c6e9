"""Memory regions (seed 002, docs/tick-model.md section 6): region-sorted free lists, the
alloc/free handshake and the evacuation worker. The per-zone reference
(tests/reference/regions.py) in directed cases, then the batched engine against it bit
for bit on random zones with every option, batch invariance and the invariants."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.backend import gpu_available
from kernels.program import (
    ANON,
    COUNTER_INDEX,
    FILE,
    FREE,
    PIN,
    UNMOV,
    Phase,
    Program,
    TickResult,
    TickZones,
)
from kernels.tick import run_program
from kernels.zone import KernelProfile
from tests.reference import regions as rref
from tests.reference import tick as ref
from tests.test_tick import assert_conservation, differences, random_phase, random_zone

SCALE = int(os.environ.get("COMPACTION_SWEEP_TEST_SCALE", "1"))
V4, V6 = KernelProfile.V4_12, KernelProfile.V6_19
PROFILES = (V4, V6)
U, M, R = 0, 1, 2
from tests.test_tick_reference import make_zone  # noqa: E402

C = COUNTER_INDEX


def row(res: TickResult, z: int) -> TickResult:
    out = TickResult(
        **{
            f: getattr(res, f)[z : z + 1]
            for f in (
                "kind",
                "block_mt",
                "skip",
                "buddy_order",
                "list_mt",
                "key",
                "counters",
                "buddyinfo",
                "nr_free",
                "attempts",
            )
        },
        scalars={k: v[z : z + 1] for k, v in res.scalars.items()},
    )
    out.free_regions = res.free_regions[z : z + 1]
    return out


def diff(a: TickResult, b: TickResult) -> list[str]:
    bad = differences(a, b)
    if not np.array_equal(a.free_regions, b.free_regions):
        bad.append("free_regions")
    return bad


# ----------------------------------------------------------------------------- reference


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_sorted_first_takes_the_lowest_region_then_lifo(profile):
    """first(o, mt) of a sorted list: the lowest region with a head, the largest key there;
    the plain list takes the largest key anywhere."""
    kind = np.full(8 * 512, ANON, dtype=np.uint8)
    for pfn in (1030, 3000, 3100, 1500):  # region 1 (blocks 2-3) and region 2 (blocks 4-5)
        kind[pfn] = FREE
    bmt = np.full(8, M, dtype=np.int8)
    for sorted_lists in (False, True):
        z = make_zone(kind, bmt, profile, region_blocks=2, sorted_freelists=sorted_lists)
        ref.free_pages_ascending(z, [2100])  # the newest order-0 head, in region 2
        newest = 2100
        got = ref.first(z, 0, M)
        if sorted_lists:
            region1 = [p for p in (1030, 1500) if z.buddy_order[p] == 0]
            assert got == max(region1, key=lambda p: z.key[p])
            assert rref.region_of(z, got) == 1
        else:
            assert got == newest


def _handshake_zone(profile, hole: bool, **kw) -> ref.ZoneRef:
    """Region 0 (blocks 0-1) full of ANON, region 1 (blocks 2-3) entirely free."""
    kind = np.full(4 * 512, ANON, dtype=np.uint8)
    kind[1024:] = FREE
    z = make_zone(kind, np.full(4, M, dtype=np.int8), profile, region_blocks=2, **kw)
    page = ref.rmqueue(z, 0, M)  # the first allocation in region 1
    assert page == 1024
    z.kind[page] = ANON
    if hole:
        ref.free_pages_ascending(z, [5])  # memory freed in region 0 before the work runs
    return z


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_handshake_notes_and_queues_a_fresh_region(profile):
    """The alloc path notes region 1, expand()'s add_to_freelist queues the work."""
    z = _handshake_zone(profile, False, sorted_freelists=True, region_evacuation=True)
    assert z.mpc_region == 1 and z.mpc_work_in_progress
    # evacuation off: nothing is noted; region 0 is never noted
    z = _handshake_zone(profile, False, sorted_freelists=True)
    assert z.mpc_region == -1 and not z.mpc_work_in_progress
    kind = np.full(4 * 512, FREE, dtype=np.uint8)
    z = make_zone(kind, np.full(4, M, dtype=np.int8), profile, region_blocks=2,
                  sorted_freelists=True, region_evacuation=True)  # fmt: skip
    assert ref.rmqueue(z, 0, M) == 0 and z.mpc_region == -1
    # a block on an UNMOVABLE list is not noted
    kind = np.full(4 * 512, UNMOV, dtype=np.uint8)
    kind[1024:] = FREE
    z = make_zone(kind, np.full(4, U, dtype=np.int8), profile, region_blocks=2,
                  sorted_freelists=True, region_evacuation=True)  # fmt: skip
    assert ref.rmqueue(z, 0, U) == 1024 and z.mpc_region == -1


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_evacuation_moves_the_region_to_a_lower_hole(profile):
    """The worker migrates region 1's page into region 0's hole: region 1 is free again."""
    z = _handshake_zone(profile, True, sorted_freelists=True, region_evacuation=True)
    assert rref.nr_free_regions(z) == 0
    rref.mem_power_work(z)
    assert z.kind[5] == ANON and z.kind[1024] == FREE
    assert rref.nr_free_regions(z) == 1
    c = z.counters
    assert (c["region_evacuations"], c["pgmigrate_success"], c["pgmigrate_fail"]) == (1, 1, 0)
    assert c["compact_isolated"] == 1 and c["lru_lock_acquisitions"] == 1
    assert c["compact_migrate_scanned"] == (1024 if profile == V6 else 10 + 512)
    assert z.mpc_region == -1 and not z.mpc_work_in_progress
    ref.check_zone_invariants(z)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_evacuation_stops_when_the_target_is_no_gain(profile):
    """No lower free page: the allocator's target lies in region 1, goes back, work stops."""
    z = _handshake_zone(profile, False, sorted_freelists=True, region_evacuation=True)
    before = (bytes(z.kind), z.nr_free_pages())
    rref.mem_power_work(z)
    assert bytes(z.kind) == before[0] and z.nr_free_pages() == before[1]
    c = z.counters
    assert (c["region_evacuations"], c["pgmigrate_success"], c["pgmigrate_fail"]) == (1, 0, 1)
    assert rref.nr_free_regions(z) == 0
    ref.check_zone_invariants(z)


def test_pinned_pages_fail_and_are_skipped_by_skip_pinned():
    kind = np.full(4 * 512, ANON, dtype=np.uint8)
    kind[1024:] = FREE
    for skip_pinned, isolated in ((True, 1), (False, 2)):
        z = make_zone(kind, np.full(4, M, dtype=np.int8), V6, region_blocks=2,
                      sorted_freelists=True, region_evacuation=True,
                      skip_pinned=skip_pinned)  # fmt: skip
        a = ref.rmqueue(z, 0, M)
        b = ref.rmqueue(z, 0, M)
        z.kind[a] = PIN
        z.kind[b] = FILE
        ref.free_pages_ascending(z, [7, 9])
        rref.mem_power_work(z)
        assert z.counters["compact_isolated"] == isolated
        assert z.counters["pgmigrate_success"] == 1
        assert z.counters["pgmigrate_fail"] == (0 if skip_pinned else 1)
        assert z.kind[a] == PIN and z.kind[b] == FREE


def test_region_blocks_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="region_blocks"):
        TickZones.create(2, region_blocks=[4, 3]).validate()
    with pytest.raises(ValueError, match="region_blocks"):
        TickZones.create(1, region_blocks=0).validate()


# ----------------------------------------------------------------------------- engine


def region_zone(rng: np.random.Generator, nr_blocks: int, rb: int):
    """A zone whose regions are entirely free, full, or mixed (random_zone)."""
    kind, bmt = random_zone(rng, nr_blocks)
    for r in range(-(-nr_blocks // rb)):
        lo, hi = r * rb * 512, min((r + 1) * rb, nr_blocks) * 512
        u = rng.random()
        if u < 0.35 and r > 0:
            kind[lo:hi] = FREE
        elif u < 0.55:
            full = rng.choice([ANON, FILE, ANON, UNMOV], size=hi - lo).astype(np.uint8)
            keep = rng.random(hi - lo) < 0.02
            kind[lo:hi] = np.where(keep, FREE, full)
    return kind, bmt


def region_case(seed: int, nr_zones: int, nr_blocks: int | None = None, rbs=(1, 2, 4, 8)):
    rng = np.random.default_rng(seed)
    nb = nr_blocks or 2 * int(rng.integers(2, 17))
    rb = rng.choice(rbs, size=nr_zones).astype(np.int64)
    zs = [region_zone(rng, nb, int(rb[i])) for i in range(nr_zones)]
    kind = np.stack([k for k, _ in zs])
    bmt = np.stack([m for _, m in zs])
    high = bool(rng.random() < 0.8)
    zones = TickZones.create(
        nr_zones,
        seed=rng.integers(0, 2**63, size=nr_zones, dtype=np.uint64),
        attempt_order=rng.integers(4 if high else 1, 11, size=nr_zones),
        kcompactd=rng.integers(0, 4, size=nr_zones),
        skip_pinned=rng.random(nr_zones) < 0.5,
        stop_below_watermark=rng.random(nr_zones) < 0.3,
        proactiveness=rng.choice([0, 20, 50, 90], size=nr_zones),
        min_free_kbytes=rng.choice([128, 256, 1024, 4096], size=nr_zones),
        region_blocks=rb,
        sorted_freelists=rng.random(nr_zones) < 0.7,
        region_evacuation=rng.random(nr_zones) < 0.7,
        region_worker_delayed=rng.random(nr_zones) < 0.4,
    )
    prog = Program(
        phases=tuple(random_phase(rng, i, high) for i in range(int(rng.integers(1, 4)))),
        tick_ms=float(rng.choice([100.0, 250.0, 500.0])),
        sample_every=int(rng.integers(1, 4)),
        kswapd_rounds=int(rng.choice([0, 1, 4, 32])),
        watermark_scale_factor=int(rng.choice([10, 100, 1000])),
    )
    return kind, bmt, zones, prog


def compare(kind, bmt, zones, prog, profile, label, check=True) -> TickResult:
    res = run_program(kind, bmt, zones, prog, profile, backend="numpy", check_invariants=check)
    for z in range(kind.shape[0]):
        r = ref.run_program_ref(kind[z], bmt[z], zones[z], prog, profile, check_invariants=check)
        bad = diff(row(res, z), r)
        assert not bad, f"{label} zone {z} ({profile.name}): engine != reference in {bad}"
    return res


@given(seed=st.integers(0, 2**31 - 1), v6=st.booleans())
@settings(max_examples=15 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_engine_matches_reference_random(seed, v6):
    """Random zones, programs and region options (size 1-8 pageblocks, sorted or plain,
    evacuation on or off): engine == reference, invariants after every tick."""
    kind, bmt, zones, prog = region_case(seed, 3)
    res = compare(kind, bmt, zones, prog, V6 if v6 else V4, f"seed {seed}")
    assert_conservation(kind, res, prog)


def test_engine_matches_reference_fixed():
    """Fixed seeds where the handshake fires and the worker migrates (and fails), in both
    profiles; regions of 64 and 128 pageblocks (whole superblocks of the first() search)."""
    evac = moved = 0
    for seed, profile in ((1, V4), (2, V6), (3, V6), (4, V4)):
        kind, bmt, zones, prog = region_case(seed, 3)
        res = compare(kind, bmt, zones, prog, profile, f"seed {seed}")
        evac += int(res.counters[:, -1, C["region_evacuations"]].sum())
        moved += int(res.counters[:, -1, C["pgmigrate_success"]].sum())
    assert evac > 0 and moved > 0
    for seed, profile in ((5, V6), (6, V4)):
        kind, bmt, zones, prog = region_case(seed, 2, nr_blocks=256, rbs=(64, 128))
        compare(kind, bmt, zones, prog, profile, f"large seed {seed}", check=False)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_batch_invariance_and_background_paths(monkeypatch, profile):
    """A zone's result does not depend on its batch (plain, sorted and sorted+evacuation
    zones mixed), and bulk background rounds equal one event at a time."""
    import kernels.tick as tick

    kind, bmt, zones, prog = region_case(31, 4, nr_blocks=16)
    zones = TickZones(
        **{
            **{f: getattr(zones, f) for f in zones.__dataclass_fields__},
            "sorted_freelists": np.array([False, True, True, False]),
            "region_evacuation": np.array([False, False, True, True]),
        }
    )
    batch = run_program(kind, bmt, zones, prog, profile, backend="numpy")
    for z in range(4):
        alone = run_program(kind[z : z + 1], bmt[z : z + 1], zones[z], prog, profile)
        assert not diff(row(batch, z), alone), f"zone {z}"
    monkeypatch.setattr(tick._Engine, "BG_MODE", "seq")
    seq = run_program(kind, bmt, zones, prog, profile, backend="numpy")
    for z in range(4):
        assert not diff(row(batch, z), row(seq, z)), f"seq zone {z}"


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_a_note_left_pending_is_queued_by_the_next_split(profile):
    """An order-10 attempt takes a free region's block whole (no expand: the note waits);
    the next tick's first background allocation splits a block, which queues the work,
    so the second attempt's fresh region is not noted. The bulk background path must see
    that split although its block is used up within the round."""
    kind = np.full(8 * 512, FREE, dtype=np.uint8)
    kind[:1024] = ANON
    kind[100:104] = FREE
    kind[200:204] = FREE
    bmt = np.full(8, M, dtype=np.int8)
    zones = TickZones.create(
        1,
        attempt_order=10,
        kcompactd=0,
        min_free_kbytes=128,
        region_blocks=2,
        sorted_freelists=True,
        region_evacuation=True,
    )
    prog = Program(phases=(Phase("p", ticks=2, allocs_per_tick=4, alloc_weights=(1, 0, 0, 0),
                                 attempt_every=1, attempt_mt=M, keep=True),))  # fmt: skip
    r = ref.run_program_ref(kind, bmt, zones, prog, profile, check_invariants=True)
    assert r.counters[0, -1, C["alloc_success"]] == 2
    assert r.counters[0, -1, C["region_evacuations"]] == 1 and r.scalars["mpc_region"][0] == -1
    e = compare(kind[None], bmt[None], zones, prog, profile, "pending note")
    assert not diff(row(e, 0), r)


def test_defaults_are_the_plain_buddy():
    """Sorted lists with a single region, and evacuation with a single region, change
    nothing: region 0 is never noted, one region sorts nothing."""
    kind, bmt, zones, prog = region_case(41, 2, nr_blocks=8)
    f = {k: getattr(zones, k) for k in zones.__dataclass_fields__}
    plain = TickZones(**{**f, "sorted_freelists": np.array([False, False]),
                         "region_evacuation": np.array([False, False])})  # fmt: skip
    one = TickZones(**{**f, "region_blocks": np.array([8, 16]),
                       "sorted_freelists": np.array([True, True]),
                       "region_evacuation": np.array([True, True])})  # fmt: skip
    a = run_program(kind, bmt, plain, prog, V6, backend="numpy")
    b = run_program(kind, bmt, one, prog, V6, backend="numpy")
    assert not differences(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_cupy_equals_numpy_regions(profile):
    for seed in (1, 2, 3):
        kind, bmt, zones, prog = region_case(seed, 3)
        a = run_program(kind, bmt, zones, prog, profile, backend="numpy")
        b = run_program(kind, bmt, zones, prog, profile, backend="cupy")
        for z in range(3):
            assert not diff(row(a, z), row(b, z)), f"seed {seed} zone {z}"


# ----------------------------------------------------------------------------- workload


def test_regions_workload_program_and_keys():
    from sweep.config import compose_config
    from sweep.scenario import build_program, cell_inputs

    cfg = compose_config(["workload=regions", "zone=1g", "workload.region_mb=32",
                          "policy=regions", "replicates=2"])  # fmt: skip
    prog = build_program(cfg)
    assert [p.name for p in prog.phases] == ["build1", "build2", "build3"]
    assert [(p.kill_anon, p.drop_caches) for p in prog.phases] == [(False, False)] + [
        (True, True)
    ] * 2
    assert prog.phases[0].allocs_per_tick == 1000 and prog.phases[0].frees_per_tick == 1667
    assert prog.phases[0].attempt_every == 0
    cell = cell_inputs(cfg, np)
    assert (cell.zones.region_blocks == 16).all()  # 32 MiB = 16 pageblocks
    assert cell.zones.sorted_freelists.all() and cell.zones.region_evacuation.all()
    assert (cell.kind == FREE).all()
    plain = cell_inputs(compose_config(["workload=regions", "zone=1g"]), np).zones
    assert (plain.region_blocks == 256).all()  # 512 MiB, the RFC's test machine
    assert not plain.sorted_freelists.any() and not plain.region_evacuation.any()


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["workload.region_mb=3"], "workload.region_mb"),
        (["workload.region_mb=1"], "workload.region_mb"),
        (["zone=tiny", "workload.region_mb=32"], "workload.region_mb"),
        (["workload.cycles=0"], "workload.cycles"),
        (["workload.load_occupancy=2"], "workload.load_occupancy"),
        (["workload.load_mix=[0.5,0.5,0.5,0]"], "workload.load_mix"),
    ],
)
def test_regions_bad_input_names_the_key(overrides, key):
    from sweep.config import ConfigError, compose_config

    with pytest.raises(ConfigError, match=f"^{key}"):
        compose_config(["workload=regions", *overrides])


def test_region_policy_needs_a_time_stepped_workload():
    from sweep.config import ConfigError, compose_config

    with pytest.raises(ConfigError, match="^policy.sorted_freelists"):
        compose_config(["policy=regions"])


def test_regions_cli_writes_result(tmp_path):
    import xarray as xr

    from tests.clirun import run_sweep

    run_dir = tmp_path / "run"
    proc = run_sweep(tmp_path, "workload=regions", "zone=tiny", "workload.region_mb=2",
                     "workload.cycles=2", "workload.cycle_ticks=20", "replicates=2",
                     "workload.load_pages_per_s=2000", "policy=regions",
                     f"hydra.run.dir={run_dir}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "free regions (of 8)" in proc.stdout
    with xr.open_dataset(run_dir / "result.nc") as ds:
        fr = ds.free_regions_over_time
        assert fr.dims == ("replicate", "time") and fr.attrs["units"] == "regions"
        assert ((fr >= 0) & (fr <= 8)).all()
        assert ds.region_evacuations.dims == ("replicate", "phase")
        assert "long_name" in ds.region_evacuations.attrs
        assert ds.attrs["workload"] == "regions"


@pytest.mark.parametrize("kernel", ["v4_12", "v6_19"])
def test_regions_workload_engine_equals_reference(kernel):
    """The workload's own program (build cycles, bulk background rounds, evacuations) on a
    64-pageblock zone with 8 regions, the worker at the end of the tick and delayed:
    engine == reference, invariants after every tick."""
    from sweep.config import PROFILES, compose_config
    from sweep.scenario import cell_inputs

    cfg = compose_config(["workload=regions", "zone.nr_pages=32768", "workload.region_mb=16",
                          "policy=regions", "replicates=2", f"kernel={kernel}",
                          "workload.cycle_ticks=30", "workload.load_pages_per_s=1250"])  # fmt: skip
    cell = cell_inputs(cfg, np)
    f = {k: getattr(cell.zones, k) for k in cell.zones.__dataclass_fields__}
    zones = TickZones(
        **{
            **f,
            "sorted_freelists": np.array([True, True]),
            "region_worker_delayed": np.array([False, True]),
        }
    )
    res = compare(cell.kind, cell.block_mt, zones, cell.program, PROFILES[kernel], kernel)
    assert (res.counters[:, -1, C["region_evacuations"]] > 0).all()
