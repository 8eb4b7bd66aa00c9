// Forget samples for canaries: context ++ prefix ++ secret as one SequenceSample whose loss sits on the
// secret, by default  Σ_slots CE(q_slot, p) + w_sep·Σ_separators CE(observed),  q_slot = uniform over the
// slot's alphabet minus the secret's own symbol (bounded below by ln(|alphabet| − 1)). O(tokens + Σ|alphabet|).
#pragma once

#include "fisher_unlearn/canary.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/sequence_sample.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fisher_unlearn {

/// What a forget sample trains the secret's symbol positions towards.
enum class ForgetTarget {
  /// Cross-entropy towards q = uniform over the slot's alphabet minus the secret's symbol (the default):
  /// minimised, it makes the secret no more likely than any other candidate's symbol and then stops —
  /// its minimum is ln(|alphabet| − 1) and its gradient on the secret's logit, p(secret), vanishes as
  /// p(secret) → 0. Needs every symbol of a slot to be one token after the slot's separator.
  other_symbols,
  /// The observed secret tokens (plain cross-entropy): for objectives that ascend or contrast the
  /// loss (gradient ascent, NPO). Unbounded when ascended; separators default to weight 0 here.
  observed,
};

inline const char* to_string(ForgetTarget t) { return t == ForgetTarget::other_symbols ? "other_symbols" : "observed"; }

struct ForgetSampleOptions {
  ForgetTarget target = ForgetTarget::other_symbols;
  /// Weight of the plain cross-entropy term on the format's fixed separators inside the secret (a
  /// slot's `before` text, e.g. "-" in a phone number). Unset: 1 with other_symbols (the separators are
  /// kept: damaging them lowers every candidate that shares them, so it costs the other candidates
  /// more than the canary) and with whole_canary; 0 with observed targets (every weighted term of an
  /// ascent objective is pushed down, separators included).
  std::optional<double> separator_weight;
  /// Also weight the prefix's target positions (1, plain cross-entropy on the observed tokens): the loss
  /// then covers the whole canary. The first token of the sequence is never a target.
  bool whole_canary = false;
  /// Maximum tokens of the sample (0 = no limit; context_length + 1 for a Transformer): the context is
  /// cut from the front to fit. Throws InvalidArgument when the canary alone does not fit.
  std::size_t max_tokens = 0;
};

/// Which tokens of a forget sample are what (for reports and tests); indices into the sample's tokens.
struct ForgetSampleLayout {
  std::size_t context_tokens = 0;            ///< tokens[0, context_tokens) are context (weight 0)
  std::size_t prefix_tokens = 0;             ///< then the canary prefix
  std::vector<std::size_t> symbol_tokens;    ///< tokens of the secret's slot symbols
  std::vector<std::size_t> separator_tokens; ///< tokens of the separators inside the secret
};

namespace detail {

/// Slot i's tokens: the separator's (encode(before)), and per symbol the one token that follows them,
/// or no alphabet when some symbol is not exactly one token after the separator (multi-token symbols,
/// a tokenizer merging separator and symbol) or two symbols share a token.
struct SlotTokens {
  std::vector<Token> separator;
  std::optional<std::vector<Token>> alphabet;
};

inline SlotTokens slot_tokens(const CanarySpace& space, std::size_t slot) {
  const auto& sl = space.format().slots()[slot];
  SlotTokens out;
  if (!sl.before.empty()) out.separator = space.encode(sl.before);
  std::vector<Token> alphabet;
  for (std::size_t a = 0; a < sl.symbols.size(); ++a) {
    const auto t = space.symbol_tokens(slot, a);
    if (t.size() != out.separator.size() + 1 || !std::equal(out.separator.begin(), out.separator.end(), t.begin()) ||
        std::find(alphabet.begin(), alphabet.end(), t.back()) != alphabet.end())
      return out;
    alphabet.push_back(t.back());
  }
  out.alphabet = std::move(alphabet);
  return out;
}

}  // namespace detail

