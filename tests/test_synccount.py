"""sweep.synccount: it counts what a CuPy run would read back, and the tick engine run on
it gives NumPy's results (so the engine's non-NumPy code paths run on every CI run)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.backend import to_numpy
from kernels.program import TickZones
from kernels.tick import run_program, run_program_on
from kernels.zone import KernelProfile
from sweep import synccount as sc
from sweep.bench_tick import _inputs, results_equal, tick_program, warmup_program
from tests.test_contig import _program as contig_program
from tests.test_contig import _zone as contig_zone
from tests.test_regions import region_case
from tests.test_tick import SCALE, random_case

PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)
xp = sc.xp


def test_each_host_read_is_counted_once():
    a = xp.arange(10, dtype=xp.int64)
    with sc.counting() as c:
        s = a.sum()
        assert isinstance(s, sc.SyncArray) and s.ndim == 0  # a 0-d array, as in CuPy
    assert sum(c.values()) - c["(array operations)"] == 0  # a reduction is no sync
    cases = [
        (lambda: int(a.sum()), "int()"),
        (lambda: bool((a > 3).any()), "bool()"),
        (lambda: float(a.mean()), "float()"),
        (lambda: a[3].item(), "item()"),
        (lambda: xp.nonzero(a > 4), "nonzero"),
        (lambda: xp.flatnonzero(a > 4), "flatnonzero"),
        (lambda: xp.where(a > 4), "where (one argument)"),
        (lambda: xp.unique(a % 3), "unique"),  # np.unique's own mask indexing not counted
        (lambda: a[a > 4], "bool-mask index"),
        (lambda: xp.repeat(a, a), "repeat (array counts)"),
        (lambda: xp.bincount(a), "bincount (no minlength)"),
        (lambda: range(a[2]), "array as Python int"),
        (lambda: to_numpy(a), "get()"),
    ]
    for f, what in cases:
        with sc.counting() as c:
            f()
        syncs = {k: v for k, v in c.items() if k != "(array operations)"}
        assert syncs == {what: 1}, what
    with sc.counting() as c:  # no data-dependent shape, no scalar read: no sync
        b = xp.where(a > 4, a, 0)
        b[a > 4] = 1  # a masked store is a kernel, not a read
        xp.cumsum(b)
        xp.bincount(a, minlength=16)
        xp.repeat(a, 3)
    assert set(c) == {"(array operations)"} and c["(array operations)"] >= 5


def test_site_tracking_names_the_caller():
    sc.track_sites()
    try:
        a = xp.arange(4)
        int(a.sum())
        ((fn, where),) = sc.SITES
        assert fn == "test_site_tracking_names_the_caller" and "test_synccount.py" in where
    finally:
        sc.track_sites(False)


def _same_on_both(kind, bmt, zones, prog, profile) -> dict:
    ref = run_program(kind, bmt, zones, prog, profile, backend="numpy")
    with sc.counting() as c:
        got = run_program_on(xp, kind, bmt, zones, prog, profile, check_invariants=True)
    assert results_equal(got, ref)
    assert c["(array operations)"] > 0 and c["get()"] > 0  # it did run on the namespace
    return c


@given(seed=st.integers(0, 2**32 - 1), v6=st.booleans())
@settings(max_examples=6 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_engine_on_the_counting_namespace_equals_numpy(seed, v6):
    """Every policy and phase option (tests/test_tick.py's cases): the engine's
    non-NumPy branches (xp is not numpy) give NumPy's results bit for bit."""
    kind, bmt, zones, prog = random_case(seed, 2)
    _same_on_both(kind, bmt, zones, prog, PROFILES[v6])


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())
def test_regions_and_contig_on_the_counting_namespace(profile):
    kind, bmt, zones, prog = region_case(5, 2)
    _same_on_both(kind, bmt, zones, prog, profile)
    k1, b1 = contig_zone(4096, 2)
    zones = TickZones.create(
        3, seed=np.arange(3, dtype=np.uint64), contig_method=[0, 3, 4], busy_file=0.01,
        attempt_order=4, min_free_kbytes=128,
    )  # fmt: skip
    prog = contig_program(400, 2, 20, 4, True)
    _same_on_both(np.tile(k1, (3, 1)), np.tile(b1, (3, 1)), zones, prog, profile)


def test_tick_loop_copies_results_out_once():
    """tick-model.md 4 / the issue: sampled metrics leave the device once per phase (the
    counters) and once at the end (the result), never per tick; what the loop does read
    back per tick is data-dependent control flow, counted here so the figure is known."""
    nr_zones, nr_pages = 4, 8192
    kind, bmt, zones = _inputs(nr_zones, nr_pages, 0)
    warm = run_program(kind, bmt, zones, warmup_program(nr_pages), KernelProfile.V6_19)
    out = []
    for ticks in (4, 12):
        with sc.counting() as c:
            run_program_on(
                xp, warm.kind, warm.block_mt, zones, tick_program(nr_pages, ticks, 64),
                KernelProfile.V6_19,
            )  # fmt: skip
        out.append(c)
    assert out[0]["get()"] == out[1]["get()"] > 0  # copies out: independent of the ticks
    assert out[1]["nonzero"] > out[0]["nonzero"]  # and the loop's reads are counted
