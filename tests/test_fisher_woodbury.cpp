// WoodburyFisher against the dense fp64 reference (λI + (1/m)GGᵀ)^p, its sliding window against a
// rebuild, and its invariances (column order, damping changes).
#include <catch2/catch.hpp>

#include "fisher_contract.hpp"
#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/woodbury.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <tuple>
#include <type_traits>

namespace fu = fisher_unlearn;
using namespace fisher_test;

static_assert(fu::FisherEstimator<fu::WoodburyFisher<float>>);
static_assert(fu::FisherEstimator<fu::WoodburyFisher<double>>);

namespace {
// A Woodbury-like type whose apply_power is not const: must not satisfy the concept.
struct MutableApply {
  using Scalar = float;
  std::size_t dimension() const { return 1; }
  void add_gradient(Eigen::Ref<const fu::Vector<float>>) {}
  void add_gradients(Eigen::Ref<const fu::Matrix<float>>) {}
  void finalize() {}
  void apply_power(double, Eigen::Ref<const fu::Vector<float>>, Eigen::Ref<fu::Vector<float>>) {}
  bool supports_power(double) const { return true; }
  float damping() const { return 1; }
  void set_damping(float) {}
  std::size_t memory_bytes() const { return 0; }
  std::size_t num_gradients() const { return 0; }
  void clear() {}
};
}  // namespace
static_assert(!fu::FisherEstimator<MutableApply>);

namespace {
template <class Scalar>
fu::Vector<Scalar> product(const fu::WoodburyFisher<Scalar>& fisher, double p, const fu::Vector<Scalar>& v) {
  fu::Vector<Scalar> out(v.size());
  fisher.apply_power(p, v, out);
  return out;
}
}  // namespace

TEMPLATE_TEST_CASE("WoodburyFisher: F^p v equals the dense reference for m below and above d", "[fisher][woodbury]",
                   float, double) {
  using Scalar = TestType;
  struct Shape { Eigen::Index d, m; };
  for (const Shape shape : {Shape{5, 1}, Shape{5, 3}, Shape{5, 40}, Shape{33, 12}, Shape{60, 1}, Shape{60, 90}}) {
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(shape.d, shape.m, 200 + shape.d + shape.m);
    const Eigen::MatrixXd moment = empirical_second_moment(g);
    fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(shape.d), static_cast<Scalar>(test_damping<Scalar>(moment)));
    fisher.add_gradients(g);
    fisher.finalize();
    CHECK(fisher.spectrum().size() == std::min(shape.d, shape.m));
    const fu::Vector<Scalar> v = random_vector<Scalar>(shape.d, 8);
    const double lambda = static_cast<double>(fisher.damping());
    for (double p : test_powers()) {
      const Eigen::VectorXd ref = dense_power(moment, lambda, p) * v.template cast<double>();
      fu::Vector<Scalar> spectral(shape.d);
      fisher.spectral_power(p, v, spectral);
      INFO("d = " << shape.d << ", m = " << shape.m << ", p = " << p);
      CHECK(relative_error(product(fisher, p, v), ref) < tolerance<Scalar>());
      CHECK(relative_error(spectral, ref) < tolerance<Scalar>());
      if (p == -1.0) {
        fu::Vector<Scalar> woodbury(shape.d);
        fisher.inverse_product(v, woodbury);
        CHECK(relative_error(woodbury, ref) < tolerance<Scalar>());
      }
    }
  }
}

TEST_CASE("WoodburyFisher: float gradients give the double answer because the m×m work is done in double",
          "[fisher][woodbury]") {
  // κ(F) ≈ 1e4: a float eigendecomposition would lose ~κ·ε_float ≈ 1e-3; double accumulation does not.
  const fu::Matrix<float> g = random_gradients<float>(40, 25, 3);
  const Eigen::MatrixXd moment = empirical_second_moment(g);
  const float damping = static_cast<float>(1e-4 * largest_eigenvalue(moment));
  fu::WoodburyFisher<float> fisher(40, damping);
  fisher.add_gradients(g);
  fisher.finalize();
  const fu::Vector<float> v = random_vector<float>(40, 4);
  for (double p : test_powers()) {
    const Eigen::VectorXd ref = dense_power(moment, static_cast<double>(damping), p) * v.cast<double>();
    INFO("p = " << p);
    CHECK(relative_error(product(fisher, p, v), ref) < 1e-6);
  }
}

