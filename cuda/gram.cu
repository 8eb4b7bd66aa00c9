// Outer-product statistics and the Woodbury solve through cuBLAS and cuSOLVER: the Gram matrix GᵀG
// (GEMM or SYRK), per-block G_k G_kᵀ (strided-batched GEMM), the Cholesky factor of mλI + GᵀG and the
// inverse product (v − G(mλI + GᵀG)⁻¹Gᵀv)/λ (two GEMV passes over G and a triangular solve).
#include "check.cuh"

#include "fisher_unlearn/cuda/routines.hpp"
#include "fisher_unlearn/errors.hpp"

#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>
#include <vector>

namespace fisher_unlearn::cuda {
namespace {

cublasHandle_t blas(Context& context) { return static_cast<cublasHandle_t>(context.blas_handle()); }
cusolverDnHandle_t solver(Context& context) { return static_cast<cusolverDnHandle_t>(context.solver_handle()); }
cudaStream_t stream_of(Context& context) { return static_cast<cudaStream_t>(context.stream()); }

int as_int(std::size_t value, const char* routine, const char* what) {
  if (value > static_cast<std::size_t>(INT_MAX))
    throw InvalidArgument(std::string(routine) + ": " + what + " = " + std::to_string(value) +
                          " exceeds the 32-bit index range of cuBLAS/cuSOLVER; split the problem");
  return static_cast<int>(value);
}

// ---- thin float/double dispatch over the cuBLAS / cuSOLVER C API ---------------------------------
template <class Scalar>
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, Scalar alpha,
          const Scalar* a, int lda, const Scalar* b, int ldb, Scalar beta, Scalar* c, int ldc) {
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUBLAS_CHECK(cublasSgemm(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
  else
    FISHER_UNLEARN_CUBLAS_CHECK(cublasDgemm(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
}

template <class Scalar>
void gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                          Scalar alpha, const Scalar* a, int lda, long long stride_a, const Scalar* b, int ldb,
                          long long stride_b, Scalar beta, Scalar* c, int ldc, long long stride_c, int batch) {
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUBLAS_CHECK(cublasSgemmStridedBatched(h, ta, tb, m, n, k, &alpha, a, lda, stride_a, b, ldb,
                                                          stride_b, &beta, c, ldc, stride_c, batch));
  else
    FISHER_UNLEARN_CUBLAS_CHECK(cublasDgemmStridedBatched(h, ta, tb, m, n, k, &alpha, a, lda, stride_a, b, ldb,
                                                          stride_b, &beta, c, ldc, stride_c, batch));
}

template <class Scalar>
void syrk(cublasHandle_t h, int n, int k, Scalar alpha, const Scalar* a, int lda, Scalar beta, Scalar* c, int ldc) {
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUBLAS_CHECK(
        cublasSsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, k, &alpha, a, lda, &beta, c, ldc));
  else
    FISHER_UNLEARN_CUBLAS_CHECK(
        cublasDsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, k, &alpha, a, lda, &beta, c, ldc));
}

template <class Scalar>
void gemv(cublasHandle_t h, cublasOperation_t t, int rows, int cols, Scalar alpha, const Scalar* a, int lda,
          const Scalar* x, Scalar beta, Scalar* y) {
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUBLAS_CHECK(cublasSgemv(h, t, rows, cols, &alpha, a, lda, x, 1, &beta, y, 1));
  else
    FISHER_UNLEARN_CUBLAS_CHECK(cublasDgemv(h, t, rows, cols, &alpha, a, lda, x, 1, &beta, y, 1));
}

template <class Scalar>
void scal(cublasHandle_t h, int n, Scalar alpha, Scalar* x) {
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUBLAS_CHECK(cublasSscal(h, n, &alpha, x, 1));
  else
    FISHER_UNLEARN_CUBLAS_CHECK(cublasDscal(h, n, &alpha, x, 1));
}

// ---- small kernels -------------------------------------------------------------------------------
template <class Scalar>
__global__ void mirror_lower_kernel(Scalar* a, int n) {
  // Element (row, col) with row < col of the upper triangle takes (col, row) from the lower one.
  const long long total = static_cast<long long>(n) * n;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(idx % n);
    const int col = static_cast<int>(idx / n);
    if (row < col) a[idx] = a[col + static_cast<long long>(row) * n];
  }
}

template <class Scalar>
__global__ void add_to_diagonal_kernel(Scalar* a, int n, Scalar value) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    a[i + static_cast<long long>(i) * n] += value;
}

