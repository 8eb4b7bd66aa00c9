// Canaries for exposure (Carlini et al. 2019, "The Secret Sharer"): a fixed prefix followed by secret
// slots, each slot drawn from its own alphabet, so the candidate space R has |R| = Π_i |alphabet_i| (must
// fit in 64 bits). Building a format is O(Σ|A_i|) (expected; a hash set checks distinct symbols); formatting
// is O(#slots); CanarySpace's token check is O(|R|) encodes up to a limit and O(Σ|A_i||A_i+1| + samples) beyond.
#pragma once

#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace fisher_unlearn {

namespace detail {

/// Uniform integer in [0, n) by rejection, identical on every standard library (std::uniform_int_distribution
/// is implementation-defined, which would make seeded canaries differ between libstdc++ and libc++).
inline std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t n) {
  const std::uint64_t threshold = (0 - n) % n;  // 2^64 mod n: the biased low range we reject
  std::uint64_t x = rng();
  while (x < threshold) x = rng();
  return x % n;
}

inline std::string quoted(std::string_view s) {
  std::string out;  // not "'" + std::string(s): GCC 12 warns falsely (-Wrestrict) on that form
  out.reserve(s.size() + 2);
  out += '\'';
  out += s;
  out += '\'';
  return out;
}

}  // namespace detail

/// One secret slot: the text written before it (a separator such as "-", often empty) and its alphabet.
/// Symbols are strings (usually one character); they must be non-empty and distinct within the slot.
struct CanarySlot {
  std::vector<std::string> symbols;
  std::string before;

  /// One symbol per character of `chars`.
  static CanarySlot from_chars(std::string_view chars, std::string before = {}) {
    CanarySlot slot;
    slot.before = std::move(before);
    for (char c : chars) slot.symbols.emplace_back(1, c);
    return slot;
  }
  static CanarySlot digits(std::string before = {}) { return from_chars("0123456789", std::move(before)); }
  static CanarySlot lowercase(std::string before = {}) {
    return from_chars("abcdefghijklmnopqrstuvwxyz", std::move(before));
  }
  static CanarySlot letters(std::string before = {}) {
    return from_chars("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", std::move(before));
  }
  static CanarySlot alphanumeric(std::string before = {}) {
    return from_chars("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", std::move(before));
  }
};

/// A point of the candidate space: choices[i] indexes slot i's alphabet.
struct Canary {
  std::vector<std::uint32_t> choices;
  friend bool operator==(const Canary&, const Canary&) = default;
};

