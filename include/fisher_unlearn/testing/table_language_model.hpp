// A language model given by a table of log-probabilities, for testing exposure and memorisation code
// where the answer must be known exactly: ln p(v | context) = table[min(|context|, P−1)][last token][v]
// (or without the last-token index). One lookup per evaluation; d = P·R·V parameters (R rows per position).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn::testing {

/// What a row of the table is indexed by besides the position |context| (clipped to positions − 1).
enum class TableContext {
  position,               ///< p(v | context) depends on |context| only
  position_and_previous,  ///< and on the last token of the context (a "begin" row when it is empty)
};

/// Satisfies LanguageModel and IncrementalLanguageModel. parameters() is the log-probability table
/// itself, returned verbatim by next_token_log_probs (set_row stores what it is given, so tests can also
/// plant unnormalised or slightly positive values). Not thread-safe: it counts its evaluations.
template <SupportedScalar ScalarType>
class TableLanguageModel {
 public:
  using Scalar = ScalarType;
  /// A token sequence; loss = mean over its tokens of −ln p(token | the tokens before it).
  using Sample = std::vector<Token>;
  struct DecodeState {
    std::size_t length = 0;
    Token last = -1;
  };

  TableLanguageModel(std::size_t vocab_size, std::size_t positions, TableContext context)
      : vocab_(vocab_size), positions_(positions), context_(context) {
    if (vocab_ == 0 || positions_ == 0)
      throw InvalidArgument("TableLanguageModel needs a vocabulary and at least one position");
    rows_per_position_ = context_ == TableContext::position ? 1 : vocab_ + 1;
    table_.assign(positions_ * rows_per_position_ * vocab_, -std::log(static_cast<Scalar>(vocab_)));
  }

  /// Every row set to log-softmax(logits / temperature) with logits ~ N(0, 1), from `seed`.
  static TableLanguageModel random(std::size_t vocab_size, std::size_t positions, TableContext context,
                                   std::uint64_t seed, double temperature = 1.0) {
    TableLanguageModel m(vocab_size, positions, context);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> logits(vocab_size);
    for (std::size_t r = 0; r < m.num_rows(); ++r) {
      for (auto& l : logits) l = normal(rng) / temperature;
      m.set_row_logits(r, logits);
    }
    return m;
  }

  std::size_t vocab_size() const { return vocab_; }
  std::size_t positions() const { return positions_; }
  TableContext context() const { return context_; }
  std::size_t num_rows() const { return positions_ * rows_per_position_; }

  /// The row used after a context of length `length` whose last token is `previous` (−1: empty).
  std::size_t row_index(std::size_t length, Token previous) const {
    const std::size_t p = std::min(length, positions_ - 1);
    if (context_ == TableContext::position) return p;
    const std::size_t prev = previous < 0 ? vocab_ : static_cast<std::size_t>(previous);
    return p * rows_per_position_ + prev;
  }
  /// Row `r` := `log_probs` verbatim.
  void set_row(std::size_t r, std::span<const double> log_probs) {
    check_row_args(r, log_probs.size());
    for (std::size_t v = 0; v < vocab_; ++v) table_[r * vocab_ + v] = static_cast<Scalar>(log_probs[v]);
  }
  /// Row `r` := log-softmax(logits), computed in double.
  void set_row_logits(std::size_t r, std::span<const double> logits) {
    check_row_args(r, logits.size());
    const double mx = *std::max_element(logits.begin(), logits.end());
    double z = 0.0;
    for (double l : logits) z += std::exp(l - mx);
    const double lz = mx + std::log(z);
    for (std::size_t v = 0; v < vocab_; ++v) table_[r * vocab_ + v] = static_cast<Scalar>(logits[v] - lz);
  }
  std::span<const Scalar> row(std::size_t r) const {
    return std::span<const Scalar>(table_.data() + r * vocab_, vocab_);
  }

  // ---- Model ----
  std::size_t num_parameters() const { return table_.size(); }
  std::span<Scalar> parameters() { return table_; }
  std::span<const Scalar> parameters() const { return table_; }
  Scalar loss(const Sample& s) const {
    if (s.empty()) throw InvalidArgument("TableLanguageModel::loss: the sequence is empty");
    double sum = 0.0;
    for (std::size_t j = 0; j < s.size(); ++j) {
      check_token(s[j]);
      sum -= static_cast<double>(table_[row_index(j, j == 0 ? -1 : s[j - 1]) * vocab_ + static_cast<std::size_t>(s[j])]);
    }
    return static_cast<Scalar>(sum / static_cast<double>(s.size()));
  }

  // ---- LanguageModel ----
  void next_token_log_probs(std::span<const Token> context, std::span<Scalar> out) const {
    check_out(out.size());
    for (Token t : context) check_token(t);
    copy_row(row_index(context.size(), context.empty() ? -1 : context.back()), out);
  }

  // ---- IncrementalLanguageModel ----
  DecodeState begin_decode(std::span<const Token> context) const {
    for (Token t : context) check_token(t);
    return DecodeState{context.size(), context.empty() ? -1 : context.back()};
  }
  void advance(DecodeState& state, Token token) const {
    check_token(token);
    ++state.length;
    state.last = token;
  }
  void log_probs(const DecodeState& state, std::span<Scalar> out) const {
    check_out(out.size());
    copy_row(row_index(state.length, state.last), out);
  }

  /// next_token_log_probs and log_probs calls since construction or the last reset.
  std::uint64_t evaluations() const { return evaluations_; }
  void reset_evaluations() { evaluations_ = 0; }

 private:
  void copy_row(std::size_t r, std::span<Scalar> out) const {
    std::copy_n(table_.data() + r * vocab_, vocab_, out.data());
    ++evaluations_;
  }
  void check_token(Token t) const {
    if (t < 0 || static_cast<std::size_t>(t) >= vocab_)
      throw InvalidArgument("TableLanguageModel: token " + std::to_string(t) + " is outside the vocabulary of " +
                            std::to_string(vocab_));
  }
  void check_out(std::size_t n) const {
    if (n != vocab_)
      throw InvalidArgument("TableLanguageModel: output has size " + std::to_string(n) + ", expected vocab_size() = " +
                            std::to_string(vocab_));
  }
  void check_row_args(std::size_t r, std::size_t n) const {
    if (r >= num_rows()) throw InvalidArgument("TableLanguageModel: row " + std::to_string(r) + " does not exist");
    if (n != vocab_) throw InvalidArgument("TableLanguageModel: a row needs vocab_size() values");
  }

  std::size_t vocab_;
  std::size_t positions_;
  TableContext context_;
  std::size_t rows_per_position_ = 1;
  std::vector<Scalar> table_;
  mutable std::uint64_t evaluations_ = 0;
};

static_assert(IncrementalLanguageModel<TableLanguageModel<double>>);
static_assert(IncrementalLanguageModel<TableLanguageModel<float>>);

}  // namespace fisher_unlearn::testing
