// K-FAC and EK-FAC curvature for models that expose their linear layers (LinearLayerModel, concepts.hpp):
//   K-FAC   F_l = A_l ⊗ G_l,  A_l = mean over positions of [a;1][a;1]ᵀ,  G_l = (1/m) Σ_samples Σ_positions δδᵀ
//   EK-FAC  F_l = (U_A ⊗ U_G) diag(Λ_l) (U_A ⊗ U_G)ᵀ,  Λ_l = (1/m) Σᵢ (U_Gᵀ G̃ᵢ U_A)∘²  (G̃ᵢ = Σₜ δₜ[aₜ;1]ᵀ)
// and a diagonal (1/m)Σᵢ g̃ᵢ² on the parameters outside every layer; F^p v = exact powers of λ_l·I + these
// matrices from the factor eigenbases. Cost: two SYRKs of n·(in² + out²) per layer for n positions, finalize
// O(in³ + out³), F^p v O(out·in·(in + out)) per layer; memory O(Σ in² + out²) (+ out·in per layer for Λ).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/detail/fisher_kernels.hpp"
#include "fisher_unlearn/detail/parallel.hpp"
#include "fisher_unlearn/detail/symmetric_eigen.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace fisher_unlearn {

/// Options shared by KfacFisher and EkfacFisher.
struct KfacOptions {
  /// α ≥ 0. Layer l is damped with λ_l = λ + α·(mean eigenvalue of its undamped block) and the diagonal
  /// block with λ + α·(mean of its entries), so that α sets the damping relative to each block's own
  /// spectrum (kronfluence's default is α = 0.1). With α = 0 the matrix is F = λI + K-FAC/EK-FAC.
  double relative_damping = 0.0;
};

namespace detail {

/// (λ+σ)^p for σ ≥ 0 (clamped), with the common powers avoiding pow().
inline double kronecker_power(double damping, double sigma, double power) {
  const double x = damping + std::max(sigma, 0.0);
  if (power == -1.0) return 1.0 / x;
  if (power == 1.0) return x;
  if (power == -0.5) return 1.0 / std::sqrt(x);
  if (power == -0.25) return 1.0 / std::sqrt(std::sqrt(x));
  return std::pow(x, power);
}

/// Checks a model's layer list against itself and the parameter count: sizes positive, ranges inside
/// [0, d), no two ranges overlapping. Returns the indices of the parameters outside every layer.
inline std::vector<Eigen::Index> checked_layers(const char* who, const std::vector<LinearLayer>& layers,
                                                std::size_t dimension) {
  struct Range {
    std::size_t begin, end;
    std::string what;
  };
  std::vector<Range> ranges;
  for (const LinearLayer& l : layers) {
    if (l.in_features == 0 || l.out_features == 0)
      throw InvalidArgument(std::string(who) + ": layer '" + l.name + "' has in_features = " +
                            std::to_string(l.in_features) + " and out_features = " + std::to_string(l.out_features) +
                            "; both must be at least 1");
    ranges.push_back({l.weight_offset, l.weight_offset + l.in_features * l.out_features, l.name + " weight"});
    if (l.has_bias) ranges.push_back({l.bias_offset, l.bias_offset + l.out_features, l.name + " bias"});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].end > dimension)
      throw InvalidArgument(std::string(who) + ": the " + ranges[i].what + " ends at parameter " +
                            std::to_string(ranges[i].end) + " but the model has only " + std::to_string(dimension) +
                            " parameters; the layer list does not belong to this model");
    if (i > 0 && ranges[i].begin < ranges[i - 1].end)
      throw InvalidArgument(std::string(who) + ": the " + ranges[i].what + " overlaps the " + ranges[i - 1].what +
                            "; every parameter may belong to at most one layer");
  }
  std::vector<Eigen::Index> rest;
  std::size_t at = 0;
  for (const Range& r : ranges) {
    for (; at < r.begin; ++at) rest.push_back(static_cast<Eigen::Index>(at));
    at = r.end;
  }
  for (; at < dimension; ++at) rest.push_back(static_cast<Eigen::Index>(at));
  return rest;
}

inline bool same_layers(const std::vector<LinearLayer>& a, const std::vector<LinearLayer>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].in_features != b[i].in_features || a[i].out_features != b[i].out_features ||
        a[i].weight_offset != b[i].weight_offset || a[i].weight_order != b[i].weight_order ||
        a[i].has_bias != b[i].has_bias || (a[i].has_bias && a[i].bias_offset != b[i].bias_offset))
      return false;
  return true;
}

/// What K-FAC and EK-FAC share: the layer list, the factor sums and their eigenbases, the diagonal block,
/// the damping, and the gather/scatter of one layer's parameters as an out×(in+1) matrix [W b].
template <SupportedScalar Scalar>
class KroneckerBase {
 public:
  using Mat = Matrix<Scalar>;

  std::size_t dimension() const { return dimension_; }
  std::size_t num_layers() const { return layers_.size(); }
  const LinearLayer& layer(std::size_t l) const { return layers_.at(l); }
  /// The parameters outside every linear layer, ascending (the diagonal block).
  const std::vector<Eigen::Index>& diagonal_indices() const { return diagonal_indices_; }
  bool supports_power(double power) const { return std::isfinite(power); }
  Scalar damping() const { return damping_; }
  double relative_damping() const { return options_.relative_damping; }

  /// The activation factor A_l = (1/positions)·Σ [a;1][a;1]ᵀ ((in+1)² with a bias, in² without).
  Eigen::MatrixXd activation_factor(std::size_t l) const {
    require_factors("activation_factor");
    return symmetric(factors_.activation[l], 1.0 / static_cast<double>(factors_.positions[l]));
  }
  /// The gradient factor G_l = (1/m)·Σ_samples Σ_positions δδᵀ (out²).
  Eigen::MatrixXd gradient_factor(std::size_t l) const {
    require_factors("gradient_factor");
    return symmetric(factors_.gradient[l], 1.0 / static_cast<double>(factors_.samples));
  }
  /// U_A, U_G (columns = eigenvectors, eigenvalues ascending) after the eigenbasis is fitted.
  const Mat& activation_eigenvectors(std::size_t l) const { return require_basis("activation_eigenvectors").activation_vectors[l]; }
  const Mat& gradient_eigenvectors(std::size_t l) const { return require_basis("gradient_eigenvectors").gradient_vectors[l]; }
  const Eigen::VectorXd& activation_eigenvalues(std::size_t l) const { return require_basis("activation_eigenvalues").activation_values[l]; }
  const Eigen::VectorXd& gradient_eigenvalues(std::size_t l) const { return require_basis("gradient_eigenvalues").gradient_values[l]; }

