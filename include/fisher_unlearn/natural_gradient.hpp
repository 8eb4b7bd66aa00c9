// Iterated natural-gradient unlearning: minimise a forget objective L (forget_objectives.hpp) by steps
//   δ_t = −η · P⁻¹ ∇L(θ_t),  scaled down so that the predicted retain KL ½ δᵀ F_R δ ≤ κ (trust region),
// P = F_R (the natural gradient; F_R = λI + (1/m)Σ gᵢgᵢᵀ from m retain gradients, λ = α·tr/d), or the
// identity, Adam or a SOUL/Sophia clipped diagonal Hessian. Cost: F_R once (m gradients + the estimator's
// setup, again every R steps if refreshed), then per step k forget gradients + one P⁻¹v + one F_R v.
// F_R is built from flat per-sample gradients (Woodbury, diagonal, dense, ...) or, for a K-FAC/EK-FAC
// estimator (LayerFactoredEstimator) on a LinearLayerModel, from the layers' statistics (no d×m matrix).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/report.hpp"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn {

// ---- Why this shape ------------------------------------------------------------------------------
// Forgetting should change the model's predictions on retained data as little as possible. To second
// order the change of the retain predictive distribution caused by a step δ is
//     KL(p_θ ‖ p_{θ+δ}) on the retain inputs ≈ ½ δᵀ F_R δ,
// so the step that lowers the forget objective most per unit of retain KL is the natural gradient
// −F_R⁻¹∇L, and a trust region ½δᵀF_Rδ ≤ κ bounds the damage of every single step. Iterating from the
// current θ (rather than one Newton step from θ₀) lets the objective's own gradient change as the model
// forgets, which a bounded objective needs: its pull fades once the secret is no more likely than an
// unseen one. F_R is built once (optionally refreshed every R steps): the retain curvature changes
// little while only the forget data are being unlearned.
//
// With one step, η = 1, κ = ∞ and the objective −(k/(n−k))·J_forget this is FisherRemoval's step, and
// with F_R the exact retain Hessian it is NewtonRemoval (tested).
//
// The trust region uses the damped F_R (λ stands for the curvature the m gradients did not see: with
// m ≪ d a rank-m F̂ would call most directions free). It needs F_R, which is built whenever the
// preconditioner uses it or κ is finite; with the identity, Adam or SOUL and κ finite, F_R serves only
// as the trust region's metric, so every preconditioner moves under the same retain-KL budget.

/// One step's record (passed to the progress callback, and kept in NaturalGradientResult::steps).
struct NaturalGradientStep {
  std::size_t step = 0;            ///< 1-based
  double objective = 0.0;          ///< forget objective L(θ) where the step was taken
  double retain_anchor = UnlearningReport::not_measured;  ///< mean retain-batch loss there (with the anchor)
  double step_norm = 0.0;          ///< ‖δ‖₂ as applied
  double predicted_kl = UnlearningReport::not_measured;   ///< ½δᵀF_Rδ as applied (NaN without F_R)
  double unconstrained_predicted_kl = UnlearningReport::not_measured;  ///< before the trust region
  bool trust_region_hit = false;   ///< δ was scaled down to the boundary ½δᵀF_Rδ = κ
  double trust_radius = std::numeric_limits<double>::infinity();  ///< κ in force for this step (see trust_shrink)
  double damping = UnlearningReport::not_measured;        ///< λ of F_R in use
};

/// The caller's hooks. stop(model, step) is called after every step with the updated model (e.g. an
/// exposure check); returning true ends unlearning there. progress(record) is called after every
/// step. Either may be empty. Anything they throw rolls the model back (strong guarantee) and
/// propagates. They must not change the model.
template <class M>
struct NaturalGradientCallbacks {
  std::function<bool(const M& model, std::size_t step)> stop;
  std::function<void(const NaturalGradientStep& step)> progress;
};

