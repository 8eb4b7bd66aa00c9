#!/usr/bin/env python3
"""PyTorch peer of the C++ benchmarks, on the data the C++ binaries exported (--export_dir).

For every export found under EXPORT_DIR it rebuilds the same computation in PyTorch from the same
numbers (same weights, same sequences, same gradients), checks that the answers agree with ours
(relative error ‖ours − torch‖/‖torch‖, printed), times the PyTorch version, and writes a JSON file
that bench/report.py puts beside the C++ timings of the same run.

  per_sample_<name>/  the transformer: batched gradient (autograd), per-sample gradients with
                      functorch vmap(grad) (torch.func on PyTorch >= 2), and a naive autograd loop.
  fisher_diagonal/, fisher_diagonal_double/    Σ g², (diag + λ)⁻¹ v and (diag + λ)^(−1/4) v, float32 / float64.
  fisher_woodbury/, fisher_woodbury_float/     set-up (GᵀG, eigh, Cholesky of mλI + GᵀG) and F⁻¹v by the
                      Woodbury identity, float64 / float32 (float32 also with the m×m work in float64).
Times: the fastest wall-clock run and the fastest process CPU time (all threads) of each formulation.

Every case runs at each thread count of --threads (default 1 and 2, as the library's rows) and, with
--compile, also through torch.compile (inductor's C++ backend on the CPU); each row keeps every
formulation's time and the fastest one ("best"), so ours is compared with the fastest usual PyTorch.
Run it with a current PyTorch: bench/peers/setup_torch_venv.sh installs 2.15 into .cache/. Usage:
  torch_peer.py EXPORT_DIR --out peer.json [--threads 1,2] [--compile] [--min-seconds S]
"""
import argparse
import glob
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ensure_torch import functorch_transforms, import_torch  # noqa: E402
from export_format import Export  # noqa: E402

torch = import_torch()
import torch.nn.functional as F  # noqa: E402

vmap, grad = functorch_transforms(torch)


CPU_TIMES = {}  # id(fn) -> fastest process CPU seconds of the last timed(fn) call


def timed(fn, min_seconds, min_runs=3, max_runs=50):
    """Fastest wall-clock seconds of fn() over repeated runs, after one warm-up run (one timed run only
    when the warm-up alone took over 5 s). The fastest, not the median: on a shared machine it is the
    run least disturbed by preemption, and the library's Fisher rows are read the same way (best_seconds).
    The fastest process CPU time (all threads) of the same runs goes to timed_cpu(); the library's rows
    report theirs (best_cpu_seconds), so the two can be compared in CPU time on a loaded machine."""
    t0 = time.perf_counter()
    fn()
    if time.perf_counter() - t0 > 5.0:
        min_runs = 1
    times, cpu = [], []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_seconds and len(times) < max_runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    timed.last_cpu = min(cpu)
    return min(times)


def timed_both(fn, min_seconds):
    """(fastest wall seconds, fastest process CPU seconds) of fn()."""
    wall = timed(fn, min_seconds)
    return wall, timed.last_cpu


def rel_err(ours, ref):
    ours = ours.double()
    ref = ref.double()
    return float((ours - ref).norm() / ref.norm())


# ---- the transformer, as a pure function of the flat parameter vector -------------------------------

class TransformerLayout:
    """Offsets into the flat parameter vector, exactly as TransformerLayout in models/transformer.hpp."""

    def __init__(self, V, T, L, C, H, R):
        self.V, self.T, self.L, self.C, self.H, self.F = V, T, L, C, H, R * C
        at = 0

        def take(n):
            nonlocal at
            o = at
            at += n
            return o

        Fh = self.F
        self.token_embedding = take(C * V)
        self.position_embedding = take(C * T)
        self.blocks = []
        for _ in range(L):
            b = {}
            b["ln1_gain"] = take(C)
            b["ln1_bias"] = take(C)
            b["qkv_weight"] = take(3 * C * C)
            b["qkv_bias"] = take(3 * C)
            b["out_weight"] = take(C * C)
            b["out_bias"] = take(C)
            b["ln2_gain"] = take(C)
            b["ln2_bias"] = take(C)
            b["fc_weight"] = take(Fh * C)
            b["fc_bias"] = take(Fh)
            b["proj_weight"] = take(C * Fh)
            b["proj_bias"] = take(C)
            self.blocks.append(b)
        self.final_gain = take(C)
        self.final_bias = take(C)
        self.total = at


