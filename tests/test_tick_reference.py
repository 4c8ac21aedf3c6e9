"""Sanity tests of the per-zone tick reference (tests/reference/tick.py) on its own.

Hand-worked buddy examples (TM 2.1, 2.2), fallback claiming/stealing in both profiles,
direct compaction, the pinned-page policy, kcompactd's reactive vs proactive_demand stop
rules, and the conservation invariants of docs/tick-model.md section 4 after whole runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels.program import (
    ANON,
    COUNTER_INDEX,
    COUNTERS,
    FILE,
    FREE,
    GFP_MOVABLE,
    GFP_NOWAIT,
    GFP_THP,
    HELD,
    KCOMPACTD_NONE,
    KCOMPACTD_PROACTIVE_DEMAND,
    KCOMPACTD_PROACTIVE_SCORE,
    KCOMPACTD_REACTIVE,
    PIN,
    RECL,
    SCALARS,
    UNMOV,
    Phase,
    Program,
    TickResult,
    TickZones,
)
from kernels.zone import KernelProfile
from tests.reference import tick as ref

U, M, R = 0, 1, 2
V4, V6 = KernelProfile.V4_12, KernelProfile.V6_19
PROFILES = (V4, V6)


def make_zone(kind: np.ndarray, block_mt: np.ndarray, profile: KernelProfile, **zone_kw):
    """A bare ZoneRef (boot free lists built) for driving single kernel functions."""
    zone_kw.setdefault("min_free_kbytes", 128)
    return ref.ZoneRef(
        np.asarray(kind, dtype=np.uint8),
        np.asarray(block_mt, dtype=np.int8),
        TickZones.create(1, **zone_kw),
        Program(phases=(Phase("none", 0),)),
        profile,
    )


def free_block(z: ref.ZoneRef, pfn: int, order: int) -> None:
    """Free an allocated block as one unit: kinds FREE, then __free_one_page()."""
    z.kind[pfn : pfn + (1 << order)] = bytes([FREE]) * (1 << order)
    ref.__free_one_page(z, pfn, order)


def counter(result: TickResult, name: str, phase: int = -1) -> int:
    return int(result.counters[0, phase, COUNTER_INDEX[name]])


def greedy_blocks(kind: np.ndarray) -> dict[int, int]:
    """{head: order} of the maximal naturally aligned FREE runs (TM 2 invariant)."""
    free = kind == FREE
    blocks, pfn, n = {}, 0, kind.shape[0]
    while pfn < n:
        if not free[pfn]:
            pfn += 1
            continue
        order = 10
        while order and (pfn % (1 << order) or not free[pfn : pfn + (1 << order)].all()):
            order -= 1
        blocks[pfn] = order
        pfn += 1 << order
    return blocks


def assert_conserved(result: TickResult, profile: KernelProfile) -> None:
    """The invariants of TM 4 on a finished run's TickResult."""
    kind = result.kind[0]
    n = kind.shape[0]
    assert result.kind.shape == (1, n) and result.buddy_order.shape == (1, n)
    assert np.isin(kind, [FREE, ANON, FILE, UNMOV, RECL, PIN, HELD]).all()  # no ISOFREE
    assert np.bincount(kind, minlength=8).sum() == n  # the kinds partition N
    buddy_order = result.buddy_order[0]
    heads = {int(p): int(buddy_order[p]) for p in np.flatnonzero(buddy_order >= 0)}
    assert heads == greedy_blocks(kind)
    assert sum(1 << o for o in heads.values()) == int((kind == FREE).sum())
    head_pfns = np.flatnonzero(buddy_order >= 0)
    keys = result.key[0, head_pfns]
    assert len(set(keys.tolist())) == len(keys) and (keys != 0).all()  # unique keys
    assert (np.abs(keys) <= result.scalars["clock"][0]).all()
    list_mt = result.list_mt[0, head_pfns]
    assert np.isin(list_mt, [U, M, R]).all()
    if profile == V6:
        assert (list_mt == result.block_mt[0, head_pfns >> 9]).all()
    # samples: buddyinfo and NR_FREE agree with each other
    orders = np.arange(11)
    assert (((result.buddyinfo[0] << orders).sum(axis=1)) == result.nr_free[0]).all()
    c = {name: result.counters[0, :, i] for i, name in enumerate(COUNTERS)}
    assert (np.diff(result.counters[0], axis=0) >= 0).all()  # cumulative
    assert (c["compact_stall"] == c["compact_success"] + c["compact_fail"]).all()
    assert (c["compact_daemon_migrate_scanned"] <= c["compact_migrate_scanned"]).all()
    assert (c["compact_daemon_free_scanned"] <= c["compact_free_scanned"]).all()
    assert (c["alloc_success"] <= c["alloc_attempts"]).all()
    assert int(result.attempts.sum()) == int(c["alloc_success"][-1])
    assert set(result.scalars) == set(SCALARS)


