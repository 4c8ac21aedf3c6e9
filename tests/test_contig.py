"""CMA pageblocks and contiguous-allocation trials (docs/tick-model.md 7): the batched
engine (kernels/contig.py via kernels/tick.py) against the per-zone reference
(tests/reference/contig.py), batch invariance, conservation and the seed-004 directions."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.backend import gpu_available
from kernels.program import (
    ANON,
    CONTIG_BULK,
    CONTIG_BULK_RANGE,
    CONTIG_CMA_ORDER,
    CONTIG_CMA_ORDER10,
    CONTIG_CMA_RANGE,
    CONTIG_NAMES,
    FILE,
    FREE,
    GFP_MOVABLE,
    MT_CMA,
    RECL,
    TRIAL_FIELDS,
    UNMOV,
    Phase,
    Program,
    TickZones,
)
from kernels.tick import run_program
from kernels.zone import KernelProfile
from tests.reference.tick import run_program_ref

SCALE = int(os.environ.get("COMPACTION_SWEEP_TEST_SCALE", "1"))
PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)
ARRAYS = ("kind", "block_mt", "skip", "buddy_order", "list_mt", "key", "counters")
ARRAYS += ("buddyinfo", "nr_free", "attempts", "trials")
T = {name: i for i, name in enumerate(TRIAL_FIELDS)}
LOAD = (0.45, 0.45, 0.03, 0.07)


def _zone(n: int, cma_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    kind = np.zeros(n, dtype=np.uint8)
    bmt = np.ones(n // 512, dtype=np.int8)
    bmt[:2] = 0
    if cma_chunks:
        bmt[-2 * cma_chunks :] = MT_CMA
    return kind, bmt


def _program(
    fill: int, trials: int, count: int, order: int, attempts: bool, ticks: int = 6
) -> Program:
    return Program(
        phases=(
            Phase(
                "load",
                ticks=ticks,
                frees_per_tick=fill // 8,
                allocs_per_tick=fill,
                alloc_weights=LOAD,
            ),
            Phase(
                "trials",
                ticks=2 * trials,
                frees_per_tick=20,
                allocs_per_tick=20,
                alloc_weights=LOAD,
                contig_every=2,
                contig_count=count,
                contig_order=order,
                attempt_every=3 if attempts else 0,
                attempt_gfp=GFP_MOVABLE,
            ),
        ),
        sample_every=2,
    )


def _assert_same(a, b, za: int, zb: int) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name)[za], getattr(b, name)[zb]
        assert np.array_equal(x, y), f"{name} differs (zones {za}/{zb})"
    for k in a.scalars:
        assert a.scalars[k][za] == b.scalars[k][zb], f"scalar {k} differs"


@settings(
    max_examples=4 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**31),
    v6=st.booleans(),
    cma_chunks=st.integers(1, 3),
    methods=st.lists(st.integers(0, len(CONTIG_NAMES) - 1), min_size=1, max_size=3),
    busy=st.sampled_from([0.0, 0.01, 0.2, 1.0]),
    order=st.integers(0, 10),
    count=st.integers(1, 40),
    fill=st.integers(100, 700),
    attempts=st.booleans(),
)
def test_matches_reference_random(
    seed, v6, cma_chunks, methods, busy, order, count, fill, attempts
):
    """Every method, both profiles, random load and busy share: batched == reference
    exactly, and the conservation invariants hold after every tick in both."""
    n = 4096
    kind, bmt = _zone(n, cma_chunks)
    z_n = len(methods)
    prog = _program(fill, 3, count, order, attempts)
    zones = TickZones.create(
        z_n,
        seed=np.arange(seed, seed + z_n, dtype=np.uint64),
        contig_method=methods,
        busy_file=busy,
        attempt_order=4,
        min_free_kbytes=128,
    )
    profile = PROFILES[v6]
    res = run_program(
        np.tile(kind, (z_n, 1)), np.tile(bmt, (z_n, 1)), zones, prog, profile, check_invariants=True
    )
    for zi in range(z_n):
        ref = run_program_ref(kind, bmt, zones[zi], prog, profile, check_invariants=True)
        _assert_same(ref, res, 0, zi)


@pytest.mark.parametrize("profile", PROFILES)
def test_batch_invariance(profile):
    """A zone's trials do not depend on its neighbours (mixed methods in one batch)."""
    kind, bmt = _zone(4096, 2)
    prog = _program(500, 1, 20, 4, False, ticks=4)
    methods = [CONTIG_BULK, CONTIG_CMA_RANGE, CONTIG_CMA_ORDER, 0]
    zones = TickZones.create(4, seed=7, contig_method=methods, busy_file=0.05, min_free_kbytes=128)
    both = run_program(np.tile(kind, (4, 1)), np.tile(bmt, (4, 1)), zones, prog, profile)
    for zi in (0, 2):
        alone = run_program(kind[None], bmt[None], zones[zi], prog, profile)
        _assert_same(alone, both, 0, zi)


