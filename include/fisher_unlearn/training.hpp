// Exact training of a convex TwiceDifferentiableModel, the reference every unlearner is measured
// against ("retraining from scratch"): Newton's method on J_S(θ) = mean loss + (λ/2)‖θ‖² with a
// backtracking (Armijo) line search, the Hessian ∇²J_S = (1/|S|) Σ ∇²loss + λI formed densely in double.
// Cost per iteration: O(|S| d²) to form the Hessian (or d Hessian-vector products), O(d³) for Cholesky.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"

#include <Eigen/Cholesky>

#include <cmath>
#include <limits>
#include <span>

namespace fisher_unlearn {

/// ∇²J_S(θ) = (1/|S|) Σ_{s∈S} ∇²loss(s) + λI as a dense d×d matrix in double. Uses the model's
/// hessian() where it has one, otherwise assembles the columns from d Hessian-vector products.
template <TwiceDifferentiableModel M>
Matrix<double> objective_hessian(const M& model, std::span<const typename M::Sample> samples) {
  using Scalar = typename M::Scalar;
  detail::require_nonempty<M>(samples, "objective_hessian: the sample set");
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Matrix<double> h(d, d);
  if constexpr (HasDenseHessian<M>) {
    Matrix<Scalar> hs;
    model.hessian(samples, hs);
    if (hs.rows() != d || hs.cols() != d)
      throw InvalidArgument("objective_hessian: the model's hessian() returned a " + std::to_string(hs.rows()) + "x" +
                            std::to_string(hs.cols()) + " matrix for " + std::to_string(d) + " parameters");
    h = hs.template cast<double>();
  } else {
    Vector<Scalar> e = Vector<Scalar>::Zero(d);
    Vector<Scalar> col(d);
    for (Eigen::Index j = 0; j < d; ++j) {
      e[j] = Scalar(1);
      const std::span<Scalar> out(col.data(), static_cast<std::size_t>(col.size()));
      detail::mark_unwritten(out);
      model.hessian_vector_product(samples, std::span<const Scalar>(e.data(), e.size()), out);
      detail::require_written(std::span<const Scalar>(out), "objective_hessian",
                              "hessian_vector_product(samples, v, out)", "Hessian-vector product");
      e[j] = Scalar(0);
      h.col(j) = col.template cast<double>();
    }
    h = (0.5 * (h + h.transpose())).eval();  // HVP columns are symmetric only up to rounding
  }
  h /= static_cast<double>(samples.size());
  h.diagonal().array() += static_cast<double>(detail::l2_regularization_of(model));
  detail::require_finite(h, "objective_hessian: the Hessian");
  return h;
}

struct NewtonTrainingOptions {
  std::size_t max_iterations = 100;
  /// Stop when ‖∇J_S(θ)‖₂ ≤ gradient_tolerance. The default is at the level double rounding allows
  /// for well-scaled problems; float models stop when the line search can make no more progress.
  double gradient_tolerance = 1e-12;
};

struct NewtonTrainingResult {
  std::size_t iterations = 0;
  double gradient_norm = 0.0;  ///< ‖∇J_S(θ)‖₂ at the returned θ
  double objective = 0.0;      ///< J_S(θ) at the returned θ
  bool converged = false;      ///< gradient_norm ≤ gradient_tolerance
};

/// Minimises J_S over the model's parameters in place, starting from the current parameters, by
/// Newton's method with an Armijo backtracking line search (globally convergent for a strictly convex
/// J_S). Stops at the tolerance, after max_iterations, or when no step decreases J_S any more (the
/// rounding floor, reported as converged = false unless the tolerance was met).
/// Throws NumericalError if ∇²J_S is not positive definite (the model is not strictly convex: add L2
/// regularisation); the parameters are then unchanged.
template <TwiceDifferentiableModel M>
NewtonTrainingResult train_newton(M& model, std::span<const typename M::Sample> samples,
                                  const NewtonTrainingOptions& options = {}) {
  using Scalar = typename M::Scalar;
  detail::require_nonempty<M>(samples, "train_newton: the training set");
  if (!(options.gradient_tolerance >= 0.0))
    throw InvalidArgument("train_newton: gradient_tolerance must be >= 0");
  return detail::with_rollback(model, [&] {
    NewtonTrainingResult result;
    auto theta = detail::parameters_of(model);
    Vector<Scalar> grad;
    double j = detail::objective_gradient(model, samples, grad);
    for (;;) {
      detail::require_finite(grad, "train_newton: the gradient");
      result.gradient_norm = grad.template cast<double>().norm();
      result.objective = j;
      result.converged = result.gradient_norm <= options.gradient_tolerance;
      if (result.converged || result.iterations >= options.max_iterations) break;
      const Matrix<double> h = objective_hessian(model, samples);
      Eigen::LLT<Matrix<double>> llt(h);
      if (llt.info() != Eigen::Success)
        throw NumericalError("train_newton: the Hessian of the objective is not positive definite; the model is "
                             "not strictly convex here (add L2 regularisation)");
      const Eigen::VectorXd g = grad.template cast<double>();
      const Eigen::VectorXd step = -llt.solve(g);
      const Eigen::VectorXd theta0 = theta.template cast<double>();
      const double slope = g.dot(step);  // -(Newton decrement)^2 < 0: the direction descends
      // Close to the optimum the decrease of J (about |slope|/2) drops below J's rounding error and
      // Armijo cannot tell a good step from a bad one; there the full step is accepted when it shrinks
      // the gradient, which is the regime where Newton converges quadratically.
      const bool in_rounding_zone = -slope <= 1e-10 * (1.0 + std::abs(j));
      double t = 1.0;
      bool accepted = false;
      Vector<Scalar> trial_grad;
      for (int k = 0; k < 60; ++k, t *= 0.5) {
        theta = (theta0 + t * step).template cast<Scalar>();
        const double jt = detail::objective(model, samples);
        if (std::isfinite(jt) && jt <= j + 1e-4 * t * slope) {
          accepted = true;
          break;
        }
        if (in_rounding_zone && k == 0) {
          detail::objective_gradient(model, samples, trial_grad);
          if (trial_grad.allFinite() && trial_grad.template cast<double>().norm() < result.gradient_norm) {
            accepted = true;
            break;
          }
        }
      }
      if (!accepted) {  // the rounding floor: no representable decrease is left
        theta = theta0.template cast<Scalar>();
        break;
      }
      ++result.iterations;
      j = detail::objective_gradient(model, samples, grad);
    }
    return result;
  });
}

}  // namespace fisher_unlearn
