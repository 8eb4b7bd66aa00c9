// Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism (DP-SGD): per-order RDP
// ε_α = log A_α / (α − 1) (Mironov, Talwar, Zhang 2019), summed over steps, converted to (ε, δ) with
// ε = min_α [ε_α + log(1 − 1/α) − (log δ + log α)/(α − 1)] (Balle et al. 2020, Thm 21). Cost: O(α) terms per
// integer order, O(terms to convergence) per fractional order, once per (q, σ); composition and conversion O(#orders).
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

/// The order grid Opacus's RDPAccountant uses: 1.1, 1.2, …, 10.9 (99 orders) then 12, 13, …, 63.
inline std::vector<double> default_rdp_orders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1.0 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  return orders;
}

namespace detail {

inline constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// log(eˣ + eʸ) without overflow; −∞ is the log of 0.
inline double log_add(double x, double y) {
  const double a = std::min(x, y), b = std::max(x, y);
  if (a == kNegInf) return b;
  return b + std::log1p(std::exp(a - b));
}

/// log(eˣ − eʸ) for x ≥ y; NaN when x < y (the caller decides what that means).
inline double log_sub(double x, double y) {
  if (y == kNegInf) return x;
  if (x < y) return std::numeric_limits<double>::quiet_NaN();
  if (x == y) return kNegInf;
  return x + std::log(-std::expm1(y - x));
}

/// log(eˣ − 1) for x > 0, accurate for small and large x.
inline double log_expm1(double x) { return x > 30.0 ? x + std::log1p(-std::exp(-x)) : std::log(std::expm1(x)); }

/// log(1 + eˣ) (softplus), accurate for every x.
inline double log1p_exp(double x) { return x > 35.0 ? x + std::exp(-x) : std::log1p(std::exp(x)); }

/// log erfc(x) for every real x, to a few ulp: log(std::erfc(x)) while erfc is a normal number (x < 26),
/// beyond that the asymptotic series erfc(x) = e^{−x²}/(x√π) Σₖ (−1)ᵏ (2k−1)!!/(2x²)ᵏ (x ≥ 26: the
/// 8th term is below 1e-19, so 8 terms give double precision).
inline double log_erfc(double x) {
  if (x < 26.0) return std::log(std::erfc(x));
  const double inv = 1.0 / (2.0 * x * x);
  double term = 1.0, sum = 1.0;
  for (int k = 1; k <= 8; ++k) {
    term *= -(2.0 * k - 1.0) * inv;
    sum += term;
  }
  return -x * x - std::log(x) - 0.5 * std::log(std::numbers::pi) + std::log(sum);
}

/// log A_α for an integer order α ≥ 2, 0 < q < 1, σ > 0, where
///   A_α = Σ_{i=0}^{α} C(α,i) qⁱ (1−q)^{α−i} exp((i² − i)/(2σ²))
/// (MTZ 2019, Sec. 3.3). Since Σ C(α,i) qⁱ(1−q)^{α−i} = 1, A_α − 1 = Σ_{i≥2} C(α,i) qⁱ(1−q)^{α−i}·expm1((i²−i)/(2σ²)),
/// a sum of positive terms: summing that (max-shifted, in log space) and taking log1p keeps full
/// relative precision for tiny q, where summing A_α itself would lose log A_α to cancellation.
inline double log_a_integer_order(double q, double sigma, long alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double inv_2s2 = 1.0 / (2.0 * sigma * sigma);
  std::vector<double> terms;
  terms.reserve(static_cast<std::size_t>(alpha));
  double log_binom = std::log(static_cast<double>(alpha));  // C(α,1)
  for (long i = 2; i <= alpha; ++i) {
    log_binom += std::log(static_cast<double>(alpha - i + 1) / static_cast<double>(i));
    const double di = static_cast<double>(i);
    terms.push_back(log_binom + di * log_q + static_cast<double>(alpha - i) * log_1mq +
                    log_expm1((di * di - di) * inv_2s2));
  }
  const double m = *std::max_element(terms.begin(), terms.end());
  double sum = 0.0;
  for (double t : terms) sum += std::exp(t - m);
  return log1p_exp(m + std::log(sum));  // log(1 + (A − 1))
}

/// log A_α for a fractional order α > 1, 0 < q < 1, σ > 0: MTZ 2019 Sec. 3.3 splits the integral
/// A_α = E_{z∼N(0,σ²)}[((1−q) + q·e^{(2z−1)/(2σ²)})^α] at z₀ = σ² log(1/q − 1) + ½, where the two summands
/// cross, and expands the binomial series on each side (exact, with the signs of C(α,i), which alternate
/// for i > α); each term carries ½·erfc of the side's Gaussian tail. Terms are added until both have been
/// decreasing and are below e⁻³⁶ of the running total. Returns +∞ (the order then never decides ε: a
/// conservative answer) if the series does not settle within 100 000 terms or cancellation makes it
/// meaningless.
inline double log_a_fractional_order(double q, double sigma, double alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double s2 = sigma * sigma, inv_2s2 = 1.0 / (2.0 * s2), root2_sigma = std::numbers::sqrt2 * sigma;
  const double z0 = s2 * std::log(1.0 / q - 1.0) + 0.5;
  const double log_half = -std::numbers::ln2;
  double log_a0 = kNegInf, log_a1 = kNegInf;
  double last_s0 = kNegInf, last_s1 = kNegInf;
  double log_abs_binom = 0.0;  // log |C(α, 0)|
  bool positive = true;        // sign of C(α, i)
  for (long i = 0; i < 100000; ++i) {
    const double di = static_cast<double>(i);
    if (i > 0) {
      const double factor = (alpha - di + 1.0) / di;  // C(α,i) = C(α,i−1)·(α−i+1)/i
      log_abs_binom += std::log(std::abs(factor));
      if (factor < 0) positive = !positive;
    }
    const double j = alpha - di;
    const double log_t0 = log_abs_binom + di * log_q + j * log_1mq;
    const double log_t1 = log_abs_binom + j * log_q + di * log_1mq;
    const double log_e0 = log_half + log_erfc((di - z0) / root2_sigma);
    const double log_e1 = log_half + log_erfc((z0 - j) / root2_sigma);
    const double log_s0 = log_t0 + (di * di - di) * inv_2s2 + log_e0;
    const double log_s1 = log_t1 + (j * j - j) * inv_2s2 + log_e1;
    if (positive) {
      log_a0 = log_add(log_a0, log_s0);
      log_a1 = log_add(log_a1, log_s1);
    } else {
      log_a0 = log_sub(log_a0, log_s0);
      log_a1 = log_sub(log_a1, log_s1);
      if (std::isnan(log_a0) || std::isnan(log_a1)) return std::numeric_limits<double>::infinity();
    }
    const double total = log_add(log_a0, log_a1);
    if (i > 0 && log_s0 < last_s0 && log_s1 < last_s1 && std::max(log_s0, log_s1) < total - 36.0) return total;
    last_s0 = log_s0;
    last_s1 = log_s1;
  }
  return std::numeric_limits<double>::infinity();
}

inline void require_rdp_order(double order) {
  if (!(order > 1.0) || std::isnan(order))
    throw InvalidArgument("RDP order " + std::to_string(order) +
                          " is invalid: every order must be > 1 (use default_rdp_orders())");
}

inline void require_mechanism(double sampling_rate, double noise_multiplier, const char* who) {
  if (!(sampling_rate >= 0.0 && sampling_rate <= 1.0))
    throw InvalidArgument(std::string(who) + ": the sampling rate q = " + std::to_string(sampling_rate) +
                          " must lie in [0, 1] (q = expected batch size / number of records)");
  if (!(noise_multiplier >= 0.0) || !std::isfinite(noise_multiplier))
    throw InvalidArgument(std::string(who) + ": the noise multiplier σ = " + std::to_string(noise_multiplier) +
                          " must be finite and >= 0");
}

}  // namespace detail

