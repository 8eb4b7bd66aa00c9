// Training for any BatchDifferentiableModel whose Sample is a token sequence (models::Transformer):
//   AdamW  θ ← θ − η(m̂/(√v̂ + ε) + λ·mask⊙θ)  (decoupled weight decay), linear warm-up then cosine
//   decay of η, global-norm clipping, seeded windows from a token stream, progress on stderr, evaluation,
//   and a resumable training state (parameters, AdamW moments and step, RNG, data position) saved every
//   N steps with the atomic checkpoint writer, so that a killed run resumes to a bitwise-identical end.
// Cost per step: one batch gradient (model-dependent) plus O(d) for clipping and the AdamW update; a
// saved state is 3d scalars plus O(samples) text.
#pragma once

#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/tokenizer.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <numbers>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn {

/// A model trained on token sequences: Sample has `std::vector<Token> tokens` (inputs then the last
/// target) and the model says how many input positions it attends over.
template <class M>
concept TokenSequenceModel = DifferentiableModel<M> && requires(typename M::Sample s, const M& m) {
  { s.tokens } -> std::same_as<std::vector<Token>&>;
  { m.context_length() } -> std::convertible_to<std::size_t>;
};

// ---- AdamW -------------------------------------------------------------------------------------

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double epsilon = 1e-8;
  double weight_decay = 0.1;  ///< λ, applied as θ ← θ − η·λ·θ on the decayed coordinates only

  void validate() const {
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
      throw InvalidArgument("AdamWOptions: beta1 and beta2 must lie in [0, 1)");
    if (!(epsilon > 0)) throw InvalidArgument("AdamWOptions: epsilon must be positive");
    if (!(weight_decay >= 0) || !std::isfinite(weight_decay))
      throw InvalidArgument("AdamWOptions: weight_decay must be finite and >= 0");
  }
};

/// Adam with decoupled weight decay (Loshchilov & Hutter). The first and second moments are kept in
/// the model's Scalar. `decayed` lists the ranges that get weight decay (empty list: none).
template <SupportedScalar Scalar>
class AdamW {
 public:
  AdamW(std::size_t num_parameters, const AdamWOptions& options, const std::vector<ParameterGroup>& decayed)
      : options_(options),
        m_(Vector<Scalar>::Zero(static_cast<Eigen::Index>(num_parameters))),
        v_(Vector<Scalar>::Zero(static_cast<Eigen::Index>(num_parameters))),
        decay_mask_(Vector<Scalar>::Zero(static_cast<Eigen::Index>(num_parameters))) {
    options.validate();
    for (const ParameterGroup& g : decayed) {
      if (g.offset + g.size > num_parameters)
        throw InvalidArgument("AdamW: decayed group '" + g.name + "' extends past the parameter vector");
      decay_mask_.segment(static_cast<Eigen::Index>(g.offset), static_cast<Eigen::Index>(g.size)).setOnes();
    }
  }

  /// One update with learning rate η. Strong guarantee: a gradient of the wrong size or with NaN/Inf
  /// throws before the parameters or the moments change.
  void step(std::span<Scalar> parameters, std::span<const Scalar> gradient, double learning_rate) {
    const auto d = m_.size();
    if (static_cast<Eigen::Index>(parameters.size()) != d || static_cast<Eigen::Index>(gradient.size()) != d)
      throw InvalidArgument("AdamW::step: parameters (" + std::to_string(parameters.size()) + ") and gradient (" +
                            std::to_string(gradient.size()) + ") must both have size " + std::to_string(d));
    if (!(learning_rate >= 0) || !std::isfinite(learning_rate))
      throw InvalidArgument("AdamW::step: the learning rate must be finite and >= 0");
    const auto g = as_eigen(gradient);
    if (!g.allFinite())
      throw NonFiniteError("AdamW::step: the gradient contains NaN or Inf; lower the learning rate or enable "
                           "gradient clipping");
    auto theta = as_eigen(parameters);
    ++steps_;
    const double t = static_cast<double>(steps_);
    const auto b1 = static_cast<Scalar>(options_.beta1), b2 = static_cast<Scalar>(options_.beta2);
    m_ = b1 * m_ + (Scalar(1) - b1) * g;
    v_ = b2 * v_ + (Scalar(1) - b2) * g.cwiseAbs2();
    const auto c1 = static_cast<Scalar>(1.0 / (1.0 - std::pow(options_.beta1, t)));
    const auto c2 = static_cast<Scalar>(1.0 / (1.0 - std::pow(options_.beta2, t)));
    const auto lr = static_cast<Scalar>(learning_rate), eps = static_cast<Scalar>(options_.epsilon),
               decay = static_cast<Scalar>(learning_rate * options_.weight_decay);
    theta.array() -= decay * decay_mask_.array() * theta.array() +
                     lr * (c1 * m_.array()) / ((c2 * v_.array()).sqrt() + eps);
  }

