// Removal study: how close does each unlearner get to retraining from scratch?
// For L2-logistic regression (exact retrained optimum by Newton's method) it prints one Markdown table
// per problem: every Fisher estimator × Fisher kind (empirical, Monte-Carlo) × damping (a fixed grid and
// the automatic search), the exact Newton removal, and every first-order baseline.
//   ./removal_study            (both problems; about a minute in Release)
//   ./removal_study --quick    (the first problem only)
#include <fisher_unlearn/baselines.hpp>
#include <fisher_unlearn/damping.hpp>
#include <fisher_unlearn/fisher/block_diagonal.hpp>
#include <fisher_unlearn/fisher/dense.hpp>
#include <fisher_unlearn/fisher/diagonal.hpp>
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/models/logistic_regression.hpp>
#include <fisher_unlearn/newton_removal.hpp>
#include <fisher_unlearn/removal.hpp>
#include <fisher_unlearn/training.hpp>

#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using Model = fu::models::LogisticRegression<double>;
using Sample = Model::Sample;

struct Problem {
  const char* name;
  std::size_t n, d, k;
  double l2, signal;
  std::uint64_t seed;
};

struct Context {
  std::span<const Sample> forget, retain;
  Model full;
  Eigen::VectorXd theta_full, theta_retrained;
  double removal_distance;
};

static Eigen::VectorXd params(const Model& m) { return fu::as_eigen(m.parameters()); }

static void row(const Context& c, const std::string& method, const std::string& estimator, const std::string& kind,
                const std::string& damping, const Model& after, const fu::UnlearningReport& r) {
  const double dist = (params(after) - c.theta_retrained).norm() / c.removal_distance;
  std::printf("| %-22s | %-20s | %-11s | %-13s | %10.4g | %9.6f | %9.6f | %9.4g | %7.3f |\n", method.c_str(),
              estimator.c_str(), kind.c_str(), damping.c_str(), dist, r.forget_loss_after, r.retain_loss_after,
              r.step_norm, r.seconds);
  std::fflush(stdout);
}

template <class Estimator, class Factory>
static void fisher_rows(const Context& c, const std::string& estimator, const Factory& make, std::size_t m,
                        std::size_t draws, const std::vector<double>& grid) {
  for (const fu::FisherKind kind : {fu::FisherKind::empirical, fu::FisherKind::monte_carlo}) {
    const std::string kind_name =
        kind == fu::FisherKind::empirical ? "empirical" : "MC S=" + std::to_string(draws);
    fu::FisherRemovalOptions o;
    o.fisher_samples = m;
    o.gradients = {kind, draws, 0x5eed};
    for (std::size_t j = 0; j <= grid.size(); ++j) {
      const bool automatic = j == grid.size();
      o.damping = automatic ? grid.front() : grid[j];
      if (automatic) {
        o.automatic_damping = fu::DampingSearch{};
        o.automatic_damping->grid = grid;
      }
      Model model = c.full;
      char label[32];
      try {
        const auto r = fu::FisherRemoval<Estimator>(o, make).unlearn(model, c.forget, c.retain);
        std::snprintf(label, sizeof label, automatic ? "auto (%.0e)" : "%.0e", r.damping);
        row(c, "fisher_removal", estimator, kind_name, label, model, r);
      } catch (const fu::Error& e) {
        std::printf("| fisher_removal         | %-20s | %-11s | %-13s | failed: %s |\n", estimator.c_str(),
                    kind_name.c_str(), automatic ? "auto" : std::to_string(grid[j]).c_str(), e.what());
      }
    }
  }
}

