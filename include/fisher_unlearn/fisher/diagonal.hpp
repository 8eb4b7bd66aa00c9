// DiagonalFisher: the diagonal of F = λI + (1/m)Σᵢ gᵢgᵢᵀ, i.e. F_kk = λ + (1/m)Σᵢ g_ik², applied as
// (F^p v)_k = (λ + F̂_kk)^p v_k — exact for every real p for the diagonal matrix (it drops all
// off-diagonal curvature). Cost: O(d) per gradient, O(d) finalize, O(d) per product; memory 3·d doubles
// (sum, mean, and a scratch vector for batches).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

namespace fisher_unlearn {

/// Diagonal ("Adam-like", EWC) approximation of the Fisher. Squares are summed in double whatever
/// Scalar is, so float gradients do not lose accuracy over many additions.
template <SupportedScalar ScalarT>
class DiagonalFisher {
 public:
  using Scalar = ScalarT;

  /// dimension: d, the length of every gradient. damping: λ > 0.
  DiagonalFisher(std::size_t dimension, Scalar damping)
      : dimension_(detail::checked_dimension("DiagonalFisher", dimension)),
        damping_(detail::checked_damping("DiagonalFisher", damping)),
        sum_of_squares_(Eigen::VectorXd::Zero(static_cast<Eigen::Index>(dimension))) {}

  std::size_t dimension() const { return dimension_; }
  std::size_t num_gradients() const { return num_gradients_; }
  bool is_finalized() const { return finalized_; }

  /// Adds one gradient (size d). Throws InvalidArgument (size) or NonFiniteError (NaN/Inf, or finite
  /// entries whose squares, or the accumulated sums, overflow double); unchanged then.
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("DiagonalFisher::add_gradient", gradient, dimension_);
    pending_ = sum_of_squares_ + gradient.template cast<double>().cwiseAbs2();
    commit_pending("DiagonalFisher::add_gradient", 1);
  }

  /// Adds the columns of a d×k matrix. The whole batch is checked before anything is added.
  /// Memory traffic: the gradients are read once, row block by row block (the block's partial sums stay
  /// in cache across the k columns), and the finiteness check is fused into that pass (a NaN/Inf entry
  /// makes its row's partial sum non-finite); the partial sums go to a scratch vector that is added to
  /// the accumulator only once the whole batch has passed, so a rejected batch changes nothing.
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    // Size only (no columns to scan): finiteness is checked inside the accumulation pass below.
    detail::check_gradients("DiagonalFisher::add_gradients", gradients.leftCols(0), dimension_);
    const Eigen::Index k = gradients.cols();
    if (k == 0) return;
    const Eigen::Index d = gradients.rows();
    pending_.resize(d);
    constexpr Eigen::Index block = 2048;
    for (Eigen::Index r = 0; r < d; r += block) {
      const Eigen::Index b = std::min(block, d - r);
      auto partial = pending_.segment(r, b);
      partial = gradients.col(0).segment(r, b).template cast<double>().cwiseAbs2();
      for (Eigen::Index j = 1; j < k; ++j) partial += gradients.col(j).segment(r, b).template cast<double>().cwiseAbs2();
      if (!partial.allFinite())
        throw NonFiniteError("DiagonalFisher::add_gradients: a gradient contains NaN or Inf (or entries whose "
                             "squares overflow); nothing was added. Check the model's gradient and the data");
    }
    pending_ += sum_of_squares_;
    commit_pending("DiagonalFisher::add_gradients", static_cast<std::size_t>(k));
  }
  /// Forms (1/m)Σ g². Throws InvalidArgument when no gradient was added.
  void finalize() {
    if (num_gradients_ == 0)
      throw InvalidArgument("DiagonalFisher::finalize: no gradients were added (m = 0); add at least one");
    mean_of_squares_ = sum_of_squares_ / static_cast<double>(num_gradients_);
    finalized_ = true;
  }

  /// Every finite real p.
  bool supports_power(double power) const { return std::isfinite(power); }

  /// out = F^p v with F = diag(λ + (1/m)Σ g²). out must have size d and not alias v. Throws
  /// NumericalError (out unspecified) when an entry of the product overflows Scalar.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("DiagonalFisher::apply_power", supports_power(power), power);
    detail::check_apply("DiagonalFisher::apply_power", finalized_, dimension_, v, out);
    // Vectorised: one pass over the diagonal, v and out; the common powers avoid pow().
    const auto x = mean_of_squares_.array().max(0.0) + static_cast<double>(damping_);
    const auto vd = v.array().template cast<double>();
    auto o = out.array();
    if (power == 1.0) {
      o = (x * vd).template cast<Scalar>();
    } else if (power == -1.0) {
      o = (vd / x).template cast<Scalar>();
    } else if (power == -0.5) {
      o = (vd / x.sqrt()).template cast<Scalar>();
    } else if (power == -0.25) {
      o = (vd / x.sqrt().sqrt()).template cast<Scalar>();
    } else {
      o = (vd * x.pow(power)).template cast<Scalar>();
    }
    if (!out.allFinite())
      throw NumericalError("DiagonalFisher::apply_power: F^" + detail::number_to_string(power) +
                           " v overflows the Scalar type (a diagonal entry or v is too large); rescale the loss "
                           "or the vector, or use double");
  }

  /// The diagonal entries λ + (1/m)Σ g² (after finalize()).
  Vector<Scalar> diagonal() const {
    if (!finalized_) throw StateError("DiagonalFisher::diagonal: call finalize() first");
    return (mean_of_squares_.array() + static_cast<double>(damping_)).matrix().template cast<Scalar>();
  }

  /// tr((1/m)Σ ggᵀ) = Σ_k (1/m)Σ g_k², the trace of the undamped part (after finalize()), O(d).
  double undamped_trace() const {
    if (!finalized_) throw StateError("DiagonalFisher::undamped_trace: call finalize() first");
    return mean_of_squares_.sum();
  }

  Scalar damping() const { return damping_; }
  /// Changes λ; O(1), no new finalize() needed. Throws InvalidArgument for λ ≤ 0 or NaN (unchanged then).
  void set_damping(Scalar damping) { damping_ = detail::checked_damping("DiagonalFisher::set_damping", damping); }

  std::size_t memory_bytes() const {
    return static_cast<std::size_t>(sum_of_squares_.size() + mean_of_squares_.size() + pending_.size()) *
           sizeof(double);
  }

  /// Forgets every gradient (dimension and damping are kept); finalize() is needed again.
  void clear() {
    sum_of_squares_.setZero();
    mean_of_squares_.resize(0);
    num_gradients_ = 0;
    finalized_ = false;
  }

 private:
  // pending_ holds the new sums of squares: adopt them only if every one is finite (the strong guarantee).
  void commit_pending(const char* who, std::size_t added) {
    if (!pending_.allFinite())
      throw NonFiniteError(std::string(who) + ": a gradient has entries whose squares, or whose accumulated "
                                              "sums of squares, overflow double; nothing was added. Check the "
                                              "model's gradient and the data (or rescale the loss)");
    sum_of_squares_.swap(pending_);
    num_gradients_ += added;
    finalized_ = false;
  }

  std::size_t dimension_;
  Scalar damping_;
  Eigen::VectorXd sum_of_squares_;
  Eigen::VectorXd mean_of_squares_;
  Eigen::VectorXd pending_;  // add_gradients' partial sums (not state: contents undefined between calls)
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
};

static_assert(FisherEstimator<DiagonalFisher<float>> && FisherEstimator<DiagonalFisher<double>>);

}  // namespace fisher_unlearn
