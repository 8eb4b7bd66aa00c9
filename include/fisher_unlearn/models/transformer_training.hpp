// Training for any BatchDifferentiableModel whose Sample is a token sequence (models::Transformer):
//   AdamW  θ ← θ − η(m̂/(√v̂ + ε) + λ·mask⊙θ)  (decoupled weight decay), linear warm-up then cosine
//   decay of η, global-norm clipping, seeded windows from a token stream, progress on stderr, evaluation.
// Cost per step: one batch gradient (model-dependent) plus O(d) for clipping and the AdamW update.
#pragma once

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
#include <functional>
#include <iostream>
#include <numbers>
#include <numeric>
#include <ostream>
#include <random>
#include <span>
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

  void validate() const {
    if (steps == 0) throw InvalidArgument("TrainingOptions: steps must be at least 1");
    if (batch_size == 0) throw InvalidArgument("TrainingOptions: batch_size must be at least 1");
    if (!(learning_rate >= 0) || !(min_learning_rate >= 0) || !std::isfinite(learning_rate) ||
        !std::isfinite(min_learning_rate))
      throw InvalidArgument("TrainingOptions: learning rates must be finite and >= 0");
    if (!std::isfinite(clip_norm)) throw InvalidArgument("TrainingOptions: clip_norm must be finite");
    adamw.validate();
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
  std::vector<double> losses;  ///< per step
};

/// Called after each step; return false to stop training.
using StepCallback = std::function<bool(const TrainingStep&)>;

/// Owns the optimiser state for one model. step(batch) is the building block (fine-tuning on a fixed
/// set, as the RetainFinetune baseline does); train() samples windows from a token stream;
/// train_on_samples() cycles through a fixed sample set in seeded, reshuffled epochs.
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
    std::mt19937_64 rng(options_.seed);
    return loop([&] { return sample_windows<Sample>(stream, window, options_.batch_size, rng); }, callback);
  }

  /// options().steps − steps_taken() steps on batches of a fixed sample set: a seeded permutation,
  /// reshuffled when exhausted; a batch never repeats a sample within an epoch.
  TrainingSummary train_on_samples(std::span<const Sample> samples, const StepCallback& callback = {}) {
    if (samples.empty()) throw InvalidArgument("Trainer::train_on_samples: no samples given");
    std::mt19937_64 rng(options_.seed);
    std::vector<std::size_t> order(samples.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    std::size_t next = 0;
    return loop(
        [&] {
          std::vector<Sample> batch;
          const std::size_t b = std::min(options_.batch_size, samples.size());
          for (std::size_t i = 0; i < b; ++i) {
            if (next == order.size()) {
              std::shuffle(order.begin(), order.end(), rng);
              next = 0;
            }
            batch.push_back(samples[order[next++]]);
          }
          return batch;
        },
        callback);
  }

 private:
  using Clock = std::chrono::steady_clock;

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

  template <class NextBatch>
  TrainingSummary loop(NextBatch next_batch, const StepCallback& callback) {
    TrainingSummary summary;
    const auto begin = Clock::now();
    while (optimizer_.steps_taken() < options_.steps) {
      const auto batch = next_batch();
      const TrainingStep info = step(batch);
      summary.losses.push_back(info.loss);
      summary.tokens += info.tokens;
      ++summary.steps;
      if (callback && !callback(info)) {
        summary.stopped_early = true;
        break;
      }
    }
    summary.seconds = seconds_since(begin);
    summary.tokens_per_second = summary.seconds > 0 ? static_cast<double>(summary.tokens) / summary.seconds : 0;
    if (!summary.losses.empty()) {
      summary.first_loss = summary.losses.front();
      const std::size_t tail = std::max<std::size_t>(1, summary.losses.size() / 10);
      summary.final_loss = std::accumulate(summary.losses.end() - static_cast<std::ptrdiff_t>(tail), summary.losses.end(), 0.0) /
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
