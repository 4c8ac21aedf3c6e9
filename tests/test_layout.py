"""Bit-plane page state and memory-bounded compaction (kernels/layout.py)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.backend import gpu_available
from kernels.buddy import buddyinfo, free_bitmap_words
from kernels.compaction import CompactParams, _planes, compact_node
from kernels.fragment import make_zone_state
from kernels.layout import (
    BYTES_PER_PAGE,
    PLANES,
    buddyinfo_packed,
    compact_node_chunked,
    compact_peak_bytes,
    compaction_planes,
    measure_compact_peak,
    pack_planes,
    unpack,
)
from kernels.rng import zone_seed
from kernels.zone import (
    FREE,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    KernelProfile,
    ZoneState,
    folio_head_code,
    folio_tail_code,
)
from sweep.bench import bench_zone_params
from tests.zonegen import LAYOUTS, random_batch

P = PAGEBLOCK_NR_PAGES
SCALE = int(os.environ.get("COMPACTION_SWEEP_TEST_SCALE", "1"))
PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)

batches = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 5),  # zones
    st.integers(1, 8),  # pageblocks per zone
    st.sampled_from((None,) + LAYOUTS),
)


def _batch(seed: int, nr_zones: int, nr_blocks: int, layout: str | None) -> tuple:
    """tests.zonegen's zones with a few pageblocks turned into order-9 THPs (zonegen's
    folio budget stays below a pageblock, so it never makes one)."""
    s, mt = random_batch(seed, nr_zones, nr_blocks, layout)
    rng = np.random.default_rng(seed)
    blocks = s.reshape(nr_zones, nr_blocks, P)
    thp = rng.random((nr_zones, nr_blocks)) < 0.2
    blocks[thp] = folio_tail_code(9)
    blocks[thp, 0] = folio_head_code(9)
    return s, mt


def _state(s: np.ndarray, mt: np.ndarray) -> ZoneState:
    z = s.shape[0]
    return ZoneState(s.copy(), mt.copy(), *(np.zeros(z, np.int64),) * 3)


@given(batch=batches)
@settings(max_examples=60 * SCALE, deadline=None)
def test_round_trip_and_plane_meaning(batch):
    """unpack(pack(s)) == s bit for bit; each plane is the predicate it names."""
    s, _ = _batch(*batch)
    packed = pack_planes(s, check=True)
    np.testing.assert_array_equal(unpack(packed), s)
    assert packed.nbytes == BYTES_PER_PAGE * s.size
    bits = {
        k: np.unpackbits(getattr(packed, k).view(np.uint8), axis=1, bitorder="little").astype(bool)
        for k in PLANES
    }
    kind = s & 0x07
    np.testing.assert_array_equal(bits["free"], s == FREE)
    np.testing.assert_array_equal(bits["movable"], kind == MOVABLE)
    np.testing.assert_array_equal(bits["pinned"], s == PINNED)
    np.testing.assert_array_equal(bits["reclaimable"], s == RECLAIMABLE)
    np.testing.assert_array_equal(bits["tail"], s >= 0x80)
    np.testing.assert_array_equal(bits["head"], (kind == MOVABLE) & (s > MOVABLE) & (s < 0x80))
    np.testing.assert_array_equal(packed.free, free_bitmap_words(s))


def test_round_trip_every_folio_order():
    """Folios of every order 1..9 at every aligned offset of a pageblock, side by side."""
    rows = []
    for k in range(1, 10):
        row = np.full(2 * P, UNMOVABLE, dtype=np.uint8)
        size = 1 << k
        for h in range(0, 2 * P, 2 * size):  # folio, then a gap of the same size
            row[h] = folio_head_code(k)
            row[h + 1 : h + size] = folio_tail_code(k)
            if size > 1:
                row[h + size : h + 2 * size] = (FREE, MOVABLE)[h // (2 * size) % 2]
        rows.append(row)
    # back-to-back folios of mixed orders
    row = np.empty(2 * P, dtype=np.uint8)
    pos = 0
    for k in (1, 1, 2, 3, 4, 5, 6, 7, 8, 9):
        row[pos] = folio_head_code(k)
        row[pos + 1 : pos + (1 << k)] = folio_tail_code(k)
        pos += 1 << k
    row[pos:] = PINNED
    rows.append(row)
    s = np.stack(rows)
    np.testing.assert_array_equal(unpack(pack_planes(s, check=True)), s)


@pytest.mark.parametrize(
    "bad, where",
    [
        ((5, 7), 7),  # not a page kind
        ((folio_tail_code(2), 12), 12),  # tail without its head
        ((folio_head_code(3) | 0x80, 16), 16),  # head and tail at once
        ((MOVABLE | (3 << 3), 40), 40),  # head whose tails are missing
    ],
)
def test_pack_check_names_the_bad_page(bad, where):
    s = np.full((2, P), MOVABLE, dtype=np.uint8)
    s[1, bad[1]] = bad[0]
    with pytest.raises(ValueError, match=rf"page_state\[1, {where}\]"):
        pack_planes(s, check=True)


def test_pack_rejects_bad_arrays_before_compute():
    with pytest.raises(ValueError, match="uint8"):
        pack_planes(np.zeros((1, P), dtype=np.int16))
    with pytest.raises(ValueError, match="pageblocks"):
        pack_planes(np.zeros((1, P + 64), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(Z, N\)"):
        pack_planes(np.zeros(P, dtype=np.uint8))


@given(batch=batches)
@settings(max_examples=60 * SCALE, deadline=None)
def test_buddyinfo_packed_equals_buddyinfo(batch):
    s, _ = _batch(*batch)
    packed = pack_planes(s)
    got = buddyinfo_packed(packed)
    np.testing.assert_array_equal(got, buddyinfo(s))
    np.testing.assert_array_equal((got << np.arange(11)).sum(axis=1), (s == FREE).sum(axis=1))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(batch=batches, policy=st.integers(0, 31))
@settings(max_examples=40 * SCALE, deadline=None)
def test_compaction_planes_equal_kernel_pass1(profile, batch, policy):
    """The packed twin of compact_node's page pass 1 gives the same planes, byte for byte."""
    s, _ = _batch(*batch)
    skip = np.array([(policy >> i) & 1 == 1 for i in range(s.shape[0])])
    v6 = profile == KernelProfile.V6_19
    want = _planes(np, s, v6, skip)
    got = compaction_planes(pack_planes(s), v6, skip)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _assert_same(a, b):
    (sa, ca), (sb, cb) = a, b
    np.testing.assert_array_equal(sa.page_state, sb.page_state)
    for f in dataclasses.fields(ca):
        np.testing.assert_array_equal(getattr(ca, f.name), getattr(cb, f.name), err_msg=f.name)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(batch=batches, policy=st.integers(0, 31), group=st.integers(1, 5), in_place=st.booleans())
