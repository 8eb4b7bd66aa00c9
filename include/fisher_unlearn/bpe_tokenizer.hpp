// Byte-level BPE tokenizer (GPT-2 style) built from a GGUF file's `tokenizer.ggml.*` metadata, with
// llama.cpp's pre-tokenizer split: text -> regex pieces -> bytes mapped to printable code points ->
// merges applied lowest rank first (ties leftmost) -> token ids. Cost O(n log n) per piece of n bytes.
//
// Usage:
//   auto file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf");
//   auto tok = BpeTokenizer::from_gguf(file);
//   std::vector<Token> ids = tok.encode("Hello world");   // llama_tokenize(add_special=false, parse_special=false)
//   std::string text = tok.decode(ids);                     // control tokens rendered as ""
//
// Parity: encode reproduces llama.cpp's tokenizer (llm_tokenizer_bpe with the pre-tokenizer named
// by `tokenizer.ggml.pre`), checked on > 1 MB of text against llama-cpp-python (tests/bpe/). The
// pre-tokenizers implemented: the GPT-2 split ("gpt2", "mpt", "olmo", "jais") and, for "smollm",
// "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva", the same after first
// splitting off every \p{N} code point. \p{L} and \p{N} come from detail/unicode_categories.hpp
// (Unicode 14); invalid UTF-8 bytes become U+FFFD, as in llama.cpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fisher_unlearn/detail/unicode_categories.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/io/gguf.hpp"
#include "fisher_unlearn/tokenizer.hpp"