static void study(const Problem& p) {
  auto data = fu::models::make_logistic_problem<double>(p.n, p.d, p.seed, p.signal);
  const std::span<const Sample> all(data);
  Context c{all.first(p.k), all.subspan(p.k), Model(p.d, p.l2), {}, {}, 0.0};
  Model retrained(p.d, p.l2);
  fu::train_newton(c.full, all);
  fu::train_newton(retrained, c.retain);
  c.theta_full = params(c.full);
  c.theta_retrained = params(retrained);
  c.removal_distance = (c.theta_full - c.theta_retrained).norm();

  std::printf("\n### %s: n = %zu, d = %zu, k = %zu forgotten, L2 = %g, signal %g\n\n", p.name, p.n, p.d, p.k, p.l2,
              p.signal);
  std::printf("Full-data optimum: J_forget = %.6f, J_retain = %.6f. Retrained optimum: J_forget = %.6f, "
              "J_retain = %.6f. ||theta_full - theta_retrained|| = %.4g.\n\n",
              fu::detail::objective(c.full, c.forget), fu::detail::objective(c.full, c.retain),
              fu::detail::objective(retrained, c.forget), fu::detail::objective(retrained, c.retain),
              c.removal_distance);
  std::printf("`dist` = ||theta' - theta_retrained|| / ||theta_full - theta_retrained|| (0 = retraining, 1 = did "
              "nothing). Losses are J = mean loss + L2 term, after unlearning.\n\n");
  std::printf("| method                 | estimator            | Fisher      | damping       |       dist |  J_forget |  J_retain | step norm |       s |\n");
  std::printf("|------------------------|----------------------|-------------|---------------|-----------:|----------:|----------:|----------:|--------:|\n");

  Model newton = c.full;
  const auto rn = fu::NewtonRemoval{}.unlearn(newton, c.forget, c.retain);
  row(c, "newton_removal", "exact Hessian", "-", "-", newton, rn);
  {
    Model it = c.full;
    fu::NewtonRemovalOptions o;
    o.max_iterations = 20;
    const auto r = fu::NewtonRemoval(o).unlearn(it, c.forget, c.retain);
    row(c, "newton_removal x" + std::to_string(r.iterations), "exact Hessian", "-", "-", it, r);
  }

  const std::vector<double> grid = fu::log_grid(1e-4, 1.0, 5);
  const std::size_t all_retain = c.retain.size();
  fisher_rows<fu::DiagonalFisher<double>>(c, "diagonal", [](std::size_t d, double l) {
    return fu::DiagonalFisher<double>(d, l);
  }, all_retain, 16, grid);
  fisher_rows<fu::BlockDiagonalFisher<double>>(c, "block_diagonal (10)", [](std::size_t d, double l) {
    return fu::BlockDiagonalFisher<double>(d, l, 10);
  }, all_retain, 16, grid);
  fisher_rows<fu::BlockDiagonalFisher<double>>(c, "block_diagonal (one)", [](std::size_t d, double l) {
    return fu::BlockDiagonalFisher<double>(d, l);
  }, all_retain, 16, grid);
  fisher_rows<fu::DenseFisher<double>>(c, "dense", [](std::size_t d, double l) {
    return fu::DenseFisher<double>(d, l);
  }, all_retain, 16, grid);
  fisher_rows<fu::WoodburyFisher<double>>(c, "woodbury (m=" + std::to_string(p.d) + ")", [](std::size_t d, double l) {
    return fu::WoodburyFisher<double>(d, l);
  }, p.d, 1, grid);
  fisher_rows<fu::WoodburyFisher<double>>(c, "woodbury (m=250)", [](std::size_t d, double l) {
    return fu::WoodburyFisher<double>(d, l);
  }, 250, 4, grid);

  // A step along the raw forget gradient with the scale an oracle would pick (the closest point to
  // the retrained optimum on that ray): "no preconditioner at all", at its very best.
  {
    fu::Vector<double> g;
    fu::detail::objective_gradient(c.full, c.forget, g);
    const double scale = g.dot(c.theta_retrained - c.theta_full) / g.squaredNorm();
    Model m = c.full;
    fu::as_eigen(m.parameters()) += scale * g;
    fu::UnlearningReport r;
    r.forget_loss_after = fu::detail::objective(m, c.forget);
    r.retain_loss_after = fu::detail::objective(m, c.retain);
    r.step_norm = std::abs(scale) * g.norm();
    row(c, "identity (oracle scale)", "none", "-", "-", m, r);
  }

  const double target = rn.forget_loss_after - rn.forget_loss_before;
  {
    fu::FirstOrderOptions o;
    o.learning_rate = 1e-3;
    o.steps = 100000;
    o.batch_size = 0;
    o.target_forget_increase = target;
    Model m = c.full;
    const auto r = fu::GradientAscent(o).unlearn(m, c.forget, c.retain);
    row(c, "gradient_ascent", "- (to Newton's dJ_F)", "-", "-", m, r);
    Model gd = c.full;
    o.batch_size = 64;
    const auto rd = fu::GradientDifference(o).unlearn(gd, c.forget, c.retain);
    row(c, "gradient_difference", "- (to Newton's dJ_F)", "-", "-", gd, rd);
  }
  for (const double lr : {0.1, 1.0}) {
    fu::FirstOrderOptions o;
    o.learning_rate = lr;
    o.steps = 200;
    o.batch_size = 0;
    Model m = c.full;
    const auto r = fu::RetainFinetune(o).unlearn(m, c.forget, c.retain);
    row(c, "retain_finetune", "- (200 full steps, lr " + std::to_string(lr).substr(0, 3) + ")", "-", "-", m, r);
  }
}

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0 && !quick) {
      quick = true;
    } else {
      std::fprintf(stderr, "removal_study: unknown argument '%s'; the only option is --quick (Problem A only)\n", argv[i]);
      return 1;
    }
  }
  std::printf("## Removal study (fisher_unlearn examples/removal_study.cpp)\n");
  std::printf("Fisher estimators use every retain input (m = n - k) except where m is given; MC = Monte-Carlo "
              "Fisher, S draws per input; automatic damping = grid search scored by J_retain (damping.hpp).\n");
  study({"Problem A (well-specified)", 1000, 20, 10, 1e-2, 3.0, 101});
  if (!quick) study({"Problem B (well-fitted: d = 100, strong signal, weak L2)", 1000, 100, 10, 1e-3, 10.0, 202});
  return 0;
}
