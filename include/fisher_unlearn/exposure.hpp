// Exposure of a canary (Carlini et al. 2019, "The Secret Sharer"), exact and extrapolated:
//   log-perplexity(c) = −log₂ P(secret tokens of c | prefix tokens),  rank(c) = 1 + #{r ∈ R : P(r) > P(c)},
//   exposure(c) = log₂|R| − log₂ rank(c).  Cost in model evaluations (one = one next-token distribution):
//   exhaustive = internal nodes of the candidates' token tree (≈ |R|/|A_last| for one-token symbols);
//   pruned = only the nodes more likely than the canary; extrapolated ≈ N·(L − 1) shared down a sorted tree.
#pragma once

#include "fisher_unlearn/canary.hpp"
#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/detail/skew_normal.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/progress.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

namespace fisher_unlearn {

// ================================================================================================
// Definitions (one for all three estimators; docs/exposure.md has the long form).
//
//  * Scores. ℓ(c) = Σ_j min(0, log p(s_j | prefix, s_<j)) accumulated in double, in token order, where
//    s = secret tokens of c (CanarySpace: prefix and secret are encoded separately). Log-probabilities
//    are clamped at 0: a positive value can only be a rounding artefact of a log-softmax, and clamping
//    makes ℓ non-increasing along every path, which the pruned search relies on exactly. NaN or +Inf
//    from the model throws NonFiniteError. log-perplexity(c) = −ℓ(c)/ln 2 bits.
//  * Rank. rank(c) = 1 + #{r ∈ R, r ≠ c : ℓ(r) > ℓ(c)} with ">" the exact comparison of the doubles
//    above (the optimistic rank: ties do not raise it; they are reported in `ties`). Two scores that
//    are equal in exact arithmetic but round differently are ordered by their rounded values.
//  * Mid-rank. mid_rank(c) = rank(c) + ties/2: the mean rank of c when ties are broken at random, so
//    that a model giving every candidate the same probability reads as chance (mid-rank (|R|+1)/2,
//    exposure ≈ 1 bit), not as maximal exposure.
//  * Exposure. log₂|R| − log₂ mid_rank, in [0, log₂|R|]. The exact estimators report the interval over
//    every tie-breaking as [exposure_low, exposure_high] = log₂|R| − log₂ of [rank + ties, rank]; it is a
//    single point when there are no ties.
//  * Extrapolated exposure. min(log₂|R|, −log₂ F(log-perplexity(c))) where F is the CDF of a skew-normal
//    fitted by maximum likelihood to the log-perplexities of N distinct uniform random candidates (drawn
//    without replacement; all of R when |R| <= N): F(x) estimates the fraction of R at least as likely as
//    x, i.e. rank/|R|. −log₂ F exceeds log₂|R| for a canary far more likely than the fit predicts; no rank
//    can, so the value is capped there and `capped` says so. The bootstrap interval is APPROXIMATE and
//    BIASED: it measures the resampling noise of the fit, not the misfit of a skew-normal in the tail, and
//    missed the exact value 5 of 5 times at 12.7 and at 18.9 bits (issue 15). ExtrapolatedExposure::measure
//    therefore counts exactly whenever |R| <= ExtrapolationOptions::exact_up_to (docs/exposure.md).
//
// Determinism: a model should return the same log-probabilities for the same tokens whatever the path
// of calls that produced the state (begin_decode/advance copies); both exact estimators then see
// bitwise identical scores and agree exactly. Noise in the last bits is tolerated (WalkCounter); more
// than √ε(Scalar) relative throws NumericalError.
// ================================================================================================

struct ExposureResult {
  static constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