def make_transformer_loss(layout, eps):
    """loss(theta, tokens[B, n]) -> per-sequence mean next-token cross-entropy, shape [B]."""
    V, C, H, Fh = layout.V, layout.C, layout.H, layout.F
    hd = C // H

    def vec(theta, offset, n):
        return theta[offset:offset + n]

    def weight(theta, offset, out_features, in_features):
        # Column-major out×in (W[r, c] at r + c·out): viewed as in×out row-major it is Wᵀ, so y = x @ view.
        return theta[offset:offset + out_features * in_features].view(in_features, out_features)

    def loss(theta, tokens):
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        B, T = inputs.shape
        wte = theta[layout.token_embedding:layout.token_embedding + V * C].view(V, C)
        wpe = theta[layout.position_embedding:layout.position_embedding + layout.T * C].view(layout.T, C)
        x = wte[inputs] + wpe[:T]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        for b in layout.blocks:
            h = F.layer_norm(x, (C,), vec(theta, b["ln1_gain"], C), vec(theta, b["ln1_bias"], C), eps)
            qkv = h @ weight(theta, b["qkv_weight"], 3 * C, C) + vec(theta, b["qkv_bias"], 3 * C)
            q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, H, hd).transpose(1, 2) for i in range(3))
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            p = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            attn = (p @ v).transpose(1, 2).reshape(B, T, C)
            x = x + attn @ weight(theta, b["out_weight"], C, C) + vec(theta, b["out_bias"], C)
            h = F.layer_norm(x, (C,), vec(theta, b["ln2_gain"], C), vec(theta, b["ln2_bias"], C), eps)
            h = F.gelu(h @ weight(theta, b["fc_weight"], Fh, C) + vec(theta, b["fc_bias"], Fh), approximate="tanh")
            x = x + h @ weight(theta, b["proj_weight"], C, Fh) + vec(theta, b["proj_bias"], C)
        x = F.layer_norm(x, (C,), vec(theta, layout.final_gain, C), vec(theta, layout.final_bias, C), eps)
        log_probs = (x @ wte.t()).log_softmax(dim=-1)
        nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return nll.mean(dim=-1)

    return loss


def fastest(times):
    """(name, seconds) of the fastest formulation in {name: seconds}."""
    name = min(times, key=times.get)
    return name, times[name]


def compiled(fn):
    """torch.compile(fn); the first call (compilation, tens of seconds) happens in the untimed warm-up."""
    return torch.compile(fn, dynamic=False)


