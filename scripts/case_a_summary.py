#!/usr/bin/env python3
"""Summarise case A runs over seeds (docs/case_studies.md): per method the mean ± sd over seeds of the
figures of examples/case_studies' results.json, and an exact rank-sum test of the REPORTED people's
address ranks, pooled over seeds, under each method against the retrained model.

    python3 scripts/case_a_summary.py results/case_a_v2/results.json results/case_a_v2_seed2/results.json ...

The pooled test: all reported people of all seeds, ranks under the method against ranks under the
retrained model of the same seed; two-sided, mid-ranks for ties, every split of the pooled values
enumerated (exact; the same statistic as examples/case_studies/rank_sum.hpp). Each seed has its own
candidate set (53 addresses at seeds 1-3), so ranks are comparable across seeds only as long as the
candidate counts are close; they are printed."""
import argparse
import itertools
import json
import math
import statistics
import sys


def mid_ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def rank_sum_p(a, b):
    """Exact two-sided p of the rank-sum statistic of a (|W_a - E| as or more extreme), ties mid-ranked."""
    pooled = list(a) + list(b)
    r = mid_ranks(pooled)
    n, m = len(a), len(b)
    expected = n * (n + m + 1) / 2.0
    observed = abs(sum(r[:n]) - expected)
    extreme = total = 0
    for idx in itertools.combinations(range(n + m), n):
        total += 1
        if abs(sum(r[i] for i in idx) - expected) >= observed - 1e-9:
            extreme += 1
    return extreme / total


def mean_sd(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return "%.3f" % xs[0]
    return "%.3f ± %.3f" % (statistics.mean(xs), statistics.stdev(xs))


def reported(evaluation):
    return [p for p in evaluation["people"] if p["role"] == "deleted_reported"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results.json of case A runs (one per seed)")
    args = ap.parse_args()
    runs = []
    for path in args.results:
        j = json.load(open(path))
        if j.get("schema") != "case_studies results v1" or j.get("study") != "a":
            sys.exit("error: %s is not a case A results.json of examples/case_studies" % path)
        runs.append(j)
    seeds = [j["config"]["seed"] for j in runs]
    print("seeds:", seeds, " candidates per seed:", [j["corpus"]["candidates"] for j in runs])
    names = []
    for j in runs:
        for m in j["methods"]:
            if m["method"] not in names:
                names.append(m["method"])
    rows = [("trained (no unlearning)", lambda j: j["trained"], None),
            *[(n, (lambda n: lambda j: next((m["evaluation"] for m in j["methods"] if m["method"] == n), None))(n),
               (lambda n: lambda j: next((m for m in j["methods"] if m["method"] == n), None))(n)) for n in names],
            ("retrained (gold standard)", lambda j: j["retrained"], None)]
    print("| model | reached (seeds) | extracted, reported (sum) | pooled ranks | pooled rank-sum p vs retrained |"
          " MIA AUC | held-out ppl / retrained | time / retraining |")
    print("|---|---|---|---|---|---|---|---|")
    for label, ev_of, m_of in rows:
        evs = [ev_of(j) for j in runs]
        if any(e is None for e in evs):
            continue
        ranks, retr, extracted, total, auc, ppl, tim, reached = [], [], 0, 0, [], [], [], 0
        for j, e in zip(runs, evs):
            rp = reported(e)
            ranks += [p["rank"] for p in rp]
            retr += [p["rank"] for p in reported(j["retrained"])]
            extracted += sum(1 for p in rp if p.get("extracted"))
            total += len(rp)
            auc.append(e["mia_auc_reported"] if "mia_auc_reported" in e else e.get("mia_auc"))
            ppl.append(e["heldout_perplexity"] / j["retrained"]["heldout_perplexity"])
            if m_of is not None:
                m = m_of(j)
                tim.append(m["time_ratio_to_retrain"])
                reached += 1 if m["reached"] else 0
        p = rank_sum_p(ranks, retr)
        print("| %s | %s | %d/%d | %s | %.3f | %s | %s | %s |" % (
            label, "%d/%d" % (reached, len(runs)) if m_of else "", extracted, total,
            ", ".join("%g" % r for r in ranks), p, mean_sd(auc), mean_sd(ppl), mean_sd(tim) if tim else "n/a"))


if __name__ == "__main__":
    main()