struct NaturalGradientOptions {
  double learning_rate = 1.0;   ///< η > 0
  std::size_t max_steps = 100;  ///< at most this many steps (>= 1)
  /// κ: trust region on the predicted retain KL per step, ½δᵀF_Rδ ≤ κ (∞ = none). Finite κ builds F_R
  /// whatever the preconditioner.
  double max_kl = std::numeric_limits<double>::infinity();
  /// Shrink factor of κ: after a step that RAISED the forget objective (L(θ_{t+1}) > L(θ_t), the values
  /// the loop computes anyway: no extra pass), κ ← trust_shrink·κ for the following steps. 1 (default)
  /// keeps κ fixed, bitwise the old behaviour. With η large, every step sits on the boundary and has
  /// the same length, so near the forget objective's floor the steps overshoot and zigzag (period 2);
  /// shrinking on each rise damps that, as the radius update of a classical trust-region method does.
  double trust_shrink = 1.0;
  /// k: tail averaging of the iterates. The model handed to the stop callback after step t, and the
  /// model returned, is the mean of the last min(k, t + 1) iterates θ_{t-k+1}, ..., θ_t (θ_0 = the
  /// starting point counts while t < k); the iteration itself goes on from θ_t, and F_R refreshes and
  /// the target_objective test use θ_t. 1 (default) = the last iterate, bitwise the old behaviour. With
  /// η large every step sits on the trust-region boundary and has the same length, so near the forget
  /// objective's floor the iterates zigzag (period 2) and a check at step t sees the phase of the zigzag,
  /// not its trend; the mean of two consecutive iterates cancels a period-2 component. Costs k·d stored
  /// parameters (counted in the report's memory_bytes) and one O(k·d) mean per callback.
  std::size_t average_last = 1;
  /// Stop once the forget objective L(θ) ≤ this (checked before every step and after the last).
  double target_objective = -std::numeric_limits<double>::infinity();
  std::size_t fisher_samples = 256;  ///< m: retain inputs whose gradients build F_R (all if >= |retain|)
  GradientCollection gradients;      ///< empirical or Monte-Carlo (collect.hpp: also the per-token scale)
  std::uint64_t seed = 0x5eed;       ///< seeds the m-subsample (refresh r uses seed + r) and the anchor batches
  FisherDamping damping;             ///< λ of F_R: α·tr(F̂)/d (default α = 1e-2) or absolute
  std::size_t refresh_every = 0;     ///< R: rebuild F_R at the current θ every R steps (0 = never)
  /// β of the retain anchor: the minimised function is L(θ) + β·(mean loss of a retain batch), the
  /// batch rotating through a seeded permutation of the retain set (0 = no anchor). With
  /// GradientAscentObjective and the identity this is gradient difference.
  double retain_weight = 0.0;
  std::size_t retain_batch_size = 16;  ///< retain samples per anchor batch
  /// Restrict unlearning to these named parameter groups (HasParameterGroups); empty = all parameters.
  std::vector<std::string> parameter_groups;
  /// The report's J_retain before and after: one forward pass over the whole retain set each. A
  /// diagnostic that no step or stopping decision uses; false leaves retain_loss_before/after not
  /// measured (NaN) and saves the two passes (J_forget and the finiteness checks stay).
  bool report_retain_loss = true;

  void validate(const std::string& who) const {
    detail::require_positive_finite(learning_rate, who + ": learning_rate (eta)", "1 is the natural-gradient step");
    if (max_steps == 0) throw InvalidArgument(who + ": max_steps must be at least 1");
    if (!(max_kl > 0.0)) throw InvalidArgument(who + ": max_kl (kappa) must be positive (infinity = no trust region)");
    if (!(trust_shrink > 0.0 && trust_shrink <= 1.0))
      throw InvalidArgument(who + ": trust_shrink must lie in (0, 1] (1 = a fixed trust region)");
    if (average_last == 0) throw InvalidArgument(who + ": average_last (k) must be at least 1 (1 = the last iterate)");
    if (std::isnan(target_objective)) throw InvalidArgument(who + ": target_objective is NaN (-infinity = none)");
    if (fisher_samples == 0) throw InvalidArgument(who + ": fisher_samples (m) must be at least 1");
    if (gradients.kind == FisherKind::monte_carlo && gradients.samples_per_input == 0)
      throw InvalidArgument(who + ": gradients.samples_per_input (S) must be at least 1");
    damping.validate(who);
    if (!(retain_weight >= 0.0) || !std::isfinite(retain_weight))
      throw InvalidArgument(who + ": retain_weight (beta) must be finite and >= 0 (0 = no retain anchor)");
    if (retain_weight > 0.0 && retain_batch_size == 0)
      throw InvalidArgument(who + ": retain_batch_size must be at least 1 when retain_weight > 0");
  }
};

/// What a preconditioner sees when asked for a direction.
template <class M, class Estimator>
struct PreconditionerContext {
  const M& model;                                   ///< at θ_t
  std::span<const typename M::Sample> forget;       ///< the forget set
  std::span<const typename M::Sample> retain_batch; ///< this step's anchor batch (empty without anchor)
  const ParameterSubset& subset;                    ///< the parameters being moved
  const Estimator* fisher;                          ///< F_R, or null where none was built
  std::size_t step;                                 ///< 1-based
};

// ================================================================================================
// UnlearningPreconditioner<P, M, Estimator>: maps the objective's gradient g (restricted to the moved
// parameters) to a direction out = P⁻¹g; the unlearner steps δ = −η·out.
//   P::uses_fisher: whether direction() needs ctx.fisher (then F_R is always built).
//   p.reset(dimension): forget any state (moments); called on the unlearner's own copy before step 1.
//   p.direction(ctx, g, out): out (resized by the callee) = the preconditioned direction.
//   p.name(): the method's name in reports.
// ================================================================================================
template <class P, class M, class Estimator>
concept UnlearningPreconditioner = DifferentiableModel<M> &&
    requires(P& p, const P& cp, const PreconditionerContext<M, Estimator>& ctx,
             const Vector<typename M::Scalar>& g, Vector<typename M::Scalar>& out, std::size_t d) {
      { P::uses_fisher } -> std::convertible_to<bool>;
      p.reset(d);
      p.direction(ctx, g, out);
      { cp.name() } -> std::convertible_to<std::string>;
    };