TEST_CASE("WoodburyFisher: the Woodbury solve and the spectral formula agree on ill-conditioned problems",
          "[fisher][woodbury]") {
  struct Shape { Eigen::Index d, m; };
  for (const Shape shape : {Shape{50, 20}, Shape{10, 30}}) {  // m > d: K has a null space of dimension m − d
    const fu::Matrix<double> g = random_gradients<double>(shape.d, shape.m, 12);
    const Eigen::MatrixXd moment = empirical_second_moment(g);
    for (double relative_damping : {1e-2, 1e-5, 1e-8}) {
      const double damping = relative_damping * largest_eigenvalue(moment);
      fu::WoodburyFisher<double> fisher(static_cast<std::size_t>(shape.d), damping);
      fisher.add_gradients(g);
      fisher.finalize();
      CHECK(fisher.spectrum().size() == std::min(shape.d, shape.m));
      // v mostly in the span of the gradients: the hard case (v/λ and Gc nearly cancel).
      const fu::Vector<double> v =
          g * random_vector<double>(shape.m, 5) + 1e-3 * random_vector<double>(shape.d, 6);
      const double condition = (damping + largest_eigenvalue(moment)) / damping;
      for (double p : test_powers()) {
        const Eigen::VectorXd ref = dense_power(moment, damping, p) * v;
        fu::Vector<double> spectral(shape.d);
        fisher.spectral_power(p, v, spectral);
        INFO("d = " << shape.d << ", m = " << shape.m << ", relative damping " << relative_damping << ", p = " << p
                    << ": spectral " << relative_error(spectral, ref));
        CHECK(relative_error(spectral, ref) < 1e-13 * condition);
        if (p == -1.0) {
          fu::Vector<double> woodbury(shape.d);
          fisher.inverse_product(v, woodbury);
          INFO("woodbury " << relative_error(woodbury, ref));
          CHECK(relative_error(woodbury, ref) < 1e-13 * condition);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("WoodburyFisher: the sliding window equals a rebuild from the last window gradients",
                   "[fisher][woodbury]", float, double) {
  using Scalar = TestType;
  const Eigen::Index d = 24;
  const std::size_t window = 7;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, 40, 31);
  const fu::Vector<Scalar> v = random_vector<Scalar>(d, 32);
  const Scalar damping = static_cast<Scalar>(test_damping<Scalar>(empirical_second_moment(g)));
  fu::WoodburyFisher<Scalar> sliding(static_cast<std::size_t>(d), damping, window);
  // Arrivals in singles and batches, including a batch longer than the window.
  Eigen::Index added = 0;
  for (Eigen::Index batch : {1, 3, 1, 5, 1, 1, 10, 2, 1, 1, 6, 1, 3, 1, 3}) {
    if (batch == 1) sliding.add_gradient(g.col(added));
    else sliding.add_gradients(g.middleCols(added, batch));
    added += batch;
    REQUIRE(sliding.num_gradients() == std::min<std::size_t>(static_cast<std::size_t>(added), window));
    sliding.finalize();
    fu::WoodburyFisher<Scalar> rebuilt(static_cast<std::size_t>(d), damping);
    const Eigen::Index kept = std::min<Eigen::Index>(added, static_cast<Eigen::Index>(window));
    rebuilt.add_gradients(g.middleCols(added - kept, kept));
    rebuilt.finalize();
    for (double p : {-1.0, -0.5}) {
      INFO("after " << added << " gradients, p = " << p);
      CHECK(relative_error(product(sliding, p, v), product(rebuilt, p, v)) < tolerance<Scalar>() / 10);
    }
  }
  REQUIRE(added == 40);
}

TEMPLATE_TEST_CASE("WoodburyFisher: replace_oldest equals a rebuild without the oldest gradient", "[fisher][woodbury]",
                   float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(15, 9, 41);
  const fu::Vector<Scalar> v = random_vector<Scalar>(15, 42);
  fu::WoodburyFisher<Scalar> fisher(15, Scalar(0.2));  // unbounded: replace_oldest is explicit
  CHECK_THROWS_AS(fisher.replace_oldest(g.col(0)), fu::StateError);
  fisher.add_gradients(g.leftCols(6));
  fisher.replace_oldest(g.col(6));
  fisher.replace_oldest(g.col(7));
  fisher.add_gradient(g.col(8));
  fisher.replace_oldest(g.col(3));  // replaces g.col(2), the oldest left; g.col(3) is now twice in F
  CHECK(fisher.num_gradients() == 7);
  fisher.finalize();
  fu::Matrix<Scalar> expected(15, 7);
  expected << g.col(3), g.col(4), g.col(5), g.col(6), g.col(7), g.col(8), g.col(3);
  const Eigen::MatrixXd moment = empirical_second_moment(expected);
  for (double p : test_powers()) {
    const Eigen::VectorXd ref = dense_power(moment, 0.2, p) * v.template cast<double>();
    CHECK(relative_error(product(fisher, p, v), ref) < tolerance<Scalar>());
  }
}

TEMPLATE_TEST_CASE("WoodburyFisher: the result does not depend on the order of the gradients", "[fisher][woodbury]",
                   float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(30, 18, 51);
  std::vector<Eigen::Index> order(18);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(52));
  fu::Matrix<Scalar> permuted(30, 18);
  for (Eigen::Index j = 0; j < 18; ++j) permuted.col(j) = g.col(order[static_cast<std::size_t>(j)]);
  const Scalar damping = static_cast<Scalar>(test_damping<Scalar>(empirical_second_moment(g)));
  fu::WoodburyFisher<Scalar> a(30, damping), b(30, damping);
  a.add_gradients(g);
  for (Eigen::Index j = 0; j < 18; ++j) b.add_gradient(permuted.col(j));
  a.finalize();
  b.finalize();
  const fu::Vector<Scalar> v = random_vector<Scalar>(30, 53);
  for (double p : test_powers()) CHECK(relative_error(product(a, p, v), product(b, p, v)) < tolerance<Scalar>() / 10);
}

TEMPLATE_TEST_CASE("WoodburyFisher: set_damping after finalize equals a fresh estimator with that damping",
                   "[fisher][woodbury]", float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(20, 11, 61);
  fu::WoodburyFisher<Scalar> changed(20, Scalar(10)), fresh(20, Scalar(0.3));
  changed.add_gradients(g);
  fresh.add_gradients(g);
  changed.finalize();
  fresh.finalize();
  changed.set_damping(Scalar(0.3));
  const fu::Vector<Scalar> v = random_vector<Scalar>(20, 62);
  for (double p : test_powers()) {
    INFO("p = " << p);
    CHECK(relative_error(product(changed, p, v), product(fresh, p, v)) < 16 * std::numeric_limits<Scalar>::epsilon());
  }
  // set_damping before finalize is remembered too.
  fu::WoodburyFisher<Scalar> early(20, Scalar(10));
  early.set_damping(Scalar(0.3));
  early.add_gradients(g);
  early.finalize();
  CHECK(relative_error(product(early, -1.0, v), product(fresh, -1.0, v)) < 16 * std::numeric_limits<Scalar>::epsilon());
}

TEMPLATE_TEST_CASE("WoodburyFisher: a batch equals its columns added one at a time", "[fisher][woodbury]", float,
                   double) {
  using Scalar = TestType;
  using E = fu::WoodburyFisher<Scalar>;
  const double error = batch_versus_single_error<E>([](Eigen::Index d, Scalar damping) { return E(static_cast<std::size_t>(d), damping); }, 20, 15, -1.0);
  INFO("relative difference " << error);
  CHECK(error < tolerance<Scalar>() / 100);
}

TEMPLATE_TEST_CASE("WoodburyFisher: bad input throws a typed exception and leaves the estimator unchanged",
                   "[fisher][woodbury]", float, double) {
  using E = fu::WoodburyFisher<TestType>;
  check_protocol_and_bad_input<E>([](Eigen::Index d, TestType damping) { return E(static_cast<std::size_t>(d), damping); });
  // The windowed variant: a rejected gradient must not evict the oldest one.
  check_protocol_and_bad_input<E>([](Eigen::Index d, TestType damping) { return E(static_cast<std::size_t>(d), damping, 10); });
  E full(6, TestType(0.5), 3);
  full.add_gradients(random_gradients<TestType>(6, 3, 71));
  full.finalize();
  const fu::Vector<TestType> v = random_vector<TestType>(6, 72);
  const fu::Vector<TestType> before = product(full, -1.0, v);
  fu::Vector<TestType> bad = random_vector<TestType>(6, 73);
  bad[0] = std::numeric_limits<TestType>::infinity();
  CHECK_THROWS_AS(full.add_gradient(bad), fu::NonFiniteError);
  CHECK_THROWS_AS(full.replace_oldest(bad), fu::NonFiniteError);
  CHECK(full.num_gradients() == 3);
  CHECK(product(full, -1.0, v) == before);
}

TEMPLATE_TEST_CASE("WoodburyFisher: memory is m·d Scalars plus O(m²) doubles", "[fisher][woodbury]", float, double) {
  using Scalar = TestType;
  fu::WoodburyFisher<Scalar> fisher(100, Scalar(0.1), 8);
  fisher.add_gradients(random_gradients<Scalar>(100, 20, 81));
  fisher.finalize();
  CHECK(fisher.num_gradients() == 8);
  const std::size_t gradients = 8 * 100 * sizeof(Scalar);
  CHECK(fisher.memory_bytes() >= gradients);
  CHECK(fisher.memory_bytes() <= gradients + 4 * 8 * 8 * sizeof(double) + 8 * sizeof(double) + 8 * 8);
}

TEMPLATE_TEST_CASE("WoodburyFisher: zero gradients give F = λI and clear() releases the storage", "[fisher][woodbury]",
                   float, double) {
  using Scalar = TestType;
  fu::WoodburyFisher<Scalar> fisher(12, Scalar(0.5));
  fisher.add_gradients(fu::Matrix<Scalar>::Zero(12, 4));
  fisher.finalize();
  CHECK(fisher.spectrum().size() == 0);
  const fu::Vector<Scalar> v = random_vector<Scalar>(12, 91);
  for (double p : test_powers()) {
    fu::Vector<Scalar> spectral(12);
    fisher.spectral_power(p, v, spectral);
    const Eigen::VectorXd ref = std::pow(0.5, p) * v.template cast<double>();
    CHECK(relative_error(product(fisher, p, v), ref) < tolerance<Scalar>());
    CHECK(relative_error(spectral, ref) < tolerance<Scalar>());
  }
  fisher.clear();
  CHECK(fisher.memory_bytes() == 0);
  fisher.add_gradient(random_vector<Scalar>(12, 92));
  fisher.finalize();
  CHECK(fisher.spectrum().size() == 1);
}

TEMPLATE_TEST_CASE("WoodburyFisher: copies and moves, finalized or not, behave like the original", "[fisher][woodbury]",
                   float, double) {
  using Scalar = TestType;
  fu::WoodburyFisher<Scalar> empty(10, Scalar(0.5), 6);
  fu::WoodburyFisher<Scalar> copy_of_empty = empty;
  fu::WoodburyFisher<Scalar> moved_empty = std::move(copy_of_empty);
  CHECK(moved_empty.num_gradients() == 0);
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(10, 8, 95);
  moved_empty.add_gradients(g);
  moved_empty.finalize();
  const fu::WoodburyFisher<Scalar> copy = moved_empty;
  const fu::Vector<Scalar> v = random_vector<Scalar>(10, 96);
  CHECK(product(copy, -1.0, v) == product(moved_empty, -1.0, v));
  CHECK(copy.num_gradients() == 6);
}

namespace {
TEMPLATE_TEST_CASE("WoodburyFisher: the primal and dual forms give the dense answer on both sides of m = d",
                   "[fisher][woodbury]", float, double) {
  using Scalar = TestType;
  const Eigen::Index d = 30;
  for (const Eigen::Index m : {Eigen::Index{1}, Eigen::Index{29}, Eigen::Index{30}, Eigen::Index{31}, Eigen::Index{75}}) {
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, m, 700 + m);
    const Eigen::MatrixXd moment = empirical_second_moment(g);
    const auto damping = static_cast<Scalar>(test_damping<Scalar>(moment));
    const fu::Vector<Scalar> v = random_vector<Scalar>(d, 701);
    for (const auto form : {fu::WoodburyForm::automatic, fu::WoodburyForm::dual, fu::WoodburyForm::primal}) {
      fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), damping, 0, form);
      // Singles then a batch, so the automatic switch happens inside add_gradients when m > d.
      const Eigen::Index singles = std::min<Eigen::Index>(m, 20);
      for (Eigen::Index j = 0; j < singles; ++j) fisher.add_gradient(g.col(j));
      if (m > singles) fisher.add_gradients(g.rightCols(m - singles));
      fisher.finalize();
      const bool primal = form == fu::WoodburyForm::primal || (form == fu::WoodburyForm::automatic && m > d);
      INFO("m = " << m << ", form " << fu::to_string(form));
      CHECK(fisher.current_form() == (primal ? fu::WoodburyForm::primal : fu::WoodburyForm::dual));
      CHECK(fisher.spectrum().size() == std::min(d, m));
      for (double p : test_powers()) {
        INFO("p = " << p);
        const Eigen::VectorXd ref = dense_power(moment, static_cast<double>(damping), p) * v.template cast<double>();
        CHECK(relative_error(product(fisher, p, v), ref) < tolerance<Scalar>());
      }
      fu::Vector<Scalar> solved(d);
      fisher.inverse_product(v, solved);
      CHECK(relative_error(solved, dense_power(moment, static_cast<double>(damping), -1.0) * v.template cast<double>()) <
            tolerance<Scalar>());
    }
  }
}

TEMPLATE_TEST_CASE("WoodburyFisher: with m ≫ d the primal form holds no m×m matrix", "[fisher][woodbury]", float,
                   double) {
  using Scalar = TestType;
  const std::size_t d = 12, m = 1500;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(m), 711);
  fu::WoodburyFisher<Scalar> fisher(d, Scalar(0.1));
  for (Eigen::Index j = 0; j < g.cols(); ++j) fisher.add_gradient(g.col(j));
  fisher.finalize();
  CHECK(fisher.current_form() == fu::WoodburyForm::primal);
  // Gradients (with the doubling slack of the slot storage) plus O(d²) doubles, far below m² doubles.
  CHECK(fisher.memory_bytes() <= 2 * m * d * sizeof(Scalar) + 4 * d * d * sizeof(double) + 8 * m);
  const fu::Vector<Scalar> v = random_vector<Scalar>(static_cast<Eigen::Index>(d), 712);
  const Eigen::VectorXd ref = dense_power(empirical_second_moment(g), 0.1, -1.0) * v.template cast<double>();
  CHECK(relative_error(product(fisher, -1.0, v), ref) < tolerance<Scalar>());
  fisher.clear();
  CHECK(fisher.current_form() == fu::WoodburyForm::dual);
}

