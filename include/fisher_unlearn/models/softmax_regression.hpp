// L2-regularised multinomial logistic (softmax) regression with exact curvature: the convex K-class
// reference model.  W is D×K (column k = weights of class k), z = Wᵀx, p = softmax(z):
//   loss = log Σ_k e^{z_k} − z_y,   ∇_W loss = x (p − e_y)ᵀ,   ∇²loss = (diag p − p pᵀ) ⊗ x xᵀ
// Cost per sample: O(DK) for loss, gradient and Hessian-vector product; O(D²K²) for the dense Hessian.
// A bias is modelled by a constant feature in x (make_softmax_problem adds one).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/models/classification.hpp"

#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn::models {

template <SupportedScalar ScalarType>
class SoftmaxRegression {
 public:
  using Scalar = ScalarType;
  using Sample = ClassificationSample<Scalar>;

  /// Parameters start at zero (the convex problem needs no random start). Layout: θ[k·D + i] = W(i, k),
  /// so each class's weights are one contiguous parameter group ("class0", "class1", ...).
  SoftmaxRegression(std::size_t num_features, std::size_t num_classes, Scalar l2_regularization)
      : num_features_(static_cast<Eigen::Index>(num_features)),
        num_classes_(static_cast<Eigen::Index>(num_classes)),
        l2_(l2_regularization) {
    if (num_features == 0) throw InvalidArgument("SoftmaxRegression: num_features must be positive");
    if (num_classes < 2) throw InvalidArgument("SoftmaxRegression: num_classes must be at least 2");
    if (!(l2_regularization >= Scalar(0)) || !std::isfinite(static_cast<double>(l2_regularization)))
      throw InvalidArgument("SoftmaxRegression: l2_regularization must be finite and >= 0");
    theta_.setZero(num_features_ * num_classes_);
  }

