// unlearn_lm: the canary-unlearning experiment (docs/experiment.md). For each corpus (a dataset of its
// own) and each seed: plants tuning and held-out (reported) secret canaries, trains a byte-level GPT
// (cached), retrains without them (the gold standard), then runs every method's matched-exposure knob
// search on the tuning canaries and reports the held-out canaries, perplexity, time, MIA AUC,
// extraction and over-unlearning at the selected point; mean ± sd over seeds; frontier plots.
//   ./scripts/prepare_data.sh kjv && unlearn_lm --corpus kjv        (or ./scripts/demo.sh)
// Files: options.hpp (command line, validation), data.hpp (corpus, canaries, windows, training cache),
// measure.hpp (exposure, MIA, extraction), methods.hpp + registry.hpp (methods and their knobs),
// protocol.hpp (search, per-seed run, repeated deletion), report.hpp (summary, JSON, tables, plots).
#include "options.hpp"
#include "report.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

namespace unlearn_lm {

std::string default_run_name(const Options& o) {
  std::ostringstream os;
  for (const auto& c : o.corpora) os << c << "-";
  os << "L" << o.layers << "C" << o.width << "T" << o.context << "-s" << o.steps << "-seeds" << o.first_seed << "x" << o.seeds;
  return os.str();
}

int run(const Options& opt, const std::string& command) {
  const double t_start = now_seconds();
  const std::vector<std::string> methods = expand_methods(opt.methods);
  const std::vector<ExtraPoint> extra = opt.frontier_points.empty() ? std::vector<ExtraPoint>{} : read_extra_points(opt.frontier_points);
  const std::string run_name = opt.run_name.empty() ? default_run_name(opt) : opt.run_name;
  const fs::path dir = fs::path(opt.results_dir) / run_name;

  std::vector<DatasetRuns> runs;
  std::vector<std::vector<Dataset>> datasets;
  std::vector<long long> seeds;
  for (long long k = 0; k < opt.seeds; ++k) seeds.push_back(opt.first_seed + k);

  // results.json and results.md are rewritten (atomically) after every seed with `"complete": false`, so
  // that a long run (`--full`: 4 corpora x 3 seeds) that is stopped keeps what it measured; plots and the
  // printed tables come at the end. Returns the Markdown tables of the summary and the plots' note.
  const auto write_reports = [&](bool complete) {
    std::vector<std::vector<MethodSummary>> summaries;
    json summary = json::array();
    for (const auto& d : runs) {
      std::vector<MethodSummary> rows;
      for (const auto& name : method_order(d)) {
        rows.push_back(summarise(d, name, opt));
        summary.push_back(summary_json(rows.back()));
      }
      summaries.push_back(std::move(rows));
    }
    json j;
    j["schema"] = "unlearn_lm results v2 (docs/experiment.md)";
    j["run"] = run_name;
    j["command"] = command;
    j["complete"] = complete;
    j["seconds"] = now_seconds() - t_start;
    j["seeds"] = seeds;
    j["config"] = {{"corpora", opt.corpora}, {"train_bytes", opt.train_bytes}, {"valid_bytes", opt.valid_bytes},
                   {"layers", opt.layers}, {"width", opt.width}, {"heads", opt.heads}, {"context", opt.context},
                   {"steps", opt.steps}, {"batch", opt.batch}, {"learning_rate", opt.learning_rate},
                   {"repeats", opt.repeats}, {"formats", opt.formats}, {"methods", methods},
                   {"retain_samples", opt.retain_samples}, {"fisher_samples", opt.fisher_samples},
                   {"search_budget", opt.search_budget}, {"exposure_target_bits", opt.exposure_target},
                   {"exposure_ceiling_bits", opt.exposure_ceiling}, {"target_tolerance_bits", opt.target_tolerance},
                   {"utility_guard", opt.utility_guard}, {"selection_candidates", opt.selection_candidates},
                   {"estimate_candidates", opt.estimate_candidates}, {"exact_above_bits", opt.exact_above},
                   {"mia_nonmembers", opt.mia_nonmembers}, {"max_steps", opt.max_steps},
                   {"trust_kl", opt.trust_kl}, {"trust_shrink", opt.trust_shrink}, {"average_iterates", opt.average_iterates},
                   {"check_spacing", opt.check_spacing},
                   {"trust_metric", opt.trust_metric}, {"retain_batch", opt.retain_batch},
                   {"deletion_rounds", opt.deletion_rounds}, {"threads", opt.threads}};
    j["summary"] = summary;
    json ds_json = json::array();
    for (std::size_t c = 0; c < runs.size(); ++c) {
      json sj = json::array();
      for (std::size_t k = 0; k < runs[c].seeds.size(); ++k) sj.push_back(seed_json(runs[c].seeds[k], datasets[c][k]));
      ds_json.push_back({{"corpus", runs[c].corpus}, {"seeds", sj}});
    }
    j["datasets"] = ds_json;
    json ej = json::array();
    for (const auto& e : extra)
      ej.push_back({{"dataset", e.dataset}, {"label", e.label}, {"family", e.family}, {"exposure_bits", e.exposure_bits},
                    {"valid_perplexity", e.valid_perplexity}});
    j["frontier_extra_points"] = ej;
    write_text(dir / "results.json", j.dump(2) + "\n");

    std::ostringstream md, tables;
    md << "# Canary unlearning: " << run_name << "\n\nCommand: `" << command << "`\n\n";
    if (!complete) {
      std::size_t done = 0;
      for (const auto& d : runs) done += d.seeds.size();
      md << "**Incomplete: " << done << " of " << opt.corpora.size() * static_cast<std::size_t>(opt.seeds)
         << " (dataset, seed) runs measured so far** (this file is rewritten after every seed).\n\n";
    }
    md << "Seeds: ";
    for (auto s : seeds) md << s << " ";
    md << "(model initialisation, data order, secrets). Knob search on the tuning canaries only (budget "
       << opt.search_budget << " evaluations per method, target mean <= " << fmt(opt.exposure_target, 1) << " bits and max <= "
       << fmt(opt.exposure_ceiling, 1) << " bits); every column below is measured on the held-out (reported) canaries"
       << " and the full validation text at the selected point. Mean ± sd over seeds. `reached`: held-out mean <= target and"
       << " every held-out canary <= ceiling. Time: prepare + selected run + its stopping checks.\n\n";
    for (std::size_t c = 0; c < runs.size(); ++c) {
      tables << "### " << runs[c].corpus << "\n\n" << summary_table(summaries[c], opt) << "\n";
    }
    md << tables.str();
    md << "## Search points per seed\n\n| dataset | seed | method | knob | tuning exposure mean / max | probe ppl | reached | failed | notes |\n|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& d : runs)
      for (const auto& s : d.seeds)
        for (const auto& m : s.methods)
          for (std::size_t i = 0; i < m.points.size(); ++i) {
            const auto& p = m.points[i];
            md << "| " << d.corpus << " | " << s.seed << " | " << m.name << (m.selected && *m.selected == i ? " (selected)" : "")
               << " | " << fmt_general(p.knob) << " | " << fmt(p.score.mean, 2) << " / " << fmt(p.score.max, 2) << " | "
               << fmt(p.score.probe_perplexity) << " | " << (p.reached ? "yes" : "") << " | " << (p.failed ? "yes" : "") << " | "
               << p.notes << " |\n";
          }
    for (const auto& d : runs)
      if (!d.seeds.empty() && !d.seeds.front().deletion.empty()) {
        md << "\n## Repeated deletion (" << d.corpus << ", seed " << d.seeds.front().seed
           << ")\n\n| method | round | knob | exposure of forgotten (mean / max) | valid ppl | note |\n|---|---|---|---|---|---|\n";
        for (const auto& st : d.seeds.front().deletion)
          for (std::size_t r = 0; r < st.rounds.size(); ++r)
            md << "| " << st.method << " | " << r + 1 << " | " << fmt_general(st.rounds[r].knob) << " | "
               << fmt(st.rounds[r].exposure_forgotten_mean, 2) << " / " << fmt(st.rounds[r].exposure_forgotten_max, 2) << " | "
               << fmt(st.rounds[r].valid_perplexity) << " | " << st.rounds[r].error << " |\n";
      }
    std::string plot_note;
    if (complete && opt.plots) {
      if (std::system("gnuplot --version > /dev/null 2>&1") != 0) {
        plot_note = "gnuplot not found: plots skipped (install gnuplot-nox)";
      } else {
        for (const auto& d : runs) {
          if (plot_note.empty()) plot_note = write_frontier_plot(d, extra, opt, dir);
          if (plot_note.empty()) plot_note = write_deletion_plot(d, dir);
        }
      }
      md << "\nPlots: `frontier_<dataset>.png`" << (opt.deletion_rounds > 0 ? ", `deletion_<dataset>.png`" : "") << ".\n";
    }
    write_text(dir / "results.md", md.str());
    return std::pair{tables.str(), plot_note};
  };

  for (const auto& corpus : opt.corpora) {
    runs.push_back(DatasetRuns{corpus, {}});
    datasets.emplace_back();
    for (long long k = 0; k < opt.seeds; ++k) {
      const std::uint64_t seed = static_cast<std::uint64_t>(opt.first_seed + k);
      datasets.back().push_back(build_dataset(opt, corpus, seed));
      // The repeated-deletion study runs on the first seed only (five rounds per method).
      runs.back().seeds.push_back(run_seed(opt, datasets.back().back(), methods, k == 0));
      if (runs.size() < opt.corpora.size() || k + 1 < opt.seeds) {
        write_reports(false);
        std::cout << "[report] " << corpus << " seed " << seed << " done: partial results in " << (dir / "results.json").string()
                  << "\n";
      }
    }
  }
  const auto [tables, plot_note] = write_reports(true);
  std::cout << "\n" << tables << "\n";
  if (!plot_note.empty()) std::cout << "[plots] " << plot_note << "\n";
  std::cout << "[done] results in " << (dir / "results.md").string() << " and " << (dir / "results.json").string() << " ("
            << fmt(now_seconds() - t_start, 1) << " s in all)\n";
  return 0;
}

}  // namespace unlearn_lm

int main(int argc, char** argv) {
  std::cout << std::unitbuf;  // progress lines appear at once even when stdout is a file
  unlearn_lm::Options opt;
  CLI::App app{"unlearn_lm: plant secret canaries in a real corpus, train a byte-level GPT, make it forget them with "
               "every unlearning method at matched exposure and compare with retraining (docs/experiment.md)."};
  unlearn_lm::add_options(app, opt);
  CLI11_PARSE(app, argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  try {
    unlearn_lm::validate(opt);
  } catch (const fisher_unlearn::Error& e) {
    std::cerr << "unlearn_lm: " << e.what() << "\n";
    return 1;
  }
  try {
    return unlearn_lm::run(opt, command);
  } catch (const fisher_unlearn::Error& e) {
    std::cerr << "unlearn_lm: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "unlearn_lm: unexpected error: " << e.what() << "\n";
    return 2;
  }
}
