// case_studies unlearning phase: every method is NaturalGradientUnlearning (natural_gradient.hpp) on the
// deleted people's forget samples (--forget-scope: the loss on their addresses, their trailers or the
// whole entries) with the same retain-KL trust region per step, the same retain anchor and the same step
// budget; only the preconditioner (or, for gradient difference, the objective) differs.
// The trust region's metric is F_R of --trust-metric (K-FAC by default, per-token scaled; or diagonal)
// from m retain sequences, for every method.
// The knob is the number of steps, searched by continuation (checks after 1, 2, 4, … steps, one run):
// the first check whose tuning score (mean address exposure of the TUNING people among the candidates)
// is ≤ the retrained model's + margin, with probe perplexity ≤ guard × the trained model's, is selected.
#pragma once

#include "measure.hpp"

#include "fisher_unlearn/fisher/any.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/kfac.hpp"
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
  double prepare_seconds = 0;            ///< F_R (every method: it is the trust region's metric), and P if another
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
  if (m == "natural_kfac") return "NPO (beta 0.1) + retain anchor, natural gradient (K-FAC F_R, per-token scale)^-1 g";
  if (m == "natural_woodbury") return "NPO (beta 0.1) + retain anchor, natural gradient (Woodbury F_R, float, empirical)^-1 g";
  if (m == "natural_diagonal") return "NPO (beta 0.1) + retain anchor, natural gradient (diagonal F_R)^-1 g";
  if (m == "npo") return "NPO (beta 0.1) + retain anchor, plain gradient";
  if (m == "adam") return "NPO (beta 0.1) + retain anchor, Adam";
  if (m == "gradient_difference") return "gradient ascent on the forget samples + retain anchor, plain gradient";
  return m;
}

/// A Fisher of its own as the preconditioner, out = P⁻¹g, while the trust region's metric stays the
/// unlearner's F_R (--trust-metric): natural_X where X is not the metric. Why the metric is not a
/// low-rank F_R: with m ≪ d the forget gradient lies almost entirely outside the span of the m retain
/// gradients, where the Woodbury F_R has curvature λ only, so ½δᵀF_Rδ grossly underestimates the
/// damage of a step (measured: docs/case_studies.md).
struct FisherPreconditioner {
  static constexpr bool uses_fisher = false;
  std::shared_ptr<const fu::AnyFisher<float>> fisher;
  std::string label = "natural_gradient";
  std::string name() const { return label; }
  void reset(std::size_t) {}
  template <class M, class Estimator>
  void direction(const fu::PreconditionerContext<M, Estimator>&, const fu::Vector<float>& g, fu::Vector<float>& out) const {
    out.resize(g.size());
    fisher->apply_power(-1.0, g, out);
  }
};

/// F_R of `kind` from the `chosen` retain sequences, empirical, per-token scaled (collect.hpp's loss
/// scale for flat gradients; the LinearLayerModel's √wₜ seeding for K-FAC), λ = α·tr(F̂)/d.
///   kfac: Kronecker-factored per linear layer of the trainable blocks (+ a diagonal for the norms);
///   diagonal: Σgᵢ²/m per coordinate; woodbury: λI + (1/m)Σgᵢgᵢᵀ (float).
inline fu::AnyFisher<float> build_fisher(const std::string& kind, const Model& start, std::span<const Sample> chosen,
                                         const Options& o) {
  fu::GradientCollection gc;
  gc.kind = fu::FisherKind::empirical;
  gc.seed = o.seed + 23;
  fu::FisherDamping damping;
  damping.relative = o.fisher_damping;
  const std::size_t d = start.num_parameters();
  if (kind == "kfac") {
    fu::KfacFisher<float> f(start, 1.0f);
    f.set_num_threads(static_cast<std::size_t>(o.threads));  // the same bits for every thread count
    f.accumulate(start, chosen, gc);
    f.finalize();
    f.set_damping(static_cast<float>(damping.resolve(f.undamped_trace(), d)));
    return fu::AnyFisher<float>(std::move(f));
  }
  const auto G = fu::collect_gradients(start, chosen, gc);
  const double trace = G.template cast<double>().squaredNorm() / static_cast<double>(G.cols());
  const auto lambda = static_cast<float>(damping.resolve(trace, d));
  if (kind == "diagonal") {
    fu::DiagonalFisher<float> f(d, lambda);
    f.add_gradients(G);
    f.finalize();
    return fu::AnyFisher<float>(std::move(f), trace);
  }
  if (kind == "woodbury") {
    fu::WoodburyFisher<float> f(d, lambda);
    f.add_gradients(G);
    f.finalize();
    return fu::AnyFisher<float>(std::move(f), trace);
  }
  throw fu::InvalidArgument("unknown F_R estimator '" + kind + "'; choose kfac, diagonal or woodbury");
}