TEMPLATE_TEST_CASE("WoodburyFisher: the sliding window and replace_oldest work in the primal form", "[fisher][woodbury]",
                   float, double) {
  using Scalar = TestType;
  const Eigen::Index d = 6;
  const std::size_t window = 10;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, 30, 721);
  const fu::Vector<Scalar> v = random_vector<Scalar>(d, 722);
  const Scalar damping = static_cast<Scalar>(test_damping<Scalar>(empirical_second_moment(g)));
  fu::WoodburyFisher<Scalar> sliding(static_cast<std::size_t>(d), damping, window);
  Eigen::Index added = 0;
  for (Eigen::Index batch : {1, 4, 3, 1, 12, 2, 7}) {
    if (batch == 1) sliding.add_gradient(g.col(added));
    else sliding.add_gradients(g.middleCols(added, batch));
    added += batch;
    sliding.finalize();
    const Eigen::Index kept = std::min<Eigen::Index>(added, static_cast<Eigen::Index>(window));
    CHECK(sliding.current_form() == (kept > d ? fu::WoodburyForm::primal : fu::WoodburyForm::dual));
    fu::WoodburyFisher<Scalar> rebuilt(static_cast<std::size_t>(d), damping, 0, fu::WoodburyForm::dual);
    rebuilt.add_gradients(g.middleCols(added - kept, kept));
    rebuilt.finalize();
    INFO("after " << added << " gradients");
    CHECK(relative_error(product(sliding, -1.0, v), product(rebuilt, -1.0, v)) < tolerance<Scalar>());
    CHECK(relative_error(product(sliding, -0.25, v), product(rebuilt, -0.25, v)) < tolerance<Scalar>());
  }
  REQUIRE(added == 30);
  // replace_oldest: the window's oldest is column 20; replacing it equals a rebuild from 21..29 + new.
  const fu::Vector<Scalar> fresh = random_vector<Scalar>(d, 723);
  sliding.replace_oldest(fresh);
  sliding.finalize();
  fu::Matrix<Scalar> expected(d, 10);
  expected.leftCols(9) = g.middleCols(21, 9);
  expected.col(9) = fresh;
  fu::WoodburyFisher<Scalar> rebuilt(static_cast<std::size_t>(d), damping, 0, fu::WoodburyForm::dual);
  rebuilt.add_gradients(expected);
  rebuilt.finalize();
  CHECK(relative_error(product(sliding, -1.0, v), product(rebuilt, -1.0, v)) < tolerance<Scalar>());
}
}  // namespace

