// fisher/collect.hpp: per-sample gradients scaled by 1/√loss_scale, so that the Monte-Carlo Fisher of a
// sequence loss (c × a sum of token NLLs) has expectation EXACTLY the Gauss–Newton matrix of the loss.
// References in fp64 on a tiny transformer: the Gauss–Newton matrix from finite-difference Jacobians of
// the log-probabilities, and the expectation of the collected gradients' outer product by enumerating
// every combination of drawn targets (no sampling error). Then many real draws within their sampling
// error, and FisherRemoval's η = 1 step against the damped Gauss–Newton step.
#include <catch2/catch.hpp>

#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/fisher/dense.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/removal.hpp"

#include <Eigen/Cholesky>

#include <cmath>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Transformer;
using fu::models::TransformerConfig;
using Sample = fu::SequenceSample;

static_assert(fu::HasLossScale<Transformer<double>> && fu::HasLossScale<Transformer<float>>);
static_assert(!fu::HasLossScale<fu::models::LogisticRegression<double>>);  // one target per sample: c = 1

namespace {

TransformerConfig tiny_config() {
  TransformerConfig c;
  c.vocab_size = 4;
  c.context_length = 5;
  c.num_layers = 1;
  c.width = 4;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = 3;
  return c;
}

Transformer<double> perturbed_model(double noise = 0.5, std::uint64_t seed = 12) {
  Transformer<double> m(tiny_config());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (double& t : m.parameters()) t += noise * normal(rng);
  return m;
}

double weight_sum(const Sample& s) {
  if (s.targets.weights.empty()) return static_cast<double>(s.tokens.size() - 1);
  double total = 0;
  for (double w : s.targets.weights) total += w;
  return total;
}

// The Gauss–Newton matrix of loss(s) = c Σₜ wₜ ℓₜ:  G = c Σₜ wₜ Jₜᵀ(diag pₜ − pₜpₜᵀ)Jₜ over the logits,
// which equals c Σₜ wₜ Lₜᵀ diag(pₜ) Lₜ with Lₜ = ∂ ln pₜ/∂θ, taken here by central differences.
Eigen::MatrixXd gauss_newton_by_finite_differences(Transformer<double>& model, const Sample& s) {
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  const std::size_t V = model.vocab_size(), T = s.tokens.size() - 1;
  const double c = 1.0 / weight_sum(s), h = 1e-5;
  Eigen::MatrixXd G = Eigen::MatrixXd::Zero(d, d);
  std::vector<double> lp(V), up(V), down(V);
  auto theta = model.parameters();
  for (std::size_t t = 0; t < T; ++t) {
    const double w = s.targets.weights.empty() ? 1.0 : s.targets.weights[t];
    if (w == 0) continue;
    const std::span<const fu::Token> prefix(s.tokens.data(), t + 1);
    model.next_token_log_probs(prefix, lp);
    Eigen::MatrixXd L(static_cast<Eigen::Index>(V), d);
    for (Eigen::Index i = 0; i < d; ++i) {
      const double saved = theta[static_cast<std::size_t>(i)];
      theta[static_cast<std::size_t>(i)] = saved + h;
      model.next_token_log_probs(prefix, up);
      theta[static_cast<std::size_t>(i)] = saved - h;
      model.next_token_log_probs(prefix, down);
      theta[static_cast<std::size_t>(i)] = saved;
      for (std::size_t v = 0; v < V; ++v) L(static_cast<Eigen::Index>(v), i) = (up[v] - down[v]) / (2 * h);
    }
    Eigen::VectorXd p(static_cast<Eigen::Index>(V));
    for (std::size_t v = 0; v < V; ++v) p[static_cast<Eigen::Index>(v)] = std::exp(lp[v]);
    G += (c * w) * L.transpose() * p.asDiagonal() * L;
  }
  return G;
}

// The sampled gradient for given drawn targets y (one per weighted position): c·Σₜ √wₜ ∇ℓₜ(yₜ), built
// from a sample with one-hot soft targets at y (inputs unchanged) and weights √wₜ.
Eigen::VectorXd gradient_at_draws(const Transformer<double>& model, const Sample& s, const std::vector<std::size_t>& at,
                                  const std::vector<fu::Token>& y) {
  const std::size_t T = s.tokens.size() - 1;
  Sample drawn{s.tokens};
  drawn.targets.weights.assign(T, 0.0);
  drawn.targets.soft_target.assign(T, -1);
  double root_sum = 0;
  for (std::size_t j = 0; j < at.size(); ++j) {
    const double w = s.targets.weights.empty() ? 1.0 : s.targets.weights[at[j]];
    drawn.targets.weights[at[j]] = std::sqrt(w);
    root_sum += std::sqrt(w);
    drawn.targets.soft_target[at[j]] = static_cast<std::int32_t>(j);
    drawn.targets.soft_targets.push_back(fu::SoftTarget{{y[j]}, {}});
  }
  Eigen::VectorXd g(static_cast<Eigen::Index>(model.num_parameters()));
  model.gradient(drawn, std::span<double>(g.data(), model.num_parameters()));
  return g * (root_sum / weight_sum(s));
}

// E[ĝĝᵀ] of the collected Monte-Carlo gradient ĝ = sampled_gradient / √c (or unscaled), exactly: the sum
// over every combination of targets at the weighted positions, each with its probability Πₜ pₜ(yₜ).
Eigen::MatrixXd exact_expected_outer_product(const Transformer<double>& model, const Sample& s, bool scaled) {
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  const std::size_t V = model.vocab_size(), T = s.tokens.size() - 1;
  std::vector<std::size_t> at;
  std::vector<std::vector<double>> probs;
  for (std::size_t t = 0; t < T; ++t) {
    if (!s.targets.weights.empty() && s.targets.weights[t] == 0) continue;
    at.push_back(t);
    std::vector<double> lp(V);
    model.next_token_log_probs(std::span<const fu::Token>(s.tokens.data(), t + 1), lp);
    for (double& x : lp) x = std::exp(x);
    probs.push_back(lp);
  }
  const double inv_root_c = scaled ? std::sqrt(weight_sum(s)) : 1.0;
  Eigen::MatrixXd E = Eigen::MatrixXd::Zero(d, d);
  std::vector<fu::Token> y(at.size(), 0);
  for (;;) {
    double prob = 1;
    for (std::size_t j = 0; j < at.size(); ++j) prob *= probs[j][static_cast<std::size_t>(y[j])];
    const Eigen::VectorXd g = gradient_at_draws(model, s, at, y) * inv_root_c;
    E.selfadjointView<Eigen::Lower>().rankUpdate(g, prob);
    std::size_t j = 0;  // next combination (odometer)
    while (j < at.size() && ++y[j] == static_cast<fu::Token>(V)) y[j++] = 0;
    if (j == at.size()) break;
  }
  return E.selfadjointView<Eigen::Lower>();
}

std::vector<Sample> test_samples() {
  std::vector<Sample> out;
  out.push_back(Sample{{1, 3, 0, 2, 2}});                 // plain: T = 4, c = 1/4
  out.push_back(Sample{{2, 0, 1, 1, 3}, {{1, 0, 1, 1}}});  // 0/1 mask: c = 1/3
  Sample general{{0, 2, 3, 1, 0}, {{0.5, 2.0, 0.0, 1.0}}};
  general.targets.soft_target = {-1, 0, -1, -1};  // soft targets do not change the curvature
  general.targets.soft_targets = {fu::SoftTarget::uniform({0, 1, 3})};
  out.push_back(general);  // general weights: c = 1/3.5
  return out;
}

double relative_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& ref) { return (a - ref).norm() / ref.norm(); }

}  // namespace