/// P = F_R: the natural gradient, out = F_R⁻¹ g.
struct NaturalGradient {
  static constexpr bool uses_fisher = true;
  std::string name() const { return "natural_gradient"; }
  void reset(std::size_t) {}
  template <class M, FisherEstimator Estimator>
  void direction(const PreconditionerContext<M, Estimator>& ctx, const Vector<typename M::Scalar>& g,
                 Vector<typename M::Scalar>& out) const {
    out.resize(g.size());
    ctx.fisher->apply_power(-1.0, g, out);
  }
};

/// P = I: plain gradient descent on the objective, so a comparison with NaturalGradient isolates the
/// curvature (same objective, step rule, trust region and budget).
struct PlainGradient {
  static constexpr bool uses_fisher = false;
  std::string name() const { return "plain_gradient"; }
  void reset(std::size_t) {}
  template <class M, class Estimator>
  void direction(const PreconditionerContext<M, Estimator>&, const Vector<typename M::Scalar>& g,
                 Vector<typename M::Scalar>& out) const {
    out = g;
  }
};

/// Adam (Kingma & Ba 2015), the first-order adaptive baseline, in fp64 whatever the Scalar:
///   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  out = m̂ / (√v̂ + ε),  m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).
/// With δ = −η·out, η is Adam's learning rate (its steps have size ~η per coordinate, not ~η·|g|).
struct AdamPreconditioner {
  static constexpr bool uses_fisher = false;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;

  std::string name() const { return "adam"; }
  void reset(std::size_t d) {
    if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0) || !(epsilon > 0.0))
      throw InvalidArgument("AdamPreconditioner: need 0 <= beta1, beta2 < 1 and epsilon > 0 (defaults 0.9, 0.999, 1e-8)");
    m_ = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(d));
    v_ = m_;
    t_ = 0;
  }
  template <class M, class Estimator>
  void direction(const PreconditionerContext<M, Estimator>&, const Vector<typename M::Scalar>& g,
                 Vector<typename M::Scalar>& out) {
    using Scalar = typename M::Scalar;
    const Eigen::VectorXd gd = g.template cast<double>();
    ++t_;
    m_ = beta1 * m_ + (1.0 - beta1) * gd;
    v_ = beta2 * v_ + (1.0 - beta2) * gd.cwiseAbs2();
    const double c1 = 1.0 - std::pow(beta1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(beta2, static_cast<double>(t_));
    out = ((m_ / c1).array() / ((v_ / c2).array().sqrt() + epsilon)).matrix().template cast<Scalar>();
  }

 private:
  Eigen::VectorXd m_, v_;
  std::size_t t_ = 0;
};

/// SOUL (Jia et al., EMNLP 2024): the Sophia optimizer (Liu et al. 2023) applied to an unlearning
/// objective. In fp64 whatever the Scalar:
///   m ← β₁m + (1−β₁)g                                   (every step)
///   h ← β₂h + (1−β₂)ĥ  at steps 1, 1+k, 1+2k, …          (h starts at 0, no bias correction)
///   out = clip(m / max(γh, ε), 1)                        (per coordinate, to [−1, 1])
/// ĥ is Sophia-G's Gauss–Newton–Bartlett estimate of the Hessian diagonal: on the B inputs of the
/// forget set (plus the anchor batch) with targets ŷ drawn from the model itself,
///   ĝ = (1/B) Σ_b ∇ℓ(x_b, ŷ_b),   ĥ = B·ĝ⊙ĝ      (E[ĥ] = diag of the Gauss–Newton matrix),
/// drawn by collect_gradients (Monte-Carlo, one draw per input, seed + step). Needs a
/// SampledFisherModel. With δ = −η·out every coordinate moves at most η per step. Sophia's weight
/// decay is left out (it would shrink the model, not forget).
struct SoulPreconditioner {
  static constexpr bool uses_fisher = false;
  double beta1 = 0.965;           ///< Sophia's default
  double beta2 = 0.99;            ///< Sophia's default
  double gamma = 0.01;            ///< γ (Sophia's ρ scaling of h)
  double epsilon = 1e-12;         ///< floor of γh
  std::size_t hessian_interval = 10;  ///< k: refresh ĥ every k steps
  std::uint64_t seed = 0x50e1;    ///< the draws for ĥ at step t use seed + t

