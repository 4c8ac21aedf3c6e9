"""The compiled tick engine on a GPU (sweep/cuda_tick.py), one CUDA thread per zone.

Every field of its TickResult must equal the compiled CPU engine's (which
tests/test_compiled_tick.py holds equal to the reference, tests/reference/tick.py),
whatever the chunking of the tick loop; a zone's result must not depend on its batch;
the host loop must be one launch per chunk with only that chunk's samples read back.

Without a CUDA driver (CI) the kernels run on Numba's CUDA simulator, which
tests/conftest.py switches on; on a machine with a GPU the same tests run the kernels on
the GPU. The simulator runs the device code as Python, so the kernels are also compiled
to PTX for sm_90 by NVVM (the nvidia-cuda-nvcc-cu12 wheel of the test extra), which
checks them against Numba's CUDA typing and lowering.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.program import COUNTER_INDEX, GFP_NOWAIT, MT_CMA, Phase, Program
from kernels.zone import KernelProfile
from sweep import cuda_tick
from sweep.compiled_tick import run_program_compiled
from sweep.cuda_tick import chunk_bounds, run_program_cuda
from tests.test_compiled_tick import differences, zone_row
from tests.test_tick import SCALE, mixed_case, random_case

ROOT = Path(__file__).resolve().parents[1]
PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)
profiles = pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())


def assert_equals_compiled(kind, bmt, zones, prog, profile, chunk: int, what: str) -> None:
    cpu = run_program_compiled(kind, bmt, zones, prog, profile, parallel=False)
    gpu = run_program_cuda(kind, bmt, zones, prog, profile, chunk_ticks=chunk)
    bad = differences(cpu, gpu)
    assert not bad, f"{what} ({profile.name}, chunks of {chunk}): cuda != compiled in {bad}"


def test_runs_where_expected():
    """CI has no CUDA driver: the tests must then run on the simulator, not skip."""
    import ctypes.util

    if ctypes.util.find_library("cuda") is None and "NUMBA_ENABLE_CUDASIM" not in os.environ:
        pytest.fail("tests/conftest.py did not switch the CUDA simulator on")
    assert cuda_tick.is_simulator() == (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1")


def test_chunk_bounds_partition_the_program():
    for total in (0, 1, 5, 64, 65):
        for chunk in (1, 3, 64, 1000):
            bounds = chunk_bounds(total, chunk)
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            assert all(0 < t1 - t0 <= chunk for t0, t1 in bounds) or bounds == [(0, 0)]
    with pytest.raises(ValueError, match="chunk_ticks must be positive"):
        chunk_bounds(10, 0)


@profiles
@given(seed=st.integers(0, 2**32 - 1), chunk=st.sampled_from([1, 2, 3, 5, 1000]))
@settings(max_examples=6 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_programs_equal_compiled(profile, seed, chunk):
    """Random zones, per-zone policies and programs (every TM 1-5 feature), any chunking."""
    kind, bmt, zones, prog = random_case(seed, 2)
    assert_equals_compiled(kind, bmt, zones, prog, profile, chunk, f"seed {seed}")


@profiles
def test_phase_ends_at_chunk_boundaries(profile):
    """Phases of no ticks (first, between, last) and kept blocks freed at a phase's end,
    with chunk boundaries on, before and after every phase end: as one compiled run."""
    kind, bmt, zones, _ = random_case(21, 2, nr_blocks=8)
    zones = dataclasses.replace(zones, attempt_order=np.array([2, 4]))
    grab = Phase(
        "grab", 3, frees_per_tick=16, allocs_per_tick=64, attempt_every=1,
        attempt_gfp=GFP_NOWAIT, keep=True,
    )  # fmt: skip
    prog = Program(
        phases=(
            Phase("empty0", 0, min_free_kbytes=512),
            grab,
            Phase("empty1", 0, drop_caches=True),
            Phase("load", 2, frees_per_tick=64, allocs_per_tick=16, attempt_every=1),
            Phase("grab2", 2, allocs_per_tick=8, attempt_every=1, keep=True),
            Phase("empty2", 0),
        ),
        sample_every=2,
    )
    cpu = run_program_compiled(kind, bmt, zones, prog, profile)
    assert cpu.counters[:, 1, COUNTER_INDEX["alloc_success"]].min() > 0  # blocks were kept
    for chunk in (1, 2, 3, 4, 7):
        assert_equals_compiled(kind, bmt, zones, prog, profile, chunk, "zero-tick phases")


@profiles
def test_batch_invariance(profile):
    """A zone's result does not depend on its neighbours, their order or duplicates."""
    kind, bmt, zones, prog = mixed_case(11)
    batch = run_program_cuda(kind, bmt, zones, prog, profile, chunk_ticks=2)
    assert differences(batch, run_program_compiled(kind, bmt, zones, prog, profile)) == []
    perm = [3, 0, 3]
    again = run_program_cuda(kind[perm], bmt[perm], zones[perm], prog, profile, chunk_ticks=3)
    for i, z in enumerate(perm):
        assert differences(zone_row(again, i), zone_row(batch, z)) == [], f"perm row {i}"


