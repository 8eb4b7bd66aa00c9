// unlearn_gguf options: defaults (from docs/unlearners.md and docs/experiment.md's measured settings),
// the command line (CLI11) and the checks that need no file.
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace unlearn_gguf {

/// A problem with what the user gave (options, files): exit code 2 and the message.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  // files
  std::string model, forget, out, report;
  std::string retain, representative, heldout, candidates;
  // records
  long long prefix_tokens = 32;        ///< lines without a TAB: the first N tokens are the prefix (Carlini et al.)
  std::string forget_scope = "secret"; ///< which tokens the forget loss covers: secret | record
  long long max_records = 1000;
  long long num_candidates = 49;       ///< generated candidates per record when no --candidates file
  // model
  long long context = 0;               ///< positions; 0 = min(the file's, 2048)
  std::string trainable = "top:2";     ///< top:N blocks (+ output_norm), or a comma list of tensors/blocks
  long long threads = 0;               ///< 0 = all cores
  std::string output_type = "f32";     ///< f32 | f16 | bf16 | q8_0 for the changed tensors
  // method
  std::string method = "natural-gradient";  ///< natural-gradient | plain-gradient | adam
  /// kfac | woodbury | diagonal. K-FAC: the curvature issue's best F_R (docs/experiment.md) and the one
  /// that forgot case A's addresses in one step without a utility loss (docs/case_studies.md); a
  /// rank-m Woodbury F_R calls most directions free and wrecked SmolLM2 at κ = 1e-6 (docs/unlearn_gguf.md).
  std::string estimator = "kfac";
  std::string objective = "npo";            ///< npo | ascent
  double npo_beta = 0.1;
  std::string fisher_kind = "auto";         ///< auto | empirical | monte-carlo
  long long fisher_samples = 32;            ///< m retain windows for F_R
  double damping = 1e-2;                    ///< λ = damping · tr(F̂)/d
  double trust_kl = 1e-4;                   ///< κ: predicted retain KL per step (nats per token, F_R per-token scaled)
  double learning_rate = 0.0;               ///< 0: 1e4 (every step at the trust-region boundary), adam 1e-4
  /// β of the retain anchor; < 0 (auto): 1 with --retain (the model's own training data keeps its loss),
  /// 0 otherwise (representative text or model samples serve the curvature only: no training on them).
  double retain_weight = -1.0;
  long long retain_batch = 8;
  long long window = 64;                    ///< tokens per retain / representative / held-out window
  long long retain_windows = 64;            ///< windows kept for the anchor and the retain loss
  long long heldout_tokens = 8192;
  /// Utility guard: out.gguf is written only if the guard perplexity (held-out text, else the retain /
  /// representative / model-sample windows) after unlearning is at most this multiple of the one before.
  double max_perplexity_ratio = 1.10;
  bool write_anyway = false;                ///< write out.gguf even when the guard fails (exit code stays 4)
  // stopping
  std::string stop = "rank";                ///< rank | nll | steps
  double target_percentile = 0.5;
  double target_nll = 0.0;                  ///< nats per secret token (stop = nll)
  long long check_every = 5;
  long long max_steps = 256;
  double max_time = 0.0;                    ///< seconds, 0 = none
  std::uint64_t seed = 1;
  bool quiet = false;
  std::string command_line;

  std::size_t resolved_threads() const {
    if (threads > 0) return static_cast<std::size_t>(threads);
    const unsigned h = std::thread::hardware_concurrency();
    return h == 0 ? 1 : h;
  }
  double resolved_retain_weight() const {
    if (retain_weight >= 0.0) return retain_weight;
    return retain.empty() ? 0.0 : 1.0;
  }
  double resolved_learning_rate() const {
    if (learning_rate > 0.0) return learning_rate;
    return method == "adam" ? 1e-4 : 1e4;
  }
};

