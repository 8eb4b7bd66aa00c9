// unlearn_lm reporting: the summary over seeds per method, results.json (schema in docs/experiment.md),
// results.md, and the gnuplot plots (privacy–utility frontier per dataset, repeated deletion).
#pragma once

#include "protocol.hpp"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>

namespace unlearn_lm {

/// A point added to the frontier plot and table from outside the driver (e.g. DP-SGD models, family
/// "dp"): its exposure on the canaries and validation perplexity, measured by whoever adds it.
struct ExtraPoint {
  std::string dataset, label, family = "dp";
  double exposure_bits = std::nan("");
  double valid_perplexity = std::nan("");
  double seconds = std::nan("");
};

/// Reads extra frontier points from a JSON list of {"dataset", "label", "family", "exposure_bits",
/// "valid_perplexity", "seconds"?}; throws FileFormatError on a malformed file.
inline std::vector<ExtraPoint> read_extra_points(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw fu::IoError("cannot open --frontier-points file " + path);
  std::vector<ExtraPoint> out;
  try {
    const json j = json::parse(in);
    for (const auto& p : j) {
      ExtraPoint e;
      e.dataset = p.at("dataset").get<std::string>();
      e.label = p.at("label").get<std::string>();
      e.family = p.value("family", std::string("dp"));
      e.exposure_bits = p.at("exposure_bits").get<double>();
      e.valid_perplexity = p.at("valid_perplexity").get<double>();
      if (p.contains("seconds")) e.seconds = p.at("seconds").get<double>();
      out.push_back(e);
    }
  } catch (const json::exception& e) {
    throw fu::FileFormatError("--frontier-points " + path + ": " + e.what() +
                              "; expected a list of {dataset, label, family, exposure_bits, valid_perplexity}");
  }
  return out;
}

struct DatasetRuns {
  std::string corpus;
  std::vector<SeedRun> seeds;
};

struct MethodSummary {
  std::string dataset, method, family, knob;
  std::size_t seeds_ok = 0, seeds_total = 0;
  bool reached = false;              ///< held-out mean (over seeds) ≤ target and every held-out canary ≤ ceiling
  std::size_t reached_on_tuning = 0; ///< seeds whose search reached the target on the tuning canaries
  MeanSd heldout_exposure, tuning_exposure, valid_perplexity, ppl_ratio, seconds, time_ratio, mia_auc, mia_calibrated_auc;
  double heldout_max = std::nan("");
  /// At the selected point: retain KL from the trained model (measured, and ½ΔᵀF_RΔ predicted), and where
  /// the charged time went (prepare = F_R and set-up, steps, stopping checks).
  MeanSd measured_kl, predicted_kl, prepare_seconds, step_seconds, check_seconds;
  std::size_t over_unlearned = 0, extracted = 0, canaries_measured = 0;
  std::vector<double> knobs;
};

inline double mean_over(const Evaluation& e, const std::vector<std::size_t>& idx, bool take_max = false) {
  double s = 0, m = -std::numeric_limits<double>::infinity();
  for (std::size_t i : idx) {
    s += e.canaries[i].exposure;
    m = std::max(m, e.canaries[i].exposure);
  }
  return take_max ? m : s / static_cast<double>(idx.size());
}

inline MethodSummary summarise(const DatasetRuns& d, const std::string& method, const Options& opt) {
  MethodSummary m;
  m.dataset = d.corpus;
  m.method = method;
  std::vector<double> he, te, ppl, ratio, sec, tr, mia, miac, mkl, pkl, prep, steps, checks;
  double hmax = -std::numeric_limits<double>::infinity();
  m.seeds_total = d.seeds.size();
  for (const auto& s : d.seeds) {
    const Evaluation* e = nullptr;
    double seconds = std::nan("");
    if (method == "untouched") {
      m.family = "reference";
      e = &s.before;
    } else if (method == "retrain") {
      m.family = "reference";
      if (!s.has_retrain) continue;
      e = &s.retrained;
      seconds = s.retraining.seconds;
    } else {
      for (const auto& r : s.methods)
        if (r.name == method) {
          m.family = to_string(r.family);
          m.knob = r.knob;
          if (!r.error.empty()) break;
          e = &r.after;
          seconds = r.seconds;
          m.reached_on_tuning += r.reached_on_tuning ? 1 : 0;
          m.knobs.push_back(r.points[*r.selected].knob);
          const auto& sp = r.points[*r.selected];
          if (std::isfinite(sp.measured_kl)) mkl.push_back(sp.measured_kl);
          if (std::isfinite(sp.predicted_kl)) pkl.push_back(sp.predicted_kl);
          prep.push_back(r.prepare_seconds);
          steps.push_back(sp.seconds);
          checks.push_back(r.seconds - r.prepare_seconds - sp.seconds);
        }
    }
    if (!e) continue;
    ++m.seeds_ok;
    he.push_back(mean_over(*e, s.reported));
    hmax = std::max(hmax, mean_over(*e, s.reported, true));
    te.push_back(mean_over(*e, s.tuning));
    ppl.push_back(e->valid_perplexity);
    if (s.has_retrain) {
      ratio.push_back(e->valid_perplexity / s.retrained.valid_perplexity);
      tr.push_back(seconds / s.retraining.seconds);
    }
    sec.push_back(seconds);
    mia.push_back(e->mia_auc);
    miac.push_back(e->mia_calibrated_auc);
    for (std::size_t i : s.reported) {
      ++m.canaries_measured;
      m.over_unlearned += e->canaries[i].over_unlearned ? 1 : 0;
      m.extracted += e->canaries[i].extracted ? 1 : 0;
    }
  }
  m.heldout_exposure = mean_sd(he);
  m.tuning_exposure = mean_sd(te);
  m.valid_perplexity = mean_sd(ppl);
  m.ppl_ratio = mean_sd(ratio);
  m.seconds = mean_sd(sec);
  m.time_ratio = mean_sd(tr);
  m.mia_auc = mean_sd(mia);
  m.mia_calibrated_auc = mean_sd(miac);
  m.measured_kl = mean_sd(mkl);
  m.predicted_kl = mean_sd(pkl);
  m.prepare_seconds = mean_sd(prep);
  m.step_seconds = mean_sd(steps);
  m.check_seconds = mean_sd(checks);
  m.heldout_max = std::isfinite(hmax) ? hmax : std::nan("");
  m.reached = m.seeds_ok == m.seeds_total && m.seeds_ok > 0 && m.heldout_exposure.mean <= opt.exposure_target &&
              m.heldout_max <= opt.exposure_ceiling;
  return m;
}

inline std::vector<std::string> method_order(const DatasetRuns& d) {
  std::vector<std::string> names{"untouched"};
  if (!d.seeds.empty())
    for (const auto& r : d.seeds.front().methods) names.push_back(r.name);
  names.push_back("retrain");
  return names;
}

inline json summary_json(const MethodSummary& m) {
  auto ms = [](const MeanSd& v) { return json{{"mean", v.n ? json(v.mean) : json(nullptr)}, {"sd", v.n ? json(v.sd) : json(nullptr)}, {"n", v.n}}; };
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  return {{"dataset", m.dataset},
          {"method", m.method},
          {"family", m.family},
          {"reached", m.reached},
          {"reached_on_tuning_seeds", m.reached_on_tuning},
          {"seeds_ok", m.seeds_ok},
          {"valid_perplexity_ratio_to_retrain", num(m.ppl_ratio.mean)},
          {"valid_perplexity_ratio_to_retrain_sd", num(m.ppl_ratio.sd)},
          {"time_ratio_to_retrain", num(m.time_ratio.mean)},
          {"time_ratio_to_retrain_sd", num(m.time_ratio.sd)},
          {"heldout_exposure_bits", ms(m.heldout_exposure)},
          {"heldout_exposure_max_bits", num(m.heldout_max)},
          {"tuning_exposure_bits", ms(m.tuning_exposure)},
          {"valid_perplexity", ms(m.valid_perplexity)},
          {"seconds", ms(m.seconds)},
          {"mia_auc", ms(m.mia_auc)},
          {"mia_calibrated_auc", ms(m.mia_calibrated_auc)},
          {"over_unlearned_canaries", m.over_unlearned},
          {"extracted_canaries", m.extracted},
          {"reported_canaries", m.canaries_measured},
          {"knob", m.knob},
          {"knob_values", m.knobs},
          {"measured_retain_kl", ms(m.measured_kl)},
          {"predicted_retain_kl", ms(m.predicted_kl)},
          {"prepare_seconds", ms(m.prepare_seconds)},
          {"step_seconds", ms(m.step_seconds)},
          {"check_seconds", ms(m.check_seconds)}};
}

inline json evaluation_json(const Evaluation& e, const Dataset* ds, const std::vector<std::size_t>& idx) {
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  json j;
  j["valid_loss_nats_per_byte"] = e.valid_loss;
  j["valid_perplexity"] = e.valid_perplexity;
  j["mia_auc"] = num(e.mia_auc);
  j["mia_calibrated_auc"] = num(e.mia_calibrated_auc);
  json cs = json::array();
  for (std::size_t i : idx) {
    const auto& m = e.canaries[i];
    json c{{"index", i},
           {"log_perplexity_bits", m.log_perplexity},
           {"exposure_bits", m.exposure},
           {"exposure_exact", m.exact},
           {"mid_rank", m.exact ? json(m.mid_rank) : json(nullptr)},
           {"fraction_of_candidates_less_likely", m.fraction_less_likely},
           {"over_unlearned", m.over_unlearned},
           {"extracted_greedy", m.extracted},
           {"slots_extracted", m.slots_extracted}};
    if (ds) c["canary"] = ds->canaries[i].label();
    cs.push_back(c);
  }
  j["canaries"] = cs;
  return j;
}

inline json seed_json(const SeedRun& s, const Dataset& ds) {
  auto score = [](const SelectionScore& x) {
    return json{{"mean_bits", x.mean}, {"max_bits", x.max}, {"probe_perplexity", x.probe_perplexity}};
  };
  json j;
  j["seed"] = s.seed;
  j["data"] = {{"train_bytes", s.train_bytes}, {"train_windows", s.train_windows}, {"forget_windows", s.forget_windows},
               {"retain_windows", s.retain_windows}, {"valid_tokens", s.valid_tokens}};
  j["parameters"] = s.num_parameters;
  json cs = json::array();
  for (std::size_t i = 0; i < ds.canaries.size(); ++i) {
    const auto& c = ds.canaries[i];
    cs.push_back({{"index", i}, {"role", to_string(c.role)}, {"group", c.group}, {"format", c.format_name},
                  {"text", c.text()}, {"repeats", c.repeats}, {"offsets", c.offsets}, {"windows", c.windows}});
  }
  j["canaries"] = cs;
  j["tuning_canaries"] = s.tuning;
  j["reported_canaries"] = s.reported;
  j["training"] = {{"seconds", s.training.seconds}, {"final_loss", s.training.final_loss}, {"cached", s.training.cached}};
  j["before"] = {{"tuning_score", score(s.before_score)}, {"reported", evaluation_json(s.before, &ds, s.reported)},
                 {"tuning", evaluation_json(s.before, &ds, s.tuning)}};
  if (s.has_retrain)
    j["retrain"] = {{"seconds", s.retraining.seconds}, {"cached", s.retraining.cached}, {"tuning_score", score(s.retrained_score)},
                    {"reported", evaluation_json(s.retrained, &ds, s.reported)},
                    {"tuning", evaluation_json(s.retrained, &ds, s.tuning)}};
  json ms = json::array();
  for (const auto& m : s.methods) {
    json mj{{"method", m.name}, {"family", to_string(m.family)}, {"knob", m.knob}, {"description", m.description}};
    json pts = json::array();
    for (const auto& p : m.points)
      pts.push_back({{"knob", p.knob}, {"tuning_exposure_mean_bits", p.score.mean}, {"tuning_exposure_max_bits", p.score.max},
                     {"probe_perplexity", p.score.probe_perplexity}, {"reached", p.reached}, {"failed", p.failed},
                     {"seconds", p.seconds}, {"check_seconds", p.check_seconds},
                     {"measured_retain_kl", std::isfinite(p.measured_kl) ? json(p.measured_kl) : json(nullptr)},
                     {"predicted_retain_kl", std::isfinite(p.predicted_kl) ? json(p.predicted_kl) : json(nullptr)},
                     {"notes", p.notes}});
    mj["search"] = {{"points", pts}, {"notes", m.search_notes}, {"reached_on_tuning", m.reached_on_tuning},
                    {"within_tolerance", m.within_tolerance},
                    {"selected", m.selected ? json(*m.selected) : json(nullptr)},
                    {"selection_used", "tuning canaries only"}};
    if (!m.error.empty()) {
      mj["error"] = m.error;
      ms.push_back(mj);
      continue;
    }
    mj["selected_knob"] = m.points[*m.selected].knob;
    mj["prepare_seconds"] = m.prepare_seconds;
    mj["seconds"] = m.seconds;
    mj["reported"] = evaluation_json(m.after, &ds, s.reported);
    mj["tuning"] = evaluation_json(m.after, &ds, s.tuning);
    const auto& r = m.report;
    auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    mj["report"] = {{"forget_loss_before", num(r.forget_loss_before)}, {"forget_loss_after", num(r.forget_loss_after)},
                    {"retain_loss_before", num(r.retain_loss_before)}, {"retain_loss_after", num(r.retain_loss_after)},
                    {"step_norm", num(r.step_norm)}, {"damping", num(r.damping)}, {"iterations", r.iterations},
                    {"fisher_gradients", r.fisher_gradients}, {"memory_bytes", r.memory_bytes}, {"notes", r.notes}};
    ms.push_back(mj);
  }
  j["methods"] = ms;
  json del = json::array();
  for (const auto& st : s.deletion) {
    json rounds = json::array();
    for (const auto& r : st.rounds)
      rounds.push_back({{"knob", std::isfinite(r.knob) ? json(r.knob) : json(nullptr)}, {"reached", r.reached_on_round},
                        {"seconds", r.seconds}, {"valid_perplexity", r.valid_perplexity},
                        {"exposure_forgotten_mean_bits", r.exposure_forgotten_mean},
                        {"exposure_forgotten_max_bits", r.exposure_forgotten_max}, {"error", r.error}});
    del.push_back({{"method", st.method}, {"family", to_string(st.family)}, {"rounds", rounds}});
  }
  j["repeated_deletion"] = del;
  return j;
}

inline std::string summary_table(const std::vector<MethodSummary>& rows, const Options& opt) {
  std::ostringstream md;
  md << "| method | family | reached | held-out exposure (bits) | max | valid ppl | ppl / retrain | time (s) | time / retrain | MIA AUC | calibrated AUC | over-unlearned | extracted | knob (per seed) | retain KL measured / predicted | time: prepare / steps / checks (s) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& m : rows) {
    std::string knobs;
    for (double k : m.knobs) knobs += (knobs.empty() ? "" : ", ") + fmt_general(k);
    const bool ref = m.family == "reference";
    md << "| " << m.method << " | " << m.family << " | "
       << (ref ? "" : m.seeds_ok < m.seeds_total ? "failed in " + std::to_string(m.seeds_total - m.seeds_ok) + " seed(s)"
                                                  : (m.reached ? "yes" : "**no**"))
       << " | " << pm(m.heldout_exposure) << " | " << fmt(m.heldout_max, 2) << " | " << pm(m.valid_perplexity, 3) << " | "
       << pm(m.ppl_ratio, 3) << " | " << pm(m.seconds, 1) << " | " << pm(m.time_ratio, 3) << " | " << pm(m.mia_auc) << " | "
       << pm(m.mia_calibrated_auc) << " | " << m.over_unlearned << "/" << m.canaries_measured << " | " << m.extracted << "/"
       << m.canaries_measured << " | " << (m.knob.empty() ? "" : m.knob + " = " + knobs) << " | "
       << (m.measured_kl.n ? fmt_general(m.measured_kl.mean) : std::string("")) << (m.predicted_kl.n ? " / " + fmt_general(m.predicted_kl.mean) : std::string(""))
       << " | " << (ref ? std::string("") : fmt(m.prepare_seconds.mean, 1) + " / " + fmt(m.step_seconds.mean, 1) + " / " + fmt(m.check_seconds.mean, 1))
       << " |\n";
  }
  (void)opt;
  return md.str();
}

