// Transformer: exact gradients (central differences in double), batch = Σ per-sample, the sampled
// (Monte-Carlo Fisher) gradient against an exact reconstruction and its second moment against the
// exact Fisher quadratic form, incremental decoding against full re-runs, float against double.
#include <catch2/catch.hpp>

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <cmath>
#include <random>
#include <span>
#include <thread>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Transformer;
using fu::models::TransformerConfig;

static_assert(fu::DifferentiableModel<Transformer<float>> && fu::DifferentiableModel<Transformer<double>>);
static_assert(fu::BatchDifferentiableModel<Transformer<float>> && fu::BatchDifferentiableModel<Transformer<double>>);
static_assert(fu::SampledFisherModel<Transformer<float>> && fu::SampledFisherModel<Transformer<double>>);
static_assert(fu::HasParameterGroups<Transformer<float>>);
static_assert(fu::LanguageModel<Transformer<float>> && fu::IncrementalLanguageModel<Transformer<float>>);
static_assert(fu::IncrementalLanguageModel<Transformer<double>>);
static_assert(!fu::TwiceDifferentiableModel<Transformer<double>>);  // no Hessian: Fisher methods only
static_assert(!fu::RegularizedModel<Transformer<double>>);          // weight decay lives in the optimiser

namespace {

TransformerConfig tiny_config(std::uint64_t seed = 7) {
  TransformerConfig c;
  c.vocab_size = 11;
  c.context_length = 8;
  c.num_layers = 2;
  c.width = 16;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = seed;
  return c;
}

// Initialised, then every parameter moved by seeded noise, so that no gain is exactly 1 and no bias 0.
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

template <class Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, 1> gradient_of(const Transformer<Scalar>& m,
                                                     const typename Transformer<Scalar>::Sample& s) {
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> g(static_cast<Eigen::Index>(m.num_parameters()));
  m.gradient(s, std::span<Scalar>(g.data(), m.num_parameters()));
  return g;
}

}  // namespace

TEST_CASE("Transformer: the gradient equals central finite differences in double on every coordinate") {
  const auto config = tiny_config();
  auto model = perturbed_model<double>(config);
  std::mt19937_64 rng(1);
  const Transformer<double>::Sample s{random_tokens(config.context_length + 1, config.vocab_size, rng)};
  const Eigen::VectorXd g = gradient_of(model, s);
  REQUIRE(g.allFinite());
  REQUIRE(g.norm() > 1e-3);
  Eigen::VectorXd fd(g.size());
  const double h = 1e-5;
  auto theta = model.parameters();
  for (std::size_t i = 0; i < theta.size(); ++i) {
    const double saved = theta[i];
    theta[i] = saved + h;
    const double up = model.loss(s);
    theta[i] = saved - h;
    const double down = model.loss(s);
    theta[i] = saved;
    fd[static_cast<Eigen::Index>(i)] = (up - down) / (2 * h);
  }
  INFO("relative error " << (g - fd).norm() / fd.norm() << ", max abs error " << (g - fd).cwiseAbs().maxCoeff());
  CHECK((g - fd).norm() / fd.norm() < 1e-7);
  CHECK((g - fd).cwiseAbs().maxCoeff() < 1e-7);
  // Every group receives gradient (the check is not passing because some block is ignored).
  for (const auto& group : model.parameter_groups()) {
    INFO(group.name);
    CHECK(g.segment(static_cast<Eigen::Index>(group.offset), static_cast<Eigen::Index>(group.size)).norm() > 1e-6);
  }
}

