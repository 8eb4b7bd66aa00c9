// Measurements of one memorised record (prefix tokens, then a continuation) on any LanguageModel:
//   ℓ(c | prefix) = Σ_j min(0, ln p(c_j | prefix, c_<j))  (nats, in double; exposure.hpp's score),
//   greedy extraction: argmax decoding of |c| tokens from the prefix equals c (Carlini et al. 2023),
//   likelihood rank of c among candidates: 1 + #{strictly more likely} (+ ties/2 for the mid-rank).
// Cost in model evaluations (one = one next-token distribution): greedy |c|; a likelihood |c|;
// a rank over N candidates ≤ Σ|candidate| (candidates sharing leading tokens share their evaluations).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/membership.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

// ================================================================================================
// Definitions (docs/exposure.md, "Measuring a memorised record").
//
//  * A record is (prefix, continuation), both token sequences, tokenised separately (as CanarySpace
//    does for a canary's prefix and secret). The prefix must be non-empty: it is what the model
//    conditions on (prepend BOS yourself where the model wants one).
//  * Score: ℓ = Σ_j min(0, ln p(c_j | prefix, c_<j)) in double, in token order; positive values (a
//    rounding artefact of a log-softmax) are clamped at 0, exactly as exposure.hpp scores candidates.
//    NaN or +Inf from the model throws NonFiniteError.
//  * Greedy decoding: at each step the token of largest log-probability, the lowest token id on ties
//    (as extract_greedy in membership.hpp), fed back as the next input (free-running, not teacher-forced).
//    extracted ⇔ the |c| greedy tokens equal c. tokens_matched counts positions i where greedy token i
//    equals c_i; leading_tokens_matched those before the first mismatch.
//  * Rank among candidates: R = {c} ∪ candidates, with candidates identical to c dropped (so c is
//    counted once). rank = 1 + #{r ∈ R, r ≠ c : ℓ(r) > ℓ(c)}, ties = #{r ≠ c : ℓ(r) = ℓ(c)} (exact
//    comparison of the doubles), mid_rank = rank + ties/2, exposure = log₂|R| − log₂ mid_rank.
//    Candidates may have different lengths: ℓ is the probability of the whole string, not per token.
//  * Determinism: every score is computed along one decoding path per candidate; a model that returns
//    the same log-probabilities for the same tokens (all models of this library at fixed threads) gives
//    bitwise reproducible ranks.
// ================================================================================================

/// The likelihood of a continuation given a prefix.
struct ContinuationLikelihood {
  double log_prob = 0.0;       ///< ℓ = ln P(continuation | prefix), nats (≤ 0)
  std::size_t tokens = 0;      ///< |continuation|
  double mean_nll = 0.0;       ///< −ℓ / tokens: mean negative log-likelihood per token, nats
  double log_perplexity_bits = 0.0;  ///< −ℓ / ln 2: exposure's log-perplexity of the whole continuation
  std::uint64_t evaluations = 0;
};

struct GreedyExtractionOptions {
  /// Stop decoding at the first token that differs from the target (enough to decide `extracted`, as in
  /// an extraction-rate scan); then `continuation` is shorter and tokens_matched = leading_tokens_matched.
  bool stop_at_first_mismatch = false;
};

struct GreedyExtractionResult {
  bool extracted = false;              ///< the greedy continuation equals the target exactly
  std::size_t tokens_matched = 0;      ///< positions i with greedy token i == target[i]
  std::size_t leading_tokens_matched = 0;  ///< matches before the first mismatch
  std::size_t length = 0;              ///< |target|
  std::vector<Token> continuation;     ///< the greedy tokens (|target| of them unless stopped early)
  std::uint64_t evaluations = 0;
};

struct ContinuationRank {
  double log_prob = 0.0;            ///< ℓ of the record's continuation (nats)
  std::uint64_t rank = 0;           ///< 1 + #candidates strictly more likely
  std::uint64_t ties = 0;           ///< candidates exactly as likely
  double mid_rank = 0.0;            ///< rank + ties/2
  std::uint64_t set_size = 0;       ///< |R|: the record plus the distinct-from-it candidates
  std::uint64_t duplicates_dropped = 0;  ///< candidates equal to the record's continuation
  double exposure_bits = 0.0;       ///< log₂|R| − log₂ mid_rank ∈ [0, log₂|R|]
  double percentile = 0.0;          ///< (mid_rank − ½)/|R|: 0 = most likely of all, ½ = chance
  /// ℓ of every candidate in the order given (the record's own ℓ for a dropped duplicate).
  std::vector<double> candidate_log_probs;
  std::uint64_t evaluations = 0;
};

