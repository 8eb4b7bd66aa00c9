// Differentially private training (DP-SGD, Abadi et al. 2016) for any DifferentiableModel:
//   B ~ Poisson(q) over the N records;  g̃ = (Σ_{i∈B} clip_C(∇loss_i) + N(0, σ²C² I)) / (qN);  θ ← SGD/AdamW(θ, g̃)
// with clip_C(g) = g·min(1, C/‖g‖), and the privacy spent tracked by RdpAccountant (ε at δ, per record).
// Cost per step: |B| per-sample gradients (the model's gradient()), O(|B|·k) for clipping and summing,
// O(k) for the noise and the update (k = the trained parameters: all, or a ParameterSubset).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/parallel.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/models/transformer_training.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/privacy/rdp_accountant.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <limits>
#include <numbers>
#include <numeric>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace fisher_unlearn {

namespace detail {

/// SplitMix64: derives independent seeds for the sampling and the noise streams from one user seed.
inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// A uniform double in (0, 1] from the top 53 bits of one 64-bit draw (portable, unlike
/// std::uniform_real_distribution, whose algorithm the standard leaves open).
inline double uniform_open_closed(std::mt19937_64& rng) {
  return static_cast<double>((rng() >> 11) + 1) * 0x1.0p-53;
}

}  // namespace detail

/// Standard normal draws by the Box–Muller transform on two portable uniforms; the pair's second value
/// is kept for the next call. Deterministic for a seed on any platform with the same libm.
class GaussianNoise {
 public:
  explicit GaussianNoise(std::uint64_t seed) : rng_(seed) {}
  double operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(detail::uniform_open_closed(rng_)));
    const double angle = 2.0 * std::numbers::pi * (detail::uniform_open_closed(rng_) - 0.5);
    spare_ = r * std::sin(angle);
    has_spare_ = true;
    return r * std::cos(angle);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

/// Poisson subsampling: every one of n records is in the batch independently with probability q (what
/// the RDP accountant assumes). Drawn by geometric skips, log(U)/log(1 − q), so the cost is O(qn) per
/// batch, not O(n); the indices come out ascending.
class PoissonSampler {
 public:
  PoissonSampler(double rate, std::uint64_t seed) : rate_(rate), rng_(seed) {
    if (!(rate > 0.0 && rate <= 1.0))
      throw InvalidArgument("PoissonSampler: the sampling rate " + ::fisher_unlearn::detail::format_number(rate) + " must lie in (0, 1]");
  }
  double rate() const { return rate_; }

  void sample(std::size_t n, std::vector<std::size_t>& out) {
    out.clear();
    if (rate_ == 1.0) {
      out.resize(n);
      std::iota(out.begin(), out.end(), std::size_t{0});
      return;
    }
    const double log_keep = std::log1p(-rate_);
    std::size_t next = 0;
    for (;;) {
      // Records skipped before the next one that is included: Geometric(q) on {0, 1, …}.
      const double skip = std::floor(std::log(detail::uniform_open_closed(rng_)) / log_keep);
      if (!(skip < static_cast<double>(n - next))) break;
      next += static_cast<std::size_t>(skip);
      out.push_back(next);
      if (++next >= n) break;
    }
  }

 private:
  double rate_;
  std::mt19937_64 rng_;
};

enum class DpOptimizer { sgd, adamw };

