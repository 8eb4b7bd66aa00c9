// unlearn_lm methods: every unlearning method as one strength knob with its search range, a prepare
// phase (shared set-up such as a Fisher estimate, timed) and apply(model, knob) from the trained model.
#pragma once

#include "data.hpp"

#include "fisher_unlearn/baselines.hpp"
#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forgetting.hpp"
#include "fisher_unlearn/matched_target.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/report.hpp"

#include <functional>
#include <map>
#include <memory>

namespace unlearn_lm {

/// results.json's `family`: what kind of method a row is (dp points come from the DP-SGD study).
enum class Family { second_order, first_order, dp, reference };
inline const char* to_string(Family f) {
  switch (f) {
    case Family::second_order: return "second_order";
    case Family::first_order: return "first_order";
    case Family::dp: return "dp";
    case Family::reference: return "reference";
  }
  return "?";
}

/// What a method is asked to forget: windows holding the canaries (legacy methods) and the canaries
/// themselves (methods whose objective covers only the secret's tokens).
struct ForgetRequest {
  std::vector<std::size_t> canaries;  ///< indices into Dataset::canaries
  std::vector<Sample> windows;        ///< training windows holding a copy of one of them
  std::size_t retain_total = 0;       ///< n − k: training windows not in this request's forget set
};

/// check(model, step, seconds since the run started) after a step; returns true to stop the run there.
using StepCheck = std::function<bool(const Model&, std::size_t, double)>;

class Method {
 public:
  virtual ~Method() = default;
  std::string name, knob;
  Family family = Family::first_order;
  std::string description;
  fu::MatchedTargetOptions search;  ///< low/high/start/growth/log_scale of the knob (budget etc. set by the protocol)
  bool is_integer_knob = false;     ///< round the knob (step counts)
  bool continuation = false;        ///< the knob is a step count and run_with_checks() is available

  /// Shared set-up from the trained model (e.g. a Fisher estimate), once per request; returns seconds.
  virtual double prepare(const Model& start, const Dataset& ds, const ForgetRequest& request) = 0;
  /// Unlearns from `model` (the trained model on entry) with the knob value; throws fu::Error on failure
  /// (the protocol records the point as failed). UnlearningReport::seconds: the method's own wall time
  /// for this knob value as if run once from the start (no share of the prepare time).
  virtual fu::UnlearningReport apply(Model& model, double knob) = 0;
  /// Step-count knobs only: one run of at most max_steps steps, `check` called after every step.
  virtual fu::UnlearningReport run_with_checks(Model&, std::size_t, const StepCheck&) {
    throw fu::StateError(name + ": this method has no step-by-step run");
  }
  /// ½ΔᵀF_RΔ with Δ = θ(model) − θ(start) under the method's own F_R (the trust region's prediction of
  /// the retain KL from the start); NaN for methods without one. A diagnostic: not charged as time.
  virtual double predicted_retain_kl(const Model& /*start*/, const Model& /*model*/) const { return std::nan(""); }
};

// ------------------------------------------------------------------------------------------------
// Legacy one-step methods (removal.hpp, forgetting.hpp) and SGD baselines (baselines.hpp), as they were
// before issue 9: their forget set is every window holding a canary copy, the loss is the windows' mean
// cross-entropy.
// ------------------------------------------------------------------------------------------------
namespace legacy {

inline double retain_scale(const Dataset& ds, const ForgetRequest& r) {
  // FisherRemoval normalises by |retain| (= n − k for the whole retain set); it gets a sample, so η is
  // rescaled to keep η = 1 the true k/(n−k) Newton step.
  return static_cast<double>(ds.retain.size()) / static_cast<double>(r.retain_total);
}

template <template <class> class EstimatorT>
class FisherRemovalMethod : public Method {
 public:
  using Estimator = EstimatorT<float>;
  FisherRemovalMethod(const Options& opt, std::string estimator, fu::FisherKind kind) : opt_(opt), kind_(kind) {
    name = "fisher_removal/" + estimator + "/" + fu::to_string(kind);
    knob = "eta";
    family = Family::second_order;
    description = "one Newton-style removal step eta*(k/(n-k))*F^-1*grad J_forget (removal.hpp), damping searched once";
    search.low = 1.0;
    search.high = 1e4;
    search.start = 1.0;
    search.growth = 10.0;
  }
  double prepare(const Model& start, const Dataset& ds, const ForgetRequest& request) override {
    const double t0 = now_seconds();
    ds_ = &ds;
    request_ = request;
    damping_.reset();
    fu::GradientCollection gc;
    gc.kind = kind_;
    gc.seed = ds.seed + 23;
    const auto chosen = fu::detail::subsample(std::span<const Sample>(ds.retain), static_cast<std::size_t>(opt_.fisher_samples), ds.seed + 29);
    const auto G = fu::collect_gradients(start, std::span<const Sample>(chosen), gc);
    fisher_ = std::make_unique<Estimator>(start.num_parameters(), 1e-3f);
    fisher_->add_gradients(G);
    fisher_->finalize();
    return now_seconds() - t0;
  }
  fu::UnlearningReport apply(Model& model, double eta) override {
    fu::FisherRemovalOptions o;
    if (damping_) {
      o.damping = *damping_;
    } else {
      fu::DampingSearch s;
      s.grid = fu::log_grid(1e-6, 1.0, 7);
      s.score_samples = std::min<std::size_t>(64, ds_->retain.size());
      s.seed = ds_->seed + 17;
      o.automatic_damping = s;
    }
    o.step_scale = eta * retain_scale(*ds_, request_);
    auto rep = fu::FisherRemoval<Estimator>(o).unlearn(model, std::span<const Sample>(request_.windows),
                                                       std::span<const Sample>(ds_->retain), *fisher_);
    if (!damping_) damping_ = rep.damping;  // chosen once per method, not per knob value
    return rep;
  }

