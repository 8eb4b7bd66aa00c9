// Iterated unlearning with one objective and one retain-KL budget, four preconditioners: the natural
// gradient (retain Fisher), the plain gradient, Adam and SOUL (Sophia). A softmax classifier was trained
// with 30 mislabelled points; each method raises their loss (gradient ascent, stopped at a matched
// target: the retrained model's forget loss) inside the same trust region, and is compared with
// retraining from scratch (exact for this convex model) at that matched point.
//   ./natural_gradient_unlearning
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/forget_objectives.hpp>
#include <fisher_unlearn/models/softmax_regression.hpp>
#include <fisher_unlearn/natural_gradient.hpp>
#include <fisher_unlearn/training.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using Model = fu::models::SoftmaxRegression<double>;

int main() {
  // 1. 3000 samples, 10 features (one is the bias), 4 classes; the first 30 get a wrong label: the
  //    points to forget. Train on everything, and retrain without them (the gold standard).
  auto data = fu::models::make_softmax_problem<double>(3000, 10, 4, /*seed=*/3);
  for (std::size_t i = 0; i < 30; ++i) data[i].label = (data[i].label + 1) % 4;
  const std::span<const Model::Sample> all(data);
  const auto forget = all.first(30), retain = all.subspan(30);
  Model trained(10, 4, /*l2_regularization=*/1e-3);
  fu::train_newton(trained, all);
  Model retrained = trained;
  fu::train_newton(retrained, retain);
  const Eigen::VectorXd gold = fu::as_eigen(retrained.parameters());
  const double distance = (fu::as_eigen(trained.parameters()) - gold).norm();

  // 2. One objective and budget for every method: −(mean forget loss) down to −(the retrained model's),
  //    i.e. matched forgetting; each step's predicted retain KL ½δᵀF_Rδ at most 1e-5; at most 2000 steps.
  fu::Vector<double> unused;
  const double retrained_forget = -fu::GradientAscentObjective{}.value_and_gradient(retrained, forget, unused);
  fu::NaturalGradientOptions options;
  options.max_kl = 1e-5;
  options.max_steps = 2000;
  options.target_objective = -retrained_forget;
  options.fisher_samples = 512;                                // m retain gradients for F_R
  options.gradients = {fu::FisherKind::monte_carlo, /*samples_per_input=*/1, /*seed=*/1};

  std::printf("| method | steps | stopped by | ||theta' - theta_retrained|| / ||theta - theta_retrained|| | "
              "forget loss | retain loss | seconds |\n|---|---:|---|---:|---:|---:|---:|\n");
  std::printf("| retrained (gold) | | | 0 | %.4f (mean loss; the rows below show J, with the L2 term) | | |\n",
              retrained_forget);
  const auto run = [&](const auto& unlearner) {
    Model model = trained;
    const fu::NaturalGradientResult result = unlearner.unlearn_detailed(model, forget, retain);
    const fu::UnlearningReport& r = result.report;
    std::printf("| %s | %zu | %s | %.3f | %.4f -> %.4f | %.4f -> %.4f | %.3f |\n", r.method.c_str(), r.iterations,
                result.stop_reason.c_str(), (fu::as_eigen(model.parameters()) - gold).norm() / distance,
                r.forget_loss_before, r.forget_loss_after, r.retain_loss_before, r.retain_loss_after, r.seconds);
  };
  using F = fu::WoodburyFisher<double>;
  options.learning_rate = 1.0;  // the natural-gradient step; the trust region decides its length
  run(fu::NaturalGradientUnlearning<F, fu::NaturalGradient, fu::GradientAscentObjective>(options));
  options.learning_rate = 1.0;
  run(fu::NaturalGradientUnlearning<F, fu::PlainGradient, fu::GradientAscentObjective>(options));
  options.learning_rate = 1e-3;  // Adam and SOUL move each coordinate by about η per step
  run(fu::NaturalGradientUnlearning<F, fu::AdamPreconditioner, fu::GradientAscentObjective>(options));
  run(fu::NaturalGradientUnlearning<F, fu::SoulPreconditioner, fu::GradientAscentObjective>(options));
  return 0;
}