def per_sample_peer(directory, min_seconds, compile_too=False):
    e = Export(directory)
    val = e.values
    layout = TransformerLayout(*(int(val[k]) for k in
                                 ("vocab_size", "context_length", "num_layers", "width", "num_heads", "mlp_ratio")))
    theta = e.array("theta", torch)
    if theta.numel() != layout.total:
        raise SystemExit(f"{directory}: theta has {theta.numel()} entries, the layout {layout.total}; "
                         f"the peer's layout no longer matches models/transformer.hpp")
    tokens = e.array("tokens", torch).long()
    ours_per_sample = e.array("per_sample_gradients", torch)
    ours_losses = e.array("losses", torch)
    ours_batched = e.array("batched_gradient", torch)
    B = tokens.shape[0]
    loss = make_transformer_loss(layout, float(val["layer_norm_epsilon"]))

    def one_sequence_loss(th, seq):
        return loss(th, seq.unsqueeze(0))[0]

    per_sample_fn = vmap(grad(one_sequence_loss), in_dims=(None, 0))

    def batched():
        th = theta.detach().requires_grad_(True)
        total = loss(th, tokens).sum()
        (g,) = torch.autograd.grad(total, th)
        return total.detach(), g

    def loop():
        th = theta.detach().requires_grad_(True)
        out = torch.empty(B, theta.numel())
        for i in range(B):
            (out[i],) = torch.autograd.grad(one_sequence_loss(th, tokens[i]), th)
        return out

    with torch.no_grad():
        torch_losses = loss(theta, tokens)
    total, torch_batched = batched()
    torch_per_sample = per_sample_fn(theta, tokens)
    checks = {
        "losses": rel_err(ours_losses, torch_losses),
        "per_sample_gradients": rel_err(ours_per_sample, torch_per_sample),
        "batched_gradient": rel_err(ours_batched, torch_batched),
        "per_sample_sum_vs_batched(torch)": rel_err(torch_per_sample.sum(0), torch_batched),
    }
    times = {
        "batched_gradient": timed(batched, min_seconds),
        "vmap_grad": timed(lambda: per_sample_fn(theta, tokens), min_seconds),
        "autograd_loop": timed(loop, min_seconds),
    }
    if compile_too:
        per_sample_compiled = compiled(per_sample_fn)
        checks["per_sample_gradients(compiled)"] = rel_err(ours_per_sample, per_sample_compiled(theta, tokens))
        times["vmap_grad_compiled"] = timed(lambda: per_sample_compiled(theta, tokens), min_seconds)
        batched_grad_compiled = compiled(lambda th, tok: grad(lambda t: loss(t, tok).sum())(th))
        checks["batched_gradient(compiled)"] = rel_err(ours_batched, batched_grad_compiled(theta, tokens))
        times["batched_gradient_compiled"] = timed(lambda: batched_grad_compiled(theta, tokens), min_seconds)
    best = {
        "per_sample": fastest({k: times[k] for k in ("vmap_grad", "autograd_loop", "vmap_grad_compiled") if k in times}),
        "batched": fastest({k: times[k] for k in ("batched_gradient", "batched_gradient_compiled") if k in times}),
    }
    return {"d": layout.total, "batch": B, "seconds_per_batch": times, "best": best, "rel_err": checks}


# ---- Fisher estimators ------------------------------------------------------------------------------

def fastest_pair(times):
    """(name, (wall, cpu)) of the entry with the smallest wall time."""
    name = min(times, key=lambda k: times[k][0])
    return name, times[name]