  std::string method;                   ///< "exhaustive", "pruned", "extrapolated"
  bool exact = false;                   ///< rank is exact (exhaustive, pruned)
  double exposure_bits = not_measured;  ///< log₂|R| − log₂ mid_rank, or min(log₂|R|, −log₂ F(canary)) extrapolated
  /// How [exposure_low, exposure_high] was obtained: "tie-breaking bounds (exact)" for the exact methods,
  /// "bootstrap percentile (approximate, biased)" for the extrapolation (see interval_approximate).
  std::string interval;
  /// True when the interval is NOT a guaranteed bound: the extrapolation's bootstrap interval reflects the
  /// resampling noise of the fit only, not the skew-normal's misfit in the tail, and has been measured
  /// to miss the exact exposure systematically (5 of 5 at 12.7 and 18.9 bits). Read it as a rough spread.
  bool interval_approximate = false;
  /// Extrapolated: −log₂ F(canary) exceeded log₂|R| (impossible for a rank) and was capped there; the
  /// canary is more likely than the fitted distribution predicts, so only "near the maximum" is known.
  bool capped = false;
  std::uint64_t rank = 0;               ///< exact rank (ties not counted); extrapolated: the sample rank, rounded
  std::uint64_t ties = 0;               ///< other candidates with exactly the canary's score (exact methods)
  double mid_rank = not_measured;       ///< exact: rank + ties/2, the rank exposure_bits is computed from
  std::uint64_t space_size = 0;         ///< |R|
  double log2_space_size = not_measured;
  double log_perplexity_bits = not_measured;  ///< −log₂ P(secret | prefix) of the canary
  double exposure_low = not_measured;   ///< extrapolated: bootstrap interval; exact: ties ranked last/first
  double exposure_high = not_measured;
  double sample_rank = not_measured;    ///< extrapolated: rank interpolated among the samples (see ExtrapolationFit)
  double sample_rank_exposure_bits = not_measured;  ///< log₂|R| − log₂ sample_rank
  detail::SkewNormal fitted;            ///< extrapolated: the fit, in bits of log-perplexity
  std::uint64_t candidates_scored = 0;  ///< full candidates whose score was computed
  std::uint64_t evaluations = 0;        ///< model calls producing a next-token distribution
  bool fell_back_to_exhaustive = false; ///< pruned search impossible for this tokenizer (see notes)
  double seconds = 0.0;
  std::string notes;
};

inline std::ostream& operator<<(std::ostream& os, const ExposureResult& r) {
  os << r.method << ": exposure " << r.exposure_bits << " bits";
  if (r.exact)
    os << ", rank " << r.rank << " of " << r.space_size << " (" << r.ties << " tie(s))";
  else
    os << " [" << r.exposure_low << ", " << r.exposure_high << "], sample rank " << r.sample_rank;
  os << ", log-perplexity " << r.log_perplexity_bits << " bits, " << r.evaluations << " evaluations, "
     << r.candidates_scored << " candidates scored, " << r.seconds << " s";
  if (!r.notes.empty()) os << " (" << r.notes << ")";
  return os;
}

/// log₂|R| − log₂ rank.
inline double exposure_from_rank(std::uint64_t rank, std::uint64_t space_size) {
  if (rank == 0 || rank > space_size)
    throw InvalidArgument("rank must lie in [1, |R|]; got rank " + std::to_string(rank) + " for |R| = " +
                          std::to_string(space_size));
  return std::log2(static_cast<double>(space_size)) - std::log2(static_cast<double>(rank));
}

namespace detail {

template <class M>
struct DecodeStateOf {
  using type = char;  // unused: the model has no incremental decoding
};
template <IncrementalLanguageModel M>
struct DecodeStateOf<M> {
  using type = typename M::DecodeState;
};

/// Scores token sequences that follow a fixed prefix, keeping for every depth j the model state after
/// prefix + tokens[0..j), its next-token distribution ("row" j) and the partial score psum[j]. Writing a
/// token invalidates only deeper rows, so enumerating candidates in lexicographic order evaluates each
/// node of their token tree once. Buffers are allocated once; a node costs one state copy and one call.
template <LanguageModel M>
class CandidateScorer {
 public:
  using Scalar = typename M::Scalar;

  CandidateScorer(const M& model, std::span<const Token> prefix, std::size_t capacity)
      : model_(model), vocab_(model.vocab_size()), prefix_len_(prefix.size()) {
    if (vocab_ == 0) throw InvalidArgument("the language model has vocab_size() == 0");
    for (Token t : prefix) check_token(t, "prefix");
    grow(std::max<std::size_t>(capacity, 1));
    if constexpr (IncrementalLanguageModel<M>) {
      states_.push_back(model_.begin_decode(prefix));
      model_.log_probs(states_[0], row_span(0));
    } else {
      std::copy(prefix.begin(), prefix.end(), context_.begin());
      model_.next_token_log_probs(std::span<const Token>(context_.data(), prefix_len_), row_span(0));
    }
    ++evaluations_;
    check_row(0);
    rows_ = 1;
    sums_ = 1;
    psum_[0] = 0.0;
  }

  std::size_t vocab_size() const { return vocab_; }
  std::uint64_t evaluations() const { return evaluations_; }

