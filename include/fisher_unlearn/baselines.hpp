// First-order unlearning baselines with the NewtonUnlearner interface, by minibatch SGD:
//   GradientAscent:      θ ← θ + α ∇L_B(θ)                              (L_B: mean forget-batch loss)
//   RetainFinetune:      θ ← θ − α ∇J_R'(θ)                              (J_R': retain-batch objective)
//   GradientDifference:  θ ← θ − α (w_r ∇J_R'(θ) − w_f ∇L_B(θ))
// Cost per step: O(batch · d) gradient work; memory O(d). No curvature in the steps: these are what the
// Fisher methods must beat. Step size: the given learning_rate, or (unset, the default) the automatic
// α = t*/steps with t* the minimiser of a quadratic model of J_retain along the first full-set direction
// D₀ (one curvature probe: |forget| + 2|retain| gradients once), so that the whole run moves about as far as
// one exact line search on the objective retraining minimises (see FirstOrderOptions::learning_rate).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn {

struct FirstOrderOptions {
  /// α > 0 per step. Unset (the default): automatic, α = t*/steps where D₀ is the update direction at θ
  /// over the WHOLE forget/retain sets and t* = −∇J_R(θ)·D₀ / (D₀ᵀ H_R D₀) minimises the quadratic model
  /// of J_retain (the retraining objective) along D₀, with D₀ᵀH_R D₀ from one finite difference of ∇J_R.
  /// Why: a fixed α has no scale — 0.01 (the default before issue 15) moved gradient ascent 3.7x farther from
  /// retraining than doing nothing on a logistic problem and diverged on a Poisson loss — whereas one line-search
  /// step of J_R along D₀ provably moves a quadratic J_R's iterate no farther from its minimiser
  /// (docs/unlearners.md, "Defaults"). Throws InvalidArgument when J_R does not decrease along D₀ (θ is not
  /// near the full-data optimum, or the model is not convex there): then give a learning_rate.
  std::optional<double> learning_rate;
  std::size_t steps = 100;      ///< maximum number of SGD steps (>= 1)
  std::size_t batch_size = 32;  ///< samples per batch and per set; 0 = the whole set every step
  std::uint64_t seed = 0x5eed;  ///< seeds the batch order (epochs of a seeded permutation)
  /// > 0: stop as soon as J_forget(θ) ≥ J_forget(θ₀) + target_forget_increase (checked on the whole
  /// forget set after every step, O(k) losses). This is how a baseline is "tuned to the same
  /// forget-loss increase" as another method. 0: run all `steps`.
  double target_forget_increase = 0.0;
  double forget_weight = 1.0;  ///< w_f of GradientDifference
  double retain_weight = 1.0;  ///< w_r of GradientDifference
};

enum class FirstOrderKind { gradient_ascent, retain_finetune, gradient_difference };

/// One class for the three baselines (aliases below). The ascent term uses the per-sample losses
/// only, not the L2 regulariser: ascending (λ/2)‖θ‖² would only inflate the weights. The descent term
/// is the training objective itself, regulariser included.
template <FirstOrderKind Kind>
class FirstOrderBaseline {
 public:
  FirstOrderBaseline() = default;
  explicit FirstOrderBaseline(FirstOrderOptions options) : options_(options) {
    if (options_.learning_rate)
      detail::require_positive_finite(*options_.learning_rate, name() + ": learning_rate",
                                      "try 1e-2, or leave it unset for the automatic step size");
    if (options_.steps == 0) throw InvalidArgument(name() + ": steps must be at least 1");
    if (!(options_.target_forget_increase >= 0.0) || !std::isfinite(options_.target_forget_increase))
      throw InvalidArgument(name() + ": target_forget_increase must be finite and >= 0 (0 = no target)");
    if (!(options_.forget_weight >= 0.0) || !(options_.retain_weight >= 0.0) ||
        !std::isfinite(options_.forget_weight) || !std::isfinite(options_.retain_weight))
      throw InvalidArgument(name() + ": forget_weight and retain_weight must be finite and >= 0");
  }