/// The preconditioner's Fisher kind of a natural_X method ("" for the others).
inline std::string natural_kind(const std::string& method) {
  if (method.rfind("natural_", 0) != 0) return "";
  return method.substr(8);
}

/// F_R of --trust-metric from m retain sequences for every method: the trust region's metric, and the
/// preconditioner of natural_<metric>; a natural_X method with another X builds its own P as well.
template <class Preconditioner, class Objective>
MethodRun run_method(const std::string& name, const Model& start, const std::vector<Sample>& forget, const std::vector<Sample>& retain,
                     Objective objective, const Options& o, const SearchTarget& target,
                     const std::function<SearchPoint(const Model&)>& check) {
  using Estimator = fu::AnyFisher<float>;
  MethodRun r;
  r.name = name;
  r.description = method_description(name) + "; trust region on F_R " + o.trust_metric;
  r.family = (name.rfind("natural", 0) == 0) ? "second_order" : "first_order";
  const double t0 = now_seconds();
  const auto chosen = fu::detail::subsample(std::span<const Sample>(retain), static_cast<std::size_t>(o.fisher_samples), o.seed + 29);
  Estimator fisher = build_fisher(o.trust_metric, start, std::span<const Sample>(chosen), o);
  const double lambda = fisher.damping();
  Preconditioner preconditioner{};
  if constexpr (std::is_same_v<Preconditioner, FisherPreconditioner>) {
    preconditioner.fisher = std::make_shared<const Estimator>(build_fisher(natural_kind(name), start, std::span<const Sample>(chosen), o));
    preconditioner.label = "natural_gradient_" + natural_kind(name);
  }
  r.prepare_seconds = now_seconds() - t0;
  std::fprintf(stderr, "[%s] F_R (%s) from %zu retain sequences: %.1f s (lambda %.3g)\n", name.c_str(), o.trust_metric.c_str(),
               chosen.size(), r.prepare_seconds, lambda);

  fu::NaturalGradientOptions no;
  no.learning_rate = 1e4;  // the trust region sets every step's length
  no.max_steps = static_cast<std::size_t>(o.max_steps);
  no.max_kl = o.trust_kl;
  no.seed = o.seed + 41;
  no.retain_weight = o.retain_anchor;
  no.retain_batch_size = static_cast<std::size_t>(o.retain_batch);
  fu::NaturalGradientUnlearning<Estimator, Preconditioner, Objective> u(
      no, std::move(objective), std::move(preconditioner),
      [](std::size_t, float) -> Estimator { throw fu::StateError("F_R is built before unlearning (build_fisher)"); });
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

/// NPO's likelihood scale c: the forget loss of a sample is the mean over its scored tokens
/// (weights 1/n, or the mean over all targets without weights), so c = the mean number of scored tokens.
inline double scored_tokens_per_sample(const std::vector<Sample>& forget) {
  double tokens = 0;
  for (const auto& s : forget) {
    if (s.weights.empty()) {
      tokens += static_cast<double>(s.tokens.size() - 1);
    } else {
      for (float w : s.weights) tokens += w > 0.0f ? 1.0 : 0.0;
    }
  }
  return tokens / static_cast<double>(forget.size());
}

inline MethodRun run_named_method(const std::string& name, const Model& start, const std::vector<Sample>& forget,
                                  const std::vector<Sample>& retain, const Options& o, const SearchTarget& target,
                                  const std::function<SearchPoint(const Model&)>& check) {
  const double c = scored_tokens_per_sample(forget);
  const fu::NpoObjective npo(0.1, c);
  if (name.rfind("natural_", 0) == 0) {
    if (natural_kind(name) == o.trust_metric)
      return run_method<fu::NaturalGradient>(name, start, forget, retain, npo, o, target, check);
    return run_method<FisherPreconditioner>(name, start, forget, retain, npo, o, target, check);
  }
  if (name == "npo") return run_method<fu::PlainGradient>(name, start, forget, retain, npo, o, target, check);
  if (name == "adam") return run_method<fu::AdamPreconditioner>(name, start, forget, retain, npo, o, target, check);
  if (name == "gradient_difference")
    return run_method<fu::PlainGradient>(name, start, forget, retain, fu::GradientAscentObjective{}, o, target, check);
  throw fu::InvalidArgument("unknown method '" + name + "'");
}

}  // namespace case_studies
