"""The compiled tick engine on a GPU: one CUDA thread per zone, no host synchronisation
inside the tick loop.

``run_program_cuda`` runs sweep/compiled_tick.py's per-zone model (the port of the
reference ``tests/reference/tick.py``, in the kernel's function names: __free_one_page(),
__rmqueue_smallest(), compact_zone(), kcompactd_do_work(), balance_pgdat(), ...) on a
GPU through Numba's CUDA target. It is the same source compiled for another target:
this module executes compiled_tick.py a second time with ``_TARGET = "cuda"``, which
makes every helper a CUDA device function, and launches its two kernels,
``_init_zones_kernel`` (the boot state of every zone) and ``_run_ticks_kernel`` (global
ticks t0 <= t < t1 of every zone). Thread z of the grid runs zone z from start to end of
the chunk on the device: the branches that the batched engine (kernels/tick.py) turns
into data-dependent subsets, each a host read-back on CuPy (sweep/synccount.py counts
them: 55 per tick on the benchmark pass, about 3,000 on stress_highalloc), are ordinary
control flow inside one thread.

The host loop is one kernel launch per chunk of ``chunk_ticks`` ticks and one copy of
that chunk's sampled rows (buddyinfo, NR_FREE, free regions; the samples are time-major
on the device, so a chunk's rows are contiguous), then the progress callback. Counters,
attempts and the final state come back once, at the end. Nothing inside a chunk waits
for the host.

The results are those of ``run_program_compiled`` and so of the reference and of
``kernels.tick.run_program``, every field (tests/test_cuda_tick.py): random numbers are
kernels/rng.py's counter-based hashes, integer state only, no atomics, no floating point.
The features are those of the compiled engine (TM 1-5, ``compiled_tick.unsupported``).

Without a GPU, Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before
``numba.cuda`` is first imported) runs the same kernels as Python threads; the tests use
it on small zones, and compile the kernels to PTX for sm_90 with NVVM where it is
installed. The simulator checks the control flow, not speed, and not CUDA's typing: that
is what the PTX compile is for.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from kernels.program import Program, TickResult, TickZones
from sweep import compiled_tick

THREADS_PER_BLOCK = 32  # one warp of zones per block
DEFAULT_CHUNK_TICKS = 256

_MODULE_NAME = "sweep._compiled_tick_cuda"


def device_module() -> ModuleType:
    """sweep/compiled_tick.py compiled for CUDA: its helpers as device functions and its
    ``_init_zones_kernel`` / ``_run_ticks_kernel`` (loaded once; Numba compiles a kernel
    at its first launch)."""
    module = sys.modules.get(_MODULE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, compiled_tick.__file__)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module._TARGET = "cuda"  # type: ignore[attr-defined]
        spec.loader.exec_module(module)
        sys.modules[_MODULE_NAME] = module
    return module


def is_simulator() -> bool:
    """Whether numba.cuda is Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def unavailable() -> str | None:
    """Why run_program_cuda cannot run on a GPU here, or None when it can."""
    try:
        from numba import cuda
    except ImportError as exc:
        return f"needs Numba ({exc}): pip install -e '.[numba]'"
    if is_simulator():
        return "numba.cuda is Numba's CUDA simulator here (NUMBA_ENABLE_CUDASIM=1)"
    if not cuda.is_available():
        return "no CUDA GPU (numba.cuda.is_available() is False)"
    return None


def chunk_bounds(total: int, chunk_ticks: int) -> list[tuple[int, int]]:
    """Consecutive tick ranges [t0, t1) covering [0, total); one empty range for an empty
    program, whose phases still end (compiled_tick.run_ticks)."""
    if chunk_ticks <= 0:
        raise ValueError(f"chunk_ticks must be positive, got {chunk_ticks}")
    if total == 0:
        return [(0, 0)]
    return [(t0, min(t0 + chunk_ticks, total)) for t0 in range(0, total, chunk_ticks)]


def _time_major(samples: np.ndarray) -> np.ndarray:
    """(Z, S, ...) samples as (S, Z, ...): a chunk's rows are then one contiguous block."""
    return np.ascontiguousarray(np.moveaxis(samples, 1, 0))


