// What the multi-class reference models (SoftmaxRegression, Mlp) share: the labelled sample, a
// numerically stable softmax / log-sum-exp, and a seeded synthetic K-class problem.
//   log Σ_k e^{z_k} = max z + log Σ_k e^{z_k − max z}   (never overflows; O(K))
#pragma once

#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace fisher_unlearn::models {

/// One input with its class: label ∈ [0, num_classes).
template <SupportedScalar Scalar>
struct ClassificationSample {
  Vector<Scalar> x;
  int label = 0;
};

namespace detail {

/// Sets p = softmax(z) (resized to z's size) and returns log Σ e^{z}. Stable for any finite z.
template <class Scalar, class Logits>
Scalar softmax(const Eigen::MatrixBase<Logits>& z, Vector<Scalar>& p) {
  const Scalar shift = z.maxCoeff();
  p = (z.array() - shift).exp().matrix();
  const Scalar sum = p.sum();
  p /= sum;
  return shift + std::log(sum);
}

/// A label drawn from the categorical distribution p (Σp = 1) with one uniform draw.
template <class Probabilities>
int sample_label(const Eigen::MatrixBase<Probabilities>& p, std::mt19937_64& rng) {
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  double cumulative = 0.0;
  for (Eigen::Index k = 0; k + 1 < p.size(); ++k) {
    cumulative += static_cast<double>(p[k]);
    if (u < cumulative) return static_cast<int>(k);
  }
  return static_cast<int>(p.size() - 1);  // also absorbs rounding that leaves Σp slightly below 1
}

inline void check_label(int label, std::size_t num_classes, const char* model) {
  if (label < 0 || static_cast<std::size_t>(label) >= num_classes)
    throw InvalidArgument(std::string(model) + ": sample label " + std::to_string(label) + " is outside [0, " +
                          std::to_string(num_classes) + "); labels must be class indices 0.." +
                          std::to_string(num_classes - 1));
}

}  // namespace detail

/// A seeded synthetic K-class problem: x ~ N(0, I) in num_features−1 dimensions plus a constant 1
/// (the bias feature), label ~ softmax(W*ᵀx) for a random teacher W* whose columns have norm `signal`.
/// Shipped for tests and users alike (like make_logistic_problem).
template <SupportedScalar Scalar>
std::vector<ClassificationSample<Scalar>> make_softmax_problem(std::size_t n, std::size_t num_features,
                                                               std::size_t num_classes, std::uint64_t seed,
                                                               double signal = 3.0) {
  if (num_features < 2)
    throw InvalidArgument("make_softmax_problem: num_features must be at least 2 (one feature plus the bias)");
  if (num_classes < 2) throw InvalidArgument("make_softmax_problem: num_classes must be at least 2");
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto d = static_cast<Eigen::Index>(num_features);
  const auto k = static_cast<Eigen::Index>(num_classes);
  Eigen::MatrixXd teacher(d, k);
  for (Eigen::Index c = 0; c < k; ++c) {
    for (Eigen::Index i = 0; i < d; ++i) teacher(i, c) = normal(rng);
    teacher.col(c) *= signal / teacher.col(c).norm();
  }
  std::vector<ClassificationSample<Scalar>> samples(n);
  Eigen::VectorXd x(d), p;
  for (auto& s : samples) {
    for (Eigen::Index i = 0; i + 1 < d; ++i) x[i] = normal(rng);
    x[d - 1] = 1.0;
    detail::softmax<double>(teacher.transpose() * x, p);
    s.x = x.cast<Scalar>();
    s.label = detail::sample_label(p, rng);
  }
  return samples;
}

}  // namespace fisher_unlearn::models
