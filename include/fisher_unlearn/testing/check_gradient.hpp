// Finite-difference checks a user runs on their own model (after Ceres' gradient checker):
//   gradient:  ∂loss/∂θᵢ ≈ (loss(θ + hᵢeᵢ) − loss(θ − hᵢeᵢ)) / 2hᵢ,  hᵢ = step·max(|θᵢ|, 1)   (2 losses per coordinate)
//   Hessian:   H v ≈ (∇L(θ + h v) − ∇L(θ − h v)) / 2h                                  (2 batch gradients)
//   sampled:   E_ŷ[∇(−log p(ŷ | x))] = 0, tested by a z-score over many draws              (draws gradients)
// A coordinate passes when |analytic − numeric| ≤ rtol·max(|analytic|, |numeric|) + atol. The model is
// perturbed in place and restored bit for bit, also when it throws (strong guarantee).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/errors.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace fisher_unlearn::testing {

/// Unset fields take defaults that depend on the model's Scalar:
///   step ε^{1/3} (6.1e-6 for double, 4.9e-3 for float), relative_tolerance 1e-6 (double) / 2e-2 (float),
///   absolute_tolerance 1e-8 (double) / 2e-3 (float) times the problem's scale, max(1, |loss|) for a
///   gradient check and max(1, ‖H v‖∞) for a Hessian check. A value you set is used as given (unscaled).
/// float models carry ~1e-3 relative noise in a finite difference: keep the float defaults or looser.
struct GradientCheckOptions {
  std::optional<double> step;
  std::optional<double> relative_tolerance;
  std::optional<double> absolute_tolerance;
  std::size_t max_coordinates = 0;  ///< 0: check every coordinate; k: a seeded random subset of k (large d)
  std::uint64_t seed = 0x5eed;      ///< picks the subset and the Hessian-check direction
};

/// One compared coordinate.
struct CoordinateMismatch {
  std::size_t index = 0;
  std::string location;  ///< "layer0.bias[3]" when the model names parameter groups, else "θ[17]"
  double analytic = 0;
  double numeric = 0;
  double step = 0;
};

struct GradientCheckResult {
  std::string checked;    ///< what was checked, e.g. "gradient()"
  std::string reference;  ///< what it was compared with, e.g. "central differences of loss()"
  bool passed = false;
  std::size_t num_parameters = 0;
  std::size_t coordinates_checked = 0;
  std::size_t coordinates_failed = 0;
  double max_relative_error = 0;  ///< max over coordinates of |a − n| / max(|a|, |n|) (0 where both are 0)
  double max_absolute_error = 0;  ///< max over coordinates of |a − n|
  double relative_tolerance = 0;  ///< as used
  double absolute_tolerance = 0;  ///< as used (after scaling)
  double loss = 0;                ///< the loss (sum over the batch for batch checks) at θ
  CoordinateMismatch worst;       ///< the coordinate that violates its tolerance the most
  std::vector<CoordinateMismatch> failures;  ///< up to 5 failing coordinates, worst first
  std::string message;            ///< a full human-readable verdict

  explicit operator bool() const { return passed; }
};

inline std::ostream& operator<<(std::ostream& os, const GradientCheckResult& r) { return os << r.message; }

/// Result of check_sampled_gradient: the per-coordinate z-score of the mean of `draws` sampled gradients.
struct SampledGradientCheckResult {
  bool passed = false;
  std::size_t draws = 0;
  double max_z_score = 0;          ///< max_i |mean_i| / (sd_i / √draws)
  double z_threshold = 0;          ///< pass when max_z_score ≤ this
  std::size_t worst_coordinate = 0;
  std::string worst_location;
  double worst_mean = 0;
  double worst_standard_error = 0;
  std::string message;

  explicit operator bool() const { return passed; }
};

inline std::ostream& operator<<(std::ostream& os, const SampledGradientCheckResult& r) { return os << r.message; }

