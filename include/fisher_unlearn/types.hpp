// Vocabulary types shared by every component: Eigen aliases, parameter groups, scalar rules.
#pragma once

#include <Eigen/Core>

#include <concepts>
#include <cstddef>
#include <span>
#include <string>

namespace fisher_unlearn {

/// The floating-point types the library is instantiated for.
template <class Scalar>
concept SupportedScalar = std::same_as<Scalar, float> || std::same_as<Scalar, double>;

template <SupportedScalar Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <SupportedScalar Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

/// A view of a contiguous vector as an Eigen vector, without copying.
template <SupportedScalar Scalar>
Eigen::Map<Vector<Scalar>> as_eigen(std::span<Scalar> s) {
  return Eigen::Map<Vector<Scalar>>(s.data(), static_cast<Eigen::Index>(s.size()));
}
template <SupportedScalar Scalar>
Eigen::Map<const Vector<Scalar>> as_eigen(std::span<const Scalar> s) {
  return Eigen::Map<const Vector<Scalar>>(s.data(), static_cast<Eigen::Index>(s.size()));
}

/// A named, contiguous range of a model's parameter vector: [offset, offset + size).
/// A transformer names its blocks ("block3.attn"), embeddings and head this way, so unlearning can be
/// restricted to a subset of the parameters without copying the model.
struct ParameterGroup {
  std::string name;
  std::size_t offset = 0;
  std::size_t size = 0;
};

}  // namespace fisher_unlearn
