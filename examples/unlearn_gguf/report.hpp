// unlearn_gguf report: report.json (schema "unlearn_gguf report v1", docs/unlearn_gguf.md), report.md with
// the statement for a compliance reviewer, and two gnuplot PNGs (per-record likelihood before/after, the
// forget objective per step). Every file is written atomically.
#pragma once

#include "measure.hpp"
#include "unlearn.hpp"

#include "fisher_unlearn/checkpoint.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace unlearn_gguf {

struct RunSummary {
  std::string model_path, out_path, retain_source;  ///< retain_source: "--retain FILE", ..., "model samples"
  std::size_t trainable_parameters = 0;
  std::vector<std::string> trainable;
  std::string candidates_source;
  std::vector<std::pair<std::string, double>> phase_seconds;
  double total_seconds = 0.0;
  bool target_met = false;
  std::string date;
  // Utility guard (tool.hpp): perplexity on guard_source before/after, and whether --out was written.
  std::string guard_source;
  double guard_before = 0.0, guard_after = 0.0, guard_limit = 0.0;
  bool guard_passed = true, model_written = true;
};

inline nlohmann::json measure_json(const RecordMeasure& m) {
  nlohmann::json j = {{"secret_log_prob", m.secret_log_prob}, {"secret_mean_nll", m.secret_mean_nll},
                      {"rank", m.rank}, {"ties", m.ties}, {"mid_rank", m.mid_rank}, {"set_size", m.set_size},
                      {"percentile", m.percentile}, {"exposure_bits", m.exposure_bits},
                      {"greedy_extracted", m.extracted}, {"greedy_tokens_matched", m.tokens_matched},
                      {"greedy_leading_tokens_matched", m.leading_tokens_matched}, {"greedy_text", m.greedy_text},
                      {"record_mean_nll", m.record_mean_nll}};
  j["membership_score"] = std::isnan(m.membership_score) ? nlohmann::json(nullptr) : nlohmann::json(m.membership_score);
  return j;
}

inline nlohmann::json nullable(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

inline nlohmann::json report_json(const Options& o, const RunSummary& s, const std::vector<Record>& records,
                                  const Measurement& before, const Measurement& after, const UnlearnOutcome& u) {
  nlohmann::json j;
  j["schema"] = "unlearn_gguf report v1";
  j["command"] = o.command_line;
  j["date"] = s.date;
  j["model"] = s.model_path;
  j["output"] = s.out_path;
  j["method"] = {{"direction", o.method}, {"estimator", o.estimator}, {"objective", o.objective},
                 {"fisher_kind", u.fisher.kind}, {"fisher_samples", u.fisher.gradients},
                 {"damping", u.fisher.damping}, {"trust_kl", o.trust_kl},
                 {"learning_rate", o.resolved_learning_rate()}, {"retain_weight", o.resolved_retain_weight()},
                 {"retain_source", s.retain_source}, {"trainable", s.trainable},
                 {"trainable_parameters", s.trainable_parameters}, {"seed", o.seed}};
  j["stopping"] = {{"rule", o.stop}, {"target_percentile", o.target_percentile}, {"target_nll", o.target_nll},
                   {"max_steps", o.max_steps}, {"max_time", o.max_time}, {"reason", u.stop_reason},
                   {"steps", u.result.report.iterations}, {"target_met", s.target_met},
                   {"unchanged_because_met_before", u.met_before}};
  j["utility_guard"] = {{"source", s.guard_source},
                        {"perplexity_before", s.guard_before},
                        {"perplexity_after", std::isfinite(s.guard_after) ? nlohmann::json(s.guard_after)
                                                                          : nlohmann::json(nullptr)},
                        {"max_ratio", s.guard_limit}, {"passed", s.guard_passed},
                        {"model_written", s.model_written}};
  j["candidates"] = s.candidates_source;
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& st : u.result.steps)
    steps.push_back({{"step", st.step}, {"objective", st.objective}, {"predicted_kl", nullable(st.predicted_kl)},
                     {"trust_region_hit", st.trust_region_hit}, {"retain_anchor", nullable(st.retain_anchor)}});
  j["steps"] = steps;
  nlohmann::json recs = nlohmann::json::array();
  for (std::size_t i = 0; i < records.size(); ++i)
    recs.push_back({{"line", records[i].line}, {"prefix", records[i].prefix_text}, {"secret", records[i].secret_text},
                    {"secret_tokens", records[i].secret.size()}, {"before", measure_json(before.records[i])},
                    {"after", measure_json(after.records[i])}});
  j["records"] = recs;
  j["heldout"] = {{"tokens", after.heldout_tokens}, {"perplexity_before", nullable(before.heldout_perplexity)},
                  {"perplexity_after", nullable(after.heldout_perplexity)}};
  nlohmann::json phases = nlohmann::json::object();
  for (const auto& [name, sec] : s.phase_seconds) phases[name] = sec;
  j["seconds"] = {{"total", s.total_seconds}, {"phases", phases}};
  return j;
}

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// Markdown-safe one-line text (records may hold '|', newlines, backticks).
inline std::string md_cell(const std::string& s, std::size_t limit = 60) {
  std::string out;
  for (char c : s.substr(0, limit)) out += c == '|' ? std::string("\\|") : c == '\n' ? std::string("⏎") : std::string(1, c);
  return out + (s.size() > limit ? "…" : "");
}

