// A Poisson regression (log link) for the unlearner tests: an unbounded, strictly convex loss
//   loss(x, y) = exp(θᵀx) − y·θᵀx   (the NLL up to log y!),  ∇ = (exp(θᵀx) − y)·x,  ∇² = exp(θᵀx)·xxᵀ,
// where a step that is too long makes exp(θᵀx) explode: what a default step size must survive.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace unlearning_test {

class PoissonRegression {
 public:
  using Scalar = double;
  struct Sample {
    fisher_unlearn::Vector<double> x;
    double y = 0;  ///< a count
  };

  PoissonRegression(std::size_t d, double l2) : theta_(fisher_unlearn::Vector<double>::Zero(static_cast<Eigen::Index>(d))), l2_(l2) {}

  std::size_t num_parameters() const { return static_cast<std::size_t>(theta_.size()); }
  std::span<double> parameters() { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  std::span<const double> parameters() const { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  double l2_regularization() const { return l2_; }

  double loss(const Sample& s) const {
    const double z = theta_.dot(s.x);
    return std::exp(z) - s.y * z;
  }
  double gradient(const Sample& s, std::span<double> g) const {
    const double z = theta_.dot(s.x);
    fisher_unlearn::as_eigen<double>(g) = (std::exp(z) - s.y) * s.x;
    return std::exp(z) - s.y * z;
  }
  void hessian(std::span<const Sample> batch, fisher_unlearn::Matrix<double>& h) const {
    h.setZero(theta_.size(), theta_.size());
    for (const Sample& s : batch) h.selfadjointView<Eigen::Lower>().rankUpdate(s.x, std::exp(theta_.dot(s.x)));
    h.triangularView<Eigen::StrictlyUpper>() = h.transpose();
  }
  /// ŷ ~ Poisson(exp(θᵀx)), g = (exp(θᵀx) − ŷ)·x: E[ggᵀ] = the data-term Hessian.
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<double> g) const {
    const double rate = std::exp(theta_.dot(s.x));
    const double y_hat = static_cast<double>(std::poisson_distribution<long>(rate)(rng));
    fisher_unlearn::as_eigen<double>(g) = (rate - y_hat) * s.x;
  }

 private:
  fisher_unlearn::Vector<double> theta_;
  double l2_;
};

/// n samples, x = (N(0, σ²I) in d − 1 dims, 1), y ~ Poisson(exp(θ*ᵀx)) with ‖θ*‖ = signal.
inline std::vector<PoissonRegression::Sample> make_poisson_problem(std::size_t n, std::size_t d, std::uint64_t seed,
                                                                   double signal = 1.0, double feature_sd = 0.7) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::VectorXd truth(static_cast<Eigen::Index>(d));
  for (Eigen::Index i = 0; i < truth.size(); ++i) truth[i] = normal(rng);
  truth *= signal / truth.norm();
  std::vector<PoissonRegression::Sample> out(n);
  for (auto& s : out) {
    s.x.resize(static_cast<Eigen::Index>(d));
    for (Eigen::Index i = 0; i + 1 < s.x.size(); ++i) s.x[i] = feature_sd * normal(rng);
    s.x[s.x.size() - 1] = 1.0;
    s.y = static_cast<double>(std::poisson_distribution<long>(std::exp(truth.dot(s.x)))(rng));
  }
  return out;
}

}  // namespace unlearning_test
