// A small multi-layer perceptron classifier: the non-convex reference model.
//   a₀ = x,  zᵢ = Wᵢ aᵢ + bᵢ,  aᵢ₊₁ = σ(zᵢ) (tanh or exact GELU),  logits = z_L,  loss = log Σ e^{z_L} − z_L[y]
// Exact backprop gradient; exact Hessian-vector products by the R-operator (Pearlmutter 1994, forward-over-
// reverse), each O(d) per sample (d = Σ nᵢ₊₁(nᵢ + 1)); batches run as matrix products over 256-sample chunks.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/models/classification.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn::models {

enum class Activation {
  tanh,  ///< σ(z) = tanh z
  gelu,  ///< σ(z) = z Φ(z), Φ the standard normal CDF (the exact GELU, not the tanh approximation)
};

struct MlpOptions {
  std::size_t num_features = 0;
  std::vector<std::size_t> hidden_sizes;  ///< one entry per hidden layer; empty = softmax regression with bias
  std::size_t num_classes = 0;
  Activation activation = Activation::tanh;
  double l2_regularization = 0.0;  ///< λ in J = mean loss + (λ/2)‖θ‖² (weights and biases alike)
  std::uint64_t seed = 0x5eed;     ///< seeds the initial weights
};

template <SupportedScalar ScalarType>
class Mlp {
 public:
  using Scalar = ScalarType;
  using Sample = ClassificationSample<Scalar>;

  /// Weights start as N(0, g/fan_in) with g = 1 for tanh, 2 for GELU; biases start at 0.
  /// Layout: layer0.weight (column-major n₁×n₀), layer0.bias, layer1.weight, ... — each a parameter group.
  explicit Mlp(const MlpOptions& options) : activation_(options.activation) {
    if (options.num_features == 0) throw InvalidArgument("Mlp: num_features must be positive");
    if (options.num_classes < 2) throw InvalidArgument("Mlp: num_classes must be at least 2");
    if (!(options.l2_regularization >= 0.0) || !std::isfinite(options.l2_regularization))
      throw InvalidArgument("Mlp: l2_regularization must be finite and >= 0");
    sizes_.push_back(static_cast<Eigen::Index>(options.num_features));
    for (std::size_t h : options.hidden_sizes) {
      if (h == 0) throw InvalidArgument("Mlp: every hidden layer needs at least one unit; remove zero sizes");
      sizes_.push_back(static_cast<Eigen::Index>(h));
    }
    sizes_.push_back(static_cast<Eigen::Index>(options.num_classes));
    l2_ = static_cast<Scalar>(options.l2_regularization);

    Eigen::Index offset = 0;
    for (std::size_t i = 0; i + 1 < sizes_.size(); ++i) {
      weight_offset_.push_back(offset);
      offset += sizes_[i + 1] * sizes_[i];
      bias_offset_.push_back(offset);
      offset += sizes_[i + 1];
    }
    theta_.setZero(offset);
    std::mt19937_64 rng(options.seed);
    const double gain = activation_ == Activation::gelu ? 2.0 : 1.0;
    for (std::size_t i = 0; i < num_layers(); ++i) {
      std::normal_distribution<double> normal(0.0, std::sqrt(gain / static_cast<double>(sizes_[i])));
      auto w = weight(i);
      for (Eigen::Index c = 0; c < w.cols(); ++c)
        for (Eigen::Index r = 0; r < w.rows(); ++r) w(r, c) = static_cast<Scalar>(normal(rng));
    }
  }

  /// Number of affine layers (hidden layers + the output layer).
  std::size_t num_layers() const { return sizes_.size() - 1; }
  std::size_t num_features() const { return static_cast<std::size_t>(sizes_.front()); }
  std::size_t num_classes() const { return static_cast<std::size_t>(sizes_.back()); }
  Activation activation() const { return activation_; }

