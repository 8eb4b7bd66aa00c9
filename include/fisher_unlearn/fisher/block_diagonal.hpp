// BlockDiagonalFisher: F restricted to diagonal blocks, F_b = λI + (1/m)Σᵢ g_{i,b}g_{i,b}ᵀ per block b of
// a partition of the d parameters (layers, parameter groups); each block is eigendecomposed, so F^p v is
// exact for the block-diagonal matrix for every real p. Cost: O(Σb²) per gradient (a rank-k GEMM per
// batch), O(Σb³) finalize, O(Σb²) per product; memory 2·Σb² Scalars + d doubles (Σ ggᵀ and V per block).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/detail/spectral_block.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/types.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace fisher_unlearn {

/// Splits every size larger than max_block_size into blocks of max_block_size and a remainder
/// (max_block_size = 0: no splitting). Caps the O(b²) memory of the largest groups (an embedding).
inline std::vector<std::size_t> split_blocks(const std::vector<std::size_t>& sizes, std::size_t max_block_size) {
  if (max_block_size == 0) return sizes;
  std::vector<std::size_t> out;
  for (std::size_t size : sizes) {
    for (std::size_t done = 0; done < size; done += max_block_size) out.push_back(std::min(max_block_size, size - done));
  }
  return out;
}

/// The partition of a subset's gathered vector into its contiguous ranges (adjacent groups merged by
/// ParameterSubset count as one block), optionally split to at most max_block_size.
inline std::vector<std::size_t> block_sizes_from_subset(const ParameterSubset& subset, std::size_t max_block_size = 0) {
  std::vector<std::size_t> sizes;
  for (const ParameterSubset::Range& r : subset.ranges()) sizes.push_back(r.size);
  return split_blocks(sizes, max_block_size);
}

/// One block per parameter group of the model, in parameter order, so that the blocks match the vector
/// ParameterSubset::from_groups(model, names) gathers. names empty: every group, and parameters that no
/// group covers become blocks of their own, so the sizes sum to num_parameters(). Throws
/// InvalidArgument for unknown names or overlapping groups.
template <HasParameterGroups M>
std::vector<std::size_t> block_sizes_from_groups(const M& model, const std::vector<std::string>& names = {},
                                                 std::size_t max_block_size = 0) {
  std::vector<ParameterGroup> groups;
  for (const ParameterGroup& g : model.parameter_groups())
    if (names.empty() || std::find(names.begin(), names.end(), g.name) != names.end()) groups.push_back(g);
  for (const std::string& name : names)
    if (std::none_of(groups.begin(), groups.end(), [&](const ParameterGroup& g) { return g.name == name; }))
      throw InvalidArgument("block_sizes_from_groups: the model has no parameter group named '" + name + "'");
  std::sort(groups.begin(), groups.end(), [](const ParameterGroup& a, const ParameterGroup& b) { return a.offset < b.offset; });
  const std::size_t d = model.num_parameters();
  std::vector<std::size_t> sizes;
  std::size_t position = 0;
  for (const ParameterGroup& g : groups) {
    if (g.offset + g.size > d)
      throw InvalidArgument("block_sizes_from_groups: parameter group '" + g.name + "' extends past num_parameters()");
    if (g.offset < position)
      throw InvalidArgument("block_sizes_from_groups: parameter group '" + g.name +
                            "' overlaps the previous one; a block partition needs disjoint groups");
    if (names.empty() && g.offset > position) sizes.push_back(g.offset - position);  // uncovered parameters
    if (g.size > 0) sizes.push_back(g.size);
    position = g.offset + g.size;
  }
  if (names.empty() && position < d) sizes.push_back(d - position);
  return split_blocks(sizes, max_block_size);
}

/// Block-diagonal Fisher (K-FAC-free "layer-wise" curvature; WoodFisher-style exact blocks).
/// Blocks are contiguous ranges of the gradient; cross-block curvature is dropped, within a block it is
/// exact. Σ ggᵀ is accumulated and eigendecomposed in Scalar (float loses ~κ(F_b)·ε_float).
template <SupportedScalar ScalarT>
class BlockDiagonalFisher {
 public:
  using Scalar = ScalarT;

  /// dimension: d. damping: λ > 0. block_size: blocks of this size and a smaller last one if it does
  /// not divide d; 0 means one block (the dense Fisher).
  BlockDiagonalFisher(std::size_t dimension, Scalar damping, std::size_t block_size = 0)
      : BlockDiagonalFisher(uniform_sizes(detail::checked_dimension("BlockDiagonalFisher", dimension), block_size),
                            damping) {}

  /// block_sizes: a partition of the d parameters into consecutive blocks (each ≥ 1, summing to d);
  /// see block_sizes_from_groups / block_sizes_from_subset. damping: λ > 0.
  BlockDiagonalFisher(std::vector<std::size_t> block_sizes, Scalar damping)
      : damping_(detail::checked_damping("BlockDiagonalFisher", damping)), block_sizes_(std::move(block_sizes)) {
    if (block_sizes_.empty())
      throw InvalidArgument("BlockDiagonalFisher: the block partition is empty; give at least one block size");
    for (std::size_t size : block_sizes_) {
      if (size == 0) throw InvalidArgument("BlockDiagonalFisher: a block size is 0; every block needs at least one parameter");
      offsets_.push_back(dimension_);
      dimension_ += size;
    }
    blocks_.reserve(block_sizes_.size());
    for (std::size_t size : block_sizes_) blocks_.emplace_back(static_cast<Eigen::Index>(size));
  }

