"""The batched time-stepped engine (kernels/tick.py): batch invariance, invariants, and
bit-for-bit agreement with the per-zone reference (tests/reference/tick.py)."""

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
    GFP_MOVABLE,
    GFP_NOWAIT,
    GFP_THP,
    HELD,
    PIN,
    RECL,
    SCALARS,
    UNMOV,
    Phase,
    Program,
    TickResult,
    TickZones,
)
from kernels.tick import initial_kinds, run_program
from kernels.zone import KernelProfile

# COMPACTION_SWEEP_TEST_SCALE=10 runs ten times as many random cases.
SCALE = int(os.environ.get("COMPACTION_SWEEP_TEST_SCALE", "1"))
PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)
ARRAYS = (
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

try:
    from tests.reference.tick import run_program_ref
except Exception:  # the reference is written separately; its tests skip until it imports
    run_program_ref = None

needs_ref = pytest.mark.skipif(run_program_ref is None, reason="tests/reference/tick.py missing")


# ----------------------------------------------------------------------------- cases


def random_zone(rng: np.random.Generator, nr_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """One zone: kinds FREE..HELD (PIN and HELD included) and block types, mixed layouts."""
    n = nr_blocks * 512
    mt = rng.choice([0, 1, 2], size=nr_blocks, p=[0.15, 0.72, 0.13]).astype(np.int8)
    p_free = rng.uniform(0.02, 0.9)
    rest = np.array([0.45, 0.35, 0.08, 0.06, rng.choice([0.0, 0.06]), rng.choice([0.0, 0.02])])
    p = np.concatenate([[p_free], (1 - p_free) * rest / rest.sum()])
    kind = rng.choice([FREE, ANON, FILE, UNMOV, RECL, PIN, HELD], size=n, p=p).astype(np.uint8)
    for b in range(nr_blocks):
        r = rng.random()
        lo = b * 512
        if r < 0.25:  # blocky: a whole pageblock of one kind
            kind[lo : lo + 512] = rng.choice([FREE, FREE, ANON, FILE, UNMOV])
        elif r < 0.4:  # runs: a free run of random aligned size
            o = int(rng.integers(0, 10))
            start = lo + int(rng.integers(0, 512 >> o)) * (1 << o) if o < 9 else lo
            kind[start : start + (1 << o)] = FREE
    return kind, mt


def random_phase(rng: np.random.Generator, i: int, high_orders: bool) -> Phase:
    w = rng.dirichlet(np.ones(4)) * (rng.random(4) < 0.8)
    if w.sum() == 0:
        w[0] = 1.0
    w = tuple(float(x) for x in w / w.sum())
    w = (*w[:3], max(0.0, 1.0 - sum(w[:3])))
    kinds = [k for k in (ANON, FILE, UNMOV, RECL, PIN) if rng.random() < 0.6] or [ANON]
    gfps = [GFP_NOWAIT] + ([GFP_MOVABLE, GFP_THP] if high_orders else [])
    return Phase(
        name=f"p{i}",
        ticks=int(rng.integers(1, 5)),
        frees_per_tick=int(rng.choice([0, 4, 16, 64, 200])),
        allocs_per_tick=int(rng.choice([0, 4, 16, 64, 200])),
        alloc_weights=w,
        free_kinds=tuple(kinds),
        attempt_every=int(rng.choice([0, 1, 1, 2])),
        attempt_gfp=int(rng.choice(gfps)),
        attempt_mt=int(rng.choice([0, 1, 1, 2])),
        keep=bool(rng.random() < 0.5),
        kill_anon=bool(rng.random() < 0.15),
        drop_caches=bool(rng.random() < 0.15),
        min_free_kbytes=int(rng.choice([0, 0, 128, 512, 2048, 8192])),
    )


def random_case(seed: int, nr_zones: int, nr_blocks: int | None = None):
    """(kind (Z, N), block_mt (Z, B), TickZones, Program) from one seed."""
    rng = np.random.default_rng(seed)
    nb = nr_blocks or 2 * int(rng.integers(2, 17))  # 4..32 pageblocks
    zs = [random_zone(rng, nb) for _ in range(nr_zones)]
    kind = np.stack([k for k, _ in zs])
    bmt = np.stack([m for _, m in zs])
    high = bool(rng.random() < 0.8)  # movable/thp attempts need attempt_order > 3
    orders = rng.integers(4 if high else 1, 11, size=nr_zones)
    zones = TickZones.create(
        nr_zones,
        seed=rng.integers(0, 2**63, size=nr_zones, dtype=np.uint64),
        attempt_order=orders,
        kcompactd=rng.integers(0, 4, size=nr_zones),
        skip_pinned=rng.random(nr_zones) < 0.5,
        stop_below_watermark=rng.random(nr_zones) < 0.3,
        proactiveness=rng.choice([0, 20, 50, 90, 100], size=nr_zones),
        min_free_kbytes=rng.choice([128, 256, 1024, 4096], size=nr_zones),
    )
    prog = Program(
        phases=tuple(random_phase(rng, i, high) for i in range(int(rng.integers(1, 4)))),
        tick_ms=float(rng.choice([100.0, 250.0, 500.0])),
        sample_every=int(rng.integers(1, 4)),
        kswapd_rounds=int(rng.choice([0, 1, 4, 32])),
        watermark_scale_factor=int(rng.choice([10, 100, 1000])),
    )
    return kind, bmt, zones, prog


def result_row(res: TickResult, z: int) -> TickResult:
    return TickResult(
        **{f: getattr(res, f)[z : z + 1] for f in ARRAYS},
        scalars={k: v[z : z + 1] for k, v in res.scalars.items()},
    )


def differences(a: TickResult, b: TickResult) -> list[str]:
    bad = [f for f in ARRAYS if getattr(a, f).shape != getattr(b, f).shape]
    bad += [f for f in ARRAYS if f not in bad and not np.array_equal(getattr(a, f), getattr(b, f))]
    bad += [s for s in SCALARS if not np.array_equal(a.scalars[s], b.scalars[s])]
    return bad


def assert_same(a: TickResult, b: TickResult, what: str) -> None:
    bad = differences(a, b)
    assert not bad, f"{what}: fields differ: {bad}"


def assert_conservation(kind0: np.ndarray, res: TickResult, prog: Program) -> None:
    """Conservation after a run (kinds, buddy structure, samples, counters)."""
    z_n, n = res.kind.shape
    assert (res.kind <= HELD).all(), "ISOFREE left after a run"
    for z in range(z_n):
        heads = np.nonzero(res.buddy_order[z] >= 0)[0]
        assert (1 << res.buddy_order[z][heads].astype(np.int64)).sum() == (
            res.kind[z] == FREE
        ).sum(), f"zone {z}: sum 2^o over heads != NR_FREE"
        assert len(np.unique(res.key[z][heads])) == len(heads), f"zone {z}: keys not unique"
        assert (res.key[z][heads] != 0).all()
        # no page is lost: allocations and frees change kinds, never the page count
        assert np.bincount(res.kind[z], minlength=8).sum() == n
    orders = np.arange(11)
    assert ((res.buddyinfo << orders).sum(axis=2) == res.nr_free).all(), "buddyinfo vs NR_FREE"
    c = res.counters[:, -1]
    ix = COUNTER_INDEX
    assert (
        c[:, ix["compact_stall"]] == c[:, ix["compact_success"]] + c[:, ix["compact_fail"]]
    ).all()
    assert (c[:, ix["alloc_success"]] == res.attempts.sum(axis=1)).all()
    assert (c[:, ix["alloc_attempts"]] == prog.n_attempts).all()
    assert (c[:, ix["alloc_success"]] <= c[:, ix["alloc_attempts"]]).all()
    assert (
        c[:, ix["alloc_background"]] + c[:, ix["alloc_background_fail"]]
        == sum(p.ticks * p.allocs_per_tick for p in prog.phases)
    ).all()
    assert (c[:, ix["compact_daemon_migrate_scanned"]] <= c[:, ix["compact_migrate_scanned"]]).all()
    assert (c[:, ix["pgmigrate_success"]] <= c[:, ix["compact_isolated"]]).all()
    assert (np.diff(res.counters, axis=1) >= 0).all(), "counters are cumulative"
    # No held block survives its phase: HELD pages of the end are the initial ones or fewer.
    assert ((res.kind == HELD).sum(axis=1) <= (kind0 == HELD).sum(axis=1)).all()


def compare_with_reference(kind, bmt, zones, prog, profile, label: str) -> None:
    res = run_program(kind, bmt, zones, prog, profile, backend="numpy")
    for z in range(kind.shape[0]):
        ref = run_program_ref(kind[z], bmt[z], zones[z], prog, profile)
        bad = differences(result_row(res, z), ref)
        assert not bad, f"{label} zone {z} ({profile.name}): engine != reference in {bad}"


# ----------------------------------------------------------------------------- tests


def test_initial_kinds_mapping():
    from kernels.zone import FREE as S_FREE
    from kernels.zone import MOVABLE, PINNED, RECLAIMABLE, UNMOVABLE

    rng = np.random.default_rng(1)
    ps = rng.choice([S_FREE, MOVABLE, UNMOVABLE, RECLAIMABLE, PINNED], size=(3, 2048))
    ps = ps.astype(np.uint8)
    seeds = np.array([1, 2, 3], dtype=np.uint64)
    k = initial_kinds(ps, seeds, [0.0, 0.5, 1.0])
    assert k.dtype == np.uint8
    assert ((k == FREE) == (ps == S_FREE)).all()
    assert ((k == UNMOV) == (ps == UNMOVABLE)).all()
    assert ((k == RECL) == (ps == RECLAIMABLE)).all()
    assert ((k == PIN) == (ps == PINNED)).all()
    mov = ps == MOVABLE
    assert (k[0][mov[0]] == ANON).all() and (k[2][mov[2]] == FILE).all()
    share = (k[1][mov[1]] == FILE).mean()
    assert 0.4 < share < 0.6
    np.testing.assert_array_equal(k[1:2], initial_kinds(ps[1:2], seeds[1:2], 0.5))


def mixed_case(seed: int):
    """random_case's zones and program, five zones with every policy switch mixed."""
    kind, bmt, zones, prog = random_case(seed, 5, nr_blocks=12)
    zones = TickZones.create(
        5,
        seed=zones.seed,
        attempt_order=[4, 9, 6, 10, 5],
        kcompactd=[0, 1, 2, 3, 3],
        skip_pinned=[True, False, True, False, True],
        stop_below_watermark=[False, True, False, False, True],
        proactiveness=[20, 0, 50, 100, 10],
        min_free_kbytes=[128, 512, 1024, 256, 4096],
    )
    return kind, bmt, zones, prog


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_batch_invariance(profile):
    """A zone's result does not depend on the other zones of its batch."""
    for seed in (11, 12):
        kind, bmt, zones, prog = mixed_case(seed)
        batch = run_program(kind, bmt, zones, prog, profile, backend="numpy")
        for z in range(5):
            alone = run_program(kind[z : z + 1], bmt[z : z + 1], zones[z], prog, profile)
            assert_same(result_row(batch, z), alone, f"seed {seed} zone {z}")
        # and in another order / with a duplicate
        perm = [3, 0, 3, 1]
        again = run_program(kind[perm], bmt[perm], zones[perm], prog, profile, backend="numpy")
        for i, z in enumerate(perm):
            assert_same(result_row(again, i), result_row(batch, z), f"perm row {i}")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_invariants_after_every_tick(profile):
    """check_invariants=True passes, and conservation holds after the run."""
    for seed in (21, 22, 23):
        kind, bmt, zones, prog = random_case(seed, 4)
        res = run_program(kind, bmt, zones, prog, profile, backend="numpy", check_invariants=True)
        assert_conservation(kind, res, prog)


def test_invariant_violation_is_reported(monkeypatch):
    """check_invariants names the zone and the invariant; bad inputs are rejected."""
    import kernels.tick as tick

    kind, bmt, zones, prog = random_case(5, 2, nr_blocks=4)
    bad = kind.copy()
    bad[0, 0] = 7  # ISOFREE is not an input kind
    with pytest.raises(ValueError):
        run_program(bad, bmt, zones, prog, KernelProfile.V6_19, backend="numpy")
    with pytest.raises(ValueError):
        broken = Program(phases=(Phase("x", ticks=1, frees_per_tick=4, free_kinds=(FREE,)),))
        run_program(kind, bmt, zones, broken, KernelProfile.V6_19, backend="numpy")

    def corrupt(self):  # a page turns FREE behind the buddy allocator's back
        page = int(np.nonzero(self.kind[1] != FREE)[0][0])
        self.kind[1, page] = FREE

    monkeypatch.setattr(tick._Engine, "_kswapd_step", corrupt)
    with pytest.raises(AssertionError, match="zone 1: invariant violated"):
        run_program(kind, bmt, zones, prog, KernelProfile.V6_19, check_invariants=True)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_free_paths_agree(monkeypatch, profile):
    """Page-by-page (sparse rounds) and per-chunk bulk frees give the same sequence."""
    import kernels.tick as tick

    for seed in (41, 42):
        kind, bmt, zones, _ = random_case(seed, 3, nr_blocks=16)
        out = []
        for mode in ("sparse", "chunk"):
            monkeypatch.setattr(tick._Engine, "FREE_MODE", mode)
            out.append(run_program(kind, bmt, zones, heavy_program(), profile, backend="numpy"))
        assert_same(out[0], out[1], f"seed {seed}")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_background_paths_agree(monkeypatch, profile):
    """Bulk background rounds (_bulk_round), few rounds then one event at a time, and
    every event one at a time give the same results (and the head log stays exact);
    likewise reclaim from a window of pageblocks and by the whole-zone walk."""
    import kernels.tick as tick

    cases = [random_case(seed, 3, nr_blocks=16)[:3] + (heavy_program(),) for seed in (51, 52)]
    cases += [random_case(seed, 3) for seed in (53, 54, 55)]
    for i, (kind, bmt, zones, prog) in enumerate(cases):
        check = True
        out = []
        for mode, rounds, window in (("seq", 8, 0), ("auto", 8, 2), ("auto", 1, 1)):
            monkeypatch.setattr(tick._Engine, "BG_MODE", mode)
            monkeypatch.setattr(tick._Engine, "BG_ROUNDS", rounds)
            monkeypatch.setattr(tick._Engine, "RECLAIM_WINDOW", window)
            out.append(run_program(kind, bmt, zones, prog, profile, check_invariants=check))
        assert_same(out[0], out[1], f"case {i} seq vs bulk")
        assert_same(out[0], out[2], f"case {i} seq vs one bulk round")


def heavy_program() -> Program:
    """A fixed program that exercises every path: pressure, reclaim, all GFP classes."""
    return Program(
        phases=(
            Phase("fill", ticks=3, allocs_per_tick=200, alloc_weights=(0.5, 0.3, 0.1, 0.1)),
            Phase(
                "thp",
                ticks=4,
                frees_per_tick=64,
                allocs_per_tick=64,
                alloc_weights=(0.4, 0.4, 0.1, 0.1),
                attempt_every=1,
                attempt_gfp=GFP_THP,
                keep=True,
            ),
            Phase(
                "movable",
                ticks=4,
                frees_per_tick=32,
                allocs_per_tick=100,
                alloc_weights=(0.6, 0.2, 0.1, 0.1),
                free_kinds=(ANON, FILE, PIN),
                attempt_every=1,
                attempt_gfp=GFP_MOVABLE,
                attempt_mt=0,
                keep=True,
                min_free_kbytes=2048,
            ),
            Phase(
                "drop",
                ticks=3,
                frees_per_tick=16,
                allocs_per_tick=16,
                attempt_every=2,
                drop_caches=True,
                kill_anon=True,
                min_free_kbytes=256,
            ),
        ),
        tick_ms=250.0,
        sample_every=2,
    )


@needs_ref
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_matches_reference_fixed(profile):
    """Fixed seeds, always run: engine == reference on every field."""
    for seed in range(4):
        kind, bmt, zones, prog = random_case(1000 + seed, 3)
        compare_with_reference(kind, bmt, zones, prog, profile, f"seed {1000 + seed}")
    kind, bmt, zones, _ = random_case(77, 4, nr_blocks=16)
    zones = TickZones.create(
        4,
        seed=zones.seed,
        attempt_order=[4, 9, 10, 6],
        kcompactd=[1, 2, 3, 0],
        skip_pinned=[True, False, False, True],
        min_free_kbytes=[512, 256, 1024, 128],
    )
    compare_with_reference(kind, bmt, zones, heavy_program(), profile, "heavy")


@needs_ref
@given(seed=st.integers(0, 2**32 - 1), nr_zones=st.integers(1, 3), v6=st.booleans())
@settings(max_examples=25 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_matches_reference_random(seed, nr_zones, v6):
    """Random small zones and programs: engine == reference on every field."""
    profile = KernelProfile.V6_19 if v6 else KernelProfile.V4_12
    kind, bmt, zones, prog = random_case(seed, nr_zones)
    compare_with_reference(kind, bmt, zones, prog, profile, f"seed {seed}")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_cupy_equals_numpy(profile):
    for seed in (31, 32):
        kind, bmt, zones, prog = random_case(seed, 4)
        a = run_program(kind, bmt, zones, prog, profile, backend="numpy")
        b = run_program(kind, bmt, zones, prog, profile, backend="cupy")
        assert_same(a, b, f"seed {seed}")
    kind, bmt, zones, _ = random_case(78, 3, nr_blocks=16)
    a = run_program(kind, bmt, zones, heavy_program(), profile, backend="numpy")
    b = run_program(kind, bmt, zones, heavy_program(), profile, backend="cupy")
    assert_same(a, b, "heavy")
