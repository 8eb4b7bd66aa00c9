// The GPU routines behind the Fisher estimators, on raw device pointers, sizes and a stream.
//   accumulate_squares      diag += s·Σᵢ gᵢ⊙gᵢ                       O(d·m) reads, one pass
//   gram_matrix             K = α·GᵀG + β·K  (m×m, cuBLAS GEMM or SYRK)  2·d·m² flops (SYRK: half)
//   accumulate_block_outer_products  F_k += α·G_k G_kᵀ per diagonal block (batched GEMM), d·b·m flops
//   apply_diagonal_power    out = η·(s·diag+λ)^p ⊙ v + σ·(s·diag+λ)^{-1/4} ⊙ ε, optionally θ += out
//   cholesky_factor / woodbury_inverse_product: c = (mλI + GᵀG)⁻¹ Gᵀv, out = (v − Gc)/λ
// Gradients are the COLUMNS of a column-major d×m matrix (gradient i starts at gradients + i·d), which
// is the same memory as the row-major m×d "batch of per-sample gradients".
// Instantiated for float and double. All routines are asynchronous on the stream they are given
// (or the Context's stream) unless they say otherwise; inputs must stay alive until the stream reaches
// them. Pointers are device pointers. Failures throw CudaError (file and line of the failing call).
#pragma once

#include "fisher_unlearn/cuda/context.hpp"

#include <cstddef>
#include <cstdint>