TEMPLATE_TEST_CASE("WoodburyFisher: many row blocks on 1, 2 and 3 threads give the same bits and the fp64 Woodbury reference",
                   "[fisher][woodbury][threads]", float, double) {
  using Scalar = TestType;
  // d spans several row blocks (4096) and reduction groups (d/16 rounded to blocks), with a ragged tail;
  // the gradients arrive in two batches, so the Gram's cross term is exercised too.
  const Eigen::Index d = 70'001, m = 7;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, m, 94);
  const fu::Vector<Scalar> v = random_vector<Scalar>(d, 95);
  // fp64 reference, by the identities in plain Eigen double arithmetic (no library kernel):
  // F⁻¹v = (v − G(mλI + GᵀG)⁻¹Gᵀv)/λ and F^p v = λ^p v + G·U·diag(((λ+σ)^p − λ^p)/(mσ))·Uᵀ·Gᵀv.
  const Eigen::MatrixXd gd = g.template cast<double>();
  const Eigen::VectorXd vd = v.template cast<double>();
  const Eigen::MatrixXd gram = gd.transpose() * gd;
  const double damping_wanted = 0.05 * gram.trace() / double(m) / double(d) * 100.0;
  const double lambda = double(static_cast<Scalar>(damping_wanted));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram / double(m));
  const Eigen::VectorXd gtv = gd.transpose() * vd;
  auto reference = [&](double p) -> Eigen::VectorXd {
    if (p == -1.0) {
      Eigen::MatrixXd system = gram;
      system.diagonal().array() += double(m) * lambda;
      return (vd - gd * system.llt().solve(gtv)) / lambda;
    }
    Eigen::VectorXd c = eig.eigenvectors().transpose() * gtv;
    for (Eigen::Index j = 0; j < m; ++j) {
      const double s = eig.eigenvalues()[j];
      c[j] *= (std::pow(lambda + s, p) - std::pow(lambda, p)) / (double(m) * s);
    }
    return std::pow(lambda, p) * vd + gd * (eig.eigenvectors() * c);
  };
  std::vector<std::vector<fu::Vector<Scalar>>> outputs;
  for (std::size_t threads : {std::size_t(1), std::size_t(2), std::size_t(3)}) {
    fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), static_cast<Scalar>(damping_wanted));
    fisher.set_num_threads(threads);
    REQUIRE(fisher.num_threads() == threads);
    fisher.add_gradients(g.leftCols(3));
    fisher.add_gradients(g.rightCols(m - 3));
    fisher.finalize();
    CHECK(std::abs(fisher.undamped_trace() - gram.trace() / double(m)) < 1e-12 * gram.trace());
    std::vector<fu::Vector<Scalar>> outs;
    for (double p : {-1.0, -0.25, 1.0}) {
      const fu::Vector<Scalar> out = product(fisher, p, v);
      INFO("threads = " << threads << ", p = " << p);
      CHECK(relative_error(out, reference(p)) < tolerance<Scalar>());
      outs.push_back(out);
    }
    outputs.push_back(outs);
  }
  for (std::size_t t = 1; t < outputs.size(); ++t)
    for (std::size_t k = 0; k < outputs[0].size(); ++k) CHECK((outputs[t][k].array() == outputs[0][k].array()).all());
}

