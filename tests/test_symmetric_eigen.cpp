// detail::symmetric_eigen (divide and conquer on the tridiagonal form) against the definitions in fp64
// (A·V = V·diag(λ), VᵀV = I), against eigenvalues known in closed form, and against Eigen's
// SelfAdjointEigenSolver (the QR path it replaces in the estimators), on the matrices that exercise its
// branches: no deflation (random), deflation by a small z component (low rank, zero and diagonal
// matrices), deflation of close pairs (clusters, repeated eigenvalues), graded spectra, Wilkinson's
// matrices (pairs of nearly equal eigenvalues), every size around the leaf and the dense cut-over.
#include <catch2/catch.hpp>

#include "fisher_unlearn/detail/symmetric_eigen.hpp"

#include <Eigen/Eigenvalues>

#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

namespace {

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::VectorXd;
constexpr double kEps = std::numeric_limits<double>::epsilon();

MatrixXd gaussian(Index rows, Index cols, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  MatrixXd g(rows, cols);
  for (Index i = 0; i < g.size(); ++i) g.data()[i] = normal(rng);
  return g;
}

MatrixXd orthogonal(Index n, std::mt19937_64& rng) {
  const MatrixXd q = Eigen::HouseholderQR<MatrixXd>(gaussian(n, n, rng)).householderQ();
  return q;
}

// A = Q·diag(values)·Qᵀ for a random orthogonal Q
MatrixXd with_spectrum(const VectorXd& values, std::mt19937_64& rng) {
  const MatrixXd q = orthogonal(values.size(), rng);
  MatrixXd a = q * values.asDiagonal() * q.transpose();
  return (a + a.transpose()) / 2;
}

struct Family {
  std::string name;
  MatrixXd a;
  VectorXd exact;  // known eigenvalues (ascending), empty if none
};

std::vector<Family> families(Index n, std::mt19937_64& rng) {
  std::vector<Family> out;
  const MatrixXd g = gaussian(n, n, rng);
  out.push_back({"random", (g + g.transpose()) / 2, {}});
  const MatrixXd x = gaussian(n, std::max<Index>(1, n / 4), rng);
  out.push_back({"low rank PSD (n/4)", x * x.transpose(), {}});
  out.push_back({"zero", MatrixXd::Zero(n, n), VectorXd::Zero(n)});
  VectorXd diag(n);
  for (Index i = 0; i < n; ++i) diag[i] = std::cos(0.7 * static_cast<double>(i));
  VectorXd sorted = diag;
  std::sort(sorted.begin(), sorted.end());
  out.push_back({"diagonal", MatrixXd(diag.asDiagonal()), sorted});
  VectorXd clusters(n);
  for (Index i = 0; i < n; ++i) clusters[i] = i % 3 == 0 ? 1.0 : (i % 3 == 1 ? 1.0 + 1e-12 * static_cast<double>(i) : 1e-9);
  VectorXd clusters_sorted = clusters;
  std::sort(clusters_sorted.begin(), clusters_sorted.end());
  out.push_back({"clusters", with_spectrum(clusters, rng), clusters_sorted});
  VectorXd repeated(n);
  for (Index i = 0; i < n; ++i) repeated[i] = i < n / 2 ? 1.0 : 2.0;
  out.push_back({"two repeated eigenvalues", with_spectrum(repeated, rng), repeated});
  VectorXd graded(n);
  for (Index i = 0; i < n; ++i) graded[i] = std::pow(10.0, -12.0 * static_cast<double>(i) / static_cast<double>(std::max<Index>(1, n - 1)));
  VectorXd graded_sorted = graded;
  std::sort(graded_sorted.begin(), graded_sorted.end());
  out.push_back({"graded 1 .. 1e-12", with_spectrum(graded, rng), graded_sorted});
  MatrixXd w = MatrixXd::Zero(n, n);
  for (Index i = 0; i < n; ++i) {
    w(i, i) = std::abs(static_cast<double>(n / 2 - i));
    if (i + 1 < n) w(i + 1, i) = w(i, i + 1) = 1.0;
  }
  out.push_back({"Wilkinson", w, {}});
  // the 1-2-1 matrix: λ_k = 2 − 2cos(kπ/(n+1)) (already tridiagonal: the splits see every coupling)
  MatrixXd lap = MatrixXd::Zero(n, n);
  VectorXd lap_exact(n);
  for (Index i = 0; i < n; ++i) {
    lap(i, i) = 2.0;
    if (i + 1 < n) lap(i + 1, i) = lap(i, i + 1) = -1.0;
    lap_exact[i] = 2.0 - 2.0 * std::cos(static_cast<double>(i + 1) * std::numbers::pi / static_cast<double>(n + 1));
  }
  std::sort(lap_exact.begin(), lap_exact.end());
  out.push_back({"1-2-1", lap, lap_exact});
  return out;
}

}  // namespace