  std::size_t num_features() const { return static_cast<std::size_t>(num_features_); }
  std::size_t num_classes() const { return static_cast<std::size_t>(num_classes_); }
  std::size_t num_parameters() const { return static_cast<std::size_t>(theta_.size()); }
  std::span<Scalar> parameters() { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  std::span<const Scalar> parameters() const { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  Scalar l2_regularization() const { return l2_; }

  /// One group per class: "class<k>" = column k of W.
  std::vector<ParameterGroup> parameter_groups() const {
    std::vector<ParameterGroup> groups;
    for (Eigen::Index k = 0; k < num_classes_; ++k)
      groups.push_back({"class" + std::to_string(k), static_cast<std::size_t>(k * num_features_),
                        static_cast<std::size_t>(num_features_)});
    return groups;
  }

  /// W as a D×K matrix view of the parameters.
  Eigen::Map<const Matrix<Scalar>> weights() const { return {theta_.data(), num_features_, num_classes_}; }
  Eigen::Map<Matrix<Scalar>> weights() { return {theta_.data(), num_features_, num_classes_}; }

  Scalar loss(const Sample& s) const {
    check(s);
    Vector<Scalar> p;
    return detail::softmax<Scalar>(weights().transpose() * s.x, p) - weights().col(s.label).dot(s.x);
  }

  Scalar gradient(const Sample& s, std::span<Scalar> g) const {
    check(s);
    check_out(g.size(), "gradient");
    Vector<Scalar> p;
    const Scalar lse = detail::softmax<Scalar>(weights().transpose() * s.x, p);
    const Scalar loss_value = lse - weights().col(s.label).dot(s.x);
    p[s.label] -= Scalar(1);
    gradient_map(g).noalias() = s.x * p.transpose();
    return loss_value;
  }

  Scalar sum_loss_and_gradient(std::span<const Sample> batch, std::span<Scalar> g) const {
    check_out(g.size(), "gradient");
    for (const Sample& s : batch) check(s);  // validate all first: g is untouched on bad input
    auto out = gradient_map(g);
    out.setZero();
    Vector<Scalar> p;
    Scalar total = 0;
    for (const Sample& s : batch) {
      total += detail::softmax<Scalar>(weights().transpose() * s.x, p) - weights().col(s.label).dot(s.x);
      p[s.label] -= Scalar(1);
      out.noalias() += s.x * p.transpose();
    }
    return total;
  }

  /// out = Σ_s ((diag p − ppᵀ) ⊗ x xᵀ) v; with V the D×K view of v: out = Σ_s x rᵀ, r = p∘(Vᵀx) − p (pᵀVᵀx).
  void hessian_vector_product(std::span<const Sample> batch, std::span<const Scalar> v, std::span<Scalar> out) const {
    check_out(v.size(), "direction v");
    check_out(out.size(), "output");
    for (const Sample& s : batch) check(s);
    const Eigen::Map<const Matrix<Scalar>> V(v.data(), num_features_, num_classes_);
    auto o = gradient_map(out);
    o.setZero();
    Vector<Scalar> p, u, r;
    for (const Sample& s : batch) {
      detail::softmax<Scalar>(weights().transpose() * s.x, p);
      u.noalias() = V.transpose() * s.x;
      r = p.cwiseProduct(u) - p * p.dot(u);
      o.noalias() += s.x * r.transpose();
    }
  }

  /// h (resized to d×d) = Σ_s (diag p − ppᵀ) ⊗ x xᵀ: block (k, l) is A_kl · x xᵀ with A = diag p − ppᵀ.
  void hessian(std::span<const Sample> batch, Matrix<Scalar>& h) const {
    for (const Sample& s : batch) check(s);
    const Eigen::Index D = num_features_, K = num_classes_;
    h.setZero(D * K, D * K);
    Vector<Scalar> p;
    Matrix<Scalar> xx(D, D), A(K, K);
    for (const Sample& s : batch) {
      detail::softmax<Scalar>(weights().transpose() * s.x, p);
      A = -p * p.transpose();
      A.diagonal() += p;
      xx.noalias() = s.x * s.x.transpose();
      for (Eigen::Index l = 0; l < K; ++l)
        for (Eigen::Index k = 0; k < K; ++k) h.block(k * D, l * D, D, D).noalias() += A(k, l) * xx;
    }
  }

  /// ŷ ~ softmax(Wᵀx) drawn with rng; g = x (p − e_ŷ)ᵀ, the gradient of −log p(ŷ | x).
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<Scalar> g) const {
    check(s);
    check_out(g.size(), "gradient");
    Vector<Scalar> p;
    detail::softmax<Scalar>(weights().transpose() * s.x, p);
    const int y_hat = detail::sample_label(p, rng);
    p[y_hat] -= Scalar(1);
    gradient_map(g).noalias() = s.x * p.transpose();
  }

  /// Class probabilities softmax(Wᵀx).
  Vector<Scalar> predict_probabilities(const Vector<Scalar>& x) const {
    check_features(x.size());
    Vector<Scalar> p;
    detail::softmax<Scalar>(weights().transpose() * x, p);
    return p;
  }

  /// The most probable class.
  int predict(const Vector<Scalar>& x) const {
    Eigen::Index best = 0;
    predict_probabilities(x).maxCoeff(&best);
    return static_cast<int>(best);
  }

 private:
  Eigen::Map<Matrix<Scalar>> gradient_map(std::span<Scalar> g) const { return {g.data(), num_features_, num_classes_}; }

  void check_features(Eigen::Index n) const {
    if (n != num_features_)
      throw InvalidArgument("SoftmaxRegression: sample has " + std::to_string(n) + " features, model has " +
                            std::to_string(num_features_));
  }
  void check(const Sample& s) const {
    check_features(s.x.size());
    detail::check_label(s.label, static_cast<std::size_t>(num_classes_), "SoftmaxRegression");
  }
  void check_out(std::size_t n, const char* what) const {
    if (n != static_cast<std::size_t>(theta_.size()))
      throw InvalidArgument(std::string("SoftmaxRegression: ") + what + " has size " + std::to_string(n) + " where " +
                            std::to_string(theta_.size()) + " (num_features × num_classes) was expected");
  }

  Eigen::Index num_features_;
  Eigen::Index num_classes_;
  Scalar l2_;
  Vector<Scalar> theta_;
};

}  // namespace fisher_unlearn::models