namespace detail {

template <LanguageModel M>
void require_record(const M& model, std::span<const Token> prefix, std::span<const Token> continuation,
                    const std::string& who) {
  if (prefix.empty())
    throw InvalidArgument(who + ": the prefix is empty; the model needs at least one token to condition on "
                                "(prepend the BOS token if the model has one)");
  if (continuation.empty()) throw InvalidArgument(who + ": the continuation (the record's secret part) is empty");
  const std::size_t vocab = model.vocab_size();
  for (std::span<const Token> part : {prefix, continuation})
    for (Token t : part)
      if (t < 0 || static_cast<std::size_t>(t) >= vocab)
        throw InvalidArgument(who + ": token " + std::to_string(t) + " is outside the model's vocabulary of " +
                              std::to_string(vocab) + "; use the tokenizer the model was trained with");
}

/// argmax over a row, the lowest index on ties; NaN/+Inf throws NonFiniteError.
template <class Scalar>
Token greedy_token(const Scalar* row, std::size_t vocab) {
  std::size_t best = 0;
  for (std::size_t v = 0; v < vocab; ++v) {
    if (std::isnan(row[v]) || row[v] == std::numeric_limits<Scalar>::infinity())
      throw NonFiniteError("the language model returned a NaN or +Inf log-probability (token " + std::to_string(v) +
                           "); check its parameters for NaN/Inf");
    if (row[v] > row[best]) best = v;
  }
  return static_cast<Token>(best);
}

}  // namespace detail

/// ℓ = ln P(continuation | prefix) and the per-token mean NLL. |continuation| evaluations.
/// Throws InvalidArgument on an empty prefix/continuation or a token outside the vocabulary,
/// NonFiniteError when the model returns NaN/+Inf.
template <LanguageModel M>
ContinuationLikelihood continuation_likelihood(const M& model, std::span<const Token> prefix,
                                               std::span<const Token> continuation) {
  detail::require_record(model, prefix, continuation, "continuation_likelihood");
  detail::CandidateScorer<M> scorer(model, prefix, continuation.size());
  scorer.set_tokens(continuation);
  ContinuationLikelihood r;
  r.log_prob = scorer.log_prob(continuation.size());
  r.tokens = continuation.size();
  r.mean_nll = -r.log_prob / static_cast<double>(r.tokens);
  r.log_perplexity_bits = -r.log_prob / std::numbers::ln2;
  r.evaluations = scorer.evaluations();
  return r;
}

/// Greedy decoding of |target| tokens from `prefix`, compared with `target`. |target| evaluations
/// (fewer when stopped at the first mismatch). Throws as continuation_likelihood.
template <LanguageModel M>
GreedyExtractionResult greedy_extraction(const M& model, std::span<const Token> prefix, std::span<const Token> target,
                                         const GreedyExtractionOptions& options = {}) {
  detail::require_record(model, prefix, target, "greedy_extraction");
  detail::CandidateScorer<M> scorer(model, prefix, target.size());
  GreedyExtractionResult r;
  r.length = target.size();
  bool leading = true;
  for (std::size_t j = 0; j < target.size(); ++j) {
    const Token best = detail::greedy_token(scorer.row(j), scorer.vocab_size());
    r.continuation.push_back(best);
    const bool match = best == target[j];
    if (match) ++r.tokens_matched;
    leading = leading && match;
    if (leading) ++r.leading_tokens_matched;
    if (!match && options.stop_at_first_mismatch) break;
    if (j + 1 < target.size()) scorer.set_token(j, best);
  }
  r.extracted = r.leading_tokens_matched == r.length;
  r.evaluations = scorer.evaluations();
  return r;
}

/// The greedy continuation of `length` tokens (lowest token id on ties).
template <LanguageModel M>
std::vector<Token> greedy_decode(const M& model, std::span<const Token> prefix, std::size_t length) {
  if (length == 0) return {};
  const std::vector<Token> dummy(length, 0);
  return greedy_extraction(model, prefix, std::span<const Token>(dummy)).continuation;
}

/// The rank of the record's continuation among `candidates` by likelihood given the prefix (see the
/// definitions above). Candidates are scored in lexicographic token order so that those sharing leading
/// tokens share evaluations. Throws InvalidArgument on an empty prefix, continuation or candidate, or a
/// token outside the vocabulary; NonFiniteError on NaN/+Inf from the model. With no candidates (or only
/// duplicates) |R| = 1 and the rank is 1.
template <LanguageModel M>
ContinuationRank continuation_rank(const M& model, std::span<const Token> prefix, std::span<const Token> continuation,
                                   std::span<const std::vector<Token>> candidates) {
  detail::require_record(model, prefix, continuation, "continuation_rank");
  std::size_t longest = continuation.size();
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].empty())
      throw InvalidArgument("continuation_rank: candidate " + std::to_string(i) + " is empty");
    detail::require_record(model, prefix, std::span<const Token>(candidates[i]), "continuation_rank (candidate " +
                                                                                      std::to_string(i) + ")");
    longest = std::max(longest, candidates[i].size());
  }
  detail::CandidateScorer<M> scorer(model, prefix, longest);
  ContinuationRank r;
  scorer.set_tokens(continuation);
  r.log_prob = scorer.log_prob(continuation.size());

  std::vector<std::size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::lexicographical_compare(candidates[a].begin(), candidates[a].end(), candidates[b].begin(),
                                        candidates[b].end());
  });
  r.candidate_log_probs.assign(candidates.size(), r.log_prob);
  std::uint64_t above = 0;
  for (std::size_t i : order) {
    const std::vector<Token>& c = candidates[i];
    if (std::equal(c.begin(), c.end(), continuation.begin(), continuation.end())) {
      ++r.duplicates_dropped;
      continue;
    }
    scorer.set_tokens(c);
    const double score = scorer.log_prob(c.size());
    r.candidate_log_probs[i] = score;
    if (score > r.log_prob)
      ++above;
    else if (score == r.log_prob)
      ++r.ties;
  }
  r.set_size = 1 + candidates.size() - r.duplicates_dropped;
  r.rank = 1 + above;
  r.mid_rank = static_cast<double>(r.rank) + 0.5 * static_cast<double>(r.ties);
  r.exposure_bits = std::log2(static_cast<double>(r.set_size)) - std::log2(r.mid_rank);
  r.percentile = (r.mid_rank - 0.5) / static_cast<double>(r.set_size);
  r.evaluations = scorer.evaluations();
  return r;
}

