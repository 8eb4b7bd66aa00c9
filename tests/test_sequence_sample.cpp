// sequence_sample.hpp on the Transformer: per-target weights (masks) and soft targets. Known answers on a
// model whose predictive distribution is set by hand, the library's gradient checker in double, the
// sampled (Monte-Carlo Fisher) gradient of a masked sample against a replay of its draws, the batch
// paths, and every invalid input rejected with InvalidArgument before anything is written.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/sequence_sample.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Transformer;
using fu::models::TransformerConfig;
using Sample = fu::SequenceSample;

static_assert(std::is_same_v<Transformer<float>::Sample, fu::SequenceSample>);
static_assert(std::is_same_v<Transformer<double>::Sample, fu::SequenceSample>);

namespace {

TransformerConfig small_config(std::uint64_t seed = 7) {
  TransformerConfig c;
  c.vocab_size = 7;
  c.context_length = 6;
  c.num_layers = 1;
  c.width = 8;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = seed;
  return c;
}

template <class Scalar>
Transformer<Scalar> perturbed_model(const TransformerConfig& c, double noise = 0.3, std::uint64_t seed = 99) {
  Transformer<double> m(c);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (double& t : m.parameters()) t += noise * normal(rng);
  return Transformer<Scalar>(m);
}

std::vector<fu::Token> random_tokens(std::size_t n, std::size_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> pick(0, static_cast<int>(vocab) - 1);
  std::vector<fu::Token> t(n);
  for (auto& x : t) x = pick(rng);
  return t;
}

Eigen::VectorXd gradient_of(const Transformer<double>& m, const Sample& s) {
  Eigen::VectorXd g(static_cast<Eigen::Index>(m.num_parameters()));
  m.gradient(s, std::span<double>(g.data(), m.num_parameters()));
  return g;
}

// A model whose every position predicts p = softmax(Eᵀβ) = (1/3, 1/2, 1/6): one block with every weight 0,
// final LayerNorm gain 0 and bias β = (ln 2, ln 3), token embeddings e₀ = (1, 0), e₁ = (0, 1), e₂ = 0.
Transformer<double> hand_model() {
  TransformerConfig c;
  c.vocab_size = 3;
  c.context_length = 4;
  c.num_layers = 1;
  c.width = 2;
  c.num_heads = 1;
  c.mlp_ratio = 1;
  Transformer<double> m(c);
  for (double& t : m.parameters()) t = 0.0;
  auto p = m.parameters();
  const auto& L = m.layout();
  p[L.token_embedding + 0] = 1.0;  // e₀ = (1, 0)
  p[L.token_embedding + 3] = 1.0;  // e₁ = (0, 1)
  for (std::size_t i = 0; i < 2 * 4; ++i) p[L.position_embedding + i] = 0.1 * static_cast<double>(i + 1);
  p[L.final_bias + 0] = std::log(2.0);
  p[L.final_bias + 1] = std::log(3.0);
  return m;
}

}  // namespace

