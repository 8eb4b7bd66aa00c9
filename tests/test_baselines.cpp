// First-order baselines: what they move, when they stop, and that retain fine-tuning of a convex model
// converges to the retrained optimum (its known answer).
#include <catch2/catch.hpp>

#include "fisher_unlearn/baselines.hpp"
#include "unlearning_problem.hpp"

#include <limits>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

static_assert(fu::NewtonUnlearner<fu::GradientAscent, Model<double>>);
static_assert(fu::NewtonUnlearner<fu::RetainFinetune, Model<float>>);
static_assert(fu::NewtonUnlearner<fu::GradientDifference, Model<double>>);

TEST_CASE("RetainFinetune: full-batch descent on the retain set converges to the retrained optimum") {
  auto p = make_problem<double>(600, 15, 6, 1e-2, 13);
  fu::FirstOrderOptions o;
  o.learning_rate = 1.0;
  o.steps = 600;
  o.batch_size = 0;
  Model<double> model = p.full;
  const auto r = fu::RetainFinetune(o).unlearn(model, p.forget(), p.retain());
  CHECK(relative_error(params(model), params(p.retrained)) < 1e-8);
  CHECK(r.iterations == 600);
  CHECK(r.retain_loss_after <= r.retain_loss_before);
  CHECK(r.method == "retain_finetune");
  CHECK(std::isnan(r.damping));
}

TEST_CASE("GradientAscent: raises the forget loss, and with a target stops at the first step that reaches it") {
  auto p = make_problem<double>(400, 10, 8, 1e-2, 17);
  fu::FirstOrderOptions o;
  o.learning_rate = 0.01;
  o.steps = 10000;
  o.batch_size = 4;
  o.target_forget_increase = 0.05;
  Model<double> model = p.full;
  const auto r = fu::GradientAscent(o).unlearn(model, p.forget(), p.retain());
  CHECK(r.forget_loss_after >= r.forget_loss_before + 0.05);
  CHECK(r.notes.find("reached after") != std::string::npos);
  REQUIRE(r.iterations > 1);
  // One step fewer does not reach the target: the stop is the first crossing.
  o.steps = r.iterations - 1;
  Model<double> shorter = p.full;
  const auto rs = fu::GradientAscent(o).unlearn(shorter, p.forget(), p.retain());
  CHECK(rs.forget_loss_after < rs.forget_loss_before + 0.05);
  CHECK(rs.notes.find("NOT reached") != std::string::npos);
  // Same seed, same result, bitwise.
  Model<double> again = p.full;
  o.steps = 10000;
  fu::GradientAscent(o).unlearn(again, p.forget(), p.retain());
  CHECK(bitwise_equal(again, fu::Vector<double>(fu::as_eigen(model.parameters()))));
}

TEST_CASE("GradientDifference: with one weight zero it is exactly the other baseline (same seed)") {
  auto p = make_problem<double>(300, 8, 6, 1e-2, 19);
  fu::FirstOrderOptions o;
  o.learning_rate = 0.05;
  o.steps = 40;
  o.batch_size = 5;
  o.seed = 99;
  Model<double> ascent = p.full, finetune = p.full, diff_descent = p.full, diff_ascent = p.full, other_seed = p.full;
  fu::GradientAscent(o).unlearn(ascent, p.forget(), p.retain());
  fu::RetainFinetune(o).unlearn(finetune, p.forget(), p.retain());
  fu::FirstOrderOptions w = o;
  w.forget_weight = 0;
  fu::GradientDifference(w).unlearn(diff_descent, p.forget(), p.retain());
  w = o;
  w.retain_weight = 0;
  fu::GradientDifference(w).unlearn(diff_ascent, p.forget(), p.retain());
  CHECK(relative_error(params(diff_descent), params(finetune)) < 1e-15);
  CHECK(relative_error(params(diff_ascent), params(ascent)) < 1e-15);
  o.seed = 7;
  fu::RetainFinetune(o).unlearn(other_seed, p.forget(), p.retain());
  CHECK(relative_error(params(other_seed), params(finetune)) > 1e-12);  // the seed matters
}

TEST_CASE("Baselines: bad input throws a typed exception and leaves the model bitwise unchanged") {
  auto p = make_problem<double>(200, 6, 4, 1e-2, 23);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::as_eigen(model.parameters());
  fu::FirstOrderOptions o;
  SECTION("options") {
    o.learning_rate = 0;
    CHECK_THROWS_AS(fu::GradientAscent(o), fu::InvalidArgument);
    o = {};
    o.steps = 0;
    CHECK_THROWS_AS(fu::RetainFinetune(o), fu::InvalidArgument);
    o = {};
    o.target_forget_increase = -1;
    CHECK_THROWS_AS(fu::GradientDifference(o), fu::InvalidArgument);
  }
  SECTION("empty sets") {
    CHECK_THROWS_AS(fu::GradientAscent{}.unlearn(model, {}, p.retain()), fu::InvalidArgument);
    CHECK_THROWS_AS(fu::RetainFinetune{}.unlearn(model, p.forget(), {}), fu::InvalidArgument);
  }
  SECTION("NaN in a sample") {
    auto bad = std::vector<Sample<double>>(p.forget().begin(), p.forget().end());
    bad[2].x[1] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(fu::GradientAscent{}.unlearn(model, std::span<const Sample<double>>(bad), p.retain()),
                    fu::NonFiniteError);
  }
  SECTION("a sample of the wrong size") {
    auto bad = std::vector<Sample<double>>(p.retain().begin(), p.retain().end());
    bad[0].x = Eigen::VectorXd::Ones(3);
    CHECK_THROWS_AS(fu::RetainFinetune{}.unlearn(model, p.forget(), std::span<const Sample<double>>(bad)),
                    fu::InvalidArgument);
  }
  SECTION("a divergent run (the parameters overflow mid-way) is rolled back") {
    o.learning_rate = 1e306;
    o.steps = 50;
    CHECK_THROWS_AS(fu::GradientAscent(o).unlearn(model, p.forget(), p.retain()), fu::NonFiniteError);
  }
  CHECK(bitwise_equal(model, saved));
}
