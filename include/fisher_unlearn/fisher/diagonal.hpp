// DiagonalFisher: the diagonal of F = λI + (1/m)Σᵢ gᵢgᵢᵀ, i.e. F_kk = λ + (1/m)Σᵢ g_ik², applied as
// (F^p v)_k = (λ + F̂_kk)^p v_k — exact for every real p for the diagonal matrix (it drops all
// off-diagonal curvature). Cost: O(d) per gradient, O(d) finalize, O(d) per product; memory 2·d doubles.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <cmath>
#include <cstddef>

namespace fisher_unlearn {

/// Diagonal ("Adam-like", EWC) approximation of the Fisher. Squares are summed in double whatever
/// Scalar is, so float gradients do not lose accuracy over many additions.
template <SupportedScalar ScalarT>
class DiagonalFisher {
 public:
  using Scalar = ScalarT;

  /// dimension: d, the length of every gradient. damping: λ > 0.
  DiagonalFisher(std::size_t dimension, Scalar damping)
      : dimension_(detail::checked_dimension("DiagonalFisher", dimension)),
        damping_(detail::checked_damping("DiagonalFisher", damping)),
        sum_of_squares_(Eigen::VectorXd::Zero(static_cast<Eigen::Index>(dimension))) {}

  std::size_t dimension() const { return dimension_; }
  std::size_t num_gradients() const { return num_gradients_; }
  bool is_finalized() const { return finalized_; }

  /// Adds one gradient (size d). Throws InvalidArgument (size) or NonFiniteError; unchanged then.
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("DiagonalFisher::add_gradient", gradient, dimension_);
    sum_of_squares_ += gradient.template cast<double>().cwiseAbs2();
    ++num_gradients_;
    finalized_ = false;
  }

  /// Adds the columns of a d×k matrix. The whole batch is checked before anything is added.
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    detail::check_gradients("DiagonalFisher::add_gradients", gradients, dimension_);
    for (Eigen::Index j = 0; j < gradients.cols(); ++j)
      sum_of_squares_ += gradients.col(j).template cast<double>().cwiseAbs2();
    num_gradients_ += static_cast<std::size_t>(gradients.cols());
    if (gradients.cols() > 0) finalized_ = false;
  }

  /// Forms (1/m)Σ g². Throws InvalidArgument when no gradient was added.
  void finalize() {
    if (num_gradients_ == 0)
      throw InvalidArgument("DiagonalFisher::finalize: no gradients were added (m = 0); add at least one");
    mean_of_squares_ = sum_of_squares_ / static_cast<double>(num_gradients_);
    finalized_ = true;
  }

  /// Every finite real p.
  bool supports_power(double power) const { return std::isfinite(power); }

  /// out = F^p v with F = diag(λ + (1/m)Σ g²). out must have size d and not alias v.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("DiagonalFisher::apply_power", supports_power(power), power);
    detail::check_apply("DiagonalFisher::apply_power", finalized_, dimension_, v, out);
    const double lambda = static_cast<double>(damping_);
    for (Eigen::Index k = 0; k < v.size(); ++k)
      out[k] = static_cast<Scalar>(detail::shifted_power(lambda, mean_of_squares_[k], power) * static_cast<double>(v[k]));
  }

  /// The diagonal entries λ + (1/m)Σ g² (after finalize()).
  Vector<Scalar> diagonal() const {
    if (!finalized_) throw StateError("DiagonalFisher::diagonal: call finalize() first");
    return (mean_of_squares_.array() + static_cast<double>(damping_)).matrix().template cast<Scalar>();
  }

  Scalar damping() const { return damping_; }
  /// Changes λ; O(1), no new finalize() needed. Throws InvalidArgument for λ ≤ 0 or NaN (unchanged then).
  void set_damping(Scalar damping) { damping_ = detail::checked_damping("DiagonalFisher::set_damping", damping); }

  std::size_t memory_bytes() const {
    return static_cast<std::size_t>(sum_of_squares_.size() + mean_of_squares_.size()) * sizeof(double);
  }

  /// Forgets every gradient (dimension and damping are kept); finalize() is needed again.
  void clear() {
    sum_of_squares_.setZero();
    mean_of_squares_.resize(0);
    num_gradients_ = 0;
    finalized_ = false;
  }

 private:
  std::size_t dimension_;
  Scalar damping_;
  Eigen::VectorXd sum_of_squares_;
  Eigen::VectorXd mean_of_squares_;
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
};

static_assert(FisherEstimator<DiagonalFisher<float>> && FisherEstimator<DiagonalFisher<double>>);

}  // namespace fisher_unlearn
