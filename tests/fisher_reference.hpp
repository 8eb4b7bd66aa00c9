// Test support for the Fisher estimators: seeded gradients with varied scales and the dense fp64
// reference F^p = V·diag((λ+s)^p)·Vᵀ of F = λI + (1/m)GGᵀ (optionally masked to a block structure).
#pragma once

#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

namespace fisher_test {

/// Normal entries, each column scaled by 10^U(−1, 1) and each row by 10^U(−0.5, 0.5).
template <class Scalar>
fisher_unlearn::Matrix<Scalar> random_gradients(Eigen::Index d, Eigen::Index m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> exponent(-1.0, 1.0);
  Eigen::VectorXd row_scale(d);
  for (Eigen::Index i = 0; i < d; ++i) row_scale[i] = std::pow(10.0, 0.5 * exponent(rng));
  fisher_unlearn::Matrix<Scalar> g(d, m);
  for (Eigen::Index j = 0; j < m; ++j) {
    const double col_scale = std::pow(10.0, exponent(rng));
    for (Eigen::Index i = 0; i < d; ++i) g(i, j) = static_cast<Scalar>(col_scale * row_scale[i] * normal(rng));
  }
  return g;
}

template <class Scalar>
fisher_unlearn::Vector<Scalar> random_vector(Eigen::Index d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  fisher_unlearn::Vector<Scalar> v(d);
  for (Eigen::Index i = 0; i < d; ++i) v[i] = static_cast<Scalar>(normal(rng));
  return v;
}

/// (1/m)GGᵀ in double.
template <class Derived>
Eigen::MatrixXd empirical_second_moment(const Eigen::MatrixBase<Derived>& g) {
  const Eigen::MatrixXd gd = g.template cast<double>();
  return gd * gd.transpose() / static_cast<double>(gd.cols());
}

/// Keeps the diagonal blocks of `a` given by `sizes`, zeroes the rest.
inline Eigen::MatrixXd mask_blocks(const Eigen::MatrixXd& a, const std::vector<std::size_t>& sizes) {
  Eigen::MatrixXd out = Eigen::MatrixXd::Zero(a.rows(), a.cols());
  Eigen::Index offset = 0;
  for (std::size_t b : sizes) {
    const auto n = static_cast<Eigen::Index>(b);
    out.block(offset, offset, n, n) = a.block(offset, offset, n, n);
    offset += n;
  }
  return out;
}

/// (λI + S)^p for symmetric PSD S, by a double eigendecomposition.
inline Eigen::MatrixXd dense_power(const Eigen::MatrixXd& s, double damping, double power) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(s);
  Eigen::VectorXd values = solver.eigenvalues();
  for (Eigen::Index i = 0; i < values.size(); ++i) values[i] = std::pow(damping + std::max(values[i], 0.0), power);
  return solver.eigenvectors() * values.asDiagonal() * solver.eigenvectors().transpose();
}

inline double largest_eigenvalue(const Eigen::MatrixXd& s) {
  return Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(s, Eigen::EigenvaluesOnly).eigenvalues().maxCoeff();
}

template <class A, class B>
double relative_error(const Eigen::MatrixBase<A>& out, const Eigen::MatrixBase<B>& ref) {
  return (out.template cast<double>() - ref.template cast<double>()).norm() / ref.template cast<double>().norm();
}

/// The acceptance tolerance of a product against the fp64 reference.
template <class Scalar>
constexpr double tolerance() {
  return std::is_same_v<Scalar, double> ? 1e-10 : 1e-4;
}

/// Damping relative to the largest curvature: a condition number ~1e3 in double, ~20 in float
/// (float products have error ~κ·ε_float).
template <class Scalar>
double test_damping(const Eigen::MatrixXd& second_moment) {
  return (std::is_same_v<Scalar, double> ? 1e-3 : 5e-2) * largest_eigenvalue(second_moment);
}

inline const std::vector<double>& test_powers() {
  static const std::vector<double> powers = {-1.0, -0.5, -0.25, 1.0};
  return powers;
}

}  // namespace fisher_test
