// Matched-target knob search: the weakest value of a method's strength knob x ∈ [low, high] whose
// measured score s(x) (e.g. mean exposure in bits, non-increasing in x) reaches s ≤ target, found by a
// geometric continuation from `start` followed by bisection (in log x when log_scale), within a fixed
// budget of evaluations. Cost: at most `budget` calls of the caller's evaluation; nothing else.
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace fisher_unlearn {

/// What one evaluation of the knob produced. `reached` is the caller's full criterion (it may add
/// conditions to score ≤ target, e.g. a bound on the largest exposure); `failed` marks a point that
/// could not be used (a diverged step, a utility guard tripped): the search treats it as too strong.
struct KnobEvaluation {
  double score = std::numeric_limits<double>::quiet_NaN();
  bool reached = false;
  bool failed = false;
  std::string notes;
};

struct KnobPoint {
  double knob = 0.0;
  KnobEvaluation evaluation;
};

struct MatchedTargetOptions {
  double low = 1e-4;             ///< weakest knob value allowed
  double high = 1.0;             ///< strongest knob value allowed
  std::optional<double> start;   ///< first value tried (default: low)
  double growth = 10.0;          ///< continuation factor (log scale) or step (linear) towards `high`
  bool log_scale = true;         ///< bisect in log x (x > 0) or in x
  double target = 2.5;           ///< the score to reach from above (for the tolerance test)
  double tolerance = 0.25;       ///< stop once a reached point has score ≥ target − tolerance
  std::size_t budget = 8;        ///< evaluations, all phases together
  double min_relative_gap = 1e-3;  ///< stop bisecting when the bracket is narrower than this (relative)
};

struct MatchedTargetResult {
  bool reached = false;                  ///< some evaluated point reached the target (and did not fail)
  std::optional<std::size_t> selected;   ///< index in `points`: weakest reached point, else least score
  bool within_tolerance = false;         ///< the selected point reached with score ≥ target − tolerance
  std::vector<KnobPoint> points;         ///< every evaluation, in the order made (a frontier, for free)
  std::string notes;                     ///< why the search stopped

  const KnobPoint& best() const {
    if (!selected) throw StateError("the matched-target search has no usable point: every evaluation failed");
    return points[*selected];
  }
};

/// Searches the knob under the monotone assumption (stronger knob, lower score). Phases:
///  1. continuation from `start` by ×growth (or +growth) towards `high` until a point reaches the target
///     (or fails: a failed point bounds the search from above like a reached one);
///     if `start` itself reaches, continuation goes down towards `low` instead until a point does not;
///  2. bisection of the bracket [strongest not-reached, weakest reached-or-failed], until a reached point
///     lies within the tolerance below the target, the budget is spent or the bracket is too narrow.
/// Non-monotone scores are tolerated (the bracket may then miss a better point; the result stays a
/// value that was measured). The selection uses only the evaluations: it cannot peek elsewhere.
/// Throws InvalidArgument for an empty/inverted range, a non-positive bound with log_scale, growth ≤ 1
/// (log scale) or ≤ 0 (linear), a zero budget or a NaN target/tolerance.
template <class Evaluate>
MatchedTargetResult find_matched_target(Evaluate&& evaluate, const MatchedTargetOptions& o) {
  auto finite = [](double v) { return std::isfinite(v); };
  if (!finite(o.low) || !finite(o.high) || !(o.low <= o.high))
    throw InvalidArgument("find_matched_target: the knob range [low, high] must be finite with low <= high");
  if (o.log_scale && !(o.low > 0.0))
    throw InvalidArgument("find_matched_target: a log-scale knob needs low > 0; use log_scale = false otherwise");
  if (o.log_scale ? !(o.growth > 1.0) : !(o.growth > 0.0))
    throw InvalidArgument("find_matched_target: growth must be > 1 on a log scale, > 0 on a linear one");
  if (o.budget == 0) throw InvalidArgument("find_matched_target: the evaluation budget must be at least 1");
  if (!finite(o.target) || !(o.tolerance >= 0.0) || !finite(o.tolerance))
    throw InvalidArgument("find_matched_target: target and tolerance must be finite, tolerance >= 0");
  const double start = o.start.value_or(o.low);
  if (!finite(start) || start < o.low || start > o.high)
    throw InvalidArgument("find_matched_target: start must lie in [low, high]");

  MatchedTargetResult r;
  auto run = [&](double x) -> const KnobEvaluation& {
    KnobEvaluation e = evaluate(x);
    if (e.failed) e.reached = false;
    r.points.push_back({x, std::move(e)});
    return r.points.back().evaluation;
  };
  auto stronger = [&](double x) { return std::min(o.high, o.log_scale ? x * o.growth : x + o.growth); };
  auto weaker = [&](double x) { return std::max(o.low, o.log_scale ? x / o.growth : x - o.growth); };
  auto middle = [&](double a, double b) { return o.log_scale ? std::sqrt(a * b) : 0.5 * (a + b); };
  auto close_enough = [&](const KnobEvaluation& e) { return e.reached && e.score >= o.target - o.tolerance; };

  // bad: strongest knob known NOT to reach; good: weakest knob known to reach or fail.
  std::optional<double> bad, good;
  std::string why;
  double x = start;
  const KnobEvaluation& first = run(x);
  if (first.reached || first.failed) {
    good = x;
    while (r.points.size() < o.budget && x > o.low && !close_enough(r.points.back().evaluation)) {
      x = weaker(x);
      const KnobEvaluation& e = run(x);
      if (e.reached || e.failed) {
        good = x;
      } else {
        bad = x;
        break;
      }
    }
    if (!bad) why = close_enough(r.points.back().evaluation) ? "within tolerance" : "the weakest value tried already reaches";
  } else {
    bad = x;
    while (r.points.size() < o.budget && x < o.high) {
      x = stronger(x);
      const KnobEvaluation& e = run(x);
      if (e.reached || e.failed) {
        good = x;
        break;
      }
      bad = x;
    }
    if (!good) why = x >= o.high ? "the strongest value allowed does not reach the target" : "budget spent in the continuation";
  }
  if (bad && good) {
    while (true) {
      const auto& last = r.points.back().evaluation;
      if (close_enough(last) && r.points.back().knob == *good) {
        why = "within tolerance";
        break;
      }
      if (r.points.size() >= o.budget) {
        why = "budget spent";
        break;
      }
      const double gap = o.log_scale ? std::log(*good / *bad) : (*good - *bad) / std::max(1.0, std::abs(*good));
      if (!(gap > o.min_relative_gap)) {
        why = "bracket narrower than min_relative_gap";
        break;
      }
      x = middle(*bad, *good);
      const KnobEvaluation& e = run(x);
      (e.reached || e.failed ? good : bad) = x;
    }
  }
  // Selection: the weakest reached point; else the usable point of least score.
  for (std::size_t i = 0; i < r.points.size(); ++i) {
    const auto& p = r.points[i];
    if (p.evaluation.reached && (!r.selected || p.knob < r.points[*r.selected].knob)) r.selected = i;
  }
  r.reached = r.selected.has_value();
  if (!r.reached)
    for (std::size_t i = 0; i < r.points.size(); ++i) {
      const auto& p = r.points[i];
      if (p.evaluation.failed || std::isnan(p.evaluation.score)) continue;
      if (!r.selected || p.evaluation.score < r.points[*r.selected].evaluation.score) r.selected = i;
    }
  r.within_tolerance = r.reached && close_enough(r.points[*r.selected].evaluation);
  r.notes = why + " (" + std::to_string(r.points.size()) + " of " + std::to_string(o.budget) + " evaluations)";
  return r;
}

}  // namespace fisher_unlearn
