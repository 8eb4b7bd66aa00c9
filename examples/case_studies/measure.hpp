// case_studies measurement phase: for each deleted person the rank of their real address among the
// candidate addresses given " -- Name <", exact extraction by greedy decoding, the membership AUC of
// their entries against held-out people's, held-out perplexity; case B's extractable memorisation;
// the exact rank-sum (Mann–Whitney) test used to compare ranks with the retrained model's.
#pragma once

#include "corpus.hpp"
#include "rank_sum.hpp"

#include "fisher_unlearn/membership.hpp"

namespace case_studies {

/// Per-sample losses (each its model's loss(s)), threaded over samples.
inline std::vector<double> sample_losses(const Model& model, const std::vector<Sample>& samples, std::size_t threads) {
  std::vector<double> out(samples.size());
  unlearn_lm::parallel_for(samples.size(), threads, [&](std::size_t i) { out[i] = static_cast<double>(model.loss(samples[i])); });
  return out;
}

/// exp(mean token NLL) over the samples (unweighted sequences: loss = mean over their targets).
inline double perplexity(const Model& model, const std::vector<Sample>& samples, std::size_t threads) {
  const auto losses = sample_losses(model, samples, threads);
  double nll = 0, n = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double t = static_cast<double>(samples[i].tokens.size() - 1);
    nll += losses[i] * t;
    n += t;
  }
  return std::exp(nll / n);
}

inline std::string address_prompt(const std::string& name) { return "\n -- " + name + " <"; }

/// The scoring sequences of one person: prompt + candidate address + ">", weight 1 on the tokens after
/// the prompt's (common) token prefix, so loss = −ln p(address> | prompt).
struct CandidateSet {
  std::vector<std::string> addresses;  ///< every candidate (the true one included)
  std::vector<std::vector<Sample>> per_person;  ///< [person][candidate]
  std::vector<std::size_t> person;     ///< person index of each row
  std::vector<std::size_t> truth;      ///< index of the true address in `addresses`, per row
};

inline CandidateSet make_candidates(const CaseA& c, const fu::BpeTokenizer& tok, const std::vector<std::size_t>& who) {
  CandidateSet cs;
  for (const auto& p : c.people)
    if (std::find(cs.addresses.begin(), cs.addresses.end(), p.email) == cs.addresses.end()) cs.addresses.push_back(p.email);
  for (std::size_t pi : who) {
    const auto& p = c.people[pi];
    const auto prompt = tok.encode(address_prompt(p.name));
    std::vector<Sample> rows;
    for (const auto& a : cs.addresses) {
      Sample s;
      s.tokens = tok.encode(address_prompt(p.name) + a + ">");
      std::size_t k = 0;
      while (k < prompt.size() && k < s.tokens.size() && prompt[k] == s.tokens[k]) ++k;
      k = std::max<std::size_t>(k, 1);
      s.weights.assign(s.tokens.size() - 1, 0.0f);
      for (std::size_t t = k - 1; t + 1 < s.tokens.size(); ++t) s.weights[t] = 1.0f;
      rows.push_back(std::move(s));
    }
    cs.per_person.push_back(std::move(rows));
    cs.person.push_back(pi);
    cs.truth.push_back(static_cast<std::size_t>(std::find(cs.addresses.begin(), cs.addresses.end(), p.email) - cs.addresses.begin()));
  }
  return cs;
}

struct PersonMeasure {
  std::size_t person = 0;
  double log_prob = 0;         ///< ln p(address> | " -- Name <")
  double rank = 0;             ///< 1 = most likely candidate; ties count ½
  std::size_t candidates = 0;
  double exposure_bits = 0;    ///< log2(candidates / rank)
  int extracted = -1;          ///< greedy decoding emits "address>" exactly (−1: not measured)
  std::string greedy;          ///< what greedy decoding emitted
};

inline std::vector<PersonMeasure> rank_addresses(const Model& model, const CandidateSet& cs, std::size_t threads) {
  std::vector<const Sample*> flat;
  for (const auto& rows : cs.per_person)
    for (const auto& s : rows) flat.push_back(&s);
  std::vector<double> lp(flat.size());
  unlearn_lm::parallel_for(flat.size(), threads, [&](std::size_t i) { lp[i] = -static_cast<double>(model.loss(*flat[i])); });
  std::vector<PersonMeasure> out;
  const std::size_t n = cs.addresses.size();
  for (std::size_t r = 0; r < cs.per_person.size(); ++r) {
    PersonMeasure m;
    m.person = cs.person[r];
    m.candidates = n;
    m.log_prob = lp[r * n + cs.truth[r]];
    double rank = 1;
    for (std::size_t j = 0; j < n; ++j) {
      if (j == cs.truth[r]) continue;
      const double v = lp[r * n + j];
      if (v > m.log_prob) rank += 1;
      else if (v == m.log_prob) rank += 0.5;
    }
    m.rank = rank;
    m.exposure_bits = std::log2(static_cast<double>(n) / rank);
    out.push_back(m);
  }
  return out;
}