  /// Sets token `pos`; deeper rows and sums become stale only if the token changed.
  void set_token(std::size_t pos, Token t) {
    if (pos >= tokens_.size()) grow(2 * (pos + 1));
    if (pos < valid_tokens_ && tokens_[pos] == t) return;
    check_token(t, "candidate");
    tokens_[pos] = t;
    if constexpr (!IncrementalLanguageModel<M>) context_[prefix_len_ + pos] = t;
    valid_tokens_ = pos + 1;  // tokens beyond pos are unknown until written again
    rows_ = std::min(rows_, pos + 1);
    sums_ = std::min(sums_, pos + 1);
  }
  void set_tokens(std::span<const Token> tokens, std::size_t from = 0) {
    for (std::size_t j = 0; j < tokens.size(); ++j) set_token(from + j, tokens[j]);
  }

  /// ℓ of tokens[0..len): Σ_{j<len} min(0, row_j[tokens[j]]) accumulated in order.
  double log_prob(std::size_t len) {
    while (sums_ <= len) {
      const std::size_t j = sums_ - 1;
      psum_[j + 1] = psum_[j] + clamped(row(j)[tokens_[j]]);
      ++sums_;
    }
    return psum_[len];
  }

  /// The next-token distribution after prefix + tokens[0..j).
  const Scalar* row(std::size_t j) {
    while (rows_ <= j) compute_row(rows_++);
    return rows_data_.data() + j * vocab_;
  }

  static double clamped(Scalar lp) {
    const double v = static_cast<double>(lp);
    return v > 0.0 ? 0.0 : v;
  }

  void check_token(Token t, const char* what) const {
    if (t < 0 || static_cast<std::size_t>(t) >= vocab_)
      throw InvalidArgument(std::string("a ") + what + " token (" + std::to_string(t) +
                            ") is outside the model's vocabulary of " + std::to_string(vocab_) +
                            "; use the tokenizer the model was trained with");
  }

 private:
  std::span<Scalar> row_span(std::size_t j) { return std::span<Scalar>(rows_data_.data() + j * vocab_, vocab_); }

  void grow(std::size_t capacity) {
    if (capacity <= tokens_.size()) return;
    tokens_.resize(capacity);
    psum_.resize(capacity + 1);
    rows_data_.resize((capacity + 1) * vocab_);
    if constexpr (!IncrementalLanguageModel<M>) context_.resize(prefix_len_ + capacity);
  }

  void compute_row(std::size_t q) {  // q >= 1: needs tokens_[q - 1] and row q - 1's state
    if constexpr (IncrementalLanguageModel<M>) {
      if (states_.size() <= q)
        states_.push_back(states_[q - 1]);
      else
        states_[q] = states_[q - 1];  // copy-assignment reuses the buffers of the state held there
      model_.advance(states_[q], tokens_[q - 1]);
      model_.log_probs(states_[q], row_span(q));
    } else {
      model_.next_token_log_probs(std::span<const Token>(context_.data(), prefix_len_ + q), row_span(q));
    }
    ++evaluations_;
    check_row(q);
  }

  void check_row(std::size_t j) const {
    const Scalar* r = rows_data_.data() + j * vocab_;
    for (std::size_t v = 0; v < vocab_; ++v)
      if (std::isnan(r[v]) || r[v] == std::numeric_limits<Scalar>::infinity())
        throw NonFiniteError("the language model returned a NaN or +Inf log-probability (token " + std::to_string(v) +
                             "); check its parameters for NaN/Inf");
  }

  const M& model_;
  std::size_t vocab_;
  std::size_t prefix_len_;
  std::vector<Token> tokens_;
  std::vector<Token> context_;  // prefix + tokens, for models without incremental decoding
  std::vector<double> psum_;
  std::vector<Scalar> rows_data_;
  std::vector<typename DecodeStateOf<M>::type> states_;  // states_[j]: after prefix + tokens[0..j)
  std::size_t valid_tokens_ = 0;
  std::size_t rows_ = 0;
  std::size_t sums_ = 0;
  std::uint64_t evaluations_ = 0;
};

/// Counts candidates against the canary's score. The walk's thresholds come from the canary scored
/// first (T₀) widened by a tolerance: scores above T₀ + tol are counted, scores in [T₀ − tol, T₀ + tol]
/// kept, lower ones (and pruned subtrees) dropped. The rank is then taken against the canary's score
/// as met during the walk (T₁), so it is consistent with the scores the walk computed even for a model
/// whose last bits depend on the call path (alignment-dependent SIMD sums); for a deterministic model
/// T₁ == T₀ and the tolerance only makes pruning a little more conservative.
struct WalkCounter {
  double lo = 0.0, hi = 0.0;  // the band [T₀ − tol, T₀ + tol]
  std::uint64_t above = 0;    // scores > hi
  std::uint64_t scored = 0;
  std::vector<double> band;
  bool canary_seen = false;
  double canary_score = 0.0;
  const Progress* progress = nullptr;  // updated every 4096 candidates scored, against |R|
  std::uint64_t total = 0;

