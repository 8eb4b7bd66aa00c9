#!/usr/bin/env python3
"""Reads bench/run_llama_peers.sh's OUT_DIR and prints issue 11's table: tokens/s of our Llama, PyTorch and
llama.cpp (fastest iteration of each, same run), the ratios, the two peers' agreement on the same ids, and
the peak memory; writes OUT_DIR/summary.json (schema: {"commit", "load_before", "load_after", "rows":
[{"case", "threads", "ours", "torch", "llamacpp_f32", "llamacpp_q4_1"} tokens/s (fastest run, wall clock) and
each with "_per_cpu_s" (tokens per process CPU-second, one thread only), null when not measured],
"peer_max_abs_dlogp", "max_rss_mib", "loss_first", "loss_last", "compiler" (the C++ compiler that built ours)})."""
import json
import os
import re
import sys

out = sys.argv[1]
rd = lambda name: json.load(open(os.path.join(out, name)))
ours, ours_cpu = {}, {}
for b in rd("ours.json")["benchmarks"]:
    m = re.match(r"llama/(forward|top4_forward_backward)(/threads(\d+))?", b["name"])
    if m and "tokens_per_s_best" in b:
        key = (m.group(1), int(m.group(3) or 1))
        ours[key] = b["tokens_per_s_best"]
        # Google Benchmark's CPU time is the calling thread's: the process's only at one thread.
        if key[1] == 1:
            ours_cpu[key] = b["tokens_per_s"] * b["real_time"] / b["cpu_time"]
peers, peers_cpu = {}, {}
for key, name in (("torch", "torch.json"), ("llamacpp_f32", "llamacpp_f32.json"), ("llamacpp_q4_1", "llamacpp_q4_1.json")):
    if os.path.exists(os.path.join(out, name)):
        for r in rd(name)["rows"]:
            peers[(key, r["case"], r["threads"])] = r["tokens_per_s"]
            peers_cpu[(key, r["case"], r["threads"])] = r.get("tokens_per_cpu_s")
rows = []
for (case, t), v in sorted(ours.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    row = {"case": case, "threads": t, "ours": v, "ours_per_cpu_s": ours_cpu.get((case, t))}
    for key in ("torch", "llamacpp_f32", "llamacpp_q4_1"):
        row[key] = peers.get((key, case, t))
        row[key + "_per_cpu_s"] = peers_cpu.get((key, case, t)) if t == 1 else None
    rows.append(row)
print("| case | threads | ours tok/s | PyTorch tok/s | ours/PyTorch | llama.cpp F32 tok/s | ours/llama.cpp F32 | llama.cpp Q4_1 tok/s |")
print("|---|---|---|---|---|---|---|---|")
f = lambda x: "—" if x is None else f"{x:.0f}"
r_ = lambda a, b: "—" if a is None or b is None else f"{a / b:.2f}×"
for r in rows:
    print(f"| {r['case']} | {r['threads']} | {f(r['ours'])} | {f(r['torch'])} | {r_(r['ours'], r['torch'])} | "
          f"{f(r['llamacpp_f32'])} | {r_(r['ours'], r['llamacpp_f32'])} | {f(r['llamacpp_q4_1'])} |")
summary = {"commit": open(os.path.join(out, "commit.txt")).read().strip(),
           "load_before": open(os.path.join(out, "load_before.txt")).read().strip(),
           "load_after": open(os.path.join(out, "load_after.txt")).read().strip(), "rows": rows}
if os.path.exists(os.path.join(out, "compiler.txt")):
    summary["compiler"] = open(os.path.join(out, "compiler.txt")).read().strip()
    print("ours built with:", summary["compiler"].replace("\n", " | "))
try:
    a, b = rd("torch.json")["check_log_probs"], rd("llamacpp_f32.json")["check_log_probs"]
    summary["peer_max_abs_dlogp"] = max(abs(x - y) for x, y in zip(a, b))
    print(f"PyTorch vs llama.cpp F32 on the same 64 positions: max |Δ ln p| = {summary['peer_max_abs_dlogp']:.2e}")
except (FileNotFoundError, KeyError):
    pass
mem = open(os.path.join(out, "memory.txt")).read()
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(os.path.join(out, "memory_time.txt")).read())
summary["max_rss_mib"] = int(rss.group(1)) / 1024 if rss else None
losses = [float(x) for x in re.findall(r"mean loss ([0-9.]+)", mem)]
summary["loss_first"], summary["loss_last"] = (losses[0], losses[-1]) if losses else (None, None)
print(mem.strip())
print(f"max RSS (GNU time) of loading + fine-tuning the top 4 blocks: {summary['max_rss_mib']:.0f} MiB")
print(summary["load_before"].replace("\n", " | "), "->", summary["load_after"].replace("\n", " | "))
print()
print("tokens per CPU-second (process CPU time; one thread):")
print("| case | ours | PyTorch | ours/PyTorch | llama.cpp F32 | ours/llama.cpp F32 | llama.cpp Q4_1 |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if r["threads"] == 1:
        print(f"| {r['case']} | {f(r['ours_per_cpu_s'])} | {f(r['torch_per_cpu_s'])} | "
              f"{r_(r['ours_per_cpu_s'], r['torch_per_cpu_s'])} | {f(r['llamacpp_f32_per_cpu_s'])} | "
              f"{r_(r['ours_per_cpu_s'], r['llamacpp_f32_per_cpu_s'])} | {f(r['llamacpp_q4_1_per_cpu_s'])} |")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
