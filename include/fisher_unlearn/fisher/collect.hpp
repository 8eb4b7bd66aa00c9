// Per-sample gradients for a Fisher estimate, as the columns of a d×m matrix, each divided by √cᵢ
// where loss(sᵢ) = cᵢ·Σₜ wₜℓₜ (HasLossScale; c = 1 otherwise, e.g. c = 1/T for a mean over T tokens):
//   empirical:    gᵢ = ∇loss(sᵢ)/√cᵢ with the observed targets         (the "empirical Fisher")
//   monte_carlo:  gᵢₖ = sampled_gradient(sᵢ)/√cᵢ, targets ~ p(· | xᵢ; θ)  (E[gᵢₖgᵢₖᵀ] = the Gauss–Newton
//                 matrix of loss(sᵢ) exactly; without the 1/√c it would be c times too small)
// Cost: m (or m·S) gradient evaluations; memory d·m·sizeof(Scalar).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/progress.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>

namespace fisher_unlearn {

enum class FisherKind { empirical, monte_carlo };

inline const char* to_string(FisherKind kind) {
  return kind == FisherKind::empirical ? "empirical" : "monte_carlo";
}

struct GradientCollection {
  FisherKind kind = FisherKind::empirical;
  std::size_t samples_per_input = 1;  ///< S: draws per input for the Monte-Carlo Fisher
  std::uint64_t seed = 0x5eed;        ///< seeds the Monte-Carlo draws
  /// Divide each gradient by √loss_scale(s) when the model declares one (HasLossScale), so that the
  /// Monte-Carlo Fisher's expectation is the Gauss–Newton matrix of the mean loss and η = 1 is the
  /// (Gauss–)Newton step. false = the unscaled per-sample gradients (the behaviour before issue 9,
  /// c times too small for a loss that averages c⁻¹ terms). No effect on models without a loss scale.
  bool apply_loss_scale = true;
  /// Reported as "fisher: gradients", done = inputs finished of m, before each input; cancellable there.
  Progress progress{};
};

/// Per-sample gradients restricted to `subset`, one column per gradient (m·S columns for monte_carlo).
template <DifferentiableModel M>
Matrix<typename M::Scalar> collect_gradients(const M& model, std::span<const typename M::Sample> samples,
                                             const GradientCollection& options, const ParameterSubset& subset) {
  using Scalar = typename M::Scalar;
  if (samples.empty()) throw InvalidArgument("collect_gradients: no samples given (m = 0); pass at least one");
  if (subset.full_size() != model.num_parameters())
    throw InvalidArgument("collect_gradients: the parameter subset was built for a different model size");
  if (options.kind == FisherKind::monte_carlo && options.samples_per_input == 0)
    throw InvalidArgument("collect_gradients: samples_per_input must be at least 1");
  const std::size_t draws = options.kind == FisherKind::monte_carlo ? options.samples_per_input : 1;
  Matrix<Scalar> G(static_cast<Eigen::Index>(subset.size()), static_cast<Eigen::Index>(samples.size() * draws));
  Vector<Scalar> full(static_cast<Eigen::Index>(model.num_parameters()));
  std::span<Scalar> full_span(full.data(), full.size());
  std::mt19937_64 rng(options.seed);
  Eigen::Index col = 0;
  std::uint64_t finished = 0;
  for (const auto& s : samples) {
    options.progress.update("fisher: gradients", finished++, samples.size());
    Scalar inverse_root_scale(1);
    if constexpr (HasLossScale<M>) {
      if (options.apply_loss_scale) {
        const double c = static_cast<double>(model.loss_scale(s));
        if (!(c > 0.0) || !std::isfinite(c))
          throw InvalidArgument("collect_gradients: the model's loss_scale(sample) is " + ::fisher_unlearn::detail::format_number(c) +
                                "; it must be positive and finite (loss = c · Σ weighted NLL terms)");
        inverse_root_scale = static_cast<Scalar>(1.0 / std::sqrt(c));
      }
    }
    for (std::size_t k = 0; k < draws; ++k, ++col) {
      if (options.kind == FisherKind::monte_carlo) {
        if constexpr (SampledFisherModel<M>) {
          detail::checked_sampled_gradient(model, s, rng, full_span, "collect_gradients");
        } else {
          throw InvalidArgument("a Monte-Carlo Fisher needs a model with sampled_gradient(sample, rng, out) "
                                "(the SampledFisherModel concept); use FisherKind::empirical otherwise");
        }
      } else {
        detail::checked_gradient(model, s, full_span, "collect_gradients");
      }
      subset.gather(std::span<const Scalar>(full.data(), full.size()),
                    std::span<Scalar>(G.col(col).data(), static_cast<std::size_t>(G.rows())));
      if (inverse_root_scale != Scalar(1)) G.col(col) *= inverse_root_scale;
    }
  }
  if (!G.allFinite())
    throw NonFiniteError("collect_gradients: a per-sample gradient contains NaN or Inf; check the model and data");
  return G;
}

template <DifferentiableModel M>
Matrix<typename M::Scalar> collect_gradients(const M& model, std::span<const typename M::Sample> samples,
                                             const GradientCollection& options = {}) {
  return collect_gradients(model, samples, options, ParameterSubset::all(model.num_parameters()));
}

}  // namespace fisher_unlearn
