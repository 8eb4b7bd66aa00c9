// The O(md) kernels of the Fisher estimators, written for memory bandwidth and threads: Gᵀv, αv + G·y
// and the Gram GᵀG (all accumulated in double for float G), over a d×m column-major G.
// Layout of the work: rows are cut into blocks of kRowBlock (a float column segment is 16 KiB, so a block's
// m column segments stream through while its v/out segment stays in L1/L2) and blocks into groups whose
// size depends on d (and m) only. Reductions over d add one partial per group, in group order; row-wise
// outputs are independent per row. Hence results are bitwise identical for every thread count.
// Cost: Gᵀv and G·y read G once (m·d Scalars) and v/out once; the Gram is m(m+1)d FLOP (lower triangle:
// register tiles or Eigen's rank update) plus a packing/conversion pass. Not API.
#pragma once

#include "fisher_unlearn/detail/parallel.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

namespace fisher_unlearn::detail {

inline constexpr Eigen::Index kRowBlock = 4096;

// Plain loops the compiler vectorises (float→double conversion included, which Eigen's expressions do
// not vectorise; dot4 in explicit four-double vectors); reductions keep 8 independent partial sums, added in a fixed order. Columns are taken
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

/// Four doubles (one AVX register; two SSE2 or NEON registers elsewhere); GCC/Clang vector extensions.
using GramLanes = double __attribute__((vector_size(32)));

/// x = entries p[0..3] as doubles (float widened exactly). An out-parameter, not a return value: a
/// vector returned by value changes the ABI between AVX and non-AVX builds (GCC's -Wpsabi).
template <class Scalar>
void load_lanes(const Scalar* p, GramLanes& x) {
  if constexpr (std::is_same_v<Scalar, double>) {
    std::memcpy(&x, p, sizeof(GramLanes));
  } else {
    using FloatLanes = float __attribute__((vector_size(16)));
    FloatLanes f;
    std::memcpy(&f, p, sizeof(FloatLanes));
    x = __builtin_convertvector(f, GramLanes);
  }
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
  // Partial sum k of column c is lane k mod 4 of acc[c][k / 4]: lane for lane the arithmetic of
  // dot_in_double. Written with vector types because the compiler's own vectorisation of the scalar
  // form of this loop shuffled the 32 partial sums across registers (vunpck/vpermpd per step) and read G
  // at 8–11 GB/s, half of what a plain GEMV reads on the same core (issue 14).
  const Scalar* a[4] = {a0, a1, a2, a3};
  GramLanes acc[4][2];
  for (int c = 0; c < 4; ++c) acc[c][0] = acc[c][1] = GramLanes{0.0, 0.0, 0.0, 0.0};
  Eigen::Index i = 0;
  for (; i + 8 <= n; i += 8) {
    GramLanes b_lo, b_hi;
    std::memcpy(&b_lo, b + i, sizeof(GramLanes));
    std::memcpy(&b_hi, b + i + 4, sizeof(GramLanes));
    for (int c = 0; c < 4; ++c) {
      GramLanes x_lo, x_hi;
      load_lanes(a[c] + i, x_lo);
      load_lanes(a[c] + i + 4, x_hi);
      acc[c][0] += x_lo * b_lo;
      acc[c][1] += x_hi * b_hi;
    }
  }
  double tail[4] = {0, 0, 0, 0};
  for (; i < n; ++i)
    for (int c = 0; c < 4; ++c) tail[c] += static_cast<double>(a[c][i]) * b[i];
  for (int c = 0; c < 4; ++c) {
    const GramLanes& lo = acc[c][0];  // partial sums 0–3
    const GramLanes& hi = acc[c][1];  // partial sums 4–7
    result[c] = ((lo[0] + hi[0]) + (lo[1] + hi[1])) + ((lo[2] + hi[2]) + (lo[3] + hi[3])) + tail[c];
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


/// The Gram tiles' vector: four doubles (GramLanes) by default, eight where the target has AVX-512 — with
/// four lanes on an AVX-512 core the tiles ran at 0.36–0.44 of Eigen's GEMM rate, which uses 512-bit
/// registers (bench_fisher, 2026-12-07 16:50 run); the AVX2 figures (0.75–0.82) were taken with four.
#if defined(__AVX512F__)
using GramTileLanes = double __attribute__((vector_size(64)));
inline constexpr int kGramTileColumns = 4;  // 4×4 accumulators + 8 loaded segments of 32 registers
#else
using GramTileLanes = GramLanes;
inline constexpr int kGramTileColumns = 2;  // 4×2 accumulators + 6 loaded segments of AVX2's 16
#endif
inline constexpr Eigen::Index kGramTileLanes = static_cast<Eigen::Index>(sizeof(GramTileLanes) / sizeof(double));

/// The lanes of v added in a fixed tree: (v0 + v1) + (v2 + v3), and for eight lanes that plus (v4 + v5) + (v6 + v7).
inline double gram_lanes_sum(const GramTileLanes& v) {
#if defined(__AVX512F__)
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
#else
  return (v[0] + v[1]) + (v[2] + v[3]);
#endif
}

/// p(i0 + a, j0 + b) += Σ_{r<n} g_{i0+a}[r]·g_{j0+b}[r] for a < TA, b < TB, over a packed column-major
/// block g (column stride ld, contiguous, cache-resident). TA·TB accumulators of kGramTileLanes lanes stay
/// in registers; lane ℓ sums the rows r ≡ ℓ (mod lanes), the lanes are added in a fixed order
/// (gram_lanes_sum), then the last n mod lanes rows one by one.
template <int TA, int TB>
void gram_tile(const double* g, Eigen::Index ld, Eigen::Index n, Eigen::Index i0, Eigen::Index j0, Eigen::MatrixXd& p) {
  constexpr Eigen::Index lanes = kGramTileLanes;
  GramTileLanes acc[TA][TB];
  for (int a = 0; a < TA; ++a)
    for (int b = 0; b < TB; ++b) acc[a][b] = GramTileLanes{};
  const double* ci[TA];
  const double* cj[TB];
  for (int a = 0; a < TA; ++a) ci[a] = g + (i0 + a) * ld;
  for (int b = 0; b < TB; ++b) cj[b] = g + (j0 + b) * ld;
  Eigen::Index r = 0;
  for (; r + lanes <= n; r += lanes) {
    GramTileLanes y[TB];
    for (int b = 0; b < TB; ++b) std::memcpy(&y[b], cj[b] + r, sizeof(GramTileLanes));
    for (int a = 0; a < TA; ++a) {
      GramTileLanes x;
      std::memcpy(&x, ci[a] + r, sizeof(GramTileLanes));
      for (int b = 0; b < TB; ++b) acc[a][b] += x * y[b];
    }
  }
  for (int a = 0; a < TA; ++a)
    for (int b = 0; b < TB; ++b) {
      double sum = gram_lanes_sum(acc[a][b]);
      for (Eigen::Index t = r; t < n; ++t) sum += ci[a][t] * cj[b][t];
      p(i0 + a, j0 + b) += sum;
    }
}

/// The lower triangle of p += gᵀg for a packed n×m block (column stride ld): 4×kGramTileColumns tiles
/// over rows of four columns (the diagonal tiles also fill a few upper entries, which the caller
/// ignores), the last m mod 4 columns one at a time.
inline void gram_lower_packed(const double* g, Eigen::Index ld, Eigen::Index n, Eigen::Index m, Eigen::MatrixXd& p) {
  constexpr int columns = kGramTileColumns;
  static_assert(4 % columns == 0, "a row of four columns must hold whole tiles");
  Eigen::Index i0 = 0;
  for (; i0 + 4 <= m; i0 += 4)
    for (Eigen::Index j0 = 0; j0 < i0 + 4; j0 += columns) gram_tile<4, columns>(g, ld, n, i0, j0, p);
  for (; i0 < m; ++i0) {
    Eigen::Index j0 = 0;
    for (; j0 + 2 <= i0 + 1; j0 += 2) gram_tile<1, 2>(g, ld, n, i0, j0, p);
    if (j0 <= i0) gram_tile<1, 1>(g, ld, n, i0, j0, p);
  }
}

/// The widest G (columns) that takes the register-tiled Gram: its packed row block (256 rows) stays
/// within 256 KiB; wider G goes to Eigen's rank update, which blocks over columns itself.
inline constexpr Eigen::Index kGramTileMaxColumns = 128;

/// Which Gram kernel: automatic = the register tiles when compiled for AVX (16 four-double registers)
/// and m ≤ kGramTileMaxColumns, else Eigen's rank update; the other two force one (for the tests, which
/// build without -march, and for comparisons).
enum class GramPath { automatic, tiles, rank_update };

/// GᵀG in double (m×m, both triangles filled). Per group of rows, in blocks of 256 rows packed (and for
/// float converted) into a contiguous buffer: where AVX is available and m ≤ 128, the lower triangle by
/// 4×2 register tiles (gram_lower_packed; 0.75–0.77 of the GEMM rate vs 0.68–0.71 for Eigen's rank update
/// at d = 2¹⁷, m = 64, bench/experiments/gram_register_tiles.cpp), otherwise by Eigen's rank update
/// (m(m+1)d FLOP in all). The group partition depends on d and m only, so the bits do not depend on
/// the thread count.
/// copy_to (optional): also copies G, bit for bit, into the d×m column-major storage at copy_to (column
/// stride copy_stride ≥ d), block by block right after the block is read (on the tile and float paths
/// the source rows are still in cache), on the same threads: the copy costs a write stream instead of
/// another pass over G. Used by WoodburyFisher to fill fresh slots; the Gram's bits do not change.
template <class DerivedG>
Eigen::MatrixXd gram_in_double(const Eigen::MatrixBase<DerivedG>& g, std::size_t threads,
                               GramPath path = GramPath::automatic,
                               typename DerivedG::Scalar* copy_to = nullptr, Eigen::Index copy_stride = 0) {
  using Scalar = typename DerivedG::Scalar;
  const Eigen::Index d = g.rows(), m = g.cols();
  Eigen::MatrixXd result = Eigen::MatrixXd::Zero(m, m);
  if (m == 0 || d == 0) return result;
  const Eigen::Index group_rows = reduction_group_rows(d, m * m);
  const std::size_t groups = count_chunks(d, group_rows);
  std::vector<Eigen::MatrixXd> partial(groups);
#if defined(__AVX__)
  constexpr bool tiles_fast = true;
#else
  constexpr bool tiles_fast = false;
#endif
  const bool tiles = path == GramPath::tiles || (path == GramPath::automatic && tiles_fast && m <= kGramTileMaxColumns);
  // Rows [row, row + count) of every column of G into copy_to (when asked for).
  const auto copy_rows = [&](Eigen::Index row, Eigen::Index count) {
    if (copy_to == nullptr) return;
    for (Eigen::Index j = 0; j < m; ++j)
      std::copy_n(column(g, j) + row, count, copy_to + j * copy_stride + row);
  };
  parallel_chunks(threads, groups, [&](std::size_t c) {
    const Eigen::Index begin = static_cast<Eigen::Index>(c) * group_rows;
    const Eigen::Index n = std::min(d, begin + group_rows) - begin;
    Eigen::MatrixXd& p = partial[c];
    p = Eigen::MatrixXd::Zero(m, m);
    if (tiles) {
      constexpr Eigen::Index kPackRows = 256;
      Eigen::MatrixXd block(kPackRows, m);
      for (Eigen::Index r = 0; r < n; r += kPackRows) {
        const Eigen::Index k = std::min(kPackRows, n - r);
        block.topRows(k) = g.middleRows(begin + r, k).template cast<double>();
        copy_rows(begin + r, k);
        gram_lower_packed(block.data(), kPackRows, k, m, p);
      }
    } else if constexpr (std::is_same_v<Scalar, double>) {
      // As a dynamic-size matrix: a one-column G (a vector type) would otherwise take Eigen's rank-1
      // path, which writes an n×n result. (The copy here is a pass of its own over the group's rows.)
      const Eigen::Map<const Eigen::MatrixXd, 0, Eigen::OuterStride<>> rows(
          g.derived().data() + begin, n, m, Eigen::OuterStride<>(g.derived().outerStride()));
      copy_rows(begin, n);
      p.template selfadjointView<Eigen::Lower>().rankUpdate(rows.transpose());
    } else {
      constexpr Eigen::Index kConvertRows = 512;
      Eigen::MatrixXd block;
      for (Eigen::Index r = 0; r < n; r += kConvertRows) {
        const Eigen::Index k = std::min(kConvertRows, n - r);
        block = g.middleRows(begin + r, k).template cast<double>();
        copy_rows(begin + r, k);
        p.template selfadjointView<Eigen::Lower>().rankUpdate(block.transpose());
      }
    }
  });
  for (const auto& p : partial) result.template triangularView<Eigen::Lower>() += p;
  result.template triangularView<Eigen::StrictlyUpper>() = result.transpose();
  return result;
}

// ---- The Kronecker factors' rank updates (K-FAC, EK-FAC) -----------------------------------------
// A layer's visit hands an in×n block of float columns x_t (n = one window's positions); its factor sum
// (double) gains Σ_t x_t x_tᵀ. Eigen's rank update needs a float scratch (zeroed, updated, then added
// into the double sum: three passes over n² entries per visit, which cost as much as the update itself
// at these sizes, issue 14); here the float products stay in registers and are added into the double
// lower triangle directly. Each entry: the products of a block of columns (all n of a window at the
// demo's sizes) summed in float, in column order in one lane from 0 (a fused multiply-add where the
// target has one), then added into the double entry.

#if defined(__AVX512F__)
inline constexpr int kFactorLanes = 16;       // one 512-bit register
inline constexpr int kFactorTileColumns = 8;  // 2×8 accumulators + 2 loaded rows of 32 registers
#elif defined(__AVX__)
inline constexpr int kFactorLanes = 8;        // one 256-bit register
inline constexpr int kFactorTileColumns = 4;  // 2×4 accumulators + 2 loaded rows of 16 registers
#else
inline constexpr int kFactorLanes = 4;        // SSE2 / NEON
inline constexpr int kFactorTileColumns = 4;
#endif
using FactorLanes = float __attribute__((vector_size(kFactorLanes * sizeof(float))));
using FactorLanesDouble = double __attribute__((vector_size(kFactorLanes * sizeof(double))));

/// sum(i, j) += Σ_{t<n} x(i, t)·x(j, t) for the rows i0 ≤ i < i0 + RowPackets·kFactorLanes, the columns
/// j0 ≤ j < j0 + kFactorTileColumns, only where j ≤ i < rows and j < rows. x: column stride ld, readable
/// (zero-padded) up to row i0 + RowPackets·kFactorLanes and row j0 + kFactorTileColumns.
template <int RowPackets>
void factor_tile(const float* x, Eigen::Index ld, Eigen::Index n, Eigen::Index rows, Eigen::Index i0, Eigen::Index j0,
                 double* sum, Eigen::Index sum_ld) {
  constexpr int L = kFactorLanes, C = kFactorTileColumns;
  FactorLanes acc[RowPackets][C];
  for (int r = 0; r < RowPackets; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = FactorLanes{};
  for (Eigen::Index t = 0; t < n; ++t) {
    const float* col = x + t * ld;
    FactorLanes a[RowPackets];
    for (int r = 0; r < RowPackets; ++r) std::memcpy(&a[r], col + i0 + r * L, sizeof(FactorLanes));
    for (int c = 0; c < C; ++c) {
      const float b = col[j0 + c];
      for (int r = 0; r < RowPackets; ++r) acc[r][c] += a[r] * b;
    }
  }
  for (int c = 0; c < C; ++c) {
    const Eigen::Index j = j0 + c;
    if (j >= rows) break;
    double* s = sum + j * sum_ld;
    for (int r = 0; r < RowPackets; ++r) {
      const Eigen::Index base = i0 + r * L;
      if (base >= j && base + L <= rows) {  // the whole packet lies in the lower triangle
        const FactorLanesDouble wide = __builtin_convertvector(acc[r][c], FactorLanesDouble);
        FactorLanesDouble old;
        std::memcpy(&old, s + base, sizeof(old));
        old += wide;
        std::memcpy(s + base, &old, sizeof(old));
      } else {
        float lanes[L];
        std::memcpy(lanes, &acc[r][c], sizeof(lanes));
        for (Eigen::Index i = std::max(base, j); i < std::min<Eigen::Index>(base + L, rows); ++i)
          s[i] += static_cast<double>(lanes[i - base]);
      }
    }
  }
}

/// The widest layer (rows) that takes accumulate_lower_gram: above it the double triangle (> 1 MiB) leaves
/// L2 between column blocks and Eigen's rank update into a float scratch, added once, was faster
/// (bench_kfac kfac/accumulate<float>, 2026-12-07, AVX-512: 768 and 1024 rows × 2048 columns 125–140 /
/// 234–255 ms with Eigen, 157–207 / 308–327 ms with the tiles in column blocks of 128–256 KiB; 256 × 512
/// 3.8–3.9 vs 3.4–4.3 ms, 64 × 512 0.36–0.49 vs 0.22 ms).
inline constexpr Eigen::Index kFactorTileMaxRows = 512;

/// The lower triangle (diagonal included) of sum += x·xᵀ for a rows×n float block x (column stride
/// ld ≥ rows); sum is column-major with column stride sum_ld, its upper triangle is not touched. Rows
/// that are not a multiple of kFactorLanes are first copied into `pad` with zero rows below. The columns
/// are taken in blocks of about 256 KiB (L2), each block's float totals added into the double entries;
/// within a block, one row tile at a time (its rows stay in L1) against every column tile left of it.
inline void accumulate_lower_gram(const float* x, Eigen::Index ld, Eigen::Index rows, Eigen::Index n, double* sum,
                                  Eigen::Index sum_ld, std::vector<float>& pad) {
  constexpr Eigen::Index L = kFactorLanes, C = kFactorTileColumns;
  static_assert(L % C == 0, "a tile's columns must not reach past the padded rows");
  if (rows == 0 || n == 0) return;
  const Eigen::Index padded = (rows + L - 1) / L * L;
  if (padded != rows) {
    pad.assign(static_cast<std::size_t>(padded * n), 0.0f);
    for (Eigen::Index t = 0; t < n; ++t) std::copy_n(x + t * ld, rows, pad.data() + t * padded);
    x = pad.data();
    ld = padded;
  }
  const Eigen::Index block = std::max<Eigen::Index>(16, (Eigen::Index(64) << 10) / padded);
  for (Eigen::Index t0 = 0; t0 < n; t0 += block) {
    const Eigen::Index nb = std::min(block, n - t0);
    const float* xb = x + t0 * ld;
    Eigen::Index i0 = 0;
    for (; i0 + 2 * L <= padded; i0 += 2 * L) {
      const Eigen::Index end = std::min(i0 + 2 * L, rows);
      Eigen::Index j0 = 0;
      for (; j0 < std::min(i0 + L, end); j0 += C) factor_tile<2>(xb, ld, nb, rows, i0, j0, sum, sum_ld);
      // right of the tile's first packet of rows only the second one reaches the lower triangle
      for (; j0 < end; j0 += C) factor_tile<1>(xb, ld, nb, rows, i0 + L, j0, sum, sum_ld);
    }
    if (i0 < padded)
      for (Eigen::Index j0 = 0; j0 < std::min(i0 + L, rows); j0 += C) factor_tile<1>(xb, ld, nb, rows, i0, j0, sum, sum_ld);
  }
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
