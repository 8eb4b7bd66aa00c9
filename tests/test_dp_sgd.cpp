// DP-SGD: per-sample clipping against an fp64 reference, the noise's scale and independence and the
// Poisson sampling rate (statistical tests with fixed seeds and stated bounds), equality with plain
// full-batch gradient descent when σ = 0, q = 1, C = ∞ on a convex model, determinism across thread
// counts, parameter subsets, the strong guarantee, and the options' errors.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/llama.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/privacy/dp_sgd.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;

namespace {

/// loss(s) = gᵀθ: the per-sample gradient is the sample's own vector g, known exactly. A sample may
/// carry a NaN to test the error path.
struct LinearModel {
  using Scalar = double;
  struct Sample {
    Eigen::VectorXd g;
  };
  Eigen::VectorXd theta;
  explicit LinearModel(std::size_t d, std::uint64_t seed = 3) : theta(static_cast<Eigen::Index>(d)) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    for (auto& t : theta) t = normal(rng);
  }
  std::size_t num_parameters() const { return static_cast<std::size_t>(theta.size()); }
  std::span<double> parameters() { return {theta.data(), num_parameters()}; }
  std::span<const double> parameters() const { return {theta.data(), num_parameters()}; }
  double loss(const Sample& s) const { return s.g.dot(theta); }
  double gradient(const Sample& s, std::span<double> out) const {
    fu::as_eigen(out) = s.g;
    return s.g.dot(theta);
  }
};
static_assert(fu::DifferentiableModel<LinearModel>);

/// n samples in dimension d with gradient norms spread log-uniformly over [lo, hi].
std::vector<LinearModel::Sample> linear_samples(std::size_t n, std::size_t d, double lo, double hi, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> u(std::log(lo), std::log(hi));
  std::vector<LinearModel::Sample> out(n);
  for (auto& s : out) {
    s.g.resize(static_cast<Eigen::Index>(d));
    for (auto& x : s.g) x = normal(rng);
    s.g *= std::exp(u(rng)) / s.g.norm();
  }
  return out;
}

fu::DpSgdOptions quiet_sgd() {
  fu::DpSgdOptions o;
  o.optimizer = fu::DpOptimizer::sgd;
  o.learning_rate = o.min_learning_rate = 1.0;
  o.progress_interval_seconds = 0;
  return o;
}

const char* kText =
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
    "darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God "
    "said, Let there be light: and there was light. And God saw the light, that it was good: and God divided "
    "the light from the darkness. And God called the light Day, and the darkness he called Night. And the "
    "evening and the morning were the first day. ";

fu::models::TransformerConfig tiny_config() {
  fu::models::TransformerConfig c;
  c.num_layers = 1;
  c.width = 16;
  c.num_heads = 2;
  c.context_length = 16;
  c.seed = 5;
  return c;
}

std::vector<fu::models::Transformer<float>::Sample> text_records() {
  std::string text;
  for (int i = 0; i < 4; ++i) text += kText;
  const auto tokens = fu::ByteTokenizer{}.encode(text);
  return fu::split_windows<fu::models::Transformer<float>::Sample>(tokens, 17);
}

}  // namespace

TEST_CASE("DpSgd: every per-sample gradient is clipped to norm C and smaller ones are untouched", "[dp_sgd]") {
  const std::size_t d = 40, n = 60;
  const auto samples = linear_samples(n, d, 0.05, 20.0, 11);
  LinearModel model(d);
  const Eigen::VectorXd before = model.theta;
  auto o = quiet_sgd();
  o.sampling_rate = 1.0;
  o.noise_multiplier = 0.0;
  o.clip_norm = 1.3;
  fu::DpSgdTrainer<LinearModel> trainer(model, o);
  const auto info = trainer.step(samples, n);
  // fp64 reference: Δθ = −(1/N) Σ g_i·min(1, C/‖g_i‖).
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(d);
  std::size_t clipped = 0;
  for (const auto& s : samples) {
    const double norm = s.g.norm();
    sum += s.g * std::min(1.0, o.clip_norm / norm);
    clipped += norm > o.clip_norm;
  }
  const Eigen::VectorXd expected = before - sum / double(n);
  CHECK((model.theta - expected).norm() <= 1e-13 * expected.norm());
  CHECK(clipped > 10);
  CHECK(clipped < n - 10);
  CHECK(info.clipped_fraction == Approx(double(clipped) / n));
  CHECK(info.max_clipped_norm <= o.clip_norm * (1 + 1e-12));
  CHECK(info.max_clipped_norm >= o.clip_norm * (1 - 1e-12));
  CHECK(info.batch_size == n);
  CHECK(info.noise_std == 0.0);

  // One sample far above C: the step is exactly C long, in the sample's direction.
  LinearModel one(d);
  const Eigen::VectorXd start = one.theta;
  o.delta = 1e-5;
  fu::DpSgdTrainer<LinearModel> single(one, o);
  std::vector<LinearModel::Sample> big{{samples.front().g.normalized() * 50.0}};
  single.step(big, 1);
  const Eigen::VectorXd moved = start - one.theta;
  CHECK(std::abs(moved.norm() - o.clip_norm) <= 1e-13);
  CHECK(moved.normalized().dot(big[0].g.normalized()) == Approx(1.0).epsilon(1e-14));
}