/// RDP ε_α of ONE step of the Poisson-subsampled Gaussian mechanism with sampling rate q and noise
/// multiplier σ (noise standard deviation / L2 sensitivity), at order α > 1. Special cases: q = 0 → 0;
/// σ = 0 → +∞; q = 1 → α/(2σ²) (the plain Gaussian mechanism); α = +∞ → +∞. Can be +∞.
inline double subsampled_gaussian_rdp(double sampling_rate, double noise_multiplier, double order) {
  detail::require_mechanism(sampling_rate, noise_multiplier, "subsampled_gaussian_rdp");
  if (std::isinf(order) && order > 0) return sampling_rate == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  detail::require_rdp_order(order);
  if (sampling_rate == 0.0) return 0.0;
  if (noise_multiplier == 0.0) return std::numeric_limits<double>::infinity();
  if (sampling_rate == 1.0) return order / (2.0 * noise_multiplier * noise_multiplier);
  const double log_a = order == std::floor(order) && order < 1e6
                           ? detail::log_a_integer_order(sampling_rate, noise_multiplier, static_cast<long>(order))
                           : detail::log_a_fractional_order(sampling_rate, noise_multiplier, order);
  return log_a / (order - 1.0);
}

/// (ε, δ) and the order that attains it.
struct PrivacySpent {
  double epsilon = 0.0;
  double delta = 0.0;
  double order = std::numeric_limits<double>::quiet_NaN();  ///< NaN when every order gave ε = +∞
  /// The optimum is the smallest or largest order of the grid: a wider grid might give a smaller ε
  /// (Opacus warns in this case).
  bool at_grid_edge = false;
};