TEST_CASE("Transformer: the library's gradient checkers accept it in float and double, batch and sampled") {
  const auto config = tiny_config(11);
  auto modeld = perturbed_model<double>(config, 0.2, 13);
  auto modelf = perturbed_model<float>(config, 0.2, 13);
  std::mt19937_64 rng(6);
  std::vector<Transformer<double>::Sample> batch;
  for (int i = 0; i < 3; ++i) batch.push_back({random_tokens(5 + static_cast<std::size_t>(i), config.vocab_size, rng)});
  fu::testing::GradientCheckOptions subset;
  subset.max_coordinates = 400;
  const auto rd = fu::testing::check_gradient(modeld, batch[0], subset);
  INFO(rd.message);
  CHECK(rd.passed);
  const auto rb = fu::testing::check_batch_gradient(modeld, std::span<const Transformer<double>::Sample>(batch), subset);
  INFO(rb.message);
  CHECK(rb.passed);
  const auto rf = fu::testing::check_gradient(modelf, Transformer<float>::Sample{batch[1].tokens}, subset);
  INFO(rf.message);
  CHECK(rf.passed);
  const auto rs = fu::testing::check_sampled_gradient(modelf, Transformer<float>::Sample{batch[2].tokens}, 2000);
  INFO(rs.message);
  CHECK(rs.passed);
}

TEST_CASE("Transformer: a short sequence's gradient matches finite differences (positions < context)") {
  const auto config = tiny_config(3);
  auto model = perturbed_model<double>(config, 0.2, 5);
  const Transformer<double>::Sample s{{4, 9, 1}};
  const Eigen::VectorXd g = gradient_of(model, s);
  std::mt19937_64 rng(2);
  std::normal_distribution<double> normal;
  // Directional derivatives along seeded random directions.
  for (int trial = 0; trial < 5; ++trial) {
    Eigen::VectorXd v(g.size());
    for (auto& x : v) x = normal(rng);
    Eigen::VectorXd theta0 = Eigen::Map<const Eigen::VectorXd>(model.parameters().data(), g.size());
    const double h = 1e-5;
    Eigen::Map<Eigen::VectorXd>(model.parameters().data(), g.size()) = theta0 + h * v;
    const double up = model.loss(s);
    Eigen::Map<Eigen::VectorXd>(model.parameters().data(), g.size()) = theta0 - h * v;
    const double down = model.loss(s);
    Eigen::Map<Eigen::VectorXd>(model.parameters().data(), g.size()) = theta0;
    const double fd = (up - down) / (2 * h);
    CHECK(std::abs(fd - g.dot(v)) / std::abs(fd) < 1e-6);
  }
}

TEST_CASE("Transformer: the loss at initialisation is close to ln(vocab_size)") {
  TransformerConfig c = tiny_config();
  c.vocab_size = 256;
  const Transformer<double> model(c);
  std::mt19937_64 rng(4);
  const Transformer<double>::Sample s{random_tokens(9, 256, rng)};
  CHECK(model.loss(s) == Approx(std::log(256.0)).epsilon(0.02));
}

TEST_CASE("Transformer: the batch gradient equals the sum of per-sample gradients, for any thread count") {
  const auto config = tiny_config();
  auto model = perturbed_model<double>(config);
  std::mt19937_64 rng(8);
  std::vector<Transformer<double>::Sample> batch;
  for (int i = 0; i < 11; ++i) batch.push_back({random_tokens(2 + static_cast<std::size_t>(i) % 8, config.vocab_size, rng)});
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(d);
  double loss_sum = 0;
  for (const auto& s : batch) {
    sum += gradient_of(model, s);
    loss_sum += model.loss(s);
  }
  Eigen::VectorXd one_thread(d), two_threads(d);
  model.set_execution({1, 4});
  const double l1 = model.sum_loss_and_gradient(batch, std::span<double>(one_thread.data(), model.num_parameters()));
  model.set_execution({2, 4});
  const double l2 = model.sum_loss_and_gradient(batch, std::span<double>(two_threads.data(), model.num_parameters()));
  CHECK((one_thread - sum).norm() / sum.norm() < 1e-12);
  CHECK(l1 == Approx(loss_sum).epsilon(1e-12));
  CHECK(one_thread == two_threads);  // bitwise: chunk partition is fixed, chunk sums added in order
  CHECK(l1 == l2);

  // float within float rounding of the double reference
  Transformer<float> modelf(model);
  modelf.set_execution({2, 3});
  std::vector<Transformer<float>::Sample> batchf;
  for (const auto& s : batch) batchf.push_back({s.tokens});
  Eigen::VectorXf gf(d);
  const float lf = modelf.sum_loss_and_gradient(batchf, std::span<float>(gf.data(), modelf.num_parameters()));
  CHECK((gf.cast<double>() - sum).norm() / sum.norm() < 1e-4);
  CHECK(static_cast<double>(lf) == Approx(loss_sum).epsilon(1e-5));
}

