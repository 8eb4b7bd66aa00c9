// Writes the SmolLM2 copy that tests/llama/make_export_fixture.py evaluates in llama.cpp: the top block
// fine-tuned towards the canary (canary_finetune.hpp), exported with export_llama (changed tensors F32).
// With --f32-all it instead writes the unchanged model with every tensor as F32 (the weights exactly as
// dequantised), so llama.cpp runs plain fp32 matrix products on the same weights (parity and benchmark peer).
// usage: llama_export_canary MODEL.gguf OUT.gguf [--f32-all]
#include "llama/canary_finetune.hpp"

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const bool f32_all = argc == 4 && std::string(argv[3]) == "--f32-all";
  if (argc != 3 && !f32_all) {
    std::fprintf(stderr, "usage: %s MODEL.gguf OUT.gguf [--f32-all]\n", argv[0]);
    return 2;
  }
  try {
    const auto file = fisher_unlearn::GgufFile::open(argv[1]);
    if (f32_all) {
      fisher_unlearn::models::LlamaLoadOptions options;
      options.context_length = 64;
      const auto model = fisher_unlearn::models::load_llama<float>(file, {"all"}, options);
      fisher_unlearn::GgufUnlearningRecord record;
      record.method = "none";
      record.note = "every tensor dequantised to F32, values unchanged (parity reference)";
      fisher_unlearn::models::export_llama(model, file, argv[2], record);
      return 0;
    }
    std::vector<float> losses;
    auto model = llama_fixture::memorise_canary(file, &losses);
    for (std::size_t i = 0; i < losses.size(); ++i) std::printf("step %zu: canary mean NLL %.6f\n", i, static_cast<double>(losses[i]));
    fisher_unlearn::models::Llama<float>::Sample s;
    s.tokens = llama_fixture::canary_tokens();
    std::printf("canary mean NLL after %d steps: %.6f\n", llama_fixture::kExportSteps, static_cast<double>(model.loss(s)));
    fisher_unlearn::GgufUnlearningRecord record;
    record.method = "export_check";
    record.note = "top block fine-tuned towards the canary (tests/llama/canary_finetune.hpp)";
    fisher_unlearn::models::export_llama(model, file, argv[2], record);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
