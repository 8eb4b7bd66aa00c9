// FisherForgetting: without noise it is FisherRemoval; its noise has covariance (μσ²)^{1/2} F^{-1/2}.
#include <catch2/catch.hpp>

#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forgetting.hpp"
#include "fisher_unlearn/removal.hpp"
#include "reference_fisher.hpp"
#include "unlearning_problem.hpp"

#include <Eigen/Eigenvalues>

#include <limits>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

static_assert(fu::NewtonUnlearner<fu::FisherForgetting<fu::WoodburyFisher<double>>, Model<double>>);
static_assert(fu::NewtonUnlearner<fu::FisherForgetting<fu::WoodburyFisher<float>>, Model<float>>);

TEST_CASE("FisherForgetting: with mu = 0 it is FisherRemoval, bitwise") {
  auto p = make_problem<double>(500, 12, 10, 1e-2, 3);
  fu::FisherForgettingOptions o;
  o.removal.damping = 1e-2;
  o.removal.fisher_samples = 200;
  o.mu = 0;
  Model<double> forgetting = p.full, removal = p.full;
  const auto rf = fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(forgetting, p.forget(), p.retain());
  fu::FisherRemoval<fu::WoodburyFisher<double>>(o.removal).unlearn(removal, p.forget(), p.retain());
  CHECK(bitwise_equal(forgetting, fu::Vector<double>(fu::as_eigen(removal.parameters()))));
  CHECK(rf.method == "fisher_forgetting");
  CHECK(rf.fisher_gradients == 200);
}

TEST_CASE("FisherForgetting: the noise is (mu sigma^2)^(1/4) F^(-1/4) eps, so its covariance is "
          "(mu sigma^2)^(1/2) F^(-1/2)") {
  // d = 4, so a few thousand draws pin the 4×4 covariance down to a few percent.
  auto p = make_problem<double>(120, 4, 4, 1e-2, 8);
  fu::FisherForgettingOptions o;
  o.include_newton_term = false;
  o.removal.damping = 0.05;
  o.noise_relative_damping = 0;  // the noise uses the removal's damping here
  o.mu = 1e-4;
  o.sigma = 2.0;
  const double scale = std::pow(*o.mu * o.sigma * o.sigma, 0.25);
  CHECK(o.noise_scale() == Approx(scale));
  const int draws = 4000;
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(4, 4);
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(4);
  for (int i = 0; i < draws; ++i) {
    o.noise_seed = static_cast<std::uint64_t>(i + 1);
    Model<double> m = p.full;
    fu::FisherForgetting<ReferenceFisher<double>>(o).unlearn(m, p.forget(), p.retain());
    const Eigen::VectorXd x = (params(m) - params(p.full)) / scale;
    mean += x / draws;
    cov += x * x.transpose() / draws;
  }
  // Reference: F = 0.05 I + mean g gᵀ over every retain sample, F^{-1/2} by eigendecomposition.
  const auto g = fu::collect_gradients(p.full, p.retain());
  const Eigen::MatrixXd f = 0.05 * Eigen::MatrixXd::Identity(4, 4) + g * g.transpose() / 116.0;
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(f);
  const Eigen::MatrixXd expected = es.operatorInverseSqrt();
  const double err = (cov - expected).norm() / expected.norm();
  INFO("relative covariance error " << err);
  CHECK(err < 0.06);
  CHECK(mean.norm() < 0.1 * std::sqrt(expected.trace()));
}

TEST_CASE("FisherForgetting: the same seed gives the same result, another seed another") {
  auto p = make_problem<double>(300, 8, 5, 1e-2, 9);
  fu::FisherForgettingOptions o;
  o.removal.damping = 1e-2;
  o.mu = 1e-6;
  Model<double> a = p.full, b = p.full, c = p.full;
  const auto ra = fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(a, p.forget(), p.retain());
  fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(b, p.forget(), p.retain());
  o.noise_seed = 1234;
  fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(c, p.forget(), p.retain());
  CHECK(bitwise_equal(a, fu::Vector<double>(fu::as_eigen(b.parameters()))));
  CHECK((params(a) - params(c)).norm() > 1e-6);
  CHECK(ra.notes.find("noise scale") != std::string::npos);
}

TEST_CASE("FisherForgetting: automatic damping chooses the Newton term's damping (the noise has its own)") {
  auto p = make_problem<double>(500, 10, 10, 1e-2, 10);
  fu::FisherForgettingOptions o;
  o.removal.automatic_damping = fu::DampingSearch{};
  o.mu = 0;
  Model<double> forgetting = p.full, removal = p.full;
  const auto rf = fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(forgetting, p.forget(), p.retain());
  const auto rr = fu::FisherRemoval<fu::WoodburyFisher<double>>(o.removal).unlearn(removal, p.forget(), p.retain());
  CHECK(rf.damping == rr.damping);
  CHECK(bitwise_equal(forgetting, fu::Vector<double>(fu::as_eigen(removal.parameters()))));
}