  std::size_t steps_taken() const { return steps_; }
  const AdamWOptions& options() const { return options_; }
  const Vector<Scalar>& first_moment() const { return m_; }
  const Vector<Scalar>& second_moment() const { return v_; }
  /// Restores the moments and the step count saved from an optimiser over the same parameter layout
  /// (a resumed run). Strong guarantee: wrong sizes or non-finite moments throw before anything changes.
  void restore(std::span<const Scalar> first_moment, std::span<const Scalar> second_moment, std::size_t steps) {
    const auto d = static_cast<std::size_t>(m_.size());
    if (first_moment.size() != d || second_moment.size() != d)
      throw InvalidArgument("AdamW::restore: the moments must have size " + std::to_string(d));
    if (!as_eigen(first_moment).allFinite() || !as_eigen(second_moment).allFinite() ||
        (as_eigen(second_moment).array() < Scalar(0)).any())
      throw InvalidArgument("AdamW::restore: the moments must be finite and the second moment >= 0");
    m_ = as_eigen(first_moment);
    v_ = as_eigen(second_moment);
    steps_ = steps;
  }
  /// Forget the moments (a fresh optimiser over the same parameter layout).
  void reset() {
    m_.setZero();
    v_.setZero();
    steps_ = 0;
  }

 private:
  AdamWOptions options_;
  Vector<Scalar> m_, v_, decay_mask_;
  std::size_t steps_ = 0;
};

// ---- learning-rate schedule and clipping -------------------------------------------------------

/// η(step), step = 0, 1, …: linear warm-up from peak/warmup to peak over `warmup_steps`, then cosine
/// decay from peak to `minimum` at step total_steps − 1 (held at `minimum` afterwards).
struct LearningRateSchedule {
  double peak = 1e-3;
  double minimum = 1e-4;
  std::size_t warmup_steps = 0;
  std::size_t total_steps = 1;

  double at(std::size_t step) const {
    if (warmup_steps > 0 && step < warmup_steps)
      return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    const std::size_t decay_steps = total_steps > warmup_steps + 1 ? total_steps - warmup_steps - 1 : 0;
    if (decay_steps == 0) return step >= total_steps ? minimum : peak;
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
    return minimum + 0.5 * (peak - minimum) * (1.0 + std::cos(std::numbers::pi * progress));
  }
};

/// Scales g so that ‖g‖₂ ≤ max_norm (no-op when max_norm <= 0 or ‖g‖ is already below); returns ‖g‖₂
/// before clipping, accumulated in double.
template <SupportedScalar Scalar>
double clip_gradient_norm(std::span<Scalar> g, double max_norm) {
  const double norm = as_eigen(std::span<const Scalar>(g)).template cast<double>().norm();
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm))
    as_eigen(g) *= static_cast<Scalar>(max_norm / norm);
  return norm;
}

// ---- data ----------------------------------------------------------------------------------------

/// `count` windows of `window_tokens` consecutive tokens from `stream`, each starting at a uniformly
/// drawn offset in [0, |stream| − window_tokens]. Throws InvalidArgument if the stream is too short.
template <class Sample>
std::vector<Sample> sample_windows(std::span<const Token> stream, std::size_t window_tokens, std::size_t count,
                                   std::mt19937_64& rng) {
  if (window_tokens < 2) throw InvalidArgument("sample_windows: a window needs at least 2 tokens (input and target)");
  if (stream.size() < window_tokens)
    throw InvalidArgument("sample_windows: the token stream has " + std::to_string(stream.size()) +
                          " tokens, fewer than one window of " + std::to_string(window_tokens) +
                          "; use a longer corpus or a shorter context");
  std::uniform_int_distribution<std::size_t> start(0, stream.size() - window_tokens);
  std::vector<Sample> out(count);
  for (auto& s : out) {
    const std::size_t o = start(rng);
    s.tokens.assign(stream.begin() + static_cast<std::ptrdiff_t>(o),
                    stream.begin() + static_cast<std::ptrdiff_t>(o + window_tokens));
  }
  return out;
}

