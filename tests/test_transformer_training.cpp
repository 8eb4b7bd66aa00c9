// Transformer training: AdamW against a scalar reference, the schedule's known values, clipping,
// seeded window sampling, evaluation, a tiny model learning real English text, and a killed run that
// resumes from its saved training state to a bitwise-identical end.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/models/transformer_training.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Transformer;
using fu::models::TransformerConfig;

static_assert(fu::TokenSequenceModel<Transformer<float>> && fu::TokenSequenceModel<Transformer<double>>);

namespace {

// A few KB of ordinary English prose (public-domain style), repeated into a small corpus.
const char* kText =
    "It was a bright cold day in spring, and the clocks in the old town were striking nine. The baker "
    "opened his shop at the corner of the market square, and the smell of fresh bread drifted along the "
    "narrow streets. Children ran past the fountain on their way to school, and their teacher waved to "
    "them from the steps of the library. In the afternoon the sky grew dark and a light rain began to fall "
    "on the roofs and the gardens. The farmers came in from the fields with their carts full of apples, "
    "and the people of the town bought them for their suppers. When the evening came, the lamps were lit "
    "one by one, and the river shone under the bridge like a ribbon of silver. ";

std::vector<fu::Token> corpus(std::size_t repeats) {
  std::string text;
  for (std::size_t i = 0; i < repeats; ++i) text += kText;
  return fu::ByteTokenizer{}.encode(text);
}

TransformerConfig small_config() {
  TransformerConfig c;
  c.vocab_size = 256;
  c.context_length = 16;
  c.num_layers = 1;
  c.width = 32;
  c.num_heads = 4;
  c.mlp_ratio = 2;
  c.seed = 3;
  return c;
}

}  // namespace

TEST_CASE("AdamW: steps match a scalar reference implementation, with decay only on the masked range") {
  const std::size_t d = 6;
  fu::AdamWOptions o;
  o.beta1 = 0.8;
  o.beta2 = 0.9;
  o.epsilon = 1e-6;
  o.weight_decay = 0.3;
  fu::AdamW<double> adam(d, o, {{"w", 1, 3}});  // coordinates 1, 2, 3 are decayed
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  std::vector<double> theta(d), ref(d), m(d, 0.0), v(d, 0.0), g(d);
  for (auto& t : theta) t = normal(rng);
  ref = theta;
  for (int step = 1; step <= 7; ++step) {
    for (auto& x : g) x = normal(rng);
    const double lr = 0.01 * step;
    adam.step(theta, g, lr);
    for (std::size_t i = 0; i < d; ++i) {
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(o.beta1, step)), vhat = v[i] / (1 - std::pow(o.beta2, step));
      const double decay = (i >= 1 && i <= 3) ? o.weight_decay : 0.0;
      ref[i] -= lr * (mhat / (std::sqrt(vhat) + o.epsilon) + decay * ref[i]);
    }
  }
  for (std::size_t i = 0; i < d; ++i) CHECK(theta[i] == Approx(ref[i]).epsilon(1e-12));
  CHECK(adam.steps_taken() == 7);
}