  void add(double score) {
    ++scored;
    if (progress != nullptr && (scored & 4095) == 0) progress->update("exposure: exact walk", scored, total);
    if (score > hi)
      ++above;
    else if (score >= lo)
      band.push_back(score);
  }
  void add(double score, bool is_canary) {
    add(score);
    if (is_canary) {
      canary_seen = true;
      canary_score = score;
    }
  }
};

/// Depth-first walk over the secret slots under the token-extension property. With `prune`, a subtree
/// whose partial score is already below the band is skipped: scores never increase along a path (the
/// clamp guarantees it in floating point too, since adding a non-positive double never rounds upward),
/// so no candidate in it can be strictly more likely than, or tie with, the canary.
template <LanguageModel M>
class SlotWalk {
 public:
  SlotWalk(CandidateScorer<M>& scorer, const CanarySpace& space, const Canary& canary, WalkCounter& counter,
           bool prune)
      : scorer_(scorer), space_(space), canary_(canary), counter_(counter), prune_(prune) {
    const auto& fmt = space.format();
    const std::size_t k = fmt.num_slots();
    for (std::size_t s = 0; s < k; ++s)
      for (std::size_t a = 0; a < fmt.alphabet_size(s); ++a)
        for (Token t : space.symbol_tokens(s, a)) scorer.check_token(t, "canary symbol");
    for (std::size_t a = 0; a < fmt.alphabet_size(k - 1); ++a)
      if (space.symbol_tokens(k - 1, a).size() != 1) single_token_last_ = false;
  }

  void run() { visit(0, 0, true); }

 private:
  void visit(std::size_t slot, std::size_t pos, bool on_canary_path) {
    const auto& fmt = space_.format();
    const std::size_t k = fmt.num_slots();
    const std::size_t n = fmt.alphabet_size(slot);
    const std::size_t canary_symbol = canary_.choices[slot];
    if (slot + 1 == k && single_token_last_) {
      // One distribution scores the whole last alphabet: no evaluation per leaf.
      const auto* row = scorer_.row(pos);
      const double base = scorer_.log_prob(pos);
      for (std::size_t a = 0; a < n; ++a)
        counter_.add(base + CandidateScorer<M>::clamped(row[space_.symbol_tokens(slot, a)[0]]),
                     on_canary_path && a == canary_symbol);
      return;
    }
    for (std::size_t a = 0; a < n; ++a) {
      const auto toks = space_.symbol_tokens(slot, a);
      scorer_.set_tokens(toks, pos);
      bool alive = true;
      for (std::size_t j = 1; j <= toks.size() && alive; ++j)
        if (prune_ && scorer_.log_prob(pos + j) < counter_.lo) alive = false;
      if (!alive) continue;
      const bool on_path = on_canary_path && a == canary_symbol;
      if (slot + 1 == k)
        counter_.add(scorer_.log_prob(pos + toks.size()), on_path);
      else
        visit(slot + 1, pos + toks.size(), on_path);
    }
  }

