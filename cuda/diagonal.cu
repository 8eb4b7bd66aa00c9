// Diagonal Fisher kernels: the squared-gradient accumulation diag += s·Σᵢ gᵢ⊙gᵢ (one read of the
// d×m gradients) and the fused damped power/noise/update pass (one read of diag and v, one write).
// Both are memory-bound; the aligned paths move 16 bytes per thread per load.
#include "check.cuh"

#include "fisher_unlearn/cuda/routines.hpp"
#include "fisher_unlearn/errors.hpp"

#include <curand_kernel.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace fisher_unlearn::cuda {
namespace {

constexpr int kThreads = 256;

int grid_for(std::size_t work_items) {
  // Enough blocks to fill any current GPU several times over; the kernels stride over the rest.
  const std::size_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks == 0 ? 1 : blocks) : 65535 * 16);
}

bool aligned16(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; }

// ---- accumulate_squares ---------------------------------------------------------------------------
// Thread t owns Width consecutive columns j (Width = 16 bytes / sizeof(Scalar) on the aligned path, 1
// otherwise) and sums over the m gradients in order i = 0..m−1, so each sum has a fixed order. The
// unroll keeps four independent rows of loads in flight before their FMAs.
// At most 16-byte alignment: a double group of four is two 16-byte accesses, so a 16-byte aligned
// pointer suffices for every pack.
template <class Scalar, int Width>
struct alignas(sizeof(Scalar) * Width < 16 ? sizeof(Scalar) * Width : 16) Pack {
  Scalar value[Width];
};

template <class Scalar, int Width>
__global__ void accumulate_squares_kernel(const Scalar* __restrict__ gradients, std::size_t d, std::size_t m,
                                          Scalar scale, Scalar* __restrict__ diagonal) {
  using P = Pack<Scalar, Width>;
  const std::size_t packs = d / Width;
  for (std::size_t t = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; t < packs;
       t += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    Scalar sum[Width];
#pragma unroll
    for (int w = 0; w < Width; ++w) sum[w] = Scalar(0);
    const P* __restrict__ column = reinterpret_cast<const P*>(gradients) + t;
    const std::size_t row_stride = d / Width;  // in packs; exact on the aligned path (d % Width == 0)
    std::size_t i = 0;
    for (; i + 4 <= m; i += 4) {
      P g[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) g[u] = column[(i + u) * row_stride];
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int w = 0; w < Width; ++w) sum[w] = fma(g[u].value[w], g[u].value[w], sum[w]);
    }
    for (; i < m; ++i) {
      const P g = column[i * row_stride];
#pragma unroll
      for (int w = 0; w < Width; ++w) sum[w] = fma(g.value[w], g.value[w], sum[w]);
    }
    P* out = reinterpret_cast<P*>(diagonal) + t;
    P current = *out;
#pragma unroll
    for (int w = 0; w < Width; ++w) current.value[w] = fma(scale, sum[w], current.value[w]);
    *out = current;
  }
}

// ---- apply_diagonal_power --------------------------------------------------------------------------
enum class PowerKind : int { general, minus_one, minus_half, half, one };

PowerKind classify(double power) {
  if (power == -1.0) return PowerKind::minus_one;
  if (power == -0.5) return PowerKind::minus_half;
  if (power == 0.5) return PowerKind::half;
  if (power == 1.0) return PowerKind::one;
  return PowerKind::general;
}

template <class Scalar>
__device__ __forceinline__ Scalar raise(Scalar f, PowerKind kind, Scalar power) {
  switch (kind) {
    case PowerKind::minus_one: return Scalar(1) / f;
    case PowerKind::minus_half: return Scalar(1) / sqrt(f);
    case PowerKind::half: return sqrt(f);
    case PowerKind::one: return f;
    default: return pow(f, power);
  }
}

struct StepArguments {
  PowerKind kind;
  double power, scale, diagonal_scale, damping, noise_std;
  unsigned long long seed, offset;
};

// Four N(0,1) draws for elements 4t..4t+3: Philox subsequence t, so independent of the grid.
template <class Scalar>
__device__ __forceinline__ void normals4(unsigned long long seed, std::size_t t, unsigned long long offset,
                                         Scalar (&eps)[4]) {
  curandStatePhilox4_32_10_t state;
  curand_init(seed, static_cast<unsigned long long>(t), offset, &state);
  if constexpr (sizeof(Scalar) == sizeof(float)) {
    const float4 n = curand_normal4(&state);
    eps[0] = n.x;
    eps[1] = n.y;
    eps[2] = n.z;
    eps[3] = n.w;
  } else {
    const double2 a = curand_normal2_double(&state);
    const double2 b = curand_normal2_double(&state);
    eps[0] = a.x;
    eps[1] = a.y;
    eps[2] = b.x;
    eps[3] = b.y;
  }
}