def diagonal_peer(directory, min_seconds, compile_too=False):
    """Σ g², (diag + λ)⁻¹v and (diag + λ)^(−1/4)v in the export's dtype. For float32 exports two families:
    "float32" (float32 arithmetic throughout, as a PyTorch user writes it) and "float64 accumulation"
    (float32 in and out, squares summed and the power taken in float64: the library's arithmetic, which
    keeps the double sums and rounds the answer once). A double export has only float64."""
    e = Export(directory)
    lam = float(e.values["damping"])
    G = e.array("gradients", torch)  # m × d (gradients as rows)
    v = e.array("v", torch)
    m = G.shape[0]
    d = G.shape[1]
    is_float = G.dtype == torch.float32
    sum_sq = torch.empty(d, dtype=G.dtype)
    sum_sq64 = torch.empty(d, dtype=torch.float64)
    out = torch.empty_like(v)

    families = {}
    # Accumulation: Σ over the m rows (the fastest of the usual formulations is the row's time).
    acc = {
        "sum(G*G)": lambda: torch.sum(G * G, dim=0, out=sum_sq),
        "square().sum": lambda: G.square().sum(dim=0),
        "einsum": lambda: torch.einsum("md,md->d", G, G),
        "vector_norm²": lambda: torch.linalg.vector_norm(G, dim=0).square_(),
    }
    if compile_too:
        acc_compiled = compiled(lambda x: (x * x).sum(dim=0))
        acc["compiled"] = lambda: acc_compiled(G)
    diag = (acc["sum(G*G)"]().to(torch.float64) / m + lam).to(G.dtype)
    inv = {
        "div(out=)": lambda: torch.div(v, diag, out=out),
        "mul(reciprocal)": lambda: torch.mul(v, diag.reciprocal(), out=out),
    }
    quarter = {
        "pow": lambda: torch.mul(v, diag.pow(-0.25), out=out),
        "rsqrt∘sqrt": lambda: torch.mul(v, torch.rsqrt(torch.sqrt(diag)), out=out),
    }
    if compile_too:
        inv_compiled = compiled(lambda a, b: a / b)
        quarter_compiled = compiled(lambda a, b: a * torch.rsqrt(torch.sqrt(b)))
        inv["compiled"] = lambda: inv_compiled(v, diag)
        quarter["compiled"] = lambda: quarter_compiled(v, diag)
    families["float32" if is_float else "float64"] = (acc, inv, quarter)
    if is_float:
        diag64 = diag.to(torch.float64)  # the library keeps its mean of squares in double
        acc64 = {
            "sum(G.double()²)": lambda: torch.sum(G.to(torch.float64).square_(), dim=0, out=sum_sq64),
            "einsum(double)": lambda: torch.einsum("md,md->d", G.double(), G.double()),
        }
        inv64 = {"div in double": lambda: torch.div(v.to(torch.float64), diag64).to(torch.float32)}
        quarter64 = {"rsqrt∘sqrt in double":
                     lambda: (v.to(torch.float64) * torch.rsqrt(torch.sqrt(diag64))).to(torch.float32)}
        if compile_too:
            acc64_compiled = compiled(lambda x: (x.double() * x.double()).sum(dim=0))
            inv64_compiled = compiled(lambda a, b: (a.double() / b).float())
            q64_compiled = compiled(lambda a, b: (a.double() * torch.rsqrt(torch.sqrt(b))).float())
            acc64["compiled"] = lambda: acc64_compiled(G)
            inv64["compiled"] = lambda: inv64_compiled(v, diag64)
            quarter64["compiled"] = lambda: q64_compiled(v, diag64)
        families["float64 accumulation"] = (acc64, inv64, quarter64)

    exact = e.array("ours_diagonal", torch).to(torch.float64)
    errs = {"diagonal": rel_err(e.array("ours_diagonal", torch), diag)}
    inv["div(out=)"]()
    errs["apply_inverse"] = rel_err(e.array("ours_apply_inverse", torch), out)
    if "ours_apply_quarter" in e.arrays:
        quarter["rsqrt∘sqrt"]()
        errs["apply_quarter"] = rel_err(e.array("ours_apply_quarter", torch), out)
    result = {"d": d, "m": m, "dtype": str(G.dtype).replace("torch.", ""), "families": {}}
    for family, (a, i, q) in families.items():
        for name, fn in a.items():
            errs[f"accumulate[{family}: {name}]"] = rel_err(exact, (fn().to(torch.float64) / m + lam))
        times = {}
        for group, table in (("accumulate", a), ("apply_inverse", i), ("apply_quarter", q)):
            for name, fn in table.items():
                times[f"{group}[{name}]"] = timed_both(fn, min_seconds)
        seconds, cpu, best = {}, {}, {}
        for group in ("accumulate", "apply_inverse", "apply_quarter"):
            name, (w, c) = fastest_pair({k: t for k, t in times.items() if k.startswith(group + "[")})
            seconds[group], cpu[group], best[group] = w, c, name
        result["families"][family] = {"seconds": seconds, "cpu_seconds": cpu, "best": best,
                                      "all_seconds": {k: t[0] for k, t in times.items()}}
    # The top-level fields read by older reports: the first family.
    first = next(iter(result["families"].values()))
    result.update(seconds=first["seconds"], best=first["best"], rel_err=errs)
    return result