  std::string name() const { return "soul"; }
  void reset(std::size_t d) {
    if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0) || !(gamma > 0.0) || !(epsilon > 0.0) ||
        hessian_interval == 0)
      throw InvalidArgument("SoulPreconditioner: need 0 <= beta1, beta2 < 1, gamma > 0, epsilon > 0 and "
                            "hessian_interval >= 1 (defaults 0.965, 0.99, 0.01, 1e-12, 10)");
    m_ = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(d));
    h_ = m_;
  }
  template <class M, class Estimator>
  void direction(const PreconditionerContext<M, Estimator>& ctx, const Vector<typename M::Scalar>& g,
                 Vector<typename M::Scalar>& out) {
    using Scalar = typename M::Scalar;
    if ((ctx.step - 1) % hessian_interval == 0) {
      const Eigen::VectorXd h_hat = gauss_newton_bartlett(ctx);
      h_ = beta2 * h_ + (1.0 - beta2) * h_hat;
    }
    m_ = beta1 * m_ + (1.0 - beta1) * g.template cast<double>();
    const Eigen::ArrayXd denominator = (gamma * h_.array()).max(epsilon);
    out = (m_.array() / denominator).max(-1.0).min(1.0).matrix().template cast<Scalar>();
  }

  /// ĥ = B·ĝ⊙ĝ over the forget inputs and the anchor batch (see the class comment).
  template <class M, class Estimator>
  Eigen::VectorXd gauss_newton_bartlett(const PreconditionerContext<M, Estimator>& ctx) const {
    using Sample = typename M::Sample;
    if constexpr (!SampledFisherModel<M>) {
      throw InvalidArgument("SoulPreconditioner: the Gauss-Newton-Bartlett estimate draws targets from the model; "
                            "it needs a SampledFisherModel (sampled_gradient(sample, rng, out))");
    } else {
      std::vector<Sample> inputs(ctx.forget.begin(), ctx.forget.end());
      inputs.insert(inputs.end(), ctx.retain_batch.begin(), ctx.retain_batch.end());
      const GradientCollection draws{FisherKind::monte_carlo, 1, seed + ctx.step};
      const auto gradients = collect_gradients(ctx.model, std::span<const Sample>(inputs), draws, ctx.subset);
      const double b = static_cast<double>(gradients.cols());
      const Eigen::VectorXd mean = gradients.template cast<double>().rowwise().sum() / b;
      return b * mean.cwiseAbs2();
    }
  }

 private:
  Eigen::VectorXd m_, h_;
};

/// A run's full record: the report, every step, and why it stopped.
struct NaturalGradientResult {
  UnlearningReport report;
  std::vector<NaturalGradientStep> steps;
  std::string stop_reason;          ///< "target objective reached", "stop callback", "max_steps"
  double final_objective = UnlearningReport::not_measured;  ///< L(θ') (the forget objective alone)
  std::size_t trust_region_hits = 0;
};

/// Iterated second-order (or first-order, by Preconditioner) unlearning against a forget objective,
/// with F_R from any FisherEstimator (Woodbury, diagonal, block-diagonal, dense, K-FAC). Satisfies
/// NewtonUnlearner; the strong guarantee covers the callbacks.
///   Estimator:      F_R's structure (also the trust region's metric).
///   Preconditioner: NaturalGradient (default), PlainGradient, AdamPreconditioner, SoulPreconditioner.
///   Objective:      DescentObjective (default), GradientAscentObjective, NpoObjective, or your own.
template <FisherEstimator Estimator, class Preconditioner = NaturalGradient, class Objective = DescentObjective>
class NaturalGradientUnlearning {
 public:
  using Scalar = typename Estimator::Scalar;
  /// Builds an empty F_R for flat gradients: Estimator(dimension, λ) by default.
  using Factory = std::function<Estimator(std::size_t dimension, Scalar damping)>;
  /// Builds an empty layer-factored F_R (K-FAC, EK-FAC) for the model's linear_layers():
  /// Estimator(layers, dimension, λ) by default; pass your own to set KfacOptions (per-layer damping).
  using LayerFactory = std::function<Estimator(std::vector<LinearLayer> layers, std::size_t dimension, Scalar damping)>;

