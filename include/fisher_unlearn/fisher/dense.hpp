// DenseFisher: the explicit d×d F = λI + (1/m)Σᵢ gᵢgᵢᵀ, eigendecomposed once, F^p v = V·diag((λ+s)^p)·Vᵀv
// exactly for every real p. The naive baseline for benchmarks and the small-d reference.
// Cost: O(d²) per gradient, O(d³) finalize, O(d²) per product; memory 2·d² Scalars + d doubles.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/detail/spectral_block.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <cmath>
#include <cstddef>

namespace fisher_unlearn {

/// Dense Fisher. Use it when d is at most a few thousand (d = 4096 in float already holds 128 MiB and
/// finalize() is an O(d³) eigensolve); otherwise WoodburyFisher (m ≪ d), BlockDiagonalFisher or
/// DiagonalFisher.
/// The sum Σ ggᵀ is accumulated and eigendecomposed in Scalar (float products lose ~κ(F)·ε_float).
template <SupportedScalar ScalarT>
class DenseFisher {
 public:
  using Scalar = ScalarT;

  /// dimension: d. damping: λ > 0.
  DenseFisher(std::size_t dimension, Scalar damping)
      : dimension_(detail::checked_dimension("DenseFisher", dimension)),
        damping_(detail::checked_damping("DenseFisher", damping)),
        block_(static_cast<Eigen::Index>(dimension)) {}

  std::size_t dimension() const { return dimension_; }
  std::size_t num_gradients() const { return num_gradients_; }
  bool is_finalized() const { return finalized_; }

  /// Adds one gradient: a rank-1 update, O(d²). Throws InvalidArgument/NonFiniteError; unchanged then.
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("DenseFisher::add_gradient", gradient, dimension_);
    block_.accumulate(gradient);
    ++num_gradients_;
    finalized_ = false;
  }

  /// Adds the columns of a d×k matrix: one rank-k update (GEMM), O(d²k). Checked as a whole first.
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    detail::check_gradients("DenseFisher::add_gradients", gradients, dimension_);
    if (gradients.cols() == 0) return;
    block_.accumulate(gradients);
    num_gradients_ += static_cast<std::size_t>(gradients.cols());
    finalized_ = false;
  }

  /// Eigendecomposes (1/m)Σ ggᵀ, O(d³). Throws InvalidArgument when m = 0.
  void finalize() {
    if (num_gradients_ == 0)
      throw InvalidArgument("DenseFisher::finalize: no gradients were added (m = 0); add at least one");
    block_.finalize(num_gradients_, "DenseFisher::finalize");
    finalized_ = true;
  }

  /// Every finite real p.
  bool supports_power(double power) const { return std::isfinite(power); }

  /// out = F^p v, O(d²). out must have size d and not alias v.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("DenseFisher::apply_power", supports_power(power), power);
    detail::check_apply("DenseFisher::apply_power", finalized_, dimension_, v, out);
    block_.apply(power, static_cast<double>(damping_), v, out);
  }

  /// Eigenvalues of (1/m)Σ ggᵀ, ascending (F's are these plus λ). After finalize().
  const Eigen::VectorXd& eigenvalues() const {
    if (!finalized_) throw StateError("DenseFisher::eigenvalues: call finalize() first");
    return block_.eigenvalues();
  }

  /// tr((1/m)Σ ggᵀ), the sum of eigenvalues() (after finalize()), O(d).
  double undamped_trace() const { return eigenvalues().sum(); }

  Scalar damping() const { return damping_; }
  /// Changes λ; O(1): the eigenvectors do not depend on it. Throws InvalidArgument for λ ≤ 0 or NaN.
  void set_damping(Scalar damping) { damping_ = detail::checked_damping("DenseFisher::set_damping", damping); }

  std::size_t memory_bytes() const { return block_.memory_bytes(); }

  /// Forgets every gradient (dimension and damping are kept).
  void clear() {
    block_.clear();
    num_gradients_ = 0;
    finalized_ = false;
  }

 private:
  std::size_t dimension_;
  Scalar damping_;
  detail::SpectralBlock<Scalar> block_;
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
};

static_assert(FisherEstimator<DenseFisher<float>> && FisherEstimator<DenseFisher<double>>);

}  // namespace fisher_unlearn
