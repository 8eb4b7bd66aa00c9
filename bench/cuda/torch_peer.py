#!/usr/bin/env python3
"""PyTorch peer of bench_cuda: the same operations on the same sizes, timed with CUDA events (median).

For each operation it times the usual PyTorch formulations and keeps the fastest, so the comparison
is against PyTorch at its best in eager mode (pass --compile to also try torch.compile). Keys match
the labels of bench_cuda rows. With --compare BENCH_JSON it joins both and writes a summary table:
our median time, our fraction of the ceiling measured by bench_cuda (copy bandwidth or GEMM rate),
the PyTorch time and the speed ratio torch_time / our_time (> 1: ours is faster).

Usage: python3 torch_peer.py [--json OUT.json] [--compare bench_cuda.json] [--summary summary.txt]
"""
import argparse
import json
import math
import sys

import torch

REPEATS = 20


def median_ms(fn, repeats=REPEATS, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def best(candidates, compile_too):
    """Times each (name, fn) and returns (best_ms, best_name, all)."""
    results = {}
    for name, fn in candidates:
        results[name] = median_ms(fn)
        if compile_too:
            compiled = torch.compile(fn)
            results[name + "+compile"] = median_ms(compiled)
    name = min(results, key=results.get)
    return results[name], name, results


def name_of(dtype):
    return "float" if dtype == torch.float32 else "double"


def run(compile_too):
    torch.backends.cuda.matmul.allow_tf32 = False  # bench_cuda measures true fp32 SGEMM
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    rows = {}

    def record(key, candidates):
        ms, which, everything = best(candidates, compile_too)
        rows[key] = {"ms": ms, "variant": which, "all_ms": everything}
        print(f"{key:70s} {ms:9.3f} ms  ({which})", flush=True)

    # 1. diagonal accumulation: diag += 0.5·Σᵢ gᵢ²; G is m×d row-major (= our d×m column-major).
    for dtype in (torch.float32, torch.float64):
        for d, m in ((10_000_000, 64), (1_000_000, 1024), (10_000_000, 1)):
            g = torch.randn(m, d, device=dev, dtype=dtype, generator=gen)
            diag = torch.zeros(d, device=dev, dtype=dtype)
            record(f"accumulate_squares/{name_of(dtype)}/d={d}/m={m}", [
                ("square_sum", lambda: diag.add_((g * g).sum(0), alpha=0.5)),
                ("vector_norm", lambda: diag.add_(torch.linalg.vector_norm(g, dim=0).square_(), alpha=0.5)),
                ("einsum", lambda: diag.add_(torch.einsum("ij,ij->j", g, g), alpha=0.5)),
            ])
            del g, diag
            torch.cuda.empty_cache()

    # 3. damped power / noise / update: F = 0.5·diag + 0.01, step = −0.1·F^p ⊙ v (+ 1e-3·F^{-1/4} ⊙ ε).
    for dtype, d in ((torch.float32, 100_000_000), (torch.float64, 50_000_000)):
        v = torch.randn(d, device=dev, dtype=dtype, generator=gen)
        diag = torch.randn(d, device=dev, dtype=dtype, generator=gen).square_()
        theta = torch.randn(d, device=dev, dtype=dtype, generator=gen)
        t = name_of(dtype)

        def inverse():
            return torch.div(v, diag.mul(0.5).add_(0.01)).mul_(-0.1)

        def inverse_pow():
            return (-0.1) * (0.5 * diag + 0.01).pow(-1.0) * v

        def noisy():
            f = diag.mul(0.5).add_(0.01)
            eps = torch.randn(d, device=dev, dtype=dtype, generator=gen)
            return torch.div(v, f).mul_(-0.1).add_(f.pow_(-0.25).mul_(eps), alpha=1e-3)

        record(f"apply_diagonal_power/{t}/inverse/d={d}", [("div", inverse), ("pow", inverse_pow)])
        record(f"apply_diagonal_power/{t}/inverse_noise/d={d}", [("div_randn", noisy)])
        record(f"apply_diagonal_power/{t}/inverse_noise_theta/d={d}", [("div_randn_add", lambda: theta.add_(noisy()))])
        record(f"apply_diagonal_power/{t}/power0.3/d={d}", [("pow", lambda: (-0.1) * (0.5 * diag + 0.01).pow(0.3) * v)])
        del v, diag, theta
        torch.cuda.empty_cache()

    # 2. Gram matrix GGᵀ (m×m) and per-block Σ gᵢgᵢᵀ.
    for dtype, d, m in ((torch.float32, 1 << 20, 1024), (torch.float32, 1 << 22, 256), (torch.float64, 1 << 19, 1024)):
        g = torch.randn(m, d, device=dev, dtype=dtype, generator=gen)
        ms, which, everything = best([("mm", lambda: torch.mm(g, g.t()))], compile_too)
        for algorithm in ("gemm", "syrk"):  # one PyTorch operation answers both of our algorithms
            rows[f"gram_matrix/{name_of(dtype)}/{algorithm}/d={d}/m={m}"] = {"ms": ms, "variant": which,
                                                                              "all_ms": everything}
        print(f"{'gram_matrix/' + name_of(dtype) + f'/d={d}/m={m}':70s} {ms:9.3f} ms  ({which})", flush=True)
        del g
        torch.cuda.empty_cache()
    for dtype, d, b, m in ((torch.float32, 1 << 22, 256, 256), (torch.float64, 1 << 21, 256, 256)):
        g = torch.randn(m, d, device=dev, dtype=dtype, generator=gen)
        nb = d // b
        a = g.view(m, nb, b).permute(1, 2, 0)  # nb × b × m
        blocks = torch.zeros(nb, b, b, device=dev, dtype=dtype)
        record(f"block_outer_products/{name_of(dtype)}/d={d}/b={b}/m={m}", [
            ("baddbmm", lambda: blocks.baddbmm_(a, a.transpose(1, 2))),
            ("einsum", lambda: blocks.add_(torch.einsum("kim,kjm->kij", a, a))),
        ])
        del g, a, blocks
        torch.cuda.empty_cache()

    # 4. Woodbury inverse product with a precomputed Cholesky factor of mλI + GGᵀ (λ = 1).
    for dtype, d, m in ((torch.float32, 1 << 22, 256), (torch.float64, 1 << 21, 256)):
        g = torch.randn(m, d, device=dev, dtype=dtype, generator=gen)
        v = torch.randn(d, device=dev, dtype=dtype, generator=gen)
        factor = torch.linalg.cholesky(g @ g.t() + m * torch.eye(m, device=dev, dtype=dtype))

        def woodbury():
            c = torch.cholesky_solve((g @ v).unsqueeze(1), factor)
            return v - g.t() @ c.squeeze(1)

        record(f"woodbury_inverse_product/{name_of(dtype)}/d={d}/m={m}", [("cholesky_solve", woodbury)])
        del g, v, factor
        torch.cuda.empty_cache()
    return rows


def compare(rows, bench_json, summary_path):
    with open(bench_json) as f:
        bench = json.load(f)
    ctx = bench.get("context", {})
    lines = [f"device: {ctx.get('device', '?')}; ceilings measured by bench_cuda in the same run: copy "
             f"{float(ctx.get('copy_GBps', 'nan')):.0f} GB/s, SGEMM {float(ctx.get('sgemm_TFLOPs', 'nan')):.1f} TFLOP/s, "
             f"DGEMM {float(ctx.get('dgemm_TFLOPs', 'nan')):.1f} TFLOP/s",
             f"{'operation':62s} {'ours ms':>9s} {'ceiling':>12s} {'torch ms':>9s} {'torch/ours':>10s}"]
    entries = bench.get("benchmarks", [])
    medians = [b for b in entries if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"]
    for b in medians or [b for b in entries if b.get("run_type") == "iteration"]:
        label = b.get("label", "")
        ours = b.get("real_time", math.nan)  # milliseconds (manual CUDA-event time)
        if "frac_copy_bw" in b:
            ceiling = f"{b['frac_copy_bw'] * 100:5.1f}% copy"
        elif "frac_gemm" in b:
            ceiling = f"{b['frac_gemm'] * 100:5.1f}% gemm"
        else:
            ceiling = ""
        peer = rows.get(label)
        torch_ms = peer["ms"] if peer else math.nan
        ratio = torch_ms / ours if peer and ours > 0 else math.nan
        lines.append(f"{label:62s} {ours:9.3f} {ceiling:>12s} {torch_ms:9.3f} {ratio:10.2f}")
    text = "\n".join(lines)
    print(text)
    if summary_path:
        with open(summary_path, "w") as f:
            f.write(text + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the PyTorch timings here")
    parser.add_argument("--compare", help="bench_cuda --benchmark_out JSON to join with")
    parser.add_argument("--summary", help="write the joined table here")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of each formulation")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_peer: PyTorch sees no CUDA device; nothing to measure")
        return 77
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    rows = run(args.compile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)
    if args.compare:
        try:
            compare(rows, args.compare, args.summary)
        except FileNotFoundError:
            print(f"torch_peer: {args.compare} not found (did bench_cuda run?); no comparison written")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