template <class Scalar>
__global__ void clamp_nonnegative_kernel(Scalar* x, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    x[i] = x[i] > Scalar(0) ? x[i] : Scalar(0);
}

int grid_for(long long items) {
  const long long blocks = (items + 255) / 256;
  return static_cast<int>(blocks < 4096 ? (blocks < 1 ? 1 : blocks) : 4096);
}

}  // namespace

template <class Scalar>
void gram_matrix(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, Scalar alpha, Scalar beta,
                 Scalar* gram, GramAlgorithm algorithm) {
  if (m == 0) return;
  if (gradients == nullptr || gram == nullptr) throw InvalidArgument("gram_matrix: null device pointer");
  const int di = as_int(d, "gram_matrix", "d");
  const int mi = as_int(m, "gram_matrix", "m");
  if (d == 0) {
    // GᵀG of an empty matrix is zero: only the beta scaling remains, which GEMM with k = 0 performs.
    gemm<Scalar>(blas(context), CUBLAS_OP_T, CUBLAS_OP_N, mi, mi, 0, alpha, gradients, 1, gradients, 1, beta, gram, mi);
    return;
  }
  if (algorithm == GramAlgorithm::gemm) {
    gemm<Scalar>(blas(context), CUBLAS_OP_T, CUBLAS_OP_N, mi, mi, di, alpha, gradients, di, gradients, di, beta, gram,
                 mi);
  } else {
    syrk<Scalar>(blas(context), mi, di, alpha, gradients, di, beta, gram, mi);
    mirror_lower_kernel<Scalar><<<grid_for(static_cast<long long>(mi) * mi), 256, 0, stream_of(context)>>>(gram, mi);
    FISHER_UNLEARN_CUDA_CHECK_LAUNCH();
  }
}

template <class Scalar>
void accumulate_block_outer_products(Context& context, const Scalar* gradients, std::size_t d, std::size_t m,
                                     std::size_t block_size, Scalar alpha, Scalar* blocks) {
  if (block_size == 0) throw InvalidArgument("accumulate_block_outer_products: block_size must be at least 1");
  if (d == 0 || m == 0) return;
  if (gradients == nullptr || blocks == nullptr)
    throw InvalidArgument("accumulate_block_outer_products: null device pointer");
  const int di = as_int(d, "accumulate_block_outer_products", "d");
  const int mi = as_int(m, "accumulate_block_outer_products", "m");
  const int b = as_int(block_size < d ? block_size : d, "accumulate_block_outer_products", "block_size");
  const std::size_t full = d / block_size;
  const std::size_t rest = d - full * block_size;
  const long long block_elems = static_cast<long long>(block_size) * static_cast<long long>(block_size);
  // cuBLAS limits one batched call to 65535 batches on some versions' grid layouts: chunk the batch.
  constexpr std::size_t kMaxBatch = 65535;
  for (std::size_t first = 0; first < full; first += kMaxBatch) {
    const std::size_t count = full - first < kMaxBatch ? full - first : kMaxBatch;
    const Scalar* a = gradients + first * block_size;
    gemm_strided_batched<Scalar>(blas(context), CUBLAS_OP_N, CUBLAS_OP_T, b, b, mi, alpha, a, di,
                                 static_cast<long long>(block_size), a, di, static_cast<long long>(block_size),
                                 Scalar(1), blocks + first * block_elems, b, block_elems, static_cast<int>(count));
  }
  if (rest != 0) {
    const int r = static_cast<int>(rest);
    const Scalar* a = gradients + full * block_size;
    gemm<Scalar>(blas(context), CUBLAS_OP_N, CUBLAS_OP_T, r, r, mi, alpha, a, di, a, di, Scalar(1),
                 blocks + full * block_elems, r);
  }
}