TEST_CASE("collect_gradients: the scaled Monte-Carlo Fisher's exact expectation is the Gauss–Newton matrix") {
  auto model = perturbed_model();
  for (const Sample& s : test_samples()) {
    const double c = 1.0 / weight_sum(s);
    INFO("sample with c = " << c);
    const Eigen::MatrixXd G = gauss_newton_by_finite_differences(model, s);
    REQUIRE(G.norm() > 1e-3);
    const Eigen::MatrixXd E = exact_expected_outer_product(model, s, true);
    INFO("relative error " << relative_error(E, G));
    CHECK(relative_error(E, G) < 1e-6);
    // The unscaled gradients (the behaviour before issue 9) have expectation c·G: T times too small.
    const Eigen::MatrixXd E_old = exact_expected_outer_product(model, s, false);
    CHECK(relative_error(E_old, c * G) < 1e-6);
    CHECK(relative_error(E_old, G) > 0.5);
  }
}

TEST_CASE("collect_gradients: each column is the model's gradient divided by √loss_scale, or unscaled on request") {
  const auto model = perturbed_model();
  const auto samples = test_samples();
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  for (const fu::FisherKind kind : {fu::FisherKind::empirical, fu::FisherKind::monte_carlo}) {
    fu::GradientCollection scaled{kind, 2, 77};
    fu::GradientCollection unscaled = scaled;
    unscaled.apply_loss_scale = false;
    const Eigen::MatrixXd A = fu::collect_gradients(model, std::span<const Sample>(samples), scaled);
    const Eigen::MatrixXd B = fu::collect_gradients(model, std::span<const Sample>(samples), unscaled);
    REQUIRE(A.cols() == static_cast<Eigen::Index>(samples.size() * (kind == fu::FisherKind::monte_carlo ? 2 : 1)));
    std::mt19937_64 rng(77);
    Eigen::VectorXd g(d);
    Eigen::Index col = 0;
    for (const Sample& s : samples) {
      const double c = model.loss_scale(s);
      CHECK(c == Approx(1.0 / weight_sum(s)).epsilon(1e-15));
      for (std::size_t k = 0; k < (kind == fu::FisherKind::monte_carlo ? 2u : 1u); ++k, ++col) {
        if (kind == fu::FisherKind::monte_carlo) {
          model.sampled_gradient(s, rng, std::span<double>(g.data(), model.num_parameters()));
        } else {
          model.gradient(s, std::span<double>(g.data(), model.num_parameters()));
        }
        CHECK((B.col(col) - g).norm() <= 1e-15 * g.norm());
        CHECK((A.col(col) - g / std::sqrt(c)).norm() <= 1e-14 * g.norm());
      }
    }
  }
}

