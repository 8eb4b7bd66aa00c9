// The deterministic change behind the export check: SGD on the top block of SmolLM2 towards one canary
// (the phone-number prompt of smollm2_llamacpp.inc), one thread, so that tests/llama/export_canary.cpp
// (which writes the file llama.cpp reads) and tests/test_llama_slow.cpp (which recomputes it in memory)
// make the same model up to compiler rounding.
#pragma once

#include "fisher_unlearn/models/llama.hpp"
#include "fisher_unlearn/models/llama_gguf.hpp"
#include "llama/smollm2_llamacpp.inc"

#include <span>
#include <string>
#include <vector>

namespace llama_fixture {

inline const std::vector<std::string> kExportTrainable = {"blk.29.ffn_down", "blk.29.ffn_up", "output_norm"};
constexpr int kExportSteps = 8;
constexpr float kExportLearningRate = 0.05f;

inline std::vector<fisher_unlearn::Token> canary_tokens() {
  const auto& t = kPrompts[1].tokens;
  return {t.begin(), t.end()};
}

/// Loads the file with kExportTrainable trainable and takes kExportSteps SGD steps on the canary's loss;
/// `losses`, when given, receives the loss before each step.
inline fisher_unlearn::models::Llama<float> memorise_canary(const fisher_unlearn::GgufFile& file,
                                                            std::vector<float>* losses = nullptr) {
  fisher_unlearn::models::LlamaLoadOptions options;
  options.context_length = 64;
  options.execution.num_threads = 1;
  auto model = fisher_unlearn::models::load_llama<float>(file, kExportTrainable, options);
  fisher_unlearn::models::Llama<float>::Sample s;
  s.tokens = canary_tokens();
  std::vector<float> g(model.num_parameters());
  for (int step = 0; step < kExportSteps; ++step) {
    const float l = model.gradient(s, g);
    if (losses) losses->push_back(l);
    auto p = model.parameters();
    for (std::size_t i = 0; i < p.size(); ++i) p[i] -= kExportLearningRate * g[i];
  }
  return model;
}

}  // namespace llama_fixture
