#!/usr/bin/env python3
"""Reference values for tests/test_rdp_accountant.cpp, computed with the accountants users trust.

Writes tests/dp/rdp_reference.json (machine-readable, with versions) and tests/dp/rdp_reference.inc
(the same numbers as C++ initialisers, included by the test). Run it again to regenerate both:

    python3 -m venv /work/.venvs/dp
    /work/.venvs/dp/bin/pip install numpy scipy mpmath dp-accounting
    /work/.venvs/dp/bin/pip install --no-deps opacus          # the accountant part needs no torch
    /work/.venvs/dp/bin/python tests/dp/make_rdp_fixture.py            # about 1.5 minutes
    /work/.venvs/dp/bin/python tests/dp/make_rdp_fixture.py --inc-only # only rewrite the .inc from the JSON

References:
  * Opacus (PyPI `opacus`): opacus.accountants.RDPAccountant (history [(σ, q, steps)], get_privacy_spent
    over its DEFAULT_ALPHAS) and opacus.accountants.utils.get_noise_multiplier. Opacus's package
    __init__ imports torch, but the accountants only use torch in a type hint (DPOptimizer): this script
    registers a placeholder `opacus.optimizers` module and imports `opacus.accountants` from the installed
    wheel without running `opacus/__init__.py`, so the accountant code that runs is Opacus's own.
  * Google's dp-accounting (PyPI `dp-accounting`): dp_accounting.rdp.RdpAccountant composing
    PoissonSampledDpEvent(q, GaussianDpEvent(σ)), once with Opacus's orders and once with the integer
    orders of that grid (2..63). Its fractional-order log A_α adds |C(α, i)| instead of the signed
    coefficient, an upper bound: at fractional orders it is conservative (larger ε), at integer orders
    it is the same sum as Opacus's.
  * mpmath (40 digits): log A_α by the exact finite binomial sum (integer α) or by numerical
    integration of A_α = E_{z~N(0,σ²)}[((1−q) + q·exp((2z−1)/(2σ²)))^α] (fractional α): the ground truth
    both libraries approximate. Also log erfc(x).
"""
import importlib.util
import json
import math
import os
import sys
import types

import mpmath as mp
import numpy as np
import scipy
from scipy import optimize

HERE = os.path.dirname(os.path.abspath(__file__))


def import_opacus_accountants():
    spec = importlib.util.find_spec("opacus")
    if spec is None:
        sys.exit("opacus is not installed: pip install --no-deps opacus")
    package = types.ModuleType("opacus")
    package.__path__ = [os.path.dirname(spec.origin)]
    sys.modules["opacus"] = package
    optimizers = types.ModuleType("opacus.optimizers")
    optimizers.DPOptimizer = type("DPOptimizer", (), {})  # only used as a type hint by the accountants
    sys.modules["opacus.optimizers"] = optimizers
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as opacus_rdp
    from opacus.accountants.utils import get_noise_multiplier
    import importlib.metadata as md
    return RDPAccountant, opacus_rdp, get_noise_multiplier, md.version("opacus")


RDPAccountant, opacus_rdp, get_noise_multiplier, OPACUS_VERSION = import_opacus_accountants()
import dp_accounting  # noqa: E402
from dp_accounting.rdp import rdp_privacy_accountant as google_rdp  # noqa: E402
import importlib.metadata as md  # noqa: E402

OPACUS_ORDERS = list(RDPAccountant.DEFAULT_ALPHAS)
INTEGER_ORDERS = [a for a in OPACUS_ORDERS if float(a).is_integer()]

# (name, [(q, sigma, steps), ...], delta)
N_MNIST, N_CIFAR = 60000, 50000
CASES = [
    ("mnist_b256_sigma1.1_60epochs", [(256 / N_MNIST, 1.1, int(60 / (256 / N_MNIST)))], 1e-5),
    ("mnist_b256_sigma1.1_15epochs", [(256 / N_MNIST, 1.1, int(15 / (256 / N_MNIST)))], 1e-5),
    ("mnist_b256_sigma0.7_45epochs", [(256 / N_MNIST, 0.7, int(45 / (256 / N_MNIST)))], 1e-5),
    ("mnist_b600_sigma4_100epochs", [(600 / N_MNIST, 4.0, 10000)], 1e-5),
    ("opacus_unit_test", [(0.04, 1.5, int(90 / 0.04))], 1e-5),
    ("cifar_b256_sigma1.5_100epochs", [(256 / N_CIFAR, 1.5, int(100 / (256 / N_CIFAR)))], 1e-5),
    ("small_sigma", [(0.01, 0.5, 1000)], 1e-5),
    ("very_small_sigma", [(0.001, 0.3, 100)], 1e-6),
    ("large_q", [(0.5, 5.0, 100)], 1e-5),
    ("full_batch", [(1.0, 10.0, 100)], 1e-5),
    ("tiny_q_many_steps", [(1e-5, 0.8, 1000000)], 1e-8),
    ("demo_like", [(32 / 70000, 0.8, 1200)], 1 / 70000),
    ("large_sigma", [(0.1, 20.0, 10000)], 1e-5),
    ("heterogeneous", [(0.01, 1.0, 500), (0.02, 2.0, 300)], 1e-5),
    ("one_step", [(0.05, 1.0, 1)], 1e-3),
    ("large_delta", [(0.02, 1.2, 5000)], 1e-2),
]