TEST_CASE("SequenceSample: masked and soft-target losses equal their hand-computed values") {
  const auto model = hand_model();
  std::vector<double> lp(3);
  model.next_token_log_probs(std::vector<fu::Token>{0, 1}, lp);
  REQUIRE(std::exp(lp[0]) == Approx(1.0 / 3.0).epsilon(1e-12));
  REQUIRE(std::exp(lp[1]) == Approx(1.0 / 2.0).epsilon(1e-12));

  const std::vector<fu::Token> tokens{0, 1, 2, 1};  // targets 1, 2, 1 with p = 1/2, 1/6, 1/2
  const double ln2 = std::log(2.0), ln3 = std::log(3.0), ln6 = std::log(6.0);
  CHECK(model.loss(Sample{tokens}) == Approx((2 * ln2 + ln6) / 3).epsilon(1e-12));
  CHECK(model.loss_scale(Sample{tokens}) == Approx(1.0 / 3.0).epsilon(1e-15));

  Sample masked{tokens};
  masked.targets.weights = {1.0, 0.0, 2.0};  // (1·ln 2 + 0·ln 6 + 2·ln 2) / 3
  CHECK(model.loss(masked) == Approx(ln2).epsilon(1e-12));
  CHECK(model.loss_scale(masked) == Approx(1.0 / 3.0).epsilon(1e-15));

  // Position 1 (observed token 2) towards q = uniform over {0, 1}: ℓ = −(½ ln ⅓ + ½ ln ½) = ½ ln 6.
  Sample soft{tokens};
  soft.targets.weights = {0.0, 1.0, 0.0};
  soft.targets.soft_target = {-1, 0, -1};
  soft.targets.soft_targets = {fu::SoftTarget::uniform({0, 1})};
  CHECK(model.loss(soft) == Approx(0.5 * ln6).epsilon(1e-12));
  CHECK(model.loss_scale(soft) == Approx(1.0).epsilon(1e-15));
  // With explicit probabilities (¼, ¾) and the other positions kept with weight ½ each:
  // (½·ln 2 + 1·(¼ ln 3 + ¾ ln 2) + ½·ln 2) / 2.
  Sample mixed = soft;
  mixed.targets.weights = {0.5, 1.0, 0.5};
  mixed.targets.soft_targets = {fu::SoftTarget{{0, 1}, {0.25, 0.75}}};
  CHECK(model.loss(mixed) == Approx((0.5 * ln2 + (0.25 * ln3 + 0.75 * ln2) + 0.5 * ln2) / 2).epsilon(1e-12));

  // Gradient by hand: logits = Eᵀβ, so ∂loss/∂β = E·Σₜ factorₜ(p − qₜ) and ∂loss/∂e_v = Σₜ factorₜ(p_v − qₜ(v))·β.
  // For `soft`: p − q = (1/3 − 1/2, 1/2 − 1/2, 1/6) = (−1/6, 0, 1/6): ∂β = (−1/6, 0), ∂e₀ = −β/6, ∂e₂ = β/6.
  const Eigen::VectorXd g = gradient_of(model, soft);
  const auto& L = model.layout();
  CHECK(g[static_cast<Eigen::Index>(L.final_bias)] == Approx(-1.0 / 6).epsilon(1e-12));
  CHECK(std::abs(g[static_cast<Eigen::Index>(L.final_bias + 1)]) < 1e-14);
  CHECK(g[static_cast<Eigen::Index>(L.token_embedding + 0)] == Approx(-ln2 / 6).epsilon(1e-12));
  CHECK(g[static_cast<Eigen::Index>(L.token_embedding + 1)] == Approx(-ln3 / 6).epsilon(1e-12));
  CHECK(std::abs(g[static_cast<Eigen::Index>(L.token_embedding + 2)]) < 1e-14);
  CHECK(g[static_cast<Eigen::Index>(L.token_embedding + 4)] == Approx(ln2 / 6).epsilon(1e-12));
  CHECK(g[static_cast<Eigen::Index>(L.token_embedding + 5)] == Approx(ln3 / 6).epsilon(1e-12));
}

TEST_CASE("SequenceSample: all-one weights and no soft targets give exactly the plain sample's loss and gradient") {
  const auto config = small_config();
  const auto model = perturbed_model<double>(config);
  std::mt19937_64 rng(3);
  const Sample plain{random_tokens(6, config.vocab_size, rng)};
  Sample ones = plain;
  ones.targets.weights.assign(5, 1.0);
  ones.targets.soft_target.assign(5, fu::SequenceTargets::kObserved);
  CHECK(model.loss(ones) == Approx(model.loss(plain)).epsilon(1e-14));
  const Eigen::VectorXd a = gradient_of(model, plain), b = gradient_of(model, ones);
  CHECK((a - b).norm() <= 1e-13 * a.norm());
  // Scaling every weight by a constant changes nothing (the loss is normalised by Σw).
  Sample scaled = ones;
  scaled.targets.weights.assign(5, 3.5);
  CHECK(model.loss(scaled) == Approx(model.loss(plain)).epsilon(1e-14));
  CHECK(model.loss_scale(scaled) == Approx(1.0 / 17.5).epsilon(1e-15));
}

