// unlearn_lm options: the defaults, the command line (CLI11) and their validation at parse time.
#pragma once

#include "../example_checks.hpp"
#include "fisher_unlearn/errors.hpp"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace unlearn_lm {

struct Options {
  std::vector<std::string> corpora{"kjv"};  ///< each corpus is its own dataset (own split, canaries, rows)
  std::string data_dir = "data";
  std::string results_dir = "results";
  std::string cache_dir = ".cache/unlearn_lm";
  std::string run_name;                      ///< default: derived from the configuration
  long long train_bytes = 120000;            ///< per corpus, cut at a line boundary; 0 = all
  long long valid_bytes = 60000;             ///< per corpus; 0 = all
  // model
  long long layers = 2, width = 64, heads = 4, context = 64;
  // training
  long long steps = 700, batch = 32, warmup = 50;
  double learning_rate = 3e-3, weight_decay = 0.01;
  long long checkpoint_every = 100;          ///< save the training state every N steps (0: never)
  bool resume = false;                       ///< continue a killed training run from its saved state
  // canaries
  std::vector<long long> repeats{1, 10, 50};
  std::vector<std::string> formats{"pin", "phone"};
  // protocol
  long long seeds = 3;                       ///< seeds first_seed, first_seed + 1, ...
  long long first_seed = 1;
  std::vector<std::string> methods{"default"};
  long long retain_samples = 512;            ///< retain windows given to every method (a seeded sample)
  long long fisher_samples = 256;            ///< m: retain gradients that build each Fisher
  long long search_budget = 8;               ///< evaluations of the knob search, the same for every method
  double exposure_target = 2.5;              ///< bits: bound on the MEAN exposure over canaries
  double exposure_ceiling = 7.0;             ///< bits: bound on the LARGEST exposure
  double target_tolerance = 0.5;             ///< bits: the search stops at a reached point this close below
  double utility_guard = 1.5;                ///< a point whose probe perplexity exceeds this × the start's fails
  long long selection_candidates = 256;      ///< sampled candidates per tuning canary at every search step
  long long estimate_candidates = 2000;      ///< sampled candidates per reported canary
  double exact_above = 4.0;                  ///< bits: exact pruned rank where the estimate is at least this
  long long mia_nonmembers = 200;            ///< never-seen candidates per format for the MIA
  long long max_steps = 64;                  ///< iterative methods: most steps (their knob's range)
  double iterative_lr = 0.0;                 ///< 0: each method's documented default
  long long forget_copies = 2;               ///< iterative methods: copies of each canary in the forget set
  long long forget_context = 24;             ///< iterative methods: bytes of training text before each copy
  double trust_kl = 1e-4;                    ///< iterative methods: predicted retain KL per step (nats), all methods
  double trust_shrink = 1.0;                 ///< iterative methods: kappa *= this after a step that raised the forget objective (1: fixed)
  long long check_spacing = 0;               ///< iterative methods: at most this many steps between stopping checks (0: only 1, 2, 4, ...)
  long long average_iterates = 1;            ///< iterative methods: checks and the result use the mean of the last k iterates (1: the last)
  std::string trust_metric = "kfac";         ///< iterative methods other than iter/natural_*: F_R of the trust region
  long long kl_windows = 16;                 ///< retain windows of the measured retain KL at every search point (0: off)
  bool trace_steps = false;                  ///< diagnostic: the tuning score after EVERY step of a continuation (not charged, not selected on)
  double fisher_damping = 1e-2;              ///< iterative methods: lambda = alpha tr(F)/d of F_R
  double retain_anchor = 1.0;                ///< iterative methods: beta of the retain anchor (not for plain ascent)
  long long retain_batch = 16;               ///< retain windows per step of the retain anchor
  long long first_order_steps = 30, first_order_batch = 16;  ///< the legacy SGD baselines
  long long deletion_rounds = 0;             ///< repeated-deletion study: rounds (0 = off)
  std::string frontier_points;               ///< JSON list of extra frontier points (family dp, ...)
  bool retrain = true, plots = true;
  long long threads = 2;
};

inline std::vector<std::string> default_methods();
inline std::vector<std::string> all_methods();