@pytest.mark.parametrize("profile", PROFILES)
def test_cma_holds_only_movable_pages(profile):
    """Fallbacks never touch CMA: after a load that overfills the non-CMA part, the CMA
    blocks hold movable pages only, and MOVABLE allocations did use them."""
    kind, bmt = _zone(4096, 2)
    prog = Program(
        phases=(
            Phase(
                "load",
                ticks=12,
                frees_per_tick=40,
                allocs_per_tick=400,
                alloc_weights=(0.3, 0.3, 0.2, 0.2),
            ),
        )
    )
    res = run_program(
        kind[None],
        bmt[None],
        TickZones.create(1, min_free_kbytes=128),
        prog,
        profile,
        check_invariants=True,
    )
    cma = res.kind[0, -2048:]
    assert not np.isin(cma, (UNMOV, RECL)).any()
    assert np.isin(cma, (ANON, FILE)).sum() > 500
    assert (res.list_mt[0, -2048:][res.buddy_order[0, -2048:] >= 0] == MT_CMA).all()


@pytest.mark.parametrize("profile", PROFILES)
def test_busy_page_fails_the_range_but_not_bulk(profile):
    """Seed 004's directions: with busy page cache the all-or-nothing range fails (and
    slides over many windows), alloc_pages_bulk still gets pages; with none both succeed."""
    kind, bmt = _zone(8192, 3)  # 3072-page CMA area, filled with anon and page cache
    kind[-3072::2] = ANON
    kind[-3071::2] = FILE
    prog = Program(
        phases=(Phase("trials", ticks=2, contig_every=1, contig_count=96, contig_order=4),)
    )  # 96 x order 4 = 1536 pages
    zones = TickZones.create(
        4,
        seed=3,
        contig_method=[CONTIG_CMA_RANGE, CONTIG_BULK] * 2,
        busy_file=[0.0, 0.0, 0.3, 0.3],
        min_free_kbytes=128,
    )
    res = run_program(
        np.tile(kind, (4, 1)), np.tile(bmt, (4, 1)), zones, prog, profile, check_invariants=True
    )
    tr = res.trials
    assert (tr[0, :, T["complete"]] == 1).all()
    assert (tr[1, :, T["obtained"]] == 96).all()
    assert (tr[2, :, T["obtained"]] == 0).all()
    assert (tr[2, :, T["windows"]] > 1).all()  # cma_alloc slid to other windows
    assert (tr[3, :, T["obtained"]] > 0).all()
    assert (tr[3, :, T["obtained"]] > tr[2, :, T["obtained"]]).all()


