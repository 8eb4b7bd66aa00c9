// Per-sample gradients for a Fisher estimate, as the columns of a d×m matrix.
//   empirical:    gᵢ = ∇loss(sᵢ) with the observed target            (the "empirical Fisher")
//   monte_carlo:  gᵢₖ = ∇[−log p(ŷₖ | xᵢ)], ŷₖ ~ p(· | xᵢ; θ), k = 1..S  (the true Fisher, in expectation)
// Cost: m (or m·S) gradient evaluations; memory d·m·sizeof(Scalar).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/parameter_subset.hpp"

#include <cstdint>
#include <random>
#include <span>

namespace fisher_unlearn {

enum class FisherKind { empirical, monte_carlo };

inline const char* to_string(FisherKind kind) {
  return kind == FisherKind::empirical ? "empirical" : "monte_carlo";
}

struct GradientCollection {
  FisherKind kind = FisherKind::empirical;
  std::size_t samples_per_input = 1;  ///< S: draws per input for the Monte-Carlo Fisher
  std::uint64_t seed = 0x5eed;        ///< seeds the Monte-Carlo draws
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
  for (const auto& s : samples) {
    for (std::size_t k = 0; k < draws; ++k, ++col) {
      if (options.kind == FisherKind::monte_carlo) {
        if constexpr (SampledFisherModel<M>) {
          model.sampled_gradient(s, rng, full_span);
        } else {
          throw InvalidArgument("a Monte-Carlo Fisher needs a model with sampled_gradient(sample, rng, out) "
                                "(the SampledFisherModel concept); use FisherKind::empirical otherwise");
        }
      } else {
        model.gradient(s, full_span);
      }
      subset.gather(std::span<const Scalar>(full.data(), full.size()),
                    std::span<Scalar>(G.col(col).data(), static_cast<std::size_t>(G.rows())));
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
