// unlearn_lm measurements of one model state: validation perplexity; per canary the log-perplexity,
// exposure (sampled estimate, exact pruned rank above a threshold), greedy extraction and the
// over-unlearning flag; the membership-inference AUC (plain and calibrated on the retrained model).
#pragma once

#include "data.hpp"

#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/membership.hpp"
#include "fisher_unlearn/models/transformer_training.hpp"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <limits>
#include <numeric>

namespace unlearn_lm {

/// −Σᵢ log₂ p(secret token i | prefix, earlier secret tokens), from a decode state after the prefix.
inline double secret_log_perplexity(const Model& model, const Model::DecodeState& prefix_state,
                                    std::span<const Token> secret, std::vector<float>& buf) {
  Model::DecodeState st = prefix_state;
  double bits = 0;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    model.log_probs(st, buf);
    bits -= std::min(0.0, static_cast<double>(buf[static_cast<std::size_t>(secret[i])])) / std::log(2.0);
    if (i + 1 < secret.size()) model.advance(st, secret[i]);
  }
  return bits;
}

/// Log-perplexities (bits) of candidate secrets (token sequences) after one decode state, decoding
/// every common prefix of the candidates' tokens once: the candidates are sorted and their token trie
/// walked depth first, a state copied only where the trie branches. Each value is bitwise the one
/// secret_log_perplexity gives (the same decode steps on the same states, the bits summed in the same
/// order); for 256 random six-digit PINs it takes ~1/3 fewer decode steps. The subtrees below the first
/// branching token are handed out dynamically to `threads` workers (each value is written by one
/// worker, so the result does not depend on the thread count, and a descheduled worker does not hold
/// the others up on a shared machine).
class SharedPrefixScorer {
 public:
  SharedPrefixScorer(const Model& model, const Model::DecodeState& root, std::vector<std::vector<Token>> secrets)
      : model_(&model), seqs_(std::move(secrets)), order_(seqs_.size()), out_(seqs_.size(), std::nan("")) {
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    std::sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t b) {
      return std::lexicographical_compare(seqs_[a].begin(), seqs_[a].end(), seqs_[b].begin(), seqs_[b].end());
    });
    // Follow the trie's single-child chain from the root (a format's fixed leading separators), then cut
    // the range into one task per token at the first depth where the candidates differ.
    trunk_ = root;
    std::size_t lo = 0;
    const std::size_t hi = order_.size();
    for (;;) {
      while (lo < hi && seqs_[order_[lo]].size() == depth_) out_[order_[lo++]] = bits_;
      if (lo == hi) return;
      const Token t = seqs_[order_[lo]][depth_];
      if (seqs_[order_[hi - 1]][depth_] != t || seqs_[order_[lo]].size() == depth_ + 1) break;
      bits_ = step_bits(trunk_, t, bits_);
      model.advance(trunk_, t);
      ++depth_;
    }
    for (std::size_t a = lo; a < hi;) {
      std::size_t b = a + 1;
      while (b < hi && seqs_[order_[b]][depth_] == seqs_[order_[a]][depth_]) ++b;
      tasks_.push_back({a, b});
      a = b;
    }
  }

  std::size_t tasks() const { return tasks_.size(); }

  /// Runs task k (thread-safe for distinct k).
  void run_task(std::size_t k) {
    Model::DecodeState st = trunk_;
    child(st, depth_, tasks_[k].first, tasks_[k].second, bits_);
  }

  /// Every task on up to `threads` workers; returns the values in the candidates' order.
  std::vector<double> run(std::size_t threads) {
    std::atomic<std::size_t> next{0};
    run_workers(threads, tasks_.size(), [&](std::size_t, std::size_t) {
      for (std::size_t k = next++; k < tasks_.size(); k = next++) run_task(k);
    });
    return out_;
  }

  const std::vector<double>& values() const { return out_; }

 private:
  static double step_bits(const Model::DecodeState& st, Token t, double bits) {
    bits -= std::min(0.0, static_cast<double>(st.log_probs[static_cast<std::size_t>(t)])) / std::log(2.0);
    return bits;
  }

  // Candidates order_[a, b) share their first depth + 1 tokens; st has consumed the first depth (and
  // may be consumed: the caller no longer needs it); bits is their shared sum over those depth tokens.
  void child(Model::DecodeState& st, std::size_t depth, std::size_t a, std::size_t b, double bits) {
    const Token t = seqs_[order_[a]][depth];
    const double here = step_bits(st, t, bits);
    std::size_t lo = a;
    while (lo < b && seqs_[order_[lo]].size() == depth + 1) out_[order_[lo++]] = here;  // sorted: the ended ones first
    if (lo == b) return;
    model_->advance(st, t);
    for (std::size_t c = lo; c < b;) {
      std::size_t e = c + 1;
      while (e < b && seqs_[order_[e]][depth + 1] == seqs_[order_[c]][depth + 1]) ++e;
      if (e == b) {
        child(st, depth + 1, c, e, here);  // the last branch takes the state itself
      } else {
        Model::DecodeState copy = st;
        child(copy, depth + 1, c, e, here);
      }
      c = e;
    }
  }

  const Model* model_;
  std::vector<std::vector<Token>> seqs_;
  std::vector<std::size_t> order_;
  std::vector<double> out_;
  Model::DecodeState trunk_;
  std::size_t depth_ = 0;
  double bits_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> tasks_;
};

