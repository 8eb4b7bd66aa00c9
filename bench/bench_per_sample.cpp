// Per-sample gradients of the reference transformer (one sequence = one sample, what every Fisher
// estimate needs) against the batched gradient of the same batch (sum_loss_and_gradient, sequences
// stacked into one GEMM): the price of keeping gradients apart. Both single-threaded, float32.
// With --export_dir=DIR the model, the batch and our results are written for bench/peers/torch_peer.py
// (PyTorch vmap(grad) on the same weights and sequences).
#include "ceilings.hpp"
#include "corpus.hpp"
#include "export.hpp"

#include <fisher_unlearn/fisher/collect.hpp>
#include <fisher_unlearn/models/transformer.hpp>

#include <cstddef>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;
using Model = fu::models::Transformer<float>;

namespace {

constexpr std::size_t kBatch = 32;  // the demo's batch (examples/unlearn_lm.cpp: --batch 32)

struct Setting {
  std::string name;
  fu::models::TransformerConfig config;
};

// "demo": the model ./scripts/demo.sh trains (2 layers, width 64, 4 heads, context 64).
// "wide": 4 layers of width 128, to show how the gap moves when the GEMMs grow.
std::vector<Setting> settings() {
  fu::models::TransformerConfig demo;
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
  explicit Fixture(const fu::models::TransformerConfig& config) : model(config) {
    model.set_execution({.num_threads = 1, .sequences_per_chunk = 8});
    const Corpus corpus = demo_corpus(400'000);
    source = corpus.source;
    const auto tokens = fu::ByteTokenizer{}.encode(corpus.text);
    for (auto& w : sample_token_windows(tokens, config.context_length + 1, kBatch, 99)) batch.push_back({std::move(w)});
  }
  std::span<const Model::Sample> samples() const { return batch; }
  Model model;
  std::vector<Model::Sample> batch;
  std::string source;
};

Fixture& fixture(const Setting& s) {
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  auto& f = cache[s.name];
  if (!f) f = std::make_unique<Fixture>(s.config);
  return *f;
}

void label(benchmark::State& state, const Fixture& f, double loop_seconds) {
  state.counters["d"] = benchmark::Counter(double(f.model.num_parameters()));
  state.counters["per_sequence_ms"] =
      benchmark::Counter(1e3 * loop_seconds / (double(state.iterations()) * double(kBatch)));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}

// One gradient() call per sequence, each into its own column of a d×B matrix.
void BM_per_sample_gradients(benchmark::State& state, const Setting& s) {
  Fixture& f = fixture(s);
  const auto d = static_cast<Eigen::Index>(f.model.num_parameters());
  Mat<float> g(d, static_cast<Eigen::Index>(kBatch));
  const LoopClock clock;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i)
      f.model.gradient(f.batch[i], std::span<float>(g.col(static_cast<Eigen::Index>(i)).data(), std::size_t(d)));
    benchmark::ClobberMemory();
  }
  label(state, f, clock.seconds());
}

// The library's path: collect_gradients (the same calls plus a gather into the result and a finiteness check).
void BM_collect_gradients(benchmark::State& state, const Setting& s) {
  Fixture& f = fixture(s);
  const LoopClock clock;
  for (auto _ : state) {
    auto g = fu::collect_gradients(f.model, f.samples());
    benchmark::DoNotOptimize(g.data());
  }
  label(state, f, clock.seconds());
}

// The same per-sample gradients on 2 threads: each thread has its own copy of the model (gradient() uses
// the model's scratch buffers) and takes half of the batch.
void BM_per_sample_gradients_threads2(benchmark::State& state, const Setting& s) {
  Fixture& f = fixture(s);
  const auto d = static_cast<Eigen::Index>(f.model.num_parameters());
  Mat<float> g(d, static_cast<Eigen::Index>(kBatch));
  std::vector<Model> models{f.model, f.model};
  const LoopClock clock;
  for (auto _ : state) {
    fu::detail::parallel_chunks(2, 2, [&](std::size_t t) {
      for (std::size_t i = t * kBatch / 2; i < (t + 1) * kBatch / 2; ++i)
        models[t].gradient(f.batch[i], std::span<float>(g.col(static_cast<Eigen::Index>(i)).data(), std::size_t(d)));
    });
    benchmark::ClobberMemory();
  }
  label(state, f, clock.seconds());
}

