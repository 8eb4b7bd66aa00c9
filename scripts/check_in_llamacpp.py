#!/usr/bin/env python3
"""Does llama.cpp give an unlearned GGUF the log-probabilities fisher_unlearn gives it? (issue 13, item 5)

For each record (a deleted address after " -- Name <", a deleted passage), three or four numbers:
  * in memory: ours, measured by examples/case_studies on the unlearned model before it was written
    (read from the case's results.json; absent for a plain --records file);
  * ours on the file: build/examples/score_gguf on the GGUF (the file as fisher_unlearn reads it back);
  * llama.cpp on the file (llama-cpp-python): what a user serving the file gets; its CPU kernels multiply
    the Q4_1 tensors with activations rounded to 8 bits, so per-token differences of a few tenths are
    its quantised arithmetic (docs/llama.md, "Parity with llama.cpp");
  * llama.cpp on an all-F32 copy (--gguf-f32, written by `llama_export_canary UNLEARNED.gguf OUT --f32-all`):
    the same weights in fp32 products, the tight check.
Both sides get the same token ids (score_gguf's), so the tokenizer plays no part.

usage:
  scripts/check_in_llamacpp.py --gguf results/case_a/unlearned.gguf --from-results results/case_a/results.json \
      [--gguf-f32 /tmp/case_a_f32.gguf] [--out results/case_a/llamacpp_check.json]
  scripts/check_in_llamacpp.py --gguf MODEL.gguf --records forget.txt     # 'prefix<TAB>secret' a line
Run with the Python that has llama_cpp (e.g. /work/cache/venv-llamacpp/bin/python).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def escape(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def records_from_results(path):
    """(prefix, secret, in-memory ln p or None, label) of what the case deleted, from its results.json."""
    j = json.load(open(path))
    if j.get("schema") != "case_studies results v1":
        sys.exit("error: %s is not a case_studies results.json (schema 'case_studies results v1')" % path)
    out = []
    if j["study"] == "a":
        # case_studies names the exported method ("exported"); older results exported the first method
        exported = j["methods"][j.get("exported", {}).get("method_index", 0)]
        for p in exported["evaluation"]["people"]:
            if p["role"].startswith("deleted"):
                out.append(("\n -- %s <" % p["name"], p["email"] + ">", p["log_prob"],
                            "%s <%s> (%s)" % (p["name"], p["email"], p["role"])))
        return out, exported["method"]
    ex = j.get("export")
    if not ex:
        sys.exit("error: %s has no 'export' section (case B run without an exported model?)" % path)
    for r in ex["records"]:
        out.append(("", r["text"], r["log_prob"], "passage (%s)" % r["role"]))
    return out, ex["method"]


def records_from_file(path):
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        pre, _, sec = line.partition("\t") if "\t" in line else ("", "", line)
        un = lambda s: s.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")  # noqa: E731
        out.append((un(pre), un(sec), None, line[:60]))
    return out


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def llamacpp_log_probs(path, scored, threads):
    from llama_cpp import Llama
    n_ctx = max(len(r["tokens"]) for r in scored) + 8
    model = Llama(model_path=path, n_ctx=max(n_ctx, 64), n_batch=512, logits_all=True, n_threads=threads, verbose=False)
    out = []
    for r in scored:
        toks = r["tokens"]
        model.reset()
        model.eval(toks)
        lp = log_softmax(np.array(model.scores[: len(toks)]))
        out.append([float(lp[t - 1, toks[t]]) for t in range(r["first_scored"], len(toks))])
    del model
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="the unlearned GGUF")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-results", help="a case_studies results.json: the deleted records and our in-memory values")
    src.add_argument("--records", help="records, 'prefix<TAB>secret' a line (unlearn_gguf's --forget format)")
    ap.add_argument("--gguf-f32", help="an all-F32 copy of --gguf (llama_export_canary GGUF OUT --f32-all)")
    ap.add_argument("--scorer", default="build/examples/score_gguf", help="fisher_unlearn's scorer binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="JSON written here (atomically)")
    a = ap.parse_args()
    for p in [a.gguf, a.gguf_f32, a.scorer]:
        if p and not os.path.isfile(p):
            sys.exit("error: '%s' does not exist (build the scorer: cmake --build build --target score_gguf)" % p)

    if a.from_results:
        recs, method = records_from_results(a.from_results)
    else:
        recs, method = records_from_file(a.records), None
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as f:
        for pre, sec, _, _ in recs:
            f.write(escape(pre) + "\t" + escape(sec) + "\n")
        tsv = f.name
    try:
        run = subprocess.run([a.scorer, a.gguf, tsv, "--threads", str(a.threads)], capture_output=True, text=True)
    finally:
        os.unlink(tsv)
    if run.returncode != 0:
        sys.exit("error: %s failed: %s" % (a.scorer, run.stderr.strip()))
    ours = json.loads(run.stdout)["records"]
    lc = llamacpp_log_probs(a.gguf, ours, a.threads)
    lc32 = llamacpp_log_probs(a.gguf_f32, ours, a.threads) if a.gguf_f32 else None

    rows = []
    for i, (pre, sec, mem, label) in enumerate(recs):
        o = np.array(ours[i]["log_probs"])
        q = np.array(lc[i])
        row = {"record": label, "tokens": len(ours[i]["tokens"]), "scored_tokens": len(o),
               "in_memory": mem, "ours_file": float(o.sum()), "llamacpp": float(q.sum()),
               "abs_diff_sum_llamacpp": float(abs(o.sum() - q.sum())),
               "max_abs_diff_token_llamacpp": float(np.abs(o - q).max())}
        if mem is not None:
            row["abs_diff_in_memory_vs_file"] = float(abs(mem - o.sum()))
        if lc32 is not None:
            f32 = np.array(lc32[i])
            row["llamacpp_f32"] = float(f32.sum())
            row["abs_diff_sum_llamacpp_f32"] = float(abs(o.sum() - f32.sum()))
            row["max_abs_diff_token_llamacpp_f32"] = float(np.abs(o - f32).max())
        rows.append(row)

    def mx(k):
        v = [r[k] for r in rows if k in r]
        return max(v) if v else None

    summary = {k: mx(k) for k in ["abs_diff_in_memory_vs_file", "abs_diff_sum_llamacpp", "max_abs_diff_token_llamacpp",
                                  "abs_diff_sum_llamacpp_f32", "max_abs_diff_token_llamacpp_f32"]}
    from llama_cpp import __version__ as v
    result = {"schema": "check_in_llamacpp v1", "gguf": a.gguf, "gguf_f32": a.gguf_f32, "method": method,
              "llama_cpp_python": v, "records": rows, "max": summary}
    hdr = "| record | scored tokens | ln p in memory | ours on the file | llama.cpp (Q4_1 kernels) |%s" % (
        " llama.cpp (F32 copy) |" if lc32 else "")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    f = lambda x: "n/a" if x is None else "%.4f" % x  # noqa: E731
    for r in rows:
        print("| %s | %d | %s | %s | %s |%s" % (r["record"], r["scored_tokens"], f(r["in_memory"]), f(r["ours_file"]), f(r["llamacpp"]),
                                              " %s |" % f(r.get("llamacpp_f32")) if lc32 else ""))
    print("max |Δ|: " + ", ".join("%s %s" % (k, "n/a" if x is None else "%.3g" % x) for k, x in summary.items()))
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=2)
        os.replace(tmp, a.out)
        print("wrote " + a.out)


if __name__ == "__main__":
    main()