/// The candidates' secret token sequences in `space`.
inline std::vector<std::vector<Token>> candidate_tokens(const fu::CanarySpace& space, const std::vector<fu::Canary>& cands) {
  std::vector<std::vector<Token>> out(cands.size());
  for (std::size_t i = 0; i < cands.size(); ++i) space.secret_tokens(cands[i], out[i]);
  return out;
}

/// Log-perplexities (bits) of `n` seeded uniformly random candidates of the canary's format.
inline std::vector<double> candidate_log_perplexities(const Model& model, const fu::CanarySpace& space, std::size_t n,
                                                      std::uint64_t seed, std::size_t threads) {
  SharedPrefixScorer scorer(model, model.begin_decode(space.prefix_tokens()),
                            candidate_tokens(space, space.format().generate(seed, n)));
  return scorer.run(threads);
}

/// The same values as candidate_log_perplexities, one candidate at a time (the reference of the tests).
inline std::vector<double> candidate_log_perplexities_unshared(const Model& model, const fu::CanarySpace& space,
                                                               std::size_t n, std::uint64_t seed, std::size_t threads) {
  const Model::DecodeState base = model.begin_decode(space.prefix_tokens());
  const std::vector<fu::Canary> candidates = space.format().generate(seed, n);
  std::vector<double> out(n);
  run_workers(threads, n, [&](std::size_t t, std::size_t workers) {
    std::vector<float> buf(model.vocab_size());
    std::vector<Token> tokens;
    for (std::size_t i = t; i < n; i += workers) {
      space.secret_tokens(candidates[i], tokens);
      out[i] = secret_log_perplexity(model, base, tokens, buf);
    }
  });
  return out;
}

/// exposure ≈ −log₂ of the fraction of candidates more likely than the canary, ties counted ½ (the
/// mid-rank rule of exposure.hpp), floored at half a candidate: saturates at log₂(2n) bits.
inline double sampled_exposure(double canary_bits, const std::vector<double>& candidate_bits) {
  double above = 0;
  for (double b : candidate_bits) above += b < canary_bits ? 1.0 : (b == canary_bits ? 0.5 : 0.0);
  return -std::log2(std::max(above, 0.5) / static_cast<double>(candidate_bits.size()));
}

struct CanaryMeasurement {
  double log_perplexity = std::nan("");  ///< bits
  double exposure = std::nan("");        ///< bits: exact (pruned count, mid-rank) or the sampled estimate
  bool exact = false;
  double mid_rank = std::nan("");        ///< exact only
  double fraction_less_likely = std::nan("");  ///< sampled candidates less likely than the canary
  bool over_unlearned = false;           ///< below the 1st percentile of the candidates' likelihood
  bool extracted = false;                ///< greedy decoding from the prefix emits the secret
  std::size_t slots_extracted = 0;
};

struct Evaluation {
  double valid_loss = std::nan("");      ///< nats per byte
  double valid_perplexity = std::nan("");
  std::vector<CanaryMeasurement> canaries;  ///< indexed like Dataset::canaries; unmeasured ones stay NaN
  double mia_auc = std::nan("");         ///< loss attack: reported canaries vs never-seen candidates
  double mia_calibrated_auc = std::nan("");  ///< the same, calibrated on the retrained model
  double seconds = 0;
};

/// What the membership-inference attack compares: never-seen candidates of each format (seeded, the
/// same for every model of a dataset), and the reference model's log-perplexities for calibration.
struct MiaReference {
  std::vector<std::vector<fu::Canary>> nonmembers;  ///< per format (Options::formats order)
  std::vector<double> reference_member_bits;        ///< per dataset canary (NaN where not measured)
  std::vector<std::vector<double>> reference_nonmember_bits;  ///< per format
  bool has_reference = false;
};