struct DpSgdOptions {
  double sampling_rate = 0.01;     ///< q: each record joins a batch with this probability (expected batch qN)
  double noise_multiplier = 1.0;   ///< σ: noise standard deviation on the clipped sum is σ·C
  double clip_norm = 1.0;          ///< C: per-sample L2 bound; +∞ (no clipping) only together with σ = 0
  std::size_t steps = 1000;
  DpOptimizer optimizer = DpOptimizer::adamw;
  double learning_rate = 1e-3;     ///< peak η
  double min_learning_rate = 1e-3; ///< η at the last step (cosine floor); = learning_rate: constant η
  std::size_t warmup_steps = 0;
  AdamWOptions adamw;              ///< when optimizer == adamw (decoupled decay on the model's weight_decay_groups())
  double momentum = 0.0;           ///< heavy-ball momentum when optimizer == sgd
  double delta = 0.0;              ///< δ of the reported ε; 0: 1/N for N records
  std::vector<double> orders = default_rdp_orders();
  std::uint64_t seed = 1;          ///< sampling and noise (two streams derived from it)
  /// Threads computing per-sample gradients; 0: all hardware threads. The result is bitwise the same
  /// for every value (the clipped gradients are summed in record order). > 1 needs a gradient() that
  /// may be called concurrently (true for every model in this library).
  std::size_t num_threads = 1;
  /// Per-sample gradients held at once (memory k·this·sizeof(Scalar)); 0: 4 per thread. Any value gives
  /// the same result; larger values only spawn the worker threads less often.
  std::size_t gradients_in_flight = 0;
  double progress_interval_seconds = 10; ///< a progress line at most this often; <= 0: silent
  std::ostream* progress_stream = &std::cerr;
  std::string label = "dp-sgd";

  void validate() const {
    if (!(sampling_rate > 0.0 && sampling_rate <= 1.0))
      throw InvalidArgument("DpSgdOptions: sampling_rate q = " + ::fisher_unlearn::detail::format_number(sampling_rate) +
                            " must lie in (0, 1] (q = expected batch size / number of records)");
    if (!(noise_multiplier >= 0.0) || !std::isfinite(noise_multiplier))
      throw InvalidArgument("DpSgdOptions: noise_multiplier σ = " + ::fisher_unlearn::detail::format_number(noise_multiplier) +
                            " must be finite and >= 0 (noise_multiplier_for_epsilon() finds σ for a target ε)");
    if (!(clip_norm > 0.0))
      throw InvalidArgument("DpSgdOptions: clip_norm C = " + ::fisher_unlearn::detail::format_number(clip_norm) +
                            " must be > 0 (per-sample gradients are scaled to norm <= C)");
    if (std::isinf(clip_norm) && noise_multiplier != 0.0)
      throw InvalidArgument("DpSgdOptions: clip_norm = +inf (no clipping) gives unbounded sensitivity and infinite "
                            "noise σ·C; use a finite C, or noise_multiplier = 0 for non-private training");
    if (steps == 0) throw InvalidArgument("DpSgdOptions: steps must be at least 1");
    if (!(learning_rate >= 0) || !(min_learning_rate >= 0) || !std::isfinite(learning_rate) ||
        !std::isfinite(min_learning_rate))
      throw InvalidArgument("DpSgdOptions: learning rates must be finite and >= 0");
    if (!(momentum >= 0.0 && momentum < 1.0)) throw InvalidArgument("DpSgdOptions: momentum must lie in [0, 1)");
    if (!(delta >= 0.0 && delta < 1.0))
      throw InvalidArgument("DpSgdOptions: delta must lie in [0, 1) (0 means 1/N for N records)");
    if (orders.empty()) throw InvalidArgument("DpSgdOptions: no RDP orders given; use default_rdp_orders()");
    for (double a : orders) detail::require_rdp_order(a);
    adamw.validate();
  }
  LearningRateSchedule schedule() const { return {learning_rate, min_learning_rate, warmup_steps, steps}; }
};

/// What one DP-SGD step did; passed to the callback. loss and the norms are computed from the raw
/// batch and are NOT privatised: printing or logging them is outside the DP guarantee.
struct DpSgdStep {
  std::size_t step = 0;               ///< 0-based index of this step
  std::size_t total_steps = 0;
  std::size_t batch_size = 0;         ///< records drawn this step (Poisson, mean qN)
  double expected_batch_size = 0;     ///< qN, the divisor of the noisy sum
  double loss = 0;                    ///< mean per-sample loss over the batch (0 for an empty batch)
  double learning_rate = 0;
  double mean_gradient_norm = 0;      ///< mean ‖∇loss_i‖ before clipping
  double max_clipped_norm = 0;        ///< max ‖clip_C(∇loss_i)‖, measured after scaling (≤ C)
  double clipped_fraction = 0;        ///< share of the batch with ‖∇loss_i‖ > C
  double noise_std = 0;               ///< σ·C, per coordinate of the noisy sum
  double epsilon = 0;                 ///< privacy spent after this step, at `delta`
  double delta = 0;
  double elapsed_seconds = 0;
  std::span<const std::size_t> indices;  ///< the records drawn (valid only during the callback)
};