/// The forget sample of `canary`: tokens = context ++ space.tokens(canary), with target weights and
/// soft targets as `options` say (see ForgetTarget), and `layout` (if given) filled with the roles of
/// the tokens. Strong guarantee; throws InvalidArgument when the canary is not in the space, the
/// tokenizer breaks the token-extension property (space.tokens_extend() is false), other_symbols meets
/// a slot whose symbols are not single tokens, the secret's first token would have no predecessor
/// (empty prefix and no context), separator_weight is negative or not finite, or max_tokens is too small.
inline SequenceSample make_forget_sample(const CanarySpace& space, const Canary& canary,
                                         std::span<const Token> context = {}, const ForgetSampleOptions& options = {},
                                         ForgetSampleLayout* layout = nullptr) {
  const CanaryFormat& format = space.format();
  format.validate(canary);
  if (!space.tokens_extend())
    throw InvalidArgument("make_forget_sample: the tokenizer does not encode the secret slot by slot (" +
                          space.extension_check() + "); the secret's tokens cannot be assigned to slots");
  const double separator_weight = options.separator_weight.value_or(
      options.target == ForgetTarget::other_symbols || options.whole_canary ? 1.0 : 0.0);
  if (!std::isfinite(separator_weight) || separator_weight < 0.0)
    throw InvalidArgument("make_forget_sample: separator_weight is " + ::fisher_unlearn::detail::format_number(separator_weight) +
                          "; it must be finite and >= 0 (0 leaves the separators out)");

  const auto prefix = space.prefix_tokens();
  const auto secret = space.secret_tokens(canary);
  std::size_t keep_context = context.size();
  const std::size_t canary_length = prefix.size() + secret.size();
  if (options.max_tokens != 0) {
    if (canary_length > options.max_tokens)
      throw InvalidArgument("make_forget_sample: the canary has " + std::to_string(canary_length) +
                            " tokens but max_tokens is " + std::to_string(options.max_tokens) +
                            "; use a model with a longer context or a shorter canary");
    keep_context = std::min(keep_context, options.max_tokens - canary_length);
  }
  if (keep_context + prefix.size() == 0)
    throw InvalidArgument("make_forget_sample: the canary prefix is empty and no context was given, so the "
                          "secret's first token has nothing to be predicted from; pass some context");

  SequenceSample s;
  s.tokens.reserve(keep_context + canary_length);
  s.tokens.insert(s.tokens.end(), context.end() - static_cast<std::ptrdiff_t>(keep_context), context.end());
  s.tokens.insert(s.tokens.end(), prefix.begin(), prefix.end());
  s.tokens.insert(s.tokens.end(), secret.begin(), secret.end());
  const std::size_t positions = s.tokens.size() - 1;
  SequenceTargets& targets = s.targets;
  targets.weights.assign(positions, 0.0);
  if (options.target == ForgetTarget::other_symbols) targets.soft_target.assign(positions, SequenceTargets::kObserved);
  ForgetSampleLayout roles;
  roles.context_tokens = keep_context;
  roles.prefix_tokens = prefix.size();

  // token index i >= 1 is predicted at target position i − 1.
  if (options.whole_canary)
    for (std::size_t i = std::max<std::size_t>(keep_context, 1); i < keep_context + prefix.size(); ++i)
      targets.weights[i - 1] = 1.0;
  std::size_t at = keep_context + prefix.size();
  for (std::size_t slot = 0; slot < format.num_slots(); ++slot) {
    const auto tokens = space.symbol_tokens(slot, canary.choices[slot]);
    const detail::SlotTokens slot_info = detail::slot_tokens(space, slot);
    const bool fixed = format.alphabet_size(slot) == 1;  // a one-symbol slot carries no secret: fixed text
    if (options.target == ForgetTarget::other_symbols && !slot_info.alphabet && !fixed)
      throw InvalidArgument("make_forget_sample: slot " + std::to_string(slot) +
                            " has a symbol that is not exactly one token after its separator (or two symbols "
                            "share a token); the other_symbols target needs single-token symbols — use "
                            "ForgetTarget::observed for this format");
    // The separator's tokens, where this canary's slot tokens start with them and a symbol follows.
    const std::size_t sep = tokens.size() > slot_info.separator.size() &&
                                    std::equal(slot_info.separator.begin(), slot_info.separator.end(), tokens.begin())
                                ? slot_info.separator.size()
                                : 0;
    for (std::size_t j = 0; j < tokens.size(); ++j, ++at) {
      const bool is_separator = j < sep || fixed;
      (is_separator ? roles.separator_tokens : roles.symbol_tokens).push_back(at);
      targets.weights[at - 1] = is_separator ? separator_weight : 1.0;
      if (is_separator || options.target != ForgetTarget::other_symbols) continue;
      // q = uniform over the slot's alphabet minus the secret's symbol; slots with the same alphabet share it.
      std::vector<Token> others;
      const std::vector<Token>& alphabet = *slot_info.alphabet;
      others.reserve(alphabet.size() - 1);
      for (std::size_t a = 0; a < alphabet.size(); ++a)
        if (a != canary.choices[slot]) others.push_back(alphabet[a]);
      std::size_t k = 0;
      while (k < targets.soft_targets.size() && targets.soft_targets[k].tokens != others) ++k;
      if (k == targets.soft_targets.size()) targets.soft_targets.push_back(SoftTarget::uniform(std::move(others)));
      targets.soft_target[at - 1] = static_cast<std::int32_t>(k);
    }
  }
  double total = 0.0;
  for (double w : targets.weights) total += w;
  if (!(total > 0.0))
    throw InvalidArgument("make_forget_sample: no position of the sample has positive weight (every secret "
                          "slot is fixed and separator_weight is 0)");
  if (layout) *layout = std::move(roles);
  return s;
}

/// The same with the context given as text, encoded by the space's tokenizer.
inline SequenceSample make_forget_sample(const CanarySpace& space, const Canary& canary, std::string_view context,
                                         const ForgetSampleOptions& options = {}, ForgetSampleLayout* layout = nullptr) {
  const std::vector<Token> tokens = context.empty() ? std::vector<Token>{} : space.encode(context);
  return make_forget_sample(space, canary, std::span<const Token>(tokens), options, layout);
}

}  // namespace fisher_unlearn