TEST_CASE("AdamW: a non-finite gradient throws and changes neither the parameters nor the moments") {
  fu::AdamW<float> adam(3, {}, {{"all", 0, 3}});
  std::vector<float> theta{1.0f, -2.0f, 0.5f}, g{0.1f, 0.2f, -0.3f};
  adam.step(theta, g, 0.1);
  const auto saved = theta;
  std::vector<float> bad{0.1f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  CHECK_THROWS_AS(adam.step(theta, bad, 0.1), fu::NonFiniteError);
  CHECK(theta == saved);
  CHECK(adam.steps_taken() == 1);
  std::vector<float> short_g{0.1f};
  CHECK_THROWS_AS(adam.step(theta, short_g, 0.1), fu::InvalidArgument);
  // The next step equals the one a never-failed optimiser takes.
  fu::AdamW<float> twin(3, {}, {{"all", 0, 3}});
  std::vector<float> theta2{1.0f, -2.0f, 0.5f};
  twin.step(theta2, g, 0.1);
  adam.step(theta, g, 0.1);
  twin.step(theta2, g, 0.1);
  CHECK(theta == theta2);
}

TEST_CASE("LearningRateSchedule: linear warm-up, cosine decay to the minimum, known midpoints") {
  const fu::LearningRateSchedule s{1e-3, 1e-4, 10, 111};
  CHECK(s.at(0) == Approx(1e-4));
  CHECK(s.at(4) == Approx(5e-4));
  CHECK(s.at(9) == Approx(1e-3));
  CHECK(s.at(10) == Approx(1e-3));
  CHECK(s.at(60) == Approx(0.5 * (1e-3 + 1e-4)));  // halfway through the 100 decay steps
  CHECK(s.at(110) == Approx(1e-4));
  CHECK(s.at(500) == Approx(1e-4));
  for (std::size_t t = 10; t < 110; ++t) CHECK(s.at(t + 1) <= s.at(t));
  const fu::LearningRateSchedule constant{2e-3, 2e-3, 0, 50};
  CHECK(constant.at(0) == Approx(2e-3));
  CHECK(constant.at(49) == Approx(2e-3));
}

TEST_CASE("clip_gradient_norm: rescales to the limit, returns the norm before, leaves small gradients alone") {
  std::vector<double> g{3.0, 4.0};
  CHECK(fu::clip_gradient_norm<double>(g, 1.0) == Approx(5.0));
  CHECK(g[0] == Approx(0.6));
  CHECK(g[1] == Approx(0.8));
  std::vector<float> small{0.3f, 0.4f};
  CHECK(fu::clip_gradient_norm<float>(small, 1.0) == Approx(0.5));
  CHECK(small == std::vector<float>{0.3f, 0.4f});
  CHECK(fu::clip_gradient_norm<float>(small, 0.0) == Approx(0.5));  // disabled
  CHECK(small == std::vector<float>{0.3f, 0.4f});
}

TEST_CASE("Windows: seeded sampling returns substrings, splitting predicts every token once") {
  std::vector<fu::Token> stream(100);
  for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<fu::Token>(i);
  std::mt19937_64 a(9), b(9);
  const auto w1 = fu::sample_windows<Transformer<float>::Sample>(stream, 10, 20, a);
  const auto w2 = fu::sample_windows<Transformer<float>::Sample>(stream, 10, 20, b);
  REQUIRE(w1.size() == 20);
  bool any_difference = false;
  for (std::size_t k = 0; k < w1.size(); ++k) {
    CHECK(w1[k].tokens == w2[k].tokens);
    REQUIRE(w1[k].tokens.size() == 10);
    for (std::size_t i = 1; i < 10; ++i) CHECK(w1[k].tokens[i] == w1[k].tokens[0] + static_cast<fu::Token>(i));
    any_difference |= w1[k].tokens[0] != w1[0].tokens[0];
  }
  CHECK(any_difference);
  const auto parts = fu::split_windows<Transformer<float>::Sample>(stream, 10);
  std::vector<int> predicted(stream.size(), 0);
  for (const auto& p : parts)
    for (std::size_t i = 1; i < p.tokens.size(); ++i) ++predicted[static_cast<std::size_t>(p.tokens[i])];
  CHECK(predicted[0] == 0);
  for (std::size_t i = 1; i < predicted.size(); ++i) CHECK(predicted[i] == 1);
  std::mt19937_64 c(1);
  CHECK_THROWS_AS(fu::sample_windows<Transformer<float>::Sample>(std::span<const fu::Token>(stream.data(), 5), 10, 1, c),
                  fu::InvalidArgument);
}

TEST_CASE("evaluate_language_model: the token-weighted mean of the window losses") {
  const Transformer<double> model(small_config());
  const auto text = corpus(1);
  const std::span<const fu::Token> stream(text.data(), 100);  // 99 predictions: 6 windows of 15 + one of 9
  const auto e = fu::evaluate_language_model(model, stream);
  double total = 0;
  std::size_t n = 0;
  for (const auto& w : fu::split_windows<Transformer<double>::Sample>(stream, 17)) {
    total += model.loss(w) * static_cast<double>(w.tokens.size() - 1);
    n += w.tokens.size() - 1;
  }
  CHECK(e.tokens == 99);
  CHECK(n == 99);
  CHECK(e.mean_loss == Approx(total / 99.0).epsilon(1e-12));
  CHECK(e.perplexity == Approx(std::exp(total / 99.0)).epsilon(1e-12));
}

TEST_CASE("Trainer: a small transformer learns English text; validation loss falls far below ln 256") {
  const auto text = corpus(8);  // ~5.6 KB
  const std::size_t split = text.size() * 7 / 8;
  const std::span<const fu::Token> train(text.data(), split), valid(text.data() + split, text.size() - split);
  Transformer<float> model(small_config());
  model.set_execution({2, 4});
  const auto before = fu::evaluate_language_model(model, valid);
  CHECK(before.mean_loss == Approx(std::log(256.0)).epsilon(0.02));

  fu::TrainingOptions o;
  o.steps = 300;
  o.batch_size = 8;
  o.learning_rate = 1e-2;
  o.min_learning_rate = 2e-3;
  o.warmup_steps = 10;
  o.seed = 4;
  std::ostringstream progress;
  o.progress_stream = &progress;
  o.progress_interval_seconds = 1e-9;  // every step
  o.label = "tiny";
  std::size_t calls = 0;
  const auto summary = fu::train_language_model(model, train, o, [&](const fu::TrainingStep& s) {
    CHECK(s.step == calls);
    CHECK(std::isfinite(s.loss));
    ++calls;
    return true;
  });
  const auto after = fu::evaluate_language_model(model, valid);
  INFO("validation loss " << before.mean_loss << " -> " << after.mean_loss << "; train " << summary.first_loss << " -> "
                          << summary.final_loss);
  CHECK(calls == 300);
  CHECK(summary.steps == 300);
  CHECK(summary.tokens == 300u * 8u * 16u);
  // Uniform over bytes is 5.55 nats; the text's letter frequencies alone give 2.86 and its bigram
  // statistics 1.92: well below 2.86 the model must be using its context.
  CHECK(after.mean_loss < 2.5);
  CHECK(summary.final_loss < 0.47 * summary.first_loss);
  const std::string lines = progress.str();
  CHECK(lines.find("[tiny] step 1/300") != std::string::npos);
  CHECK(lines.find("[tiny] step 300/300") != std::string::npos);
  CHECK(lines.find("tok/s") != std::string::npos);
  CHECK(lines.find("ETA") != std::string::npos);
}

TEST_CASE("Trainer: training is deterministic for a seed and the callback can stop it") {
  const auto text = corpus(2);
  fu::TrainingOptions o;
  o.steps = 6;
  o.batch_size = 4;
  o.progress_interval_seconds = 0;
  Transformer<float> a(small_config()), b(small_config());
  a.set_execution({1, 2});
  b.set_execution({2, 2});  // the thread count does not change the result
  fu::train_language_model(a, text, o);
  fu::train_language_model(b, text, o);
  CHECK(std::memcmp(a.parameters().data(), b.parameters().data(), a.num_parameters() * sizeof(float)) == 0);
  Transformer<float> c(small_config());
  const auto summary = fu::train_language_model(c, text, o, [](const fu::TrainingStep& s) { return s.step < 2; });
  CHECK(summary.stopped_early);
  CHECK(summary.steps == 3);
}

TEST_CASE("Trainer: fine-tuning on a fixed sample set lowers its loss (the RetainFinetune building block)") {
  const auto text = corpus(1);
  std::vector<Transformer<double>::Sample> samples = fu::split_windows<Transformer<double>::Sample>(text, 17);
  samples.resize(6);
  Transformer<double> model(small_config());
  auto mean_loss = [&] {
    double s = 0;
    for (const auto& x : samples) s += model.loss(x);
    return s / static_cast<double>(samples.size());
  };
  const double before = mean_loss();
  fu::TrainingOptions o;
  o.steps = 30;
  o.batch_size = 4;
  o.learning_rate = 5e-3;
  o.min_learning_rate = 5e-3;
  o.warmup_steps = 0;
  o.progress_interval_seconds = 0;
  fu::Trainer<Transformer<double>> trainer(model, o);
  trainer.train_on_samples(samples);
  CHECK(trainer.steps_taken() == 30);
  CHECK(mean_loss() < 0.7 * before);
}

TEST_CASE("Trainer: a NaN loss throws NonFiniteError and leaves the parameters as they were") {
  Transformer<float> model(small_config());
  model.parameters()[model.layout().final_gain] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> saved(model.parameters().begin(), model.parameters().end());
  fu::TrainingOptions o;
  o.progress_interval_seconds = 0;
  fu::Trainer<Transformer<float>> trainer(model, o);
  const std::vector<Transformer<float>::Sample> batch{{{72, 101, 108, 108, 111}}};
  CHECK_THROWS_AS(trainer.step(batch), fu::NonFiniteError);
  CHECK(std::memcmp(saved.data(), model.parameters().data(), saved.size() * sizeof(float)) == 0);
  CHECK(trainer.steps_taken() == 0);
  fu::TrainingOptions bad;
  bad.batch_size = 0;
  CHECK_THROWS_AS(fu::Trainer<Transformer<float>>(model, bad), fu::InvalidArgument);
}

namespace {

struct Killed {};  // what the test throws from the callback to simulate a kill

template <class Scalar>
bool same_bits(std::span<const Scalar> a, std::span<const Scalar> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("fu_trainer_resume_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000007));
  std::filesystem::create_directories(dir);
  return dir / name;
}

// 2N steps uninterrupted vs. N steps + a kill at 1.5N (after the checkpoint at N) + a fresh process
// (new model, new Trainer) that resumes: the same bits, the same summary.
template <class Scalar, class Train>
void check_kill_and_resume(const std::string& name, Train train) {
  using Model = Transformer<Scalar>;
  const std::size_t n = 4;
  fu::TrainingOptions o;
  o.steps = 2 * n;
  o.batch_size = 3;
  o.warmup_steps = 2;
  o.learning_rate = 3e-3;
  o.progress_interval_seconds = 0;
  Model reference(small_config());
  fu::Trainer<Model> uninterrupted(reference, o);
  const fu::TrainingSummary full = train(uninterrupted, fu::StepCallback{});

  const auto path = scratch(name + ".state");
  std::filesystem::remove(path);
  fu::TrainingOptions oc = o;
  oc.checkpoint_path = path;
  oc.checkpoint_every = n;
  {
    Model killed(small_config());
    fu::Trainer<Model> t(killed, oc);
    CHECK_THROWS_AS(train(t, fu::StepCallback([&](const fu::TrainingStep& s) {
                      if (s.step + 1 == n + n / 2) throw Killed{};
                      return true;
                    })),
                    Killed);
    CHECK(t.steps_taken() == n + n / 2);
  }
  REQUIRE(std::filesystem::exists(path));

  TransformerConfig other_init = small_config();
  other_init.seed = 99;  // the resumed model's own initialisation must not matter
  Model resumed(other_init);
  fu::Trainer<Model> t(resumed, oc);
  REQUIRE(t.resume(path));
  CHECK(t.steps_taken() == n);
  const fu::TrainingSummary rest = train(t, fu::StepCallback{});
  CHECK(rest.resumed_from_step == n);
  CHECK(rest.steps == n);
  CHECK(t.steps_taken() == 2 * n);
  CHECK(same_bits<Scalar>(std::as_const(resumed).parameters(), std::as_const(reference).parameters()));
  CHECK(same_bits<Scalar>(std::span<const Scalar>(t.optimizer().first_moment().data(), resumed.num_parameters()),
                          std::span<const Scalar>(uninterrupted.optimizer().first_moment().data(), reference.num_parameters())));
  CHECK(same_bits<Scalar>(std::span<const Scalar>(t.optimizer().second_moment().data(), resumed.num_parameters()),
                          std::span<const Scalar>(uninterrupted.optimizer().second_moment().data(), reference.num_parameters())));
  CHECK(rest.first_loss == full.first_loss);
  CHECK(rest.final_loss == full.final_loss);
  // and a resumed run without the kill's lost steps differs from one that restarts at step 0
  Model restarted(small_config());
  fu::Trainer<Model> fresh(restarted, o);
  train(fresh, fu::StepCallback([&](const fu::TrainingStep& s) { return s.step + 1 < n; }));
  CHECK_FALSE(same_bits<Scalar>(std::as_const(restarted).parameters(), std::as_const(reference).parameters()));
  std::filesystem::remove(path);
}

}  // namespace

TEST_CASE("Trainer: a killed run resumes from its last checkpoint and ends bitwise identical (token stream)") {
  const auto text = corpus(2);
  check_kill_and_resume<float>("stream_f", [&](fu::Trainer<Transformer<float>>& t, const fu::StepCallback& cb) {
    return t.train(text, cb);
  });
  check_kill_and_resume<double>("stream_d", [&](fu::Trainer<Transformer<double>>& t, const fu::StepCallback& cb) {
    return t.train(text, cb);
  });
}

TEST_CASE("Trainer: a killed run resumes from its last checkpoint and ends bitwise identical (fixed samples, epochs)") {
  const auto text = corpus(1);
  // 7 samples, batches of 3: the kill and the checkpoint fall inside an epoch
  auto samples = fu::split_windows<Transformer<double>::Sample>(text, 17);
  samples.resize(7);
  check_kill_and_resume<double>("samples", [&](fu::Trainer<Transformer<double>>& t, const fu::StepCallback& cb) {
    return t.train_on_samples(samples, cb);
  });
}

TEST_CASE("Trainer::resume: another model, other options, other data or a corrupt file are refused unchanged") {
  const auto text = corpus(1);
  fu::TrainingOptions o;
  o.steps = 4;
  o.batch_size = 2;
  o.progress_interval_seconds = 0;
  o.checkpoint_path = scratch("refuse.state");
  o.checkpoint_every = 2;
  Transformer<double> model(small_config());
  {
    fu::Trainer<Transformer<double>> t(model, o);
    t.train(text);
  }
  auto unchanged = [](const Transformer<double>& m, const std::vector<double>& saved) {
    return std::memcmp(saved.data(), std::as_const(m).parameters().data(), saved.size() * sizeof(double)) == 0;
  };
  Transformer<double> target(small_config());
  const std::vector<double> saved(target.parameters().begin(), target.parameters().end());

  fu::Trainer<Transformer<double>> none(target, o);
  CHECK_FALSE(none.resume(scratch("does_not_exist.state")));

  fu::TrainingOptions other = o;
  other.learning_rate *= 2;
  fu::Trainer<Transformer<double>> t_other(target, other);
  CHECK_THROWS_WITH(t_other.resume(o.checkpoint_path), Catch::Contains("training options"));
  CHECK(unchanged(target, saved));
  CHECK(t_other.steps_taken() == 0);

  TransformerConfig wider = small_config();
  wider.width = 64;
  Transformer<double> wide(wider);
  fu::Trainer<Transformer<double>> t_wide(wide, o);
  CHECK_THROWS_AS(t_wide.resume(o.checkpoint_path), fu::FileFormatError);

  fu::Trainer<Transformer<double>> t_data(target, o);
  REQUIRE(t_data.resume(o.checkpoint_path));
  const auto other_text = corpus(2);
  CHECK_THROWS_WITH(t_data.train(other_text), Catch::Contains("other data"));

  // one flipped byte: the checksum rejects it and nothing changes
  {
    std::fstream f(o.checkpoint_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c = static_cast<char>(c ^ 0x10);
    f.write(&c, 1);
  }
  Transformer<double> target2(small_config());
  const std::vector<double> saved2(target2.parameters().begin(), target2.parameters().end());
  fu::Trainer<Transformer<double>> t_corrupt(target2, o);
  CHECK_THROWS_AS(t_corrupt.resume(o.checkpoint_path), fu::FileFormatError);
  CHECK(unchanged(target2, saved2));
  std::filesystem::remove(o.checkpoint_path);

  fu::TrainingOptions no_path;
  no_path.checkpoint_every = 5;
  CHECK_THROWS_AS(fu::Trainer<Transformer<double>>(target, no_path), fu::InvalidArgument);
}