// The baseline: Σ_s ∇loss(s) of the same batch in one call (threads: the model's own chunked threading).
void BM_batched_gradient_threads(benchmark::State& state, const Setting& s, std::size_t threads) {
  Fixture& f = fixture(s);
  Model model = f.model;
  model.set_execution({.num_threads = threads, .sequences_per_chunk = 8});
  Vec<float> g(static_cast<Eigen::Index>(model.num_parameters()));
  const LoopClock clock;
  for (auto _ : state) {
    model.sum_loss_and_gradient(f.samples(), std::span<float>(g.data(), std::size_t(g.size())));
    benchmark::ClobberMemory();
  }
  label(state, f, clock.seconds());
}

void BM_batched_gradient(benchmark::State& state, const Setting& s) {
  Fixture& f = fixture(s);
  Vec<float> g(static_cast<Eigen::Index>(f.model.num_parameters()));
  const LoopClock clock;
  for (auto _ : state) {
    f.model.sum_loss_and_gradient(f.samples(), std::span<float>(g.data(), std::size_t(g.size())));
    benchmark::ClobberMemory();
  }
  label(state, f, clock.seconds());
  state.SetLabel(f.source);
}

// Model, batch and our answers for the peer (float32 throughout; gradients as rows of a B×d array).
void export_for_peer(const std::string& dir) {
  for (const Setting& s : settings()) {
    Fixture& f = fixture(s);
    ExportDirectory out(std::filesystem::path(dir) / ("per_sample_" + s.name));
    const auto& c = f.model.config();
    out.value("vocab_size", double(c.vocab_size));
    out.value("context_length", double(c.context_length));
    out.value("num_layers", double(c.num_layers));
    out.value("width", double(c.width));
    out.value("num_heads", double(c.num_heads));
    out.value("mlp_ratio", double(c.mlp_ratio));
    out.value("layer_norm_epsilon", 1e-5);
    out.value("corpus", f.source);
    const auto params = f.model.parameters();
    out.array("theta", params.data(), {params.size()});
    const std::size_t n = f.batch.front().tokens.size();
    std::vector<std::int32_t> tokens;
    for (const auto& sample : f.batch) tokens.insert(tokens.end(), sample.tokens.begin(), sample.tokens.end());
    out.array("tokens", tokens.data(), {kBatch, n});
    const auto d = static_cast<Eigen::Index>(f.model.num_parameters());
    Mat<float> g(d, static_cast<Eigen::Index>(kBatch));
    std::vector<float> losses(kBatch);
    for (std::size_t i = 0; i < kBatch; ++i)
      losses[i] = f.model.gradient(f.batch[i], std::span<float>(g.col(static_cast<Eigen::Index>(i)).data(), std::size_t(d)));
    out.array("per_sample_gradients", g.data(), {kBatch, std::size_t(d)});
    out.array("losses", losses.data(), {kBatch});
    Vec<float> batched(d);
    const float sum = f.model.sum_loss_and_gradient(f.samples(), std::span<float>(batched.data(), std::size_t(d)));
    out.array("batched_gradient", batched.data(), {std::size_t(d)});
    out.value("batched_loss_sum", double(sum));
    out.finish();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string export_dir = take_export_dir(argc, argv);
  if (!export_dir.empty()) {
    export_for_peer(export_dir);
    std::cerr << "exported the per-sample inputs and results to " << export_dir << "\n";
  }
  static const auto all = settings();
  for (const Setting& s : all) {
    for (auto [name, fn] : {std::pair{"per_sample/gradients/", &BM_per_sample_gradients},
                            std::pair{"per_sample/collect_gradients/", &BM_collect_gradients},
                            std::pair{"per_sample/batched_gradient/", &BM_batched_gradient}})
      benchmark::RegisterBenchmark((name + s.name).c_str(), fn, std::cref(s))
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("per_sample/gradients/" + s.name + "/threads2").c_str(),
                                 &BM_per_sample_gradients_threads2, std::cref(s))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("per_sample/batched_gradient/" + s.name + "/threads2").c_str(),
                                 &BM_batched_gradient_threads, std::cref(s), std::size_t(2))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
