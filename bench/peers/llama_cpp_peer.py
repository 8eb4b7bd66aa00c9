#!/usr/bin/env python3
"""llama.cpp peer of bench/bench_llama.cpp's forward: llama.cpp (PyPI llama-cpp-python) evaluating the same
workload — B sequences of n positions, logits at every position (logits_all, as our forward computes the
head at every position) — on a GGUF file, at each thread count of --threads. Run it on the all-F32 copy of
SmolLM2 (tests/llama/export_canary.cpp --f32-all: exactly the fp32 weights we compute with) for the
F32-forward comparison, and on the Q4_1 file for what its users see. Timing: per sequence reset() +
eval(ids) (one prefill in batches of n_batch = n), fastest of repeated runs after a warm-up.
With --check-tokens FILE (JSON list of ids) it writes ln p(observed next token) at every position.

  llama_cpp_peer.py MODEL.gguf --out llamacpp.json [--threads 1,2] [--batch 2] [--positions 64]
"""
import argparse
import json
import math
import random
import time

import numpy as np
from llama_cpp import Llama


def timed(fn, min_seconds, min_runs=3, max_runs=30):
    """(wall seconds, process CPU seconds) of the fastest of repeated runs after a warm-up. The CPU time
    (every thread of the process) is what a loaded, shared machine distorts least."""
    fn()
    runs = []
    start = time.perf_counter()
    while len(runs) < min_runs or (time.perf_counter() - start < min_seconds and len(runs) < max_runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(runs)


def log_probs_of(llm, ids):
    llm.reset()
    llm.eval(ids[:-1])
    logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return [float(lp[t, ids[t + 1]]) for t in range(len(ids) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--positions", type=int, default=64)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--check-tokens")
    a = ap.parse_args()
    rng = random.Random(7)
    out = {"model": a.model, "batch": a.batch, "positions": a.positions, "rows": []}
    for threads in [int(x) for x in a.threads.split(",")]:
        llm = Llama(model_path=a.model, n_ctx=max(a.positions + 1, 512), n_batch=max(a.positions, 512),
                    n_ubatch=max(a.positions, 512), n_threads=threads, n_threads_batch=threads, logits_all=True,
                    verbose=False)
        V = llm.n_vocab()
        seqs = [[rng.randrange(V) for _ in range(a.positions)] for _ in range(a.batch)]

        def forward():
            for ids in seqs:
                llm.reset()
                llm.eval(ids)

        s, cpu = timed(forward, a.min_seconds)
        row = {"case": "forward", "threads": threads, "seconds": s, "cpu_seconds": cpu,
               "tokens_per_s": a.batch * a.positions / s, "tokens_per_cpu_s": a.batch * a.positions / cpu}
        out["rows"].append(row)
        print(f"[llama.cpp] forward threads={threads}: {s * 1e3:.1f} ms, {row['tokens_per_s']:.0f} tokens/s", flush=True)
        if a.check_tokens and "check_log_probs" not in out:
            out["check_log_probs"] = log_probs_of(llm, json.load(open(a.check_tokens)))
        del llm
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