TEST_CASE("symmetric_eigen: A·V = V·diag(λ), VᵀV = I, λ ascending and equal to the exact and QR eigenvalues") {
  std::mt19937_64 rng(2026);
  for (Index n : {1, 2, 3, 31, 32, 33, 47, 48, 49, 64, 65, 97, 192, 257, 520}) {
    for (const Family& f : families(n, rng)) {
      INFO(f.name << ", n = " << n);
      VectorXd values;
      MatrixXd vectors;
      REQUIRE(fisher_unlearn::detail::symmetric_eigen(f.a, values, vectors));
      REQUIRE(values.size() == n);
      REQUIRE(vectors.rows() == n);
      REQUIRE(vectors.cols() == n);
      const double scale = std::max(f.a.norm(), std::numeric_limits<double>::min());
      const double bound = 4.0 * static_cast<double>(n) * kEps;
      CHECK((f.a * vectors - vectors * values.asDiagonal()).norm() / scale <= bound);
      CHECK((vectors.transpose() * vectors - MatrixXd::Identity(n, n)).norm() <= bound);
      for (Index i = 1; i < n; ++i) CHECK(values[i - 1] <= values[i]);
      const Eigen::SelfAdjointEigenSolver<MatrixXd> qr(f.a);
      CHECK((values - qr.eigenvalues()).cwiseAbs().maxCoeff() / scale <= bound);
      if (f.exact.size() == n) CHECK((values - f.exact).cwiseAbs().maxCoeff() / scale <= bound);
    }
  }
}

TEST_CASE("symmetric_eigen reads the lower triangle only") {
  std::mt19937_64 rng(7);
  for (Index n : {20, 100, 600}) {
    const MatrixXd g = gaussian(n, n, rng);
    const MatrixXd a = (g + g.transpose()) / 2;
    MatrixXd lower = a;
    lower.triangularView<Eigen::StrictlyUpper>().setConstant(1e300);
    VectorXd v1, v2;
    MatrixXd q1, q2;
    REQUIRE(fisher_unlearn::detail::symmetric_eigen(a, v1, q1));
    REQUIRE(fisher_unlearn::detail::symmetric_eigen(lower, v2, q2));
    CHECK(v1 == v2);
    CHECK(q1 == q2);
  }
}

TEST_CASE("symmetric_eigen refuses a NaN or Inf in the lower triangle") {
  for (Index n : {5, 80}) {
    MatrixXd a = MatrixXd::Identity(n, n);
    a(n - 1, 0) = std::numeric_limits<double>::quiet_NaN();
    VectorXd v;
    MatrixXd q;
    CHECK_FALSE(fisher_unlearn::detail::symmetric_eigen(a, v, q));
    a(n - 1, 0) = std::numeric_limits<double>::infinity();
    CHECK_FALSE(fisher_unlearn::detail::symmetric_eigen(a, v, q));
  }
}

TEST_CASE("symmetric_eigen: the tridiagonal divide and conquer with a zero and a tiny coupling") {
  // T with e[m − 1] = 0 at the first split (the merge deflates every component) and with 1e-300
  // couplings (below the deflation tolerance): the eigenvalues are the diagonal blocks'.
  for (double coupling : {0.0, 1e-300}) {
    const Index n = 200;
    VectorXd d(n), e(n - 1);
    for (Index i = 0; i < n; ++i) d[i] = std::sin(static_cast<double>(i));
    for (Index i = 0; i + 1 < n; ++i) e[i] = i % 50 == 49 ? coupling : 0.3;
    MatrixXd t = MatrixXd::Zero(n, n);
    t.diagonal() = d;
    t.diagonal(-1) = e;
    t.diagonal(1) = e;
    VectorXd values = d, sub = e;
    MatrixXd z(n, n);
    fisher_unlearn::detail::dc::Scratch scratch;
    REQUIRE(fisher_unlearn::detail::dc::tridiagonal_eigen(values.data(), sub.data(), n, z, scratch));
    INFO("coupling " << coupling);
    CHECK((t * z - z * values.asDiagonal()).norm() / t.norm() <= 4.0 * static_cast<double>(n) * kEps);
    CHECK((z.transpose() * z - MatrixXd::Identity(n, n)).norm() <= 4.0 * static_cast<double>(n) * kEps);
    VectorXd sorted = values;
    std::sort(sorted.begin(), sorted.end());
    const Eigen::SelfAdjointEigenSolver<MatrixXd> qr(t);
    CHECK((sorted - qr.eigenvalues()).cwiseAbs().maxCoeff() <= 4.0 * static_cast<double>(n) * kEps * t.norm());
  }
}

TEST_CASE("tridiagonalize_blocked: Q·T·Qᵀ = A with Q orthogonal, for every panel width and size") {
  std::mt19937_64 rng(11);
  for (Index n : {1, 2, 3, 5, 33, 70, 129}) {
    for (Index nb : {1, 3, 32}) {
      INFO("n = " << n << ", nb = " << nb);
      const MatrixXd g = gaussian(n, n, rng);
      const MatrixXd a = (g + g.transpose()) / 2;
      MatrixXd packed = a;
      packed.triangularView<Eigen::StrictlyUpper>().setConstant(1e300);  // never read
      VectorXd d, e, h;
      fisher_unlearn::detail::tridiagonalize_blocked(packed, d, e, h, nb);
      REQUIRE(d.size() == n);
      REQUIRE(e.size() == std::max<Index>(n - 1, 0));
      MatrixXd t = MatrixXd::Zero(n, n);
      t.diagonal() = d;
      if (n > 1) {
        t.diagonal(-1) = e;
        t.diagonal(1) = e;
      }
      MatrixXd q = MatrixXd::Identity(n, n);
      if (n > 1) {
        Eigen::HouseholderSequence<MatrixXd, VectorXd> reflectors(packed, h);
        reflectors.setLength(n - 1).setShift(1);
        reflectors.applyThisOnTheLeft(q);
      }
      const double bound = 4.0 * static_cast<double>(n) * kEps;
      CHECK((q * t * q.transpose() - a).norm() / a.norm() <= bound);
      CHECK((q.transpose() * q - MatrixXd::Identity(n, n)).norm() <= bound);
    }
  }
}
