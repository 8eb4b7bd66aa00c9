// unlearn_lm protocol: one dataset under one seed — train (cached), retrain without the forget set,
// then every method's matched-exposure knob search on the TUNING canaries (same evaluation budget for
// every method), its selected point measured on the REPORTED canaries, and the repeated-deletion study.
#pragma once

#include "measure.hpp"
#include "registry.hpp"

#include "fisher_unlearn/matched_target.hpp"
#include "fisher_unlearn/retain_divergence.hpp"

#include <iostream>
#include <optional>

namespace unlearn_lm {

struct SearchPoint {
  double knob = 0;
  SelectionScore score;     ///< on the tuning canaries
  bool reached = false, failed = false;
  double seconds = 0;       ///< the method's time for this value (report.seconds)
  double check_seconds = 0; ///< the selection score's time
  /// Retain KL from the trained model (nats per position, mean over --kl-windows retain windows):
  /// measured (MeasuredRetainKl) and predicted by the method's F_R (½ΔᵀF_RΔ; NaN without one).
  /// Diagnostics, not charged as time and not used by the selection.
  double measured_kl = std::nan(""), predicted_kl = std::nan("");
  std::string notes;
};

struct MethodRun {
  std::string name, knob, description;
  Family family = Family::first_order;
  std::vector<SearchPoint> points;
  std::optional<std::size_t> selected;
  bool reached_on_tuning = false;
  bool within_tolerance = false;
  std::string search_notes;
  double prepare_seconds = 0;
  double seconds = 0;       ///< charged time: prepare + the selected run + the stopping checks it needed
  Evaluation after;
  fu::UnlearningReport report;
  std::string error;
};

struct DeletionRound {
  double knob = std::nan("");
  bool reached_on_round = false;
  double seconds = 0;
  double valid_perplexity = std::nan("");
  double exposure_forgotten_mean = std::nan("");  ///< sampled exposure, mean over every canary forgotten so far
  double exposure_forgotten_max = std::nan("");
  std::string error;
};

struct DeletionStudy {
  std::string method;
  Family family = Family::first_order;
  std::vector<DeletionRound> rounds;
};

struct SeedRun {
  std::uint64_t seed = 0;
  std::size_t train_windows = 0, forget_windows = 0, retain_windows = 0, valid_tokens = 0, train_bytes = 0;
  std::size_t num_parameters = 0;
  TrainingResult training, retraining;
  bool has_retrain = false;
  Evaluation before, retrained;
  SelectionScore before_score, retrained_score;  ///< tuning-canary score of the untouched and retrained models
  std::vector<MethodRun> methods;
  std::vector<DeletionStudy> deletion;
  std::vector<std::size_t> tuning, reported;
};

/// Runs one method's search and measures its selected point.
inline MethodRun run_method(Method& method, const Model& start, const Dataset& ds, const Options& opt,
                            const ForgetRequest& request, const std::vector<std::size_t>& tuning,
                            const std::vector<std::size_t>& measured, const MiaReference& mia, double start_probe) {
  MethodRun r;
  r.name = method.name;
  r.knob = method.knob;
  r.family = method.family;
  r.description = method.description;
  try {
    std::cout << "[unlearn] " << method.name << ": prepare ..." << std::flush;
    r.prepare_seconds = method.prepare(start, ds, request);
    std::cout << " " << fmt(r.prepare_seconds, 2) << " s\n";
    std::vector<std::vector<float>> params;
    std::vector<fu::UnlearningReport> reports;
    std::optional<fu::MeasuredRetainKl<Model>> retain_kl;
    if (opt.kl_windows > 0) {
      std::vector<std::vector<Token>> seqs;
      for (std::size_t i = 0; i < ds.retain.size() && seqs.size() < static_cast<std::size_t>(opt.kl_windows); ++i)
        seqs.push_back(ds.retain[i].tokens);
      retain_kl.emplace(start, std::move(seqs));
    }
    // Scores a model the method produced with knob x (the TUNING canaries only) and records the point.
    auto record = [&](const Model& model, double x, double seconds, const fu::UnlearningReport& rep,
                      const std::string& error) {
      SearchPoint p;
      p.knob = x;
      p.seconds = seconds;
      if (!error.empty()) {
        p.failed = true;
        p.notes = "failed: " + error;
        p.score.mean = p.score.max = std::numeric_limits<double>::infinity();
      } else {
        const double t0 = now_seconds();
        p.score = selection_score(model, ds, opt, tuning);
        p.check_seconds = now_seconds() - t0;
        if (retain_kl) p.measured_kl = retain_kl->measure(model);
        p.predicted_kl = method.predicted_retain_kl(start, model);
        p.reached = p.score.mean <= opt.exposure_target && p.score.max <= opt.exposure_ceiling;
        if (!std::isfinite(p.score.probe_perplexity) || p.score.probe_perplexity > opt.utility_guard * start_probe) {
          p.failed = true;
          p.notes = "utility guard: probe perplexity " + fmt(p.score.probe_perplexity) + " > " + fmt(opt.utility_guard, 2) +
                    " x the trained model's " + fmt(start_probe);
        }
        if (!rep.notes.empty()) p.notes += (p.notes.empty() ? "" : "; ") + rep.notes;
      }
      fu::KnobEvaluation e;
      e.score = p.score.mean;
      e.reached = p.reached && !p.failed;
      e.failed = p.failed;
      e.notes = p.notes;
      std::cout << "[unlearn] " << method.name << " " << method.knob << "=" << fmt_general(x) << ": tuning exposure mean "
                << fmt(p.score.mean, 2) << " max " << fmt(p.score.max, 2) << ", probe ppl " << fmt(p.score.probe_perplexity)
                << ", retain KL measured " << fmt_general(p.measured_kl) << " predicted " << fmt_general(p.predicted_kl)
                << (p.failed ? " [failed: " + p.notes + "]" : "") << " (" << fmt(p.seconds, 2) << " s + check "
                << fmt(p.check_seconds, 2) << " s)\n";
      r.points.push_back(p);
      params.emplace_back(model.parameters().begin(), model.parameters().end());
      reports.push_back(rep);
      return e;
    };
    auto evaluate = [&](double x) {
      if (method.is_integer_knob) x = std::round(x);
      Model model = start;
      model.set_execution(start.execution());
      fu::UnlearningReport rep;
      std::string error;
      const double t0 = now_seconds();
      try {
        rep = method.apply(model, x);
      } catch (const fu::Error& err) {
        error = err.what();
      }
      return record(model, x, error.empty() && rep.seconds > 0 ? rep.seconds : now_seconds() - t0, rep, error);
    };
    fu::MatchedTargetOptions so = method.search;
    so.target = opt.exposure_target;
    so.tolerance = opt.target_tolerance;
    so.budget = static_cast<std::size_t>(opt.search_budget);
    fu::MatchedTargetResult res;
    if (!method.continuation) {
      res = fu::find_matched_target(evaluate, so);
    } else {
      // Step-count knob: the continuation is ONE run, checked at steps low, low·g, low·g², ... (each
      // check is one evaluation of the budget), stopped at the first check that reaches the target or
      // fails; then bisection between the last check that did not reach and the first that did, each
      // midpoint a fresh run. The same budget, target, tolerance and selection rule as
      // find_matched_target.
      std::vector<std::size_t> schedule;
      for (double x = so.low; x <= so.high + 0.5; x *= so.growth) {
        const auto v = static_cast<std::size_t>(std::llround(x));
        // --check-spacing s: fill the gaps of the geometric schedule so that no two checks are more
        // than s steps apart (the knob's exposure is not monotone in the steps: a sparse schedule can
        // skip the steps where it first meets the target)
        if (opt.check_spacing > 0)
          while (!schedule.empty() && v > schedule.back() + static_cast<std::size_t>(opt.check_spacing))
            schedule.push_back(schedule.back() + static_cast<std::size_t>(opt.check_spacing));
        if (schedule.empty() || v > schedule.back()) schedule.push_back(v);
      }
      Model model = start;
      model.set_execution(start.execution());
      double check_total = 0;
      std::optional<fu::KnobEvaluation> last;
      try {
        method.run_with_checks(model, schedule.back(), [&](const Model& m, std::size_t step, double elapsed) {
          if (std::find(schedule.begin(), schedule.end(), step) == schedule.end()) {
            if (opt.trace_steps) {  // diagnostic only: not a search point, its time not charged as step time
              const double t0 = now_seconds();
              const SelectionScore s = selection_score(m, ds, opt, tuning);
              std::cout << "[trace] " << method.name << " step " << step << ": tuning exposure mean " << fmt(s.mean, 2) << " max "
                        << fmt(s.max, 2) << ", probe ppl " << fmt(s.probe_perplexity) << "\n";
              check_total += now_seconds() - t0;
            }
            return false;
          }
          fu::UnlearningReport rep;
          rep.iterations = step;
          const double t0 = now_seconds();
          last = record(m, static_cast<double>(step), elapsed - check_total, rep, {});
          check_total += now_seconds() - t0;  // everything the check and its diagnostics took (not step time)
          return last->reached || last->failed || r.points.size() >= so.budget;
        });
      } catch (const fu::Error& err) {
        // the run rolled back: record the failure at the step it would have checked next
        record(start, static_cast<double>(schedule[std::min(r.points.size(), schedule.size() - 1)]), 0.0, {}, err.what());
      }
      std::optional<double> bad, good;
      for (const auto& p : r.points) {
        const bool up = p.failed || p.reached;
        if (up && (!good || p.knob < *good)) good = p.knob;
        if (!up && (!bad || p.knob > *bad)) bad = p.knob;
      }
      auto close_enough = [&](const SearchPoint& p) { return p.reached && !p.failed && p.score.mean >= so.target - so.tolerance; };
      std::string why = good ? "continuation reached or failed" : "continuation ended without reaching";
      while (good && bad && r.points.size() < so.budget && *good - *bad > 1.0) {
        bool done = false;
        for (const auto& p : r.points)
          if (p.knob == *good && close_enough(p)) done = true;
        if (done) {
          why = "within tolerance";
          break;
        }
        const double x = std::floor((*bad + *good) / 2.0);
        const auto e = evaluate(x);
        (e.reached || e.failed ? good : bad) = x;
      }
      // selection: the weakest reached point, else the least score (as find_matched_target)
      for (std::size_t i = 0; i < r.points.size(); ++i) {
        const auto& p = r.points[i];
        if (p.reached && !p.failed && (!res.selected || p.knob < r.points[*res.selected].knob)) res.selected = i;
      }
      res.reached = res.selected.has_value();
      if (!res.reached)
        for (std::size_t i = 0; i < r.points.size(); ++i) {
          const auto& p = r.points[i];
          if (p.failed) continue;
          if (!res.selected || p.score.mean < r.points[*res.selected].score.mean) res.selected = i;
        }
      res.within_tolerance = res.reached && close_enough(r.points[*res.selected]);
      res.notes = why + " (" + std::to_string(r.points.size()) + " of " + std::to_string(so.budget) + " evaluations)";
    }
    r.search_notes = res.notes;
    r.reached_on_tuning = res.reached;
    r.within_tolerance = res.within_tolerance;
    if (!res.selected) throw fu::NumericalError("every knob value failed: " + r.points.back().notes);
    r.selected = res.selected;
    const std::size_t s = *res.selected;
    // Charged time: prepare + the selected run + the stopping checks a single run would have made
    // (every evaluated knob value up to the selected one on a continuation).
    double checks = 0;
    for (const auto& p : r.points)
      if (p.knob <= r.points[s].knob) checks += p.check_seconds;
    r.seconds = r.prepare_seconds + r.points[s].seconds + checks;
    r.report = reports[s];
    Model model = start;
    std::copy(params[s].begin(), params[s].end(), model.parameters().begin());
    r.after = measure_model(model, ds, opt, measured, mia, method.name + " (" + method.knob + "=" + fmt_general(r.points[s].knob) + ")");
  } catch (const fu::Error& e) {
    r.error = e.what();
    std::cout << "[unlearn] " << method.name << " FAILED: " << e.what() << "\n";
  }
  return r;
}

}  // namespace unlearn_lm