inline std::size_t format_index(const Options& opt, const std::string& f) {
  return static_cast<std::size_t>(std::find(opt.formats.begin(), opt.formats.end(), f) - opt.formats.begin());
}

inline std::vector<double> score_candidates(const Model& model, const fu::CanarySpace& space,
                                            const std::vector<fu::Canary>& cands, std::size_t threads) {
  SharedPrefixScorer scorer(model, model.begin_decode(space.prefix_tokens()), candidate_tokens(space, cands));
  return scorer.run(threads);
}

inline MiaReference make_mia_reference(const Options& opt, const Dataset& ds) {
  MiaReference m;
  for (std::size_t f = 0; f < opt.formats.size(); ++f)
    m.nonmembers.push_back(canary_format(opt.formats[f]).generate(ds.seed * 4099 + 77 + f, static_cast<std::size_t>(opt.mia_nonmembers)));
  m.reference_member_bits.assign(ds.canaries.size(), std::nan(""));
  return m;
}

/// Fills the reference (retrained) model's log-perplexities of the members and non-members.
inline void calibrate_mia(MiaReference& m, const Model& reference, const Options& opt, const Dataset& ds) {
  for (std::size_t i = 0; i < ds.canaries.size(); ++i)
    m.reference_member_bits[i] = fu::canary_log_perplexity_bits(reference, *ds.canaries[i].space, ds.canaries[i].secret);
  m.reference_nonmember_bits.clear();
  for (std::size_t f = 0; f < opt.formats.size(); ++f) {
    fu::CanarySpace space(canary_format(opt.formats[f]), fu::ByteTokenizer{});
    m.reference_nonmember_bits.push_back(score_candidates(reference, space, m.nonmembers[f], static_cast<std::size_t>(opt.threads)));
  }
  m.has_reference = true;
}

/// Measures `model` on the canaries `which` (exposure, extraction, over-unlearning) and the validation
/// text; the MIA over the members in `which`.
inline Evaluation measure_model(const Model& model, const Dataset& ds, const Options& opt, const std::vector<std::size_t>& which,
                           const MiaReference& mia, const std::string& what, bool quiet = false) {
  const double t0 = now_seconds();
  Evaluation e;
  const auto lm = fu::evaluate_language_model(model, std::span<const Token>(ds.valid));
  e.valid_loss = lm.mean_loss;
  e.valid_perplexity = lm.perplexity;
  e.canaries.resize(ds.canaries.size());
  Model serial = model;  // one canary per thread, each running single-threaded model calls
  serial.set_execution({1, 8});
  parallel_for(which.size(), static_cast<std::size_t>(opt.threads), [&](std::size_t w) {
    const std::size_t i = which[w];
    const PlantedCanary& c = ds.canaries[i];
    CanaryMeasurement& m = e.canaries[i];
    m.log_perplexity = fu::canary_log_perplexity_bits(serial, *c.space, c.secret);
    const auto sample = candidate_log_perplexities(serial, *c.space, static_cast<std::size_t>(opt.estimate_candidates),
                                                   ds.seed * 7919 + i, 1);
    m.exposure = sampled_exposure(m.log_perplexity, sample);
    const auto over = fu::over_unlearning_check(m.log_perplexity, sample, 0.01);
    m.fraction_less_likely = over.fraction_less_likely;
    m.over_unlearned = over.flagged;
    if (m.exposure >= opt.exact_above) {
      const fu::ExposureResult r = fu::PrunedExposure{}.measure(serial, *c.space, c.secret);
      m.exposure = r.exposure_bits;
      m.exact = true;
      m.mid_rank = r.mid_rank;
    }
    const auto x = fu::extract_greedy(serial, *c.space, c.secret);
    m.extracted = x.reproduced;
    m.slots_extracted = x.slots_matched;
  });
  // MIA: members = the measured canaries' secrets, non-members = never-seen candidates of the same formats.
  std::vector<double> mt, mr, nt, nr;
  for (std::size_t i : which) {
    mt.push_back(e.canaries[i].log_perplexity);
    mr.push_back(mia.reference_member_bits[i]);
  }
  for (std::size_t f = 0; f < opt.formats.size(); ++f) {
    fu::CanarySpace space(canary_format(opt.formats[f]), fu::ByteTokenizer{});
    const auto bits = score_candidates(model, space, mia.nonmembers[f], static_cast<std::size_t>(opt.threads));
    nt.insert(nt.end(), bits.begin(), bits.end());
    if (mia.has_reference) nr.insert(nr.end(), mia.reference_nonmember_bits[f].begin(), mia.reference_nonmember_bits[f].end());
  }
  if (!which.empty()) {
    e.mia_auc = fu::loss_attack_auc(mt, nt).auc;
    if (mia.has_reference) e.mia_calibrated_auc = fu::calibrated_loss_attack_auc(mt, mr, nt, nr).auc;
  }
  e.seconds = now_seconds() - t0;
  if (!quiet) {
    std::cout << "[eval] " << what << ": valid ppl " << fmt(e.valid_perplexity) << ", exposure";
    for (std::size_t i : which)
      std::cout << " " << ds.canaries[i].label() << "=" << fmt(e.canaries[i].exposure, 1) << (e.canaries[i].exact ? "" : "~");
    std::cout << ", MIA AUC " << fmt(e.mia_auc, 2) << " (" << fmt(e.seconds, 1) << " s)\n";
  }
  return e;
}

