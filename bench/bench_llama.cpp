// The Llama model on SmolLM2-135M (the GGUF, dequantised to fp32) against the float GEMM ceiling measured
// in this binary at the same thread count (issue 11's benchmark gap, issue 14):
//   forward (sum_loss) of B = 2 sequences of n = 64 positions through all 30 blocks and the tied head;
//   forward + backward with the top 4 blocks and output_norm trainable (sum_loss_and_gradient), the
//   boundary cache off, so every call runs the 26 frozen blocks forward too (the first visit of a sample).
// FLOP per position (counted, not measured): per block 2·C·(2C + 2·C_kv) (q, k, v, o) + 6·C·F (SwiGLU) +
// 2·C·(n+1) (QKᵀ and PV over the causal context, n/2 on average) and 2·V·C for the head; the backward pass
// adds 2× the forward FLOP of each trainable block (input and weight gradients) and 2·V·C (the head's
// input gradient; the tied embedding is frozen). RMSNorm, RoPE, softmax and SwiGLU's pointwise work are
// not counted, so of_gemm is a lower bound on the GEMM efficiency. Tokens are seeded random ids (the cost
// does not depend on them). The batch is cut into one chunk per thread (2 sequences stacked at 1 thread,
// one each at 2).
// The model file: $FISHER_UNLEARN_SMOLLM2, else $FISHER_UNLEARN_MODEL_CACHE (default .cache/models) /
// SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch_smollm2.sh downloads it); every row is skipped with a
// message when it is missing.
#include "ceilings.hpp"

#include <fisher_unlearn/models/llama_gguf.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;
using Llama = fu::models::Llama<float>;

namespace {

constexpr std::size_t kBatch = 2;
constexpr std::size_t kPositions = 64;  // input positions per sequence (n + 1 tokens)
constexpr std::size_t kTopBlocks = 4;

std::filesystem::path model_path() {
  if (const char* p = std::getenv("FISHER_UNLEARN_SMOLLM2")) return p;
  const char* cache = std::getenv("FISHER_UNLEARN_MODEL_CACHE");
  return std::filesystem::path(cache ? cache : ".cache/models") / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

struct Fixture {
  std::optional<Llama> model;
  std::vector<Llama::Sample> batch;
  std::string error;
};

Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    const auto path = model_path();
    if (!std::filesystem::exists(path)) {
      x.error = "no SmolLM2 GGUF at " + path.string() +
                " (run scripts/fetch_smollm2.sh, or set FISHER_UNLEARN_SMOLLM2 / FISHER_UNLEARN_MODEL_CACHE)";
      return x;
    }
    try {
      const auto file = fu::GgufFile::open(path);
      fu::models::LlamaLoadOptions options;
      options.context_length = kPositions;
      options.execution.boundary_cache_bytes = 0;
      x.model.emplace(fu::models::load_llama<float>(
          file, fu::models::llama_top_blocks(fu::models::llama_config_from_gguf(file, kPositions), kTopBlocks), options));
    } catch (const std::exception& e) {
      x.error = std::string("loading ") + path.string() + " failed: " + e.what();
      return x;
    }
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<fu::Token> token(0, static_cast<fu::Token>(x.model->config().vocab_size - 1));
    for (std::size_t s = 0; s < kBatch; ++s) {
      Llama::Sample sample;
      for (std::size_t t = 0; t <= kPositions; ++t) sample.tokens.push_back(token(rng));
      x.batch.push_back(std::move(sample));
    }
    return x;
  }();
  return f;
}

// Counted FLOP per input position: the forward pass of one block, of the head, and the backward extra.
struct FlopModel {
  double block_forward = 0, head_forward = 0;
  explicit FlopModel(const fu::models::LlamaConfig& c) {
    const double C = double(c.width), Ckv = double(c.kv_width()), F = double(c.ffn_width), V = double(c.vocab_size);
    block_forward = 2.0 * C * (2.0 * C + 2.0 * Ckv) + 6.0 * C * F + 2.0 * C * double(kPositions + 1);
    head_forward = 2.0 * V * C;
  }
  double forward(const fu::models::LlamaConfig& c) const { return double(c.num_layers) * block_forward + head_forward; }
  double forward_backward(const fu::models::LlamaConfig& c) const {
    return forward(c) + 2.0 * double(kTopBlocks) * block_forward + head_forward;
  }
};

template <bool WithBackward>
void BM_llama(benchmark::State& state, std::size_t threads, bool transposed) {
  Fixture& f = fixture();
  if (!f.model) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  Llama model = *f.model;  // shares the frozen weights
  auto execution = model.execution();
  execution.num_threads = threads;
  // One chunk per thread: the model threads over chunks of sequences_per_chunk sequences (default 4), so
  // with the batch's 2 sequences in one chunk the 2-thread rows ran on one thread (and read as slower than
  // the 1-thread ones by the host's noise alone).
  execution.sequences_per_chunk = std::max<std::size_t>(1, kBatch / threads);
  execution.boundary_cache_bytes = 0;
  model.set_execution(execution);
  model.set_transposed_frozen_weights(transposed);
  std::vector<float> g(WithBackward ? model.num_parameters() : 0);
  const std::span<const Llama::Sample> batch(f.batch);
  const LoopClock clock;
  BestIteration best;
  for (auto _ : state) {
    best.start();
    float loss = WithBackward ? model.sum_loss_and_gradient(batch, std::span<float>(g)) : model.sum_loss(batch);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
    best.stop();
  }
  const double loop_seconds = clock.seconds();
  const FlopModel flop(model.config());
  const double positions = double(kBatch * kPositions);
  const double flops = positions * (WithBackward ? flop.forward_backward(model.config()) : flop.forward(model.config()));
  state.counters["tokens_per_s"] = benchmark::Counter(positions, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flop_per_s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  const double ceiling = gemm_rate<float>(1024, 1024, 1024, threads);
  set_fraction(state, "of_gemm", flops / ceiling, loop_seconds);
  state.counters["of_gemm_best"] = flops / ceiling / best.seconds();
  // The fastest iteration's rate: what the peers (bench/peers/llama_*_peer.py) report, the run least
  // disturbed on a shared machine.
  state.counters["tokens_per_s_best"] = positions / best.seconds();
  state.counters["d_trainable"] = benchmark::Counter(double(model.num_parameters()));
  state.SetLabel(WithBackward ? "top-4 blocks trainable, boundary cache off; ceiling: Eigen float GEMM 1024^3"
                              : "all 30 blocks + head; ceiling: Eigen float GEMM 1024^3");
}

}  // namespace

int main(int argc, char** argv) {
  for (std::size_t t : {std::size_t(1), std::size_t(2)}) {
    const std::string sfx = t == 1 ? "" : "/threads2";
    benchmark::RegisterBenchmark(("ceiling/gemm<float>" + sfx).c_str(), BM_ceiling_gemm<float>, t)
        ->Args({1024, 1024, 1024})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("llama/forward" + sfx).c_str(), BM_llama<false>, t, false)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("llama/top4_forward_backward" + sfx).c_str(), BM_llama<true>, t, false)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  // The same two rows with transposed copies of the frozen weights (set_transposed_frozen_weights: same
  // results, +459 MiB); not part of run_llama_peers.sh's filter "llama/".
  benchmark::RegisterBenchmark("llama_transposed/forward", BM_llama<false>, std::size_t(1), true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("llama_transposed/top4_forward_backward", BM_llama<true>, std::size_t(1), true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
