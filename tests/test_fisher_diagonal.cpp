// DiagonalFisher against the dense fp64 diagonal reference diag(λ + (1/m)Σ g²)^p.
#include <catch2/catch.hpp>

#include "fisher_contract.hpp"
#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/diagonal.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_test;

static_assert(fu::FisherEstimator<fu::DiagonalFisher<float>>);
static_assert(fu::FisherEstimator<fu::DiagonalFisher<double>>);

namespace {
// Everything of the concept except set_damping: must not satisfy it.
struct WithoutSetDamping {
  using Scalar = double;
  std::size_t dimension() const { return 1; }
  void add_gradient(Eigen::Ref<const fu::Vector<double>>) {}
  void add_gradients(Eigen::Ref<const fu::Matrix<double>>) {}
  void finalize() {}
  void apply_power(double, Eigen::Ref<const fu::Vector<double>>, Eigen::Ref<fu::Vector<double>>) const {}
  bool supports_power(double) const { return true; }
  double damping() const { return 1; }
  std::size_t memory_bytes() const { return 0; }
  std::size_t num_gradients() const { return 0; }
  void clear() {}
};
struct WithSetDamping : WithoutSetDamping {
  void set_damping(double) {}
};
}  // namespace
static_assert(!fu::FisherEstimator<WithoutSetDamping>);
static_assert(fu::FisherEstimator<WithSetDamping>);  // the skeleton above is complete but for that one member

TEMPLATE_TEST_CASE("DiagonalFisher: F^p v equals the dense diagonal reference", "[fisher][diagonal]", float, double) {
  using Scalar = TestType;
  struct Shape { Eigen::Index d, m; };
  for (const Shape shape : {Shape{5, 3}, Shape{5, 40}, Shape{33, 12}, Shape{60, 90}}) {
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(shape.d, shape.m, 100 + shape.d + shape.m);
    const Eigen::MatrixXd diag_moment = Eigen::MatrixXd(empirical_second_moment(g).diagonal().asDiagonal());
    const double damping = test_damping<Scalar>(diag_moment);
    fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(shape.d), static_cast<Scalar>(damping));
    fisher.add_gradients(g);
    fisher.finalize();
    const fu::Vector<Scalar> v = random_vector<Scalar>(shape.d, 7);
    for (double p : test_powers()) {
      fu::Vector<Scalar> out(shape.d);
      fisher.apply_power(p, v, out);
      const Eigen::VectorXd ref =
          dense_power(diag_moment, static_cast<double>(fisher.damping()), p) * v.template cast<double>();
      INFO("d = " << shape.d << ", m = " << shape.m << ", p = " << p);
      CHECK(relative_error(out, ref) < tolerance<Scalar>());
    }
  }
}

TEMPLATE_TEST_CASE("DiagonalFisher: a batch equals its columns added one at a time", "[fisher][diagonal]", float,
                   double) {
  using Scalar = TestType;
  using E = fu::DiagonalFisher<Scalar>;
  const double error = batch_versus_single_error<E>([](Eigen::Index d, Scalar damping) { return E(static_cast<std::size_t>(d), damping); }, 20, 15, -1.0);
  INFO("relative difference " << error);
  CHECK(error < tolerance<Scalar>() / 100);
}

TEMPLATE_TEST_CASE("DiagonalFisher: set_damping after finalize equals a fresh estimator with that damping",
                   "[fisher][diagonal]", float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(12, 8, 5);
  fu::DiagonalFisher<Scalar> changed(12, Scalar(2)), fresh(12, Scalar(0.01));
  changed.add_gradients(g);
  fresh.add_gradients(g);
  changed.finalize();
  fresh.finalize();
  changed.set_damping(Scalar(0.01));
  const fu::Vector<Scalar> v = random_vector<Scalar>(12, 6);
  fu::Vector<Scalar> a(12), b(12);
  changed.apply_power(-0.5, v, a);
  fresh.apply_power(-0.5, v, b);
  CHECK(a == b);
  CHECK(fresh.diagonal().minCoeff() > Scalar(0.01));
}

TEMPLATE_TEST_CASE("DiagonalFisher: bad input throws a typed exception and leaves the estimator unchanged",
                   "[fisher][diagonal]", float, double) {
  using E = fu::DiagonalFisher<TestType>;
  check_protocol_and_bad_input<E>([](Eigen::Index d, TestType damping) { return E(static_cast<std::size_t>(d), damping); });
}

TEST_CASE("DiagonalFisher: powers p and -p are inverse to each other and p = 0 is the identity", "[fisher][diagonal]") {
  const fu::Matrix<double> g = random_gradients<double>(25, 10, 9);
  fu::DiagonalFisher<double> fisher(25, 0.05);
  fisher.add_gradients(g);
  fisher.finalize();
  const fu::Vector<double> v = random_vector<double>(25, 10);
  fu::Vector<double> half(25), back(25), identity(25);
  fisher.apply_power(0.37, v, half);
  fisher.apply_power(-0.37, half, back);
  fisher.apply_power(0.0, v, identity);
  CHECK(relative_error(back, v) < 1e-14);
  CHECK(relative_error(identity, v) < 1e-15);
  CHECK(fisher.memory_bytes() == 3 * 25 * sizeof(double));  // sum, mean, and the batch scratch vector
}

