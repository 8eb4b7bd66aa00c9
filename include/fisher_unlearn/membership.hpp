// Membership inference and extraction: the loss-threshold attack's AUC, computed exactly as the
// Mann–Whitney statistic AUC = P(loss_member < loss_nonmember) + ½·P(equal) in O((m + n) log(m + n)),
// the reference-calibrated attack (score = loss_target − loss_reference), the over-unlearning check
// (a forgotten canary far less likely than random candidates) and greedy extraction of a canary's secret
// from its prefix (L evaluations for L secret tokens).
#pragma once

#include "fisher_unlearn/canary.hpp"
#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/exposure.hpp"

#include <algorithm>
#include <concepts>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn {

struct MembershipResult {
  double auc = 0.0;  ///< 1: every member has lower loss than every non-member; 0.5: chance
  std::size_t members = 0;
  std::size_t nonmembers = 0;
  double member_mean_loss = 0.0;
  double nonmember_mean_loss = 0.0;
};

/// The loss-threshold attack ("lower loss means member") scored over every threshold: the exact AUC,
/// ties counted ½. Counts are integers (twice the Mann–Whitney U), so the only rounding is the final
/// division. Throws InvalidArgument on an empty set, NonFiniteError on a NaN loss (±Inf is allowed).
inline MembershipResult loss_attack_auc(std::span<const double> member_losses, std::span<const double> nonmember_losses) {
  if (member_losses.empty() || nonmember_losses.empty())
    throw InvalidArgument("loss_attack_auc needs at least one member and one non-member loss; got " +
                          std::to_string(member_losses.size()) + " and " + std::to_string(nonmember_losses.size()));
  std::vector<std::pair<double, bool>> all;  // (loss, is_member)
  all.reserve(member_losses.size() + nonmember_losses.size());
  MembershipResult r;
  for (double l : member_losses) {
    if (std::isnan(l)) throw NonFiniteError("a member loss is NaN; check the model and the samples");
    all.emplace_back(l, true);
    r.member_mean_loss += l;
  }
  for (double l : nonmember_losses) {
    if (std::isnan(l)) throw NonFiniteError("a non-member loss is NaN; check the model and the samples");
    all.emplace_back(l, false);
    r.nonmember_mean_loss += l;
  }
  r.members = member_losses.size();
  r.nonmembers = nonmember_losses.size();
  r.member_mean_loss /= static_cast<double>(r.members);
  r.nonmember_mean_loss /= static_cast<double>(r.nonmembers);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (r.members > (std::uint64_t{1} << 31) || r.nonmembers > (std::uint64_t{1} << 31))
    throw InvalidArgument("loss_attack_auc: more than 2^31 losses in a set; subsample the sets");
  // 2U = Σ over non-members of 2·#members with lower loss + #members with equal loss; < 2^63 by the check.
  std::uint64_t twice_u = 0;
  std::uint64_t members_below = 0;
  for (std::size_t i = 0; i < all.size();) {
    std::size_t j = i;
    std::uint64_t m = 0, n = 0;
    for (; j < all.size() && all[j].first == all[i].first; ++j) (all[j].second ? m : n) += 1;
    twice_u += n * (2 * members_below + m);
    members_below += m;
    i = j;
  }
  const long double pairs = static_cast<long double>(r.members) * static_cast<long double>(r.nonmembers);
  r.auc = static_cast<double>(static_cast<long double>(twice_u) / (2.0L * pairs));
  return r;
}

/// The attack on a model: loss(s) of each member and non-member sample, then loss_attack_auc.
template <Model M>
MembershipResult membership_inference_auc(const M& model, std::span<const typename M::Sample> members,
                                          std::span<const typename M::Sample> nonmembers) {
  std::vector<double> a, b;
  a.reserve(members.size());
  b.reserve(nonmembers.size());
  for (const auto& s : members) a.push_back(static_cast<double>(model.loss(s)));
  for (const auto& s : nonmembers) b.push_back(static_cast<double>(model.loss(s)));
  return loss_attack_auc(a, b);
}

/// The reference-calibrated loss attack (Carlini et al. 2022's offline LiRA reduced to its mean; Watson
/// et al. 2022's "difficulty calibration"): each record is scored by loss_target(x) − loss_reference(x),
/// so records that are easy for any model (short, common text) no longer look like members; "lower
/// calibrated loss means member". With the model retrained without the forget set as the reference,
/// AUC = 0.5 means the unlearned model treats the forgotten records exactly as retraining would.
/// Each span pairs record i's loss under the target and under the reference (same sizes); then
/// loss_attack_auc on the differences (MembershipResult's mean losses are the mean differences).
inline MembershipResult calibrated_loss_attack_auc(std::span<const double> member_target,
                                                   std::span<const double> member_reference,
                                                   std::span<const double> nonmember_target,
                                                   std::span<const double> nonmember_reference) {
  if (member_target.size() != member_reference.size() || nonmember_target.size() != nonmember_reference.size())
    throw InvalidArgument("calibrated_loss_attack_auc: each record needs its loss under the target and under the "
                          "reference model; got " + std::to_string(member_target.size()) + " vs " +
                          std::to_string(member_reference.size()) + " member and " +
                          std::to_string(nonmember_target.size()) + " vs " +
                          std::to_string(nonmember_reference.size()) + " non-member losses");
  std::vector<double> a(member_target.size()), b(nonmember_target.size());
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = member_target[i] - member_reference[i];
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = nonmember_target[i] - nonmember_reference[i];
  for (double v : a)
    if (std::isnan(v))
      throw NonFiniteError("a calibrated member loss is NaN (NaN loss, or +Inf under both models); check the models");
  for (double v : b)
    if (std::isnan(v))
      throw NonFiniteError("a calibrated non-member loss is NaN (NaN loss, or +Inf under both models); check the models");
  return loss_attack_auc(a, b);
}