TEST_CASE("collect_gradients: many Monte-Carlo draws match the Gauss–Newton matrix within their sampling error") {
  auto model = perturbed_model(0.5, 44);
  const Sample s{{3, 1, 1, 0, 2}};
  const Eigen::MatrixXd G = gauss_newton_by_finite_differences(model, s);
  const std::size_t N = 4000;
  for (const bool scale : {true, false}) {
    fu::GradientCollection options{fu::FisherKind::monte_carlo, N, 5};
    options.apply_loss_scale = scale;
    const Eigen::MatrixXd D = fu::collect_gradients(model, std::span<const Sample>(&s, 1), options);
    const Eigen::MatrixXd F = D * D.transpose() / static_cast<double>(N);
    // E‖F̂ − E F̂‖²_F = (E‖g‖⁴ − ‖E ggᵀ‖²_F)/N, estimated from the same draws.
    const double fourth = D.colwise().squaredNorm().array().square().mean();
    const double sampling_error = std::sqrt(std::max(0.0, fourth - F.squaredNorm()) / static_cast<double>(N));
    INFO("scaled " << scale << ": ‖F̂ − G‖ = " << (F - G).norm() << ", RMS sampling error " << sampling_error
                   << ", ‖G‖ = " << G.norm());
    if (scale) {
      CHECK((F - G).norm() < 3.0 * sampling_error);
      CHECK(sampling_error < 0.2 * G.norm());  // the check has power
    } else {
      CHECK((F - G).norm() > 10.0 * sampling_error);
      CHECK(F.trace() / G.trace() == Approx(0.25).epsilon(0.1));  // c = 1/T = 1/4
    }
  }
}

