// case_studies options: defaults sized for case A end to end in about 30 minutes on a shared 2-core
// machine (docs/case_studies.md), the command line (CLI11) and its validation before anything runs.
#pragma once

#include "../example_checks.hpp"
#include "fisher_unlearn/errors.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace case_studies {

struct Options {
  std::string study = "a";                 ///< a: personal data (changelogs); b: a verbatim passage
  std::string model;                       ///< the GGUF file (SmolLM2-135M-Instruct Q4_1)
  std::string entries = "data/changelogs/entries.jsonl";   ///< scripts/prepare_changelogs.py
  std::string passage_file = "/usr/share/games/fortunes/computers";  ///< case B: where the passage comes from
  std::string results_dir = "results";
  std::string cache_dir = ".cache/case_studies";
  std::string run_name;                    ///< default: case_a / case_b
  std::uint64_t seed = 1;
  long long threads = 2;
  long long context = 96;                  ///< tokens per training sequence (entries are cut to fit)
  long long top_blocks = 1;                ///< trainable: the top k blocks + output_norm
  // corpus (case A)
  long long tuning_people = 2;             ///< deleted, used to pick every knob
  long long reported_people = 4;           ///< deleted, measured, never used to pick anything
  long long kept_people = 3;               ///< frequent people who stay in the corpus
  long long entries_per_person = 4;        ///< entries of each frequent person in the corpus
  long long one_off_people = 32;           ///< people with one entry in the corpus
  long long heldout_people = 12;           ///< never in the corpus: candidates, MIA non-members, held-out ppl
  long long max_person_entries = 60;       ///< skip people with more entries on this system (likely pretrained on)
  // fine-tuning (the same for training and retraining)
  long long epochs = 5, batch = 8;
  double learning_rate = 5e-4;
  // case B. Its fine-tuning defaults differ from case A's (applied by apply_study_defaults unless given):
  // measured on tuning passages (seed 2): r = 8 copies over 3 epochs at lr 5e-4 left a 128-token passage
  // unextractable; r = 16, 8 epochs, lr 1e-3 makes the top block memorise it (extractable rate 0.47 and
  // 0.94) at a quarter of the held-out damage of r = 24, 6 epochs, lr 2e-3 (docs/case_studies.md, case B).
  long long passage_repeats = 16, passage_tokens = 128, filler_entries = 32;
  static constexpr long long kCaseBEpochs = 8;
  static constexpr double kCaseBLearningRate = 1e-3;
  // unlearning
  std::vector<std::string> methods{"natural_kfac", "natural_diagonal", "npo", "adam", "gradient_difference"};
  long long max_steps = 16;                ///< knob range: 1 .. max_steps unlearning steps
  /// Predicted retain KL per step (nats per token: F_R is per-token scaled), the same for every method;
  /// unlearn_lm's matched-exposure setting on the byte GPT (docs/experiment.md).
  double trust_kl = 1e-4;
  std::string trust_metric = "kfac";       ///< F_R of the trust region: kfac, diagonal or woodbury
  /// What the forget loss covers: address (the tokens of "email>"), trailer ("Name <email>") or entry.
  std::string forget_scope = "address";
  long long fisher_samples = 48;           ///< m retain sequences for F_R
  double fisher_damping = 1e-2;            ///< λ = α·tr(F̂)/d (unlearn_lm's default)
  double retain_anchor = 1.0;              ///< β of the retain anchor
  long long retain_batch = 8;
  double target_margin = 0.5;              ///< bits above the retrained model's tuning score that count as reached
  double utility_guard = 1.5;              ///< a point whose probe perplexity exceeds this × the trained model's fails
  bool export_gguf = true;
  bool tool_inputs = false;                ///< case A: write the trained model and text files for unlearn_gguf
};