def test_rejects_bad_cma_layout():
    kind, bmt = _zone(4096, 0)
    bmt[2] = MT_CMA  # not at the top
    prog = _program(100, 1, 4, 4, False)
    with pytest.raises(ValueError, match="CMA"):
        run_program(kind[None], bmt[None], TickZones.create(1), prog, KernelProfile.V6_19)
    with pytest.raises(ValueError, match="CMA"):
        run_program_ref(kind, bmt, TickZones.create(1), prog, KernelProfile.V6_19)
    bmt[2] = 1
    bmt[-1] = MT_CMA  # half a 1024-page chunk
    with pytest.raises(ValueError, match="CMA"):
        run_program(kind[None], bmt[None], TickZones.create(1), prog, KernelProfile.V6_19)
    with pytest.raises(ValueError, match="contig_method"):
        TickZones.create(1, contig_method=9).validate()
    with pytest.raises(ValueError, match="busy_file"):
        TickZones.create(1, busy_file=1.5).validate()


def test_no_trials_without_a_method():
    kind, bmt = _zone(4096, 1)
    prog = _program(300, 2, 4, 4, False)
    res = run_program(kind[None], bmt[None], TickZones.create(1), prog, KernelProfile.V4_12)
    assert res.trials.shape == (1, 2, len(TRIAL_FIELDS))
    assert (res.trials == 0).all()
    assert (res.kind[0] != FREE).sum() > 0


@pytest.mark.parametrize("profile", PROFILES)
def test_target_paths_agree(monkeypatch, profile):
    """Migration targets in bulk rounds (_bulk_round over the lists _target_lists gives,
    also cut into rounds of 3 targets) equal one get_page per target, and the bulk path
    did serve targets."""
    import kernels.contig as contig
    import kernels.tick as tick

    calls = []
    orig = tick._Engine._bulk_round

    def spy(self, kinds, start, lists=None):
        j0 = orig(self, kinds, start, lists)
        if lists is not None:
            calls.append(int((self.xp.asarray(j0) - start).sum()))
        return j0

    monkeypatch.setattr(tick._Engine, "_bulk_round", spy)
    kind, bmt = _zone(4096, 2)
    prog = _program(400, 2, 24, 4, True, ticks=4)
    methods = [CONTIG_BULK, CONTIG_CMA_RANGE, CONTIG_CMA_ORDER, CONTIG_CMA_ORDER10]
    zones = TickZones.create(4, seed=5, contig_method=methods, busy_file=0.02, min_free_kbytes=128)
    args = (np.tile(kind, (4, 1)), np.tile(bmt, (4, 1)), zones, prog, profile)
    out = []
    for mode, cap in (("seq", 1 << 14), ("auto", 1 << 14), ("auto", 3)):
        monkeypatch.setattr(contig, "TARGETS_MODE", mode)
        monkeypatch.setattr(contig, "TARGETS_CAP", cap)
        calls.clear()
        out.append(run_program(*args, check_invariants=cap == 3))
        assert (sum(calls) > 50) == (mode == "auto")
    for res in out[1:]:
        for zi in range(4):
            _assert_same(out[0], res, zi, zi)


@settings(max_examples=200, deadline=None)
@given(c=st.integers(0, 60), m=st.integers(0, 60), other=st.integers(0, 60), k=st.integers(1, 150))
def test_cma_first_closed_form(c, m, other, k):
    """tick-model.md 7.5: x_{j+1} = min(j + 1, max(0, c - (nr - j) // 2)) is the number of
    CMA takes of 6.19's __rmqueue (CMA first while NR_FREE_CMA > NR_FREE / 2) while both
    lists hold pages, checked against the step-by-step rule."""
    from types import SimpleNamespace

    import kernels.contig as contig

    nrf = np.zeros((1, 11, 5), dtype=np.int64)
    nrf[0, 0, 1], nrf[0, 0, MT_CMA] = m, c
    eng = SimpleNamespace(xp=np, Z=1, v6=True, nrf=nrf, nr_free=np.array([c + m + other]))
    lists = contig._target_lists(eng, np.array([k]), k)[0]
    cf, mf, nr = c, m, c + m + other
    for j in range(k):
        first = cf > nr // 2  # implies cf > 0
        if not first and mf == 0 and (m > 0 or cf == 0):
            break  # __rmqueue_cma_fallback or the fallbacks: _bulk_round stops, one event
        want = MT_CMA if first or mf == 0 else 1
        assert lists[j] == want, j
        cf, mf, nr = cf - (want == MT_CMA), mf - (want == 1), nr - 1


