// GPU Fisher estimators: the same FisherEstimator concept as DiagonalFisher and WoodburyFisher
// (host Eigen vectors in and out), with the gradients and statistics kept in device memory:
//   DiagonalFisherGpu  F = λI + diag((1/m)Σᵢ gᵢ⊙gᵢ)   add O(d·m) on the GPU, apply O(d), memory 3·d
//   WoodburyFisherGpu  F = λI + (1/m)GGᵀ, exact       finalize O(d·m²) GEMM + O(m³), apply O(d·m), memory d·m
//   BlockDiagonalFisherGpu  F_k = λI + (1/m)Σᵢ g_{i,k}g_{i,k}ᵀ on blocks of size b: add O(d·b·m) batched GEMM,
//                      finalize O(d·b²) batched eigensolver, apply O(d·b), memory 2·d·b
// A user picks the backend by type: every unlearner templated on a FisherEstimator accepts these.
// Host-vector calls cost a PCIe transfer of v and out; the *_device members take device pointers and
// stay on the GPU. Members are defined in the fisher_unlearn::cuda library (float and double).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/cuda/context.hpp"
#include "fisher_unlearn/cuda/device_buffer.hpp"
#include "fisher_unlearn/cuda/routines.hpp"
#include "fisher_unlearn/types.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace fisher_unlearn::cuda {

/// Diagonal Fisher on the GPU. Squares are summed in Scalar (the CPU DiagonalFisher sums in double):
/// for float and m in the thousands the relative difference stays near 1e-6.
/// Copies share the stream and library handles of the original (use one copy per thread at a time)
/// and own their device data.
template <SupportedScalar ScalarT>
class DiagonalFisherGpu {
 public:
  using Scalar = ScalarT;

  /// dimension: d ≥ 1; damping: λ > 0 and finite; stream: a cudaStream_t as void* (nullptr: default).
  /// Throws CudaError when no device is usable.
  DiagonalFisherGpu(std::size_t dimension, Scalar damping, void* stream = nullptr);

  std::size_t dimension() const { return dimension_; }
  std::size_t num_gradients() const { return num_gradients_; }
  bool is_finalized() const { return finalized_; }

  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient);
  /// The columns of a d×k host matrix; checked for size and finiteness before anything is added.
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients);
  /// k gradients already on the device (d×k column-major); not checked for finiteness.
  void add_gradients_device(const Scalar* gradients, std::size_t count);
  /// Throws InvalidArgument when no gradient was added.
  void finalize();

  /// Every finite real p.
  bool supports_power(double power) const;
  /// out = F^p v. Throws StateError before finalize(), InvalidArgument for sizes/aliasing, NonFiniteError.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const;
  /// out = F^p v on device vectors of d elements (asynchronous on the stream).
  void apply_power_device(double power, const Scalar* v, Scalar* out) const;
  /// The fused forgetting step on device vectors: step = scale·F^p v + noise_std·F^{-1/4} ⊙ ε
  /// (ε ~ N(0,I), Philox with (seed, noise_counter)); θ += step when theta is not null, step written to
  /// out when out is not null. v may be null (noise only).
  void step_device(double power, Scalar scale, const Scalar* v, Scalar noise_std, std::uint64_t seed,
                   std::uint64_t noise_counter, Scalar* theta, Scalar* out) const;

  /// λ + (1/m)Σ g² (after finalize()), copied to the host.
  Vector<Scalar> diagonal() const;
  /// Σ g² on the device (not divided by m, no damping).
  const Scalar* device_sum_of_squares() const { return sum_of_squares_.data(); }

  Scalar damping() const { return damping_; }
  void set_damping(Scalar damping);
  /// Device bytes held (statistics and scratch).
  std::size_t memory_bytes() const;
  void clear();
  void* stream() const { return context_->stream(); }

 private:
  std::size_t dimension_;
  Scalar damping_;
  std::shared_ptr<Context> context_;
  DeviceBuffer<Scalar> sum_of_squares_;
  DeviceBuffer<Scalar> staging_;          // host batches are copied here before accumulation
  mutable DeviceBuffer<Scalar> scratch_;  // 2·d: v and out of host-vector applies
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
};

/// Exact low-rank-plus-damping Fisher on the GPU: G (d×m) stays on the device; finalize() forms the
/// Gram matrix GᵀG with one cuBLAS GEMM and the Cholesky factor of mλI + GᵀG with cuSOLVER.
///   p = −1: Woodbury solve, c = (mλI + GᵀG)⁻¹Gᵀv, out = (v − Gc)/λ   (two passes over G)
///   p = +1: out = λv + (1/m)G(Gᵀv)                                      (two passes over G)
///   other finite p: the spectral formula F^p v = λ^p v + G·B·diag(...)·Bᵀ·Gᵀv with the eigenvectors
///   of the m×m Gram matrix computed once on the host in double (O(m³), on first use after finalize).
/// No sliding window (the CPU WoodburyFisher has one). Precision: the Gram matrix and the factor are
/// in Scalar, so float needs λ well above 1e-6·‖G‖²/m for the factor to be accurate.
template <SupportedScalar ScalarT>
class WoodburyFisherGpu {
 public:
  using Scalar = ScalarT;

