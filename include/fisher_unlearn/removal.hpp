// FisherRemoval: a Newton removal step with the (damped) Fisher in place of the Hessian,
//   θ' = θ + η · (k/(n−k)) · F⁻¹ ∇J_forget(θ),   F = λI + (1/m) Σᵢ gᵢgᵢᵀ over m retain-set gradients,
// optionally in several steps over forget batches. Cost: m (·S) gradients + the estimator's setup
// (O(m²d + m³) Woodbury, O(md) diagonal, ...) once; then per step |batch| gradients + one F⁻¹v.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/progress.hpp"
#include "fisher_unlearn/report.hpp"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn {

// ---- Normalisation -------------------------------------------------------------------------------
// n training samples, k of them forgotten, J_S = mean_{S} loss + (λ_reg/2)‖θ‖² (every J carries the
// regulariser once). At the full-data optimum θ:  n∇J_D(θ) = (n−k)∇J_R(θ) + k∇J_F(θ) = 0, so one Newton
// step on J_R from θ is
//     θ' = θ − H̄_R⁻¹ ∇J_R(θ) = θ + (k/(n−k)) H̄_R⁻¹ ∇J_F(θ),     H̄_R = ∇²J_R = mean retain Hessian + λ_reg I.
// FisherRemoval takes F ≈ H̄_R: F's empirical part is a MEAN over m retain gradients (not a sum), and
// its damping plays the role of λ_reg (for logistic regression with the Monte-Carlo Fisher,
// E[ggᵀ] = the data-term Hessian, so damping = l2_regularization() makes E[F] = H̄_R exactly).
// Hence step_scale η = 1 reproduces the Newton removal step when F is the exact Hessian.
// n − k is retain.size(): forget ∪ retain must be the whole training set.
//
// Several steps (iterations > 1 or forget_batch_size < k): the forget set's weight is removed in equal
// portions, each with its gradient recomputed at the current θ (a continuation, not a restart):
//     for pass t = 1..T, for each forget batch B (in the given order):
//         θ ← θ + η · |B| / ((n−k)·T) · F⁻¹ ∇J_B(θ)
// which sums to the one-step formula when the gradients do not change. F is built once, at the start.
//
// max_step_norm bounds the norm of every single step (a trust radius); a clipped step is reported in
// UnlearningReport::notes. With one step it bounds the whole update.

struct FisherRemovalOptions {
  /// Damping λ of F = λI + (1/m) Σ ggᵀ. > 0: this fixed value. 0 (the default): λ = the model's
  /// l2_regularization() when it is a RegularizedModel with λ_reg > 0 (F then approximates H̄_R = mean
  /// Hessian + λ_reg I, exactly in expectation for the Monte-Carlo Fisher of a GLM, see "Normalisation"
  /// below), otherwise the spectrum-relative λ = 1e-2·tr(F̂)/d (estimators with undamped_trace()), otherwise
  /// 1e-3; the report's notes say which. A fixed 1e-3 (the default before issue 15) under-damps a model
  /// with λ_reg = 1e-2 and lands farther from retraining than doing nothing (docs/unlearners.md, "Defaults").
  /// With automatic_damping this is only the damping the estimator holds before the search.
  double damping = 0.0;
  /// Set to search the damping (see damping.hpp); the chosen λ is reported in UnlearningReport::damping.
  std::optional<DampingSearch> automatic_damping;
  double step_scale = 1.0;            ///< η (> 0); 1 = the Newton removal step
  std::size_t fisher_samples = 1024;  ///< m: retain inputs whose gradients build F (all if >= |retain|)
  std::uint64_t seed = 0x5eed;        ///< seeds the subsample of m retain inputs
  GradientCollection gradients;       ///< empirical or Monte-Carlo (S draws per input, seeded)
  std::size_t iterations = 1;         ///< T: passes over the forget set
  std::size_t forget_batch_size = 0;  ///< forget samples per step; 0 = the whole forget set
  double max_step_norm = std::numeric_limits<double>::infinity();  ///< trust radius per step (> 0)
  /// Restrict unlearning to these named parameter groups (HasParameterGroups); empty = every parameter.
  /// F is then the Fisher of the subset only, and the other parameters do not move.
  std::vector<std::string> parameter_groups;
  /// Progress reports and cancellation (progress.hpp): phases "fisher: gradients" (per retain input),
  /// "fisher: factorise", "damping search" (per candidate λ), "removal steps" (per step). Cancelling
  /// throws Cancelled with the model bitwise unchanged (and a caller-supplied estimator's damping restored).
  /// Used for every phase, gradients included (gradients.progress is then ignored).
  Progress progress{};