/// The knob search's score on the TUNING canaries only: mean and largest sampled exposure (the same
/// seeded candidates for every method), plus a probe perplexity (the first windows of the validation text).
struct SelectionScore {
  double mean = 0, max = 0;
  double probe_perplexity = std::nan("");
};

inline SelectionScore selection_score(const Model& model, const Dataset& ds, const Options& opt,
                                      const std::vector<std::size_t>& tuning) {
  SelectionScore s;
  Model serial = model;
  serial.set_execution({1, 8});
  // One pool of work for every tuning canary: its own log-perplexity, and the subtrees of its
  // candidates' trie (SharedPrefixScorer), taken dynamically by the workers.
  std::vector<SharedPrefixScorer> scorers;
  scorers.reserve(tuning.size());
  std::vector<std::pair<std::size_t, std::size_t>> work;  // (tuning index, task); task npos: the canary itself
  for (std::size_t w = 0; w < tuning.size(); ++w) {
    const auto& c = ds.canaries[tuning[w]];
    scorers.emplace_back(serial, serial.begin_decode(c.space->prefix_tokens()),
                         candidate_tokens(*c.space, c.space->format().generate(ds.seed * 104729 + tuning[w],
                                                                               static_cast<std::size_t>(opt.selection_candidates))));
    work.emplace_back(w, std::numeric_limits<std::size_t>::max());
    for (std::size_t k = 0; k < scorers.back().tasks(); ++k) work.emplace_back(w, k);
  }
  std::vector<double> own(tuning.size());
  std::atomic<std::size_t> next{0};
  run_workers(static_cast<std::size_t>(opt.threads), work.size(), [&](std::size_t, std::size_t) {
    for (std::size_t i = next++; i < work.size(); i = next++) {
      const auto [w, k] = work[i];
      if (k == std::numeric_limits<std::size_t>::max())
        own[w] = fu::canary_log_perplexity_bits(serial, *ds.canaries[tuning[w]].space, ds.canaries[tuning[w]].secret);
      else
        scorers[w].run_task(k);
    }
  });
  for (std::size_t w = 0; w < tuning.size(); ++w) {
    const double v = sampled_exposure(own[w], scorers[w].values());
    s.mean += v / static_cast<double>(tuning.size());
    s.max = std::max(s.max, v);
  }
  s.probe_perplexity = fu::evaluate_language_model(model, std::span<const Token>(ds.valid), 0, 64).perplexity;
  return s;
}

/// selection_score as it was computed before SharedPrefixScorer (one canary per worker, one candidate
/// at a time): the reference of the tests, which check that both give the same numbers.
inline SelectionScore selection_score_unshared(const Model& model, const Dataset& ds, const Options& opt,
                                               const std::vector<std::size_t>& tuning) {
  SelectionScore s;
  Model serial = model;
  serial.set_execution({1, 8});
  std::vector<double> e(tuning.size());
  parallel_for(tuning.size(), static_cast<std::size_t>(opt.threads), [&](std::size_t w) {
    const auto& c = ds.canaries[tuning[w]];
    const auto sample = candidate_log_perplexities_unshared(serial, *c.space, static_cast<std::size_t>(opt.selection_candidates),
                                                            ds.seed * 104729 + tuning[w], 1);
    e[w] = sampled_exposure(fu::canary_log_perplexity_bits(serial, *c.space, c.secret), sample);
  });
  for (double v : e) {
    s.mean += v / static_cast<double>(e.size());
    s.max = std::max(s.max, v);
  }
  s.probe_perplexity = fu::evaluate_language_model(model, std::span<const Token>(ds.valid), 0, 64).perplexity;
  return s;
}

}  // namespace unlearn_lm