template <class Scalar>
void block_eigendecomposition(Context& context, Scalar* blocks, std::size_t d, std::size_t block_size,
                              Scalar* eigenvalues) {
  if (block_size == 0) throw InvalidArgument("block_eigendecomposition: block_size must be at least 1");
  if (d == 0) return;
  if (blocks == nullptr || eigenvalues == nullptr) throw InvalidArgument("block_eigendecomposition: null pointer");
  const cudaDataType type = std::is_same_v<Scalar, float> ? CUDA_R_32F : CUDA_R_64F;
  const cudaStream_t s = stream_of(context);
  const std::size_t full = d / block_size;
  const std::size_t rest = d - full * block_size;
  const std::size_t block_elems = block_size * block_size;
  cusolverDnParams_t params = nullptr;
  FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnCreateParams(&params));
  struct ParamsGuard {
    cusolverDnParams_t p;
    ~ParamsGuard() { cusolverDnDestroyParams(p); }
  } guard{params};
  std::vector<int> info_host;
  // Solves `batch` matrices of order n stored contiguously at a (leading dimension n).
  auto solve = [&](Scalar* a, std::size_t n, Scalar* w, std::size_t batch) {
    std::size_t device_bytes = 0, host_bytes = 0;
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnXsyevBatched_bufferSize(
        solver(context), params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, static_cast<int64_t>(n), type, a,
        static_cast<int64_t>(n), type, w, type, &device_bytes, &host_bytes, static_cast<int64_t>(batch)));
    // Workspace first, then batch status ints, 256-byte aligned.
    const std::size_t info_offset = (device_bytes + 255) / 256 * 256;
    auto* base = static_cast<char*>(context.workspace(info_offset + batch * sizeof(int)));
    int* info = reinterpret_cast<int*>(base + info_offset);
    std::vector<char> host_work(host_bytes > 0 ? host_bytes : 1);
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnXsyevBatched(
        solver(context), params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, static_cast<int64_t>(n), type, a,
        static_cast<int64_t>(n), type, w, type, base, device_bytes, host_work.data(), host_bytes, info,
        static_cast<int64_t>(batch)));
    info_host.assign(batch, 0);
    FISHER_UNLEARN_CUDA_CHECK(cudaMemcpyAsync(info_host.data(), info, batch * sizeof(int), cudaMemcpyDeviceToHost, s));
    FISHER_UNLEARN_CUDA_CHECK(cudaStreamSynchronize(s));
    for (std::size_t k = 0; k < batch; ++k)
      if (info_host[k] != 0)
        throw NumericalError("block_eigendecomposition: the eigensolver failed on a block of order " +
                             std::to_string(n) + " (status " + std::to_string(info_host[k]) +
                             "); check the gradients for NaN, Inf or extreme scales");
  };
  // cuSOLVER limits one batched call to n·lda·batch ≤ INT32_MAX elements: chunk the full blocks.
  const std::size_t per_call = std::max<std::size_t>(1, static_cast<std::size_t>(INT_MAX) / block_elems);
  for (std::size_t first = 0; first < full; first += per_call) {
    const std::size_t count = std::min(per_call, full - first);
    solve(blocks + first * block_elems, block_size, eigenvalues + first * block_size, count);
  }
  if (rest > 0) solve(blocks + full * block_elems, rest, eigenvalues + full * block_size, 1);
  clamp_nonnegative_kernel<Scalar><<<grid_for(static_cast<long long>(d)), 256, 0, s>>>(eigenvalues,
                                                                                        static_cast<long long>(d));
  FISHER_UNLEARN_CUDA_CHECK_LAUNCH();
}