/// Cuts `stream` into consecutive windows of up to `window_tokens` tokens that overlap by one token,
/// so that every token after the first is predicted exactly once; a last window with fewer than 2
/// tokens is dropped. Deterministic: what evaluation uses.
template <class Sample>
std::vector<Sample> split_windows(std::span<const Token> stream, std::size_t window_tokens) {
  if (window_tokens < 2) throw InvalidArgument("split_windows: a window needs at least 2 tokens");
  std::vector<Sample> out;
  for (std::size_t o = 0; o + 1 < stream.size(); o += window_tokens - 1) {
    const std::size_t end = std::min(stream.size(), o + window_tokens);
    Sample s;
    s.tokens.assign(stream.begin() + static_cast<std::ptrdiff_t>(o), stream.begin() + static_cast<std::ptrdiff_t>(end));
    out.push_back(std::move(s));
  }
  return out;
}

// ---- evaluation ----------------------------------------------------------------------------------

struct LanguageModelEvaluation {
  double mean_loss = 0;   ///< mean next-token cross-entropy per predicted token (nats)
  double perplexity = 0;  ///< exp(mean_loss)
  std::size_t tokens = 0;   ///< predicted tokens
  std::size_t windows = 0;  ///< sequences the stream was cut into
};

/// Mean next-token loss over `stream`, cut by split_windows into windows of window_tokens (0:
/// context_length + 1). Windows are weighted by their number of predicted tokens. The first token of
/// each window is predicted from a shorter context than in a sliding evaluation; that is the standard,
/// cheaper, slightly pessimistic choice. max_windows > 0 evaluates only an evenly spaced subset.
template <TokenSequenceModel M>
LanguageModelEvaluation evaluate_language_model(const M& model, std::span<const Token> stream,
                                                std::size_t window_tokens = 0, std::size_t max_windows = 0) {
  using Sample = typename M::Sample;
  if (window_tokens == 0) window_tokens = model.context_length() + 1;
  auto windows = split_windows<Sample>(stream, window_tokens);
  if (windows.empty()) throw InvalidArgument("evaluate_language_model: the stream has fewer than 2 tokens");
  if (max_windows > 0 && windows.size() > max_windows) {
    std::vector<Sample> subset;
    for (std::size_t i = 0; i < max_windows; ++i) subset.push_back(std::move(windows[i * windows.size() / max_windows]));
    windows = std::move(subset);
  }
  LanguageModelEvaluation e;
  e.windows = windows.size();
  double total = 0;
  // Group windows of equal length (all but possibly the last) so that a batched sum_loss weights them
  // equally; the last, shorter window is scored on its own.
  const std::size_t full = windows.back().tokens.size() == windows.front().tokens.size() ? windows.size()
                                                                                        : windows.size() - 1;
  auto weighted = [&](std::span<const Sample> group) {
    if (group.empty()) return;
    const double positions = static_cast<double>(group.front().tokens.size() - 1);
    double sum = 0;
    if constexpr (requires { model.sum_loss(group); }) {
      sum = static_cast<double>(model.sum_loss(group));
    } else {
      for (const auto& s : group) sum += static_cast<double>(model.loss(s));
    }
    total += sum * positions;
    e.tokens += static_cast<std::size_t>(positions) * group.size();
  };
  weighted(std::span<const Sample>(windows.data(), full));
  weighted(std::span<const Sample>(windows.data() + full, windows.size() - full));
  e.mean_loss = total / static_cast<double>(e.tokens);
  e.perplexity = std::exp(e.mean_loss);
  return e;
}

// ---- the training loop ---------------------------------------------------------------------------

struct TrainingOptions {
  std::size_t steps = 1000;
  std::size_t batch_size = 16;         ///< sequences per step
  std::size_t window_tokens = 0;       ///< tokens per sampled window (inputs + last target); 0: context + 1
  double learning_rate = 1e-3;         ///< peak η
  double min_learning_rate = 1e-4;     ///< η at the last step (cosine floor)
  std::size_t warmup_steps = 50;
  AdamWOptions adamw;
  double clip_norm = 1.0;              ///< global gradient-norm clip; <= 0 disables
  std::uint64_t seed = 1;              ///< batch sampling
  double progress_interval_seconds = 10;  ///< a progress line at most this often; <= 0: silent
  std::ostream* progress_stream = &std::cerr;
  std::string label = "train";         ///< prefix of the progress line
  /// Where train()/train_on_samples() save the resumable training state (Trainer::save_state) after
  /// every `checkpoint_every`-th step; empty path or 0: never. Resume with Trainer::resume(path).
  std::filesystem::path checkpoint_path;
  std::size_t checkpoint_every = 0;

