// The README's usage example, as a complete program: train, forget 10 points with Fisher Removal,
// compare with retraining from scratch.   ./quickstart
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/models/logistic_regression.hpp>
#include <fisher_unlearn/removal.hpp>
#include <fisher_unlearn/training.hpp>

#include <iostream>
#include <span>

namespace fu = fisher_unlearn;
using Model = fu::models::LogisticRegression<double>;

int main() {
  const auto data = fu::models::make_logistic_problem<double>(1000, 20, /*seed=*/7);
  const std::span<const Model::Sample> all(data), forget = all.first(10), retain = all.subspan(10);
  Model model(20, /*l2_regularization=*/1e-2);
  fu::train_newton(model, all);  // the trained model (here: the exact optimum on forget ∪ retain)

  // θ' = θ + η F⁻¹ ∇J_forget(θ), F = λI + (1/m) Σ gᵢgᵢᵀ from m retain-set gradients (Woodbury: exact),
  // gradients of targets drawn from the model itself (Monte-Carlo Fisher), damping λ searched.
  fu::FisherRemovalOptions options;
  options.fisher_samples = 256;
  options.gradients.kind = fu::FisherKind::monte_carlo;
  options.automatic_damping = fu::DampingSearch{};
  fu::FisherRemoval<fu::WoodburyFisher<double>> removal(options);

  Model before = model, retrained = model;
  const fu::UnlearningReport report = removal.unlearn(model, forget, retain);
  std::cout << report << "\n";  // losses before/after, step norm, damping, time, memory

  fu::train_newton(retrained, retain);  // the gold standard the unlearner approximates
  const auto target = fu::as_eigen(retrained.parameters());
  std::cout << "distance to retraining: before " << (fu::as_eigen(before.parameters()) - target).norm()
            << ", after " << (fu::as_eigen(model.parameters()) - target).norm() << "\n";
}
