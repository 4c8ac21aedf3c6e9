#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU and CuPy, Numba (numba-cuda), pytest,
# hypothesis and NumPy (no Ray, Hydra or xarray needed: kernels/ and the engines imported
# here use none of them). Run it from the repository root, without installing the project:
#
#     bash tools/gpu-check.sh [OUT_DIR]        # default: $OUT, else outputs/bench
#     GPU_CHECK_STEPS="cuda-tests cuda-bench" bash tools/gpu-check.sh   # some steps only
#
# Steps (all by default, in this order; each under its own time limit, so one slow step
# still leaves the others' results):
#   tests       every test marked `gpu` (CuPy == NumPy bit for bit, the same checks as on
#               the CPU); test files that need Hydra/xarray fail to import there and are
#               reported, not run;
#   bench       the benchmark suite on the GPU (docs/performance.md: the cases that need
#               one), each fast path checked against NumPy in the same run;
#   cuda-tests  tests/test_cuda_tick.py on the GPU itself (no simulator there): the GPU tick
#               engine (sweep/cuda_tick.py, one thread per zone) == the compiled CPU engine;
#   cuda-bench  python -m sweep.cuda_tick --bench: its zone-ticks/s against the compiled
#               CPU engine on every core, same zones, same run, results checked equal.
# The four together can outlast one 10-minute device command: run them as two.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-${OUT:-outputs/bench}}
steps=" ${GPU_CHECK_STEPS:-tests bench cuda-tests cuda-bench} "
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python - <<'PY' | tee "$out/gpu-device.txt"
import cupy, numpy
p = cupy.cuda.runtime.getDeviceProperties(0)
name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
print(f"gpu: {name}, {p['totalGlobalMem'] / 2**30:.1f} GiB; cupy {cupy.__version__}, numpy {numpy.__version__}")
try:
    import numba
    print(f"numba {numba.__version__}")
except ImportError as exc:
    print(f"numba: {exc}")
PY
status=0
if [[ $steps == *" tests "* ]]; then
    timeout "${GPU_CHECK_TEST_S:-240}" python -m pytest -q -p no:cacheprovider -m gpu \
        --continue-on-collection-errors tests/ 2>&1 | tee "$out/gpu-tests.txt" || status=1
fi
if [[ $steps == *" bench "* ]]; then
    timeout "${GPU_CHECK_BENCH_S:-300}" python -m sweep.bench suite --out "$out" --profile v6_19 \
        --reference-zones 0 --cases compaction-1000x128g compaction-1x128g buddyinfo-1x128g \
        tick-stress_highalloc-1000z 2>&1 | tee "$out/gpu-bench.txt" || status=1
fi
if [[ $steps == *" cuda-tests "* ]]; then
    timeout "${GPU_CHECK_CUDA_TEST_S:-300}" python -m pytest -q -p no:cacheprovider \
        tests/test_cuda_tick.py 2>&1 | tee "$out/gpu-cuda-tests.txt" || status=1
fi
if [[ $steps == *" cuda-bench "* ]]; then
    timeout "${GPU_CHECK_CUDA_BENCH_S:-240}" python -m sweep.cuda_tick --bench "$out" \
        2>&1 | tee "$out/gpu-cuda-bench.txt" || status=1
fi
exit "$status"
