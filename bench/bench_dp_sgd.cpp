// One DP-SGD step (per-sample gradients, clipping to C, Gaussian noise σC on the sum, AdamW) against one
// plain training step (batched gradient, global-norm clipping, AdamW: Trainer::step) on the same batch of
// the demo transformer, interleaved in the same loop so both see the same machine load. Single-threaded,
// float32. Goal (issue 12): the DP step costs at most 2× the plain step (Opacus reports about 1.4× on BERT).
#include "ceilings.hpp"
#include "corpus.hpp"

#include <fisher_unlearn/models/transformer.hpp>
#include <fisher_unlearn/models/transformer_training.hpp>
#include <fisher_unlearn/privacy/dp_sgd.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;
using Model = fu::models::Transformer<float>;

namespace {

constexpr std::size_t kBatch = 32;        // the demo's batch
constexpr std::size_t kRecords = 70000;   // q = 32/70000: the demo's scale (one record = one window)

struct Setting {
  std::string name;
  fu::models::TransformerConfig config;
};

std::vector<Setting> settings() {
  fu::models::TransformerConfig demo;  // 2 layers, width 64, 4 heads, context 64: what demo.sh trains
  demo.num_layers = 2;
  demo.width = 64;
  demo.num_heads = 4;
  demo.context_length = 64;
  demo.seed = 3;
  fu::models::TransformerConfig wide = demo;
  wide.num_layers = 4;
  wide.width = 128;
  return {{"demo", demo}, {"wide", wide}};
}

struct Fixture {
  explicit Fixture(const fu::models::TransformerConfig& config) : plain_model(config), dp_model(config) {
    plain_model.set_execution({.num_threads = 1, .sequences_per_chunk = 8});
    dp_model.set_execution({.num_threads = 1, .sequences_per_chunk = 8});
    const Corpus corpus = demo_corpus(400'000);
    source = corpus.source;
    const auto tokens = fu::ByteTokenizer{}.encode(corpus.text);
    for (auto& w : sample_token_windows(tokens, config.context_length + 1, kBatch, 99)) batch.push_back({std::move(w)});
  }
  Model plain_model, dp_model;
  std::vector<Model::Sample> batch;
  std::string source;
};

fu::TrainingOptions plain_options() {
  fu::TrainingOptions o;
  o.steps = 1'000'000;  // the schedule only; the benchmark calls step()
  o.batch_size = kBatch;
  o.learning_rate = o.min_learning_rate = 1e-4;  // small: the parameters barely move over the run
  o.warmup_steps = 0;
  o.clip_norm = 1.0;
  o.progress_interval_seconds = 0;
  return o;
}

fu::DpSgdOptions dp_options() {
  fu::DpSgdOptions o;
  o.steps = 1'000'000;
  o.sampling_rate = double(kBatch) / double(kRecords);
  o.noise_multiplier = 1.0;
  o.clip_norm = 1.0;
  o.learning_rate = o.min_learning_rate = 1e-4;
  o.num_threads = 1;
  o.progress_interval_seconds = 0;
  return o;
}

// Both steps in one loop, alternating: the manual time is the DP step's, the counters give both and
// the ratio. State bytes count what each trainer keeps besides the activations: the plain step holds
// θ, its gradient and AdamW's two moments (4d); the DP step θ, the moments, the noisy sum and the update
// (5d) plus the per-sample gradients in flight (4 per thread).
void BM_dp_vs_plain_step(benchmark::State& state, const Setting& s) {
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  auto& f = cache[s.name];
  if (!f) f = std::make_unique<Fixture>(s.config);
  fu::Trainer<Model> plain(f->plain_model, plain_options());
  fu::DpSgdTrainer<Model> dp(f->dp_model, dp_options());
  const std::span<const Model::Sample> batch(f->batch);
  double plain_seconds = 0, dp_seconds = 0;
  using Clock = std::chrono::steady_clock;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    plain.step(batch);
    const auto t1 = Clock::now();
    const auto info = dp.step(batch, kRecords);
    const auto t2 = Clock::now();
    benchmark::DoNotOptimize(info.loss);
    const double p = std::chrono::duration<double>(t1 - t0).count(), q = std::chrono::duration<double>(t2 - t1).count();
    plain_seconds += p;
    dp_seconds += q;
    state.SetIterationTime(q);
  }
  const double n = double(state.iterations()), d = double(f->dp_model.num_parameters());
  state.counters["d"] = d;
  state.counters["plain_step_ms"] = 1e3 * plain_seconds / n;
  state.counters["dp_step_ms"] = 1e3 * dp_seconds / n;
  state.counters["dp_over_plain"] = dp_seconds / plain_seconds;
  state.counters["state_bytes_plain"] = 4 * d * sizeof(float);
  state.counters["state_bytes_dp"] = (5 + 4) * d * sizeof(float);
  state.SetLabel(f->source);
}

}  // namespace

int main(int argc, char** argv) {
  static const auto all = settings();
  for (const Setting& s : all)
    benchmark::RegisterBenchmark(("dp_sgd/step_vs_plain/" + s.name).c_str(), BM_dp_vs_plain_step, std::cref(s))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