  /// The damping layer l gets: λ + α·(mean eigenvalue of its undamped block). After finalize().
  double layer_damping(std::size_t l) const {
    require_finalized("layer_damping");
    return static_cast<double>(damping_) + options_.relative_damping * layer_mean_.at(l);
  }
  /// The damping of the diagonal block: λ + α·(mean of its entries). After finalize().
  double diagonal_damping() const {
    require_finalized("diagonal_damping");
    return static_cast<double>(damping_) + options_.relative_damping * diagonal_mean_value_;
  }
  /// The undamped diagonal block's entries (1/m)Σ g̃ₖ² at diagonal_indices(). After finalize().
  const Eigen::VectorXd& diagonal() const {
    require_finalized("diagonal");
    return diagonal_mean_;
  }

  /// Changes λ; O(1), no new finalize() needed. Throws InvalidArgument for λ ≤ 0 or NaN (unchanged then).
  void set_damping(Scalar damping) { damping_ = checked_damping(name_, damping); }
  /// Worker threads of the passes of an empirical accumulate() (K-FAC's factor pass; EK-FAC's factor and
  /// eigenvalue passes; 0 = all hardware threads; default 1) and of the per-layer eigendecompositions.
  /// The results do not depend on it, bitwise: more than kFactorBlock samples are split into fixed
  /// blocks of kFactorBlock, each block's sums start from zero, and the blocks are added to the total in
  /// block order whatever the thread count (memory: one set of sums per thread). A Monte-Carlo pass (one
  /// random stream through the samples) stays serial.
  void set_num_threads(std::size_t threads) { num_threads_ = threads; }
  std::size_t num_threads() const { return num_threads_; }
  /// Samples per block of the factor pass (see set_num_threads).
  static constexpr std::size_t kFactorBlock = 32;
  bool is_finalized() const { return finalized_; }

 protected:
  // The raw sums of the factor stage. Lower triangles are valid.
  struct FactorSums {
    std::vector<Eigen::MatrixXd> activation, gradient;
    std::vector<std::size_t> positions;
    std::size_t samples = 0;
    bool empty() const { return samples == 0; }
  };
  struct Basis {
    std::vector<Mat> activation_vectors, gradient_vectors;
    std::vector<Eigen::VectorXd> activation_values, gradient_values;
    bool ready = false;
  };

  KroneckerBase(const char* name, std::vector<LinearLayer> layers, std::size_t dimension, Scalar damping,
                const KfacOptions& options)
      : name_(name),
        dimension_(checked_dimension(name, dimension)),
        damping_(checked_damping(name, damping)),
        options_(checked_options(name, options)),
        layers_(std::move(layers)),
        diagonal_indices_(checked_layers(name, layers_, dimension_)) {
    if (layers_.empty())
      throw InvalidArgument(std::string(name) + ": the model lists no linear layers; a Kronecker-factored "
                                                "estimator needs at least one (use DiagonalFisher otherwise)");
  }

  static KfacOptions checked_options(const char* who, const KfacOptions& o) {
    if (!std::isfinite(o.relative_damping) || o.relative_damping < 0.0)
      throw InvalidArgument(std::string(who) + ": relative_damping must be a finite number >= 0, got " +
                            number_to_string(o.relative_damping));
    return o;
  }

  Eigen::Index in_aug(std::size_t l) const {
    return static_cast<Eigen::Index>(layers_[l].in_features + (layers_[l].has_bias ? 1 : 0));
  }
  Eigen::Index out(std::size_t l) const { return static_cast<Eigen::Index>(layers_[l].out_features); }

  template <LinearLayerModel M>
  void check_model(const char* who, const M& model, std::size_t num_samples) const {
    if (model.num_parameters() != dimension_)
      throw InvalidArgument(std::string(who) + ": the model has " + std::to_string(model.num_parameters()) +
                            " parameters but the estimator was built for " + std::to_string(dimension_) +
                            "; build the estimator from this model");
    if (!same_layers(model.linear_layers(), layers_))
      throw InvalidArgument(std::string(who) + ": the model's linear_layers() differ from the layers the "
                                               "estimator was built with; build the estimator from this model");
    if (num_samples == 0)
      throw InvalidArgument(std::string(who) + ": no samples given (m = 0); pass at least one");
  }
  static void check_collection(const char* who, const GradientCollection& how) {
    if (how.kind == FisherKind::monte_carlo && how.samples_per_input == 0)
      throw InvalidArgument(std::string(who) + ": samples_per_input must be at least 1");
  }
  static std::size_t draws(const GradientCollection& how) {
    return how.kind == FisherKind::monte_carlo ? how.samples_per_input : 1;
  }
  static CurvatureTargets targets(const GradientCollection& how) {
    return how.kind == FisherKind::monte_carlo ? CurvatureTargets::sampled : CurvatureTargets::observed;
  }

