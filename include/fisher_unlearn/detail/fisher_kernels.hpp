// The O(md) kernels of the Fisher estimators, written for memory bandwidth and threads: Gᵀv, αv + G·y
// and the Gram GᵀG (all accumulated in double for float G), over a d×m column-major G.
// Layout of the work: rows are cut into blocks of kRowBlock (a float column segment is 16 KiB, so a block's
// m column segments stream through while its v/out segment stays in L1/L2) and blocks into groups whose
// size depends on d (and m) only. Reductions over d add one partial per group, in group order; row-wise
// outputs are independent per row. Hence results are bitwise identical for every thread count.
// Cost: Gᵀv and G·y read G once (m·d Scalars) and v/out once; the Gram is m(m+1)d FLOP (lower triangle,
// Eigen's rank update) plus a conversion pass for float. Not API.
#pragma once

#include "fisher_unlearn/detail/parallel.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace fisher_unlearn::detail {

inline constexpr Eigen::Index kRowBlock = 4096;

// Plain loops the compiler vectorises (float→double conversion included, which Eigen's expressions do
// not vectorise); reductions keep 8 independent partial sums, added in a fixed order. Columns are taken
// four at a time (dot4/axpy4: the v block or the out block is loaded once per four columns instead of
// once per column), each column's arithmetic in the same order as one at a time, so the bits are the
// same as the one-column loops (tests/test_fisher_woodbury.cpp checks them against those loops).

/// Pointer to column j of a matrix with contiguous columns (every G here: a Matrix, a block of whole
/// columns, an Eigen::Ref).
template <class Derived>
const typename Derived::Scalar* column(const Eigen::MatrixBase<Derived>& g, Eigen::Index j) {
  static_assert(static_cast<int>(Derived::InnerStrideAtCompileTime) == 1, "the kernels need contiguous columns");
  return g.derived().data() + j * g.derived().outerStride();
}

