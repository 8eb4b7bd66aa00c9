// unlearn_gguf unlearning phase: F_R from m retain windows (collected here, threaded, with progress), then
// NaturalGradientUnlearning (natural_gradient.hpp) with the chosen preconditioner and forget objective,
// stopped by the rule of --stop, --max-steps or --max-time. Strong guarantee: on Ctrl-C or an error the
// model's parameters are restored (the unlearner's rollback) and nothing is written.
#pragma once

#include "measure.hpp"
#include "options.hpp"
#include "progress.hpp"

#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/natural_gradient.hpp"

#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace unlearn_gguf {

namespace fu = fisher_unlearn;

/// NPO (bounded; the default for records given as their own text) or gradient ascent, chosen at run time.
class ToolObjective {
 public:
  ToolObjective() = default;
  ToolObjective(bool npo, double beta) : npo_(npo), objective_(beta) {}
  std::string name() const { return npo_ ? "npo" : "gradient_ascent"; }
  template <fu::Model M>
  void bind(const M& model, std::span<const typename M::Sample> forget) {
    if (npo_) objective_.bind(model, forget);
  }
  template <fu::DifferentiableModel M>
  double value_and_gradient(const M& model, std::span<const typename M::Sample> forget,
                            fu::Vector<typename M::Scalar>& g) const {
    if (npo_) return objective_.value_and_gradient(model, forget, g);
    return fu::GradientAscentObjective{}.value_and_gradient(model, forget, g);
  }

 private:
  bool npo_ = true;
  fu::NpoObjective objective_;
};

struct FisherInfo {
  std::size_t gradients = 0;
  std::string kind;
  double damping = 0.0, mean_eigenvalue = 0.0, seconds = 0.0;
  std::size_t bytes = 0;
};

struct UnlearnOutcome {
  fu::NaturalGradientResult result;
  FisherInfo fisher;
  std::string stop_reason;              ///< in the tool's words
  struct Check { std::size_t step; bool met; double worst_percentile, worst_nll; std::size_t extracted; };
  std::vector<Check> checks;
  bool met_before = false;              ///< the rule held before any step: the model was left unchanged
  double seconds = 0.0;
};