# (q, sigma, alpha) for the ground-truth log A_alpha
RDP_POINTS = [
    (q, s, a)
    for q, s in [(1e-5, 0.8), (1e-3, 1.1), (256 / N_MNIST, 1.1), (0.04, 1.5), (0.01, 0.7), (0.3, 2.0), (0.7, 3.0)]
    for a in [1.1, 1.5, 2.5, 3.0, 7.7, 12.0, 32.5, 63.0]
]

CALIBRATIONS = [  # (target eps, delta, q, steps)
    (8.0, 1e-5, 0.04, int(90 / 0.04)),
    (1.0, 1 / 70000, 32 / 70000, 1200),
    (4.0, 1 / 70000, 32 / 70000, 1200),
    (16.0, 1 / 70000, 32 / 70000, 1200),
    (64.0, 1 / 70000, 32 / 70000, 1200),
    (3.0, 1e-5, 256 / N_MNIST, int(60 / (256 / N_MNIST))),
    (0.5, 1e-5, 0.01, 1000),
]

ERFC_POINTS = [-5.0, -1.0, -1e-3, 0.0, 1e-8, 0.3, 1.0, 3.7, 10.0, 25.9, 26.0, 26.1, 40.0, 100.0, 1e4]


def opacus_epsilon(history, delta, orders=None):
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps) for q, sigma, steps in history]
    return acc.get_privacy_spent(delta=delta, alphas=orders)


def google_epsilon(history, delta, orders):
    acc = dp_accounting.rdp.RdpAccountant(orders=orders)
    for q, sigma, steps in history:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    return float(eps), float(order)


def true_log_a(q, sigma, alpha):
    mp.mp.dps = 40
    q, s, a = mp.mpf(q), mp.mpf(sigma), mp.mpf(alpha)
    if float(alpha).is_integer():
        n = int(alpha)
        total = mp.fsum(mp.binomial(n, i) * q**i * (1 - q) ** (n - i) * mp.exp((i * i - i) / (2 * s * s))
                        for i in range(n + 1))
        return mp.log(total)
    z0 = s * s * mp.log(1 / q - 1) + mp.mpf(1) / 2
    f = lambda z: mp.npdf(z, 0, s) * ((1 - q) + q * mp.exp((2 * z - 1) / (2 * s * s))) ** a
    points = sorted({-mp.inf, -12 * s, mp.mpf(0), z0, a - 12 * s, a, a + 12 * s, z0 + 12 * s, mp.inf})
    return mp.log(mp.quad(f, points, maxdegree=10))