TEST_CASE("DpSgd: the noise on the sum is N(0, sigma^2 C^2) per coordinate and fresh at every step", "[dp_sgd]") {
  // Recover the noise from the update: noise = −Δθ·qN − Σ clip(g_i). With d = 200 000 coordinates the
  // bounds below are 5 standard errors of each statistic (fixed seed: the test is deterministic).
  const std::size_t d = 200000, n = 4;
  const auto samples = linear_samples(n, d, 0.2, 0.5, 21);  // all below C: clipping leaves them unchanged
  LinearModel model(d);
  auto o = quiet_sgd();
  o.sampling_rate = 1.0;
  o.noise_multiplier = 1.3;
  o.clip_norm = 0.7;
  o.delta = 1e-5;
  o.seed = 77;
  fu::DpSgdTrainer<LinearModel> trainer(model, o);
  Eigen::VectorXd signal = Eigen::VectorXd::Zero(d);
  for (const auto& s : samples) signal += s.g;
  auto noise_of_step = [&] {
    const Eigen::VectorXd before = model.theta;
    const auto info = trainer.step(samples, n);
    CHECK(info.noise_std == Approx(1.3 * 0.7));
    return Eigen::VectorXd((before - model.theta) * double(n) - signal);
  };
  const Eigen::VectorXd z1 = noise_of_step() / (1.3 * 0.7), z2 = noise_of_step() / (1.3 * 0.7);
  const double D = double(d);
  for (const Eigen::VectorXd* z : {&z1, &z2}) {
    const double mean = z->mean();
    const double var = (z->array() - mean).square().sum() / (D - 1);
    const double tail = double((z->array().abs() > 2.0).count()) / D;  // P(|Z| > 2) = 0.0455
    CHECK(std::abs(mean) < 5.0 / std::sqrt(D));
    CHECK(std::abs(var - 1.0) < 5.0 * std::sqrt(2.0 / D));
    CHECK(std::abs(tail - 0.0455003) < 5.0 * std::sqrt(0.0455 * 0.9545 / D));
  }
  const double correlation = z1.dot(z2) / (z1.norm() * z2.norm());
  CHECK(std::abs(correlation) < 5.0 / std::sqrt(D));
}

TEST_CASE("DpSgd: Poisson sampling includes each record with probability q, independently", "[dp_sgd]") {
  // N = 1000 records, q = 0.05, 4000 batches; each bound is 5 standard errors (6 for the χ² statistic).
  const std::size_t N = 1000, T = 4000;
  const double q = 0.05;
  fu::PoissonSampler sampler(q, 123);
  std::vector<std::size_t> counts(N, 0), batch;
  std::size_t adjacent_pairs = 0;
  double size_sum = 0, size_sq = 0;
  for (std::size_t t = 0; t < T; ++t) {
    sampler.sample(N, batch);
    REQUIRE(std::is_sorted(batch.begin(), batch.end()));
    REQUIRE(std::adjacent_find(batch.begin(), batch.end()) == batch.end());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      ++counts[batch[i]];
      if (i + 1 < batch.size() && batch[i + 1] == batch[i] + 1) ++adjacent_pairs;
    }
    size_sum += double(batch.size());
    size_sq += double(batch.size()) * double(batch.size());
  }
  const double mean_size = size_sum / T, var_size = size_sq / T - mean_size * mean_size;
  CHECK(std::abs(mean_size - q * N) < 5 * std::sqrt(q * (1 - q) * N / T));
  CHECK(std::abs(var_size / (q * (1 - q) * N) - 1.0) < 5 * std::sqrt(2.0 / T));
  // Per-record inclusion counts ~ Binomial(T, q): χ² over the N records with N − 1 degrees of freedom.
  double chi2 = 0;
  for (std::size_t c : counts) chi2 += (double(c) - q * T) * (double(c) - q * T) / (q * (1 - q) * T);
  CHECK(std::abs(chi2 - double(N)) < 6 * std::sqrt(2.0 * N));
  // Neighbours are included together with probability q² (the skips are memoryless).
  const double pairs_expected = double(T) * double(N - 1) * q * q;
  CHECK(std::abs(double(adjacent_pairs) - pairs_expected) < 5 * std::sqrt(pairs_expected));
  // q = 1: everyone, in order.
  fu::PoissonSampler all(1.0, 1);
  all.sample(7, batch);
  CHECK(batch == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
}