class _Recorder:
    """Wraps a kernel to log its launches, in order with the device-to-host copies."""

    def __init__(self, kernel, log, name):
        self.kernel, self.log, self.name = kernel, log, name

    def __getitem__(self, config):
        launch = self.kernel[config]

        def run(*args):
            ticks = tuple(a for a in args if isinstance(a, int))
            self.log.append((self.name, *ticks))
            return launch(*args)

        return run


def test_host_loop_is_one_launch_and_one_sample_copy_per_chunk(monkeypatch):
    """No host synchronisation inside a chunk: the loop is one kernel launch per chunk,
    then exactly the chunk's sample rows (3 copies), then the progress callback; the
    counters, attempts and state come back once, after the last chunk."""
    module = cuda_tick.device_module()
    log: list[tuple] = []
    for name in ("_init_zones_kernel", "_run_ticks_kernel"):
        monkeypatch.setattr(module, name, _Recorder(getattr(module, name), log, name))
    device_array = type(module.cuda.to_device(np.zeros(1)))
    real_copy = device_array.copy_to_host

    def copy_to_host(self, *args, **kwargs):
        log.append(("copy", self.shape[0]))
        return real_copy(self, *args, **kwargs)

    monkeypatch.setattr(device_array, "copy_to_host", copy_to_host)
    kind, bmt, zones, _ = random_case(3, 2)
    load = Phase("load", 3, frees_per_tick=16, allocs_per_tick=16, attempt_every=1)
    prog = Program(phases=(load,), sample_every=2)  # 3 ticks: one sample, after tick 1
    calls = []
    res = run_program_cuda(
        kind, bmt, zones, prog, "v6_19", chunk_ticks=1, progress=lambda t, n: calls.append((t, n))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    rows = prog.n_samples
    assert log[:2] == [("_init_zones_kernel",), ("_run_ticks_kernel", 0, 1)]
    assert log[2:6] == [("_run_ticks_kernel", 1, 2), ("copy", 1), ("copy", 1), ("copy", 1)]
    assert log[6] == ("_run_ticks_kernel", 2, 3)
    finals = log[7:]
    assert all(entry[0] == "copy" for entry in finals)
    assert len(finals) == 16 + 2  # the zone state tuple, then counters and attempts
    assert res.buddyinfo.shape[1] == rows == 1


def test_unsupported_and_bad_input_rejected_before_the_device(monkeypatch):
    """The compiled engine's checks, naming run_program_cuda, before anything is launched."""

    def refuse():
        raise AssertionError("the device was used before the input was rejected")

    monkeypatch.setattr(cuda_tick, "device_module", refuse)
    kind, bmt, zones, prog = random_case(5, 2, nr_blocks=4)
    cma = bmt.copy()
    cma[:, -2:] = MT_CMA
    with pytest.raises(ValueError, match=r"run_program_cuda does not support MIGRATE_CMA"):
        run_program_cuda(kind, cma, zones, prog, "v6_19")
    with pytest.raises(ValueError, match=r"multiple of 1024"):
        run_program_cuda(kind[:, :512], bmt[:, :1], zones, prog, "v6_19")
    with pytest.raises(ValueError, match=r"chunk_ticks must be positive"):
        run_program_cuda(kind, bmt, zones, prog, "v6_19", chunk_ticks=0)
    with pytest.raises(ValueError, match=r"threads_per_block must be in 1..1024"):
        run_program_cuda(kind, bmt, zones, prog, "v6_19", threads_per_block=2048)


def test_inputs_are_not_written():
    kind, bmt, zones, prog = random_case(4, 2)
    k0, b0 = kind.copy(), bmt.copy()
    run_program_cuda(kind, bmt, zones, prog, KernelProfile.V6_19)
    np.testing.assert_array_equal(kind, k0)
    np.testing.assert_array_equal(bmt, b0)


def test_kernels_compile_to_ptx_for_sm90(tmp_path):
    """NVVM compiles both kernels for sm_90 (H100/H200) with Numba's CUDA typing: the part
    of the check the simulator cannot make. A separate process: the simulator and the real
    target cannot share one."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cuda_tick", "--ptx", str(tmp_path), "--cc", "9.0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("init_zones_kernel", "run_ticks_kernel"):
        ptx = (tmp_path / f"{name}.ptx").read_text()
        assert ".target sm_90" in ptx
        assert f".entry _Z{len(name)}" in ptx or name in ptx, f"no {name} entry in its PTX"
        assert "vprintf" not in ptx  # no leftover debug printing in the device code


def test_bench_runs_and_checks_equality(monkeypatch, capsys):
    """sweep.cuda_tick --bench's code path (on the simulator here: its timings mean
    nothing, its equality check does)."""
    monkeypatch.setattr(cuda_tick, "unavailable", lambda: None)
    rows = cuda_tick.bench(zone_counts=(2,), nr_pages=1024, ticks=2, threads_per_block=(32,))
    assert [(r["zones"], r["threads_per_block"], r["exact"]) for r in rows] == [(2, 32, True)]
    assert rows[0]["ratio"] > 0
    assert "identical" in capsys.readouterr().out
