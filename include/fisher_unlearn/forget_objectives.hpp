// Forget objectives: what an iterated unlearner (natural_gradient.hpp) MINIMISES over the forget set F,
//   GradientAscentObjective  L(θ) = −(1/k) Σ ℓ(s)                                  (unbounded below)
//   DescentObjective         L(θ) =  (1/k) Σ ℓ(s)        (ℓ as the samples define it: soft targets)
//   NpoObjective             L(θ) = (2/β)(1/k) Σ log(1 + exp(−β c (ℓ(s) − ℓ_ref(s))))   (≥ 0, bounded)
// ℓ = the model's per-sample loss (regulariser excluded). Cost: one gradient per forget sample per call.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/errors.hpp"

#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

// ================================================================================================
// ForgetObjective<O, Model>: a differentiable function of θ over the forget set, to be minimised.
//   o.value_and_gradient(model, forget, g) -> double: resizes g to num_parameters(), overwrites it
//     with ∇_θ L(θ) and returns L(θ), evaluated at model.parameters().
//   o.name() -> string, e.g. "descent" (it becomes part of the unlearner's report).
// Rules the compiler cannot check: value_and_gradient is a pure function of (θ, forget, o's state)
// and g is the exact derivative of the returned value.
// ReferencedForgetObjective adds o.bind(model, forget): records what the objective needs from the
// model before unlearning starts (NPO's reference likelihoods); an unlearner calls it once, on its own
// copy of the objective, before the first step.
// ================================================================================================
template <class O, class M>
concept ForgetObjective = DifferentiableModel<M> &&
    requires(const O& o, const M& model, std::span<const typename M::Sample> forget, Vector<typename M::Scalar>& g) {
      { o.value_and_gradient(model, forget, g) } -> std::convertible_to<double>;
      { o.name() } -> std::convertible_to<std::string>;
    };

template <class O, class M>
concept ReferencedForgetObjective = ForgetObjective<O, M> &&
    requires(O& o, const M& model, std::span<const typename M::Sample> forget) { o.bind(model, forget); };

namespace detail {

/// g = (1/|S|) Σ ∇ℓ(s) (regulariser excluded); returns (1/|S|) Σ ℓ(s). Batched where the model can.
template <DifferentiableModel M>
double mean_loss_and_gradient(const M& model, std::span<const typename M::Sample> samples,
                              Vector<typename M::Scalar>& g) {
  using Scalar = typename M::Scalar;
  require_nonempty<M>(samples, "the sample set");
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  g.resize(d);
  double sum = 0.0;
  if constexpr (BatchDifferentiableModel<M>) {
    sum = static_cast<double>(checked_sum_loss_and_gradient(
        model, samples, std::span<Scalar>(g.data(), static_cast<std::size_t>(g.size())), "forget objective"));
  } else {
    g.setZero();
    Vector<Scalar> one(d);
    for (const auto& s : samples) {
      sum += static_cast<double>(
          checked_gradient(model, s, std::span<Scalar>(one.data(), static_cast<std::size_t>(one.size())),
                           "forget objective"));
      g += one;
    }
  }
  g /= static_cast<Scalar>(samples.size());
  return sum / static_cast<double>(samples.size());
}

/// log(1 + eˣ) without overflow.
inline double softplus(double x) { return x > 0.0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
/// 1 / (1 + e⁻ˣ) without overflow.
inline double logistic(double x) {
  return x >= 0.0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}

}  // namespace detail

/// L = −mean loss over the forget set: classic gradient ascent, kept as the baseline. Unbounded below:
/// minimising it drives the forget loss to +∞, and on a language model that attacks the model itself
/// (docs/unlearners.md). Use with a stopping rule.
struct GradientAscentObjective {
  std::string name() const { return "gradient_ascent"; }

  template <DifferentiableModel M>
  double value_and_gradient(const M& model, std::span<const typename M::Sample> forget,
                            Vector<typename M::Scalar>& g) const {
    const double mean = detail::mean_loss_and_gradient(model, forget, g);
    g = -g;
    return -mean;
  }
};

/// L = mean loss over the forget samples as given. With samples whose targets are what the model
/// should predict instead (soft targets: uniform over the alphabet minus the observed token, see
/// Transformer::Sample) this is the bounded objective CE(q, p_θ) ≥ H(q): it stops pulling once the
/// model predicts q. Works for any DifferentiableModel. The default objective of the iterated unlearners.
struct DescentObjective {
  std::string name() const { return "descent"; }

