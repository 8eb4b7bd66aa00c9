// AnyFisher<Scalar>: one finalised FisherEstimator of any type behind one type, chosen at run time.
//
// A program that lets its user pick the estimator (`--estimator kfac`) would otherwise instantiate every
// unlearner once per estimator type. AnyFisher wraps an estimator that is already built and finalised
// and forwards what an unlearner applies (apply_power, supports_power, damping, set_damping, sizes); it
// refuses to be fed (add_gradient/add_gradients/clear throw StateError), so build the estimator first,
// from flat gradients or a LinearLayerModel's statistics, then wrap it. Results are the wrapped
// estimator's, bit for bit (tested). Cost: one virtual call per application. Move-only.
//
//   fu::KfacFisher<float> k(model, 1.0f);  k.accumulate(model, retain, how);  k.finalize();
//   fu::AnyFisher<float> f(std::move(k));   // f.undamped_trace() = k.undamped_trace()
//   NaturalGradientUnlearning<fu::AnyFisher<float>, ...> u(...);  u.unlearn_detailed(model, forget, retain, f);
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <cmath>
#include <concepts>
#include <memory>
#include <string>
#include <utility>

namespace fisher_unlearn {

template <SupportedScalar ScalarType>
class AnyFisher {
 public:
  using Scalar = ScalarType;

  /// Wraps a finalised estimator of the same Scalar. undamped_trace() forwards to the estimator's own
  /// where it has one; otherwise it returns `trace` (NaN unless given).
  template <FisherEstimator Estimator>
    requires std::same_as<typename Estimator::Scalar, Scalar>
  explicit AnyFisher(Estimator estimator, double trace = std::nan(""))
      : impl_(std::make_unique<Impl<Estimator>>(std::move(estimator))), trace_(trace) {
    if constexpr (requires(const Estimator& e) { { e.undamped_trace() } -> std::convertible_to<double>; })
      trace_ = static_cast<const Impl<Estimator>&>(*impl_).estimator.undamped_trace();
  }

  std::size_t dimension() const { return impl_->dimension(); }
  void add_gradient(Eigen::Ref<const Vector<Scalar>>) { refuse("add_gradient"); }
  void add_gradients(Eigen::Ref<const Matrix<Scalar>>) { refuse("add_gradients"); }
  void finalize() {}  ///< the wrapped estimator is final already
  void clear() { refuse("clear"); }
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    impl_->apply_power(power, v, out);
  }
  bool supports_power(double power) const { return impl_->supports_power(power); }
  Scalar damping() const { return impl_->damping(); }
  void set_damping(Scalar lambda) { impl_->set_damping(lambda); }
  std::size_t memory_bytes() const { return impl_->memory_bytes(); }
  std::size_t num_gradients() const { return impl_->num_gradients(); }
  /// tr of the undamped matrix (the estimator's own, or the value given to the constructor).
  double undamped_trace() const { return trace_; }

 private:
  [[noreturn]] static void refuse(const char* what) {
    throw StateError(std::string("AnyFisher::") + what +
                     ": an AnyFisher wraps a finalised estimator and is only applied; build the estimator, then wrap it");
  }
  struct Base {
    virtual ~Base() = default;
    virtual std::size_t dimension() const = 0;
    virtual void apply_power(double, Eigen::Ref<const Vector<Scalar>>, Eigen::Ref<Vector<Scalar>>) const = 0;
    virtual bool supports_power(double) const = 0;
    virtual Scalar damping() const = 0;
    virtual void set_damping(Scalar) = 0;
    virtual std::size_t memory_bytes() const = 0;
    virtual std::size_t num_gradients() const = 0;
  };
  template <class Estimator>
  struct Impl final : Base {
    explicit Impl(Estimator e) : estimator(std::move(e)) {}
    std::size_t dimension() const override { return estimator.dimension(); }
    void apply_power(double p, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const override {
      estimator.apply_power(p, v, out);
    }
    bool supports_power(double p) const override { return estimator.supports_power(p); }
    Scalar damping() const override { return estimator.damping(); }
    void set_damping(Scalar lambda) override { estimator.set_damping(lambda); }
    std::size_t memory_bytes() const override { return estimator.memory_bytes(); }
    std::size_t num_gradients() const override { return estimator.num_gradients(); }
    Estimator estimator;
  };
  std::unique_ptr<Base> impl_;
  double trace_;
};

static_assert(FisherEstimator<AnyFisher<float>>);
static_assert(FisherEstimator<AnyFisher<double>>);

}  // namespace fisher_unlearn