/// Converts per-order RDP values (already composed) into (ε, δ)-DP with the conversion of Balle et al.
/// 2020 (Thm 21; Canonne, Kamath, Steinke 2020, Prop. 12), the one Opacus's get_privacy_spent uses:
///   ε = min_α  rdp_α + log1p(−1/α) − (log δ + log α)/(α − 1).
/// ε is clamped at 0 (a privacy loss is never negative; dp-accounting clamps too, Opacus does not —
/// the two agree on every ε > 0). Orders with rdp = +∞ give ε = +∞. Throws InvalidArgument for
/// δ ∉ (0, 1), an order ≤ 1, a negative or NaN rdp, or lengths that differ.
inline PrivacySpent rdp_to_dp(std::span<const double> orders, std::span<const double> rdp, double delta) {
  if (orders.size() != rdp.size())
    throw InvalidArgument("rdp_to_dp: " + std::to_string(orders.size()) + " orders but " + std::to_string(rdp.size()) +
                          " RDP values; pass one value per order");
  if (orders.empty()) throw InvalidArgument("rdp_to_dp: no orders given; use default_rdp_orders()");
  if (!(delta > 0.0 && delta < 1.0))
    throw InvalidArgument("rdp_to_dp: δ = " + std::to_string(delta) + " must lie in (0, 1) (commonly 1/n or 1e-5)");
  PrivacySpent best;
  best.delta = delta;
  best.epsilon = std::numeric_limits<double>::infinity();
  const double log_delta = std::log(delta);
  for (std::size_t k = 0; k < orders.size(); ++k) {
    const double a = orders[k];
    detail::require_rdp_order(a);
    if (!(rdp[k] >= 0.0))
      throw InvalidArgument("rdp_to_dp: the RDP value at order " + std::to_string(a) + " is negative or NaN");
    if (std::isinf(rdp[k])) continue;
    const double eps = rdp[k] + std::log1p(-1.0 / a) - (log_delta + std::log(a)) / (a - 1.0);
    if (eps < best.epsilon) {
      best.epsilon = eps;
      best.order = a;
    }
  }
  if (std::isfinite(best.epsilon)) {
    best.at_grid_edge = best.order == *std::min_element(orders.begin(), orders.end()) ||
                        best.order == *std::max_element(orders.begin(), orders.end());
    best.epsilon = std::max(0.0, best.epsilon);
  }
  return best;
}

/// Composes DP-SGD steps: each add_steps(q, σ, k) adds k·ε_α(q, σ) to the RDP at every order
/// (RDP composes additively), and privacy_spent(δ) converts the total. Steps with different (q, σ)
/// may be mixed. The last (q, σ)'s per-step RDP is cached, so one add_steps per training step costs
/// O(#orders). Copyable value type; not thread-safe for concurrent mutation.
class RdpAccountant {
 public:
  explicit RdpAccountant(std::vector<double> orders = default_rdp_orders())
      : orders_(validated(std::move(orders))), rdp_(orders_.size(), 0.0) {}

  /// Records `steps` applications of the Poisson-subsampled Gaussian mechanism with sampling rate q
  /// and noise multiplier σ. Strong guarantee: invalid arguments throw before anything changes.
  void add_steps(double sampling_rate, double noise_multiplier, std::size_t steps = 1) {
    detail::require_mechanism(sampling_rate, noise_multiplier, "RdpAccountant::add_steps");
    if (steps == 0) return;
    if (!(cached_q_ == sampling_rate && cached_sigma_ == noise_multiplier)) {
      std::vector<double> per_step(orders_.size());
      for (std::size_t k = 0; k < orders_.size(); ++k)
        per_step[k] = subsampled_gaussian_rdp(sampling_rate, noise_multiplier, orders_[k]);
      per_step_ = std::move(per_step);
      cached_q_ = sampling_rate;
      cached_sigma_ = noise_multiplier;
    }
    for (std::size_t k = 0; k < orders_.size(); ++k) rdp_[k] += static_cast<double>(steps) * per_step_[k];
    steps_ += steps;
  }

