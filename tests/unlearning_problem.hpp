// Shared by the unlearner tests: a seeded L2-logistic-regression problem trained to its exact optimum,
// split into forget/retain sets, with the retrained optimum as the known answer.
#pragma once

#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/training.hpp"

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace unlearning_test {

namespace fu = fisher_unlearn;

template <class Scalar>
using Model = fu::models::LogisticRegression<Scalar>;
template <class Scalar>
using Sample = typename Model<Scalar>::Sample;

/// n samples in d dimensions; the first k are the forget set, the rest the retain set.
/// full: trained on all n; retrained: trained on the retain set only (both by train_newton, double).
template <class Scalar>
struct Problem {
  std::vector<Sample<Scalar>> data;
  std::size_t k = 0;
  Model<Scalar> full;
  Model<Scalar> retrained;

  std::span<const Sample<Scalar>> forget() const { return std::span<const Sample<Scalar>>(data).first(k); }
  std::span<const Sample<Scalar>> retain() const { return std::span<const Sample<Scalar>>(data).subspan(k); }
};

/// Trains `full` on every sample and `retrained` on all but the first k.
template <class Scalar>
Problem<Scalar> make_problem_from(std::vector<Sample<Scalar>> data, std::size_t k, double l2) {
  const std::size_t d = static_cast<std::size_t>(data.front().x.size());
  Problem<Scalar> p{std::move(data), k, Model<Scalar>(d, Scalar(l2)), Model<Scalar>(d, Scalar(l2))};
  fu::NewtonTrainingOptions o;
  o.gradient_tolerance = sizeof(Scalar) == sizeof(double) ? 1e-13 : 1e-6;
  fu::train_newton(p.full, std::span<const Sample<Scalar>>(p.data), o);
  fu::train_newton(p.retrained, p.retain(), o);
  return p;
}

template <class Scalar>
Problem<Scalar> make_problem(std::size_t n, std::size_t d, std::size_t k, double l2, std::uint64_t seed,
                             double signal = 3.0) {
  return make_problem_from<Scalar>(fu::models::make_logistic_problem<Scalar>(n, d, seed, signal), k, l2);
}

template <class Scalar>
Eigen::VectorXd params(const Model<Scalar>& m) {
  return fu::as_eigen(m.parameters()).template cast<double>();
}

/// ‖a − b‖ / ‖b‖.
inline double relative_error(const Eigen::VectorXd& a, const Eigen::VectorXd& b) { return (a - b).norm() / b.norm(); }

template <class Scalar>
bool bitwise_equal(const Model<Scalar>& m, const fu::Vector<Scalar>& saved) {
  const auto p = m.parameters();
  if (p.size() != static_cast<std::size_t>(saved.size())) return false;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (std::memcmp(&p[i], &saved[static_cast<Eigen::Index>(i)], sizeof(Scalar)) != 0) return false;
  return true;
}

}  // namespace unlearning_test