# ---------------------------------------------------------------------------------------
# Buddy: freeing and splitting (TM 2.1, 2.2)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_free_one_page_merges_and_keys(profile):
    z = make_zone(np.full(1024, ANON), [M, M], profile)
    assert z.clock == 0 and all(o == -1 for o in z.buddy_order)
    free_block(z, 8, 3)  # next-order buddy 0 not free: head, key +1
    assert (z.buddy_order[8], z.key[8]) == (3, 1)
    free_block(z, 1, 0)  # buddy 0 allocated; order-1 buddy 2 not free: head, +2
    assert (z.buddy_order[1], z.key[1]) == (0, 2)
    free_block(z, 2, 1)  # buddy 0 is not an order-1 head: head, +3
    assert (z.buddy_order[2], z.key[2]) == (1, 3)
    # pfn 0 merges with 1 (order 0) and 2 (order 1) into an order-2 block at 0, whose
    # order-3 buddy 8 is a free order-3 head: buddy_merge_likely, list_add_tail.
    free_block(z, 0, 0)
    assert (z.buddy_order[0], z.key[0], z.list_mt[0]) == (2, -4, M)
    assert z.buddy_order[1] == z.buddy_order[2] == -1
    assert z.clock == 4
    # 4..7 merges with 0 (order 2) and 8 (order 3): order 4 at 0, next buddy 16 busy: head.
    free_block(z, 4, 2)
    assert (z.buddy_order[0], z.key[0]) == (4, 5)
    assert z.buddy_order[8] == -1
    assert [p for p, o in enumerate(z.buddy_order) if o >= 0] == [0]
    assert ref.first(z, 4, M) == 0 and z.nr_free(4, M) == 1 and z.nr_free(3, M) == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_pageblock_merge_retypes_buddy_block_only_in_v6(profile):
    z = make_zone(np.full(1024, ANON), [M, U], profile)
    free_block(z, 512, 9)
    assert (z.buddy_order[512], z.list_mt[512]) == (9, U)
    free_block(z, 0, 9)  # mt = MOVABLE (block 0 at free time); merges to order 10
    assert (z.buddy_order[0], z.list_mt[0], z.buddy_order[512]) == (10, M, -1)
    assert z.block_mt == ([M, M] if profile == V6 else [M, U])


@pytest.mark.parametrize("profile", PROFILES)
def test_boot_free_lists_order(profile):
    kind = np.full(2048, ANON)
    kind[0:1024] = FREE  # one order-10 block
    kind[1024:1026] = FREE  # one order-1 block
    kind[1027] = FREE  # one order-0 block
    z = make_zone(kind, [M, M, U, U], profile)
    heads = {p: o for p, o in enumerate(z.buddy_order) if o >= 0}
    assert heads == {0: 10, 1024: 1, 1027: 0}
    assert z.clock == 3
    if profile == V6:  # FPI_TO_TAIL in ascending PFN order
        assert [z.key[p] for p in (0, 1024, 1027)] == [-1, -2, -3]
    else:  # head insertion in ascending PFN order
        assert [z.key[p] for p in (0, 1024, 1027)] == [1, 2, 3]
    assert [z.list_mt[p] for p in (0, 1024, 1027)] == [M, U, U]