inline std::string report_markdown(const Options& o, const RunSummary& s, const std::vector<Record>& records,
                                   const Measurement& before, const Measurement& after, const UnlearnOutcome& u,
                                   const std::string& plot_note) {
  std::ostringstream md;
  std::size_t extracted_before = 0, extracted_after = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    extracted_before += before.records[i].extracted;
    extracted_after += after.records[i].extracted;
  }
  md << "# Unlearning report\n\n"
     << "- model: `" << s.model_path << "` → `" << s.out_path << "`\n"
     << "- records: " << records.size() << " (from `" << o.forget << "`)\n"
     << "- method: " << o.method << " (" << o.objective << " objective; retain Fisher: " << o.estimator << ", "
     << u.fisher.kind << ", m = " << u.fisher.gradients << ", from " << s.retain_source << "), trust region "
     << o.trust_kl << " nats of predicted retain KL per step\n"
     << "- trainable: " << s.trainable_parameters << " parameters (";
  for (std::size_t i = 0; i < s.trainable.size(); ++i) md << (i ? ", " : "") << s.trainable[i];
  md << ")\n- stopped: " << u.stop_reason << " after " << u.result.report.iterations << " step(s); target "
     << (s.target_met ? "**met**" : "**NOT met**") << "\n"
     << "- time: " << fmt("%.1f", s.total_seconds) << " s (";
  for (std::size_t i = 0; i < s.phase_seconds.size(); ++i)
    md << (i ? ", " : "") << s.phase_seconds[i].first << " " << fmt("%.1f", s.phase_seconds[i].second) << " s";
  md << ")\n- utility guard (perplexity on " << s.guard_source << "): " << fmt("%.4g", s.guard_before) << " → "
     << fmt("%.4g", s.guard_after) << ", limit ×" << fmt("%.4g", s.guard_limit) << ": "
     << (s.guard_passed ? "passed" : "**FAILED** — the unlearning damaged the model")
     << (s.model_written ? "; `" + s.out_path + "` written" : "; `" + s.out_path + "` NOT written (--write-anyway to force)")
     << "\n- command: `" << o.command_line << "`\n\n";

  md << "## Per record, before → after\n\n"
     << "| line | prefix | secret | ln P(secret) | mid-rank among candidates (of N) | percentile | greedy "
        "extraction | membership score |\n|---|---|---|---|---|---|---|---|\n";
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& b = before.records[i];
    const auto& a = after.records[i];
    auto ms = [](double v) { return std::isnan(v) ? std::string("n/a") : fmt("%.3f", v); };
    md << "| " << records[i].line << " | " << md_cell(records[i].prefix_text) << " | " << md_cell(records[i].secret_text)
       << " | " << fmt("%.3f", b.secret_log_prob) << " → " << fmt("%.3f", a.secret_log_prob) << " | "
       << fmt("%g", b.mid_rank) << " → " << fmt("%g", a.mid_rank) << " / " << a.set_size << " | "
       << fmt("%.3f", b.percentile) << " → " << fmt("%.3f", a.percentile) << " | "
       << (b.extracted ? "yes" : "no") << " (" << b.tokens_matched << "/" << records[i].secret.size() << ") → "
       << (a.extracted ? "yes" : "no") << " (" << a.tokens_matched << "/" << records[i].secret.size() << ") | "
       << ms(b.membership_score) << " → " << ms(a.membership_score) << " |\n";
  }
  md << "\n";
  if (!o.heldout.empty())
    md << "Held-out perplexity (`" << o.heldout << "`, " << after.heldout_tokens << " tokens): "
       << fmt("%.4f", before.heldout_perplexity) << " → " << fmt("%.4f", after.heldout_perplexity) << " ("
       << fmt("%+.2f", 100.0 * (after.heldout_perplexity / before.heldout_perplexity - 1.0)) << "%).\n\n";
  else
    md << "Held-out perplexity: not measured (no `--heldout`).\n\n";
  md << "![likelihood](likelihood.png)\n\n![objective](objective.png)\n\n" << plot_note;

  md << "## What was checked, and its limits\n\n"
     << "For each of the " << records.size() << " records, the report compares the model before and after on:\n\n"
     << "1. **Greedy extraction**: decoding the most likely next token from the record's prefix, does the model "
        "reproduce the secret exactly? Before: " << extracted_before << " of " << records.size()
     << " records; after: " << extracted_after << ".\n"
     << "2. **Likelihood rank**: the probability of the secret given the prefix, ranked among " << s.candidates_source
     << " (mid-rank with ties counted half; percentile 0 = the model's first choice, 0.5 = a typical candidate).\n"
     << "3. **Membership score**: the record's mean loss compared with held-out text (the share of held-out windows "
        "the model finds less likely than the record; about 0.5 means the record looks like text the model never "
        "saw, 1 means it looks memorised).\n\n"
     << "Limits: these tests look for the records **as given** (their exact wording and tokenisation) and for "
        "greedy decoding only; paraphrases, other prompts, sampling at other temperatures, or other attacks "
        "(e.g. shadow-model membership inference) were not tested. The rank is relative to the candidates "
        "listed; generated candidates keep the secret's shape but not its plausibility, so for natural text "
        "supply real alternatives with `--candidates`. The membership score compares with the held-out text "
        "given, not with a model retrained without the records, which is the only exact reference. "
        "Unlearning changed only the trainable tensors listed above; the rest of the file is byte-identical.\n";
  return md.str();
}

