"""Helpers of kernels/tick.py that the engine's speed rests on, against plain NumPy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import tick


@settings(max_examples=200)
@given(
    n=st.integers(0, 300),
    nseg=st.integers(1, 40),
    nsub=st.integers(1, 400),
    big_clock=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_packed_sort_equals_lexsort(
    n: int, nseg: int, nsub: int, big_clock: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, nseg, n).astype(np.int64)
    order = rng.integers(0, nsub, n).astype(np.int64)
    clock_max = (1 << 45) if big_clock else 1000  # 2**45 takes the lexsort fallback
    # unique keys per segment, with both signs (head and tail insertions)
    key = np.unique(rng.integers(-clock_max, clock_max, 2 * n + 1))  # distinct
    key = rng.permutation(key)[:n].astype(np.int64)
    seg, order = seg[: key.shape[0]], order[: key.shape[0]]
    clock = np.array([clock_max], dtype=np.int64)
    got = tick._sort_by_group_then_key_desc(np, seg, order, nsub, key, clock)
    want = np.lexsort(np.stack([-key, order, seg]))
    assert np.array_equal(got, want)
