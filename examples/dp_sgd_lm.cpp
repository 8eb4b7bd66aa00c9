// dp_sgd_lm: "train privately from the start" on the experiment's own data. Builds the same planted
// corpus as unlearn_lm (its data phase: examples/unlearn_lm/data.hpp, same options, same seeds), trains
// the same byte-level GPT with DP-SGD (fisher_unlearn/privacy/dp_sgd.hpp) at each target ε (δ = 1/N, N
// training windows = the records), and measures what unlearn_lm measures: exposure of every reported
// canary (per repeat count k), validation perplexity, training time, and the frontier score (mean sampled
// exposure of the tuning canaries, probe perplexity). The non-private model and the retrained one come
// from unlearn_lm's checkpoint cache (trained here if absent), so the rows compare directly.
//   ./scripts/prepare_data.sh kjv && dp_sgd_lm --corpus kjv --epsilons 1 4 16 64      (or ./scripts/demo.sh --dp)
// Output in <results>/<run>/: dp_results.json, dp_results.md, dp_points.json (the points for
// unlearn_lm --frontier-points, which puts them on its frontier plot).
#include "unlearn_lm/measure.hpp"
#include "unlearn_lm/options.hpp"
#include "unlearn_lm/registry.hpp"

#include "fisher_unlearn/privacy/dp_sgd.hpp"

#include <CLI/CLI.hpp>

#include <iostream>
#include <map>