  void validate() const {
    if (steps == 0) throw InvalidArgument("TrainingOptions: steps must be at least 1");
    if (batch_size == 0) throw InvalidArgument("TrainingOptions: batch_size must be at least 1");
    if (!(learning_rate >= 0) || !(min_learning_rate >= 0) || !std::isfinite(learning_rate) ||
        !std::isfinite(min_learning_rate))
      throw InvalidArgument("TrainingOptions: learning rates must be finite and >= 0");
    if (!std::isfinite(clip_norm)) throw InvalidArgument("TrainingOptions: clip_norm must be finite");
    if (checkpoint_every > 0 && checkpoint_path.empty())
      throw InvalidArgument("TrainingOptions: checkpoint_every is set but checkpoint_path is empty; name a file");
    adamw.validate();
  }
  /// Every option that shapes the trajectory (not the progress or checkpoint settings), one line,
  /// doubles printed exactly: a saved training state is resumed only under the same line.
  std::string trajectory_key() const {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "steps=%zu batch=%zu window=%zu lr=%.17g min_lr=%.17g warmup=%zu b1=%.17g b2=%.17g eps=%.17g "
                  "wd=%.17g clip=%.17g seed=%llu",
                  steps, batch_size, window_tokens, learning_rate, min_learning_rate, warmup_steps, adamw.beta1,
                  adamw.beta2, adamw.epsilon, adamw.weight_decay, clip_norm, static_cast<unsigned long long>(seed));
    return buf;
  }
  LearningRateSchedule schedule() const { return {learning_rate, min_learning_rate, warmup_steps, steps}; }
};

/// What one optimiser step did; passed to the callback.
struct TrainingStep {
  std::size_t step = 0;         ///< 0-based index of this step
  std::size_t total_steps = 0;
  double loss = 0;              ///< mean loss over the batch, before the update
  double learning_rate = 0;
  double gradient_norm = 0;     ///< ‖mean gradient‖₂ before clipping
  bool clipped = false;
  std::size_t tokens = 0;       ///< predicted tokens in this batch
  double elapsed_seconds = 0;   ///< since the Trainer was made (or reset_clock())
  double tokens_per_second = 0; ///< over the elapsed time
};

struct TrainingSummary {
  std::size_t steps = 0;
  double first_loss = 0;       ///< loss of the first step
  double final_loss = 0;       ///< mean loss over the last max(1, steps/10) steps
  std::size_t tokens = 0;      ///< predicted tokens processed
  double seconds = 0;
  double tokens_per_second = 0;
  bool stopped_early = false;  ///< the callback returned false
  std::vector<double> losses;  ///< per step of this call
  std::size_t resumed_from_step = 0;  ///< > 0: the run continued a saved state (first/final_loss cover the whole run)
  double seconds_before_resume = 0;   ///< training time of the run before the saved state (not in `seconds`)
};

/// Called after each step; return false to stop training.
using StepCallback = std::function<bool(const TrainingStep&)>;

namespace detail {
inline std::uint64_t fnv1a64_update(std::uint64_t h, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}
inline constexpr std::uint64_t kFnv1a64Basis = 0xcbf29ce484222325ULL;
inline std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}
inline std::string exact_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace detail

/// The model kind under which Trainer::save_state stores its file (checkpoint.hpp's format).
inline constexpr std::string_view kTrainerStateKind = "fisher_unlearn.trainer_state";

/// Owns the optimiser state for one model. step(batch) is the building block (fine-tuning on a fixed
/// set, as the RetainFinetune baseline does); train() samples windows from a token stream;
/// train_on_samples() cycles through a fixed sample set in seeded, reshuffled epochs.
///
/// Resuming: with options.checkpoint_every = N and options.checkpoint_path set, the loops save the
/// whole training state (parameters, AdamW moments and step count, the sampling RNG, the epoch order
/// and position, the recent losses) after every N-th step, atomically. A fresh Trainer (same model
/// architecture, same trajectory options) that calls resume(path) and then the same train*() call on
/// the same data continues from the saved step and ends bitwise identical to an uninterrupted run.
/// The model must outlive the Trainer. Not thread-safe (one Trainer per thread).
template <TokenSequenceModel M>
class Trainer {
 public:
  using Scalar = typename M::Scalar;
  using Sample = typename M::Sample;

  Trainer(M& model, const TrainingOptions& options)
      : model_(model), options_(validated(options)), optimizer_(model.num_parameters(), options.adamw, decayed(model)),
        gradient_(static_cast<Eigen::Index>(model.num_parameters())), start_(Clock::now()),
        last_report_(start_) {}

  const TrainingOptions& options() const { return options_; }
  AdamW<Scalar>& optimizer() { return optimizer_; }
  std::size_t steps_taken() const { return optimizer_.steps_taken(); }
  void reset_clock() {
    start_ = last_report_ = Clock::now();
    tokens_ = 0;
  }