TEMPLATE_TEST_CASE("Woodbury kernels: the four-column passes give the bits of the one-column loops",
                   "[fisher][woodbury][kernels]", float, double) {
  // The O(md) kernels take four columns per pass over v (Gᵀv) or out (α·v + G·y) for memory traffic;
  // each column's arithmetic must stay in the order of the one-column loops they replaced, rebuilt here
  // from detail::dot_in_double / detail::axpy_in_double with the same row blocks and reduction groups.
  namespace fd = fu::detail;
  using Scalar = TestType;
  const Eigen::Index d = 3 * fd::kRowBlock + 123;
  for (Eigen::Index m : {Eigen::Index(4), Eigen::Index(7), Eigen::Index(9)}) {
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, m, 96 + static_cast<unsigned>(m));
    const fu::Vector<Scalar> v = random_vector<Scalar>(d, 97);
    // Gᵀv, one column at a time.
    const Eigen::Index group_rows = fd::reduction_group_rows(d, m);
    Eigen::VectorXd expected_gtv = Eigen::VectorXd::Zero(m);
    for (Eigen::Index begin = 0; begin < d; begin += group_rows) {
      const Eigen::Index end = std::min(d, begin + group_rows);
      Eigen::VectorXd sums = Eigen::VectorXd::Zero(m);
      for (Eigen::Index r = begin; r < end; r += fd::kRowBlock) {
        const Eigen::Index n = std::min(fd::kRowBlock, end - r);
        const Eigen::VectorXd vb = v.segment(r, n).template cast<double>();
        for (Eigen::Index j = 0; j < m; ++j) sums[j] += fd::dot_in_double(g.col(j).data() + r, vb.data(), n);
      }
      if (begin == 0) expected_gtv = sums;
      else expected_gtv += sums;
    }
    for (std::size_t threads : {std::size_t(1), std::size_t(2)}) {
      INFO("m = " << m << ", threads = " << threads);
      const Eigen::VectorXd gtv = fd::transpose_times_vector(g, v, threads);
      CHECK((gtv.array() == expected_gtv.array()).all());
      CHECK(relative_error(gtv, Eigen::VectorXd(g.template cast<double>().transpose() * v.template cast<double>())) <
            1e-12);
    }
    // α·v + G·y, one column at a time.
    const Eigen::VectorXd y = Eigen::VectorXd::LinSpaced(m, -0.7, 1.3);
    const double alpha = 0.37;
    fu::Vector<Scalar> expected(d);
    for (Eigen::Index r = 0; r < d; r += fd::kRowBlock) {
      const Eigen::Index n = std::min(fd::kRowBlock, d - r);
      Eigen::VectorXd acc = alpha * v.segment(r, n).template cast<double>();
      for (Eigen::Index j = 0; j < m; ++j) fd::axpy_in_double(y[j], g.col(j).data() + r, acc.data(), n);
      expected.segment(r, n) = acc.template cast<Scalar>();
    }
    for (std::size_t threads : {std::size_t(1), std::size_t(2)}) {
      INFO("m = " << m << ", threads = " << threads);
      fu::Vector<Scalar> out(d);
      fd::scaled_plus_matrix_vector(alpha, v, g, y, out, threads);
      CHECK((out.array() == expected.array()).all());
    }
  }
}