@pytest.mark.parametrize("profile", PROFILES)
def test_expand_takes_the_low_part(profile):
    kind = np.full(1024, ANON)
    kind[8:16] = FREE  # one order-3 block
    z = make_zone(kind, [M, M], profile)
    assert ref.__rmqueue_smallest(z, 0, M) == 8
    # expand(): the upper halves, largest first, at the list heads
    assert {p: z.buddy_order[p] for p in (12, 10, 9)} == {12: 2, 10: 1, 9: 0}
    assert (z.key[12], z.key[10], z.key[9]) == (2, 3, 4)  # clock was 1 after boot
    # allocations walk upwards inside the split block
    assert ref.__rmqueue_smallest(z, 0, M) == 9
    assert ref.__rmqueue_smallest(z, 0, M) == 10
    assert z.buddy_order[11] == 0 and z.key[11] == 5
    assert ref.__rmqueue_smallest(z, 1, M) == 12
    assert z.buddy_order[14] == 1
    assert ref.__rmqueue_smallest(z, 0, U) is None


def test_first_is_largest_key_lifo():
    kind = np.full(1024, ANON)
    z = make_zone(kind, [M, M], V6)
    for pfn in (100, 300, 200):  # isolated order-0 frees, all list_add (head)
        free_block(z, pfn, 0)
    assert ref.first(z, 0, M) == 200
    ref.del_page_from_free_list(z, 200)
    assert ref.first(z, 0, M) == 300


# ---------------------------------------------------------------------------------------
# Fallbacks (TM 2.2, KM 2.4)
# ---------------------------------------------------------------------------------------


def _two_block_zone(nr_free: int) -> np.ndarray:
    """Block 0 all ANON; block 1: the first nr_free pages FREE, the rest ANON."""
    kind = np.full(1024, ANON)
    kind[512 : 512 + nr_free] = FREE
    return kind


def test_v6_claim_unmovable_takes_a_mostly_free_movable_block():
    # block 1: 400 free pages = order 8 at 512, order 7 at 768, order 4 at 896
    z = make_zone(_two_block_zone(400), [M, M], V6)
    assert {p: z.buddy_order[p] for p in (512, 768, 896)} == {512: 8, 768: 7, 896: 4}
    clock = z.clock
    page = ref.rmqueue(z, 0, U)
    # claimed (400 free >= 256): every free head of the block moved to the U lists at the
    # tail in ascending PFN, the block retyped, then __rmqueue_smallest(0, U): the order-4
    # block is split from its low end.
    assert page == 896
    assert z.block_mt == [M, U]
    assert (z.key[512], z.key[768]) == (-(clock + 1), -(clock + 2))
    heads = [p for p, o in enumerate(z.buddy_order) if o >= 0]
    assert all(z.list_mt[p] == U for p in heads)
    assert {p: z.buddy_order[p] for p in (897, 898, 900, 904)} == {897: 0, 898: 1, 900: 2, 904: 3}


def test_v6_unclaimable_block_is_stolen_from_without_retyping():
    # 100 free pages: order 6 at 512, order 5 at 576, order 2 at 608
    z = make_zone(_two_block_zone(100), [M, M], V6)
    page = ref.rmqueue(z, 0, U)
    # claim fails at every order (100 + 0 alike < 256): __rmqueue_steal, smallest first
    assert page == 608
    assert z.block_mt == [M, M]
    assert z.list_mt[609] == M and z.buddy_order[609] == 0 and z.buddy_order[610] == 1
    assert all(z.list_mt[p] == M for p, o in enumerate(z.buddy_order) if o >= 0)


