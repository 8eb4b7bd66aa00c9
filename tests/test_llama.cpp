// Llama: exact gradients over a parameter subset (central differences in double, GQA + RoPE + norms + the
// tied embedding), subset gradients equal the full gradient's entries, the boundary cache changes nothing,
// the sampled gradient's second moment equals the Gauss–Newton matrix of the loss (per-token scale), KV-cache
// decoding equals the full forward, batch = Σ per-sample for any thread count, bad input throws.
#include <catch2/catch.hpp>

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/models/llama.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <cmath>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Llama;
using fu::models::LlamaConfig;

static_assert(fu::DifferentiableModel<Llama<float>> && fu::DifferentiableModel<Llama<double>>);
static_assert(fu::BatchDifferentiableModel<Llama<float>> && fu::BatchDifferentiableModel<Llama<double>>);
static_assert(fu::SampledFisherModel<Llama<float>> && fu::SampledFisherModel<Llama<double>>);
static_assert(fu::HasParameterGroups<Llama<float>> && fu::HasParameterGroups<Llama<double>>);
static_assert(fu::LanguageModel<Llama<float>> && fu::IncrementalLanguageModel<Llama<float>>);
static_assert(fu::IncrementalLanguageModel<Llama<double>>);
static_assert(!fu::TwiceDifferentiableModel<Llama<double>>);
static_assert(!fu::RegularizedModel<Llama<double>>);
static_assert(fu::HasLossScale<Llama<float>> && fu::HasLossScale<Llama<double>>);

namespace {

// GQA (4 query heads over 2 KV heads), RoPE over part of each head (6 of 8 dims), 3 blocks.
LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 19;
  c.context_length = 12;
  c.num_layers = 3;
  c.width = 32;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_width = 24;
  c.rope_dims = 6;
  c.rope_base = 50.0;  // a small base turns every rotated pair noticeably within 12 positions
  c.rms_epsilon = 1e-5;
  return c;
}

const std::vector<std::string> kMixedGroups = {"token_embd", "blk.0.attn_k", "blk.1.attn_q", "blk.1.attn_norm",
                                               "blk.1.ffn_gate", "blk.2", "output_norm"};

std::vector<fu::Token> random_tokens(std::size_t n, std::size_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> pick(0, static_cast<int>(vocab) - 1);
  std::vector<fu::Token> t(n);
  for (auto& x : t) x = pick(rng);
  return t;
}

template <class Model>
Eigen::Matrix<typename Model::Scalar, Eigen::Dynamic, 1> gradient_of(const Model& m, const typename Model::Sample& s) {
  Eigen::Matrix<typename Model::Scalar, Eigen::Dynamic, 1> g(static_cast<Eigen::Index>(m.num_parameters()));
  m.gradient(s, std::span<typename Model::Scalar>(g.data(), m.num_parameters()));
  return g;
}

template <class Scalar>
double relative_error(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& a,
                      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& b) {
  return static_cast<double>((a - b).norm() / b.norm());
}

}  // namespace

TEST_CASE("Llama: the gradient over a mixed subset equals central differences in double") {
  const auto config = tiny_config();
  Llama<double> model(config, kMixedGroups, 11);
  std::mt19937_64 rng(3);
  Llama<double>::Sample s{random_tokens(config.context_length + 1, config.vocab_size, rng), {}};
  // A seeded random 3000 of the 8 416 coordinates (about a third of every group) keeps the suite fast.
  fu::testing::GradientCheckOptions o;
  o.max_coordinates = 3000;
  auto r = fu::testing::check_gradient(model, s, o);
  INFO(r.message);
  CHECK(r.passed);
  CHECK(r.coordinates_checked == 3000);

  // Per-target weights (a masked forget loss): still exact; a short sequence too.
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  s.tokens.resize(7);
  s.weights.resize(6);
  for (auto& w : s.weights) w = unit(rng);
  s.weights[2] = 0.0;
  r = fu::testing::check_gradient(model, s, o);
  INFO(r.message);
  CHECK(r.passed);
}