// adopt_gradients takes the caller's storage on an empty dual estimator: the same state, bit for bit, as
// add_gradients (F^p v for several p, the spectrum, later additions and the window), and in every other
// case it copies as add_gradients does. Bad input: typed error, estimator and matrix unchanged.
TEMPLATE_TEST_CASE("WoodburyFisher: adopt_gradients ends bitwise where add_gradients does, without the copy",
                   "[fisher][woodbury]", float, double) {
  using E = fu::WoodburyFisher<TestType>;
  const auto same = [](E& a, E& b, Eigen::Index d, std::uint64_t seed) {
    a.finalize();
    b.finalize();
    REQUIRE(a.num_gradients() == b.num_gradients());
    REQUIRE(a.current_form() == b.current_form());
    const fu::Vector<TestType> v = random_vector<TestType>(d, seed);
    for (double p : {-1.0, -0.25, 1.0}) CHECK(product(a, p, v) == product(b, p, v));
    CHECK(a.memory_bytes() == b.memory_bytes());
  };
  struct Case {
    Eigen::Index d, k;
    std::size_t window;
    fu::WoodburyForm form;
    bool adopts;
  };
  for (const Case c : {Case{40, 7, 0, fu::WoodburyForm::automatic, true}, Case{40, 40, 0, fu::WoodburyForm::automatic, true},
                       Case{40, 7, 7, fu::WoodburyForm::automatic, true}, Case{12, 20, 0, fu::WoodburyForm::dual, true},
                       Case{12, 20, 0, fu::WoodburyForm::automatic, false},  // m > d: the primal side
                       Case{12, 5, 0, fu::WoodburyForm::primal, false}, Case{40, 9, 4, fu::WoodburyForm::automatic, false}}) {
    CAPTURE(c.d, c.k, c.window, static_cast<int>(c.form));
    const fu::Matrix<TestType> g = random_gradients<TestType>(c.d, c.k, 91);
    E copied(static_cast<std::size_t>(c.d), TestType(0.3), c.window, c.form);
    E adopted(static_cast<std::size_t>(c.d), TestType(0.3), c.window, c.form);
    copied.set_num_threads(2);
    adopted.set_num_threads(2);
    copied.add_gradients(g);
    fu::Matrix<TestType> given = g;
    adopted.adopt_gradients(std::move(given));
    CHECK(given.cols() == (c.adopts ? 0 : c.k));  // adopted: the storage moved into the estimator
    same(copied, adopted, c.d, 92);
    // Later gradients (window replacement included) go on from the same state.
    const fu::Matrix<TestType> more = random_gradients<TestType>(c.d, 3, 93);
    copied.add_gradients(more);
    adopted.add_gradients(more);
    same(copied, adopted, c.d, 94);
  }
  // A second batch is added, not adopted: the estimator already holds gradients.
  E a(30, TestType(0.2)), b(30, TestType(0.2));
  const fu::Matrix<TestType> first = random_gradients<TestType>(30, 4, 95), second = random_gradients<TestType>(30, 5, 96);
  a.add_gradients(first);
  a.add_gradients(second);
  b.adopt_gradients(fu::Matrix<TestType>(first));
  fu::Matrix<TestType> second_copy = second;
  b.adopt_gradients(std::move(second_copy));
  same(a, b, 30, 97);
  // Bad input: a typed error, the matrix and the estimator unchanged.
  E empty(30, TestType(0.2));
  fu::Matrix<TestType> wrong = random_gradients<TestType>(29, 3, 98);
  const fu::Matrix<TestType> wrong_before = wrong;
  CHECK_THROWS_AS(empty.adopt_gradients(std::move(wrong)), fu::InvalidArgument);
  CHECK(wrong == wrong_before);
  fu::Matrix<TestType> nan = random_gradients<TestType>(30, 3, 99);
  nan(4, 1) = std::numeric_limits<TestType>::quiet_NaN();
  CHECK_THROWS_AS(empty.adopt_gradients(std::move(nan)), fu::NonFiniteError);
  CHECK(nan.cols() == 3);
  CHECK(empty.num_gradients() == 0);
  // The finiteness check rides on the Gram's diagonal: an Inf in the last row of the last column (the
  // tail of the last row block), on 1 and 2 threads.
  for (std::size_t threads : {std::size_t(1), std::size_t(2)}) {
    E fresh(5000, TestType(0.2));
    fresh.set_num_threads(threads);
    fu::Matrix<TestType> inf = random_gradients<TestType>(5000, 6, 100);
    inf(4999, 5) = -std::numeric_limits<TestType>::infinity();
    const fu::Matrix<TestType> inf_before = inf;
    CHECK_THROWS_AS(fresh.adopt_gradients(std::move(inf)), fu::NonFiniteError);
    CHECK(inf.cols() == 6);
    CHECK(fu::Matrix<TestType>(inf.bottomRows(1)) == fu::Matrix<TestType>(inf_before.bottomRows(1)));
    CHECK(fresh.num_gradients() == 0);
  }
  if constexpr (std::is_same_v<TestType, double>) {
    // Finite entries whose squares overflow double: accepted by both, as before (not a NaN/Inf input).
    fu::Matrix<double> huge = random_gradients<double>(30, 3, 101);
    huge(7, 2) = 1e200;
    E by_copy(30, 0.2), by_adopt(30, 0.2);
    CHECK_NOTHROW(by_copy.add_gradients(huge));
    CHECK_NOTHROW(by_adopt.adopt_gradients(fu::Matrix<double>(huge)));
    CHECK(by_adopt.num_gradients() == by_copy.num_gradients());
  }
  CHECK_THROWS_AS(empty.finalize(), fu::InvalidArgument);
}

