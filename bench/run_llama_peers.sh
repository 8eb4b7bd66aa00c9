#!/usr/bin/env bash
# Issue 11's benchmark in one run, same machine, same threads: our Llama (bench_llama: forward over all 30
# blocks, top-4-block forward + backward) against a PyTorch implementation of the same model
# (peers/llama_torch_peer.py) and llama.cpp's forward on the all-F32 copy and on the Q4_1 file
# (peers/llama_cpp_peer.py); then the peak memory of loading + fine-tuning the top 4 blocks
# (llama_finetune_memory). bench/llama_peers_report.py prints the table and writes summary.json.
#   bench/run_llama_peers.sh BUILD_DIR OUT_DIR
# BUILD_DIR configured with -DFISHER_UNLEARN_BUILD_BENCH=ON, targets bench_llama llama_finetune_memory
# llama_export_canary built. Environment: TORCH_PYTHON (a Python with torch >= 2.5, bench/peers/
# setup_torch_venv.sh), LLAMACPP_PYTHON (a Python with llama-cpp-python), GGUF_PYTHONPATH (a folder with
# PyPI gguf for the torch Python, if it lacks it), THREADS (default 1,2), FISHER_UNLEARN_SMOLLM2.
# Compiler: configure BUILD_DIR with CXX=clang++-19 (or 16) for the published figures; OUT/compiler.txt records it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "$1" && pwd)"
mkdir -p "$2"
out="$(cd "$2" && pwd)"
threads="${THREADS:-1,2}"
model="${FISHER_UNLEARN_SMOLLM2:-${FISHER_UNLEARN_MODEL_CACHE:-$root/.cache/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || { echo "no model at $model (scripts/fetch_smollm2.sh)" >&2; exit 2; }
f32="$out/SmolLM2-135M-Instruct.f32.gguf"
[ -f "$f32" ] || "$build/tests/llama_export_canary" "$model" "$f32" --f32-all
# Token ids for the cross-check of the two peers (llama.cpp's F32 forward vs PyTorch on the same ids).
python3 -c 'import json, random; r = random.Random(3); print(json.dumps([r.randrange(49152) for _ in range(65)]))' > "$out/check_tokens.json"
git -C "$root" rev-parse HEAD > "$out/commit.txt"
# The compiler that built ours: on Zen 4, GCC 12's code for Eigen's GEMM micro-kernel runs ~20% slower than
# Clang 16/19's (bench/README.md), so the figure depends on it.
cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)"
{ echo "$cxx"; "${cxx:-c++}" --version 2>/dev/null | head -1; } > "$out/compiler.txt"
{ date -u; uptime; nproc; } > "$out/load_before.txt"
filter="llama/"
# min_time: several iterations per row (one takes seconds on a loaded machine), so that its fastest
# iteration is read as the peers' fastest run is.
"$build/bench/bench_llama" --benchmark_filter="$filter" --benchmark_min_time="${MIN_TIME:-10}" \
  --benchmark_out="$out/ours.json" --benchmark_out_format=json
PYTHONPATH="${GGUF_PYTHONPATH:-}" "${TORCH_PYTHON:-python3}" "$root/bench/peers/llama_torch_peer.py" "$model" \
  --out "$out/torch.json" --threads "$threads" --check-tokens "$out/check_tokens.json"
"${LLAMACPP_PYTHON:-python3}" "$root/bench/peers/llama_cpp_peer.py" "$f32" --out "$out/llamacpp_f32.json" \
  --threads "$threads" --check-tokens "$out/check_tokens.json"
"${LLAMACPP_PYTHON:-python3}" "$root/bench/peers/llama_cpp_peer.py" "$model" --out "$out/llamacpp_q4_1.json" \
  --threads "$threads"
/usr/bin/time -v "$build/bench/llama_finetune_memory" "$model" 5 8 128 2 > "$out/memory.txt" 2> "$out/memory_time.txt"
{ date -u; uptime; } > "$out/load_after.txt"
python3 "$root/bench/llama_peers_report.py" "$out"
