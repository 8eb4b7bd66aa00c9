// Reads the tokenizer parity corpus (tests/bpe/make_corpus.py's format) and its llama.cpp digests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fisher_unlearn/errors.hpp"
#include "gguf_test_files.hpp"
#include "sha256.hpp"

namespace fisher_unlearn::testing {

struct CorpusChunk {
  std::string label, text;
};

inline std::vector<CorpusChunk> read_bpe_corpus(const std::filesystem::path& path) {
  const std::string data = read_text_file(path);
  std::vector<CorpusChunk> chunks;
  std::size_t pos = 0;
  while (pos < data.size()) {
    const std::size_t nl = data.find('\n', pos);
    if (nl == std::string::npos || data.compare(pos, 6, "CHUNK ") != 0) throw FileFormatError("bad corpus header");
    const std::string header = data.substr(pos + 6, nl - pos - 6);
    const std::size_t space = header.find(' ');
    const std::size_t size = std::stoull(header.substr(0, space));
    if (nl + 1 + size > data.size()) throw FileFormatError("truncated corpus");
    chunks.push_back({header.substr(space + 1), data.substr(nl + 1, size)});
    pos = nl + 1 + size + 1;
  }
  return chunks;
}

inline nlohmann::json load_bpe_fixture() {
  return nlohmann::json::parse(read_text_file(test_data_dir() / "bpe" / "smollm2_tokens.json"));
}

inline std::string tokens_sha256(const std::vector<std::int32_t>& ids) {
  std::vector<std::uint8_t> bytes;
  bytes.reserve(ids.size() * 4);
  for (std::int32_t id : ids)
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<std::uint8_t>(static_cast<std::uint32_t>(id) >> (8 * k)));
  return sha256_hex(bytes.data(), bytes.size());
}

}  // namespace fisher_unlearn::testing