TEST_CASE("FisherForgetting: bad input throws a typed exception and leaves the model bitwise unchanged") {
  auto p = make_problem<double>(200, 6, 4, 1e-2, 11);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::as_eigen(model.parameters());
  using Forgetting = fu::FisherForgetting<fu::WoodburyFisher<double>>;
  fu::FisherForgettingOptions o;
  SECTION("options") {
    o.mu = -1;
    CHECK_THROWS_AS(Forgetting(o), fu::InvalidArgument);
    o = {};
    o.removal.damping = -1e-3;  // 0 is the default (the model's l2_regularization())
    CHECK_THROWS_AS(Forgetting(o), fu::InvalidArgument);
    o = {};
    o.include_newton_term = false;  // the default noise is relative to the removal step: needs the step
    o.removal.damping = 1e-2;
    CHECK_THROWS_AS(Forgetting(o), fu::InvalidArgument);
    o.mu = 1e-8;
    CHECK_NOTHROW(Forgetting(o));
    o = {};
    o.removal.fisher_samples = 0;
    CHECK_THROWS_AS(Forgetting(o), fu::InvalidArgument);
    o = {};
    o.include_newton_term = false;
    o.removal.automatic_damping = fu::DampingSearch{};
    CHECK_THROWS_AS(Forgetting(o), fu::InvalidArgument);
  }
  SECTION("empty forget set") { CHECK_THROWS_AS(Forgetting{}.unlearn(model, {}, p.retain()), fu::InvalidArgument); }
  SECTION("Inf in a forget gradient") {
    auto bad = std::vector<Sample<double>>(p.forget().begin(), p.forget().end());
    bad[1].x[0] = std::numeric_limits<double>::infinity();
    CHECK_THROWS_AS(Forgetting{}.unlearn(model, std::span<const Sample<double>>(bad), p.retain()), fu::NonFiniteError);
  }
  SECTION("noise that overflows (the model was moved, then rolled back)") {
    o.mu = 1e300;
    o.sigma = 1e10;
    CHECK_THROWS_AS(Forgetting(o).unlearn(model, p.forget(), p.retain()), fu::NonFiniteError);
  }
  CHECK(bitwise_equal(model, saved));
}

TEST_CASE("FisherForgetting: by default the noise follows (lambda_n I + F)^(-1/2) with the small spectrum-relative "
          "lambda_n = 0.01 tr(F)/d, whatever the removal's damping") {
  auto p = make_problem<double>(120, 4, 4, 1e-2, 18);
  fu::FisherForgettingOptions o;
  o.include_newton_term = false;
  o.removal.damping = 1.0;  // what the damping search picks on a model that is not at the optimum
  o.removal.fisher_samples = p.retain().size();
  o.mu = 1e-4;
  o.sigma = 1.0;
  const double scale = o.noise_scale();
  const int draws = 4000;
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(4, 4);
  fu::UnlearningReport report;
  for (int i = 0; i < draws; ++i) {
    o.noise_seed = static_cast<std::uint64_t>(i + 1);
    Model<double> m = p.full;
    report = fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(m, p.forget(), p.retain());
    const Eigen::VectorXd x = (params(m) - params(p.full)) / scale;
    cov += x * x.transpose() / draws;
  }
  const auto g = fu::collect_gradients(p.full, p.retain());
  const Eigen::MatrixXd f_hat = g * g.transpose() / static_cast<double>(g.cols());
  const double lambda_n = 1e-2 * f_hat.trace() / 4.0;
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(f_hat + lambda_n * Eigen::MatrixXd::Identity(4, 4));
  const Eigen::MatrixXd expected = es.operatorInverseSqrt();
  const double err = (cov - expected).norm() / expected.norm();
  INFO("relative covariance error " << err << ", lambda_n " << lambda_n);
  CHECK(err < 0.06);
  CHECK(report.damping == 1.0);  // the removal's damping is reported unchanged
  CHECK(report.notes.find("noise damping") != std::string::npos);
  // Not isotropic: the covariance's condition number is √cond(F_n), far from 1.
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> measured(cov);
  const double expected_condition = std::sqrt(es.eigenvalues().maxCoeff() / es.eigenvalues().minCoeff());
  INFO("expected condition number of the noise covariance " << expected_condition);
  CHECK(measured.eigenvalues().maxCoeff() / measured.eigenvalues().minCoeff() > 0.8 * expected_condition);
  CHECK(expected_condition > 2.0);
}

TEST_CASE("FisherForgetting: by default (mu unset) the noise's norm is a tenth of the removal step's, whatever the scale") {
  for (double l2 : {1e-3, 1e-1}) {
    auto p = make_problem<double>(200, 6, 10, l2, 12);
    fu::FisherForgettingOptions o;  // defaults: relative noise 0.1
    fu::FisherForgettingOptions none = o;
    none.mu = 0;  // the removal term alone
    Model<double> noisy = p.full, removed = p.full;
    const auto report = fu::FisherForgetting<fu::WoodburyFisher<double>>(o).unlearn(noisy, p.forget(), p.retain());
    fu::FisherForgetting<fu::WoodburyFisher<double>>(none).unlearn(removed, p.forget(), p.retain());
    const double step = (params(removed) - params(p.full)).norm();
    const double noise = (params(noisy) - params(removed)).norm();
    INFO(report);
    CHECK(step > 0.0);
    CHECK(noise == Approx(0.1 * step).epsilon(1e-9));
    CHECK(report.notes.find("relative") != std::string::npos);
    CHECK(std::isnan(o.noise_scale()));
  }
}