  WoodburyFisherGpu(std::size_t dimension, Scalar damping, void* stream = nullptr);
  ~WoodburyFisherGpu();
  WoodburyFisherGpu(const WoodburyFisherGpu& other);
  WoodburyFisherGpu& operator=(const WoodburyFisherGpu& other);
  WoodburyFisherGpu(WoodburyFisherGpu&&) noexcept;
  WoodburyFisherGpu& operator=(WoodburyFisherGpu&&) noexcept;

  std::size_t dimension() const { return dimension_; }
  std::size_t num_gradients() const { return m_; }
  bool is_finalized() const { return finalized_; }

  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient);
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients);
  void add_gradients_device(const Scalar* gradients, std::size_t count);
  /// Gram matrix and Cholesky factor. Throws InvalidArgument when m = 0, NumericalError when the
  /// factorisation fails (raise the damping).
  void finalize();

  bool supports_power(double power) const;
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const;
  /// out = F^p v for device vectors of d elements (out must not alias v). Synchronous for p ∉ {−1, 1}.
  void apply_power_device(double power, const Scalar* v, Scalar* out) const;

  Scalar damping() const { return damping_; }
  /// Changes λ; refactors the m×m system on the device (O(m³/3)) without another pass over G.
  void set_damping(Scalar damping);
  std::size_t memory_bytes() const;
  void clear();
  void* stream() const { return context_->stream(); }

  /// The stored gradients on the device: d×num_gradients() column-major, leading dimension d.
  const Scalar* device_gradients() const { return gradients_.data(); }
  /// GᵀG (m×m column-major) on the device, after finalize().
  const Scalar* device_gram() const { return gram_.data(); }

 private:
  struct Spectral;  // host eigendecomposition cache for general powers (defined in the library)
  void reserve(std::size_t columns);
  void refactor();
  const Spectral& spectral() const;

  std::size_t dimension_;
  Scalar damping_;
  std::shared_ptr<Context> context_;
  DeviceBuffer<Scalar> gradients_;  // d × capacity
  std::size_t m_ = 0;
  DeviceBuffer<Scalar> gram_;       // m × m
  DeviceBuffer<Scalar> factor_;     // m × m, lower Cholesky factor of mλI + GᵀG
  mutable DeviceBuffer<Scalar> scratch_;  // 2·d + 2·m
  mutable std::unique_ptr<Spectral> spectral_;
  bool factor_ok_ = false;  // false: mλI + GᵀG did not factor in Scalar; p = −1 uses the spectral path
  bool finalized_ = false;
};

/// Block-diagonal Fisher on the GPU, matching BlockDiagonalFisher(dimension, damping, block_size):
/// consecutive blocks of block_size parameters and a smaller last one (block_size 0 or ≥ d: one dense
/// block). Each block's Σ ggᵀ is accumulated with one strided-batched GEMM per batch and
/// eigendecomposed on the device (cuSOLVER XsyevBatched), so F^p v is exact for every finite p.
/// Eigen-decomposition in Scalar: for float, eigenvalues below about 1e-6 of a block's largest are noise
/// (harmless unless λ is that small).
template <SupportedScalar ScalarT>
class BlockDiagonalFisherGpu {
 public:
  using Scalar = ScalarT;

  BlockDiagonalFisherGpu(std::size_t dimension, Scalar damping, std::size_t block_size = 0, void* stream = nullptr);

  std::size_t dimension() const { return dimension_; }
  std::size_t block_size() const { return block_size_; }
  std::size_t num_blocks() const { return block_count(dimension_, block_size_); }
  std::size_t num_gradients() const { return num_gradients_; }
  bool is_finalized() const { return finalized_; }

  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient);
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients);
  void add_gradients_device(const Scalar* gradients, std::size_t count);
  /// Eigendecomposes every block. Throws InvalidArgument when m = 0, NumericalError on solver failure
  /// (the estimator then stays unfinalized).
  void finalize();

  bool supports_power(double power) const;
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const;
  /// out = F^p v on device vectors of d elements (out must not alias v).
  void apply_power_device(double power, const Scalar* v, Scalar* out) const;
  /// The eigenvalues of every block's (1/m)Σ ggᵀ, block after block (ascending within a block).
  Vector<Scalar> eigenvalues() const;

  Scalar damping() const { return damping_; }
  void set_damping(Scalar damping);
  std::size_t memory_bytes() const;
  void clear();
  void* stream() const { return context_->stream(); }

 private:
  std::size_t dimension_;
  Scalar damping_;
  std::size_t block_size_;
  std::shared_ptr<Context> context_;
  DeviceBuffer<Scalar> sums_;          // Σ g_k g_kᵀ per block (layout of accumulate_block_outer_products)
  DeviceBuffer<Scalar> eigenvectors_;  // same layout, after finalize()
  DeviceBuffer<Scalar> eigenvalues_;   // d
  DeviceBuffer<Scalar> staging_;
  mutable DeviceBuffer<Scalar> scratch_;  // 3·d: v, out, work
  std::size_t num_gradients_ = 0;
  bool finalized_ = false;
};

static_assert(FisherEstimator<DiagonalFisherGpu<float>> && FisherEstimator<DiagonalFisherGpu<double>>);
static_assert(FisherEstimator<WoodburyFisherGpu<float>> && FisherEstimator<WoodburyFisherGpu<double>>);
static_assert(FisherEstimator<BlockDiagonalFisherGpu<float>> && FisherEstimator<BlockDiagonalFisherGpu<double>>);

}  // namespace fisher_unlearn::cuda
