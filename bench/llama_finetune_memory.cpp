// Peak memory (max RSS) of loading SmolLM2-135M from its GGUF and fine-tuning its top 4 blocks (+ output_norm)
// with Adam on fp32: what a user's unlearning run holds. Prints the max RSS after loading and after the
// steps (getrusage; Linux reports KiB), the trainable size and the loss per step (it must fall: the run is
// real work, not a stub). The boundary cache is on (its default 256 MiB bound), as in a user's run.
//   llama_finetune_memory MODEL.gguf [steps = 5] [sequences = 8] [positions = 128] [threads = 2] [transposed]
// `transposed` turns on set_transposed_frozen_weights (the faster forward, more memory).
#include <fisher_unlearn/models/llama_gguf.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;

static double max_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [steps] [sequences] [positions] [threads] [transposed]\n", argv[0]);
    return 2;
  }
  const std::size_t steps = argc > 2 ? std::stoul(argv[2]) : 5, sequences = argc > 3 ? std::stoul(argv[3]) : 8,
                    positions = argc > 4 ? std::stoul(argv[4]) : 128, threads = argc > 5 ? std::stoul(argv[5]) : 2;
  try {
    const double rss_start = max_rss_mib();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<fu::models::Llama<float>::Sample> batch;
    fu::models::LlamaLoadOptions options;
    options.context_length = positions;
    options.execution.num_threads = threads;
    auto model = [&] {
      const auto file = fu::GgufFile::open(argv[1]);  // closed (unmapped) once the weights are dequantised
      return fu::models::load_llama<float>(
          file, fu::models::llama_top_blocks(fu::models::llama_config_from_gguf(file, positions), 4), options);
    }();
    if (argc > 6 && std::string(argv[6]) == "transposed") model.set_transposed_frozen_weights(true);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rss_loaded = max_rss_mib();
    std::mt19937_64 rng(11);
    std::uniform_int_distribution<fu::Token> token(0, static_cast<fu::Token>(model.config().vocab_size - 1));
    // A short repeated pattern per sequence: learnable, so the loss of a real fine-tune visibly falls.
    for (std::size_t s = 0; s < sequences; ++s) {
      std::vector<fu::Token> motif(8);
      for (auto& t : motif) t = token(rng);
      fu::models::Llama<float>::Sample x;
      for (std::size_t t = 0; t <= positions; ++t) x.tokens.push_back(motif[t % motif.size()]);
      batch.push_back(std::move(x));
    }
    const std::size_t d = model.num_parameters();
    std::vector<float> g(d), m(d, 0.0f), v(d, 0.0f);
    const float lr = 1e-4f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    std::printf("loaded in %.1f s: %zu trainable parameters (top 4 blocks + output_norm), %zu threads\n", load_s, d,
                threads);
    for (std::size_t k = 1; k <= steps; ++k) {
      const float loss = model.sum_loss_and_gradient(batch, g) / static_cast<float>(sequences);
      auto theta = model.parameters();
      const float c1 = 1.0f - std::pow(b1, static_cast<float>(k)), c2 = 1.0f - std::pow(b2, static_cast<float>(k));
      for (std::size_t i = 0; i < d; ++i) {
        const float gi = g[i] / static_cast<float>(sequences);
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        theta[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
      }
      std::printf("step %zu: mean loss %.4f\n", k, static_cast<double>(loss));
    }
    const double final_loss = model.sum_loss(batch) / static_cast<double>(sequences);
    std::printf("after %zu steps: mean loss %.4f\n", steps, final_loss);
    std::printf("max RSS: %.0f MiB at start, %.0f MiB after loading, %.0f MiB after fine-tuning\n", rss_start,
                rss_loaded, max_rss_mib());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llama_finetune_memory: %s\n", e.what());
    return 1;
  }
  return 0;
}
