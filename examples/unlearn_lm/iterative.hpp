// unlearn_lm iterative methods (issue 9): NaturalGradientUnlearning (natural_gradient.hpp) on forget
// samples built from the canaries (canary_forget.hpp: each copy with its preceding context, the loss on
// the secret's tokens only), with one preconditioner and one objective per method. Every method takes
// trust-region-limited steps (predicted retain KL ½δᵀF_Rδ = κ per step, the same κ for all) and its
// knob is the number of steps.
#pragma once

#include "methods.hpp"

#include "fisher_unlearn/canary_forget.hpp"
#include "fisher_unlearn/fisher/any.hpp"
#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/natural_gradient.hpp"

namespace unlearn_lm {

/// Forget samples of the request's canaries: up to `copies` copies each, the copy preceded by up to
/// `context_bytes` bytes of the training text before it (cut at the window's capacity).
inline std::vector<Sample> canary_forget_samples(const Dataset& ds, const Options& opt, const std::vector<std::size_t>& canaries,
                                                 fu::ForgetTarget target, std::size_t* scored_tokens = nullptr) {
  std::vector<Sample> out;
  fu::ForgetSampleOptions fo;
  fo.target = target;
  fo.max_tokens = static_cast<std::size_t>(opt.context) + 1;
  for (std::size_t i : canaries) {
    const auto& c = ds.canaries[i];
    const std::size_t copies = std::min<std::size_t>(c.offsets.size(), static_cast<std::size_t>(opt.forget_copies));
    for (std::size_t k = 0; k < copies; ++k) {
      const std::size_t off = c.offsets[k];
      const std::size_t begin = off > static_cast<std::size_t>(opt.forget_context) ? off - static_cast<std::size_t>(opt.forget_context) : 0;
      fu::ForgetSampleLayout layout;
      out.push_back(fu::make_forget_sample(*c.space, c.secret, std::string_view(ds.stream).substr(begin, off - begin), fo, &layout));
      if (scored_tokens) *scored_tokens = layout.symbol_tokens.size();
    }
  }
  if (out.empty()) throw fu::StateError("no forget sample was built (no canary in the request)");
  return out;
}

/// F_R behind one type (fisher/any.hpp), so that every iterative method can use any estimator (Woodbury,
/// K-FAC, EK-FAC) without an unlearner instantiation per estimator. Built and finalised by
/// make_retain_fisher; the unlearner only applies powers (it is always handed a prebuilt F_R).
using RetainFisher = fu::AnyFisher<float>;

/// F_R = λI + F̂ of `kind` ("woodbury": (1/m)Σgᵢgᵢᵀ from m per-sample gradients; "kfac" / "ekfac": the
/// Kronecker-factored statistics of the same m windows, no d×m matrix), empirical with the per-token
/// scale, λ = α·tr(F̂)/d.
inline RetainFisher make_retain_fisher(const std::string& kind, const Model& start, std::span<const Sample> chosen,
                                       std::uint64_t seed, double alpha, std::size_t threads = 1) {
  fu::GradientCollection gc;
  gc.kind = fu::FisherKind::empirical;
  gc.seed = seed;
  fu::FisherDamping damping;
  damping.relative = alpha;
  const std::size_t d = start.num_parameters();
  if (kind == "woodbury") {
    const auto G = fu::collect_gradients(start, chosen, gc);
    const double trace = G.template cast<double>().squaredNorm() / static_cast<double>(G.cols());
    fu::WoodburyFisher<float> f(d, static_cast<float>(damping.resolve(trace, d)));
    f.add_gradients(G);
    f.finalize();
    return RetainFisher(std::move(f), trace);
  }
  auto layered = [&](auto f) {
    f.set_num_threads(threads);  // the same bits for every thread count (kfac.hpp)
    f.accumulate(start, chosen, gc);
    f.finalize();
    const double trace = f.undamped_trace();
    f.set_damping(static_cast<float>(damping.resolve(trace, d)));
    return RetainFisher(std::move(f), trace);
  };
  if (kind == "kfac") return layered(fu::KfacFisher<float>(start, 1.0f));
  if (kind == "ekfac") return layered(fu::EkfacFisher<float>(start, 1.0f));
  throw fu::InvalidArgument("unknown F_R estimator '" + kind + "'; choose woodbury, kfac or ekfac");
}

/// One iterative method: Preconditioner × Objective, F_R (`metric`: woodbury, kfac or ekfac; empirical,
/// per-token scale) built once per request in prepare() and reused by every run (it is also the trust
/// region's metric).
template <class Preconditioner, class Objective>
class IterativeMethod : public Method {
 public:
  using Estimator = RetainFisher;
  IterativeMethod(const Options& opt, std::string method_name, Family fam, fu::ForgetTarget target, double retain_weight,
                  std::string what, std::string metric)
      : opt_(opt), target_(target), retain_weight_(retain_weight), metric_(std::move(metric)) {
    name = std::move(method_name);
    knob = "steps";
    family = fam;
    description = std::move(what) + "; F_R " + metric_;
    is_integer_knob = true;
    continuation = true;
    search.low = 1;
    search.high = static_cast<double>(opt.max_steps);
    search.start = 1;
    search.growth = 2.0;
  }