TEST_CASE("Llama: parameter groups are exactly the trainable tensors, in order, and partition parameters()") {
  const auto config = tiny_config();
  Llama<float> model(config, kMixedGroups, 1);
  const auto& groups = model.parameter_groups();
  std::vector<std::string> names;
  std::size_t at = 0;
  for (const auto& g : groups) {
    names.push_back(g.name);
    CHECK(g.offset == at);
    at += g.size;
  }
  CHECK(at == model.num_parameters());
  const std::vector<std::string> expected = {"token_embd",    "blk.0.attn_k",     "blk.1.attn_norm", "blk.1.attn_q",
                                             "blk.1.ffn_gate", "blk.2.attn_norm", "blk.2.attn_q",    "blk.2.attn_k",
                                             "blk.2.attn_v",   "blk.2.attn_output", "blk.2.ffn_norm", "blk.2.ffn_gate",
                                             "blk.2.ffn_up",   "blk.2.ffn_down",  "output_norm"};
  CHECK(names == expected);
  CHECK(model.backward_floor() == 0);
  // A tensor's values alias parameters() when trainable.
  CHECK(model.tensor("blk.2.ffn_up").data() == model.parameters().data() + groups[12].offset);
  Llama<float> top(config, fu::models::llama_top_blocks(config, 1), 1);
  CHECK(top.backward_floor() == 2);
  CHECK(top.num_parameters() == 2 * 32 + 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 24 + 32);
}

TEST_CASE("Llama: a subset's gradient equals the matching entries of the full gradient, cache on or off") {
  const auto config = tiny_config();
  Llama<double> full(config, {"all"}, 5);
  Llama<double> top(config, {"blk.1.ffn_down", "blk.2.attn_v", "blk.2.attn_norm", "output_norm"}, 5);
  std::mt19937_64 rng(8);
  std::vector<Llama<double>::Sample> batch;
  for (std::size_t n : {13u, 6u, 9u}) batch.push_back({random_tokens(n, config.vocab_size, rng), {}});
  for (const auto& s : batch) {
    const auto gf = gradient_of(full, s);
    const auto gt = gradient_of(top, s);
    for (const auto& g : top.parameter_groups()) {
      const auto* fg = &full.parameter_groups()[0];
      for (const auto& h : full.parameter_groups())
        if (h.name == g.name) fg = &h;
      const Eigen::MatrixXd a = gt.segment(static_cast<Eigen::Index>(g.offset), static_cast<Eigen::Index>(g.size));
      const Eigen::MatrixXd b = gf.segment(static_cast<Eigen::Index>(fg->offset), static_cast<Eigen::Index>(fg->size));
      INFO(g.name);
      CHECK(relative_error<double>(a, b) < 1e-12);
    }
    CHECK(std::abs(top.loss(s) - full.loss(s)) < 1e-12 * std::abs(full.loss(s)));
  }
  // The first pass filled the boundary cache (floor = block 1); a second pass hits it and gives the same.
  const auto stats = top.boundary_cache_statistics();
  CHECK(top.backward_floor() == 1);
  CHECK(stats.entries == batch.size());
  const auto again = gradient_of(top, batch[0]);
  CHECK(top.boundary_cache_statistics().hits > stats.hits);
  auto uncached = top;
  auto e = uncached.execution();
  e.boundary_cache_bytes = 0;
  uncached.set_execution(e);
  CHECK(relative_error<double>(gradient_of(uncached, batch[0]), again) < 1e-14);
}

TEST_CASE("Llama: the library's gradient checkers accept it in float and double, batch and sampled") {
  const auto config = tiny_config();
  std::mt19937_64 rng(4);
  std::vector<Llama<float>::Sample> batch_f;
  std::vector<Llama<double>::Sample> batch_d;
  for (std::size_t n : {5u, 9u}) {
    batch_d.push_back({random_tokens(n, config.vocab_size, rng), {}});
    batch_f.push_back({batch_d.back().tokens, {}});
  }
  Llama<double> md(config, {"blk.2.ffn_up", "blk.1.attn_output", "output_norm"}, 2);
  Llama<float> mf(md);
  CHECK(fu::testing::check_batch_gradient(md, std::span<const Llama<double>::Sample>(batch_d)).passed);
  auto rf = fu::testing::check_batch_gradient(mf, std::span<const Llama<float>::Sample>(batch_f));
  INFO(rf.message);
  CHECK(rf.passed);
  auto rs = fu::testing::check_sampled_gradient(md, batch_d[1], 2000);
  INFO(rs.message);
  CHECK(rs.passed);
}