def woodbury_peer(directory, min_seconds, compile_too=False):
    """Set-up (Gram, eigh, Cholesky) and F⁻¹v by the Woodbury identity in the export's dtype; for a
    float32 export also with the m×m work in float64 (the library's arithmetic: the Gram accumulated in
    double from float gradients)."""
    e = Export(directory)
    lam = float(e.values["damping"])
    G = e.array("gradients", torch)  # m × d (rows are gradients, so G here is the library's Gᵀ)
    v = e.array("v", torch)
    m = G.shape[0]
    result = {"d": G.shape[1], "m": m, "dtype": str(G.dtype).replace("torch.", ""), "families": {}}
    errs = {}
    variants = [("float32" if G.dtype == torch.float32 else "float64", G.dtype)]
    if G.dtype == torch.float32:
        variants.append(("float64 accumulation", torch.float64))
    for family, work in variants:
        state = {}

        def setup():
            Gw = G if work == G.dtype else G.to(work)
            gram = Gw @ Gw.t()
            sigma, basis = torch.linalg.eigh(gram / m)  # the spectrum, for fractional powers (as finalize())
            system = gram + (m * lam) * torch.eye(m, dtype=work)
            state["factor"] = torch.linalg.cholesky(system)
            state["spectrum"] = (sigma, basis)

        def inverse_product():
            # F⁻¹v = (v − Gᵀ c)/λ with c = (mλI + GGᵀ)⁻¹ G v; the O(md) products in G's dtype (as the
            # library reads G in its Scalar), the m-vector in the working dtype.
            gv = (G @ v).to(work)
            c = torch.cholesky_solve(gv.unsqueeze(1), state["factor"]).squeeze(1)
            return (v - G.t() @ c.to(G.dtype)) / lam

        setup()
        out = inverse_product()
        errs[f"inverse_product[{family}]"] = rel_err(e.array("ours_inverse_product", torch), out)
        s_wall, s_cpu = timed_both(setup, min_seconds)
        p_wall, p_cpu = timed_both(inverse_product, min_seconds)
        result["families"][family] = {"seconds": {"setup": s_wall, "inverse_product": p_wall},
                                      "cpu_seconds": {"setup": s_cpu, "inverse_product": p_cpu}}
    first = next(iter(result["families"].values()))
    result.update(seconds=first["seconds"], rel_err=errs)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir")
    parser.add_argument("--out", required=True, help="JSON file for bench/report.py")
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated torch intra-op thread counts (default 1,2, as the library's rows)")
    parser.add_argument("--compile", nargs="?", const="all", default=None, choices=("all", "fisher"),
                        help="also time torch.compile'd formulations: 'all' (the default when given) or 'fisher' "
                             "(the Fisher rows only: compiling vmap(grad) of the wide transformer took over 13 "
                             "minutes on this machine)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each case for at least this long")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    if not thread_counts or min(thread_counts) < 1:
        raise SystemExit(f"--threads: expected a list of positive integers such as 1,2; got {args.threads!r}")
    result = {"torch_version": torch.__version__, "compile": args.compile or False,
              "blas": "see torch.__config__.show()", "by_threads": {}}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        run = {"threads": torch.get_num_threads(), "per_sample": {}, "fisher": {}}
        for directory in sorted(glob.glob(os.path.join(args.export_dir, "per_sample_*"))):
            name = os.path.basename(directory)[len("per_sample_"):]
            print(f"[peer] {threads} thread(s): per-sample gradients, {name} model ...", file=sys.stderr, flush=True)
            run["per_sample"][name] = per_sample_peer(directory, args.min_seconds, args.compile == "all")
        for name, fn in (("diagonal", diagonal_peer), ("diagonal_double", diagonal_peer),
                         ("woodbury", woodbury_peer), ("woodbury_float", woodbury_peer)):
            directory = os.path.join(args.export_dir, "fisher_" + name)
            if os.path.isdir(directory):
                print(f"[peer] {threads} thread(s): Fisher {name} ...", file=sys.stderr, flush=True)
                run["fisher"][name] = fn(directory, args.min_seconds, args.compile is not None)
        result["by_threads"][str(threads)] = run
        for section in ("per_sample", "fisher"):
            for name, r in run[section].items():
                errs = ", ".join(f"{k} {v:.2e}" for k, v in r["rel_err"].items())
                print(f"[peer] {threads} thread(s) {section}/{name}: relative error ours vs torch: {errs}")
    # The first thread count's results at the top level too (the layout report.py has always read).
    first = result["by_threads"][str(thread_counts[0])]
    result.update(threads=first["threads"], per_sample=first["per_sample"], fisher=first["fisher"])
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"[peer] wrote {args.out} (torch {torch.__version__}, threads {thread_counts}, compile {args.compile})")


if __name__ == "__main__":
    main()
