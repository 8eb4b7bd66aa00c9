// Every Fisher estimator, and the one-line products on any FisherEstimator:
//   fisher_power_product(F, p, v) = F^p v,  inverse_fisher_product(F, v) = F⁻¹v  (a fresh d-vector).
// Cost: that of the estimator's apply_power plus one d-vector allocation.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/fisher/any.hpp"
#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/dense.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/types.hpp"

namespace fisher_unlearn {

/// F^p v for a finalized estimator. Throws what apply_power throws (StateError before finalize(),
/// InvalidArgument for a wrong size or an unsupported p, NonFiniteError for a non-finite v).
template <FisherEstimator Estimator>
Vector<typename Estimator::Scalar> fisher_power_product(const Estimator& fisher, double power,
                                                        Eigen::Ref<const Vector<typename Estimator::Scalar>> v) {
  Vector<typename Estimator::Scalar> out(v.size());
  fisher.apply_power(power, v, out);
  return out;
}

/// F⁻¹v: the Newton/Fisher step direction. Same exceptions as fisher_power_product.
template <FisherEstimator Estimator>
Vector<typename Estimator::Scalar> inverse_fisher_product(const Estimator& fisher,
                                                          Eigen::Ref<const Vector<typename Estimator::Scalar>> v) {
  return fisher_power_product(fisher, -1.0, v);
}

}  // namespace fisher_unlearn