 private:
  const Options& opt_;
  fu::FisherKind kind_;
  const Dataset* ds_ = nullptr;
  ForgetRequest request_;
  std::unique_ptr<Estimator> fisher_;
  std::optional<double> damping_;
};

template <template <class> class EstimatorT>
class FisherForgettingMethod : public Method {
 public:
  using Estimator = EstimatorT<float>;
  FisherForgettingMethod(const Options& opt, std::string estimator, fu::FisherKind kind) : opt_(opt), kind_(kind) {
    name = "fisher_forgetting/" + estimator + "/" + fu::to_string(kind);
    knob = "mu*sigma^2";
    family = Family::second_order;
    description = "Fisher forgetting (forgetting.hpp): the eta = 1 removal step plus noise (mu*sigma^2)^(1/4) F^(-1/4) eps";
    search.low = 1e-10;
    search.high = 1e-2;
    search.start = 1e-7;
    search.growth = 10.0;
  }
  double prepare(const Model&, const Dataset& ds, const ForgetRequest& request) override {
    ds_ = &ds;
    request_ = request;
    damping_.reset();
    return 0.0;  // FisherForgetting builds its own F inside unlearn(): timed in apply()
  }
  fu::UnlearningReport apply(Model& model, double noise) override {
    fu::FisherForgettingOptions o;
    if (damping_) {
      o.removal.damping = *damping_;
    } else {
      fu::DampingSearch s;
      s.grid = fu::log_grid(1e-6, 1.0, 7);
      s.score_samples = std::min<std::size_t>(64, ds_->retain.size());
      s.seed = ds_->seed + 17;
      o.removal.automatic_damping = s;
    }
    o.removal.step_scale = retain_scale(*ds_, request_);
    o.removal.fisher_samples = static_cast<std::size_t>(opt_.fisher_samples);
    o.removal.seed = ds_->seed + 29;
    o.removal.gradients.kind = kind_;
    o.removal.gradients.seed = ds_->seed + 23;
    o.mu = noise;
    o.sigma = 1.0;
    o.noise_seed = ds_->seed + 31;
    auto rep = fu::FisherForgetting<Estimator>(o).unlearn(model, std::span<const Sample>(request_.windows),
                                                          std::span<const Sample>(ds_->retain));
    if (!damping_) damping_ = rep.damping;
    return rep;
  }

 private:
  const Options& opt_;
  fu::FisherKind kind_;
  const Dataset* ds_ = nullptr;
  ForgetRequest request_;
  std::optional<double> damping_;
};

template <class Baseline>
class SgdBaselineMethod : public Method {
 public:
  SgdBaselineMethod(const Options& opt, std::string method_name) : opt_(opt) {
    name = std::move(method_name);
    knob = "lr";
    family = Family::first_order;
    description = "minibatch SGD on the forget windows' mean cross-entropy (baselines.hpp), fixed steps, knob = lr";
    search.low = 1e-4;
    search.high = 1.0;
    search.start = 1e-3;
    search.growth = std::sqrt(10.0);
  }
  double prepare(const Model&, const Dataset& ds, const ForgetRequest& request) override {
    ds_ = &ds;
    request_ = request;
    return 0.0;
  }
  fu::UnlearningReport apply(Model& model, double lr) override {
    fu::FirstOrderOptions o;
    o.learning_rate = lr;
    o.steps = static_cast<std::size_t>(opt_.first_order_steps);
    o.batch_size = static_cast<std::size_t>(opt_.first_order_batch);
    o.seed = ds_->seed + 37;
    try {
      return Baseline(o).unlearn(model, std::span<const Sample>(request_.windows), std::span<const Sample>(ds_->retain));
    } catch (const fu::NonFiniteError& e) {
      // A NaN/Inf in SGD on a model that trained fine is the step size: say so (the knob search then
      // counts this learning rate as failed and looks lower).
      throw fu::NonFiniteError(name + " diverged at learning rate " + fmt_general(lr) + " (" +
                               std::to_string(o.steps) + " SGD steps of batch " + std::to_string(o.batch_size) +
                               "): the learning rate is too large for this model; use a smaller one (the lr knob, "
                               "or fewer --first-order-steps). Library message: " + e.what());
    }
  }

 private:
  const Options& opt_;
  const Dataset* ds_ = nullptr;
  ForgetRequest request_;
};

}  // namespace legacy

}  // namespace unlearn_lm