  std::size_t num_parameters() const { return static_cast<std::size_t>(theta_.size()); }
  std::span<Scalar> parameters() { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  std::span<const Scalar> parameters() const { return {theta_.data(), static_cast<std::size_t>(theta_.size())}; }
  Scalar l2_regularization() const { return l2_; }

  /// "layer<i>.weight" and "layer<i>.bias" for every layer i (the last one is the output layer).
  std::vector<ParameterGroup> parameter_groups() const {
    std::vector<ParameterGroup> groups;
    for (std::size_t i = 0; i < num_layers(); ++i) {
      const std::string prefix = "layer" + std::to_string(i);
      groups.push_back({prefix + ".weight", static_cast<std::size_t>(weight_offset_[i]),
                        static_cast<std::size_t>(sizes_[i + 1] * sizes_[i])});
      groups.push_back({prefix + ".bias", static_cast<std::size_t>(bias_offset_[i]),
                        static_cast<std::size_t>(sizes_[i + 1])});
    }
    return groups;
  }

  /// Views of layer i's weight matrix (n_{i+1} × n_i) and bias inside parameters().
  Eigen::Map<const Matrix<Scalar>> weight(std::size_t i) const {
    return {theta_.data() + weight_offset_[i], sizes_[i + 1], sizes_[i]};
  }
  Eigen::Map<Matrix<Scalar>> weight(std::size_t i) { return {theta_.data() + weight_offset_[i], sizes_[i + 1], sizes_[i]}; }
  Eigen::Map<const Vector<Scalar>> bias(std::size_t i) const { return {theta_.data() + bias_offset_[i], sizes_[i + 1]}; }
  Eigen::Map<Vector<Scalar>> bias(std::size_t i) { return {theta_.data() + bias_offset_[i], sizes_[i + 1]}; }

  Scalar loss(const Sample& s) const {
    check(s);
    const Pass pass = forward(std::span<const Sample>(&s, 1));
    Vector<Scalar> p;
    return detail::softmax<Scalar>(pass.z.back().col(0), p) - pass.z.back()(s.label, 0);
  }

  Scalar gradient(const Sample& s, std::span<Scalar> g) const {
    check(s);
    check_out(g.size(), "gradient");
    return accumulate_gradient(std::span<const Sample>(&s, 1), nullptr, g, /*zero_first=*/true);
  }

  Scalar sum_loss_and_gradient(std::span<const Sample> batch, std::span<Scalar> g) const {
    check_out(g.size(), "gradient");
    for (const Sample& s : batch) check(s);  // validate all first: g is untouched on bad input
    as_eigen<Scalar>(g).setZero();
    Scalar total = 0;
    for (std::size_t start = 0; start < batch.size(); start += chunk_size) {
      const auto chunk = batch.subspan(start, std::min(chunk_size, batch.size() - start));
      total += accumulate_gradient(chunk, nullptr, g, /*zero_first=*/false);
    }
    return total;
  }

  /// ŷ ~ softmax(logits(x)) drawn with rng; g = ∇_θ[−log p(ŷ | x)].
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<Scalar> g) const {
    check(s);
    check_out(g.size(), "gradient");
    accumulate_gradient(std::span<const Sample>(&s, 1), &rng, g, /*zero_first=*/true);
  }

  /// Every affine layer as a LinearLayer "layer<i>" (column-major weight, with bias): all parameters of
  /// an Mlp sit in linear layers, so a Kronecker estimator has no diagonal block here.
  std::vector<LinearLayer> linear_layers() const {
    std::vector<LinearLayer> layers;
    for (std::size_t i = 0; i < num_layers(); ++i)
      layers.push_back({"layer" + std::to_string(i), static_cast<std::size_t>(sizes_[i]),
                        static_cast<std::size_t>(sizes_[i + 1]), static_cast<std::size_t>(weight_offset_[i]),
                        WeightOrder::column_major, true, static_cast<std::size_t>(bias_offset_[i])});
    return layers;
  }