TEST_CASE("Transformer: the float model's loss and gradient match the double model's") {
  TransformerConfig c = tiny_config();
  c.vocab_size = 256;
  c.context_length = 16;
  c.width = 32;
  c.num_heads = 4;
  const auto modeld = perturbed_model<double>(c, 0.05);
  const Transformer<float> modelf(modeld);
  std::mt19937_64 rng(12);
  const auto tokens = random_tokens(17, 256, rng);
  const Eigen::VectorXd gd = gradient_of(modeld, Transformer<double>::Sample{tokens});
  const Eigen::VectorXf gf = gradient_of(modelf, Transformer<float>::Sample{tokens});
  CHECK((gf.cast<double>() - gd).norm() / gd.norm() < 1e-4);
  CHECK(static_cast<double>(modelf.loss({tokens})) == Approx(modeld.loss({tokens})).epsilon(1e-5));
}

TEST_CASE("Transformer: sampled_gradient equals the gradient of the NLL of targets drawn from the model") {
  const auto config = tiny_config();
  const auto model = perturbed_model<double>(config);
  std::mt19937_64 rng(21);
  const Transformer<double>::Sample s{random_tokens(7, config.vocab_size, rng)};
  const std::size_t T = s.tokens.size() - 1;
  const auto d = static_cast<Eigen::Index>(model.num_parameters());

  std::mt19937_64 draw(5), replay(5);
  Eigen::VectorXd g(d);
  model.sampled_gradient(s, draw, std::span<double>(g.data(), model.num_parameters()));

  // Replay the draws: one uniform per position, inverse CDF of p(· | tokens[0..t]).
  // −ln p(ŷ_t | x≤t) = (t+1)·loss(x0..xt, ŷ_t) − t·loss(x0..xt), so its gradient is exact too.
  Eigen::VectorXd ref = Eigen::VectorXd::Zero(d);
  std::vector<double> lp(config.vocab_size);
  for (std::size_t t = 0; t < T; ++t) {
    std::vector<fu::Token> prefix(s.tokens.begin(), s.tokens.begin() + static_cast<std::ptrdiff_t>(t) + 1);
    model.next_token_log_probs(prefix, lp);
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
    auto with_target = prefix;
    with_target.push_back(y);
    ref += static_cast<double>(t + 1) * gradient_of(model, Transformer<double>::Sample{with_target});
    if (t > 0) ref -= static_cast<double>(t) * gradient_of(model, Transformer<double>::Sample{prefix});
  }
  ref /= static_cast<double>(T);
  CHECK((g - ref).norm() / ref.norm() < 1e-10);
  CHECK(draw() == replay());  // exactly T uniforms were consumed

  // Deterministic per seed, different across seeds.
  std::mt19937_64 again(5), other(6);
  Eigen::VectorXd g2(d), g3(d);
  model.sampled_gradient(s, again, std::span<double>(g2.data(), model.num_parameters()));
  model.sampled_gradient(s, other, std::span<double>(g3.data(), model.num_parameters()));
  CHECK(g == g2);
  CHECK(g != g3);
}