TEST_CASE("FisherRemoval on a sequence model: the η = 1 step is the damped Gauss–Newton removal step") {
  auto model = perturbed_model(0.5, 51);
  std::mt19937_64 rng(52);
  std::uniform_int_distribution<int> pick(0, 3);
  auto sequence = [&](std::size_t n) {
    std::vector<fu::Token> t(n);
    for (auto& x : t) x = pick(rng);
    return Sample{t};
  };
  const std::vector<Sample> forget{sequence(5), sequence(4)};
  std::vector<Sample> retain;
  for (int i = 0; i < 4; ++i) retain.push_back(sequence(5));
  retain[2].targets.weights = {1.0, 1.0, 0.0, 1.0};

  // Reference: δ = (k/(n−k)) (λI + Ḡ_R)⁻¹ ∇J_F,  Ḡ_R = the mean Gauss–Newton matrix of the retain losses.
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::MatrixXd G = Eigen::MatrixXd::Zero(d, d);
  for (const Sample& s : retain) G += gauss_newton_by_finite_differences(model, s);
  G /= static_cast<double>(retain.size());
  const double damping = 0.01 * G.trace() / 24.0;  // a few % of Ḡ_R's mean non-zero eigenvalue (rank < 48)
  Eigen::VectorXd grad_forget = Eigen::VectorXd::Zero(d), g(d);
  for (const Sample& s : forget) {
    model.gradient(s, std::span<double>(g.data(), model.num_parameters()));
    grad_forget += g / static_cast<double>(forget.size());
  }
  Eigen::MatrixXd A = G;
  A.diagonal().array() += damping;
  const Eigen::VectorXd reference = (2.0 / 4.0) * Eigen::LLT<Eigen::MatrixXd>(A).solve(grad_forget);

  const Eigen::VectorXd theta0 = Eigen::Map<const Eigen::VectorXd>(model.parameters().data(), d);
  auto step_with = [&](bool scale) {
    fu::FisherRemovalOptions o;
    o.damping = damping;
    o.gradients = {fu::FisherKind::monte_carlo, 3000, 9};
    o.gradients.apply_loss_scale = scale;
    auto copy = model;
    fu::FisherRemoval<fu::DenseFisher<double>>(o).unlearn(copy, std::span<const Sample>(forget),
                                                          std::span<const Sample>(retain));
    return Eigen::VectorXd(Eigen::Map<const Eigen::VectorXd>(copy.parameters().data(), d) - theta0);
  };
  const Eigen::VectorXd scaled = step_with(true), unscaled = step_with(false);
  const double err = (scaled - reference).norm() / reference.norm();
  const double err_old = (unscaled - reference).norm() / reference.norm();
  INFO("relative error of the η = 1 step: " << err << " (unscaled gradients: " << err_old << ")");
  CHECK(err < 0.1);
  CHECK(err_old > 0.5);
  // Along the reference, the unscaled Fisher (T times too small on Ḡ's range) over-steps.
  CHECK(unscaled.dot(reference) > 1.5 * scaled.dot(reference));
}

TEST_CASE("visit_linear_layers: a weighted sample's score vector is its gradient divided by √loss_scale") {
  // K-FAC's per-sample scores (LinearLayerModel) must scale exactly as collect_gradients does.
  struct Scores : fu::LinearLayerVisitor<double> {
    std::vector<Eigen::VectorXd> scores;
    void on_layer(const fu::LinearLayerBatch<double>&) override {}
    bool wants_sample_gradients() const override { return true; }
    void on_sample_gradient(std::size_t, std::span<const double> score) override {
      scores.push_back(Eigen::Map<const Eigen::VectorXd>(score.data(), static_cast<Eigen::Index>(score.size())));
    }
  };
  const auto model = perturbed_model();
  const auto samples = test_samples();
  Scores visitor;
  std::mt19937_64 rng(1);
  model.visit_linear_layers(samples, fu::CurvatureTargets::observed, rng, visitor);
  const Eigen::MatrixXd G = fu::collect_gradients(model, std::span<const Sample>(samples));
  REQUIRE(visitor.scores.size() == samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    INFO("sample " << i);
    const Eigen::VectorXd col = G.col(static_cast<Eigen::Index>(i));
    CHECK((visitor.scores[i] - col).norm() <= 1e-13 * col.norm());
  }
}