/// The format of a canary: prefix + Σ_i (slot_i.before + symbol_i). The secret is everything after the prefix.
/// Candidates are ordered lexicographically with slot 0 most significant (index_of / canary_at).
class CanaryFormat {
 public:
  CanaryFormat(std::string prefix, std::vector<CanarySlot> slots) : prefix_(std::move(prefix)), slots_(std::move(slots)) {
    if (slots_.empty()) throw InvalidArgument("a canary format needs at least one secret slot");
    space_size_ = 1;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const auto& symbols = slots_[i].symbols;
      if (symbols.empty())
        throw InvalidArgument("canary slot " + std::to_string(i) + " has an empty alphabet; give it at least one symbol");
      if (symbols.size() > std::numeric_limits<std::uint32_t>::max())
        throw InvalidArgument("canary slot " + std::to_string(i) + " has more than 2^32 - 1 symbols");
      // Distinctness by one hash set per slot: O(|A_i|) expected (a pairwise check was quadratic: 10-17 s for
      // one slot of 10^5 symbols).
      std::unordered_set<std::string_view> seen;
      seen.reserve(symbols.size());
      for (std::size_t a = 0; a < symbols.size(); ++a) {
        if (symbols[a].empty())
          throw InvalidArgument("canary slot " + std::to_string(i) + " has an empty symbol; every symbol needs text");
        if (!seen.insert(symbols[a]).second)
          throw InvalidArgument("canary slot " + std::to_string(i) + " lists symbol " + detail::quoted(symbols[a]) +
                                " twice; symbols of a slot must be distinct");
      }
      const std::uint64_t n = symbols.size();
      if (space_size_ > std::numeric_limits<std::uint64_t>::max() / n)
        throw InvalidArgument("the canary space has more than 2^64 - 1 candidates (overflow at slot " +
                              std::to_string(i) + "); use fewer or smaller slots");
      space_size_ *= n;
    }
  }

  /// `count` slots of decimal digits after `prefix`: |R| = 10^count.
  static CanaryFormat digits(std::string prefix, std::size_t count) {
    return CanaryFormat(std::move(prefix), std::vector<CanarySlot>(count, CanarySlot::digits()));
  }

  const std::string& prefix() const { return prefix_; }
  const std::vector<CanarySlot>& slots() const { return slots_; }
  std::size_t num_slots() const { return slots_.size(); }
  std::size_t alphabet_size(std::size_t slot) const { return slots_.at(slot).symbols.size(); }
  /// |R|.
  std::uint64_t space_size() const { return space_size_; }
  double log2_space_size() const {
    double s = 0.0;  // a sum of per-slot logs keeps full precision where |R| > 2^53
    for (const auto& slot : slots_) s += std::log2(static_cast<double>(slot.symbols.size()));
    return s;
  }

  /// Throws InvalidArgument unless `c` is a point of this space.
  void validate(const Canary& c) const {
    if (c.choices.size() != slots_.size())
      throw InvalidArgument("the canary has " + std::to_string(c.choices.size()) + " slot choices but the format has " +
                            std::to_string(slots_.size()) + " slots; build canaries with this format");
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (c.choices[i] >= slots_[i].symbols.size())
        throw InvalidArgument("the canary chooses symbol " + std::to_string(c.choices[i]) + " in slot " +
                              std::to_string(i) + ", whose alphabet has only " +
                              std::to_string(slots_[i].symbols.size()) + " symbols: it is outside the canary space");
  }

  /// Position in the lexicographic order of R (slot 0 most significant), in [0, |R|).
  std::uint64_t index_of(const Canary& c) const {
    validate(c);
    std::uint64_t index = 0;
    for (std::size_t i = 0; i < slots_.size(); ++i) index = index * slots_[i].symbols.size() + c.choices[i];
    return index;
  }

  Canary canary_at(std::uint64_t index) const {
    if (index >= space_size_)
      throw InvalidArgument("candidate index " + std::to_string(index) + " is outside the canary space of size " +
                            std::to_string(space_size_));
    Canary c;
    c.choices.resize(slots_.size());
    for (std::size_t i = slots_.size(); i-- > 0;) {
      const std::uint64_t n = slots_[i].symbols.size();
      c.choices[i] = static_cast<std::uint32_t>(index % n);
      index /= n;
    }
    return c;
  }

  /// The secret: Σ_i (before_i + symbol_i).
  std::string secret_text(const Canary& c) const {
    validate(c);
    std::string out;
    append_secret(c, out);
    return out;
  }
  std::string text(const Canary& c) const { return prefix_ + secret_text(c); }

  /// Character span [begin, end) of slot i's symbol inside secret_text(c).
  std::pair<std::size_t, std::size_t> symbol_span(const Canary& c, std::size_t slot) const {
    validate(c);
    std::size_t pos = 0;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      pos += slots_[i].before.size();
      const std::size_t len = slots_[i].symbols[c.choices[i]].size();
      if (i == slot) return {pos, pos + len};
      pos += len;
    }
    throw InvalidArgument("slot " + std::to_string(slot) + " does not exist; the format has " +
                          std::to_string(slots_.size()) + " slots");
  }

  /// The canary whose secret text is `secret`; throws InvalidArgument when no candidate spells it.
  Canary parse_secret(std::string_view secret) const {
    Canary c;
    c.choices.assign(slots_.size(), 0);
    if (!parse_from(secret, 0, 0, c))
      throw InvalidArgument("secret " + detail::quoted(secret) + " is not in the canary space (" +
                            std::to_string(slots_.size()) + " slots with their own alphabets and separators)");
    return c;
  }
  /// The canary whose full text (prefix + secret) is `text`.
  Canary parse(std::string_view text) const {
    if (text.substr(0, prefix_.size()) != prefix_)
      throw InvalidArgument("text " + detail::quoted(text) + " does not start with the canary prefix " +
                            detail::quoted(prefix_));
    return parse_secret(text.substr(prefix_.size()));
  }

  /// A uniformly random candidate.
  Canary generate(std::mt19937_64& rng) const {
    Canary c;
    c.choices.resize(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i)
      c.choices[i] = static_cast<std::uint32_t>(detail::uniform_below(rng, slots_[i].symbols.size()));
    return c;
  }
  /// `count` independent uniform candidates from `seed` (the same on every platform).
  std::vector<Canary> generate(std::uint64_t seed, std::size_t count) const {
    std::mt19937_64 rng(seed);
    std::vector<Canary> out;
    out.reserve(count);
    for (std::size_t i = 0; i < count; ++i) out.push_back(generate(rng));
    return out;
  }

  /// Appends the secret of an already validated canary (no allocation once `out` has capacity).
  void append_secret(const Canary& c, std::string& out) const {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      out += slots_[i].before;
      out += slots_[i].symbols[c.choices[i]];
    }
  }

 private:
  bool parse_from(std::string_view s, std::size_t pos, std::size_t slot, Canary& c) const {
    if (slot == slots_.size()) return pos == s.size();
    const auto& sl = slots_[slot];
    if (s.substr(pos, sl.before.size()) != sl.before) return false;
    pos += sl.before.size();
    // Multi-character symbols can make a greedy parse fail where another split succeeds: backtrack.
    for (std::size_t a = 0; a < sl.symbols.size(); ++a) {
      const auto& sym = sl.symbols[a];
      if (s.substr(pos, sym.size()) == sym) {
        c.choices[slot] = static_cast<std::uint32_t>(a);
        if (parse_from(s, pos + sym.size(), slot + 1, c)) return true;
      }
    }
    return false;
  }

  std::string prefix_;
  std::vector<CanarySlot> slots_;
  std::uint64_t space_size_ = 0;
};

