// The matched-target knob search (continuation + bisection under a fixed evaluation budget).
#include <catch2/catch.hpp>

#include "fisher_unlearn/matched_target.hpp"

#include <cmath>
#include <random>
#include <vector>

namespace fu = fisher_unlearn;

TEST_CASE("find_matched_target: reaches the target within tolerance on monotone synthetic knobs") {
  std::mt19937_64 rng(41);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    // s(x) = a·x^(−p): a decreasing power law whose crossing x* = (a/target)^(1/p) is drawn in [1e-3, 1e2].
    const double target = 2.5;
    const double p = 0.3 + 2.0 * u(rng);
    const double xstar = std::pow(10.0, -3.0 + 5.0 * u(rng));
    const double a = target * std::pow(xstar, p);
    std::size_t calls = 0;
    fu::MatchedTargetOptions o;
    o.low = 1e-4;
    o.high = 1e3;
    o.target = target;
    o.tolerance = 0.1;
    o.budget = 16;
    o.growth = 10.0;
    const auto r = fu::find_matched_target(
        [&](double x) {
          ++calls;
          fu::KnobEvaluation e;
          e.score = a * std::pow(x, -p);
          e.reached = e.score <= target;
          return e;
        },
        o);
    INFO("trial " << trial << " p=" << p << " x*=" << xstar << " " << r.notes);
    CHECK(calls == r.points.size());
    CHECK(calls <= o.budget);
    REQUIRE(r.reached);
    REQUIRE(r.within_tolerance);
    const auto& best = r.best();
    CHECK(best.evaluation.score <= target);
    CHECK(best.evaluation.score >= target - o.tolerance);
    CHECK(best.knob >= xstar);  // at or beyond the crossing, never before it
    // no evaluated reached point is weaker than the selected one
    for (const auto& pt : r.points)
      if (pt.evaluation.reached) CHECK(pt.knob >= best.knob);
  }
}

TEST_CASE("find_matched_target: a linear knob (step counts) is bisected in x") {
  fu::MatchedTargetOptions o;
  o.low = 1;
  o.high = 200;
  o.log_scale = false;
  o.growth = 16;
  o.target = 2.5;
  o.tolerance = 0.05;
  o.budget = 12;
  // exposure falls by 0.1 bit per step from 10 bits: reaches 2.5 at step 75
  const auto r = fu::find_matched_target(
      [](double x) {
        fu::KnobEvaluation e;
        e.score = 10.0 - 0.1 * x;
        e.reached = e.score <= 2.5;
        return e;
      },
      o);
  INFO(r.notes);
  REQUIRE(r.reached);
  CHECK(r.points.size() <= 12);
  CHECK(r.best().knob >= 75.0);
  CHECK(r.best().knob <= 75.5);
}

TEST_CASE("find_matched_target: respects the budget and reports 'not reached' honestly") {
  fu::MatchedTargetOptions o;
  o.low = 1e-3;
  o.high = 1e3;
  o.target = 2.5;
  o.budget = 4;
  std::size_t calls = 0;
  SECTION("the target lies beyond the strongest allowed value") {
    const auto r = fu::find_matched_target(
        [&](double x) {
          ++calls;
          fu::KnobEvaluation e;
          e.score = 3.0 + 1.0 / (1.0 + x);  // never below 3 bits
          e.reached = e.score <= 2.5;
          return e;
        },
        o);
    CHECK(calls == 4);
    CHECK_FALSE(r.reached);
    CHECK_FALSE(r.within_tolerance);
    REQUIRE(r.selected);
    CHECK(r.best().knob == Approx(1.0));  // 1e-3, 1e-2, 1e-1, 1: the least score so far is the last one
    CHECK(r.best().evaluation.score == Approx(3.5));
  }
  SECTION("a budget too small for the continuation to reach the crossing") {
    const auto r = fu::find_matched_target(
        [&](double x) {
          ++calls;
          fu::KnobEvaluation e;
          e.score = 10.0 / x;  // crossing at x = 4
          e.reached = e.score <= 2.5;
          return e;
        },
        o);
    CHECK(calls == 4);
    CHECK_FALSE(r.reached);
  }
}

TEST_CASE("find_matched_target: failed points bound the search from above and are never selected") {
  fu::MatchedTargetOptions o;
  o.low = 1e-2;
  o.high = 1e2;
  o.target = 2.5;
  o.tolerance = 0.2;
  o.budget = 14;
  // reaches at x >= 4, but any x > 6 diverges: the answer must lie in [4, 6].
  const auto r = fu::find_matched_target(
      [](double x) {
        fu::KnobEvaluation e;
        if (x > 6.0) {
          e.failed = true;
          e.notes = "diverged";
          return e;
        }
        e.score = 10.0 / x;
        e.reached = e.score <= 2.5;
        return e;
      },
      o);
  INFO(r.notes);
  REQUIRE(r.reached);
  CHECK_FALSE(r.best().evaluation.failed);
  CHECK(r.best().knob >= 4.0);
  CHECK(r.best().knob <= 6.0);
}

TEST_CASE("find_matched_target: a start that already reaches walks down to the weakest reaching value") {
  fu::MatchedTargetOptions o;
  o.low = 1e-3;
  o.high = 1e3;
  o.start = 100.0;
  o.target = 2.5;
  o.tolerance = 0.1;
  o.budget = 16;
  const auto r = fu::find_matched_target(
      [](double x) {
        fu::KnobEvaluation e;
        e.score = 10.0 / x;
        e.reached = e.score <= 2.5;
        return e;
      },
      o);
  INFO(r.notes);
  REQUIRE(r.within_tolerance);
  CHECK(r.best().knob >= 4.0);
  CHECK(r.best().knob <= 4.0 * 10.0 / (10.0 - 0.1 * 4.0) + 1e-9);  // score ≥ 2.4 ⇔ x ≤ 10/2.4
}

TEST_CASE("find_matched_target: rejects bad options with a message") {
  auto f = [](double) { return fu::KnobEvaluation{1.0, true, false, {}}; };
  fu::MatchedTargetOptions o;
  o.low = 0.0;
  CHECK_THROWS_AS(fu::find_matched_target(f, o), fu::InvalidArgument);
  o = {};
  o.low = 2;
  o.high = 1;
  CHECK_THROWS_AS(fu::find_matched_target(f, o), fu::InvalidArgument);
  o = {};
  o.budget = 0;
  CHECK_THROWS_AS(fu::find_matched_target(f, o), fu::InvalidArgument);
  o = {};
  o.target = std::nan("");
  CHECK_THROWS_AS(fu::find_matched_target(f, o), fu::InvalidArgument);
  o = {};
  o.growth = 1.0;
  CHECK_THROWS_AS(fu::find_matched_target(f, o), fu::InvalidArgument);
  o = {};
  o.start = 10.0;  // above high = 1
  CHECK_THROWS_AS(fu::find_matched_target(f, o), fu::InvalidArgument);
}
