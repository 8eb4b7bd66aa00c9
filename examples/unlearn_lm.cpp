// unlearn_lm: the end-to-end canary-unlearning experiment (docs/experiment.md).
// Trains a byte-level GPT on a real corpus into which secret canaries were inserted k times each,
// measures how exposed the secrets are, then makes the model forget them with every method from the
// same checkpoint (Fisher removal with each estimator and Fisher kind, Fisher forgetting, gradient
// ascent, retain fine-tuning, gradient difference) and compares with retraining from scratch.
//   ./scripts/prepare_data.sh kjv && unlearn_lm --corpus kjv        (or ./scripts/demo.sh)
#include "fisher_unlearn/baselines.hpp"
#include "fisher_unlearn/canary.hpp"
#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forgetting.hpp"
#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/models/transformer_training.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/report.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fu = fisher_unlearn;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Model = fu::models::Transformer<float>;
using Sample = Model::Sample;
using fu::Token;

namespace {

// ================================================================================================
// Options
// ================================================================================================
struct Options {
  std::vector<std::string> corpora{"kjv"};
  std::string data_dir = "data";
  std::string results_dir = "results";
  std::string cache_dir = ".cache/unlearn_lm";
  std::string run_name;                 // default: derived from the configuration
  std::size_t train_bytes = 120000;     // per corpus, cut at a line boundary; 0 = all
  std::size_t valid_bytes = 60000;      // per corpus; 0 = all
  // model
  std::size_t layers = 2, width = 64, heads = 4, context = 64;
  // training
  std::size_t steps = 700, batch = 32;
  double learning_rate = 3e-3, weight_decay = 0.01;
  std::size_t warmup = 50;
  // canaries
  std::vector<std::size_t> repeats{1, 10, 50};
  std::vector<std::string> formats{"pin", "phone"};
  // unlearning
  std::vector<std::string> methods{"all"};
  std::size_t retain_samples = 512;     // retain set given to every method (a seeded sample)
  std::size_t fisher_samples = 256;     // m: retain gradients that build F
  std::size_t grid_points = 7;          // G: the equal-effort grid size for every method (half decades)
  double exposure_target = 2.5;         // bits: the rule's bound on the MEAN sampled exposure over canaries
  double exposure_ceiling = 7.0;        // bits: the rule's bound on the LARGEST sampled exposure
  std::size_t selection_candidates = 1000;  // sampled candidates per canary for the selection score
  std::size_t first_order_steps = 30, first_order_batch = 16;
  std::size_t histogram_candidates = 4000;
  std::size_t estimate_candidates = 2000;  // sampled estimate of each reported exposure
  double exact_above = 4.0;             // bits: exact pruned rank where the estimate is at least this
  bool retrain = true, plots = true;
  std::size_t threads = 2;
  std::uint64_t seed = 1;
};

// ================================================================================================
// Small utilities
// ================================================================================================
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  std::ostringstream os;
  os << std::hex << std::setw(16) << std::setfill('0') << v;
  return os.str();
}

std::string fmt(double v, int precision = 3) {
  if (std::isnan(v)) return "n/a";
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision) << v;
  return os.str();
}

