// DenseFisher against the dense fp64 reference (λI + (1/m)GGᵀ)^p.
#include <catch2/catch.hpp>

#include "fisher_contract.hpp"
#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/dense.hpp"

namespace fu = fisher_unlearn;
using namespace fisher_test;

static_assert(fu::FisherEstimator<fu::DenseFisher<float>>);
static_assert(fu::FisherEstimator<fu::DenseFisher<double>>);

namespace {
// No Scalar typedef: must not satisfy the concept.
struct WithoutScalar {
  std::size_t dimension() const { return 1; }
  void add_gradient(Eigen::Ref<const fu::Vector<double>>) {}
  void add_gradients(Eigen::Ref<const fu::Matrix<double>>) {}
  void finalize() {}
  void apply_power(double, Eigen::Ref<const fu::Vector<double>>, Eigen::Ref<fu::Vector<double>>) const {}
  bool supports_power(double) const { return true; }
  double damping() const { return 1; }
  void set_damping(double) {}
  std::size_t memory_bytes() const { return 0; }
  std::size_t num_gradients() const { return 0; }
  void clear() {}
};
}  // namespace
static_assert(!fu::FisherEstimator<WithoutScalar>);

TEMPLATE_TEST_CASE("DenseFisher: F^p v equals the dense reference for m below and above d", "[fisher][dense]", float,
                   double) {
  using Scalar = TestType;
  struct Shape { Eigen::Index d, m; };
  for (const Shape shape : {Shape{5, 1}, Shape{5, 3}, Shape{5, 40}, Shape{33, 12}, Shape{60, 90}}) {
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(shape.d, shape.m, 300 + shape.d + shape.m);
    const Eigen::MatrixXd moment = empirical_second_moment(g);
    fu::DenseFisher<Scalar> fisher(static_cast<std::size_t>(shape.d), static_cast<Scalar>(test_damping<Scalar>(moment)));
    fisher.add_gradients(g);
    fisher.finalize();
    const fu::Vector<Scalar> v = random_vector<Scalar>(shape.d, 9);
    for (double p : test_powers()) {
      fu::Vector<Scalar> out(shape.d);
      fisher.apply_power(p, v, out);
      const Eigen::VectorXd ref = dense_power(moment, static_cast<double>(fisher.damping()), p) * v.template cast<double>();
      INFO("d = " << shape.d << ", m = " << shape.m << ", p = " << p);
      CHECK(relative_error(out, ref) < tolerance<Scalar>());
    }
  }
}

TEMPLATE_TEST_CASE("DenseFisher: a batch equals its columns added one at a time", "[fisher][dense]", float, double) {
  using Scalar = TestType;
  using E = fu::DenseFisher<Scalar>;
  const double error = batch_versus_single_error<E>([](Eigen::Index d, Scalar damping) { return E(static_cast<std::size_t>(d), damping); }, 20, 15, -1.0);
  INFO("relative difference " << error);
  CHECK(error < tolerance<Scalar>() / 10);
}

TEMPLATE_TEST_CASE("DenseFisher: set_damping after finalize equals a fresh estimator with that damping",
                   "[fisher][dense]", float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(16, 30, 91);
  fu::DenseFisher<Scalar> changed(16, Scalar(10)), fresh(16, Scalar(0.4));
  changed.add_gradients(g);
  fresh.add_gradients(g);
  changed.finalize();
  fresh.finalize();
  changed.set_damping(Scalar(0.4));
  const fu::Vector<Scalar> v = random_vector<Scalar>(16, 92);
  for (double p : test_powers()) {
    fu::Vector<Scalar> a(16), b(16);
    changed.apply_power(p, v, a);
    fresh.apply_power(p, v, b);
    CHECK(a == b);
  }
}

TEMPLATE_TEST_CASE("DenseFisher: bad input throws a typed exception and leaves the estimator unchanged",
                   "[fisher][dense]", float, double) {
  using E = fu::DenseFisher<TestType>;
  check_protocol_and_bad_input<E>([](Eigen::Index d, TestType damping) { return E(static_cast<std::size_t>(d), damping); });
}

TEST_CASE("DenseFisher: F·F⁻¹v returns v and the eigenvalues are those of (1/m)GGᵀ", "[fisher][dense]") {
  const fu::Matrix<double> g = random_gradients<double>(30, 10, 93);
  fu::DenseFisher<double> fisher(30, test_damping<double>(empirical_second_moment(g)));  // κ ≈ 1e3
  fisher.add_gradients(g);
  fisher.finalize();
  const fu::Vector<double> v = random_vector<double>(30, 94);
  fu::Vector<double> inverse(30), back(30);
  fisher.apply_power(-1.0, v, inverse);
  fisher.apply_power(1.0, inverse, back);
  CHECK(relative_error(back, v) < 1e-12);
  const Eigen::VectorXd ref = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(empirical_second_moment(g)).eigenvalues();
  CHECK((fisher.eigenvalues() - ref).norm() < 1e-12 * ref.norm());
  CHECK(fisher.memory_bytes() == 2 * 30 * 30 * sizeof(double) + 30 * sizeof(double));
}
