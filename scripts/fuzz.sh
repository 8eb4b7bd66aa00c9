#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ (clang++-19, -fsanitize=fuzzer,address,undefined; one per
# parser: fuzz_checkpoint, fuzz_gguf) in build-fuzz/ and runs each from its committed seeds
# (tests/fuzz/corpus/<harness>/, read only); new units go to build-fuzz/corpus/<harness>/.
#   ./scripts/fuzz.sh                          every harness for 10^7 executions
#   ./scripts/fuzz.sh --execs N [HARNESS...]   N executions of each named harness (default: all)
#   ./scripts/fuzz.sh --seconds S [HARNESS...] S seconds of each (the smoke run of scripts/test.sh)
# Stops at the first finding: libFuzzer's report is printed and the input kept in build-fuzz/artifacts/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$fu_root"

execs=10000000
seconds=""
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --execs) execs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    fuzz_*) names+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$execs" in ''|*[!0-9]*) echo "fuzz.sh: --execs needs a positive integer, got '$execs'" >&2; exit 2 ;; esac
if [ -n "$seconds" ]; then
  case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds needs a positive integer, got '$seconds'" >&2; exit 2 ;; esac
fi
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.cpp; do names+=("$(basename "$f" .cpp)"); done
fi
for name in "${names[@]}"; do
  [ -f "tests/fuzz/$name.cpp" ] || { echo "fuzz.sh: no harness tests/fuzz/$name.cpp" >&2; exit 2; }
done

ensure_packages "${fu_core_packages[@]}" clang-19 libclang-rt-19-dev
# No build type: Eigen's and the library's assertions stay on (no NDEBUG); the harnesses add -O1 -g.
[ -f build-fuzz/CMakeCache.txt ] || export CXX=clang++-19
configure_build build-fuzz -DCMAKE_BUILD_TYPE= -DFISHER_UNLEARN_BUILD_FUZZERS=ON -DFISHER_UNLEARN_BUILD_TESTS=OFF \
  -DFISHER_UNLEARN_BUILD_EXAMPLES=OFF -DFISHER_UNLEARN_INSTALL=OFF -DFISHER_UNLEARN_ENABLE_CUDA=OFF
cmake --build build-fuzz -j "$fu_jobs" --target "${names[@]}"

mkdir -p build-fuzz/artifacts
for name in "${names[@]}"; do
  mkdir -p "build-fuzz/corpus/$name"
  limit=(-runs="$execs")
  [ -n "$seconds" ] && limit=(-max_total_time="$seconds")
  echo "== $name: ${limit[*]} (seeds tests/fuzz/corpus/$name, uptime:$(uptime | sed 's/.*load average//'))"
  # -rss_limit_mb / -malloc_limit_mb: an allocation the input's size does not justify is a finding too.
  "build-fuzz/tests/fuzz/$name" "${limit[@]}" -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$name-" \
    "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name"
done
echo "fuzz.sh: no findings in ${names[*]}"