  std::string name() const {
    switch (Kind) {
      case FirstOrderKind::gradient_ascent: return "gradient_ascent";
      case FirstOrderKind::retain_finetune: return "retain_finetune";
      default: return "gradient_difference";
    }
  }
  const FirstOrderOptions& options() const { return options_; }

  template <DifferentiableModel M>
  UnlearningReport unlearn(M& model, std::span<const typename M::Sample> forget,
                           std::span<const typename M::Sample> retain) const {
    using Scalar = typename M::Scalar;
    const detail::Stopwatch clock;
    detail::require_unlearning_sets(model, forget, retain, name());
    UnlearningReport r = detail::begin_report(model, forget, retain, name());
    const Vector<Scalar> theta_before = detail::snapshot_parameters(model);
    constexpr bool ascend = Kind != FirstOrderKind::retain_finetune;
    constexpr bool descend = Kind != FirstOrderKind::gradient_ascent;
    const double w_f = Kind == FirstOrderKind::gradient_difference ? options_.forget_weight : 1.0;
    const double w_r = Kind == FirstOrderKind::gradient_difference ? options_.retain_weight : 1.0;
    const double target = r.forget_loss_before + options_.target_forget_increase;

    detail::with_rollback(model, [&] {
      auto theta = detail::parameters_of(model);
      const auto d = static_cast<Eigen::Index>(model.num_parameters());
      double lr = 0.0;
      if (options_.learning_rate) {
        lr = *options_.learning_rate;
      } else {
        lr = automatic_learning_rate(model, forget, retain, w_f, w_r);
        detail::append_note(r.notes, "automatic learning_rate " + detail::format_number(lr) +
                                         " (a J_retain line-search step along the first direction, spread over " +
                                         std::to_string(options_.steps) + " steps, shrunk for minibatch noise)");
      }
      Vector<Scalar> direction(d), g(d), sum(d);
      BatchOrder forget_order(forget.size(), options_.batch_size, options_.seed);
      BatchOrder retain_order(retain.size(), options_.batch_size, options_.seed + 1);
      const Scalar l2 = detail::l2_regularization_of(model);
      bool reached = false;
      for (std::size_t step = 0; step < options_.steps && !reached; ++step) {
        direction.setZero();
        if (ascend) {
          batch_loss_gradient(model, forget, forget_order.next(), g, sum);
          direction.noalias() += static_cast<Scalar>(w_f) * sum;
        }
        if (descend) {
          batch_loss_gradient(model, retain, retain_order.next(), g, sum);
          sum.noalias() += l2 * theta;
          direction.noalias() -= static_cast<Scalar>(w_r) * sum;
        }
        if (step > 0 && !direction.allFinite())
          throw NonFiniteError(diverged(step, lr, "the update direction"));
        detail::require_finite(direction, name() + ": the update direction");
        theta.noalias() += static_cast<Scalar>(lr) * direction;
        if (!theta.allFinite()) throw NonFiniteError(diverged(step + 1, lr, "the parameters"));
        ++r.iterations;
        if (options_.target_forget_increase > 0.0) reached = detail::objective(model, forget) >= target;
      }
      if (options_.target_forget_increase > 0.0)
        detail::append_note(r.notes, reached ? "target forget-loss increase reached after " +
                                                   std::to_string(r.iterations) + " steps"
                                             : "target forget-loss increase NOT reached in " +
                                                   std::to_string(r.iterations) + " steps");
      detail::finish_report(model, theta_before, forget, retain, r);
    });
    r.memory_bytes = static_cast<std::size_t>(4 * model.num_parameters() * sizeof(Scalar) +
                                              (forget.size() + retain.size()) * sizeof(std::size_t));
    r.seconds = clock.seconds();
    return r;
  }

 private:
  std::string diverged(std::size_t step, double lr, const char* what) const {
    return name() + ": " + what + " became NaN or Inf after " + std::to_string(step) + " step(s) with learning_rate " +
           detail::format_number(lr) + (options_.learning_rate ? "" : " (automatic)") +
           ": the steps diverged (a loss without upper bound, e.g. Poisson or a softmax being ascended, or a learning "
           "rate too large for the curvature); lower learning_rate or the number of steps";
  }