template <class Scalar>
void block_power_product(Context& context, const Scalar* eigenvectors, const Scalar* eigenvalues, std::size_t d,
                         std::size_t block_size, double power, double eigenvalue_scale, double damping,
                         const Scalar* v, Scalar* out, Scalar* work) {
  if (block_size == 0) throw InvalidArgument("block_power_product: block_size must be at least 1");
  if (d == 0) return;
  if (eigenvectors == nullptr || eigenvalues == nullptr || v == nullptr || out == nullptr || work == nullptr)
    throw InvalidArgument("block_power_product: null pointer");
  const std::size_t full = d / block_size;
  const std::size_t rest = d - full * block_size;
  const long long b = static_cast<long long>(block_size);
  const int bi = as_int(full > 0 ? block_size : rest, "block_power_product", "block_size");
  constexpr std::size_t kMaxBatch = 65535;
  // work_k = V_kᵀ v_k
  for (std::size_t first = 0; first < full; first += kMaxBatch) {
    const std::size_t count = full - first < kMaxBatch ? full - first : kMaxBatch;
    gemm_strided_batched<Scalar>(blas(context), CUBLAS_OP_T, CUBLAS_OP_N, bi, 1, bi, Scalar(1),
                                 eigenvectors + first * b * b, bi, b * b, v + first * block_size, bi, b, Scalar(0),
                                 work + first * block_size, bi, b, static_cast<int>(count));
  }
  if (rest > 0) {
    const int r = static_cast<int>(rest);
    gemm<Scalar>(blas(context), CUBLAS_OP_T, CUBLAS_OP_N, r, 1, r, Scalar(1), eigenvectors + full * b * b, r,
                 v + full * block_size, r, Scalar(0), work + full * block_size, r);
  }
  // work ← (λ + s·σ)^p ⊙ work, in place.
  DiagonalStep step;
  step.power = power;
  step.diagonal_scale = eigenvalue_scale;
  step.damping = damping;
  apply_diagonal_power<Scalar>(eigenvalues, work, d, step, work, nullptr, context.stream());
  // out_k = V_k work_k
  for (std::size_t first = 0; first < full; first += kMaxBatch) {
    const std::size_t count = full - first < kMaxBatch ? full - first : kMaxBatch;
    gemm_strided_batched<Scalar>(blas(context), CUBLAS_OP_N, CUBLAS_OP_N, bi, 1, bi, Scalar(1),
                                 eigenvectors + first * b * b, bi, b * b, work + first * block_size, bi, b, Scalar(0),
                                 out + first * block_size, bi, b, static_cast<int>(count));
  }
  if (rest > 0) {
    const int r = static_cast<int>(rest);
    gemm<Scalar>(blas(context), CUBLAS_OP_N, CUBLAS_OP_N, r, 1, r, Scalar(1), eigenvectors + full * b * b, r,
                 work + full * block_size, r, Scalar(0), out + full * block_size, r);
  }
}

