#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU and CuPy, pytest, hypothesis and NumPy
# (no Ray, Hydra or xarray needed: kernels/ imports none of them). Run it from the
# repository root, without installing the project:
#
#     bash tools/gpu-check.sh [OUT_DIR]        # default: $OUT, else outputs/bench
#
# 1. every test marked `gpu` (CuPy == NumPy bit for bit, the same checks as on the CPU);
#    test files that need Hydra/xarray fail to import there and are reported, not run;
# 2. the benchmark suite on the GPU (docs/performance.md: the cases that need one), with
#    each fast path checked against NumPy in the same run;
# each step under its own time limit, so one slow step still leaves the others' results.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-${OUT:-outputs/bench}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python - <<'PY' | tee "$out/gpu-device.txt"
import cupy, numpy
p = cupy.cuda.runtime.getDeviceProperties(0)
name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
print(f"gpu: {name}, {p['totalGlobalMem'] / 2**30:.1f} GiB; cupy {cupy.__version__}, numpy {numpy.__version__}")
PY
status=0
timeout "${GPU_CHECK_TEST_S:-240}" python -m pytest -q -p no:cacheprovider -m gpu \
    --continue-on-collection-errors tests/ 2>&1 | tee "$out/gpu-tests.txt" || status=1
timeout "${GPU_CHECK_BENCH_S:-300}" python -m sweep.bench suite --out "$out" --profile v6_19 \
    --reference-zones 0 --cases compaction-1000x128g compaction-1x128g buddyinfo-1x128g \
    tick-stress_highalloc-1000z 2>&1 | tee "$out/gpu-bench.txt" || status=1
exit "$status"