TEMPLATE_TEST_CASE("Woodbury kernels: the Gram GᵀG equals the fp64 reference on every path and thread count",
                   "[fisher][woodbury][kernels]", float, double) {
  // gram_in_double takes 4×2 register tiles over 256-row packed blocks where AVX is available and
  // m ≤ kGramTileMaxColumns, Eigen's rank update otherwise; both paths are forced here too (this file
  // builds without -march, so the automatic choice is the rank update). Shapes: m with every remainder mod 4 (the
  // one-column rows of the tiles), m across the switch, d with remainders mod 4 (the lanes), mod 256 (the
  // packed block) and several reduction groups.
  namespace fd = fu::detail;
  using Scalar = TestType;
  const Eigen::Index wide = fd::kGramTileMaxColumns + 3;
  for (Eigen::Index m : {Eigen::Index(1), Eigen::Index(2), Eigen::Index(3), Eigen::Index(5), Eigen::Index(8),
                         Eigen::Index(67), fd::kGramTileMaxColumns, wide}) {
    for (Eigen::Index d : {Eigen::Index(1), Eigen::Index(6), Eigen::Index(259), Eigen::Index(2 * fd::kRowBlock + 517)}) {
      if (m == wide && d > 259) continue;  // keeps the long-double reference quick
      const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, m, 500 + static_cast<unsigned>(m + d));
      const Eigen::MatrixXd gd = g.template cast<double>();
      Eigen::MatrixXd reference(m, m);  // plain dot products in long double
      for (Eigen::Index i = 0; i < m; ++i)
        for (Eigen::Index j = 0; j < m; ++j) {
          long double sum = 0;
          for (Eigen::Index r = 0; r < d; ++r) sum += static_cast<long double>(gd(r, i)) * gd(r, j);
          reference(i, j) = static_cast<double>(sum);
        }
      // Each entry is a sum of d products: error ≤ ~d·eps·Σ|g_i||g_j| ≤ d·eps·‖g_i‖‖g_j‖.
      const Eigen::VectorXd norms = gd.colwise().norm().transpose();
      const Eigen::MatrixXd bound = 4.0 * static_cast<double>(d) * 1.2e-16 * (norms * norms.transpose());
      for (const fd::GramPath path : {fd::GramPath::automatic, fd::GramPath::tiles, fd::GramPath::rank_update}) {
        const Eigen::MatrixXd one = fd::gram_in_double(g, 1, path);
        const Eigen::MatrixXd two = fd::gram_in_double(g, 2, path);
        INFO("m = " << m << ", d = " << d << ", path = " << static_cast<int>(path));
        CHECK((one.array() == two.array()).all());
        CHECK((one.array() == one.transpose().array()).all());
        CHECK(((one - reference).cwiseAbs().array() <= bound.array() + 1e-300).all());
        // With a copy destination (columns 2.. of a wider matrix with 3 more rows, as WoodburyFisher's
        // fresh slots): the same Gram bits, G copied bit for bit, nothing else written.
        for (std::size_t threads : {std::size_t(1), std::size_t(2)}) {
          const Scalar sentinel = static_cast<Scalar>(-7.25);
          fu::Matrix<Scalar> storage = fu::Matrix<Scalar>::Constant(d + 3, m + 3, sentinel);
          const Eigen::MatrixXd with_copy =
              fd::gram_in_double(g, threads, path, storage.data() + 2 * storage.outerStride(), storage.outerStride());
          CHECK((with_copy.array() == one.array()).all());
          CHECK((storage.block(0, 2, d, m).array() == g.array()).all());
          fu::Matrix<Scalar> untouched = storage;
          untouched.block(0, 2, d, m).setConstant(sentinel);
          CHECK((untouched.array() == sentinel).all());
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("WoodburyFisher: add_gradients rejects NaN/Inf found on the Gram's diagonal and changes nothing",
                   "[fisher][woodbury][threads]", float, double) {
  // The dual side reads a batch once (copy and Gram in one pass) and tells NaN/Inf from the Gram's
  // diagonal; a rejected batch must leave the gradients, the answer, the form and even the capacity
  // (memory_bytes) as they were — on an empty estimator, on one holding gradients (the cross term), with
  // a window that drops the bad column (the whole batch is still checked), on the switch to the primal
  // side, and on 1 and 2 threads.
  using E = fu::WoodburyFisher<TestType>;
  const TestType nan = std::numeric_limits<TestType>::quiet_NaN();
  const TestType inf = std::numeric_limits<TestType>::infinity();
  const Eigen::Index d = 5000;
  const fu::Vector<TestType> v = random_vector<TestType>(d, 120);
  for (std::size_t threads : {std::size_t(1), std::size_t(2)}) {
    for (std::size_t held : {std::size_t(0), std::size_t(3)}) {
      for (std::size_t window : {std::size_t(0), std::size_t(4)}) {
        CAPTURE(threads, held, window);
        E fisher(static_cast<std::size_t>(d), TestType(0.2), window);
        fisher.set_num_threads(threads);
        fu::Vector<TestType> before;
        if (held > 0) {
          fisher.add_gradients(random_gradients<TestType>(d, static_cast<Eigen::Index>(held), 121));
          fisher.finalize();
          before = product(fisher, -1.0, v);
        }
        const std::size_t bytes = fisher.memory_bytes();
        // Last row of the last column (the tail of the last row block), then the first column, which
        // a window of 4 drops from a batch of 6.
        for (const auto& [row, col, bad] : {std::tuple{d - 1, Eigen::Index(5), inf}, std::tuple{Eigen::Index(7), Eigen::Index(0), nan}}) {
          fu::Matrix<TestType> g = random_gradients<TestType>(d, 6, 122);
          g(row, col) = bad;
          CHECK_THROWS_AS(fisher.add_gradients(g), fu::NonFiniteError);
          CHECK(fisher.num_gradients() == held);
          CHECK(fisher.memory_bytes() == bytes);
          CHECK(fisher.current_form() == fu::WoodburyForm::dual);
          if (held > 0) {
            CHECK(fisher.is_finalized());
            CHECK(product(fisher, -1.0, v) == before);
          }
        }
        // The same estimator then takes a good batch as if nothing had happened.
        const fu::Matrix<TestType> good = random_gradients<TestType>(d, 6, 123);
        E reference(static_cast<std::size_t>(d), TestType(0.2), window);
        if (held > 0) reference.add_gradients(random_gradients<TestType>(d, static_cast<Eigen::Index>(held), 121));
        fisher.add_gradients(good);
        reference.add_gradients(good);
        fisher.finalize();
        reference.finalize();
        CHECK(product(fisher, -0.25, v) == product(reference, -0.25, v));
      }
    }
  }
  // The batch that would switch an automatic estimator to the primal side (m > d): checked before the switch.
  E small(4, TestType(0.2));
  small.add_gradients(random_gradients<TestType>(4, 3, 124));
  fu::Matrix<TestType> g = random_gradients<TestType>(4, 3, 125);
  g(2, 1) = nan;
  CHECK_THROWS_AS(small.add_gradients(g), fu::NonFiniteError);
  CHECK(small.current_form() == fu::WoodburyForm::dual);
  CHECK(small.num_gradients() == 3);
}

TEMPLATE_TEST_CASE("WoodburyFisher: adding the estimator's own gradients equals adding a copy of them",
                   "[fisher][woodbury]", float, double) {
  // gradients() is a view of the estimator's storage; add_gradients/add_gradient of it must not read
  // storage that the growth of the estimator has freed (AddressSanitizer run) or that the copy overwrites.
  using E = fu::WoodburyFisher<TestType>;
  const Eigen::Index d = 300;
  const fu::Vector<TestType> v = random_vector<TestType>(d, 130);
  E fisher(static_cast<std::size_t>(d), TestType(0.3)), reference(static_cast<std::size_t>(d), TestType(0.3));
  const fu::Matrix<TestType> g = random_gradients<TestType>(d, 5, 131);
  fisher.add_gradients(g);
  reference.add_gradients(g);
  fisher.add_gradients(fisher.gradients());  // 5 → 10: the storage grows
  reference.add_gradients(g);
  fisher.finalize();
  reference.finalize();
  CHECK(product(fisher, -1.0, v) == product(reference, -1.0, v));
  fisher.add_gradient(fisher.gradients().col(7));  // slot 7 holds g's column 2; 10 → 11 grows again
  reference.add_gradient(g.col(2));
  REQUIRE(fisher.num_gradients() == 11);
  fisher.finalize();
  reference.finalize();
  // The copied column is a d×1 matrix, the reference's a vector view: Eigen may pick another product
  // kernel for the cross term, so equal to rounding rather than bitwise.
  const Eigen::VectorXd a = product(fisher, -1.0, v).template cast<double>();
  const Eigen::VectorXd b = product(reference, -1.0, v).template cast<double>();
  CHECK((a - b).norm() <= 16 * std::numeric_limits<TestType>::epsilon() * b.norm());
  // A full window given its own gradients back: every slot is replaced, in an order that differs from
  // the slot order, by the gradient it already holds, so F does not change (a write into a slot that a
  // later column is still to be read from would duplicate a gradient).
  E windowed(static_cast<std::size_t>(d), TestType(0.3), 3);
  windowed.add_gradients(g.leftCols(3));
  windowed.add_gradient(g.col(3));  // replaces slot 0: the oldest-first order is now slots 1, 2, 0
  windowed.finalize();
  const Eigen::VectorXd before = product(windowed, -1.0, v).template cast<double>();
  windowed.add_gradients(windowed.gradients());
  windowed.finalize();
  const Eigen::VectorXd after = product(windowed, -1.0, v).template cast<double>();
  CHECK((after - before).norm() <= 16 * std::numeric_limits<TestType>::epsilon() * before.norm());
}
