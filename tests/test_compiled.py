"""The compiled sequential baseline (sweep/compiled.py) against the reference and the kernel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernels.compaction import CompactParams, compact_node
from kernels.fragment import FragmentParams, fragment
from kernels.rng import zone_seed
from kernels.zone import PAGEBLOCK_NR_PAGES, KernelProfile
from sweep.compiled import compact_node_compiled
from tests.reference.compaction import compact_zone
from tests.test_compaction import SCALE, _row, _state, batches, fragmenter_cases
from tests.zonegen import random_batch

P = PAGEBLOCK_NR_PAGES
PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)
profiles = pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())


def _assert_same(a, b, what: str) -> None:
    (state_a, counters_a), (state_b, counters_b) = a, b
    for z in range(state_a.nr_zones):
        assert _row(counters_a, z) == _row(counters_b, z), f"{what}: zone {z} counters"
    np.testing.assert_array_equal(state_a.page_state, state_b.page_state, err_msg=what)


@profiles
@given(batch=batches, pinned_policy=st.integers(0, 63))
@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_equals_reference_and_batched(profile, batch, pinned_policy):
    """compiled == reference == batched: page states and all seven counters, bit for bit."""
    seed, nr_zones, nr_blocks, layout = batch
    s, mt = random_batch(seed, nr_zones, nr_blocks, layout)
    skip_pinned = np.array([(pinned_policy >> z) & 1 == 1 for z in range(nr_zones)])
    params = CompactParams(profile, skip_pinned)
    compiled = compact_node_compiled(_state(s, mt), params)
    new, counters = compiled
    for z in range(nr_zones):
        ref_state, ref_counters = compact_zone(s[z], mt[z], profile, bool(skip_pinned[z]))
        assert _row(counters, z) == dataclasses.asdict(ref_counters), f"zone {z} counters"
        np.testing.assert_array_equal(
            new.page_state[z], np.asarray(ref_state, np.uint8), err_msg=f"zone {z} state"
        )
    _assert_same(compiled, compact_node(_state(s, mt), params), "compiled vs batched")


@profiles
@given(case=fragmenter_cases, seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(64, 256))
@settings(max_examples=8 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_equals_batched_on_fragmenter_zones(profile, case, seed, nr_blocks):
    """The project's zone initialisers on zones of 64..256 pageblocks (128..512 MiB)."""
    case = dict(case)
    layout = case.pop("layout")
    params = FragmentParams.create(layout, nr_blocks * P, zone_seed(seed, np.arange(3)), **case)
    try:
        params.validate()
        s, mt = fragment(np, params)
    except ValueError:  # a draw that cannot be laid out (e.g. too many folios)
        assume(False)
    cp = CompactParams(profile, np.array([True, False, True]))
    compiled = compact_node_compiled(_state(s, mt), cp)
    _assert_same(compiled, compact_node(_state(s, mt), cp), f"{layout} compiled vs batched")


@profiles
@given(seed=st.integers(0, 2**32 - 1), nr_blocks=st.integers(1, 24))
@settings(max_examples=15 * SCALE, deadline=None)
def test_batch_invariance_and_serial_equals_parallel(profile, seed, nr_blocks):
    """A zone's result does not depend on its neighbours; parallel=False gives the same."""
    s, mt = random_batch(seed, 5, nr_blocks)
    skip_pinned = np.array([True, False, True, False, True])
    params = CompactParams(profile, skip_pinned)
    batch = compact_node_compiled(_state(s, mt), params, parallel=True)
    _assert_same(batch, compact_node_compiled(_state(s, mt), params, parallel=False), "serial")
    for z in range(5):
        alone = compact_node_compiled(
            _state(s[z : z + 1], mt[z : z + 1]), CompactParams(profile, skip_pinned[z : z + 1])
        )
        np.testing.assert_array_equal(alone[0].page_state[0], batch[0].page_state[z])
        assert _row(alone[1], 0) == _row(batch[1], z)


@profiles
def test_conserves_pages_and_leaves_the_input_alone(profile):
    """Every page kind is conserved; only split folios turn into base movable pages."""
    s, mt = random_batch(7, 4, 16, "folio_heavy")
    state = _state(s, mt)
    new, counters = compact_node_compiled(state, CompactParams(profile, np.array([1, 0, 1, 0])))
    np.testing.assert_array_equal(state.page_state, s)  # the input is not written
    assert counters.pgmigrate_success.min() > 0
    for kind in range(5):
        np.testing.assert_array_equal(
            (new.page_state & 0x07 == kind).sum(axis=1), (s & 0x07 == kind).sum(axis=1)
        )
    heads = lambda a: ((a > 1) & (a < 0x80) & (a & 0x07 == 1)).sum(axis=1)  # noqa: E731
    np.testing.assert_array_equal(heads(s) - heads(new.page_state), counters.migrate_folio_split)


class _FakeCupyArray:
    """Stands in for a cupy.ndarray: exposes the CUDA array interface."""

    __cuda_array_interface__ = {"shape": (1, P), "typestr": "|u1", "version": 3}
    shape = (1, P)


def test_rejects_gpu_arrays_and_bad_shapes():
    """A clear error naming the field, before any compute."""
    s, mt = random_batch(0, 1, 2)
    good = _state(s, mt)
    params = CompactParams(KernelProfile.V6_19, np.array([True]))
    with pytest.raises(TypeError, match=r"state\.page_state is a CuPy"):
        compact_node_compiled(dataclasses.replace(good, page_state=_FakeCupyArray()), params)
    with pytest.raises(TypeError, match=r"params\.skip_pinned is a CuPy"):
        compact_node_compiled(good, CompactParams(KernelProfile.V6_19, _FakeCupyArray()))
    with pytest.raises(ValueError, match=r"state\.page_state"):
        compact_node_compiled(dataclasses.replace(good, page_state=s[:, :100]), params)
    with pytest.raises(ValueError, match=r"state\.pageblock_migratetype"):
        compact_node_compiled(dataclasses.replace(good, pageblock_migratetype=mt[:, :1]), params)
    with pytest.raises(ValueError, match=r"params\.skip_pinned"):
        compact_node_compiled(good, CompactParams(KernelProfile.V6_19, np.array([True, False])))
    with pytest.raises(ValueError, match=r"params\.profile"):
        compact_node_compiled(good, CompactParams("v6_19", np.array([True])))