TEST_CASE("Llama: sampled gradients' second moment equals the Gauss–Newton matrix of the loss (per-token scale)") {
  const auto config = tiny_config();
  Llama<double> model(config, {"blk.2.attn_v", "blk.2.ffn_norm", "output_norm"}, 9);
  std::mt19937_64 rng(12);
  Llama<double>::Sample s{random_tokens(6, config.vocab_size, rng), {}};
  const std::size_t T = s.tokens.size() - 1;
  const auto d = static_cast<Eigen::Index>(model.num_parameters());

  // Exact GGN of loss(s) = Σₜ wₜ Σ_y pₜ(y) ∇ₜ,y ∇ₜ,yᵀ with ∇ₜ,y = ∇(−ln pₜ(y)); each ∇ₜ,y is the model's own
  // exact gradient of a sample that ends in y at position t+1 and weighs only position t.
  for (const bool weighted : {false, true}) {
    std::vector<double> w(T, 1.0 / static_cast<double>(T));
    if (weighted) w = {0.5, 0.0, 2.0, 0.25, 1.0};
    s.weights = weighted ? w : std::vector<double>{};
    Eigen::MatrixXd ggn = Eigen::MatrixXd::Zero(d, d);
    for (std::size_t t = 0; t < T; ++t) {
      if (w[t] == 0.0) continue;
      std::vector<double> lp(config.vocab_size);
      model.next_token_log_probs(std::span<const fu::Token>(s.tokens.data(), t + 1), lp);
      for (std::size_t y = 0; y < config.vocab_size; ++y) {
        Llama<double>::Sample one{std::vector<fu::Token>(s.tokens.begin(), s.tokens.begin() + static_cast<std::ptrdiff_t>(t) + 1), {}};
        one.tokens.push_back(static_cast<fu::Token>(y));
        one.weights.assign(t + 1, 0.0);
        one.weights[t] = 1.0;
        const Eigen::VectorXd g = gradient_of(model, one);
        ggn += w[t] * std::exp(lp[y]) * g * g.transpose();
      }
    }
    const int draws = 3000;
    std::mt19937_64 sampler(weighted ? 77 : 78);
    Eigen::MatrixXd G(d, draws);
    for (int k = 0; k < draws; ++k)
      model.sampled_gradient(s, sampler, std::span<double>(G.col(k).data(), model.num_parameters()));
    // sampled_gradient carries √c (HasLossScale): E[g gᵀ] = c·GGN, which collect_gradients divides out.
    const double c = model.loss_scale(s);
    CHECK(c == Approx(weighted ? (0.25 + 4.0 + 0.0625 + 1.0) / 3.75 : 1.0 / static_cast<double>(T)).epsilon(1e-14));
    const Eigen::MatrixXd mc = G * G.transpose() / draws / c;
    INFO("weighted " << weighted << ": trace MC " << mc.trace() << ", exact " << ggn.trace());
    CHECK(std::abs(mc.trace() - ggn.trace()) / ggn.trace() < 0.08);  // 1/T scale error would be off by 5×
    CHECK((mc - ggn).norm() / ggn.norm() < 0.2);
  }
}

