// Writes the seed corpus of fuzz_checkpoint (tests/fuzz/corpus/fuzz_checkpoint/): small valid checkpoints
// of every kind the reader meets. Run: make_checkpoint_seeds <directory>.
#include "fisher_unlearn/checkpoint.hpp"

#include <cstdio>
#include <filesystem>
#include <vector>

namespace fu = fisher_unlearn;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  fu::models::TransformerConfig c;
  c.vocab_size = 5;
  c.context_length = 3;
  c.num_layers = 1;
  c.width = 4;
  c.num_heads = 2;
  c.mlp_ratio = 1;
  c.seed = 3;
  const fu::models::Transformer<float> tiny(c);
  fu::save_checkpoint(dir / "transformer_float.ckpt", tiny);
  fu::save_checkpoint(dir / "transformer_double.ckpt", fu::models::Transformer<double>(tiny));
  const std::vector<double> seven{1.0, -2.5, 0.0, 1e-300, -0.0, 3.25, 7.0};
  fu::save_parameters<double>(dir / "generic_double.ckpt", seven, "mlp", "layers=3\n");
  fu::save_parameters<float>(dir / "empty_float.ckpt", std::span<const float>(), "empty", "");
  return 0;
}