  /// K-FAC statistics (concepts.hpp, LinearLayerModel): forward + backward over chunks of up to 256
  /// samples (one sample per chunk when the visitor wants score vectors), handing the visitor each
  /// layer's inputs aᵢ and output gradients δᵢ = ∂loss/∂zᵢ (one column per sample; a single target, so
  /// cₜ = 1 and the score is the plain gradient). With `sampled`, labels are drawn with rng exactly as
  /// successive sampled_gradient() calls draw them.
  void visit_linear_layers(std::span<const Sample> samples, CurvatureTargets targets, std::mt19937_64& rng,
                           LinearLayerVisitor<Scalar>& visitor) const {
    for (const Sample& s : samples) check(s);
    const bool per_sample = visitor.wants_sample_gradients();
    const std::size_t per = per_sample ? 1 : chunk_size;
    std::vector<Eigen::Index> columns;
    Vector<Scalar> score(theta_.size());
    std::span<Scalar> score_span(score.data(), static_cast<std::size_t>(score.size()));
    for (std::size_t start = 0; start < samples.size(); start += per) {
      const auto chunk = samples.subspan(start, std::min(per, samples.size() - start));
      const Pass pass = forward(chunk);
      Matrix<Scalar> delta;
      output_probabilities(pass, chunk, delta);
      for (Eigen::Index j = 0; j < delta.cols(); ++j) {
        const int label = targets == CurvatureTargets::sampled ? detail::sample_label(delta.col(j), rng)
                                                               : chunk[static_cast<std::size_t>(j)].label;
        delta(label, j) -= Scalar(1);
      }
      columns.resize(chunk.size() + 1);
      for (std::size_t j = 0; j <= chunk.size(); ++j) columns[j] = static_cast<Eigen::Index>(j);
      using View = typename LinearLayerBatch<Scalar>::View;
      Matrix<Scalar> e;
      for (std::size_t i = num_layers(); i-- > 0;) {
        const Matrix<Scalar>& a = pass.a[i];
        visitor.on_layer(LinearLayerBatch<Scalar>{i, start, std::span<const Eigen::Index>(columns),
                                                  View(a.data(), a.rows(), a.cols(), Eigen::OuterStride<>(a.rows())),
                                                  View(delta.data(), delta.rows(), delta.cols(),
                                                       Eigen::OuterStride<>(delta.rows()))});
        if (per_sample) {
          gradient_weight(score_span, i).noalias() = delta * a.transpose();
          gradient_bias(score_span, i) = delta.col(0);
        }
        if (i > 0) {
          e.noalias() = weight(i).transpose() * delta;
          delta = derivative(pass.z[i - 1]).cwiseProduct(e);
        }
      }
      if (per_sample) visitor.on_sample_gradient(start, std::span<const Scalar>(score.data(), score_span.size()));
    }
  }

  /// out = Σ_s ∇²loss(s) · v, exact (R-operator), regulariser excluded. The Hessian of a non-convex
  /// model is indefinite in general; this is the true Hessian, not the Gauss–Newton matrix.
  void hessian_vector_product(std::span<const Sample> batch, std::span<const Scalar> v, std::span<Scalar> out) const {
    check_out(v.size(), "direction v");
    check_out(out.size(), "output");
    for (const Sample& s : batch) check(s);
    as_eigen<Scalar>(out).setZero();
    for (std::size_t start = 0; start < batch.size(); start += chunk_size) {
      const auto chunk = batch.subspan(start, std::min(chunk_size, batch.size() - start));
      accumulate_hessian_vector_product(chunk, v, out);
    }
  }

  /// The logits z_L(x) (size num_classes).
  Vector<Scalar> logits(const Vector<Scalar>& x) const {
    check_features(x.size());
    Sample s{x, 0};
    return forward(std::span<const Sample>(&s, 1)).z.back().col(0);
  }

  Vector<Scalar> predict_probabilities(const Vector<Scalar>& x) const {
    Vector<Scalar> p;
    detail::softmax<Scalar>(logits(x), p);
    return p;
  }

  int predict(const Vector<Scalar>& x) const {
    Eigen::Index best = 0;
    logits(x).maxCoeff(&best);
    return static_cast<int>(best);
  }

 private:
  static constexpr std::size_t chunk_size = 256;

  // One forward pass over a batch: column j belongs to sample j.
  struct Pass {
    std::vector<Matrix<Scalar>> a;  // a[0] = inputs, a[i+1] = σ(z[i]) for hidden layers
    std::vector<Matrix<Scalar>> z;  // z[i] = W_i a[i] + b_i; z.back() are the logits
  };

