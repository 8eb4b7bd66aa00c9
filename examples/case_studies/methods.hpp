// case_studies unlearning phase: every method is NaturalGradientUnlearning (natural_gradient.hpp) on the
// deleted people's entries with the same retain-KL trust region per step, the same retain anchor and
// the same step budget; only the preconditioner (or, for gradient difference, the objective) differs.
// The trust region's metric is a diagonal F_R (from m retain sequences) for every method.
// The knob is the number of steps, searched by continuation (checks after 1, 2, 4, … steps, one run):
// the first check whose tuning score (mean address exposure of the TUNING people among the candidates)
// is ≤ the retrained model's + margin, with probe perplexity ≤ guard × the trained model's, is selected.
#pragma once

#include "measure.hpp"

#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/natural_gradient.hpp"

#include <memory>

namespace case_studies {

struct SearchPoint {
  std::size_t steps = 0;
  double score = 0;            ///< mean exposure bits of the tuning people
  double probe_perplexity = 0;
  bool reached = false, failed = false;
  double seconds = 0;          ///< since the run started (steps + checks up to here)
};

struct MethodRun {
  std::string name, description, family;
  std::vector<SearchPoint> points;
  std::optional<std::size_t> selected;   ///< index in points
  bool reached = false;
  double prepare_seconds = 0;            ///< F_R (every method: it is the trust region's metric)
  double seconds = 0;                    ///< charged: prepare + the run up to the selected check
  std::string notes;
  std::vector<float> parameters;         ///< at the selected check
};

/// The score a point must reach and the guard it must respect (both from the reference models).
struct SearchTarget {
  double score = 0;                 ///< retrained tuning score + margin
  double probe_limit = 0;           ///< guard × trained probe perplexity
};

inline std::string method_description(const std::string& m) {
  if (m == "natural_woodbury") return "NPO (beta 0.1) + retain anchor, natural gradient (Woodbury F_R, float, empirical)^-1 g";
  if (m == "natural_diagonal") return "NPO (beta 0.1) + retain anchor, natural gradient (diagonal F_R)^-1 g";
  if (m == "npo") return "NPO (beta 0.1) + retain anchor, plain gradient";
  if (m == "adam") return "NPO (beta 0.1) + retain anchor, Adam";
  if (m == "gradient_difference") return "gradient ascent on the forget entries + retain anchor, plain gradient";
  return m;
}

/// The Woodbury natural gradient as a preconditioner of its own: out = (λI + (1/m)Σgᵢgᵢᵀ)⁻¹g from the same
/// m retain gradients, while the trust region's metric stays the unlearner's (diagonal) F_R. With m ≪ d
/// a low-rank F_R is a poor trust-region metric: the forget gradient lies almost entirely outside the
/// span of the m retain gradients, where the Woodbury F_R has curvature λ only, so ½δᵀF_Rδ grossly
/// underestimates the damage of a step (measured: docs/case_studies.md).
struct WoodburyPreconditioner {
  static constexpr bool uses_fisher = false;
  std::shared_ptr<const fu::WoodburyFisher<float>> woodbury;
  std::string name() const { return "natural_gradient_woodbury"; }
  void reset(std::size_t) {}
  template <class M, class Estimator>
  void direction(const fu::PreconditionerContext<M, Estimator>&, const fu::Vector<float>& g, fu::Vector<float>& out) const {
    out.resize(g.size());
    woodbury->apply_power(-1.0, g, out);
  }
};

/// F_R is a diagonal Fisher from m retain sequences (λ = α·tr(F̂)/d) for every method: it is the trust
/// region's metric, and the preconditioner of natural_diagonal.
template <class Preconditioner, class Objective>
MethodRun run_method(const std::string& name, const Model& start, const std::vector<Sample>& forget, const std::vector<Sample>& retain,
                     Objective objective, const Options& o, const SearchTarget& target,
                     const std::function<SearchPoint(const Model&)>& check) {
  using Estimator = fu::DiagonalFisher<float>;
  MethodRun r;
  r.name = name;
  r.description = method_description(name);
  r.family = (name.rfind("natural", 0) == 0) ? "second_order" : "first_order";
  const double t0 = now_seconds();
  fu::GradientCollection gc;
  gc.kind = fu::FisherKind::empirical;
  gc.seed = o.seed + 23;
  const auto chosen = fu::detail::subsample(std::span<const Sample>(retain), static_cast<std::size_t>(o.fisher_samples), o.seed + 29);
  const auto G = fu::collect_gradients(start, std::span<const Sample>(chosen), gc);
  const double trace = G.template cast<double>().squaredNorm() / static_cast<double>(G.cols());
  fu::FisherDamping damping;
  damping.relative = o.fisher_damping;
  const double lambda = damping.resolve(trace, start.num_parameters());
  Estimator fisher(start.num_parameters(), static_cast<float>(lambda));
  fisher.add_gradients(G);
  fisher.finalize();
  Preconditioner preconditioner{};
  if constexpr (std::is_same_v<Preconditioner, WoodburyPreconditioner>) {
    auto w = std::make_shared<fu::WoodburyFisher<float>>(start.num_parameters(), static_cast<float>(lambda));
    w->add_gradients(G);
    w->finalize();
    preconditioner.woodbury = std::move(w);
  }
  r.prepare_seconds = now_seconds() - t0;
  std::fprintf(stderr, "[%s] F_R from %zu retain sequences: %.1f s (lambda %.3g)\n", name.c_str(), chosen.size(), r.prepare_seconds, lambda);

  fu::NaturalGradientOptions no;
  no.learning_rate = 1e4;  // the trust region sets every step's length
  no.max_steps = static_cast<std::size_t>(o.max_steps);
  no.max_kl = o.trust_kl;
  no.seed = o.seed + 41;
  no.retain_weight = o.retain_anchor;
  no.retain_batch_size = static_cast<std::size_t>(o.retain_batch);
  fu::NaturalGradientUnlearning<Estimator, Preconditioner, Objective> u(no, std::move(objective), std::move(preconditioner));
  fu::NaturalGradientCallbacks<Model> cb;
  const double t1 = now_seconds();
  double best = std::numeric_limits<double>::infinity();
  cb.stop = [&](const Model& m, std::size_t step) {
    if ((step & (step - 1)) != 0 && step != static_cast<std::size_t>(o.max_steps)) return false;
    SearchPoint p = check(m);
    p.steps = step;
    p.failed = !(p.probe_perplexity <= target.probe_limit);
    p.reached = !p.failed && p.score <= target.score;
    p.seconds = now_seconds() - t1;
    r.points.push_back(p);
    std::fprintf(stderr, "[%s] step %zu: tuning exposure %.2f bits (target %.2f), probe ppl %.3f (limit %.3f)%s, %.0f s\n",
                 name.c_str(), step, p.score, target.score, p.probe_perplexity, target.probe_limit,
                 p.reached ? " reached" : (p.failed ? " FAILED (utility guard)" : ""), p.seconds);
    if (!p.failed && (p.reached || p.score < best)) {
      best = p.score;
      r.selected = r.points.size() - 1;
      auto q = m.parameters();
      r.parameters.assign(q.begin(), q.end());
    }
    return p.reached || p.failed;
  };
  fu::NaturalGradientResult res;
  try {
    Model work = start;
    res = u.unlearn_detailed(work, std::span<const Sample>(forget), std::span<const Sample>(retain), fisher, cb);
  } catch (const fu::Error& e) {
    r.notes = std::string("failed: ") + e.what();
  }
  r.reached = r.selected && r.points[*r.selected].reached;
  r.seconds = r.prepare_seconds + (r.selected ? r.points[*r.selected].seconds : now_seconds() - t1);
  if (r.notes.empty())
    r.notes = "stop: " + res.stop_reason + ", trust region hit " + std::to_string(res.trust_region_hits) + " times, lambda " +
              unlearn_lm::fmt_general(lambda);
  return r;
}

inline MethodRun run_named_method(const std::string& name, const Model& start, const std::vector<Sample>& forget,
                                  const std::vector<Sample>& retain, const Options& o, const SearchTarget& target,
                                  const std::function<SearchPoint(const Model&)>& check) {
  double tokens = 0;
  for (const auto& s : forget) tokens += static_cast<double>(s.tokens.size() - 1);
  const double c = tokens / static_cast<double>(forget.size());  // NPO's scale: the loss is a mean over c tokens
  if (name == "natural_woodbury")
    return run_method<WoodburyPreconditioner>(name, start, forget, retain, fu::NpoObjective(0.1, c), o, target, check);
  if (name == "natural_diagonal")
    return run_method<fu::NaturalGradient>(name, start, forget, retain, fu::NpoObjective(0.1, c), o, target, check);
  if (name == "npo") return run_method<fu::PlainGradient>(name, start, forget, retain, fu::NpoObjective(0.1, c), o, target, check);
  if (name == "adam") return run_method<fu::AdamPreconditioner>(name, start, forget, retain, fu::NpoObjective(0.1, c), o, target, check);
  if (name == "gradient_difference")
    return run_method<fu::PlainGradient>(name, start, forget, retain, fu::GradientAscentObjective{}, o, target, check);
  throw fu::InvalidArgument("unknown method '" + name + "'");
}

}  // namespace case_studies
