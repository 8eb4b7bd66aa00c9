// The skew-normal distribution SN(ξ, ω, α): density (2/ω)·φ(z)·Φ(α z) with z = (x − ξ)/ω, its log-CDF
// accurate far into both tails (adaptive quadrature of the log-concave density, no Owen's-T cancellation),
// and its maximum-likelihood fit by Nelder–Mead: O(n) per likelihood evaluation, a few hundred evaluations.
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

namespace fisher_unlearn::detail {

/// log Φ(x) for every finite x: erfc where it does not underflow, the asymptotic series below −37.
inline double log_normal_cdf(double x) {
  if (x > 0.0) return std::log1p(-0.5 * std::erfc(x / std::numbers::sqrt2));
  if (x > -37.0) return std::log(0.5 * std::erfc(-x / std::numbers::sqrt2));
  const double r = 1.0 / (x * x);  // Mills-ratio series; at |x| >= 37 four terms reach double precision
  return -0.5 * x * x - std::log(-x) - 0.5 * std::log(2.0 * std::numbers::pi) +
         std::log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + r * 105.0))));
}

/// φ(x)/Φ(x), stable in the left tail.
inline double normal_hazard_ratio(double x) {
  return std::exp(-0.5 * x * x - 0.5 * std::log(2.0 * std::numbers::pi) - log_normal_cdf(x));
}

struct SkewNormal {
  double location = 0.0;  ///< ξ
  double scale = 1.0;     ///< ω > 0
  double shape = 0.0;     ///< α (0: the normal distribution)

  /// log of the standardised density 2φ(z)Φ(αz) (without the −log ω).
  static double log_density_std(double z, double alpha) {
    return std::log(2.0) - 0.5 * z * z - 0.5 * std::log(2.0 * std::numbers::pi) + log_normal_cdf(alpha * z);
  }
  double log_pdf(double x) const {
    return log_density_std((x - location) / scale, shape) - std::log(scale);
  }

  /// log P(X <= x). The standardised density f is log-concave with (log f)'' <= −1, so from a point z
  /// on either side of the mode the tail integral ∫ f(z ∓ u) du is bounded by f(z)·exp(−d·u − u²/2),
  /// d = |(log f)'(z)|: integrate that tail relative to f(z) and never subtract nearly equal numbers.
  double log_cdf(double x) const {
    const double z = (x - location) / scale;
    const double a = shape;
    if (!std::isfinite(z)) return z < 0 ? -std::numeric_limits<double>::infinity() : 0.0;
    const double slope = -z + a * normal_hazard_ratio(a * z);  // (log f)'(z)
    const double lf = log_density_std(z, a);
    const bool left = slope >= 0.0;  // z at or left of the mode: integrate the left tail
    const double d = std::abs(slope);
    const double dir = left ? -1.0 : 1.0;
    auto g = [&](double u) { return std::exp(log_density_std(z + dir * u, a) - lf); };
    const double upper = -d + std::sqrt(d * d + 2.0 * 46.0);  // g < e^-46 beyond
    const double tail = integrate(g, 0.0, upper);
    const double log_tail = lf + std::log(tail);
    if (left) return log_tail;
    return std::log1p(-std::min(1.0, std::exp(log_tail)));
  }
  double cdf(double x) const { return std::exp(log_cdf(x)); }

