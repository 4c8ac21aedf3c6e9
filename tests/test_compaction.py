"""Batched whole-zone compaction against the per-zone reference, plus mm invariants."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernels.buddy import buddyinfo
from kernels.compaction import CompactCounters, CompactParams, compact_node, compaction_cost
from kernels.fragment import FragmentParams, fragment
from kernels.rng import zone_seed
from kernels.zone import (
    FREE,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    UNMOVABLE,
    KernelProfile,
    MigrateType,
    ZoneState,
    folio_head_code,
)
from tests.reference.compaction import compact_zone
from tests.zonegen import LAYOUTS, random_batch

P = PAGEBLOCK_NR_PAGES
# COMPACTION_SWEEP_TEST_SCALE=10 runs ten times as many random zones.
SCALE = int(os.environ.get("COMPACTION_SWEEP_TEST_SCALE", "1"))
PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)


def _state(s: np.ndarray, mt: np.ndarray) -> ZoneState:
    z = s.shape[0]
    return ZoneState(s.copy(), mt.copy(), *(np.zeros(z, np.int64),) * 3)


def _row(counters: CompactCounters, z: int) -> dict[str, int]:
    return {f.name: int(getattr(counters, f.name)[z]) for f in dataclasses.fields(counters)}


def _assert_matches_reference(s, mt, profile, skip_pinned):
    new, counters = compact_node(_state(s, mt), CompactParams(profile, skip_pinned))
    for z in range(s.shape[0]):
        ref_state, ref_counters = compact_zone(s[z], mt[z], profile, bool(skip_pinned[z]))
        assert _row(counters, z) == dataclasses.asdict(ref_counters), f"zone {z} counters"
        np.testing.assert_array_equal(
            new.page_state[z], np.asarray(ref_state, np.uint8), err_msg=f"zone {z} state"
        )
    return new, counters


batches = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 6),  # zones
    st.integers(1, 12),  # pageblocks per zone
    st.sampled_from((None,) + LAYOUTS),
)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(batch=batches, pinned_policy=st.integers(0, 63))
@settings(max_examples=500 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_batched_equals_reference(profile, batch, pinned_policy):
    """Integer state and every counter, bit for bit, on random zones (both policies)."""
    seed, nr_zones, nr_blocks, layout = batch
    s, mt = random_batch(seed, nr_zones, nr_blocks, layout)
    skip_pinned = np.array([(pinned_policy >> z) & 1 == 1 for z in range(nr_zones)])
    _assert_matches_reference(s, mt, profile, skip_pinned)


fragmenter_cases = st.one_of(
    st.fixed_dictionaries(
        {
            "layout": st.just("random_mix"),
            "free_fraction": st.floats(0.05, 0.6),
            "unmovable_fraction": st.floats(0, 0.05),
            "reclaimable_fraction": st.floats(0, 0.05),
            "pinned_fraction": st.floats(0, 0.2),
            "pollution": st.floats(0, 0.5),
            "folio_fraction": st.floats(0, 0.6),
            "folio_orders": st.sets(st.integers(1, 9), min_size=1, max_size=4).map(
                lambda o: tuple(sorted(o))
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "layout": st.just("holepunch"),
            "free_fraction": st.floats(0.0, 0.5),
            "unmovable_fraction": st.floats(0, 0.05),
            "pinned_fraction": st.floats(0, 0.1),
        }
    ),
    st.fixed_dictionaries(
        {
            "layout": st.just("free_quarter"),
            "unmovable_fraction": st.floats(0, 0.1),
            "pinned_fraction": st.floats(0, 0.3),
            "folio_fraction": st.floats(0, 0.5),
            "folio_orders": st.sets(st.integers(1, 7), min_size=1, max_size=3).map(
                lambda o: tuple(sorted(o))
            ),
        }
    ),
)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(case=fragmenter_cases, seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(2, 16))
@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_batched_equals_reference_on_fragmenter_zones(profile, case, seed, nr_blocks):
    """The project's own zone initialisers (folios included), against the reference."""
    case = dict(case)
    layout = case.pop("layout")
    params = FragmentParams.create(layout, nr_blocks * P, zone_seed(seed, np.arange(3)), **case)
    try:
        params.validate()
        s, mt = fragment(np, params)
    except ValueError:  # a draw that cannot be laid out (e.g. too many folios)
        assume(False)
    _assert_matches_reference(s, mt, profile, np.array([True, False, True]))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(24, 64))
@settings(max_examples=15 * SCALE, deadline=None)
def test_batched_equals_reference_larger_zones(profile, seed, nr_blocks):
    s, mt = random_batch(seed, 2, nr_blocks)
    _assert_matches_reference(s, mt, profile, np.array([True, False]))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(1, 16))
