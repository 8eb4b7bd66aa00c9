// Tokens and the default byte-level tokenizer: every byte is a token (vocabulary 256), so any corpus
// works and a candidate's tokens always extend its prefix's tokens (what pruned exposure relies on).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fisher_unlearn {

using Token = std::int32_t;

/// A tokenizer maps text to tokens and back. Exposure and the canary helpers take any such type.
template <class T>
concept Tokenizer = requires(const T& t, std::string_view text, std::span<const Token> tokens) {
  { t.encode(text) } -> std::convertible_to<std::vector<Token>>;
  { t.decode(tokens) } -> std::convertible_to<std::string>;
  { t.vocab_size() } -> std::convertible_to<std::size_t>;
};

struct ByteTokenizer {
  static constexpr std::size_t kVocabSize = 256;
  std::size_t vocab_size() const { return kVocabSize; }
  std::vector<Token> encode(std::string_view text) const {
    std::vector<Token> out(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) out[i] = static_cast<Token>(static_cast<unsigned char>(text[i]));
    return out;
  }
  std::string decode(std::span<const Token> tokens) const {
    std::string out(tokens.size(), '\0');
    for (std::size_t i = 0; i < tokens.size(); ++i) out[i] = static_cast<char>(static_cast<unsigned char>(tokens[i]));
    return out;
  }
};

static_assert(Tokenizer<ByteTokenizer>);

}  // namespace fisher_unlearn