  /// (ε, δ) of everything recorded so far; ε = 0 before the first step.
  PrivacySpent privacy_spent(double delta) const {
    if (steps_ == 0) {
      if (!(delta > 0.0 && delta < 1.0))
        throw InvalidArgument("RdpAccountant::privacy_spent: δ must lie in (0, 1)");
      return PrivacySpent{0.0, delta, std::numeric_limits<double>::quiet_NaN(), false};
    }
    return rdp_to_dp(orders_, rdp_, delta);
  }
  double epsilon(double delta) const { return privacy_spent(delta).epsilon; }

  const std::vector<double>& orders() const { return orders_; }
  /// The composed RDP at every order (same length as orders()).
  const std::vector<double>& rdp() const { return rdp_; }
  std::size_t steps() const { return steps_; }
  void reset() {
    std::fill(rdp_.begin(), rdp_.end(), 0.0);
    steps_ = 0;
  }

 private:
  static std::vector<double> validated(std::vector<double> orders) {
    if (orders.empty()) throw InvalidArgument("RdpAccountant: no orders given; use default_rdp_orders()");
    for (double a : orders) detail::require_rdp_order(a);
    return orders;
  }

  std::vector<double> orders_;
  std::vector<double> rdp_;
  std::vector<double> per_step_;
  double cached_q_ = std::numeric_limits<double>::quiet_NaN();
  double cached_sigma_ = std::numeric_limits<double>::quiet_NaN();
  std::size_t steps_ = 0;
};

/// ε after `steps` steps of the Poisson-subsampled Gaussian mechanism (q, σ) at δ.
inline double dp_sgd_epsilon(double sampling_rate, double noise_multiplier, std::size_t steps, double delta,
                             const std::vector<double>& orders = default_rdp_orders()) {
  RdpAccountant accountant(orders);
  accountant.add_steps(sampling_rate, noise_multiplier, steps);
  return accountant.epsilon(delta);
}

struct NoiseCalibrationOptions {
  /// Bisection stops when the bracket [σ_lo, σ_hi] satisfies σ_hi − σ_lo ≤ relative_tolerance·σ_hi.
  double relative_tolerance = 1e-9;
  /// Give up (InvalidArgument: the budget is too small) beyond this σ (Opacus: 10⁶).
  double max_noise_multiplier = 1e6;
  std::vector<double> orders = default_rdp_orders();
};

/// The noise multiplier σ that spends exactly `target_epsilon` at δ after `steps` steps with sampling
/// rate q, by bisection on σ (ε is non-increasing in σ): the returned σ_hi always satisfies
/// ε(σ_hi) ≤ target_epsilon, and ε(σ_hi·(1 − relative_tolerance)) > target_epsilon up to the same
/// tolerance, i.e. σ is within relative_tolerance of the smallest noise that meets the budget.
/// Opacus's get_noise_multiplier stops instead when ε is within 0.01 below the target, so its σ is
/// slightly larger (more noise) than this one. Cost: about log₂(σ/tolerance) ε evaluations.
inline double noise_multiplier_for_epsilon(double target_epsilon, double delta, double sampling_rate,
                                           std::size_t steps, const NoiseCalibrationOptions& options = {}) {
  if (!(target_epsilon > 0.0) || !std::isfinite(target_epsilon))
    throw InvalidArgument("noise_multiplier_for_epsilon: the target ε must be finite and > 0");
  if (!(delta > 0.0 && delta < 1.0)) throw InvalidArgument("noise_multiplier_for_epsilon: δ must lie in (0, 1)");
  if (!(sampling_rate > 0.0 && sampling_rate <= 1.0))
    throw InvalidArgument("noise_multiplier_for_epsilon: the sampling rate q must lie in (0, 1]");
  if (steps == 0) throw InvalidArgument("noise_multiplier_for_epsilon: steps must be >= 1");
  if (!(options.relative_tolerance > 0.0 && options.relative_tolerance < 1.0))
    throw InvalidArgument("noise_multiplier_for_epsilon: relative_tolerance must lie in (0, 1)");
  auto eps = [&](double sigma) { return dp_sgd_epsilon(sampling_rate, sigma, steps, delta, options.orders); };
  double lo = 0.0, hi = 1.0;
  while (eps(hi) > target_epsilon) {
    lo = hi;
    hi *= 2.0;
    if (hi > options.max_noise_multiplier)
      throw InvalidArgument("noise_multiplier_for_epsilon: even σ = " + std::to_string(options.max_noise_multiplier) +
                            " spends more than ε = " + std::to_string(target_epsilon) +
                            "; the budget is too small for these steps and sampling rate (fewer steps or a "
                            "smaller q help)");
  }
  while (hi - lo > options.relative_tolerance * hi) {
    const double mid = 0.5 * (lo + hi);
    if (eps(mid) <= target_epsilon) hi = mid;
    else lo = mid;
  }
  return hi;
}

}  // namespace fisher_unlearn
