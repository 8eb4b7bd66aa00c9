// Forget 20 training points of an L2-regularised logistic regression with every unlearner in the
// library, and compare each result with retraining from scratch (the exact answer for a convex model).
//   ./logistic_unlearning
#include <fisher_unlearn/baselines.hpp>
#include <fisher_unlearn/fisher/block_diagonal.hpp>
#include <fisher_unlearn/fisher/diagonal.hpp>
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/forgetting.hpp>
#include <fisher_unlearn/models/logistic_regression.hpp>
#include <fisher_unlearn/newton_removal.hpp>
#include <fisher_unlearn/removal.hpp>
#include <fisher_unlearn/training.hpp>

#include <cstdio>
#include <span>

namespace fu = fisher_unlearn;
using Model = fu::models::LogisticRegression<double>;

int main() {
  // 1. A synthetic problem: 2000 samples, 40 features (one is the bias), labels from a logistic model.
  const auto data = fu::models::make_logistic_problem<double>(2000, 40, /*seed=*/42);
  const std::span<const Model::Sample> all(data);
  const auto forget = all.first(20);     // the points a user asked us to forget
  const auto retain = all.subspan(20);   // everything else

  // 2. Train on everything (Newton's method: exact optimum), and retrain without the forget set:
  //    the answer every unlearner is trying to reach without retraining.
  Model trained(40, /*l2_regularization=*/1e-2);
  fu::train_newton(trained, all);
  Model retrained = trained;
  fu::train_newton(retrained, retain);
  const Eigen::VectorXd target = fu::as_eigen(retrained.parameters());
  const double distance = (fu::as_eigen(trained.parameters()) - target).norm();

  std::printf("| method | variant | ||theta' - theta_retrained|| / ||theta - theta_retrained|| | forget loss | "
              "retain loss | damping | seconds |\n|---|---|---:|---:|---:|---:|---:|\n");
  const auto show = [&](const char* variant, const Model& m, const fu::UnlearningReport& r) {
    std::printf("| %s | %s | %.4f | %.5f -> %.5f | %.5f -> %.5f | %.3g | %.4f |\n", r.method.c_str(), variant,
                (fu::as_eigen(m.parameters()) - target).norm() / distance, r.forget_loss_before, r.forget_loss_after,
                r.retain_loss_before, r.retain_loss_after, r.damping, r.seconds);
  };
  // Every unlearner has the same call: copy the trained model, unlearn(model, forget, retain).
  const auto run = [&](const char* variant, const auto& unlearner) {
    Model m = trained;
    const fu::UnlearningReport r = unlearner.unlearn(m, forget, retain);
    show(variant, m, r);
    return r;
  };

  // 3. Exact second order: the certified-removal Newton step (Guo et al. 2020).
  const fu::UnlearningReport newton = run("exact Hessian, one step", fu::NewtonRemoval{});

  // 4. Fisher removal: the Hessian replaced by a Fisher estimate from 1000 retain-set gradients drawn
  //    from the model's own predictive distribution (Monte-Carlo Fisher, 8 draws each); the damping is
  //    chosen automatically from a log grid by the retain objective after the step.
  fu::FisherRemovalOptions options;
  options.fisher_samples = 1000;
  options.gradients = {fu::FisherKind::monte_carlo, /*samples_per_input=*/8, /*seed=*/1};
  options.automatic_damping = fu::DampingSearch{};
  run("one dense block, MC S=8", fu::FisherRemoval<fu::BlockDiagonalFisher<double>>(options));  // d×d memory
  run("diagonal, MC S=8", fu::FisherRemoval<fu::DiagonalFisher<double>>(options));  // O(d) memory
  options.gradients.samples_per_input = 1;
  options.fisher_samples = 400;
  run("Woodbury m=400, MC S=1", fu::FisherRemoval<fu::WoodburyFisher<double>>(options));  // low rank + damping

  // 5. Fisher forgetting: the removal step plus noise shaped by F^(-1/4) (Golatkar et al. 2020).
  fu::FisherForgettingOptions forgetting;
  forgetting.removal = options;
  forgetting.mu = 1e-12;  // noise scale (mu sigma^2)^(1/4) = 1e-3: trades distance to retraining for privacy
  run("Woodbury m=400, noise 1e-3", fu::FisherForgetting<fu::WoodburyFisher<double>>(forgetting));

  // 6. First-order baselines, with the same interface. Ascent is stopped when the forget loss has risen
  //    as much as Newton removal raised it (otherwise it just keeps climbing).
  fu::FirstOrderOptions sgd;
  sgd.learning_rate = 1e-3;
  sgd.steps = 100000;
  sgd.batch_size = 0;
  sgd.target_forget_increase = newton.forget_loss_after - newton.forget_loss_before;
  run("to Newton's forget-loss rise", fu::GradientAscent(sgd));
  run("to Newton's forget-loss rise", fu::GradientDifference(sgd));
  fu::FirstOrderOptions finetune;
  finetune.learning_rate = 0.5;
  finetune.steps = 100;
  finetune.batch_size = 0;
  run("100 full-batch steps", fu::RetainFinetune(finetune));
  return 0;
}
