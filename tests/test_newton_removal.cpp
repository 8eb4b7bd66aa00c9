// NewtonRemoval and train_newton: the known answer is retraining from scratch on the retain set.
#include <catch2/catch.hpp>

#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/training.hpp"
#include "unlearning_problem.hpp"

#include <cmath>
#include <cstdio>
#include <limits>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

static_assert(fu::NewtonUnlearner<fu::NewtonRemoval, Model<double>>);
static_assert(fu::NewtonUnlearner<fu::NewtonRemoval, Model<float>>);

namespace {

/// Logistic regression with only Hessian-vector products (no dense hessian()): exercises the
/// column-by-column assembly of objective_hessian.
struct HvpOnlyLogistic {
  using Scalar = double;
  using Sample = Model<double>::Sample;
  Model<double> inner;
  std::size_t num_parameters() const { return inner.num_parameters(); }
  std::span<double> parameters() { return inner.parameters(); }
  std::span<const double> parameters() const { return inner.parameters(); }
  double l2_regularization() const { return inner.l2_regularization(); }
  double loss(const Sample& s) const { return inner.loss(s); }
  double gradient(const Sample& s, std::span<double> g) const { return inner.gradient(s, g); }
  void hessian_vector_product(std::span<const Sample> b, std::span<const double> v, std::span<double> out) const {
    inner.hessian_vector_product(b, v, out);
  }
};
static_assert(fu::TwiceDifferentiableModel<HvpOnlyLogistic> && !fu::HasDenseHessian<HvpOnlyLogistic>);

}  // namespace

TEST_CASE("train_newton: reaches a zero gradient from two different starts and the same optimum") {
  auto data = fu::models::make_logistic_problem<double>(600, 30, 11);
  Model<double> a(30, 1e-2), b(30, 1e-2);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  for (double& t : b.parameters()) t = normal(rng);
  const auto ra = fu::train_newton(a, std::span<const Sample<double>>(data));
  const auto rb = fu::train_newton(b, std::span<const Sample<double>>(data));
  CHECK(ra.converged);
  CHECK(rb.converged);
  CHECK(ra.gradient_norm <= 1e-12);
  fu::Vector<double> g;
  fu::detail::objective_gradient(a, std::span<const Sample<double>>(data), g);
  CHECK(g.norm() <= 1e-12);
  CHECK(relative_error(params(a), params(b)) < 1e-11);
}

TEST_CASE("objective_hessian: assembling from Hessian-vector products equals the dense Hessian") {
  auto data = fu::models::make_logistic_problem<double>(200, 12, 5);
  Model<double> m(12, 0.05);
  std::mt19937_64 rng(9);
  std::normal_distribution<double> normal;
  for (double& t : m.parameters()) t = 0.3 * normal(rng);
  HvpOnlyLogistic h{m};
  const auto span = std::span<const Sample<double>>(data);
  const Eigen::MatrixXd dense = fu::objective_hessian(m, span);
  const Eigen::MatrixXd assembled = fu::objective_hessian(h, span);
  CHECK((dense - assembled).norm() / dense.norm() < 1e-13);
  // And against the definition: mean of p(1-p) x xᵀ plus λI, summed here without Eigen's rank updates.
  Eigen::MatrixXd ref = 0.05 * Eigen::MatrixXd::Identity(12, 12);
  for (const auto& s : data) {
    const double p = m.predict(s.x);
    ref += p * (1 - p) * s.x * s.x.transpose() / 200.0;
  }
  CHECK((dense - ref).norm() / ref.norm() < 1e-13);
}

TEST_CASE("NewtonRemoval: one step from the full-data optimum matches retraining (1, 10 and 5% removed)") {
  const std::size_t n = 1000;
  for (const std::size_t d : {20, 100}) {
    for (const std::size_t k : {std::size_t{1}, std::size_t{10}, n / 20}) {
      auto p = make_problem<double>(n, d, k, 1e-2, 100 + d);
      Model<double> model = p.full;
      const auto report = fu::NewtonRemoval{}.unlearn(model, p.forget(), p.retain());
      const Eigen::VectorXd theta_r = params(p.retrained);
      const double err = relative_error(params(model), theta_r);
      const double err_of_step = (params(model) - theta_r).norm() / (params(p.full) - theta_r).norm();
      std::printf("NewtonRemoval one step, d=%zu, k=%zu: ||theta'-theta_R||/||theta_R|| = %.3e "
                  "(%.3e of the distance before), residual %.3e\n",
                  d, k, err, err_of_step, report.residual_gradient_norm);
      CHECK(report.iterations == 1);
      CHECK(report.method == "newton_removal");
      CHECK(std::abs(report.step_norm - (params(model) - params(p.full)).norm()) < 1e-14);
      CHECK(report.retain_loss_after < report.retain_loss_before);  // moved towards argmin J_R
      CHECK(report.forget_loss_after > report.forget_loss_before);
      if (k == 1) CHECK(err < 1e-4);
      // Second order: the error is a small fraction of the distance the step covered.
      CHECK(err_of_step < 0.1);
    }
  }
}

