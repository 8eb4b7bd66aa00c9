// Text and training windows for the transformer benchmarks: the demo's corpus (data/kjv/train.txt from
// scripts/prepare_data.sh, the first `bytes` cut at a line boundary, as the demo reads it) or, where it
// has not been prepared, seeded pseudo-text of the same size. Timings do not depend on which.
#pragma once

#include <fisher_unlearn/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#ifndef FISHER_UNLEARN_SOURCE_DIR
#define FISHER_UNLEARN_SOURCE_DIR "."
#endif

namespace fisher_unlearn::bench {

struct Corpus {
  std::string text;
  std::string source;  ///< the file read, or "synthetic (seeded)"
};

/// The first `bytes` of the demo corpus, cut after the last complete line; synthetic text otherwise.
/// $FISHER_UNLEARN_DATA_DIR overrides <source>/data.
inline Corpus demo_corpus(std::size_t bytes) {
  const char* env = std::getenv("FISHER_UNLEARN_DATA_DIR");
  const std::filesystem::path data = env ? std::filesystem::path(env) : std::filesystem::path(FISHER_UNLEARN_SOURCE_DIR) / "data";
  const auto file = data / "kjv" / "train.txt";
  Corpus c;
  if (std::ifstream in(file, std::ios::binary); in) {
    std::ostringstream all;
    all << in.rdbuf();
    c.text = all.str().substr(0, bytes);
    if (const auto nl = c.text.find_last_of('\n'); nl != std::string::npos) c.text.resize(nl + 1);
    c.source = file.string();
    if (c.text.size() > bytes / 2) return c;
  }
  // Words of 2–9 lower-case letters, lines of 8–20 words: byte statistics roughly like prose.
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> letter('a', 'z'), word_length(2, 9), line_words(8, 20);
  c.text.clear();
  while (c.text.size() < bytes) {
    const int n = line_words(rng);
    for (int w = 0; w < n; ++w) {
      const int len = word_length(rng);
      for (int i = 0; i < len; ++i) c.text += static_cast<char>(letter(rng));
      c.text += w + 1 < n ? ' ' : '\n';
    }
  }
  c.text.resize(bytes);
  c.source = "synthetic (seeded; run scripts/prepare_data.sh kjv for the demo corpus)";
  return c;
}

/// `count` windows of `window_tokens` tokens (inputs plus the last target) at seeded offsets.
inline std::vector<std::vector<Token>> sample_token_windows(const std::vector<Token>& stream, std::size_t window_tokens,
                                                            std::size_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> offset(0, stream.size() - window_tokens);
  std::vector<std::vector<Token>> out(count);
  for (auto& w : out) {
    const std::size_t o = offset(rng);
    w.assign(stream.begin() + static_cast<std::ptrdiff_t>(o),
             stream.begin() + static_cast<std::ptrdiff_t>(o + window_tokens));
  }
  return out;
}

}  // namespace fisher_unlearn::bench