@settings(max_examples=40 * SCALE, deadline=None)
def test_batch_invariance(profile, seed, nr_blocks):
    """A zone's result does not depend on its neighbours in the batch."""
    s, mt = random_batch(seed, 5, nr_blocks)
    skip_pinned = np.array([True, False, True, False, True])
    new, counters = compact_node(_state(s, mt), CompactParams(profile, skip_pinned))
    for z in range(5):
        alone, c1 = compact_node(
            _state(s[z : z + 1], mt[z : z + 1]), CompactParams(profile, skip_pinned[z : z + 1])
        )
        np.testing.assert_array_equal(alone.page_state[0], new.page_state[z])
        assert _row(c1, 0) == _row(counters, z)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(1, 24))
@settings(max_examples=60 * SCALE, deadline=None)
def test_conservation(profile, seed, nr_blocks):
    """Page kinds are conserved, folios survive unless split, counters are consistent."""
    s, mt = random_batch(seed, 4, nr_blocks)
    skip_pinned = np.array([True, False, True, False])
    new, c = compact_node(_state(s, mt), CompactParams(profile, skip_pinned))
    after = new.page_state
    assert after.shape == s.shape and after.dtype == np.uint8
    for z in range(4):
        for kind in range(5):
            assert np.count_nonzero((s[z] & 7) == kind) == np.count_nonzero(
                (after[z] & 7) == kind
            ), kind
        # free pages == pages in buddy free blocks, before and after
        for pages, counts in (
            (s[z], buddyinfo(s[z : z + 1])[0]),
            (after[z], buddyinfo(after[z : z + 1])[0]),
        ):
            assert np.count_nonzero(pages == FREE) == int((counts << np.arange(11)).sum())
        heads_before = np.count_nonzero((s[z] > MOVABLE) & (s[z] < 0x80))
        heads_after = np.count_nonzero((after[z] > MOVABLE) & (after[z] < 0x80))
        assert heads_after == heads_before - c.migrate_folio_split[z]
    assert np.all(new.pageblock_migratetype == mt)
    # compact_isolated counts both scanners: every migrated page was isolated twice.
    assert np.all(c.compact_isolated >= 2 * c.pgmigrate_success)
    assert np.all(c.compact_migrate_scanned <= s.shape[1] + P) and np.all(
        c.compact_free_scanned <= s.shape[1]
    )


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(2, 32))
@settings(max_examples=40 * SCALE, deadline=None)
def test_only_free_and_movable_packs_the_zone(profile, seed, nr_blocks):
    """kernel-model.md 11.6: with only FREE/MOVABLE base pages in MOVABLE pageblocks,
    every pageblock below the scanners' meeting point ends entirely free and every one
    above it full; only the pageblocks where the scanners met may be partial."""
    rng = np.random.default_rng(seed)
    s = (rng.random((3, nr_blocks * P)) < rng.uniform(0.2, 0.8, (3, 1))).astype(
        np.uint8
    )  # MOVABLE=1
    mt = np.full((3, nr_blocks), MigrateType.MOVABLE, np.int8)
    new, c = compact_node(_state(s, mt), CompactParams(profile, np.ones(3, bool)))
    # At most the one page that found no target when the free scanner ran dry fails.
    assert np.all(c.pgmigrate_fail <= 1)
    used = (new.page_state != FREE).reshape(3, nr_blocks, P).sum(axis=2)
    for z in range(3):
        partial = np.flatnonzero((used[z] > 0) & (used[z] < P))
        assert partial.size <= 2 and (partial.size < 2 or partial[1] - partial[0] <= 2), used[z]
        if partial.size:
            assert np.all(used[z][: partial[0]] == 0) and np.all(used[z][partial[-1] + 1 :] == P)


def _hand_zone():
    """Four pageblocks: 10 movable pages at the zone start, two unmovable pageblocks,
    and a movable pageblock whose lower half is used and upper half free."""
    s = np.zeros(4 * P, np.uint8)
    s[0:10] = MOVABLE
    s[P : 3 * P] = UNMOVABLE
    s[3 * P : 3 * P + 256] = MOVABLE
    mt = np.array(
        [MigrateType.MOVABLE, MigrateType.UNMOVABLE, MigrateType.UNMOVABLE, MigrateType.MOVABLE],
        np.int8,
    )
    return s, mt