  std::size_t dimension() const { return dimension_; }
  std::size_t num_gradients() const { return num_gradients_; }
  std::size_t num_blocks() const { return blocks_.size(); }
  const std::vector<std::size_t>& block_sizes() const { return block_sizes_; }
  bool is_finalized() const { return finalized_; }

  /// Adds one gradient: a rank-1 update per block, O(Σb²). Throws InvalidArgument/NonFiniteError.
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("BlockDiagonalFisher::add_gradient", gradient, dimension_);
    for (std::size_t b = 0; b < blocks_.size(); ++b) blocks_[b].accumulate(gradient.segment(offset(b), size(b)));
    ++num_gradients_;
    finalized_ = false;
  }

  /// Adds the columns of a d×k matrix: one rank-k update (GEMM) per block, O(Σb²·k). Checked first.
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    detail::check_gradients("BlockDiagonalFisher::add_gradients", gradients, dimension_);
    if (gradients.cols() == 0) return;
    for (std::size_t b = 0; b < blocks_.size(); ++b) blocks_[b].accumulate(gradients.middleRows(offset(b), size(b)));
    num_gradients_ += static_cast<std::size_t>(gradients.cols());
    finalized_ = false;
  }

  /// Eigendecomposes every block, O(Σb³). Throws InvalidArgument when m = 0. If an eigensolver fails
  /// (NumericalError) the estimator stays unfinalized.
  void finalize() {
    if (num_gradients_ == 0)
      throw InvalidArgument("BlockDiagonalFisher::finalize: no gradients were added (m = 0); add at least one");
    finalized_ = false;
    for (auto& block : blocks_) block.finalize(num_gradients_, "BlockDiagonalFisher::finalize");
    finalized_ = true;
  }

  /// Every finite real p.
  bool supports_power(double power) const { return std::isfinite(power); }

  /// out = F^p v block by block, O(Σb²). out must have size d and not alias v.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("BlockDiagonalFisher::apply_power", supports_power(power), power);
    detail::check_apply("BlockDiagonalFisher::apply_power", finalized_, dimension_, v, out);
    const double lambda = static_cast<double>(damping_);
    for (std::size_t b = 0; b < blocks_.size(); ++b)
      blocks_[b].apply(power, lambda, v.segment(offset(b), size(b)), out.segment(offset(b), size(b)));
  }

  /// Eigenvalues of block b's (1/m)Σ ggᵀ, ascending. After finalize().
  const Eigen::VectorXd& block_eigenvalues(std::size_t b) const {
    if (!finalized_) throw StateError("BlockDiagonalFisher::block_eigenvalues: call finalize() first");
    if (b >= blocks_.size()) throw InvalidArgument("BlockDiagonalFisher::block_eigenvalues: no block " + std::to_string(b));
    return blocks_[b].eigenvalues();
  }

  /// tr of the undamped block-diagonal part: the sum of every block's eigenvalues (after finalize()), O(d).
  /// Equal to tr((1/m)Σ ggᵀ): dropping the off-diagonal blocks keeps the diagonal.
  double undamped_trace() const {
    if (!finalized_) throw StateError("BlockDiagonalFisher::undamped_trace: call finalize() first");
    double trace = 0.0;
    for (const auto& block : blocks_) trace += block.eigenvalues().sum();
    return trace;
  }

  Scalar damping() const { return damping_; }
  /// Changes λ; O(1): eigenvectors do not depend on it. Throws InvalidArgument for λ ≤ 0 or NaN.
  void set_damping(Scalar damping) { damping_ = detail::checked_damping("BlockDiagonalFisher::set_damping", damping); }

  std::size_t memory_bytes() const {
    std::size_t bytes = 0;
    for (const auto& block : blocks_) bytes += block.memory_bytes();
    return bytes;
  }

  /// Forgets every gradient (the partition and damping are kept).
  void clear() {
    for (auto& block : blocks_) block.clear();
    num_gradients_ = 0;
    finalized_ = false;
  }

 private:
  static std::vector<std::size_t> uniform_sizes(std::size_t dimension, std::size_t block_size) {
    if (block_size == 0 || block_size >= dimension) return {dimension};
    return split_blocks({dimension}, block_size);
  }
  Eigen::Index offset(std::size_t b) const { return static_cast<Eigen::Index>(offsets_[b]); }
  Eigen::Index size(std::size_t b) const { return static_cast<Eigen::Index>(block_sizes_[b]); }

  std::size_t dimension_ = 0;
  Scalar damping_;
  std::vector<std::size_t> block_sizes_;
  std::vector<std::size_t> offsets_;
  std::vector<detail::SpectralBlock<Scalar>> blocks_;
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
};

static_assert(FisherEstimator<BlockDiagonalFisher<float>> && FisherEstimator<BlockDiagonalFisher<double>>);

}  // namespace fisher_unlearn