/// likelihood.png (ln P(secret) before/after per record) and objective.png; returns a note for report.md
/// ("" when both were drawn).
inline std::string write_plots(const fs::path& dir, const std::vector<Record>& records, const Measurement& before,
                               const Measurement& after, const UnlearnOutcome& u) {
  std::ostringstream dat, steps, gp;
  for (std::size_t i = 0; i < records.size(); ++i)
    dat << i + 1 << " " << before.records[i].secret_log_prob << " " << after.records[i].secret_log_prob << "\n";
  for (const auto& s : u.result.steps) steps << s.step << " " << s.objective << "\n";
  if (u.result.steps.empty()) steps << "0 0\n";
  const fs::path plots = dir / "plots";
  fs::create_directories(plots);
  fisher_unlearn::detail::write_file_atomically(plots / "likelihood.dat", dat.str());
  fisher_unlearn::detail::write_file_atomically(plots / "objective.dat", steps.str());
  gp << "set terminal pngcairo noenhanced size 900,500 font ',10'\n"
     << "set output '" << (dir / "likelihood.png").string() << "'\n"
     << "set title 'ln P(secret | prefix) per record'\nset xlabel 'record'\nset ylabel 'nats'\n"
     << "set style data histograms\nset style fill solid 0.8\nset boxwidth 0.9\nset grid ytics\n"
     << "plot '" << (plots / "likelihood.dat").string() << "' using 2:xtic(1) title 'before', '' using 3 title 'after'\n"
     << "set output '" << (dir / "objective.png").string() << "'\nset style data linespoints\n"
     << "set title 'forget objective per step'\nset xlabel 'step'\nset ylabel 'objective'\n"
     << "plot '" << (plots / "objective.dat").string() << "' using 1:2 title 'objective'\n";
  fisher_unlearn::detail::write_file_atomically(plots / "plots.gp", gp.str());
  const std::string cmd = "gnuplot '" + (plots / "plots.gp").string() + "' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0)
    return "(The PNG plots were not drawn: gnuplot with the pngcairo terminal was not found; the data and the "
           "script are in plots/.)\n\n";
  return {};
}

}  // namespace unlearn_gguf