TEST_CASE("DpSgd: the trainer's batches follow the sampling rate and the accountant counts every step", "[dp_sgd]") {
  const std::size_t n = 400, d = 5;
  const auto samples = linear_samples(n, d, 0.1, 2.0, 31);
  LinearModel model(d);
  auto o = quiet_sgd();
  o.learning_rate = o.min_learning_rate = 1e-3;
  o.sampling_rate = 0.1;
  o.noise_multiplier = 0.9;
  o.steps = 500;
  std::vector<std::size_t> counts(n, 0);
  double batch_total = 0;
  fu::DpSgdTrainer<LinearModel> trainer(model, o);
  const auto summary = trainer.train(samples, [&](const fu::DpSgdStep& s) {
    for (std::size_t i : s.indices) ++counts[i];
    batch_total += double(s.batch_size);
    CHECK(s.indices.size() == s.batch_size);
    CHECK(s.expected_batch_size == Approx(40.0));
    return true;
  });
  CHECK(summary.steps == 500);
  CHECK(std::abs(batch_total / 500.0 - 40.0) < 5 * std::sqrt(0.1 * 0.9 * 400 / 500.0));
  CHECK(summary.mean_batch_size == Approx(batch_total / 500.0));
  // ε equals the accountant's for 500 Poisson steps at (q, σ), δ = 1/N.
  CHECK(summary.privacy.delta == 1.0 / 400);
  CHECK(summary.privacy.epsilon == Approx(fu::dp_sgd_epsilon(0.1, 0.9, 500, 1.0 / 400)).epsilon(1e-14));
  CHECK(trainer.accountant().steps() == 500);
}

TEST_CASE("DpSgd: with sigma = 0, q = 1 and C = infinity it is full-batch gradient descent on a convex model", "[dp_sgd]") {
  const auto samples = fu::models::make_logistic_problem<double>(200, 6, 42);
  fu::models::LogisticRegression<double> dp_model(6, 0.01), gd_model(6, 0.01);
  auto o = quiet_sgd();
  o.sampling_rate = 1.0;
  o.noise_multiplier = 0.0;
  o.clip_norm = std::numeric_limits<double>::infinity();
  o.learning_rate = o.min_learning_rate = 0.5;
  o.steps = 60;
  o.num_threads = 3;
  fu::DpSgdTrainer<fu::models::LogisticRegression<double>> trainer(dp_model, o);
  const auto summary = trainer.train(samples);
  CHECK(summary.mean_batch_size == 200.0);
  Eigen::VectorXd grad;
  for (int t = 0; t < 60; ++t) {
    fu::detail::objective_gradient(gd_model, std::span<const fu::models::LogisticRegression<double>::Sample>(samples), grad);
    fu::as_eigen(gd_model.parameters()) -= 0.5 * grad;  // θ ← θ − η ∇J, J = mean loss + (λ/2)‖θ‖²
  }
  const auto a = fu::as_eigen(std::span<const double>(dp_model.parameters()));
  const auto b = fu::as_eigen(std::span<const double>(gd_model.parameters()));
  CHECK((a - b).norm() <= 1e-12 * b.norm());
  CHECK(b.norm() > 0.1);  // it moved
  CHECK(std::isinf(summary.privacy.epsilon));  // no noise: no privacy
}