  double prepare(const Model& start, const Dataset& ds, const ForgetRequest& request) override {
    const double t0 = now_seconds();
    ds_ = &ds;
    std::size_t scored = 0;
    forget_ = canary_forget_samples(ds, opt_, request.canaries, target_, &scored);
    scored_tokens_ = std::max<std::size_t>(1, scored);
    const auto chosen = fu::detail::subsample(std::span<const Sample>(ds.retain), static_cast<std::size_t>(opt_.fisher_samples), ds.seed + 29);
    fisher_ = std::make_unique<Estimator>(
        make_retain_fisher(metric_, start, std::span<const Sample>(chosen), ds.seed + 23, opt_.fisher_damping,
                           static_cast<std::size_t>(opt_.threads)));
    lambda_ = fisher_->damping();
    return now_seconds() - t0;
  }

  double predicted_retain_kl(const Model& start, const Model& model) const override {
    if (!fisher_) return std::nan("");
    const auto d = static_cast<Eigen::Index>(start.num_parameters());
    const fu::Vector<float> delta = fu::as_eigen(model.parameters()) - fu::as_eigen(start.parameters());
    fu::Vector<float> fd(d);
    fisher_->apply_power(1.0, delta, fd);
    return 0.5 * delta.cast<double>().dot(fd.cast<double>());
  }

  fu::UnlearningReport apply(Model& model, double steps) override {
    return run(model, static_cast<std::size_t>(steps), {});
  }

  fu::UnlearningReport run_with_checks(Model& model, std::size_t max_steps, const StepCheck& check) override {
    return run(model, max_steps, check);
  }

 private:
  fu::UnlearningReport run(Model& model, std::size_t steps, const StepCheck& check) {
    fu::NaturalGradientOptions o;
    o.learning_rate = opt_.iterative_lr > 0 ? opt_.iterative_lr : 1e4;  // the trust region sets the step
    o.max_steps = std::max<std::size_t>(1, steps);
    o.max_kl = opt_.trust_kl;
    o.trust_shrink = opt_.trust_shrink;
    o.average_last = static_cast<std::size_t>(opt_.average_iterates);
    o.fisher_samples = static_cast<std::size_t>(opt_.fisher_samples);
    o.seed = ds_->seed + 41;
    o.retain_weight = retain_weight_;
    o.retain_batch_size = static_cast<std::size_t>(opt_.retain_batch);
    // The report's J_retain before/after (two passes over the 512 retain windows) is a diagnostic no
    // step or stop uses; the search measures utility itself (probe perplexity, measured retain KL).
    o.report_retain_loss = false;
    Objective objective = make_objective();
    Preconditioner preconditioner{};
    if constexpr (std::is_same_v<Preconditioner, fu::SoulPreconditioner>) preconditioner.seed = ds_->seed + 43;
    fu::NaturalGradientUnlearning<Estimator, Preconditioner, Objective> u(
        o, std::move(objective), std::move(preconditioner),
        [](std::size_t, float) -> Estimator { throw fu::StateError("F_R is built in prepare()"); });
    fu::NaturalGradientCallbacks<Model> cb;
    const double t0 = now_seconds();
    if (check) cb.stop = [&](const Model& m, std::size_t step) { return check(m, step, now_seconds() - t0); };
    if (opt_.trace_steps)  // diagnostic (--trace-steps): the library's per-step record
      cb.progress = [&](const fu::NaturalGradientStep& s) {
        std::cout << "[trace] " << name << " step " << s.step << ": forget objective " << fmt_general(s.objective)
                  << ", anchor " << fmt_general(s.retain_anchor) << ", |delta| " << fmt_general(s.step_norm)
                  << ", predicted KL " << fmt_general(s.predicted_kl) << " (unconstrained " << fmt_general(s.unconstrained_predicted_kl)
                  << ")\n";
      };
    auto result = u.unlearn_detailed(model, std::span<const Sample>(forget_), std::span<const Sample>(ds_->retain), *fisher_, cb);
    result.report.notes += (result.report.notes.empty() ? "" : "; ") + std::string("stop: ") + result.stop_reason +
                           ", trust region hit " + std::to_string(result.trust_region_hits) + " times, lambda " + fmt_general(lambda_);
    return result.report;
  }