  /// One AdamW step on the mean loss over `batch`, with η from the schedule at steps_taken().
  /// Strong guarantee: on a non-finite gradient NonFiniteError is thrown and nothing changes.
  TrainingStep step(std::span<const Sample> batch) {
    if (batch.empty()) throw InvalidArgument("Trainer::step: the batch is empty");
    const std::size_t d = model_.num_parameters();
    std::span<Scalar> g(gradient_.data(), d);
    double loss_sum;
    if constexpr (BatchDifferentiableModel<M>) {
      loss_sum = static_cast<double>(std::as_const(model_).sum_loss_and_gradient(batch, g));
    } else {
      gradient_.setZero();
      Vector<Scalar> one(static_cast<Eigen::Index>(d));
      loss_sum = 0;
      for (const Sample& s : batch) {
        loss_sum += static_cast<double>(std::as_const(model_).gradient(s, std::span<Scalar>(one.data(), d)));
        gradient_ += one;
      }
    }
    gradient_ *= Scalar(1) / static_cast<Scalar>(batch.size());
    TrainingStep info;
    info.step = optimizer_.steps_taken();
    info.total_steps = options_.steps;
    info.loss = loss_sum / static_cast<double>(batch.size());
    if (!std::isfinite(info.loss))
      throw NonFiniteError("Trainer::step: the loss is NaN or Inf at step " + std::to_string(info.step) +
                           "; lower the learning rate or check the data");
    info.gradient_norm = clip_gradient_norm(g, options_.clip_norm);
    info.clipped = options_.clip_norm > 0 && info.gradient_norm > options_.clip_norm;
    info.learning_rate = options_.schedule().at(info.step);
    optimizer_.step(model_.parameters(), std::span<const Scalar>(g), info.learning_rate);
    for (const Sample& s : batch) info.tokens += s.tokens.size() - 1;
    tokens_ += info.tokens;
    info.elapsed_seconds = seconds_since(start_);
    info.tokens_per_second = info.elapsed_seconds > 0 ? static_cast<double>(tokens_) / info.elapsed_seconds : 0;
    report(info);
    return info;
  }

  /// options().steps − steps_taken() steps on windows sampled (seeded) from `stream`.
  TrainingSummary train(std::span<const Token> stream, const StepCallback& callback = {}) {
    const std::size_t window = options_.window_tokens ? options_.window_tokens : model_.context_length() + 1;
    if (window > model_.context_length() + 1)
      throw InvalidArgument("Trainer::train: window_tokens (" + std::to_string(window) +
                            ") exceeds the model's context_length + 1");
    const std::uint64_t fp = detail::fnv1a64_update(detail::kFnv1a64Basis, stream.data(), stream.size_bytes());
    begin_data(DataKind::stream, fp, stream.size());
    return loop([&] { return sample_windows<Sample>(stream, window, options_.batch_size, rng_); }, callback);
  }

  /// options().steps − steps_taken() steps on batches of a fixed sample set: a seeded permutation,
  /// reshuffled when exhausted; a batch never repeats a sample within an epoch.
  TrainingSummary train_on_samples(std::span<const Sample> samples, const StepCallback& callback = {}) {
    if (samples.empty()) throw InvalidArgument("Trainer::train_on_samples: no samples given");
    std::uint64_t fp = detail::kFnv1a64Basis;
    for (const Sample& s : samples) {
      const std::uint64_t n = s.tokens.size();
      fp = detail::fnv1a64_update(fp, &n, sizeof n);
      fp = detail::fnv1a64_update(fp, s.tokens.data(), s.tokens.size() * sizeof(Token));
    }
    begin_data(DataKind::samples, fp, samples.size());
    return loop(
        [&] {
          std::vector<Sample> batch;
          const std::size_t b = std::min(options_.batch_size, samples.size());
          for (std::size_t i = 0; i < b; ++i) {
            if (next_ == order_.size()) {
              std::shuffle(order_.begin(), order_.end(), rng_);
              next_ = 0;
            }
            batch.push_back(samples[order_[next_++]]);
          }
          return batch;
        },
        callback);
  }