struct DpSgdSummary {
  std::size_t steps = 0;
  PrivacySpent privacy;             ///< (ε, δ) after the last step and the RDP order attaining it
  double seconds = 0;
  double first_loss = 0, final_loss = 0;  ///< batch loss of the first step; mean over the last max(1, steps/10)
  double mean_batch_size = 0;
  double clipped_fraction = 0;      ///< mean over the steps
  bool stopped_early = false;       ///< the callback returned false
  std::vector<double> losses;       ///< per step
};

using DpStepCallback = std::function<bool(const DpSgdStep&)>;

/// DP-SGD over a fixed set of N records (the unit of privacy: for a language model, the training
/// windows). Only the parameters in `subset` are trained (the others act as public, fixed weights);
/// noise and clipping apply to the subset's gradient. The model must outlive the trainer.
/// Deterministic: the same seed gives bitwise the same parameters for any num_threads.
/// Strong guarantee per step: when a step throws (non-finite gradient, bad batch) the parameters, the
/// optimiser state, the accountant and the random streams are as before that step.
template <DifferentiableModel M>
class DpSgdTrainer {
 public:
  using Scalar = typename M::Scalar;
  using Sample = typename M::Sample;

  DpSgdTrainer(M& model, const DpSgdOptions& options)
      : DpSgdTrainer(model, options, ParameterSubset::all(model.num_parameters())) {}

  DpSgdTrainer(M& model, const DpSgdOptions& options, ParameterSubset subset)
      : model_(model), options_(validated(options)), subset_(checked(std::move(subset), model)),
        accountant_(options_.orders),
        adamw_(subset_.size(), options_.adamw, decayed_groups(model, subset_)),
        sampler_(options_.sampling_rate, detail::splitmix64(options_.seed)),
        noise_(detail::splitmix64(options_.seed ^ 0x6E6F697365ull)),
        start_(Clock::now()), last_report_(start_) {
    const auto k = static_cast<Eigen::Index>(subset_.size());
    sum_.resize(k);
    update_.resize(k);
    if (options_.optimizer == DpOptimizer::sgd && options_.momentum > 0) velocity_ = Vector<Scalar>::Zero(k);
  }

  const DpSgdOptions& options() const { return options_; }
  const ParameterSubset& subset() const { return subset_; }
  const RdpAccountant& accountant() const { return accountant_; }
  std::size_t steps_taken() const { return steps_; }
  /// (ε, δ) spent so far, at δ = options().delta, or 1/num_records when that is 0.
  PrivacySpent privacy_spent(std::size_t num_records) const { return accountant_.privacy_spent(delta_for(num_records)); }

  /// One DP-SGD step on `batch`, normalised by the expected batch size q·num_records, and accounted as
  /// one Poisson-subsampled Gaussian step at (q, σ). The accounting is exact only if `batch` was drawn
  /// by Poisson sampling at rate q from num_records records (train() does that); a fixed-size batch
  /// (as in the benchmark) runs the same computation, but the reported ε then does not apply exactly.
  DpSgdStep step(std::span<const Sample> batch, std::size_t num_records) {
    std::vector<const Sample*> pointers(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) pointers[i] = &batch[i];
    return step_on(pointers, num_records, {});
  }