  NaturalGradientUnlearning()
    requires std::constructible_from<Estimator, std::size_t, Scalar> || LayerFactoredEstimator<Estimator>
      : NaturalGradientUnlearning(NaturalGradientOptions{}) {}
  explicit NaturalGradientUnlearning(NaturalGradientOptions options, Objective objective = {},
                                     Preconditioner preconditioner = {})
    requires std::constructible_from<Estimator, std::size_t, Scalar> || LayerFactoredEstimator<Estimator>
      : options_(std::move(options)), objective_(std::move(objective)), preconditioner_(std::move(preconditioner)) {
    if constexpr (LayerFactoredEstimator<Estimator>)
      make_layers_ = [](std::vector<LinearLayer> layers, std::size_t d, Scalar damping) {
        return Estimator(std::move(layers), d, damping);
      };
    else
      make_ = [](std::size_t d, Scalar damping) { return Estimator(d, damping); };
    options_.validate(name());
  }
  NaturalGradientUnlearning(NaturalGradientOptions options, Objective objective, Preconditioner preconditioner,
                            Factory make)
      : options_(std::move(options)),
        objective_(std::move(objective)),
        preconditioner_(std::move(preconditioner)),
        make_(std::move(make)) {
    options_.validate(name());
    if (!make_) throw InvalidArgument(name() + ": the estimator factory is empty");
  }
  NaturalGradientUnlearning(NaturalGradientOptions options, Objective objective, Preconditioner preconditioner,
                            LayerFactory make)
    requires LayerFactoredEstimator<Estimator>
      : options_(std::move(options)),
        objective_(std::move(objective)),
        preconditioner_(std::move(preconditioner)),
        make_layers_(std::move(make)) {
    options_.validate(name());
    if (!make_layers_) throw InvalidArgument(name() + ": the layer estimator factory is empty");
  }

  /// "natural_gradient(descent)", "adam(npo)", ...
  std::string name() const { return preconditioner_.name() + "(" + objective_.name() + ")"; }
  const NaturalGradientOptions& options() const { return options_; }
  const Objective& objective() const { return objective_; }
  const Preconditioner& preconditioner() const { return preconditioner_; }

  template <DifferentiableModel M>
    requires std::same_as<typename M::Scalar, Scalar> && ForgetObjective<Objective, M> &&
             UnlearningPreconditioner<Preconditioner, M, Estimator>
  UnlearningReport unlearn(M& model, std::span<const typename M::Sample> forget,
                           std::span<const typename M::Sample> retain,
                           const NaturalGradientCallbacks<M>& callbacks = {}) const {
    return unlearn_detailed(model, forget, retain, callbacks).report;
  }

  /// The run with its per-step record. Builds F_R from m retain gradients when needed.
  template <DifferentiableModel M>
    requires std::same_as<typename M::Scalar, Scalar> && ForgetObjective<Objective, M> &&
             UnlearningPreconditioner<Preconditioner, M, Estimator>
  NaturalGradientResult unlearn_detailed(M& model, std::span<const typename M::Sample> forget,
                                         std::span<const typename M::Sample> retain,
                                         const NaturalGradientCallbacks<M>& callbacks = {}) const {
    return run(model, forget, retain, nullptr, callbacks);
  }

  /// Uses the caller's finalised F_R (dimension = the moved parameters) as it is: its damping is not
  /// changed and it is not refreshed (refresh_every must be 0). Strong guarantee for the model.
  template <DifferentiableModel M>
    requires std::same_as<typename M::Scalar, Scalar> && ForgetObjective<Objective, M> &&
             UnlearningPreconditioner<Preconditioner, M, Estimator>
  NaturalGradientResult unlearn_detailed(M& model, std::span<const typename M::Sample> forget,
                                         std::span<const typename M::Sample> retain, const Estimator& fisher,
                                         const NaturalGradientCallbacks<M>& callbacks = {}) const {
    if (options_.refresh_every > 0)
      throw InvalidArgument(name() + ": a caller-supplied Fisher cannot be refreshed; set refresh_every = 0");
    return run(model, forget, retain, &fisher, callbacks);
  }

 private:
  struct BuiltFisher {
    Estimator fisher;
    std::size_t gradient_bytes = 0;
    double mean_eigenvalue = 0.0;  // tr(F̂)/d
  };

  /// F_R from a seeded subsample of m retain inputs at the current θ; λ from the damping rule with
  /// tr(F̂) = ‖G‖²_F/m (exact for every estimator that keeps the diagonal of (1/m)GGᵀ), or, for a
  /// layer-factored estimator, tr(F̂) = its undamped_trace() (the K-FAC/EK-FAC matrix's own trace).
  template <DifferentiableModel M>
  BuiltFisher build_fisher(const M& model, std::span<const typename M::Sample> retain, const ParameterSubset& subset,
                           std::uint64_t seed) const {
    if (!make_) return build_layer_fisher(model, retain, subset, seed);
    Matrix<Scalar> gradients;
    if (options_.fisher_samples >= retain.size()) {
      gradients = collect_gradients(model, retain, options_.gradients, subset);
    } else {
      const auto chosen = detail::subsample(retain, options_.fisher_samples, seed);
      gradients = collect_gradients(model, std::span<const typename M::Sample>(chosen), options_.gradients, subset);
    }
    const double trace = gradients.template cast<double>().squaredNorm() / static_cast<double>(gradients.cols());
    const double lambda = options_.damping.resolve(trace, subset.size());
    Estimator fisher = make_(subset.size(), static_cast<Scalar>(lambda));
    if (fisher.dimension() != subset.size())
      throw InvalidArgument(name() + ": the estimator factory built an estimator of dimension " +
                            std::to_string(fisher.dimension()) + " for " + std::to_string(subset.size()) +
                            " parameters");
    fisher.add_gradients(gradients);
    fisher.finalize();
    return {std::move(fisher), static_cast<std::size_t>(gradients.size()) * sizeof(Scalar),
            trace / static_cast<double>(subset.size())};
  }