namespace fisher_unlearn::cuda {

/// diagonal[j] += scale · Σ_{i<m} gradients[i·d + j]²  for j < d.
/// Determinism: each diagonal entry is summed by one thread in the fixed order i = 0..m−1, so the
/// result is bitwise identical from run to run, on any grid, and (for m ≤ a few thousand) equal to a
/// sequential CPU loop up to the fused multiply-add contraction of the last step.
template <class Scalar>
void accumulate_squares(const Scalar* gradients, std::size_t d, std::size_t m, Scalar scale, Scalar* diagonal,
                        void* stream);

enum class GramAlgorithm {
  gemm,  ///< one GEMM GᵀG: twice the flops of SYRK but cuBLAS's fastest kernels; both triangles exact
  syrk,  ///< SYRK on the lower triangle, then mirrored: half the flops
};

/// gram = alpha·GᵀG + beta·gram for the d×m gradient matrix G, gram m×m column-major, both triangles
/// filled. Deterministic for a given cuBLAS version, GPU and size (cuBLAS picks fixed kernels unless
/// its workspace config changes); not bitwise equal to a CPU sum.
/// With GramAlgorithm::syrk and beta ≠ 0 the input gram must be symmetric: SYRK reads only its lower
/// triangle and the upper one is then mirrored from it (a non-symmetric input gives the symmetrised
/// lower triangle, not alpha·GᵀG + beta·gram). Measured on an H200 (docs/cuda.md), cuBLAS SYRK is slow
/// for tall-skinny G (float, d = 2²², m = 256: 3% of the GEMM rate): GEMM is the default for that reason.
template <class Scalar>
void gram_matrix(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, Scalar alpha, Scalar beta,
                 Scalar* gram, GramAlgorithm algorithm = GramAlgorithm::gemm);

/// Number of diagonal blocks of size block_size covering d (the last may be smaller).
inline std::size_t block_count(std::size_t d, std::size_t block_size) {
  return block_size == 0 ? 0 : (d + block_size - 1) / block_size;
}

/// For every diagonal block k (rows [k·b, min(d, (k+1)·b)) of G, size s_k):
///   blocks_k += alpha · G_k G_kᵀ   (s_k × s_k, column-major with leading dimension s_k,
///                                   stored at blocks + k·b·b).
/// The full blocks go through one strided-batched GEMM, a last partial block through one GEMM.
/// `blocks` holds block_count(d, b)·b·b elements.
template <class Scalar>
void accumulate_block_outer_products(Context& context, const Scalar* gradients, std::size_t d, std::size_t m,
                                     std::size_t block_size, Scalar alpha, Scalar* blocks);

/// In place on the layout of accumulate_block_outer_products: every symmetric block becomes its
/// eigenvectors (columns), and eigenvalues[k·b + i] receives block k's i-th eigenvalue (ascending),
/// clamped at 0 (the blocks are sums of outer products: negative values are rounding). One cuSOLVER
/// XsyevBatched call for the full blocks and one for a smaller last block; O(d·b²) flops.
/// Synchronises to read the status; throws NumericalError when an eigensolver fails.
template <class Scalar>
void block_eigendecomposition(Context& context, Scalar* blocks, std::size_t d, std::size_t block_size,
                              Scalar* eigenvalues);

/// For every block k: out_k = V_k · diag((damping + eigenvalue_scale·σ_k)^power) · V_kᵀ v_k, with V and σ
/// from block_eigendecomposition. Two strided-batched GEMMs over the eigenvectors (2·d·b elements read)
/// and the fused diagonal pass in between. `work` holds d elements; out must not alias v.
template <class Scalar>
void block_power_product(Context& context, const Scalar* eigenvectors, const Scalar* eigenvalues, std::size_t d,
                         std::size_t block_size, double power, double eigenvalue_scale, double damping,
                         const Scalar* v, Scalar* out, Scalar* work);

/// Parameters of the fused diagonal pass, with F = diagonal_scale·diag + damping (elementwise):
///   step = scale·F^power ⊙ v + noise_std·F^{-1/4} ⊙ ε,   ε ~ N(0, I) from cuRAND Philox4x32-10.
/// The noise for element j comes from the Philox stream (seed, subsequence j/4, offset 8·noise_counter),
/// so it does not depend on the launch grid: the same (seed, noise_counter, d) gives the same ε on any
/// GPU. Use a new noise_counter (or seed) for each call that must draw fresh noise.
struct DiagonalStep {
  double power = -1.0;
  double scale = 1.0;
  double diagonal_scale = 1.0;
  double damping = 0.0;
  double noise_std = 0.0;
  std::uint64_t seed = 0;
  std::uint64_t noise_counter = 0;
};

/// One fused pass over d elements: reads diagonal and v (v may be nullptr: treated as zero), writes
/// step to out (may be nullptr) and, when theta is not nullptr, theta += step. out may alias v.
/// Powers −1, −1/2, 1/2 and 1 use exact reciprocal/square-root instructions; others use pow().
/// F must be positive (damping > 0 and diagonal ≥ 0): the caller checks damping.
template <class Scalar>
void apply_diagonal_power(const Scalar* diagonal, const Scalar* v, std::size_t d, const DiagonalStep& step,
                          Scalar* out, Scalar* theta, void* stream);

/// factor = lower Cholesky factor of (gram + shift·I), m×m column-major (the upper triangle is left
/// as scratch). Synchronises with the stream to read cuSOLVER's status; throws NumericalError when the
/// shifted matrix is not positive definite (raise the damping).
template <class Scalar>
void cholesky_factor(Context& context, const Scalar* gram, std::size_t m, Scalar shift, Scalar* factor);

/// out = beta·v + alpha·G(Gᵀv) — the low-rank product F·v = λv + (1/m)G(Gᵀv) with beta = λ,
/// alpha = 1/m. `work` holds m elements. out must not alias v.
template <class Scalar>
void low_rank_product(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, const Scalar* v,
                      Scalar alpha, Scalar beta, Scalar* out, Scalar* work);

/// out = Gᵀv (m elements): one GEMV pass over G.
template <class Scalar>
void transpose_product(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, const Scalar* v,
                       Scalar* out);

/// out = beta·out + alpha·G·c for c of m elements (out of d elements; with beta = 0, out is only
/// written): one GEMV pass over G.
template <class Scalar>
void product_accumulate(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, const Scalar* c,
                        Scalar alpha, Scalar beta, Scalar* out);

/// Woodbury inverse product of F = λI + (1/m)GGᵀ (G is d×m):
///   c = (mλI + GᵀG)⁻¹ Gᵀv  (with the Cholesky factor from cholesky_factor(gram, m, m·λ)),
///   out = (v − G c)/λ.
/// Reads G twice (two GEMV passes): cost 4·d·m flops, 2·d·m·sizeof(Scalar) bytes. `work` holds m
/// elements. out must not alias v.
template <class Scalar>
void woodbury_inverse_product(Context& context, const Scalar* gradients, std::size_t d, std::size_t m,
                              const Scalar* cholesky, Scalar damping, const Scalar* v, Scalar* out, Scalar* work);

}  // namespace fisher_unlearn::cuda
