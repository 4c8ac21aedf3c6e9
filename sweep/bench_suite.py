"""The benchmark suite: ``python -m sweep.bench suite [--quick] [--cases ...]``.

One run measures the backends' copy bandwidth, then every case with every baseline that
applies to it, on the same zones:

- ``reference``: the per-zone Python oracle (tests/reference/), on a subset of the zones
  (its rate is per page of the zones it ran; each row says how many);
- ``compiled``: ``sweep.compiled.compact_node_compiled``, a compiled sequential simulator
  of the same model, parallel over zones (compaction cases; its thread count is shown);
  for the tick case ``sweep.compiled_tick.run_program_compiled``, parallel over zones
  (``compiled``) and on one thread (``compiled-1t``);
- ``numpy``: the batched array kernels on NumPy (one core);
- ``cupy``: the same kernels on CuPy when kernels.backend finds a GPU.

Each row gives pages/s, zone-compactions/s (or zone-ticks/s), the ratio against every
other implementation of its case, the bytes a pass over the work must move per page for
its layout (performance-notes.md 3.2) and the bandwidth floor, bytes / measured copy
bandwidth, with how far the time is above it. Every fast path is checked against a
baseline of the same run (pages and every counter); a mismatch makes the exit status 1.
The record goes to ``outputs/bench/suite-<time>.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernels.backend import gpu_available, to_numpy
from kernels.buddy import buddyinfo
from kernels.compaction import CompactCounters, CompactParams, _planes, compact_node
from kernels.layout import (
    BUDDYINFO_BYTES_PER_PAGE,
    BYTES_PER_PAGE,
    COMPACT_PEAK_BYTES_PER_PAGE,
    buddyinfo_packed,
    buddyinfo_words,
    compact_node_chunked,
    compact_peak_bytes,
    compaction_planes,
    measure_compact_peak,
    pack_planes,
    zones_per_chunk,
)
from kernels.zone import PAGEBLOCK_NR_PAGES, KernelProfile, ZoneState
from sweep.bench import (
    GIB_PAGES,
    _cpu_model,
    _machine,
    _reference_repo_path,
    _zones,
    bench_zone_params,
)
from sweep.bench_tick import _inputs, results_equal, tick_program, warmup_program
from sweep.memory import keep_freed_memory

# Bytes per page a pass over the work must move (performance-notes.md 3.2): compaction
# reads the state once (pass 1), reads and writes it once (pass 2) and moves ~40 B per
# pageblock in the fused plan (0.08 B/page); buddyinfo reads the state once.
COMPACTION_BYTES_PER_PAGE = {"uint8": 3.08, "4-bit": 1.58, "bit-planes": 0.95}
BUDDYINFO_BYTES = {"uint8": 1.0, "bit-planes": BUDDYINFO_BYTES_PER_PAGE}
# Tick floor per zone-tick (performance-notes.md 4.4): one 64-byte sector per page event
# (allocation or free), the attempt's 2**order pages written once, ~40 B per pageblock.
TICK_SECTOR_BYTES = 64
TICK_BLOCK_BYTES = 40
# Copy bandwidths (read + write) assumed in performance-notes.md 3.2 for the GPU floors.
NOTES_GPU_COPY_BW = {"H100": 3.0e12, "H200": 4.3e12}

CASES = (
    "compaction-1x128g",
    "compaction-64x1g",
    "compaction-1000x128g",
    "buddyinfo-1x128g",
    "tick-stress_highalloc-1000z",
)
# (zones, pages per zone) for the full and the --quick run.
SHAPES = {
    "compaction-1x128g": ((1, 128 * GIB_PAGES), (1, GIB_PAGES)),
    "compaction-64x1g": ((64, GIB_PAGES), (16, GIB_PAGES // 16)),
    "compaction-1000x128g": ((1000, 128 * GIB_PAGES), (64, GIB_PAGES)),
    "buddyinfo-1x128g": ((1, 128 * GIB_PAGES), (1, GIB_PAGES)),
    # 1000 zones of 16 MiB: 4 M pages, a few hundred MB with the engine's per-page arrays
    "tick-stress_highalloc-1000z": ((1000, 4096), (64, 4096)),
}
GPU_ONLY = {"compaction-1000x128g"}


class Mismatch(Exception):
    """A fast path disagreed with its baseline."""


@dataclasses.dataclass
class Suite:
    quick: bool
    profiles: list[KernelProfile]
    repeat: int
    reference_zones: int
    reference_max_pages: int
    seed: int
    xp_gpu: Any  # the cupy module when a GPU is usable, else None
    bandwidth: dict[str, float]  # backend -> bytes/s (read + write)
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    mismatches: list[str] = dataclasses.field(default_factory=list)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Seconds(float):
    """Wall seconds of a timed call, with the process CPU seconds it used as ``cpu``
    (on a shared machine, pages per CPU second is the steadier per-core rate)."""

    cpu: float

    def __new__(cls, wall: float, cpu: float) -> Seconds:
        obj = super().__new__(cls, wall)
        obj.cpu = cpu
        return obj


def _best(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] | None = None):
    """(best wall time of ``repeat`` calls as :class:`Seconds`, last result); ``sync``
    waits for a device."""
    times, out = [], None
    for _ in range(repeat):
        out = None  # drop the last result first: a GPU batch's output is tens of GiB
        if sync:
            sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if sync:
            sync()
        times.append(Seconds(time.perf_counter() - t0, time.process_time() - c0))
    return min(times), out


def _cupy_sync(cp: Any) -> Callable[[], None]:
    return lambda: cp.cuda.Device().synchronize()


# --------------------------------------------------------------------------------------
# device and bandwidth


def copy_bandwidth(xp: Any, nbytes: int, repeat: int = 5) -> float:
    """Best read+write copy bandwidth of ``xp`` (bytes/s) on a ``nbytes`` uint8 array."""
    src = xp.ones(nbytes, dtype=xp.uint8)
    dst = xp.empty_like(src)
    dst[...] = src  # first touch
    sync = _cupy_sync(xp) if xp is not np else None
    t, _ = _best(lambda: xp.copyto(dst, src), repeat, sync)
    return 2 * nbytes / t


def device_info(xp_gpu: Any) -> dict[str, Any]:
    info = dict(_machine(), cpu=_cpu_model(), cores=os.cpu_count())
    try:
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (ValueError, OSError):
        pass
    if xp_gpu is not None:
        props = xp_gpu.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
        info["cupy"] = xp_gpu.__version__
    else:
        info["gpu"] = None
    return info


def _compiled() -> tuple[Callable[..., Any] | None, str]:
    """sweep.compiled.compact_node_compiled and its thread count, or None and why not."""
    try:
        from sweep.compiled import compact_node_compiled
    except Exception as exc:  # not written yet, or Numba missing: report, do not fail
        return None, f"unavailable ({type(exc).__name__}: {exc})"
    threads = "?"
    if "numba" in sys.modules:
        threads = str(sys.modules["numba"].get_num_threads())
    return compact_node_compiled, threads


def _compiled_tick() -> tuple[Callable[..., Any] | None, str]:
    """sweep.compiled_tick.run_program_compiled and its thread count, or None and why not."""
    try:
        from sweep.compiled_tick import run_program_compiled
    except Exception as exc:  # Numba missing: report, do not fail
        return None, f"unavailable ({type(exc).__name__}: {exc})"
    return run_program_compiled, str(sys.modules["numba"].get_num_threads())


# --------------------------------------------------------------------------------------
# rows


def _row(
    suite: Suite,
    case: str,
    profile: str,
    impl: str,
    *,
    zones: int,
    pages_per_zone: int,
    seconds: float,
    unit: str,
    bytes_per_unit: float,
    backend: str,
    **extra: Any,
) -> dict[str, Any]:
    """One measured row; ``unit`` is "zone-compactions", "buddyinfo reads" or "zone-ticks"."""
    pages = zones * pages_per_zone
    work = zones * extra.pop("ticks", 1)
    if isinstance(seconds, Seconds):
        extra["cpu_s"] = seconds.cpu
    seconds = float(seconds)
    bw = suite.bandwidth[backend]
    moved = bytes_per_unit * (work if unit == "zone-ticks" else pages)
    floor_s = moved / bw
    row = dict(
        case=case,
        profile=profile,
        impl=impl,
        backend=backend,
        zones=zones,
        pages_per_zone=pages_per_zone,
        seconds=seconds,
        pages_per_s=pages / seconds if unit != "zone-ticks" else None,
        unit=unit,
        per_s=work / seconds,
        bytes_per_unit=bytes_per_unit,
        bytes_moved=moved,
        floor_s=floor_s,
        x_floor=seconds / floor_s,
        **extra,
    )
    suite.rows.append(row)
    return row


def _ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's rate over every other implementation's rate in its case and profile:
    pages/s where the unit is a whole-zone pass (so a reference run on other zone sizes
    compares per page), zone-ticks/s for the tick loop."""
    rate = lambda r: r["pages_per_s"] or r["per_s"]  # noqa: E731
    for r in rows:
        r["ratio_vs"] = {o["impl"]: rate(r) / rate(o) for o in rows if o is not r}