namespace detail {

template <class Scalar>
struct ResolvedOptions {
  double step, rtol, atol_base;
  bool atol_given;
};

template <class Scalar>
ResolvedOptions<Scalar> resolve(const GradientCheckOptions& o) {
  constexpr bool is_float = std::is_same_v<Scalar, float>;
  ResolvedOptions<Scalar> r{};
  r.step = o.step.value_or(std::cbrt(static_cast<double>(std::numeric_limits<Scalar>::epsilon())));
  r.rtol = o.relative_tolerance.value_or(is_float ? 2e-2 : 1e-6);
  r.atol_given = o.absolute_tolerance.has_value();
  r.atol_base = o.absolute_tolerance.value_or(is_float ? 2e-3 : 1e-8);
  if (!(r.step > 0) || !std::isfinite(r.step) || r.step >= 1)
    throw InvalidArgument("check_gradient: step must be in (0, 1), got " + ::fisher_unlearn::detail::format_number(r.step) +
                          "; the default is epsilon^(1/3) of the model's Scalar");
  if (!(r.rtol >= 0) || !std::isfinite(r.rtol))
    throw InvalidArgument("check_gradient: relative_tolerance must be finite and >= 0");
  if (!(r.atol_base >= 0) || !std::isfinite(r.atol_base))
    throw InvalidArgument("check_gradient: absolute_tolerance must be finite and >= 0");
  return r;
}

/// Restores the parameters bit for bit on scope exit, however it is left.
template <Model M>
class ParameterGuard {
 public:
  explicit ParameterGuard(M& model) : model_(model) {
    const std::span<const typename M::Scalar> p = std::as_const(model).parameters();
    saved_.assign(p.begin(), p.end());
  }
  ParameterGuard(const ParameterGuard&) = delete;
  ParameterGuard& operator=(const ParameterGuard&) = delete;
  ~ParameterGuard() {
    const std::span<typename M::Scalar> p = model_.parameters();
    std::copy(saved_.begin(), saved_.end(), p.begin());
  }
  const std::vector<typename M::Scalar>& saved() const { return saved_; }