  /// E‖mean of a batch of B per-sample loss gradients − the set's mean‖² for batches drawn without
  /// replacement: (σ²/B)(N − B)/(N − 1), σ² = mean ‖gᵢ − ḡ‖², over a seeded subsample of at most 4096.
  template <DifferentiableModel M>
  double batch_noise(const M& model, std::span<const typename M::Sample> samples) const {
    using Scalar = typename M::Scalar;
    const std::size_t n = samples.size();
    const std::size_t b = options_.batch_size == 0 || options_.batch_size > n ? n : options_.batch_size;
    if (b >= n || n < 2) return 0.0;
    const auto idx = detail::subsample_indices(n, 4096, options_.seed ^ 0x7a3d);
    Vector<Scalar> g(static_cast<Eigen::Index>(model.num_parameters()));
    Eigen::VectorXd mean = Eigen::VectorXd::Zero(g.size());
    double sum_sq = 0.0;
    for (std::size_t i : idx) {
      detail::checked_gradient(model, samples[i], std::span<Scalar>(g.data(), static_cast<std::size_t>(g.size())),
                               "first-order baseline (step size)");
      const Eigen::VectorXd gd = g.template cast<double>();
      mean += gd;
      sum_sq += gd.squaredNorm();
    }
    const double m = static_cast<double>(idx.size());
    mean /= m;
    const double sigma2 = std::max(0.0, sum_sq / m - mean.squaredNorm());
    const double nn = static_cast<double>(n), bb = static_cast<double>(b);
    return sigma2 / bb * (nn - bb) / (nn - 1.0);
  }

  /// α = (t*/T) / (1 + σ_B²/(T‖D₀‖²)): t* = −∇J_R·D₀ / (D₀ᵀ H_R D₀) minimises J_R's quadratic model along
  /// the full-set direction D₀; spread over T steps it moves the model about t*·D₀; the factor is the
  /// α that minimises E‖θ_T − θ_R‖² when each step adds batch noise of variance α²σ_B² (σ_B² from
  /// batch_noise), so that minibatch noise cannot undo the progress. Moves the model to probe the
  /// curvature and restores it (the caller's rollback covers a throw).
  template <DifferentiableModel M>
  double automatic_learning_rate(M& model, std::span<const typename M::Sample> forget,
                                 std::span<const typename M::Sample> retain, double w_f, double w_r) const {
    const auto [t_star, direction_sq_norm] = automatic_step(model, forget, retain, w_f, w_r);
    constexpr bool ascend = Kind != FirstOrderKind::retain_finetune;
    constexpr bool descend = Kind != FirstOrderKind::gradient_ascent;
    const double noise = (ascend ? w_f * w_f * batch_noise(model, forget) : 0.0) +
                         (descend ? w_r * w_r * batch_noise(model, retain) : 0.0);
    const double steps = static_cast<double>(options_.steps);
    return t_star / steps / (1.0 + noise / (steps * direction_sq_norm));
  }