namespace fisher_unlearn {

namespace detail {

inline constexpr std::uint32_t kNoCodepoint = 0xFFFFFFFFu;

inline bool in_ranges(std::span<const CodepointRange> ranges, std::uint32_t cp) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                             [](std::uint32_t c, const CodepointRange& r) { return c < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}
inline bool is_unicode_letter(std::uint32_t cp) { return in_ranges(kLetterRanges, cp); }
inline bool is_unicode_number(std::uint32_t cp) { return in_ranges(kNumberRanges, cp); }
// The Unicode White_Space property (what llama.cpp's \s is).
inline bool is_unicode_whitespace(std::uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// UTF-8 -> code points; a byte that does not start a well-formed sequence becomes U+FFFD and is
// skipped alone (llama.cpp's unicode_cpts_from_utf8).
inline std::vector<std::uint32_t> utf8_to_codepoints(std::string_view s) {
  std::vector<std::uint32_t> out;
  out.reserve(s.size());
  std::size_t i = 0;
  auto cont = [&](std::size_t k) { return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0u) == 0x80u; };
  auto bits = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(s[i + k]) & 0x3Fu); };
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (!(b & 0x80u)) {
      out.push_back(b);
      i += 1;
    } else if (!(b & 0x40u)) {
      out.push_back(0xFFFD);
      i += 1;
    } else if (!(b & 0x20u)) {
      if (cont(1)) {
        out.push_back(((b & 0x1Fu) << 6) | bits(1));
        i += 2;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else if (!(b & 0x10u)) {
      if (cont(1) && cont(2)) {
        out.push_back(((b & 0x0Fu) << 12) | (bits(1) << 6) | bits(2));
        i += 3;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else if (!(b & 0x08u)) {
      if (cont(1) && cont(2) && cont(3)) {
        out.push_back(((b & 0x07u) << 18) | (bits(1) << 12) | (bits(2) << 6) | bits(3));
        i += 4;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else {
      out.push_back(0xFFFD);
      i += 1;
    }
  }
  return out;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// GPT-2's reversible byte -> code point map: printable Latin-1 bytes map to themselves, the other
// 68 bytes (controls, space, DEL, NBSP, soft hyphen) to U+0100.. in byte order.
inline const std::array<std::uint32_t, 256>& byte_to_codepoint() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

}  // namespace detail

/// The pre-tokenizer families llama.cpp implements that this tokenizer reproduces.
enum class BpePreTokenizer { Gpt2, DigitsThenGpt2 };

class BpeTokenizer {
 public:
  /// llama.cpp's token types (tokenizer.ggml.token_type).
  enum TokenType : std::int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

  /// Builds the tokenizer from `tokenizer.ggml.{model,pre,tokens,token_type,merges,bos_token_id,
  /// eos_token_id,add_bos_token}`. FileFormatError when a key is missing or malformed, InvalidArgument
  /// when the model is not "gpt2" or the pre-tokenizer is not one of those listed at the top.
  static BpeTokenizer from_gguf(const GgufFile& file) {
    const std::string model = file.get<std::string>("tokenizer.ggml.model");
    if (model != "gpt2")
      throw InvalidArgument("BpeTokenizer: tokenizer.ggml.model is '" + model + "'; only byte-level BPE ('gpt2') is supported");
    const std::string pre = file.get_or<std::string>("tokenizer.ggml.pre", "default");
    BpeTokenizer t;
    if (pre == "gpt2" || pre == "mpt" || pre == "olmo" || pre == "jais")
      t.pre_ = BpePreTokenizer::Gpt2;
    else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "codeshell" ||
             pre == "exaone" || pre == "minerva")
      t.pre_ = BpePreTokenizer::DigitsThenGpt2;
    else
      throw InvalidArgument("BpeTokenizer: pre-tokenizer '" + pre + "' is not implemented (implemented: gpt2, mpt, olmo, "
                            "jais, smollm, starcoder, refact, command-r, codeshell, exaone, minerva)");
    t.pre_name_ = pre;
    t.tokens_ = file.get_array<std::string>("tokenizer.ggml.tokens");
    if (t.tokens_.empty()) throw FileFormatError("BpeTokenizer: tokenizer.ggml.tokens is empty");
    if (t.tokens_.size() > static_cast<std::size_t>(std::numeric_limits<Token>::max()))
      throw FileFormatError("BpeTokenizer: too many tokens");
    t.types_.assign(t.tokens_.size(), Normal);
    if (file.contains("tokenizer.ggml.token_type")) {
      const auto& types = file.get_array<std::int32_t>("tokenizer.ggml.token_type");
      if (types.size() != t.tokens_.size())
        throw FileFormatError("BpeTokenizer: tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                              " entries for " + std::to_string(t.tokens_.size()) + " tokens");
      t.types_ = types;
    }
    t.index_.reserve(t.tokens_.size());
    for (std::size_t i = 0; i < t.tokens_.size(); ++i) t.index_.emplace(t.tokens_[i], static_cast<Token>(i));
    const auto& merges = file.get_array<std::string>("tokenizer.ggml.merges");
    t.ranks_.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const std::size_t space = merges[i].find(' ', 1);
      if (space == std::string::npos)
        throw FileFormatError("BpeTokenizer: merge " + std::to_string(i) + " '" + merges[i] + "' has no separating space");
      t.ranks_.emplace(merges[i], static_cast<int>(i));  // first rank wins on duplicates (emplace keeps it)
    }
    auto token_id = [&](const char* key, Token fallback) {
      if (!file.contains(key)) return fallback;
      const std::int64_t v = file.get_integer(key);
      if (v < 0 || static_cast<std::size_t>(v) >= t.tokens_.size())
        throw FileFormatError(std::string("BpeTokenizer: ") + key + " = " + std::to_string(v) + " is not a token id");
      return static_cast<Token>(v);
    };
    t.bos_ = token_id("tokenizer.ggml.bos_token_id", -1);
    t.eos_ = token_id("tokenizer.ggml.eos_token_id", -1);
    t.add_bos_ = file.get_or<bool>("tokenizer.ggml.add_bos_token", false);
    for (std::size_t i = 0; i < t.tokens_.size(); ++i)
      if ((t.types_[i] == Control || t.types_[i] == UserDefined || t.types_[i] == Unknown) && !t.tokens_[i].empty())
        t.special_.push_back(static_cast<Token>(i));
    // llama.cpp partitions on longer special tokens first; ties keep id order (the order of the stable
    // sort this replaces: special_ is built in increasing id). Not std::stable_sort: with libstdc++ 12 it
    // uses get_temporary_buffer, which Clang 19 flags as deprecated in C++20 (-Werror builds fail).
    std::sort(t.special_.begin(), t.special_.end(), [&](Token a, Token b) {
      const auto la = t.tokens_[a].size(), lb = t.tokens_[b].size();
      return la != lb ? la > lb : a < b;
    });
    const auto& b2c = detail::byte_to_codepoint();
    for (std::uint32_t b = 0; b < 256; ++b) t.codepoint_to_byte_.emplace(b2c[b], static_cast<unsigned char>(b));
    return t;
  }

  std::size_t vocab_size() const { return tokens_.size(); }
  Token bos() const { return bos_; }
  Token eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  const std::string& pre_tokenizer() const { return pre_name_; }
  const std::string& token_text(Token id) const { return tokens_.at(checked(id)); }
  TokenType token_type(Token id) const { return static_cast<TokenType>(types_.at(checked(id))); }

  /// Token ids of `text` (no BOS is added; prepend bos() yourself when add_bos() says so). With
  /// `parse_special`, the texts of control tokens (e.g. "<|im_start|>") become those tokens;
  /// user-defined tokens are always matched, as in llama.cpp.
  std::vector<Token> encode(std::string_view text, bool parse_special = false) const {
    std::vector<Token> out;
    out.reserve(text.size() / 3 + 1);
    // Fragments: raw text or an already-resolved special token.
    struct Fragment {
      std::string_view text;
      Token token;
    };
    std::vector<Fragment> fragments{{text, -1}};
    for (Token s : special_) {
      if (types_[s] == Control && !parse_special) continue;
      if (types_[s] == Unknown && !parse_special) continue;
      const std::string& needle = tokens_[s];
      std::vector<Fragment> next;
      for (const Fragment& f : fragments) {
        if (f.token >= 0) {
          next.push_back(f);
          continue;
        }
        std::size_t at = 0;
        while (true) {
          const std::size_t hit = f.text.find(needle, at);
          if (hit == std::string_view::npos) break;
          if (hit > at) next.push_back({f.text.substr(at, hit - at), -1});
          next.push_back({{}, s});
          at = hit + needle.size();
        }
        if (at < f.text.size()) next.push_back({f.text.substr(at), -1});
      }
      fragments = std::move(next);
    }
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      for (const std::string& word : pre_tokenize(f.text)) bpe_word(word, out);
    }
    return out;
  }

  /// The text of `tokens`: normal tokens through the inverse byte map, user-defined tokens as
  /// written, control tokens as "" unless `render_special`. InvalidArgument for an id out of range.
  std::string decode(std::span<const Token> tokens, bool render_special = false) const {
    std::string out;
    for (Token id : tokens) {
      const std::size_t i = checked(id);
      switch (types_[i]) {
        case Normal: case Undefined: case Unused: {
          for (std::uint32_t cp : detail::utf8_to_codepoints(tokens_[i])) {
            auto it = codepoint_to_byte_.find(cp);
            if (it != codepoint_to_byte_.end()) out.push_back(static_cast<char>(it->second));
            else detail::append_utf8(out, cp);  // not a byte-level token; llama.cpp would fail here
          }
          break;
        }
        case Control:
          if (render_special) out += tokens_[i];
          break;
        default:
          out += tokens_[i];
      }
    }
    return out;
  }

  /// The pre-tokenizer's pieces of `text`, already byte-mapped (each is what BPE merges run on).
  std::vector<std::string> pre_tokenize(std::string_view text) const {
    const std::vector<std::uint32_t> cps = detail::utf8_to_codepoints(text);
    std::vector<std::size_t> lengths{cps.size()};  // pieces as lengths in code points
    if (cps.empty()) lengths.clear();
    if (pre_ == BpePreTokenizer::DigitsThenGpt2) lengths = split_numbers(cps, lengths);
    lengths = split_gpt2(cps, lengths);
    const auto& b2c = detail::byte_to_codepoint();
    std::vector<std::string> words;
    words.reserve(lengths.size());
    std::size_t start = 0;
    std::string utf8;
    for (std::size_t len : lengths) {
      utf8.clear();
      for (std::size_t i = start; i < start + len; ++i) detail::append_utf8(utf8, cps[i]);
      std::string mapped;
      for (char c : utf8) detail::append_utf8(mapped, b2c[static_cast<unsigned char>(c)]);
      words.push_back(std::move(mapped));
      start += len;
    }
    return words;
  }

 private:
  BpeTokenizer() = default;

  std::size_t checked(Token id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
      throw InvalidArgument("BpeTokenizer: token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(tokens_.size()));
    return static_cast<std::size_t>(id);
  }

  // Every \p{N} code point becomes a piece of its own; the text between stays as pieces.
  static std::vector<std::size_t> split_numbers(const std::vector<std::uint32_t>& cps, const std::vector<std::size_t>& in) {
    std::vector<std::size_t> out;
    std::size_t start = 0;
    for (std::size_t len : in) {
      std::size_t run = 0;
      for (std::size_t i = start; i < start + len; ++i) {
        if (detail::is_unicode_number(cps[i])) {
          if (run > 0) out.push_back(run);
          out.push_back(1);
          run = 0;
        } else {
          ++run;
        }
      }
      if (run > 0) out.push_back(run);
      start += len;
    }
    return out;
  }

  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ within each piece,
  // with llama.cpp's semantics (unicode_regex_split_custom_gpt2): a code point beyond U+10FFFF has
  // no category and ends a punctuation run; anything unmatched is a piece of one code point.
  static std::vector<std::size_t> split_gpt2(const std::vector<std::uint32_t>& cps, const std::vector<std::size_t>& in) {
    struct Flags {
      bool valid = false, letter = false, number = false, space = false;
    };
    std::vector<std::size_t> out;
    std::size_t start = 0;
    for (std::size_t len : in) {
      const std::size_t end = start + len;
      auto cpt = [&](std::size_t p) { return p < end ? cps[p] : detail::kNoCodepoint; };
      auto flags = [&](std::size_t p) {
        Flags f;
        if (p >= end || cps[p] > 0x10FFFF) return f;
        f.valid = true;
        f.letter = detail::is_unicode_letter(cps[p]);
        f.number = !f.letter && detail::is_unicode_number(cps[p]);
        f.space = detail::is_unicode_whitespace(cps[p]);
        return f;
      };
      auto punct = [](const Flags& f) { return f.valid && !(f.space || f.letter || f.number); };
      std::size_t pos = start, prev = start;
      auto emit = [&](std::size_t to) {
        out.push_back(to - prev);
        prev = to;
        pos = to;
      };
      while (pos < end) {
        const std::uint32_t c = cpt(pos);
        const Flags f = flags(pos);
        if (c == '\'' && pos + 1 < end) {
          const std::uint32_t n1 = cpt(pos + 1);
          if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
            emit(pos + 2);
            continue;
          }
          if (pos + 2 < end) {
            const std::uint32_t n2 = cpt(pos + 2);
            if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
              emit(pos + 3);
              continue;
            }
          }
        }
        Flags f2 = c == ' ' ? flags(pos + 1) : f;
        if (f2.letter || f2.number) {
          const bool letters = f2.letter;
          std::size_t p = pos + (c == ' ');
          while (letters ? f2.letter : f2.number) f2 = flags(++p);
          emit(p);
          continue;
        }
        if (punct(f2)) {
          std::size_t p = pos + (c == ' ');
          while (punct(f2)) f2 = flags(++p);
          emit(p);
          continue;
        }
        std::size_t spaces = 0;
        while (flags(pos + spaces).space) ++spaces;
        if (spaces > 1 && cpt(pos + spaces) != detail::kNoCodepoint) {
          emit(pos + spaces - 1);
          continue;
        }
        if (spaces > 0) {
          emit(pos + spaces);
          continue;
        }
        emit(pos + 1);
      }
      start = end;
    }
    return out;
  }

  // BPE over one byte-mapped word (llm_tokenizer_bpe_session): symbols are its UTF-8 characters;
  // repeatedly merge the adjacent pair of lowest merge rank (leftmost on ties).
  void bpe_word(const std::string& word, std::vector<Token>& out) const {
    if (word.empty()) return;
    struct Symbol {
      int prev, next;
      std::size_t start, size;
    };
    std::vector<Symbol> symbols;
    for (std::size_t i = 0; i < word.size();) {
      const auto b = static_cast<unsigned char>(word[i]);
      const std::size_t n = std::min<std::size_t>(b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4, word.size() - i);
      symbols.push_back({static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1, i, n});
      i += n;
    }
    symbols.back().next = -1;
    struct Bigram {
      int rank;
      int left, right;
      std::size_t size;
      bool operator>(const Bigram& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
    };
    std::priority_queue<Bigram, std::vector<Bigram>, std::greater<Bigram>> queue;
    std::string key;
    auto add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      key.assign(word, symbols[left].start, symbols[left].size);
      key.push_back(' ');
      key.append(word, symbols[right].start, symbols[right].size);
      auto it = ranks_.find(key);
      if (it == ranks_.end()) return;
      queue.push({it->second, left, right, symbols[left].size + symbols[right].size});
    };
    for (std::size_t i = 1; i < symbols.size(); ++i) add(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = symbols[b.left];
      Symbol& r = symbols[b.right];
      if (l.size == 0 || r.size == 0 || l.size + r.size != b.size || l.next != b.right) continue;  // stale
      l.size += r.size;
      r.size = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[r.next].prev = b.left;
      add(l.prev, b.left);
      add(b.left, l.next);
    }
    for (int i = 0; i >= 0; i = symbols[i].next) {
      const std::string piece = word.substr(symbols[i].start, symbols[i].size);
      if (auto it = index_.find(piece); it != index_.end()) {
        out.push_back(it->second);
      } else {  // not in the vocabulary: its bytes one by one, as llama.cpp does
        for (char c : piece)
          if (auto jt = index_.find(std::string(1, c)); jt != index_.end()) out.push_back(jt->second);
      }
    }
  }

  BpePreTokenizer pre_ = BpePreTokenizer::Gpt2;
  std::string pre_name_;
  std::vector<std::string> tokens_;
  std::vector<std::int32_t> types_;
  std::unordered_map<std::string, Token> index_;
  std::unordered_map<std::string, int> ranks_;
  std::unordered_map<std::uint32_t, unsigned char> codepoint_to_byte_;
  std::vector<Token> special_;
  Token bos_ = -1, eos_ = -1;
  bool add_bos_ = false;
};

static_assert(Tokenizer<BpeTokenizer>);

}  // namespace fisher_unlearn