 private:
  M& model_;
  std::vector<typename M::Scalar> saved_;
};

template <Model M>
void check_model_shape(M& model, const char* who) {
  const std::span<const typename M::Scalar> p = std::as_const(model).parameters();
  if (p.size() != model.num_parameters())
    throw InvalidArgument(std::string(who) + ": parameters() has " + std::to_string(p.size()) +
                          " entries but num_parameters() says " + std::to_string(model.num_parameters()) +
                          "; they must agree for the model's whole lifetime");
  if (p.empty()) throw InvalidArgument(std::string(who) + ": the model has no parameters to check");
  for (std::size_t i = 0; i < p.size(); ++i)
    if (!std::isfinite(static_cast<double>(p[i])))
      throw NonFiniteError(std::string(who) + ": parameter " + std::to_string(i) +
                           " is NaN or Inf; check the model at finite parameters");
}

template <Model M>
std::string location_of(const M& model, std::size_t index) {
  if constexpr (HasParameterGroups<M>) {
    for (const ParameterGroup& g : model.parameter_groups())
      if (index >= g.offset && index < g.offset + g.size)
        return g.name + "[" + std::to_string(index - g.offset) + "]";
  }
  return "theta[" + std::to_string(index) + "]";
}

/// The coordinates to check: all, or a seeded random subset of k, in increasing order.
inline std::vector<std::size_t> choose_coordinates(std::size_t d, std::size_t k, std::uint64_t seed) {
  std::vector<std::size_t> idx(d);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  if (k == 0 || k >= d) return idx;
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < k; ++i) {
    std::uniform_int_distribution<std::size_t> pick(i, d - 1);
    std::swap(idx[i], idx[pick(rng)]);
  }
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

inline std::string format_number(double x) {
  std::ostringstream os;
  os.precision(6);
  os << x;
  return os.str();
}

inline std::string coordinate_step_rule(double step) {
  return "step h_i = " + format_number(step) + " * max(|theta_i|, 1)";
}

/// What a wrong coordinate most likely means, in words.
inline std::string diagnose(const CoordinateMismatch& w, double rtol, const std::string& checked) {
  const double a = w.analytic, n = w.numeric;
  if (!std::isfinite(a)) return checked + " returned NaN or Inf here.";
  if (!std::isfinite(n))
    return "the loss is NaN or Inf at theta +/- h here: the step leaves the model's domain; try a smaller step.";
  const double scale = std::max(std::abs(a), std::abs(n));
  const double close = std::max(1e-2, 10 * rtol) * scale;
  if (a == 0 && n != 0) return checked + " left this coordinate at 0: is its derivative never written?";
  if (std::abs(a + n) <= close) return "the analytic value has the wrong sign.";
  if (n != 0 && (std::abs(a / n - 2) <= 1e-2 || std::abs(a / n - 0.5) <= 1e-2))
    return "the analytic value is off by a factor of 2: a missing or extra 1/2 in the loss or the gradient?";
  return "check the derivative formula for this parameter and the index mapping between parameters() and " +
         checked + ".";
}

/// Compares analytic with numeric on the checked coordinates and writes the verdict.
template <Model M>
GradientCheckResult compare(const M& model, const std::vector<std::size_t>& coords, const std::vector<double>& analytic,
                            const std::vector<double>& numeric, const std::vector<double>& steps, double rtol,
                            double atol, bool is_float, const std::string& step_rule, std::string checked,
                            std::string reference) {
  GradientCheckResult r;
  r.checked = std::move(checked);
  r.reference = std::move(reference);
  r.num_parameters = model.num_parameters();
  r.coordinates_checked = coords.size();
  r.relative_tolerance = rtol;
  r.absolute_tolerance = atol;
  struct Scored {
    double violation;
    std::size_t k;
  };
  std::vector<Scored> bad;
  double worst_violation = -1;
  std::size_t worst_k = 0;
  for (std::size_t k = 0; k < coords.size(); ++k) {
    const double a = analytic[k], n = numeric[k];
    double violation, rel, abs_err;
    if (!std::isfinite(a) || !std::isfinite(n)) {
      violation = rel = abs_err = std::numeric_limits<double>::infinity();
    } else {
      abs_err = std::abs(a - n);
      const double scale = std::max(std::abs(a), std::abs(n));
      rel = scale > 0 ? abs_err / scale : 0.0;
      const double allowed = rtol * scale + atol;
      violation = allowed > 0 ? abs_err / allowed : (abs_err > 0 ? std::numeric_limits<double>::infinity() : 0.0);
    }
    r.max_relative_error = std::max(r.max_relative_error, rel);
    r.max_absolute_error = std::max(r.max_absolute_error, abs_err);
    if (violation > worst_violation) {
      worst_violation = violation;
      worst_k = k;
    }
    if (violation > 1) bad.push_back({violation, k});
  }
  auto mismatch = [&](std::size_t k) {
    return CoordinateMismatch{coords[k], location_of(model, coords[k]), analytic[k], numeric[k], steps[k]};
  };
  r.worst = mismatch(worst_k);
  r.coordinates_failed = bad.size();
  r.passed = bad.empty();
  std::sort(bad.begin(), bad.end(), [](const Scored& x, const Scored& y) { return x.violation > y.violation; });
  for (std::size_t i = 0; i < bad.size() && i < 5; ++i) r.failures.push_back(mismatch(bad[i].k));

  std::ostringstream os;
  os.precision(6);
  const std::string scope = std::to_string(r.coordinates_checked) + " checked coordinate" +
                            (r.coordinates_checked == 1 ? "" : "s") + " (of " + std::to_string(r.num_parameters) +
                            " parameters)";
  if (r.passed) {
    os << "check passed: " << r.checked << " agrees with " << r.reference << " on all " << scope
       << "; max relative error " << r.max_relative_error << ", max absolute error " << r.max_absolute_error
       << " (allowed |a - n| <= " << rtol << " * max(|a|, |n|) + " << atol << ").";
  } else {
    os << "check FAILED: " << r.checked << " disagrees with " << r.reference << " at " << r.coordinates_failed
       << " of " << scope << ".\n";
    os << "  worst: " << r.worst.location << " (coordinate " << r.worst.index << "): " << r.checked << " = "
       << r.worst.analytic << ", finite difference = " << r.worst.numeric << " (step " << r.worst.step << ")\n";
    os << "  likely cause: " << diagnose(r.worst, rtol, r.checked) << "\n";
    if (r.failures.size() > 1) {
      os << "  other failing coordinates:";
      for (std::size_t i = 1; i < r.failures.size(); ++i)
        os << " " << r.failures[i].location << " (" << r.failures[i].analytic << " vs " << r.failures[i].numeric
           << ")" << (i + 1 < r.failures.size() ? "," : "");
      if (r.coordinates_failed > r.failures.size()) os << " ...";
      os << "\n";
    }
    if (r.coordinates_failed == r.coordinates_checked && r.coordinates_checked > 1)
      os << "  every coordinate fails: the analytic derivative may belong to a different function (note that the\n"
            "  per-sample loss and gradient both EXCLUDE the L2 regulariser).\n";
    os << "  allowed: |a - n| <= " << rtol << " * max(|a|, |n|) + " << atol << ", with " << step_rule << ".";
    if (is_float)
      os << "\n  note: Scalar is float, so finite differences carry ~1e-3 relative noise; near-misses (errors"
            " within 10x of the tolerance) may need step ~1e-2 and relative_tolerance ~5e-2.";
    else
      os << "\n  note: if the loss has a kink at this point (ReLU, abs, max), finite differences are unreliable"
            " there; check at another point.";
  }
  r.message = os.str();
  return r;
}

/// Central differences of loss_at() over the chosen coordinates, perturbing model.parameters() in place.
template <Model M, class LossFn>
void central_differences(M& model, const std::vector<std::size_t>& coords, double step, LossFn&& loss_at,
                         std::vector<double>& numeric, std::vector<double>& steps) {
  using Scalar = typename M::Scalar;
  const std::span<Scalar> theta = model.parameters();
  numeric.resize(coords.size());
  steps.resize(coords.size());
  for (std::size_t k = 0; k < coords.size(); ++k) {
    const std::size_t i = coords[k];
    const Scalar original = theta[i];
    const Scalar h = static_cast<Scalar>(step * std::max(1.0, std::abs(static_cast<double>(original))));
    // Use the steps actually representable in Scalar, so that (θ + h) − (θ − h) is exact.
    const Scalar plus = original + h, minus = original - h;
    theta[i] = plus;
    const double f_plus = static_cast<double>(loss_at());
    theta[i] = minus;
    const double f_minus = static_cast<double>(loss_at());
    theta[i] = original;
    const double width = static_cast<double>(plus) - static_cast<double>(minus);
    numeric[k] = (f_plus - f_minus) / width;
    steps[k] = width / 2;
  }
}

template <DifferentiableModel M>
void batch_gradient(const M& model, std::span<const typename M::Sample> batch, std::span<typename M::Scalar> g) {
  if constexpr (BatchDifferentiableModel<M>) {
    model.sum_loss_and_gradient(batch, g);
  } else {
    Vector<typename M::Scalar> one(static_cast<Eigen::Index>(g.size()));
    auto out = as_eigen(g);
    out.setZero();
    for (const auto& s : batch) {
      model.gradient(s, std::span<typename M::Scalar>(one.data(), g.size()));
      out += one;
    }
  }
}

}  // namespace detail

