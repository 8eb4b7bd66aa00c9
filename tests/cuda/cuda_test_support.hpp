// Helpers shared by the CUDA tests: seeded random host data, host<->device round trips, and the
// relative error ‖out − ref‖/‖ref‖ with a tolerance that depends on the precision.
#pragma once

#include "fisher_unlearn/cuda/device_buffer.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <type_traits>
#include <vector>

namespace cuda_test {

template <class Scalar>
std::vector<Scalar> random_normal(std::size_t n, std::uint64_t seed, double mean = 0.0, double stddev = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<Scalar> out(n);
  for (auto& x : out) x = static_cast<Scalar>(dist(rng));
  return out;
}

template <class Scalar>
std::vector<Scalar> random_positive(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(0.1, 2.0);
  std::vector<Scalar> out(n);
  for (auto& x : out) x = static_cast<Scalar>(dist(rng));
  return out;
}

template <class Scalar>
fisher_unlearn::cuda::DeviceBuffer<Scalar> to_device(const std::vector<Scalar>& host) {
  return fisher_unlearn::cuda::DeviceBuffer<Scalar>(std::span<const Scalar>(host.data(), host.size()));
}

template <class Scalar>
std::vector<Scalar> to_host(const fisher_unlearn::cuda::DeviceBuffer<Scalar>& device, std::size_t count,
                            std::size_t offset = 0) {
  fisher_unlearn::cuda::device_synchronize();
  std::vector<Scalar> host(count);
  fisher_unlearn::cuda::detail::copy_device_to_host(host.data(), device.data() + offset, count * sizeof(Scalar),
                                                    nullptr);
  fisher_unlearn::cuda::device_synchronize();
  return host;
}

/// ‖out − ref‖ / ‖ref‖ in double; NaN anywhere gives +inf, so it never passes.
template <class A, class B>
double relative_error(const A& out, const B& ref) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(ref.size()); ++i) {
    const double o = static_cast<double>(out[i]), r = static_cast<double>(ref[i]);
    if (!std::isfinite(o)) return INFINITY;
    diff += (o - r) * (o - r);
    norm += r * r;
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

/// Elementwise work: a few ulps. Reductions over k terms grow like √k·ε; callers pass k.
template <class Scalar>
double tolerance(double terms = 1.0) {
  const double eps = std::is_same_v<Scalar, float> ? 1.2e-7 : 2.3e-16;
  return 16.0 * eps * std::sqrt(terms < 1.0 ? 1.0 : terms) + (std::is_same_v<Scalar, float> ? 1e-6 : 1e-14);
}

}  // namespace cuda_test
