#!/usr/bin/env python3
"""PyTorch peer of bench/bench_llama.cpp: the same Llama (SmolLM2-135M from its GGUF) in PyTorch, fp32.

Weights: read from the GGUF with PyPI `gguf` (GGUFReader + gguf.quants.dequantize, bit-identical to our
dequantisation), so both sides compute with the same fp32 numbers. The architecture is llama.cpp's for the
`llama` GGUF: RMSNorm, RoPE rotating ADJACENT pairs (2i, 2i+1) of each head (the GGUF converter permuted
W_q/W_k for that), grouped-query attention, SwiGLU, tied head. The workload is bench_llama's: B sequences of
n input positions (seeded random ids), loss = Σ_sequences mean NLL over the n targets;
  forward            all blocks + head under torch.inference_mode (bench_llama's llama/forward);
  top4_fwd_bwd       forward + backward with only the top k blocks and output_norm requiring grad
                     (bench_llama's llama/top4_forward_backward: autograd then skips the frozen blocks'
                     backward, as ours does).
Attention is F.scaled_dot_product_attention(is_causal=True, enable_gqa=True) — PyTorch's fused kernel.
Each case is timed at every thread count of --threads (torch.set_num_threads), fastest of repeated runs
after a warm-up (bench/peers/torch_peer.py's rule). With --check-tokens FILE (JSON list of ids) it also
writes ln p(observed next token) at every position, for a cross-check against llama.cpp on the same ids.

  llama_torch_peer.py MODEL.gguf --out torch.json [--threads 1,2] [--batch 2] [--positions 64] [--top-blocks 4]
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ensure_torch import import_torch  # noqa: E402

torch = import_torch()
import torch.nn.functional as F  # noqa: E402

try:
    import gguf  # noqa: E402
    from gguf import quants  # noqa: E402
except ImportError:
    sys.exit("llama_torch_peer: needs PyPI `gguf` (pip install gguf), or PYTHONPATH to a folder holding it")


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


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v.tolist()[0]


class Llama:
    def __init__(self, path, context):
        r = gguf.GGUFReader(path)
        self.L = int(field(r, "llama.block_count"))
        self.C = int(field(r, "llama.embedding_length"))
        self.H = int(field(r, "llama.attention.head_count"))
        self.Hkv = int(field(r, "llama.attention.head_count_kv"))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.base = float(field(r, "llama.rope.freq_base"))
        self.hd = self.C // self.H
        self.w = {}
        for t in r.tensors:
            a = quants.dequantize(t.data, t.tensor_type).astype("float32")
            shape = [int(x) for x in reversed(t.shape.tolist())]  # numpy order: (ne1, ne0) = (out, in)
            self.w[t.name[: -len(".weight")]] = torch.from_numpy(a.reshape(shape).copy())
        self.head = self.w.get("output", self.w["token_embd"])
        inv = self.base ** (-torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd)
        ang = torch.arange(context, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos().float(), ang.sin().float()

    def rms(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def rope(self, x):  # x: B, heads, T, hd; rotate adjacent pairs
        T = x.shape[2]
        x2 = x.unflatten(-1, (self.hd // 2, 2))
        a, b = x2[..., 0], x2[..., 1]
        c, s = self.cos[:T], self.sin[:T]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)

    def logits(self, tokens):
        B, T = tokens.shape
        x = self.w["token_embd"][tokens]
        for l in range(self.L):
            p = f"blk.{l}."
            h = self.rms(x, self.w[p + "attn_norm"])
            q = (h @ self.w[p + "attn_q"].T).view(B, T, self.H, self.hd).transpose(1, 2)
            k = (h @ self.w[p + "attn_k"].T).view(B, T, self.Hkv, self.hd).transpose(1, 2)
            v = (h @ self.w[p + "attn_v"].T).view(B, T, self.Hkv, self.hd).transpose(1, 2)
            a = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(B, T, self.C) @ self.w[p + "attn_output"].T
            h = self.rms(x, self.w[p + "ffn_norm"])
            x = x + (F.silu(h @ self.w[p + "ffn_gate"].T) * (h @ self.w[p + "ffn_up"].T)) @ self.w[p + "ffn_down"].T
        return self.rms(x, self.w["output_norm"]) @ self.head.T

    def loss(self, seqs):  # Σ over sequences of the mean NLL of its targets (bench_llama's sum_loss)
        lp = F.log_softmax(self.logits(seqs[:, :-1]), dim=-1)
        return -lp.gather(-1, seqs[:, 1:, None]).squeeze(-1).mean(-1).sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--positions", type=int, default=64)
    ap.add_argument("--top-blocks", type=int, default=4)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--check-tokens")
    a = ap.parse_args()
    t0 = time.perf_counter()
    m = Llama(a.model, max(a.positions + 1, 512))
    load_s = time.perf_counter() - t0
    V = m.head.shape[0]
    g = torch.Generator().manual_seed(7)
    seqs = torch.randint(0, V, (a.batch, a.positions + 1), generator=g)
    trainable = [f"blk.{l}.{n}" for l in range(m.L - a.top_blocks, m.L)
                 for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                           "ffn_up", "ffn_down")] + ["output_norm"]
    out = {"torch": torch.__version__, "batch": a.batch, "positions": a.positions, "top_blocks": a.top_blocks,
           "load_seconds": load_s, "rows": []}
    for threads in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(threads)

        def forward():
            with torch.inference_mode():
                return m.loss(seqs)

        def forward_backward():
            for n in trainable:
                m.w[n].requires_grad_(True)
                m.w[n].grad = None
            loss = m.loss(seqs)
            loss.backward()
            for n in trainable:
                m.w[n].requires_grad_(False)
            return loss

        for name, fn in (("forward", forward), ("top4_forward_backward", forward_backward)):
            s, cpu = timed(fn, a.min_seconds)
            row = {"case": name, "threads": threads, "seconds": s, "cpu_seconds": cpu,
                   "tokens_per_s": a.batch * a.positions / s, "tokens_per_cpu_s": a.batch * a.positions / cpu}
            out["rows"].append(row)
            print(f"[torch] {name} threads={threads}: {s * 1e3:.1f} ms, {row['tokens_per_s']:.0f} tokens/s", flush=True)
    out["loss"] = float(forward())
    if a.check_tokens:
        ids = torch.tensor(json.load(open(a.check_tokens)))[None, :]
        with torch.inference_mode():
            lp = F.log_softmax(m.logits(ids[:, :-1]), dim=-1)
            out["check_log_probs"] = lp.gather(-1, ids[:, 1:, None]).squeeze().tolist()
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
