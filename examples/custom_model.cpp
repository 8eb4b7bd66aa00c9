// Bring your own model: a ridge (least-squares) regression written from scratch against the Model
// concept (docs/model_concept.md), checked with testing::check_gradient, then made to forget a few
// training points with FisherRemoval, compared with retraining from scratch on the remaining points.
//
//   loss(x, y) = ½ (θᵀx − y)²,   ∇loss = (θᵀx − y) x,   J_S = mean loss + (λ/2)‖θ‖²
//
// Build: cmake -S . -B build && cmake --build build --target custom_model && ./build/examples/custom_model
#include <fisher_unlearn/fisher/diagonal.hpp>
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/removal.hpp>
#include <fisher_unlearn/testing/check_gradient.hpp>

#include <Eigen/Cholesky>

#include <cstdio>
#include <iostream>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;

// ---- the user's model: nothing here comes from the library except the names the concept asks for ----
class RidgeRegression {
 public:
  using Scalar = double;
  struct Sample {
    Eigen::VectorXd x;
    double y = 0;
  };

  RidgeRegression(std::size_t num_features, double l2) : theta_(Eigen::VectorXd::Zero(Eigen::Index(num_features))), l2_(l2) {}

  // Model
  std::size_t num_parameters() const { return std::size_t(theta_.size()); }
  std::span<double> parameters() { return {theta_.data(), num_parameters()}; }
  std::span<const double> parameters() const { return {theta_.data(), num_parameters()}; }
  double loss(const Sample& s) const {
    const double r = theta_.dot(s.x) - s.y;
    return 0.5 * r * r;
  }

  // DifferentiableModel: overwrite g (caller-owned, size d) with ∇loss, return the loss.
  double gradient(const Sample& s, std::span<double> g) const {
    const double r = theta_.dot(s.x) - s.y;
    Eigen::Map<Eigen::VectorXd>(g.data(), theta_.size()) = r * s.x;
    return 0.5 * r * r;
  }

  // RegularizedModel: the library adds (λ/2)‖θ‖² to every objective; loss/gradient above exclude it.
  double l2_regularization() const { return l2_; }

  // SampledFisherModel: the loss is −log N(y; θᵀx, 1) + const, so a target drawn from the model is
  // ŷ = θᵀx + ε, ε ~ N(0, 1), and g = ∇[−log p(ŷ | x)] = (θᵀx − ŷ) x. E[g gᵀ] = x xᵀ = ∇²loss.
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<double> g) const {
    const double y_hat = theta_.dot(s.x) + std::normal_distribution<double>(0.0, 1.0)(rng);
    Eigen::Map<Eigen::VectorXd>(g.data(), theta_.size()) = (theta_.dot(s.x) - y_hat) * s.x;
  }

  // The user's own trainer: the exact minimiser of J_S, (XᵀX/n + λI) θ = Xᵀy/n.
  void fit(std::span<const Sample> data) {
    const Eigen::Index d = theta_.size();
    Eigen::MatrixXd a = l2_ * Eigen::MatrixXd::Identity(d, d);
    Eigen::VectorXd b = Eigen::VectorXd::Zero(d);
    const double n = double(data.size());
    for (const Sample& s : data) {
      a.noalias() += s.x * s.x.transpose() / n;
      b += s.y * s.x / n;
    }
    theta_ = a.llt().solve(b);
  }

 private:
  Eigen::VectorXd theta_;
  double l2_;
};

static_assert(fu::DifferentiableModel<RidgeRegression>);
static_assert(fu::SampledFisherModel<RidgeRegression> && fu::RegularizedModel<RidgeRegression>);

int main() {
  constexpr std::size_t n = 200, d = 12, k = 5;  // k points to forget
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::VectorXd truth(d);
  for (auto& t : truth) t = normal(rng);
  std::vector<RidgeRegression::Sample> data(n);
  for (auto& s : data) {
    s.x.resize(d);
    for (auto& v : s.x) v = normal(rng);
    s.y = truth.dot(s.x) + 0.3 * normal(rng);
  }
  // The points to forget are outliers: they pulled the model, so forgetting them visibly moves it.
  for (std::size_t i = 0; i < k; ++i) data[i].y += 8.0;

  // 1. Check the hand-written gradient before trusting anything built on it.
  RidgeRegression model(d, 1e-2);
  for (auto& t : model.parameters()) t = normal(rng);  // a generic point, not the optimum
  const auto check = fu::testing::check_gradient(model, data[7]);
  std::cout << check << "\n";
  const auto sampled = fu::testing::check_sampled_gradient(model, data[7]);
  std::cout << sampled << "\n\n";
  if (!check.passed || !sampled.passed) return 1;

  // 2. Train on everything, then forget the first k points.
  const std::span<const RidgeRegression::Sample> all(data);
  const auto forget = all.first(k), retain = all.subspan(k);
  model.fit(all);
  RidgeRegression retrained(d, 1e-2);
  retrained.fit(retain);
  const Eigen::VectorXd target = fu::as_eigen(retrained.parameters());
  auto distance = [&](const RidgeRegression& m) { return (fu::as_eigen(m.parameters()) - target).norm(); };
  std::printf("distance to the model retrained without the %zu points:\n", k);
  std::printf("  trained on everything (no unlearning)     %.3e\n", distance(model));

  // The Fisher's damping plays the part of the L2 term (see removal.hpp), so damping = λ. Empirical
  // gradients use the observed y (residual² x xᵀ: scaled by the noise level, here far too small);
  // Monte-Carlo gradients draw ŷ from the model (E[g gᵀ] = x xᵀ, the exact Hessian of this loss).
  struct Variant {
    const char* name;
    fu::FisherKind kind;
    std::size_t draws;
  };
  const Variant variants[] = {{"empirical", fu::FisherKind::empirical, 1},
                              {"Monte-Carlo, S=1", fu::FisherKind::monte_carlo, 1},
                              {"Monte-Carlo, S=4", fu::FisherKind::monte_carlo, 4}};
  for (const Variant& v : variants) {
    fu::FisherRemovalOptions options;
    options.damping = model.l2_regularization();
    options.gradients.kind = v.kind;
    options.gradients.samples_per_input = v.draws;
    RidgeRegression diagonal = model, woodbury = model;
    const auto report = fu::FisherRemoval<fu::DiagonalFisher<double>>(options).unlearn(diagonal, forget, retain);
    fu::FisherRemoval<fu::WoodburyFisher<double>>(options).unlearn(woodbury, forget, retain);
    std::printf("  FisherRemoval, %-17s DiagonalFisher %.3e   WoodburyFisher %.3e\n", v.name, distance(diagonal),
                distance(woodbury));
    if (v.kind == fu::FisherKind::empirical) std::cout << "    (" << report << ")\n";
  }
  // For this quadratic loss the Monte-Carlo Fisher converges to the exact Hessian, so with the exact F
  // (WoodburyFisher) the step converges to retraining as S grows, its error shrinking roughly like
  // sqrt(d / (n·S)); the features here are uncorrelated, so DiagonalFisher loses little by dropping the
  // off-diagonal curvature. The empirical Fisher is scaled by the residual noise (0.3² here) and
  // overshoots: an estimate of the curvature is only as good as the targets it is built from.
  return 0;
}
