// First-order unlearning baselines with the NewtonUnlearner interface, by minibatch SGD:
//   GradientAscent:      θ ← θ + α ∇L_B(θ)                              (L_B: mean forget-batch loss)
//   RetainFinetune:      θ ← θ − α ∇J_R'(θ)                              (J_R': retain-batch objective)
//   GradientDifference:  θ ← θ − α (w_r ∇J_R'(θ) − w_f ∇L_B(θ))
// Cost per step: O(batch · d) gradient work; memory O(d). No curvature: these are what the Fisher
// methods must beat.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

struct FirstOrderOptions {
  double learning_rate = 0.01;  ///< α > 0
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
    detail::require_positive_finite(options_.learning_rate, name() + ": learning_rate", "try 1e-2");
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
        detail::require_finite(direction, name() + ": the update direction");
        theta.noalias() += static_cast<Scalar>(options_.learning_rate) * direction;
        detail::require_finite(theta, name() + ": the parameters after a step (lower the learning rate)");
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