def test_v4_steal_moves_free_pages_but_keeps_block_type_below_half():
    z = make_zone(_two_block_zone(100), [M, M], V4)
    clock = z.clock
    page = ref.rmqueue(z, 0, U)
    # __rmqueue_fallback: largest first (order 6 at 512), can_steal for UNMOVABLE: every
    # free head moved to the U lists at the head; 100 free + 0 alike < 256: block kept M.
    assert z.block_mt == [M, M]
    assert page == 608  # retried __rmqueue_smallest(0, U): the order-2 block, low end
    assert (z.list_mt[512], z.key[512]) == (U, clock + 1)
    assert (z.list_mt[576], z.key[576]) == (U, clock + 2)
    assert z.list_mt[609] == U  # the lists disagree with the block type in 4.12


def test_v4_steal_retypes_block_at_half():
    z = make_zone(_two_block_zone(300), [M, M], V4)
    ref.rmqueue(z, 0, U)
    assert z.block_mt == [M, U]


def test_v4_movable_small_order_moves_a_single_page():
    kind = np.full(1024, ANON)
    kind[512:516] = FREE  # one order-2 block in an UNMOVABLE block
    z = make_zone(kind, [M, U], V4)
    page = ref.rmqueue(z, 0, M)  # can_steal false for MOVABLE order 2: single_page
    assert page == 512 and z.block_mt == [M, U]
    assert z.list_mt[514] == M and z.list_mt[513] == M  # expand() on the MOVABLE list


# ---------------------------------------------------------------------------------------
# Compaction
# ---------------------------------------------------------------------------------------


def _holepunch(nr_blocks: int, occupied: int) -> np.ndarray:
    kind = np.full(nr_blocks * 512, FREE, dtype=np.uint8)
    kind[0::2] = occupied
    return kind


def _one_attempt(gfp: int, **phase_kw) -> Program:
    return Program(phases=(Phase("attempt", 1, attempt_every=1, attempt_gfp=gfp, **phase_kw),))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("gfp", [GFP_MOVABLE, GFP_THP])
def test_direct_compaction_gets_an_order4_page(profile, gfp):
    kind = _holepunch(8, ANON)  # every other page free: nothing above order 0
    zones = TickZones.create(1, attempt_order=4, min_free_kbytes=128, kcompactd=KCOMPACTD_NONE)
    result = ref.run_program_ref(kind, np.ones(8, np.int8), zones, _one_attempt(gfp), profile)
    assert result.attempts.tolist() == [[1]]
    assert counter(result, "compact_stall") == counter(result, "compact_success") == 1
    assert counter(result, "compact_fail") == 0
    assert counter(result, "pgmigrate_success") == 256  # block 0 emptied into the top
    assert counter(result, "pgmigrate_fail") == 0
    assert counter(result, "compact_isolated") == 512  # 256 sources + 256 free targets
    assert counter(result, "compact_migrate_scanned") == 512  # 256 pages + 256 heads
    assert counter(result, "compact_free_scanned") > 0
    assert result.skip[0, 0] == (profile == V6)  # 4.12: block 0 isolated pages: no skip
    assert_conserved(result, profile)
    # block 0 was emptied and freed back: order 9 there, targets filled in block 7
    kind_after = result.kind[0]
    assert (kind_after[:512] == FREE).all()
    assert (kind_after[7 * 512 :] == ANON).all()


def test_direct_compaction_without_fragmentation_is_not_needed():
    kind = np.full(4096, ANON, dtype=np.uint8)
    kind[2048:2560] = FREE
    zones = TickZones.create(1, attempt_order=4, min_free_kbytes=128)
    result = ref.run_program_ref(kind, np.ones(8, np.int8), zones, _one_attempt(GFP_MOVABLE), V6)
    assert result.attempts.tolist() == [[1]]
    assert counter(result, "compact_stall") == 0  # fast path


