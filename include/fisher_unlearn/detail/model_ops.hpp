// Internal helpers over the Model concept: the regularised objective, its gradient, finiteness checks.
// The objective over a set S is J_S(θ) = mean_{s∈S} loss(s) + (λ/2)‖θ‖² (see concepts.hpp).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

namespace fisher_unlearn::detail {

// ---- detecting gradient entries a model leaves unwritten ------------------------------------------
// Before the library hands a buffer to gradient(), sum_loss_and_gradient(), sampled_gradient() or
// hessian_vector_product(), it fills it with a quiet NaN carrying a payload no arithmetic produces
// (an operation on finite numbers yields the default NaN; NaN payloads only propagate). An entry that
// still holds that exact bit pattern afterwards was not written; a NaN the model computed is told
// apart and reported as NonFiniteError by the existing checks. Cost: one fill and one vectorised
// finiteness pass over d entries per call (a bitwise scan only when something is not finite).

template <class Scalar>
using MarkerBits = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;

template <class Scalar>
constexpr MarkerBits<Scalar> unwritten_marker_bits() {
  if constexpr (sizeof(Scalar) == 4) {
    return 0x7FC0F00Du;  // quiet NaN, payload 0x40F00D
  } else {
    return 0x7FF8DEAD5EEDF00Dull;  // quiet NaN, payload 0x8DEAD5EEDF00D
  }
}

/// The marked NaN every library-owned gradient buffer holds before a model call.
template <class Scalar>
Scalar unwritten_marker() {
  return std::bit_cast<Scalar>(unwritten_marker_bits<Scalar>());
}

template <class Scalar>
void mark_unwritten(std::span<Scalar> out) {
  const Scalar marker = unwritten_marker<Scalar>();
  for (Scalar& x : out) x = marker;
}

/// Throws ModelContractError naming the first run of entries of `out` that still hold the marker.
/// `call` names the model member, e.g. "gradient(sample, g)"; `who` the library function.
template <class Scalar>
void require_written(std::span<const Scalar> out, const std::string& who, const char* call,
                     const char* what = "gradient") {
  if (Eigen::Map<const Vector<Scalar>>(out.data(), static_cast<Eigen::Index>(out.size())).allFinite()) return;
  const auto marker = unwritten_marker_bits<Scalar>();
  std::size_t first = out.size(), last = 0, count = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (std::bit_cast<MarkerBits<Scalar>>(out[i]) != marker) continue;
    if (first == out.size()) first = last = i;
    else if (last + 1 == i && last - first + 1 == count) last = i;  // extends the first run
    ++count;
  }
  if (count == 0) return;  // a NaN or Inf the model computed: the caller's finiteness check reports it
  throw ModelContractError(who + ": the model did not write entries " + std::to_string(first) + ".." +
                           std::to_string(last) + " of its " + what + " (" + std::to_string(count) + " of " +
                           std::to_string(out.size()) + " entries unwritten in all) in " + call +
                           "; it must overwrite every one of the num_parameters() entries (write 0 where the "
                           "derivative is zero). Check the model's parameter count and its gradient code");
}

/// model.gradient(s, out) with unwritten entries detected; returns the loss.
template <DifferentiableModel M>
typename M::Scalar checked_gradient(const M& model, const typename M::Sample& s, std::span<typename M::Scalar> out,
                                    const std::string& who) {
  mark_unwritten(out);
  const auto loss = model.gradient(s, out);
  require_written(std::span<const typename M::Scalar>(out), who, "gradient(sample, g)");
  return loss;
}

/// model.sum_loss_and_gradient(samples, out) with unwritten entries detected; returns the loss sum.
template <BatchDifferentiableModel M>
typename M::Scalar checked_sum_loss_and_gradient(const M& model, std::span<const typename M::Sample> samples,
                                                 std::span<typename M::Scalar> out, const std::string& who) {
  mark_unwritten(out);
  const auto loss = model.sum_loss_and_gradient(samples, out);
  require_written(std::span<const typename M::Scalar>(out), who, "sum_loss_and_gradient(samples, g)");
  return loss;
}

/// model.sampled_gradient(s, rng, out) with unwritten entries detected.
template <class M, class Rng>
void checked_sampled_gradient(const M& model, const typename M::Sample& s, Rng& rng,
                              std::span<typename M::Scalar> out, const std::string& who) {
  mark_unwritten(out);
  model.sampled_gradient(s, rng, out);
  require_written(std::span<const typename M::Scalar>(out), who, "sampled_gradient(sample, rng, g)");
}

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
    loss_sum = static_cast<double>(checked_sum_loss_and_gradient(
        model, samples, std::span<Scalar>(out.data(), static_cast<std::size_t>(out.size())), "objective_gradient"));
  } else {
    out.setZero();
    Vector<Scalar> g(d);
    for (const auto& s : samples) {
      loss_sum += static_cast<double>(
          checked_gradient(model, s, std::span<Scalar>(g.data(), static_cast<std::size_t>(g.size())),
                           "objective_gradient"));
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