def run_program_cuda(
    kind: np.ndarray,
    block_mt: np.ndarray,
    zones: TickZones,
    program: Program,
    profile: Any,
    *,
    chunk_ticks: int = DEFAULT_CHUNK_TICKS,
    threads_per_block: int = THREADS_PER_BLOCK,
    progress: Callable[[int, int], None] | None = None,
) -> TickResult:
    """Run ``program`` on every zone of the batch on the GPU, one thread per zone.

    Inputs and result as ``compiled_tick.run_program_compiled`` (NumPy arrays in and out;
    the input is validated, and unsupported features refused with a ValueError, before
    anything reaches the device). ``progress(t1, total)`` is called after each chunk of
    ticks, once its samples are on the host.
    """
    if threads_per_block <= 0 or threads_per_block > 1024:
        raise ValueError(f"threads_per_block must be in 1..1024, got {threads_per_block}")
    b = compiled_tick.prepare(kind, block_mt, zones, program, profile, caller="run_program_cuda")
    bounds = chunk_bounds(program.n_ticks, chunk_ticks)
    module = device_module()
    cuda = module.cuda
    simulated = is_simulator()
    if simulated:
        # The simulator runs a block's threads as concurrent Python threads, and each of
        # its device-function calls patches the module's globals: one thread per block.
        threads_per_block = 1

    def to_device(host: np.ndarray) -> Any:
        if simulated and host.dtype.kind in "iu" and host.dtype.itemsize < 8:
            # Simulated, the device code is Python on NumPy scalars, whose int8 arithmetic
            # wraps (NEP 50: 1 << np.int8(9) == 0) where Numba's typing widens to int64.
            host = host.astype(np.int64)
        return cuda.to_device(host)

    def to_host(device: Any, host: np.ndarray) -> None:
        host[...] = device.copy_to_host()

    state = [to_device(a) for a in b.state]
    seeds, ph, wm = (to_device(a) for a in (b.seeds, b.ph, b.wm))
    held, scratch, bases, status = (to_device(a) for a in (b.held, b.scratch, b.bases, b.status))
    counters, attempts = to_device(b.counters), to_device(b.attempts)
    # Time-major samples: sample s of every zone is row s.
    hosts = (b.buddyinfo, b.nr_free, b.regions)
    samples = [to_device(_time_major(host)) for host in hosts]

    z_n = b.state[0].shape[0]
    grid = (max(z_n, 1) + threads_per_block - 1) // threads_per_block
    with _simulated_wraparound(simulated):
        module._init_zones_kernel[grid, threads_per_block](*state, seeds, wm, held, bases)
        every = program.sample_every
        for t0, t1 in bounds:
            module._run_ticks_kernel[grid, threads_per_block](
                *state, ph, wm, t0, t1, counters, attempts, *samples, held, scratch, bases, status
            )
            s0, s1 = t0 // every, t1 // every  # samples: ticks t with t % every == every - 1
            if s1 > s0:
                for device, host in zip(samples, hosts, strict=True):
                    np.moveaxis(host, 1, 0)[s0:s1] = device[s0:s1].copy_to_host()
            if progress is not None:
                progress(t1, program.n_ticks)

    for device, host in zip(state, b.state, strict=True):
        to_host(device, host)
    to_host(counters, b.counters)
    to_host(attempts, b.attempts)
    return compiled_tick.tick_result(b)


@contextlib.contextmanager
def _simulated_wraparound(simulated: bool) -> Iterator[None]:
    """Simulated, the uint64 hash (splitmix64) wraps as it does compiled, but NumPy scalars
    warn on every wrap; the warning filter is process-wide, so it covers the simulator's
    threads too."""
    if not simulated:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        yield


@contextlib.contextmanager
def _assumed_device(cc: tuple[int, int]) -> Iterator[None]:
    """Numba compiles a device function for the current device's compute capability,
    even under compile_ptx(); with no GPU there is none, so it is told ``cc``."""
    from numba import cuda

    if cuda.is_available():  # a real device answers for itself
        yield
        return
    import numba.cuda.dispatcher as dispatcher

    class Device:
        compute_capability = cc

    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: Device
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def kernel_signatures() -> dict[str, tuple[Any, ...]]:
    """The argument types run_program_cuda() launches each kernel with."""
    import numba

    from sweep.bench_tick import _inputs, warmup_program

    kind, block_mt, zones = _inputs(2, 1024, 0)
    b = compiled_tick.prepare(kind, block_mt, zones, warmup_program(1024), "v6_19")
    samples = [_time_major(a) for a in (b.buddyinfo, b.nr_free, b.regions)]
    state = [numba.typeof(a) for a in b.state]
    types = lambda *arrays: [numba.typeof(a) for a in arrays]  # noqa: E731
    t = numba.types.int64
    return {
        "_init_zones_kernel": (*state, *types(b.seeds, b.wm, b.held, b.bases)),
        "_run_ticks_kernel": (
            *state,
            *types(b.ph, b.wm),
            t,
            t,
            *types(b.counters, b.attempts, *samples),
            *types(b.held, b.scratch, b.bases, b.status),
        ),  # fmt: skip
    }


def compile_ptx(cc: tuple[int, int] = (9, 0)) -> dict[str, str]:
    """Both kernels compiled to PTX for compute capability ``cc`` by NVVM, no GPU needed:
    the check that the device code is valid for Numba's CUDA target (its typing and
    lowering), which the simulator, running it as Python, does not make."""
    if is_simulator():
        raise RuntimeError("compile_ptx needs numba.cuda itself: set NUMBA_ENABLE_CUDASIM=0")
    module = device_module()
    out = {}
    with _assumed_device(cc):
        for name, signature in kernel_signatures().items():
            kernel = getattr(module, name)
            ptx, _ = module.cuda.compile_ptx(kernel.py_func, signature, cc=cc)
            out[name] = ptx
    return out