template <class Scalar>
void cholesky_factor(Context& context, const Scalar* gram, std::size_t m, Scalar shift, Scalar* factor) {
  if (m == 0) return;
  if (gram == nullptr || factor == nullptr) throw InvalidArgument("cholesky_factor: null device pointer");
  const int mi = as_int(m, "cholesky_factor", "m");
  const cudaStream_t s = stream_of(context);
  const std::size_t bytes = m * m * sizeof(Scalar);
  if (factor != gram)
    FISHER_UNLEARN_CUDA_CHECK(cudaMemcpyAsync(factor, gram, bytes, cudaMemcpyDeviceToDevice, s));
  add_to_diagonal_kernel<Scalar><<<grid_for(mi), 256, 0, s>>>(factor, mi, shift);
  FISHER_UNLEARN_CUDA_CHECK_LAUNCH();
  int lwork = 0;
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUSOLVER_CHECK(
        cusolverDnSpotrf_bufferSize(solver(context), CUBLAS_FILL_MODE_LOWER, mi, factor, mi, &lwork));
  else
    FISHER_UNLEARN_CUSOLVER_CHECK(
        cusolverDnDpotrf_bufferSize(solver(context), CUBLAS_FILL_MODE_LOWER, mi, factor, mi, &lwork));
  auto* work = static_cast<Scalar*>(context.workspace(static_cast<std::size_t>(lwork > 0 ? lwork : 1) * sizeof(Scalar)));
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnSpotrf(solver(context), CUBLAS_FILL_MODE_LOWER, mi, factor, mi, work,
                                                   lwork, context.device_info()));
  else
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnDpotrf(solver(context), CUBLAS_FILL_MODE_LOWER, mi, factor, mi, work,
                                                   lwork, context.device_info()));
  int info = 0;
  FISHER_UNLEARN_CUDA_CHECK(cudaMemcpyAsync(&info, context.device_info(), sizeof(int), cudaMemcpyDeviceToHost, s));
  FISHER_UNLEARN_CUDA_CHECK(cudaStreamSynchronize(s));
  if (info > 0)
    throw NumericalError("cholesky_factor: mλI + GᵀG is not positive definite (leading minor " +
                         std::to_string(info) +
                         " failed); the damping is too small for the precision or the gradients are not finite; "
                         "raise the damping");
  if (info < 0)
    throw InvalidArgument("cholesky_factor: cuSOLVER rejected argument " + std::to_string(-info));
}

template <class Scalar>
void low_rank_product(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, const Scalar* v,
                      Scalar alpha, Scalar beta, Scalar* out, Scalar* work) {
  if (d == 0) return;
  if (gradients == nullptr || v == nullptr || out == nullptr || work == nullptr)
    throw InvalidArgument("low_rank_product: null device pointer");
  const int di = as_int(d, "low_rank_product", "d");
  const int mi = as_int(m, "low_rank_product", "m");
  const cudaStream_t s = stream_of(context);
  FISHER_UNLEARN_CUDA_CHECK(cudaMemcpyAsync(out, v, d * sizeof(Scalar), cudaMemcpyDeviceToDevice, s));
  if (m == 0) {
    scal<Scalar>(blas(context), di, beta, out);
    return;
  }
  gemv<Scalar>(blas(context), CUBLAS_OP_T, di, mi, Scalar(1), gradients, di, v, Scalar(0), work);
  gemv<Scalar>(blas(context), CUBLAS_OP_N, di, mi, alpha, gradients, di, work, beta, out);
}

template <class Scalar>
void transpose_product(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, const Scalar* v,
                       Scalar* out) {
  if (m == 0) return;
  if (gradients == nullptr || v == nullptr || out == nullptr) throw InvalidArgument("transpose_product: null pointer");
  const int di = as_int(d, "transpose_product", "d");
  const int mi = as_int(m, "transpose_product", "m");
  if (d == 0) {
    FISHER_UNLEARN_CUDA_CHECK(cudaMemsetAsync(out, 0, m * sizeof(Scalar), stream_of(context)));
    return;
  }
  gemv<Scalar>(blas(context), CUBLAS_OP_T, di, mi, Scalar(1), gradients, di, v, Scalar(0), out);
}

template <class Scalar>
void product_accumulate(Context& context, const Scalar* gradients, std::size_t d, std::size_t m, const Scalar* c,
                        Scalar alpha, Scalar beta, Scalar* out) {
  if (d == 0) return;
  if (gradients == nullptr || c == nullptr || out == nullptr) throw InvalidArgument("product_accumulate: null pointer");
  const int di = as_int(d, "product_accumulate", "d");
  const int mi = as_int(m, "product_accumulate", "m");
  if (m == 0) {
    // cuBLAS GEMV with no columns returns without scaling y; do the beta scaling explicitly.
    if (beta == Scalar(0))
      FISHER_UNLEARN_CUDA_CHECK(cudaMemsetAsync(out, 0, d * sizeof(Scalar), stream_of(context)));
    else
      scal<Scalar>(blas(context), di, beta, out);
    return;
  }
  gemv<Scalar>(blas(context), CUBLAS_OP_N, di, mi, alpha, gradients, di, c, beta, out);
}