TEST_CASE("SequenceSample: the library's gradient checker accepts masked and soft-target samples in double") {
  const auto config = small_config(11);
  auto model = perturbed_model<double>(config, 0.4, 17);
  std::mt19937_64 rng(5);
  Sample s{random_tokens(7, config.vocab_size, rng)};
  s.targets.weights = {0.0, 1.0, 0.25, 0.0, 2.0, 1.0};
  s.targets.soft_target = {-1, 1, -1, 0, 0, -1};
  s.targets.soft_targets = {fu::SoftTarget::uniform({1, 3, 4}), fu::SoftTarget{{0, 6, 2}, {0.2, 0.5, 0.3}}};
  const auto r = fu::testing::check_gradient(model, s);
  INFO(r.message);
  CHECK(r.passed);

  Sample mask_only{random_tokens(5, config.vocab_size, rng)};
  mask_only.targets.weights = {0.0, 0.0, 1.0, 1.0};
  const auto r2 = fu::testing::check_gradient(model, mask_only);
  INFO(r2.message);
  CHECK(r2.passed);

  // The float model agrees with the double one on the weighted sample.
  const Transformer<float> modelf(model);
  Eigen::VectorXf gf(static_cast<Eigen::Index>(model.num_parameters()));
  modelf.gradient(s, std::span<float>(gf.data(), modelf.num_parameters()));
  const Eigen::VectorXd gd = gradient_of(model, s);
  CHECK((gf.cast<double>() - gd).norm() / gd.norm() < 1e-4);
  CHECK(static_cast<double>(modelf.loss(s)) == Approx(model.loss(s)).epsilon(1e-5));
}

TEST_CASE("SequenceSample: the batch paths sum weighted samples exactly like per-sample calls, for any thread count") {
  const auto config = small_config(4);
  auto model = perturbed_model<double>(config, 0.3, 8);
  std::mt19937_64 rng(9);
  std::vector<Sample> batch;
  for (int i = 0; i < 11; ++i) {
    Sample s{random_tokens(3 + static_cast<std::size_t>(i % 5), config.vocab_size, rng)};
    const std::size_t T = s.tokens.size() - 1;
    if (i % 3 != 0) {  // every third sample stays plain: mixed chunks
      s.targets.weights.assign(T, 0.0);
      s.targets.weights[static_cast<std::size_t>(i) % T] = 1.0;
      s.targets.weights[T - 1] = 0.5;
      s.targets.soft_target.assign(T, -1);
      s.targets.soft_target[T - 1] = 0;
      s.targets.soft_targets = {fu::SoftTarget::uniform({static_cast<fu::Token>(i % 7), 5})};
      if (i % 7 == 5) s.targets.soft_targets[0].tokens[0] = 2;
    }
    batch.push_back(std::move(s));
  }
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(d);
  double loss = 0;
  for (const auto& s : batch) {
    sum += gradient_of(model, s);
    loss += model.loss(s);
  }
  for (std::size_t threads : {1u, 3u}) {
    model.set_execution({threads, 4});
    Eigen::VectorXd g(d);
    const double total = model.sum_loss_and_gradient(batch, std::span<double>(g.data(), model.num_parameters()));
    CHECK(total == Approx(loss).epsilon(1e-12));
    CHECK((g - sum).norm() <= 1e-12 * sum.norm());
    CHECK(model.sum_loss(batch) == Approx(loss).epsilon(1e-12));
  }
}

TEST_CASE("SequenceSample: sampled_gradient draws only at weighted positions, each scaled by c·√w") {
  const auto config = small_config(21);
  const auto model = perturbed_model<double>(config, 0.5, 22);
  std::mt19937_64 rng(23);
  Sample s{random_tokens(6, config.vocab_size, rng)};
  s.targets.weights = {0.0, 2.0, 0.0, 0.5, 1.0};
  s.targets.soft_target = {-1, 0, -1, -1, -1};  // ignored: the targets are drawn from the model
  s.targets.soft_targets = {fu::SoftTarget::uniform({1, 2})};
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  std::mt19937_64 draw(31), replay(31);
  Eigen::VectorXd g(d);
  model.sampled_gradient(s, draw, std::span<double>(g.data(), model.num_parameters()));

  // Replay the inverse-CDF draws at the weighted positions only, then rebuild c·Σₜ √wₜ ∇ℓₜ(ŷₜ) from a
  // sample whose soft targets are one-hot at the drawn tokens (inputs unchanged) and whose weights are
  // uₜ = √wₜ: its gradient is Σ uₜ∇ℓₜ / Σ uₜ.
  Sample drawn = s;
  drawn.targets.soft_targets.clear();
  double c = 0, u_sum = 0;
  for (std::size_t t = 0; t < 5; ++t) {
    const double w = s.targets.weights[t];
    c += w;
    drawn.targets.weights[t] = std::sqrt(w);
    u_sum += std::sqrt(w);
    drawn.targets.soft_target[t] = -1;
    if (w == 0) continue;
    std::vector<double> lp(config.vocab_size);
    model.next_token_log_probs(std::span<const fu::Token>(s.tokens.data(), t + 1), lp);
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(replay);
    double acc = 0;
    fu::Token y = static_cast<fu::Token>(config.vocab_size) - 1;
    for (std::size_t v = 0; v < config.vocab_size; ++v) {
      acc += std::exp(lp[v]);
      if (u < acc) {
        y = static_cast<fu::Token>(v);
        break;
      }
    }
    drawn.targets.soft_target[t] = static_cast<std::int32_t>(drawn.targets.soft_targets.size());
    drawn.targets.soft_targets.push_back(fu::SoftTarget{{y}, {}});
  }
  c = 1.0 / c;
  const Eigen::VectorXd ref = gradient_of(model, drawn) * (u_sum * c);
  CHECK((g - ref).norm() <= 1e-10 * ref.norm());
  CHECK(draw() == replay());  // exactly one uniform per weighted position
}