  /// Saves the training state atomically (checkpoint.hpp's writer and format, kind kTrainerStateKind):
  /// parameters, AdamW moments (3d scalars) and, as text, the step, the sampling RNG, the epoch order
  /// and position, a fingerprint of the data and of the trajectory options, the first loss and the
  /// last max(1, steps/10) losses. IoError if the file cannot be written (the previous file survives).
  void save_state(const std::filesystem::path& path) const {
    const std::size_t d = model_.num_parameters();
    Vector<Scalar> payload(static_cast<Eigen::Index>(3 * d));
    payload.head(static_cast<Eigen::Index>(d)) = as_eigen(std::span<const Scalar>(std::as_const(model_).parameters()));
    payload.segment(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(d)) = optimizer_.first_moment();
    payload.tail(static_cast<Eigen::Index>(d)) = optimizer_.second_moment();
    std::ostringstream t;
    t << "version 1\n";
    t << "parameters " << d << "\n";
    t << "model " << model_fingerprint() << "\n";
    t << "options " << options_.trajectory_key() << "\n";
    t << "step " << optimizer_.steps_taken() << "\n";
    t << "data " << static_cast<int>(data_kind_) << " " << detail::hex64(data_fingerprint_) << " " << data_count_ << "\n";
    t << "rng " << rng_ << "\n";
    t << "next " << next_ << "\n";
    t << "order " << order_.size();
    for (std::size_t i : order_) t << " " << i;
    t << "\nfirst_loss " << (first_loss_ ? detail::exact_double(*first_loss_) : std::string("-")) << "\n";
    const std::size_t keep = std::min(run_losses_.size(), loss_tail_capacity());
    t << "losses " << (run_losses_begin_ + run_losses_.size() - keep) << " " << keep;
    for (std::size_t i = run_losses_.size() - keep; i < run_losses_.size(); ++i) t << " " << detail::exact_double(run_losses_[i]);
    t << "\nseconds " << detail::exact_double(seconds_so_far()) << "\n";
    save_parameters<Scalar>(path, std::span<const Scalar>(payload.data(), 3 * d), kTrainerStateKind, t.str());
  }

  /// Loads a state written by save_state into the model and this Trainer, if `path` exists (returns
  /// false, and changes nothing, if it does not). The next train() or train_on_samples() call then
  /// continues the saved run; it must get the same data (InvalidArgument otherwise). FileFormatError
  /// if the file is corrupt or was saved for another architecture or other trajectory options.
  /// Strong guarantee: on any throw the model and the Trainer are unchanged.
  bool resume(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return false;
    const auto c = read_checkpoint<Scalar>(path);
    const std::string name = "training state '" + path.string() + "'";
    auto bad = [&](const std::string& what) -> void { throw FileFormatError(name + ": " + what); };
    if (c.header.model_kind != kTrainerStateKind)
      bad("holds a '" + c.header.model_kind + "' checkpoint, not a training state (Trainer::save_state)");
    std::istringstream text(c.header.config);
    std::string line;
    auto field = [&](const std::string& key) {
      if (!std::getline(text, line) || line.compare(0, key.size() + 1, key + " ") != 0) bad("missing field '" + key + "'");
      return line.substr(key.size() + 1);
    };
    auto count = [&](std::istream& is, const std::string& key) {
      unsigned long long v = 0;
      if (!(is >> v)) bad("field '" + key + "' is not a count");
      return static_cast<std::size_t>(v);
    };
    auto real = [&](const std::string& s, const std::string& key) {
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      if (end == s.c_str() || !std::isfinite(v)) bad("field '" + key + "' is not a finite number");
      return v;
    };
    if (field("version") != "1") bad("unsupported training-state version; re-run training from the start");
    const std::size_t d = model_.num_parameters();
    {
      std::istringstream is(field("parameters"));
      if (count(is, "parameters") != d || c.header.num_parameters != 3 * d)
        bad("saved for a model with another number of parameters (this model has " + std::to_string(d) + ")");
    }
    if (field("model") != model_fingerprint())
      bad("saved for a model of another configuration; resume with the model it was saved from");
    const std::string saved_options = field("options");
    if (saved_options != options_.trajectory_key())
      bad("saved with training options\n  " + saved_options + "\nbut this Trainer has\n  " + options_.trajectory_key() +
          "\nresume with the same options, or delete the file to start again");
    std::istringstream step_is(field("step"));
    const std::size_t step = count(step_is, "step");
    if (step > options_.steps) bad("its step " + std::to_string(step) + " is past the run's " + std::to_string(options_.steps));
    std::istringstream data_is(field("data"));
    int kind = 0;
    std::string fp_hex;
    if (!(data_is >> kind >> fp_hex) || kind < 0 || kind > 2 || fp_hex.size() != 16) bad("field 'data' is malformed");
    const std::size_t data_count = count(data_is, "data");
    std::mt19937_64 rng;
    {
      std::istringstream is(field("rng"));
      if (!(is >> rng)) bad("field 'rng' is malformed");
    }
    std::istringstream next_is(field("next"));
    const std::size_t next = count(next_is, "next");
    std::vector<std::size_t> order;
    {
      std::istringstream is(field("order"));
      const std::size_t n = count(is, "order");
      if (static_cast<DataKind>(kind) == DataKind::samples ? n != data_count : n != 0) bad("the epoch order has the wrong size");
      order.resize(n);
      std::vector<char> seen(n, 0);
      for (auto& i : order) {
        i = count(is, "order");
        if (i >= n || seen[i]) bad("the epoch order is not a permutation");
        seen[i] = 1;
      }
      if (next > n) bad("the position in the epoch is past its end");
    }
    std::optional<double> first_loss;
    if (const std::string f = field("first_loss"); f != "-") first_loss = real(f, "first_loss");
    std::size_t losses_begin = 0;
    std::vector<double> losses;
    {
      std::istringstream is(field("losses"));
      losses_begin = count(is, "losses");
      const std::size_t n = count(is, "losses");
      if (n > loss_tail_capacity() || losses_begin + n > step) bad("the loss history is inconsistent with the step");
      losses.resize(n);
      for (double& v : losses) {
        std::string tok;
        if (!(is >> tok)) bad("the loss history is truncated");
        v = real(tok, "losses");
      }
    }
    const double seconds = real(field("seconds"), "seconds");
    const auto d_index = static_cast<Eigen::Index>(d);
    if (!c.parameters.head(d_index).allFinite()) bad("the saved parameters contain NaN or Inf");
    // Commit: the optimiser first (it validates the moments and throws before changing), then the rest.
    optimizer_.restore(std::span<const Scalar>(c.parameters.data() + d, d), std::span<const Scalar>(c.parameters.data() + 2 * d, d),
                       step);
    std::copy(c.parameters.data(), c.parameters.data() + d, model_.parameters().begin());
    data_kind_ = static_cast<DataKind>(kind);
    data_fingerprint_ = std::strtoull(fp_hex.c_str(), nullptr, 16);
    data_count_ = data_count;
    rng_ = rng;
    order_ = std::move(order);
    next_ = next;
    first_loss_ = first_loss;
    run_losses_ = std::move(losses);
    run_losses_begin_ = losses_begin;
    seconds_before_ = seconds;
    resumed_from_ = step;
    resume_pending_ = true;
    return true;
  }