/// Per-window gradients (one column each) at the current θ, threaded over windows. Empirical: ∇ of the
/// window's mean NLL times √T (the per-token scale the Llama model does not declare; docs/unlearners.md,
/// "The Fisher scale"), so that E[g gᵀ] approximates the Gauss–Newton matrix of the window's summed NLL /
/// T like the Monte-Carlo draws, which the model already scales.
inline fu::Matrix<float> retain_gradients(const LlamaModel& model, const std::vector<Tokens>& windows,
                                          const std::vector<std::size_t>& chosen, bool monte_carlo,
                                          const Options& o) {
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  fu::Matrix<float> G(d, static_cast<Eigen::Index>(chosen.size()));
  const std::size_t threads = std::min(o.resolved_threads(), chosen.size());
  Progress progress("fisher", chosen.size(), o.quiet);
  std::mutex mutex;
  std::size_t next = 0, done = 0;
  std::exception_ptr error;
  auto work = [&] {
    for (;;) {
      std::size_t i;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (next == chosen.size() || error || cancel_flag().load()) return;
        i = next++;
      }
      try {
        LlamaModel::Sample s;
        s.tokens = windows[chosen[i]];
        std::span<float> col(G.col(static_cast<Eigen::Index>(i)).data(), static_cast<std::size_t>(d));
        if (monte_carlo) {
          std::mt19937_64 rng(o.seed * 0x100000001b3ULL + i);
          model.sampled_gradient(s, rng, col);
        } else {
          model.gradient(s, col);
          G.col(static_cast<Eigen::Index>(i)) *= std::sqrt(static_cast<float>(s.tokens.size() - 1));
        }
        std::lock_guard<std::mutex> lock(mutex);
        ++done;
        if (threads == 1) progress.tick(done);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    // The main thread reports progress while the workers run.
    for (;;) {
      std::size_t now;
      {
        std::lock_guard<std::mutex> lock(mutex);
        now = done;
        if (done == chosen.size() || error || cancel_flag().load()) break;
      }
      if (now > 0) progress.tick(now);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (auto& t : pool) t.join();
    if (!error && done == chosen.size()) progress.tick(done);
  }
  if (error) std::rethrow_exception(error);
  throw_if_cancelled();
  if (!G.allFinite()) throw fu::NonFiniteError("a retain gradient holds NaN or Inf; check the model file");
  return G;
}

template <class Estimator>
Estimator build_fisher(const LlamaModel& model, const std::vector<Tokens>& windows, bool monte_carlo,
                       const Options& o, FisherInfo& info) {
  const std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  const std::size_t m = std::min<std::size_t>(static_cast<std::size_t>(o.fisher_samples), windows.size());
  const auto chosen = fu::detail::subsample_indices(windows.size(), m, o.seed);
  fu::FisherDamping damping;
  damping.relative = o.damping;
  info.gradients = m;
  info.kind = monte_carlo ? "monte_carlo" : "empirical";
  auto finish = [&](const Estimator& fisher, double trace) {
    info.damping = static_cast<double>(fisher.damping());
    info.mean_eigenvalue = trace / static_cast<double>(model.num_parameters());
    info.bytes = fisher.memory_bytes();
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  if constexpr (std::is_same_v<Estimator, fu::KfacFisher<float>>) {
    // K-FAC from the layers' statistics (no d×m matrix), per-token scaled by the model's √wₜ seeding,
    // on --threads threads with the same bits for every thread count (kfac.hpp).
    std::vector<LlamaModel::Sample> samples(m);
    for (std::size_t i = 0; i < m; ++i) samples[i].tokens = windows[chosen[i]];
    fu::GradientCollection gc;
    gc.kind = monte_carlo ? fu::FisherKind::monte_carlo : fu::FisherKind::empirical;
    gc.seed = o.seed;
    Progress progress("fisher", 1, o.quiet);
    if (!o.quiet) std::fprintf(stderr, "[fisher] K-FAC factors of %zu retain windows ...\n", m);
    Estimator fisher(model, 1.0f);
    fisher.set_num_threads(o.resolved_threads());
    fisher.accumulate(model, std::span<const LlamaModel::Sample>(samples), gc);  // one pass: Ctrl-C is seen after it
    throw_if_cancelled();
    fisher.finalize();
    progress.tick(1);
    const double trace = fisher.undamped_trace();
    if (!std::isfinite(trace)) throw fu::NonFiniteError("the K-FAC factors hold NaN or Inf; check the model file");
    fisher.set_damping(static_cast<float>(damping.resolve(trace, model.num_parameters())));
    finish(fisher, trace);
    return fisher;
  } else {
    const fu::Matrix<float> G = retain_gradients(model, windows, chosen, monte_carlo, o);
    const double trace = G.template cast<double>().squaredNorm() / static_cast<double>(m);
    Estimator fisher(model.num_parameters(), static_cast<float>(damping.resolve(trace, model.num_parameters())));
    fisher.add_gradients(G);
    fisher.finalize();
    finish(fisher, trace);
    return fisher;
  }
}

template <class Estimator, class Preconditioner>
UnlearnOutcome run_unlearner(LlamaModel& model, const std::vector<LlamaModel::Sample>& forget,
                             const std::vector<LlamaModel::Sample>& retain, const std::vector<Tokens>& fisher_inputs,
                             bool monte_carlo, const std::vector<Record>& records,
                             const std::vector<Tokens>& shared_candidates, const Options& o, bool met_before,
                             Preconditioner precond) {
  UnlearnOutcome out;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (met_before) {
    out.met_before = true;
    out.stop_reason = "the stopping rule already held before unlearning; the model was left unchanged";
    return out;
  }
  Estimator fisher = build_fisher<Estimator>(model, fisher_inputs, monte_carlo, o, out.fisher);

  fu::NaturalGradientOptions ng;
  ng.learning_rate = o.resolved_learning_rate();
  ng.max_steps = static_cast<std::size_t>(o.max_steps);
  ng.max_kl = o.trust_kl;
  ng.seed = o.seed;
  ng.retain_weight = o.resolved_retain_weight();
  ng.retain_batch_size = static_cast<std::size_t>(o.retain_batch);
  ToolObjective objective(o.objective == "npo", o.npo_beta);
  fu::NaturalGradientUnlearning<Estimator, Preconditioner, ToolObjective> unlearner(ng, objective, precond);

  Progress progress("unlearn", ng.max_steps, o.quiet);
  std::string why;
  fu::NaturalGradientCallbacks<LlamaModel> hooks;
  hooks.progress = [&](const fu::NaturalGradientStep& s) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "objective %.5g, predicted retain KL %.3g%s", s.objective, s.predicted_kl,
                  s.trust_region_hit ? " (at the trust-region boundary)" : "");
    progress.tick(s.step, buf);
  };
  hooks.stop = [&](const LlamaModel& m, std::size_t step) {
    throw_if_cancelled();
    if (o.max_time > 0.0 && elapsed() >= o.max_time) {
      why = "--max-time (" + std::to_string(o.max_time) + " s) reached";
      return true;
    }
    if (o.stop == "steps" || step % static_cast<std::size_t>(o.check_every) != 0) return false;
    const RuleCheck c = check_rule(m, records, shared_candidates, o);
    out.checks.push_back({step, c.met, c.worst_percentile, c.worst_nll, c.extracted});
    if (!o.quiet)
      std::fprintf(stderr, "[check] step %zu: %s (%s)\n", step, c.met ? "rule met" : "not yet",
                   o.stop == "nll" ? ("smallest secret NLL " + std::to_string(c.worst_nll)).c_str()
                                   : ("smallest percentile " + std::to_string(c.worst_percentile) + ", extracted " +
                                      std::to_string(c.extracted)).c_str());
    if (c.met) why = "the stopping rule (--stop " + o.stop + ") was met at step " + std::to_string(step);
    return c.met;
  };
  out.result = unlearner.unlearn_detailed(model, std::span<const LlamaModel::Sample>(forget),
                                          std::span<const LlamaModel::Sample>(retain), fisher, hooks);
  out.stop_reason = !why.empty() ? why : "--max-steps (" + std::to_string(o.max_steps) + ") reached";
  out.seconds = elapsed();
  return out;
}

/// Dispatches on --estimator and --method.
inline UnlearnOutcome unlearn(LlamaModel& model, const std::vector<LlamaModel::Sample>& forget,
                              const std::vector<LlamaModel::Sample>& retain, const std::vector<Tokens>& fisher_inputs,
                              bool monte_carlo, const std::vector<Record>& records,
                              const std::vector<Tokens>& shared_candidates, const Options& o, bool met_before) {
  auto with = [&]<class Estimator>(Estimator*) {
    if (o.method == "natural-gradient")
      return run_unlearner<Estimator>(model, forget, retain, fisher_inputs, monte_carlo, records, shared_candidates, o,
                                      met_before, fu::NaturalGradient{});
    if (o.method == "plain-gradient")
      return run_unlearner<Estimator>(model, forget, retain, fisher_inputs, monte_carlo, records, shared_candidates, o,
                                      met_before, fu::PlainGradient{});
    return run_unlearner<Estimator>(model, forget, retain, fisher_inputs, monte_carlo, records, shared_candidates, o,
                                    met_before, fu::AdamPreconditioner{});
  };
  if (o.estimator == "diagonal") return with(static_cast<fu::DiagonalFisher<float>*>(nullptr));
  if (o.estimator == "kfac") return with(static_cast<fu::KfacFisher<float>*>(nullptr));
  return with(static_cast<fu::WoodburyFisher<float>*>(nullptr));
}

}  // namespace unlearn_gguf
