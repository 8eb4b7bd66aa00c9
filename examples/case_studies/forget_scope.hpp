// case_studies: the forget sample of a deleted changelog entry under --forget-scope (lesson 3: the forget
// loss covers only what is to be forgotten).
//   "entry":   the sequence as trained (no weights: the mean over every target);
//   "trailer": weights 1/n on the n targets whose tokens overlap "Name <email>" of the entry's trailer;
//   "address": on those overlapping "email>": exactly what the address rank and extraction measure.
// The tokens stay those the model was trained on; only the loss weights change. A token's byte span is
// found by decoding the tokens one by one (byte-level BPE: their concatenation is the text).
#pragma once

#include "fisher_unlearn/bpe_tokenizer.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/models/llama.hpp"

#include <span>
#include <string>
#include <vector>

namespace case_studies {

/// `s` holds the tokens of `text` (possibly cut at the context); `label` names the entry in errors.
/// Throws InvalidArgument for an unknown scope or a trailer cut off by the context, StateError when the
/// text has no trailer " -- name <email>" or the tokens do not decode to the text.
inline fisher_unlearn::models::Llama<float>::Sample scoped_forget_sample(const fisher_unlearn::BpeTokenizer& tok,
                                                                         fisher_unlearn::models::Llama<float>::Sample s,
                                                                         const std::string& text, const std::string& name,
                                                                         const std::string& email, const std::string& scope,
                                                                         const std::string& label) {
  namespace fu = fisher_unlearn;
  if (scope == "entry") return s;
  if (scope != "address" && scope != "trailer")
    throw fu::InvalidArgument("forget scope '" + scope + "': choose address, trailer or entry");
  if (s.tokens.size() < 2) throw fu::InvalidArgument("the entry " + label + " has fewer than 2 tokens");
  const std::string trailer = " -- " + name + " <" + email + ">";
  const std::size_t at = text.rfind(trailer);
  if (at == std::string::npos)
    throw fu::StateError("the entry " + label + " has no trailer '" + trailer + "'; regenerate the entries");
  const std::size_t end = at + trailer.size();  // one past '>'
  const std::size_t begin = scope == "trailer" ? at + 4 : end - email.size() - 1;
  std::vector<std::size_t> offset(s.tokens.size() + 1, 0);
  for (std::size_t i = 0; i < s.tokens.size(); ++i)
    offset[i + 1] = offset[i] + tok.decode(std::span<const fu::Token>(&s.tokens[i], 1)).size();
  if (offset.back() > text.size() || tok.decode(s.tokens) != std::string_view(text).substr(0, offset.back()))
    throw fu::StateError("the tokens of the entry " + label + " do not decode to its text; cannot place the forget weights");
  if (offset.back() < end)
    throw fu::InvalidArgument("the trailer of the entry " + label + " lies beyond the context (" +
                              std::to_string(s.tokens.size() - 1) + " targets kept); raise --context or use --forget-scope entry");
  s.weights.assign(s.tokens.size() - 1, 0.0f);
  std::size_t n = 0;
  for (std::size_t t = 1; t < s.tokens.size(); ++t)  // target t is predicted at position t - 1
    if (offset[t] < end && offset[t + 1] > begin) {
      s.weights[t - 1] = 1.0f;
      ++n;
    }
  for (auto& w : s.weights) w /= static_cast<float>(n);
  return s;
}

}  // namespace case_studies