  /// Adaptive Simpson on [lo, hi] with relative tolerance 1e-11 of a coarse estimate.
  template <class F>
  static double integrate(const F& f, double lo, double hi) {
    // A coarse composite pass sets the scale and seeds the recursion on panels narrow enough to see
    // the sharp Φ(α z) edge when |α| is large.
    constexpr int panels = 64;
    const double h = (hi - lo) / panels;
    std::array<double, 2 * panels + 1> fx;
    for (int i = 0; i <= 2 * panels; ++i) fx[static_cast<std::size_t>(i)] = f(lo + 0.5 * h * i);
    double coarse = 0.0;
    for (int p = 0; p < panels; ++p)
      coarse += h / 6.0 * (fx[2 * p] + 4.0 * fx[2 * p + 1] + fx[2 * p + 2]);
    const double tol = 1e-11 * std::max(coarse, 1e-300);
    double total = 0.0;
    for (int p = 0; p < panels; ++p) {
      const double a = lo + h * p, b = a + h;
      const double whole = h / 6.0 * (fx[2 * p] + 4.0 * fx[2 * p + 1] + fx[2 * p + 2]);
      total += simpson(f, a, b, fx[2 * p], fx[2 * p + 1], fx[2 * p + 2], whole, tol / panels, 40);
    }
    return total;
  }

 private:
  template <class F>
  static double simpson(const F& f, double a, double b, double fa, double fm, double fb, double whole, double tol,
                        int depth) {
    const double m = 0.5 * (a + b), lm = 0.5 * (a + m), rm = 0.5 * (m + b);
    const double flm = f(lm), frm = f(rm);
    const double left = (m - a) / 6.0 * (fa + 4.0 * flm + fm);
    const double right = (b - m) / 6.0 * (fm + 4.0 * frm + fb);
    const double diff = left + right - whole;
    if (depth <= 0 || std::abs(diff) <= 15.0 * tol) return left + right + diff / 15.0;
    return simpson(f, a, m, fa, flm, fm, left, 0.5 * tol, depth - 1) +
           simpson(f, m, b, fm, frm, fb, right, 0.5 * tol, depth - 1);
  }
};

/// Nelder–Mead minimisation of f over R^3 from `start` with initial step `step`; returns the best point.
inline std::array<double, 3> nelder_mead(const std::function<double(const std::array<double, 3>&)>& f,
                                         std::array<double, 3> start, double step, int max_evaluations) {
  using P = std::array<double, 3>;
  std::array<P, 4> x;
  std::array<double, 4> fx;
  for (int restart = 0; restart < 2; ++restart) {  // one restart guards against a collapsed simplex
    x[0] = start;
    for (int i = 0; i < 3; ++i) {
      x[i + 1] = start;
      x[i + 1][i] += step;
    }
    for (int i = 0; i < 4; ++i) fx[i] = f(x[i]);
    int evals = 4;
    while (evals < max_evaluations) {
      std::array<int, 4> order{0, 1, 2, 3};
      std::sort(order.begin(), order.end(), [&](int a, int b) { return fx[a] < fx[b]; });
      std::array<P, 4> xs;
      std::array<double, 4> fs;
      for (int i = 0; i < 4; ++i) {
        xs[i] = x[order[i]];
        fs[i] = fx[order[i]];
      }
      x = xs;
      fx = fs;
      double size = 0.0;
      for (int i = 1; i < 4; ++i)
        for (int k = 0; k < 3; ++k) size = std::max(size, std::abs(x[i][k] - x[0][k]));
      if (fx[3] - fx[0] <= 1e-12 * (1.0 + std::abs(fx[0])) && size < 1e-7) break;
      P centroid{0, 0, 0};
      for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k) centroid[k] += x[i][k] / 3.0;
      auto along = [&](double t) {
        P p;
        for (int k = 0; k < 3; ++k) p[k] = centroid[k] + t * (x[3][k] - centroid[k]);
        return p;
      };
      const P r = along(-1.0);
      const double fr = f(r);
      ++evals;
      if (fr < fx[0]) {
        const P e = along(-2.0);
        const double fe = f(e);
        ++evals;
        if (fe < fr) { x[3] = e; fx[3] = fe; } else { x[3] = r; fx[3] = fr; }
      } else if (fr < fx[2]) {
        x[3] = r;
        fx[3] = fr;
      } else {
        const P c = fr < fx[3] ? along(-0.5) : along(0.5);
        const double fc = f(c);
        ++evals;
        if (fc < std::min(fr, fx[3])) {
          x[3] = c;
          fx[3] = fc;
        } else {
          for (int i = 1; i < 4; ++i) {
            for (int k = 0; k < 3; ++k) x[i][k] = x[0][k] + 0.5 * (x[i][k] - x[0][k]);
            fx[i] = f(x[i]);
          }
          evals += 3;
        }
      }
    }
    int best = 0;
    for (int i = 1; i < 4; ++i)
      if (fx[i] < fx[best]) best = i;
    start = x[best];
    step *= 0.1;
  }
  return start;
}