/// Adds every option to `app`, bound to `o`.
inline void add_options(CLI::App& app, Options& o) {
  app.option_defaults()->always_capture_default();
  app.add_option("--corpus", o.corpora, "corpora under --data (kjv fortunes jargon wordnet); each is its own dataset");
  app.add_option("--data", o.data_dir, "folder written by scripts/prepare_data.sh");
  app.add_option("--results", o.results_dir, "results are written to <results>/<run>/");
  app.add_option("--cache", o.cache_dir, "trained checkpoints, keyed by configuration and data");
  app.add_option("--run", o.run_name, "run name (default: from the configuration)");
  app.add_option("--train-bytes", o.train_bytes, "training bytes per corpus, cut at a line (0 = all)");
  app.add_option("--valid-bytes", o.valid_bytes, "validation bytes per corpus (0 = all)");
  app.add_option("--layers", o.layers, "transformer blocks");
  app.add_option("--width", o.width, "residual width");
  app.add_option("--heads", o.heads, "attention heads (divide the width)");
  app.add_option("--context", o.context, "context length in bytes");
  app.add_option("--steps", o.steps, "AdamW training steps");
  app.add_option("--batch", o.batch, "windows per training step");
  app.add_option("--lr", o.learning_rate, "peak training learning rate");
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay");
  app.add_option("--warmup", o.warmup, "warm-up steps");
  app.add_option("--checkpoint-every", o.checkpoint_every,
                 "save the training state (model, AdamW moments, RNG, data position) under --cache every N steps (0: never)");
  app.add_flag("--resume", o.resume, "continue a killed training run from its last saved state (same options, same data)");
  app.add_option("--repeats", o.repeats, "copies of each canary (one canary per value, format and canary set)");
  app.add_option("--format", o.formats, "canary formats: pin ('my PIN is ######') and/or phone (PII-like)");
  app.add_option("--seeds", o.seeds, "number of seeds (model initialisation, data order, secrets)");
  app.add_option("--first-seed", o.first_seed, "the first seed");
  app.add_option("--methods", o.methods, "'default', 'all', 'none' or method names (docs/experiment.md)");
  app.add_option("--retain-samples", o.retain_samples, "retain windows given to every method");
  app.add_option("--fisher-samples", o.fisher_samples, "m: retain gradients that build each Fisher");
  app.add_option("--search-budget", o.search_budget, "knob evaluations per method (the same for every method)");
  app.add_option("--exposure-target", o.exposure_target, "bits: bound on the mean exposure of the canaries");
  app.add_option("--exposure-ceiling", o.exposure_ceiling, "bits: bound on the largest exposure");
  app.add_option("--target-tolerance", o.target_tolerance, "bits: the search stops at a reached point this close below the target");
  app.add_option("--utility-guard", o.utility_guard, "a knob value whose probe perplexity exceeds this x the start's counts as failed");
  app.add_option("--selection-candidates", o.selection_candidates, "sampled candidates per tuning canary per search step");
  app.add_option("--estimate-candidates", o.estimate_candidates, "sampled candidates per reported canary");
  app.add_option("--exact-above", o.exact_above, "bits: exact (pruned) exposure where the sampled estimate is at least this (0: always)");
  app.add_option("--mia-nonmembers", o.mia_nonmembers, "never-seen candidates per format in the membership-inference AUC");
  app.add_option("--max-steps", o.max_steps, "iterative methods: most steps (the top of their knob)");
  app.add_option("--iterative-lr", o.iterative_lr, "iterative methods: learning rate (0: each method's default)");
  app.add_option("--forget-copies", o.forget_copies, "iterative methods: copies of each canary in the forget set");
  app.add_option("--forget-context", o.forget_context, "iterative methods: bytes of training text before each copy");
  app.add_option("--trust-kl", o.trust_kl, "iterative methods: predicted retain KL per step (the same for every method)");
  app.add_option("--trust-shrink", o.trust_shrink,
                 "iterative methods: multiply the trust region's KL by this after a step that raised the forget objective (1: fixed; all methods)");
  app.add_option("--check-spacing", o.check_spacing,
                 "iterative methods: at most this many steps between two stopping checks of the continuation (0: checks at 1, 2, 4, 8, ... only)");
  app.add_option("--average-iterates", o.average_iterates,
                 "iterative methods: every stopping check and the returned model use the mean of the last k iterates (1: the last iterate; all methods)");
  app.add_option("--trust-metric", o.trust_metric, "iterative methods other than iter/natural_*: F_R of the trust region (woodbury, kfac, ekfac)");
  app.add_option("--kl-windows", o.kl_windows, "retain windows of the measured retain KL at every search point (0: off)");
  app.add_flag("--trace-steps", o.trace_steps,
               "diagnostic: print the tuning-canary score after every step of an iterative method's continuation (not charged, not used by the search)");
  app.add_option("--fisher-damping", o.fisher_damping, "iterative methods: alpha of lambda = alpha tr(F)/d");
  app.add_option("--retain-anchor", o.retain_anchor, "iterative methods: beta of the retain anchor");
  app.add_option("--retain-batch", o.retain_batch, "iterative methods: retain windows per step (retain anchor)");
  app.add_option("--first-order-steps", o.first_order_steps, "SGD steps of the legacy first-order baselines");
  app.add_option("--first-order-batch", o.first_order_batch, "batch of the legacy first-order baselines");
  app.add_option("--deletion-rounds", o.deletion_rounds, "repeated-deletion study: successive requests (0: off)");
  app.add_option("--frontier-points", o.frontier_points, "JSON list of extra frontier points, e.g. DP-SGD models (docs/experiment.md)");
  app.add_flag("!--no-retrain", o.retrain, "skip retraining from scratch (no reference: ratios are n/a)");
  app.add_flag("!--no-plots", o.plots, "skip the gnuplot plots");
  app.add_option("--threads", o.threads, "threads");
}