TEST_CASE("Llama: soft targets — loss Σₜ wₜ·cross-entropy, gradient by central differences, one-hot = observed") {
  const auto config = tiny_config();
  Llama<double> model(config, kMixedGroups, 11);
  std::mt19937_64 rng(31);
  Llama<double>::Sample s{random_tokens(8, config.vocab_size, rng), {}};
  s.soft_targets = {fu::SoftTarget::uniform({2, 5, 11}), fu::SoftTarget{{0, 7}, {0.25, 0.75}}};
  s.soft_target = {-1, 0, -1, 1, 1, -1, 0};
  const std::size_t T = s.tokens.size() - 1;
  for (const bool weighted : {false, true}) {
    s.weights = weighted ? std::vector<double>{0.5, 1.0, 0.0, 2.0, 0.25, 1.0, 0.75} : std::vector<double>{};
    // loss from the model's own log-probabilities, term by term
    const Eigen::MatrixXd lp = model.position_log_probs(std::span<const fu::Token>(s.tokens.data(), T));
    double expected = 0.0;
    for (std::size_t t = 0; t < T; ++t) {
      const double w = weighted ? s.weights[t] : 1.0 / static_cast<double>(T);
      const auto ti = static_cast<Eigen::Index>(t);
      double term = 0.0;
      if (s.soft_target[t] < 0) {
        term = -lp(s.tokens[t + 1], ti);
      } else {
        const auto& q = s.soft_targets[static_cast<std::size_t>(s.soft_target[t])];
        for (std::size_t k = 0; k < q.size(); ++k) term -= q.probability(k) * lp(q.tokens[k], ti);
      }
      expected += w * term;
    }
    CHECK(model.loss(s) == Approx(expected).epsilon(1e-12));
    fu::testing::GradientCheckOptions o;
    o.max_coordinates = 1500;
    const auto r = fu::testing::check_gradient(model, s, o);
    INFO("weighted " << weighted << ": " << r.message);
    CHECK(r.passed);
  }
  // The batch paths agree with the per-sample ones on soft samples.
  std::vector<Llama<double>::Sample> batch = {s, s, Llama<double>::Sample{s.tokens}};
  batch[1].weights.clear();
  CHECK(fu::testing::check_batch_gradient(model, std::span<const Llama<double>::Sample>(batch)).passed);
  // A one-hot soft target on the observed token is the observed target, bit for bit.
  Llama<double>::Sample observed{s.tokens, s.weights};
  Llama<double>::Sample one_hot = observed;
  for (std::size_t t = 0; t < T; ++t) {
    one_hot.soft_targets.push_back(fu::SoftTarget{{s.tokens[t + 1]}, {1.0}});
    one_hot.soft_target.push_back(static_cast<std::int32_t>(t));
  }
  CHECK(model.loss(one_hot) == model.loss(observed));
  CHECK(gradient_of(model, one_hot) == gradient_of(model, observed));
  // Soft targets do not change the sampled gradient (the Fisher does not depend on targets).
  std::vector<double> g1(model.num_parameters()), g2(model.num_parameters());
  std::mt19937_64 r1(5), r2(5);
  model.sampled_gradient(s, r1, g1);
  model.sampled_gradient(observed, r2, g2);
  CHECK(g1 == g2);
}

TEST_CASE("Llama: loss_scale makes collected empirical scores the per-token scaled gradient") {
  const auto config = tiny_config();
  Llama<double> model(config, {"blk.2.ffn_up", "output_norm"}, 3);
  std::mt19937_64 rng(6);
  std::vector<Llama<double>::Sample> samples = {{random_tokens(9, config.vocab_size, rng), {}},
                                                {random_tokens(6, config.vocab_size, rng), {0, 1, 1, 0, 1}},
                                                {random_tokens(5, config.vocab_size, rng), {0.5, 0.5, 0.5, 0.5}}};
  CHECK(model.loss_scale(samples[0]) == Approx(1.0 / 8.0).epsilon(1e-15));  // the mean over 8 targets
  CHECK(model.loss_scale(samples[1]) == 1.0);                               // a 0/1 mask sums: c = 1
  CHECK(model.loss_scale(samples[2]) == Approx(0.5).epsilon(1e-15));        // equal weights: their value
  CHECK(model.loss_scale({{1, 2, 3}, {0.0, 0.0}}) == 1.0);                  // all masked: the loss is 0
  const fu::Matrix<double> G = fu::collect_gradients(model, std::span<const Llama<double>::Sample>(samples),
                                                     fu::GradientCollection{}, fu::ParameterSubset::all(model.num_parameters()));
  // With equal nonzero weights ∇loss/√c = Σₜ √wₜ ∇ℓₜ exactly: the gradient of the sample re-weighted by √wₜ.
  for (std::size_t i = 0; i < samples.size(); ++i) {
    auto root = samples[i];
    const std::size_t T = root.tokens.size() - 1;
    if (root.weights.empty()) root.weights.assign(T, 1.0 / static_cast<double>(T));
    for (auto& w : root.weights) w = std::sqrt(w);
    const Eigen::VectorXd ref = gradient_of(model, root);
    CHECK((G.col(static_cast<Eigen::Index>(i)) - ref).norm() <= 1e-13 * ref.norm());
  }
}