struct CanarySpaceOptions {
  /// Check the token-extension property on every candidate when |R| is at most this; beyond it, on all
  /// adjacent slot pairs plus `sampled_checks` random candidates (the result says which).
  std::uint64_t exhaustive_check_limit = std::uint64_t{1} << 22;
  std::size_t sampled_checks = std::size_t{1} << 16;
  std::uint64_t seed = 0x5eedULL;
};

/// A canary format bound to a tokenizer. Definition used everywhere in this library:
///   prefix tokens = encode(prefix),  secret tokens(c) = encode(secret_text(c)),
/// i.e. prefix and secret are encoded separately and concatenated; the model scores the secret tokens
/// after the prefix tokens, and tokens(c) = prefix tokens ++ secret tokens is what to insert into training data.
///
/// Full-text mode (tokenizers that merge across the prefix/secret boundary, as BPE merges " 1" when the
/// prefix ends in a space): when encode(prefix + secret) != encode(prefix) ++ encode(secret) for a checked
/// candidate, a model trained on whole documents never saw the separate tokens, so every candidate is
/// scored by the tokenization of its full text instead:
///   prefix tokens = the longest token prefix that encode(prefix + secret(c)) shares for every checked c
///                   (encode(prefix) minus its merging tail),
///   secret tokens(c) = the rest of encode(prefix + secret(c)),  tokens(c) = encode(prefix + secret(c)).
/// full_text() says so; the token-extension property is then treated as broken (exact exposure walks every
/// candidate and says so). A candidate whose full text does not begin with the prefix tokens (possible only
/// beyond exhaustive_check_limit) throws InvalidArgument when its tokens are asked for.
///
/// Token-extension property: secret tokens(c) = encode(before_0+symbol_0) ++ encode(before_1+symbol_1) ++ ...
/// for every candidate. Then the tokens of a candidate extend the tokens of each of its partial
/// candidates, the log-probability of a partial candidate bounds every completion, and the pruned exact
/// search is valid. It holds for byte-level tokenizers; a BPE that merges digits breaks it.
class CanarySpace {
 public:
  template <Tokenizer Tok>
  CanarySpace(CanaryFormat format, Tok tokenizer, CanarySpaceOptions options = {}) : format_(std::move(format)) {
    auto tok = std::make_shared<const Tok>(std::move(tokenizer));
    encode_ = [tok](std::string_view text) { return std::vector<Token>(tok->encode(text)); };
    decode_ = [tok](std::span<const Token> tokens) { return std::string(tok->decode(tokens)); };
    tokenizer_vocab_ = tok->vocab_size();
    build(options);
  }

  const CanaryFormat& format() const { return format_; }
  std::span<const Token> prefix_tokens() const { return prefix_tokens_; }

  /// Whether the token-extension property holds (as checked; see extension_check()).
  bool tokens_extend() const { return tokens_extend_; }
  /// How the property was checked, or the counterexample that broke it.
  const std::string& extension_check() const { return extension_check_; }
  /// True when every candidate was checked (|R| <= exhaustive_check_limit).
  bool extension_checked_exhaustively() const { return checked_exhaustively_; }
  /// Whether encode(prefix + secret) == prefix tokens ++ secret tokens on the checked candidates. When
  /// false, a training pipeline that tokenises whole documents sees other tokens than exposure scores.
  bool prefix_boundary_consistent() const { return boundary_consistent_; }
  /// Whether candidates are scored by the tokenization of their full text (see the class comment).
  bool full_text() const { return full_text_; }