@pytest.mark.parametrize("profile", PROFILES)
def test_background_paths_agree_with_cma(monkeypatch, profile):
    """Background bulk rounds on zones with a CMA area (tick-model.md 7.6: each MOVABLE
    event's list, MOVABLE or CMA, and the per-event NR_FREE_CMA of the watermark) equal
    every event one at a time, also with one bulk round per tick."""
    import kernels.tick as tick

    kind, bmt = _zone(4096, 3)
    prog = Program(
        phases=(
            Phase("fill", ticks=4, frees_per_tick=60, allocs_per_tick=900, alloc_weights=LOAD),
            Phase("load", ticks=6, frees_per_tick=200, allocs_per_tick=220, alloc_weights=LOAD),
        )
    )
    zones = TickZones.create(3, seed=[1, 2, 3], min_free_kbytes=[128, 512, 2048])
    args = (np.tile(kind, (3, 1)), np.tile(bmt, (3, 1)), zones, prog, profile)
    out = []
    for mode, rounds in (("seq", 8), ("auto", 8), ("auto", 1)):
        monkeypatch.setattr(tick._Engine, "BG_MODE", mode)
        monkeypatch.setattr(tick._Engine, "BG_ROUNDS", rounds)
        out.append(run_program(*args, check_invariants=rounds == 1))
    for res in out[1:]:
        for zi in range(3):
            _assert_same(out[0], res, zi, zi)
    assert (out[0].kind[:, -3072:] != FREE).sum() > 3000  # MOVABLE pages did use CMA


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize("profile", PROFILES)
def test_cupy_equals_numpy(profile):
    """CMA zones, every method, background and target bulk rounds on CuPy == NumPy."""
    kind, bmt = _zone(4096, 2)
    prog = _program(500, 2, 24, 4, True, ticks=4)
    methods = [CONTIG_BULK, CONTIG_CMA_RANGE, CONTIG_CMA_ORDER, CONTIG_CMA_ORDER10]
    zones = TickZones.create(4, seed=9, contig_method=methods, busy_file=0.02, min_free_kbytes=128)
    args = (np.tile(kind, (4, 1)), np.tile(bmt, (4, 1)), zones, prog, profile)
    a = run_program(*args, backend="numpy")
    b = run_program(*args, backend="cupy")
    for zi in range(4):
        _assert_same(a, b, zi, zi)


@pytest.mark.parametrize("profile", PROFILES)
def test_bulk_range_has_no_spare_chunks(profile):
    """bulk_range (alloc_pages_bulk over exactly count pieces' pages) loses a piece per
    busy chunk, where bulk over the whole area takes spare chunks instead; batched ==
    reference for both."""
    kind, bmt = _zone(8192, 3)
    kind[-3072::2] = ANON
    kind[-3071::2] = FILE
    prog = Program(
        phases=(Phase("trials", ticks=2, contig_every=1, contig_count=96, contig_order=4),)
    )
    zones = TickZones.create(
        2,
        seed=3,
        contig_method=[CONTIG_BULK, CONTIG_BULK_RANGE],
        busy_file=0.01,
        min_free_kbytes=128,
    )
    res = run_program(np.tile(kind, (2, 1)), np.tile(bmt, (2, 1)), zones, prog, profile)
    got = res.trials[:, :, T["obtained"]]
    assert (got[0] == 96).all() and 80 < got[1, 0] < 96  # trial 1: the range is empty now
    assert (res.trials[1, :, T["scanned"]] == 1536).all()  # only the range's pages
    for zi in range(2):
        ref = run_program_ref(kind, bmt, zones[zi], prog, profile, check_invariants=True)
        _assert_same(ref, res, 0, zi)