  FactorSums zero_factor_sums() const {
    FactorSums f;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      f.activation.push_back(Eigen::MatrixXd::Zero(in_aug(l), in_aug(l)));
      f.gradient.push_back(Eigen::MatrixXd::Zero(out(l), out(l)));
    }
    f.positions.assign(layers_.size(), 0);
    return f;
  }

  // Collects the factor sums (and, with a non-null `squares`, the diagonal block's Σ g̃²) of one pass.
  class FactorVisitor final : public LinearLayerVisitor<Scalar> {
   public:
    FactorVisitor(const KroneckerBase& owner, FactorSums& sums, Eigen::VectorXd* squares)
        : owner_(owner),
          sums_(sums),
          squares_(squares),
          scratch_a_(owner.layers_.size()),
          scratch_g_(owner.layers_.size()),
          input_sums_(owner.layers_.size()) {}
    void on_layer(const LinearLayerBatch<Scalar>& b) override {
      const std::size_t l = b.layer;
      const LinearLayer& info = owner_.layers_.at(l);
      const Eigen::Index in = static_cast<Eigen::Index>(info.in_features), n = b.activations.cols();
      if (b.activations.rows() != in || b.output_gradients.rows() != static_cast<Eigen::Index>(info.out_features) ||
          b.output_gradients.cols() != n)
        throw InvalidArgument(std::string(owner_.name_) + ": the model handed layer '" + info.name +
                              "' statistics of the wrong shape; its visit_linear_layers disagrees with linear_layers()");
      if (n == 0) return;
      // Σ aaᵀ and Σ δδᵀ by symmetric rank-n updates of the lower triangles (float: each visit's products
      // summed in float, then added into the double sums); the bias row/column of A is Σ a and the count n.
      update(sums_.activation[l].topLeftCorner(in, in), b.activations, scratch_a_[l]);
      update(sums_.gradient[l], b.output_gradients, scratch_g_[l]);
      if (info.has_bias) {
        // Σ a reaches the bias row of A in flush(): added per batch into that strided row (one cache line
        // per entry) it cost more than the layer's rank update. Same bits: each entry is summed left to
        // right over the columns in Scalar, as Eigen's coefficient-wise row sum did (its packet path,
        // taken for a contiguous destination, adds in another order), then added in batch order.
        if (input_sums_[l].size() != in) input_sums_[l] = Eigen::VectorXd::Zero(in);
        column_sum_ = b.activations.col(0);
        for (Eigen::Index c = 1; c < n; ++c) column_sum_ += b.activations.col(c);
        input_sums_[l] += column_sum_.template cast<double>();
        sums_.activation[l](in, in) += static_cast<double>(n);
      }
      sums_.positions[l] += static_cast<std::size_t>(n);
    }
    /// Adds the bias rows' Σ a into the sums; call once after the visits (the sums' rows start at 0).
    void flush() {
      for (std::size_t l = 0; l < input_sums_.size(); ++l)
        if (input_sums_[l].size() != 0) {
          const Eigen::Index in = input_sums_[l].size();
          sums_.activation[l].row(in).head(in) += input_sums_[l].transpose();
          input_sums_[l].setZero();
        }
    }
    bool wants_sample_gradients() const override { return squares_ != nullptr; }
    bool wants_linear_layer_scores() const override { return false; }  // squares_ reads the diagonal block only
    void on_sample_gradient(std::size_t, std::span<const Scalar> score) override {
      for (std::size_t k = 0; k < owner_.diagonal_indices_.size(); ++k) {
        const double x = static_cast<double>(score[static_cast<std::size_t>(owner_.diagonal_indices_[k])]);
        (*squares_)[static_cast<Eigen::Index>(k)] += x * x;
      }
    }

   private:
    // Only the lower triangles are touched (the upper ones of the sums stay 0).
    template <class Sum, class Columns>
    void update(Sum&& sum, const Columns& columns, Mat& scratch) {
      if constexpr (std::is_same_v<Scalar, double>) {
        sum.template selfadjointView<Eigen::Lower>().rankUpdate(columns);
      } else if (columns.rows() <= detail::kFactorTileMaxRows) {
        // in registers, added into the double sum directly (detail/fisher_kernels.hpp): Eigen's rank
        // update needs a zeroed float scratch and a second pass to add it, which cost as much as the
        // update itself for a window's 64 columns (issue 14)
        detail::accumulate_lower_gram(columns.data(), columns.outerStride(), columns.rows(), columns.cols(), sum.data(),
                                      sum.outerStride(), pad_);
      } else {
        if (scratch.rows() != columns.rows()) scratch.resize(columns.rows(), columns.rows());
        scratch.template triangularView<Eigen::Lower>().setZero();
        scratch.template selfadjointView<Eigen::Lower>().rankUpdate(columns);
        sum.template triangularView<Eigen::Lower>() += scratch.template cast<double>();
      }
    }
    const KroneckerBase& owner_;
    FactorSums& sums_;
    Eigen::VectorXd* squares_;
    std::vector<Mat> scratch_a_, scratch_g_;  // per layer, float layers wider than kFactorTileMaxRows only
    std::vector<float> pad_;                  // a layer's columns padded to whole registers (float tiles)
    std::vector<Eigen::VectorXd> input_sums_;  // per layer with bias: Σ a since the last flush()
    Vector<Scalar> column_sum_;
  };

  // The blocked schedule of the empirical passes: n samples in fixed blocks of kFactorBlock; up to
  // num_threads() blocks at a time, each run(part, begin, count) into a part that reset(part) has zeroed
  // (a part's storage is kept from block to block: fresh sums for every block cost page faults), then
  // the parts added into the total in block order by all the workers at once: add(part, share, shares)
  // adds the share-th of `shares` disjoint slices of a part, and each worker adds its slice of every part
  // in block order. Each total entry gets the same additions in the same order whatever the thread
  // count, so the result does not depend on it, bitwise.
  template <class Part, class Reset, class Run, class Add>
  void blocked_pass(std::size_t n, Reset reset, Run run, Add add) const {
    const std::size_t blocks = (n + kFactorBlock - 1) / kFactorBlock;
    const std::size_t workers = std::min(detail::resolve_threads(num_threads_), blocks);
    std::vector<Part> parts(workers);
    for (std::size_t first = 0; first < blocks; first += workers) {
      const std::size_t count = std::min(workers, blocks - first);
      detail::parallel_for(count, count, [&](std::size_t i, std::size_t) {
        reset(parts[i]);
        const std::size_t begin = (first + i) * kFactorBlock;
        run(parts[i], begin, std::min(kFactorBlock, n - begin));
      });
      detail::parallel_for(count, count, [&](std::size_t share, std::size_t) {
        for (std::size_t i = 0; i < count; ++i) add(parts[i], share, count);
      });
    }
  }

  // dst += src on the lower triangles (the sums' upper triangles stay 0), column by column.
  static void add_lower(Eigen::MatrixXd& dst, const Eigen::MatrixXd& src) {
    const Eigen::Index n = dst.rows();
    for (Eigen::Index j = 0; j < n; ++j) dst.col(j).tail(n - j) += src.col(j).tail(n - j);
  }

  // Runs the factor pass over samples (draws passes for a Monte-Carlo Fisher) into fresh sums.
  template <LinearLayerModel M>
  FactorSums factor_pass(const M& model, std::span<const typename M::Sample> samples, const GradientCollection& how,
                         Eigen::VectorXd* squares) const {
    FactorSums pending = zero_factor_sums();
    if (how.kind == FisherKind::monte_carlo || samples.size() <= kFactorBlock) {
      // one random stream through the samples (Monte Carlo), or a single block: serial
      FactorVisitor visitor(*this, pending, squares);
      std::mt19937_64 rng(how.seed);
      for (std::size_t k = 0; k < draws(how); ++k) model.visit_linear_layers(samples, targets(how), rng, visitor);
      visitor.flush();
    } else {
      struct Part {
        FactorSums sums;
        Eigen::VectorXd squares;
      };
      blocked_pass<Part>(
          samples.size(),
          [&](Part& part) {
            if (part.sums.activation.empty()) {
              part = Part{zero_factor_sums(), squares ? Eigen::VectorXd::Zero(squares->size()) : Eigen::VectorXd()};
              return;
            }
            for (std::size_t l = 0; l < layers_.size(); ++l) {
              part.sums.activation[l].setZero();
              part.sums.gradient[l].setZero();
              part.sums.positions[l] = 0;
            }
            part.squares.setZero();
          },
          [&](Part& part, std::size_t begin, std::size_t count) {
            FactorVisitor visitor(*this, part.sums, squares ? &part.squares : nullptr);
            std::mt19937_64 rng(how.seed);  // not drawn from: the observed targets
            model.visit_linear_layers(samples.subspan(begin, count), targets(how), rng, visitor);
            visitor.flush();
          },
          [&](const Part& part, std::size_t share, std::size_t shares) {
            for (std::size_t job = share; job < 2 * layers_.size(); job += shares) {  // A_0, G_0, A_1, …
              const std::size_t l = job / 2;
              if (job % 2 == 0) {
                add_lower(pending.activation[l], part.sums.activation[l]);
                pending.positions[l] += part.sums.positions[l];
              } else {
                add_lower(pending.gradient[l], part.sums.gradient[l]);
              }
            }
            if (squares && share == 0) *squares += part.squares;
          });
    }
    pending.samples = samples.size() * draws(how);
    bool finite = true;
    for (std::size_t l = 0; l < layers_.size(); ++l)
      finite = finite && pending.activation[l].allFinite() && pending.gradient[l].allFinite();
    if (!finite || (squares != nullptr && !squares->allFinite()))
      throw NonFiniteError(std::string(name_) + ": a layer input or output gradient contains NaN or Inf; nothing "
                                                "was added. Check the model's parameters and the data");
    return pending;
  }

  void add_factor_sums(FactorSums&& pending) {
    if (factors_.empty()) {
      factors_ = std::move(pending);
      return;
    }
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      factors_.activation[l] += pending.activation[l];
      factors_.gradient[l] += pending.gradient[l];
      factors_.positions[l] += pending.positions[l];
    }
    factors_.samples += pending.samples;
  }

  // Eigendecomposes every layer's A and G (double) into a new Basis; throws before changing anything.
  Basis eigendecompose() const {
    require_factors("the eigendecomposition");
    Basis basis;
    const std::size_t L = layers_.size();
    for (std::size_t l = 0; l < L; ++l)
      if (factors_.positions[l] == 0)
        throw InvalidArgument(std::string(name_) + ": layer '" + layers_[l].name +
                              "' received no positions from the model; its factors are undefined");
    basis.activation_vectors.resize(L);
    basis.gradient_vectors.resize(L);
    basis.activation_values.resize(L);
    basis.gradient_values.resize(L);
    // 2L independent symmetric eigenproblems (each the same bits on any thread), the largest first, each
    // worker taking the next one left: a fixed round-robin split gave one thread all the A factors and
    // the other all the G factors (a 16 % imbalance on the demo model)
    std::vector<std::size_t> order(2 * L);
    for (std::size_t job = 0; job < order.size(); ++job) order[job] = job;
    const auto size_of = [&](std::size_t job) { return job % 2 == 0 ? in_aug(job / 2) : out(job / 2); };
    // (std::sort with the job index as tie-break: std::stable_sort's temporary buffer is deprecated in
    // the libstdc++ that Clang 19 -Werror builds against)
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return size_of(a) != size_of(b) ? size_of(a) > size_of(b) : a < b;
    });
    std::atomic<std::size_t> next{0};
    const std::size_t workers = std::min(detail::resolve_threads(num_threads_), order.size());
    detail::parallel_for(workers, workers, [&](std::size_t, std::size_t) {
      for (std::size_t k = next.fetch_add(1); k < order.size(); k = next.fetch_add(1)) eigendecompose_job(basis, order[k]);
    });
    basis.ready = true;
    return basis;
  }

  // Eigendecomposes factor job = 2l (A_l) or 2l + 1 (G_l) of layer l into basis.
  void eigendecompose_job(Basis& basis, std::size_t job) const {
    const std::size_t l = job / 2;
    const bool activation = job % 2 == 0;
    const Eigen::MatrixXd m = activation ? activation_factor(l) : gradient_factor(l);
    Eigen::VectorXd values;
    Eigen::MatrixXd vectors;
    if (!detail::symmetric_eigen(m, values, vectors))
      throw NumericalError(std::string(name_) + ": the symmetric eigensolver did not converge on the " +
                           (activation ? "activation" : "gradient") + " factor of layer '" + layers_[l].name +
                           "'; check the model's activations for extreme scales");
    (activation ? basis.activation_vectors : basis.gradient_vectors)[l] = vectors.template cast<Scalar>();
    (activation ? basis.activation_values : basis.gradient_values)[l] = values.cwiseMax(0.0);
  }

  // [W b] of layer l read from a flat vector, as an out×(in+1) (or out×in) matrix.
  template <class Flat>
  void gather(std::size_t l, const Flat& v, Mat& m) const {
    const LinearLayer& info = layers_[l];
    const auto o = static_cast<Eigen::Index>(info.out_features), in = static_cast<Eigen::Index>(info.in_features);
    m.resize(o, in_aug(l));
    const Scalar* w = v.data() + info.weight_offset;
    if (info.weight_order == WeightOrder::column_major) m.leftCols(in) = Eigen::Map<const Mat>(w, o, in);
    else m.leftCols(in) = Eigen::Map<const Mat>(w, in, o).transpose();
    if (info.has_bias) m.col(in) = Eigen::Map<const Vector<Scalar>>(v.data() + info.bias_offset, o);
  }
  template <class Flat>
  void scatter(std::size_t l, const Mat& m, Flat& v) const {
    const LinearLayer& info = layers_[l];
    const auto o = static_cast<Eigen::Index>(info.out_features), in = static_cast<Eigen::Index>(info.in_features);
    Scalar* w = v.data() + info.weight_offset;
    if (info.weight_order == WeightOrder::column_major) Eigen::Map<Mat>(w, o, in) = m.leftCols(in);
    else Eigen::Map<Mat>(w, in, o) = m.leftCols(in).transpose();
    if (info.has_bias) Eigen::Map<Vector<Scalar>>(v.data() + info.bias_offset, o) = m.col(in);
  }

  // out = F^p v given each layer's eigenvalue functor σ_l(j, i) (in the U_G/U_A basis).
  template <class LayerEigenvalue>
  void apply_spectral(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out,
                      LayerEigenvalue&& eigenvalue) const {
    check_power_supported(name_, supports_power(power), power);
    check_apply(name_, finalized_, dimension_, v, out);
    Mat block, rotated, product;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const Mat& ua = basis_.activation_vectors[l];
      const Mat& ug = basis_.gradient_vectors[l];
      const double lambda = layer_damping_unchecked(l);
      gather(l, v, block);
      product.noalias() = ug.transpose() * block;
      rotated.noalias() = product * ua;
      for (Eigen::Index i = 0; i < rotated.cols(); ++i)
        for (Eigen::Index j = 0; j < rotated.rows(); ++j)
          rotated(j, i) = static_cast<Scalar>(static_cast<double>(rotated(j, i)) *
                                              kronecker_power(lambda, eigenvalue(l, j, i), power));
      product.noalias() = ug * rotated;
      block.noalias() = product * ua.transpose();
      scatter(l, block, out);
    }
    const double lambda_d = static_cast<double>(damping_) + options_.relative_damping * diagonal_mean_value_;
    for (std::size_t k = 0; k < diagonal_indices_.size(); ++k) {
      const Eigen::Index at = diagonal_indices_[k];
      out[at] = static_cast<Scalar>(static_cast<double>(v[at]) *
                                    kronecker_power(lambda_d, diagonal_mean_[static_cast<Eigen::Index>(k)], power));
    }
  }

  double layer_damping_unchecked(std::size_t l) const {
    return static_cast<double>(damping_) + options_.relative_damping * layer_mean_[l];
  }

  void set_diagonal(const Eigen::VectorXd& squares, std::size_t m) {
    diagonal_mean_ = squares / static_cast<double>(m);
    diagonal_mean_value_ = diagonal_mean_.size() > 0 ? diagonal_mean_.mean() : 0.0;
  }

  std::size_t base_memory_bytes() const {
    std::size_t doubles = static_cast<std::size_t>(diagonal_mean_.size() + diagonal_squares_.size()), scalars = 0;
    for (std::size_t l = 0; l < factors_.activation.size(); ++l)
      doubles += static_cast<std::size_t>(factors_.activation[l].size() + factors_.gradient[l].size());
    for (std::size_t l = 0; l < basis_.activation_vectors.size(); ++l) {
      scalars += static_cast<std::size_t>(basis_.activation_vectors[l].size() + basis_.gradient_vectors[l].size());
      doubles += static_cast<std::size_t>(basis_.activation_values[l].size() + basis_.gradient_values[l].size());
    }
    return doubles * sizeof(double) + scalars * sizeof(Scalar) +
           diagonal_indices_.size() * sizeof(Eigen::Index);
  }

  const FactorSums& require_factors(const char* what) const {
    if (factors_.empty())
      throw StateError(std::string(name_) + ": " + what + " needs the factor statistics; call accumulate(model, "
                                                          "samples) first");
    return factors_;
  }
  const Basis& require_basis(const char* what) const {
    if (!basis_.ready)
      throw StateError(std::string(name_) + ": " + what + " needs the factor eigenbasis; call finalize() (K-FAC) "
                                                          "or fit_eigenbasis() / accumulate() (EK-FAC) first");
    return basis_;
  }
  void require_finalized(const char* what) const {
    if (!finalized_) throw StateError(std::string(name_) + ": " + what + " is defined after finalize(); call it first");
  }

  static Eigen::MatrixXd symmetric(const Eigen::MatrixXd& lower, double scale) {
    Eigen::MatrixXd m = lower.template selfadjointView<Eigen::Lower>();
    return m * scale;
  }

  const char* name_;
  std::size_t dimension_;
  Scalar damping_;
  KfacOptions options_;
  std::vector<LinearLayer> layers_;
  std::vector<Eigen::Index> diagonal_indices_;
  FactorSums factors_;
  Basis basis_;
  Eigen::VectorXd diagonal_squares_;  // Σ g̃² over the diagonal block
  std::size_t diagonal_samples_ = 0;
  Eigen::VectorXd diagonal_mean_;     // (1/m) Σ g̃² (finalized)
  double diagonal_mean_value_ = 0.0;
  std::vector<double> layer_mean_;    // mean eigenvalue of each undamped layer block (finalized)
  bool finalized_ = false;
  std::size_t num_threads_ = 1;
};

}  // namespace detail