/// Frontier data: one block per method (gnuplot index), columns probe perplexity and tuning exposure.
inline std::string write_frontier_plot(const DatasetRuns& d, const std::vector<ExtraPoint>& extra, const Options& opt,
                                       const fs::path& dir) {
  const std::string base = "frontier_" + safe_name(d.corpus);
  std::ostringstream dat, gp;
  std::vector<std::string> titles;
  auto block = [&](const std::string& title, const std::vector<std::pair<double, double>>& pts) {
    if (pts.empty()) return;
    dat << "# " << title << "\n";
    for (const auto& [x, y] : pts) dat << x << " " << y << "\n";
    dat << "\n\n";
    titles.push_back(title);
  };
  std::vector<std::pair<double, double>> untouched, retrain;
  for (const auto& s : d.seeds) {
    untouched.emplace_back(s.before_score.probe_perplexity, s.before_score.mean);
    if (s.has_retrain) retrain.emplace_back(s.retrained_score.probe_perplexity, s.retrained_score.mean);
  }
  block("untouched model", untouched);
  block("retrained (gold standard)", retrain);
  for (const auto& name : method_order(d)) {
    if (name == "untouched" || name == "retrain") continue;
    std::vector<std::pair<double, double>> pts;
    for (const auto& s : d.seeds)
      for (const auto& m : s.methods)
        if (m.name == name)
          for (const auto& p : m.points)
            if (std::isfinite(p.score.probe_perplexity) && std::isfinite(p.score.mean))
              pts.emplace_back(p.score.probe_perplexity, p.score.mean);
    block(name, pts);
  }
  for (const auto& e : extra)
    if (e.dataset == d.corpus) block(e.family + ": " + e.label, {{e.valid_perplexity, e.exposure_bits}});
  write_text(dir / "plots" / (base + ".dat"), dat.str());
  gp << "set terminal pngcairo noenhanced size 1200,760 font ',10'\nset output '" << (dir / (base + ".png")).string() << "'\n"
     << "set title 'Privacy-utility frontier, " << d.corpus << ": every knob value the search evaluated (all seeds)'\n"
     << "set xlabel 'probe validation perplexity (log scale)'\nset ylabel 'mean sampled exposure of the tuning canaries (bits)'\n"
     << "set logscale x\nset grid\nset key outside right top\n"
     << "set arrow from graph 0, first " << opt.exposure_target << " to graph 1, first " << opt.exposure_target
     << " nohead dt 2 lw 2 lc rgb 'gray'\nplot ";
  for (std::size_t i = 0; i < titles.size(); ++i)
    gp << (i ? ", " : "") << "'" << (dir / "plots" / (base + ".dat")).string() << "' index " << i
       << " using 1:2 with points pt " << (i < 2 ? 7 : 1 + static_cast<int>(i % 12)) << " ps " << (i < 2 ? 2.0 : 1.2)
       << " title '" << titles[i] << "'";
  gp << "\n";
  write_text(dir / "plots" / (base + ".gp"), gp.str());
  if (std::system(("gnuplot '" + (dir / "plots" / (base + ".gp")).string() + "'").c_str()) != 0)
    return "gnuplot failed on " + base + ".gp";
  return {};
}

