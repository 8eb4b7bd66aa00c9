// Each GPU routine of fisher_unlearn::cuda against a CPU reference loop written right above the check
// (double accumulation), on seeded random data: float and double, sizes that are not multiples of the
// block or vector width, d from 1 to 10⁷, m from 1 to 1024, aligned and misaligned pointers.
#include <catch2/catch.hpp>

#include "cuda_test_support.hpp"

#include "fisher_unlearn/cuda/routines.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/Core>

#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

namespace fc = fisher_unlearn::cuda;
using cuda_test::random_normal;
using cuda_test::random_positive;
using cuda_test::relative_error;
using cuda_test::to_device;
using cuda_test::to_host;
using cuda_test::tolerance;

namespace {
struct Shape {
  std::size_t d, m;
};
}  // namespace

TEMPLATE_TEST_CASE("accumulate_squares: diag += s·Σ g² equals a CPU loop for every shape", "[cuda][diagonal]", float,
                   double) {
  using Scalar = TestType;
  const Shape shapes[] = {{1, 1}, {1, 1024}, {3, 5}, {4, 4}, {257, 33}, {1000, 1024}, {4097, 7}, {10'000'000, 1}};
  std::uint64_t seed = 11;
  for (const Shape s : shapes) {
    for (const std::size_t misalign : {std::size_t(0), std::size_t(1)}) {
      CAPTURE(s.d, s.m, misalign);
      const auto g = random_normal<Scalar>(s.d * s.m + misalign, ++seed);
      const auto diag0 = random_positive<Scalar>(s.d + misalign, ++seed);
      const Scalar scale = Scalar(0.37);

      // CPU reference: diag[j] + s·Σᵢ g[i·d + j]² in double.
      std::vector<double> ref(s.d);
      for (std::size_t j = 0; j < s.d; ++j) {
        double sum = 0.0;
        for (std::size_t i = 0; i < s.m; ++i) {
          const double x = g[misalign + i * s.d + j];
          sum += x * x;
        }
        ref[j] = static_cast<double>(diag0[misalign + j]) + static_cast<double>(scale) * sum;
      }

      auto dg = to_device(g);
      auto ddiag = to_device(diag0);
      fc::accumulate_squares<Scalar>(dg.data() + misalign, s.d, s.m, scale, ddiag.data() + misalign, nullptr);
      const auto out = to_host(ddiag, s.d, misalign);
      CHECK(relative_error(out, ref) < tolerance<Scalar>(static_cast<double>(s.m)));

      // Determinism: the same inputs give bitwise the same sums.
      auto again = to_device(diag0);
      fc::accumulate_squares<Scalar>(dg.data() + misalign, s.d, s.m, scale, again.data() + misalign, nullptr);
      const auto out2 = to_host(again, s.d, misalign);
      CHECK(std::memcmp(out.data(), out2.data(), s.d * sizeof(Scalar)) == 0);
    }
  }
}

TEMPLATE_TEST_CASE("apply_diagonal_power: η·(s·diag+λ)^p ⊙ v equals a CPU loop for every power", "[cuda][diagonal]",
                   float, double) {
  using Scalar = TestType;
  const std::size_t sizes[] = {1, 3, 4, 1029, 10'000'000};
  const double powers[] = {-1.0, -0.5, 0.5, 1.0, 0.3, -2.0};
  std::uint64_t seed = 101;
  for (const std::size_t d : sizes) {
    for (const std::size_t misalign : {std::size_t(0), std::size_t(1)}) {
      if (d == 10'000'000 && misalign == 1) continue;  // the misaligned path is covered by the small sizes
      const auto diag = random_positive<Scalar>(d + misalign, ++seed);
      const auto v = random_normal<Scalar>(d + misalign, ++seed);
      auto ddiag = to_device(diag);
      auto dv = to_device(v);
      fc::DeviceBuffer<Scalar> dout(d + misalign);
      for (const double p : powers) {
        CAPTURE(d, misalign, p);
        fc::DiagonalStep step;
        step.power = p;
        step.scale = 0.7;
        step.diagonal_scale = 0.25;
        step.damping = 0.05;
        // CPU reference.
        std::vector<double> ref(d);
        for (std::size_t j = 0; j < d; ++j)
          ref[j] = 0.7 * std::pow(0.25 * diag[misalign + j] + 0.05, p) * static_cast<double>(v[misalign + j]);
        fc::apply_diagonal_power<Scalar>(ddiag.data() + misalign, dv.data() + misalign, d, step,
                                         dout.data() + misalign, nullptr, nullptr);
        CHECK(relative_error(to_host(dout, d, misalign), ref) < tolerance<Scalar>(4.0));
      }
    }
  }
}

