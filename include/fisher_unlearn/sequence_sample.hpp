// A token sequence with optional per-target weights and soft targets: the sample of sequence models.
//   loss(s) = Σₜ wₜ ℓₜ / Σₜ wₜ,  ℓₜ = −Σ_v qₜ(v) ln p(v | tok≤ₜ)  (qₜ = one-hot of tokₜ₊₁ unless a soft target is set).
// Validation is O(n + Σ|support|²) per call; nothing is allocated.
#pragma once

#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

/// A target distribution q over the vocabulary with a small support: q(tokens[k]) = probabilities[k]
/// (probabilities empty = uniform over tokens), q = 0 elsewhere. Tokens must be distinct.
struct SoftTarget {
  std::vector<Token> tokens{};
  std::vector<double> probabilities{};

  /// Uniform over `tokens` (what the bounded forget objective uses: a slot's alphabet minus the secret).
  static SoftTarget uniform(std::vector<Token> tokens) { return SoftTarget{std::move(tokens), {}}; }

  std::size_t size() const { return tokens.size(); }
  /// q(tokens[k]).
  double probability(std::size_t k) const {
    return probabilities.empty() ? 1.0 / static_cast<double>(tokens.size()) : probabilities[k];
  }
};

/// What a sequence sample is trained towards at each of its n−1 target positions (position t predicts
/// token t+1). Every member may be left empty; an empty SequenceTargets is the plain next-token loss.
///   weights:     wₜ >= 0, finite, not all 0 (empty = all ones). loss = Σₜ wₜℓₜ / Σₜ wₜ, so a 0/1 mask
///                averages the loss over the masked positions only.
///   soft_target: per position −1 (the observed next token) or an index k into soft_targets: the term
///                is then the cross-entropy towards soft_targets[k] (empty = all observed).
///   soft_targets: the table of distributions the positions refer to (shared by positions).
struct SequenceTargets {
  std::vector<double> weights{};
  std::vector<std::int32_t> soft_target{};
  std::vector<SoftTarget> soft_targets{};

  static constexpr std::int32_t kObserved = -1;

  /// The plain next-token loss (no weights, no soft targets): the fast path of every model.
  bool plain() const { return weights.empty() && soft_target.empty(); }
  double weight(std::size_t t) const { return weights.empty() ? 1.0 : weights[t]; }
  /// The soft target of position t, or nullptr for the observed token.
  const SoftTarget* soft(std::size_t t) const {
    if (soft_target.empty() || soft_target[t] < 0) return nullptr;
    return &soft_targets[static_cast<std::size_t>(soft_target[t])];
  }
};

/// One training sequence: tokens[0..n−2] are the inputs, tokens[1..n−1] the observed targets, and
/// `targets` optionally reweights positions or replaces their target by a distribution.
/// Aggregate: SequenceSample{tokens} is the plain next-token sample.
struct SequenceSample {
  std::vector<Token> tokens{};
  SequenceTargets targets{};
};

namespace detail {

inline void validate_soft_targets(std::span<const std::int32_t> soft_target, std::span<const SoftTarget> table,
                                  std::size_t positions, std::size_t vocab_size, const char* who);

/// Throws InvalidArgument unless `targets` fits a sequence of `num_tokens` tokens over `vocab_size`
/// tokens; returns Σₜ wₜ (n−1 when unweighted). `who` names the caller in the message.
inline double validate_sequence_targets(const SequenceTargets& targets, std::size_t num_tokens, std::size_t vocab_size,
                                        const char* who) {
  const std::size_t positions = num_tokens - 1;
  auto fail = [who](const std::string& what) { throw InvalidArgument(std::string(who) + ": " + what); };
  double total = static_cast<double>(positions);
  if (!targets.weights.empty()) {
    if (targets.weights.size() != positions)
      fail("the sample has " + std::to_string(targets.weights.size()) + " target weights but " +
           std::to_string(positions) + " target positions (one weight per token after the first, or none)");
    total = 0.0;
    for (std::size_t t = 0; t < positions; ++t) {
      const double w = targets.weights[t];
      if (!std::isfinite(w) || w < 0.0)
        fail("target weight " + std::to_string(t) + " is " + std::to_string(w) +
             "; weights must be finite and >= 0 (0 leaves a position out)");
      total += w;
    }
    if (!(total > 0.0) || !std::isfinite(total))
      fail("every target weight is 0 (or their sum overflows): the loss would be 0/0; weight at least one position");
  }
  validate_soft_targets(targets.soft_target, targets.soft_targets, positions, vocab_size, who);
  return total;
}

/// Throws InvalidArgument unless `soft_target` (empty, or one entry per target position: −1 or an index into
/// `table`) and `table` (distributions over [0, vocab_size)) are well formed. `who` names the caller.
inline void validate_soft_targets(std::span<const std::int32_t> soft_target, std::span<const SoftTarget> table,
                                  std::size_t positions, std::size_t vocab_size, const char* who) {
  auto fail = [who](const std::string& what) { throw InvalidArgument(std::string(who) + ": " + what); };
  if (!soft_target.empty()) {
    if (soft_target.size() != positions)
      fail("the sample has " + std::to_string(soft_target.size()) + " soft-target indices but " +
           std::to_string(positions) + " target positions (one per token after the first, or none)");
    for (std::size_t t = 0; t < positions; ++t) {
      const std::int32_t k = soft_target[t];
      if (k < SequenceTargets::kObserved || (k >= 0 && static_cast<std::size_t>(k) >= table.size()))
        fail("soft-target index " + std::to_string(k) + " at position " + std::to_string(t) +
             " is neither -1 (the observed token) nor an entry of the table of " + std::to_string(table.size()) +
             " soft targets");
    }
  }
  for (std::size_t k = 0; k < table.size(); ++k) {
    const SoftTarget& q = table[k];
    const std::string name = "soft target " + std::to_string(k);
    if (q.tokens.empty()) fail(name + " has no tokens; give the distribution's support");
    if (!q.probabilities.empty() && q.probabilities.size() != q.tokens.size())
      fail(name + " has " + std::to_string(q.tokens.size()) + " tokens but " + std::to_string(q.probabilities.size()) +
           " probabilities (give one per token, or none for uniform)");
    double sum = 0.0;
    for (std::size_t i = 0; i < q.tokens.size(); ++i) {
      const Token v = q.tokens[i];
      if (v < 0 || static_cast<std::size_t>(v) >= vocab_size)
        fail(name + " puts mass on token " + std::to_string(v) + ", outside the vocabulary [0, " +
             std::to_string(vocab_size) + ")");
      for (std::size_t j = 0; j < i; ++j)
        if (q.tokens[j] == v) fail(name + " lists token " + std::to_string(v) + " twice; list each token once");
      if (!q.probabilities.empty()) {
        const double p = q.probabilities[i];
        if (!std::isfinite(p) || p < 0.0)
          fail(name + " has probability " + std::to_string(p) + " for token " + std::to_string(v) +
               "; probabilities must be finite and >= 0");
        sum += p;
      }
    }
    if (!q.probabilities.empty() && std::abs(sum - 1.0) > 1e-6)
      fail(name + "'s probabilities sum to " + ::fisher_unlearn::detail::format_number(sum) + ", not 1; normalise them");
  }
}

}  // namespace detail

}  // namespace fisher_unlearn