/// K-FAC (Martens & Grosse 2015): each linear layer's Fisher block is A ⊗ G (vec(W) column-major, the
/// bias as the last column of [W b]), the other parameters a diagonal, and
///   F^p v = per layer U_G [(sG sAᵀ + λ_l)^∘p ∘ (U_Gᵀ V U_A)] U_Aᵀ,   V = [W b] of v,
/// exact for the K-FAC matrix and every real p. Statistics come from the model's layers
/// (accumulate(model, samples, how), or make_kfac_fisher); add_gradient/add_gradients throw StateError,
/// because Kronecker factors cannot be recovered from flat gradients.
template <SupportedScalar ScalarT>
class KfacFisher : public detail::KroneckerBase<ScalarT> {
  using Base = detail::KroneckerBase<ScalarT>;

 public:
  using Scalar = ScalarT;

  /// layers: the model's linear_layers(); dimension: num_parameters(); damping λ > 0.
  KfacFisher(std::vector<LinearLayer> layers, std::size_t dimension, Scalar damping, const KfacOptions& options = {})
      : Base("KfacFisher", std::move(layers), dimension, damping, options) {}
  template <LinearLayerModel M>
    requires std::same_as<typename M::Scalar, ScalarT>
  KfacFisher(const M& model, Scalar damping, const KfacOptions& options = {})
      : KfacFisher(model.linear_layers(), model.num_parameters(), damping, options) {}