/// The calibrated attack on two models: loss(s) of each record under `model` and under `reference`.
template <Model M, Model R>
  requires std::same_as<typename M::Sample, typename R::Sample>
MembershipResult reference_calibrated_auc(const M& model, const R& reference, std::span<const typename M::Sample> members,
                                          std::span<const typename M::Sample> nonmembers) {
  std::vector<double> mt, mr, nt, nr;
  for (const auto& s : members) {
    mt.push_back(static_cast<double>(model.loss(s)));
    mr.push_back(static_cast<double>(reference.loss(s)));
  }
  for (const auto& s : nonmembers) {
    nt.push_back(static_cast<double>(model.loss(s)));
    nr.push_back(static_cast<double>(reference.loss(s)));
  }
  return calibrated_loss_attack_auc(mt, mr, nt, nr);
}

struct OverUnlearningResult {
  bool flagged = false;          ///< the canary is less likely than all but `percentile` of the candidates
  double fraction_less_likely = 0.0;  ///< candidates with higher log-perplexity than the canary (ties ½), / N
  double percentile = 0.01;      ///< the threshold used
  std::size_t candidates = 0;
};

/// The over-unlearning check: a forgotten secret should look like a never-seen one, i.e. its
/// log-perplexity should fall inside the candidates' distribution. When fewer than `percentile` (1%) of
/// N uniformly random candidates are less likely than the canary (higher log-perplexity; ties ½), the
/// canary sits below the 1st percentile of the candidates' likelihood: the model singles it out by
/// avoiding it, which itself leaks that it was there ("Streisand effect"). Cost O(N). With N random
/// candidates, a never-seen secret is flagged with probability ≈ `percentile`, so use N ≥ 10/percentile.
/// Throws InvalidArgument on no candidates or a percentile outside (0, 1), NonFiniteError on a NaN.
inline OverUnlearningResult over_unlearning_check(double canary_log_perplexity_bits,
                                                  std::span<const double> candidate_log_perplexity_bits,
                                                  double percentile = 0.01) {
  if (candidate_log_perplexity_bits.empty())
    throw InvalidArgument("over_unlearning_check needs sampled candidates' log-perplexities; got none");
  if (!(percentile > 0.0 && percentile < 1.0))
    throw InvalidArgument("over_unlearning_check: the percentile must lie in (0, 1), e.g. 0.01");
  if (std::isnan(canary_log_perplexity_bits)) throw NonFiniteError("over_unlearning_check: the canary's log-perplexity is NaN");
  double less_likely = 0.0;
  for (double v : candidate_log_perplexity_bits) {
    if (std::isnan(v)) throw NonFiniteError("over_unlearning_check: a candidate's log-perplexity is NaN");
    if (v > canary_log_perplexity_bits)
      less_likely += 1.0;
    else if (v == canary_log_perplexity_bits)
      less_likely += 0.5;
  }
  OverUnlearningResult r;
  r.candidates = candidate_log_perplexity_bits.size();
  r.percentile = percentile;
  r.fraction_less_likely = less_likely / static_cast<double>(r.candidates);
  r.flagged = r.fraction_less_likely < percentile;
  return r;
}

struct ExtractionResult {
  bool reproduced = false;              ///< the decoded text equals the secret
  std::size_t slots_matched = 0;        ///< slots whose symbol appears at its place in the decoded text
  std::size_t leading_slots_matched = 0;  ///< slots matched before the first mismatch
  std::size_t num_slots = 0;
  std::vector<Token> tokens;            ///< the greedy continuation (as many tokens as the secret has)
  std::string text;                     ///< decode(tokens)
  std::uint64_t evaluations = 0;
};

/// Greedy decoding from the prefix over the whole vocabulary (argmax, lowest token on ties) for as many
/// tokens as the canary's secret has; a slot matches when its separator and symbol appear at the same
/// character span of the decoded text as in the secret.
template <LanguageModel M>
ExtractionResult extract_greedy(const M& model, const CanarySpace& space, const Canary& canary) {
  const auto& fmt = space.format();
  fmt.validate(canary);
  const std::vector<Token> secret_tokens = space.secret_tokens(canary);
  detail::CandidateScorer<M> scorer(model, space.prefix_tokens(), secret_tokens.size() + 1);
  ExtractionResult r;
  r.num_slots = fmt.num_slots();
  for (std::size_t j = 0; j < secret_tokens.size(); ++j) {
    const auto* row = scorer.row(j);
    std::size_t best = 0;
    for (std::size_t v = 1; v < scorer.vocab_size(); ++v)
      if (row[v] > row[best]) best = v;
    r.tokens.push_back(static_cast<Token>(best));
    scorer.set_token(j, static_cast<Token>(best));
  }
  r.evaluations = scorer.evaluations();
  r.text = space.decode(r.tokens);
  const std::string secret = fmt.secret_text(canary);
  r.reproduced = r.text == secret;
  bool leading = true;
  for (std::size_t i = 0; i < fmt.num_slots(); ++i) {
    const auto [b, e] = fmt.symbol_span(canary, i);
    const std::size_t sb = b - fmt.slots()[i].before.size();  // include the separator
    const bool ok = e <= r.text.size() && r.text.compare(sb, e - sb, secret, sb, e - sb) == 0;
    if (ok) ++r.slots_matched;
    leading = leading && ok;
    if (leading) ++r.leading_slots_matched;
  }
  return r;
}

}  // namespace fisher_unlearn
