// Internals shared by the Fisher estimators (fisher/*.hpp): argument checks with instructive messages,
// the spectral power coefficients (λ+σ)^p and (λ+σ)^p − λ^p, and products AᵀB / A·y accumulated in
// double for float inputs without materialising a double copy of A (row blocks of 256). Not API.
#pragma once

#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <type_traits>

namespace fisher_unlearn::detail {

inline std::string number_to_string(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

inline std::size_t checked_dimension(const char* who, std::size_t dimension) {
  if (dimension == 0)
    throw InvalidArgument(std::string(who) + ": dimension must be at least 1 (the number of parameters the "
                                             "gradients have), got 0");
  return dimension;
}

template <class Scalar>
Scalar checked_damping(const char* who, Scalar damping) {
  if (!std::isfinite(static_cast<double>(damping)) || !(damping > Scalar(0)))
    throw InvalidArgument(std::string(who) + ": damping must be a finite number > 0, got " +
                          number_to_string(static_cast<double>(damping)) +
                          "; F = damping·I + (1/m)Σ gᵢgᵢᵀ needs damping > 0 to be invertible (a common choice is "
                          "1e-3 to 1e-1 times the mean squared gradient entry)");
  return damping;
}

/// Checks a batch of gradients (columns) before anything is changed: size first, then finiteness.
/// The error for gradients with NaN or Inf entries (check_gradients, or a kernel that checks in its own pass).
inline NonFiniteError non_finite_gradients_error(const char* who) {
  return NonFiniteError(std::string(who) + ": a gradient contains NaN or Inf; nothing was added. Check the "
                                           "model's gradient and the data (or lower the learning rate)");
}

template <class Derived>
void check_gradients(const char* who, const Eigen::MatrixBase<Derived>& gradients, std::size_t dimension) {
  if (static_cast<std::size_t>(gradients.rows()) != dimension)
    throw InvalidArgument(std::string(who) + ": a gradient has " + std::to_string(gradients.rows()) +
                          " entries but the estimator was built for dimension " + std::to_string(dimension) +
                          "; pass gradients as the columns of a d×m matrix with d = dimension()");
  if (!gradients.allFinite()) throw non_finite_gradients_error(who);
}

inline void check_power_supported(const char* who, bool supported, double power) {
  if (!supported)
    throw InvalidArgument(std::string(who) + ": the power p = " + number_to_string(power) +
                          " is not supported by this estimator; use a finite real p (check supports_power(p))");
}

/// The error for a v with NaN or Inf entries (check_apply, or a kernel that checks v in its own pass).
inline NonFiniteError non_finite_vector_error(const char* who) {
  return NonFiniteError(std::string(who) + ": v contains NaN or Inf; the product is not defined");
}

/// The checks every apply_power shares: ready, sizes, no aliasing (v's finiteness: check_apply).
template <class VectorIn, class VectorOut>
void check_apply_sizes(const char* who, bool finalized, std::size_t dimension, const VectorIn& v, const VectorOut& out) {
  if (!finalized)
    throw StateError(std::string(who) +
                     ": the estimator is not finalized (no finalize() yet, or gradients were added or removed "
                     "since); call finalize() before applying it");
  if (static_cast<std::size_t>(v.size()) != dimension || static_cast<std::size_t>(out.size()) != dimension)
    throw InvalidArgument(std::string(who) + ": v has size " + std::to_string(v.size()) + " and out has size " +
                          std::to_string(out.size()) + ", both must equal dimension() = " +
                          std::to_string(dimension) + " (size out before the call)");
  if (v.size() > 0 && v.data() == out.data())
    throw InvalidArgument(std::string(who) + ": out aliases v; pass a separate output vector");
}

/// check_apply_sizes, then v's finiteness (a pass over v; kernels that read v anyway fuse it instead
/// and throw non_finite_vector_error()).
template <class VectorIn, class VectorOut>
void check_apply(const char* who, bool finalized, std::size_t dimension, const VectorIn& v, const VectorOut& out) {
  check_apply_sizes(who, finalized, dimension, v, out);
  if (!v.allFinite())
    throw non_finite_vector_error(who);
}

/// (λ+σ)^p for a non-negative eigenvalue σ (negative round-off of a PSD matrix is clamped to 0).
inline double shifted_power(double damping, double sigma, double power) {
  const double x = damping + std::max(sigma, 0.0);
  if (power == 1.0) return x;
  if (power == -1.0) return 1.0 / x;
  if (power == -0.5) return 1.0 / std::sqrt(x);
  return std::pow(x, power);
}

/// (λ+σ)^p − λ^p without cancellation when σ ≪ λ: λ^p·expm1(p·log1p(σ/λ)).
inline double shifted_power_minus_base(double damping, double sigma, double power) {
  const double s = std::max(sigma, 0.0);
  return std::pow(damping, power) * std::expm1(power * std::log1p(s / damping));
}

/// AᵀB with double accumulation. Float inputs are converted 256 rows at a time, so the extra memory is
/// 256·(cols(A) + cols(B)) doubles, not a double copy of A.
template <class DerivedA, class DerivedB>
Eigen::MatrixXd transpose_product_in_double(const Eigen::MatrixBase<DerivedA>& a, const Eigen::MatrixBase<DerivedB>& b) {
  using ScalarA = typename DerivedA::Scalar;
  using ScalarB = typename DerivedB::Scalar;
  Eigen::MatrixXd result(a.cols(), b.cols());
  if constexpr (std::is_same_v<ScalarA, double> && std::is_same_v<ScalarB, double>) {
    result.noalias() = a.transpose() * b;
  } else {
    result.setZero();
    constexpr Eigen::Index kRows = 256;
    Eigen::MatrixXd a_block, b_block;
    for (Eigen::Index r = 0; r < a.rows(); r += kRows) {
      const Eigen::Index n = std::min(kRows, a.rows() - r);
      a_block = a.middleRows(r, n).template cast<double>();
      b_block = b.middleRows(r, n).template cast<double>();
      result.noalias() += a_block.transpose() * b_block;
    }
  }
  return result;
}

/// out = alpha·v + A·y, evaluated in double and rounded once to out's Scalar.
template <class DerivedA, class DerivedV, class DerivedOut>
void scaled_plus_product_in_double(double alpha, const Eigen::MatrixBase<DerivedV>& v,
                                   const Eigen::MatrixBase<DerivedA>& a, const Eigen::VectorXd& y,
                                   Eigen::MatrixBase<DerivedOut>& out) {
  using Scalar = typename DerivedA::Scalar;
  if constexpr (std::is_same_v<Scalar, double>) {
    out.derived().noalias() = a * y;
    out.derived() += alpha * v;
  } else {
    constexpr Eigen::Index kRows = 256;
    Eigen::MatrixXd a_block;
    Eigen::VectorXd out_block;
    for (Eigen::Index r = 0; r < a.rows(); r += kRows) {
      const Eigen::Index n = std::min(kRows, a.rows() - r);
      a_block = a.middleRows(r, n).template cast<double>();
      out_block.noalias() = a_block * y;
      out_block += alpha * v.segment(r, n).template cast<double>();
      out.derived().segment(r, n) = out_block.template cast<Scalar>();
    }
  }
}

}  // namespace fisher_unlearn::detail