  Pass forward(std::span<const Sample> batch) const {
    const auto B = static_cast<Eigen::Index>(batch.size());
    Pass pass;
    pass.a.resize(num_layers());
    pass.z.resize(num_layers());
    pass.a[0].resize(sizes_[0], B);
    for (Eigen::Index j = 0; j < B; ++j) pass.a[0].col(j) = batch[static_cast<std::size_t>(j)].x;
    for (std::size_t i = 0; i < num_layers(); ++i) {
      pass.z[i].noalias() = weight(i) * pass.a[i];
      pass.z[i].colwise() += bias(i);
      if (i + 1 < num_layers()) pass.a[i + 1] = activate(pass.z[i]);
    }
    return pass;
  }

  // Softmax of the logits (into P) and Σ loss over the batch; labels from the samples.
  Scalar output_probabilities(const Pass& pass, std::span<const Sample> batch, Matrix<Scalar>& P) const {
    const Matrix<Scalar>& logits = pass.z.back();
    P.resize(logits.rows(), logits.cols());
    Vector<Scalar> p;
    Scalar total = 0;
    for (Eigen::Index j = 0; j < logits.cols(); ++j) {
      total += detail::softmax<Scalar>(logits.col(j), p) - logits(batch[static_cast<std::size_t>(j)].label, j);
      P.col(j) = p;
    }
    return total;
  }

  // g (+)= Σ ∇loss over the batch; labels observed, or drawn from the model when rng is given.
  Scalar accumulate_gradient(std::span<const Sample> batch, std::mt19937_64* rng, std::span<Scalar> g,
                             bool zero_first) const {
    const Pass pass = forward(batch);
    Matrix<Scalar> delta;
    const Scalar total = output_probabilities(pass, batch, delta);
    for (Eigen::Index j = 0; j < delta.cols(); ++j) {
      const int label = rng != nullptr ? detail::sample_label(delta.col(j), *rng)
                                       : batch[static_cast<std::size_t>(j)].label;
      delta(label, j) -= Scalar(1);  // δ_L = p − e_y
    }
    if (zero_first) as_eigen<Scalar>(g).setZero();
    Matrix<Scalar> e;
    for (std::size_t i = num_layers(); i-- > 0;) {
      gradient_weight(g, i).noalias() += delta * pass.a[i].transpose();
      gradient_bias(g, i) += delta.rowwise().sum();
      if (i > 0) {
        e.noalias() = weight(i).transpose() * delta;
        delta = derivative(pass.z[i - 1]).cwiseProduct(e);
      }
    }
    return total;
  }

  // out += Σ ∇²loss · v by the R-operator R{·} = d/dt (·)(θ + t v) at t = 0:
  //   forward  R zᵢ = Wᵢ R aᵢ + Vᵢ aᵢ + cᵢ,  R aᵢ₊₁ = σ'(zᵢ) ∘ R zᵢ,  R a₀ = 0
  //   output   R δ_L = (diag p − p pᵀ) R z_L
  //   backward R ∇Wᵢ = R δᵢ aᵢᵀ + δᵢ R aᵢᵀ,  R ∇bᵢ = R δᵢ,
  //            R δᵢ₋₁ = σ''(zᵢ₋₁) ∘ R zᵢ₋₁ ∘ (Wᵢᵀ δᵢ) + σ'(zᵢ₋₁) ∘ (Vᵢᵀ δᵢ + Wᵢᵀ R δᵢ)
  void accumulate_hessian_vector_product(std::span<const Sample> batch, std::span<const Scalar> v,
                                         std::span<Scalar> out) const {
    const Pass pass = forward(batch);
    const std::size_t L = num_layers();
    std::vector<Matrix<Scalar>> Ra(L), Rz(L);
    for (std::size_t i = 0; i < L; ++i) {
      const Eigen::Map<const Matrix<Scalar>> V(v.data() + weight_offset_[i], sizes_[i + 1], sizes_[i]);
      const Eigen::Map<const Vector<Scalar>> c(v.data() + bias_offset_[i], sizes_[i + 1]);
      Rz[i].noalias() = V * pass.a[i];
      if (i > 0) Rz[i].noalias() += weight(i) * Ra[i];
      Rz[i].colwise() += c;
      if (i + 1 < L) Ra[i + 1] = derivative(pass.z[i]).cwiseProduct(Rz[i]);
    }
    Matrix<Scalar> P;
    output_probabilities(pass, batch, P);
    Matrix<Scalar> delta = P;
    for (Eigen::Index j = 0; j < delta.cols(); ++j) delta(batch[static_cast<std::size_t>(j)].label, j) -= Scalar(1);
    const Matrix<Scalar> PRz = P.cwiseProduct(Rz[L - 1]);
    Matrix<Scalar> Rdelta = PRz - P * PRz.colwise().sum().asDiagonal();

    Matrix<Scalar> e, Re;
    for (std::size_t i = L; i-- > 0;) {
      auto out_w = gradient_weight(out, i);
      out_w.noalias() += Rdelta * pass.a[i].transpose();
      if (i > 0) out_w.noalias() += delta * Ra[i].transpose();
      gradient_bias(out, i) += Rdelta.rowwise().sum();
      if (i > 0) {
        const Eigen::Map<const Matrix<Scalar>> V(v.data() + weight_offset_[i], sizes_[i + 1], sizes_[i]);
        e.noalias() = weight(i).transpose() * delta;
        Re.noalias() = V.transpose() * delta;
        Re.noalias() += weight(i).transpose() * Rdelta;
        const Matrix<Scalar> d1 = derivative(pass.z[i - 1]);
        Rdelta = second_derivative(pass.z[i - 1]).cwiseProduct(Rz[i - 1]).cwiseProduct(e) + d1.cwiseProduct(Re);
        delta = d1.cwiseProduct(e);
      }
    }
  }

