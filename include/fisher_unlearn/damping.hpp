// Damping for Fisher steps. (1) Spectrum-relative: λ = α·tr(F̂)/d, a fraction α of the mean eigenvalue of
// the undamped Fisher F̂ = (1/m)Σ ggᵀ: O(1) given the trace, no assumption about θ. (2) The search over a
// log grid of λ scored by a caller-supplied function (J_retain after the step), with ONE factorisation:
// only set_damping(λ) changes between candidates; |grid| × (one apply_power + one score evaluation).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/progress.hpp"

#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisher_unlearn {

// ---- spectrum-relative damping --------------------------------------------------------------------
// Why: the search below assumes θ is the full-data optimum (its score, J_retain after the step, is least
// for the null step whenever ∇J_retain(θ) ≠ 0, so it drifts to the largest λ of its grid on a model that
// is not at that optimum, e.g. a trained language model). A damping tied to the spectrum needs no such
// assumption: with α = 1e-2, λ sits two decades below the mean curvature, so it regularises the
// directions the m gradients did not see without flattening the ones they did. Chosen once per method.

/// An estimator that reports tr(F̂) of its undamped part F̂ (F = λI + F̂). Diagonal, Woodbury, dense and
/// block-diagonal estimators do, in O(d) or less after finalize().
template <class E>
concept HasUndampedTrace = requires(const E& e) {
  { e.undamped_trace() } -> std::convertible_to<double>;
};

/// λ = α·tr(F̂)/d. alpha > 0 (the documented default is 1e-2); tr(F̂) must be positive and finite
/// (it is 0 only when every gradient is zero: then no relative damping exists and an absolute one is
/// needed). Throws InvalidArgument / NumericalError with what to do.
inline double spectrum_relative_damping(double undamped_trace, std::size_t dimension, double alpha = 1e-2) {
  if (!(alpha > 0.0) || !std::isfinite(alpha))
    throw InvalidArgument("spectrum_relative_damping: alpha must be positive and finite (1e-2 is the default)");
  if (dimension == 0) throw InvalidArgument("spectrum_relative_damping: the dimension is 0");
  if (!std::isfinite(undamped_trace) || undamped_trace < 0.0)
    throw NonFiniteError("spectrum_relative_damping: tr(F) is negative, NaN or Inf; check the gradients");
  const double lambda = alpha * undamped_trace / static_cast<double>(dimension);
  if (!(lambda > 0.0) || !std::isfinite(lambda))
    throw NumericalError("spectrum_relative_damping: tr(F) is zero (every gradient the Fisher was built from is "
                         "zero, or alpha underflows); give an absolute damping instead");
  return lambda;
}

/// λ = α·tr(F̂)/d from a finalised estimator that reports its trace.
template <FisherEstimator Estimator>
  requires HasUndampedTrace<Estimator>
double spectrum_relative_damping(const Estimator& fisher, double alpha = 1e-2) {
  return spectrum_relative_damping(static_cast<double>(fisher.undamped_trace()), fisher.dimension(), alpha);
}

/// How an iterated unlearner damps its Fisher: relative (λ = alpha·tr(F̂)/d, the default) unless an
/// absolute value is given.
struct FisherDamping {
  double relative = 1e-2;  ///< α of λ = α·tr(F̂)/d (> 0)
  double absolute = 0.0;   ///< > 0: use this λ instead

  void validate(const std::string& who) const {
    if (!(absolute >= 0.0) || !std::isfinite(absolute))
      throw InvalidArgument(who + ": damping.absolute must be finite and >= 0 (0 = use damping.relative)");
    if (absolute == 0.0 && (!(relative > 0.0) || !std::isfinite(relative)))
      throw InvalidArgument(who + ": damping.relative (alpha) must be positive and finite; 1e-2 is the default");
  }
  /// The λ to use for a Fisher whose undamped part has trace `undamped_trace` in `dimension` parameters.
  double resolve(double undamped_trace, std::size_t dimension) const {
    return absolute > 0.0 ? absolute : spectrum_relative_damping(undamped_trace, dimension, relative);
  }
};

// ---- the damping search (right for convex models at the full-data optimum) -----------------------

/// n points spaced evenly in log10 from lo to hi inclusive (lo > 0, hi >= lo, n >= 1).
inline std::vector<double> log_grid(double lo, double hi, std::size_t n) {
  if (!(lo > 0.0) || !(hi >= lo) || !std::isfinite(hi) || n == 0)
    throw InvalidArgument("log_grid: need 0 < lo <= hi < inf and at least one point");
  std::vector<double> g(n);
  const double a = std::log10(lo), b = std::log10(hi);
  for (std::size_t i = 0; i < n; ++i)
    g[i] = n == 1 ? lo : std::pow(10.0, a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1));
  return g;
}

