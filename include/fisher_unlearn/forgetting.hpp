// FisherForgetting (Golatkar et al. 2020): a removal step plus noise shaped by the inverse Fisher,
//   θ' = θ + [η (k/(n−k)) F⁻¹ ∇J_forget(θ)] + (μσ²)^{1/4} F_n^{-1/4} ε,   ε ~ N(0, I) (seeded),
// F_n = λ_n I + F̂ with the small spectrum-relative λ_n = α·tr(F̂)/d, so that the noise is largest along
// directions the retain data barely constrains. Cost: that of FisherRemoval plus one F^{-1/4}v.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/report.hpp"

#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>

namespace fisher_unlearn {

struct FisherForgettingOptions {
  /// How F is built and, when include_newton_term, the removal term (normalisation in removal.hpp).
  FisherRemovalOptions removal;
  /// Add the removal term; without it only the noise is applied (then the damping must be fixed:
  /// automatic damping scores the removal step).
  bool include_newton_term = true;
  /// μ and σ of Golatkar et al.: the noise is (μσ²)^{1/4} F^{-1/4} ε; noise_scale() is that factor.
  /// Only the product μσ² matters; μ = 0 gives no noise (then FisherForgetting = FisherRemoval).
  /// Unset (the default): the noise is scaled relative to the problem instead, see relative_noise. A fixed
  /// default μ cannot be right for every model: the former μ = 1e-8 made the result 1.4-54x farther from
  /// retraining than doing nothing on convex problems (issue 15; docs/unlearners.md, "Defaults").
  std::optional<double> mu;
  double sigma = 1.0;
  /// Used when mu is unset: the factor is chosen so that ‖noise‖ = relative_noise · ‖removal step‖,
  /// i.e. (μσ²)^{1/4} := relative_noise·‖δ‖/‖F^{-1/4}ε‖ (same shape F^{-1/4}ε). With 0.1 the noise moves θ
  /// by a tenth of the removal step: it blurs the step without undoing it (in expectation it adds
  /// 0.1‖δ‖ in quadrature to the removal's distance from retraining). Needs include_newton_term.
  double relative_noise = 0.1;
  std::uint64_t noise_seed = 0x5eed;  ///< seeds ε
  /// α of the noise's damping λ_n = α·tr(F̂)/d (damping.hpp), set on F for the noise only. The noise
  /// follows F_n^{-1/2} only where λ_n is small against the spectrum: with the removal's damping (the
  /// search picks the largest λ on a model that is not at the optimum) F^{-1/4} ≈ λ^{-1/4}I and the
  /// noise is isotropic. 0 = use the removal's damping for the noise too. Needs an estimator with
  /// undamped_trace() (HasUndampedTrace) when > 0.
  double noise_relative_damping = 1e-2;

  /// (μσ²)^{1/4} when mu is set; NaN when the noise is relative (its factor depends on the step).
  double noise_scale() const {
    return mu ? std::pow(*mu * sigma * sigma, 0.25) : std::numeric_limits<double>::quiet_NaN();
  }

  void validate(const std::string& who) const {
    removal.validate(who);
    if ((mu && (!(*mu >= 0.0) || !std::isfinite(*mu))) || !std::isfinite(sigma))
      throw InvalidArgument(who + ": mu must be finite and >= 0 (or unset: noise relative to the step), and sigma finite");
    if (!(relative_noise >= 0.0) || !std::isfinite(relative_noise))
      throw InvalidArgument(who + ": relative_noise must be finite and >= 0 (0.1 is the default)");
    if (!mu && !include_newton_term && relative_noise > 0.0)
      throw InvalidArgument(who + ": the default noise is relative to the removal step, but include_newton_term is "
                                  "false; set mu (absolute noise) instead");
    if (!(noise_relative_damping >= 0.0) || !std::isfinite(noise_relative_damping))
      throw InvalidArgument(who + ": noise_relative_damping must be finite and >= 0 (1e-2 is the default; 0 = the "
                                  "removal's damping)");
    if (!include_newton_term && removal.automatic_damping)
      throw InvalidArgument(who + ": automatic damping scores the removal step, but include_newton_term is false; "
                                  "set a fixed removal.damping instead");
  }
};

template <FisherEstimator Estimator>
class FisherForgetting {
 public:
  using Scalar = typename Estimator::Scalar;
  using Factory = std::function<Estimator(std::size_t dimension, Scalar damping)>;

  FisherForgetting()
    requires std::constructible_from<Estimator, std::size_t, Scalar>
      : FisherForgetting(FisherForgettingOptions{}) {}
  explicit FisherForgetting(FisherForgettingOptions options)
    requires std::constructible_from<Estimator, std::size_t, Scalar>
      : FisherForgetting(std::move(options), [](std::size_t d, Scalar damping) { return Estimator(d, damping); }) {}
  FisherForgetting(FisherForgettingOptions options, Factory make)
      : options_(std::move(options)), make_(std::move(make)) {
    options_.validate(name());
    if (!make_) throw InvalidArgument("FisherForgetting: the estimator factory is empty");
  }