template <class Scalar>
void woodbury_inverse_product(Context& context, const Scalar* gradients, std::size_t d, std::size_t m,
                              const Scalar* cholesky, Scalar damping, const Scalar* v, Scalar* out, Scalar* work) {
  if (d == 0) return;
  if (!(damping > Scalar(0)))
    throw InvalidArgument("woodbury_inverse_product: damping must be > 0 (F = λI + GGᵀ/m is singular otherwise)");
  if (gradients == nullptr || cholesky == nullptr || v == nullptr || out == nullptr || work == nullptr)
    throw InvalidArgument("woodbury_inverse_product: null device pointer");
  const int di = as_int(d, "woodbury_inverse_product", "d");
  const int mi = as_int(m, "woodbury_inverse_product", "m");
  const cudaStream_t s = stream_of(context);
  const Scalar inverse_damping = Scalar(1) / damping;
  FISHER_UNLEARN_CUDA_CHECK(cudaMemcpyAsync(out, v, d * sizeof(Scalar), cudaMemcpyDeviceToDevice, s));
  if (m == 0) {
    scal<Scalar>(blas(context), di, inverse_damping, out);
    return;
  }
  gemv<Scalar>(blas(context), CUBLAS_OP_T, di, mi, Scalar(1), gradients, di, v, Scalar(0), work);
  // cuSOLVER's potrs reports only invalid arguments through info (checked at the next factorisation).
  if constexpr (std::is_same_v<Scalar, float>)
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnSpotrs(solver(context), CUBLAS_FILL_MODE_LOWER, mi, 1, cholesky, mi, work,
                                                   mi, context.device_info()));
  else
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnDpotrs(solver(context), CUBLAS_FILL_MODE_LOWER, mi, 1, cholesky, mi, work,
                                                   mi, context.device_info()));
  gemv<Scalar>(blas(context), CUBLAS_OP_N, di, mi, -inverse_damping, gradients, di, work, inverse_damping, out);
}

#define FISHER_UNLEARN_INSTANTIATE(Scalar)                                                                        \
  template void gram_matrix<Scalar>(Context&, const Scalar*, std::size_t, std::size_t, Scalar, Scalar, Scalar*,    \
                                    GramAlgorithm);                                                                \
  template void accumulate_block_outer_products<Scalar>(Context&, const Scalar*, std::size_t, std::size_t,        \
                                                        std::size_t, Scalar, Scalar*);                             \
  template void block_eigendecomposition<Scalar>(Context&, Scalar*, std::size_t, std::size_t, Scalar*);         \
  template void block_power_product<Scalar>(Context&, const Scalar*, const Scalar*, std::size_t, std::size_t,     \
                                            double, double, double, const Scalar*, Scalar*, Scalar*);             \
  template void cholesky_factor<Scalar>(Context&, const Scalar*, std::size_t, Scalar, Scalar*);                    \
  template void low_rank_product<Scalar>(Context&, const Scalar*, std::size_t, std::size_t, const Scalar*, Scalar, \
                                         Scalar, Scalar*, Scalar*);                                                \
  template void transpose_product<Scalar>(Context&, const Scalar*, std::size_t, std::size_t, const Scalar*,        \
                                          Scalar*);                                                                \
  template void product_accumulate<Scalar>(Context&, const Scalar*, std::size_t, std::size_t, const Scalar*,       \
                                           Scalar, Scalar, Scalar*);                                               \
  template void woodbury_inverse_product<Scalar>(Context&, const Scalar*, std::size_t, std::size_t, const Scalar*, \
                                                 Scalar, const Scalar*, Scalar*, Scalar*);
FISHER_UNLEARN_INSTANTIATE(float)
FISHER_UNLEARN_INSTANTIATE(double)
#undef FISHER_UNLEARN_INSTANTIATE

}  // namespace fisher_unlearn::cuda