/// Checks every option (ranges, NaN, sizes, method names, writable folders); throws InvalidArgument
/// with what was wrong and what to do. Called before any data is read or any model trained.
inline void validate(const Options& o) {
  using example_checks::require;
  using example_checks::require_finite;
  using example_checks::require_range;
  const long long big = 1LL << 40;
  require(!o.corpora.empty(), "--corpus needs at least one corpus");
  require_range(o.train_bytes, 0, big, "--train-bytes", "0 means the whole corpus");
  require_range(o.valid_bytes, 0, big, "--valid-bytes", "0 means the whole corpus");
  require_range(o.layers, 1, 64, "--layers");
  require_range(o.width, 1, 8192, "--width");
  require_range(o.heads, 1, 256, "--heads");
  require(o.width % o.heads == 0, "--heads (" + std::to_string(o.heads) + ") must divide --width (" +
                                      std::to_string(o.width) + ")");
  require_range(o.context, 2, 1 << 16, "--context");
  require_range(o.steps, 1, 1LL << 32, "--steps");
  require_range(o.batch, 1, 1 << 20, "--batch");
  require_range(o.warmup, 0, 1LL << 32, "--warmup");
  require_range(o.checkpoint_every, 0, 1LL << 32, "--checkpoint-every", "0 saves no training state");
  require_finite(o.learning_rate, 1e-12, 10.0, "--lr");
  require(o.learning_rate > 0, "--lr must be positive");
  require_finite(o.weight_decay, 0.0, 10.0, "--weight-decay");
  require(!o.repeats.empty(), "--repeats needs at least one value");
  for (long long k : o.repeats) require_range(k, 1, 100000, "--repeats");
  require(!o.formats.empty(), "--format needs at least one format (pin, phone)");
  for (const auto& f : o.formats) require(f == "pin" || f == "phone", "unknown canary format '" + f + "'; choose pin or phone");
  require_range(o.seeds, 1, 100, "--seeds");
  require_range(o.first_seed, 0, 1LL << 40, "--first-seed");
  require_range(o.retain_samples, 1, 1 << 24, "--retain-samples");
  require_range(o.fisher_samples, 1, 1 << 20, "--fisher-samples");
  require_range(o.search_budget, 1, 1000, "--search-budget");
  require_finite(o.exposure_target, 0.0, 64.0, "--exposure-target");
  require_finite(o.exposure_ceiling, 0.0, 64.0, "--exposure-ceiling");
  require(o.exposure_ceiling >= o.exposure_target, "--exposure-ceiling must be at least --exposure-target");
  require_finite(o.target_tolerance, 0.0, 64.0, "--target-tolerance");
  require_finite(o.utility_guard, 1.0, 1e12, "--utility-guard");
  require_range(o.selection_candidates, 16, 1 << 24, "--selection-candidates");
  require_range(o.estimate_candidates, 16, 1 << 24, "--estimate-candidates");
  require_finite(o.exact_above, 0.0, 64.0, "--exact-above");
  require_range(o.mia_nonmembers, 1, 1 << 24, "--mia-nonmembers");
  require_range(o.max_steps, 1, 1 << 20, "--max-steps");
  require_finite(o.iterative_lr, 0.0, 1e6, "--iterative-lr");
  require_range(o.forget_copies, 1, 1 << 20, "--forget-copies");
  require_range(o.forget_context, 0, 1 << 20, "--forget-context");
  require_finite(o.trust_kl, 1e-12, 1e6, "--trust-kl");
  require_finite(o.trust_shrink, 1e-6, 1.0, "--trust-shrink");
  require_range(o.average_iterates, 1, 64, "--average-iterates");
  require_range(o.check_spacing, 0, 1 << 20, "--check-spacing");
  require(o.trust_metric == "woodbury" || o.trust_metric == "kfac" || o.trust_metric == "ekfac",
          "--trust-metric must be woodbury, kfac or ekfac; got '" + o.trust_metric + "'");
  require_range(o.kl_windows, 0, 1 << 16, "--kl-windows");
  require_finite(o.fisher_damping, 1e-12, 1e6, "--fisher-damping");
  require_finite(o.retain_anchor, 0.0, 1e6, "--retain-anchor");
  require_range(o.retain_batch, 1, 1 << 20, "--retain-batch");
  require_range(o.first_order_steps, 1, 1 << 24, "--first-order-steps");
  require_range(o.first_order_batch, 1, 1 << 20, "--first-order-batch");
  require_range(o.deletion_rounds, 0, 50, "--deletion-rounds");
  require_range(o.threads, 1, 1024, "--threads");
  const auto known = all_methods();
  for (const auto& m : o.methods) {
    if (m == "all" || m == "default" || m == "none") continue;
    bool found = false;
    for (const auto& k : known) found = found || k == m;
    std::string list;
    for (const auto& k : known) list += " " + k;
    require(found, "unknown method '" + m + "'; known: 'default', 'all', 'none' or" + list);
  }
  if (!o.frontier_points.empty())
    require(std::filesystem::is_regular_file(o.frontier_points), "--frontier-points '" + o.frontier_points + "' is not a readable file");
  example_checks::require_writable_dir(o.results_dir, "--results");
  example_checks::require_writable_dir(o.cache_dir, "--cache");
}

}  // namespace unlearn_lm