/// Checks gradient(sample, g) against central differences of loss(sample), coordinate by coordinate.
/// The parameters are restored exactly afterwards, even if the model throws (the exception propagates).
template <DifferentiableModel M>
GradientCheckResult check_gradient(M& model, const typename M::Sample& sample, const GradientCheckOptions& options = {}) {
  using Scalar = typename M::Scalar;
  const auto opt = detail::resolve<Scalar>(options);
  detail::check_model_shape(model, "check_gradient");
  detail::ParameterGuard<M> guard(model);
  const std::size_t d = model.num_parameters();
  std::vector<Scalar> g(d);
  const double loss = static_cast<double>(std::as_const(model).gradient(sample, std::span<Scalar>(g)));
  const auto coords = detail::choose_coordinates(d, options.max_coordinates, options.seed);
  std::vector<double> analytic(coords.size()), numeric, steps;
  for (std::size_t k = 0; k < coords.size(); ++k) analytic[k] = static_cast<double>(g[coords[k]]);
  detail::central_differences(model, coords, opt.step, [&] { return std::as_const(model).loss(sample); }, numeric,
                              steps);
  const double atol = opt.atol_given ? opt.atol_base : opt.atol_base * std::max(1.0, std::abs(loss));
  auto r = detail::compare(std::as_const(model), coords, analytic, numeric, steps, opt.rtol, atol,
                           std::is_same_v<Scalar, float>, detail::coordinate_step_rule(opt.step), "gradient()",
                           "central differences of loss()");
  r.loss = loss;
  return r;
}