TEST_CASE("DpSgd: the same seed gives bitwise the same transformer for 1 and 3 threads", "[dp_sgd]") {
  const auto records = text_records();
  auto run = [&](std::size_t threads, std::uint64_t seed, std::size_t in_flight) {
    fu::models::Transformer<float> model(tiny_config());
    fu::DpSgdOptions o;
    o.sampling_rate = 0.25;
    o.noise_multiplier = 0.8;
    o.clip_norm = 0.5;
    o.steps = 4;
    o.learning_rate = o.min_learning_rate = 3e-3;
    o.num_threads = threads;
    o.gradients_in_flight = in_flight;
    o.seed = seed;
    o.progress_interval_seconds = 0;
    fu::DpSgdTrainer<fu::models::Transformer<float>> trainer(model, o);
    trainer.train(records);
    const auto p = model.parameters();
    return std::vector<float>(p.begin(), p.end());
  };
  const auto one = run(1, 9, 32), three = run(3, 9, 32), small_waves = run(3, 9, 5), other = run(1, 10, 32);
  CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(one.data(), small_waves.data(), one.size() * sizeof(float)) == 0);
  CHECK(one != other);
}

TEST_CASE("DpSgd: a parameter subset is trained alone; the other parameters stay bitwise unchanged", "[dp_sgd]") {
  const auto records = text_records();
  fu::models::Transformer<float> model(tiny_config());
  const auto before = std::vector<float>(model.parameters().begin(), model.parameters().end());
  const auto subset = fu::ParameterSubset::from_groups(model, {"block0"});
  fu::DpSgdOptions o;
  o.sampling_rate = 0.3;
  o.noise_multiplier = 1.0;
  o.steps = 3;
  o.progress_interval_seconds = 0;
  o.num_threads = 2;
  fu::DpSgdTrainer<fu::models::Transformer<float>> trainer(model, o, subset);
  trainer.train(records);
  const auto after = model.parameters();
  const auto& r = subset.ranges().front();
  std::size_t changed_inside = 0;
  for (std::size_t i = 0; i < after.size(); ++i) {
    const bool inside = i >= r.offset && i < r.offset + r.size;
    if (inside) changed_inside += after[i] != before[i];
    else REQUIRE(after[i] == before[i]);
  }
  CHECK(changed_inside > r.size * 9 / 10);  // noise reaches (almost) every trained coordinate
}

TEST_CASE("DpSgd: trains a ParameterSubset of the Llama model, deterministically, leaving the rest unchanged", "[dp_sgd]") {
  fu::models::LlamaConfig c;
  c.vocab_size = 19;
  c.context_length = 12;
  c.num_layers = 3;
  c.width = 32;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_width = 24;
  std::mt19937_64 rng(4);
  std::uniform_int_distribution<int> pick(0, 18);
  std::vector<fu::models::Llama<float>::Sample> records(40);
  for (auto& r : records) {
    r.tokens.resize(13);
    for (auto& t : r.tokens) t = pick(rng);
  }
  auto run = [&](std::size_t threads) {
    // Blocks 1 and 2 are trainable in the model; DP-SGD trains only block 2's attention and MLP inputs.
    fu::models::Llama<float> model(c, {"blk.1", "blk.2"}, 7);
    const std::vector<float> before(model.parameters().begin(), model.parameters().end());
    const auto subset = fu::ParameterSubset::from_groups(model, {"blk.2.attn_q", "blk.2.ffn_up"});
    fu::DpSgdOptions o;
    o.sampling_rate = 0.25;
    o.noise_multiplier = 1.0;
    o.steps = 3;
    o.num_threads = threads;
    o.progress_interval_seconds = 0;
    fu::DpSgdTrainer<fu::models::Llama<float>> trainer(model, o, subset);
    const auto summary = trainer.train(records);
    CHECK(std::isfinite(summary.privacy.epsilon));
    std::size_t moved_outside = 0, moved_inside = 0;
    const auto after = model.parameters();
    for (std::size_t i = 0; i < after.size(); ++i) {
      bool inside = false;
      for (const auto& r : subset.ranges()) inside = inside || (i >= r.offset && i < r.offset + r.size);
      (inside ? moved_inside : moved_outside) += after[i] != before[i];
    }
    CHECK(moved_outside == 0);
    CHECK(moved_inside > subset.size() * 9 / 10);
    return std::vector<float>(after.begin(), after.end());
  };
  CHECK(run(1) == run(2));
}

TEST_CASE("DpSgd: a small transformer learns under DP-SGD with moderate noise", "[dp_sgd]") {
  const auto records = text_records();
  fu::models::Transformer<float> model(tiny_config());
  const auto first = fu::evaluate_language_model(model, fu::ByteTokenizer{}.encode(kText));
  fu::DpSgdOptions o;
  o.sampling_rate = 0.5;
  o.noise_multiplier = 0.3;
  o.clip_norm = 1.0;
  o.steps = 60;
  o.learning_rate = o.min_learning_rate = 1e-2;
  o.progress_interval_seconds = 0;
  o.num_threads = 2;
  fu::DpSgdTrainer<fu::models::Transformer<float>> trainer(model, o);
  const auto summary = trainer.train(records);
  const auto last = fu::evaluate_language_model(model, fu::ByteTokenizer{}.encode(kText));
  CHECK(first.mean_loss > 5.0);          // ≈ ln 256 at initialisation
  CHECK(last.mean_loss < 3.5);           // letters and spaces learned despite the noise
  CHECK(summary.final_loss < summary.first_loss);
  CHECK(std::isfinite(summary.privacy.epsilon));
}

