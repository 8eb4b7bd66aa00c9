#!/usr/bin/env python3
"""Turns one run of bench/run_all.sh into the Markdown table of bench/README.md.

Reads RESULTS_DIR/{bench_fisher,bench_per_sample,bench_unlearning,bench_exposure,bench_dp_sgd}.json (Google
Benchmark JSON; the median of the repetitions where there are several), RESULTS_DIR/peer.json
(bench/peers/torch_peer.py) and RESULTS_DIR/meta.json (the command, the commit, the machine), and prints
the goals of issue 6 (each measured value, its target, met or missed), ours / ceiling and ours / peer.
Every ratio is between numbers measured in that one run. Usage: report.py RESULTS_DIR
"""
import json
import os
import sys

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


class Results:
    def __init__(self, path):
        self.runs, self.bigo, self.rms = {}, {}, {}
        self.present = os.path.exists(path)
        if not self.present:
            return
        with open(path) as f:
            data = json.load(f)
        for b in data.get("benchmarks", []):
            key = b["run_name"].removesuffix("/real_time").removesuffix("/manual_time")
            kind = b.get("aggregate_name")
            if b.get("error_occurred"):
                continue
            if kind == "BigO":
                self.bigo[key] = b["big_o"]
            elif kind == "RMS":
                self.rms[key] = b["rms"]
            elif kind == "median" or (b["run_type"] == "iteration" and key not in self.runs):
                self.runs[key] = b

    def get(self, name):
        return self.runs.get(name)

    def seconds(self, name):
        b = self.runs.get(name)
        return None if b is None else b["real_time"] * UNIT[b["time_unit"]]

    def best_seconds(self, name):
        """The fastest iteration where the benchmark records it (best_seconds), else the mean."""
        b = self.runs.get(name)
        if b is None:
            return None
        return b.get("best_seconds") or self.seconds(name)

    def cpu_seconds(self, name):
        b = self.runs.get(name)
        return None if b is None or not b.get("cpu_time") else b["cpu_time"] * UNIT[b["time_unit"]]

    def cpu_fraction(self, name, counter=None):
        """Ours / ceiling with both sides in the benchmark thread's CPU time (1-thread rows only): the ceiling
        rows' CPU-time rates (stream read/copy/triad, GEMM) against the routine's CPU time. On a machine
        with many processes per core this removes the preemption both sides suffer differently."""
        if "threads2" in name or self.cpu_seconds(name) is None:
            return None
        parts = name.split("/")
        size = 4 if "<float>" in name else 8

        def stream_rate(kind):
            row = f"ceiling/stream_{kind}/33554432"
            t = self.cpu_seconds(row)
            n = {"read": 1, "copy": 2, "triad": 3}[kind] * 33554432 * 4
            return None if t is None else n / t

        try:
            if parts[0] == "diagonal" and parts[1].startswith("accumulate"):
                d, m = float(parts[2]), float(parts[3])
                r, c = stream_rate("read"), stream_rate("copy")
                ideal = d * m * size / r + 2 * d * 8 / c
            elif parts[0] == "diagonal":
                d = float(parts[2])
                ideal = d * (8 + 2 * size) / stream_rate("triad")
            elif parts[0] == "woodbury" and ("inverse_product" in parts[1] or "power_quarter" in parts[1]):
                d, m = float(parts[2]), float(parts[3])
                ideal = 2 * m * d * size / stream_rate("read") + 3 * d * size / stream_rate("triad")
            elif parts[0] == "woodbury" and parts[1].startswith("setup"):
                d, m = (float(parts[3]), float(parts[4])) if parts[2] == "over_m" else (float(parts[2]), float(parts[3]))
                g = self.cpu_seconds("ceiling/gemm<double>/1024/1024/1024")
                ideal = m * (m + 1) * d / (2.0 * 1024 ** 3 / g)
            else:
                return None
        except (TypeError, ZeroDivisionError, ValueError, IndexError):
            return None
        return ideal / self.cpu_seconds(name)

    def counter(self, name, counter):
        b = self.runs.get(name)
        return None if b is None else b.get(counter)


def fmt_seconds(s):
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(value, target, higher_is_better=True):
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "**met**" if ok else "**missed**"