TEST_CASE("Transformer: sampled gradients have mean zero and second moment vᵀFv of the exact Fisher") {
  const auto config = tiny_config();
  auto model = perturbed_model<double>(config, 0.5);
  std::mt19937_64 rng(31);
  const Transformer<double>::Sample s{random_tokens(5, config.vocab_size, rng)};
  const std::size_t T = s.tokens.size() - 1;
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  std::normal_distribution<double> normal;
  Eigen::VectorXd v(d);
  for (auto& x : v) x = normal(rng);
  v.normalize();

  // Exact vᵀFv = (1/T²) Σ_t Σ_y p_t(y) (∂_v ln p_t(y))², directional derivatives by central differences.
  const Eigen::VectorXd theta0 = Eigen::Map<const Eigen::VectorXd>(model.parameters().data(), d);
  const double h = 1e-5;
  double exact = 0;
  std::vector<double> lp(config.vocab_size), up(config.vocab_size), down(config.vocab_size);
  for (std::size_t t = 0; t < T; ++t) {
    const std::span<const fu::Token> prefix(s.tokens.data(), t + 1);
    Eigen::Map<Eigen::VectorXd>(model.parameters().data(), d) = theta0;
    model.next_token_log_probs(prefix, lp);
    Eigen::Map<Eigen::VectorXd>(model.parameters().data(), d) = theta0 + h * v;
    model.next_token_log_probs(prefix, up);
    Eigen::Map<Eigen::VectorXd>(model.parameters().data(), d) = theta0 - h * v;
    model.next_token_log_probs(prefix, down);
    for (std::size_t y = 0; y < config.vocab_size; ++y) {
      const double dlp = (up[y] - down[y]) / (2 * h);
      exact += std::exp(lp[y]) * dlp * dlp;
    }
  }
  Eigen::Map<Eigen::VectorXd>(model.parameters().data(), d) = theta0;
  exact /= static_cast<double>(T * T);

  const int draws = 4000;
  std::mt19937_64 sampler(77);
  Eigen::VectorXd g(d), mean = Eigen::VectorXd::Zero(d);
  double second = 0, norm2 = 0;
  for (int k = 0; k < draws; ++k) {
    model.sampled_gradient(s, sampler, std::span<double>(g.data(), model.num_parameters()));
    mean += g;
    second += g.dot(v) * g.dot(v);
    norm2 += g.squaredNorm();
  }
  mean /= draws;
  second /= draws;
  norm2 /= draws;
  INFO("Monte-Carlo vᵀFv " << second << ", exact " << exact);
  CHECK(std::abs(second - exact) / exact < 0.1);
  CHECK(mean.norm() < 4.0 * std::sqrt(norm2 / draws));  // E[g] = 0 for model-drawn targets
}

TEST_CASE("Transformer: incremental decoding gives the full-sequence log-probabilities, past the window too") {
  const auto config = tiny_config();
  const auto modeld = perturbed_model<double>(config);
  const Transformer<float> modelf(modeld);
  std::mt19937_64 rng(41);
  const auto tokens = random_tokens(14, config.vocab_size, rng);  // longer than context_length = 8
  auto state = modeld.begin_decode(std::span<const fu::Token>(tokens.data(), 2));
  auto statef = modelf.begin_decode(std::span<const fu::Token>(tokens.data(), 2));
  std::vector<double> inc(config.vocab_size), full(config.vocab_size);
  std::vector<float> incf(config.vocab_size);
  for (std::size_t n = 2; n <= tokens.size(); ++n) {
    if (n > 2) {
      modeld.advance(state, tokens[n - 1]);
      modelf.advance(statef, tokens[n - 1]);
    }
    modeld.log_probs(state, inc);
    modelf.log_probs(statef, incf);
    modeld.next_token_log_probs(std::span<const fu::Token>(tokens.data(), n), full);
    const Eigen::Map<const Eigen::VectorXd> a(inc.data(), static_cast<Eigen::Index>(inc.size()));
    const Eigen::Map<const Eigen::VectorXd> b(full.data(), static_cast<Eigen::Index>(full.size()));
    const Eigen::Map<const Eigen::VectorXf> af(incf.data(), static_cast<Eigen::Index>(incf.size()));
    INFO("after " << n << " tokens");
    CHECK((a - b).norm() / b.norm() < 1e-12);
    CHECK((af.cast<double>() - b).norm() / b.norm() < 1e-5);
    CHECK(std::abs(b.array().exp().sum() - 1.0) < 1e-12);
  }
  // A copied state continues independently (a tree walk relies on this).
  auto branch = state;
  modeld.advance(branch, 3);
  modeld.advance(state, 4);
  std::vector<double> a(config.vocab_size), b(config.vocab_size);
  modeld.log_probs(branch, a);
  modeld.log_probs(state, b);
  CHECK(a != b);
}

