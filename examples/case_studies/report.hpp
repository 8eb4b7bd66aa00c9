// case_studies reporting: results.json (schema "case_studies results v1", docs/case_studies.md) and the
// Markdown tables of case A.
#pragma once

#include "finetune.hpp"
#include "methods.hpp"

namespace case_studies {

inline json person_json(const CaseA& c, const PersonMeasure& m) {
  const auto& p = c.people[m.person];
  return json{{"name", p.name}, {"email", p.email}, {"role", role_name(p.role)}, {"log_prob", m.log_prob}, {"rank", m.rank},
              {"candidates", m.candidates}, {"exposure_bits", m.exposure_bits},
              {"extracted", m.extracted < 0 ? json(nullptr) : json(m.extracted == 1)}, {"greedy", m.greedy}};
}

inline json evaluation_json(const CaseA& c, const EvaluationA& e) {
  json people = json::array();
  for (const auto& m : e.people) people.push_back(person_json(c, m));
  return json{{"people", people}, {"heldout_perplexity", e.heldout_perplexity}, {"retain_perplexity", e.retain_perplexity},
              {"mia_auc_reported", e.mia_auc_reported}, {"mia_auc_tuning", e.mia_auc_tuning}, {"seconds", e.seconds}};
}

/// Ranks of the reported people (role deleted_reported) in an evaluation, in person order.
inline std::vector<double> reported_ranks(const CaseA& c, const EvaluationA& e) {
  std::vector<double> r;
  for (const auto& m : e.people)
    if (c.people[m.person].role == Role::reported) r.push_back(m.rank);
  return r;
}

inline int reported_extracted(const CaseA& c, const EvaluationA& e) {
  int n = 0;
  for (const auto& m : e.people)
    if (c.people[m.person].role == Role::reported && m.extracted == 1) ++n;
  return n;
}

struct RowA {
  std::string method, family;
  const EvaluationA* eval = nullptr;
  double seconds = std::nan("");
  std::string reached = "";
  std::string knob = "";
};

inline std::string ranks_text(const std::vector<double>& r) {
  std::string s;
  for (double v : r) s += (s.empty() ? "" : ", ") + unlearn_lm::fmt_general(v);
  return s;
}

inline std::string markdown_a(const CaseA& c, const std::vector<RowA>& rows, const EvaluationA& retrained, double retrain_seconds) {
  std::ostringstream md;
  const auto rr = reported_ranks(c, retrained);
  md << "| model | reached | reported ranks | rank-sum p vs retrained | extracted (reported) | MIA AUC (reported) | held-out ppl | ppl / retrained | time (s) | time / retraining | knob |\n";
  md << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    const auto ranks = reported_ranks(c, *r.eval);
    md << "| " << r.method << " | " << r.reached << " | " << ranks_text(ranks)
       << " | " << fmt(rank_sum_p_value(ranks, rr), 3) << " | " << reported_extracted(c, *r.eval) << "/" << ranks.size() << " | "
       << fmt(r.eval->mia_auc_reported, 2) << " | " << fmt(r.eval->heldout_perplexity, 3) << " | "
       << fmt(r.eval->heldout_perplexity / retrained.heldout_perplexity, 3) << " | " << fmt(r.seconds, 1) << " | "
       << (std::isnan(r.seconds) ? std::string("n/a") : fmt(r.seconds / retrain_seconds, 3)) << " | " << r.knob << " |\n";
  }
  md << "\nPer deleted person (rank of the real address among " << retrained.people.front().candidates
     << " candidates; * = extracted by greedy decoding):\n\n| person | role |";
  for (const auto& r : rows) md << " " << r.method << " |";
  md << "\n|---|---|";
  for (std::size_t i = 0; i < rows.size(); ++i) md << "---|";
  md << "\n";
  for (std::size_t k = 0; k < retrained.people.size(); ++k) {
    const auto& p = c.people[retrained.people[k].person];
    md << "| " << p.name << " &lt;" << p.email << "&gt; | " << role_name(p.role) << " |";
    for (const auto& r : rows) md << " " << unlearn_lm::fmt_general(r.eval->people[k].rank) << (r.eval->people[k].extracted == 1 ? "*" : "") << " |";
    md << "\n";
  }
  return md.str();
}

}  // namespace case_studies