  Objective make_objective() const {
    if constexpr (std::is_same_v<Objective, fu::NpoObjective>)
      return fu::NpoObjective(0.1, static_cast<double>(scored_tokens_));
    else
      return Objective{};
  }

  const Options& opt_;
  fu::ForgetTarget target_;
  double retain_weight_;
  std::string metric_;
  const Dataset* ds_ = nullptr;
  std::vector<Sample> forget_;
  std::size_t scored_tokens_ = 1;
  double lambda_ = 0;
  std::unique_ptr<Estimator> fisher_;
};

inline std::vector<std::string> iterative_method_names() {
  return {"iter/natural_kfac", "iter/natural_ekfac", "iter/natural_woodbury", "iter/soul", "iter/plain", "iter/adam",
          "iter/gradient_ascent", "iter/gradient_difference", "iter/npo"};
}

inline std::unique_ptr<Method> make_iterative_method(const Options& opt, const std::string& name) {
  using fu::ForgetTarget;
  const double beta = opt.retain_anchor;
  const std::string bounded = "bounded objective: CE towards uniform over the slot's other symbols, on the secret's tokens";
  const std::string& metric = opt.trust_metric;  // the trust region's metric for the non-natural methods
  for (const char* kind : {"woodbury", "kfac", "ekfac"})
    if (name == std::string("iter/natural_") + kind)
      return std::make_unique<IterativeMethod<fu::NaturalGradient, fu::DescentObjective>>(
          opt, name, Family::second_order, ForgetTarget::other_symbols, beta,
          std::string("natural gradient F_R^-1 g (") + kind + " F_R, also its trust-region metric), " + bounded, kind);
  if (name == "iter/soul")
    return std::make_unique<IterativeMethod<fu::SoulPreconditioner, fu::DescentObjective>>(
        opt, name, Family::second_order, ForgetTarget::other_symbols, beta, "SOUL (Sophia clipped diagonal Gauss-Newton), " + bounded, metric);
  if (name == "iter/plain")
    return std::make_unique<IterativeMethod<fu::PlainGradient, fu::DescentObjective>>(
        opt, name, Family::first_order, ForgetTarget::other_symbols, beta, "plain gradient, " + bounded, metric);
  if (name == "iter/adam")
    return std::make_unique<IterativeMethod<fu::AdamPreconditioner, fu::DescentObjective>>(
        opt, name, Family::first_order, ForgetTarget::other_symbols, beta, "Adam, " + bounded, metric);
  if (name == "iter/gradient_ascent")
    return std::make_unique<IterativeMethod<fu::PlainGradient, fu::GradientAscentObjective>>(
        opt, name, Family::first_order, ForgetTarget::observed, 0.0, "plain gradient ascent on the secret's tokens, no retain anchor", metric);
  if (name == "iter/gradient_difference")
    return std::make_unique<IterativeMethod<fu::PlainGradient, fu::GradientAscentObjective>>(
        opt, name, Family::first_order, ForgetTarget::observed, beta, "gradient ascent on the secret's tokens + retain anchor", metric);
  if (name == "iter/npo")
    return std::make_unique<IterativeMethod<fu::PlainGradient, fu::NpoObjective>>(
        opt, name, Family::first_order, ForgetTarget::observed, beta, "NPO (beta 0.1) on the secret's tokens + retain anchor, plain gradient", metric);
  return nullptr;
}

}  // namespace unlearn_lm