/// Checks the summed batch gradient (sum_loss_and_gradient where the model has it, otherwise Σ gradient())
/// against central differences of Σ loss(s) over the batch.
template <DifferentiableModel M>
GradientCheckResult check_batch_gradient(M& model, std::span<const typename M::Sample> batch,
                                         const GradientCheckOptions& options = {}) {
  using Scalar = typename M::Scalar;
  const auto opt = detail::resolve<Scalar>(options);
  detail::check_model_shape(model, "check_batch_gradient");
  if (batch.empty()) throw InvalidArgument("check_batch_gradient: the batch is empty; pass at least one sample");
  detail::ParameterGuard<M> guard(model);
  const std::size_t d = model.num_parameters();
  std::vector<Scalar> g(d);
  detail::batch_gradient(std::as_const(model), batch, std::span<Scalar>(g));
  auto sum_loss = [&] {
    double total = 0;
    for (const auto& s : batch) total += static_cast<double>(std::as_const(model).loss(s));
    return total;
  };
  const double loss = sum_loss();
  const auto coords = detail::choose_coordinates(d, options.max_coordinates, options.seed);
  std::vector<double> analytic(coords.size()), numeric, steps;
  for (std::size_t k = 0; k < coords.size(); ++k) analytic[k] = static_cast<double>(g[coords[k]]);
  detail::central_differences(model, coords, opt.step, sum_loss, numeric, steps);
  const double atol = opt.atol_given ? opt.atol_base : opt.atol_base * std::max(1.0, std::abs(loss));
  auto r = detail::compare(std::as_const(model), coords, analytic, numeric, steps, opt.rtol, atol,
                           std::is_same_v<Scalar, float>, detail::coordinate_step_rule(opt.step),
                           BatchDifferentiableModel<M> ? "sum_loss_and_gradient()" : "the sum of gradient()",
                           "central differences of the summed loss()");
  r.loss = loss;
  return r;
}

/// Checks Σ ∇²loss · v (hessian_vector_product, or hessian() times v) against central differences of the
/// batch gradient along a seeded random direction v with ‖v‖∞ = 1:  (∇L(θ + h v) − ∇L(θ − h v)) / 2h,
/// h = step·max(1, ‖θ‖∞). Every coordinate of H v is compared.
template <TwiceDifferentiableModel M>
GradientCheckResult check_hessian_vector_product(M& model, std::span<const typename M::Sample> batch,
                                                 const GradientCheckOptions& options = {}) {
  using Scalar = typename M::Scalar;
  const auto opt = detail::resolve<Scalar>(options);
  detail::check_model_shape(model, "check_hessian_vector_product");
  if (batch.empty())
    throw InvalidArgument("check_hessian_vector_product: the batch is empty; pass at least one sample");
  detail::ParameterGuard<M> guard(model);
  const std::size_t d = model.num_parameters();
  const auto di = static_cast<Eigen::Index>(d);

  Vector<Scalar> v(di);
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (Eigen::Index i = 0; i < di; ++i) v[i] = static_cast<Scalar>(normal(rng));
  v /= v.cwiseAbs().maxCoeff();

  Vector<Scalar> hv(di);
  if constexpr (HasHessianVectorProduct<M>) {
    std::as_const(model).hessian_vector_product(batch, std::span<const Scalar>(v.data(), d), std::span<Scalar>(hv.data(), d));
  } else {
    Matrix<Scalar> h;
    std::as_const(model).hessian(batch, h);
    if (h.rows() != di || h.cols() != di)
      throw InvalidArgument("check_hessian_vector_product: hessian() returned a " + std::to_string(h.rows()) + "x" +
                            std::to_string(h.cols()) + " matrix; expected " + std::to_string(d) + "x" +
                            std::to_string(d));
    hv.noalias() = h * v;
  }

  auto theta = as_eigen(std::span<Scalar>(model.parameters()));
  const Vector<Scalar> original = theta;
  const Scalar h = static_cast<Scalar>(opt.step * std::max(1.0, static_cast<double>(original.cwiseAbs().maxCoeff())));
  Vector<Scalar> g_plus(di), g_minus(di);
  theta = original + h * v;
  const Vector<Scalar> theta_plus = theta;
  detail::batch_gradient(std::as_const(model), batch, std::span<Scalar>(g_plus.data(), d));
  theta = original - h * v;
  const Vector<Scalar> theta_minus = theta;
  detail::batch_gradient(std::as_const(model), batch, std::span<Scalar>(g_minus.data(), d));
  theta = original;
  // The realised displacement (θ+ − θ−) differs from 2h v by rounding; dividing by its projection on v
  // keeps that rounding out of the numeric derivative.
  const double width = (theta_plus.template cast<double>() - theta_minus.template cast<double>())
                           .dot(v.template cast<double>()) / v.template cast<double>().squaredNorm();

  std::vector<std::size_t> coords(d);
  std::iota(coords.begin(), coords.end(), std::size_t{0});
  std::vector<double> analytic(d), numeric(d), steps(d, width / 2);
  double scale = 1.0;
  for (std::size_t i = 0; i < d; ++i) {
    analytic[i] = static_cast<double>(hv[static_cast<Eigen::Index>(i)]);
    numeric[i] = (static_cast<double>(g_plus[static_cast<Eigen::Index>(i)]) -
                  static_cast<double>(g_minus[static_cast<Eigen::Index>(i)])) / width;
    if (std::isfinite(numeric[i])) scale = std::max(scale, std::abs(numeric[i]));
  }
  const double atol = opt.atol_given ? opt.atol_base : opt.atol_base * scale;
  return detail::compare(std::as_const(model), coords, analytic, numeric, steps, opt.rtol, atol,
                         std::is_same_v<Scalar, float>,
                         "theta +/- h v, h = " + detail::format_number(opt.step) + " * max(1, max_i |theta_i|), max_i |v_i| = 1",
                         HasHessianVectorProduct<M> ? "hessian_vector_product()" : "hessian() * v",
                         "central differences of the batch gradient along v");
}

