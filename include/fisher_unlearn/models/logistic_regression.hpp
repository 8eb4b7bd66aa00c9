// L2-regularised binary logistic regression: the convex reference model on which an exact Newton
// removal step can be checked against retraining from scratch.
//   loss(x, y) = log(1 + e^z) − y·z,  z = θᵀx,  y ∈ {0, 1};   J_S = mean loss + (λ/2)‖θ‖²
//   ∇loss = (σ(z) − y)·x,  ∇²loss = σ(z)(1 − σ(z))·x xᵀ.  Cost O(d) per sample for loss and gradient.
// A bias is modelled by a constant feature in x (make_logistic_problem adds one).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace fisher_unlearn::models {

template <SupportedScalar ScalarType>
class LogisticRegression {
 public:
  using Scalar = ScalarType;
  struct Sample {
    Vector<Scalar> x;
    Scalar y = 0;  ///< 0 or 1
  };

  LogisticRegression(std::size_t num_features, Scalar l2_regularization)
      : theta_(Vector<Scalar>::Zero(static_cast<Eigen::Index>(num_features))), l2_(l2_regularization) {
    if (num_features == 0) throw InvalidArgument("LogisticRegression: num_features must be positive");
    if (!(l2_regularization >= Scalar(0)))
      throw InvalidArgument("LogisticRegression: l2_regularization must be >= 0");
  }

  std::size_t num_parameters() const { return static_cast<std::size_t>(theta_.size()); }
  std::span<Scalar> parameters() { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  std::span<const Scalar> parameters() const { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  Scalar l2_regularization() const { return l2_; }

  Scalar loss(const Sample& s) const {
    check(s);
    const Scalar z = theta_.dot(s.x);
    return softplus(z) - s.y * z;
  }

  Scalar gradient(const Sample& s, std::span<Scalar> g) const {
    check(s);
    check_out(g.size());
    const Scalar z = theta_.dot(s.x);
    as_eigen<Scalar>(g) = (sigmoid(z) - s.y) * s.x;
    return softplus(z) - s.y * z;
  }

  Scalar sum_loss_and_gradient(std::span<const Sample> batch, std::span<Scalar> g) const {
    check_out(g.size());
    auto out = as_eigen<Scalar>(g);
    out.setZero();
    Scalar total = 0;
    for (const Sample& s : batch) {
      check(s);
      const Scalar z = theta_.dot(s.x);
      out.noalias() += (sigmoid(z) - s.y) * s.x;
      total += softplus(z) - s.y * z;
    }
    return total;
  }

  void hessian(std::span<const Sample> batch, Matrix<Scalar>& h) const {
    const auto d = theta_.size();
    h.setZero(d, d);
    for (const Sample& s : batch) {
      check(s);
      const Scalar p = sigmoid(theta_.dot(s.x));
      h.template selfadjointView<Eigen::Lower>().rankUpdate(s.x, p * (Scalar(1) - p));
    }
    h.template triangularView<Eigen::StrictlyUpper>() = h.transpose();
  }

  void hessian_vector_product(std::span<const Sample> batch, std::span<const Scalar> v, std::span<Scalar> out) const {
    check_out(v.size());
    check_out(out.size());
    const auto vv = as_eigen(v);
    auto o = as_eigen<Scalar>(out);
    o.setZero();
    for (const Sample& s : batch) {
      check(s);
      const Scalar p = sigmoid(theta_.dot(s.x));
      o.noalias() += (p * (Scalar(1) - p) * s.x.dot(vv)) * s.x;
    }
  }

  /// ŷ ~ Bernoulli(σ(θᵀx)), g = (σ − ŷ)·x.
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<Scalar> g) const {
    check(s);
    check_out(g.size());
    const Scalar p = sigmoid(theta_.dot(s.x));
    const Scalar y_hat = std::uniform_real_distribution<double>(0.0, 1.0)(rng) < static_cast<double>(p) ? 1 : 0;
    as_eigen<Scalar>(g) = (p - y_hat) * s.x;
  }

  /// Probability of class 1.
  Scalar predict(const Vector<Scalar>& x) const { return sigmoid(theta_.dot(x)); }

 private:
  static Scalar sigmoid(Scalar z) {
    return z >= 0 ? Scalar(1) / (Scalar(1) + std::exp(-z)) : std::exp(z) / (Scalar(1) + std::exp(z));
  }
  static Scalar softplus(Scalar z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }
  void check(const Sample& s) const {
    if (s.x.size() != theta_.size())
      throw InvalidArgument("LogisticRegression: sample has " + std::to_string(s.x.size()) + " features, model has " +
                            std::to_string(theta_.size()));
  }
  void check_out(std::size_t n) const {
    if (n != static_cast<std::size_t>(theta_.size()))
      throw InvalidArgument("LogisticRegression: vector of size " + std::to_string(n) + " where " +
                            std::to_string(theta_.size()) + " was expected");
  }

  Vector<Scalar> theta_;
  Scalar l2_;
};

/// A seeded synthetic binary problem: x ~ N(0, I) in d−1 dimensions plus a constant 1 (bias),
/// y ~ Bernoulli(σ(θ*ᵀx)) for a random θ* of norm `signal`. Shipped for tests and users alike.
template <SupportedScalar Scalar>
std::vector<typename LogisticRegression<Scalar>::Sample> make_logistic_problem(std::size_t n, std::size_t d,
                                                                               std::uint64_t seed,
                                                                               double signal = 3.0) {
  if (d < 2) throw InvalidArgument("make_logistic_problem: d must be at least 2 (one feature plus the bias)");
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  Eigen::VectorXd truth(static_cast<Eigen::Index>(d));
  for (Eigen::Index i = 0; i < truth.size(); ++i) truth[i] = normal(rng);
  truth *= signal / truth.norm();
  std::vector<typename LogisticRegression<Scalar>::Sample> samples(n);
  for (auto& s : samples) {
    Eigen::VectorXd x(static_cast<Eigen::Index>(d));
    for (Eigen::Index i = 0; i + 1 < x.size(); ++i) x[i] = normal(rng);
    x[x.size() - 1] = 1.0;
    const double p = 1.0 / (1.0 + std::exp(-truth.dot(x)));
    s.x = x.cast<Scalar>();
    s.y = uniform(rng) < p ? Scalar(1) : Scalar(0);
  }
  return samples;
}

}  // namespace fisher_unlearn::models
