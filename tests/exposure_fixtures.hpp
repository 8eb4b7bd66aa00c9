// Tokenizers shared by the exposure, canary and membership tests.
#pragma once

#include "fisher_unlearn/tokenizer.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace exposure_fixtures {

using fisher_unlearn::Token;

/// One token per character of a fixed charset (small vocabularies keep table models small).
struct CharTokenizer {
  std::string charset = "abcdefghij0123456789:- ";
  std::size_t vocab_size() const { return charset.size(); }
  std::vector<Token> encode(std::string_view text) const {
    std::vector<Token> out;
    for (char c : text) {
      const auto p = charset.find(c);
      out.push_back(p == std::string::npos ? Token(0) : static_cast<Token>(p));
    }
    return out;
  }
  std::string decode(std::span<const Token> tokens) const {
    std::string out;
    for (Token t : tokens) out += (t >= 0 && static_cast<std::size_t>(t) < charset.size()) ? charset[t] : '?';
    return out;
  }
};

/// A BPE-like byte tokenizer that merges every pair of adjacent digits into one token (256 + 10a + b),
/// left to right: "1234" -> [12][34]. It breaks the token-extension property for digit slots.
struct MergingDigitTokenizer {
  std::size_t vocab_size() const { return 356; }
  std::vector<Token> encode(std::string_view text) const {
    std::vector<Token> out;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      const bool digit = c >= '0' && c <= '9';
      if (digit && i + 1 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '9') {
        out.push_back(static_cast<Token>(256 + 10 * (c - '0') + (text[i + 1] - '0')));
        ++i;
      } else {
        out.push_back(static_cast<Token>(c));
      }
    }
    return out;
  }
  std::string decode(std::span<const Token> tokens) const {
    std::string out;
    for (Token t : tokens) {
      if (t >= 256) {
        out += static_cast<char>('0' + (t - 256) / 10);
        out += static_cast<char>('0' + (t - 256) % 10);
      } else {
        out += static_cast<char>(t);
      }
    }
    return out;
  }
};

/// A byte tokenizer that merges a space with the digit after it into one token (256 + digit), as GPT-2
/// style BPE does (" 1"): "pin 123" -> p i n [ 1] 2 3. With a prefix ending in a space, encode(prefix) ++
/// encode(secret) is not the tokenization of the full text, so it breaks the prefix/secret boundary.
struct SpaceDigitTokenizer {
  std::size_t vocab_size() const { return 266; }
  std::vector<Token> encode(std::string_view text) const {
    std::vector<Token> out;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == ' ' && i + 1 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '9') {
        out.push_back(static_cast<Token>(256 + (text[i + 1] - '0')));
        ++i;
      } else {
        out.push_back(static_cast<Token>(static_cast<unsigned char>(text[i])));
      }
    }
    return out;
  }
  std::string decode(std::span<const Token> tokens) const {
    std::string out;
    for (Token t : tokens) {
      if (t >= 256) {
        out += ' ';
        out += static_cast<char>('0' + (t - 256));
      } else {
        out += static_cast<char>(t);
      }
    }
    return out;
  }
};

/// Returns no tokens for any text containing 'z' (a broken tokenizer).
struct DropsZTokenizer {
  std::size_t vocab_size() const { return 256; }
  std::vector<Token> encode(std::string_view text) const {
    if (text.find('z') != std::string_view::npos) return {};
    return fisher_unlearn::ByteTokenizer{}.encode(text);
  }
  std::string decode(std::span<const Token> tokens) const { return fisher_unlearn::ByteTokenizer{}.decode(tokens); }
};

static_assert(fisher_unlearn::Tokenizer<CharTokenizer>);
static_assert(fisher_unlearn::Tokenizer<MergingDigitTokenizer>);
static_assert(fisher_unlearn::Tokenizer<DropsZTokenizer>);

}  // namespace exposure_fixtures
