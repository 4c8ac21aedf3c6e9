"""The compiled tick baseline (sweep/compiled_tick.py) against the per-zone reference.

Every field of the TickResult must be equal to tests/reference/tick.py's (and, on the
benchmark's programs, to kernels.tick.run_program's): docs/tick-model.md sections 1-5.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sweep.compiled_tick as ct
from kernels.program import COUNTER_INDEX, MT_CMA, Phase, Program, TickResult, TickZones
from kernels.rng import hash_u64
from kernels.tick import run_program
from kernels.zone import KernelProfile
from sweep.bench_tick import _inputs, tick_program, warmup_program
from sweep.compiled_tick import run_program_compiled
from tests.reference.tick import run_program_ref
from tests.test_tick import SCALE, mixed_case, random_case

PROFILES = (KernelProfile.V4_12, KernelProfile.V6_19)
profiles = pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.lower())


def zone_row(res: TickResult, z: int) -> TickResult:
    """Zone z of a batch result, as a one-zone TickResult."""
    return TickResult(
        **{
            f.name: (
                {k: v[z : z + 1] for k, v in res.scalars.items()}
                if f.name == "scalars"
                else getattr(res, f.name)[z : z + 1]
            )
            for f in dataclasses.fields(TickResult)
        }
    )


def differences(a: TickResult, b: TickResult) -> list[str]:
    """The TickResult fields (and scalars) that differ in shape, dtype or value."""
    bad = []
    for f in dataclasses.fields(TickResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "scalars":
            if set(x) != set(y):
                bad.append("scalars (names)")
                continue
            bad += [k for k in x if x[k].dtype != y[k].dtype or not np.array_equal(x[k], y[k])]
        elif x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            bad.append(f.name)
    return bad


def assert_equals_reference(kind, bmt, zones, prog, profile, res, what: str) -> None:
    for z in range(kind.shape[0]):
        ref = run_program_ref(kind[z], bmt[z], zones[z], prog, profile)
        bad = differences(zone_row(res, z), ref)
        assert not bad, f"{what}, zone {z} ({profile.name}): compiled != reference in {bad}"


def test_hash_equals_kernels_rng():
    """The njit splitmix64 hash is kernels.rng.hash_u64, bit for bit."""
    rng = np.random.default_rng(3)
    counters = np.concatenate(
        [np.arange(100), rng.integers(0, 2**64 - 1, 100, dtype=np.uint64, endpoint=True)]
    ).astype(np.uint64)
    for seed in (0, 1, 2**64 - 1, int(rng.integers(0, 2**63))):
        for zone, stream in ((0, 1), (0, 2), (7, 4)):
            out = np.empty_like(counters)
            ct.hash_u64_many(np.uint64(seed), np.uint64(zone), np.uint64(stream), counters, out)
            np.testing.assert_array_equal(
                out, hash_u64(np, np.uint64(seed), zone, stream, counters)
            )


def test_differences_is_not_vacuous():
    """The comparison sees a change in any array, scalar, shape or dtype."""
    kind, bmt, zones = _inputs(1, 1024, 0)
    res = run_program_compiled(kind, bmt, zones, warmup_program(1024), KernelProfile.V6_19)
    assert differences(res, res) == []
    for name in ("kind", "key", "buddyinfo", "attempts", "free_regions", "trials"):
        other = dataclasses.replace(res, **{name: getattr(res, name).astype(np.float64)})
        assert differences(res, other) == [name]
    bumped = dict(res.scalars, clock=res.scalars["clock"] + 1)
    assert differences(res, dataclasses.replace(res, scalars=bumped)) == ["clock"]
    key = res.key.copy()
    key[0, np.argmax(key[0] != 0)] += 1
    assert differences(res, dataclasses.replace(res, key=key)) == ["key"]


@profiles
def test_bench_programs_equal_reference_and_engine(profile):
    """sweep.bench_tick's warm-up and stress pass (2 zones of 16 MiB): == reference, == NumPy."""
    n = 4096
    kind, bmt, zones = _inputs(2, n, 0)
    warm = warmup_program(n)
    res = run_program_compiled(kind, bmt, zones, warm, profile)
    assert_equals_reference(kind, bmt, zones, warm, profile, res, "warm-up")
    assert differences(res, run_program(kind, bmt, zones, warm, profile, backend="numpy")) == []
    kind, bmt = res.kind, res.block_mt
    assert (kind != 0).mean() > 0.5  # the warm-up filled the zone
    prog = tick_program(n, 8, 64)
    res = run_program_compiled(kind, bmt, zones, prog, profile)
    assert_equals_reference(kind, bmt, zones, prog, profile, res, "tick pass")
    assert differences(res, run_program(kind, bmt, zones, prog, profile, backend="numpy")) == []
    c = res.counters[:, -1]
    assert c[:, COUNTER_INDEX["alloc_attempts"]].tolist() == [8, 8]
    assert c[:, COUNTER_INDEX["alloc_background"]].min() > 0


