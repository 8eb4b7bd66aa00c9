// Measured retain KL: the mean over positions t of KL(p_ref(·|x_<t) ‖ p_θ(·|x_<t)) on fixed retain
// sequences, in nats — the quantity the trust region's ½δᵀF_Rδ predicts to second order (F_R with the
// per-token scale is the position-averaged Fisher). Cost per measurement: one incremental decode per
// sequence (T − 1 KV-cache steps); memory V·(T − 1) values per sequence for the reference.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

/// Holds the reference model's next-token distributions on `sequences` (each of at least 2 tokens, at
/// most the model's context) and measures how far another model's predictions moved from them.
/// Positions predicted: every t = 1 … T−1 of a sequence of T tokens (p(x_t | x_<t)).
template <IncrementalLanguageModel M>
class MeasuredRetainKl {
 public:
  using Scalar = typename M::Scalar;

  MeasuredRetainKl(const M& reference, std::vector<std::vector<Token>> sequences)
      : sequences_(std::move(sequences)), vocab_(reference.vocab_size()) {
    if (sequences_.empty())
      throw InvalidArgument("MeasuredRetainKl: no sequences given; pass at least one retain sequence of >= 2 tokens");
    for (std::size_t i = 0; i < sequences_.size(); ++i)
      if (sequences_[i].size() < 2)
        throw InvalidArgument("MeasuredRetainKl: sequence " + std::to_string(i) + " has " +
                              std::to_string(sequences_[i].size()) + " token(s); each needs at least 2 (one context, "
                              "one predicted position)");
    reference_ = log_probs_of(reference);
  }

  /// Positions whose distributions are compared (Σ (T_i − 1)).
  std::size_t positions() const { return reference_.size() / vocab_; }

  /// Mean over positions of KL(p_ref ‖ p_model) in nats (≥ 0; 0 for the reference model itself).
  /// Throws InvalidArgument if the model's vocabulary differs from the reference's.
  double measure(const M& model) const {
    if (model.vocab_size() != vocab_)
      throw InvalidArgument("MeasuredRetainKl::measure: the model has " + std::to_string(model.vocab_size()) +
                            " tokens in its vocabulary but the reference had " + std::to_string(vocab_));
    const std::vector<double> current = log_probs_of(model);
    double total = 0.0;
    for (std::size_t at = 0; at < current.size(); ++at) {
      const double lp = reference_[at];
      total += std::exp(lp) * (lp - current[at]);
    }
    return std::max(total, 0.0) / static_cast<double>(positions());
  }

 private:
  std::vector<double> log_probs_of(const M& model) const {
    std::vector<double> out;
    std::vector<Scalar> row(vocab_);
    for (const auto& s : sequences_) {
      auto state = model.begin_decode(std::span<const Token>(s.data(), 1));
      for (std::size_t t = 1; t < s.size(); ++t) {
        model.log_probs(state, std::span<Scalar>(row));
        out.insert(out.end(), row.begin(), row.end());
        if (t + 1 < s.size()) model.advance(state, s[t]);
      }
    }
    return out;
  }

  std::vector<std::vector<Token>> sequences_;
  std::size_t vocab_;
  std::vector<double> reference_;  // ln p_ref, positions × vocab
};

}  // namespace fisher_unlearn