  void validate(const std::string& who) const {
    if (!(damping >= 0.0) || !std::isfinite(damping))
      throw InvalidArgument(who + ": damping must be finite and >= 0 (got " + detail::format_number(damping) +
                            "); 0 = the default (the model's l2_regularization()), or use automatic_damping");
    detail::require_positive_finite(step_scale, who + ": step_scale (eta)", "1 is the Newton removal step");
    if (fisher_samples == 0)
      throw InvalidArgument(who + ": fisher_samples (m) is 0; the Fisher needs at least one retain gradient");
    if (iterations == 0) throw InvalidArgument(who + ": iterations must be at least 1");
    if (!(max_step_norm > 0.0))
      throw InvalidArgument(who + ": max_step_norm must be positive (infinity = no limit)");
    if (gradients.kind == FisherKind::monte_carlo && gradients.samples_per_input == 0)
      throw InvalidArgument(who + ": gradients.samples_per_input (S) must be at least 1");
    if (automatic_damping) automatic_damping->validate();
  }
};

namespace detail {

/// The damping FisherRemovalOptions::damping = 0 stands for (see there), for a finalised estimator.
template <class Estimator, Model M>
double default_fisher_damping(const M& model, const Estimator& fisher) {
  if constexpr (RegularizedModel<M>) {
    const double l2 = static_cast<double>(model.l2_regularization());
    if (l2 > 0.0 && std::isfinite(l2)) return l2;
  }
  if constexpr (HasUndampedTrace<Estimator>) {
    const double trace = static_cast<double>(fisher.undamped_trace());
    if (trace > 0.0 && std::isfinite(trace)) return spectrum_relative_damping(trace, fisher.dimension(), 1e-2);
  }
  return 1e-3;
}

/// Says which default default_fisher_damping used, for the report's notes.
template <class Estimator, Model M>
std::string default_fisher_damping_note(const M& model, const Estimator& fisher) {
  const std::string value = format_number(default_fisher_damping(model, fisher));
  if constexpr (RegularizedModel<M>) {
    const double l2 = static_cast<double>(model.l2_regularization());
    if (l2 > 0.0 && std::isfinite(l2)) return "damping " + value + " (default: the model's l2_regularization())";
  }
  if constexpr (HasUndampedTrace<Estimator>) {
    const double trace = static_cast<double>(fisher.undamped_trace());
    if (trace > 0.0 && std::isfinite(trace)) return "damping " + value + " (default: 1e-2 tr(F)/d)";
  }
  return "damping " + value + " (default: fixed 1e-3; the model has no l2_regularization() and the estimator no trace)";
}

/// F built from a seeded subsample of the retain set, finalised; also returns the bytes of the
/// gradient matrix it was built from (part of the method's peak memory).
template <class Estimator, DifferentiableModel M, class Factory>
std::pair<Estimator, std::size_t> build_retain_fisher(const M& model, std::span<const typename M::Sample> retain,
                                                      const FisherRemovalOptions& o, const ParameterSubset& subset,
                                                      const Factory& make) {
  using Scalar = typename M::Scalar;
  Matrix<Scalar> gradients;
  GradientCollection collection = o.gradients;
  collection.progress = o.progress;
  if (o.fisher_samples >= retain.size()) {
    gradients = collect_gradients(model, retain, collection, subset);
  } else {
    const auto chosen = subsample(retain, o.fisher_samples, o.seed);
    gradients = collect_gradients(model, std::span<const typename M::Sample>(chosen), collection, subset);
  }
  o.progress.update("fisher: factorise", 0, 1);
  Estimator fisher = make(subset.size(), static_cast<Scalar>(o.damping > 0.0 ? o.damping : 1e-3));
  if (fisher.dimension() != subset.size())
    throw InvalidArgument("the estimator factory built an estimator of dimension " + std::to_string(fisher.dimension()) +
                          " for " + std::to_string(subset.size()) + " parameters");
  fisher.add_gradients(gradients);
  fisher.finalize();
  if (o.damping == 0.0) fisher.set_damping(static_cast<Scalar>(default_fisher_damping(model, fisher)));
  o.progress.update("fisher: factorise", 1, 1);
  return {std::move(fisher), static_cast<std::size_t>(gradients.size()) * sizeof(Scalar)};
}

/// ∇J_S(θ) restricted to the subset.
template <DifferentiableModel M>
Vector<typename M::Scalar> subset_objective_gradient(const M& model, std::span<const typename M::Sample> samples,
                                                     const ParameterSubset& subset, const std::string& what) {
  using Scalar = typename M::Scalar;
  Vector<Scalar> full;
  objective_gradient(model, samples, full);
  require_finite(full, what);
  Vector<Scalar> sub(static_cast<Eigen::Index>(subset.size()));
  subset.gather(std::span<const Scalar>(full.data(), static_cast<std::size_t>(full.size())),
                std::span<Scalar>(sub.data(), static_cast<std::size_t>(sub.size())));
  return sub;
}

/// step = scale · F⁻¹ g, clipped to max_norm; returns the norm before clipping.
template <FisherEstimator Estimator>
double removal_step(const Estimator& fisher, const Vector<typename Estimator::Scalar>& g, double scale, double max_norm,
                    Vector<typename Estimator::Scalar>& step) {
  using Scalar = typename Estimator::Scalar;
  step.resize(g.size());
  fisher.apply_power(-1.0, g, step);
  step *= static_cast<Scalar>(scale);
  require_finite(step, "the Fisher removal step F^-1 g (the damping is too small for this Fisher: raise it or use "
                       "automatic_damping)");
  const double norm = step.template cast<double>().norm();
  if (norm > max_norm) step *= static_cast<Scalar>(max_norm / norm);
  return norm;
}

/// Applies the removal term in place (the caller holds the rollback), choosing the damping first
/// when automatic. Fills damping, iterations and notes of the report.
template <FisherEstimator Estimator, DifferentiableModel M>
void apply_fisher_removal(M& model, std::span<const typename M::Sample> forget,
                          std::span<const typename M::Sample> retain, Estimator& fisher,
                          const FisherRemovalOptions& o, const ParameterSubset& subset, UnlearningReport& r) {
  using Scalar = typename M::Scalar;
  using Sample = typename M::Sample;
  const double k = static_cast<double>(forget.size());
  const double n_retain = static_cast<double>(retain.size());
  auto theta = parameters_of(model);
  const auto sub_span = [](Vector<Scalar>& v) {
    return std::span<const Scalar>(v.data(), static_cast<std::size_t>(v.size()));
  };
  Vector<Scalar> step;

  if (o.automatic_damping) {
    const DampingSearch& search = *o.automatic_damping;
    std::vector<Sample> score_copy;
    std::span<const Sample> score_set = retain;
    if (search.score_samples > 0 && search.score_samples < retain.size()) {
      score_copy = subsample(retain, search.score_samples, search.seed);
      score_set = score_copy;
    }
    const Vector<Scalar> g = subset_objective_gradient(model, forget, subset, r.method + ": the forget-set gradient");
    const Vector<Scalar> theta0 = theta;
    const auto result = search_damping(fisher, search, o.progress, [&](double) {
      removal_step(fisher, g, o.step_scale * k / n_retain, o.max_step_norm, step);
      subset.scatter_add(sub_span(step), Scalar(1), std::span<Scalar>(model.parameters()));
      double score = 0.0;
      try {  // search_damping may skip this candidate and carry on: θ must be back at θ₀ either way
        score = objective(model, score_set);
      } catch (...) {
        theta = theta0;
        throw;
      }
      theta = theta0;
      return score;
    });
    r.damping = result.damping;
    append_note(r.notes, result.summary());
  } else {
    r.damping = static_cast<double>(fisher.damping());
  }

  const std::size_t batch = o.forget_batch_size == 0 ? forget.size() : std::min(o.forget_batch_size, forget.size());
  const std::size_t total_steps = o.iterations * ((forget.size() + batch - 1) / batch);
  std::size_t clipped = 0;
  double largest_unclipped = 0.0;
  for (std::size_t pass = 0; pass < o.iterations; ++pass) {
    for (std::size_t begin = 0; begin < forget.size(); begin += batch) {
      o.progress.update("removal steps", r.iterations, total_steps);
      const auto part = forget.subspan(begin, std::min(batch, forget.size() - begin));
      const Vector<Scalar> g = subset_objective_gradient(model, part, subset, r.method + ": the forget-batch gradient");
      const double scale = o.step_scale * static_cast<double>(part.size()) / (n_retain * static_cast<double>(o.iterations));
      const double unclipped = removal_step(fisher, g, scale, o.max_step_norm, step);
      if (unclipped > o.max_step_norm) {
        ++clipped;
        largest_unclipped = std::max(largest_unclipped, unclipped);
      }
      subset.scatter_add(sub_span(step), Scalar(1), std::span<Scalar>(model.parameters()));
      ++r.iterations;
    }
  }
  if (clipped > 0)
    append_note(r.notes, std::to_string(clipped) + " of " + std::to_string(r.iterations) +
                             " step(s) clipped to max_step_norm " + format_number(o.max_step_norm) +
                             " (largest unclipped norm " + format_number(largest_unclipped) + ")");
}

/// Keeps a caller-supplied estimator's damping as the caller set it, whatever happens.
template <FisherEstimator Estimator>
class DampingRestorer {
 public:
  explicit DampingRestorer(Estimator& e) : e_(e), saved_(e.damping()) {}
  ~DampingRestorer() {
    try {
      e_.set_damping(saved_);
    } catch (...) {  // the value was accepted once; a destructor must not throw
    }
  }
  DampingRestorer(const DampingRestorer&) = delete;
  DampingRestorer& operator=(const DampingRestorer&) = delete;

