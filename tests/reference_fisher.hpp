// A dense fp64 reference FisherEstimator for the unlearner tests: F = λI + (1/m) Σ ggᵀ formed
// explicitly and eigendecomposed, F^p v = V (Σ+λ)^p Vᵀ v. O(d²) memory, O(d³) finalize.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <Eigen/Eigenvalues>

#include <cmath>

namespace unlearning_test {

template <class ScalarT>
class ReferenceFisher {
 public:
  using Scalar = ScalarT;
  ReferenceFisher(std::size_t d, Scalar damping) : sum_(Eigen::MatrixXd::Zero(d, d)), damping_(damping) {
    if (!(damping > 0)) throw fisher_unlearn::InvalidArgument("ReferenceFisher: damping must be > 0");
  }
  std::size_t dimension() const { return static_cast<std::size_t>(sum_.rows()); }
  void add_gradient(Eigen::Ref<const fisher_unlearn::Vector<Scalar>> g) {
    const Eigen::VectorXd gd = g.template cast<double>();
    sum_.noalias() += gd * gd.transpose();
    ++m_;
    ready_ = false;
  }
  void add_gradients(Eigen::Ref<const fisher_unlearn::Matrix<Scalar>> g) {
    const Eigen::MatrixXd gd = g.template cast<double>();
    sum_.noalias() += gd * gd.transpose();
    m_ += static_cast<std::size_t>(g.cols());
    ready_ = false;
  }
  void finalize() {
    if (m_ == 0) throw fisher_unlearn::InvalidArgument("ReferenceFisher: no gradients");
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(sum_ / static_cast<double>(m_));
    values_ = es.eigenvalues().cwiseMax(0.0);
    vectors_ = es.eigenvectors();
    ready_ = true;
  }
  void apply_power(double p, Eigen::Ref<const fisher_unlearn::Vector<Scalar>> v,
                   Eigen::Ref<fisher_unlearn::Vector<Scalar>> out) const {
    if (!ready_) throw fisher_unlearn::StateError("ReferenceFisher: finalize first");
    const Eigen::VectorXd shifted = (values_.array() + static_cast<double>(damping_)).pow(p).matrix();
    out = (vectors_ * shifted.asDiagonal() * (vectors_.transpose() * v.template cast<double>())).template cast<Scalar>();
  }
  bool supports_power(double) const { return true; }
  Scalar damping() const { return damping_; }
  void set_damping(Scalar d) {
    if (!(d > 0)) throw fisher_unlearn::InvalidArgument("ReferenceFisher: damping must be > 0");
    damping_ = d;
  }
  std::size_t memory_bytes() const { return static_cast<std::size_t>(2 * sum_.size() * sizeof(double)); }
  std::size_t num_gradients() const { return m_; }
  void clear() {
    sum_.setZero();
    m_ = 0;
    ready_ = false;
  }

 private:
  Eigen::MatrixXd sum_, vectors_;
  Eigen::VectorXd values_;
  Scalar damping_;
  std::size_t m_ = 0;
  bool ready_ = false;
};

static_assert(fisher_unlearn::FisherEstimator<ReferenceFisher<double>>);
static_assert(fisher_unlearn::FisherEstimator<ReferenceFisher<float>>);

}  // namespace unlearning_test