  /// The layer-factored route (K-FAC, EK-FAC): accumulate(model, samples, how) + finalize at placeholder
  /// λ = 1, then λ from the rule on undamped_trace() (the eigenbases do not depend on λ). Needs a
  /// LinearLayerModel and all parameters moved: the factors' layer offsets index the whole model.
  template <DifferentiableModel M>
  BuiltFisher build_layer_fisher(const M& model, std::span<const typename M::Sample> retain,
                                 const ParameterSubset& subset, std::uint64_t seed) const {
    if constexpr (!LayerFactoredEstimator<Estimator>) {
      throw InvalidArgument(name() + ": no estimator factory");  // unreachable: the constructors set one
    } else if constexpr (!LinearLayerModel<M>) {
      throw InvalidArgument(name() + ": a layer-factored F_R (K-FAC/EK-FAC) is built from the model's linear "
                                     "layers, and this model is not a LinearLayerModel; pass a prebuilt estimator "
                                     "to unlearn_detailed(model, forget, retain, fisher) or use WoodburyFisher");
    } else {
      if (subset.size() != model.num_parameters())
        throw InvalidArgument(name() + ": a layer-factored F_R (K-FAC/EK-FAC) covers all " +
                              std::to_string(model.num_parameters()) + " parameters, but parameter_groups restrict "
                              "unlearning to " + std::to_string(subset.size()) +
                              "; leave parameter_groups empty or use a flat-gradient estimator (WoodburyFisher)");
      if (!options_.gradients.apply_loss_scale)
        throw InvalidArgument(name() + ": K-FAC/EK-FAC statistics always carry the per-token loss scale "
                                       "(concepts.hpp, LinearLayerModel); set gradients.apply_loss_scale = true");
      using Sample = typename M::Sample;
      std::vector<Sample> chosen;
      std::span<const Sample> samples = retain;
      if (options_.fisher_samples < retain.size()) {
        chosen = detail::subsample(retain, options_.fisher_samples, seed);
        samples = std::span<const Sample>(chosen);
      }
      Estimator fisher = make_layers_(model.linear_layers(), model.num_parameters(), Scalar(1));
      if (fisher.dimension() != subset.size())
        throw InvalidArgument(name() + ": the layer estimator factory built an estimator of dimension " +
                              std::to_string(fisher.dimension()) + " for " + std::to_string(subset.size()) +
                              " parameters");
      fisher.accumulate(model, samples, options_.gradients);
      fisher.finalize();
      const double trace = static_cast<double>(fisher.undamped_trace());
      const double lambda = options_.damping.resolve(trace, subset.size());
      fisher.set_damping(static_cast<Scalar>(lambda));
      return {std::move(fisher), 0, trace / static_cast<double>(subset.size())};
    }
  }