  /// Adds the statistics of `samples`: one forward + backward per sample and draw (how.kind: empirical =
  /// observed targets, monte_carlo = how.samples_per_input draws per sample from rng(how.seed)), the
  /// factor sums and the diagonal block's Σ g̃². Strong guarantee: on any exception nothing is added.
  /// Throws InvalidArgument (a different model, no samples), NonFiniteError (NaN/Inf statistics).
  template <LinearLayerModel M>
    requires std::same_as<typename M::Scalar, ScalarT>
  void accumulate(const M& model, std::span<const typename M::Sample> samples, const GradientCollection& how) {
    this->check_model("KfacFisher::accumulate", model, samples.size());
    Base::check_collection("KfacFisher::accumulate", how);
    Eigen::VectorXd squares = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(this->diagonal_indices_.size()));
    auto pending = this->factor_pass(model, samples, how, this->diagonal_indices_.empty() ? nullptr : &squares);
    // commit (nothing below throws except allocation in the first-time move, which cannot fail)
    const std::size_t m = pending.samples;
    if (this->diagonal_squares_.size() == 0) this->diagonal_squares_ = std::move(squares);
    else this->diagonal_squares_ += squares;
    this->diagonal_samples_ += m;
    this->add_factor_sums(std::move(pending));
    this->finalized_ = false;
  }

  /// Not available: K-FAC's factors are built from layer inputs and output gradients, which a flat
  /// gradient does not carry. Throws StateError; use accumulate(model, samples, how) or make_kfac_fisher.
  void add_gradient(Eigen::Ref<const Vector<Scalar>>) { reject_flat(); }
  void add_gradients(Eigen::Ref<const Matrix<Scalar>>) { reject_flat(); }

  /// Eigendecomposes A_l and G_l. Throws InvalidArgument when nothing was accumulated, NumericalError when
  /// an eigensolver fails (unchanged then).
  void finalize() {
    if (this->factors_.empty())
      throw InvalidArgument("KfacFisher::finalize: no statistics were accumulated (m = 0); call "
                            "accumulate(model, samples, how) first");
    auto basis = this->eigendecompose();
    std::vector<double> means;
    for (std::size_t l = 0; l < this->layers_.size(); ++l)
      means.push_back(basis.activation_values[l].mean() * basis.gradient_values[l].mean());
    this->basis_ = std::move(basis);
    this->layer_mean_ = std::move(means);
    this->set_diagonal(this->diagonal_squares_, this->diagonal_samples_);
    this->finalized_ = true;
  }

  /// out = F^p v (every finite p). out must have size d and not alias v.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    this->apply_spectral(power, v, out, [this](std::size_t l, Eigen::Index j, Eigen::Index i) {
      return this->basis_.gradient_values[l][j] * this->basis_.activation_values[l][i];
    });
  }

  /// tr of the undamped matrix: Σ_l tr(A_l)·tr(G_l) + Σ diagonal. After finalize().
  double undamped_trace() const {
    this->require_finalized("undamped_trace");
    double t = this->diagonal_mean_.sum();
    for (std::size_t l = 0; l < this->layers_.size(); ++l)
      t += this->basis_.activation_values[l].sum() * this->basis_.gradient_values[l].sum();
    return t;
  }

  /// Samples (× draws) accumulated: m.
  std::size_t num_gradients() const { return this->factors_.samples; }
  std::size_t memory_bytes() const { return this->base_memory_bytes(); }

  /// Forgets every statistic (layers, dimension, damping and options are kept).
  void clear() {
    this->factors_ = {};
    this->basis_ = {};
    this->diagonal_squares_.resize(0);
    this->diagonal_samples_ = 0;
    this->diagonal_mean_.resize(0);
    this->layer_mean_.clear();
    this->finalized_ = false;
  }

 private:
  [[noreturn]] static void reject_flat() {
    throw StateError("KfacFisher::add_gradient(s): K-FAC's Kronecker factors come from each layer's inputs and "
                     "output gradients, which a flat gradient does not carry; call accumulate(model, samples, how) "
                     "or make_kfac_fisher(model, samples, damping), or use EkfacFisher, whose eigenvalue stage "
                     "accepts flat gradients");
  }
};