def main():
    out = {
        "format": "fisher_unlearn-rdp-reference",
        "version": 1,
        "generator": "tests/dp/make_rdp_fixture.py",
        "packages": {"opacus": OPACUS_VERSION, "dp-accounting": md.version("dp-accounting"),
                     "numpy": np.__version__, "scipy": scipy.__version__, "mpmath": mp.__version__},
        "opacus_orders": OPACUS_ORDERS,
        "cases": [],
        "rdp_points": [],
        "calibrations": [],
        "log_erfc": [],
    }
    for name, history, delta in CASES:
        eps_o, order_o = opacus_epsilon(history, delta)
        eps_oi, _ = opacus_epsilon(history, delta, INTEGER_ORDERS)
        eps_g, order_g = google_epsilon(history, delta, OPACUS_ORDERS)
        eps_gi, _ = google_epsilon(history, delta, INTEGER_ORDERS)
        out["cases"].append({"name": name, "history": history, "delta": delta,
                             "opacus_epsilon": float(eps_o), "opacus_order": float(order_o),
                             "opacus_epsilon_integer_orders": float(eps_oi),
                             "dp_accounting_epsilon": eps_g, "dp_accounting_order": order_g,
                             "dp_accounting_epsilon_integer_orders": eps_gi})
        print(f"{name:32s} eps opacus {eps_o:.12g} (order {order_o})  dp-accounting {eps_g:.12g}  "
              f"integer orders {eps_oi:.12g} / {eps_gi:.12g}", file=sys.stderr)
    for q, sigma, alpha in RDP_POINTS:
        truth = true_log_a(q, sigma, alpha)
        lo = float(opacus_rdp._compute_log_a(q, sigma, alpha))
        lg = float(google_rdp._compute_log_a(q, sigma, alpha))
        out["rdp_points"].append({"q": q, "sigma": sigma, "order": alpha, "true_log_a": float(truth),
                                  "true_log_a_digits": mp.nstr(truth, 25),
                                  "opacus_log_a": lo, "dp_accounting_log_a": lg})
        print(f"q={q:<9.4g} sigma={sigma:<4} alpha={alpha:<5} log A {mp.nstr(truth, 17):>24}  opacus rel "
              f"{(lo - float(truth)) / float(truth):.2e}  dp-acc rel {(lg - float(truth)) / float(truth):.2e}",
              file=sys.stderr)
    for eps, delta, q, steps in CALIBRATIONS:
        sigma_opacus = get_noise_multiplier(target_epsilon=eps, target_delta=delta, sample_rate=q, steps=steps)
        f = lambda s: opacus_epsilon([(q, s, steps)], delta)[0] - eps
        sigma_exact = optimize.brentq(f, 0.05, 1000.0, xtol=1e-13, rtol=1e-14, maxiter=500)
        out["calibrations"].append({"target_epsilon": eps, "delta": delta, "q": q, "steps": steps,
                                    "opacus_noise_multiplier": float(sigma_opacus),
                                    "brentq_noise_multiplier": float(sigma_exact)})
        print(f"calibration eps={eps} q={q:.4g} steps={steps}: opacus sigma {sigma_opacus}  exact {sigma_exact}",
              file=sys.stderr)
    mp.mp.dps = 40
    for x in ERFC_POINTS:
        out["log_erfc"].append({"x": x, "log_erfc": float(mp.log(mp.erfc(mp.mpf(x))))})

    with open(os.path.join(HERE, "rdp_reference.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    write_inc(out)


def write_inc(out):
    def r(x):  # repr of a Python float round-trips exactly
        return "std::numeric_limits<double>::infinity()" if x == math.inf else repr(x)

    lines = ["// Generated by tests/dp/make_rdp_fixture.py from tests/dp/rdp_reference.json; do not edit.",
             f"// opacus {out['packages']['opacus']}, dp-accounting {out['packages']['dp-accounting']}, "
             f"scipy {out['packages']['scipy']}, mpmath {out['packages']['mpmath']}.",
             "// Cases: {name, {{q, sigma, steps}, ...}, delta, opacus eps, opacus order, opacus eps (integer orders),",
             "//         dp-accounting eps, dp-accounting eps (integer orders)}",
             "inline const std::vector<RdpCase> kRdpCases = {"]
    for c in out["cases"]:
        hist = ", ".join(f"{{{r(q)}, {r(s)}, {steps}}}" for q, s, steps in c["history"])
        lines.append(f"    {{\"{c['name']}\", {{{hist}}}, {r(c['delta'])}, {r(c['opacus_epsilon'])}, "
                     f"{r(c['opacus_order'])}, {r(c['opacus_epsilon_integer_orders'])}, "
                     f"{r(c['dp_accounting_epsilon'])}, {r(c['dp_accounting_epsilon_integer_orders'])}}},")
    lines.append("};")
    lines.append("// {q, sigma, order, true log A (mpmath), opacus log A, dp-accounting log A}")
    lines.append("inline const std::vector<RdpPoint> kRdpPoints = {")
    for p in out["rdp_points"]:
        lines.append(f"    {{{r(p['q'])}, {r(p['sigma'])}, {r(p['order'])}, {r(p['true_log_a'])}, "
                     f"{r(p['opacus_log_a'])}, {r(p['dp_accounting_log_a'])}}},")
    lines.append("};")
    lines.append("// {target eps, delta, q, steps, opacus get_noise_multiplier, brentq on opacus eps (xtol 1e-13)}")
    lines.append("inline const std::vector<RdpCalibration> kRdpCalibrations = {")
    for c in out["calibrations"]:
        lines.append(f"    {{{r(c['target_epsilon'])}, {r(c['delta'])}, {r(c['q'])}, {c['steps']}, "
                     f"{r(c['opacus_noise_multiplier'])}, {r(c['brentq_noise_multiplier'])}}},")
    lines.append("};")
    lines.append("// {x, log erfc(x) (mpmath, 40 digits)}")
    lines.append("inline const std::vector<std::pair<double, double>> kLogErfc = {")
    for e in out["log_erfc"]:
        lines.append(f"    {{{r(e['x'])}, {r(e['log_erfc'])}}},")
    lines.append("};")
    with open(os.path.join(HERE, "rdp_reference.inc"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--inc-only"]:  # rewrite the C++ initialisers from the committed JSON
        with open(os.path.join(HERE, "rdp_reference.json")) as fh:
            write_inc(json.load(fh))
    else:
        main()