/// Largest |α| the fit may return. The likelihood of a skew-normal can increase without bound in α
/// (for samples with no left or right tail), so the estimate is capped here.
inline constexpr double kMaxSkewNormalShape = 50.0;

/// Negative log-likelihood of SN(ξ, e^η, α) on `y`, as a function of (ξ, η, α).
inline double skew_normal_nll(std::span<const double> y, const std::array<double, 3>& p) {
  if (!std::isfinite(p[0]) || !std::isfinite(p[1]) || std::abs(p[2]) > kMaxSkewNormalShape || std::abs(p[1]) > 30.0)
    return std::numeric_limits<double>::infinity();
  const double inv = std::exp(-p[1]);
  double s = static_cast<double>(y.size()) * p[1];
  for (double v : y) {
    const double z = (v - p[0]) * inv;
    s += 0.5 * z * z - log_normal_cdf(p[2] * z);
  }
  return s;
}

/// Gradient and Hessian of skew_normal_nll in (ξ, η, α). With z = (y − ξ)e^{−η}, w = αz, ζ₁ = φ(w)/Φ(w),
/// ζ₂ = −ζ₁(w + ζ₁) and h = z²/2 − log Φ(w): h_z = z − αζ₁, h_α = −zζ₁, h_zz = 1 − α²ζ₂,
/// h_zα = −ζ₁ − αzζ₂, h_αα = −z²ζ₂, and dz/dξ = −e^{−η}, dz/dη = −z.
inline void skew_normal_nll_derivatives(std::span<const double> y, const std::array<double, 3>& p,
                                        Eigen::Vector3d& g, Eigen::Matrix3d& h) {
  const double inv = std::exp(-p[1]);
  const double a = p[2];
  g.setZero();
  h.setZero();
  g[1] = static_cast<double>(y.size());
  for (double v : y) {
    const double z = (v - p[0]) * inv;
    const double w = a * z;
    const double z1 = normal_hazard_ratio(w);
    const double z2 = -z1 * (w + z1);
    const double hz = z - a * z1, ha = -z * z1;
    const double hzz = 1.0 - a * a * z2, hza = -z1 - a * z * z2, haa = -z * z * z2;
    g[0] -= hz * inv;
    g[1] -= hz * z;
    g[2] += ha;
    h(0, 0) += hzz * inv * inv;
    h(0, 1) += (z * hzz + hz) * inv;
    h(0, 2) -= hza * inv;
    h(1, 1) += z * z * hzz + z * hz;
    h(1, 2) -= z * hza;
    h(2, 2) += haa;
  }
  h(1, 0) = h(0, 1);
  h(2, 0) = h(0, 2);
  h(2, 1) = h(1, 2);
}