  /// {t*, ‖D₀‖²}: t* = −∇J_R·D₀ / (D₀ᵀ H_R D₀), the minimiser of J_R's quadratic model along the full-set
  /// direction D₀.
  template <DifferentiableModel M>
  std::pair<double, double> automatic_step(M& model, std::span<const typename M::Sample> forget, std::span<const typename M::Sample> retain,
                        double w_f, double w_r) const {
    using Scalar = typename M::Scalar;
    constexpr bool ascend = Kind != FirstOrderKind::retain_finetune;
    constexpr bool descend = Kind != FirstOrderKind::gradient_ascent;
    auto theta = detail::parameters_of(model);
    const Vector<Scalar> theta0 = theta;
    const auto d = static_cast<Eigen::Index>(model.num_parameters());
    Vector<Scalar> g_retain, g(d), sum(d);
    detail::objective_gradient(model, retain, g_retain);
    detail::require_finite(g_retain, name() + ": the retain-set gradient");
    Eigen::VectorXd dir = Eigen::VectorXd::Zero(d);
    if (ascend) {
      std::vector<std::size_t> all(forget.size());
      std::iota(all.begin(), all.end(), std::size_t{0});
      batch_loss_gradient(model, forget, std::span<const std::size_t>(all), g, sum);
      detail::require_finite(sum, name() + ": the forget-set gradient");
      dir += w_f * sum.template cast<double>();
    }
    if (descend) dir -= w_r * g_retain.template cast<double>();
    const double dir_norm = dir.norm();
    const double slope = -g_retain.template cast<double>().dot(dir);  // −dJ_R/dt along D₀
    const auto undefined = [&](const std::string& why) {
      return InvalidArgument(name() + ": no automatic learning rate: " + why +
                             " (θ is not near the optimum of forget ∪ retain, or the model is not convex there); "
                             "set FirstOrderOptions::learning_rate");
    };
    if (!(dir_norm > 0.0)) throw undefined("the first update direction is zero");
    if (!(slope > 0.0)) throw undefined("J_retain does not decrease along the first update direction");
    // Curvature along D₀ by a central-free forward difference of ∇J_R, with a step of √ε relative to θ.
    const double h = std::sqrt(static_cast<double>(std::numeric_limits<Scalar>::epsilon())) *
                     (1.0 + theta0.template cast<double>().norm()) / dir_norm;
    theta = (theta0.template cast<double>() + h * dir).template cast<Scalar>();
    Vector<Scalar> g_moved;
    detail::objective_gradient(model, retain, g_moved);
    theta = theta0;
    const double curvature = dir.dot((g_moved - g_retain).template cast<double>()) / h;  // D₀ᵀ H_R D₀
    if (!(curvature > 0.0) || !std::isfinite(curvature))
      throw undefined("J_retain is not convex along the first update direction (curvature " +
                      detail::format_number(curvature) + ")");
    return {slope / curvature, dir_norm * dir_norm};
  }

  /// Epochs of a seeded permutation cut into batches; the last batch of an epoch may be shorter.
  class BatchOrder {
   public:
    BatchOrder(std::size_t n, std::size_t batch, std::uint64_t seed)
        : order_(n), batch_(batch == 0 || batch > n ? n : batch), rng_(seed) {
      std::iota(order_.begin(), order_.end(), std::size_t{0});
      std::shuffle(order_.begin(), order_.end(), rng_);
    }
    std::span<const std::size_t> next() {
      if (pos_ >= order_.size()) {
        std::shuffle(order_.begin(), order_.end(), rng_);
        pos_ = 0;
      }
      const std::size_t len = std::min(batch_, order_.size() - pos_);
      std::span<const std::size_t> out(order_.data() + pos_, len);
      pos_ += len;
      return out;
    }

   private:
    std::vector<std::size_t> order_;
    std::size_t batch_;
    std::size_t pos_ = 0;
    std::mt19937_64 rng_;
  };

  /// sum = mean over the batch of ∇loss (regulariser excluded).
  template <DifferentiableModel M>
  static void batch_loss_gradient(const M& model, std::span<const typename M::Sample> samples,
                                  std::span<const std::size_t> batch, Vector<typename M::Scalar>& g,
                                  Vector<typename M::Scalar>& sum) {
    using Scalar = typename M::Scalar;
    sum.setZero();
    for (std::size_t i : batch) {
      detail::checked_gradient(model, samples[i], std::span<Scalar>(g.data(), static_cast<std::size_t>(g.size())),
                               "first-order baseline");
      sum += g;
    }
    sum /= static_cast<Scalar>(batch.size());
  }

  FirstOrderOptions options_;
};

/// Ascent on the forget loss.
using GradientAscent = FirstOrderBaseline<FirstOrderKind::gradient_ascent>;
/// Descent on the retain objective (fine-tuning on what should be kept).
using RetainFinetune = FirstOrderBaseline<FirstOrderKind::retain_finetune>;
/// Both at once, weighted by forget_weight and retain_weight.
using GradientDifference = FirstOrderBaseline<FirstOrderKind::gradient_difference>;

}  // namespace fisher_unlearn