def _pinned_zone() -> np.ndarray:
    """Blocks 0-3: per 64 pages, 32 PIN/FREE then 32 ANON/FREE; blocks 4-7 ANON/FREE."""
    kind = _holepunch(8, ANON)
    pfn = np.arange(kind.shape[0])
    kind[(pfn < 2048) & (pfn % 64 < 32) & (pfn % 2 == 0)] = PIN
    return kind


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("gfp", [GFP_MOVABLE, GFP_THP])
def test_skip_pinned(profile, gfp):
    results = {}
    for skip_pinned in (True, False):
        zones = TickZones.create(
            1, attempt_order=4, min_free_kbytes=128, skip_pinned=skip_pinned, kcompactd=0
        )
        results[skip_pinned] = ref.run_program_ref(
            _pinned_zone(), np.ones(8, np.int8), zones, _one_attempt(gfp), profile
        )
        assert_conserved(results[skip_pinned], profile)
    skipped, isolated = results[True], results[False]
    assert counter(skipped, "pgmigrate_fail") == 0
    assert counter(isolated, "pgmigrate_fail") > 0
    assert counter(isolated, "lru_lock_acquisitions") > counter(skipped, "lru_lock_acquisitions")
    assert counter(isolated, "compact_isolated") > counter(skipped, "compact_isolated")
    # both get the page: the ANON halves of block 0 empty into order-5 blocks
    assert skipped.attempts.tolist() == isolated.attempts.tolist() == [[1]]


def _kcompactd_zone() -> np.ndarray:
    """Holepunch-like: odd PFNs FREE; even PFNs ANON in blocks 0-3 and FILE in 4-7.

    An UNMOV page at offset 8 of every 16-page chunk, except the first chunk of each of
    blocks 0-3: reclaiming FILE pages (the CLOCK hand frees consecutive FILE pages) then
    never forms an order-4 block by itself, and a compacted source block gives exactly
    one free order-4 block, so the two stop rules differ.
    """
    kind = np.full(4096, FREE, dtype=np.uint8)
    pfn = np.arange(4096)
    low = pfn < 2048
    kind[(pfn % 2 == 0) & low] = ANON
    kind[(pfn % 2 == 0) & ~low] = FILE
    kind[(pfn % 16 == 8) & ~(low & (pfn % 512 < 16))] = UNMOV
    return kind


@pytest.mark.parametrize("profile", PROFILES)
def test_kcompactd_proactive_demand_makes_more_blocks_than_reactive(profile):
    # kswapd reclaims one cluster per tick, so two nowait attempts fail (demand[4] = 2)
    # before kswapd goes to sleep and wakes kcompactd.
    program = Program(
        phases=(Phase("nowait", 12, attempt_every=1, attempt_gfp=GFP_NOWAIT),), kswapd_rounds=1
    )
    results = {}
    for mode in (KCOMPACTD_REACTIVE, KCOMPACTD_PROACTIVE_DEMAND):
        zones = TickZones.create(1, attempt_order=4, min_free_kbytes=128, kcompactd=mode)
        results[mode] = ref.run_program_ref(
            _kcompactd_zone(), np.ones(8, np.int8), zones, program, profile, check_invariants=True
        )
        assert_conserved(results[mode], profile)
        assert counter(results[mode], "compact_daemon_wake") == 1
        assert counter(results[mode], "kswapd_wake") == 1
        assert counter(results[mode], "compact_stall") == 0  # nowait: no direct compaction
    high_order_blocks = {m: r.buddyinfo[0, :, 4:].sum(axis=1) for m, r in results.items()}
    reactive, demand = (
        high_order_blocks[KCOMPACTD_REACTIVE],
        high_order_blocks[KCOMPACTD_PROACTIVE_DEMAND],
    )
    assert reactive[0] == demand[0] == 0  # nothing before kcompactd ran (end of tick 1)
    assert reactive[1:].tolist() == [1] * 11
    assert demand[1:].tolist() == [2] * 11
    assert counter(results[KCOMPACTD_PROACTIVE_DEMAND], "pgmigrate_success") == 2 * counter(
        results[KCOMPACTD_REACTIVE], "pgmigrate_success"
    )
    for r in results.values():
        assert r.attempts.tolist() == [[0, 0] + [1] * 10]