  std::string name() const { return "fisher_forgetting"; }
  const FisherForgettingOptions& options() const { return options_; }

  /// Builds F from m retain-set gradients, applies the removal term (optional) and the noise.
  /// Strong guarantee.
  template <DifferentiableModel M>
    requires std::same_as<typename M::Scalar, Scalar>
  UnlearningReport unlearn(M& model, std::span<const typename M::Sample> forget,
                           std::span<const typename M::Sample> retain) const {
    const detail::Stopwatch clock;
    detail::require_unlearning_sets(model, forget, retain, name());
    const ParameterSubset subset = ParameterSubset::from_groups(model, options_.removal.parameter_groups);
    UnlearningReport r = detail::begin_report(model, forget, retain, name());
    // Named members, not a structured binding: the lambda below uses `fisher`, and capturing a
    // structured binding is ill-formed before C++20's P1091 (Clang < 16 rejects it).
    auto built = detail::build_retain_fisher<Estimator>(model, retain, options_.removal, subset, make_);
    Estimator& fisher = built.first;
    const std::size_t gradient_bytes = built.second;
    if (options_.removal.damping == 0.0 && !options_.removal.automatic_damping)
      detail::append_note(r.notes, detail::default_fisher_damping_note(model, fisher));
    if (!fisher.supports_power(-0.25))
      throw InvalidArgument(name() + ": this estimator cannot apply F^(-1/4); use one that supports fractional "
                                     "powers (WoodburyFisher, DiagonalFisher, BlockDiagonalFisher)");
    const Vector<Scalar> theta_before = detail::snapshot_parameters(model);
    r.fisher_gradients = fisher.num_gradients();
    detail::with_rollback(model, [&] {
      if (options_.include_newton_term) {
        detail::apply_fisher_removal(model, forget, retain, fisher, options_.removal, subset, r);
      } else {
        r.damping = static_cast<double>(fisher.damping());
      }
      const double step_norm =
          (detail::parameters_of(model).template cast<double>() - theta_before.template cast<double>()).norm();
      const bool relative = !options_.mu.has_value();
      const double absolute_scale = relative ? 0.0 : options_.noise_scale();
      if ((relative && options_.relative_noise > 0.0 && step_norm > 0.0) || absolute_scale > 0.0) {
        const auto d = static_cast<Eigen::Index>(subset.size());
        Vector<Scalar> eps(d), shaped(d);
        std::mt19937_64 rng(options_.noise_seed);
        std::normal_distribution<double> normal(0.0, 1.0);
        for (Eigen::Index i = 0; i < d; ++i) eps[i] = static_cast<Scalar>(normal(rng));
        if (options_.noise_relative_damping > 0.0) {
          if constexpr (HasUndampedTrace<Estimator>) {
            // F is this call's own estimator: changing its damping after the removal term is safe.
            fisher.set_damping(static_cast<Scalar>(spectrum_relative_damping(fisher, options_.noise_relative_damping)));
          } else {
            throw InvalidArgument(name() + ": noise_relative_damping needs an estimator that reports "
                                           "undamped_trace(); set noise_relative_damping = 0 to use the removal's "
                                           "damping for the noise");
          }
        }
        detail::append_note(r.notes, "noise damping " + detail::format_number(static_cast<double>(fisher.damping())) +
                                         (options_.noise_relative_damping > 0.0 ? " (relative)" : " (the removal's)"));
        fisher.apply_power(-0.25, eps, shaped);
        detail::require_finite(shaped, name() + ": the noise F^(-1/4) eps");
        const double shaped_norm = shaped.template cast<double>().norm();
        const double scale = relative ? options_.relative_noise * step_norm / shaped_norm : absolute_scale;
        if (!std::isfinite(scale))
          throw NonFiniteError(name() + ": the noise factor is not finite (F^(-1/4) eps has norm " +
                               detail::format_number(shaped_norm) + "); set mu for an absolute noise");
        subset.scatter_add(std::span<const Scalar>(shaped.data(), static_cast<std::size_t>(d)),
                           static_cast<Scalar>(scale), std::span<Scalar>(model.parameters()));
        detail::append_note(r.notes, "noise scale (mu sigma^2)^(1/4) = " + detail::format_number(scale) +
                                         (relative ? " (relative: " + detail::format_number(options_.relative_noise) +
                                                         " x the removal step's norm " + detail::format_number(step_norm) + ")"
                                                   : std::string(" (absolute: from mu and sigma)")));
      }
      detail::finish_report(model, theta_before, forget, retain, r);
    });
    r.memory_bytes = fisher.memory_bytes() + gradient_bytes + 6 * subset.full_size() * sizeof(Scalar);
    r.seconds = clock.seconds();
    return r;
  }

 private:
  FisherForgettingOptions options_;
  Factory make_;
};

}  // namespace fisher_unlearn