@pytest.mark.parametrize(
    ("profile", "migrate_scanned"),
    [
        # 6.19 counts PFNs covered: three whole pageblocks.
        (KernelProfile.V6_19, 3 * P),
        # 4.12 counts struct pages visited: 10 movable pages, the 7 free buddy heads of
        # block 0 (orders 1, 2, 4, 5, 6, 7, 8 at PFNs 10..256), then 2 x 512.
        (KernelProfile.V4_12, 10 + 7 + 2 * P),
    ],
)
def test_hand_computed_run(profile, migrate_scanned):
    """A run worked out by hand from mm/compaction.c, independent of the reference."""
    s, mt = _hand_zone()
    new, c = compact_node(_state(s[None], mt[None]), CompactParams(profile, np.ones(1, bool)))
    # The 10 pages move to the first 10 free pages of pageblock 3 (PFNs 1792..1801); the
    # free scanner stepped over 256 used pages and 10 free ones there; block 3 is the
    # top, so the scanners meet when the migrate scanner reaches it.
    assert _row(c, 0) == {
        "compact_migrate_scanned": migrate_scanned,
        "compact_free_scanned": 266,
        "compact_isolated": 20,
        "pgmigrate_success": 10,
        "pgmigrate_fail": 0,
        "lru_lock_acquisitions": 1,
        "migrate_folio_split": 0,
    }
    expect = s.copy()
    expect[0:10] = FREE
    expect[3 * P + 256 : 3 * P + 266] = MOVABLE
    np.testing.assert_array_equal(new.page_state[0], expect)


def test_pinned_policy_counts():
    """Seed 003: skipping pinned pages removes their isolation, lock takes and failures."""
    s = np.full((2, 8 * P), MOVABLE, np.uint8)
    s[:, : 4 * P : 2] = 4  # every other page of the lower half pinned
    s[:, 5 * P :: 2] = FREE  # targets: every other page of the top three pageblocks
    mt = np.full((2, 8), MigrateType.MOVABLE, np.int8)
    for profile in PROFILES:
        new, c = compact_node(_state(s, mt), CompactParams(profile, np.array([True, False])))
        # Skipping: only the page that found no target at the end fails.
        assert c.pgmigrate_fail[0] <= 1 and c.pgmigrate_fail[1] > 100
        assert c.compact_isolated[1] > c.compact_isolated[0] + 500
        assert c.pgmigrate_success[0] >= c.pgmigrate_success[1] > 0


def test_folio_moves_whole_into_an_aligned_free_run():
    """6.19 migrates an order-2 folio as one unit; 4.12 skips it (compound pages)."""
    s = np.zeros((1, 4 * P), np.uint8)
    s[0, 0:4] = [folio_head_code(2)] + [folio_head_code(2) | 0x80] * 3
    s[0, 3 * P : 3 * P + 8] = MOVABLE  # targets start at 3 * P + 8, 4-aligned
    mt = np.full((1, 4), MigrateType.MOVABLE, np.int8)
    new, c = compact_node(_state(s, mt), CompactParams(KernelProfile.V6_19, np.ones(1, bool)))
    assert c.pgmigrate_success[0] == 4 and c.migrate_folio_split[0] == 0
    np.testing.assert_array_equal(new.page_state[0, 3 * P + 8 : 3 * P + 12], s[0, 0:4])
    assert np.all(new.page_state[0, :4] == FREE)
    _, c4 = compact_node(_state(s, mt), CompactParams(KernelProfile.V4_12, np.ones(1, bool)))
    assert c4.pgmigrate_success[0] == 0 and c4.compact_isolated[0] == 0


def test_compaction_cost_is_the_mmtests_formula():
    one = np.array([1], np.int64)
    c = CompactCounters(
        compact_migrate_scanned=1000 * one,
        compact_free_scanned=10**9 * one,  # ignored: mmtests reads "compact_migrate_free"
        compact_isolated=100 * one,
        pgmigrate_success=10 * one,
        pgmigrate_fail=5 * one,
        lru_lock_acquisitions=one,
        migrate_folio_split=0 * one,
    )
    assert compaction_cost(c)[0] == pytest.approx((7 * 1000 + 19 * 100 + 1038 * 10 + 14 * 5) / 1e6)


@pytest.mark.gpu
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_cupy_equals_numpy(profile):
    cp = pytest.importorskip("cupy")
    for seed in range(40):
        s, mt = random_batch(seed, 6, 1 + seed % 12)
        sp = np.arange(6) % 2 == 0
        new, c = compact_node(_state(s, mt), CompactParams(profile, sp))
        gpu_state = ZoneState(cp.asarray(s), cp.asarray(mt), *(cp.zeros(6, cp.int64),) * 3)
        gnew, gc = compact_node(gpu_state, CompactParams(profile, cp.asarray(sp)))
        np.testing.assert_array_equal(cp.asnumpy(gnew.page_state), new.page_state)
        for f in dataclasses.fields(c):
            np.testing.assert_array_equal(cp.asnumpy(getattr(gc, f.name)), getattr(c, f.name))