  /// options().steps − steps_taken() steps, each on a fresh Poisson sample of `records`.
  DpSgdSummary train(std::span<const Sample> records, const DpStepCallback& callback = {}) {
    if (records.empty()) throw InvalidArgument("DpSgdTrainer::train: no records given; pass the training set");
    (void)delta_for(records.size());  // validates δ before any step
    DpSgdSummary summary;
    const auto begin = Clock::now();
    std::vector<std::size_t> indices;
    std::vector<const Sample*> batch;
    double batch_total = 0, clipped_total = 0;
    while (steps_ < options_.steps) {
      const PoissonSampler saved = sampler_;
      sampler_.sample(records.size(), indices);
      batch.resize(indices.size());
      for (std::size_t i = 0; i < indices.size(); ++i) batch[i] = &records[indices[i]];
      DpSgdStep info;
      try {
        info = step_on(batch, records.size(), indices);
      } catch (...) {
        sampler_ = saved;
        throw;
      }
      summary.losses.push_back(info.loss);
      batch_total += static_cast<double>(info.batch_size);
      clipped_total += info.clipped_fraction;
      ++summary.steps;
      if (callback && !callback(info)) {
        summary.stopped_early = true;
        break;
      }
    }
    summary.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
    summary.privacy = privacy_spent(records.size());
    if (summary.steps > 0) {
      summary.mean_batch_size = batch_total / static_cast<double>(summary.steps);
      summary.clipped_fraction = clipped_total / static_cast<double>(summary.steps);
      summary.first_loss = summary.losses.front();
      const std::size_t tail = std::max<std::size_t>(1, summary.losses.size() / 10);
      summary.final_loss = std::accumulate(summary.losses.end() - static_cast<std::ptrdiff_t>(tail),
                                           summary.losses.end(), 0.0) / static_cast<double>(tail);
    }
    return summary;
  }

 private:
  using Clock = std::chrono::steady_clock;

  static DpSgdOptions validated(const DpSgdOptions& o) {
    o.validate();
    return o;
  }
  static ParameterSubset checked(ParameterSubset subset, const M& model) {
    if (subset.full_size() != model.num_parameters())
      throw InvalidArgument("DpSgdTrainer: the parameter subset was built for " + std::to_string(subset.full_size()) +
                            " parameters, the model has " + std::to_string(model.num_parameters()));
    if (subset.size() == 0) throw InvalidArgument("DpSgdTrainer: the parameter subset is empty; nothing to train");
    return subset;
  }
  /// The model's weight-decay groups (all parameters if it names none), intersected with the subset and
  /// expressed in the subset's coordinates.
  static std::vector<ParameterGroup> decayed_groups(const M& model, const ParameterSubset& subset) {
    std::vector<ParameterGroup> groups;
    if constexpr (requires { model.weight_decay_groups(); }) {
      for (const auto& g : model.weight_decay_groups()) groups.push_back(g);
    } else {
      groups.push_back({"all", 0, model.num_parameters()});
    }
    std::vector<ParameterGroup> out;
    std::size_t position = 0;
    for (const auto& r : subset.ranges()) {
      for (const auto& g : groups) {
        const std::size_t lo = std::max(r.offset, g.offset), hi = std::min(r.offset + r.size, g.offset + g.size);
        if (lo < hi) out.push_back({g.name, position + (lo - r.offset), hi - lo});
      }
      position += r.size;
    }
    return out;
  }
  double delta_for(std::size_t num_records) const {
    if (options_.delta > 0) return options_.delta;
    if (num_records < 2)
      throw InvalidArgument("DpSgdTrainer: δ = 1/N needs at least 2 records; set DpSgdOptions::delta");
    return 1.0 / static_cast<double>(num_records);
  }
  std::size_t threads() const {
    const std::size_t t = options_.num_threads ? options_.num_threads : std::max(1u, std::thread::hardware_concurrency());
    return std::max<std::size_t>(1, t);
  }