def test_kcompactd_none_never_runs():
    program = Program(
        phases=(Phase("nowait", 6, attempt_every=1, attempt_gfp=GFP_NOWAIT),), kswapd_rounds=1
    )
    zones = TickZones.create(1, attempt_order=4, min_free_kbytes=128, kcompactd=KCOMPACTD_NONE)
    result = ref.run_program_ref(_kcompactd_zone(), np.ones(8, np.int8), zones, program, V6)
    assert counter(result, "compact_daemon_wake") == 0
    assert result.attempts.sum() == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_proactive_score_compacts_until_below_the_low_wmark(profile):
    # extfrag at order 9 of a holepunch zone is 100 > high (90 at proactiveness 20): the
    # timer (period 5 ticks at 100 ms) runs a whole-zone order -1 compaction at tick 4,
    # which stops at the first block boundary with score <= 80 (one order-9 block: 75).
    program = Program(phases=(Phase("idle", 12),), tick_ms=100.0)
    zones = TickZones.create(1, kcompactd=KCOMPACTD_PROACTIVE_SCORE, proactiveness=20)
    result = ref.run_program_ref(_holepunch(8, ANON), np.ones(8, np.int8), zones, program, profile)
    assert counter(result, "compact_daemon_wake") == 0
    assert counter(result, "compact_daemon_migrate_scanned") == 512
    assert counter(result, "compact_migrate_scanned") == 512
    assert counter(result, "pgmigrate_success") == 256
    big = result.buddyinfo[0, :, 9:].sum(axis=1)
    assert big.tolist() == [0] * 4 + [1] * 8
    assert_conserved(result, profile)


def test_deferral_sequence():
    z = make_zone(np.full(1024, ANON), [M, M], V6)
    skipped = []
    for _ in range(3):
        ref.defer_compaction(z, 4)
    assert (z.compact_defer_shift, z.compact_order_failed) == (3, 4)
    for _ in range(10):
        skipped.append(ref.compaction_deferred(z, 4))
    assert skipped == [True] * 7 + [False] * 3  # 2^3 - 1 skips, then runs
    assert not ref.compaction_deferred(z, 3)  # below compact_order_failed
    ref.compaction_defer_reset(z, 4, True)
    assert (z.compact_considered, z.compact_defer_shift, z.compact_order_failed) == (0, 0, 5)


# ---------------------------------------------------------------------------------------
# Whole runs: conservation
# ---------------------------------------------------------------------------------------


def _random_zone(seed: int, nr_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = nr_blocks * 512
    kind = rng.choice(
        [FREE, ANON, FILE, UNMOV, RECL, PIN], size=n, p=[0.35, 0.3, 0.32, 0.01, 0.01, 0.01]
    ).astype(np.uint8)
    # some fully free and fully movable stretches
    kind[512 : 512 + 700] = FREE
    block_mt = rng.choice([U, M, R], size=nr_blocks, p=[0.15, 0.75, 0.1]).astype(np.int8)
    block_mt[1] = M
    return kind, block_mt


def _mixed_program() -> Program:
    """Pressure below the watermarks, every GFP class, keep, kills and a 0-tick phase."""
    return Program(
        phases=(
            Phase(
                "warm",
                80,
                frees_per_tick=30,
                allocs_per_tick=60,
                alloc_weights=(0.35, 0.45, 0.12, 0.08),
                attempt_every=4,
                attempt_gfp=GFP_MOVABLE,
                keep=True,
            ),
            Phase(
                "thp",
                60,
                frees_per_tick=50,
                allocs_per_tick=50,
                alloc_weights=(0.5, 0.5, 0.0, 0.0),
                free_kinds=(ANON, FILE, PIN),
                attempt_every=3,
                attempt_gfp=GFP_THP,
                attempt_mt=U,
            ),
            Phase("empty", 0, kill_anon=True),
            Phase(
                "nowait",
                60,
                frees_per_tick=20,
                allocs_per_tick=30,
                attempt_every=2,
                attempt_gfp=GFP_NOWAIT,
                keep=True,
                kill_anon=True,
                drop_caches=True,
                min_free_kbytes=1024,
            ),
        ),
        tick_ms=100.0,
        sample_every=7,
        kswapd_rounds=4,
    )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "mode",
    [KCOMPACTD_REACTIVE, KCOMPACTD_PROACTIVE_DEMAND, KCOMPACTD_PROACTIVE_SCORE],
)
def test_conservation_after_a_mixed_run(profile, mode):
    kind, block_mt = _random_zone(11 + mode, 16)
    program = _mixed_program()
    zones = TickZones.create(
        1,
        seed=np.uint64(1234 + mode),
        attempt_order=5,
        kcompactd=mode,
        skip_pinned=mode != KCOMPACTD_PROACTIVE_DEMAND,
        stop_below_watermark=mode == KCOMPACTD_PROACTIVE_DEMAND,
        proactiveness=60,
        min_free_kbytes=2048,
    )
    result = ref.run_program_ref(kind, block_mt, zones, program, profile, check_invariants=True)
    assert_conserved(result, profile)
    assert result.counters.shape == (1, 4, len(COUNTERS))
    assert result.buddyinfo.shape == (1, program.n_samples, 11)
    assert result.nr_free.shape == (1, program.n_samples)
    assert result.attempts.shape == (1, program.n_attempts)
    assert result.block_mt.shape == result.skip.shape == (1, 16)
    assert result.scalars["wmark_min"][0] == 1024 >> 2  # the last phase's min_free_kbytes
    assert counter(result, "alloc_attempts") == program.n_attempts
    assert counter(result, "alloc_background") > 0
    assert counter(result, "kswapd_wake") > 0 and counter(result, "pgsteal_kswapd") > 0
    assert counter(result, "compact_migrate_scanned") > 0
    # the empty phase changes nothing
    assert (result.counters[0, 2] == result.counters[0, 1]).all()
    # held blocks were freed at phase end
    assert not (result.kind[0] == HELD).any()