// v is not __restrict__: out may alias it (each element is read and then written by one thread).
// Thread t handles elements 4t..4t+3. Aligned == true: every pointer is 16-byte aligned, so the
// groups of four load as one (float) or two (double) 16-byte vectors; the tail group is scalar.
template <class Scalar, bool Noise, bool Aligned>
__global__ void apply_diagonal_power_kernel(const Scalar* __restrict__ diagonal, const Scalar* v,
                                            std::size_t d, StepArguments a, Scalar* out, Scalar* theta) {
  const Scalar power = static_cast<Scalar>(a.power);
  const Scalar scale = static_cast<Scalar>(a.scale);
  const Scalar diagonal_scale = static_cast<Scalar>(a.diagonal_scale);
  const Scalar damping = static_cast<Scalar>(a.damping);
  const Scalar noise_std = static_cast<Scalar>(a.noise_std);
  const std::size_t groups = (d + 3) / 4;
  for (std::size_t t = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; t < groups;
       t += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t base = 4 * t;
    const bool full = base + 4 <= d;
    Scalar f[4], x[4] = {Scalar(0), Scalar(0), Scalar(0), Scalar(0)};
    if (Aligned && full) {
      using P = Pack<Scalar, 4>;
      const P fd = *reinterpret_cast<const P*>(diagonal + base);
#pragma unroll
      for (int k = 0; k < 4; ++k) f[k] = fd.value[k];
      if (v != nullptr) {
        const P vd = *reinterpret_cast<const P*>(v + base);
#pragma unroll
        for (int k = 0; k < 4; ++k) x[k] = vd.value[k];
      }
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const bool inside = base + k < d;
        f[k] = inside ? diagonal[base + k] : Scalar(1);
        x[k] = (inside && v != nullptr) ? v[base + k] : Scalar(0);
      }
    }
    Scalar eps[4];
    if constexpr (Noise) normals4<Scalar>(a.seed, t, a.offset, eps);
    Scalar step[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const Scalar damped = fma(diagonal_scale, f[k], damping);
      step[k] = scale * raise(damped, a.kind, power) * x[k];
      if constexpr (Noise) step[k] = fma(noise_std / sqrt(sqrt(damped)), eps[k], step[k]);
    }
    if (Aligned && full) {
      using P = Pack<Scalar, 4>;
      if (theta != nullptr) {
        P th = *reinterpret_cast<const P*>(theta + base);
#pragma unroll
        for (int k = 0; k < 4; ++k) th.value[k] += step[k];
        *reinterpret_cast<P*>(theta + base) = th;
      }
      if (out != nullptr) {
        P o;
#pragma unroll
        for (int k = 0; k < 4; ++k) o.value[k] = step[k];
        *reinterpret_cast<P*>(out + base) = o;
      }
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (base + k >= d) break;
        if (theta != nullptr) theta[base + k] += step[k];
        if (out != nullptr) out[base + k] = step[k];
      }
    }
  }
}

template <class Scalar, bool Noise>
void launch_apply(const Scalar* diagonal, const Scalar* v, std::size_t d, const StepArguments& a, Scalar* out,
                  Scalar* theta, cudaStream_t stream) {
  const bool aligned = aligned16(diagonal) && (v == nullptr || aligned16(v)) && (out == nullptr || aligned16(out)) &&
                       (theta == nullptr || aligned16(theta));
  const int grid = grid_for((d + 3) / 4);
  if (aligned)
    apply_diagonal_power_kernel<Scalar, Noise, true><<<grid, kThreads, 0, stream>>>(diagonal, v, d, a, out, theta);
  else
    apply_diagonal_power_kernel<Scalar, Noise, false><<<grid, kThreads, 0, stream>>>(diagonal, v, d, a, out, theta);
  FISHER_UNLEARN_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Scalar>
void accumulate_squares(const Scalar* gradients, std::size_t d, std::size_t m, Scalar scale, Scalar* diagonal,
                        void* stream) {
  if (d == 0 || m == 0) return;
  if (gradients == nullptr || diagonal == nullptr)
    throw InvalidArgument("accumulate_squares: null device pointer; pass device buffers of d·m and d elements");
  const auto s = static_cast<cudaStream_t>(stream);
  constexpr int width = 16 / sizeof(Scalar);
  if (d % width == 0 && aligned16(gradients) && aligned16(diagonal)) {
    accumulate_squares_kernel<Scalar, width><<<grid_for(d / width), kThreads, 0, s>>>(gradients, d, m, scale, diagonal);
  } else {
    accumulate_squares_kernel<Scalar, 1><<<grid_for(d), kThreads, 0, s>>>(gradients, d, m, scale, diagonal);
  }
  FISHER_UNLEARN_CUDA_CHECK_LAUNCH();
}

template <class Scalar>
void apply_diagonal_power(const Scalar* diagonal, const Scalar* v, std::size_t d, const DiagonalStep& step,
                          Scalar* out, Scalar* theta, void* stream) {
  if (d == 0) return;
  if (diagonal == nullptr)
    throw InvalidArgument("apply_diagonal_power: the diagonal is a null pointer; pass a device buffer of d elements");
  if (out == nullptr && theta == nullptr)
    throw InvalidArgument("apply_diagonal_power: both out and theta are null, so the result would be discarded; "
                          "pass at least one of them");
  if (!(step.damping >= 0.0) || !std::isfinite(step.damping) || !std::isfinite(step.power) ||
      !std::isfinite(step.scale) || !std::isfinite(step.diagonal_scale) || !(step.noise_std >= 0.0) ||
      !std::isfinite(step.noise_std))
    throw InvalidArgument("apply_diagonal_power: damping and noise_std must be finite and >= 0, and power, scale "
                          "and diagonal_scale finite");
  StepArguments a{classify(step.power), step.power, step.scale, step.diagonal_scale, step.damping, step.noise_std,
                  step.seed, step.noise_counter * 8ULL};
  const auto s = static_cast<cudaStream_t>(stream);
  if (step.noise_std > 0.0)
    launch_apply<Scalar, true>(diagonal, v, d, a, out, theta, s);
  else
    launch_apply<Scalar, false>(diagonal, v, d, a, out, theta, s);
}

template void accumulate_squares<float>(const float*, std::size_t, std::size_t, float, float*, void*);
template void accumulate_squares<double>(const double*, std::size_t, std::size_t, double, double*, void*);
template void apply_diagonal_power<float>(const float*, const float*, std::size_t, const DiagonalStep&, float*,
                                          float*, void*);
template void apply_diagonal_power<double>(const double*, const double*, std::size_t, const DiagonalStep&, double*,
                                           double*, void*);

}  // namespace fisher_unlearn::cuda
