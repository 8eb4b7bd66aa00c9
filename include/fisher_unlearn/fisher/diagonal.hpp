// DiagonalFisher: the diagonal of F = λI + (1/m)Σᵢ gᵢgᵢᵀ, i.e. F_kk = λ + (1/m)Σᵢ g_ik², applied as
// (F^p v)_k = (λ + F̂_kk)^p v_k — exact for every real p for the diagonal matrix (it drops all
// off-diagonal curvature). Cost: O(d) per gradient, O(d) finalize, O(d) per product; memory 3·d doubles
// (sum, mean, and the spare accumulator a batch is written into). Threads: set_num_threads().
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/detail/parallel.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

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
  /// entries whose squares, or the accumulated sums, overflow double, as add_gradients); unchanged then.
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("DiagonalFisher::add_gradient", gradient, dimension_);
    spare_ = sum_of_squares_ + gradient.template cast<double>().cwiseAbs2();
    if (!spare_.allFinite())
      throw NonFiniteError("DiagonalFisher::add_gradient: a gradient has entries whose squares, or whose "
                           "accumulated sums of squares, overflow double; nothing was added. Check the model's "
                           "gradient and the data (or rescale the loss)");
    sum_of_squares_.swap(spare_);
    ++num_gradients_;
    finalized_ = false;
  }

  /// Adds the columns of a d×k matrix. The whole batch is checked before anything is added.
  /// Memory traffic: the gradients are read once, row block by row block (the block's partial sums stay
  /// in L2 across the k columns; blocks of 8192 rows, not 2048, so that each column segment is a long
  /// enough stream for the prefetchers: 0.47 → 0.77 of the streaming ceiling in CPU time for float,
  /// bench_fisher, issue 14), with the finiteness check fused into that pass (a NaN/Inf entry makes
  /// its row's partial sum non-finite). The new sums go to a spare accumulator (read the old sums, write
  /// the new ones: the same traffic as an in-place update) that replaces the old one only once the whole
  /// batch has passed, so a rejected batch changes nothing. Row blocks are independent, so the result is
  /// bitwise the same for every thread count.
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    // Size only (no columns to scan): finiteness is checked inside the accumulation pass below.
    detail::check_gradients("DiagonalFisher::add_gradients", gradients.leftCols(0), dimension_);
    const Eigen::Index k = gradients.cols();
    if (k == 0) return;
    const Eigen::Index d = gradients.rows();
    spare_.resize(d);
    constexpr Eigen::Index block = 8192;
    const std::size_t blocks = static_cast<std::size_t>((d + block - 1) / block);
    std::vector<char> finite(blocks, 1);
    detail::parallel_chunks(
        num_threads_, blocks,
        [&](std::size_t c) {
          const Eigen::Index r = static_cast<Eigen::Index>(c) * block;
          const Eigen::Index b = std::min(block, d - r);
          // Plain loops: the compiler vectorises the float→double conversion, Eigen's cast does not.
          double partial[block];
          const auto col = [&](Eigen::Index j) { return gradients.data() + j * gradients.outerStride() + r; };
          // Eight columns per pass over the partial sums (then four, then one): each entry adds its columns'
          // squares in column order in a register, starting from +0 (+0 + g² = g² exactly), so the bits
          // are those of one column per pass, with the partial block loaded and stored once per eight
          // columns and eight read streams in flight (k = 8: 20–30 % less time than one column per pass,
          // /tmp A/B of 2026-12-07 at -O3 -march=native, d = 2²⁰ and 10⁷, float and double).
          for (Eigen::Index i = 0; i < b; ++i) partial[i] = 0.0;
          Eigen::Index j = 0;
          for (; j + 8 <= k; j += 8) {
            const Scalar* a[8];
            for (int q = 0; q < 8; ++q) a[q] = col(j + q);
            for (Eigen::Index i = 0; i < b; ++i) {
              double x = partial[i];
              for (int q = 0; q < 8; ++q) x += static_cast<double>(a[q][i]) * static_cast<double>(a[q][i]);
              partial[i] = x;
            }
          }
          for (; j + 4 <= k; j += 4) {
            const Scalar *a0 = col(j), *a1 = col(j + 1), *a2 = col(j + 2), *a3 = col(j + 3);
            for (Eigen::Index i = 0; i < b; ++i) {
              double x = partial[i];
              x += static_cast<double>(a0[i]) * static_cast<double>(a0[i]);
              x += static_cast<double>(a1[i]) * static_cast<double>(a1[i]);
              x += static_cast<double>(a2[i]) * static_cast<double>(a2[i]);
              x += static_cast<double>(a3[i]) * static_cast<double>(a3[i]);
              partial[i] = x;
            }
          }
          for (; j < k; ++j) {
            const Scalar* gj = col(j);
            for (Eigen::Index i = 0; i < b; ++i) partial[i] += static_cast<double>(gj[i]) * static_cast<double>(gj[i]);
          }
          const double* old_sum = sum_of_squares_.data() + r;
          double* new_sum = spare_.data() + r;
          // Sums of squares are ≥ 0, so "not ≤ max" is exactly NaN or +Inf (a compare the compiler vectorises).
          int bad = 0;
          for (Eigen::Index i = 0; i < b; ++i) {
            new_sum[i] = old_sum[i] + partial[i];
            bad |= !(new_sum[i] <= std::numeric_limits<double>::max());  // the sum may overflow too
          }
          if (bad) finite[c] = 0;
        },
        16);
    if (std::find(finite.begin(), finite.end(), 0) != finite.end())
      throw NonFiniteError("DiagonalFisher::add_gradients: a gradient contains NaN or Inf (or entries whose "
                           "squares overflow); nothing was added. Check the model's gradient and the data");
    sum_of_squares_.swap(spare_);
    num_gradients_ += static_cast<std::size_t>(k);
    finalized_ = false;
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
  /// NonFiniteError when v has a NaN or Inf entry, NumericalError when an entry of the product overflows
  /// Scalar (out unspecified in both cases: the checks are fused into the one pass).
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("DiagonalFisher::apply_power", supports_power(power), power);
    detail::check_apply_sizes("DiagonalFisher::apply_power", finalized_, dimension_, v, out);
    // One pass over the diagonal, v and out, in row blocks (independent, so any thread count gives the
    // same bits), with the finiteness check of out fused in (separate allFinite() passes over v and out
    // were 2 of the 4 + 8 + 4 + 4 + 4 bytes a float entry moved). A NaN or Inf in v makes its entry of out
    // NaN or Inf (every diagonal entry is finite and ≥ λ > 0), so only a flagged product looks at v again,
    // to say which error it is. The arithmetic is in double, rounded once to Scalar.
    // The common powers (1, −1, −1/2, −1/4) are one fused loop per block (the roots in register-sized chunks):
    // load, widen, max(0)+λ, multiply/divide/sqrt (correctly rounded IEEE operations, so the bits are
    // those of the earlier whole-block Eigen array expressions), round, check. For float it replaced four passes
    // over an L1 buffer (widen, Eigen's array op, round, check): the in-cache compute time was 0.78 of
    // the triad's streaming time, so the kernel could not reach the streaming ceiling (issue 14).
    // Other powers: Eigen's vectorised pow() on a double buffer of 2048 rows (16 KiB, L1-resident).
    constexpr Eigen::Index block = 2048;
    const Eigen::Index d = v.size();
    const double lambda = static_cast<double>(damping_);
    const std::size_t blocks = static_cast<std::size_t>((d + block - 1) / block);
    std::vector<char> bad_output(blocks, 0);
    const double* diag = mean_of_squares_.data();
    // out_i = op(v_i, x_i) with x_i = max(0, mean_i) + λ over one block, 16 entries at a time in
    // fixed-size Eigen arrays (registers): Eigen's packet sqrt/divide, not std::sqrt, which the compiler
    // does not vectorise while it may set errno. The last partial chunk is padded (v = 0, x = 1). Returns
    // whether an entry of out is NaN or ±Inf (|o| ≤ max is false exactly for those).
    // Multiply/divide: a plain loop, which the compiler vectorises (no sqrt, so no errno in the way);
    // faster than the chunks with the data in L3 (float, d = 2²⁰: 0.80 → 0.60 ms, bench_fisher).
    const auto plain = [lambda](const Scalar* vin, const double* m, Scalar* o, Eigen::Index b, auto op) {
      int bad = 0;
      for (Eigen::Index i = 0; i < b; ++i) {
        const Scalar r = static_cast<Scalar>(op(static_cast<double>(vin[i]), std::max(m[i], 0.0) + lambda));
        o[i] = r;
        bad |= !(std::abs(r) <= std::numeric_limits<Scalar>::max());
      }
      return bad;
    };
    const auto fused = [lambda](const Scalar* vin, const double* m, Scalar* o, Eigen::Index b, auto op) {
      constexpr Eigen::Index width = 16;
      using Chunk = Eigen::Array<double, width, 1>;
      int bad = 0;
      for (Eigen::Index i = 0; i < b; i += width) {
        const Eigen::Index n = std::min(width, b - i);
        Chunk a;
        Chunk x;
        if (n == width) {
          for (Eigen::Index j = 0; j < width; ++j) a[j] = static_cast<double>(vin[i + j]);
          x = Eigen::Map<const Chunk>(m + i).max(0.0) + lambda;
        } else {
          a.setZero();
          x.setOnes();
          for (Eigen::Index j = 0; j < n; ++j) {
            a[j] = static_cast<double>(vin[i + j]);
            x[j] = std::max(m[i + j], 0.0) + lambda;
          }
        }
        const Chunk result = op(a, x);
        for (Eigen::Index j = 0; j < n; ++j) {
          const Scalar r = static_cast<Scalar>(result[j]);
          o[i + j] = r;
          bad |= !(std::abs(r) <= std::numeric_limits<Scalar>::max());
        }
      }
      return bad;
    };
    detail::parallel_chunks(
        num_threads_, blocks,
        [&](std::size_t c) {
          const Eigen::Index r = static_cast<Eigen::Index>(c) * block;
          const Eigen::Index b = std::min(block, d - r);
          const Scalar* vin = v.data() + r;
          const double* m = diag + r;
          Scalar* o = out.data() + r;
          int bad = 0;
          if (power == 1.0) {
            bad = plain(vin, m, o, b, [](double a, double x) { return a * x; });
          } else if (power == -1.0) {
            bad = plain(vin, m, o, b, [](double a, double x) { return a / x; });
          } else if (power == -0.5) {
            bad = fused(vin, m, o, b, [](const auto& a, const auto& x) { return (a / x.sqrt()).eval(); });
          } else if (power == -0.25) {
            bad = fused(vin, m, o, b, [](const auto& a, const auto& x) { return (a / x.sqrt().sqrt()).eval(); });
          } else {
            double buffer[block];
            for (Eigen::Index i = 0; i < b; ++i) buffer[i] = static_cast<double>(vin[i]);
            Eigen::Map<Eigen::ArrayXd> t(buffer, b);
            t = t * (Eigen::Map<const Eigen::ArrayXd>(m, b).max(0.0) + lambda).pow(power);
            for (Eigen::Index i = 0; i < b; ++i) {
              o[i] = static_cast<Scalar>(buffer[i]);
              bad |= !(std::abs(o[i]) <= std::numeric_limits<Scalar>::max());
            }
          }
          bad_output[c] = static_cast<char>(bad);
        },
        16);
    if (std::find(bad_output.begin(), bad_output.end(), 1) != bad_output.end()) {
      if (!v.allFinite()) throw detail::non_finite_vector_error("DiagonalFisher::apply_power");
      throw NumericalError("DiagonalFisher::apply_power: F^" + detail::number_to_string(power) +
                           " v overflows the Scalar type (a diagonal entry or v is too large); rescale the loss "
                           "or the vector, or use double");
    }
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

  /// Threads for add_gradients and apply_power (0: all hardware threads). Default 1. The result is
  /// bitwise the same for every thread count (every entry is computed independently).
  void set_num_threads(std::size_t threads) { num_threads_ = threads; }
  std::size_t num_threads() const { return num_threads_; }
  /// Changes λ; O(1), no new finalize() needed. Throws InvalidArgument for λ ≤ 0 or NaN (unchanged then).
  void set_damping(Scalar damping) { damping_ = detail::checked_damping("DiagonalFisher::set_damping", damping); }

  std::size_t memory_bytes() const {
    return static_cast<std::size_t>(sum_of_squares_.size() + mean_of_squares_.size() + spare_.size()) *
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
  std::size_t dimension_;
  Scalar damping_;
  Eigen::VectorXd sum_of_squares_;
  Eigen::VectorXd mean_of_squares_;
  Eigen::VectorXd spare_;  // the accumulator add_gradients writes before swapping (contents undefined between calls)
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
  std::size_t num_threads_ = 1;
};

static_assert(FisherEstimator<DiagonalFisher<float>> && FisherEstimator<DiagonalFisher<double>>);

}  // namespace fisher_unlearn