@profiles
def test_random_programs_exercise_compaction_reclaim_and_kcompactd(profile):
    """Fixed random cases (tests/test_tick.py's generator): == reference, and not vacuous."""
    total = np.zeros(len(COUNTER_INDEX), dtype=np.int64)
    for seed in range(6):
        kind, bmt, zones, prog = random_case(seed, 3)
        res = run_program_compiled(kind, bmt, zones, prog, profile)
        assert_equals_reference(kind, bmt, zones, prog, profile, res, f"seed {seed}")
        total += res.counters[:, -1].sum(axis=0)
    for name in (
        "compact_stall",
        "pgmigrate_success",
        "compact_daemon_wake",
        "kswapd_wake",
        "direct_reclaimed",
        "alloc_success",
    ):
        assert total[COUNTER_INDEX[name]] > 0, f"{name} never happened: the cases are vacuous"


@profiles
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_programs_equal_reference(profile, seed):
    """Random zones, per-zone policies and programs (every TM 4 feature): == reference.

    The region size varies too: the free-region samples (TM 6.5) count regions of 1, 2,
    4 or 256 pageblocks (the last one possibly partial).
    """
    kind, bmt, zones, prog = random_case(seed, 2)
    region_blocks = np.array([(1, 2, 4, 256)[(seed >> s) & 3] for s in (0, 2)], dtype=np.int64)
    zones = dataclasses.replace(zones, region_blocks=region_blocks)
    res = run_program_compiled(kind, bmt, zones, prog, profile, parallel=seed % 2 == 0)
    assert_equals_reference(kind, bmt, zones, prog, profile, res, f"seed {seed}")


@profiles
def test_batch_invariance_and_serial_equals_parallel(profile):
    """A zone's result does not depend on its batch (order, duplicates); serial == parallel."""
    for seed in (11, 12):
        kind, bmt, zones, prog = mixed_case(seed)
        batch = run_program_compiled(kind, bmt, zones, prog, profile, parallel=True)
        serial = run_program_compiled(kind, bmt, zones, prog, profile, parallel=False)
        assert differences(batch, serial) == [], f"seed {seed}: serial != parallel"
        for z in range(5):
            alone = run_program_compiled(kind[z : z + 1], bmt[z : z + 1], zones[z], prog, profile)
            assert differences(zone_row(batch, z), alone) == [], f"seed {seed} zone {z}"
        perm = [3, 0, 3, 1]
        again = run_program_compiled(kind[perm], bmt[perm], zones[perm], prog, profile)
        for i, z in enumerate(perm):
            assert differences(zone_row(again, i), zone_row(batch, z)) == [], f"perm row {i}"


def test_inputs_are_not_written():
    kind, bmt, zones, prog = random_case(4, 2)
    k0, b0 = kind.copy(), bmt.copy()
    run_program_compiled(kind, bmt, zones, prog, KernelProfile.V6_19)
    np.testing.assert_array_equal(kind, k0)
    np.testing.assert_array_equal(bmt, b0)


@pytest.fixture
def no_compute(monkeypatch):
    """Make any call into the compiled loops fail: errors must come before compute."""

    def refuse(*args, **kwargs):
        raise AssertionError("compiled code ran before the input was rejected")

    monkeypatch.setattr(ct, "_run_zones_parallel", refuse)
    monkeypatch.setattr(ct, "_run_zones_serial", refuse)


def _small_case():
    kind, bmt, zones, prog = random_case(5, 2, nr_blocks=4)
    return kind, bmt, zones, prog


def test_unsupported_features_are_rejected_before_compute(no_compute):
    """Regions options, CMA pageblocks and contig trials: a ValueError naming the feature."""
    kind, bmt, zones, prog = _small_case()
    fields = {f: getattr(zones, f) for f in zones.__dataclass_fields__}

    def with_zone(**values):
        return TickZones(**{**fields, **values})

    cases = [
        (with_zone(sorted_freelists=np.array([False, True])), bmt, prog, "sorted_freelists"),
        (with_zone(region_evacuation=np.array([True, False])), bmt, prog, "region_evacuation"),
        (
            with_zone(region_worker_delayed=np.array([True, True])),
            bmt,
            prog,
            "region_worker_delayed",
        ),
        (with_zone(contig_method=np.array([0, 1])), bmt, prog, "contig_method"),
        (with_zone(busy_file=np.array([0.0, 0.5])), bmt, prog, "busy_file"),
    ]
    cma = bmt.copy()
    cma[:, -2:] = MT_CMA
    cases.append((zones, cma, prog, "MIGRATE_CMA"))
    trials = Program(
        phases=(*prog.phases, Phase("trial", 2, contig_every=1)), sample_every=prog.sample_every
    )
    cases.append((zones, bmt, trials, "contig_every"))
    for z, b, p, feature in cases:
        with pytest.raises(ValueError, match=rf"does not support .*{feature}"):
            run_program_compiled(kind, b, z, p, KernelProfile.V6_19)


