// Host glue of the GPU Fisher estimators (include/fisher_unlearn/cuda/estimators.hpp): argument checks
// with Eigen on the host, data movement, and calls of the device routines. Compiled by the host
// compiler into fisher_unlearn_cuda; the only CUDA code it reaches is through routines.hpp.
#include "fisher_unlearn/cuda/estimators.hpp"

#include "fisher_unlearn/errors.hpp"

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace fisher_unlearn::cuda {
namespace {

std::string number(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

std::size_t checked_dimension(const char* who, std::size_t dimension) {
  if (dimension == 0)
    throw InvalidArgument(std::string(who) + ": dimension must be at least 1 (the number of parameters), got 0");
  return dimension;
}

template <class Scalar>
Scalar checked_damping(const char* who, Scalar damping) {
  if (!std::isfinite(static_cast<double>(damping)) || !(damping > Scalar(0)))
    throw InvalidArgument(std::string(who) + ": damping must be a finite number > 0, got " +
                          number(static_cast<double>(damping)) +
                          "; F = damping·I + (1/m)Σ gᵢgᵢᵀ needs damping > 0 to be invertible");
  return damping;
}

template <class Derived>
void check_gradients(const char* who, const Eigen::MatrixBase<Derived>& gradients, std::size_t dimension) {
  if (static_cast<std::size_t>(gradients.rows()) != dimension)
    throw InvalidArgument(std::string(who) + ": a gradient has " + std::to_string(gradients.rows()) +
                          " entries but the estimator was built for dimension " + std::to_string(dimension) +
                          "; pass gradients as the columns of a d×m matrix with d = dimension()");
  if (!gradients.allFinite())
    throw NonFiniteError(std::string(who) + ": a gradient contains NaN or Inf; nothing was added. Check the "
                                            "model's gradient and the data");
}

void check_power(const char* who, double power) {
  if (!std::isfinite(power))
    throw InvalidArgument(std::string(who) + ": the power p = " + number(power) +
                          " is not supported; use a finite real p (check supports_power(p))");
}

template <class VectorIn, class VectorOut>
void check_apply(const char* who, bool finalized, std::size_t dimension, const VectorIn& v, const VectorOut& out) {
  if (!finalized)
    throw StateError(std::string(who) +
                     ": the estimator is not finalized (no finalize() yet, or gradients were added since); call "
                     "finalize() before applying it");
  if (static_cast<std::size_t>(v.size()) != dimension || static_cast<std::size_t>(out.size()) != dimension)
    throw InvalidArgument(std::string(who) + ": v has size " + std::to_string(v.size()) + " and out has size " +
                          std::to_string(out.size()) + ", both must equal dimension() = " + std::to_string(dimension));
  if (v.size() > 0 && v.data() == out.data())
    throw InvalidArgument(std::string(who) + ": out aliases v; pass a separate output vector");
  if (!v.allFinite()) throw NonFiniteError(std::string(who) + ": v contains NaN or Inf; the product is not defined");
}

void check_ready(const char* who, bool finalized) {
  if (!finalized)
    throw StateError(std::string(who) + ": the estimator is not finalized; call finalize() first");
}

// (λ+σ)^p − λ^p without cancellation when σ ≪ λ.
double shifted_power_minus_base(double damping, double sigma, double power) {
  return std::pow(damping, power) * std::expm1(power * std::log1p(std::max(sigma, 0.0) / damping));
}

// Copies the columns of a host matrix (any outer stride) to contiguous device storage at `device`.
template <class Scalar>
void upload_columns(const Eigen::Ref<const Matrix<Scalar>>& columns, Scalar* device, void* stream) {
  const auto rows = static_cast<std::size_t>(columns.rows());
  if (columns.outerStride() == columns.rows()) {
    detail::copy_host_to_device(device, columns.data(), rows * static_cast<std::size_t>(columns.cols()) * sizeof(Scalar),
                                stream);
  } else {
    for (Eigen::Index j = 0; j < columns.cols(); ++j)
      detail::copy_host_to_device(device + static_cast<std::size_t>(j) * rows, columns.col(j).data(),
                                  rows * sizeof(Scalar), stream);
  }
}

template <class Scalar>
void ensure_size(DeviceBuffer<Scalar>& buffer, std::size_t size) {
  if (buffer.size() < size) buffer = DeviceBuffer<Scalar>(size);
}

// Host batches are uploaded in chunks of at most this many elements, so staging memory stays bounded.
constexpr std::size_t kStagingElements = std::size_t(1) << 24;

}  // namespace

// ================================================================================================
// DiagonalFisherGpu
// ================================================================================================
template <SupportedScalar ScalarT>
DiagonalFisherGpu<ScalarT>::DiagonalFisherGpu(std::size_t dimension, Scalar damping, void* stream)
    : dimension_(checked_dimension("DiagonalFisherGpu", dimension)),
      damping_(checked_damping("DiagonalFisherGpu", damping)),
      context_(std::make_shared<Context>(stream)),
      sum_of_squares_(dimension) {
  sum_of_squares_.set_zero(context_->stream());
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
  check_gradients("DiagonalFisherGpu::add_gradient", gradient, dimension_);
  ensure_size(staging_, dimension_);
  staging_.copy_from_host(std::span<const Scalar>(gradient.data(), dimension_), context_->stream());
  accumulate_squares<Scalar>(staging_.data(), dimension_, 1, Scalar(1), sum_of_squares_.data(), context_->stream());
  ++num_gradients_;
  finalized_ = false;
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
  check_gradients("DiagonalFisherGpu::add_gradients", gradients, dimension_);
  const auto k = static_cast<std::size_t>(gradients.cols());
  if (k == 0) return;
  const std::size_t chunk = std::max<std::size_t>(1, kStagingElements / dimension_);
  ensure_size(staging_, std::min(k, chunk) * dimension_);
  for (std::size_t first = 0; first < k; first += chunk) {
    const std::size_t count = std::min(chunk, k - first);
    upload_columns<Scalar>(gradients.middleCols(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(count)),
                           staging_.data(), context_->stream());
    accumulate_squares<Scalar>(staging_.data(), dimension_, count, Scalar(1), sum_of_squares_.data(),
                               context_->stream());
  }
  num_gradients_ += k;
  finalized_ = false;
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::add_gradients_device(const Scalar* gradients, std::size_t count) {
  if (count == 0) return;
  accumulate_squares<Scalar>(gradients, dimension_, count, Scalar(1), sum_of_squares_.data(), context_->stream());
  num_gradients_ += count;
  finalized_ = false;
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::finalize() {
  if (num_gradients_ == 0)
    throw InvalidArgument("DiagonalFisherGpu::finalize: no gradients were added (m = 0); add at least one");
  // The 1/m scaling is fused into every apply, so finalizing moves no data.
  finalized_ = true;
}

template <SupportedScalar ScalarT>
bool DiagonalFisherGpu<ScalarT>::supports_power(double power) const {
  return std::isfinite(power);
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::apply_power(double power, Eigen::Ref<const Vector<Scalar>> v,
                                             Eigen::Ref<Vector<Scalar>> out) const {
  check_power("DiagonalFisherGpu::apply_power", power);
  check_apply("DiagonalFisherGpu::apply_power", finalized_, dimension_, v, out);
  ensure_size(scratch_, 2 * dimension_);
  void* stream = context_->stream();
  scratch_.copy_from_host(std::span<const Scalar>(v.data(), dimension_), stream);
  apply_power_device(power, scratch_.data(), scratch_.data() + dimension_);
  detail::copy_device_to_host(out.data(), scratch_.data() + dimension_, dimension_ * sizeof(Scalar), stream);
  synchronize(stream);
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::apply_power_device(double power, const Scalar* v, Scalar* out) const {
  check_power("DiagonalFisherGpu::apply_power_device", power);
  check_ready("DiagonalFisherGpu::apply_power_device", finalized_);
  DiagonalStep step;
  step.power = power;
  step.scale = 1.0;
  step.diagonal_scale = 1.0 / static_cast<double>(num_gradients_);
  step.damping = static_cast<double>(damping_);
  apply_diagonal_power<Scalar>(sum_of_squares_.data(), v, dimension_, step, out, nullptr, context_->stream());
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::step_device(double power, Scalar scale, const Scalar* v, Scalar noise_std,
                                             std::uint64_t seed, std::uint64_t noise_counter, Scalar* theta,
                                             Scalar* out) const {
  check_power("DiagonalFisherGpu::step_device", power);
  check_ready("DiagonalFisherGpu::step_device", finalized_);
  DiagonalStep step;
  step.power = power;
  step.scale = static_cast<double>(scale);
  step.diagonal_scale = 1.0 / static_cast<double>(num_gradients_);
  step.damping = static_cast<double>(damping_);
  step.noise_std = static_cast<double>(noise_std);
  step.seed = seed;
  step.noise_counter = noise_counter;
  apply_diagonal_power<Scalar>(sum_of_squares_.data(), v, dimension_, step, out, theta, context_->stream());
}

template <SupportedScalar ScalarT>
Vector<ScalarT> DiagonalFisherGpu<ScalarT>::diagonal() const {
  check_ready("DiagonalFisherGpu::diagonal", finalized_);
  Vector<Scalar> host(static_cast<Eigen::Index>(dimension_));
  sum_of_squares_.copy_to_host(std::span<Scalar>(host.data(), dimension_), context_->stream());
  synchronize(context_->stream());
  const double inverse_m = 1.0 / static_cast<double>(num_gradients_);
  for (Eigen::Index k = 0; k < host.size(); ++k)
    host[k] = static_cast<Scalar>(static_cast<double>(host[k]) * inverse_m + static_cast<double>(damping_));
  return host;
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::set_damping(Scalar damping) {
  damping_ = checked_damping("DiagonalFisherGpu::set_damping", damping);
}

template <SupportedScalar ScalarT>
std::size_t DiagonalFisherGpu<ScalarT>::memory_bytes() const {
  return sum_of_squares_.bytes() + staging_.bytes() + scratch_.bytes();
}

template <SupportedScalar ScalarT>
void DiagonalFisherGpu<ScalarT>::clear() {
  sum_of_squares_.set_zero(context_->stream());
  num_gradients_ = 0;
  finalized_ = false;
}

// ================================================================================================
// WoodburyFisherGpu
// ================================================================================================
template <SupportedScalar ScalarT>
struct WoodburyFisherGpu<ScalarT>::Spectral {
  Eigen::MatrixXd basis;  // m × r: uⱼ/√(mσⱼ), so that wⱼ = G·basisⱼ are orthonormal
  Eigen::VectorXd sigma;  // r kept eigenvalues of (1/m)GᵀG
};

template <SupportedScalar ScalarT>
WoodburyFisherGpu<ScalarT>::WoodburyFisherGpu(std::size_t dimension, Scalar damping, void* stream)
    : dimension_(checked_dimension("WoodburyFisherGpu", dimension)),
      damping_(checked_damping("WoodburyFisherGpu", damping)),
      context_(std::make_shared<Context>(stream)) {}

template <SupportedScalar ScalarT>
WoodburyFisherGpu<ScalarT>::~WoodburyFisherGpu() = default;

template <SupportedScalar ScalarT>
WoodburyFisherGpu<ScalarT>::WoodburyFisherGpu(const WoodburyFisherGpu& other)
    : dimension_(other.dimension_),
      damping_(other.damping_),
      context_(other.context_),
      m_(other.m_),
      gram_(other.gram_),
      factor_(other.factor_),
      spectral_(other.spectral_ ? std::make_unique<Spectral>(*other.spectral_) : nullptr),
      factor_ok_(other.factor_ok_),
      finalized_(other.finalized_) {
  // Copy only the m stored columns, not the spare capacity.
  if (m_ > 0) {
    gradients_ = DeviceBuffer<Scalar>(dimension_ * m_);
    device_synchronize();
    detail::copy_device_to_device(gradients_.data(), other.gradients_.data(), dimension_ * m_ * sizeof(Scalar),
                                  nullptr);
    device_synchronize();
  }
}

template <SupportedScalar ScalarT>
WoodburyFisherGpu<ScalarT>& WoodburyFisherGpu<ScalarT>::operator=(const WoodburyFisherGpu& other) {
  if (this != &other) {
    WoodburyFisherGpu copy(other);
    *this = std::move(copy);
  }
  return *this;
}

template <SupportedScalar ScalarT>
WoodburyFisherGpu<ScalarT>::WoodburyFisherGpu(WoodburyFisherGpu&&) noexcept = default;
template <SupportedScalar ScalarT>
WoodburyFisherGpu<ScalarT>& WoodburyFisherGpu<ScalarT>::operator=(WoodburyFisherGpu&&) noexcept = default;

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::reserve(std::size_t columns) {
  const std::size_t capacity = gradients_.size() / dimension_;
  if (columns <= capacity) return;
  const std::size_t grown = std::max(columns, 2 * capacity);
  DeviceBuffer<Scalar> larger(grown * dimension_);  // may throw: nothing changed yet
  if (m_ > 0)
    detail::copy_device_to_device(larger.data(), gradients_.data(), m_ * dimension_ * sizeof(Scalar),
                                  context_->stream());
  synchronize(context_->stream());
  gradients_.swap(larger);
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
  check_gradients("WoodburyFisherGpu::add_gradient", gradient, dimension_);
  reserve(m_ + 1);
  detail::copy_host_to_device(gradients_.data() + m_ * dimension_, gradient.data(), dimension_ * sizeof(Scalar),
                              context_->stream());
  ++m_;
  finalized_ = false;
  spectral_.reset();
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
  check_gradients("WoodburyFisherGpu::add_gradients", gradients, dimension_);
  const auto k = static_cast<std::size_t>(gradients.cols());
  if (k == 0) return;
  reserve(m_ + k);
  upload_columns<Scalar>(gradients, gradients_.data() + m_ * dimension_, context_->stream());
  m_ += k;
  finalized_ = false;
  spectral_.reset();
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::add_gradients_device(const Scalar* gradients, std::size_t count) {
  if (count == 0) return;
  if (gradients == nullptr) throw InvalidArgument("WoodburyFisherGpu::add_gradients_device: null device pointer");
  reserve(m_ + count);
  detail::copy_device_to_device(gradients_.data() + m_ * dimension_, gradients, count * dimension_ * sizeof(Scalar),
                                context_->stream());
  m_ += count;
  finalized_ = false;
  spectral_.reset();
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::refactor() {
  ensure_size(factor_, m_ * m_);
  try {
    cholesky_factor<Scalar>(*context_, gram_.data(), m_, static_cast<Scalar>(static_cast<double>(m_) * damping_),
                            factor_.data());
    factor_ok_ = true;
  } catch (const NumericalError&) {
    factor_ok_ = false;  // p = −1 falls back to the spectral formula, which needs no factor
  }
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::finalize() {
  if (m_ == 0)
    throw InvalidArgument("WoodburyFisherGpu::finalize: no gradients were added (m = 0); add at least one");
  if (gram_.size() != m_ * m_) gram_ = DeviceBuffer<Scalar>(m_ * m_);
  gram_matrix<Scalar>(*context_, gradients_.data(), dimension_, m_, Scalar(1), Scalar(0), gram_.data());
  refactor();
  spectral_.reset();
  finalized_ = true;
}

template <SupportedScalar ScalarT>
bool WoodburyFisherGpu<ScalarT>::supports_power(double power) const {
  return std::isfinite(power);
}

template <SupportedScalar ScalarT>
const typename WoodburyFisherGpu<ScalarT>::Spectral& WoodburyFisherGpu<ScalarT>::spectral() const {
  if (spectral_) return *spectral_;
  const auto m = static_cast<Eigen::Index>(m_);
  Matrix<Scalar> gram(m, m);
  gram_.copy_to_host(std::span<Scalar>(gram.data(), m_ * m_), context_->stream());
  synchronize(context_->stream());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram.template cast<double>() / static_cast<double>(m_));
  if (solver.info() != Eigen::Success)
    throw NumericalError("WoodburyFisherGpu: the eigensolver of the m×m Gram matrix did not converge; check the "
                         "gradients for extreme scales");
  const Eigen::VectorXd& sigma = solver.eigenvalues();  // ascending
  const double sigma_max = std::max(sigma[m - 1], 0.0);
  // The Gram matrix was formed in Scalar: eigenvalues below its rounding level are numerical zeros.
  const double threshold =
      static_cast<double>(m_) * static_cast<double>(std::numeric_limits<Scalar>::epsilon()) * sigma_max;
  Eigen::Index first = 0;
  while (first < m && !(sigma[first] > threshold)) ++first;
  auto result = std::make_unique<Spectral>();
  result->sigma = sigma.tail(m - first);
  result->basis = solver.eigenvectors().rightCols(m - first) *
                  (result->sigma * static_cast<double>(m_)).cwiseSqrt().cwiseInverse().asDiagonal();
  spectral_ = std::move(result);
  return *spectral_;
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::apply_power(double power, Eigen::Ref<const Vector<Scalar>> v,
                                             Eigen::Ref<Vector<Scalar>> out) const {
  check_power("WoodburyFisherGpu::apply_power", power);
  check_apply("WoodburyFisherGpu::apply_power", finalized_, dimension_, v, out);
  ensure_size(scratch_, 2 * dimension_ + 2 * m_);
  void* stream = context_->stream();
  scratch_.copy_from_host(std::span<const Scalar>(v.data(), dimension_), stream);
  apply_power_device(power, scratch_.data(), scratch_.data() + dimension_);
  detail::copy_device_to_host(out.data(), scratch_.data() + dimension_, dimension_ * sizeof(Scalar), stream);
  synchronize(stream);
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::apply_power_device(double power, const Scalar* v, Scalar* out) const {
  check_power("WoodburyFisherGpu::apply_power_device", power);
  check_ready("WoodburyFisherGpu::apply_power_device", finalized_);
  if (v == out) throw InvalidArgument("WoodburyFisherGpu::apply_power_device: out aliases v; pass separate vectors");
  ensure_size(scratch_, 2 * dimension_ + 2 * m_);
  Scalar* work = scratch_.data() + 2 * dimension_;  // m elements (and m more below)
  const Scalar lambda = damping_;
  if (power == -1.0 && factor_ok_) {
    woodbury_inverse_product<Scalar>(*context_, gradients_.data(), dimension_, m_, factor_.data(), lambda, v, out, work);
    return;
  }
  if (power == 1.0) {
    low_rank_product<Scalar>(*context_, gradients_.data(), dimension_, m_, v,
                             static_cast<Scalar>(1.0 / static_cast<double>(m_)), lambda, out, work);
    return;
  }
  // Spectral formula: Wᵀv = basisᵀ(Gᵀv); scale by (λ+σ)^p − λ^p; map back with G·basis.
  const Spectral& s = spectral();
  const auto m = static_cast<Eigen::Index>(m_);
  // y below is pageable host memory: cudaMemcpyAsync has staged it before returning.
  transpose_product<Scalar>(*context_, gradients_.data(), dimension_, m_, v, work);
  Vector<Scalar> projected(m);
  detail::copy_device_to_host(projected.data(), work, m_ * sizeof(Scalar), context_->stream());
  synchronize(context_->stream());
  Eigen::VectorXd coefficients = s.basis.transpose() * projected.template cast<double>();
  const double lambda_d = static_cast<double>(lambda);
  for (Eigen::Index j = 0; j < coefficients.size(); ++j)
    coefficients[j] *= shifted_power_minus_base(lambda_d, s.sigma[j], power);
  const Vector<Scalar> y = (s.basis * coefficients).template cast<Scalar>();
  Scalar* y_device = work + m_;
  detail::copy_host_to_device(y_device, y.data(), m_ * sizeof(Scalar), context_->stream());
  detail::copy_device_to_device(out, v, dimension_ * sizeof(Scalar), context_->stream());
  product_accumulate<Scalar>(*context_, gradients_.data(), dimension_, m_, y_device, Scalar(1),
                             static_cast<Scalar>(std::pow(lambda_d, power)), out);
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::set_damping(Scalar damping) {
  const Scalar checked = checked_damping("WoodburyFisherGpu::set_damping", damping);
  damping_ = checked;
  if (finalized_) refactor();
}

template <SupportedScalar ScalarT>
std::size_t WoodburyFisherGpu<ScalarT>::memory_bytes() const {
  std::size_t bytes = gradients_.bytes() + gram_.bytes() + factor_.bytes() + scratch_.bytes();
  if (spectral_)
    bytes += static_cast<std::size_t>(spectral_->basis.size() + spectral_->sigma.size()) * sizeof(double);
  return bytes;
}

template <SupportedScalar ScalarT>
void WoodburyFisherGpu<ScalarT>::clear() {
  synchronize(context_->stream());
  gradients_ = DeviceBuffer<Scalar>();
  gram_ = DeviceBuffer<Scalar>();
  factor_ = DeviceBuffer<Scalar>();
  scratch_ = DeviceBuffer<Scalar>();
  spectral_.reset();
  m_ = 0;
  factor_ok_ = false;
  finalized_ = false;
}

// ================================================================================================
// BlockDiagonalFisherGpu
// ================================================================================================
template <SupportedScalar ScalarT>
BlockDiagonalFisherGpu<ScalarT>::BlockDiagonalFisherGpu(std::size_t dimension, Scalar damping, std::size_t block_size,
                                                        void* stream)
    : dimension_(checked_dimension("BlockDiagonalFisherGpu", dimension)),
      damping_(checked_damping("BlockDiagonalFisherGpu", damping)),
      block_size_(block_size == 0 || block_size >= dimension ? dimension : block_size),
      context_(std::make_shared<Context>(stream)),
      sums_(block_count(dimension_, block_size_) * block_size_ * block_size_) {
  sums_.set_zero(context_->stream());
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
  check_gradients("BlockDiagonalFisherGpu::add_gradient", gradient, dimension_);
  ensure_size(staging_, dimension_);
  staging_.copy_from_host(std::span<const Scalar>(gradient.data(), dimension_), context_->stream());
  accumulate_block_outer_products<Scalar>(*context_, staging_.data(), dimension_, 1, block_size_, Scalar(1),
                                          sums_.data());
  ++num_gradients_;
  finalized_ = false;
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
  check_gradients("BlockDiagonalFisherGpu::add_gradients", gradients, dimension_);
  const auto k = static_cast<std::size_t>(gradients.cols());
  if (k == 0) return;
  const std::size_t chunk = std::max<std::size_t>(1, kStagingElements / dimension_);
  ensure_size(staging_, std::min(k, chunk) * dimension_);
  for (std::size_t first = 0; first < k; first += chunk) {
    const std::size_t count = std::min(chunk, k - first);
    upload_columns<Scalar>(gradients.middleCols(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(count)),
                           staging_.data(), context_->stream());
    accumulate_block_outer_products<Scalar>(*context_, staging_.data(), dimension_, count, block_size_, Scalar(1),
                                            sums_.data());
  }
  num_gradients_ += k;
  finalized_ = false;
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::add_gradients_device(const Scalar* gradients, std::size_t count) {
  if (count == 0) return;
  accumulate_block_outer_products<Scalar>(*context_, gradients, dimension_, count, block_size_, Scalar(1),
                                          sums_.data());
  num_gradients_ += count;
  finalized_ = false;
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::finalize() {
  if (num_gradients_ == 0)
    throw InvalidArgument("BlockDiagonalFisherGpu::finalize: no gradients were added (m = 0); add at least one");
  finalized_ = false;
  ensure_size(eigenvectors_, sums_.size());
  ensure_size(eigenvalues_, dimension_);
  detail::copy_device_to_device(eigenvectors_.data(), sums_.data(), sums_.bytes(), context_->stream());
  block_eigendecomposition<Scalar>(*context_, eigenvectors_.data(), dimension_, block_size_, eigenvalues_.data());
  finalized_ = true;
}

template <SupportedScalar ScalarT>
bool BlockDiagonalFisherGpu<ScalarT>::supports_power(double power) const {
  return std::isfinite(power);
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::apply_power(double power, Eigen::Ref<const Vector<Scalar>> v,
                                                  Eigen::Ref<Vector<Scalar>> out) const {
  check_power("BlockDiagonalFisherGpu::apply_power", power);
  check_apply("BlockDiagonalFisherGpu::apply_power", finalized_, dimension_, v, out);
  ensure_size(scratch_, 3 * dimension_);
  void* stream = context_->stream();
  scratch_.copy_from_host(std::span<const Scalar>(v.data(), dimension_), stream);
  apply_power_device(power, scratch_.data(), scratch_.data() + dimension_);
  detail::copy_device_to_host(out.data(), scratch_.data() + dimension_, dimension_ * sizeof(Scalar), stream);
  synchronize(stream);
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::apply_power_device(double power, const Scalar* v, Scalar* out) const {
  check_power("BlockDiagonalFisherGpu::apply_power_device", power);
  check_ready("BlockDiagonalFisherGpu::apply_power_device", finalized_);
  if (v == out)
    throw InvalidArgument("BlockDiagonalFisherGpu::apply_power_device: out aliases v; pass separate vectors");
  ensure_size(scratch_, 3 * dimension_);
  block_power_product<Scalar>(*context_, eigenvectors_.data(), eigenvalues_.data(), dimension_, block_size_, power,
                              1.0 / static_cast<double>(num_gradients_), static_cast<double>(damping_), v, out,
                              scratch_.data() + 2 * dimension_);
}

template <SupportedScalar ScalarT>
Vector<ScalarT> BlockDiagonalFisherGpu<ScalarT>::eigenvalues() const {
  check_ready("BlockDiagonalFisherGpu::eigenvalues", finalized_);
  Vector<Scalar> host(static_cast<Eigen::Index>(dimension_));
  eigenvalues_.copy_to_host(std::span<Scalar>(host.data(), dimension_), context_->stream());
  synchronize(context_->stream());
  return host / static_cast<Scalar>(num_gradients_);
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::set_damping(Scalar damping) {
  damping_ = checked_damping("BlockDiagonalFisherGpu::set_damping", damping);
}

template <SupportedScalar ScalarT>
std::size_t BlockDiagonalFisherGpu<ScalarT>::memory_bytes() const {
  return sums_.bytes() + eigenvectors_.bytes() + eigenvalues_.bytes() + staging_.bytes() + scratch_.bytes();
}

template <SupportedScalar ScalarT>
void BlockDiagonalFisherGpu<ScalarT>::clear() {
  sums_.set_zero(context_->stream());
  num_gradients_ = 0;
  finalized_ = false;
}

template class DiagonalFisherGpu<float>;
template class DiagonalFisherGpu<double>;
template class WoodburyFisherGpu<float>;
template class WoodburyFisherGpu<double>;
template class BlockDiagonalFisherGpu<float>;
template class BlockDiagonalFisherGpu<double>;

}  // namespace fisher_unlearn::cuda
