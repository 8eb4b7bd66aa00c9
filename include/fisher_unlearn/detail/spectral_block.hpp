// One dense symmetric block of a Fisher estimate: accumulates S = Σᵢ gᵢgᵢᵀ (b×b, lower triangle, by
// rank-k updates), eigendecomposes (1/m)S = V·diag(s)·Vᵀ, applies (λI + (1/m)S)^p = V·diag((λ+s)^p)·Vᵀ.
// Cost: O(b²) per gradient (O(b²k) GEMM per batch of k), O(b³) finalize, O(b²) per product; 2b² Scalars. Not API.
#pragma once

#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/detail/symmetric_eigen.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

namespace fisher_unlearn::detail {

template <SupportedScalar Scalar>
class SpectralBlock {
 public:
  explicit SpectralBlock(Eigen::Index size) : sum_(Matrix<Scalar>::Zero(size, size)) {}

  Eigen::Index size() const { return sum_.rows(); }

  /// S += U·Uᵀ for the b×k matrix (or b-vector) U: a symmetric rank-k update of the lower triangle.
  template <class Derived>
  void accumulate(const Eigen::MatrixBase<Derived>& columns) {
    sum_.template selfadjointView<Eigen::Lower>().rankUpdate(columns);
  }

  /// Eigendecomposes (1/m)S. Throws NumericalError if the eigensolver does not converge.
  void finalize(std::size_t m, const char* who) {
    const auto fail = [&] {
      return NumericalError(std::string(who) + ": the symmetric eigensolver did not converge on a " +
                            std::to_string(size()) + "×" + std::to_string(size()) +
                            " block; check the gradients for extreme scales");
    };
    if constexpr (std::is_same_v<Scalar, double>) {  // divide and conquer (symmetric_eigen.hpp)
      Eigen::VectorXd values;
      Eigen::MatrixXd vectors;
      if (!symmetric_eigen(sum_ * (1.0 / static_cast<double>(m)), values, vectors)) throw fail();
      vectors_ = std::move(vectors);
      values_ = std::move(values);
    } else {
      Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> solver(sum_ * (Scalar(1) / static_cast<Scalar>(m)),
                                                           Eigen::ComputeEigenvectors);
      if (solver.info() != Eigen::Success) throw fail();
      vectors_ = solver.eigenvectors();
      values_ = solver.eigenvalues().template cast<double>();
    }
  }

  /// out = V·diag((λ+s)^p)·Vᵀ·v for one segment (negative round-off eigenvalues count as 0).
  template <class VectorIn, class VectorOut>
  void apply(double power, double damping, const VectorIn& v, VectorOut&& out) const {
    Vector<Scalar> t = vectors_.transpose() * v;
    for (Eigen::Index i = 0; i < t.size(); ++i)
      t[i] = static_cast<Scalar>(static_cast<double>(t[i]) * shifted_power(damping, values_[i], power));
    out.noalias() = vectors_ * t;
  }

  /// Eigenvalues s of (1/m)S, ascending (after finalize).
  const Eigen::VectorXd& eigenvalues() const { return values_; }

  void clear() {
    sum_.setZero();
    vectors_.resize(0, 0);
    values_.resize(0);
  }

  std::size_t memory_bytes() const {
    return static_cast<std::size_t>(sum_.size() + vectors_.size()) * sizeof(Scalar) +
           static_cast<std::size_t>(values_.size()) * sizeof(double);
  }

 private:
  Matrix<Scalar> sum_;      // Σ ggᵀ, lower triangle valid
  Matrix<Scalar> vectors_;  // V
  Eigen::VectorXd values_;  // s
};

}  // namespace fisher_unlearn::detail