TEST_CASE("Transformer: concurrent gradient calls on one model agree with serial ones") {
  const auto config = tiny_config();
  const auto model = perturbed_model<float>(config);
  std::mt19937_64 rng(51);
  std::vector<Transformer<float>::Sample> samples;
  for (int i = 0; i < 8; ++i) samples.push_back({random_tokens(9, config.vocab_size, rng)});
  std::vector<Eigen::VectorXf> serial, parallel(samples.size());
  for (const auto& s : samples) serial.push_back(gradient_of(model, s));
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < samples.size(); i += 2) parallel[i] = gradient_of(model, samples[i]);
    });
  for (auto& th : threads) th.join();
  for (std::size_t i = 0; i < samples.size(); ++i) CHECK(serial[i] == parallel[i]);
}

TEST_CASE("Transformer: parameter groups partition the parameters in order") {
  const Transformer<float> model(tiny_config());
  std::size_t at = 0;
  std::vector<std::string> names;
  for (const auto& g : model.parameter_groups()) {
    CHECK(g.offset == at);
    at += g.size;
    names.push_back(g.name);
  }
  CHECK(at == model.num_parameters());
  CHECK(names == std::vector<std::string>{"embedding", "block0", "block1", "final_norm"});
  // d = V·C + T·C + L·(12C² + 13C) + 2C with mlp_ratio 4; here mlp_ratio 2: L·(8C² + 11C) + ...
  const std::size_t C = 16, V = 11, T = 8, F = 32;
  CHECK(model.num_parameters() == V * C + T * C + 2 * (4 * C + 3 * C * C + 3 * C + C * C + C + 2 * C * F + F + C) + 2 * C);
}

TEST_CASE("Transformer: bad input throws InvalidArgument and the config is validated") {
  const auto config = tiny_config();
  const Transformer<double> model(config);
  std::vector<double> g(model.num_parameters()), short_g(3), lp(config.vocab_size);
  CHECK_THROWS_AS(model.loss({{1}}), fu::InvalidArgument);                                  // no target
  CHECK_THROWS_AS(model.loss({std::vector<fu::Token>(10, 1)}), fu::InvalidArgument);       // > T_max + 1
  CHECK_THROWS_AS(model.loss({{1, 11}}), fu::InvalidArgument);                              // out of vocab
  CHECK_THROWS_AS(model.loss({{-1, 2}}), fu::InvalidArgument);
  CHECK_THROWS_AS(model.gradient({{1, 2}}, short_g), fu::InvalidArgument);
  CHECK_THROWS_AS(model.next_token_log_probs({}, lp), fu::InvalidArgument);
  CHECK_THROWS_AS(model.begin_decode({}), fu::InvalidArgument);
  std::vector<double> wrong_vocab(5);
  const std::vector<fu::Token> ctx{1, 2};
  CHECK_THROWS_AS(model.next_token_log_probs(ctx, wrong_vocab), fu::InvalidArgument);
  auto bad = config;
  bad.num_heads = 3;  // does not divide 16
  CHECK_THROWS_AS(Transformer<float>(bad), fu::InvalidArgument);
  bad = config;
  bad.num_layers = 0;
  CHECK_THROWS_AS(Transformer<float>(bad), fu::InvalidArgument);
  CHECK(fu::models::TransformerConfig::parse(config.to_string()).to_string() == config.to_string());
}