 private:
  using Clock = std::chrono::steady_clock;
  enum class DataKind : int { none = 0, stream = 1, samples = 2 };

  static TrainingOptions validated(const TrainingOptions& o) {
    o.validate();
    return o;
  }
  static std::vector<ParameterGroup> decayed(const M& model) {
    if constexpr (requires { model.weight_decay_groups(); }) {
      return model.weight_decay_groups();
    } else {
      return {ParameterGroup{"all", 0, model.num_parameters()}};
    }
  }
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }
  // The model's configuration text ("key=value" lines) without its seed line: a resumed run overwrites
  // the initialisation, so only the architecture must match.
  std::string model_fingerprint() const {
    if constexpr (requires { model_.config().to_string(); }) {
      std::istringstream lines(std::string(model_.config().to_string()));
      std::string c;
      for (std::string line; std::getline(lines, line);)
        if (line.rfind("seed=", 0) != 0) c += line + "\n";
      return detail::hex64(detail::fnv1a64_update(detail::kFnv1a64Basis, c.data(), c.size()));
    } else {
      return "-";
    }
  }
  std::size_t loss_tail_capacity() const { return std::max<std::size_t>(1, options_.steps / 10); }
  double seconds_so_far() const { return seconds_before_ + seconds_in_loops_ + (in_loop_ ? seconds_since(loop_begin_) : 0.0); }

  // Seeds the sampling state for a fresh run, or checks that a resumed run gets the data it was saved on.
  void begin_data(DataKind kind, std::uint64_t fingerprint, std::size_t count) {
    if (resume_pending_ && data_kind_ != DataKind::none) {
      if (data_kind_ != kind || data_fingerprint_ != fingerprint || data_count_ != count)
        throw InvalidArgument(
            "Trainer: the resumed training state was saved while training on other data (" +
            std::string(data_kind_ == DataKind::stream ? "a token stream" : "a sample set") + " of " +
            std::to_string(data_count_) + ", fingerprint " + detail::hex64(data_fingerprint_) +
            "); call the same train function on the same data, or start again without resume()");
      resume_pending_ = false;
      return;
    }
    resume_pending_ = false;
    data_kind_ = kind;
    data_fingerprint_ = fingerprint;
    data_count_ = count;
    rng_.seed(options_.seed);
    order_.clear();
    next_ = 0;
    if (kind == DataKind::samples) {
      order_.resize(count);
      std::iota(order_.begin(), order_.end(), std::size_t{0});
      std::shuffle(order_.begin(), order_.end(), rng_);
    }
  }

  template <class NextBatch>
  TrainingSummary loop(NextBatch next_batch, const StepCallback& callback) {
    TrainingSummary summary;
    summary.resumed_from_step = resumed_from_;
    summary.seconds_before_resume = seconds_before_;
    const auto begin = Clock::now();
    loop_begin_ = begin;
    in_loop_ = true;
    struct LoopFlag {
      Trainer* t;
      ~LoopFlag() {
        t->seconds_in_loops_ += seconds_since(t->loop_begin_);
        t->in_loop_ = false;
      }
    } flag{this};
    while (optimizer_.steps_taken() < options_.steps) {
      const auto batch = next_batch();
      const TrainingStep info = step(batch);
      summary.losses.push_back(info.loss);
      if (!first_loss_) first_loss_ = info.loss;
      run_losses_.push_back(info.loss);
      summary.tokens += info.tokens;
      ++summary.steps;
      if (options_.checkpoint_every > 0 && optimizer_.steps_taken() % options_.checkpoint_every == 0)
        save_state(options_.checkpoint_path);
      if (callback && !callback(info)) {
        summary.stopped_early = true;
        break;
      }
    }
    summary.seconds = seconds_since(begin);
    summary.tokens_per_second = summary.seconds > 0 ? static_cast<double>(summary.tokens) / summary.seconds : 0;
    // first and final loss over the whole run (a resumed run included): the mean over its last
    // max(1, n/10) steps, n the steps the loops have taken; the saved tail covers what this call lacks.
    if (!run_losses_.empty()) {
      summary.first_loss = first_loss_.value_or(run_losses_.front());
      const std::size_t n = run_losses_begin_ + run_losses_.size();
      const std::size_t tail = std::min(run_losses_.size(), std::max<std::size_t>(1, n / 10));
      summary.final_loss = std::accumulate(run_losses_.end() - static_cast<std::ptrdiff_t>(tail), run_losses_.end(), 0.0) /
                           static_cast<double>(tail);
    }
    return summary;
  }

  // "[train] step 120/2000  loss 2.3412  lr 9.8e-04  |g| 0.83  4520 tok/s  elapsed 32s  ETA 8m12s"
  void report(const TrainingStep& info) {
    if (options_.progress_interval_seconds <= 0 || options_.progress_stream == nullptr) return;
    const bool last = info.step + 1 >= options_.steps;
    if (!last && seconds_since(last_report_) < options_.progress_interval_seconds) return;
    last_report_ = Clock::now();
    const double done = static_cast<double>(info.step + 1);
    const double eta = info.elapsed_seconds / done * (static_cast<double>(options_.steps) - done);
    char line[256];
    std::snprintf(line, sizeof line, "[%s] step %zu/%zu  loss %.4f  lr %.2e  |g| %.3g%s  %.0f tok/s  elapsed %s  ETA %s\n",
                  options_.label.c_str(), info.step + 1, options_.steps, info.loss, info.learning_rate,
                  info.gradient_norm, info.clipped ? " (clipped)" : "", info.tokens_per_second,
                  duration(info.elapsed_seconds).c_str(), duration(eta).c_str());
    *options_.progress_stream << line << std::flush;
  }
  static std::string duration(double s) {
    const long total = static_cast<long>(std::lround(std::max(0.0, s)));
    char buf[32];
    if (total >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", total / 3600, (total / 60) % 60);
    else if (total >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", total / 60, total % 60);
    else std::snprintf(buf, sizeof buf, "%lds", total);
    return buf;
  }

  M& model_;
  TrainingOptions options_;
  AdamW<Scalar> optimizer_;
  Vector<Scalar> gradient_;
  Clock::time_point start_, last_report_;
  std::size_t tokens_ = 0;
  // the resumable sampling state and run history (save_state / resume)
  DataKind data_kind_ = DataKind::none;
  std::uint64_t data_fingerprint_ = 0;
  std::size_t data_count_ = 0;
  std::mt19937_64 rng_;
  std::vector<std::size_t> order_;
  std::size_t next_ = 0;
  std::optional<double> first_loss_;
  std::vector<double> run_losses_;  ///< losses of the loops' steps run_losses_begin_, run_losses_begin_ + 1, ...
  std::size_t run_losses_begin_ = 0;
  std::size_t resumed_from_ = 0;
  bool resume_pending_ = false;
  double seconds_before_ = 0, seconds_in_loops_ = 0;
  bool in_loop_ = false;
  Clock::time_point loop_begin_;
};

/// Trains `model` for options.steps steps on windows sampled from `stream` (a fresh optimiser).
/// Retraining from scratch without some data = a freshly initialised model trained on the other stream.
template <TokenSequenceModel M>
TrainingSummary train_language_model(M& model, std::span<const Token> stream, const TrainingOptions& options,
                                     const StepCallback& callback = {}) {
  Trainer<M> trainer(model, options);
  return trainer.train(stream, callback);
}

}  // namespace fisher_unlearn