 private:
  Estimator& e_;
  typename Estimator::Scalar saved_;
};

}  // namespace detail

/// Fisher removal with any FisherEstimator. The estimator is built per call by a factory
/// (default: Estimator(dimension, damping)); pass a factory for estimators with more constructor
/// arguments (block sizes, window lengths), or pass a finalised estimator to unlearn() directly.
/// Satisfies NewtonUnlearner for every DifferentiableModel with the estimator's Scalar.
template <FisherEstimator Estimator>
class FisherRemoval {
 public:
  using Scalar = typename Estimator::Scalar;
  using Factory = std::function<Estimator(std::size_t dimension, Scalar damping)>;

  FisherRemoval()
    requires std::constructible_from<Estimator, std::size_t, Scalar>
      : FisherRemoval(FisherRemovalOptions{}) {}
  explicit FisherRemoval(FisherRemovalOptions options)
    requires std::constructible_from<Estimator, std::size_t, Scalar>
      : FisherRemoval(std::move(options), [](std::size_t d, Scalar damping) { return Estimator(d, damping); }) {}
  FisherRemoval(FisherRemovalOptions options, Factory make) : options_(std::move(options)), make_(std::move(make)) {
    options_.validate(name());
    if (!make_) throw InvalidArgument("FisherRemoval: the estimator factory is empty");
  }