/// EK-FAC (George et al. 2018): K-FAC's eigenbasis U_A ⊗ U_G with the eigenvalues re-estimated as the
/// second moments of the per-sample layer gradients in that basis, Λ_l = (1/m)Σᵢ (U_Gᵀ G̃ᵢ U_A)∘² — the
/// exact diagonal of the (per-sample) Fisher block in the Kronecker eigenbasis; F^p v as for K-FAC with
/// Λ_l in place of sG sAᵀ. Protocol: accumulate_factors → fit_eigenbasis → accumulate_eigenvalues and/or
/// add_gradient(s) (flat per-sample scores g̃, scaled as the concept's rule says) → finalize; accumulate()
/// does the first three with one call (same seed for both passes, so the same targets).
template <SupportedScalar ScalarT>
class EkfacFisher : public detail::KroneckerBase<ScalarT> {
  using Base = detail::KroneckerBase<ScalarT>;
  using Mat = Matrix<ScalarT>;

 public:
  using Scalar = ScalarT;

  EkfacFisher(std::vector<LinearLayer> layers, std::size_t dimension, Scalar damping, const KfacOptions& options = {})
      : Base("EkfacFisher", std::move(layers), dimension, damping, options) {}
  template <LinearLayerModel M>
    requires std::same_as<typename M::Scalar, ScalarT>
  EkfacFisher(const M& model, Scalar damping, const KfacOptions& options = {})
      : EkfacFisher(model.linear_layers(), model.num_parameters(), damping, options) {}

  /// Stage 1: adds factor statistics (as KfacFisher::accumulate, without the diagonal block). Invalidates
  /// the eigenbasis and every eigenvalue statistic. Strong guarantee.
  template <LinearLayerModel M>
    requires std::same_as<typename M::Scalar, ScalarT>
  void accumulate_factors(const M& model, std::span<const typename M::Sample> samples, const GradientCollection& how) {
    this->check_model("EkfacFisher::accumulate_factors", model, samples.size());
    Base::check_collection("EkfacFisher::accumulate_factors", how);
    auto pending = this->factor_pass(model, samples, how, nullptr);
    this->add_factor_sums(std::move(pending));
    reset_eigenvalues();
    this->basis_ = {};
  }

  /// Stage 2: eigendecomposes A_l and G_l (the Kronecker eigenbasis); clears the eigenvalue statistics.
  /// Throws StateError without factor statistics, NumericalError if an eigensolver fails (unchanged then).
  void fit_eigenbasis() {
    auto basis = this->eigendecompose();
    this->basis_ = std::move(basis);
    reset_eigenvalues();
  }