TEST_CASE("Llama: KV-cache decoding gives the full forward's log-probabilities at every position") {
  const auto config = tiny_config();
  Llama<double> md(config, {"blk.1"}, 21);
  Llama<float> mf(md);
  std::mt19937_64 rng(2);
  const auto tokens = random_tokens(config.context_length, config.vocab_size, rng);
  const Eigen::MatrixXd full = md.position_log_probs(tokens);
  const Eigen::MatrixXf full_f = mf.position_log_probs(tokens);
  auto st = md.begin_decode(std::span<const fu::Token>(tokens.data(), 1));
  auto sf = mf.begin_decode(std::span<const fu::Token>(tokens.data(), 1));
  std::vector<double> lp(config.vocab_size);
  std::vector<float> lpf(config.vocab_size);
  double worst = 0, worst_f = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (t > 0) {
      md.advance(st, tokens[t]);
      mf.advance(sf, tokens[t]);
    }
    md.log_probs(st, lp);
    mf.log_probs(sf, lpf);
    for (std::size_t v = 0; v < config.vocab_size; ++v) {
      worst = std::max(worst, std::abs(lp[v] - full(static_cast<Eigen::Index>(v), static_cast<Eigen::Index>(t))));
      worst_f = std::max(worst_f, static_cast<double>(std::abs(lpf[v] - full_f(static_cast<Eigen::Index>(v),
                                                                                 static_cast<Eigen::Index>(t)))));
    }
  }
  CHECK(worst < 1e-12);
  CHECK(worst_f < 1e-5);
  // float against double: rounding only.
  CHECK((full_f.cast<double>() - full).cwiseAbs().maxCoeff() < 1e-4);
  // next_token_log_probs is the last column, and a copied state continues independently.
  md.next_token_log_probs(tokens, lp);
  CHECK((Eigen::Map<Eigen::VectorXd>(lp.data(), static_cast<Eigen::Index>(lp.size())) - full.col(full.cols() - 1))
            .cwiseAbs()
            .maxCoeff() < 1e-12);
  auto branch = md.begin_decode(std::span<const fu::Token>(tokens.data(), 3));
  auto copy = branch;
  md.advance(copy, 4);
  md.log_probs(branch, lp);
  CHECK(std::abs(lp[0] - full(0, 2)) < 1e-12);
}

TEST_CASE("Llama: the batch gradient equals the sum of per-sample gradients, for any thread count") {
  const auto config = tiny_config();
  Llama<double> model(config, {"blk.0.attn_v", "blk.2.ffn_norm", "blk.2.ffn_up", "output_norm"}, 4);
  std::mt19937_64 rng(6);
  std::vector<Llama<double>::Sample> batch;
  for (std::size_t i = 0; i < 11; ++i) batch.push_back({random_tokens(2 + (i * 5) % 12, config.vocab_size, rng), {}});
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::VectorXd ref = Eigen::VectorXd::Zero(d);
  double loss = 0;
  for (const auto& s : batch) {
    ref += gradient_of(model, s);
    loss += model.loss(s);
  }
  Eigen::MatrixXd per;
  model.per_sample_gradients(batch, per);
  CHECK(relative_error<double>(per.rowwise().sum(), ref) < 1e-13);
  for (std::size_t threads : {1u, 2u, 3u}) {
    for (std::size_t chunk : {1u, 4u}) {
      model.set_execution({threads, chunk, 1u << 20});
      Eigen::VectorXd g(d);
      const double l = model.sum_loss_and_gradient(batch, std::span<double>(g.data(), model.num_parameters()));
      CHECK(relative_error<double>(g, ref) < 1e-13);
      CHECK(std::abs(l - loss) < 1e-12 * loss);
      CHECK(std::abs(model.sum_loss(batch) - loss) < 1e-12 * loss);
      Eigen::MatrixXd per_t;
      model.per_sample_gradients(batch, per_t);
      CHECK(relative_error<double>(per_t, per) < 1e-14);
    }
  }
}

TEST_CASE("Llama: a copy shares nothing mutable; a step on one leaves the other unchanged") {
  const auto config = tiny_config();
  Llama<double> a(config, {"blk.2.ffn_down"}, 3);
  Llama<double> b = a;
  b.parameters()[0] += 1.0;
  CHECK(a.parameters()[0] != b.parameters()[0]);
  std::mt19937_64 rng(1);
  Llama<double>::Sample s{random_tokens(8, config.vocab_size, rng), {}};
  CHECK(a.loss(s) != b.loss(s));
}

