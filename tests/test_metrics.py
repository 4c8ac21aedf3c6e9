"""kernels.metrics against the literal mm/vmstat.c reference, plus kernel-model.md 6."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import buddy, metrics
from kernels.backend import gpu_available
from tests.reference import buddy as ref

ORDERS = range(11)

nr_free_lists = st.lists(
    st.one_of(st.just(0), st.integers(0, 5), st.integers(0, 10**6)), min_size=11, max_size=11
)


@given(st.lists(nr_free_lists, min_size=1, max_size=8))
@settings(max_examples=200)
def test_batched_metrics_match_reference(rows):
    counts = np.array(rows, dtype=np.int64)
    unusable = metrics.unusable_free_index(counts)
    fragindex = metrics.fragmentation_index(counts)
    extfrag = metrics.extfrag_for_order(counts)
    for out in (unusable, fragindex, extfrag):
        assert out.dtype == np.int64 and out.shape == counts.shape
    for z, nr_free in enumerate(rows):
        assert unusable[z].tolist() == [ref.unusable_free_index(o, nr_free) for o in ORDERS]
        assert fragindex[z].tolist() == [ref.fragmentation_index(o, nr_free) for o in ORDERS]
        assert extfrag[z].tolist() == [ref.extfrag_for_order(o, nr_free) for o in ORDERS]
        free_pages, total, suitable = metrics.fill_contig_page_info(counts[z : z + 1])
        for o in ORDERS:
            assert (
                int(free_pages[0, 0]),
                int(total[0, 0]),
                int(suitable[0, o]),
            ) == ref.fill_contig_page_info(nr_free, o)


def test_worked_example_kernel_model_6():
    counts = np.zeros((2, 11), dtype=np.int64)
    counts[0, :3] = [1000, 500, 100]  # free_pages 2400, blocks_total 1600
    counts[1, 0] = 100000
    free_pages, total, _ = metrics.fill_contig_page_info(counts)
    assert free_pages[:, 0].tolist() == [2400, 100000] and total[:, 0].tolist() == [1600, 100000]
    fragindex = metrics.fragmentation_index(counts)
    assert fragindex[0, 9] == 997  # 1000 - (1000 + 4687) / 1600
    assert fragindex[1, 9] == 999  # 1000 - (1000 + 195312) / 100000
    assert metrics.unusable_free_index(counts)[0, 9] == 1000
    assert metrics.extfrag_for_order(counts)[0, 9] == 100
    # orders with a suitable block would succeed: -1000; order 0 needs no merging
    assert fragindex[0, :3].tolist() == [-1000, -1000, -1000]
    assert metrics.unusable_free_index(counts)[0, 0] == 0


def test_empty_zone_conventions():
    counts = np.zeros((1, 11), dtype=np.int64)
    assert metrics.unusable_free_index(counts).tolist() == [[1000] * 11]
    assert metrics.fragmentation_index(counts).tolist() == [[0] * 11]
    assert metrics.extfrag_for_order(counts).tolist() == [[0] * 11]


def test_metrics_from_page_state():
    page_state = np.ones((1, 1024), dtype=np.uint8)
    page_state[0, ::2] = 0  # 512 isolated free pages
    counts = buddy.buddyinfo(page_state)
    assert metrics.unusable_free_index(counts)[0].tolist() == [0] + [1000] * 10
    assert metrics.extfrag_for_order(counts)[0].tolist() == [0] + [100] * 10
    # 1000 - (1000 + 512 * 1000 / 2**o) / 512
    assert metrics.fragmentation_index(counts)[0].tolist() == [-1000] + [
        1000 - (1000 + 512 * 1000 // (1 << o)) // 512 for o in range(1, 11)
    ]


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_matches_numpy():
    cp = pytest.importorskip("cupy")
    counts = np.random.default_rng(0).integers(0, 1000, (50, 11))
    counts[::3, 4:] = 0
    for f in (metrics.unusable_free_index, metrics.fragmentation_index, metrics.extfrag_for_order):
        assert np.array_equal(f(cp.asarray(counts)).get(), f(counts))