FISHER_GOAL_ROWS = [
    # (label, 1-thread row, 2-thread row, fraction counter)
    ("Σ g² accumulation, d = 10⁷, m = 8, {t}", "diagonal/accumulate<{t}>/10000000/8",
     "diagonal/accumulate<{t}>/threads2/10000000/8", "of_ceiling"),
    ("(diag + λ)⁻¹v, d = 10⁷, {t}", "diagonal/apply_inverse<{t}>/10000000",
     "diagonal/apply_inverse<{t}>/threads2/10000000", "of_ceiling"),
    ("(diag + λ)^(−1/4)v, d = 10⁷, {t}", "diagonal/apply_quarter<{t}>/10000000",
     "diagonal/apply_quarter<{t}>/threads2/10000000", "of_ceiling"),
    ("Woodbury F⁻¹v, d = 2²⁰, m = 64, {t}", "woodbury/inverse_product<{t}>/1048576/64/1",
     "woodbury/inverse_product<{t}>/threads2/1048576/64/1", "of_ceiling"),
    ("Woodbury F^(−1/4)v, d = 2²⁰, m = 64, float", "woodbury/power_quarter<float>/1048576/64/1",
     "woodbury/power_quarter<float>/threads2/1048576/64/1", "of_ceiling"),
    ("Woodbury set-up, d = 2¹⁷, m = 64, double (of GEMM, m(m+1)d FLOP)", "woodbury/setup<double>/over_m/131072/64/1",
     "woodbury/setup<double>/threads2/131072/64/1", "of_gemm"),
    ("Woodbury set-up, d = 2¹⁷, m = 256, double", "woodbury/setup<double>/over_m/131072/256/1",
     "woodbury/setup<double>/threads2/131072/256/1", "of_gemm"),
    ("Woodbury set-up, d = 2¹⁷, m = 64, float gradients (Gram in double)", "woodbury/setup<float>/131072/64/1",
     "woodbury/setup<float>/threads2/131072/64/1", "of_gemm"),
    ("Woodbury set-up, G adopted (`adopt_gradients`, no copy), d = 2¹⁷, m = 64, {t}",
     "woodbury/setup_adopt<{t}>/131072/64", "woodbury/setup_adopt<{t}>/threads2/131072/64", "of_gemm"),
    ("Woodbury set-up, G adopted, d = 2¹⁷, m = 256, double", "woodbury/setup_adopt<double>/131072/256",
     "woodbury/setup_adopt<double>/threads2/131072/256", "of_gemm"),
]


def fisher_cause(fisher, name, frac):
    """The measured cause of a miss, from the counters of the same run."""
    c = lambda k: fisher.counter(name, k)
    if frac == "of_gemm":
        g, share = c("gram_of_gemm_cpu"), c("gram_share_cpu")
        if g is None:
            return "—"
        rest = ("the finiteness check (a pass over G) and finalize (O(m³))" if "setup_adopt" in name else
                "copying G into the estimator's fresh storage (page faults), the finiteness check and finalize (O(m³))")
        return (f"the Gram kernel alone runs at {g:.2f} of the GEMM rate (register tiles where built for AVX, "
                f"m×m outputs) and is {share:.0%} of the set-up; the other {1 - share:.0%} is {rest}")
    cs = c("compute_over_stream_cpu")
    roof = c("of_roofline_cpu")
    if cs is None:
        return "—"
    what = ("float→double conversion and a multiply-add per entry of G, in both passes" if name.startswith("woodbury/")
            else "the arithmetic in double: sqrt, sqrt, divide per entry")
    if cs >= 1.0:
        return (f"compute-bound: with the data in L2 the same call takes {cs:.2f}× the streaming time "
                f"({what}); {roof:.2f} of that compute roofline")
    return (f"with the data in L2 the same call takes {cs:.2f} of the streaming time, so the conversions and "
            f"arithmetic overlap the memory traffic only partly")