namespace unlearn_lm {

struct DpExperimentOptions {
  std::vector<double> epsilons{1, 4, 16, 64};
  double clip_norm = 1.0;
  double learning_rate = 0;  // 0: the non-private --lr
  bool baselines = true;
};

struct DpRow {
  std::string model;             // "non-private", "retrained", "dp eps=4"
  double target_epsilon = std::nan(""), epsilon = std::nan(""), delta = std::nan(""), sigma = std::nan(""), order = std::nan("");
  double train_seconds = std::nan(""), clipped_fraction = std::nan(""), mean_batch = std::nan("");
  Evaluation eval;               // reported canaries + validation text
  SelectionScore score;          // tuning canaries (the frontier's axes)
};

std::string row_label(const DpRow& r) { return r.model; }

json evaluation_json(const DpRow& r, const Dataset& ds, const std::vector<std::size_t>& reported) {
  json canaries = json::array();
  for (std::size_t i : reported) {
    const auto& c = ds.canaries[i];
    const auto& m = r.eval.canaries[i];
    canaries.push_back({{"format", c.format_name}, {"repeats", c.repeats}, {"windows", c.windows.size()},
                        {"exposure_bits", m.exposure}, {"exact", m.exact}, {"log_perplexity_bits", m.log_perplexity},
                        {"extracted", m.extracted}});
  }
  return {{"model", r.model}, {"target_epsilon", r.target_epsilon}, {"epsilon", r.epsilon}, {"delta", r.delta},
          {"noise_multiplier", r.sigma}, {"rdp_order", r.order}, {"train_seconds", r.train_seconds},
          {"clipped_fraction", r.clipped_fraction}, {"mean_batch", r.mean_batch},
          {"valid_perplexity", r.eval.valid_perplexity}, {"mia_auc", r.eval.mia_auc},
          {"mia_calibrated_auc", r.eval.mia_calibrated_auc}, {"tuning_exposure_mean", r.score.mean},
          {"tuning_exposure_max", r.score.max}, {"probe_perplexity", r.score.probe_perplexity}, {"reported_canaries", canaries}};
}

int run(const Options& opt, const DpExperimentOptions& dp, const std::string& command) {
  const double t_start = now_seconds();
  std::ostringstream name;
  for (const auto& c : opt.corpora) name << c << "-";
  name << "L" << opt.layers << "C" << opt.width << "T" << opt.context << "-s" << opt.steps << "-dp";
  const std::string run_name = opt.run_name.empty() ? name.str() : opt.run_name;
  const fs::path dir = fs::path(opt.results_dir) / run_name;

  json results = json::array(), points = json::array();
  std::ostringstream md;
  md << "# DP-SGD on the planted corpus: " << run_name << "\n\nCommand: `" << command << "`\n\n"
     << "DP-SGD (Poisson sampling q = batch/N, per-window clipping C = " << dp.clip_norm
     << ", Gaussian noise σC, AdamW with the non-private run's schedule and steps), σ calibrated for each target ε at δ = 1/N "
        "(N = training windows, the unit of privacy). Exposure of the held-out (reported) canaries: exact above "
     << fmt(opt.exact_above, 1) << " bits, else sampled (" << opt.estimate_candidates << " candidates; `~`). "
     << "k·ε·log₂e is the group-privacy scale of a canary in k windows (ignoring δ).\n\n";

  for (const auto& corpus : opt.corpora)
    for (long long s = 0; s < opt.seeds; ++s) {
      const auto seed = static_cast<std::uint64_t>(opt.first_seed + s);
      const Dataset ds = build_dataset(opt, corpus, seed);
      const auto tuning = ds.indices(CanaryRole::tuning), reported = ds.indices(CanaryRole::reported);
      const std::size_t N = ds.windows.size();
      const double q = static_cast<double>(opt.batch) / static_cast<double>(N), delta = 1.0 / static_cast<double>(N);
      std::cout << "[dp] " << corpus << " seed " << seed << ": " << N << " training windows (records), q = " << fmt(q, 5)
                << ", delta = 1/N = " << fmt_general(delta) << ", " << opt.steps << " steps\n";
      MiaReference mia = make_mia_reference(opt, ds);
      std::vector<DpRow> rows;
      const fu::TrainingOptions plain = training_options(opt, seed);
      if (dp.baselines) {
        Model retrained(model_config(opt, seed));
        retrained.set_execution({static_cast<std::size_t>(opt.threads), 8});
        const auto rt = train_or_load(retrained, ds.retain_all, plain, opt.cache_dir, corpus + " seed " + std::to_string(seed) + " retrain",
                                      static_cast<std::size_t>(opt.checkpoint_every), opt.resume);
        calibrate_mia(mia, retrained, opt, ds);
        Model trained(model_config(opt, seed));
        trained.set_execution({static_cast<std::size_t>(opt.threads), 8});
        const auto tr = train_or_load(trained, ds.windows, plain, opt.cache_dir, corpus + " seed " + std::to_string(seed) + " train",
                                      static_cast<std::size_t>(opt.checkpoint_every), opt.resume);
        for (auto [label, model, seconds] : {std::tuple{"non-private", &trained, tr.seconds}, std::tuple{"retrained", &retrained, rt.seconds}}) {
          DpRow r;
          r.model = label;
          r.train_seconds = seconds;
          r.eval = measure_model(*model, ds, opt, reported, mia, label);
          r.score = selection_score(*model, ds, opt, tuning);
          rows.push_back(std::move(r));
        }
      }
      for (double eps : dp.epsilons) {
        DpRow r;
        r.model = "dp eps=" + fmt_general(eps);
        r.target_epsilon = eps;
        fu::DpSgdOptions o;
        o.sampling_rate = q;
        o.steps = static_cast<std::size_t>(opt.steps);
        o.noise_multiplier = fu::noise_multiplier_for_epsilon(eps, delta, q, o.steps);
        o.clip_norm = dp.clip_norm;
        o.optimizer = fu::DpOptimizer::adamw;
        o.learning_rate = dp.learning_rate > 0 ? dp.learning_rate : plain.learning_rate;
        o.min_learning_rate = o.learning_rate / 10;
        o.warmup_steps = plain.warmup_steps;
        o.adamw = plain.adamw;
        o.delta = delta;
        o.seed = seed;
        o.num_threads = static_cast<std::size_t>(opt.threads);
        o.progress_stream = &std::cout;
        o.progress_interval_seconds = 30;
        o.label = "dp-sgd " + corpus + " eps=" + fmt_general(eps);
        std::cout << "[dp] target eps " << fmt_general(eps) << ": noise multiplier sigma = " << fmt(o.noise_multiplier, 4) << "\n";
        Model model(model_config(opt, seed));
        fu::DpSgdTrainer<Model> trainer(model, o);
        const fu::DpSgdSummary summary = trainer.train(std::span<const Sample>(ds.windows));
        r.sigma = o.noise_multiplier;
        r.epsilon = summary.privacy.epsilon;
        r.delta = summary.privacy.delta;
        r.order = summary.privacy.order;
        r.train_seconds = summary.seconds;
        r.clipped_fraction = summary.clipped_fraction;
        r.mean_batch = summary.mean_batch_size;
        r.eval = measure_model(model, ds, opt, reported, mia, r.model);
        r.score = selection_score(model, ds, opt, tuning);
        points.push_back({{"dataset", corpus}, {"label", "DP-SGD eps=" + fmt_general(eps) + " seed " + std::to_string(seed)},
                          {"family", "dp"}, {"exposure_bits", r.score.mean}, {"valid_perplexity", r.score.probe_perplexity},
                          {"seconds", r.train_seconds}});
        rows.push_back(std::move(r));
      }

      // ---- tables: one row per model; exposure per format and k (reported canaries) ------------------
      std::vector<std::pair<std::string, std::size_t>> groups;  // (format, k)
      for (std::size_t i : reported) {
        const std::pair<std::string, std::size_t> g{ds.canaries[i].format_name, ds.canaries[i].repeats};
        if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
      }
      md << "## " << corpus << ", seed " << seed << " (N = " << N << " windows, q = " << fmt(q, 5) << ", δ = " << fmt_general(delta)
         << ")\n\n| model | σ | ε (δ = 1/N) | valid ppl | train s | clipped |";
      for (const auto& [f, k] : groups) md << " " << f << " k=" << k << " |";
      md << " MIA AUC | tuning exposure mean / max | probe ppl |\n|---|---|---|---|---|---|";
      for (std::size_t g = 0; g < groups.size(); ++g) md << "---|";
      md << "---|---|---|\n";
      json rows_json = json::array();
      for (const auto& r : rows) {
        md << "| " << r.model << " | " << fmt(r.sigma, 3) << " | " << fmt(r.epsilon, 2) << " | " << fmt(r.eval.valid_perplexity, 2) << " | "
           << fmt(r.train_seconds, 0) << " | " << fmt(r.clipped_fraction, 2) << " |";
        for (const auto& [f, k] : groups) {
          md << " ";
          for (std::size_t i : reported)
            if (ds.canaries[i].format_name == f && ds.canaries[i].repeats == k)
              md << fmt(r.eval.canaries[i].exposure, 1) << (r.eval.canaries[i].exact ? "" : "~") << " ";
          md << "|";
        }
        md << " " << fmt(r.eval.mia_auc, 2) << " | " << fmt(r.score.mean, 2) << " / " << fmt(r.score.max, 2) << " | "
           << fmt(r.score.probe_perplexity, 2) << " |\n";
        rows_json.push_back(evaluation_json(r, ds, reported));
      }
      md << "\nGroup-privacy scale k·ε·log₂e (bits) per repeat count:\n\n| ε |";
      std::vector<std::size_t> ks;
      for (const auto& g : groups)
        if (std::find(ks.begin(), ks.end(), g.second) == ks.end()) ks.push_back(g.second);
      for (std::size_t k : ks) md << " k=" << k << " |";
      md << "\n|---|";
      for (std::size_t i = 0; i < ks.size(); ++i) md << "---|";
      md << "\n";
      for (double eps : dp.epsilons) {
        md << "| " << fmt_general(eps) << " |";
        for (std::size_t k : ks) md << " " << fmt(static_cast<double>(k) * eps / std::log(2.0), 1) << " |";
        md << "\n";
      }
      md << "\n";
      results.push_back({{"corpus", corpus}, {"seed", seed}, {"records", N}, {"sampling_rate", q}, {"delta", delta},
                         {"steps", opt.steps}, {"clip_norm", dp.clip_norm}, {"rows", rows_json}});
    }

  json j;
  j["schema"] = "dp_sgd_lm results v1 (docs/experiment.md, DP-SGD section)";
  j["run"] = run_name;
  j["command"] = command;
  j["config"] = {{"corpora", opt.corpora}, {"train_bytes", opt.train_bytes}, {"valid_bytes", opt.valid_bytes},
                 {"layers", opt.layers}, {"width", opt.width}, {"heads", opt.heads}, {"context", opt.context},
                 {"steps", opt.steps}, {"batch", opt.batch}, {"learning_rate", opt.learning_rate},
                 {"dp_learning_rate", dp.learning_rate > 0 ? dp.learning_rate : opt.learning_rate},
                 {"clip_norm", dp.clip_norm}, {"epsilons", dp.epsilons}, {"repeats", opt.repeats}, {"formats", opt.formats},
                 {"first_seed", opt.first_seed}, {"seeds", opt.seeds}, {"threads", opt.threads}};
  j["datasets"] = results;
  write_text(dir / "dp_results.json", j.dump(2) + "\n");
  write_text(dir / "dp_points.json", points.dump(2) + "\n");
  write_text(dir / "dp_results.md", md.str());
  std::cout << "\n" << md.str() << "[done] " << (dir / "dp_results.md").string() << ", " << (dir / "dp_results.json").string()
            << ", frontier points " << (dir / "dp_points.json").string() << " (" << fmt(now_seconds() - t_start, 1) << " s)\n";
  return 0;
}

}  // namespace unlearn_lm

