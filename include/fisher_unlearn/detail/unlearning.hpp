// Internal plumbing shared by every unlearner: the strong guarantee (snapshot, try, restore), the
// before/after part of UnlearningReport, seeded subsampling and option checks. Not API.
// Cost: O(d) for the snapshot plus one loss pass over the forget and retain sets for the report.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/report.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn::detail {

/// The parameters of `model` as a mutable Eigen map.
template <Model M>
auto parameters_of(M& model) {
  return as_eigen(std::span<typename M::Scalar>(model.parameters()));
}
template <Model M>
auto parameters_of(const M& model) {
  return as_eigen(std::span<const typename M::Scalar>(model.parameters()));
}

/// Runs body(); if it throws, the model's parameters are restored bitwise before the exception
/// propagates. Every unlearner moves the model through intermediate points (to evaluate losses
/// there), so this is how the strong guarantee is kept.
template <Model M, class Body>
decltype(auto) with_rollback(M& model, Body&& body) {
  const Vector<typename M::Scalar> saved = snapshot_parameters(model);
  try {
    return std::forward<Body>(body)();
  } catch (...) {
    restore_parameters(model, saved);
    throw;
  }
}

inline void require_positive_finite(double value, const std::string& what, const std::string& advice) {
  if (!(value > 0.0) || !std::isfinite(value))
    throw InvalidArgument(what + " must be positive and finite (got " + format_number(value) + "); " + advice);
}

/// Checks shared by every unlearner; the forget and retain sets together are the training set.
template <Model M>
void require_unlearning_sets(const M& model, std::span<const typename M::Sample> forget,
                             std::span<const typename M::Sample> retain, const std::string& who) {
  if (forget.empty())
    throw InvalidArgument(who + ": the forget set is empty; pass the samples to be forgotten");
  if (retain.empty())
    throw InvalidArgument(who + ": the retain set is empty; pass the rest of the training set (it sets the "
                                "(n - k) normalisation and the curvature)");
  if (std::span<const typename M::Scalar>(model.parameters()).size() != model.num_parameters())
    throw InvalidArgument(who + ": parameters().size() differs from num_parameters(); fix the model");
  require_finite(parameters_of(model), who + ": the model's parameters");
}

/// Fills the "before" half of a report. Losses are the regularised objectives J_forget, J_retain;
/// `retain_loss` = false leaves J_retain not measured (it costs a pass over the whole retain set).
template <Model M>
UnlearningReport begin_report(const M& model, std::span<const typename M::Sample> forget,
                              std::span<const typename M::Sample> retain, std::string method, bool retain_loss = true) {
  UnlearningReport r;
  r.method = std::move(method);
  r.forget_loss_before = objective(model, forget);
  r.retain_loss_before = retain_loss ? objective(model, retain) : UnlearningReport::not_measured;
  if (!std::isfinite(r.forget_loss_before) || (retain_loss && !std::isfinite(r.retain_loss_before)))
    throw NonFiniteError(r.method + ": the loss before unlearning is NaN or Inf; check the model and the data");
  return r;
}

/// Fills the "after" half of a report once the model holds θ'. Throws NonFiniteError (and the caller's
/// rollback restores θ) if θ' or its losses are not finite. `retain_loss` as in begin_report.
template <Model M>
void finish_report(const M& model, const Vector<typename M::Scalar>& theta_before,
                   std::span<const typename M::Sample> forget, std::span<const typename M::Sample> retain,
                   UnlearningReport& r, bool retain_loss = true) {
  const auto theta = parameters_of(model);
  require_finite(theta, r.method + ": the updated parameters");
  r.step_norm = (theta.template cast<double>() - theta_before.template cast<double>()).norm();
  r.forget_loss_after = objective(model, forget);
  if (retain_loss) r.retain_loss_after = objective(model, retain);
  if (!std::isfinite(r.forget_loss_after) || (retain_loss && !std::isfinite(r.retain_loss_after)))
    throw NonFiniteError(r.method + ": the loss after unlearning is NaN or Inf (the step is too large: raise the "
                                    "damping or set a maximum step norm)");
}

/// m distinct indices of [0, n) drawn without replacement with a seeded generator (all of them, in
/// order, when m >= n). Partial Fisher–Yates: O(n) memory, O(n) time.
inline std::vector<std::size_t> subsample_indices(std::size_t n, std::size_t m, std::uint64_t seed) {
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  if (m >= n) return idx;
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < m; ++i) {
    std::uniform_int_distribution<std::size_t> pick(i, n - 1);
    std::swap(idx[i], idx[pick(rng)]);
  }
  idx.resize(m);
  std::sort(idx.begin(), idx.end());
  return idx;
}

/// A seeded subsample of `samples` as a contiguous vector (copies m samples).
template <class Sample>
std::vector<Sample> subsample(std::span<const Sample> samples, std::size_t m, std::uint64_t seed) {
  std::vector<Sample> out;
  const auto idx = subsample_indices(samples.size(), m, seed);
  out.reserve(idx.size());
  for (std::size_t i : idx) out.push_back(samples[i]);
  return out;
}

class Stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

inline void append_note(std::string& notes, const std::string& note) {
  if (!notes.empty()) notes += "; ";
  notes += note;
}

}  // namespace fisher_unlearn::detail