TEST_CASE("DiagonalFisher: finite gradients whose squares overflow are rejected one at a time as in a batch",
          "[fisher][diagonal]") {
  // Regression: add_gradient accepted a finite 1e200 entry (its square is Inf in double) that
  // add_gradients rejected, and apply_power(+1) then returned NaN (Inf · 0) without a word.
  fu::DiagonalFisher<double> f(3, 0.5);
  const fu::Vector<double> ok = (fu::Vector<double>(3) << 1.0, -2.0, 3.0).finished();
  f.add_gradient(ok);
  const fu::Vector<double> huge = (fu::Vector<double>(3) << 1e200, 0.0, 1.0).finished();
  CHECK_THROWS_AS(f.add_gradient(huge), fu::NonFiniteError);
  fu::Matrix<double> huge_batch(3, 1);
  huge_batch.col(0) = huge;
  CHECK_THROWS_AS(f.add_gradients(huge_batch), fu::NonFiniteError);
  // Squares that fit but whose sum does not: the second one is refused, one at a time and as a batch.
  const fu::Vector<double> big = (fu::Vector<double>(3) << 1.2e154, 0.0, 0.0).finished();
  f.add_gradient(big);
  CHECK_THROWS_AS(f.add_gradient(big), fu::NonFiniteError);
  fu::Matrix<double> big_batch(3, 1);
  big_batch.col(0) = big;
  CHECK_THROWS_AS(f.add_gradients(big_batch), fu::NonFiniteError);
  REQUIRE(f.num_gradients() == 2);  // the refused ones left nothing behind
  f.finalize();
  const fu::Vector<double> diag = f.diagonal();
  CHECK(diag[0] == Approx(0.5 + (1.0 + 1.2e154 * 1.2e154) / 2).epsilon(1e-12));
  CHECK(diag[1] == Approx(0.5 + 2.0));
  CHECK(diag[2] == Approx(0.5 + 4.5));

  // F v with a finite F that overflows on multiplication: typed, never NaN or Inf.
  fu::Vector<double> out(3);
  const fu::Vector<double> v = (fu::Vector<double>(3) << 1e10, 0.0, 1.0).finished();
  CHECK_THROWS_AS(f.apply_power(1.0, v, out), fu::NumericalError);
  const fu::Vector<double> small = (fu::Vector<double>(3) << 1.0, 0.0, 1.0).finished();
  f.apply_power(1.0, small, out);
  CHECK(out.allFinite());
  f.apply_power(-1.0, v, out);
  CHECK(out.allFinite());

  fu::DiagonalFisher<float> g(2, 1.0f);
  g.add_gradient((fu::Vector<float>(2) << 1e15f, 0.0f).finished());  // 1e30 fits a double, F v not a float
  g.finalize();
  fu::Vector<float> fout(2);
  CHECK_THROWS_AS(g.apply_power(1.0, (fu::Vector<float>(2) << 1e10f, 1.0f).finished(), fout), fu::NumericalError);
}

TEMPLATE_TEST_CASE("DiagonalFisher: several row blocks on 1, 2 and 3 threads give the same bits and the fp64 reference",
                   "[fisher][diagonal][threads]", float, double) {
  using Scalar = TestType;
  // d spans several accumulation blocks (2048 rows) and product blocks (8192 rows), with a ragged tail.
  const Eigen::Index d = 20'011, m = 5;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, m, 91);
  const fu::Vector<Scalar> v = random_vector<Scalar>(d, 92);
  // The fp64 reference: λ + (1/m)Σ g², elementwise.
  const Eigen::VectorXd mean_sq = g.template cast<double>().rowwise().squaredNorm() / double(m);
  const double damping = 0.1 * mean_sq.maxCoeff();
  std::vector<std::vector<fu::Vector<Scalar>>> outputs;
  for (std::size_t threads : {std::size_t(1), std::size_t(2), std::size_t(3)}) {
    fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(d), static_cast<Scalar>(damping));
    fisher.set_num_threads(threads);
    REQUIRE(fisher.num_threads() == threads);
    fisher.add_gradients(g.leftCols(2));
    fisher.add_gradients(g.rightCols(m - 2));
    fisher.finalize();
    std::vector<fu::Vector<Scalar>> outs;
    for (double p : {-1.0, -0.5, -0.25, 1.0, -0.3}) {
      fu::Vector<Scalar> out(d);
      fisher.apply_power(p, v, out);
      const Eigen::VectorXd ref =
          ((mean_sq.array() + double(static_cast<Scalar>(damping))).pow(p) * v.template cast<double>().array()).matrix();
      INFO("threads = " << threads << ", p = " << p);
      CHECK(relative_error(out, ref) < tolerance<Scalar>());
      outs.push_back(out);
    }
    outputs.push_back(outs);
  }
  for (std::size_t t = 1; t < outputs.size(); ++t)
    for (std::size_t k = 0; k < outputs[0].size(); ++k) CHECK((outputs[t][k].array() == outputs[0][k].array()).all());
}