/// Writes a file atomically: a temporary file in the same folder, then rename.
void write_atomically(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw fu::IoError("cannot write " + tmp.string() + "; check the folder's permissions");
    out << content;
    out.flush();
    if (!out) throw fu::IoError("writing " + tmp.string() + " failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw fu::IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

/// Runs body(i) for i in [0, n) on `threads` threads (the model's const methods are thread-safe).
void parallel_for(std::size_t n, std::size_t threads, const std::function<void(std::size_t)>& body) {
  threads = std::max<std::size_t>(1, std::min(threads, n));
  if (threads == 1) {
    for (std::size_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(threads);
  for (std::size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (std::size_t i = t; i < n; i += threads) body(i);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// ================================================================================================
// Data: corpus text, fixed-length windows (one window = one training sample)
// ================================================================================================
std::string read_text(const fs::path& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw fu::IoError("cannot open " + path.string() + "; run ./scripts/prepare_data.sh first to create the corpora");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) throw fu::FileFormatError(path.string() + " is empty; re-run ./scripts/prepare_data.sh");
  if (max_bytes > 0 && text.size() > max_bytes) {
    const auto cut = text.rfind('\n', max_bytes);
    text.resize(cut == std::string::npos ? max_bytes : cut + 1);
  }
  return text;
}

/// Cuts text into non-overlapping windows of `length` tokens (context + 1: inputs and shifted targets).
std::vector<Sample> make_windows(const std::string& text, std::size_t length) {
  const auto tokens = fu::ByteTokenizer{}.encode(text);
  std::vector<Sample> windows;
  for (std::size_t begin = 0; begin + length <= tokens.size(); begin += length)
    windows.push_back(Sample{std::vector<Token>(tokens.begin() + static_cast<std::ptrdiff_t>(begin),
                                                tokens.begin() + static_cast<std::ptrdiff_t>(begin + length))});
  return windows;
}

// ================================================================================================
// Canaries (canary.hpp): a fixed prefix followed by secret slots, each drawn from its own alphabet,
// so the candidate space R has a known size |R|. Each copy is inserted as a line of its own between
// the corpus's records; the byte offsets of the copies are recorded, and the forget set is every
// training window that holds any byte of a copy.
// ================================================================================================
fu::CanaryFormat canary_format(const std::string& name) {
  using fu::CanarySlot;
  if (name == "pin") return fu::CanaryFormat::digits("my PIN is ", 6);  // |R| = 10^6
  // PII-like: a (synthetic) name with a phone number; the exchange 555-01xx is reserved for fiction.
  // Six digit slots with separators, |R| = 10^6: "Alice Walker, phone (415) 555-0123".
  if (name == "phone")
    return fu::CanaryFormat("Alice Walker, phone (", {CanarySlot::digits(), CanarySlot::digits(), CanarySlot::digits(),
                                                      CanarySlot::digits(") 555-0"), CanarySlot::digits(),
                                                      CanarySlot::digits()});
  throw fu::InvalidArgument("unknown canary format '" + name + "'; choose pin or phone");
}

struct PlantedCanary {
  std::string format_name;
  std::shared_ptr<fu::CanarySpace> space;
  fu::Canary secret;
  std::size_t repeats = 0;                 // k: copies inserted
  std::vector<std::size_t> offsets;        // byte offset of each copy in the training stream
  std::vector<std::size_t> windows;        // training windows holding (part of) a copy
  std::string text() const { return space->format().text(secret); }
  std::string secret_text() const { return space->format().secret_text(secret); }
  std::string label() const { return format_name + " k=" + std::to_string(repeats); }
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) lines.push_back(line);
  return lines;
}

/// Inserts every canary's copies among the records (insert_canary_documents), joins the records into
/// one byte stream and records where each copy starts.
std::string plant_canaries(const std::string& train_text, std::vector<PlantedCanary>& canaries, std::uint64_t seed) {
  std::vector<std::string> records = split_lines(train_text);
  for (std::size_t i = 0; i < canaries.size(); ++i) {
    auto ins = fu::insert_canary_documents(std::span<const std::string>(records), canaries[i].text(),
                                           canaries[i].repeats, seed + 1000 * (i + 1));
    records = std::move(ins.documents);
  }
  std::string stream;
  for (const auto& r : records) {
    for (auto& c : canaries)
      if (r == c.text()) c.offsets.push_back(stream.size());
    stream += r;
    stream += '\n';
  }
  for (const auto& c : canaries)
    if (c.offsets.size() != c.repeats)
      throw fu::StateError("canary '" + c.text() + "' was found " + std::to_string(c.offsets.size()) +
                           " times after insertion instead of " + std::to_string(c.repeats) +
                           " (two canaries with the same text?); change --seed");
  return stream;
}

// ================================================================================================
// Measurement: perplexity, canary log-perplexity, exposure (sampled estimate and exact rank)
// ================================================================================================
/// log-perplexity in bits of secret tokens given the prefix state: −Σᵢ log₂ p(tᵢ | prefix, t<ᵢ).
double secret_log_perplexity(const Model& model, const Model::DecodeState& prefix_state, std::span<const Token> secret,
                             std::vector<float>& buf) {
  Model::DecodeState st = prefix_state;
  double bits = 0;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    model.log_probs(st, buf);
    bits -= static_cast<double>(buf[static_cast<std::size_t>(secret[i])]) / std::log(2.0);
    if (i + 1 < secret.size()) model.advance(st, secret[i]);
  }
  return bits;
}

double canary_log_perplexity(const Model& model, const PlantedCanary& c) {
  return fu::canary_log_perplexity_bits(model, *c.space, c.secret);
}

/// Log-perplexities of `n` seeded uniformly random candidates of the canary's format.
std::vector<double> sampled_candidate_log_perplexities(const Model& model, const PlantedCanary& c, std::size_t n,
                                                       std::uint64_t seed, std::size_t threads) {
  const Model::DecodeState base = model.begin_decode(c.space->prefix_tokens());
  const std::vector<fu::Canary> candidates = c.space->format().generate(seed, n);
  std::vector<double> out(n);
  parallel_for(threads, threads, [&](std::size_t t) {
    std::vector<float> buf(model.vocab_size());
    std::vector<Token> tokens;
    for (std::size_t i = t; i < n; i += threads) {
      c.space->secret_tokens(candidates[i], tokens);
      out[i] = secret_log_perplexity(model, base, tokens, buf);
    }
  });
  return out;
}

/// exposure ≈ −log₂(fraction of candidates more likely than the canary), the fraction estimated from
/// the sample (floored at half a sample, so the estimate saturates at log₂(2n) bits).
double sampled_exposure(double canary_bits, const std::vector<double>& candidate_bits) {
  const double below = static_cast<double>(std::count_if(candidate_bits.begin(), candidate_bits.end(),
                                                         [&](double b) { return b < canary_bits; }));
  return -std::log2(std::max(below, 0.5) / static_cast<double>(candidate_bits.size()));
}

// ================================================================================================
// Training (AdamW, warm-up + cosine decay, clipping) and the checkpoint cache
// ================================================================================================
struct TrainingResult {
  double seconds = 0;
  double final_loss = 0;
  bool cached = false;
};

std::string describe(const fu::TrainingOptions& o) {
  std::ostringstream os;
  os << "steps=" << o.steps << " batch=" << o.batch_size << " lr=" << o.learning_rate << " min_lr=" << o.min_learning_rate
     << " warmup=" << o.warmup_steps << " wd=" << o.adamw.weight_decay << " b1=" << o.adamw.beta1 << " b2=" << o.adamw.beta2
     << " clip=" << o.clip_norm << " seed=" << o.seed;
  return os.str();
}

/// Loads the parameters from the cache when a checkpoint (checkpoint.hpp) for exactly this
/// architecture, training options and training windows exists; otherwise trains with AdamW on the
/// fixed windows (Trainer::train_on_samples: seeded epochs) and stores one. The key hashes the
/// configuration, the options and every training byte.
TrainingResult train_or_load(Model& model, const std::vector<Sample>& windows, const fu::TrainingOptions& o,
                             const std::string& cache_dir, const std::string& what) {
  std::uint64_t h = fnv1a(model.config().to_string());
  h = fnv1a(describe(o), h);
  std::string bytes;
  for (const auto& w : windows) {
    bytes.resize(w.tokens.size());
    for (std::size_t i = 0; i < w.tokens.size(); ++i) bytes[i] = static_cast<char>(w.tokens[i]);
    h = fnv1a(bytes, h);
  }
  const fs::path path = fs::path(cache_dir) / (hex64(h) + ".ckpt");
  const fs::path meta = fs::path(cache_dir) / (hex64(h) + ".json");
  if (fs::exists(path) && fs::exists(meta)) {
    try {
      std::ifstream in(meta);
      const json j = json::parse(in);
      fu::load_checkpoint(path, model);  // strong guarantee: the model is untouched if this throws
      TrainingResult r;
      r.seconds = j.at("seconds").get<double>();
      r.final_loss = j.at("final_loss").get<double>();
      r.cached = true;
      std::cout << "[train] " << what << ": loaded cached checkpoint " << path.string() << " (trained in "
                << fmt(r.seconds, 1) << " s, final loss " << fmt(r.final_loss) << ")\n";
      return r;
    } catch (const std::exception& e) {
      std::cout << "[train] " << what << ": ignoring unusable cached checkpoint " << path.string() << " (" << e.what()
                << "); training again\n";
    }
  }
  fu::TrainingOptions opts = o;
  opts.label = "train: " + what;
  opts.progress_stream = &std::cout;
  opts.progress_interval_seconds = 10;
  fu::Trainer<Model> trainer(model, opts);
  const fu::TrainingSummary summary = trainer.train_on_samples(std::span<const Sample>(windows));
  TrainingResult r;
  r.seconds = summary.seconds;
  r.final_loss = summary.final_loss;
  fs::create_directories(cache_dir);
  fu::save_checkpoint(path, model);
  json j;
  j["seconds"] = r.seconds;
  j["final_loss"] = r.final_loss;
  j["what"] = what;
  j["options"] = describe(o);
  write_atomically(meta, j.dump(2));
  return r;
}

// ================================================================================================
// Evaluation of one model state: what the results table reports
// ================================================================================================
struct CanaryMeasurement {
  double log_perplexity = 0;     // bits
  double exposure = 0;           // bits: exact (pruned count) or sampled estimate
  bool exact = false;
  double rank = 0;               // exact rank where available
  std::uint64_t evaluations = 0; // next-token distributions the pruned count needed
};

struct Evaluation {
  double valid_loss = 0;         // nats per byte
  double valid_perplexity = 0;
  std::vector<CanaryMeasurement> canaries;
};

struct Context {
  Options opt;
  std::vector<PlantedCanary> canaries;
  std::vector<Sample> forget, retain;
  std::vector<Token> valid;      // the validation text as one token stream
  std::size_t retain_total = 0;  // n − k: every training window without a canary
  std::size_t histogram_canary = 0;  // the canary whose candidate histogram is plotted
};

Evaluation evaluate(const Model& model, const Context& ctx, const std::string& what) {
  const double t0 = now_seconds();
  Evaluation e;
  const auto lm = fu::evaluate_language_model(model, std::span<const Token>(ctx.valid));
  e.valid_loss = lm.mean_loss;
  e.valid_perplexity = lm.perplexity;
  // Exposure: first a sampled estimate (--estimate-candidates random candidates); where it is at least
  // --exact-above bits, the exact rank by the pruned count of exposure.hpp. The pruned count evaluates
  // every prefix more likely than the canary, so for a forgotten canary (rank ~ |R|/2) it would walk
  // most of R (~10^5 model calls per canary); there the sampled estimate is as informative and ~10x cheaper.
  e.canaries.resize(ctx.canaries.size());
  Model serial = model;  // one canary per thread, each running single-threaded model calls
  serial.set_execution({1, 8});
  parallel_for(ctx.canaries.size(), ctx.opt.threads, [&](std::size_t i) {
    const PlantedCanary& c = ctx.canaries[i];
    CanaryMeasurement& m = e.canaries[i];
    m.log_perplexity = canary_log_perplexity(serial, c);
    const auto sample = sampled_candidate_log_perplexities(serial, c, ctx.opt.estimate_candidates,
                                                           ctx.opt.seed * 7919 + i, 1);
    m.exposure = sampled_exposure(m.log_perplexity, sample);
    if (m.exposure >= ctx.opt.exact_above) {
      const fu::ExposureResult r = fu::PrunedExposure{}.measure(serial, *c.space, c.secret);
      m.exposure = r.exposure_bits;
      m.exact = r.exact;
      m.rank = static_cast<double>(r.rank);
      m.evaluations = r.evaluations;
    }
  });
  std::cout << "[eval] " << what << ": validation perplexity " << fmt(e.valid_perplexity) << ", exposure";
  for (std::size_t i = 0; i < e.canaries.size(); ++i)
    std::cout << " " << ctx.canaries[i].label() << "=" << fmt(e.canaries[i].exposure, 1) << (e.canaries[i].exact ? "" : "~");
  std::cout << " bits (~ sampled; " << fmt(now_seconds() - t0, 1) << " s)\n";
  return e;
}

/// The selection score of the equal-effort rule: the mean and the largest sampled exposure over all
/// canaries (the same seeded candidates for every method).
struct SelectionScore {
  double mean = 0, max = 0;
};

SelectionScore selection_score(const Model& model, const Context& ctx) {
  SelectionScore s;
  for (std::size_t i = 0; i < ctx.canaries.size(); ++i) {
    const auto sample = sampled_candidate_log_perplexities(model, ctx.canaries[i], ctx.opt.selection_candidates,
                                                           ctx.opt.seed * 104729 + i, ctx.opt.threads);
    const double e = sampled_exposure(canary_log_perplexity(model, ctx.canaries[i]), sample);
    s.mean += e / static_cast<double>(ctx.canaries.size());
    s.max = std::max(s.max, e);
  }
  return s;
}

bool forgotten(const SelectionScore& s, const Options& o) {
  return s.mean <= o.exposure_target && s.max <= o.exposure_ceiling;
}

// ================================================================================================
// Methods and the equal-effort rule
//
// Every method has ONE strength knob and gets the same number G of grid points (--grid-points),
// log-spaced over a range fixed here for the method (not per run). The points are tried from the
// weakest up, each from the same starting checkpoint; the method's result is the FIRST (weakest) point
// that forgets: the mean sampled exposure over the canaries is at most --exposure-target (2.5 bits) and
// the largest at most --exposure-ceiling (7 bits). Why two bounds: a secret the model never saw has
// exposure -log2 U, U uniform (mean 1.44 bits); the mean of 6 such exceeds 2.5 bits, or their maximum
// exceeds 7 bits, only about 5 % of the time each, so retraining itself passes about 90 % of the time,
// while a per-canary bound of a few bits would fail it half the time. If no point forgets, the point
// with the least mean score is used and the table says "not reached".
//   fisher_removal/*     knob: step scale η (η = 1 is the Newton removal step, k/(n−k)·F⁻¹∇J_F),
//                        grid 1 … 1000; damping chosen automatically (damping.hpp, 7 values 1e-6 … 1)
//   fisher_forgetting/*  knob: noise level μσ², grid 1e-10 … 1e-4, with the η = 1 removal term
//   gradient_ascent, retain_finetune, gradient_difference
//                        knob: learning rate, grid 1e-4 … 1e-1, with the same number of steps and batch
//                        size (--first-order-steps, --first-order-batch)
// The time reported for a method is that of the selected point only (plus the Fisher build it needs),
// so the grid search itself is equal for all methods and left out of the speed-up.
// ================================================================================================
struct Method {
  std::string name;
  std::string knob;
  std::vector<double> grid;
  /// Optional shared set-up (a Fisher estimate reused across grid points); returns its seconds.
  std::function<double(const Model&)> prepare;
  std::function<fu::UnlearningReport(Model&, double strength)> run;
};

struct GridPoint {
  double strength = 0;
  SelectionScore score;      // sampled exposure over the canaries (bits)
  double probe_perplexity = 0;
  double seconds = 0;
  std::string notes;
  std::vector<float> parameters;
};

struct MethodResult {
  std::string name, knob;
  std::vector<GridPoint> grid;
  std::size_t selected = 0;
  bool reached_target = false;
  double prepare_seconds = 0;
  double seconds = 0;        // selected point + prepare
  Evaluation after;
  fu::UnlearningReport report;
  std::vector<double> histogram_after;
  std::string error;
};

template <class Estimator>
struct PreparedFisher {
  std::shared_ptr<Estimator> fisher;
};

double retain_scale(const Context& ctx) {
  // The library normalises the removal step by retain.size() (= n − k for the whole retain set); we pass
  // a sample of the retain set, so η is rescaled to keep η = 1 the true k/(n−k) Newton step.
  return static_cast<double>(ctx.retain.size()) / static_cast<double>(ctx.retain_total);
}

fu::DampingSearch damping_search(const Context& ctx) {
  fu::DampingSearch s;
  s.grid = fu::log_grid(1e-6, 1.0, 7);
  s.score_samples = std::min<std::size_t>(64, ctx.retain.size());
  s.seed = ctx.opt.seed + 17;
  return s;
}

template <template <class> class EstimatorT>
Method fisher_removal_method(const Context& ctx, const std::string& estimator_name, fu::FisherKind kind) {
  using Estimator = EstimatorT<float>;
  auto fisher = std::make_shared<std::unique_ptr<Estimator>>();
  Method m;
  m.name = "fisher_removal/" + estimator_name + "/" + fu::to_string(kind);
  m.knob = "step scale eta";
  m.grid = fu::log_grid(1.0, 1000.0, ctx.opt.grid_points);
  m.prepare = [&ctx, fisher, kind](const Model& model) {
    const double t0 = now_seconds();
    fu::GradientCollection gc;
    gc.kind = kind;
    gc.seed = ctx.opt.seed + 23;
    const auto chosen = fu::detail::subsample(std::span<const Sample>(ctx.retain), ctx.opt.fisher_samples, ctx.opt.seed + 29);
    const auto G = fu::collect_gradients(model, std::span<const Sample>(chosen), gc);
    *fisher = std::make_unique<Estimator>(model.num_parameters(), 1e-3f);
    (*fisher)->add_gradients(G);
    (*fisher)->finalize();
    return now_seconds() - t0;
  };
  m.run = [&ctx, fisher](Model& model, double eta) {
    fu::FisherRemovalOptions o;
    o.automatic_damping = damping_search(ctx);
    o.step_scale = eta * retain_scale(ctx);
    return fu::FisherRemoval<Estimator>(o).unlearn(model, std::span<const Sample>(ctx.forget),
                                                   std::span<const Sample>(ctx.retain), **fisher);
  };
  return m;
}

template <template <class> class EstimatorT>
Method fisher_forgetting_method(const Context& ctx, const std::string& estimator_name, fu::FisherKind kind) {
  using Estimator = EstimatorT<float>;
  Method m;
  m.name = "fisher_forgetting/" + estimator_name + "/" + fu::to_string(kind);
  m.knob = "noise mu*sigma^2";
  m.grid = fu::log_grid(1e-10, 1e-4, ctx.opt.grid_points);
  m.run = [&ctx, kind](Model& model, double noise) {
    fu::FisherForgettingOptions o;
    o.removal.automatic_damping = damping_search(ctx);
    o.removal.step_scale = retain_scale(ctx);
    o.removal.fisher_samples = ctx.opt.fisher_samples;
    o.removal.seed = ctx.opt.seed + 29;
    o.removal.gradients.kind = kind;
    o.removal.gradients.seed = ctx.opt.seed + 23;
    o.mu = noise;
    o.sigma = 1.0;
    o.noise_seed = ctx.opt.seed + 31;
    return fu::FisherForgetting<Estimator>(o).unlearn(model, std::span<const Sample>(ctx.forget),
                                                      std::span<const Sample>(ctx.retain));
  };
  return m;
}

template <class Baseline>
Method first_order_method(const Context& ctx, const std::string& name) {
  Method m;
  m.name = name;
  m.knob = "learning rate";
  m.grid = fu::log_grid(1e-4, 1e-1, ctx.opt.grid_points);
  m.run = [&ctx](Model& model, double lr) {
    fu::FirstOrderOptions o;
    o.learning_rate = lr;
    o.steps = ctx.opt.first_order_steps;
    o.batch_size = ctx.opt.first_order_batch;
    o.seed = ctx.opt.seed + 37;
    return Baseline(o).unlearn(model, std::span<const Sample>(ctx.forget), std::span<const Sample>(ctx.retain));
  };
  return m;
}

std::vector<std::string> all_method_names() {
  return {"fisher_removal/diagonal/empirical",  "fisher_removal/diagonal/monte_carlo",
          "fisher_removal/woodbury/empirical",  "fisher_removal/woodbury/monte_carlo",
          "fisher_forgetting/diagonal/empirical", "fisher_forgetting/woodbury/empirical",
          "gradient_ascent",                    "retain_finetune",
          "gradient_difference"};
}

Method make_method(const Context& ctx, const std::string& name) {
  using fu::FisherKind;
  if (name == "fisher_removal/diagonal/empirical")
    return fisher_removal_method<fu::DiagonalFisher>(ctx, "diagonal", FisherKind::empirical);
  if (name == "fisher_removal/diagonal/monte_carlo")
    return fisher_removal_method<fu::DiagonalFisher>(ctx, "diagonal", FisherKind::monte_carlo);
  if (name == "fisher_removal/woodbury/empirical")
    return fisher_removal_method<fu::WoodburyFisher>(ctx, "woodbury", FisherKind::empirical);
  if (name == "fisher_removal/woodbury/monte_carlo")
    return fisher_removal_method<fu::WoodburyFisher>(ctx, "woodbury", FisherKind::monte_carlo);
  if (name == "fisher_forgetting/diagonal/empirical")
    return fisher_forgetting_method<fu::DiagonalFisher>(ctx, "diagonal", FisherKind::empirical);
  if (name == "fisher_forgetting/woodbury/empirical")
    return fisher_forgetting_method<fu::WoodburyFisher>(ctx, "woodbury", FisherKind::empirical);
  if (name == "gradient_ascent") return first_order_method<fu::GradientAscent>(ctx, name);
  if (name == "retain_finetune") return first_order_method<fu::RetainFinetune>(ctx, name);
  if (name == "gradient_difference") return first_order_method<fu::GradientDifference>(ctx, name);
  std::string known;
  for (const auto& n : all_method_names()) known += " " + n;
  throw fu::InvalidArgument("unknown method '" + name + "'; known:" + known + " (or 'all')");
}

void set_parameters(Model& model, const std::vector<float>& p) { std::copy(p.begin(), p.end(), model.parameters().begin()); }
std::vector<float> get_parameters(const Model& model) { return {model.parameters().begin(), model.parameters().end()}; }

MethodResult run_method(Method& method, const Model& start, const Context& ctx) {
  MethodResult r;
  r.name = method.name;
  r.knob = method.knob;
  Model model = start;
  model.set_execution(start.execution());
  const auto start_params = get_parameters(start);
  try {
    if (method.prepare) {
      std::cout << "[unlearn] " << method.name << ": building the Fisher estimate from " << ctx.opt.fisher_samples
                << " retain gradients ..." << std::flush;
      r.prepare_seconds = method.prepare(start);
      std::cout << " " << fmt(r.prepare_seconds, 1) << " s\n";
    }
    // Without a point that forgets, the fallback is the point closest to forgetting: least mean score.
    double best = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < method.grid.size(); ++i) {
      set_parameters(model, start_params);
      GridPoint g;
      g.strength = method.grid[i];
      const double t0 = now_seconds();
      fu::UnlearningReport rep;
      try {
        rep = method.run(model, g.strength);
      } catch (const fu::Error& e) {
        // A point that diverges (NaN step at a large learning rate, say) is recorded and skipped: the
        // method's strong guarantee left the parameters at the start.
        g.seconds = now_seconds() - t0;
        g.notes = std::string("failed: ") + e.what();
        g.score = {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
        g.probe_perplexity = std::numeric_limits<double>::quiet_NaN();
        std::cout << "[unlearn] " << method.name << " " << method.knob << "=" << std::setprecision(3) << g.strength
                  << " (" << i + 1 << "/" << method.grid.size() << "): FAILED (" << e.what() << ")\n";
        r.grid.push_back(std::move(g));
        continue;
      }
      g.seconds = now_seconds() - t0;
      g.notes = rep.notes;
      g.score = selection_score(model, ctx);
      g.probe_perplexity = fu::evaluate_language_model(model, std::span<const Token>(ctx.valid), 0, 256).perplexity;
      g.parameters = get_parameters(model);
      std::cout << "[unlearn] " << method.name << " " << method.knob << "=" << std::setprecision(3) << g.strength
                << " (" << i + 1 << "/" << method.grid.size() << "): sampled exposure mean " << fmt(g.score.mean, 2)
                << " max " << fmt(g.score.max, 2) << " bits, probe perplexity " << fmt(g.probe_perplexity) << ", "
                << fmt(g.seconds, 1) << " s\n";
      const bool done = forgotten(g.score, ctx.opt);
      r.grid.push_back(std::move(g));
      if (r.grid.back().score.mean < best || done) {
        best = r.grid.back().score.mean;
        r.selected = i;
        r.report = rep;
      }
      if (done) {
        r.reached_target = true;
        break;  // the weakest point that forgets: stronger ones are not tried
      }
    }
    if (!std::isfinite(best)) throw fu::NumericalError("every grid point failed: " + r.grid.back().notes);
    const GridPoint& chosen = r.grid[r.selected];
    r.seconds = chosen.seconds + r.prepare_seconds;
    set_parameters(model, chosen.parameters);
    std::ostringstream knob;
    knob << std::setprecision(3) << chosen.strength;
    r.after = evaluate(model, ctx, method.name + " (" + method.knob + "=" + knob.str() + ")");
    r.histogram_after = sampled_candidate_log_perplexities(model, ctx.canaries[ctx.histogram_canary],
                                                           ctx.opt.histogram_candidates, ctx.opt.seed * 31337,
                                                           ctx.opt.threads);
  } catch (const fu::Error& e) {
    r.error = e.what();
    std::cout << "[unlearn] " << method.name << " FAILED: " << e.what() << "\n";
  }
  return r;
}

// ================================================================================================
// Results: JSON, Markdown, gnuplot plots
// ================================================================================================
json evaluation_json(const Evaluation& e, const Context& ctx) {
  json j;
  j["valid_loss_nats_per_byte"] = e.valid_loss;
  j["valid_perplexity"] = e.valid_perplexity;
  json cs = json::array();
  for (std::size_t i = 0; i < e.canaries.size(); ++i) {
    const auto& m = e.canaries[i];
    cs.push_back({{"canary", ctx.canaries[i].label()},
                  {"log_perplexity_bits", m.log_perplexity},
                  {"exposure_bits", m.exposure},
                  {"exposure_exact", m.exact},
                  {"rank", m.exact ? json(m.rank) : json(nullptr)}});
  }
  j["canaries"] = cs;
  return j;
}

/// Mean exposure of the canaries inserted k times (over the formats).
double group_exposure(const Evaluation& e, const Context& ctx, std::size_t k) {
  double sum = 0;
  std::size_t n = 0;
  for (std::size_t i = 0; i < ctx.canaries.size(); ++i)
    if (ctx.canaries[i].repeats == k) {
      sum += e.canaries[i].exposure;
      ++n;
    }
  return n ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

/// A table cell: the group's mean exposure, marked ~ when any of it is a sampled estimate.
std::string group_cell(const Evaluation& e, const Context& ctx, std::size_t k) {
  bool sampled = false;
  for (std::size_t i = 0; i < ctx.canaries.size(); ++i)
    if (ctx.canaries[i].repeats == k && !e.canaries[i].exact) sampled = true;
  return fmt(group_exposure(e, ctx, k), 2) + (sampled ? "~" : "");
}

struct RunSummary {
  std::string command, run_name;
  Evaluation before;
  TrainingResult training, retraining;
  Evaluation retrained;
  bool has_retrain = false;
  std::vector<MethodResult> methods;
  std::vector<double> histogram_before, histogram_retrained;
  std::size_t num_parameters = 0, train_windows = 0, valid_bytes = 0, train_bytes = 0;
};

std::string markdown_table(const RunSummary& s, const Context& ctx) {
  std::ostringstream md;
  std::vector<std::size_t> ks = ctx.opt.repeats;
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  md << "| method | knob (selected) | target |";
  for (auto k : ks) md << " exposure k=" << k << " (bits) |";
  md << " valid ppl | time (s) | speed-up vs retrain |\n|---|---|---|";
  for (std::size_t i = 0; i < ks.size(); ++i) md << "---|";
  md << "---|---|---|\n";
  md << "| before unlearning | | |";
  for (auto k : ks) md << " " << group_cell(s.before, ctx, k) << " |";
  md << " " << fmt(s.before.valid_perplexity) << " | " << fmt(s.training.seconds, 1) << " (training) | |\n";
  const double retrain_seconds = s.has_retrain ? s.retraining.seconds : std::numeric_limits<double>::quiet_NaN();
  for (const auto& m : s.methods) {
    if (!m.error.empty()) {
      md << "| " << m.name << " | failed: " << m.error << " | |";
      for (std::size_t i = 0; i < ks.size(); ++i) md << " |";
      md << " | | |\n";
      continue;
    }
    std::ostringstream knob;
    knob << m.knob << " = " << std::setprecision(3) << m.grid[m.selected].strength;
    md << "| " << m.name << " | " << knob.str() << " | " << (m.reached_target ? "reached" : "**not reached**") << " |";
    for (auto k : ks) md << " " << group_cell(m.after, ctx, k) << " |";
    md << " " << fmt(m.after.valid_perplexity) << " | " << fmt(m.seconds, 2) << " | "
       << (s.has_retrain ? fmt(retrain_seconds / m.seconds, 1) + "x" : "n/a") << " |\n";
  }
  if (s.has_retrain) {
    md << "| retrain from scratch (gold standard) | | |";
    for (auto k : ks) md << " " << group_cell(s.retrained, ctx, k) << " |";
    md << " " << fmt(s.retrained.valid_perplexity) << " | " << fmt(retrain_seconds, 1) << " | 1.0x |\n";
  }
  return md.str();
}

std::string markdown_report(const RunSummary& s, const Context& ctx) {
  std::ostringstream md;
  const Options& o = ctx.opt;
  md << "# Canary unlearning: " << s.run_name << "\n\n";
  md << "Command: `" << s.command << "`\n\n";
  md << "Corpora: ";
  for (const auto& c : o.corpora) md << c << " ";
  md << "- " << s.train_bytes << " training bytes in " << s.train_windows << " windows of " << o.context + 1
     << " bytes, " << s.valid_bytes << " validation bytes. Model: " << o.layers << " layers, width " << o.width
     << ", " << o.heads << " heads, context " << o.context << ", " << s.num_parameters << " parameters; "
     << o.steps << " AdamW steps of " << o.batch << " windows.\n\n";
  md << "Forget set: " << ctx.forget.size() << " windows holding canary copies; retain set given to the methods: "
     << ctx.retain.size() << " of " << ctx.retain_total << " other windows.\n\n";
  md << "Exposure = log2|R| - log2 rank (|R| = 10^6, at most 19.93 bits), exact by the pruned count of exposure.hpp where a sampled estimate (" << o.estimate_candidates << " candidates) is at least " << fmt(o.exact_above, 1) << " bits, else that estimate (marked ~). Validation perplexity is per byte. Equal-effort rule: each method "
        "gets " << o.grid_points << " values of its knob, tried from the weakest; the first whose sampled exposure "
        "(over the canaries) has mean <= " << fmt(o.exposure_target, 1) << " bits and maximum <= "
     << fmt(o.exposure_ceiling, 1) << " bits is taken (\"reached\"), else the one of least mean (\"not reached\"). Time = the selected run (plus building its Fisher); speed-up = retraining time / time.\n\n";
  md << markdown_table(s, ctx) << "\n";
  md << "## Canaries\n\n| canary | secret | k | exposure before | log-ppl before (bits) |\n|---|---|---|---|---|\n";
  for (std::size_t i = 0; i < ctx.canaries.size(); ++i)
    md << "| " << ctx.canaries[i].format_name << " | `" << ctx.canaries[i].text() << "` | " << ctx.canaries[i].repeats
       << " | " << fmt(s.before.canaries[i].exposure, 2) << " | " << fmt(s.before.canaries[i].log_perplexity, 2) << " |\n";
  md << "\n## Grid of every method\n\n| method | knob value | sampled exposure mean / max | probe ppl | time (s) |\n"
        "|---|---|---|---|---|\n";
  for (const auto& m : s.methods)
    for (std::size_t i = 0; i < m.grid.size(); ++i) {
      std::ostringstream v;
      v << std::setprecision(3) << m.grid[i].strength;
      md << "| " << m.name << (i == m.selected ? " (selected)" : "") << " | " << v.str() << " | "
         << fmt(m.grid[i].score.mean, 2) << " / " << fmt(m.grid[i].score.max, 2) << " | " << fmt(m.grid[i].probe_perplexity) << " | " << fmt(m.grid[i].seconds, 2)
         << " |\n";
    }
  md << "\nPlots: `exposure.png`, `histogram_*.png`.\n";
  return md.str();
}

json results_json(const RunSummary& s, const Context& ctx) {
  const Options& o = ctx.opt;
  json j;
  j["run"] = s.run_name;
  j["command"] = s.command;
  j["config"] = {{"corpora", o.corpora},       {"train_bytes", o.train_bytes},   {"valid_bytes", o.valid_bytes},
                 {"layers", o.layers},         {"width", o.width},               {"heads", o.heads},
                 {"context", o.context},       {"steps", o.steps},               {"batch", o.batch},
                 {"learning_rate", o.learning_rate}, {"repeats", o.repeats},     {"formats", o.formats},
                 {"retain_samples", o.retain_samples}, {"fisher_samples", o.fisher_samples},
                 {"grid_points", o.grid_points}, {"exposure_target_bits", o.exposure_target},
                 {"exposure_ceiling_bits", o.exposure_ceiling},
                 {"first_order_steps", o.first_order_steps}, {"first_order_batch", o.first_order_batch},
                 {"seed", o.seed},             {"threads", o.threads}};
  j["data"] = {{"train_bytes", s.train_bytes}, {"train_windows", s.train_windows}, {"valid_bytes", s.valid_bytes},
               {"forget_windows", ctx.forget.size()}, {"retain_windows_total", ctx.retain_total},
               {"retain_windows_given", ctx.retain.size()}};
  j["model"] = {{"parameters", s.num_parameters}};
  j["training"] = {{"seconds", s.training.seconds}, {"final_loss", s.training.final_loss}, {"cached", s.training.cached}};
  json cs = json::array();
  for (const auto& c : ctx.canaries)
    cs.push_back({{"format", c.format_name}, {"text", c.text()}, {"repeats", c.repeats}, {"offsets", c.offsets},
                  {"windows", c.windows}, {"log2_space_size", c.space->format().log2_space_size()}});
  j["canaries"] = cs;
  j["before"] = evaluation_json(s.before, ctx);
  json ms = json::array();
  for (const auto& m : s.methods) {
    json mj;
    mj["method"] = m.name;
    if (!m.error.empty()) {
      mj["error"] = m.error;
      ms.push_back(mj);
      continue;
    }
    mj["knob"] = m.knob;
    mj["selected_value"] = m.grid[m.selected].strength;
    mj["reached_target"] = m.reached_target;
    mj["seconds"] = m.seconds;
    mj["prepare_seconds"] = m.prepare_seconds;
    mj["speedup_over_retraining"] = s.has_retrain ? json(s.retraining.seconds / m.seconds) : json(nullptr);
    mj["after"] = evaluation_json(m.after, ctx);
    json g = json::array();
    for (const auto& p : m.grid)
      g.push_back({{"value", p.strength}, {"sampled_exposure_mean_bits", p.score.mean}, {"sampled_exposure_max_bits", p.score.max}, {"probe_perplexity", p.probe_perplexity},
                   {"seconds", p.seconds}, {"notes", p.notes}});
    mj["grid"] = g;
    const auto& r = m.report;
    mj["report"] = {{"forget_loss_before", r.forget_loss_before}, {"forget_loss_after", r.forget_loss_after},
                    {"retain_loss_before", r.retain_loss_before}, {"retain_loss_after", r.retain_loss_after},
                    {"step_norm", r.step_norm},                   {"damping", std::isnan(r.damping) ? json(nullptr) : json(r.damping)},
                    {"iterations", r.iterations},                 {"fisher_gradients", r.fisher_gradients},
                    {"memory_bytes", r.memory_bytes},             {"notes", r.notes}};
    ms.push_back(mj);
  }
  j["methods"] = ms;
  if (s.has_retrain)
    j["retrain"] = {{"seconds", s.retraining.seconds}, {"cached", s.retraining.cached},
                    {"after", evaluation_json(s.retrained, ctx)}};
  return j;
}

std::string safe_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

/// Histogram data (bin centre, then one count column per series) over a common range.
std::string histogram_data(const std::vector<std::vector<double>>& series, std::size_t bins) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : series)
    for (double v : s) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  if (!(hi > lo)) hi = lo + 1;
  const double w = (hi - lo) / static_cast<double>(bins);
  std::vector<std::vector<std::size_t>> counts(series.size(), std::vector<std::size_t>(bins, 0));
  for (std::size_t k = 0; k < series.size(); ++k)
    for (double v : series[k]) counts[k][std::min(bins - 1, static_cast<std::size_t>((v - lo) / w))]++;
  std::ostringstream os;
  for (std::size_t b = 0; b < bins; ++b) {
    os << lo + (static_cast<double>(b) + 0.5) * w;
    for (std::size_t k = 0; k < series.size(); ++k) os << " " << counts[k][b];
    os << "\n";
  }
  return os.str();
}

/// Writes the plots with gnuplot; returns a note (empty on success).
std::string write_plots(const RunSummary& s, const Context& ctx, const fs::path& dir) {
  if (std::system("gnuplot --version > /dev/null 2>&1") != 0)
    return "gnuplot not found: plots skipped (install gnuplot-nox)";
  const fs::path pd = dir / "plots";
  fs::create_directories(pd);
  std::vector<std::size_t> ks = ctx.opt.repeats;
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  // exposure per method, one bar per canary group
  {
    std::ostringstream dat;
    auto row = [&](const std::string& name, const Evaluation& e) {
      dat << '"' << name << '"';
      for (auto k : ks) dat << " " << group_exposure(e, ctx, k);
      dat << "\n";
    };
    row("before", s.before);
    for (const auto& m : s.methods)
      if (m.error.empty()) row(m.name, m.after);
    if (s.has_retrain) row("retrain", s.retrained);
    write_atomically(pd / "exposure.dat", dat.str());
    std::ostringstream gp;
    gp << "set terminal pngcairo noenhanced size 1400,700 font ',10'\nset output '" << (dir / "exposure.png").string() << "'\n"
       << "set title 'Canary exposure after unlearning (bits; max " << fmt(std::log2(1e6), 2)
       << "); dashed: target of the mean'\nset style data histograms\nset style histogram clustered gap 1\n"
       << "set style fill solid 0.8 border -1\nset xtics rotate by -35 scale 0\nset ylabel 'exposure (bits)'\n"
       << "set yrange [0:21]\nset key top right\nset grid ytics\nset bmargin 12\n"
       << "set arrow from graph 0, first " << ctx.opt.exposure_target << " to graph 1, first " << ctx.opt.exposure_target
       << " nohead dt 2 lw 2\nplot ";
    for (std::size_t i = 0; i < ks.size(); ++i)
      gp << (i ? ", " : "") << "'" << (pd / "exposure.dat").string() << "' using " << i + 2
         << (i == 0 ? ":xtic(1)" : "") << " title 'k = " << ks[i] << "'";
    gp << "\n";
    write_atomically(pd / "exposure.gp", gp.str());
    if (std::system(("gnuplot '" + (pd / "exposure.gp").string() + "'").c_str()) != 0) return "gnuplot failed on exposure.gp";
  }
  // candidate log-perplexity histograms with the canary marked, before and after each method
  const std::size_t hc = ctx.histogram_canary;
  auto hist = [&](const std::string& name, const std::vector<double>& after, double canary_after) {
    const std::string base = "histogram_" + safe_name(name);
    write_atomically(pd / (base + ".dat"), histogram_data({s.histogram_before, after}, 60));
    std::ostringstream gp;
    gp << "set terminal pngcairo noenhanced size 900,500 font ',10'\nset output '" << (dir / (base + ".png")).string() << "'\n"
       << "set title \"" << name << ": log-perplexity of " << after.size() << " random candidates vs the canary ("
       << ctx.canaries[hc].label() << ")\"\nset xlabel 'log-perplexity (bits)'\nset ylabel 'candidates'\n"
       << "set style fill transparent solid 0.45\nset key top left\n"
       << "set arrow 1 from first " << s.before.canaries[hc].log_perplexity << ", graph 0 to first "
       << s.before.canaries[hc].log_perplexity << ", graph 1 nohead lw 2 lc rgb 'blue'\n"
       << "set arrow 2 from first " << canary_after << ", graph 0 to first " << canary_after
       << ", graph 1 nohead lw 2 lc rgb 'red'\n"
       << "plot '" << (pd / (base + ".dat")).string() << "' using 1:2 with boxes lc rgb 'blue' title 'before (canary: blue line)', "
       << "'' using 1:3 with boxes lc rgb 'red' title 'after (canary: red line)'\n";
    write_atomically(pd / (base + ".gp"), gp.str());
    return std::system(("gnuplot '" + (pd / (base + ".gp")).string() + "'").c_str()) == 0;
  };
  for (const auto& m : s.methods)
    if (m.error.empty() && !hist(m.name, m.histogram_after, m.after.canaries[hc].log_perplexity))
      return "gnuplot failed on a histogram";
  if (s.has_retrain && !hist("retrain", s.histogram_retrained, s.retrained.canaries[hc].log_perplexity))
    return "gnuplot failed on a histogram";
  return {};
}

std::string default_run_name(const Options& o) {
  std::ostringstream os;
  for (const auto& c : o.corpora) os << c << "-";
  os << "L" << o.layers << "C" << o.width << "T" << o.context << "-s" << o.steps << "-seed" << o.seed;
  return os.str();
}

int run(const Options& opt, const std::string& command) {
  const double t_start = now_seconds();
  Context ctx;
  ctx.opt = opt;
  const std::size_t length = opt.context + 1;

  // ---- data and canaries -------------------------------------------------------------------------
  std::string train_text, valid_text;
  for (const auto& corpus : opt.corpora) {
    train_text += read_text(fs::path(opt.data_dir) / corpus / "train.txt", opt.train_bytes);
    valid_text += read_text(fs::path(opt.data_dir) / corpus / "valid.txt", opt.valid_bytes);
  }
  std::mt19937_64 rng(opt.seed);
  for (const auto& f : opt.formats) {
    auto space = std::make_shared<fu::CanarySpace>(canary_format(f), fu::ByteTokenizer{});
    if (!space->tokens_extend()) throw fu::StateError("canary format " + f + ": " + space->extension_check());
    // Exposure scores the secret after the prefix inside one context window; a longer canary would be
    // scored with a truncated prefix (and cost a full re-run per token).
    const std::size_t canary_tokens = space->prefix_tokens().size() + space->max_secret_tokens();
    if (canary_tokens + 1 > opt.context)
      throw fu::InvalidArgument("canary format " + f + " needs " + std::to_string(canary_tokens + 1) +
                                " context positions but --context is " + std::to_string(opt.context) +
                                "; raise --context or drop the format");
    for (std::size_t k : opt.repeats) {
      if (k == 0) throw fu::InvalidArgument("--repeats must be positive");
      PlantedCanary c;
      c.format_name = f;
      c.space = space;
      c.secret = space->format().generate(rng);
      c.repeats = k;
      ctx.canaries.push_back(std::move(c));
    }
  }
  if (ctx.canaries.empty()) throw fu::InvalidArgument("no canaries: give at least one --format and --repeats");
  const std::string stream = plant_canaries(train_text, ctx.canaries, opt.seed);
  std::vector<Sample> windows = make_windows(stream, length);
  std::vector<char> is_forget(windows.size(), 0);
  for (auto& c : ctx.canaries) {
    const std::size_t len = c.text().size();
    for (std::size_t off : c.offsets)
      for (std::size_t w = off / length; w <= (off + len - 1) / length && w < windows.size(); ++w) {
        if (std::find(c.windows.begin(), c.windows.end(), w) == c.windows.end()) c.windows.push_back(w);
        is_forget[w] = 1;
      }
  }
  std::vector<Sample> retain_all;
  for (std::size_t w = 0; w < windows.size(); ++w) (is_forget[w] ? ctx.forget : retain_all).push_back(windows[w]);
  if (ctx.forget.empty()) throw fu::StateError("no training window holds a canary (is the training text too short?)");
  ctx.retain_total = retain_all.size();
  ctx.retain = fu::detail::subsample(std::span<const Sample>(retain_all), opt.retain_samples, opt.seed + 3);
  ctx.valid = fu::ByteTokenizer{}.encode(valid_text);
  if (ctx.valid.size() < length) throw fu::InvalidArgument("the validation text is shorter than one window; raise --valid-bytes");
  // the plotted canary: the most repeated one of the first format
  for (std::size_t i = 0; i < ctx.canaries.size(); ++i)
    if (ctx.canaries[i].format_name == ctx.canaries[0].format_name &&
        ctx.canaries[i].repeats > ctx.canaries[ctx.histogram_canary].repeats)
      ctx.histogram_canary = i;

  RunSummary s;
  s.command = command;
  s.run_name = opt.run_name.empty() ? default_run_name(opt) : opt.run_name;
  s.train_bytes = stream.size();
  s.train_windows = windows.size();
  s.valid_bytes = ctx.valid.size();
  std::cout << "[data] " << stream.size() << " training bytes (" << windows.size() << " windows of " << length
            << "), " << ctx.valid.size() << " validation bytes; " << ctx.canaries.size() << " canaries in "
            << ctx.forget.size() << " forget windows; retain " << ctx.retain.size() << " of " << ctx.retain_total << "\n";
  for (const auto& c : ctx.canaries) std::cout << "[data] canary " << c.label() << ": '" << c.text() << "'\n";

  // ---- training ----------------------------------------------------------------------------------
  fu::models::TransformerConfig cfg;
  cfg.context_length = opt.context;
  cfg.num_layers = opt.layers;
  cfg.width = opt.width;
  cfg.num_heads = opt.heads;
  cfg.seed = opt.seed;
  Model model(cfg);
  model.set_execution({opt.threads, 8});
  s.num_parameters = model.num_parameters();
  fu::TrainingOptions to;
  to.steps = opt.steps;
  to.batch_size = opt.batch;
  to.warmup_steps = std::min(opt.warmup, opt.steps);
  to.learning_rate = opt.learning_rate;
  to.min_learning_rate = opt.learning_rate / 10;
  to.adamw.weight_decay = opt.weight_decay;
  to.seed = opt.seed;
  std::cout << "[train] " << model.num_parameters() << " parameters\n";
  s.training = train_or_load(model, windows, to, opt.cache_dir, "with canaries");
  s.before = evaluate(model, ctx, "before unlearning");
  s.histogram_before = sampled_candidate_log_perplexities(model, ctx.canaries[ctx.histogram_canary],
                                                          opt.histogram_candidates, opt.seed * 31337, opt.threads);

  // ---- unlearning ----------------------------------------------------------------------------------
  std::vector<std::string> names;
  for (const auto& m : opt.methods) {
    if (m == "all") {
      const auto all = all_method_names();
      names.insert(names.end(), all.begin(), all.end());
    } else if (m != "retrain" && m != "none") {
      names.push_back(m);
    }
  }
  for (const auto& name : names) {
    Method method = make_method(ctx, name);
    s.methods.push_back(run_method(method, model, ctx));
  }

  // ---- the gold standard: retraining without the forget windows --------------------------------------
  if (opt.retrain) {
    Model retrained(cfg);
    retrained.set_execution({opt.threads, 8});
    s.retraining = train_or_load(retrained, retain_all, to, opt.cache_dir, "retrain without canaries");
    s.retrained = evaluate(retrained, ctx, "retrained from scratch");
    s.histogram_retrained = sampled_candidate_log_perplexities(retrained, ctx.canaries[ctx.histogram_canary],
                                                               opt.histogram_candidates, opt.seed * 31337, opt.threads);
    s.has_retrain = true;
  }

  // ---- results -------------------------------------------------------------------------------------
  const fs::path dir = fs::path(opt.results_dir) / s.run_name;
  fs::create_directories(dir);
  write_atomically(dir / "results.json", results_json(s, ctx).dump(2) + "\n");
  write_atomically(dir / "results.md", markdown_report(s, ctx));
  std::string plot_note;
  if (opt.plots) plot_note = write_plots(s, ctx, dir);
  std::cout << "\n" << markdown_table(s, ctx) << "\n";
  if (!plot_note.empty()) std::cout << "[plots] " << plot_note << "\n";
  std::cout << "[done] results in " << (dir / "results.md").string() << " and " << (dir / "results.json").string()
            << (opt.plots && plot_note.empty() ? ", plots in " + dir.string() + "/*.png" : "") << " ("
            << fmt(now_seconds() - t_start, 1) << " s in all)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::cout << std::unitbuf;  // progress lines appear at once even when stdout is a file
  Options opt;
  CLI::App app{"unlearn_lm: insert secret canaries into a real corpus, train a byte-level GPT, then make it forget "
               "them with every unlearning method and compare with retraining (docs/experiment.md)."};
  app.option_defaults()->always_capture_default();
  app.add_option("--corpus", opt.corpora, "corpora under --data (kjv fortunes jargon wordnet); several are concatenated");
  app.add_option("--data", opt.data_dir, "folder written by scripts/prepare_data.sh");
  app.add_option("--results", opt.results_dir, "results are written to <results>/<run>/");
  app.add_option("--cache", opt.cache_dir, "trained checkpoints, keyed by configuration and data");
  app.add_option("--run", opt.run_name, "run name (default: from the configuration)");
  app.add_option("--train-bytes", opt.train_bytes, "training bytes per corpus, cut at a line (0 = all)");
  app.add_option("--valid-bytes", opt.valid_bytes, "validation bytes per corpus (0 = all)");
  app.add_option("--layers", opt.layers, "transformer blocks")->check(CLI::PositiveNumber);
  app.add_option("--width", opt.width, "residual width")->check(CLI::PositiveNumber);
  app.add_option("--heads", opt.heads, "attention heads (divide the width)")->check(CLI::PositiveNumber);
  app.add_option("--context", opt.context, "context length in bytes")->check(CLI::PositiveNumber);
  app.add_option("--steps", opt.steps, "AdamW steps")->check(CLI::PositiveNumber);
  app.add_option("--batch", opt.batch, "windows per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", opt.learning_rate, "peak learning rate")->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", opt.weight_decay, "AdamW weight decay")->check(CLI::NonNegativeNumber);
  app.add_option("--warmup", opt.warmup, "warm-up steps");
  app.add_option("--repeats", opt.repeats, "copies of each canary (one canary per value and format)");
  app.add_option("--format", opt.formats, "canary formats: pin ('my PIN is ######') and/or phone (PII-like)");
  app.add_option("--methods", opt.methods, "methods to run: 'all', 'none' or names (docs/experiment.md)");
  app.add_option("--retain-samples", opt.retain_samples, "retain windows given to every method")->check(CLI::PositiveNumber);
  app.add_option("--fisher-samples", opt.fisher_samples, "m: retain gradients that build each Fisher")->check(CLI::PositiveNumber);
  app.add_option("--grid-points", opt.grid_points, "G: knob values per method (equal-effort rule)")->check(CLI::PositiveNumber);
  app.add_option("--exposure-target", opt.exposure_target, "bits: equal-effort rule, bound on the mean sampled exposure");
  app.add_option("--exposure-ceiling", opt.exposure_ceiling, "bits: equal-effort rule, bound on the largest sampled exposure");
  app.add_option("--selection-candidates", opt.selection_candidates, "sampled candidates per canary when selecting")
      ->check(CLI::PositiveNumber);
  app.add_option("--first-order-steps", opt.first_order_steps, "SGD steps of the first-order baselines")->check(CLI::PositiveNumber);
  app.add_option("--first-order-batch", opt.first_order_batch, "batch of the first-order baselines")->check(CLI::PositiveNumber);
  app.add_option("--histogram-candidates", opt.histogram_candidates, "sampled candidates in the histograms")
      ->check(CLI::PositiveNumber);
  app.add_option("--estimate-candidates", opt.estimate_candidates, "sampled candidates for each reported exposure")
      ->check(CLI::PositiveNumber);
  app.add_option("--exact-above", opt.exact_above, "bits: exact (pruned) exposure where the sampled estimate is at least this");
  app.add_flag("!--no-retrain", opt.retrain, "skip retraining from scratch");
  app.add_flag("!--no-plots", opt.plots, "skip the gnuplot plots");
  app.add_option("--threads", opt.threads, "threads")->check(CLI::PositiveNumber);
  app.add_option("--seed", opt.seed, "seed of everything (data order, canaries, initialisation)");
  CLI11_PARSE(app, argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  try {
    return run(opt, command);
  } catch (const fu::Error& e) {
    std::cerr << "unlearn_lm: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "unlearn_lm: unexpected error: " << e.what() << "\n";
    return 2;
  }
}
