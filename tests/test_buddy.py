"""kernels.buddy against the per-zone reference (tests/reference/buddy.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import buddy
from kernels.backend import gpu_available
from kernels.zone import (
    FREE,
    MAX_FOLIO_ORDER,
    NR_MIGRATETYPES,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    folio_head_code,
    folio_tail_code,
)
from tests.reference import buddy as ref


def random_codes(rng: np.random.Generator, nr_pages: int) -> np.ndarray:
    """One zone's page states: free runs at a random granularity, all kinds, folios."""
    chunk = 1 << int(rng.integers(0, 12))  # granularity of the free runs, 1..2048 pages
    nr_chunks = -(-nr_pages // chunk)
    free = np.repeat(rng.random(nr_chunks) < rng.uniform(0, 1), chunk)[:nr_pages]
    free ^= rng.random(nr_pages) < rng.choice([0.0, 0.001, 0.05, 0.3])  # sprinkle holes / pages
    codes = np.where(free, FREE, rng.integers(1, PINNED + 1, nr_pages)).astype(np.uint8)
    orders = rng.choice(
        np.arange(1, MAX_FOLIO_ORDER + 1), size=int(rng.integers(0, 4)), replace=False
    )
    for k in sorted(orders, reverse=True):
        slots = codes.reshape(-1, 1 << k)
        pick = (rng.random(slots.shape[0]) < rng.uniform(0, 0.3)) & ~(slots >= 8).any(axis=1)
        slots[pick] = folio_tail_code(k)
        slots[pick, 0] = folio_head_code(k)
    return codes


@st.composite
def zone_batches(draw, max_zones: int = 8, max_blocks: int = 16):
    nr_zones = draw(st.integers(1, max_zones))
    nr_blocks = draw(st.integers(1, max_blocks))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nr_pages = nr_blocks * PAGEBLOCK_NR_PAGES
    page_state = np.stack([random_codes(rng, nr_pages) for _ in range(nr_zones)])
    if draw(st.booleans()):  # edge cases: an all-free or a full zone in the batch
        page_state[draw(st.integers(0, nr_zones - 1))] = draw(st.sampled_from([FREE, 1, 17]))
    pageblock_mt = rng.integers(0, NR_MIGRATETYPES, (nr_zones, nr_blocks)).astype(np.int8)
    return page_state, pageblock_mt


@given(zone_batches())
@settings(max_examples=150)
def test_batched_buddy_matches_reference(batch):
    page_state, pageblock_mt = batch
    counts = buddy.buddyinfo(page_state)
    per_type = buddy.pagetypeinfo(page_state, pageblock_mt)
    nr_free = buddy.nr_free_pages(page_state)
    assert counts.dtype == np.int64 and counts.shape == (page_state.shape[0], 11)
    assert per_type.dtype == np.int64 and per_type.shape == (page_state.shape[0], 6, 11)
    for z in range(page_state.shape[0]):
        codes = page_state[z].tolist()
        assert counts[z].tolist() == ref.buddyinfo(codes)
        assert per_type[z].tolist() == ref.pagetypeinfo(codes, pageblock_mt[z].tolist())
        assert int(nr_free[z]) == ref.nr_free_pages(codes)


@given(zone_batches(max_zones=4, max_blocks=8))
@settings(max_examples=25)
def test_free_block_heads_match_reference(batch):
    page_state, _ = batch
    heads = buddy.free_block_heads(page_state)
    assert heads.dtype == np.int8
    for z in range(page_state.shape[0]):
        assert heads[z].tolist() == ref.free_block_heads(page_state[z].tolist())


@given(zone_batches())
@settings(max_examples=30)
def test_batch_invariance_and_conservation(batch):
    page_state, pageblock_mt = batch
    counts = buddy.buddyinfo(page_state)
    per_type = buddy.pagetypeinfo(page_state, pageblock_mt)
    for z in range(page_state.shape[0]):
        assert np.array_equal(counts[z], buddy.buddyinfo(page_state[z : z + 1])[0])
        assert np.array_equal(
            per_type[z], buddy.pagetypeinfo(page_state[z : z + 1], pageblock_mt[z : z + 1])[0]
        )
    orders = np.arange(11)
    assert np.array_equal((counts << orders).sum(axis=1), (page_state == FREE).sum(axis=1))
    assert np.array_equal(per_type.sum(axis=1), counts)  # every free block is on one list


@given(zone_batches(max_zones=3))
@settings(max_examples=30)
def test_reference_blocks_are_maximal(batch):
    """No two free buddies of the same order (eager merging) and every free page covered."""
    page_state, _ = batch
    for codes in page_state.tolist():
        blocks = ref.free_blocks(codes)
        heads = set(blocks)
        covered = set()
        for pfn, order in blocks:
            assert pfn % (1 << order) == 0
            assert all(codes[p] == FREE for p in range(pfn, pfn + (1 << order)))
            covered.update(range(pfn, pfn + (1 << order)))
            if order < ref.MAX_PAGE_ORDER:
                assert (pfn ^ (1 << order), order) not in heads
        assert covered == {p for p, c in enumerate(codes) if c == FREE}


def test_order10_needs_whole_slot_inside_zone():
    # 3 pageblocks, all free: one order-10 block and one order-9 block (no room to merge).
    page_state = np.zeros((1, 3 * PAGEBLOCK_NR_PAGES), dtype=np.uint8)
    expected = [0] * 9 + [1, 1]
    assert (
        buddy.buddyinfo(page_state)[0].tolist() == expected == ref.buddyinfo(page_state[0].tolist())
    )
    mt = np.array([[2, 1, 0]], dtype=np.int8)
    per_type = buddy.pagetypeinfo(page_state, mt)[0]
    assert per_type[2, 10] == 1 and per_type[0, 9] == 1 and per_type.sum() == 2


def test_single_free_page_and_full_zone():
    page_state = np.ones((2, PAGEBLOCK_NR_PAGES), dtype=np.uint8)
    page_state[0, 5] = FREE
    counts = buddy.buddyinfo(page_state)
    assert counts[0].tolist() == [1] + [0] * 10
    assert counts[1].tolist() == [0] * 11
    assert buddy.nr_free_pages(page_state).tolist() == [1, 0]


def test_inputs_not_modified():
    rng = np.random.default_rng(1)
    page_state = np.stack([random_codes(rng, 4 * PAGEBLOCK_NR_PAGES) for _ in range(2)])
    mt = rng.integers(0, 6, (2, 4)).astype(np.int8)
    before = page_state.copy(), mt.copy()
    buddy.buddyinfo(page_state)
    buddy.pagetypeinfo(page_state, mt)
    buddy.free_block_heads(page_state)
    assert np.array_equal(page_state, before[0]) and np.array_equal(mt, before[1])


def test_swar_popcount_path_gives_same_buddyinfo(monkeypatch):
    """Backends without bitwise_count (older CuPy) take the SWAR popcount of kernels.bits."""
    page_state = np.stack(
        [random_codes(np.random.default_rng(s), 8 * PAGEBLOCK_NR_PAGES) for s in range(4)]
    )
    mt = np.random.default_rng(0).integers(0, 6, (4, 8)).astype(np.int8)
    expected = buddy.buddyinfo(page_state), buddy.pagetypeinfo(page_state, mt)
    monkeypatch.delattr(np, "bitwise_count")
    assert np.array_equal(buddy.buddyinfo(page_state), expected[0])
    assert np.array_equal(buddy.pagetypeinfo(page_state, mt), expected[1])


def test_free_bitmap_words_layout():
    page_state = np.ones((2, PAGEBLOCK_NR_PAGES), dtype=np.uint8)
    page_state[1, [0, 63, 64, 511]] = FREE
    words = buddy.free_bitmap_words(page_state)
    assert words.shape == (2, 8) and words.dtype == np.uint64
    assert not words[0].any()
    assert words[1].tolist() == [1 | (1 << 63), 1, 0, 0, 0, 0, 0, 1 << 63]


def test_format_buddyinfo_matches_frag_show_print():
    line = buddy.format_buddyinfo([1, 1, 1, 0, 2, 1, 1, 0, 1, 1, 3], node=0, zone_name="DMA")
    expected = "Node 0, zone      DMA" + "      1" * 3 + "      0      2      1      1      0"
    assert line == expected + "      1      1      3 \n"
    line = buddy.format_buddyinfo(np.array([195748, 204074, 0, 0, 0, 0, 0, 0, 0, 0, 1234567]))
    assert line.startswith("Node 0, zone   Normal 195748 204074      0 ")
    assert line.endswith(" 1234567 \n")
    with pytest.raises(ValueError, match="11 orders"):
        buddy.format_buddyinfo([1, 2, 3])


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_matches_numpy():
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(7)
    page_state = np.stack([random_codes(rng, 32 * PAGEBLOCK_NR_PAGES) for _ in range(6)])
    page_state[0] = FREE
    mt = rng.integers(0, 6, (6, 32)).astype(np.int8)
    d_state, d_mt = cp.asarray(page_state), cp.asarray(mt)
    assert np.array_equal(buddy.buddyinfo(d_state).get(), buddy.buddyinfo(page_state))
    assert np.array_equal(
        buddy.pagetypeinfo(d_state, d_mt).get(), buddy.pagetypeinfo(page_state, mt)
    )
    assert np.array_equal(buddy.nr_free_pages(d_state).get(), buddy.nr_free_pages(page_state))
    assert np.array_equal(buddy.free_block_heads(d_state).get(), buddy.free_block_heads(page_state))
