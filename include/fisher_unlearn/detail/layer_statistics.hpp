// Hands a LinearLayerVisitor one layer's inputs and output gradients over a chunk of sequences, leaving out
// the columns of masked positions (target weight 0) whose output gradient is exactly zero. Such a column adds
// nothing to Σδδᵀ or to a sample's layer gradient Σδ[a;1]ᵀ, but counted in A = mean [a;1][a;1]ᵀ it would
// dilute the activation factor with positions the loss never sees. Cost O(in + out) per column; no copy
// when no column is left out.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>

#include <cstddef>
#include <span>
#include <vector>

namespace fisher_unlearn::detail {

template <SupportedScalar Scalar>
class LayerStatisticsForwarder {
 public:
  /// columns: k+1 offsets (sample first_sample+j owns columns [columns[j], columns[j+1])) into a (in×n) and
  /// d (out×n); masked[c] != 0: column c is a position of weight 0 (dropped when d.col(c) is exactly 0).
  template <class Inputs, class Gradients>
  void operator()(LinearLayerVisitor<Scalar>& visitor, std::size_t layer, std::size_t first_sample,
                  std::span<const Eigen::Index> columns, std::span<const char> masked, const Inputs& a,
                  const Gradients& d) {
    using View = typename LinearLayerBatch<Scalar>::View;
    const Eigen::Index n = a.cols();
    bool drop = false;
    for (Eigen::Index c = 0; c < n && !drop; ++c) drop = masked[static_cast<std::size_t>(c)] && is_zero(d, c);
    if (!drop) {
      visitor.on_layer(LinearLayerBatch<Scalar>{layer, first_sample, columns,
                                                View(a.data(), a.rows(), n, Eigen::OuterStride<>(a.outerStride())),
                                                View(d.data(), d.rows(), n, Eigen::OuterStride<>(d.outerStride()))});
      return;
    }
    a_.resize(a.rows(), n);
    d_.resize(d.rows(), n);
    kept_.assign(1, 0);
    Eigen::Index k = 0;
    for (std::size_t j = 0; j + 1 < columns.size(); ++j) {
      for (Eigen::Index c = columns[j]; c < columns[j + 1]; ++c) {
        if (masked[static_cast<std::size_t>(c)] && is_zero(d, c)) continue;
        a_.col(k) = a.col(c);
        d_.col(k) = d.col(c);
        ++k;
      }
      kept_.push_back(k);
    }
    visitor.on_layer(LinearLayerBatch<Scalar>{layer, first_sample, std::span<const Eigen::Index>(kept_),
                                              View(a_.data(), a_.rows(), k, Eigen::OuterStride<>(a_.rows())),
                                              View(d_.data(), d_.rows(), k, Eigen::OuterStride<>(d_.rows()))});
  }

 private:
  template <class Gradients>
  static bool is_zero(const Gradients& d, Eigen::Index c) {
    return (d.col(c).array() == Scalar(0)).all();
  }
  Matrix<Scalar> a_, d_;
  std::vector<Eigen::Index> kept_;
};

}  // namespace fisher_unlearn::detail
