// NewtonRemoval: the certified-removal step of Guo et al. 2020 with the exact retain-set Hessian,
//   θ' = θ − H_R⁻¹ ∇J_R(θ),   H_R = ∇²J_R(θ) = (1/(n−k)) Σ_{retain} ∇²loss + λI   (solved by Cholesky in double),
// optionally iterated (Newton's method on J_R) to convergence. Cost per step: O((n−k) d²) to form H_R
// (or d Hessian-vector products), O(d³) to factorise; memory d² doubles.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/report.hpp"
#include "fisher_unlearn/training.hpp"

#include <Eigen/Cholesky>

#include <cmath>
#include <span>
#include <string>

namespace fisher_unlearn {

struct NewtonRemovalOptions {
  /// 1 = the one-step certified-removal update; more = Newton's method on J_R, which converges to
  /// the retrained optimum argmin J_R (quadratically, for a strictly convex model).
  std::size_t max_iterations = 1;
  /// With max_iterations > 1: stop once ‖∇J_R(θ)‖₂ ≤ gradient_tolerance.
  double gradient_tolerance = 1e-12;
  /// Added to the Hessian's diagonal (>= 0). 0 gives the exact step; a positive value keeps the
  /// solve defined for a model that is not strictly convex, at the price of exactness.
  double damping = 0.0;
};

/// Why −H_R⁻¹∇J_R(θ) and not Guo et al.'s θ + H_R⁻¹Δ with Δ the removed points' gradient: with n
/// training points, k of them forgotten, and θ the full-data optimum, n∇J_D = (n−k)∇J_R + k∇J_F = 0,
/// so −∇J_R(θ) = (k/(n−k))∇J_F(θ) and the two are the same step. Using ∇J_R also corrects whatever
/// optimisation error θ carried, and makes iterating the step plain Newton on J_R.
/// Assumes forget ∪ retain is the training set the model was fitted to.
class NewtonRemoval {
 public:
  NewtonRemoval() = default;
  explicit NewtonRemoval(NewtonRemovalOptions options) : options_(options) {
    if (options_.max_iterations == 0)
      throw InvalidArgument("NewtonRemoval: max_iterations must be at least 1");
    if (!(options_.damping >= 0.0) || !std::isfinite(options_.damping))
      throw InvalidArgument("NewtonRemoval: damping must be finite and >= 0 (0 = the exact Hessian)");
    if (!(options_.gradient_tolerance >= 0.0))
      throw InvalidArgument("NewtonRemoval: gradient_tolerance must be >= 0");
  }

  std::string name() const { return options_.max_iterations == 1 ? "newton_removal" : "newton_removal_iterated"; }
  const NewtonRemovalOptions& options() const { return options_; }

  template <TwiceDifferentiableModel M>
  UnlearningReport unlearn(M& model, std::span<const typename M::Sample> forget,
                           std::span<const typename M::Sample> retain) const {
    using Scalar = typename M::Scalar;
    const detail::Stopwatch clock;
    detail::require_unlearning_sets(model, forget, retain, name());
    UnlearningReport r = detail::begin_report(model, forget, retain, name());
    const Vector<Scalar> theta_before = detail::snapshot_parameters(model);
    detail::with_rollback(model, [&] {
      auto theta = detail::parameters_of(model);
      Vector<Scalar> grad;
      detail::objective_gradient(model, retain, grad);
      for (std::size_t it = 0; it < options_.max_iterations; ++it) {
        detail::require_finite(grad, name() + ": the retain-set gradient");
        if (it > 0 && grad.template cast<double>().norm() <= options_.gradient_tolerance) break;
        Matrix<double> h = objective_hessian(model, retain);
        h.diagonal().array() += options_.damping;
        const Eigen::LLT<Matrix<double>> llt(h);
        if (llt.info() != Eigen::Success)
          throw NumericalError(name() + ": the retain-set Hessian is not positive definite (the model is not "
                                        "strictly convex at θ); set NewtonRemovalOptions::damping > 0");
        const Eigen::VectorXd step = -llt.solve(grad.template cast<double>());
        detail::require_finite(step, name() + ": the Newton step");
        theta = (theta.template cast<double>() + step).template cast<Scalar>();
        ++r.iterations;
        detail::objective_gradient(model, retain, grad);
      }
      r.residual_gradient_norm = grad.template cast<double>().norm();
      detail::finish_report(model, theta_before, forget, retain, r);
    });
    if (options_.damping > 0.0) r.damping = options_.damping;
    const double d = static_cast<double>(model.num_parameters());
    r.memory_bytes = static_cast<std::size_t>(2.0 * d * d * sizeof(double) + 4.0 * d * sizeof(double));
    r.seconds = clock.seconds();
    return r;
  }

 private:
  NewtonRemovalOptions options_;
};

}  // namespace fisher_unlearn