TEST_CASE("SequenceSample: invalid weights or soft targets throw InvalidArgument and leave the output untouched") {
  const auto config = small_config();
  const auto model = perturbed_model<double>(config);
  std::mt19937_64 rng(41);
  const Sample base{random_tokens(5, config.vocab_size, rng)};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Sample> bad;
  auto with_weights = [&](std::vector<double> w) {
    Sample s = base;
    s.targets.weights = std::move(w);
    return s;
  };
  bad.push_back(with_weights({1.0, -0.5, 1.0, 1.0}));  // negative
  bad.push_back(with_weights({1.0, nan, 1.0, 1.0}));   // NaN
  bad.push_back(with_weights({1.0, std::numeric_limits<double>::infinity(), 1.0, 1.0}));
  bad.push_back(with_weights({0.0, 0.0, 0.0, 0.0}));  // all zero: 0/0
  bad.push_back(with_weights({1.0, 1.0, 1.0}));       // wrong length
  auto with_soft = [&](std::vector<std::int32_t> idx, std::vector<fu::SoftTarget> table) {
    Sample s = base;
    s.targets.soft_target = std::move(idx);
    s.targets.soft_targets = std::move(table);
    return s;
  };
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget::uniform({1, 7})}));   // token outside the vocabulary
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget::uniform({1, -2})}));  // negative token
  bad.push_back(with_soft({-1, 1, -1, -1}, {fu::SoftTarget::uniform({1, 2})}));   // index past the table
  bad.push_back(with_soft({-1, -3, -1, -1}, {fu::SoftTarget::uniform({1, 2})}));  // index below -1
  bad.push_back(with_soft({-1, 0, -1}, {fu::SoftTarget::uniform({1, 2})}));       // wrong length
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget::uniform({})}));       // empty support
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget::uniform({3, 3})}));   // repeated token
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget{{1, 2}, {0.5, 0.6}}}));  // sums to 1.1
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget{{1, 2}, {1.0}}}));       // size mismatch
  bad.push_back(with_soft({-1, 0, -1, -1}, {fu::SoftTarget{{1, 2}, {1.5, -0.5}}}));  // negative probability
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  const Eigen::VectorXd sentinel = Eigen::VectorXd::Constant(d, 7.0);
  for (std::size_t i = 0; i < bad.size(); ++i) {
    INFO("bad sample " << i);
    Eigen::VectorXd g = sentinel;
    CHECK_THROWS_AS(model.loss(bad[i]), fu::InvalidArgument);
    CHECK_THROWS_AS(model.gradient(bad[i], std::span<double>(g.data(), model.num_parameters())), fu::InvalidArgument);
    CHECK(g == sentinel);
    std::mt19937_64 r(1);
    CHECK_THROWS_AS(model.sampled_gradient(bad[i], r, std::span<double>(g.data(), model.num_parameters())),
                    fu::InvalidArgument);
    CHECK(g == sentinel);
    const std::vector<Sample> batch{base, bad[i]};
    CHECK_THROWS_AS(model.sum_loss_and_gradient(batch, std::span<double>(g.data(), model.num_parameters())),
                    fu::InvalidArgument);
    CHECK(g == sentinel);
    CHECK_THROWS_AS(model.sum_loss(batch), fu::InvalidArgument);
    CHECK_THROWS_AS(model.loss_scale(bad[i]), fu::InvalidArgument);
  }
  // The message says what was wrong.
  try {
    model.loss(bad[0]);
  } catch (const fu::InvalidArgument& e) {
    CHECK(std::string(e.what()).find("weight") != std::string::npos);
  }
  try {
    model.loss(bad[5]);
  } catch (const fu::InvalidArgument& e) {
    CHECK(std::string(e.what()).find("outside the vocabulary") != std::string::npos);
  }
}
