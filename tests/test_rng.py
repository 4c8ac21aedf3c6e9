"""kernels.rng: counter-based hashing, exact-count random choice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import rng
from kernels.backend import gpu_available

U64 = np.uint64


def test_mix64_is_splitmix64():
    # splitmix64 seeded with 0: first outputs (Vigna's reference implementation).
    state = np.array([1, 2, 3], dtype=np.uint64) * rng.GOLDEN_GAMMA
    assert [hex(int(v)) for v in rng.mix64(state)] == [
        "0xe220a8397b1dcdaf",
        "0x6e789e6aa1b965f4",
        "0x6c45d188009454f",  # 0x06c45d188009454f
    ]
    assert int(rng.mix64(np.uint64(rng.GOLDEN_GAMMA))) == 0xE220A8397B1DCDAF


def test_hash_is_deterministic_and_pinned():
    seeds = np.array([0, 1, 2**64 - 1], dtype=np.uint64)
    a = rng.hash_u64(np, seeds[:, None], 3, 7, np.arange(5, dtype=np.uint64))
    b = rng.hash_u64(np, seeds[:, None], 3, 7, np.arange(5, dtype=np.uint64))
    assert a.dtype == np.uint64 and a.shape == (3, 5)
    assert np.array_equal(a, b)
    assert rng.hash_u64(np, 0, 0, 0, 0).shape == ()
    assert len({int(v) for v in a.ravel()}) == a.size


def test_hash_pinned_values():
    # A change here changes every seeded experiment: do it on purpose or not at all.
    got = [int(rng.hash_u64(np, 12345, 0, 2, i)) for i in range(3)]
    assert got == [767155851889313644, 7287941381074141698, 2205880463682934410]


def test_hash_inputs_separate_streams():
    base = rng.hash_u64(np, 1, 0, 0, np.arange(1000, dtype=np.uint64))
    for other in (
        rng.hash_u64(np, 2, 0, 0, np.arange(1000, dtype=np.uint64)),
        rng.hash_u64(np, 1, 1, 0, np.arange(1000, dtype=np.uint64)),
        rng.hash_u64(np, 1, 0, 1, np.arange(1000, dtype=np.uint64)),
    ):
        assert not np.intersect1d(base, other).size


def test_hash_broadcast_matches_scalar_calls():
    seeds = np.array([5, 9], dtype=np.uint64)
    keys = rng.random_keys(np, seeds, 4, 6)
    for z in range(2):
        for i in range(6):
            assert keys[z, i] == rng.hash_u64(np, int(seeds[z]), 0, 4, i)


def test_hash_accepts_signed_and_no_warnings():
    # int64 zone ids and negative values wrap; no overflow warnings (filterwarnings=error).
    out = rng.hash_u64(np, np.array([-1, 2**62]), np.arange(2), 0, 0)
    assert out.dtype == np.uint64 and out.shape == (2,)


def test_uniform01_range_and_resolution():
    u = rng.uniform01(np, 7, 0, 0, np.arange(200_000, dtype=np.uint64))
    assert u.dtype == np.float64
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.array_equal(u * 2.0**53, np.floor(u * 2.0**53))  # 53-bit grid


def test_uniform01_is_roughly_uniform():
    n, bins = 200_000, 100
    u = rng.uniform01(np, 2024, 3, 1, np.arange(n, dtype=np.uint64))
    observed = np.bincount((u * bins).astype(np.int64), minlength=bins)
    expected = n / bins
    chi2 = ((observed - expected) ** 2 / expected).sum()
    # 99 degrees of freedom: mean 99, sd 14; a broken generator lands far above 180.
    assert chi2 < 180, chi2
    bits = rng.hash_u64(np, 11, 0, 0, np.arange(n, dtype=np.uint64))
    ones = np.array([((bits >> U64(b)) & U64(1)).sum() for b in range(64)])
    assert np.abs(ones - n / 2).max() < 5 * np.sqrt(n / 4)


def test_zone_seed_distinct_and_reproducible():
    s = rng.zone_seed(42, np.arange(1000))
    assert s.dtype == np.uint64 and s.shape == (1000,)
    assert len(np.unique(s)) == 1000
    assert np.array_equal(s, rng.zone_seed(42, list(range(1000))))
    assert not np.array_equal(s, rng.zone_seed(43, np.arange(1000)))
    assert rng.zone_seed(2**64 + 42, np.arange(3)).tolist() == s[:3].tolist()


def test_random_keys_per_zone_independent_of_batch():
    seeds = rng.zone_seed(1, np.arange(5))
    keys = rng.random_keys(np, seeds, 3, 100)
    for z in range(5):
        assert np.array_equal(keys[z], rng.random_keys(np, seeds[z : z + 1], 3, 100)[0])


@given(
    nr_zones=st.integers(1, 5),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**64 - 1),
    data=st.data(),
)
def test_choose_exact_counts(nr_zones, n, seed, data):
    m = np.array(data.draw(st.lists(st.integers(0, n + 3), min_size=nr_zones, max_size=nr_zones)))
    seeds = rng.zone_seed(seed, np.arange(nr_zones))
    mask = rng.choose_exact(np, rng.random_keys(np, seeds, 0, n), m)
    assert mask.dtype == bool and mask.shape == (nr_zones, n)
    assert mask.sum(axis=1).tolist() == np.minimum(m, n).tolist()


def test_choose_exact_is_the_m_smallest_keys():
    keys = rng.random_keys(np, np.array([3, 4], dtype=np.uint64), 9, 50)
    mask = rng.choose_exact(np, keys, np.array([10, 0]))
    assert set(np.flatnonzero(mask[0])) == set(np.argsort(keys[0])[:10])
    assert not mask[1].any()


def test_choose_exact_positions_are_uniform():
    nr_zones, n, m = 4000, 40, 10
    keys = rng.random_keys(np, rng.zone_seed(5, np.arange(nr_zones)), 0, n)
    freq = rng.choose_exact(np, keys, np.full(nr_zones, m)).mean(axis=0)
    # each position is chosen with probability 1/4; sd of the mean ~0.007
    assert np.abs(freq - m / n).max() < 0.035


def test_keyed_order_groups_and_permutation():
    keys = rng.random_keys(np, np.array([1, 2], dtype=np.uint64), 0, 64)
    group = (np.arange(64)[None, :] % 3).repeat(2, axis=0).astype(np.uint8)
    order = rng.keyed_order(np, keys, group=group, group_bits=2)
    assert order.dtype == np.int64
    for z in range(2):
        assert sorted(order[z].tolist()) == list(range(64))
        g = group[z, order[z]]
        assert (np.diff(g) >= 0).all()  # groups contiguous, in group order
        within = [i for i in order[z] if group[z, i] == 1]
        assert within == sorted(within, key=lambda i: (keys[z, i] >> np.uint64(64 - 2 - 6), i))
    # The input keys are not modified.
    assert np.array_equal(keys, rng.random_keys(np, np.array([1, 2], dtype=np.uint64), 0, 64))


def test_random_words_equal_sort_words_of_random_keys():
    seeds = rng.zone_seed(9, np.arange(3))
    group = (np.arange(1000) % 2 == 0)[None, :].repeat(3, axis=0)
    expected = rng.sort_words(np, rng.random_keys(np, seeds, 6, 1000), group, 1)
    assert np.array_equal(rng.random_words(np, seeds, 6, 1000, group, 1), expected)
    assert np.array_equal(
        rng.random_words(np, seeds, 6, 1000),
        rng.sort_words(np, rng.random_keys(np, seeds, 6, 1000)),
    )
    assert len(np.unique(expected[0])) == 1000


@given(
    nr_zones=st.integers(1, 4),
    seed=st.integers(0, 2**64 - 1),
    data=st.data(),
)
def test_random_runs_exact_counts_and_groups(nr_zones, seed, data):
    nr_runs = data.draw(st.integers(1, 6))
    lengths = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(0, 40), min_size=nr_runs, max_size=nr_runs),
                min_size=nr_zones,
                max_size=nr_zones,
            )
        ),
        dtype=np.int64,
    )
    n = int(lengths[0].sum())
    lengths[1:, -1] += n - lengths[1:].sum(axis=1)  # every row sums to n
    if (lengths < 0).any() or n == 0:
        return
    seeds = rng.zone_seed(seed, np.arange(nr_zones))
    run = rng.random_runs(np, seeds, 1, lengths)
    assert run.dtype == np.uint8 and run.shape == (nr_zones, n)
    for z in range(nr_zones):
        assert np.bincount(run[z], minlength=nr_runs).tolist() == lengths[z].tolist()
    # With a group, runs cut at the group size stay inside the group.
    group = np.zeros((nr_zones, n), dtype=np.uint8)
    group[:, ::3] = 1
    nr_group0 = (group == 0).sum(axis=1)
    run = rng.random_runs(np, seeds, 1, np.stack([nr_group0, n - nr_group0], axis=1), group, 1)
    assert np.array_equal(run, group)


def test_runs_from_words_matches_order():
    seeds = rng.zone_seed(4, np.arange(2))
    words = rng.random_words(np, seeds, 0, 100)
    order = rng.order_from_words(words)
    run = rng.runs_from_words(words, np.array([[10, 0, 90], [0, 100, 0]]))
    assert set(order[0, :10]) == set(np.flatnonzero(run[0] == 0))
    assert (run[1] == 1).all()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_bits_match_numpy():
    cp = pytest.importorskip("cupy")
    seeds = rng.zone_seed(3, np.arange(7))
    for xp_keys in (rng.random_keys(cp, cp.asarray(seeds), 5, 10_000),):
        assert np.array_equal(xp_keys.get(), rng.random_keys(np, seeds, 5, 10_000))
    u_gpu = rng.uniform01(cp, cp.asarray(seeds)[:, None], 1, 2, cp.arange(1000, dtype=cp.uint64))
    assert np.array_equal(
        u_gpu.get(), rng.uniform01(np, seeds[:, None], 1, 2, np.arange(1000, dtype=np.uint64))
    )
    m = np.arange(7) * 100
    mask_gpu = rng.choose_exact(cp, rng.random_keys(cp, cp.asarray(seeds), 0, 5000), cp.asarray(m))
    assert np.array_equal(
        mask_gpu.get(), rng.choose_exact(np, rng.random_keys(np, seeds, 0, 5000), m)
    )
