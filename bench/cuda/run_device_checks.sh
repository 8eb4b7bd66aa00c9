#!/usr/bin/env bash
# One run on a GPU machine (an H200 in about 4 minutes): builds the CUDA target, runs the CUDA tests
# (ctest -L cuda), the GPU benchmarks (bench_cuda, which measures its own copy-bandwidth and cuBLAS GEMM
# ceilings) and the PyTorch peer (torch_peer.py) on the same sizes, and writes under OUT_DIR:
#   device_checks.log  everything printed      bench_cuda.json   Google Benchmark results
#   ctest.log          the CUDA tests           torch_peer.json   the PyTorch timings
#   summary.txt        fractions of the ceilings and the ratio to PyTorch, per routine
# Usage: bash bench/cuda/run_device_checks.sh [OUT_DIR]   (default: $OUT, else ./results/cuda)
# Where the machine lacks Eigen/Catch2/Google Benchmark, stage them first with stage_device_deps.sh and
# carry .devdeps. Exit status: 0 when every step passed, 1 otherwise (the log says which).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out_dir=${1:-${OUT:-$root/results/cuda}}
mkdir -p "$out_dir"
log="$out_dir/device_checks.log"
build=${FISHER_UNLEARN_CUDA_BUILD_DIR:-/tmp/fisher_unlearn_build_cuda}
jobs=$(nproc 2>/dev/null || echo 4)
status=0
step() {  # step NAME COMMAND...: runs, logs, remembers failures, never aborts the whole run
  local name=$1
  shift
  echo "=== $name: $*"
  local start=$SECONDS
  "$@"
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  [ $rc -eq 0 ] || status=1
  return $rc
}

exec > >(tee "$log") 2>&1
echo "fisher_unlearn CUDA device checks, $(date -u +%FT%TZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 || true
nvcc --version 2>&1 | tail -1 || true

cmake_args=(-DCMAKE_BUILD_TYPE=Release -DFISHER_UNLEARN_ENABLE_CUDA=ON -DFISHER_UNLEARN_BUILD_TESTS=ON
            -DFISHER_UNLEARN_BUILD_BENCH=ON -DFISHER_UNLEARN_BUILD_EXAMPLES=OFF -DFISHER_UNLEARN_INSTALL=OFF
            -DCMAKE_POLICY_VERSION_MINIMUM=3.5)  # CMake 4 still reads the staged Debian package files
if [ -d "$root/.devdeps" ]; then
  deps="$root/.devdeps"
  cmake_args+=(-DCMAKE_PREFIX_PATH="$deps" -DEigen3_DIR="$deps/share/eigen3/cmake" -DCatch2_DIR="$deps/lib/cmake/Catch2"
               -Dbenchmark_DIR="$deps/lib/x86_64-linux-gnu/cmake/benchmark")
  export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# Ninja where present, unless the build folder was configured before (its generator is fixed).
command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ] && cmake_args+=(-G Ninja)

if step configure cmake -S "$root" -B "$build" "${cmake_args[@]}" &&
   step build cmake --build "$build" -j "$jobs" --target fisher_unlearn_cuda test_cuda_routines test_cuda_estimators \
        test_cuda_errors bench_cuda; then
  step tests ctest --test-dir "$build" -L cuda -E "^consumer" -j 8 --output-on-failure --timeout 300 2>&1 | tee "$out_dir/ctest.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  step bench "$build/bench/cuda/bench_cuda" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
       --benchmark_min_time=0.2 --benchmark_out="$out_dir/bench_cuda.json" --benchmark_out_format=json
fi
step torch env PYTHONUNBUFFERED=1 python3 "$root/bench/cuda/torch_peer.py" --json "$out_dir/torch_peer.json" \
     --compare "$out_dir/bench_cuda.json" --summary "$out_dir/summary.txt"
echo "=== device checks finished with status $status; results in $out_dir"
exit $status
