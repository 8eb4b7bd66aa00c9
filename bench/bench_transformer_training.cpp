// Training throughput of the reference transformer: one AdamW step (batched loss + gradient,
// clipping, update) on B windows, in tokens/s, beside the Eigen GEMM ceiling of the step's largest
// product (3C × C × B·T), measured in the same binary. FLOP per step ≈ 3 × forward matmul FLOP:
//   forward = 2·B·T·(L·(4C² + 2CF) + V·C) + L·4·B·T²·C   (full T×T attention products).
// Run with 1 and 2 threads (TransformerExecution::num_threads); float32.
#include "ceilings.hpp"

#include <fisher_unlearn/models/transformer.hpp>
#include <fisher_unlearn/models/transformer_training.hpp>
#include <fisher_unlearn/tokenizer.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;
using Model = fu::models::Transformer<float>;

namespace {

constexpr std::size_t kBatch = 32;

struct Setting {
  std::string name;
  fu::models::TransformerConfig config;
};

std::vector<Setting> settings() {
  fu::models::TransformerConfig demo;  // 2 layers, width 64, 4 heads, context 64
  demo.num_layers = 2;
  demo.width = 64;
  demo.num_heads = 4;
  demo.context_length = 64;
  demo.seed = 3;
  auto wide = demo;  // width 128, context 128
  wide.width = 128;
  wide.context_length = 128;
  return {{"L2_C64_T64", demo}, {"L2_C128_T128", wide}};
}

double forward_flops(const fu::models::TransformerConfig& c, std::size_t batch) {
  const double C = double(c.width), F = double(c.mlp_ratio * c.width), V = double(c.vocab_size),
               T = double(c.context_length), L = double(c.num_layers), N = double(batch) * T;
  return 2 * N * (L * (4 * C * C + 2 * C * F) + V * C) + L * 4 * double(batch) * T * T * C;
}

// Random bytes in [32, 127): the cost does not depend on the text.
std::vector<Model::Sample> batch_for(const fu::models::TransformerConfig& c) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> byte(32, 126);
  std::vector<Model::Sample> batch(kBatch);
  for (auto& s : batch) {
    s.tokens.resize(c.context_length + 1);
    for (auto& t : s.tokens) t = byte(rng);
  }
  return batch;
}

void BM_training_step(benchmark::State& state, const Setting& s) {
  const std::size_t threads = static_cast<std::size_t>(state.range(0));
  Model model(s.config);
  model.set_execution({threads, 8});
  const auto batch = batch_for(s.config);
  fu::TrainingOptions o;
  o.steps = 1u << 30;
  o.batch_size = kBatch;
  o.progress_interval_seconds = 0;
  fu::Trainer<Model> trainer(model, o);
  trainer.step(batch);  // warm the workspaces
  const LoopClock clock;
  for (auto _ : state) {
    trainer.step(batch);
    benchmark::ClobberMemory();
  }
  const double seconds = clock.seconds();
  const double tokens = double(kBatch * s.config.context_length);
  state.counters["tokens_per_s"] = benchmark::Counter(tokens * double(state.iterations()) / seconds);
  state.counters["d"] = benchmark::Counter(double(model.num_parameters()));
  const double flops = 3 * forward_flops(s.config, kBatch);
  const auto C = static_cast<Eigen::Index>(s.config.width);
  const double ceiling = gemm_rate<float>(3 * C, C, static_cast<Eigen::Index>(kBatch * s.config.context_length));
  state.counters["gflop_per_s"] = benchmark::Counter(flops * double(state.iterations()) / seconds / 1e9);
  // fraction of one core's GEMM rate on the step's largest product shape, times the thread count
  set_fraction(state, "fraction_of_gemm_ceiling", flops / (ceiling * double(threads)), seconds);
}

}  // namespace

int main(int argc, char** argv) {
  static const auto all = settings();
  for (const Setting& s : all)
    benchmark::RegisterBenchmark(("transformer/training_step/" + s.name).c_str(), BM_training_step, std::cref(s))
        ->Arg(1)
        ->Arg(2)
        ->ArgName("threads")
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("ceiling/gemm_3C_C_BT/C64_T64", BM_ceiling_gemm<float>, std::size_t{1})
      ->Args({192, 64, 2048})
      ->UseRealTime();
  benchmark::RegisterBenchmark("ceiling/gemm_3C_C_BT/C128_T128", BM_ceiling_gemm<float>, std::size_t{1})
      ->Args({384, 128, 4096})
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