/// Σ double(a[i])·b[i] over n entries.
template <class Scalar>
double dot_in_double(const Scalar* a, const double* b, Eigen::Index n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Eigen::Index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(a[i + k]) * b[i + k];
  double tail = 0;
  for (; i < n; ++i) tail += static_cast<double>(a[i]) * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/// dot_in_double of four columns against the same b: each result is bitwise dot_in_double(a_c, b, n)
/// (the same 8 partial sums per column, added in the same order), but b is loaded once for the four.
template <class Scalar>
void dot4_in_double(const Scalar* a0, const Scalar* a1, const Scalar* a2, const Scalar* a3, const double* b,
                    Eigen::Index n, double* result) {
  double acc0[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double acc2[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc3[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Eigen::Index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double bk = b[i + k];
      acc0[k] += static_cast<double>(a0[i + k]) * bk;
      acc1[k] += static_cast<double>(a1[i + k]) * bk;
      acc2[k] += static_cast<double>(a2[i + k]) * bk;
      acc3[k] += static_cast<double>(a3[i + k]) * bk;
    }
  double tail[4] = {0, 0, 0, 0};
  for (; i < n; ++i) {
    tail[0] += static_cast<double>(a0[i]) * b[i];
    tail[1] += static_cast<double>(a1[i]) * b[i];
    tail[2] += static_cast<double>(a2[i]) * b[i];
    tail[3] += static_cast<double>(a3[i]) * b[i];
  }
  const double* accs[4] = {acc0, acc1, acc2, acc3};
  for (int c = 0; c < 4; ++c) {
    const double* acc = accs[c];
    result[c] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail[c];
  }
}

/// out[i] += alpha·double(a[i]) over n entries.
template <class Scalar>
void axpy_in_double(double alpha, const Scalar* a, double* out, Eigen::Index n) {
  for (Eigen::Index i = 0; i < n; ++i) out[i] += alpha * static_cast<double>(a[i]);
}

/// Four axpy_in_double calls in one pass over out: out[i] is updated by the four columns in order in a
/// register (bitwise the same as four passes), so out is loaded and stored once instead of four times.
template <class Scalar>
void axpy4_in_double(const double* alpha, const Scalar* a0, const Scalar* a1, const Scalar* a2, const Scalar* a3,
                     double* out, Eigen::Index n) {
  const double y0 = alpha[0], y1 = alpha[1], y2 = alpha[2], y3 = alpha[3];
  for (Eigen::Index i = 0; i < n; ++i) {
    double x = out[i];
    x += y0 * static_cast<double>(a0[i]);
    x += y1 * static_cast<double>(a1[i]);
    x += y2 * static_cast<double>(a2[i]);
    x += y3 * static_cast<double>(a3[i]);
    out[i] = x;
  }
}

/// Rows per reduction group for a reduction over d with an m-long (or m×m) partial per group: about 16
/// groups (enough for any realistic thread count here), at least one row block, and few enough that the
/// partials stay under ~32 MiB. Depends on (d, partial_size) only.
inline Eigen::Index reduction_group_rows(Eigen::Index d, Eigen::Index partial_size) {
  const Eigen::Index max_groups_by_memory = std::max<Eigen::Index>(1, (Eigen::Index(4) << 20) / std::max<Eigen::Index>(1, partial_size));
  const Eigen::Index groups = std::max<Eigen::Index>(1, std::min<Eigen::Index>(16, max_groups_by_memory));
  Eigen::Index rows = (d + groups - 1) / groups;
  rows = ((rows + kRowBlock - 1) / kRowBlock) * kRowBlock;  // whole row blocks
  return std::max(rows, kRowBlock);
}

inline std::size_t count_chunks(Eigen::Index d, Eigen::Index rows_per_chunk) {
  return static_cast<std::size_t>((d + rows_per_chunk - 1) / rows_per_chunk);
}

/// Gᵀv in double (m entries). G is d×m with contiguous columns (column stride g.outerStride()).
template <class DerivedG, class DerivedV>
Eigen::VectorXd transpose_times_vector(const Eigen::MatrixBase<DerivedG>& g, const Eigen::MatrixBase<DerivedV>& v,
                                       std::size_t threads) {
  const Eigen::Index d = g.rows(), m = g.cols();
  const Eigen::Index group_rows = reduction_group_rows(d, m);
  const std::size_t groups = count_chunks(d, group_rows);
  Eigen::MatrixXd partial(m, static_cast<Eigen::Index>(groups));
  parallel_chunks(threads, groups, [&](std::size_t c) {
    const Eigen::Index begin = static_cast<Eigen::Index>(c) * group_rows;
    const Eigen::Index end = std::min(d, begin + group_rows);
    auto sums = partial.col(static_cast<Eigen::Index>(c));
    sums.setZero();
    Eigen::VectorXd v_block(std::min(kRowBlock, end - begin));
    for (Eigen::Index r = begin; r < end; r += kRowBlock) {
      const Eigen::Index n = std::min(kRowBlock, end - r);
      for (Eigen::Index i = 0; i < n; ++i) v_block[i] = static_cast<double>(v[r + i]);
      // Four columns per pass over the v block (which then stays in registers/L1 for all four).
      Eigen::Index j = 0;
      for (; j + 4 <= m; j += 4) {
        double dots[4];
        dot4_in_double(column(g, j) + r, column(g, j + 1) + r, column(g, j + 2) + r, column(g, j + 3) + r,
                       v_block.data(), n, dots);
        for (int q = 0; q < 4; ++q) sums[j + q] += dots[q];
      }
      for (; j < m; ++j) sums[j] += dot_in_double(column(g, j) + r, v_block.data(), n);
    }
  });
  Eigen::VectorXd result = partial.col(0);
  for (Eigen::Index c = 1; c < partial.cols(); ++c) result += partial.col(c);
  return result;
}

/// out = α·v + G·y, computed in double per row block and rounded once to out's Scalar.
template <class DerivedG, class DerivedV, class DerivedOut>
void scaled_plus_matrix_vector(double alpha, const Eigen::MatrixBase<DerivedV>& v, const Eigen::MatrixBase<DerivedG>& g,
                               const Eigen::VectorXd& y, Eigen::MatrixBase<DerivedOut>& out, std::size_t threads) {
  using Scalar = typename DerivedG::Scalar;
  const Eigen::Index d = g.rows(), m = g.cols();
  const std::size_t blocks = count_chunks(d, kRowBlock);
  parallel_chunks(
      threads, blocks,
      [&](std::size_t c) {
        const Eigen::Index r = static_cast<Eigen::Index>(c) * kRowBlock;
        const Eigen::Index n = std::min(kRowBlock, d - r);
        double acc[kRowBlock];
        for (Eigen::Index i = 0; i < n; ++i) acc[i] = alpha * static_cast<double>(v[r + i]);
        Eigen::Index j = 0;
        for (; j + 4 <= m; j += 4)
          axpy4_in_double(y.data() + j, column(g, j) + r, column(g, j + 1) + r, column(g, j + 2) + r,
                          column(g, j + 3) + r, acc, n);
        for (; j < m; ++j) axpy_in_double(y[j], column(g, j) + r, acc, n);
        Scalar* o = &out.derived().coeffRef(r);
        for (Eigen::Index i = 0; i < n; ++i) o[i] = static_cast<Scalar>(acc[i]);
      },
      4);
}

/// GᵀG in double (m×m, both triangles filled): per group the lower triangle by Eigen's rank update
/// (m(m+1)d FLOP in all), float rows converted 512 at a time.
template <class DerivedG>
Eigen::MatrixXd gram_in_double(const Eigen::MatrixBase<DerivedG>& g, std::size_t threads) {
  using Scalar = typename DerivedG::Scalar;
  const Eigen::Index d = g.rows(), m = g.cols();
  Eigen::MatrixXd result = Eigen::MatrixXd::Zero(m, m);
  if (m == 0 || d == 0) return result;
  const Eigen::Index group_rows = reduction_group_rows(d, m * m);
  const std::size_t groups = count_chunks(d, group_rows);
  std::vector<Eigen::MatrixXd> partial(groups);
  parallel_chunks(threads, groups, [&](std::size_t c) {
    const Eigen::Index begin = static_cast<Eigen::Index>(c) * group_rows;
    const Eigen::Index n = std::min(d, begin + group_rows) - begin;
    Eigen::MatrixXd& p = partial[c];
    p = Eigen::MatrixXd::Zero(m, m);
    if constexpr (std::is_same_v<Scalar, double>) {
      // As a dynamic-size matrix: a one-column G (a vector type) would otherwise take Eigen's rank-1
      // path, which writes an n×n result.
      const Eigen::Map<const Eigen::MatrixXd, 0, Eigen::OuterStride<>> rows(
          g.derived().data() + begin, n, m, Eigen::OuterStride<>(g.derived().outerStride()));
      p.template selfadjointView<Eigen::Lower>().rankUpdate(rows.transpose());
    } else {
      constexpr Eigen::Index kConvertRows = 512;
      Eigen::MatrixXd block;
      for (Eigen::Index r = 0; r < n; r += kConvertRows) {
        const Eigen::Index k = std::min(kConvertRows, n - r);
        block = g.middleRows(begin + r, k).template cast<double>();
        p.template selfadjointView<Eigen::Lower>().rankUpdate(block.transpose());
      }
    }
  });
  for (const auto& p : partial) result.template triangularView<Eigen::Lower>() += p;
  result.template triangularView<Eigen::StrictlyUpper>() = result.transpose();
  return result;
}

/// AᵀB in double (A d×p, B d×q), per group one GEMM (float rows converted 512 at a time).
template <class DerivedA, class DerivedB>
Eigen::MatrixXd cross_in_double(const Eigen::MatrixBase<DerivedA>& a, const Eigen::MatrixBase<DerivedB>& b,
                                std::size_t threads) {
  using ScalarA = typename DerivedA::Scalar;
  using ScalarB = typename DerivedB::Scalar;
  const Eigen::Index d = a.rows();
  Eigen::MatrixXd result = Eigen::MatrixXd::Zero(a.cols(), b.cols());
  if (result.size() == 0 || d == 0) return result;
  const Eigen::Index group_rows = reduction_group_rows(d, result.size());
  const std::size_t groups = count_chunks(d, group_rows);
  std::vector<Eigen::MatrixXd> partial(groups);
  parallel_chunks(threads, groups, [&](std::size_t c) {
    const Eigen::Index begin = static_cast<Eigen::Index>(c) * group_rows;
    const Eigen::Index n = std::min(d, begin + group_rows) - begin;
    Eigen::MatrixXd& p = partial[c];
    if constexpr (std::is_same_v<ScalarA, double> && std::is_same_v<ScalarB, double>) {
      p.noalias() = a.middleRows(begin, n).transpose() * b.middleRows(begin, n);
    } else {
      p = Eigen::MatrixXd::Zero(a.cols(), b.cols());
      constexpr Eigen::Index kConvertRows = 512;
      Eigen::MatrixXd a_block, b_block;
      for (Eigen::Index r = 0; r < n; r += kConvertRows) {
        const Eigen::Index k = std::min(kConvertRows, n - r);
        a_block = a.middleRows(begin + r, k).template cast<double>();
        b_block = b.middleRows(begin + r, k).template cast<double>();
        p.noalias() += a_block.transpose() * b_block;
      }
    }
  });
  for (const auto& p : partial) result += p;
  return result;
}

}  // namespace fisher_unlearn::detail