def test_run_is_deterministic_and_seed_dependent():
    kind, block_mt = _random_zone(5, 4)
    program = Program(
        phases=(Phase("p", 30, frees_per_tick=25, allocs_per_tick=25, attempt_every=3),)
    )
    runs = [
        ref.run_program_ref(kind, block_mt, TickZones.create(1, seed=s), program, V6)
        for s in (np.uint64(3), np.uint64(3), np.uint64(4))
    ]
    for name in ("kind", "buddy_order", "key", "list_mt", "counters", "buddyinfo", "attempts"):
        assert np.array_equal(getattr(runs[0], name), getattr(runs[1], name))
    assert not np.array_equal(runs[0].kind, runs[2].kind)


def test_rejects_bad_inputs():
    kind = np.zeros(1536, np.uint8)
    with pytest.raises(ValueError):
        ref.run_program_ref(kind, np.ones(3, np.int8), TickZones.create(1), _one_attempt(0), V6)
    kind = np.zeros(1024, np.uint8)
    with pytest.raises(ValueError):
        ref.run_program_ref(kind, np.ones(2, np.int8), TickZones.create(2), _one_attempt(0), V6)
    bad_free = Program(phases=(Phase("p", 1, frees_per_tick=1, free_kinds=(FREE, ANON)),))
    with pytest.raises(ValueError):
        ref.run_program_ref(kind, np.ones(2, np.int8), TickZones.create(1), bad_free, V6)


def test_profile_by_name_as_the_engine_takes_it():
    """run_program_ref accepts "v4_12" / "v6_19" like kernels.tick.run_program."""
    kind = np.zeros((1, 4096), dtype=np.uint8)
    bmt = np.ones((1, 8), dtype=np.int8)
    zones = TickZones.create(1, seed=np.array([3], dtype=np.uint64), attempt_order=4)
    prog = Program(phases=(Phase("p", 3, allocs_per_tick=40, frees_per_tick=20, attempt_every=1),))
    for name, profile in (("v4_12", KernelProfile.V4_12), ("v6_19", KernelProfile.V6_19)):
        a = ref.run_program_ref(kind[0], bmt[0], zones[0], prog, name)
        b = ref.run_program_ref(kind[0], bmt[0], zones[0], prog, profile)
        assert np.array_equal(a.kind, b.kind) and np.array_equal(a.counters, b.counters)