  /// Stage 3 from the model: per sample i and layer l, Λ_l += (U_Gᵀ G̃ᵢ U_A)∘² with G̃ᵢ = Σₜ δₜ[aₜ;1]ᵀ over
  /// the sample's positions, and the diagonal block's g̃². Strong guarantee. StateError before fit_eigenbasis().
  template <LinearLayerModel M>
    requires std::same_as<typename M::Scalar, ScalarT>
  void accumulate_eigenvalues(const M& model, std::span<const typename M::Sample> samples,
                              const GradientCollection& how) {
    this->check_model("EkfacFisher::accumulate_eigenvalues", model, samples.size());
    Base::check_collection("EkfacFisher::accumulate_eigenvalues", how);
    require_basis_for("accumulate_eigenvalues");
    EigenvalueSums pending = zero_eigenvalue_sums();
    if (how.kind == FisherKind::monte_carlo || samples.size() <= Base::kFactorBlock) {
      EigenvalueVisitor visitor(*this, pending);
      std::mt19937_64 rng(how.seed);
      for (std::size_t k = 0; k < Base::draws(how); ++k) model.visit_linear_layers(samples, Base::targets(how), rng, visitor);
    } else {  // fixed blocks, the same bits for every thread count (set_num_threads)
      this->template blocked_pass<EigenvalueSums>(
          samples.size(),
          [&](EigenvalueSums& part) {
            if (part.eigenvalues.empty()) {
              part = zero_eigenvalue_sums();
              return;
            }
            for (auto& e : part.eigenvalues) e.setZero();
            part.squares.setZero();
            part.samples = 0;
          },
          [&](EigenvalueSums& part, std::size_t begin, std::size_t count) {
            EigenvalueVisitor visitor(*this, part);
            std::mt19937_64 rng(how.seed);  // not drawn from: the observed targets
            model.visit_linear_layers(samples.subspan(begin, count), Base::targets(how), rng, visitor);
          },
          [&](const EigenvalueSums& part, std::size_t share, std::size_t shares) {
            for (std::size_t l = share; l < this->layers_.size(); l += shares) pending.eigenvalues[l] += part.eigenvalues[l];
            if (share == 0) pending.squares += part.squares;
          });
    }
    pending.samples = samples.size() * Base::draws(how);
    commit(std::move(pending), "accumulate_eigenvalues");
  }

  /// accumulate_factors + fit_eigenbasis + accumulate_eigenvalues on the same samples and seed.
  template <LinearLayerModel M>
    requires std::same_as<typename M::Scalar, ScalarT>
  void accumulate(const M& model, std::span<const typename M::Sample> samples, const GradientCollection& how) {
    accumulate_factors(model, samples, how);
    fit_eigenbasis();
    accumulate_eigenvalues(model, samples, how);
  }