/// Parses argv into `o`; returns false after printing help. Throws CLI::ParseError for bad input.
inline void add_options(CLI::App& app, Options& o) {
  app.add_option("--study", o.study, "a (personal data from Debian changelogs) or b (a verbatim passage)")
      ->check(CLI::IsMember({"a", "b"}));
  app.add_option("--model", o.model, "SmolLM2 GGUF file (scripts/fetch_smollm2.sh prints its path)")->required()
      ->check(CLI::ExistingFile);
  app.add_option("--entries", o.entries, "changelog entries (scripts/prepare_changelogs.py)");
  app.add_option("--passage-file", o.passage_file, "case B: fortune file the passage is taken from");
  app.add_option("--results", o.results_dir, "results folder (results/<run>/)");
  app.add_option("--cache", o.cache_dir, "cache of fine-tuned top blocks (keyed by everything they depend on)");
  app.add_option("--run", o.run_name, "run name (default case_a / case_b)");
  app.add_option("--seed", o.seed, "selects the people, the data order and every sampled quantity");
  app.add_option("--threads", o.threads, "worker threads")->check(CLI::Range(1, 256));
  app.add_option("--context", o.context, "tokens per training sequence")->check(CLI::Range(16, 1024));
  app.add_option("--top-blocks", o.top_blocks, "trainable top blocks (+ output_norm)")->check(CLI::Range(1, 30));
  app.add_option("--tuning-people", o.tuning_people, "deleted people used to pick knobs")->check(CLI::Range(1, 100));
  app.add_option("--reported-people", o.reported_people, "deleted people that are only measured")->check(CLI::Range(1, 100));
  app.add_option("--kept-people", o.kept_people, "frequent people kept in the corpus")->check(CLI::Range(0, 100));
  app.add_option("--entries-per-person", o.entries_per_person, "entries per frequent person")->check(CLI::Range(1, 50));
  app.add_option("--one-off-people", o.one_off_people, "people with one entry")->check(CLI::Range(0, 5000));
  app.add_option("--heldout-people", o.heldout_people, "people never trained on")->check(CLI::Range(2, 1000));
  app.add_option("--max-person-entries", o.max_person_entries, "skip people with more entries than this")->check(CLI::Range(1, 100000));
  app.add_option("--epochs", o.epochs, "fine-tuning epochs (case B: 8 unless given)")->check(CLI::Range(1, 1000));
  app.add_option("--batch", o.batch, "fine-tuning batch (sequences)")->check(CLI::Range(1, 1024));
  app.add_option("--lr", o.learning_rate, "fine-tuning Adam learning rate (case B: 1e-3 unless given)");
  app.add_option("--passage-repeats", o.passage_repeats, "case B: copies of the passage in the corpus")->check(CLI::Range(1, 1000));
  app.add_option("--passage-tokens", o.passage_tokens, "case B: passage length in tokens")->check(CLI::Range(96, 1024));
  app.add_option("--filler-entries", o.filler_entries, "case B: changelog entries around the passage")->check(CLI::Range(1, 10000));
  app.add_option("--methods", o.methods, "natural_kfac natural_diagonal natural_woodbury npo adam gradient_difference (or none)");
  app.add_option("--max-steps", o.max_steps, "most unlearning steps (the knob's range)")->check(CLI::Range(1, 4096));
  app.add_option("--trust-kl", o.trust_kl, "predicted retain KL per step (nats per token)");
  app.add_option("--trust-metric", o.trust_metric, "F_R of the trust region (every method)")
      ->check(CLI::IsMember({"kfac", "diagonal", "woodbury"}));
  app.add_option("--forget-scope", o.forget_scope, "case A: the forget loss on the address, the trailer or the whole entry")
      ->check(CLI::IsMember({"address", "trailer", "entry"}));
  app.add_option("--fisher-samples", o.fisher_samples, "m retain sequences for F_R")->check(CLI::Range(1, 4096));
  app.add_option("--fisher-damping", o.fisher_damping, "alpha: lambda = alpha tr(F)/d");
  app.add_option("--retain-anchor", o.retain_anchor, "beta of the retain anchor");
  app.add_option("--retain-batch", o.retain_batch, "retain sequences per anchor batch")->check(CLI::Range(1, 1024));
  app.add_option("--target-margin", o.target_margin, "bits above the retrained tuning score that count as reached");
  app.add_option("--utility-guard", o.utility_guard, "probe perplexity bound relative to the trained model")
      ->check(CLI::Range(1.0, 1e6));
  app.add_flag("!--no-export", o.export_gguf, "do not write the unlearned model as GGUF");
  app.add_flag("--tool-inputs", o.tool_inputs,
               "case A: also write <run>/tool_inputs/ (the trained model as GGUF, the deleted people's records, the "
               "candidate addresses, retain and held-out text) to run examples/unlearn_gguf on the same job");
}

/// Case B's own fine-tuning defaults, where the command line did not set them.
inline void apply_study_defaults(const CLI::App& app, Options& o) {
  if (o.study != "b") return;
  if (app.count("--epochs") == 0) o.epochs = Options::kCaseBEpochs;
  if (app.count("--lr") == 0) o.learning_rate = Options::kCaseBLearningRate;
}

inline void validate(const Options& o) {
  static const std::vector<std::string> known{"natural_kfac", "natural_woodbury", "natural_diagonal", "npo", "adam", "gradient_difference", "none"};
  for (const auto& m : o.methods) {
    bool ok = false;
    for (const auto& k : known) ok = ok || k == m;
    if (!ok) throw fisher_unlearn::InvalidArgument("--methods: unknown method '" + m +
                                                   "'; choose from natural_kfac natural_diagonal natural_woodbury npo adam gradient_difference none");
  }
  // The reals are checked here, not by CLI11 (whose range validators let NaN through and print the
  // infinite bound of PositiveNumber as a 309-digit number).
  example_checks::require_finite(o.learning_rate, 1e-12, 10.0, "--lr");
  example_checks::require_finite(o.trust_kl, 1e-12, 1e6, "--trust-kl");
  example_checks::require_finite(o.fisher_damping, 1e-12, 1e6, "--fisher-damping");
  example_checks::require_finite(o.retain_anchor, 0.0, 1e6, "--retain-anchor");
  example_checks::require_finite(o.target_margin, 0.0, 64.0, "--target-margin");
  example_checks::require_finite(o.utility_guard, 1.0, 1e6, "--utility-guard");
  // before the model is loaded or anything fine-tuned
  example_checks::require_writable_dir(o.results_dir, "--results");
  example_checks::require_writable_dir(o.cache_dir, "--cache");
}

}  // namespace case_studies