def _same_compaction(a: tuple[ZoneState, CompactCounters], b, zones: slice) -> bool:
    sa, ca = a
    sb, cb = b
    if not np.array_equal(to_numpy(sa.page_state[zones]), to_numpy(sb.page_state[zones])):
        return False  # sliced before the copy: a GPU batch need not fit host memory
    return all(
        np.array_equal(to_numpy(getattr(ca, f.name)[zones]), to_numpy(getattr(cb, f.name)[zones]))
        for f in dataclasses.fields(CompactCounters)
    )


def _check(suite: Suite, ok: bool, what: str) -> bool:
    if not ok:
        suite.mismatches.append(what)
        _log(f"MISMATCH: {what}")
    return bool(ok)


# --------------------------------------------------------------------------------------
# compaction


def _gpu_zones(cp: Any, nr_zones: int, nr_pages: int, seed: int) -> ZoneState:
    """sweep.bench._zones' layout built on the GPU, in groups of zones (bounded memory)."""
    from kernels.fragment import make_zone_state
    from kernels.rng import zone_seed

    page_state = cp.empty((nr_zones, nr_pages), dtype=cp.uint8)
    free, _ = cp.cuda.runtime.memGetInfo()
    group = max(1, int(0.25 * free) // (nr_pages * 32))  # fragment's temporaries: unmeasured
    mts, wm = [], []
    for lo in range(0, nr_zones, group):
        hi = min(lo + group, nr_zones)
        params = bench_zone_params(nr_pages, zone_seed(seed, np.arange(lo, hi)))
        part = make_zone_state(cp, params, 65536, 10)
        page_state[lo:hi] = part.page_state
        mts.append(part.pageblock_migratetype)
        wm.append((part.wmark_min, part.wmark_low, part.wmark_high))
        del part
    return ZoneState(
        page_state,
        cp.concatenate(mts),
        *(cp.concatenate([w[i] for w in wm]) for i in range(3)),
    )


def bench_compaction_case(suite: Suite, case: str) -> None:
    full, quick = SHAPES[case]
    nr_zones, nr_pages = quick if suite.quick else full
    cp = suite.xp_gpu
    gpu_only = case in GPU_ONLY
    if gpu_only and cp is None:
        _gpu_only_note(suite, case, *full)
        return
    compiled, threads = _compiled()
    # Zones the CPU paths run: all of them, or (GPU-only case) the first few, copied back.
    cpu_zones = min(nr_zones, 4) if gpu_only else nr_zones
    _log(f"{case}: building {nr_zones} x {nr_pages} pages ...")
    t0 = time.perf_counter()
    if gpu_only:
        gstate = _gpu_zones(cp, nr_zones, nr_pages, suite.seed)
        host = ZoneState(*(to_numpy(getattr(gstate, f.name)[:cpu_zones]) for f in _fields()))
    else:
        host = _zones(nr_zones, nr_pages, suite.seed)
        gstate = None
    init_s = time.perf_counter() - t0
    for profile in suite.profiles:
        pname = profile.name.lower()
        params = CompactParams(profile, np.ones(cpu_zones, dtype=bool))
        rows: list[dict[str, Any]] = []
        common = dict(pages_per_zone=nr_pages, unit="zone-compactions")
        layout_b = COMPACTION_BYTES_PER_PAGE["uint8"]
        _log(f"{case} {pname}: numpy ({cpu_zones} zones) ...")
        t_np, np_out = _best(lambda p=params: compact_node(host, p), suite.repeat)
        rows.append(
            _row(
                suite,
                case,
                pname,
                "numpy",
                zones=cpu_zones,
                seconds=t_np,
                bytes_per_unit=layout_b,
                backend="numpy",
                init_s=init_s,
                exact="baseline",
                pgmigrate_success=int(np_out[1].pgmigrate_success.sum()),
                **common,
            )
        )
        _pass1_note(suite, case, pname, host, profile)
        if compiled is not None:
            _log(f"{case} {pname}: compiled (first call compiles) ...")
            t0 = time.perf_counter()
            first = compiled(host, params, parallel=True)
            warm_s = time.perf_counter() - t0
            t_c, c_out = _best(lambda p=params: compiled(host, p, parallel=True), suite.repeat)
            ok = _check(
                suite,
                _same_compaction(c_out, np_out, slice(None))
                and _same_compaction(first, np_out, slice(None)),
                f"{case} {pname}: compiled != numpy",
            )
            rows.append(
                _row(
                    suite,
                    case,
                    pname,
                    "compiled",
                    zones=cpu_zones,
                    seconds=t_c,
                    bytes_per_unit=layout_b,
                    backend="numpy",
                    threads=threads,
                    first_call_s=warm_s,
                    exact="== numpy" if ok else "MISMATCH vs numpy",
                    **common,
                )
            )
        else:
            suite.notes.append(f"{case} {pname}: compiled baseline {threads}")
        # The reference takes ~80 s per 128 GiB zone; the GPU-only case leaves it out
        # (its CPU rows equal compiled and NumPy, which equal the reference elsewhere).
        k = 0 if gpu_only else min(suite.reference_zones, cpu_zones)
        if k > 0 and nr_pages > suite.reference_max_pages:
            # Too slow on a zone this size (~80 s per 128 GiB on an idle core): run it on a
            # zone of the same layout of reference_max_pages pages, numpy beside it.
            small = _zones(k, suite.reference_max_pages, suite.seed)
            small_params = CompactParams(profile, np.ones(k, dtype=bool))
            row = _reference_compaction(
                suite, case, pname, profile, small, compact_node(small, small_params), k,
                dict(common, pages_per_zone=suite.reference_max_pages),
            )  # fmt: skip
            row["note"] = (
                f"stand-in zones of {_size(suite.reference_max_pages)} (same layout); "
                "the case's own zones are checked compiled == numpy"
            )
            rows.append(row)
        elif k > 0:
            rows.append(_reference_compaction(suite, case, pname, profile, host, np_out, k, common))
        if cp is not None:
            rows.append(
                _cupy_compaction(
                    suite, case, pname, profile, host, gstate, np_out, nr_zones, cpu_zones, common
                )
            )
        _ratios(rows)
    if gpu_only:
        _gpu_batch_buddyinfo(suite, case, gstate, host)


def _gpu_batch_buddyinfo(suite: Suite, case: str, gstate: ZoneState, host: ZoneState) -> None:
    """buddyinfo of the whole GPU batch (performance-notes.md 3.2: <= 15 ms on an H100
    for 1000 x 128 GiB): the uint8 path in zone groups (its compare-and-pack temporaries
    of a 31 GiB batch would not fit beside it), and the free plane read in one call."""
    from kernels.buddy import free_bitmap_words

    cp = suite.xp_gpu
    s = gstate.page_state
    z_n, n = s.shape
    name = case.replace("compaction", "buddyinfo")
    free, _ = cp.cuda.runtime.memGetInfo()
    free += cp.get_default_memory_pool().free_bytes()
    group = max(1, int(0.25 * free) // (2 * n))
    bounds = [(lo, min(lo + group, z_n)) for lo in range(0, z_n, group)]
    sync = _cupy_sync(cp)
    want = buddyinfo(host.page_state)
    k = host.nr_zones

    def grouped():
        return cp.concatenate([buddyinfo(s[lo:hi]) for lo, hi in bounds])

    grouped()  # warm-up: kernel compilation
    t_u8, bi = _best(grouped, suite.repeat, sync)
    words = cp.concatenate([free_bitmap_words(s[lo:hi]) for lo, hi in bounds])
    buddyinfo_words(words)
    t_w, bi_w = _best(lambda: buddyinfo_words(words), suite.repeat, sync)
    ok_u8 = _check(suite, np.array_equal(to_numpy(bi[:k]), want), f"{name}: cupy != numpy")
    ok_w = _check(
        suite, np.array_equal(to_numpy(bi_w), to_numpy(bi)), f"{name}: free plane != uint8"
    )
    common = dict(zones=z_n, pages_per_zone=n, unit="buddyinfo reads", backend="cupy")
    rows = [
        _row(
            suite,
            name,
            "-",
            "cupy uint8",
            seconds=t_u8,
            bytes_per_unit=BUDDYINFO_BYTES["uint8"],
            exact=f"== numpy on {k} zones" if ok_u8 else "MISMATCH",
            note=f"{len(bounds)} calls of <= {group} zones",
            **common,
        ),
        _row(
            suite,
            name,
            "-",
            "cupy free plane",
            seconds=t_w,
            bytes_per_unit=BUDDYINFO_BYTES["bit-planes"],
            exact="== cupy uint8" if ok_w else "MISMATCH",
            **common,
        ),
    ]
    _ratios(rows)


def _pass1_note(suite: Suite, case: str, pname: str, host: ZoneState, profile) -> None:
    """How much of compact_node is page pass 1, and what it costs from bit planes."""
    v6 = profile == KernelProfile.V6_19
    skip = np.ones(host.nr_zones, dtype=bool)
    packed = pack_planes(host.page_state)
    t_u8, want = _best(lambda: _planes(np, host.page_state, v6, skip), suite.repeat)
    t_pk, got = _best(lambda: compaction_planes(packed, v6, skip), suite.repeat)
    _check(
        suite,
        all(np.array_equal(got[k], want[k]) for k in want),
        f"{case} {pname}: compaction_planes != compact_node's page pass 1",
    )
    suite.notes.append(
        f"{case} {pname}: compact_node's page pass 1 (uint8 -> bit planes) took "
        f"{_time(t_u8)}; the same planes from a bit-plane state (kernels.layout."
        f"compaction_planes, checked equal) {_time(t_pk)}"
    )


def _fields():
    return dataclasses.fields(ZoneState)


def _reference_compaction(suite, case, pname, profile, host, np_out, k, common):
    _reference_repo_path()
    from tests.reference.compaction import compact_zone

    same = True
    t_total = 0.0
    for z in range(k):
        _log(f"{case} {pname}: reference zone {z + 1}/{k} ...")
        t0 = time.perf_counter()
        ref_state, ref_c = compact_zone(
            host.page_state[z], host.pageblock_migratetype[z], profile, True
        )
        t_total += time.perf_counter() - t0
        mine = {f.name: int(getattr(np_out[1], f.name)[z]) for f in dataclasses.fields(ref_c)}
        same &= dataclasses.asdict(ref_c) == mine and np.array_equal(
            np.asarray(ref_state, np.uint8), np_out[0].page_state[z]
        )
    ok = _check(suite, same, f"{case} {pname}: numpy != reference on {k} zone(s)")
    return _row(
        suite,
        case,
        pname,
        "reference",
        zones=k,
        seconds=t_total,
        bytes_per_unit=COMPACTION_BYTES_PER_PAGE["uint8"],
        backend="numpy",
        exact=f"numpy == reference on {k} zone(s)" if ok else "MISMATCH",
        **common,
    )


def _cupy_compaction(
    suite, case, pname, profile, host, gstate, np_out, nr_zones, cpu_zones, common
):
    cp = suite.xp_gpu
    if gstate is None:
        gstate = ZoneState(*(cp.asarray(getattr(host, f.name)) for f in _fields()))
    params = CompactParams(profile, cp.ones(nr_zones, dtype=bool))
    free, _total = cp.cuda.runtime.memGetInfo()
    free += cp.get_default_memory_pool().free_bytes()
    budget = int(0.6 * free)
    if compact_peak_bytes(nr_zones, host.nr_pages) > budget:  # chunked: result array first
        budget = int(0.6 * (free - nr_zones * host.nr_pages))
    _log(f"{case} {pname}: cupy ({nr_zones} zones, working-memory budget {budget / 2**30:.1f} GiB)")

    def run():
        return compact_node_chunked(gstate, params, budget)

    compact_node_chunked(
        gstate[: min(nr_zones, 2)],
        CompactParams(profile, cp.ones(min(nr_zones, 2), dtype=bool)),
        budget,
    )  # warm-up: kernel compilation
    t_gpu, g_out = _best(run, suite.repeat, _cupy_sync(cp))
    ok = _check(
        suite,
        _same_compaction(g_out, np_out, slice(0, cpu_zones)),
        f"{case} {pname}: cupy != numpy on {cpu_zones} zones",
    )
    del g_out
    return _row(
        suite,
        case,
        pname,
        "cupy",
        zones=nr_zones,
        seconds=t_gpu,
        bytes_per_unit=COMPACTION_BYTES_PER_PAGE["uint8"],
        backend="cupy",
        budget_bytes=budget,
        zones_per_chunk=min(nr_zones, zones_per_chunk(host.nr_pages, budget)),
        exact=(f"== numpy on {cpu_zones} zones" if ok else "MISMATCH vs numpy"),
        **common,
    )


def _gpu_only_note(suite: Suite, case: str, nr_zones: int, nr_pages: int) -> None:
    pages = nr_zones * nr_pages
    cpu = next(
        (r for r in suite.rows if r["case"] == "compaction-1x128g" and r["impl"] == "numpy"),
        None,
    )
    floors = {
        f"{gpu} {layout}": b * pages / bw
        for gpu, bw in NOTES_GPU_COPY_BW.items()
        for layout, b in COMPACTION_BYTES_PER_PAGE.items()
    }
    msg = (
        f"{case}: needs a GPU, skipped. {nr_zones} x {nr_pages} pages = {pages / 1e9:.1f} G "
        f"pages: {pages / 2**30:.2f} GiB of uint8 page state ({BYTES_PER_PAGE * pages / 2**30:.1f}"
        f" GiB as bit planes) plus compact_node's working memory "
        f"(~{COMPACT_PEAK_BYTES_PER_PAGE:g} B/page per chunk), against "
        f"{device_info(None).get('memory_gib', '?')} GiB of RAM here"
    )
    if cpu:
        msg += (
            f"; NumPy at this run's {cpu['zones']}x{_size(cpu['pages_per_zone'])} "
            f"{cpu['profile']} rate would take {pages / cpu['pages_per_s']:.0f} s"
        )
    msg += ". Floors from performance-notes.md bandwidths (not measurements): " + ", ".join(
        f"{k} {v * 1e3:.1f} ms" for k, v in floors.items()
    )
    suite.notes.append(msg)
    _log(msg)


# --------------------------------------------------------------------------------------
# buddyinfo


def bench_buddyinfo_case(suite: Suite, case: str) -> None:
    full, quick = SHAPES[case]
    nr_zones, nr_pages = quick if suite.quick else full
    _log(f"{case}: building {nr_zones} x {nr_pages} pages ...")
    host = _zones(nr_zones, nr_pages, suite.seed)
    s = host.page_state
    rows: list[dict[str, Any]] = []
    common = dict(pages_per_zone=nr_pages, unit="buddyinfo reads", zones=nr_zones)
    t_u8, bi = _best(lambda: buddyinfo(s), max(suite.repeat, 3))
    rows.append(
        _row(
            suite,
            case,
            "-",
            "numpy uint8",
            seconds=t_u8,
            bytes_per_unit=BUDDYINFO_BYTES["uint8"],
            backend="numpy",
            exact="baseline",
            **common,
        )
    )
    t_pack, packed = _best(lambda: pack_planes(s), max(suite.repeat, 3))
    t_pk, bi_p = _best(lambda: buddyinfo_packed(packed), max(suite.repeat, 3))
    ok = _check(suite, np.array_equal(bi_p, bi), f"{case}: packed != uint8 buddyinfo")
    rows.append(
        _row(
            suite,
            case,
            "-",
            "numpy bit-planes",
            seconds=t_pk,
            bytes_per_unit=BUDDYINFO_BYTES["bit-planes"],
            backend="numpy",
            pack_s=t_pack,
            exact="== uint8" if ok else "MISMATCH",
            **common,
        )
    )
    # The reference walks Python lists one PFN at a time: run it on the first 1 GiB of
    # zone 0 (free blocks never cross an aligned 1024-page boundary, so a prefix of
    # whole 1024-page slots is a zone of its own) and compare there.
    _reference_repo_path()
    from tests.reference.buddy import buddyinfo as ref_buddyinfo

    ref_pages = min(nr_pages, GIB_PAGES)
    codes = s[0, :ref_pages].tolist()
    t0 = time.perf_counter()
    ref = ref_buddyinfo(codes)
    t_ref = time.perf_counter() - t0
    ok = _check(
        suite,
        list(to_numpy(buddyinfo(s[:1, :ref_pages]))[0]) == ref,
        f"{case}: uint8 buddyinfo != reference on the first {ref_pages} pages",
    )
    rows.append(
        _row(
            suite,
            case,
            "-",
            "reference",
            zones=1,
            pages_per_zone=ref_pages,
            seconds=t_ref,
            unit="buddyinfo reads",
            bytes_per_unit=BUDDYINFO_BYTES["uint8"],
            backend="numpy",
            exact=f"uint8 == reference on the first {ref_pages} pages" if ok else "MISMATCH",
            note="reference on a prefix of zone 0; its rate is per page",
        )
    )
    cp = suite.xp_gpu
    if cp is not None:
        gs = cp.asarray(s)
        sync = _cupy_sync(cp)
        buddyinfo(gs[:1, : PAGEBLOCK_NR_PAGES * 2])  # warm-up: kernel compilation
        t_g, bi_g = _best(lambda: buddyinfo(gs), max(suite.repeat, 3), sync)
        gp = pack_planes(gs)
        buddyinfo_packed(gp)
        t_gp, bi_gp = _best(lambda: buddyinfo_packed(gp), max(suite.repeat, 3), sync)
        ok_g = _check(suite, np.array_equal(to_numpy(bi_g), bi), f"{case}: cupy uint8 != numpy")
        ok_gp = _check(
            suite, np.array_equal(to_numpy(bi_gp), bi), f"{case}: cupy bit-planes != numpy"
        )
        for impl, t, b, ok in (
            ("cupy uint8", t_g, BUDDYINFO_BYTES["uint8"], ok_g),
            ("cupy bit-planes", t_gp, BUDDYINFO_BYTES["bit-planes"], ok_gp),
        ):
            rows.append(
                _row(
                    suite,
                    case,
                    "-",
                    impl,
                    seconds=t,
                    bytes_per_unit=b,
                    backend="cupy",
                    exact="== numpy" if ok else "MISMATCH",
                    **common,
                )
            )
        del gs, gp
    _ratios(rows)


# --------------------------------------------------------------------------------------
# tick loop


def _zone_slice(res: Any, z: int) -> Any:
    return type(res)(
        **{
            f.name: (
                {k: v[z : z + 1] for k, v in res.scalars.items()}
                if f.name == "scalars"
                else getattr(res, f.name)[z : z + 1]
            )
            for f in dataclasses.fields(res)
        }
    )


def _timed_run(run_program, kind, block_mt, zones, program, profile, backend):
    """run_program with a stamp after every tick: (result, loop-only timing of ticks 2..T).

    On CuPy the stamps are taken after the engine's own host reads of each tick, so
    they are the tick loop's wall time too, give or take one tick's queued work.
    """
    stamps: list[float] = []
    res = run_program(
        kind,
        block_mt,
        zones,
        program,
        profile,
        backend=backend,
        progress=lambda done, total: stamps.append(time.perf_counter()),
    )
    if len(stamps) < 2:
        return res, {}
    loop_s = stamps[-1] - stamps[0]
    return res, {"loop_s": loop_s, "loop_per_s": zones.nr_zones * (len(stamps) - 1) / loop_s}


def bench_tick_case(suite: Suite, case: str) -> None:
    from kernels.tick import run_program

    full, quick = SHAPES[case]
    nr_zones, nr_pages = quick if suite.quick else full
    ticks, events = (5, 64) if suite.quick else (20, 64)
    for profile in suite.profiles:
        pname = profile.name.lower()
        _log(f"{case} {pname}: {nr_zones} x {nr_pages} pages, warm-up ...")
        kind, block_mt, zones = _inputs(nr_zones, nr_pages, suite.seed)
        warm = run_program(kind, block_mt, zones, warmup_program(nr_pages), profile)
        kind, block_mt = warm.kind, warm.block_mt
        program = tick_program(nr_pages, ticks, events)
        blocks = nr_pages // PAGEBLOCK_NR_PAGES
        per_tick = (
            TICK_SECTOR_BYTES * (events + events * 10 // 9) + (1 << 9) + (TICK_BLOCK_BYTES * blocks)
        )
        common = dict(
            pages_per_zone=nr_pages, unit="zone-ticks", ticks=ticks, bytes_per_unit=per_tick
        )
        rows: list[dict[str, Any]] = []
        _log(f"{case} {pname}: numpy {ticks} ticks ...")
        t0 = time.perf_counter()
        res, loop = _timed_run(run_program, kind, block_mt, zones, program, profile, "numpy")
        t_np = time.perf_counter() - t0
        rows.append(
            _row(
                suite,
                case,
                pname,
                "numpy",
                zones=nr_zones,
                seconds=t_np,
                backend="numpy",
                exact="baseline",
                **loop,
                **common,
            )
        )
        k = min(max(suite.reference_zones, 1), nr_zones, 2)
        _reference_repo_path()
        from tests.reference.tick import run_program_ref

        same, t_ref = True, 0.0
        for z in range(k):
            _log(f"{case} {pname}: reference zone {z + 1}/{k} ...")
            t0 = time.perf_counter()
            ref = run_program_ref(kind[z], block_mt[z], zones[z], program, profile)
            t_ref += time.perf_counter() - t0
            same &= results_equal(_zone_slice(res, z), ref)
        ok = _check(suite, same, f"{case} {pname}: numpy != reference on {k} zone(s)")
        rows.append(
            _row(
                suite,
                case,
                pname,
                "reference",
                zones=k,
                seconds=t_ref,
                backend="numpy",
                exact=f"numpy == reference on {k} zone(s)" if ok else "MISMATCH",
                **common,
            )
        )
        compiled, threads = _compiled_tick()
        if compiled is not None:
            _log(f"{case} {pname}: compiled (first call compiles) ...")
            t0 = time.perf_counter()
            for parallel in (True, False):
                one = tick_program(nr_pages, 1, events)
                compiled(kind[:1], block_mt[:1], zones[:1], one, profile, parallel=parallel)
            first_s = time.perf_counter() - t0
            for impl, parallel, nr_threads in (
                ("compiled", True, threads),
                ("compiled-1t", False, "1"),
            ):
                _log(f"{case} {pname}: {impl} {ticks} ticks ...")
                run = functools.partial(
                    compiled, kind, block_mt, zones, program, profile, parallel=parallel
                )
                t_c, c_res = _best(run, suite.repeat)
                ok = _check(suite, results_equal(c_res, res), f"{case} {pname}: {impl} != numpy")
                rows.append(
                    _row(
                        suite,
                        case,
                        pname,
                        impl,
                        zones=nr_zones,
                        seconds=t_c,
                        backend="numpy",
                        threads=nr_threads,
                        first_call_s=first_s,
                        exact="== numpy (every zone)" if ok else "MISMATCH vs numpy",
                        **common,
                    )
                )
        else:
            suite.notes.append(f"{case} {pname}: compiled tick baseline {threads}")
        if suite.xp_gpu is not None:
            cp = suite.xp_gpu
            run_program(
                kind[:2],
                block_mt[:2],
                zones[:2],
                tick_program(nr_pages, 1, events),
                profile,
                backend="cupy",
            )
            cp.cuda.Device().synchronize()
            t0 = time.perf_counter()
            g, loop = _timed_run(run_program, kind, block_mt, zones, program, profile, "cupy")
            t_g = time.perf_counter() - t0  # results come back as NumPy: synchronised
            ok = _check(suite, results_equal(g, res), f"{case} {pname}: cupy != numpy")
            rows.append(
                _row(
                    suite,
                    case,
                    pname,
                    "cupy",
                    zones=nr_zones,
                    seconds=t_g,
                    backend="cupy",
                    exact="== numpy (every zone)" if ok else "MISMATCH",
                    **loop,
                    **common,
                )
            )
        _bench_cuda_tick(suite, case, profile, rows, common, (kind, block_mt, zones), program, res)
        _ratios(rows)


def _bench_cuda_tick(
    suite: Suite,
    case: str,
    profile: KernelProfile,
    rows: list[dict[str, Any]],
    common: dict[str, Any],
    inputs: tuple[np.ndarray, np.ndarray, Any],
    program: Any,
    res: Any,
) -> None:
    """The compiled engine on the GPU, one thread per zone (sweep.cuda_tick), == numpy."""
    pname = profile.name.lower()
    try:
        from sweep import cuda_tick
    except ImportError as exc:
        suite.notes.append(f"{case} {pname}: cuda tick engine unavailable ({exc})")
        return
    why = cuda_tick.unavailable() or (None if suite.xp_gpu is not None else "no CuPy GPU")
    if why:
        suite.notes.append(f"{case} {pname}: cuda tick engine not run: {why}")
        return
    kind, block_mt, zones = inputs
    _log(f"{case} {pname}: cuda-thread-per-zone (first call compiles) ...")
    t0 = time.perf_counter()
    one = dataclasses.replace(program, phases=(dataclasses.replace(program.phases[0], ticks=1),))
    cuda_tick.run_program_cuda(kind[:1], block_mt[:1], zones[:1], one, profile)
    first_s = time.perf_counter() - t0
    run = functools.partial(cuda_tick.run_program_cuda, kind, block_mt, zones, program, profile)
    t_c, c_res = _best(run, suite.repeat)
    ok = _check(suite, results_equal(c_res, res), f"{case} {pname}: cuda-thread-per-zone != numpy")
    rows.append(
        _row(
            suite,
            case,
            pname,
            "cuda-thread-per-zone",
            zones=zones.nr_zones,
            seconds=t_c,
            backend="cupy",
            first_call_s=first_s,
            exact="== numpy (every zone)" if ok else "MISMATCH",
            **common,
        )  # fmt: skip
    )


# --------------------------------------------------------------------------------------
# driver


def _memory_row(suite: Suite) -> dict[str, Any]:
    """compact_node's measured peak working memory on one 1 GiB zone, per profile."""
    host = _zones(1, GIB_PAGES, suite.seed)
    out = {}
    for profile in suite.profiles:
        m = measure_compact_peak(host, CompactParams(profile, np.ones(1, dtype=bool)))
        out[profile.name.lower()] = m["bytes_per_page"]
    return out


def _size(pages: int) -> str:
    kib = pages * 4
    for unit, div in (("g", 1 << 20), ("m", 1 << 10)):
        if kib >= div and kib % div == 0:
            return f"{kib // div}{unit}"
    return f"{pages}p"


def _time(s: float) -> str:
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def print_table(suite: Suite) -> None:
    head = (
        f"{'case':28} {'zones':>10} {'prof':5} {'impl':22} {'time':>9} {'cpu':>9} {'pages/s':>10} "
        f"{'units/s':>12} {'B/unit':>7} {'floor':>9} {'x floor':>8}  ratios; exact"
    )
    print(head)
    print("-" * len(head))
    for r in suite.rows:
        pages = f"{r['pages_per_s'] / 1e6:8.1f} M" if r["pages_per_s"] else f"{'-':>10}"
        ratios = ", ".join(f"{v:.3g}x {k}" for k, v in r.get("ratio_vs", {}).items())
        impl = r["impl"] + (f" [{r['threads']} thr]" if "threads" in r else "")
        shape = f"{r['zones']}x{_size(r['pages_per_zone'])}"
        print(
            f"{r['case']:28} {shape:>10} {r['profile']:5} {impl:22} {_time(r['seconds']):>9} "
            f"{_time(r['cpu_s']) if 'cpu_s' in r else '-':>9} "
            f"{pages} {r['per_s']:12,.1f} {r['bytes_per_unit']:7.3g} "
            f"{_time(r['floor_s']):>9} {r['x_floor']:7.1f}x  {ratios}; {r['exact']}"
        )
        if "note" in r:
            print(f"{'':28} {'':>10} {'':5}   ({r['note']})")
        if "loop_per_s" in r:
            print(
                f"{'':28} {'':>10} {'':5} {'  loop only':22} {_time(r['loop_s']):>9} {'':>9} "
                f"{'-':>10} {r['loop_per_s']:12,.1f}  (ticks 2..T: setup and result copy left out)"
            )
    print(
        "reference rows ran on the zones shown (a subset of the case, or stand-in zones of "
        "the same layout); ratios compare pages/s (tick: zone-ticks/s)"
    )
    for n in suite.notes:
        print(f"note: {n}")


def main_suite(args: argparse.Namespace) -> int:
    cases = args.cases or list(CASES)
    bad = [c for c in cases if c not in CASES]
    for ok, msg in (
        (not bad, f"--cases {', '.join(bad)} unknown; choose from {', '.join(CASES)}"),
        (args.repeat >= 1, f"--repeat={args.repeat} must be >= 1"),
        (args.reference_zones >= 0, f"--reference-zones={args.reference_zones} must be >= 0"),
        (
            args.reference_max_pages >= 1024 and args.reference_max_pages % 1024 == 0,
            f"--reference-max-pages={args.reference_max_pages} must be a positive multiple of 1024",
        ),
    ):
        if not ok:
            print(f"error: {msg}", file=sys.stderr)
            return 2
    heap_kept = keep_freed_memory()
    cp = None
    if gpu_available():
        import cupy as cp  # noqa: F811  (kernels.backend found it usable)
    profiles = [KernelProfile[p.upper()] for p in (args.profile or ["v6_19", "v4_12"])]
    _log("copy bandwidth ...")
    bw = {"numpy": copy_bandwidth(np, (64 if args.quick else 512) << 20)}
    if cp is not None:
        bw["cupy"] = copy_bandwidth(cp, 4 << 30)
    suite = Suite(
        quick=args.quick,
        profiles=profiles,
        repeat=args.repeat,
        reference_zones=args.reference_zones,
        reference_max_pages=args.reference_max_pages,
        seed=args.seed,
        xp_gpu=cp,
        bandwidth=bw,
    )
    device = device_info(cp)
    print(
        f"device: {device['cpu']}, {device['cores']} cores, {device.get('memory_gib', '?')} GiB;"
        f" GPU: {device['gpu'] or 'none'}; NumPy {device['numpy']}"
        + ("; --quick (small cases)" if args.quick else "")
    )
    print(
        "copy bandwidth (read+write, best of 5): "
        + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bw.items())
        + " (NumPy: one core)"
    )
    peak = _memory_row(suite)
    print(
        "compact_node peak working memory, 1 GiB zone (tracemalloc): "
        + ", ".join(f"{k} {v:.2f} B/page" for k, v in peak.items())
        + f"; chunk budget model {COMPACT_PEAK_BYTES_PER_PAGE:g} B/page"
    )
    runners = {"compaction": bench_compaction_case, "buddyinfo": bench_buddyinfo_case}
    runners["tick"] = bench_tick_case
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"suite-{dt.datetime.now():%Y%m%d-%H%M%S}.json"

    def record(done: list[str]) -> dict[str, Any]:
        return {
            "benchmark": "suite",
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": device,
            "quick": args.quick,
            "copy_bandwidth_bytes_per_s": bw,
            "compact_peak_bytes_per_page": peak,
            "bytes_per_page_assumed": {
                "compaction": COMPACTION_BYTES_PER_PAGE,
                "buddyinfo": BUDDYINFO_BYTES,
                "tick_per_zone_tick": (
                    f"{TICK_SECTOR_BYTES} B per page event + 2**order B per attempt + "
                    f"{TICK_BLOCK_BYTES} B per pageblock"
                ),
            },
            "note": (
                "floor = bytes a pass must move for the layout (performance-notes.md 3.2) / "
                "measured copy bandwidth of the row's backend; ratio_vs = this row's rate / that "
                "implementation's rate (same case, profile and run); reference rows ran on "
                "`zones` zones only and their rate is per page of those"
            ),
            "freed_memory_kept_in_heap": heap_kept,
            "notes": suite.notes,
            "mismatches": suite.mismatches,
            "rows": suite.rows,
            "cases_done": done,
            "complete": len(done) == len(cases),
        }

    for i, case in enumerate(cases):
        runners[case.split("-", 1)[0]](suite, case)
        _write_json(path, record(cases[: i + 1]))  # a cut-off run keeps what it measured
    print_table(suite)
    print(f"wrote {path}")
    if suite.mismatches:
        print(f"{len(suite.mismatches)} mismatch(es): " + "; ".join(suite.mismatches))
        return 1
    return 0


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "suite",
        help="all cases and baselines in one run: bandwidth floors, ratios, exactness",
    )
    s.add_argument("--quick", action="store_true", help="small cases (well under 2 minutes)")
    s.add_argument("--cases", nargs="+", metavar="CASE", help=f"default: all of {', '.join(CASES)}")
    s.add_argument("--profile", choices=["v4_12", "v6_19"], action="append", help="default: both")
    s.add_argument("--repeat", type=int, default=3, help="timed runs per fast path (best shown)")
    s.add_argument(
        "--reference-zones",
        type=int,
        default=1,
        help="zones the per-zone reference runs per case (tick: 1-2; 0 skips compaction's)",
    )
    s.add_argument(
        "--reference-max-pages",
        type=int,
        default=GIB_PAGES,
        help="larger compaction zones get the reference on stand-in zones of this size "
        "(default 1 GiB; 33554432 runs it on the 128 GiB zone itself, minutes)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="outputs/bench", help="folder for the JSON record")
