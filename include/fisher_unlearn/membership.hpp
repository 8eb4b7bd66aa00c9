// Membership inference and extraction: the loss-threshold attack's AUC, computed exactly as the
// Mann–Whitney statistic AUC = P(loss_member < loss_nonmember) + ½·P(equal) in O((m + n) log(m + n)),
// and greedy extraction of a canary's secret from its prefix (L evaluations for L secret tokens).
#pragma once

#include "fisher_unlearn/canary.hpp"
#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/exposure.hpp"

#include <algorithm>
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
