// Defaults that work (issue 15): the README's example and EVERY unlearner with its default options must land
// at least as close to the retrained optimum as doing nothing, ‖θ_unlearned − θ_R‖ ≤ ‖θ − θ_R‖, on the
// convex reference problems (logistic regression at k = 10 and k = 100, an unbounded Poisson regression).
// The table it prints is the one in docs/unlearners.md ("Defaults").
#include <catch2/catch.hpp>

#include "fisher_unlearn/baselines.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forgetting.hpp"
#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/training.hpp"
#include "poisson_regression.hpp"
#include "unlearning_problem.hpp"

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

using namespace unlearning_test;

namespace {

template <class M>
struct ConvexProblem {
  std::string name;
  std::vector<typename M::Sample> data;
  std::size_t k;
  M full;
  M retrained;
  std::span<const typename M::Sample> forget() const { return std::span<const typename M::Sample>(data).first(k); }
  std::span<const typename M::Sample> retain() const { return std::span<const typename M::Sample>(data).subspan(k); }
};

template <class M>
ConvexProblem<M> train(std::string name, std::vector<typename M::Sample> data, std::size_t k, M blank) {
  ConvexProblem<M> p{std::move(name), std::move(data), k, blank, blank};
  fu::NewtonTrainingOptions o;
  o.gradient_tolerance = 1e-12;
  fu::train_newton(p.full, std::span<const typename M::Sample>(p.data), o);
  fu::train_newton(p.retrained, p.retain(), o);
  return p;
}

Eigen::VectorXd theta_of(const auto& m) { return fu::as_eigen(m.parameters()).template cast<double>(); }

/// The README's example: Woodbury, m = 256, Monte-Carlo Fisher, automatic damping.
fu::FisherRemovalOptions readme_options() {
  fu::FisherRemovalOptions options;
  options.fisher_samples = 256;
  options.gradients.kind = fu::FisherKind::monte_carlo;
  options.automatic_damping = fu::DampingSearch{};
  return options;
}

template <class M>
void check_table(const ConvexProblem<M>& p) {
  const Eigen::VectorXd target = theta_of(p.retrained);
  const double nothing = (theta_of(p.full) - target).norm();
  REQUIRE(nothing > 0.0);
  struct Row {
    std::string name;
    std::function<fu::UnlearningReport(M&)> run;
  };
  const auto forget = p.forget();
  const auto retain = p.retain();
  const std::vector<Row> rows = {
      {"README: FisherRemoval<Woodbury> m=256 MC auto-damping",
       [&](M& m) { return fu::FisherRemoval<fu::WoodburyFisher<double>>(readme_options()).unlearn(m, forget, retain); }},
      {"FisherRemoval<Woodbury> {}", [&](M& m) { return fu::FisherRemoval<fu::WoodburyFisher<double>>().unlearn(m, forget, retain); }},
      {"FisherRemoval<Diagonal> {}", [&](M& m) { return fu::FisherRemoval<fu::DiagonalFisher<double>>().unlearn(m, forget, retain); }},
      {"FisherForgetting<Woodbury> {}",
       [&](M& m) { return fu::FisherForgetting<fu::WoodburyFisher<double>>().unlearn(m, forget, retain); }},
      {"FisherForgetting<Diagonal> {}",
       [&](M& m) { return fu::FisherForgetting<fu::DiagonalFisher<double>>().unlearn(m, forget, retain); }},
      {"NewtonRemoval {}", [&](M& m) { return fu::NewtonRemoval().unlearn(m, forget, retain); }},
      {"GradientAscent {}", [&](M& m) { return fu::GradientAscent().unlearn(m, forget, retain); }},
      {"RetainFinetune {}", [&](M& m) { return fu::RetainFinetune().unlearn(m, forget, retain); }},
      {"GradientDifference {}", [&](M& m) { return fu::GradientDifference().unlearn(m, forget, retain); }},
  };
  std::printf("%s: ||theta - theta_R|| = %.4g (doing nothing)\n", p.name.c_str(), nothing);
  for (const auto& row : rows) {
    M m = p.full;
    INFO(p.name << " / " << row.name);
    double ratio = -1.0;
    std::string what;
    try {
      const auto report = row.run(m);
      ratio = (theta_of(m) - target).norm() / nothing;
      what = report.notes;
    } catch (const std::exception& e) {
      what = std::string("threw: ") + e.what();
    }
    std::printf("  %-55s %8.4f  %s\n", row.name.c_str(), ratio, what.substr(0, 160).c_str());
    INFO(what);
    CHECK(ratio >= 0.0);   // it ran
    CHECK(ratio <= 1.0);   // at least as close as doing nothing
  }
}

}  // namespace

TEST_CASE("Defaults: every unlearner lands at least as close to retraining as doing nothing (logistic, k = 10)") {
  auto data = fu::models::make_logistic_problem<double>(400, 10, 41);
  check_table(train("logistic n=400 d=10 k=10 l2=1e-2", std::move(data), 10, Model<double>(10, 1e-2)));
}

TEST_CASE("Defaults: every unlearner lands at least as close to retraining as doing nothing (logistic, k = 100)") {
  auto data = fu::models::make_logistic_problem<double>(400, 10, 42);
  check_table(train("logistic n=400 d=10 k=100 l2=1e-3", std::move(data), 100, Model<double>(10, 1e-3)));
}

TEST_CASE("Defaults: every unlearner lands at least as close to retraining as doing nothing (Poisson, unbounded loss)") {
  auto data = make_poisson_problem(400, 8, 43, 2.0, 1.0);
  check_table(train("poisson n=400 d=8 k=20 l2=1e-2", std::move(data), 20, PoissonRegression(8, 1e-2)));
}

TEST_CASE("Defaults: a baseline that diverges with a given learning rate names it, and the model is unchanged") {
  auto p = train("poisson", make_poisson_problem(400, 8, 43, 2.0, 1.0), 20, PoissonRegression(8, 1e-2));
  PoissonRegression m = p.full;
  const Eigen::VectorXd before = theta_of(m);
  fu::FirstOrderOptions o;
  o.learning_rate = 0.01;  // the fixed default before issue 15
  for (const auto& run : std::vector<std::function<void()>>{
           [&] { fu::GradientAscent(o).unlearn(m, p.forget(), p.retain()); },
           [&] { fu::RetainFinetune(o).unlearn(m, p.forget(), p.retain()); }}) {
    try {
      run();
      FAIL("expected divergence");
    } catch (const fu::NonFiniteError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find("learning_rate 0.01") != std::string::npos);
      CHECK(what.find("diverged") != std::string::npos);
    }
    CHECK(theta_of(m) == before);
  }
}