  /// Runs f(i, worker) for i in [0, n) on up to min(threads(), n) workers (static, strided assignment);
  /// the first exception is rethrown after all workers finished.
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    ::fisher_unlearn::detail::parallel_for(n, threads(), f);
  }

  DpSgdStep step_on(std::span<const Sample* const> batch, std::size_t num_records,
                    std::span<const std::size_t> indices) {
    if (num_records == 0) throw InvalidArgument("DpSgdTrainer::step: num_records must be at least 1");
    const double delta = delta_for(num_records);
    const std::size_t d = model_.num_parameters(), k = subset_.size(), B = batch.size();
    const double C = options_.clip_norm;
    const double expected = options_.sampling_rate * static_cast<double>(num_records);

    DpSgdStep info;
    info.step = steps_;
    info.total_steps = options_.steps;
    info.batch_size = B;
    info.expected_batch_size = expected;
    info.noise_std = options_.noise_multiplier == 0.0 ? 0.0 : options_.noise_multiplier * C;
    info.indices = indices;

    // 1. Σ clip_C(∇loss_i), in record order whatever the thread count.
    norms_.assign(B, 0.0);
    losses_.assign(B, 0.0);
    sum_.setZero();
    const std::size_t in_flight = options_.gradients_in_flight ? options_.gradients_in_flight : 4 * threads();
    const std::size_t wave = std::min(std::max<std::size_t>(B, 1), in_flight);
    if (column_.cols() < static_cast<Eigen::Index>(wave) || column_.rows() != static_cast<Eigen::Index>(k))
      column_.resize(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(wave));
    const std::size_t workers = std::min(threads(), wave);
    if (!subset_.is_all() && full_.size() < workers) full_.resize(workers, Vector<Scalar>(static_cast<Eigen::Index>(d)));
    for (std::size_t begin = 0; begin < B; begin += wave) {
      const std::size_t n = std::min(wave, B - begin);
      parallel_for(n, [&](std::size_t i, std::size_t worker) {
        auto col = column_.col(static_cast<Eigen::Index>(i));
        const Sample& s = *batch[begin + i];
        double loss;
        if (subset_.is_all()) {
          loss = static_cast<double>(
              detail::checked_gradient(model_, s, std::span<Scalar>(col.data(), k), "DpSgdTrainer::step"));
        } else {
          Vector<Scalar>& full = full_[worker];
          loss = static_cast<double>(
              detail::checked_gradient(model_, s, std::span<Scalar>(full.data(), d), "DpSgdTrainer::step"));
          subset_.gather(std::span<const Scalar>(full.data(), d), std::span<Scalar>(col.data(), k));
        }
        const double norm = std::sqrt(col.template cast<double>().squaredNorm());
        if (norm > C && std::isfinite(norm)) col *= static_cast<Scalar>(C / norm);
        norms_[begin + i] = norm;
        losses_[begin + i] = loss;
      });
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(norms_[begin + i]) || !std::isfinite(losses_[begin + i]))
          throw NonFiniteError("DpSgdTrainer::step: the gradient or loss of a sample is NaN or Inf at step " +
                               std::to_string(steps_) + "; check the data and lower the learning rate");
        const auto col = column_.col(static_cast<Eigen::Index>(i));
        info.max_clipped_norm = std::max(info.max_clipped_norm, std::sqrt(col.template cast<double>().squaredNorm()));
        sum_ += col;
      }
    }

    // 2. Gaussian noise σC on the sum, then divide by the expected batch size qN.
    const GaussianNoise saved_noise = noise_;
    if (info.noise_std > 0.0)
      for (Eigen::Index j = 0; j < static_cast<Eigen::Index>(k); ++j)
        sum_[j] += static_cast<Scalar>(info.noise_std * noise_());
    update_ = sum_ * static_cast<Scalar>(1.0 / expected);
    const Scalar l2 = detail::l2_regularization_of(model_);
    if (l2 != Scalar(0)) {
      gather_parameters(theta_sub_);
      update_.noalias() += l2 * theta_sub_;
    }
    if (!update_.allFinite()) {
      noise_ = saved_noise;
      throw NonFiniteError("DpSgdTrainer::step: the noisy gradient is NaN or Inf at step " + std::to_string(steps_) +
                           "; check the model's parameters");
    }

    // 3. Commit: the optimiser step on the trained parameters.
    info.learning_rate = options_.schedule().at(steps_);
    try {
      apply_update(info.learning_rate);
    } catch (...) {
      noise_ = saved_noise;
      throw;
    }
    accountant_.add_steps(options_.sampling_rate, options_.noise_multiplier, 1);
    ++steps_;

    double norm_sum = 0, loss_sum = 0;
    std::size_t clipped = 0;
    for (std::size_t i = 0; i < B; ++i) {
      norm_sum += norms_[i];
      loss_sum += losses_[i];
      if (norms_[i] > C) ++clipped;
    }
    if (B > 0) {
      info.loss = loss_sum / static_cast<double>(B);
      info.mean_gradient_norm = norm_sum / static_cast<double>(B);
      info.clipped_fraction = static_cast<double>(clipped) / static_cast<double>(B);
    }
    info.delta = delta;
    info.epsilon = accountant_.epsilon(delta);
    info.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    report(info);
    return info;
  }

  void gather_parameters(Vector<Scalar>& out) const {
    out.resize(static_cast<Eigen::Index>(subset_.size()));
    subset_.gather(std::span<const Scalar>(std::as_const(model_).parameters()), std::span<Scalar>(out.data(), subset_.size()));
  }
  void scatter_parameters(const Vector<Scalar>& in) {
    std::span<Scalar> theta = model_.parameters();
    std::size_t position = 0;
    for (const auto& r : subset_.ranges()) {
      std::copy_n(in.data() + position, r.size, theta.begin() + static_cast<std::ptrdiff_t>(r.offset));
      position += r.size;
    }
  }

  void apply_update(double learning_rate) {
    const std::size_t k = subset_.size();
    if (options_.optimizer == DpOptimizer::adamw) {
      if (subset_.is_all()) {
        adamw_.step(model_.parameters(), std::span<const Scalar>(update_.data(), k), learning_rate);
      } else {
        gather_parameters(theta_sub_);
        adamw_.step(std::span<Scalar>(theta_sub_.data(), k), std::span<const Scalar>(update_.data(), k), learning_rate);
        scatter_parameters(theta_sub_);
      }
      return;
    }
    // SGD with optional heavy-ball momentum v ← μv + g̃, θ ← θ − ηv (the gradient is finite: nothing below throws).
    const auto lr = static_cast<Scalar>(learning_rate);
    if (options_.momentum > 0) {
      velocity_ = static_cast<Scalar>(options_.momentum) * velocity_ + update_;
      update_ = velocity_;
    }
    if (subset_.is_all()) {
      as_eigen(model_.parameters()) -= lr * update_;
    } else {
      gather_parameters(theta_sub_);
      theta_sub_ -= lr * update_;
      scatter_parameters(theta_sub_);
    }
  }

  // "[dp-sgd] step 120/2000  loss 2.3412  lr 1.00e-03  batch 31  clipped 84%  eps 1.234 (delta 1.4e-05)  elapsed 32s  ETA 8m12s"
  void report(const DpSgdStep& info) {
    if (options_.progress_interval_seconds <= 0 || options_.progress_stream == nullptr) return;
    const bool last = info.step + 1 >= options_.steps;
    if (!last && std::chrono::duration<double>(Clock::now() - last_report_).count() < options_.progress_interval_seconds)
      return;
    last_report_ = Clock::now();
    const double done = static_cast<double>(info.step + 1);
    const double eta = info.elapsed_seconds / done * (static_cast<double>(options_.steps) - done);
    char line[320];
    std::snprintf(line, sizeof line,
                  "[%s] step %zu/%zu  loss %.4f  lr %.2e  batch %zu  clipped %.0f%%  eps %.4g (delta %.2g)  "
                  "elapsed %.0fs  ETA %.0fs\n",
                  options_.label.c_str(), info.step + 1, options_.steps, info.loss, info.learning_rate, info.batch_size,
                  100.0 * info.clipped_fraction, info.epsilon, info.delta, info.elapsed_seconds, eta);
    *options_.progress_stream << line << std::flush;
  }

  M& model_;
  DpSgdOptions options_;
  ParameterSubset subset_;
  RdpAccountant accountant_;
  AdamW<Scalar> adamw_;
  PoissonSampler sampler_;
  GaussianNoise noise_;
  Clock::time_point start_, last_report_;
  std::size_t steps_ = 0;
  Matrix<Scalar> column_;                 // k × (gradients in flight): clipped per-sample gradients
  std::vector<Vector<Scalar>> full_;      // one d-vector per worker when training a subset
  Vector<Scalar> sum_, update_, velocity_, theta_sub_;
  std::vector<double> norms_, losses_;
};

}  // namespace fisher_unlearn