/// Damped Newton on the negative log-likelihood with a backtracking (Armijo) line search; the damping
/// μ grows until H + μI is positive definite and gives a descent direction. Returns the best point.
inline std::array<double, 3> newton_skew_normal(std::span<const double> y, std::array<double, 3> p, int max_iterations) {
  double f = skew_normal_nll(y, p);
  if (!std::isfinite(f)) return p;
  Eigen::Vector3d g;
  Eigen::Matrix3d h;
  for (int it = 0; it < max_iterations; ++it) {
    skew_normal_nll_derivatives(y, p, g, h);
    if (g.lpNorm<Eigen::Infinity>() <= 1e-10 * static_cast<double>(y.size())) break;
    const double scale = std::max(1e-12, h.diagonal().cwiseAbs().maxCoeff());
    Eigen::Vector3d d;
    bool found = false;
    for (double mu = 0.0; mu < 1e12 * scale; mu = (mu == 0.0 ? 1e-8 * scale : 10.0 * mu)) {
      Eigen::LLT<Eigen::Matrix3d> llt(h + mu * Eigen::Matrix3d::Identity());
      if (llt.info() != Eigen::Success) continue;
      d = llt.solve(-g);
      if (d.allFinite() && d.dot(g) < 0.0) {
        found = true;
        break;
      }
    }
    if (!found) break;
    // Newton decrement: the predicted decrease of the NLL. Statistical resolution is about one nat, and
    // near α = 0 the SN likelihood is so flat (singular information) that Newton only creeps: stop at 1e-6.
    if (-0.5 * d.dot(g) < 1e-6) break;
    double t = 1.0;
    bool moved = false;
    for (int ls = 0; ls < 40; ++ls, t *= 0.5) {
      const std::array<double, 3> q{p[0] + t * d[0], p[1] + t * d[1], p[2] + t * d[2]};
      const double fq = skew_normal_nll(y, q);
      if (fq <= f + 1e-4 * t * d.dot(g)) {
        moved = fq < f || t * d.lpNorm<Eigen::Infinity>() > 1e-14;
        p = q;
        f = fq;
        break;
      }
    }
    if (!moved || t * d.lpNorm<Eigen::Infinity>() < 1e-12) break;
  }
  return p;
}

/// Maximum-likelihood SN fit to samples with mean 0 and variance 1 (standardise first). `warm` (if
/// given) is a previous fit to start from; otherwise method-of-moments and normal starts are both tried.
/// Damped Newton does the work; Nelder–Mead is kept as a fallback should Newton end at a worse point.
inline SkewNormal fit_skew_normal_standardised(std::span<const double> y, const SkewNormal* warm = nullptr) {
  auto nll = [&](const std::array<double, 3>& p) { return skew_normal_nll(y, p); };
  std::vector<std::array<double, 3>> starts;
  if (warm != nullptr) {
    starts.push_back({warm->location, std::log(warm->scale), warm->shape});
  } else {
    double m3 = 0.0;
    for (double v : y) m3 += v * v * v;
    m3 /= static_cast<double>(y.size());
    const double g = std::clamp(m3, -0.99, 0.99);  // the skewness of a skew-normal lies in (−0.9953, 0.9953)
    const double g23 = std::pow(std::abs(g), 2.0 / 3.0);
    const double delta = std::copysign(
        std::sqrt(std::numbers::pi / 2.0 * g23 / (g23 + std::pow((4.0 - std::numbers::pi) / 2.0, 2.0 / 3.0))), g);
    const double omega = 1.0 / std::sqrt(1.0 - 2.0 * delta * delta / std::numbers::pi);
    starts.push_back({-omega * delta * std::sqrt(2.0 / std::numbers::pi), std::log(omega),
                      std::clamp(delta / std::sqrt(1.0 - delta * delta), -20.0, 20.0)});
    starts.push_back({0.0, 0.0, 0.0});
  }
  std::array<double, 3> best{};
  double best_f = std::numeric_limits<double>::infinity();
  auto consider = [&](const std::array<double, 3>& p) {
    const double fp = nll(p);
    if (fp < best_f) {
      best_f = fp;
      best = p;
    }
  };
  for (const auto& s : starts) consider(newton_skew_normal(y, s, 100));
  if (!std::isfinite(best_f)) {
    for (const auto& s : starts) consider(nelder_mead(nll, s, 0.5, 3000));
  }
  if (!std::isfinite(best_f))
    throw NumericalError("the skew-normal fit did not converge; the sampled log-perplexities may be degenerate");
  return SkewNormal{best[0], std::exp(best[1]), best[2]};
}

}  // namespace fisher_unlearn::detail