TEMPLATE_TEST_CASE("DiagonalFisher: the common powers give the correctly rounded double arithmetic, bit for bit",
                   "[fisher][diagonal][threads]", float, double) {
  using Scalar = TestType;
  // One gradient of multiples of 1/1024 (|g| ≤ 1): g² and λ + g² are exact in double, so the mean the
  // estimator holds is known to the bit, and out_i = round(v_i ∘ (λ + g_i²)^p) in double arithmetic
  // (∘ = ×, /, / sqrt, / sqrt(sqrt)): correctly rounded operations, whatever the compiler flags. d covers
  // row blocks of 2048, the 16-entry chunks of the fused loop and a ragged tail (padding must not leak).
  for (const Eigen::Index d : {Eigen::Index(1), Eigen::Index(15), Eigen::Index(17), Eigen::Index(4'099)}) {
    std::mt19937 rng(static_cast<unsigned>(400 + d));
    std::uniform_int_distribution<int> step(-1024, 1024);
    fu::Matrix<Scalar> g(d, 1);
    for (Eigen::Index i = 0; i < d; ++i) g(i, 0) = static_cast<Scalar>(step(rng) / 1024.0);
    const fu::Vector<Scalar> v = random_vector<Scalar>(d, 401);
    const Scalar damping = static_cast<Scalar>(0.0625);
    for (std::size_t threads : {std::size_t(1), std::size_t(3)}) {
      fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(d), damping);
      fisher.set_num_threads(threads);
      fisher.add_gradients(g);
      fisher.finalize();
      for (double p : {1.0, -1.0, -0.5, -0.25}) {
        fu::Vector<Scalar> out(d);
        fisher.apply_power(p, v, out);
        fu::Vector<Scalar> expected(d);
        for (Eigen::Index i = 0; i < d; ++i) {
          const double gi = static_cast<double>(g(i, 0));
          const double x = gi * gi + static_cast<double>(damping);
          const double a = static_cast<double>(v[i]);
          const double r = p == 1.0 ? a * x : p == -1.0 ? a / x : p == -0.5 ? a / std::sqrt(x) : a / std::sqrt(std::sqrt(x));
          expected[i] = static_cast<Scalar>(r);
        }
        INFO("d = " << d << ", threads = " << threads << ", p = " << p);
        CHECK((out.array() == expected.array()).all());
      }
    }
  }
}

TEST_CASE("DiagonalFisher: a NaN in the last row block on 2 threads throws and changes nothing", "[fisher][diagonal][threads]") {
  const Eigen::Index d = 10'000;
  fu::Matrix<float> g = random_gradients<float>(d, 3, 93);
  fu::DiagonalFisher<float> fisher(static_cast<std::size_t>(d), 0.1f);
  fisher.set_num_threads(2);
  fisher.add_gradients(g);
  fisher.finalize();
  const fu::Vector<float> before = fisher.diagonal();
  g(d - 1, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(fisher.add_gradients(g), fu::NonFiniteError);
  CHECK(fisher.num_gradients() == 3);
  fisher.finalize();
  CHECK((fisher.diagonal().array() == before.array()).all());
}

TEMPLATE_TEST_CASE("DiagonalFisher: a batch of any width sums every column's squares exactly once",
                   "[fisher][diagonal][threads]", float, double) {
  // add_gradients takes columns eight, then four, then one at a time per pass. Entries are multiples of
  // 1/64 in [−2, 2] and differ between columns, so every square and every sum is exact in double: the
  // diagonal is known to the bit whatever the order or the compiler's contraction, and a column skipped,
  // read twice or read from the wrong place changes it. k covers every pass mix; d two row blocks of
  // 8 192 with a ragged tail.
  using Scalar = TestType;
  const Eigen::Index d = 2 * 8192 + 77;
  const double damping = 0.5;
  for (const Eigen::Index k : {1, 3, 4, 7, 8, 9, 12, 13, 16, 21}) {
    std::mt19937 rng(static_cast<unsigned>(700 + k));
    std::uniform_int_distribution<int> step(-128, 128);
    fu::Matrix<Scalar> g(d, k);
    for (Eigen::Index j = 0; j < k; ++j)
      for (Eigen::Index i = 0; i < d; ++i) g(i, j) = static_cast<Scalar>(step(rng) / 64.0);
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(d);
    for (Eigen::Index j = 0; j < k; ++j)
      for (Eigen::Index i = 0; i < d; ++i) sum[i] += static_cast<double>(g(i, j)) * static_cast<double>(g(i, j));
    const fu::Vector<Scalar> expected = (sum.array() / static_cast<double>(k) + damping).matrix().template cast<Scalar>();
    for (std::size_t threads : {std::size_t(1), std::size_t(2)}) {
      fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(d), static_cast<Scalar>(damping));
      fisher.set_num_threads(threads);
      fisher.add_gradients(g);
      fisher.finalize();
      INFO("k = " << k << ", threads = " << threads);
      CHECK((fisher.diagonal().array() == expected.array()).all());
    }
  }
}