TEST_CASE("NewtonRemoval: Newton steps iterated to convergence match retraining to 1e-8") {
  for (const std::size_t k : {std::size_t{1}, std::size_t{10}, std::size_t{50}}) {
    auto p = make_problem<double>(1000, 50, k, 1e-2, 7 + k);
    Model<double> model = p.full;
    fu::NewtonRemovalOptions o;
    o.max_iterations = 20;
    o.gradient_tolerance = 1e-13;
    const auto report = fu::NewtonRemoval(o).unlearn(model, p.forget(), p.retain());
    const double err = relative_error(params(model), params(p.retrained));
    std::printf("NewtonRemoval iterated, d=50, k=%zu: %zu iterations, relative error %.3e, residual %.3e\n", k,
                report.iterations, err, report.residual_gradient_norm);
    CHECK(err < 1e-8);
    CHECK(report.residual_gradient_norm <= 1e-12);
    CHECK(report.iterations >= 2);
    CHECK(report.iterations <= 6);  // quadratic convergence from a nearby start
  }
}

TEST_CASE("NewtonRemoval: a float model gives the double answer to float accuracy") {
  auto pd = make_problem<double>(500, 20, 5, 1e-2, 21);
  Model<float> mf(20, 1e-2f);
  fu::as_eigen(mf.parameters()) = params(pd.full).cast<float>();
  std::vector<Sample<float>> data_f;
  for (const auto& s : pd.data) data_f.push_back({s.x.cast<float>(), static_cast<float>(s.y)});
  const auto span = std::span<const Sample<float>>(data_f);
  Model<double> md = pd.full;
  fu::NewtonRemoval{}.unlearn(md, pd.forget(), pd.retain());
  fu::NewtonRemoval{}.unlearn(mf, span.first(5), span.subspan(5));
  CHECK(relative_error(params(mf), params(md)) < 1e-4);
}

TEST_CASE("NewtonRemoval: bad input throws a typed exception and leaves the model bitwise unchanged") {
  auto p = make_problem<double>(300, 10, 3, 1e-2, 2);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::as_eigen(model.parameters());

  SECTION("empty forget set") {
    CHECK_THROWS_AS(fu::NewtonRemoval{}.unlearn(model, {}, p.retain()), fu::InvalidArgument);
  }
  SECTION("empty retain set") {
    CHECK_THROWS_AS(fu::NewtonRemoval{}.unlearn(model, p.forget(), {}), fu::InvalidArgument);
  }
  SECTION("a retain sample of the wrong size") {
    auto bad = std::vector<Sample<double>>(p.retain().begin(), p.retain().end());
    bad[17].x = Eigen::VectorXd::Ones(11);
    CHECK_THROWS_AS(fu::NewtonRemoval{}.unlearn(model, p.forget(), std::span<const Sample<double>>(bad)),
                    fu::InvalidArgument);
  }
  SECTION("NaN in a retain sample makes the gradient NaN") {
    auto bad = std::vector<Sample<double>>(p.retain().begin(), p.retain().end());
    bad[5].x[2] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(fu::NewtonRemoval{}.unlearn(model, p.forget(), std::span<const Sample<double>>(bad)),
                    fu::NonFiniteError);
  }
  SECTION("Inf in a forget sample") {
    auto bad = std::vector<Sample<double>>(p.forget().begin(), p.forget().end());
    bad[0].x[1] = std::numeric_limits<double>::infinity();
    CHECK_THROWS_AS(fu::NewtonRemoval{}.unlearn(model, std::span<const Sample<double>>(bad), p.retain()),
                    fu::NonFiniteError);
  }
  SECTION("a non-convex point: zero regularisation and a Hessian that is singular") {
    // Every retain sample identical: the data Hessian has rank 1, and λ = 0 leaves it singular.
    Model<double> flat(10, 0.0);
    fu::as_eigen(flat.parameters()).setConstant(0.1);
    const fu::Vector<double> flat_saved = fu::as_eigen(flat.parameters());
    std::vector<Sample<double>> same(20, p.data[0]);
    CHECK_THROWS_AS(fu::NewtonRemoval{}.unlearn(flat, p.forget(), std::span<const Sample<double>>(same)),
                    fu::NumericalError);
    CHECK(bitwise_equal(flat, flat_saved));
  }
  SECTION("impossible options") {
    fu::NewtonRemovalOptions o;
    o.damping = -1;
    CHECK_THROWS_AS(fu::NewtonRemoval(o), fu::InvalidArgument);
    o = {};
    o.max_iterations = 0;
    CHECK_THROWS_AS(fu::NewtonRemoval(o), fu::InvalidArgument);
  }
  CHECK(bitwise_equal(model, saved));
}