  template <DifferentiableModel M>
  double value_and_gradient(const M& model, std::span<const typename M::Sample> forget,
                            Vector<typename M::Scalar>& g) const {
    return detail::mean_loss_and_gradient(model, forget, g);
  }
};

/// Negative Preference Optimization (Zhang, Lin, Bai & Mei 2024): with the likelihood of a forget
/// sample π_θ(s) = exp(−c·ℓ_θ(s)) (c = log_likelihood_scale: 1 when ℓ is the sample's log-loss, the
/// number of scored tokens when ℓ is their mean) and π_ref its value at bind() time,
///   L(θ) = (2/β) (1/k) Σ_s log(1 + (π_θ(s)/π_ref(s))^β) = (2/β) (1/k) Σ_s softplus(β·r_s),
///   r_s = log π_θ(s) − log π_ref(s) = −c (ℓ_θ(s) − ℓ_ref(s)),
///   ∇L = −(2c/k) Σ_s σ(β r_s) ∇ℓ_θ(s)          (σ the logistic function).
/// At θ = θ_ref, σ = ½ and ∇L = −(c/k) Σ ∇ℓ: the gradient-ascent direction. As a sample's likelihood
/// falls below its reference, its weight σ(β r_s) → 0: L is bounded below by 0 and the pull fades,
/// which is what makes NPO stable where ascent diverges. β → 0 recovers gradient ascent (scaled).
class NpoObjective {
 public:
  /// β = 0.1 (the NPO paper's TOFU setting), c = 1.
  NpoObjective() : NpoObjective(0.1) {}
  /// beta > 0 (the paper's β), log_likelihood_scale c > 0.
  explicit NpoObjective(double beta, double log_likelihood_scale = 1.0)
      : beta_(beta), scale_(log_likelihood_scale) {
    if (!(beta > 0.0) || !std::isfinite(beta))
      throw InvalidArgument("NpoObjective: beta must be positive and finite (the NPO paper uses 0.1)");
    if (!(log_likelihood_scale > 0.0) || !std::isfinite(log_likelihood_scale))
      throw InvalidArgument("NpoObjective: log_likelihood_scale must be positive and finite (1 when the loss is the "
                            "sample's negative log-likelihood, the number of scored tokens when it is their mean)");
  }

  std::string name() const { return "npo"; }
  double beta() const { return beta_; }
  double log_likelihood_scale() const { return scale_; }
  bool is_bound() const { return !reference_losses_.empty(); }
  /// ℓ_ref(s) per forget sample, as recorded by bind().
  const std::vector<double>& reference_losses() const { return reference_losses_; }

  /// Records ℓ_ref(s) = the model's current loss on every forget sample (the reference policy π_ref).
  /// Throws InvalidArgument for an empty forget set, NonFiniteError for a NaN/Inf loss (unchanged then).
  template <Model M>
  void bind(const M& model, std::span<const typename M::Sample> forget) {
    if (forget.empty()) throw InvalidArgument("NpoObjective::bind: the forget set is empty");
    std::vector<double> losses;
    losses.reserve(forget.size());
    for (const auto& s : forget) {
      const double l = static_cast<double>(model.loss(s));
      if (!std::isfinite(l))
        throw NonFiniteError("NpoObjective::bind: a forget sample's loss is NaN or Inf; check the model and data");
      losses.push_back(l);
    }
    reference_losses_ = std::move(losses);
  }

  /// L(θ) and ∇L(θ) over the forget set bind() saw (same samples, same order).
  template <DifferentiableModel M>
  double value_and_gradient(const M& model, std::span<const typename M::Sample> forget,
                            Vector<typename M::Scalar>& g) const {
    using Scalar = typename M::Scalar;
    if (!is_bound())
      throw StateError("NpoObjective: no reference likelihoods; call bind(model, forget) with the model before "
                       "unlearning (the iterated unlearners do this themselves)");
    if (forget.size() != reference_losses_.size())
      throw InvalidArgument("NpoObjective: bound to " + std::to_string(reference_losses_.size()) +
                            " forget samples but called with " + std::to_string(forget.size()) +
                            "; pass the same forget set bind() saw");
    const auto d = static_cast<Eigen::Index>(model.num_parameters());
    g.setZero(d);
    Vector<Scalar> one(d);
    const double k = static_cast<double>(forget.size());
    double value = 0.0;
    for (std::size_t i = 0; i < forget.size(); ++i) {
      const double loss = static_cast<double>(detail::checked_gradient(
          model, forget[i], std::span<Scalar>(one.data(), static_cast<std::size_t>(one.size())), "NpoObjective"));
      const double r = -scale_ * (loss - reference_losses_[i]);
      value += detail::softplus(beta_ * r);
      g += static_cast<Scalar>(-2.0 * scale_ * detail::logistic(beta_ * r) / k) * one;
    }
    return 2.0 / beta_ * value / k;
  }

 private:
  double beta_;
  double scale_;
  std::vector<double> reference_losses_;
};

}  // namespace fisher_unlearn