TEST_CASE("Llama: bad input throws InvalidArgument with a useful message and changes nothing") {
  const auto config = tiny_config();
  using fu::InvalidArgument;
  CHECK_THROWS_WITH(Llama<float>(config, {"blk.9.attn_q"}, 1), Catch::Contains("unknown trainable group"));
  CHECK_THROWS_AS(Llama<float>(config, {}, 1), InvalidArgument);
  auto bad = config;
  bad.num_kv_heads = 3;
  CHECK_THROWS_WITH(Llama<float>(bad, {"all"}, 1), Catch::Contains("num_kv_heads"));
  bad = config;
  bad.rope_dims = 5;
  CHECK_THROWS_AS(Llama<float>(bad, {"all"}, 1), InvalidArgument);

  Llama<double> model(config, {"blk.2"}, 1);
  const std::vector<double> before(model.parameters().begin(), model.parameters().end());
  std::vector<double> g(model.num_parameters());
  CHECK_THROWS_WITH(model.gradient({{1, 2, 99}, {}}, g), Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_WITH(model.gradient({{1}, {}}, g), Catch::Contains("between 2 and"));
  CHECK_THROWS_WITH(model.gradient({{1, 2, 3}, {0.5}}, g), Catch::Contains("one weight per target"));
  CHECK_THROWS_WITH(model.gradient({{1, 2, 3}, {0.5, -1.0}}, g), Catch::Contains("finite and >= 0"));
  Llama<double>::Sample soft{{1, 2, 3}, {}, {0, 1}, {fu::SoftTarget::uniform({4, 5})}};
  CHECK_THROWS_WITH(model.gradient(soft, g), Catch::Contains("soft-target index 1"));
  soft.soft_target = {0};
  CHECK_THROWS_WITH(model.gradient(soft, g), Catch::Contains("soft-target indices"));
  soft.soft_target = {0, -1};
  soft.soft_targets[0].tokens = {4, 99};
  CHECK_THROWS_WITH(model.gradient(soft, g), Catch::Contains("outside the vocabulary"));
  soft.soft_targets[0] = fu::SoftTarget{{4, 5}, {0.5, 0.6}};
  CHECK_THROWS_WITH(model.loss(soft), Catch::Contains("normalise"));
  std::vector<double> short_g(3);
  CHECK_THROWS_AS(model.gradient({{1, 2, 3}, {}}, short_g), InvalidArgument);
  std::vector<double> lp(config.vocab_size);
  CHECK_THROWS_AS(model.next_token_log_probs({}, lp), InvalidArgument);
  CHECK_THROWS_AS(model.tensor("blk.0.attn_qq"), InvalidArgument);
  CHECK(std::vector<double>(model.parameters().begin(), model.parameters().end()) == before);
}

TEST_CASE("Llama: transposed copies of the frozen weights change no result (bitwise), and can be dropped") {
  auto run = [](auto tag) {
    using Scalar = decltype(tag);
    using Model = Llama<Scalar>;
    Model plain(tiny_config(), {"blk.2", "output_norm"}, 41);  // blocks 0–1 and the tied head frozen
    std::mt19937_64 rng(5);
    std::vector<typename Model::Sample> batch(3);
    for (auto& s : batch) s.tokens = random_tokens(11, tiny_config().vocab_size, rng);
    Model fast = plain;
    REQUIRE_FALSE(fast.transposed_frozen_weights());
    fast.set_transposed_frozen_weights(true);
    REQUIRE(fast.transposed_frozen_weights());
    REQUIRE_FALSE(plain.transposed_frozen_weights());
    const std::size_t d = plain.num_parameters();
    auto check_same = [&](const Model& a, const Model& b) {
      std::vector<Scalar> g0(d), g1(d);
      const Scalar l0 = a.sum_loss_and_gradient(batch, std::span<Scalar>(g0));
      const Scalar l1 = b.sum_loss_and_gradient(batch, std::span<Scalar>(g1));
      CHECK(l0 == l1);
      CHECK(g0 == g1);
      CHECK(a.position_log_probs(batch[0].tokens) == b.position_log_probs(batch[0].tokens));
      return g0;
    };
    const auto g = check_same(plain, fast);
    // Trainable weights are never copied: a step on them is seen by the fast path as by the plain one.
    for (std::size_t i = 0; i < d; ++i) {
      plain.parameters()[i] -= Scalar(0.1) * g[i];
      fast.parameters()[i] -= Scalar(0.1) * g[i];
    }
    check_same(plain, fast);
    Model copy = fast;  // copies share the transposed weights
    CHECK(copy.transposed_frozen_weights());
    check_same(plain, copy);
    copy.set_transposed_frozen_weights(false);
    CHECK_FALSE(copy.transposed_frozen_weights());
    CHECK(fast.transposed_frozen_weights());
    check_same(plain, copy);
  };
  run(float{});
  run(double{});
}