  /// encode(before_i + symbol_a): the tokens slot i contributes under the token-extension property.
  std::span<const Token> symbol_tokens(std::size_t slot, std::size_t symbol) const {
    return symbol_tokens_.at(slot).at(symbol);
  }
  /// Largest number of secret tokens of any candidate, when tokens_extend(); otherwise of checked ones.
  std::size_t max_secret_tokens() const { return max_secret_tokens_; }

  /// Secret tokens of `c` (the definition above), written into `out` (reusing its capacity).
  void secret_tokens(const Canary& c, std::vector<Token>& out) const {
    format_.validate(c);
    out.clear();
    if (full_text_) {
      std::string text = format_.prefix();
      format_.append_secret(c, text);
      const std::vector<Token> whole = encode_checked(text, "the canary " + detail::quoted(text));
      if (whole.size() <= prefix_tokens_.size() ||
          !std::equal(prefix_tokens_.begin(), prefix_tokens_.end(), whole.begin()))
        throw InvalidArgument("the canary " + detail::quoted(text) + " does not tokenize as the " +
                              std::to_string(prefix_tokens_.size()) +
                              " common prefix tokens followed by secret tokens (the tokenizer merges further "
                              "into the prefix than on the checked candidates); raise exhaustive_check_limit "
                              "in CanarySpaceOptions to check every candidate");
      out.assign(whole.begin() + static_cast<std::ptrdiff_t>(prefix_tokens_.size()), whole.end());
    } else if (tokens_extend_) {
      for (std::size_t i = 0; i < c.choices.size(); ++i) {
        const auto& t = symbol_tokens_[i][c.choices[i]];
        out.insert(out.end(), t.begin(), t.end());
      }
    } else {
      std::string text;
      format_.append_secret(c, text);
      out = encode_checked(text, "the secret " + detail::quoted(text));
    }
  }
  std::vector<Token> secret_tokens(const Canary& c) const {
    std::vector<Token> out;
    secret_tokens(c, out);
    return out;
  }
  /// prefix tokens ++ secret tokens: the sequence a training set should contain to plant `c`.
  std::vector<Token> tokens(const Canary& c) const {
    std::vector<Token> out(prefix_tokens_.begin(), prefix_tokens_.end());
    const auto s = secret_tokens(c);
    out.insert(out.end(), s.begin(), s.end());
    return out;
  }

  /// The bound tokenizer; encode throws InvalidArgument when it returns no tokens for non-empty text.
  std::vector<Token> encode(std::string_view text) const { return encode_checked(text, detail::quoted(text)); }
  std::string decode(std::span<const Token> tokens) const { return decode_(tokens); }
  std::size_t tokenizer_vocab_size() const { return tokenizer_vocab_; }

 private:
  std::vector<Token> encode_checked(std::string_view text, const std::string& what) const {
    std::vector<Token> t = encode_(text);
    if (t.empty() && !text.empty())
      throw InvalidArgument("the tokenizer returned no tokens for " + what +
                            "; every non-empty text must encode to at least one token");
    return t;
  }

