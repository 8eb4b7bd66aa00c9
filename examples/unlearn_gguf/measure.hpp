// unlearn_gguf measurements, before and after: per record the likelihood of its secret, its rank among
// candidates, greedy extraction and a membership score; held-out perplexity. All from extraction.hpp
// and membership.hpp, on the model as it is.
#pragma once

#include "inputs.hpp"
#include "progress.hpp"

#include "fisher_unlearn/extraction.hpp"
#include "fisher_unlearn/membership.hpp"

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace unlearn_gguf {

struct RecordMeasure {
  double secret_log_prob = 0.0;     ///< ln P(secret | prefix), nats
  double secret_mean_nll = 0.0;     ///< nats per secret token
  std::uint64_t rank = 0, ties = 0, set_size = 0;
  double mid_rank = 0.0, percentile = 0.0, exposure_bits = 0.0;
  bool extracted = false;
  std::size_t tokens_matched = 0, leading_tokens_matched = 0;
  std::string greedy_text;          ///< the greedy continuation, decoded
  double record_mean_nll = 0.0;     ///< nats per token over the whole record (membership score's input)
  /// P(held-out window NLL > this record's NLL), ties ½: the loss attack's AUC for this record against
  /// held-out text (1 = more likely than every held-out window; ≈ 0.5 = like held-out text). NaN
  /// without --heldout.
  double membership_score = std::numeric_limits<double>::quiet_NaN();
};

struct Measurement {
  std::vector<RecordMeasure> records;
  double heldout_perplexity = std::numeric_limits<double>::quiet_NaN();
  double heldout_nll = std::numeric_limits<double>::quiet_NaN();  ///< nats per token
  std::size_t heldout_tokens = 0;
  double seconds = 0.0;
};

/// Mean NLL per token of each held-out window (its targets), and the pooled perplexity.
inline std::vector<double> heldout_window_nlls(const LlamaModel& model, const std::vector<Tokens>& windows,
                                               Measurement& m, const std::string& phase, bool quiet) {
  std::vector<double> nlls;
  double total = 0.0;
  std::size_t tokens = 0;
  Progress progress(phase + ": held-out", windows.size(), quiet);
  for (std::size_t i = 0; i < windows.size(); ++i) {
    LlamaModel::Sample s;
    s.tokens = windows[i];
    const double loss = static_cast<double>(model.loss(s));  // mean over its targets
    nlls.push_back(loss);
    total += loss * static_cast<double>(s.tokens.size() - 1);
    tokens += s.tokens.size() - 1;
    progress.tick(i + 1);
  }
  m.heldout_tokens = tokens;
  m.heldout_nll = tokens ? total / static_cast<double>(tokens) : std::numeric_limits<double>::quiet_NaN();
  m.heldout_perplexity = std::exp(m.heldout_nll);
  return nlls;
}

/// Everything the report shows for the model as it is now.
inline Measurement measure(const LlamaModel& model, const std::vector<Record>& records,
                           const std::vector<Tokens>& shared_candidates, const std::vector<Tokens>& heldout,
                           const fisher_unlearn::BpeTokenizer& tok, const std::string& phase, bool quiet) {
  Progress clock(phase, 0, true);
  Measurement m;
  std::vector<double> heldout_nlls;
  if (!heldout.empty()) heldout_nlls = heldout_window_nlls(model, heldout, m, phase, quiet);
  Progress progress(phase + ": records", records.size(), quiet);
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    RecordMeasure x;
    const std::vector<Tokens>& cands = r.candidates.empty() ? shared_candidates : r.candidates;
    const auto rank = fisher_unlearn::continuation_rank(model, std::span<const Token>(r.prefix),
                                                        std::span<const Token>(r.secret), std::span<const Tokens>(cands));
    x.secret_log_prob = rank.log_prob;
    x.secret_mean_nll = -rank.log_prob / static_cast<double>(r.secret.size());
    x.rank = rank.rank;
    x.ties = rank.ties;
    x.set_size = rank.set_size;
    x.mid_rank = rank.mid_rank;
    x.percentile = rank.percentile;
    x.exposure_bits = rank.exposure_bits;
    const auto greedy = fisher_unlearn::greedy_extraction(model, std::span<const Token>(r.prefix),
                                                          std::span<const Token>(r.secret));
    x.extracted = greedy.extracted;
    x.tokens_matched = greedy.tokens_matched;
    x.leading_tokens_matched = greedy.leading_tokens_matched;
    x.greedy_text = tok.decode(greedy.continuation);
    const Tokens all = r.all();
    x.record_mean_nll = fisher_unlearn::record_mean_nll(model, std::span<const Token>(all));
    if (!heldout_nlls.empty()) {
      const double mine[1] = {x.record_mean_nll};
      x.membership_score = fisher_unlearn::loss_attack_auc(mine, heldout_nlls).auc;
    }
    m.records.push_back(std::move(x));
    progress.tick(i + 1);
  }
  m.seconds = clock.seconds();
  return m;
}

/// The stopping rule's check on one record (cheaper than measure(): no membership, no held-out).
struct RuleCheck {
  bool met = false;
  double worst_percentile = 1.0;  ///< rank rule: the smallest percentile over records
  double worst_nll = 0.0;         ///< nll rule: the smallest secret NLL per token over records
  std::size_t extracted = 0;
};

inline RuleCheck check_rule(const LlamaModel& model, const std::vector<Record>& records,
                            const std::vector<Tokens>& shared_candidates, const Options& o) {
  RuleCheck c;
  c.worst_nll = std::numeric_limits<double>::infinity();
  bool all_met = true;
  for (const Record& r : records) {
    throw_if_cancelled();
    if (o.stop == "nll") {
      const auto l = fisher_unlearn::continuation_likelihood(model, std::span<const Token>(r.prefix),
                                                             std::span<const Token>(r.secret));
      c.worst_nll = std::min(c.worst_nll, l.mean_nll);
      all_met = all_met && l.mean_nll >= o.target_nll;
      continue;
    }
    fisher_unlearn::GreedyExtractionOptions go;
    go.stop_at_first_mismatch = true;
    const bool extracted = fisher_unlearn::greedy_extraction(model, std::span<const Token>(r.prefix),
                                                             std::span<const Token>(r.secret), go)
                               .extracted;
    c.extracted += extracted ? 1 : 0;
    const std::vector<Tokens>& cands = r.candidates.empty() ? shared_candidates : r.candidates;
    const auto rank = fisher_unlearn::continuation_rank(model, std::span<const Token>(r.prefix),
                                                        std::span<const Token>(r.secret), std::span<const Tokens>(cands));
    c.worst_percentile = std::min(c.worst_percentile, rank.percentile);
    all_met = all_met && !extracted && rank.percentile >= o.target_percentile;
  }
  c.met = all_met;
  return c;
}

}  // namespace unlearn_gguf