int main(int argc, char** argv) {
  std::cout << std::unitbuf;
  unlearn_lm::Options opt;
  unlearn_lm::DpExperimentOptions dp;
  CLI::App app{"dp_sgd_lm: train the experiment's byte-level GPT with DP-SGD at target epsilons on the same planted "
               "corpus as unlearn_lm and measure canary exposure and perplexity (docs/experiment.md)."};
  unlearn_lm::add_options(app, opt);
  app.add_option("--epsilons", dp.epsilons, "target epsilons (delta = 1/N)");
  app.add_option("--dp-clip", dp.clip_norm, "per-window clipping norm C");
  app.add_option("--dp-lr", dp.learning_rate, "DP-SGD peak learning rate (0: --lr)");
  app.add_flag("!--no-baselines", dp.baselines, "skip the non-private and retrained reference rows");
  CLI11_PARSE(app, argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  try {
    unlearn_lm::validate(opt);
    example_checks::require(!dp.epsilons.empty(), "--epsilons needs at least one value");
    for (double e : dp.epsilons) example_checks::require_finite(e, 1e-6, 1e6, "--epsilons (every epsilon)");
    example_checks::require_finite(dp.clip_norm, 1e-12, 1e6, "--dp-clip");
    example_checks::require_finite(dp.learning_rate, 0.0, 10.0, "--dp-lr (0: --lr)");
    return unlearn_lm::run(opt, dp, command);
  } catch (const fisher_unlearn::Error& e) {
    std::cerr << "dp_sgd_lm: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "dp_sgd_lm: unexpected error: " << e.what() << "\n";
    return 2;
  }
}