TEST_CASE("DpSgd: bad options throw InvalidArgument saying what is wrong, before anything changes", "[dp_sgd]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  LinearModel model(4);
  const Eigen::VectorXd before = model.theta;
  auto expect = [&](auto mutate, const std::string& words) {
    auto o = quiet_sgd();
    mutate(o);
    CHECK_THROWS_AS(fu::DpSgdTrainer<LinearModel>(model, o), fu::InvalidArgument);
    CHECK_THROWS_WITH(fu::DpSgdTrainer<LinearModel>(model, o), Catch::Contains(words));
    CHECK(model.theta == before);
  };
  expect([](auto& o) { o.clip_norm = 0.0; }, "clip_norm");
  expect([](auto& o) { o.clip_norm = -1.0; }, "clip_norm");
  expect([&](auto& o) { o.clip_norm = nan; }, "clip_norm");
  expect([&](auto& o) { o.clip_norm = inf; }, "unbounded sensitivity");
  expect([](auto& o) { o.noise_multiplier = -0.5; }, "noise_multiplier");
  expect([&](auto& o) { o.noise_multiplier = nan; }, "noise_multiplier");
  expect([&](auto& o) { o.noise_multiplier = inf; }, "noise_multiplier");
  expect([](auto& o) { o.sampling_rate = 0.0; }, "(0, 1]");
  expect([](auto& o) { o.sampling_rate = 1.5; }, "(0, 1]");
  expect([&](auto& o) { o.sampling_rate = nan; }, "sampling_rate");
  expect([](auto& o) { o.steps = 0; }, "steps");
  expect([&](auto& o) { o.learning_rate = nan; }, "learning rates");
  expect([](auto& o) { o.momentum = 1.0; }, "momentum");
  expect([](auto& o) { o.delta = 1.0; }, "delta");
  expect([](auto& o) { o.orders = {0.5, 2.0}; }, "order");
  // A subset for another model size, an empty record set, δ = 1/N with N = 1.
  auto o = quiet_sgd();
  CHECK_THROWS_WITH(fu::DpSgdTrainer<LinearModel>(model, o, fu::ParameterSubset::all(5)), Catch::Contains("subset"));
  fu::DpSgdTrainer<LinearModel> trainer(model, o);
  CHECK_THROWS_WITH(trainer.train(std::span<const LinearModel::Sample>{}), Catch::Contains("no records"));
  std::vector<LinearModel::Sample> one{{Eigen::VectorXd::Ones(4)}};
  CHECK_THROWS_WITH(trainer.train(one), Catch::Contains("at least 2 records"));
  CHECK(model.theta == before);
  CHECK(trainer.steps_taken() == 0);
}

TEST_CASE("DpSgd: a NaN gradient throws NonFiniteError and leaves model, optimiser, accountant and streams as before", "[dp_sgd]") {
  const std::size_t n = 50, d = 6;
  auto good = linear_samples(n, d, 0.1, 3.0, 5);
  auto bad = good;
  bad[17].g[2] = std::numeric_limits<double>::quiet_NaN();
  auto o = quiet_sgd();
  o.sampling_rate = 1.0;  // the bad record is always drawn
  o.noise_multiplier = 1.0;
  o.steps = 5;
  o.optimizer = fu::DpOptimizer::adamw;
  o.learning_rate = o.min_learning_rate = 1e-2;
  LinearModel model(d), fresh(d);
  const Eigen::VectorXd before = model.theta;
  fu::DpSgdTrainer<LinearModel> trainer(model, o);
  CHECK_THROWS_AS(trainer.train(bad), fu::NonFiniteError);
  CHECK(model.theta == before);
  CHECK(trainer.steps_taken() == 0);
  CHECK(trainer.accountant().steps() == 0);
  // Everything continues as if the failed step had never been tried.
  trainer.train(good);
  fu::DpSgdTrainer<LinearModel> reference(fresh, o);
  reference.train(good);
  CHECK(model.theta == fresh.theta);
}