  Matrix<Scalar> activate(const Matrix<Scalar>& z) const {
    if (activation_ == Activation::tanh) return z.array().tanh().matrix();
    return z.unaryExpr([](Scalar t) { return t * normal_cdf(t); });
  }
  Matrix<Scalar> derivative(const Matrix<Scalar>& z) const {
    if (activation_ == Activation::tanh) return (Scalar(1) - z.array().tanh().square()).matrix();
    return z.unaryExpr([](Scalar t) { return normal_cdf(t) + t * normal_pdf(t); });
  }
  Matrix<Scalar> second_derivative(const Matrix<Scalar>& z) const {
    if (activation_ == Activation::tanh) {
      const auto t = z.array().tanh();
      return (Scalar(-2) * t * (Scalar(1) - t.square())).matrix();
    }
    return z.unaryExpr([](Scalar t) { return normal_pdf(t) * (Scalar(2) - t * t); });
  }
  static Scalar normal_cdf(Scalar t) {
    return Scalar(0.5) * std::erfc(-t / std::numbers::sqrt2_v<Scalar>);
  }
  static Scalar normal_pdf(Scalar t) {
    return std::exp(Scalar(-0.5) * t * t) * (std::numbers::inv_sqrtpi_v<Scalar> / std::numbers::sqrt2_v<Scalar>);
  }

  Eigen::Map<Matrix<Scalar>> gradient_weight(std::span<Scalar> g, std::size_t i) const {
    return {g.data() + weight_offset_[i], sizes_[i + 1], sizes_[i]};
  }
  Eigen::Map<Vector<Scalar>> gradient_bias(std::span<Scalar> g, std::size_t i) const {
    return {g.data() + bias_offset_[i], sizes_[i + 1]};
  }

  void check_features(Eigen::Index n) const {
    if (n != sizes_.front())
      throw InvalidArgument("Mlp: sample has " + std::to_string(n) + " features, model has " +
                            std::to_string(sizes_.front()));
  }
  void check(const Sample& s) const {
    check_features(s.x.size());
    detail::check_label(s.label, num_classes(), "Mlp");
  }
  void check_out(std::size_t n, const char* what) const {
    if (n != static_cast<std::size_t>(theta_.size()))
      throw InvalidArgument(std::string("Mlp: ") + what + " has size " + std::to_string(n) + " where " +
                            std::to_string(theta_.size()) + " (num_parameters()) was expected");
  }

  Activation activation_;
  std::vector<Eigen::Index> sizes_;  // n₀ = features, hidden sizes..., n_L = classes
  std::vector<Eigen::Index> weight_offset_;
  std::vector<Eigen::Index> bias_offset_;
  Scalar l2_ = 0;
  Vector<Scalar> theta_;
};

static_assert(LinearLayerModel<Mlp<float>> && LinearLayerModel<Mlp<double>>);

}  // namespace fisher_unlearn::models