  void build(const CanarySpaceOptions& options) {
    prefix_tokens_ = encode_checked(format_.prefix(), "the canary prefix " + detail::quoted(format_.prefix()));
    const auto& slots = format_.slots();
    symbol_tokens_.resize(slots.size());
    std::size_t max_concat = 0;
    for (std::size_t i = 0; i < slots.size(); ++i) {
      std::size_t longest = 0;
      for (const auto& sym : slots[i].symbols) {
        symbol_tokens_[i].push_back(encode_checked(
            slots[i].before + sym, "symbol " + detail::quoted(sym) + " of canary slot " + std::to_string(i)));
        longest = std::max(longest, symbol_tokens_[i].back().size());
      }
      max_concat += longest;
    }
    max_secret_tokens_ = max_concat;
    tokens_extend_ = true;
    boundary_consistent_ = true;
    full_text_ = false;
    if (check_boundary(options)) return;  // full-text mode: nothing below applies

    Canary c;
    c.choices.assign(slots.size(), 0);
    std::string secret;
    std::vector<Token> concat;
    std::size_t checked = 0;
    // Returns false at the first candidate that breaks the property.
    auto check = [&](const Canary& cand) {
      secret.clear();
      format_.append_secret(cand, secret);
      concat.clear();
      for (std::size_t i = 0; i < slots.size(); ++i) {
        const auto& t = symbol_tokens_[i][cand.choices[i]];
        concat.insert(concat.end(), t.begin(), t.end());
      }
      const std::vector<Token> whole = encode_checked(secret, "the secret " + detail::quoted(secret));
      max_secret_tokens_ = std::max(max_secret_tokens_, whole.size());
      ++checked;
      if (whole != concat) {
        tokens_extend_ = false;
        extension_check_ = "the token-extension property fails: secret " + detail::quoted(secret) + " encodes to " +
                           std::to_string(whole.size()) + " token(s) but its slots encode to " +
                           std::to_string(concat.size()) +
                           " token(s) in total (the tokenizer merges across slots); exact exposure falls back to "
                           "the exhaustive walk";
        return false;
      }
      return true;
    };

    if (format_.space_size() <= options.exhaustive_check_limit) {
      checked_exhaustively_ = true;
      do {
        if (!check(c)) return;
      } while (increment(c));
      extension_check_ = "token-extension property checked on all " + std::to_string(checked) + " candidates";
      return;
    }
    checked_exhaustively_ = false;
    // Adjacent slot pairs: every pair of symbols with the other slots at their first symbol.
    for (std::size_t i = 0; i + 1 < slots.size(); ++i) {
      Canary p = c;
      for (std::uint32_t a = 0; a < slots[i].symbols.size(); ++a)
        for (std::uint32_t b = 0; b < slots[i + 1].symbols.size(); ++b) {
          p.choices[i] = a;
          p.choices[i + 1] = b;
          if (!check(p)) return;
        }
    }
    std::mt19937_64 rng(options.seed);
    for (std::size_t s = 0; s < options.sampled_checks; ++s)
      if (!check(format_.generate(rng))) return;
    extension_check_ = "token-extension property checked on all adjacent slot pairs and " + std::to_string(checked) +
                       " candidates in all (|R| = " + std::to_string(format_.space_size()) +
                       " exceeds exhaustive_check_limit; raise it for a complete check)";
  }

  // Encodes prefix + secret for the candidates the options allow (all, or adjacent slot pairs plus samples).
  // When some candidate's full text tokenizes differently from prefix tokens ++ secret tokens, switches to
  // full-text mode (prefix tokens cut to the common token prefix) and returns true.
  bool check_boundary(const CanarySpaceOptions& options) {
    const std::size_t n_slots = format_.slots().size();
    std::size_t common = prefix_tokens_.size(), longest = 0, checked = 0;
    std::string example;
    std::string secret;
    auto visit = [&](const Canary& cand) {
      secret.clear();
      format_.append_secret(cand, secret);
      const std::vector<Token> joined = encode_(format_.prefix() + secret);
      std::vector<Token> expected(prefix_tokens_.begin(), prefix_tokens_.end());
      const std::vector<Token> alone = encode_checked(secret, "the secret " + detail::quoted(secret));
      expected.insert(expected.end(), alone.begin(), alone.end());
      if (joined != expected && example.empty())
        example = detail::quoted(format_.prefix() + secret) + " encodes to " + std::to_string(joined.size()) +
                  " token(s), not the prefix's " + std::to_string(prefix_tokens_.size()) + " + the secret's " +
                  std::to_string(alone.size());
      std::size_t k = 0;
      while (k < common && k < joined.size() && joined[k] == prefix_tokens_[k]) ++k;
      common = k;
      longest = std::max(longest, joined.size());
      ++checked;
    };
    Canary c;
    c.choices.assign(n_slots, 0);
    const bool exhaustive = format_.space_size() <= options.exhaustive_check_limit;
    if (exhaustive) {
      do visit(c);
      while (increment(c));
    } else {
      for (std::size_t i = 0; i + 1 < n_slots; ++i) {
        Canary p = c;
        for (std::uint32_t a = 0; a < format_.slots()[i].symbols.size(); ++a)
          for (std::uint32_t b = 0; b < format_.slots()[i + 1].symbols.size(); ++b) {
            p.choices[i] = a;
            p.choices[i + 1] = b;
            visit(p);
          }
      }
      if (n_slots == 1)
        for (std::uint32_t a = 0; a < format_.slots()[0].symbols.size(); ++a) visit(Canary{{a}});
      std::mt19937_64 rng(options.seed);
      for (std::size_t s = 0; s < options.sampled_checks; ++s) visit(format_.generate(rng));
    }
    if (example.empty()) return false;
    boundary_consistent_ = false;
    full_text_ = true;
    tokens_extend_ = false;
    checked_exhaustively_ = exhaustive;
    prefix_tokens_.resize(common);
    max_secret_tokens_ = longest - common;
    extension_check_ = "the tokenizer merges across the prefix/secret boundary (" + example +
                       "): every candidate is scored by the tokenization of its full text after the " +
                       std::to_string(common) + " prefix tokens all " + std::to_string(checked) +
                       " checked candidates share" + (exhaustive ? "" : " (not every candidate was checked)") +
                       "; exact exposure walks every candidate (no pruning)";
    return true;
  }