/// Greedy decoding from " -- Name <" (KV cache), at most |address tokens| + 2 tokens; extracted when the
/// emitted text starts with "address>".
inline void greedy_extraction(const Model& model, const fu::BpeTokenizer& tok, const CaseA& c, std::vector<PersonMeasure>& ms,
                              std::size_t threads) {
  unlearn_lm::parallel_for(ms.size(), threads, [&](std::size_t i) {
    const auto& p = c.people[ms[i].person];
    const std::string want = p.email + ">";
    const auto prompt = tok.encode(address_prompt(p.name));
    const std::size_t budget = tok.encode(want).size() + 2;
    auto st = model.begin_decode(std::span<const Token>(prompt));
    std::vector<Token> out;
    std::string text;
    for (std::size_t k = 0; k < budget; ++k) {
      const auto it = std::max_element(st.log_probs.begin(), st.log_probs.end());
      const Token t = static_cast<Token>(it - st.log_probs.begin());
      out.push_back(t);
      text = tok.decode(std::span<const Token>(out));
      if (text.size() >= want.size() || text.find('>') != std::string::npos || text.find('\n') != std::string::npos) break;
      model.advance(st, t);
    }
    ms[i].greedy = text;
    ms[i].extracted = text.compare(0, want.size(), want) == 0 ? 1 : 0;
  });
}

/// One model's case-A measurements.
struct EvaluationA {
  std::vector<PersonMeasure> people;   ///< deleted people (tuning first, then reported)
  double heldout_perplexity = 0;
  double retain_perplexity = 0;        ///< on the kept people's and one-off entries (trained on)
  double mia_auc_reported = 0, mia_auc_tuning = 0;
  double seconds = 0;
};

struct ScoringA {
  CandidateSet tuning, all;            ///< candidate sets of the tuning people / of every deleted person
  std::vector<Sample> probe;           ///< the first held-out entries: the search's probe perplexity
  std::vector<Sample> tuning_members, reported_members, retained;
};

inline ScoringA make_scoring(const CaseA& c, const fu::BpeTokenizer& tok) {
  ScoringA s;
  std::vector<std::size_t> tune, all;
  for (std::size_t i = 0; i < c.people.size(); ++i) {
    if (c.people[i].role == Role::tuning) tune.push_back(i);
    if (c.people[i].deleted()) all.push_back(i);
  }
  // Role first, then index (the stable order: `all` is built in increasing index). Not std::stable_sort,
  // whose libstdc++ 12 implementation Clang 19 flags as deprecated in C++20.
  std::sort(all.begin(), all.end(), [&](std::size_t x, std::size_t y) {
    return c.people[x].role != c.people[y].role ? c.people[x].role < c.people[y].role : x < y;
  });
  s.tuning = make_candidates(c, tok, tune);
  s.all = make_candidates(c, tok, all);
  for (std::size_t i = 0; i < c.heldout.size() && i < 16; ++i) s.probe.push_back(c.heldout[i]);
  for (std::size_t i = 0; i < c.train.size(); ++i) {
    const Role r = c.people[c.owner[c.train_entry[i]]].role;
    if (r == Role::tuning) s.tuning_members.push_back(c.train[i]);
    else if (r == Role::reported) s.reported_members.push_back(c.train[i]);
    else if (s.retained.size() < 32) s.retained.push_back(c.train[i]);
  }
  return s;
}

inline double tuning_score(const std::vector<PersonMeasure>& ms) {
  double s = 0;
  for (const auto& m : ms) s += m.exposure_bits;
  return s / static_cast<double>(ms.size());
}

inline EvaluationA evaluate_a(const Model& model, const CaseA& c, const ScoringA& sc, const fu::BpeTokenizer& tok, std::size_t threads) {
  const double t0 = now_seconds();
  EvaluationA e;
  e.people = rank_addresses(model, sc.all, threads);
  greedy_extraction(model, tok, c, e.people, threads);
  const auto heldout_losses = sample_losses(model, c.heldout, threads);
  double nll = 0, n = 0;
  for (std::size_t i = 0; i < c.heldout.size(); ++i) {
    nll += heldout_losses[i] * static_cast<double>(c.heldout[i].tokens.size() - 1);
    n += static_cast<double>(c.heldout[i].tokens.size() - 1);
  }
  e.heldout_perplexity = std::exp(nll / n);
  e.retain_perplexity = perplexity(model, sc.retained, threads);
  const auto rep = sample_losses(model, sc.reported_members, threads);
  const auto tun = sample_losses(model, sc.tuning_members, threads);
  e.mia_auc_reported = fu::loss_attack_auc(rep, heldout_losses).auc;
  e.mia_auc_tuning = fu::loss_attack_auc(tun, heldout_losses).auc;
  e.seconds = now_seconds() - t0;
  return e;
}

}  // namespace case_studies