  std::string name() const { return "fisher_removal"; }
  const FisherRemovalOptions& options() const { return options_; }

  /// Builds F from m retain-set gradients, then removes `forget`. Strong guarantee.
  template <DifferentiableModel M>
    requires std::same_as<typename M::Scalar, Scalar>
  UnlearningReport unlearn(M& model, std::span<const typename M::Sample> forget,
                           std::span<const typename M::Sample> retain) const {
    const detail::Stopwatch clock;
    detail::require_unlearning_sets(model, forget, retain, name());
    const ParameterSubset subset = ParameterSubset::from_groups(model, options_.parameter_groups);
    UnlearningReport r = detail::begin_report(model, forget, retain, name());
    auto [fisher, gradient_bytes] = detail::build_retain_fisher<Estimator>(model, retain, options_, subset, make_);
    if (options_.damping == 0.0 && !options_.automatic_damping)
      detail::append_note(r.notes, detail::default_fisher_damping_note(model, fisher));
    run(model, forget, retain, fisher, subset, r);
    r.memory_bytes = fisher.memory_bytes() + gradient_bytes + 4 * subset.full_size() * sizeof(Scalar);
    r.seconds = clock.seconds();
    return r;
  }

  /// Uses the caller's finalised estimator (of dimension = the size of the parameter subset, built
  /// from gradients at the current θ). The options' damping, fisher_samples and gradients are then
  /// unused; with automatic_damping the search runs on this estimator and its damping is restored
  /// afterwards (the chosen value is in the report). Strong guarantee for the model.
  template <DifferentiableModel M>
    requires std::same_as<typename M::Scalar, Scalar>
  UnlearningReport unlearn(M& model, std::span<const typename M::Sample> forget,
                           std::span<const typename M::Sample> retain, Estimator& fisher) const {
    const detail::Stopwatch clock;
    detail::require_unlearning_sets(model, forget, retain, name());
    const ParameterSubset subset = ParameterSubset::from_groups(model, options_.parameter_groups);
    if (fisher.dimension() != subset.size())
      throw InvalidArgument(name() + ": the supplied estimator has dimension " + std::to_string(fisher.dimension()) +
                            " but the (restricted) model has " + std::to_string(subset.size()) + " parameters");
    UnlearningReport r = detail::begin_report(model, forget, retain, name());
    const detail::DampingRestorer<Estimator> keep_damping(fisher);
    run(model, forget, retain, fisher, subset, r);
    r.memory_bytes = fisher.memory_bytes() + 4 * subset.full_size() * sizeof(Scalar);
    r.seconds = clock.seconds();
    return r;
  }

 private:
  template <DifferentiableModel M>
  void run(M& model, std::span<const typename M::Sample> forget, std::span<const typename M::Sample> retain,
           Estimator& fisher, const ParameterSubset& subset, UnlearningReport& r) const {
    const Vector<Scalar> theta_before = detail::snapshot_parameters(model);
    r.fisher_gradients = fisher.num_gradients();
    detail::with_rollback(model, [&] {
      detail::apply_fisher_removal(model, forget, retain, fisher, options_, subset, r);
      detail::finish_report(model, theta_before, forget, retain, r);
    });
  }

  FisherRemovalOptions options_;
  Factory make_;
};

}  // namespace fisher_unlearn