  template <DifferentiableModel M>
  NaturalGradientResult run(M& model, std::span<const typename M::Sample> forget,
                            std::span<const typename M::Sample> retain, const Estimator* supplied,
                            const NaturalGradientCallbacks<M>& callbacks) const {
    using Sample = typename M::Sample;
    const detail::Stopwatch clock;
    const std::string who = name();
    detail::require_unlearning_sets(model, forget, retain, who);
    const ParameterSubset subset = ParameterSubset::from_groups(model, options_.parameter_groups);
    if (supplied && supplied->dimension() != subset.size())
      throw InvalidArgument(who + ": the supplied estimator has dimension " + std::to_string(supplied->dimension()) +
                            " but the (restricted) model has " + std::to_string(subset.size()) + " parameters");
    NaturalGradientResult result;
    UnlearningReport& r = result.report;
    r = detail::begin_report(model, forget, retain, who, options_.report_retain_loss);
    const Vector<Scalar> theta_before = detail::snapshot_parameters(model);
    const bool needs_fisher = Preconditioner::uses_fisher || std::isfinite(options_.max_kl);
    std::size_t gradient_bytes = 0;
    std::size_t fisher_bytes = supplied ? supplied->memory_bytes() : 0;

    detail::with_rollback(model, [&] {
      Objective objective = objective_;
      if constexpr (ReferencedForgetObjective<Objective, M>) objective.bind(model, forget);
      Preconditioner preconditioner = preconditioner_;
      preconditioner.reset(subset.size());

      std::optional<BuiltFisher> built;
      const Estimator* fisher = supplied;
      std::string damping_note;
      if (!fisher && needs_fisher) {
        built.emplace(build_fisher(model, retain, subset, options_.seed));
        fisher = &built->fisher;
        gradient_bytes = built->gradient_bytes;
        fisher_bytes = built->fisher.memory_bytes();
        damping_note = describe_damping(*built);
      }
      if (fisher) {
        r.damping = static_cast<double>(fisher->damping());
        r.fisher_gradients = fisher->num_gradients();
        if (needs_fisher && std::isfinite(options_.max_kl) && !fisher->supports_power(1.0))
          throw InvalidArgument(who + ": the trust region needs F v (power 1), which this estimator does not support");
      }

      // Anchor batches: epochs of a seeded permutation of the retain set.
      std::vector<std::size_t> order(retain.size());
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::mt19937_64 anchor_rng(options_.seed ^ 0xa5c0a5c0ULL);
      std::shuffle(order.begin(), order.end(), anchor_rng);
      std::size_t order_pos = 0;
      std::vector<Sample> anchor_batch;
      const std::size_t anchor_size = std::min(options_.retain_batch_size, retain.size());

      const auto d = static_cast<Eigen::Index>(subset.size());
      Vector<Scalar> full_gradient, anchor_gradient, g(d), direction(d), delta(d), curvature(d);
      const auto full_span = [](const Vector<Scalar>& v) {
        return std::span<const Scalar>(v.data(), static_cast<std::size_t>(v.size()));
      };
      const auto sub_span = [](Vector<Scalar>& v) { return std::span<Scalar>(v.data(), static_cast<std::size_t>(v.size())); };
      auto theta = detail::parameters_of(model);

      std::size_t refreshes = 0;
      double value = 0.0;
      bool evaluated_at_current = false;
      double kappa = options_.max_kl;  // the trust radius, shrunk after a step that raised L (trust_shrink)
      double previous_value = std::numeric_limits<double>::quiet_NaN();
      std::size_t shrinks = 0;
      // Tail averaging (average_last = k > 1): the last min(k, t + 1) iterates, oldest first, θ_t last.
      const std::size_t k_avg = options_.average_last;
      std::deque<Vector<Scalar>> history;
      if (k_avg > 1) history.push_back(theta_before);
      const auto write_tail_mean = [&] {  // model ← the mean of `history` (θ_t stays history.back())
        Eigen::VectorXd sum = Eigen::VectorXd::Zero(theta.size());
        for (const auto& h : history) sum += h.template cast<double>();
        theta = (sum / static_cast<double>(history.size())).template cast<Scalar>();
      };
      bool averaged_in_model = false;
      for (std::size_t step = 1; step <= options_.max_steps; ++step) {
        value = objective.value_and_gradient(model, forget, full_gradient);
        evaluated_at_current = true;
        if (!std::isfinite(value)) throw NonFiniteError(who + ": the forget objective is NaN or Inf at step " + std::to_string(step));
        if (value <= options_.target_objective) {
          result.stop_reason = "target objective reached";
          break;
        }
        if (options_.trust_shrink < 1.0 && value > previous_value) {  // false for the first step (NaN)
          kappa *= options_.trust_shrink;
          ++shrinks;
        }
        previous_value = value;
        detail::require_size<Scalar>(static_cast<std::size_t>(full_gradient.size()), model.num_parameters(),
                                     who + ": the objective's gradient");
        subset.gather(full_span(full_gradient), sub_span(g));

        NaturalGradientStep record;
        record.step = step;
        record.objective = value;
        anchor_batch.clear();
        if (options_.retain_weight > 0.0) {
          for (std::size_t i = 0; i < anchor_size; ++i) {
            if (order_pos == order.size()) {
              std::shuffle(order.begin(), order.end(), anchor_rng);
              order_pos = 0;
            }
            anchor_batch.push_back(retain[order[order_pos++]]);
          }
          record.retain_anchor =
              detail::mean_loss_and_gradient(model, std::span<const Sample>(anchor_batch), anchor_gradient);
          Vector<Scalar> anchor_sub(d);
          subset.gather(full_span(anchor_gradient), sub_span(anchor_sub));
          g.noalias() += static_cast<Scalar>(options_.retain_weight) * anchor_sub;
        }
        detail::require_finite(g, who + ": the objective's gradient");

        const PreconditionerContext<M, Estimator> context{model, forget, std::span<const Sample>(anchor_batch),
                                                          subset, fisher, step};
        preconditioner.direction(context, g, direction);
        detail::require_size<Scalar>(static_cast<std::size_t>(direction.size()), subset.size(),
                                     who + ": the preconditioned direction");
        delta = -static_cast<Scalar>(options_.learning_rate) * direction;
        detail::require_finite(delta, who + ": the step (raise the damping or lower the learning rate)");

        if (fisher) {
          record.damping = static_cast<double>(fisher->damping());
          fisher->apply_power(1.0, delta, curvature);
          const double kl = 0.5 * delta.template cast<double>().dot(curvature.template cast<double>());
          record.unconstrained_predicted_kl = kl;
          record.predicted_kl = kl;
          record.trust_radius = kappa;
          if (kl > kappa) {
            delta *= static_cast<Scalar>(std::sqrt(kappa / kl));
            record.predicted_kl = kappa;
            record.trust_region_hit = true;
            ++result.trust_region_hits;
          }
        }
        record.step_norm = delta.template cast<double>().norm();
        subset.scatter_add(full_span(delta), Scalar(1), std::span<Scalar>(model.parameters()));
        detail::require_finite(theta, who + ": the parameters after a step (lower the learning rate or max_kl)");
        evaluated_at_current = false;
        ++r.iterations;
        result.steps.push_back(record);
        if (callbacks.progress) callbacks.progress(result.steps.back());
        if (k_avg > 1) {
          history.push_back(theta);
          if (history.size() > k_avg) history.pop_front();
          if (callbacks.stop) {
            write_tail_mean();
            if (callbacks.stop(model, step)) {  // the caller judged the mean: it is what is returned
              result.stop_reason = "stop callback";
              averaged_in_model = true;
              break;
            }
            theta = history.back();  // go on from θ_t
          }
        } else if (callbacks.stop && callbacks.stop(model, step)) {
          result.stop_reason = "stop callback";
          break;
        }
        if (options_.refresh_every > 0 && step % options_.refresh_every == 0 && step < options_.max_steps && built) {
          ++refreshes;
          built.emplace(build_fisher(model, retain, subset, options_.seed + refreshes));
          fisher = &built->fisher;
          fisher_bytes = std::max(fisher_bytes, fisher->memory_bytes());
          r.damping = static_cast<double>(fisher->damping());
        }
      }
      if (result.stop_reason.empty()) result.stop_reason = "max_steps";
      if (k_avg > 1 && !averaged_in_model && r.iterations > 0) {  // the returned model is the tail mean
        write_tail_mean();
        evaluated_at_current = false;
      }
      if (!evaluated_at_current) value = objective.value_and_gradient(model, forget, full_gradient);
      result.final_objective = value;
      if (result.stop_reason == "max_steps" && value <= options_.target_objective)
        result.stop_reason = "target objective reached";

      char buf[256];
      std::snprintf(buf, sizeof buf, "%zu step(s), stopped by %s; forget objective %s %.6g -> %.6g",
                    r.iterations, result.stop_reason.c_str(), objective.name().c_str(),
                    result.steps.empty() ? value : result.steps.front().objective, value);
      detail::append_note(r.notes, buf);
      if (std::isfinite(options_.max_kl)) {
        std::snprintf(buf, sizeof buf, "trust region (predicted retain KL <= %.3g) hit in %zu of %zu step(s)",
                      options_.max_kl, result.trust_region_hits, r.iterations);
        detail::append_note(r.notes, buf);
        if (options_.trust_shrink < 1.0) {
          std::snprintf(buf, sizeof buf, "trust radius shrunk x%.3g after %zu rise(s) of the forget objective, last %.3g",
                        options_.trust_shrink, shrinks, kappa);
          detail::append_note(r.notes, buf);
        }
      }
      if (k_avg > 1 && r.iterations > 0) {
        std::snprintf(buf, sizeof buf, "returned the mean of the last %zu iterate(s) (average_last = %zu)", history.size(), k_avg);
        detail::append_note(r.notes, buf);
      }
      if (!damping_note.empty()) detail::append_note(r.notes, damping_note);
      if (refreshes > 0) detail::append_note(r.notes, "F_R refreshed " + std::to_string(refreshes) + " time(s)");
      detail::finish_report(model, theta_before, forget, retain, r, options_.report_retain_loss);
    });
    r.memory_bytes = fisher_bytes + gradient_bytes + 6 * subset.full_size() * sizeof(Scalar) +
                     (options_.average_last > 1 ? options_.average_last * subset.full_size() * sizeof(Scalar) : 0);
    r.seconds = clock.seconds();
    return result;
  }

  std::string describe_damping(const BuiltFisher& b) const {
    char buf[160];
    if (options_.damping.absolute > 0.0)
      std::snprintf(buf, sizeof buf, "damping %.4g (absolute; tr(F)/d = %.4g)", static_cast<double>(b.fisher.damping()),
                    b.mean_eigenvalue);
    else
      std::snprintf(buf, sizeof buf, "damping %.4g = %.3g * tr(F)/d (tr(F)/d = %.4g)",
                    static_cast<double>(b.fisher.damping()), options_.damping.relative, b.mean_eigenvalue);
    return buf;
  }

  NaturalGradientOptions options_;
  Objective objective_;
  Preconditioner preconditioner_;
  Factory make_;             // flat-gradient route (empty for layer-factored estimators)
  LayerFactory make_layers_; // layer route: K-FAC / EK-FAC
};

}  // namespace fisher_unlearn