/// Parses argv; returns false when --help was asked (printed). Throws InputError on a bad option.
inline bool parse_options(int argc, const char* const* argv, Options& o) {
  CLI::App app{"unlearn_gguf: make a GGUF Llama model forget the given records (iterated natural-gradient "
               "unlearning in a retain-KL trust region) and report what was checked. docs/unlearn_gguf.md"};
  app.add_option("--model", o.model, "input GGUF model (llama architecture)")->required();
  app.add_option("--forget", o.forget, "records to forget: one per line, 'prefix<TAB>secret' (or the whole line, "
                                       "the first --prefix-tokens tokens being the prefix); \\n \\t \\\\ escapes")
      ->required();
  app.add_option("--out", o.out, "output GGUF (written atomically at the end)")->required();
  app.add_option("--report", o.report, "report directory (report.md, report.json, PNG plots)")->required();
  auto* retain = app.add_option("--retain", o.retain, "retain text (the data the model should keep serving)");
  app.add_option("--representative", o.representative,
                 "representative text for the retain curvature when no retain set is at hand")
      ->excludes(retain);
  app.add_option("--heldout", o.heldout, "held-out text: perplexity before/after and membership calibration");
  app.add_option("--candidates", o.candidates, "candidate secrets, one per line, shared by every record");
  app.add_option("--num-candidates", o.num_candidates, "generated candidates per record without --candidates")
      ->check(CLI::Range(1LL, 100000LL));
  app.add_option("--prefix-tokens", o.prefix_tokens, "prefix length for records without a TAB")
      ->check(CLI::Range(1LL, 1000000LL));
  app.add_option("--forget-scope", o.forget_scope, "forget loss on the secret or the whole record")
      ->check(CLI::IsMember({"secret", "record"}));
  app.add_option("--max-records", o.max_records, "refuse forget files with more records")->check(CLI::Range(1LL, 1000000LL));
  app.add_option("--context", o.context, "positions the model serves (0: min(file, 2048))")->check(CLI::Range(0LL, 1LL << 20));
  app.add_option("--trainable", o.trainable, "top:N blocks, or tensors/blocks 'blk.29,output_norm'");
  app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0LL, 1024LL));
  app.add_option("--output-type", o.output_type, "storage of the changed tensors")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
  app.add_option("--method", o.method, "step direction")->check(CLI::IsMember({"natural-gradient", "plain-gradient", "adam"}));
  app.add_option("--estimator", o.estimator, "retain Fisher F_R")->check(CLI::IsMember({"woodbury", "diagonal", "kfac"}));
  app.add_option("--objective", o.objective, "forget objective")->check(CLI::IsMember({"npo", "ascent"}));
  app.add_option("--npo-beta", o.npo_beta, "NPO's beta")->check(CLI::PositiveNumber);
  app.add_option("--fisher-kind", o.fisher_kind, "auto: empirical with --retain, Monte-Carlo otherwise")
      ->check(CLI::IsMember({"auto", "empirical", "monte-carlo"}));
  app.add_option("--fisher-samples", o.fisher_samples, "m: retain windows whose gradients build F_R")
      ->check(CLI::Range(1LL, 100000LL));
  app.add_option("--damping", o.damping, "relative damping alpha: lambda = alpha tr(F)/d")->check(CLI::PositiveNumber);
  app.add_option("--trust-kl", o.trust_kl, "kappa: predicted retain KL per step (nats)")->check(CLI::PositiveNumber);
  app.add_option("--learning-rate", o.learning_rate, "eta (0: 1e4 = every step at the trust-region boundary; adam 1e-4)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--retain-weight", o.retain_weight, "beta of the retain anchor (0: none; default 1 with --retain, else 0)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--retain-batch", o.retain_batch, "retain windows per anchor batch")->check(CLI::Range(1LL, 100000LL));
  app.add_option("--window", o.window, "tokens per retain/held-out window")->check(CLI::Range(2LL, 1LL << 20));
  app.add_option("--retain-windows", o.retain_windows, "retain windows kept")->check(CLI::Range(1LL, 1000000LL));
  app.add_option("--heldout-tokens", o.heldout_tokens, "held-out tokens scored")->check(CLI::Range(2LL, 1LL << 30));
  app.add_option("--max-perplexity-ratio", o.max_perplexity_ratio,
                 "utility guard: refuse to write --out when perplexity after / before exceeds this (>= 1)")
      ->check(CLI::Range(1.0, 1e300));
  app.add_flag("--write-anyway", o.write_anyway, "write --out even when the utility guard fails (exit code 4)");
  app.add_option("--stop", o.stop, "rank: every record not extracted and at or below --target-percentile; nll: "
                                   "every secret's NLL >= --target-nll; steps: --max-steps/--max-time only")
      ->check(CLI::IsMember({"rank", "nll", "steps"}));
  app.add_option("--target-percentile", o.target_percentile, "rank rule: (mid-rank - 1/2)/|R| to reach (0.5 = median)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--target-nll", o.target_nll, "nll rule: mean NLL per secret token to reach (nats)");
  app.add_option("--check-every", o.check_every, "steps between checks of the stopping rule")->check(CLI::Range(1LL, 1000000LL));
  app.add_option("--max-steps", o.max_steps, "most unlearning steps")->check(CLI::Range(1LL, 1LL << 40));
  app.add_option("--max-time", o.max_time, "most seconds of unlearning steps (0: no limit)")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "seeds sampling, subsampling and generated candidates");
  app.add_flag("--quiet", o.quiet, "no progress lines");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e);
    return false;
  } catch (const CLI::ParseError& e) {
    throw InputError(std::string(e.what()) + " (see --help)");
  }
  if (o.stop == "nll" && !(o.target_nll > 0.0))
    throw InputError("--stop nll needs --target-nll > 0 (nats per secret token, e.g. the mean NLL of never-seen "
                     "secrets of the same kind)");
  for (int i = 0; i < argc; ++i) o.command_line += (i ? " " : "") + std::string(argv[i]);
  return true;
}

}  // namespace unlearn_gguf
