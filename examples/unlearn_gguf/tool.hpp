// unlearn_gguf: the phases in order (check outputs → read model, tokenizer, records → retain inputs →
// measure → F_R + unlearn → measure → write GGUF + report) and the mapping of errors to exit codes:
// 0 done and the stopping target met, 3 done but the target NOT met (outputs written), 2 bad input,
// 1 other failure, 130 cancelled (Ctrl-C). On 1, 2 and 130 no output file exists.
#pragma once

#include "inputs.hpp"
#include "measure.hpp"
#include "options.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "unlearn.hpp"

#include "fisher_unlearn/bpe_tokenizer.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/io/gguf.hpp"
#include "fisher_unlearn/models/llama_gguf.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <new>
#include <string>
#include <vector>

namespace unlearn_gguf {

/// Fails early (before any work) when an output cannot be written: the folder is missing or read-only.
inline void check_writable(const fs::path& file, const std::string& what) {
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(what + ": the folder '" + dir.string() + "' does not exist; create it first");
  if (fs::is_directory(file, ec)) throw InputError(what + " '" + file.string() + "' is a directory");
  const fs::path probe = dir / (".unlearn_gguf_probe." + std::to_string(::getpid()));
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) throw InputError(what + ": cannot write in '" + dir.string() + "' (permission denied or read-only)");
  std::fclose(f);
  fs::remove(probe, ec);
}

inline std::vector<std::string> trainable_groups(const Options& o, const fisher_unlearn::models::LlamaConfig& c) {
  if (o.trainable.rfind("top:", 0) == 0) {
    long long n = 0;
    try {
      n = std::stoll(o.trainable.substr(4));
    } catch (...) {
      n = 0;
    }
    if (n < 1 || static_cast<std::size_t>(n) > c.num_layers)
      throw InputError("--trainable " + o.trainable + ": N must be in [1, " + std::to_string(c.num_layers) + "]");
    return fisher_unlearn::models::llama_top_blocks(c, static_cast<std::size_t>(n));
  }
  std::vector<std::string> names;
  std::stringstream ss(o.trainable);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) names.push_back(item);
  if (names.empty()) throw InputError("--trainable is empty; use top:N or tensor names like blk.29,output_norm");
  return names;
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

inline fisher_unlearn::GgmlType output_type(const std::string& s) {
  using fisher_unlearn::GgmlType;
  return s == "f16" ? GgmlType::F16 : s == "bf16" ? GgmlType::BF16 : s == "q8_0" ? GgmlType::Q8_0 : GgmlType::F32;
}

/// The stopping rule on a full measurement (false for --stop steps: there is no rule to meet early).
inline bool rule_met(const Measurement& m, const Options& o) {
  if (o.stop == "steps") return false;
  for (const RecordMeasure& r : m.records) {
    if (o.stop == "rank" && (r.extracted || r.percentile < o.target_percentile)) return false;
    if (o.stop == "nll" && r.secret_mean_nll < o.target_nll) return false;
  }
  return true;
}