TEMPLATE_TEST_CASE("apply_diagonal_power: θ += step in place, out may alias v", "[cuda][diagonal]", float, double) {
  using Scalar = TestType;
  const std::size_t d = 1031;
  const auto diag = random_positive<Scalar>(d, 7);
  const auto v = random_normal<Scalar>(d, 8);
  const auto theta0 = random_normal<Scalar>(d, 9);
  fc::DiagonalStep step;
  step.power = -1.0;
  step.scale = -0.1;
  step.damping = 0.2;
  step.noise_std = 0.01;
  step.seed = 42;
  auto ddiag = to_device(diag);
  auto dv = to_device(v);
  auto dtheta = to_device(theta0);
  fc::DeviceBuffer<Scalar> dstep(d);
  fc::apply_diagonal_power<Scalar>(ddiag.data(), dv.data(), d, step, dstep.data(), dtheta.data(), nullptr);
  const auto s = to_host(dstep, d);
  const auto theta = to_host(dtheta, d);
  std::vector<double> expected(d);
  for (std::size_t j = 0; j < d; ++j) expected[j] = static_cast<double>(theta0[j]) + static_cast<double>(s[j]);
  CHECK(relative_error(theta, expected) < tolerance<Scalar>());
  // The deterministic part of the step is the CPU formula: step − noise-only step = η·F⁻¹v.
  fc::DiagonalStep noise_only = step;
  noise_only.scale = 0.0;
  fc::DeviceBuffer<Scalar> dnoise(d);
  fc::apply_diagonal_power<Scalar>(ddiag.data(), nullptr, d, noise_only, dnoise.data(), nullptr, nullptr);
  const auto noise = to_host(dnoise, d);
  std::vector<double> deterministic(d), ref(d);
  for (std::size_t j = 0; j < d; ++j) {
    deterministic[j] = static_cast<double>(s[j]) - static_cast<double>(noise[j]);
    ref[j] = -0.1 / (static_cast<double>(diag[j]) + 0.2) * static_cast<double>(v[j]);
  }
  CHECK(relative_error(deterministic, ref) < tolerance<Scalar>(16.0));
  // out aliasing v: the result equals the separate-output one, without noise.
  step.noise_std = 0.0;
  fc::apply_diagonal_power<Scalar>(ddiag.data(), dv.data(), d, step, dv.data(), nullptr, nullptr);
  CHECK(relative_error(to_host(dv, d), ref) < tolerance<Scalar>());
}

TEMPLATE_TEST_CASE("apply_diagonal_power: noise is seeded, fresh per counter, and distributed as σ·F^{-1/4}·N(0,1)",
                   "[cuda][diagonal]", float, double) {
  using Scalar = TestType;
  const std::size_t d = (std::size_t(1) << 20) + 3;
  const auto diag = random_positive<Scalar>(d, 21);
  auto ddiag = to_device(diag);
  fc::DiagonalStep step;
  step.scale = 0.0;
  step.damping = 0.1;
  step.noise_std = 0.5;
  step.seed = 1234;
  fc::DeviceBuffer<Scalar> a(d), b(d), c(d);
  fc::apply_diagonal_power<Scalar>(ddiag.data(), nullptr, d, step, a.data(), nullptr, nullptr);
  fc::apply_diagonal_power<Scalar>(ddiag.data(), nullptr, d, step, b.data(), nullptr, nullptr);
  step.noise_counter = 1;
  fc::apply_diagonal_power<Scalar>(ddiag.data(), nullptr, d, step, c.data(), nullptr, nullptr);
  const auto ha = to_host(a, d), hb = to_host(b, d), hc = to_host(c, d);
  CHECK(std::memcmp(ha.data(), hb.data(), d * sizeof(Scalar)) == 0);
  // Standardise: z = step / (σ·(diag+λ)^{-1/4}) must be N(0,1); a fresh counter gives independent z.
  double mean = 0, var = 0, cross = 0;
  for (std::size_t j = 0; j < d; ++j) {
    const double f = std::pow(static_cast<double>(diag[j]) + 0.1, -0.25) * 0.5;
    const double za = ha[j] / f, zc = hc[j] / f;
    mean += za;
    var += za * za;
    cross += za * zc;
  }
  const double n = static_cast<double>(d);
  mean /= n;
  var = var / n - mean * mean;
  cross /= n;
  CHECK(std::abs(mean) < 6.0 / std::sqrt(n));
  CHECK(std::abs(var - 1.0) < 6.0 * std::sqrt(2.0 / n));
  CHECK(std::abs(cross) < 6.0 / std::sqrt(n));
}