@settings(max_examples=40 * SCALE, deadline=None)
def test_chunked_equals_unchunked(profile, batch, policy, group, in_place):
    """Every chunk size: same page states and counters as one compact_node call."""
    s, mt = _batch(*batch)
    z = s.shape[0]
    params = CompactParams(profile, np.array([(policy >> i) & 1 == 1 for i in range(z)]))
    whole = compact_node(_state(s, mt), params)
    budget = compact_peak_bytes(group, s.shape[1])
    state = _state(s, mt)
    got = compact_node_chunked(state, params, budget, in_place=in_place)
    _assert_same(got, whole)
    if in_place:
        assert got[0].page_state is state.page_state
    else:
        np.testing.assert_array_equal(state.page_state, s)  # input untouched


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@given(batch=batches, policy=st.integers(0, 31))
@settings(max_examples=25 * SCALE, deadline=None)
def test_batch_invariance(profile, batch, policy):
    """A zone's packed planes and chunked compaction do not depend on its neighbours."""
    s, mt = _batch(*batch)
    z = s.shape[0]
    skip = np.array([(policy >> i) & 1 == 1 for i in range(z)])
    batch_packed = pack_planes(s)
    batch_run = compact_node_chunked(
        _state(s, mt), CompactParams(profile, skip), compact_peak_bytes(2, s.shape[1])
    )
    for i in range(z):
        alone = pack_planes(s[i : i + 1])
        for k in PLANES:
            np.testing.assert_array_equal(getattr(alone, k)[0], getattr(batch_packed, k)[i])
        one = compact_node(
            _state(s[i : i + 1], mt[i : i + 1]), CompactParams(profile, skip[i : i + 1])
        )
        _assert_same(
            one,
            (
                batch_run[0][i],
                type(batch_run[1])(
                    **{
                        f.name: getattr(batch_run[1], f.name)[i : i + 1]
                        for f in dataclasses.fields(batch_run[1])
                    }
                ),
            ),
        )


def test_chunked_rejects_bad_budget():
    s, mt = random_batch(0, 2, 2)
    params = CompactParams(KernelProfile.V6_19, np.ones(2, bool))
    with pytest.raises(ValueError, match="max_bytes=100 .*cannot be split"):
        compact_node_chunked(_state(s, mt), params, 100)
    with pytest.raises(ValueError, match="max_bytes must be an integer"):
        compact_node_chunked(_state(s, mt), params, 1e9)


def _random_mix(nr_zones: int, nr_pages: int) -> ZoneState:
    params = bench_zone_params(nr_pages, zone_seed(3, np.arange(nr_zones)))
    return make_zone_state(np, params, 1024, 10)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
