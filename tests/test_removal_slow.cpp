// FisherRemoval with WoodburyFisher holding every retain gradient (m ≥ n − k ≥ d): the Monte-Carlo
// Fisher's result approaches Newton removal as S grows, and beats gradient ascent tuned to the same
// forget-loss increase. Slow (an m×m eigendecomposition with m up to ~800), hence *_slow.
#include <catch2/catch.hpp>

#include "fisher_unlearn/baselines.hpp"
#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/removal.hpp"
#include "unlearning_problem.hpp"

#include <cmath>
#include <cstdio>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

TEST_CASE("FisherRemoval (WoodburyFisher, every retain gradient): the Monte-Carlo Fisher approaches Newton removal "
          "as S grows, and beats tuned gradient ascent") {
  // Features on different scales (0.3 … 3, as unwhitened real features are): the curvature is far from
  // isotropic, which is where a Newton direction and a gradient direction differ. On the isotropic
  // make_logistic_problem at this small size (n = 200, d = 8), Woodbury MC with S = 4 was NOT closer
  // than tuned gradient ascent (0.20 vs 0.19): at S = 4 the Monte-Carlo noise is as large as the
  // anisotropy it corrects. The d = 20, S = 16 comparison is in test_removal.
  auto data = fu::models::make_logistic_problem<double>(200, 8, 55);
  for (auto& s : data)
    for (Eigen::Index j = 0; j + 1 < s.x.size(); ++j) s.x[j] *= 0.3 * std::pow(10.0, static_cast<double>(j) / 6.0);
  auto p = make_problem_from<double>(std::move(data), 4, 1e-2);
  Model<double> newton = p.full;
  fu::NewtonRemoval{}.unlearn(newton, p.forget(), p.retain());
  const double newton_step = (params(newton) - params(p.full)).norm();
  std::vector<double> errors;
  fu::UnlearningReport last;
  Model<double> last_model = p.full;
  for (const std::size_t s : {1, 2, 4}) {
    double sum = 0;
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
      fu::FisherRemovalOptions o;
      o.damping = p.full.l2_regularization();
      o.fisher_samples = p.retain().size();
      o.gradients = {fu::FisherKind::monte_carlo, s, seed};
      Model<double> model = p.full;
      last = fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(model, p.forget(), p.retain());
      CHECK(last.fisher_gradients == p.retain().size() * s);
      sum += (params(model) - params(newton)).norm() / newton_step;
      last_model = model;
    }
    errors.push_back(sum / 3);
    std::printf("WoodburyFisher, Monte-Carlo S=%zu (m = %zu gradients): ||theta_F - theta_Newton|| / ||step|| = %.4f\n",
                s, p.retain().size() * s, errors.back());
  }
  const double slope = std::log(errors.front() / errors.back()) / std::log(4.0);
  std::printf("fitted rate: error ~ S^(-%.2f)\n", slope);
  CHECK(errors[2] < errors[0]);
  CHECK(slope > 0.25);

  fu::FirstOrderOptions o;
  o.learning_rate = 1e-3;
  o.steps = 100000;
  o.batch_size = 0;
  o.target_forget_increase = last.forget_loss_after - last.forget_loss_before;
  Model<double> ascent = p.full;
  fu::GradientAscent(o).unlearn(ascent, p.forget(), p.retain());
  const double removal = (params(p.full) - params(p.retrained)).norm();
  const double d_fisher = (params(last_model) - params(p.retrained)).norm() / removal;
  const double d_ascent = (params(ascent) - params(p.retrained)).norm() / removal;
  std::printf("distance to retrained: Woodbury MC S=4 %.4f, GradientAscent to the same forget-loss increase %.4f\n",
              d_fisher, d_ascent);
  CHECK(d_fisher < d_ascent);
}

TEST_CASE("FisherRemoval: WoodburyFisher and a one-block BlockDiagonalFisher fed the same gradients give the same step") {
  auto p = make_problem<double>(400, 12, 8, 1e-2, 56);
  fu::FisherRemovalOptions o;
  o.damping = 1e-2;
  o.gradients = {fu::FisherKind::monte_carlo, 2, 9};
  Model<double> woodbury = p.full, block = p.full;
  fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(woodbury, p.forget(), p.retain());
  fu::FisherRemoval<fu::BlockDiagonalFisher<double>>(o).unlearn(block, p.forget(), p.retain());
  CHECK((params(woodbury) - params(block)).norm() / (params(block) - params(p.full)).norm() < 1e-9);
}