  bool increment(Canary& c) const {
    for (std::size_t i = c.choices.size(); i-- > 0;) {
      if (++c.choices[i] < format_.slots()[i].symbols.size()) return true;
      c.choices[i] = 0;
    }
    return false;
  }

  CanaryFormat format_;
  std::function<std::vector<Token>(std::string_view)> encode_;
  std::function<std::string(std::span<const Token>)> decode_;
  std::size_t tokenizer_vocab_ = 0;
  std::vector<Token> prefix_tokens_;
  std::vector<std::vector<std::vector<Token>>> symbol_tokens_;
  std::size_t max_secret_tokens_ = 0;
  bool tokens_extend_ = true;
  bool checked_exhaustively_ = false;
  bool boundary_consistent_ = true;
  bool full_text_ = false;
  std::string extension_check_;
};

// ---- planting canaries in training data ------------------------------------------------------------

/// A token stream with copies of a canary inserted, and where each copy starts (ascending).
struct TokenInsertion {
  std::vector<Token> tokens;
  std::vector<std::size_t> positions;
};

/// Inserts `copies` copies of `canary_tokens` into `stream` at gaps drawn uniformly (with replacement)
/// from the stream.size() + 1 gaps; copies drawn into the same gap are adjacent. positions[k] is the
/// offset of copy k's first token in the result. O(stream + copies·|canary|).
inline TokenInsertion insert_canary(std::span<const Token> stream, std::span<const Token> canary_tokens,
                                    std::size_t copies, std::uint64_t seed) {
  if (canary_tokens.empty()) throw InvalidArgument("insert_canary: the canary has no tokens; encode it first");
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> gaps(copies);
  for (auto& g : gaps) g = static_cast<std::size_t>(detail::uniform_below(rng, stream.size() + 1));
  std::sort(gaps.begin(), gaps.end());
  TokenInsertion out;
  out.tokens.reserve(stream.size() + copies * canary_tokens.size());
  std::size_t next = 0;
  for (std::size_t gap : gaps) {
    out.tokens.insert(out.tokens.end(), stream.begin() + static_cast<std::ptrdiff_t>(next),
                      stream.begin() + static_cast<std::ptrdiff_t>(gap));
    next = gap;
    out.positions.push_back(out.tokens.size());
    out.tokens.insert(out.tokens.end(), canary_tokens.begin(), canary_tokens.end());
  }
  out.tokens.insert(out.tokens.end(), stream.begin() + static_cast<std::ptrdiff_t>(next), stream.end());
  return out;
}

/// A list of documents with copies of a canary document inserted, and the index of each copy (ascending).
template <class Document>
struct DocumentInsertion {
  std::vector<Document> documents;
  std::vector<std::size_t> indices;
};

/// Inserts `copies` copies of `canary` as separate documents at positions drawn uniformly (with
/// replacement) among the documents.size() + 1 gaps of the list. O(documents + copies).
template <class Document>
DocumentInsertion<Document> insert_canary_documents(std::span<const Document> documents, const Document& canary,
                                                    std::size_t copies, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> gaps(copies);
  for (auto& g : gaps) g = static_cast<std::size_t>(detail::uniform_below(rng, documents.size() + 1));
  std::sort(gaps.begin(), gaps.end());
  DocumentInsertion<Document> out;
  out.documents.reserve(documents.size() + copies);
  std::size_t next = 0;
  for (std::size_t gap : gaps) {
    for (; next < gap; ++next) out.documents.push_back(documents[next]);
    out.indices.push_back(out.documents.size());
    out.documents.push_back(canary);
  }
  for (; next < documents.size(); ++next) out.documents.push_back(documents[next]);
  return out;
}

}  // namespace fisher_unlearn
