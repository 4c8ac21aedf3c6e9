"""kernels.fragment: exact counts, page-state invariants, reproducibility, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import fragment as frag
from kernels.backend import gpu_available
from kernels.fragment import FragmentParams, fragment, fragment_counts, make_zone_state
from kernels.zone import (
    FREE,
    MAX_FOLIO_ORDER,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
    compound_order,
    folio_head_code,
    folio_tail_code,
    is_tail,
    page_kind,
    setup_per_zone_wmarks,
)

P = PAGEBLOCK_NR_PAGES
M_U, M_M, M_R = int(MigrateType.UNMOVABLE), int(MigrateType.MOVABLE), int(MigrateType.RECLAIMABLE)

CASES = {
    "random_mix": dict(
        free_fraction=0.35,
        unmovable_fraction=0.08,
        reclaimable_fraction=0.05,
        pinned_fraction=0.03,
        pollution=0.25,
        folio_fraction=0.4,
        folio_orders=(1, 4, 9),
    ),
    "random_mix_plain": dict(free_fraction=0.5, unmovable_fraction=0.1),
    "holepunch": dict(
        free_fraction=0.15,
        unmovable_fraction=0.06,
        reclaimable_fraction=0.04,
        pinned_fraction=0.02,
        pollution=0.2,
    ),
    "free_quarter": dict(
        unmovable_fraction=0.12,
        reclaimable_fraction=0.06,
        pinned_fraction=0.05,
        pollution=0.3,
        folio_fraction=0.5,
        folio_orders=(2, 5, 7),
    ),
}


def params_for(case: str, nr_pages: int = 32 * P, seeds=(1, 2, 3)) -> FragmentParams:
    layout = case.removesuffix("_plain")
    return FragmentParams.create(
        layout, nr_pages, np.asarray(seeds, dtype=np.uint64), **CASES[case]
    )


def per_page(block_values: np.ndarray) -> np.ndarray:
    return np.repeat(block_values, P, axis=1)


def check_invariants(params: FragmentParams, page_state: np.ndarray, mt: np.ndarray) -> None:
    counts = fragment_counts(params)
    nr_zones, nr_pages = params.nr_zones, params.nr_pages
    assert page_state.shape == (nr_zones, nr_pages) and page_state.dtype == np.uint8
    assert mt.shape == (nr_zones, nr_pages // P) and mt.dtype == np.int8

    # Every code is valid: kinds 0..4; order and tail bits only on movable folio pages.
    kind, order, tail = page_kind(page_state), compound_order(page_state), is_tail(page_state)
    assert (kind <= PINNED).all()
    assert (order <= MAX_FOLIO_ORDER).all()
    assert ((order == 0) | (kind == MOVABLE)).all()
    assert (~tail | (order > 0)).all()

    # Exact counts per kind and per folio order.
    got = np.stack([(kind == k).sum(axis=1) for k in range(PINNED + 1)], axis=1)
    assert np.array_equal(got, counts.kind_counts())
    for k in range(1, MAX_FOLIO_ORDER + 1):
        heads = page_state == folio_head_code(k)
        assert heads.sum(axis=1).tolist() == counts.nr_folios[:, k].tolist(), k
        # Naturally aligned, head then 2**k - 1 tails, never crossing a pageblock (k <= 9).
        slots = page_state.reshape(nr_zones, nr_pages >> k, 1 << k)
        assert not heads.reshape(slots.shape)[:, :, 1:].any()
        headed = slots[:, :, 0] == folio_head_code(k)
        assert (slots[:, :, 1:][headed] == folio_tail_code(k)).all()
        assert (page_state == folio_tail_code(k)).sum() == heads.sum() * ((1 << k) - 1)

    # Pageblock types and where each kind may live.
    block_mt = per_page(mt)
    assert np.isin(mt, [M_U, M_M, M_R]).all()
    assert np.array_equal(
        np.stack([(mt == t).sum(axis=1) for t in (M_U, M_R, M_M)], axis=1), counts.nr_pageblocks
    )
    in_m = block_mt == M_M
    assert not ((kind == PINNED) & ~in_m).any()
    assert not ((order > 0) & ~in_m).any()
    assert ((kind == UNMOVABLE) & in_m).sum(
        axis=1
    ).tolist() == counts.nr_polluting_unmovable.tolist()
    assert ((kind == RECLAIMABLE) & in_m).sum(
        axis=1
    ).tolist() == counts.nr_polluting_reclaimable.tolist()
    assert not ((kind == UNMOVABLE) & (block_mt == M_R)).any()
    assert not ((kind == RECLAIMABLE) & (block_mt == M_U)).any()

    if params.layout == "free_quarter":
        allocated = (kind != FREE).reshape(nr_zones, -1, P).sum(axis=2)
        assert (allocated == P // 4).all()
    else:  # U/R blocks hold their own kind and free pages only
        assert not ((kind == MOVABLE) & ~in_m).any()
    if params.layout == "holepunch":
        check_holepunch_file(page_state, in_m, counts)


def check_holepunch_file(page_state, in_m, counts) -> None:
    """In MOVABLE blocks, the non-pinned non-polluting pages read M F M F ... then F."""
    for z in range(page_state.shape[0]):
        rest = page_state[z][in_m[z] & np.isin(page_state[z], [FREE, MOVABLE])]
        length = int(counts.nr_file_pages[z])
        expected = np.zeros(rest.shape, dtype=np.uint8)
        expected[0:length:2] = MOVABLE
        assert np.array_equal(rest, expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layout_counts_and_invariants(case):
    params = params_for(case)
    page_state, mt = fragment(np, params)
    check_invariants(params, page_state, mt)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproducible_and_batch_invariant(case):
    params = params_for(case, nr_pages=24 * P, seeds=(11, 12, 13, 11))
    page_state, mt = fragment(np, params)
    again = fragment(np, params)
    assert np.array_equal(page_state, again[0]) and np.array_equal(mt, again[1])
    for z in range(params.nr_zones):
        alone = fragment(np, params[z])
        assert np.array_equal(alone[0][0], page_state[z]) and np.array_equal(alone[1][0], mt[z])
    assert np.array_equal(page_state[0], page_state[3])  # same seed, same zone
    assert not np.array_equal(page_state[0], page_state[1])  # different seeds differ


def test_zone_params_differ_per_zone():
    params = FragmentParams.create(
        "random_mix",
        16 * P,
        np.arange(3),
        free_fraction=[0.1, 0.5, 0.9],
        pinned_fraction=[0.0, 0.1, 0.05],
    )
    page_state, mt = fragment(np, params)
    check_invariants(params, page_state, mt)
    assert (page_state == FREE).sum(axis=1).tolist() == [819, 4096, 7373]  # floor(f * 8192 + 0.5)


def test_rounding_is_documented_floor_half_up():
    params = FragmentParams.create(
        "random_mix", P, [0, 1], free_fraction=[1.5 / P, 2.5 / P], pinned_fraction=0.5 / P
    )
    counts = fragment_counts(params)
    assert counts.nr_free.tolist() == [2, 3]
    assert counts.nr_pinned.tolist() == [1, 1]


def test_folio_memory_split_evenly_and_rounded_down():
    params = FragmentParams.create(
        "random_mix", 64 * P, [0], free_fraction=0.5, folio_fraction=0.75, folio_orders=(9, 2, 5)
    )
    counts = fragment_counts(params)
    movable = 32 * P
    target = int(np.floor(0.75 * movable + 0.5))  # 12288 pages, 4096 per order
    assert counts.nr_folios[0, [2, 5, 9]].tolist() == [4096 >> 2, 4096 >> 5, 4096 >> 9]
    assert counts.nr_folio_pages[0] <= target
    page_state, mt = fragment(np, params)
    check_invariants(params, page_state, mt)


def test_free_quarter_full_order7_folios():
    params = FragmentParams.create(
        "free_quarter", 8 * P, [5], folio_fraction=1.0, folio_orders=(7,)
    )
    page_state, mt = fragment(np, params)
    check_invariants(params, page_state, mt)
    assert (page_state == folio_head_code(7)).sum() == 8  # one 128-page folio per block


def test_holepunch_without_other_kinds_alternates_from_zone_start():
    params = FragmentParams.create("holepunch", 4 * P, [9], free_fraction=0.25)
    page_state, _ = fragment(np, params)
    file_pages = 3 * P
    expected = np.zeros(4 * P, dtype=np.uint8)
    expected[0:file_pages:2] = MOVABLE
    assert np.array_equal(page_state[0], expected)


fractions = st.floats(0.0, 1.0, allow_nan=False)


@given(
    layout=st.sampled_from(frag.LAYOUTS),
    nr_blocks=st.integers(1, 12),
    nr_zones=st.integers(1, 3),
    seed=st.integers(0, 2**64 - 1),
    f=st.tuples(st.floats(0, 0.9), st.floats(0, 0.3), st.floats(0, 0.3), st.floats(0, 0.2)),
    pollution=fractions,
    folio_fraction=fractions,
    folio_orders=st.sets(st.integers(1, MAX_FOLIO_ORDER), max_size=3),
)
@settings(max_examples=120)
def test_random_params_lay_out_or_raise(
    layout, nr_blocks, nr_zones, seed, f, pollution, folio_fraction, folio_orders
):
    if layout == "holepunch":
        folio_fraction = 0.0
    if layout == "free_quarter":
        folio_orders = {k for k in folio_orders if k <= frag.FREE_QUARTER_MAX_FOLIO_ORDER}
    if not folio_orders:
        folio_fraction = 0.0
    scale = max(1.0, sum(f))
    free, unmovable, reclaimable, pinned = (v / scale for v in f)
    params = FragmentParams.create(
        layout,
        nr_blocks * P,
        np.arange(nr_zones, dtype=np.uint64) + np.uint64(seed % 2**60),
        free_fraction=free,
        unmovable_fraction=unmovable,
        reclaimable_fraction=reclaimable,
        pinned_fraction=pinned,
        pollution=pollution,
        folio_fraction=folio_fraction,
        folio_orders=tuple(sorted(folio_orders)),
    )
    try:
        counts = fragment_counts(params)
    except ValueError as e:
        assert "cannot fit" in str(e) and "unmovable_fraction=" in str(e)
        return
    assert counts.kind_counts().sum(axis=1).tolist() == [nr_blocks * P] * nr_zones
    page_state, mt = fragment(np, params)
    check_invariants(params, page_state, mt)


BAD = [
    (dict(layout="bogus"), "layout"),
    (dict(nr_pages=1000), "nr_pages"),
    (dict(nr_pages=0), "nr_pages"),
    (dict(free_fraction=-0.1), "free_fraction"),
    (dict(unmovable_fraction=1.5), "unmovable_fraction"),
    (dict(reclaimable_fraction=float("nan")), "reclaimable_fraction"),
    (dict(pinned_fraction=2.0), "pinned_fraction"),
    (dict(pollution=-1.0), "pollution"),
    (dict(folio_fraction=1.1, folio_orders=(2,)), "folio_fraction"),
    (dict(folio_fraction=0.1, folio_orders=(10,)), "folio_orders"),
    (dict(folio_fraction=0.1, folio_orders=(0,)), "folio_orders"),
    (dict(folio_fraction=0.1, folio_orders=(2, 2)), "folio_orders"),
    (dict(folio_fraction=0.1), "folio_orders"),
    (dict(free_fraction=0.6, unmovable_fraction=0.5), "free_fraction \\+ unmovable_fraction"),
    (dict(layout="holepunch", folio_fraction=0.2, folio_orders=(2,)), "folio_fraction"),
    (dict(layout="free_quarter", folio_fraction=0.2, folio_orders=(8,)), "folio_orders"),
    # two non-movable blocks in a one-block zone
    (
        dict(nr_pages=P, unmovable_fraction=0.3, reclaimable_fraction=0.3),
        "cannot fit.*unmovable_fraction=",
    ),
    # too little movable room for the folios in free_quarter
    (
        dict(
            layout="free_quarter",
            nr_pages=2 * P,
            unmovable_fraction=0.3,
            pinned_fraction=0.1,
            folio_fraction=1.0,
            folio_orders=(7,),
        ),
        "cannot fit.*folios",
    ),
]


@pytest.mark.parametrize("changes, match", BAD)
def test_bad_params_raise_naming_the_field(changes, match):
    kwargs = dict(layout="random_mix", nr_pages=4 * P, free_fraction=0.2)
    kwargs.update(changes)
    layout, nr_pages = kwargs.pop("layout"), kwargs.pop("nr_pages")
    params = FragmentParams.create(layout, nr_pages, [1, 2], **kwargs)
    with pytest.raises(ValueError, match=match):
        fragment(np, params)


def test_create_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="free_fraction"):
        FragmentParams.create("random_mix", P, [1, 2, 3], free_fraction=[0.1, 0.2])
    params = FragmentParams.create("random_mix", P, [1, 2])
    bad = FragmentParams(
        **{**{f: getattr(params, f) for f in params.__slots__}, "pollution": np.zeros(3)}
    )
    with pytest.raises(ValueError, match="pollution"):
        bad.validate()


def test_make_zone_state():
    params = params_for("random_mix", nr_pages=16 * P)
    state = make_zone_state(
        np, params, min_free_kbytes=np.array([1024, 4096, 67584]), watermark_scale_factor=10
    )
    page_state, mt = fragment(np, params)
    assert np.array_equal(state.page_state, page_state) and np.array_equal(
        state.pageblock_migratetype, mt
    )
    wmin, wlow, whigh = setup_per_zone_wmarks(
        np.full(3, 16 * P), np.array([1024, 4096, 67584]), np.full(3, 10)
    )
    assert state.wmark_min.tolist() == wmin.tolist() == [256, 1024, 16896]
    assert state.wmark_low.tolist() == wlow.tolist() and state.wmark_high.tolist() == whigh.tolist()
    assert state.wmark_min.dtype == np.int64 and state.nr_zones == 3


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize("case", sorted(CASES))
def test_gpu_matches_numpy(case):
    cp = pytest.importorskip("cupy")
    params = params_for(case, nr_pages=64 * P, seeds=(1, 2, 3, 4))
    d_state, d_mt = fragment(cp, params)
    assert isinstance(d_state, cp.ndarray)
    page_state, mt = fragment(np, params)
    assert np.array_equal(d_state.get(), page_state) and np.array_equal(d_mt.get(), mt)