  /// Stage 3 from flat per-sample scores g̃ (size d; the concept's scaling: √T·∇loss for a mean over T
  /// tokens). StateError before fit_eigenbasis(); InvalidArgument/NonFiniteError on bad input (unchanged).
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    add_gradients(Eigen::Map<const Mat>(gradient.data(), gradient.size(), 1));
  }
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    detail::check_gradients("EkfacFisher::add_gradients", gradients, this->dimension_);
    require_basis_for("add_gradients");
    EigenvalueSums pending = zero_eigenvalue_sums();
    Mat block, product, rotated;
    for (Eigen::Index c = 0; c < gradients.cols(); ++c) {
      const auto g = gradients.col(c);
      for (std::size_t l = 0; l < this->layers_.size(); ++l) {
        this->gather(l, g, block);
        product.noalias() = this->basis_.gradient_vectors[l].transpose() * block;
        rotated.noalias() = product * this->basis_.activation_vectors[l];
        pending.eigenvalues[l] += rotated.template cast<double>().cwiseAbs2();
      }
      for (std::size_t k = 0; k < this->diagonal_indices_.size(); ++k) {
        const double x = static_cast<double>(g[this->diagonal_indices_[k]]);
        pending.squares[static_cast<Eigen::Index>(k)] += x * x;
      }
    }
    pending.samples = static_cast<std::size_t>(gradients.cols());
    commit(std::move(pending), "add_gradients");
  }

  /// Forms Λ_l = sums/m and the diagonal. StateError before fit_eigenbasis(); InvalidArgument when no
  /// eigenvalue statistics were added.
  void finalize() {
    require_basis_for("finalize");
    if (eigen_.samples == 0)
      throw InvalidArgument("EkfacFisher::finalize: no eigenvalue statistics were added (m = 0); call "
                            "accumulate_eigenvalues(model, samples, how) or add_gradients(scores) first");
    std::vector<Eigen::MatrixXd> values;
    std::vector<double> means;
    for (std::size_t l = 0; l < this->layers_.size(); ++l) {
      values.push_back(eigen_.eigenvalues[l] / static_cast<double>(eigen_.samples));
      means.push_back(values.back().mean());
    }
    eigenvalues_ = std::move(values);
    this->layer_mean_ = std::move(means);
    this->set_diagonal(eigen_.squares, eigen_.samples);
    this->finalized_ = true;
  }

  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    this->apply_spectral(power, v, out,
                         [this](std::size_t l, Eigen::Index j, Eigen::Index i) { return eigenvalues_[l](j, i); });
  }

  /// Λ_l (out × in(+1)): entry (j, i) belongs to the eigenvector u_A,i ⊗ u_G,j. After finalize().
  const Eigen::MatrixXd& eigenvalues(std::size_t l) const {
    this->require_finalized("eigenvalues");
    return eigenvalues_.at(l);
  }

  double undamped_trace() const {
    this->require_finalized("undamped_trace");
    double t = this->diagonal_mean_.sum();
    for (const auto& values : eigenvalues_) t += values.sum();
    return t;
  }

  /// Samples (× draws) in the eigenvalue statistics: m.
  std::size_t num_gradients() const { return eigen_.samples; }
  std::size_t memory_bytes() const {
    std::size_t doubles = 0;
    for (const auto& e : eigen_.eigenvalues) doubles += static_cast<std::size_t>(e.size());
    for (const auto& e : eigenvalues_) doubles += static_cast<std::size_t>(e.size());
    return this->base_memory_bytes() + (doubles + static_cast<std::size_t>(eigen_.squares.size())) * sizeof(double);
  }

  void clear() {
    this->factors_ = {};
    this->basis_ = {};
    reset_eigenvalues();
  }

 private:
  struct EigenvalueSums {
    std::vector<Eigen::MatrixXd> eigenvalues;  // Σ (U_Gᵀ G̃ U_A)∘² per layer
    Eigen::VectorXd squares;                   // Σ g̃² on the diagonal block
    std::size_t samples = 0;
  };

  class EigenvalueVisitor final : public LinearLayerVisitor<Scalar> {
   public:
    EigenvalueVisitor(const EkfacFisher& owner, EigenvalueSums& sums) : owner_(owner), sums_(sums) {}
    void on_layer(const LinearLayerBatch<Scalar>& b) override {
      const std::size_t l = b.layer;
      const LinearLayer& info = owner_.layers_.at(l);
      const auto in = static_cast<Eigen::Index>(info.in_features);
      if (b.activations.rows() != in || b.output_gradients.rows() != static_cast<Eigen::Index>(info.out_features) ||
          b.output_gradients.cols() != b.activations.cols())
        throw InvalidArgument("EkfacFisher: the model handed layer '" + info.name +
                              "' statistics of the wrong shape; its visit_linear_layers disagrees with linear_layers()");
      const Mat& ua = owner_.basis_.activation_vectors[l];
      const Mat& ug = owner_.basis_.gradient_vectors[l];
      // Rotate every position once: δ' = U_Gᵀ δ, a' = U_Aᵀ [a; 1].
      delta_.noalias() = ug.transpose() * b.output_gradients;
      act_.noalias() = ua.topRows(in).transpose() * b.activations;
      if (info.has_bias) act_.colwise() += ua.row(in).transpose();
      const auto& cols = b.sample_columns;
      bool one_each = true;
      for (std::size_t j = 0; j + 1 < cols.size(); ++j) one_each = one_each && cols[j + 1] - cols[j] == 1;
      auto& sum = sums_.eigenvalues[l];
      if (one_each && cols.size() > 1) {
        // One position per sample: (δ'a'ᵀ)∘² = (δ'∘²)(a'∘²)ᵀ, so the whole batch is one GEMM.
        const Eigen::Index first = cols.front(), k = cols.back() - cols.front();
        square_.noalias() = delta_.middleCols(first, k).cwiseAbs2() * act_.middleCols(first, k).cwiseAbs2().transpose();
        sum += square_.template cast<double>();
      } else {
        for (std::size_t j = 0; j + 1 < cols.size(); ++j) {
          const Eigen::Index c = cols[j], k = cols[j + 1] - cols[j];
          square_.noalias() = delta_.middleCols(c, k) * act_.middleCols(c, k).transpose();
          sum += square_.template cast<double>().cwiseAbs2();
        }
      }
    }
    bool wants_sample_gradients() const override { return !owner_.diagonal_indices_.empty(); }
    bool wants_linear_layer_scores() const override { return false; }  // the diagonal block only
    void on_sample_gradient(std::size_t, std::span<const Scalar> score) override {
      for (std::size_t k = 0; k < owner_.diagonal_indices_.size(); ++k) {
        const double x = static_cast<double>(score[static_cast<std::size_t>(owner_.diagonal_indices_[k])]);
        sums_.squares[static_cast<Eigen::Index>(k)] += x * x;
      }
    }

   private:
    const EkfacFisher& owner_;
    EigenvalueSums& sums_;
    Mat delta_, act_, square_;
  };

  EigenvalueSums zero_eigenvalue_sums() const {
    EigenvalueSums s;
    for (std::size_t l = 0; l < this->layers_.size(); ++l)
      s.eigenvalues.push_back(Eigen::MatrixXd::Zero(this->out(l), this->in_aug(l)));
    s.squares = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(this->diagonal_indices_.size()));
    return s;
  }

  void commit(EigenvalueSums&& pending, const char* who) {
    bool finite = pending.squares.allFinite();
    for (const auto& e : pending.eigenvalues) finite = finite && e.allFinite();
    if (!finite)
      throw NonFiniteError(std::string("EkfacFisher::") + who + ": a statistic contains NaN or Inf; nothing was "
                                                               "added. Check the model's parameters and the data");
    if (eigen_.samples == 0) {
      eigen_ = std::move(pending);
    } else {
      for (std::size_t l = 0; l < eigen_.eigenvalues.size(); ++l) eigen_.eigenvalues[l] += pending.eigenvalues[l];
      eigen_.squares += pending.squares;
      eigen_.samples += pending.samples;
    }
    this->finalized_ = false;
  }

  void reset_eigenvalues() {
    eigen_ = {};
    eigenvalues_.clear();
    this->diagonal_mean_.resize(0);
    this->layer_mean_.clear();
    this->finalized_ = false;
  }

  void require_basis_for(const char* what) const {
    if (!this->basis_.ready)
      throw StateError(std::string("EkfacFisher::") + what + ": the Kronecker eigenbasis is not fitted; call "
                                                            "accumulate_factors() and fit_eigenbasis() (or accumulate()) first");
  }

  EigenvalueSums eigen_;
  std::vector<Eigen::MatrixXd> eigenvalues_;
};

static_assert(FisherEstimator<KfacFisher<float>> && FisherEstimator<KfacFisher<double>>);
static_assert(FisherEstimator<EkfacFisher<float>> && FisherEstimator<EkfacFisher<double>>);

/// The Monte-Carlo (true) Fisher with one draw per sample: the default statistics for K-FAC/EK-FAC.
inline GradientCollection kfac_true_fisher(std::uint64_t seed = 0x5eed, std::size_t draws = 1) {
  GradientCollection how;
  how.kind = FisherKind::monte_carlo;
  how.samples_per_input = draws;
  how.seed = seed;
  return how;
}

/// A finalized K-FAC estimate of the Gauss–Newton matrix of `model` on `samples` (e.g. the retain set):
/// what an unlearner that takes a FisherEstimator needs. Pick λ afterwards with set_damping (e.g.
/// α·undamped_trace()/dimension()) if `damping` was a placeholder.
template <LinearLayerModel M>
KfacFisher<typename M::Scalar> make_kfac_fisher(const M& model, std::span<const typename M::Sample> samples,
                                                typename M::Scalar damping,
                                                const GradientCollection& how = kfac_true_fisher(),
                                                const KfacOptions& options = {}) {
  KfacFisher<typename M::Scalar> fisher(model, damping, options);
  fisher.accumulate(model, samples, how);
  fisher.finalize();
  return fisher;
}

/// A finalized EK-FAC estimate (factors, eigenbasis and eigenvalues from the same samples and seed).
template <LinearLayerModel M>
EkfacFisher<typename M::Scalar> make_ekfac_fisher(const M& model, std::span<const typename M::Sample> samples,
                                                  typename M::Scalar damping,
                                                  const GradientCollection& how = kfac_true_fisher(),
                                                  const KfacOptions& options = {}) {
  EkfacFisher<typename M::Scalar> fisher(model, damping, options);
  fisher.accumulate(model, samples, how);
  fisher.finalize();
  return fisher;
}

}  // namespace fisher_unlearn
