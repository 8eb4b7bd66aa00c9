// FisherRemoval with WoodburyFisher holding every retain gradient (m ≥ n − k ≥ d): the Monte-Carlo
// Fisher's result approaches Newton removal as S grows, and beats gradient ascent tuned to the same
// forget-loss increase. Slow (an m×m eigendecomposition with m up to ~800), hence *_slow.
#include <catch2/catch.hpp>

#include "fisher_unlearn/baselines.hpp"
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
  auto p = make_problem<double>(200, 8, 4, 1e-2, 55);
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