@pytest.mark.parametrize("shape", [(8, 4096), (1, 262144)], ids=["8x16m", "1x1g"])
def test_budget_model_bounds_measured_peak(profile, shape):
    """The chunk-size model is an upper bound of compact_node's measured peak memory."""
    state = _random_mix(*shape)
    params = CompactParams(profile, np.ones(shape[0], bool))
    measured = measure_compact_peak(state, params)
    assert 0 < measured["peak_bytes"] <= compact_peak_bytes(*shape)
    assert measured["result_bytes_per_page"] >= 1.0  # the new page states


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_cupy_equals_numpy(profile):
    """Packing, buddyinfo_packed and chunked compaction on CuPy, bit for bit as NumPy."""
    import cupy as cp

    for seed in range(20):
        s, mt = _batch(seed, 5, 1 + seed % 8, None)
        packed = pack_planes(cp.asarray(s), check=True)
        host = pack_planes(s)
        for k in PLANES:
            np.testing.assert_array_equal(cp.asnumpy(getattr(packed, k)), getattr(host, k))
        np.testing.assert_array_equal(cp.asnumpy(unpack(packed)), s)
        np.testing.assert_array_equal(cp.asnumpy(buddyinfo_packed(packed)), buddyinfo(s))
        skip = np.arange(5) % 2 == 0
        want = compact_node(_state(s, mt), CompactParams(profile, skip))
        g = ZoneState(cp.asarray(s), cp.asarray(mt), *(cp.zeros(5, cp.int64),) * 3)
        got = compact_node_chunked(
            g, CompactParams(profile, cp.asarray(skip)), compact_peak_bytes(2, s.shape[1])
        )
        _assert_same(
            (
                ZoneState(*(cp.asnumpy(x) for x in dataclasses.astuple(got[0]))),
                type(got[1])(*(cp.asnumpy(x) for x in dataclasses.astuple(got[1]))),
            ),
            want,
        )


# --------------------------------------------------------------------------------------
# The benchmark suite's harness on tiny cases (python -m sweep.bench suite --quick)


def _tiny_suite(monkeypatch, tmp_path, cases):
    import json

    from sweep import bench, bench_suite

    for case, shape in {
        "compaction-64x1g": (3, 4096),
        "buddyinfo-1x128g": (1, 8192),
        "tick-stress_highalloc-1000z": (3, 4096),
    }.items():
        monkeypatch.setitem(bench_suite.SHAPES, case, (shape, shape))
    argv = ["suite", "--quick", "--cases", *cases, "--profile", "v6_19", "--repeat", "1"]
    rc = bench.main([*argv, "--out", str(tmp_path)])
    (path,) = tmp_path.glob("suite-*.json")
    return rc, json.loads(path.read_text())


def test_bench_suite_quick_runs_every_baseline(monkeypatch, tmp_path):
    cases = ["compaction-64x1g", "compaction-1000x128g", "buddyinfo-1x128g"]
    rc, record = _tiny_suite(monkeypatch, tmp_path, cases + ["tick-stress_highalloc-1000z"])
    assert rc == 0 and record["mismatches"] == []
    assert record["copy_bandwidth_bytes_per_s"]["numpy"] > 1e8
    rows = {(r["case"], r["impl"]): r for r in record["rows"]}
    assert {"numpy", "reference"} <= {i for c, i in rows if c == "compaction-64x1g"}
    assert rows[("compaction-64x1g", "reference")]["zones"] == 1  # a subset, said so
    assert rows[("buddyinfo-1x128g", "numpy bit-planes")]["exact"] == "== uint8"
    assert rows[("tick-stress_highalloc-1000z", "numpy")]["unit"] == "zone-ticks"
    for r in record["rows"]:
        assert r["floor_s"] > 0 and r["x_floor"] == pytest.approx(r["seconds"] / r["floor_s"])
        assert r["ratio_vs"] and all(v > 0 for v in r["ratio_vs"].values())
    numpy_row = rows[("compaction-64x1g", "numpy")]
    ref_row = rows[("compaction-64x1g", "reference")]
    assert numpy_row["ratio_vs"]["reference"] == pytest.approx(
        numpy_row["per_s"] / ref_row["per_s"]
    )
    assert any("compaction-1000x128g: needs a GPU" in n for n in record["notes"])


def test_bench_suite_exits_nonzero_on_a_mismatch(monkeypatch, tmp_path):
    from sweep import bench_suite

    real = bench_suite.compact_node

    def off_by_one(state, params):
        new, counters = real(state, params)
        counters.pgmigrate_fail[0] += 1
        return new, counters

    monkeypatch.setattr(bench_suite, "compact_node", off_by_one)
    rc, record = _tiny_suite(monkeypatch, tmp_path, ["compaction-64x1g"])
    assert rc == 1
    assert any("numpy != reference" in m for m in record["mismatches"])


@pytest.mark.parametrize(
    "argv, key",
    [
        (["--cases", "compaction-2x1g"], "--cases compaction-2x1g"),
        (["--repeat", "0"], "--repeat=0"),
        (["--reference-max-pages", "1000"], "--reference-max-pages=1000"),
    ],
)
def test_bench_suite_bad_input_names_the_key(argv, key, tmp_path, capsys):
    from sweep import bench

    assert bench.main(["suite", *argv, "--out", str(tmp_path)]) == 2
    assert key in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written