namespace unlearn_lm {

/// The repeated-deletion study: round r forgets deletion group r from the model the previous round
/// produced; the knob is searched per round on that round's group (these canaries are both tuned on
/// and measured: the study measures what successive requests cost, not the selection). After each
/// round: validation perplexity and the sampled exposure of every canary forgotten so far.
inline DeletionStudy run_deletion(const std::string& name, const Model& trained, const Dataset& ds, const Options& opt) {
  DeletionStudy st;
  st.method = name;
  auto method = make_method(opt, name);
  st.family = method->family;
  Model model = trained;
  model.set_execution(trained.execution());
  std::vector<std::size_t> forgotten;
  std::size_t removed_windows = 0;
  for (long long round = 0; round < opt.deletion_rounds; ++round) {
    DeletionRound dr;
    const auto group = ds.indices(CanaryRole::deletion, static_cast<std::size_t>(round));
    ForgetRequest req;
    req.canaries = group;
    req.windows = ds.windows_of(group);
    removed_windows += req.windows.size();
    req.retain_total = ds.windows.size() - removed_windows;
    const double start_probe = fu::evaluate_language_model(model, std::span<const Token>(ds.valid), 0, 64).perplexity;
    try {
      const double prep = method->prepare(model, ds, req);
      std::vector<float> best;
      double best_seconds = 0;
      auto evaluate = [&](double x) {
        if (method->is_integer_knob) x = std::round(x);
        Model m = model;
        m.set_execution(model.execution());
        fu::KnobEvaluation e;
        try {
          const auto rep = method->apply(m, x);
          const auto s = selection_score(m, ds, opt, group);
          e.score = s.mean;
          e.reached = s.mean <= opt.exposure_target && s.max <= opt.exposure_ceiling;
          e.failed = !std::isfinite(s.probe_perplexity) || s.probe_perplexity > opt.utility_guard * start_probe;
          if (e.reached && !e.failed && (best.empty() || x < dr.knob)) {
            best.assign(m.parameters().begin(), m.parameters().end());
            dr.knob = x;
            best_seconds = rep.seconds;
          }
        } catch (const fu::Error& err) {
          e.failed = true;
          e.notes = err.what();
        }
        return e;
      };
      fu::MatchedTargetOptions so = method->search;
      so.target = opt.exposure_target;
      so.tolerance = opt.target_tolerance;
      so.budget = static_cast<std::size_t>(opt.search_budget);
      const auto res = fu::find_matched_target(evaluate, so);
      dr.reached_on_round = res.reached;
      if (best.empty()) {
        dr.error = "no knob value reached the target within the guard: " + res.notes + "; the model is left as it was";
      } else {
        std::copy(best.begin(), best.end(), model.parameters().begin());
        dr.seconds = prep + best_seconds;
      }
    } catch (const fu::Error& e) {
      dr.error = e.what();
    }
    forgotten.insert(forgotten.end(), group.begin(), group.end());
    const auto s = selection_score(model, ds, opt, forgotten);
    dr.exposure_forgotten_mean = s.mean;
    dr.exposure_forgotten_max = s.max;
    dr.valid_perplexity = fu::evaluate_language_model(model, std::span<const Token>(ds.valid)).perplexity;
    std::cout << "[deletion] " << name << " round " << round + 1 << ": knob " << fmt_general(dr.knob) << ", exposure of "
              << forgotten.size() << " forgotten canaries mean " << fmt(dr.exposure_forgotten_mean, 2) << " max "
              << fmt(dr.exposure_forgotten_max, 2) << ", valid ppl " << fmt(dr.valid_perplexity)
              << (dr.error.empty() ? "" : " (" + dr.error + ")") << "\n";
    st.rounds.push_back(dr);
  }
  return st;
}

/// One dataset under one seed, every method.
inline SeedRun run_seed(const Options& opt, const Dataset& ds, const std::vector<std::string>& method_names, bool deletion) {
  SeedRun s;
  s.seed = ds.seed;
  s.tuning = ds.indices(CanaryRole::tuning);
  s.reported = ds.indices(CanaryRole::reported);
  s.train_windows = ds.windows.size();
  s.forget_windows = ds.forget.size();
  s.retain_windows = ds.retain_all.size();
  s.valid_tokens = ds.valid.size();
  s.train_bytes = ds.train_bytes;
  std::cout << "[data] " << ds.corpus << " seed " << ds.seed << ": " << ds.train_bytes << " training bytes ("
            << ds.windows.size() << " windows), " << ds.valid.size() << " validation bytes; " << ds.canaries.size()
            << " canaries (" << s.tuning.size() << " tuning, " << s.reported.size() << " reported) in "
            << ds.forget.size() << " forget windows\n";
  const auto cfg = model_config(opt, ds.seed);
  const auto to = training_options(opt, ds.seed);
  Model model(cfg);
  model.set_execution({static_cast<std::size_t>(opt.threads), 8});
  s.num_parameters = model.num_parameters();
  s.training = train_or_load(model, ds.windows, to, opt.cache_dir, ds.corpus + " seed " + std::to_string(ds.seed) + " with canaries",
                             static_cast<std::size_t>(opt.checkpoint_every), opt.resume);
  MiaReference mia = make_mia_reference(opt, ds);
  std::optional<Model> retrained;
  if (opt.retrain) {
    retrained.emplace(cfg);
    retrained->set_execution({static_cast<std::size_t>(opt.threads), 8});
    s.retraining = train_or_load(*retrained, ds.retain_all, to, opt.cache_dir,
                                 ds.corpus + " seed " + std::to_string(ds.seed) + " retrained without the canaries",
                                 static_cast<std::size_t>(opt.checkpoint_every), opt.resume);
    calibrate_mia(mia, *retrained, opt, ds);
    s.has_retrain = true;
  }
  std::vector<std::size_t> measured = s.reported;
  measured.insert(measured.end(), s.tuning.begin(), s.tuning.end());
  s.before = measure_model(model, ds, opt, measured, mia, "before unlearning");
  s.before_score = selection_score(model, ds, opt, s.tuning);
  if (retrained) {
    s.retrained = measure_model(*retrained, ds, opt, measured, mia, "retrained from scratch");
    s.retrained_score = selection_score(*retrained, ds, opt, s.tuning);
  }
  ForgetRequest request;
  request.canaries = measured;
  request.windows = ds.forget;
  request.retain_total = ds.retain_all.size();
  for (const auto& name : method_names) {
    auto method = make_method(opt, name);
    s.methods.push_back(run_method(*method, model, ds, opt, request, s.tuning, measured, mia, s.before_score.probe_perplexity));
  }
  if (deletion && opt.deletion_rounds > 0)
    for (const auto& name : method_names) s.deletion.push_back(run_deletion(name, model, ds, opt));
  return s;
}

}  // namespace unlearn_lm
