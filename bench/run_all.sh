#!/usr/bin/env bash
# Builds the benchmark suite, runs every benchmark and the PyTorch peer in one go, and prints the table
# of bench/README.md (goals met or missed, ours / ceiling, ours / baseline, ours / PyTorch).
#
#   bench/run_all.sh            the full run (about 10–15 minutes on 2 cores; the demo training is most of it)
#   bench/run_all.sh --quick    short timings and a 100-step training: checks the pipeline, not the goals
#   bench/run_all.sh --no-peer  skip PyTorch
#   bench/run_all.sh --no-compile  the PyTorch peer without torch.compile (compiling takes minutes)
#   bench/run_all.sh --compile-all torch.compile the transformer rows too (by default only the Fisher rows
#                               are compiled: the wide model's vmap(grad) took over 13 minutes to compile here)
#
# The PyTorch peer runs on a current PyTorch from PyPI (2.15) in .cache/torch-venv, installed on first use
# by bench/peers/setup_torch_venv.sh (~2.1 GB; ~540 MB torch download + the few nvidia wheels
# `import torch` needs); PYTHON_FOR_PEER overrides the interpreter. Every routine runs at 1 and 2
# threads, the peer at the same thread counts.
#
# Environment: BUILD_DIR (default build-bench), RESULTS_DIR (default $BUILD_DIR/results). Results: the
# Google Benchmark JSON of every binary, peer.json, meta.json, run.log and table.md in RESULTS_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

quick=0
peer=1
compile=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-peer) peer=0 ;;
    --no-compile) compile=0 ;;
    --compile-all) compile=2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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
for name in bench_fisher bench_per_sample bench_exposure bench_unlearning bench_dp_sgd bench_llama; do
  if cmake --build "$build" -j"$fu_jobs" --target "$name" >>"$log" 2>&1; then
    built+=("$name")
  else
    say "$name did not build (see $log); its rows will read 'not measured'"
  fi
done
[ ${#built[@]} -gt 0 ] || { echo "[bench] nothing built (log: $log)" >&2; exit 1; }

# The SmolLM2 GGUF for bench_llama (its rows are skipped when it cannot be fetched).
if [ -x scripts/fetch_smollm2.sh ] && [ -z "${FISHER_UNLEARN_SMOLLM2:-}" ]; then
  if gguf=$(scripts/fetch_smollm2.sh 2>>"$log"); then export FISHER_UNLEARN_SMOLLM2="$gguf"; else
    say "scripts/fetch_smollm2.sh failed: bench_llama's rows will read 'not measured'"; fi
fi

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
  echo "$name $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/loads.txt"
  say "running $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  "$build/bench/$name" "${common[@]}" --benchmark_out="$results/$name.json" "$@" 2>&1 | tee -a "$log" ||
    say "$name failed (see $log); its rows will read 'not measured'"
}

rm -rf "$export_dir"
rm -f "$results/loads.txt"
run bench_fisher "${repeat[@]}" --export_dir="$export_dir"
run bench_per_sample "${repeat[@]}" --export_dir="$export_dir"
run bench_exposure
run bench_unlearning
run bench_dp_sgd "${repeat[@]}"
run bench_llama "${repeat[@]}"
rm -f "$results/peer.json"
if [ "$peer" -eq 1 ]; then
  peer_python="${PYTHON_FOR_PEER:-}"
  if [ -z "$peer_python" ]; then
    say "PyTorch for the peer: bench/peers/setup_torch_venv.sh (first use downloads ~2 GB into .cache/)"
    peer_python=$(bench/peers/setup_torch_venv.sh 2>>"$log") || peer_python=""
  fi
  if [ -z "$peer_python" ]; then
    say "no PyTorch 2.x venv (see $log); the table is printed without the peer"
  else
    say "running the PyTorch peer ($("$peer_python" -c 'import torch; print(torch.__version__)'))"
    min_seconds=1.0
    peer_flags=(--threads 1,2)
    if [ "$quick" -eq 1 ]; then min_seconds=0.2; elif [ "$compile" -eq 1 ]; then peer_flags+=(--compile fisher)
    elif [ "$compile" -eq 2 ]; then peer_flags+=(--compile all); fi
    echo "torch_peer $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/loads.txt"
    "$peer_python" bench/peers/torch_peer.py "$export_dir" --out "$results/peer.json" --min-seconds "$min_seconds" \
      "${peer_flags[@]}" 2>&1 | tee -a "$log" || say "the PyTorch peer failed (see $log); the table is printed without it"
  fi
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
python3 - "$results/meta.json" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF2'
import json, sys
meta = json.load(open(sys.argv[1]))
meta["load_at_end"] = sys.argv[2]
try:  # the load as each binary started (the machine may be shared: see bench/README.md)
    meta["loads"] = dict(line.split(" ", 1) for line in open(sys.argv[1].replace("meta.json", "loads.txt")).read().splitlines())
except OSError:
    pass
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF2

python3 bench/report.py "$results" > "$results/table.md"
echo
cat "$results/table.md"
echo
say "table: $results/table.md; raw results and log: $results"
