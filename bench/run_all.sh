#!/usr/bin/env bash
# Builds the benchmark suite, runs every benchmark and the PyTorch peer in one go, and prints the table
# of bench/README.md (goals met or missed, ours / ceiling, ours / baseline, ours / PyTorch).
#
#   bench/run_all.sh            the full run (about 10–15 minutes on 2 cores; the demo training is most of it)
#   bench/run_all.sh --quick    short timings and a 100-step training: checks the pipeline, not the goals
#   bench/run_all.sh --no-peer  skip PyTorch
#
# Environment: BUILD_DIR (default build-bench), RESULTS_DIR (default $BUILD_DIR/results). Results: the
# Google Benchmark JSON of every binary, peer.json, meta.json, run.log and table.md in RESULTS_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

quick=0
peer=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-peer) peer=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

build="${BUILD_DIR:-build-bench}"
results="${RESULTS_DIR:-$build/results}"
export_dir="$results/export"
mkdir -p "$results"
log="$results/run.log"
: > "$log"
say() { echo "[bench] $*" | tee -a "$log" >&2; }

ensure_packages "${fu_core_packages[@]}" libbenchmark-dev python3
# The demo corpus (data/kjv); the transformer benchmarks fall back to seeded text without it.
if [ -x scripts/prepare_data.sh ]; then
  ./scripts/prepare_data.sh kjv >>"$log" 2>&1 || say "prepare_data.sh kjv failed: the transformer benchmarks use synthetic text"
fi

say "configuring and building $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFISHER_UNLEARN_BUILD_BENCH=ON \
  -DFISHER_UNLEARN_ENABLE_CUDA=OFF -DFISHER_UNLEARN_BUILD_TESTS=OFF -DFISHER_UNLEARN_BUILD_EXAMPLES=OFF >>"$log" 2>&1
# Each binary on its own, so that one that does not build leaves the others' rows in the table.
built=()
for name in bench_fisher bench_per_sample bench_exposure bench_unlearning bench_dp_sgd; do
  if cmake --build "$build" -j"$fu_jobs" --target "$name" >>"$log" 2>&1; then
    built+=("$name")
  else
    say "$name did not build (see $log); its rows will read 'not measured'"
  fi
done
[ ${#built[@]} -gt 0 ] || { echo "[bench] nothing built (log: $log)" >&2; exit 1; }

load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results/meta.json" "$load_at_start" "$*" <<'EOF'
import json, platform, subprocess, sys, datetime, os
cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
dirty = subprocess.run(["git", "status", "--porcelain", "--", "bench", "include"], capture_output=True, text=True).stdout.strip()
json.dump({"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{cpu}, {os.cpu_count()} cores", "commit": commit + (" (+ local changes)" if dirty else ""),
           "load_at_start": sys.argv[2], "command": ("bench/run_all.sh " + sys.argv[3]).strip()},
          open(sys.argv[1], "w"), indent=1)
EOF

common=(--benchmark_out_format=json)
if [ "$quick" -eq 1 ]; then
  common+=(--benchmark_min_time=0.05)
  export FISHER_UNLEARN_BENCH_TRAIN_STEPS=100
  repeat=()
else
  repeat=(--benchmark_repetitions=3 --benchmark_report_aggregates_only=true)
fi

run() {  # run NAME [extra flags...]
  local name="$1"
  shift
  [[ " ${built[*]} " == *" $name "* ]] || return 0
  rm -f "$results/$name.json"
  say "running $name"
  "$build/bench/$name" "${common[@]}" --benchmark_out="$results/$name.json" "$@" 2>&1 | tee -a "$log" ||
    say "$name failed (see $log); its rows will read 'not measured'"
}

rm -rf "$export_dir"
run bench_fisher "${repeat[@]}" --export_dir="$export_dir"
run bench_per_sample "${repeat[@]}" --export_dir="$export_dir"
run bench_exposure
run bench_unlearning
run bench_dp_sgd "${repeat[@]}"
rm -f "$results/peer.json"
if [ "$peer" -eq 1 ]; then
  say "running the PyTorch peer"
  min_seconds=1.0
  [ "$quick" -eq 1 ] && min_seconds=0.2
  python3 bench/peers/torch_peer.py "$export_dir" --out "$results/peer.json" --min-seconds "$min_seconds" 2>&1 |
    tee -a "$log" || say "the PyTorch peer failed (see $log); the table is printed without it"
fi

python3 bench/report.py "$results" > "$results/table.md"
echo
cat "$results/table.md"
echo
say "table: $results/table.md; raw results and log: $results"
