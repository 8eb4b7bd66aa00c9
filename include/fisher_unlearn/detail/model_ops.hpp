// Internal helpers over the Model concept: the regularised objective, its gradient, finiteness checks.
// The objective over a set S is J_S(θ) = mean_{s∈S} loss(s) + (λ/2)‖θ‖² (see concepts.hpp).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <cmath>
#include <span>
#include <string>

namespace fisher_unlearn::detail {

template <Model M>
typename M::Scalar l2_regularization_of(const M& model) {
  if constexpr (RegularizedModel<M>) {
    return static_cast<typename M::Scalar>(model.l2_regularization());
  } else {
    return typename M::Scalar(0);
  }
}

template <class Derived>
void require_finite(const Eigen::DenseBase<Derived>& x, const std::string& what) {
  if (!x.allFinite())
    throw NonFiniteError(what + " contains NaN or Inf; check the model's loss/gradient and the input data");
}

template <class Scalar>
void require_size(std::size_t actual, std::size_t expected, const std::string& what) {
  if (actual != expected)
    throw InvalidArgument(what + " has size " + std::to_string(actual) + " but " + std::to_string(expected) +
                          " was expected");
}

template <Model M>
void require_nonempty(std::span<const typename M::Sample> samples, const std::string& what) {
  if (samples.empty()) throw InvalidArgument(what + " is empty; pass at least one sample");
}

/// J_S(θ) in double, whatever the model's Scalar.
template <Model M>
double objective(const M& model, std::span<const typename M::Sample> samples) {
  require_nonempty<M>(samples, "the sample set");
  double sum = 0.0;
  for (const auto& s : samples) sum += static_cast<double>(model.loss(s));
  const auto theta = as_eigen(std::span<const typename M::Scalar>(model.parameters()));
  const double l2 = static_cast<double>(l2_regularization_of(model));
  return sum / static_cast<double>(samples.size()) + 0.5 * l2 * theta.template cast<double>().squaredNorm();
}

/// out = ∇J_S(θ) (size d); returns J_S(θ). Uses sum_loss_and_gradient where the model has it.
template <DifferentiableModel M>
double objective_gradient(const M& model, std::span<const typename M::Sample> samples,
                          Vector<typename M::Scalar>& out) {
  using Scalar = typename M::Scalar;
  require_nonempty<M>(samples, "the sample set");
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  out.resize(d);
  double loss_sum = 0.0;
  if constexpr (BatchDifferentiableModel<M>) {
    loss_sum = static_cast<double>(model.sum_loss_and_gradient(samples, std::span<Scalar>(out.data(), out.size())));
  } else {
    out.setZero();
    Vector<Scalar> g(d);
    for (const auto& s : samples) {
      loss_sum += static_cast<double>(model.gradient(s, std::span<Scalar>(g.data(), g.size())));
      out += g;
    }
  }
  const Scalar inv_n = Scalar(1) / static_cast<Scalar>(samples.size());
  out *= inv_n;
  const auto theta = as_eigen(std::span<const Scalar>(model.parameters()));
  const Scalar l2 = l2_regularization_of(model);
  if (l2 != Scalar(0)) out.noalias() += l2 * theta;
  return loss_sum / static_cast<double>(samples.size()) +
         0.5 * static_cast<double>(l2) * theta.template cast<double>().squaredNorm();
}

/// Copies the parameters out (for the strong guarantee: snapshot, try, restore on failure).
template <Model M>
Vector<typename M::Scalar> snapshot_parameters(const M& model) {
  return as_eigen(std::span<const typename M::Scalar>(model.parameters()));
}

template <Model M>
void restore_parameters(M& model, const Vector<typename M::Scalar>& saved) {
  as_eigen(std::span<typename M::Scalar>(model.parameters())) = saved;
}

}  // namespace fisher_unlearn::detail