/// The rule, as FisherRemoval and FisherForgetting apply it:
///   for every λ in `grid` (absolute values, the same units as the damping option):
///     δ(λ) = the removal step computed with F_λ = F + (λ − λ₀)I   (set_damping, no refactorisation)
///     score(λ) = J_score(θ + δ(λ)),  J_score = the regularised objective on the score set
///   choose the λ of least score; ties go to the larger λ (the more conservative step).
/// Why J_retain: for a convex model the retrained optimum is θ*_R = argmin J_R, and near it
/// J_R(θ) − J_R(θ*_R) ≈ ½‖θ − θ*_R‖²_{H_R}; the candidate of least J_R is the one nearest the retrained
/// optimum in the Hessian norm. A candidate whose step is NaN/Inf or whose loss is NaN/Inf scores +∞,
/// so an exploding step (tiny λ, m ≈ d gradients) can never be chosen.
/// Why the score set defaults to the WHOLE retain set rather than a small held-out part: the signal
/// being measured, J_R(θ+δ) − J_R(θ), is second order in the removal step (∝ (k/(n−k))²), while the
/// sampling noise of a subset's J is first order in δ (∝ (k/(n−k))/√|subset|). For the removal of a few
/// points a held-out subset cannot see the difference. score_samples > 0 trades that accuracy for speed
/// (useful for large models, where each score is a forward pass over the subset).
struct DampingSearch {
  std::vector<double> grid = log_grid(1e-6, 1.0, 7);  ///< candidate λ values, all > 0
  std::size_t score_samples = 0;  ///< 0: score on the whole retain set; else a seeded subset of this size
  std::uint64_t seed = 0x5eed;    ///< seeds the score subset

  void validate() const {
    if (grid.empty()) throw InvalidArgument("DampingSearch: the grid is empty; give at least one damping value");
    for (double v : grid)
      if (!(v > 0.0) || !std::isfinite(v))
        throw InvalidArgument("DampingSearch: every grid value must be positive and finite (got " +
                              detail::format_number(v) + ")");
  }
};

struct DampingSearchResult {
  double damping = 0.0;         ///< the chosen λ
  std::size_t best_index = 0;   ///< its index in the grid
  std::vector<double> grid;     ///< the candidates, as given
  std::vector<double> scores;   ///< score(λ) per candidate; +∞ where the step or loss was not finite

  /// True when the choice is the grid's smallest or largest value (and the grid has more than one):
  /// the best λ may lie outside the grid. On a model that is not at the full-data optimum the largest
  /// value wins because the null step does (see spectrum_relative_damping).
  bool on_grid_edge() const {
    if (grid.size() < 2) return false;
    const auto [lo, hi] = edges();
    return best_index == lo || best_index == hi;
  }

  /// "λ=1e-06:J=inf λ=1e-05:J=0.512 ..." for a report's notes.
  std::string summary() const {
    std::string s = "damping search (score = J on the score set):";
    char buf[64];
    for (std::size_t i = 0; i < grid.size(); ++i) {
      std::snprintf(buf, sizeof buf, " %s%.3g:%.10g", i == best_index ? "*" : "", grid[i], scores[i]);
      s += buf;
    }
    if (on_grid_edge())
      s += best_index == edges().second
               ? " [chosen at the grid's LARGEST value: the search may be choosing the null step (model not at the "
                 "optimum); extend the grid or use the spectrum-relative damping]"
               : " [chosen at the grid's SMALLEST value: extend the grid downwards]";
    return s;
  }

 private:
  std::pair<std::size_t, std::size_t> edges() const {
    std::size_t lo = 0, hi = 0;
    for (std::size_t i = 1; i < grid.size(); ++i) {
      if (grid[i] < grid[lo]) lo = i;
      if (grid[i] > grid[hi]) hi = i;
    }
    return {lo, hi};
  }
};

namespace detail {

template <FisherEstimator Estimator, class Score>
DampingSearchResult search_damping_unguarded(Estimator& fisher, const DampingSearch& search, const Progress& progress,
                                             Score& score) {
  using Scalar = typename Estimator::Scalar;
  DampingSearchResult result;
  result.grid = search.grid;
  result.scores.assign(search.grid.size(), std::numeric_limits<double>::infinity());
  double best = std::numeric_limits<double>::infinity();
  bool found = false;
  // From the largest λ down, so that a tie keeps the more conservative step.
  for (std::size_t j = search.grid.size(); j-- > 0;) {
    progress.update("damping search", search.grid.size() - 1 - j, search.grid.size());
    fisher.set_damping(static_cast<Scalar>(search.grid[j]));
    double s = std::numeric_limits<double>::infinity();
    try {
      s = static_cast<double>(score(search.grid[j]));
    } catch (const NonFiniteError&) {
      s = std::numeric_limits<double>::infinity();
    }
    if (!std::isfinite(s)) s = std::numeric_limits<double>::infinity();
    result.scores[j] = s;
    if (s < best) {
      best = s;
      result.best_index = j;
      found = true;
    }
  }
  if (!found)
    throw NumericalError("search_damping: every damping candidate gave a non-finite step or loss; extend the grid "
                         "towards larger damping values");
  result.damping = search.grid[result.best_index];
  fisher.set_damping(static_cast<Scalar>(result.damping));
  return result;
}

}  // namespace detail

/// Sets each candidate damping on the (finalised) estimator, calls score(λ), and leaves the estimator
/// at the chosen λ. score may return NaN/Inf or throw NonFiniteError for a candidate that blew up; that
/// candidate scores +∞. Throws NumericalError if no candidate gives a finite score. `progress` is
/// updated as "damping search" before each candidate; on Cancelled (or any other exception) the
/// estimator's damping is restored to what it was before the call.
template <FisherEstimator Estimator, class Score>
DampingSearchResult search_damping(Estimator& fisher, const DampingSearch& search, const Progress& progress,
                                   Score&& score) {
  using Scalar = typename Estimator::Scalar;
  search.validate();
  const Scalar damping_before = fisher.damping();
  try {
    return detail::search_damping_unguarded(fisher, search, progress, score);
  } catch (...) {
    fisher.set_damping(damping_before);
    throw;
  }
}

template <FisherEstimator Estimator, class Score>
DampingSearchResult search_damping(Estimator& fisher, const DampingSearch& search, Score&& score) {
  return search_damping(fisher, search, Progress{}, score);
}

}  // namespace fisher_unlearn