inline int run_phases(const Options& o) {
  namespace fu = fisher_unlearn;
  const auto t0 = std::chrono::steady_clock::now();
  auto now = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  RunSummary summary;
  summary.date = utc_now();
  summary.model_path = o.model;
  summary.out_path = o.out;
  double mark = 0.0;
  auto phase = [&](const std::string& name) {
    summary.phase_seconds.emplace_back(name, now() - mark);
    mark = now();
  };
  auto say = [&](const std::string& s) {
    if (!o.quiet) std::fprintf(stderr, "[unlearn_gguf] %s\n", s.c_str());
  };

  // 1. Outputs and inputs that can be checked without loading anything.
  check_writable(o.out, "--out");
  {
    std::error_code ec;
    if (fs::exists(o.report, ec) && !fs::is_directory(o.report, ec))
      throw InputError("--report '" + o.report + "' exists and is not a directory");
    // The folder itself when it exists, else its parent (it is created at the end).
    check_writable(fs::is_directory(o.report, ec) ? fs::path(o.report) / "report.md" : fs::path(o.report), "--report");
  }
  if (fs::weakly_canonical(o.out) == fs::weakly_canonical(o.model))
    throw InputError("--out is the input model; write the unlearned model to another file");

  // 2. Model file, tokenizer, records.
  fu::GgufFile file = [&] {
    try {
      return fu::GgufFile::open(o.model);
    } catch (const fu::Error& e) {
      throw InputError(std::string("--model: ") + e.what());
    }
  }();
  fu::models::LlamaConfig config;
  std::size_t context = 0;
  try {
    const std::size_t file_context = static_cast<std::size_t>(file.get_integer("llama.context_length"));
    context = o.context > 0 ? static_cast<std::size_t>(o.context) : std::min<std::size_t>(file_context, 2048);
    config = fu::models::llama_config_from_gguf(file, context);
  } catch (const fu::Error& e) {
    throw InputError(std::string("--model '") + o.model + "' is not a Llama model this tool can read: " + e.what());
  }
  const fu::BpeTokenizer tok = [&] {
    try {
      return fu::BpeTokenizer::from_gguf(file);
    } catch (const fu::Error& e) {
      throw InputError(std::string("--model: its tokenizer cannot be used: ") + e.what());
    }
  }();
  std::vector<Record> records = read_records(o, tok, context);
  std::vector<Tokens> shared;
  if (!o.candidates.empty()) {
    shared = read_candidates(o, tok);
    summary.candidates_source = std::to_string(shared.size()) + " candidates from `" + o.candidates + "`";
  } else {
    for (auto& r : records) generate_candidates(r, static_cast<std::size_t>(o.num_candidates), o.seed, tok);
    summary.candidates_source = std::to_string(o.num_candidates) +
                                " generated candidates per record (the secret with every letter and digit replaced "
                                "at random, same case and punctuation)";
  }
  for (const auto& c : shared)
    if (c.empty() || records.front().prefix.size() + c.size() > context + 1)
      throw InputError("--candidates: a candidate is empty or longer than the model's context");
  say(std::to_string(records.size()) + " record(s) read; loading the model");

  fu::models::LlamaLoadOptions load;
  load.context_length = context;
  load.execution.num_threads = o.resolved_threads();
  summary.trainable = trainable_groups(o, config);
  LlamaModel model = [&] {
    try {
      return fu::models::load_llama<float>(file, summary.trainable, load);
    } catch (const fu::InvalidArgument& e) {
      throw InputError(std::string("--trainable: ") + e.what());
    } catch (const fu::FileFormatError& e) {
      throw InputError(std::string("--model: ") + e.what());
    }
  }();
  summary.trainable_parameters = model.num_parameters();
  // Woodbury/diagonal hold the m gradients (d×m floats) while F_R is built; K-FAC holds per-layer factors only.
  const double gib = static_cast<double>(model.num_parameters()) * static_cast<double>(o.fisher_samples) * 4.0 / (1u << 30);
  say("model: " + std::to_string(config.num_layers) + " blocks, width " + std::to_string(config.width) + ", " +
      std::to_string(model.num_parameters()) + " trainable parameters" +
      (o.estimator == "kfac" ? std::string("; F_R: K-FAC factors (no d x m gradient matrix)")
                             : "; F_R's gradients need ~" + fmt("%.2f", gib) + " GiB"));
  phase("load");

  // 3. Retain inputs (the curvature F_R and the anchor) and held-out windows.
  const auto window = static_cast<std::size_t>(std::min<long long>(o.window, static_cast<long long>(context)));
  const std::size_t wanted = static_cast<std::size_t>(std::max(o.retain_windows, o.fisher_samples));
  std::vector<Tokens> retain_windows;
  if (!o.retain.empty()) {
    retain_windows = text_windows(o.retain, "--retain", tok, window, wanted);
    summary.retain_source = "`" + o.retain + "` (retain text, " + std::to_string(retain_windows.size()) + " windows)";
  } else if (!o.representative.empty()) {
    retain_windows = text_windows(o.representative, "--representative", tok, window, wanted);
    summary.retain_source = "`" + o.representative + "` (representative text, " +
                            std::to_string(retain_windows.size()) + " windows)";
  } else {
    say("no --retain or --representative: sampling " + std::to_string(wanted) + " windows from the model itself");
    retain_windows = model_samples(model, tok, wanted, window, o.seed, o.quiet);
    summary.retain_source = "the model's own samples (" + std::to_string(retain_windows.size()) +
                            " windows; no retain text given)";
  }
  std::vector<Tokens> heldout;
  if (!o.heldout.empty())
    heldout = text_windows(o.heldout, "--heldout", tok, window,
                           std::max<std::size_t>(1, static_cast<std::size_t>(o.heldout_tokens) / window));
  const bool monte_carlo = o.fisher_kind == "monte-carlo" || (o.fisher_kind == "auto" && o.retain.empty());
  phase("inputs");

  // Utility guard windows: the held-out text, or else (up to 16 of) the retain-side windows.
  std::vector<Tokens> guard_windows = heldout;
  summary.guard_source = "--heldout";
  if (guard_windows.empty()) {
    guard_windows.assign(retain_windows.begin(),
                         retain_windows.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(16, retain_windows.size())));
    summary.guard_source = "the retain-side windows (no --heldout)";
  }
  const auto guard_perplexity = [&](const std::string& phase_name) {
    if (!heldout.empty()) return std::numeric_limits<double>::quiet_NaN();  // measured with the records
    Measurement g;
    heldout_window_nlls(model, guard_windows, g, phase_name, o.quiet);
    return g.heldout_perplexity;
  };

  // 4. Before.
  const Measurement before = measure(model, records, shared, heldout, tok, "measure before", o.quiet);
  summary.guard_before = heldout.empty() ? guard_perplexity("guard before") : before.heldout_perplexity;
  phase("measure before");

  // 5. Unlearn.
  std::vector<LlamaModel::Sample> forget, retain;
  for (const Record& r : records) {
    LlamaModel::Sample s;
    s.tokens = r.all();
    s.weights.assign(s.tokens.size() - 1, o.forget_scope == "record" ? 1.0f : 0.0f);
    for (std::size_t j = 0; j < r.secret.size(); ++j) s.weights[r.prefix.size() - 1 + j] = 1.0f;
    forget.push_back(std::move(s));
  }
  const std::size_t keep = std::min<std::size_t>(retain_windows.size(), static_cast<std::size_t>(o.retain_windows));
  for (std::size_t i = 0; i < keep; ++i) retain.push_back(LlamaModel::Sample{retain_windows[i], {}});
  say("unlearning: " + o.method + " / " + o.estimator + " / " + o.objective + ", stop rule " + o.stop);
  const UnlearnOutcome outcome =
      unlearn(model, forget, retain, retain_windows, monte_carlo, records, shared, o, rule_met(before, o));
  phase("unlearn");

  // 6. After.
  const Measurement after =
      outcome.met_before ? before : measure(model, records, shared, heldout, tok, "measure after", o.quiet);
  phase("measure after");
  const bool met = o.stop == "steps" || rule_met(after, o);
  summary.target_met = met;
  summary.guard_after = heldout.empty() ? guard_perplexity("guard after") : after.heldout_perplexity;
  summary.guard_limit = o.max_perplexity_ratio;
  summary.guard_passed = std::isfinite(summary.guard_after) &&
                         summary.guard_after <= o.max_perplexity_ratio * summary.guard_before;
  summary.model_written = summary.guard_passed || o.write_anyway;
  if (!summary.guard_passed)  // always printed, --quiet or not
    std::fprintf(stderr, "unlearn_gguf: %s\n", std::string("utility guard FAILED: perplexity on " + summary.guard_source + " went from " +
        fu::detail::format_number(summary.guard_before) + " to " + fu::detail::format_number(summary.guard_after) +
        " (limit x" + fu::detail::format_number(o.max_perplexity_ratio) + "); " +
        (o.write_anyway ? "writing anyway (--write-anyway)" : "NOT writing " + o.out + " (--write-anyway forces it)")).c_str());

  // 7. Outputs: the model first (atomic), then the report files (each atomic). Ctrl-C from here on is
  // honoured only before the first write.
  throw_if_cancelled();
  fu::GgufUnlearningRecord rec;
  rec.method = "unlearn_gguf:" + o.method + "(" + o.objective + ")";
  rec.forgotten_records = records.size();
  rec.note = outcome.stop_reason + "; " + std::to_string(outcome.result.report.iterations) + " step(s); report " +
             o.report;
  if (summary.model_written) {
    say("writing " + o.out);
    fu::models::export_llama(model, file, o.out, rec, output_type(o.output_type));
  }
  phase("write");
  summary.total_seconds = now();
  fs::create_directories(o.report);
  const std::string plot_note = write_plots(o.report, records, before, after, outcome);
  const auto json = report_json(o, summary, records, before, after, outcome);
  // Greedy continuations of a damaged model may end inside a UTF-8 sequence: such bytes become U+FFFD
  // instead of aborting the report (the Markdown keeps the raw bytes).
  fu::detail::write_file_atomically(fs::path(o.report) / "report.json",
                                    json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  fu::detail::write_file_atomically(fs::path(o.report) / "report.md",
                                    report_markdown(o, summary, records, before, after, outcome, plot_note));

  std::size_t extracted_after = 0;
  for (const auto& m : after.records) extracted_after += m.extracted;
  std::printf("unlearn_gguf: %zu record(s), %zu step(s) (%s); extracted after: %zu; target %s; utility guard %s; "
              "%.1f s; wrote %s%s/report.md\n",
              records.size(), outcome.result.report.iterations, outcome.stop_reason.c_str(), extracted_after,
              met ? "met" : "NOT met", summary.guard_passed ? "passed" : "FAILED", summary.total_seconds,
              summary.model_written ? (o.out + " and ").c_str() : "only ", o.report.c_str());
  if (!summary.guard_passed) return 4;
  return met ? 0 : 3;
}

/// The whole program; returns the exit code (tests call it in-process).
inline int run(int argc, const char* const* argv) {
  namespace fu = fisher_unlearn;
  Options o;
  try {
    if (!parse_options(argc, argv, o)) return 0;
    install_cancel_handler();
    return run_phases(o);
  } catch (const Cancelled& e) {
    std::fprintf(stderr, "unlearn_gguf: %s\n", e.what());
    return 130;
  } catch (const InputError& e) {
    std::fprintf(stderr, "unlearn_gguf: error: %s\n", e.what());
    return 2;
  } catch (const fu::InvalidArgument& e) {
    std::fprintf(stderr, "unlearn_gguf: error: %s\n", e.what());
    return 2;
  } catch (const fu::IoError& e) {
    std::fprintf(stderr, "unlearn_gguf: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "unlearn_gguf: error: out of memory; lower --fisher-samples, use --estimator diagonal or "
                         "fewer --trainable blocks\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unlearn_gguf: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace unlearn_gguf