def fisher_goal_table(fisher, p):
    p("### Fisher kernels against their ceilings (issue 14, goal ≥ 0.70)")
    p("")
    p("Three readings of ours / ceiling: wall-clock mean and best iteration (the ceilings are best-of-N), and "
      "**process CPU time** (best CPU iteration ÷ a best-of-N CPU-time ceiling, both measured in this run, "
      "all threads counted): on a shared machine only the CPU-time column reads the kernel rather than the "
      "scheduler, and the verdict is read on it. `compute/stream`: the same call's CPU time with its data in "
      "L2, ÷ the streaming time of its bytes (above 1: compute-bound, and the roofline column is its ceiling).")
    p("")
    p("| routine | threads | wall mean | wall best | **CPU time** | compute/stream (CPU) | of roofline (CPU) | verdict | measured cause of a miss |")
    p("|---|---|---|---|---|---|---|---|---|")
    for label, one, two, frac in FISHER_GOAL_ROWS:
        types = ("float", "double") if "{t}" in label else ("",)
        for t in types:
            for threads, row in ((1, one), (2, two)):
                name = row.format(t=t)
                if fisher.get(name) is None:
                    p(f"| {label.format(t=t)} | {threads} | not measured | | | | | | |")
                    continue
                c = lambda k: fisher.counter(name, k)
                cpu, roof, cs = c(frac + "_cpu"), c("of_roofline_cpu"), c("compute_over_stream_cpu")
                if cpu is not None and cpu >= 0.70:
                    verdict_text, cause = "**met**", ""
                elif cs is not None and cs >= 1.0 and roof is not None and roof >= 0.70:
                    verdict_text = "**not met** (stream ceiling unreachable; compute roofline met)"
                    cause = fisher_cause(fisher, name, frac)
                else:
                    verdict_text, cause = "**not met**", fisher_cause(fisher, name, frac)
                p(f"| {label.format(t=t)} | {threads} | {fmt(c(frac))} | {fmt(c(frac + '_best'))} | **{fmt(cpu)}** | "
                  f"{fmt(cs)} | {fmt(roof)} | {verdict_text} | {cause} |")
    p("")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    root = sys.argv[1]
    fisher = Results(os.path.join(root, "bench_fisher.json"))
    per_sample = Results(os.path.join(root, "bench_per_sample.json"))
    unlearning = Results(os.path.join(root, "bench_unlearning.json"))
    dp_sgd = Results(os.path.join(root, "bench_dp_sgd.json"))
    exposure = Results(os.path.join(root, "bench_exposure.json"))
    llama = Results(os.path.join(root, "bench_llama.json"))
    peer = {}
    if os.path.exists(os.path.join(root, "peer.json")):
        with open(os.path.join(root, "peer.json")) as f:
            peer = json.load(f)
    meta = {}
    if os.path.exists(os.path.join(root, "meta.json")):
        with open(os.path.join(root, "meta.json")) as f:
            meta = json.load(f)

    out = []
    p = out.append
    if meta:
        p(f"Measured {meta.get('date', '?')} on {meta.get('machine', '?')}, commit {meta.get('commit', '?')}, "
          f"load average at start {meta.get('load_at_start', '?')}, at the end {meta.get('load_at_end', '?')}; "
          f"command: `{meta.get('command', '?')}`.")
        if meta.get("loads"):
            p("Load average (1, 5, 15 min) as each binary started: " +
              "; ".join(f"{k} {v}" for k, v in meta["loads"].items()) + ".")
        p("")

    # ---- ceilings --------------------------------------------------------------------------------
    p("### Ceilings measured in the same run (1 and 2 threads)")
    p("")
    p("| ceiling | 1 thread | 2 threads |")
    p("|---|---|---|")
    for k in ("read", "copy", "triad"):
        v1 = fisher.counter(f"ceiling/stream_{k}/33554432", "bytes_per_s")
        v2 = fisher.counter(f"ceiling/stream_{k}/threads2/33554432", "bytes_per_s")
        p(f"| stream {k}, 128 MiB arrays (STREAM byte counting) | {fmt(v1 and v1 / 1e9)} GB/s | {fmt(v2 and v2 / 1e9)} GB/s |")
    for t in ("double", "float"):
        v1 = fisher.counter(f"ceiling/gemm<{t}>/1024/1024/1024", "flop_per_s")
        v2 = fisher.counter(f"ceiling/gemm<{t}>/threads2/1024/1024/1024", "flop_per_s")
        p(f"| Eigen GEMM {t}, 1024³ | {fmt(v1 and v1 / 1e9)} GFLOP/s | {fmt(v2 and v2 / 1e9)} GFLOP/s |")
    v = fisher.counter("ceiling/gemm_gram_shape<double>/64/131072/64", "flop_per_s")
    p(f"| Eigen GEMM double, Gram shape 64×2¹⁷·2¹⁷×64 (reference) | {fmt(v and v / 1e9)} GFLOP/s |")
    p("")

    # ---- eigensolver -----------------------------------------------------------------------------
    eig_rows = [(n, k) for n, k in ((65, 0), (192, 0), (257, 0), (257, 1), (512, 0), (512, 1), (1536, 0))
                if fisher.get(f"eigen/symmetric<double>/{n}/{k}") is not None]
    if eig_rows:
        p("### Symmetric eigendecomposition (finalize of K-FAC/EK-FAC, Woodbury, dense blocks), 1 thread")
        p("")
        p("Divide and conquer (detail/symmetric_eigen.hpp) vs Eigen's SelfAdjointEigenSolver (tridiagonal QR) on the "
          "same matrix, best of 5 each in the same function.")
        p("")
        p("| n | matrix | ours | Eigen QR | Eigen ÷ ours | residual ‖AV−VΛ‖/‖A‖ | ‖VᵀV−I‖ |")
        p("|---|---|---|---|---|---|---|")
        for n, k in eig_rows:
            c = lambda key: fisher.counter(f"eigen/symmetric<double>/{n}/{k}", key)
            p(f"| {n} | {'rank n/4' if k else 'full rank'} | {fmt(c('ours_best_ms'))} ms | {fmt(c('eigen_qr_best_ms'))} ms | "
              f"{fmt(c('vs_eigen_qr'))} | {c('residual') or 0:.1e} | {c('orthogonality') or 0:.1e} |")
        p("")

    # ---- goals -----------------------------------------------------------------------------------
    goals = []

    def goal(what, value, target_text, target, higher=True, digits=2, note=""):
        goals.append((what, fmt(value, digits) + note, target_text, verdict(value, target, higher)))

    ps = per_sample.seconds("per_sample/gradients/demo")
    batched = per_sample.seconds("per_sample/batched_gradient/demo")
    goal("Per-sample gradients / batched gradient of the same batch (demo transformer, 32 sequences)",
         ratio(ps, batched), "≤ 1.5", 1.5, higher=False)
    torch_vmap = peer.get("per_sample", {}).get("demo", {}).get("seconds_per_batch", {}).get("vmap_grad")
    goal("Per-sample gradients, ours / PyTorch vmap(grad) (demo transformer, same weights and batch)",
         ratio(ps, torch_vmap), "< 1", 1.0 - 1e-12, higher=False)
    for model in ("table", "head"):
        goal(f"Pruned exact exposure, memorised canary, |R| = 10⁶ ({model} model): exhaustive ÷ pruned evaluations",
             exposure.counter(f"BM_pruned_{model}/memorised", "eval_ratio"), "≥ 20", 20.0, digits=0)
    train = unlearning.seconds("unlearning/train_from_scratch/iterations:1")
    steps = unlearning.counter("unlearning/train_from_scratch/iterations:1", "steps")
    note = "" if steps in (None, 1200) else f" (training shortened to {steps:.0f} steps: not the goal's measurement)"
    for est in ("woodbury", "diagonal"):
        goal(f"Full FisherRemoval ({est}) vs training the demo model from scratch: speed-up",
             ratio(train, unlearning.seconds(f"unlearning/fisher_removal<{est}>/iterations:3")), "≥ 20", 20.0,
             digits=1, note=note)
    for name in sorted(unlearning.runs):
        if name.startswith("unlearning/natural_gradient<"):
            est = name[len("unlearning/natural_gradient<"):].split(">")[0]
            rest = name.split(">", 1)[1]
            tt = "2 threads" if "threads2" in rest else "1 thread"
            base = unlearning.seconds("unlearning/train_from_scratch/threads2/iterations:1" if "threads2" in rest
                                      else "unlearning/train_from_scratch/iterations:1") or train
            cpu_note = ""
            if "threads2" not in rest:  # the benchmark thread's CPU time is all the work at 1 thread
                cpu_speedup = ratio(unlearning.cpu_seconds("unlearning/train_from_scratch/iterations:1"),
                                    unlearning.cpu_seconds(name))
                cpu_note = f" (CPU time: {fmt(cpu_speedup, 1)})"
            built = ("F_R built once beforehand (`prebuilt_fisher`: one deletion request timed)" if "prebuilt_fisher" in rest
                     else "F_R built in the run")
            goal(f"Iterated natural gradient, F_R = {est}, {built}, {tt} ({unlearning.counter(name, 'steps') or 0:.0f} steps) "
                 f"vs retraining the demo model, {tt}: speed-up, wall (issue 14 item 4)",
                 ratio(base, unlearning.seconds(name)), "≥ 100", 100.0, digits=1, note=note + cpu_note)
    for model in ("demo", "wide"):
        goal(f"One DP-SGD step / one plain training step, same 32 windows ({model} transformer; issue 12)",
             dp_sgd.counter(f"dp_sgd/step_vs_plain/{model}", "dp_over_plain"), "≤ 2", 2.0, higher=False)
    fisher_goal_table(fisher, p)
    p("### Other goals (issues 6, 12, 14)")
    p("")
    p("| goal | measured | target | verdict |")
    p("|---|---|---|---|")
    for g in goals:
        p("| " + " | ".join(g) + " |")
    p("")

    # ---- complexity ------------------------------------------------------------------------------
    p("### Complexity (SetComplexityN; Google Benchmark's least-squares fit)")
    p("")
    p("| family | sizes | expected | fitted | RMS of the fit |")
    p("|---|---|---|---|---|")
    for fam, sizes, expect in (("woodbury/setup<double>/over_m", "d = 2¹⁷, m = 16 … 256", "O(m²d): N²"),
                               ("woodbury/setup<double>/over_d", "m = 64, d = 2¹⁵ … 2¹⁹", "O(d): N"),
                               ("woodbury/inverse_product<float>/over_d", "m = 32, d = 2¹⁶ … 2²⁰", "O(md): N"),
                               ("woodbury/inverse_product<float>/over_m", "d = 2¹⁸, m = 8 … 128", "O(md): N")):
        rms = fisher.rms.get(fam)
        p(f"| `{fam}` | {sizes} | {expect} | {fisher.bigo.get(fam, '—')} | "
          f"{'—' if rms is None else f'{100 * rms:.0f} %'} |")
    p("")

    # ---- ours / ceiling --------------------------------------------------------------------------
    p("### Ours / ceiling")
    p("")
    p("Two fractions: `mean` = ceiling time ÷ the mean iteration (what Google Benchmark reports), `best` = ceiling "
      "time ÷ the fastest iteration (the ceilings are best-of-N too; on a shared machine this compares like with like).")
    p("")
    p("| routine | time | rate | ceiling | ours / ceiling (mean) | (best) | (process CPU time) |")
    p("|---|---|---|---|---|---|---|")
    rows = [
        ("diagonal/accumulate<float>/10000000/8", "bytes_per_s", "of_ceiling", "stream read + copy"),
        ("diagonal/accumulate<float>/1048576/8", "bytes_per_s", "of_ceiling", "stream read + copy"),
        ("diagonal/accumulate<double>/10000000/8", "bytes_per_s", "of_ceiling", "stream read + copy"),
        ("diagonal/apply_inverse<float>/10000000", "bytes_per_s", "of_ceiling", "stream triad"),
        ("diagonal/apply_inverse<double>/10000000", "bytes_per_s", "of_ceiling", "stream triad"),
        ("diagonal/apply_quarter<float>/10000000", "bytes_per_s", "of_ceiling", "stream triad"),
        ("woodbury/setup<double>/over_m/131072/16/1", "flop_per_s", "of_gemm", "GEMM double"),
        ("woodbury/setup<double>/over_m/131072/64/1", "flop_per_s", "of_gemm", "GEMM double"),
        ("woodbury/setup<double>/over_m/131072/256/1", "flop_per_s", "of_gemm", "GEMM double"),
        ("woodbury/setup<float>/131072/64/1", "flop_per_s", "of_gemm", "GEMM double"),
        ("woodbury/inverse_product<float>/1048576/64/1", "bytes_per_s", "of_ceiling", "stream read + triad"),
        ("woodbury/inverse_product<double>/1048576/64/1", "bytes_per_s", "of_ceiling", "stream read + triad"),
        ("woodbury/power_quarter<float>/1048576/64/1", "bytes_per_s", "of_ceiling", "stream read + triad"),
    ]
    rows.append(("diagonal/apply_quarter<double>/10000000", "bytes_per_s", "of_ceiling", "stream triad"))
    for name, rate, frac, ceiling in list(rows):
        parts = name.split("/")
        if name.startswith("woodbury/setup<double>/over_m/"):
            alt = "woodbury/setup<double>/threads2/" + "/".join(parts[3:])
        else:
            alt = "/".join(parts[:2]) + "/threads2/" + "/".join(parts[2:])
        if fisher.get(alt):
            rows.append((alt, rate, frac, ceiling + " (2 threads)"))
    for name, rate, frac, ceiling in rows:
        r = fisher.counter(name, rate)
        unit = "GB/s" if rate == "bytes_per_s" else "GFLOP/s"
        p(f"| `{name}` | {fmt_seconds(fisher.seconds(name))} | {fmt(r and r / 1e9)} {unit} | {ceiling} | "
          f"{fmt(fisher.counter(name, frac))} | {fmt(fisher.counter(name, frac + '_best'))} | "
          f"{fmt(fisher.counter(name, frac + '_cpu'))} |")
    p("")

    # ---- Llama (SmolLM2) -------------------------------------------------------------------------
    if llama.present:
        p("### Llama (SmolLM2-135M, fp32) against the float GEMM ceiling (`bench_llama`)")
        p("")
        p("| routine | threads | time (2 × 64 positions) | tokens/s | counted GFLOP/s | of GEMM (mean) | (best) | (CPU time, 1 thread) |")
        p("|---|---|---|---|---|---|---|---|")
        for base in ("llama/forward", "llama/top4_forward_backward"):
            for sfx, t in (("", 1), ("/threads2", 2)):
                name = base + sfx
                if llama.get(name) is None:
                    p(f"| `{name}` | {t} | not measured | | | | | |")
                    continue
                fl = llama.counter(name, "flop_per_s")
                cpu_of_gemm = None
                if t == 1 and llama.cpu_seconds(name) and llama.cpu_seconds("ceiling/gemm<float>/1024/1024/1024"):
                    flops = fl * llama.seconds(name)
                    cpu_of_gemm = (flops / llama.cpu_seconds(name)) / (2.0 * 1024 ** 3 / llama.cpu_seconds("ceiling/gemm<float>/1024/1024/1024"))
                p(f"| `{name}` | {t} | {fmt_seconds(llama.seconds(name))} | {fmt(llama.counter(name, 'tokens_per_s'), 0)} | "
                  f"{fmt(fl and fl / 1e9)} | {fmt(llama.counter(name, 'of_gemm'))} | {fmt(llama.counter(name, 'of_gemm_best'))} | "
                  f"{fmt(cpu_of_gemm)} |")
        p("")

    # ---- baselines in the same binaries --------------------------------------------------------
    p("### Ours / baseline (same binary)")
    p("")
    p("| ours | baseline | ours | baseline | ours / baseline |")
    p("|---|---|---|---|---|")
    pairs = [
        (fisher, "woodbury/setup_and_solve<double>/1024/64", "dense/naive_solve<double>/1024/64"),
        (fisher, "woodbury/setup_and_solve<double>/4096/64", "dense/naive_solve<double>/4096/64"),
        (per_sample, "per_sample/gradients/demo", "per_sample/batched_gradient/demo"),
        (per_sample, "per_sample/collect_gradients/demo", "per_sample/batched_gradient/demo"),
        (per_sample, "per_sample/gradients/wide", "per_sample/batched_gradient/wide"),
        (exposure, "BM_pruned_table/memorised", "BM_exhaustive_table/memorised"),
        (exposure, "BM_pruned_table/unmemorised", "BM_exhaustive_table/unmemorised"),
        (exposure, "BM_pruned_head/memorised", "BM_exhaustive_head/memorised/iterations:2"),
        (exposure, "BM_pruned_head/unmemorised/iterations:2", "BM_exhaustive_head/unmemorised/iterations:2"),
        (unlearning, "unlearning/fisher_removal<woodbury>/iterations:3", "unlearning/train_from_scratch/iterations:1"),
        (unlearning, "unlearning/fisher_removal<diagonal>/iterations:3", "unlearning/train_from_scratch/iterations:1"),
    ]
    for res, ours, base in pairs:
        a, b = res.seconds(ours), res.seconds(base)
        p(f"| `{ours}` | `{base}` | {fmt_seconds(a)} | {fmt_seconds(b)} | {fmt(ratio(a, b), 3)} |")
    err = fisher.counter("dense/naive_solve<double>/1024/64", "rel_err_vs_woodbury")
    if err is not None:
        p("")
        p(f"Woodbury F⁻¹v vs the dense solve, relative difference: {err:.1e} (d = 1024), "
          f"{fisher.counter('dense/naive_solve<double>/4096/64', 'rel_err_vs_woodbury') or float('nan'):.1e} (d = 4096).")
    for name in sorted(unlearning.runs):
        if name.startswith("unlearning/natural_gradient<"):
            b = unlearning.get(name)
            p(f"`{name}`: {fmt_seconds(unlearning.seconds(name))}, {b.get('steps', 0):.0f} steps, forget objective "
              f"{b.get('forget_objective_before', float('nan')):.3f} → {b.get('forget_objective_last', float('nan')):.3f}, "
              f"trust region hit in {b.get('trust_region_hits', float('nan')):.0f} steps.")
    parts_rows = [n for n in sorted(unlearning.runs) if n.startswith("unlearning/first_request_parts<")]
    if parts_rows:
        p("")
        p("The first request's parts, each timed alone (`first_request_parts`; ms, mean of 5): the passes and "
          "step gradients run the training's own kernels, the statistics (factor sums, diagonal block), "
          "finalize (16 eigendecompositions) and the steps' K-FAC products are the request's own work. "
          "Training: its time estimated from 24 of its steps timed between the parts (the training row's, "
          "run minutes earlier, in brackets). Ratios: training ÷ the parts' sum; ÷ (passes + step gradients) = the bound if the request's own "
          "work were free; with the statistics at Eigen's float GEMM rate of their shapes (hot cache).")
        p("")
        p("| row | passes | statistics | finalize | step gradients | steps other | training (row) | training ÷ parts | "
          "if own work free | statistics ÷ GEMM rate | if statistics at GEMM rate |")
        p("|---|---|---|---|---|---|---|---|---|---|---|")
        for name in parts_rows:
            b = unlearning.get(name)
            ms = lambda k: f"{1e3 * b.get(k, float('nan')):.1f}"
            p(f"| `{name.split('/iterations')[0]}` | {ms('passes')} | {ms('statistics')} | {ms('finalize')} | "
              f"{ms('step_gradients')} | {ms('steps_other')} | {b.get('training_seconds', float('nan')):.1f} s "
              f"({b.get('training_row_seconds', float('nan')):.1f} s) | {b.get('ratio_parts', float('nan')):.1f} | "
              f"{b.get('ratio_if_own_work_free', float('nan')):.1f} | {b.get('statistics_of_gemm', float('nan')):.2f} | "
              f"{b.get('ratio_if_statistics_at_gemm', float('nan')):.1f} |")
    for est in ("woodbury", "diagonal"):
        b = unlearning.get(f"unlearning/fisher_removal<{est}>/iterations:3")
        if b:
            p(f"FisherRemoval<{est}>: forget loss {b['forget_loss_before']:.3f} → {b['forget_loss_after']:.3f}, "
              f"retain loss {b['retain_loss_before']:.3f} → {b['retain_loss_after']:.3f}, chosen damping "
              f"{b['damping']:g}, m = {b['fisher_gradients']:.0f}.")
    p("")

    # ---- ours / peer -----------------------------------------------------------------------------
    p("### Ours / PyTorch peer (same data, same run)")
    p("")
    if not peer:
        p("The peer did not run (see the log).")
    else:
        by_threads = peer.get("by_threads") or {str(peer.get("threads", 1)): peer}
        p(f"PyTorch {peer.get('torch_version')}, torch.compile: {dict(all='every row', fisher='the Fisher rows').get(peer.get('compile'), 'not timed')}; "
          "each PyTorch time is the fastest run of the fastest formulation timed (which one in its column); ours at "
          "the same thread count: the fastest iteration for the Fisher rows, the mean for the transformer rows "
          "(so those favour PyTorch).")
        p("")
        p("| threads | operation | ours | PyTorch | ours / PyTorch | PyTorch formulation | relative error ours vs PyTorch |")
        p("|---|---|---|---|---|---|---|")
        for threads, run in by_threads.items():
            sfx = "" if threads == "1" else f"/threads{threads}"
            for model, r in run.get("per_sample", {}).items():
                t = r["seconds_per_batch"]
                e = r["rel_err"]
                best = r.get("best", {})
                ps_name, ps_time = best.get("per_sample", ("vmap_grad", t["vmap_grad"]))
                b_name, b_time = best.get("batched", ("batched_gradient", t["batched_gradient"]))
                rows = [
                    (f"per-sample gradients, {model} (d = {r['d']}, B = {r['batch']})",
                     per_sample.seconds(f"per_sample/gradients/{model}{sfx}"), ps_time, ps_name, e["per_sample_gradients"]),
                    (f"per-sample gradients, {model}, vs vmap(grad) (eager)",
                     per_sample.seconds(f"per_sample/gradients/{model}{sfx}"), t["vmap_grad"], "vmap_grad", e["per_sample_gradients"]),
                    (f"batched gradient, {model}",
                     per_sample.seconds(f"per_sample/batched_gradient/{model}{sfx}"), b_time, b_name, e["batched_gradient"]),
                ]
                for what, a, b, how, err in rows:
                    p(f"| {threads} | {what} | {fmt_seconds(a)} | {fmt_seconds(b)} | {fmt(ratio(a, b), 3)} | {how} | {err:.1e} |")
        p("")
        p("Fisher rows, like with like: the same dtype in and out; for float inputs PyTorch twice, in float32 "
          "throughout and with the library's arithmetic (squares, Gram and powers in float64, answer rounded "
          "once to float32). Both sides' fastest run, in wall-clock time and in process CPU time (all threads).")
        p("")
        p("| threads | operation | PyTorch arithmetic | ours (wall / CPU) | PyTorch (wall / CPU) | ours / PyTorch, wall | **ours / PyTorch, CPU** | PyTorch formulation |")
        p("|---|---|---|---|---|---|---|---|")
        for threads, run in by_threads.items():
            sfx = "" if threads == "1" else f"/threads{threads}"
            f = run.get("fisher", {})
            for key, t in (("diagonal", "float"), ("diagonal_double", "double")):
                r = f.get(key)
                if not r or "families" not in r:
                    continue
                for family, fr in r["families"].items():
                    for what, ours, group in (
                            (f"Σ g², d = 2²⁰, m = 8, {t}", f"diagonal/accumulate<{t}>{sfx}/1048576/8", "accumulate"),
                            (f"(diag + λ)⁻¹v, d = 2²⁰, {t}", f"diagonal/apply_inverse<{t}>{sfx}/1048576", "apply_inverse"),
                            (f"(diag + λ)^(−1/4)v, d = 2²⁰, {t}", f"diagonal/apply_quarter<{t}>{sfx}/1048576", "apply_quarter")):
                        aw, ac = fisher.counter(ours, "best_seconds"), fisher.counter(ours, "best_cpu_seconds")
                        bw, bc = fr["seconds"][group], fr["cpu_seconds"][group]
                        p(f"| {threads} | {what} | {family} | {fmt_seconds(aw)} / {fmt_seconds(ac)} | "
                          f"{fmt_seconds(bw)} / {fmt_seconds(bc)} | {fmt(ratio(aw, bw), 3)} | **{fmt(ratio(ac, bc), 3)}** | "
                          f"{fr['best'][group]} |")
            for key, t in (("woodbury", "double"), ("woodbury_float", "float")):
                r = f.get(key)
                if not r or "families" not in r:
                    continue
                for family, fr in r["families"].items():
                    setup = (f"woodbury/setup<{t}>/over_m/131072/64/1" if (t == "double" and not sfx)
                             else f"woodbury/setup<{t}>{sfx}/131072/64/1")
                    for what, ours, group in (
                            (f"Woodbury set-up (Gram, eigh, Cholesky), d = 2¹⁷, m = 64, {t}", setup, "setup"),
                            (f"Woodbury set-up, G adopted (`adopt_gradients`: no copy of G, as PyTorch's), "
                             f"d = 2¹⁷, m = 64, {t}", f"woodbury/setup_adopt<{t}>{sfx}/131072/64", "setup"),
                            (f"Woodbury F⁻¹v, d = 2¹⁷, m = 64, {t}", f"woodbury/inverse_product<{t}>{sfx}/131072/64/1",
                             "inverse_product")):
                        aw, ac = fisher.counter(ours, "best_seconds"), fisher.counter(ours, "best_cpu_seconds")
                        bw, bc = fr["seconds"][group], fr["cpu_seconds"][group]
                        p(f"| {threads} | {what} | {family} | {fmt_seconds(aw)} / {fmt_seconds(ac)} | "
                          f"{fmt_seconds(bw)} / {fmt_seconds(bc)} | {fmt(ratio(aw, bw), 3)} | **{fmt(ratio(ac, bc), 3)}** | "
                          f"matmul, eigh, cholesky{'_solve' if group == 'inverse_product' else ''} |")
        errs = []
        for threads, run in by_threads.items():
            for key, r in run.get("fisher", {}).items():
                for k, v in r.get("rel_err", {}).items():
                    errs.append(f"{key}/{k} {v:.1e}")
            break
        p("")
        p("Relative differences ours vs PyTorch (1 thread): " + "; ".join(errs) + ".")
    print("\n".join(out))


if __name__ == "__main__":
    main()