inline std::string write_deletion_plot(const DatasetRuns& d, const fs::path& dir) {
  if (d.seeds.empty() || d.seeds.front().deletion.empty()) return {};
  const auto& s = d.seeds.front();
  const std::string base = "deletion_" + safe_name(d.corpus);
  std::ostringstream dat, gp;
  for (const auto& st : s.deletion) {
    dat << "# " << st.method << "\n";
    for (std::size_t r = 0; r < st.rounds.size(); ++r)
      dat << r + 1 << " " << st.rounds[r].exposure_forgotten_mean << " " << st.rounds[r].valid_perplexity << "\n";
    dat << "\n\n";
  }
  const std::string data = (dir / "plots" / (base + ".dat")).string();
  write_text(data, dat.str());
  gp << "set terminal pngcairo noenhanced size 1300,560 font ',10'\nset output '" << (dir / (base + ".png")).string() << "'\n"
     << "set multiplot layout 1,2 title 'Repeated deletion requests, " << d.corpus << " (seed " << s.seed << ")'\n"
     << "set xlabel 'round'\nset grid\nset key top left\nset ylabel 'mean sampled exposure of all canaries forgotten so far (bits)'\nplot ";
  for (std::size_t i = 0; i < s.deletion.size(); ++i)
    gp << (i ? ", " : "") << "'" << data << "' index " << i << " using 1:2 with linespoints title '" << s.deletion[i].method << "'";
  gp << "\nset ylabel 'validation perplexity'\nset logscale y\nplot ";
  for (std::size_t i = 0; i < s.deletion.size(); ++i)
    gp << (i ? ", " : "") << "'" << data << "' index " << i << " using 1:3 with linespoints title '" << s.deletion[i].method << "'";
  gp << "\nunset multiplot\n";
  write_text(dir / "plots" / (base + ".gp"), gp.str());
  if (std::system(("gnuplot '" + (dir / "plots" / (base + ".gp")).string() + "'").c_str()) != 0)
    return "gnuplot failed on " + base + ".gp";
  return {};
}

}  // namespace unlearn_lm