/// Extractable memorisation of a passage (Carlini et al. 2023, "Quantifying memorization"): for every
/// offset o = 0, stride, 2·stride, … with o + prefix_length + suffix_length ≤ |passage|, does greedy
/// decoding from passage[o, o+prefix_length) reproduce the next suffix_length tokens exactly?
struct ExtractionRate {
  std::size_t offsets = 0;     ///< windows tested
  std::size_t extracted = 0;   ///< windows reproduced exactly
  double rate = 0.0;           ///< extracted / offsets
  std::vector<std::size_t> extracted_offsets;
  double mean_leading_tokens_matched = 0.0;  ///< over the windows
  std::uint64_t evaluations = 0;
};

/// Scans the windows of `passage` (see ExtractionRate); each window decodes until its first mismatch.
/// Throws InvalidArgument when prefix_length, suffix_length or stride is 0 or no window fits.
template <LanguageModel M>
ExtractionRate extraction_rate(const M& model, std::span<const Token> passage, std::size_t prefix_length,
                               std::size_t suffix_length, std::size_t stride = 1) {
  if (prefix_length == 0 || suffix_length == 0 || stride == 0)
    throw InvalidArgument("extraction_rate: prefix_length, suffix_length and stride must be at least 1 (Carlini et "
                          "al. 2023 use 32 or 50 prefix tokens and 50 suffix tokens)");
  if (passage.size() < prefix_length + suffix_length)
    throw InvalidArgument("extraction_rate: the passage has " + std::to_string(passage.size()) +
                          " tokens, fewer than prefix_length + suffix_length = " +
                          std::to_string(prefix_length + suffix_length));
  ExtractionRate r;
  double leading = 0.0;
  GreedyExtractionOptions options;
  options.stop_at_first_mismatch = true;
  for (std::size_t o = 0; o + prefix_length + suffix_length <= passage.size(); o += stride) {
    const auto e = greedy_extraction(model, passage.subspan(o, prefix_length),
                                     passage.subspan(o + prefix_length, suffix_length), options);
    ++r.offsets;
    leading += static_cast<double>(e.leading_tokens_matched);
    r.evaluations += e.evaluations;
    if (e.extracted) {
      ++r.extracted;
      r.extracted_offsets.push_back(o);
    }
  }
  r.rate = static_cast<double>(r.extracted) / static_cast<double>(r.offsets);
  r.mean_leading_tokens_matched = leading / static_cast<double>(r.offsets);
  return r;
}

/// A record's membership score for the loss-threshold attack: its mean NLL per token (nats) of
/// tokens[first_scored..] given what precedes each (lower = more member-like). first_scored ≥ 1
/// (the first token has no context). |tokens| − first_scored evaluations.
template <LanguageModel M>
double record_mean_nll(const M& model, std::span<const Token> tokens, std::size_t first_scored = 1) {
  if (first_scored == 0 || first_scored >= tokens.size())
    throw InvalidArgument("record_mean_nll: need 1 <= first_scored < |tokens| (the record has " +
                          std::to_string(tokens.size()) + " tokens, first_scored = " + std::to_string(first_scored) +
                          "); a record needs at least two tokens");
  return continuation_likelihood(model, tokens.first(first_scored), tokens.subspan(first_scored)).mean_nll;
}

/// The loss-threshold membership attack over token sequences (membership.hpp's exact AUC of
/// record_mean_nll): 1 = every member has lower NLL than every non-member, 0.5 = chance.
template <LanguageModel M>
MembershipResult record_membership_auc(const M& model, std::span<const std::vector<Token>> members,
                                       std::span<const std::vector<Token>> nonmembers, std::size_t first_scored = 1) {
  std::vector<double> a, b;
  a.reserve(members.size());
  b.reserve(nonmembers.size());
  for (const auto& s : members) a.push_back(record_mean_nll(model, std::span<const Token>(s), first_scored));
  for (const auto& s : nonmembers) b.push_back(record_mean_nll(model, std::span<const Token>(s), first_scored));
  return loss_attack_auc(a, b);
}

}  // namespace fisher_unlearn