class _FakeCupyArray:
    """Stands in for a cupy.ndarray: exposes the CUDA array interface."""

    __cuda_array_interface__ = {"shape": (1, 1024), "typestr": "|u1", "version": 3}
    shape = (1, 1024)


def test_bad_inputs_are_rejected_before_compute(no_compute):
    kind, bmt, zones, prog = _small_case()
    v6 = KernelProfile.V6_19
    with pytest.raises(TypeError, match=r"kind is a CuPy"):
        run_program_compiled(_FakeCupyArray(), bmt, zones, prog, v6)
    with pytest.raises(TypeError, match=r"block_mt must be a numpy"):
        run_program_compiled(kind, bmt.tolist(), zones, prog, v6)
    with pytest.raises(ValueError, match=r"multiple of 1024"):
        run_program_compiled(kind[:, :512], bmt[:, :1], zones, prog, v6)
    with pytest.raises(ValueError, match=r"block_mt must have shape"):
        run_program_compiled(kind, bmt[:, :1], zones, prog, v6)
    with pytest.raises(ValueError, match=r"block_mt must be UNMOVABLE"):
        run_program_compiled(kind, np.full_like(bmt, 3), zones, prog, v6)
    with pytest.raises(ValueError, match=r"zones has 1 zones"):
        run_program_compiled(kind, bmt, zones[0], prog, v6)
    bad = kind.copy()
    bad[0, 0] = 7  # ISOFREE
    with pytest.raises(ValueError, match=r"FREE\.\.HELD"):
        run_program_compiled(bad, bmt, zones, prog, v6)
    with pytest.raises(ValueError, match=r"profile must be"):
        run_program_compiled(kind, bmt, zones, prog, "v5_0")
    p = Program(phases=(Phase("p", 1, frees_per_tick=1, free_kinds=(0,)),))
    with pytest.raises(ValueError, match=r"free_kinds may not contain \[0\]"):
        run_program_compiled(kind, bmt, zones, p, v6)
    p = Program(phases=(Phase("p", 1, attempt_every=1, attempt_gfp=1),))
    low = TickZones.create(2, attempt_order=[3, 9])
    with pytest.raises(ValueError, match=r"need attempt_order > 3"):
        run_program_compiled(kind, bmt, low, p, v6)


# --------------------------------------------------------------------------------------
# Benchmark wiring: python -m sweep.bench suite (tick case) and python -m sweep.bench tick


def _tick_suite(monkeypatch, tmp_path):
    import json

    from sweep import bench, bench_suite

    monkeypatch.setitem(bench_suite.SHAPES, "tick-stress_highalloc-1000z", ((2, 4096), (2, 4096)))
    argv = ["suite", "--quick", "--cases", "tick-stress_highalloc-1000z", "--profile", "v4_12"]
    rc = bench.main([*argv, "--repeat", "1", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("suite-*.json")
    return rc, json.loads(path.read_text())


def test_bench_suite_tick_case_has_checked_compiled_rows(monkeypatch, tmp_path):
    rc, record = _tick_suite(monkeypatch, tmp_path)
    assert rc == 0 and record["mismatches"] == []
    rows = {r["impl"]: r for r in record["rows"]}
    assert {"numpy", "reference", "compiled", "compiled-1t"} <= set(rows)
    for impl in ("compiled", "compiled-1t"):
        assert rows[impl]["exact"] == "== numpy (every zone)"
        assert rows[impl]["unit"] == "zone-ticks" and rows[impl]["zones"] == 2
        assert rows[impl]["ratio_vs"]["reference"] > 0
    assert rows["compiled-1t"]["threads"] == "1"
    # No GPU here: the GPU tick engine's row is replaced by a note saying why.
    assert "cuda-thread-per-zone" not in rows
    assert any("cuda tick engine not run" in n for n in record["notes"]), record["notes"]


def test_bench_suite_reports_a_compiled_mismatch(monkeypatch, tmp_path):
    real = ct.run_program_compiled

    def off_by_one(*args, **kwargs):
        res = real(*args, **kwargs)
        res.counters[-1, -1, 0] += 1
        return res

    monkeypatch.setattr(ct, "run_program_compiled", off_by_one)
    rc, record = _tick_suite(monkeypatch, tmp_path)
    assert rc == 1
    assert any("compiled != numpy" in m for m in record["mismatches"])


def test_bench_tick_command_checks_the_compiled_baseline(tmp_path, capsys):
    from sweep import bench

    argv = ["tick", "--case", "64x16m", "--profile", "v6_19", "--ticks", "2"]
    assert bench.main([*argv, "--reference-zones", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "compiled zt/s" in out and "NO" not in out