/// Checks sampled_gradient through an identity every correct implementation satisfies: the score has mean
/// zero, E_{ŷ ~ p(·|x;θ)}[∇(−log p(ŷ | x; θ))] = 0. Draws `draws` sampled gradients (seeded) and fails when
/// some coordinate's mean is more than z_threshold standard errors from 0. It catches labels that are not
/// drawn from the model's own distribution, and the observed label's gradient returned instead; it cannot
/// catch an error that keeps the mean at zero (a flipped sign, which the Fisher g gᵀ does not see anyway).
template <SampledFisherModel M>
SampledGradientCheckResult check_sampled_gradient(const M& model, const typename M::Sample& sample,
                                                  std::size_t draws = 4000, std::uint64_t seed = 0x5eed) {
  using Scalar = typename M::Scalar;
  if (draws < 2) throw InvalidArgument("check_sampled_gradient: draws must be at least 2 (a standard error needs two)");
  if (model.parameters().size() != model.num_parameters() || model.num_parameters() == 0)
    throw InvalidArgument("check_sampled_gradient: parameters() and num_parameters() disagree or are empty");
  const std::size_t d = model.num_parameters();
  const auto di = static_cast<Eigen::Index>(d);
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(di), sum_sq = Eigen::VectorXd::Zero(di);
  Vector<Scalar> g(di);
  std::mt19937_64 rng(seed);
  for (std::size_t t = 0; t < draws; ++t) {
    model.sampled_gradient(sample, rng, std::span<Scalar>(g.data(), d));
    const Eigen::VectorXd gd = g.template cast<double>();
    sum += gd;
    sum_sq += gd.cwiseAbs2();
  }
  SampledGradientCheckResult r;
  r.draws = draws;
  r.z_threshold = 3.0 + std::sqrt(2.0 * std::log(2.0 * static_cast<double>(d)));
  const double n = static_cast<double>(draws);
  const double tiny = 1e-3 * std::sqrt(static_cast<double>(std::numeric_limits<Scalar>::epsilon()));
  bool nonfinite = !sum.allFinite() || !sum_sq.allFinite();
  for (Eigen::Index i = 0; i < di && !nonfinite; ++i) {
    const double mean = sum[i] / n;
    const double var = std::max(0.0, (sum_sq[i] - n * mean * mean) / (n - 1));
    const double se = std::sqrt(var / n);
    // A coordinate that never varies must be exactly zero on average (up to rounding of its magnitude).
    const double z = se > tiny * std::abs(mean) ? std::abs(mean) / se
                                                : (std::abs(mean) <= tiny ? 0.0 : std::numeric_limits<double>::infinity());
    if (z > r.max_z_score || i == 0) {
      r.max_z_score = z;
      r.worst_coordinate = static_cast<std::size_t>(i);
      r.worst_mean = mean;
      r.worst_standard_error = se;
    }
  }
  r.worst_location = detail::location_of(model, r.worst_coordinate);
  std::ostringstream os;
  os.precision(6);
  if (nonfinite) {
    r.passed = false;
    os << "sampled-gradient check FAILED: sampled_gradient() returned NaN or Inf.";
  } else {
    r.passed = r.max_z_score <= r.z_threshold;
    os << "sampled-gradient check " << (r.passed ? "passed" : "FAILED") << ": over " << draws
       << " draws the mean sampled gradient is " << r.max_z_score << " standard errors from 0 at its worst ("
       << r.worst_location << ": mean " << r.worst_mean << ", standard error " << r.worst_standard_error
       << "; allowed " << r.z_threshold << ").";
    if (!r.passed)
      os << "\n  a correct sampled_gradient is the gradient of -log p(y^ | x) for y^ drawn from the model's own"
            " predictive distribution, whose mean is 0. Is y^ drawn from another distribution, or is the"
            " observed label used?";
  }
  r.message = os.str();
  return r;
}

}  // namespace fisher_unlearn::testing
