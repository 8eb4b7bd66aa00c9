// What an unlearner did: losses before and after, the step, its cost. Every unlearner returns one.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <ostream>
#include <string>

namespace fisher_unlearn {

struct UnlearningReport {
  static constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

  std::string method;                    ///< name() of the unlearner
  double forget_loss_before = not_measured;   ///< J_forget (mean loss + regulariser) before
  double forget_loss_after = not_measured;
  double retain_loss_before = not_measured;   ///< J_retain before
  double retain_loss_after = not_measured;
  double step_norm = 0.0;                ///< ‖θ' − θ‖₂ over all parameters
  double residual_gradient_norm = not_measured;  ///< ‖∇J_retain(θ')‖₂ where computed
  double damping = not_measured;         ///< damping used by a Fisher method (after any search)
  std::size_t iterations = 0;            ///< steps taken
  std::size_t fisher_gradients = 0;      ///< per-sample gradients held by the Fisher estimator
  std::size_t memory_bytes = 0;          ///< peak working memory of the method (estimator + buffers)
  double seconds = 0.0;                  ///< wall time of unlearn()
  std::string notes;                     ///< anything the caller should know (clipped step, ...)
};

inline std::ostream& operator<<(std::ostream& os, const UnlearningReport& r) {
  os << r.method << ": forget loss " << r.forget_loss_before << " -> " << r.forget_loss_after
     << ", retain loss " << r.retain_loss_before << " -> " << r.retain_loss_after << ", step norm "
     << r.step_norm;
  if (!std::isnan(r.residual_gradient_norm)) os << ", residual gradient " << r.residual_gradient_norm;
  if (!std::isnan(r.damping)) os << ", damping " << r.damping;
  os << ", " << r.iterations << " iteration(s), " << r.seconds << " s, " << r.memory_bytes << " bytes";
  if (!r.notes.empty()) os << " (" << r.notes << ")";
  return os;
}

}  // namespace fisher_unlearn