TEMPLATE_TEST_CASE("gram_matrix: α·GᵀG + β·K by GEMM and by SYRK equals a CPU loop", "[cuda][gram]", float, double) {
  using Scalar = TestType;
  const Shape shapes[] = {{1, 1}, {1, 7}, {300, 1}, {1000, 33}, {129, 1024}, {100'003, 8}};
  fc::Context context;
  std::uint64_t seed = 300;
  for (const Shape s : shapes) {
    const auto g = random_normal<Scalar>(s.d * s.m, ++seed);
    // K0 symmetric: SYRK reads and writes only the lower triangle (the contract in routines.hpp), and
    // every caller accumulates a symmetric Gram matrix.
    auto k0 = random_normal<Scalar>(s.m * s.m, ++seed);
    for (std::size_t b = 0; b < s.m; ++b)
      for (std::size_t a = b + 1; a < s.m; ++a) k0[b + a * s.m] = k0[a + b * s.m];
    // CPU reference: K[a,b] = 0.5·Σⱼ g[a·d+j]·g[b·d+j] + 2·K0[a,b].
    std::vector<double> ref(s.m * s.m);
    for (std::size_t b = 0; b < s.m; ++b)
      for (std::size_t a = 0; a < s.m; ++a) {
        double sum = 0.0;
        for (std::size_t j = 0; j < s.d; ++j)
          sum += static_cast<double>(g[a * s.d + j]) * static_cast<double>(g[b * s.d + j]);
        ref[a + b * s.m] = 0.5 * sum + 2.0 * static_cast<double>(k0[a + b * s.m]);
      }
    auto dg = to_device(g);
    for (const auto algorithm : {fc::GramAlgorithm::gemm, fc::GramAlgorithm::syrk}) {
      CAPTURE(s.d, s.m, static_cast<int>(algorithm));
      auto dk = to_device(k0);
      fc::gram_matrix<Scalar>(context, dg.data(), s.d, s.m, Scalar(0.5), Scalar(2), dk.data(), algorithm);
      CHECK(relative_error(to_host(dk, s.m * s.m), ref) < tolerance<Scalar>(static_cast<double>(s.d)));
    }
  }
}

TEMPLATE_TEST_CASE("accumulate_block_outer_products: every diagonal block equals a CPU sum of gᵢgᵢᵀ", "[cuda][gram]",
                   float, double) {
  using Scalar = TestType;
  const std::tuple<std::size_t, std::size_t, std::size_t> cases[] = {
      {1, 1, 1}, {10, 3, 4}, {1000, 64, 17}, {257, 300, 5}, {4099, 128, 64}, {300, 7, 1024}};
  fc::Context context;
  std::uint64_t seed = 500;
  for (const auto& [d, b, m] : cases) {
    CAPTURE(d, b, m);
    const std::size_t blocks = fc::block_count(d, b);
    const auto g = random_normal<Scalar>(d * m, ++seed);
    const auto init = random_normal<Scalar>(blocks * b * b, ++seed);
    const double alpha = 0.3;
    // CPU reference: block k (size s_k, leading dimension s_k, at k·b·b) += α·Σᵢ g_k gₖᵀ.
    std::vector<double> ref(init.begin(), init.end());
    for (std::size_t k = 0; k < blocks; ++k) {
      const std::size_t first = k * b, size = std::min(b, d - first);
      for (std::size_t c = 0; c < size; ++c)
        for (std::size_t r = 0; r < size; ++r) {
          double sum = 0.0;
          for (std::size_t i = 0; i < m; ++i)
            sum += static_cast<double>(g[i * d + first + r]) * static_cast<double>(g[i * d + first + c]);
          ref[k * b * b + r + c * size] += alpha * sum;
        }
    }
    auto dg = to_device(g);
    auto dblocks = to_device(init);
    fc::accumulate_block_outer_products<Scalar>(context, dg.data(), d, m, b, static_cast<Scalar>(alpha),
                                                dblocks.data());
    CHECK(relative_error(to_host(dblocks, blocks * b * b), ref) < tolerance<Scalar>(static_cast<double>(m)));
  }
}

namespace {
// CPU reference of F·x for F = λI + (1/m)GGᵀ, in double.
template <class Scalar>
Eigen::VectorXd fisher_times(const std::vector<Scalar>& g, std::size_t d, std::size_t m, double lambda,
                             const Eigen::VectorXd& x) {
  const Eigen::MatrixXd G =
      Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>(g.data(), static_cast<Eigen::Index>(d),
                                                                              static_cast<Eigen::Index>(m))
          .template cast<double>();
  return lambda * x + G * (G.transpose() * x) / static_cast<double>(m);
}
}  // namespace

TEMPLATE_TEST_CASE("woodbury_inverse_product: (v − G(mλI+GᵀG)⁻¹Gᵀv)/λ equals a dense solve", "[cuda][woodbury]", float,
                   double) {
  using Scalar = TestType;
  // Small shapes against a dense d×d LDLT of λI + GGᵀ/m (m > d included: the m×m system stays definite).
  const Shape shapes[] = {{1, 1}, {50, 1}, {200, 17}, {64, 100}, {33, 1024}};
  fc::Context context;
  std::uint64_t seed = 700;
  const double lambda = 0.3;
  for (const Shape s : shapes) {
    CAPTURE(s.d, s.m);
    const auto g = random_normal<Scalar>(s.d * s.m, ++seed);
    const auto v = random_normal<Scalar>(s.d, ++seed);
    const auto G = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>(
                       g.data(), static_cast<Eigen::Index>(s.d), static_cast<Eigen::Index>(s.m))
                       .template cast<double>()
                       .eval();
    const Eigen::MatrixXd F = lambda * Eigen::MatrixXd::Identity(G.rows(), G.rows()) +
                              G * G.transpose() / static_cast<double>(s.m);
    const Eigen::VectorXd vd =
        Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(v.data(), G.rows()).template cast<double>();
    const Eigen::VectorXd ref = F.ldlt().solve(vd);

    auto dg = to_device(g);
    auto dv = to_device(v);
    fc::DeviceBuffer<Scalar> gram(s.m * s.m), factor(s.m * s.m), out(s.d), work(s.m);
    fc::gram_matrix<Scalar>(context, dg.data(), s.d, s.m, Scalar(1), Scalar(0), gram.data());
    fc::cholesky_factor<Scalar>(context, gram.data(), s.m, static_cast<Scalar>(lambda * s.m), factor.data());
    fc::woodbury_inverse_product<Scalar>(context, dg.data(), s.d, s.m, factor.data(), static_cast<Scalar>(lambda),
                                         dv.data(), out.data(), work.data());
    // The system's condition number is at most 1 + ‖G‖²/(mλ); allow for it in float.
    const double condition = 1.0 + G.squaredNorm() / (static_cast<double>(s.m) * lambda);
    CHECK(relative_error(to_host(out, s.d), ref) < tolerance<Scalar>(static_cast<double>(s.m)) * condition);

    // low_rank_product: F·v = λv + (1/m)G(Gᵀv).
    fc::low_rank_product<Scalar>(context, dg.data(), s.d, s.m, dv.data(), static_cast<Scalar>(1.0 / s.m),
                                 static_cast<Scalar>(lambda), out.data(), work.data());
    CHECK(relative_error(to_host(out, s.d), fisher_times(g, s.d, s.m, lambda, vd)) <
          tolerance<Scalar>(static_cast<double>(s.d)));
  }
}

TEMPLATE_TEST_CASE("woodbury_inverse_product: F·out = v for d up to 10⁷", "[cuda][woodbury]", float, double) {
  using Scalar = TestType;
  const Shape shapes[] = {{100'001, 64}, {10'000'000, 2}};
  fc::Context context;
  const double lambda = 1.0;
  std::uint64_t seed = 900;
  for (const Shape s : shapes) {
    CAPTURE(s.d, s.m);
    // Gradients of scale 1/√d keep GᵀG/m near the damping, so the float solve stays well conditioned.
    const auto g = random_normal<Scalar>(s.d * s.m, ++seed, 0.0, 1.0 / std::sqrt(static_cast<double>(s.d)) * 3.0);
    const auto v = random_normal<Scalar>(s.d, ++seed);
    auto dg = to_device(g);
    auto dv = to_device(v);
    fc::DeviceBuffer<Scalar> gram(s.m * s.m), factor(s.m * s.m), out(s.d), work(s.m);
    fc::gram_matrix<Scalar>(context, dg.data(), s.d, s.m, Scalar(1), Scalar(0), gram.data());
    fc::cholesky_factor<Scalar>(context, gram.data(), s.m, static_cast<Scalar>(lambda * s.m), factor.data());
    fc::woodbury_inverse_product<Scalar>(context, dg.data(), s.d, s.m, factor.data(), static_cast<Scalar>(lambda),
                                         dv.data(), out.data(), work.data());
    const auto x = to_host(out, s.d);
    const Eigen::VectorXd xd =
        Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(x.data(), static_cast<Eigen::Index>(s.d))
            .template cast<double>();
    const Eigen::VectorXd vd =
        Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(v.data(), static_cast<Eigen::Index>(s.d))
            .template cast<double>();
    CHECK(relative_error(fisher_times(g, s.d, s.m, lambda, xd), vd) < tolerance<Scalar>(static_cast<double>(s.d)));
  }
}

TEMPLATE_TEST_CASE("cholesky_factor: a matrix that is not positive definite throws NumericalError", "[cuda][woodbury]",
                   float, double) {
  using Scalar = TestType;
  fc::Context context;
  const std::size_t m = 5;
  std::vector<Scalar> minus_identity(m * m, Scalar(0));
  for (std::size_t i = 0; i < m; ++i) minus_identity[i + i * m] = Scalar(-1);
  auto gram = to_device(minus_identity);
  fc::DeviceBuffer<Scalar> factor(m * m);
  CHECK_THROWS_AS(fc::cholesky_factor<Scalar>(context, gram.data(), m, Scalar(0.5), factor.data()),
                  fisher_unlearn::NumericalError);
  // The same matrix shifted past its negative eigenvalue factors.
  CHECK_NOTHROW(fc::cholesky_factor<Scalar>(context, gram.data(), m, Scalar(1.5), factor.data()));
}

TEMPLATE_TEST_CASE("block_eigendecomposition + block_power_product: F_k^p v_k equals a dense CPU eigen-solve per block",
                   "[cuda][gram]", float, double) {
  using Scalar = TestType;
  const std::tuple<std::size_t, std::size_t, std::size_t> cases[] = {
      {1, 1, 1}, {10, 3, 4}, {257, 64, 17}, {100, 300, 5}, {2051, 128, 40}};
  fc::Context context;
  std::uint64_t seed = 1100;
  const double lambda = 0.2;
  for (const auto& [d, b, m] : cases) {
    const std::size_t blocks = fc::block_count(d, b);
    const std::size_t bb = std::min(b, d);  // the routines' block size when b > d
    const auto g = random_normal<Scalar>(d * m, ++seed);
    const auto v = random_normal<Scalar>(d, ++seed);
    auto dg = to_device(g);
    auto dv = to_device(v);
    fc::DeviceBuffer<Scalar> sums(blocks * b * b), values(d), out(d), work(d);
    sums.set_zero();
    fc::accumulate_block_outer_products<Scalar>(context, dg.data(), d, m, b, Scalar(1), sums.data());
    fc::block_eigendecomposition<Scalar>(context, sums.data(), d, b, values.data());
    for (const double p : {-1.0, 1.0, -0.5}) {
      CAPTURE(d, b, m, p);
      // CPU reference: for each block, F_k = λI + (1/m)Σᵢ g_{i,k}g_{i,k}ᵀ in double, F_k^p v_k by eigen-solve.
      Eigen::VectorXd ref(static_cast<Eigen::Index>(d));
      for (std::size_t k = 0; k < blocks; ++k) {
        const std::size_t first = k * bb, size = std::min(bb, d - first);
        Eigen::MatrixXd F = lambda * Eigen::MatrixXd::Identity(static_cast<Eigen::Index>(size),
                                                                 static_cast<Eigen::Index>(size));
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t c = 0; c < size; ++c)
            for (std::size_t r = 0; r < size; ++r)
              F(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) +=
                  static_cast<double>(g[i * d + first + r]) * static_cast<double>(g[i * d + first + c]) /
                  static_cast<double>(m);
        Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(F);
        Eigen::VectorXd vk(static_cast<Eigen::Index>(size));
        for (std::size_t r = 0; r < size; ++r) vk[static_cast<Eigen::Index>(r)] = static_cast<double>(v[first + r]);
        const Eigen::VectorXd powered = eig.eigenvalues().array().pow(p).matrix();
        ref.segment(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(size)) =
            eig.eigenvectors() * powered.asDiagonal() * (eig.eigenvectors().transpose() * vk);
      }
      fc::block_power_product<Scalar>(context, sums.data(), values.data(), d, b, p, 1.0 / static_cast<double>(m),
                                      lambda, dv.data(), out.data(), work.data());
      // Eigenvalue conditioning: F_k's spread is at most 1 + (Σ g²)/(mλ); float eigenvectors carry it.
      CHECK(relative_error(to_host(out, d), ref) < tolerance<Scalar>(static_cast<double>(bb * m)) * 50.0);
    }
  }
}