  CandidateScorer<M>& scorer_;
  const CanarySpace& space_;
  const Canary& canary_;
  WalkCounter& counter_;
  bool prune_;
  bool single_token_last_ = true;
};

/// Every candidate in lexicographic order, each encoded whole (no token-extension property needed);
/// consecutive candidates still share the scorer's rows up to their common token prefix.
template <LanguageModel M>
void walk_encoded(CandidateScorer<M>& scorer, const CanarySpace& space, const Canary& canary, WalkCounter& counter) {
  const auto& fmt = space.format();
  Canary c;
  c.choices.assign(fmt.num_slots(), 0);
  std::vector<Token> toks;
  for (;;) {
    space.secret_tokens(c, toks);  // the secret encoded whole (or the full text's tail, CanarySpace::full_text())
    scorer.set_tokens(toks);
    counter.add(scorer.log_prob(toks.size()), c == canary);
    std::size_t i = fmt.num_slots();
    for (; i-- > 0;) {
      if (++c.choices[i] < fmt.alphabet_size(i)) break;
      c.choices[i] = 0;
    }
    if (i == static_cast<std::size_t>(-1)) break;
  }
}

template <LanguageModel M>
double score_canary(CandidateScorer<M>& scorer, const CanarySpace& space, const Canary& canary) {
  const std::vector<Token> toks = space.secret_tokens(canary);
  scorer.set_tokens(toks);
  return scorer.log_prob(toks.size());
}

inline void append_exposure_note(std::string& notes, const std::string& note) {
  if (!notes.empty()) notes += "; ";
  notes += note;
}

/// min(count, n) distinct indices of [0, n), uniform, by Floyd's algorithm (O(count) expected time and
/// memory whatever n); all of [0, n) when count >= n. Deterministic for a seed (uniform_below is portable;
/// the caller sorts what it draws, so the hash set's iteration order does not matter).
inline std::vector<std::uint64_t> sample_without_replacement(std::uint64_t n, std::size_t count, std::uint64_t seed) {
  std::vector<std::uint64_t> out;
  if (count >= n) {
    out.resize(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = i;
    return out;
  }
  std::mt19937_64 rng(seed);
  std::unordered_set<std::uint64_t> seen;
  seen.reserve(count);
  out.reserve(count);
  for (std::uint64_t j = n - count; j < n; ++j) {
    const std::uint64_t t = uniform_below(rng, j + 1);
    const std::uint64_t pick = seen.insert(t).second ? t : j;
    if (pick == j) seen.insert(j);
    out.push_back(pick);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <LanguageModel M>
ExposureResult exact_exposure(const M& model, const CanarySpace& space, const Canary& canary, bool prune,
                              const char* method, const Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto& fmt = space.format();
  fmt.validate(canary);
  ExposureResult r;
  r.method = method;
  r.exact = true;
  r.interval = "tie-breaking bounds (exact)";
  r.space_size = fmt.space_size();
  r.log2_space_size = fmt.log2_space_size();
  CandidateScorer<M> scorer(model, space.prefix_tokens(), space.max_secret_tokens() + 1);
  const double target = score_canary(scorer, space, canary);
  WalkCounter counter;
  // √ε of the model's Scalar, relative: far above call-path noise in the last bits, far below the
  // spread of candidates' scores, so pruning loses almost nothing.
  const double tol = std::isfinite(target)
                         ? std::sqrt(static_cast<double>(std::numeric_limits<typename M::Scalar>::epsilon())) *
                               (1.0 + std::abs(target))
                         : 0.0;
  counter.lo = target - tol;
  counter.hi = target + tol;
  counter.progress = &progress;
  counter.total = r.space_size;
  progress.update("exposure: exact walk", 0, r.space_size);
  if (space.tokens_extend()) {
    SlotWalk<M>(scorer, space, canary, counter, prune).run();
  } else {
    walk_encoded(scorer, space, canary, counter);
    if (prune) {
      r.fell_back_to_exhaustive = true;
      r.notes = "pruning needs the token-extension property, which this tokenizer breaks (" +
                space.extension_check() + "); every candidate was scored";
    }
  }
  const double walked = counter.canary_score;
  if (!counter.canary_seen || walked < counter.lo || walked > counter.hi)
    throw NumericalError("the canary's own score changed between two evaluations of the same tokens by more than "
                         "the tolerance: the model must return the same log-probabilities for the same tokens "
                         "whatever the path of calls (begin_decode/advance/copies)");
  std::uint64_t greater = counter.above, equal = 0;
  for (double v : counter.band) {
    if (v > walked) ++greater;
    if (v == walked) ++equal;
  }
  r.log_perplexity_bits = -walked / std::numbers::ln2;
  r.rank = 1 + greater;
  r.ties = equal - 1;
  r.mid_rank = static_cast<double>(r.rank) + 0.5 * static_cast<double>(r.ties);
  r.exposure_bits = r.log2_space_size - std::log2(r.mid_rank);
  r.exposure_low = r.log2_space_size - std::log2(static_cast<double>(r.rank) + static_cast<double>(r.ties));
  r.exposure_high = r.log2_space_size - std::log2(static_cast<double>(r.rank));
  r.candidates_scored = counter.scored;
  r.evaluations = scorer.evaluations();
  if (!space.tokens_extend() && !prune) r.notes = space.extension_check();
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace detail

/// ℓ = Σ_j min(0, ln p(continuation_j | context, continuation_<j)) in nats, accumulated in double in order
/// (the score of the exposure definition). Costs |continuation| evaluations.
template <LanguageModel M>
double sequence_log_prob(const M& model, std::span<const Token> context, std::span<const Token> continuation) {
  detail::CandidateScorer<M> scorer(model, context, continuation.size() + 1);
  scorer.set_tokens(continuation);
  return scorer.log_prob(continuation.size());
}

/// −log₂ P(secret tokens | prefix tokens) of a canary.
template <LanguageModel M>
double canary_log_perplexity_bits(const M& model, const CanarySpace& space, const Canary& canary) {
  return -sequence_log_prob(model, space.prefix_tokens(), space.secret_tokens(canary)) / std::numbers::ln2;
}

/// Scores every candidate, walking their token tree once in lexicographic order so that each shared
/// prefix (the fixed prefix included) is evaluated once and one distribution scores a whole alphabet.
class ExhaustiveExposure {
 public:
  ExhaustiveExposure() = default;
  /// Reports "exposure: exact walk" (candidates scored of |R|, every 4096) and can be cancelled there.
  explicit ExhaustiveExposure(Progress progress) : progress_(std::move(progress)) {}
  std::string name() const { return "exhaustive"; }
  template <LanguageModel M>
  ExposureResult measure(const M& model, const CanarySpace& space, const Canary& canary) const {
    return detail::exact_exposure(model, space, canary, false, "exhaustive", progress_);
  }

 private:
  Progress progress_;
};

/// The exhaustive walk, skipping every subtree whose partial candidate is already less likely than the
/// canary: the same rank and ties as ExhaustiveExposure, bit for bit, with evaluations only for nodes
/// more likely than the canary. Falls back to the exhaustive walk (fell_back_to_exhaustive, notes) when
/// the tokenizer breaks the token-extension property for this canary format.
class PrunedExposure {
 public:
  PrunedExposure() = default;
  /// Reports "exposure: exact walk" (candidates scored, against |R| as an upper bound) and can be cancelled.
  explicit PrunedExposure(Progress progress) : progress_(std::move(progress)) {}
  std::string name() const { return "pruned"; }
  template <LanguageModel M>
  ExposureResult measure(const M& model, const CanarySpace& space, const Canary& canary) const {
    return detail::exact_exposure(model, space, canary, true, "pruned", progress_);
  }

 private:
  Progress progress_;
};

struct ExtrapolationOptions {
  /// N distinct uniform random candidates, drawn without replacement (every candidate when |R| <= N).
  std::size_t samples = 4096;
  std::size_t bootstrap = 100;   ///< bootstrap refits for the interval; 0 for none
  double confidence = 0.95;      ///< of the percentile interval
  std::uint64_t seed = 1;
  /// measure() counts exactly (PrunedExposure: the same definition, rank exact) instead of extrapolating
  /// when |R| <= exact_up_to. Why 2^20: the exact walk then scores at most ~10^6 candidates with about
  /// |R|/|A_last| evaluations (10^5 for a 10-symbol last slot; pruning only lowers it), the order of the
  /// default extrapolation's N·(L − 1) = 4096·(L − 1) for secrets of L ≈ 10-25 tokens. Above it the
  /// extrapolation is cheaper; below it the exact count removes the fit's bias. 0 = always extrapolate
  /// (ExtrapolatedExposure::fit always does).
  std::uint64_t exact_up_to = std::uint64_t{1} << 20;
  /// Reports "exposure: samples" (every 256 of N), "exposure: bootstrap" (per refit) or, when counting
  /// exactly, "exposure: exact walk"; cancellable there (Cancelled).
  Progress progress{};
};

/// A skew-normal fitted to the log-perplexities (bits) of N random candidates, with bootstrap refits;
/// evaluates the extrapolated exposure of any canary of the same space and model without refitting.
class ExtrapolationFit {
 public:
  ExtrapolationFit(std::vector<double> log_perplexities_bits, std::uint64_t space_size, double log2_space_size,
                   const ExtrapolationOptions& options, std::uint64_t evaluations)
      : samples_(std::move(log_perplexities_bits)),
        space_size_(space_size),
        log2_space_size_(log2_space_size),
        confidence_(options.confidence),
        evaluations_(evaluations) {
    if (samples_.size() < 16)
      throw InvalidArgument("the extrapolation needs at least 16 samples; got " + std::to_string(samples_.size()));
    if (!(options.confidence > 0.0 && options.confidence < 1.0))
      throw InvalidArgument("the confidence level must lie in (0, 1)");
    for (double x : samples_)
      if (!std::isfinite(x))
        throw NonFiniteError("a sampled candidate has infinite log-perplexity (probability 0); the skew-normal "
                             "cannot be fitted; use the exact estimators");
    std::sort(samples_.begin(), samples_.end());
    double mean = 0.0;
    for (double x : samples_) mean += x;
    mean /= static_cast<double>(samples_.size());
    double var = 0.0;
    for (double x : samples_) var += (x - mean) * (x - mean);
    const double sd = std::sqrt(var / static_cast<double>(samples_.size()));
    if (!(sd > 1e-12 * std::max(1.0, std::abs(mean))))
      throw NumericalError("all sampled candidates have the same log-perplexity; the extrapolation needs spread; "
                           "use the exact estimators");
    auto to_bits = [&](const detail::SkewNormal& s) {
      return detail::SkewNormal{mean + sd * s.location, sd * s.scale, s.shape};
    };
    std::vector<double> y(samples_.size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = (samples_[i] - mean) / sd;
    const detail::SkewNormal std_fit = detail::fit_skew_normal_standardised(y);
    fit_ = to_bits(std_fit);
    std::mt19937_64 rng(options.seed ^ 0xb007b007ULL);
    std::vector<double> yb(y.size());
    for (std::size_t b = 0; b < options.bootstrap; ++b) {
      options.progress.update("exposure: bootstrap", b, options.bootstrap);
      for (auto& v : yb) v = y[detail::uniform_below(rng, y.size())];
      boot_.push_back(to_bits(detail::fit_skew_normal_standardised(yb, &std_fit)));
    }
  }

  const detail::SkewNormal& fit() const { return fit_; }
  const std::vector<detail::SkewNormal>& bootstrap_fits() const { return boot_; }
  std::span<const double> sorted_samples() const { return samples_; }
  std::uint64_t evaluations() const { return evaluations_; }

  /// −log₂ F(x) for the fit.
  double exposure_bits(double log_perplexity_bits) const {
    return -fit_.log_cdf(log_perplexity_bits) / std::numbers::ln2;
  }

  /// Rank interpolated among the samples: the empirical CDF through (x_(i), (i − ½)/N), linear in between,
  /// 0 left of the smallest sample and 1 right of the largest; rank = 1 + F̂·(|R| − 1). It cannot resolve
  /// ranks below about |R|/N (a canary more likely than every sample gets rank 1).
  double sample_rank(double log_perplexity_bits) const {
    const double n = static_cast<double>(samples_.size());
    const auto it = std::lower_bound(samples_.begin(), samples_.end(), log_perplexity_bits);
    const std::size_t j = static_cast<std::size_t>(it - samples_.begin());  // first sample >= x
    double frac;
    if (j == 0)
      frac = 0.0;
    else if (j == samples_.size())
      frac = 1.0;
    else {
      const double x0 = samples_[j - 1], x1 = samples_[j];
      const double t = (log_perplexity_bits - x0) / (x1 - x0);
      frac = ((static_cast<double>(j) - 0.5) + t) / n;
    }
    return 1.0 + frac * (static_cast<double>(space_size_) - 1.0);
  }

  /// The extrapolated result; exposure_bits and the interval are capped at log₂|R| (`capped` says when).
  ExposureResult evaluate(double log_perplexity_bits) const {
    ExposureResult r;
    r.method = "extrapolated";
    r.exact = false;
    r.interval = "bootstrap percentile (approximate, biased: ignores the skew-normal's misfit in the tail)";
    r.interval_approximate = true;
    r.space_size = space_size_;
    r.log2_space_size = log2_space_size_;
    r.log_perplexity_bits = log_perplexity_bits;
    const double raw = exposure_bits(log_perplexity_bits);
    r.capped = raw > log2_space_size_;
    r.exposure_bits = std::min(raw, log2_space_size_);
    if (!boot_.empty()) {
      std::vector<double> e;
      e.reserve(boot_.size());
      for (const auto& s : boot_) e.push_back(-s.log_cdf(log_perplexity_bits) / std::numbers::ln2);
      std::sort(e.begin(), e.end());
      r.exposure_low = std::min(quantile(e, 0.5 * (1.0 - confidence_)), log2_space_size_);
      r.exposure_high = std::min(quantile(e, 1.0 - 0.5 * (1.0 - confidence_)), log2_space_size_);
    }
    r.sample_rank = sample_rank(log_perplexity_bits);
    r.rank = static_cast<std::uint64_t>(std::round(std::min(r.sample_rank, 1.8e19)));
    r.sample_rank_exposure_bits = log2_space_size_ - std::log2(r.sample_rank);
    r.fitted = fit_;
    r.candidates_scored = samples_.size();
    r.evaluations = evaluations_;
    if (log_perplexity_bits < samples_.front())
      r.notes = "the canary is more likely than every sample: the sample rank only says rank < |R|/N";
    if (r.capped)
      r.notes += std::string(r.notes.empty() ? "" : "; ") + "the fit gives " + detail::format_number(raw) +
                 " bits, more than log2|R| = " + detail::format_number(log2_space_size_) +
                 ": capped at log2|R| (no rank can exceed it; use an exact estimator to know the rank)";
    return r;
  }

 private:
  static double quantile(const std::vector<double>& sorted, double q) {
    const double pos = q * static_cast<double>(sorted.size() - 1);
    const std::size_t i = static_cast<std::size_t>(pos);
    if (i + 1 >= sorted.size()) return sorted.back();
    return sorted[i] + (pos - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
  }

  std::vector<double> samples_;
  std::uint64_t space_size_;
  double log2_space_size_;
  double confidence_;
  std::uint64_t evaluations_;
  detail::SkewNormal fit_;
  std::vector<detail::SkewNormal> boot_;
};

/// Scores N distinct uniform random candidates (sorted so that they share the token tree), fits a
/// skew-normal to their log-perplexities by maximum likelihood, and reports min(log₂|R|, −log₂ F(canary))
/// with an approximate bootstrap interval. measure() counts exactly instead when |R| <= exact_up_to.
class ExtrapolatedExposure {
 public:
  explicit ExtrapolatedExposure(ExtrapolationOptions options = {}) : options_(options) {
    if (options_.samples < 16) throw InvalidArgument("ExtrapolationOptions::samples must be at least 16");
    if (!(options_.confidence > 0.0 && options_.confidence < 1.0))
      throw InvalidArgument("ExtrapolationOptions::confidence must lie in (0, 1)");
  }
  std::string name() const { return "extrapolated"; }
  const ExtrapolationOptions& options() const { return options_; }

  /// The fit alone (always extrapolates, whatever exact_up_to): reuse it for many canaries of the same
  /// space and model. Candidates are drawn without replacement (Floyd's algorithm, O(N) expected).
  template <LanguageModel M>
  ExtrapolationFit fit(const M& model, const CanarySpace& space) const {
    const auto& fmt = space.format();
    const std::vector<std::uint64_t> chosen = detail::sample_without_replacement(fmt.space_size(), options_.samples,
                                                                                  options_.seed);
    std::vector<std::vector<Token>> seqs(chosen.size());
    for (std::size_t i = 0; i < chosen.size(); ++i) space.secret_tokens(fmt.canary_at(chosen[i]), seqs[i]);
    std::sort(seqs.begin(), seqs.end());  // lexicographic: neighbours share rows of the scorer
    std::size_t longest = 0;
    for (const auto& s : seqs) longest = std::max(longest, s.size());
    detail::CandidateScorer<M> scorer(model, space.prefix_tokens(), longest + 1);
    std::vector<double> lp(seqs.size());
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      if (i % 256 == 0) options_.progress.update("exposure: samples", i, seqs.size());
      scorer.set_tokens(seqs[i]);
      lp[i] = -scorer.log_prob(seqs[i].size()) / std::numbers::ln2;
    }
    return ExtrapolationFit(std::move(lp), fmt.space_size(), fmt.log2_space_size(), options_, scorer.evaluations());
  }

  /// Exact (PrunedExposure, with a note saying so) when |R| <= exact_up_to; otherwise the extrapolation.
  template <LanguageModel M>
  ExposureResult measure(const M& model, const CanarySpace& space, const Canary& canary) const {
    const auto t0 = std::chrono::steady_clock::now();
    space.format().validate(canary);
    if (space.format().space_size() <= options_.exact_up_to) {
      ExposureResult exact = PrunedExposure(options_.progress).measure(model, space, canary);
      detail::append_exposure_note(exact.notes, "counted exactly instead of extrapolating: |R| = " +
                                                    std::to_string(space.format().space_size()) +
                                                    " <= ExtrapolationOptions::exact_up_to = " +
                                                    std::to_string(options_.exact_up_to));
      exact.seconds = detail::seconds_since(t0);
      return exact;
    }
    const ExtrapolationFit f = fit(model, space);
    const auto toks = space.secret_tokens(canary);
    detail::CandidateScorer<M> scorer(model, space.prefix_tokens(), toks.size() + 1);
    scorer.set_tokens(toks);
    ExposureResult r = f.evaluate(-scorer.log_prob(toks.size()) / std::numbers::ln2);
    r.evaluations += scorer.evaluations();
    r.seconds = detail::seconds_since(t0);
    return r;
  }

 private:
  ExtrapolationOptions options_;
};

}  // namespace fisher_unlearn