def _nvvm_from_wheel() -> None:
    """CUDA_HOME for NVVM from the nvidia-cuda-nvcc-cu12 wheel, unless it is set."""
    if "CUDA_HOME" in os.environ or "CUDA_PATH" in os.environ:
        return
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations or () if spec else ():
        home = Path(root) / "cuda_nvcc"
        if (home / "nvvm").is_dir():
            os.environ["CUDA_HOME"] = str(home)
            return


def bench(
    zone_counts: tuple[int, ...] = (1000, 4000, 16000),
    nr_pages: int = 4096,
    ticks: int = 20,
    profile: str = "v6_19",
    threads_per_block: tuple[int, ...] = (32, 128),
) -> list[dict[str, Any]]:
    """Zone-ticks per second of run_program_cuda against run_program_compiled (every CPU
    thread) on the same zones in the same run, results checked equal: sweep.bench_tick's
    stress pass (load + one nowait order-9 attempt per tick) after its warm-up, both
    whole calls (the GPU's include the copies to and from the device)."""
    import numba

    from sweep.bench_tick import _inputs, tick_program, warmup_program
    from sweep.bench_tick import results_equal as same

    why = unavailable()
    if why:
        raise RuntimeError(f"run_program_cuda cannot run here: {why}")
    kind, block_mt, zones = _inputs(max(zone_counts), nr_pages, 0)
    warm = compiled_tick.run_program_compiled(
        kind, block_mt, zones, warmup_program(nr_pages), profile
    )
    kind, block_mt = warm.kind, warm.block_mt
    program = tick_program(nr_pages, ticks, 64)
    t0 = time.perf_counter()
    run_program_cuda(kind[:1], block_mt[:1], zones[:1], tick_program(nr_pages, 1, 64), profile)
    first_s = time.perf_counter() - t0
    rows = []
    for z_n in zone_counts:
        k, b, zs = kind[:z_n], block_mt[:z_n], zones[:z_n]
        t0 = time.perf_counter()
        cpu = compiled_tick.run_program_compiled(k, b, zs, program, profile)
        cpu_s = time.perf_counter() - t0
        for tpb in threads_per_block:
            t0 = time.perf_counter()
            gpu = run_program_cuda(k, b, zs, program, profile, threads_per_block=tpb)
            gpu_s = time.perf_counter() - t0
            rows.append(
                dict(
                    zones=z_n,
                    pages_per_zone=nr_pages,
                    ticks=ticks,
                    profile=profile,
                    threads_per_block=tpb,
                    cuda_s=gpu_s,
                    cuda_first_call_s=first_s,
                    cuda_zone_ticks_per_s=z_n * ticks / gpu_s,
                    compiled_s=cpu_s,
                    compiled_threads=numba.get_num_threads(),
                    compiled_zone_ticks_per_s=z_n * ticks / cpu_s,
                    ratio=cpu_s / gpu_s,
                    exact=bool(same(gpu, cpu)),
                )  # fmt: skip
            )
            r = rows[-1]
            print(
                f"{z_n:6d} zones x {nr_pages} pages, {ticks} ticks, {tpb:4d} threads/block: "
                f"cuda {r['cuda_zone_ticks_per_s']:12,.0f} zone-ticks/s, compiled "
                f"({r['compiled_threads']} threads) {r['compiled_zone_ticks_per_s']:12,.0f}: "
                f"{r['ratio']:.2f}x, {'identical' if r['exact'] else 'MISMATCH'}",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.cuda_tick",
        description="The GPU tick engine: compile its kernels to PTX (NVVM only, no GPU), "
        "or time it against the compiled CPU engine (on a GPU).",
    )
    parser.add_argument("--ptx", type=Path, help="compile to PTX into this folder")
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0: H100/H200)")
    parser.add_argument("--bench", type=Path, help="time on the GPU; write bench JSON here")
    parser.add_argument("--zones", type=int, nargs="+", default=[1000, 4000, 16000])
    args = parser.parse_args(argv)
    if (args.ptx is None) == (args.bench is None):
        parser.error("give one of --ptx DIR or --bench DIR")
    if args.bench is not None:
        import json

        rows = bench(tuple(args.zones))
        args.bench.mkdir(parents=True, exist_ok=True)
        path = args.bench / "bench-cuda-tick.json"
        path.write_text(json.dumps({"benchmark": "cuda_tick", "rows": rows}, indent=1))
        print(f"wrote {path}")
        return 0 if all(r["exact"] for r in rows) else 1
    try:
        cc = tuple(int(x) for x in args.cc.split("."))
        assert len(cc) == 2
    except (ValueError, AssertionError):
        parser.error(f"--cc must look like 9.0, got {args.cc!r}")
    _nvvm_from_wheel()
    start = time.perf_counter()
    ptx = compile_ptx(cc)  # type: ignore[arg-type]
    args.ptx.mkdir(parents=True, exist_ok=True)
    for name, text in ptx.items():
        (args.ptx / f"{name.strip('_')}.ptx").write_text(text)
        print(f"{name}: {len(text)} bytes of PTX for sm_{cc[0]}{cc[1]}")
    print(f"compiled in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
