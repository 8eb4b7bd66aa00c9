// K-FAC / EK-FAC (fisher/kfac.hpp) and the LinearLayerModel hooks of the Mlp and the Transformer, against
// dense fp64 references built from the models' own per-sample gradients.
#include <catch2/catch.hpp>

#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/models/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Mlp;
using fu::models::Transformer;
using fu::models::TransformerConfig;
using namespace fisher_test;

namespace {

// A one-layer linear-softmax classifier with a ROW-major weight and no bias (PyTorch's layout): the
// smallest LinearLayerModel, and the one whose Fisher K-FAC can represent exactly.
struct RowMajorSoftmax {
  using Scalar = double;
  using Sample = fu::models::ClassificationSample<double>;
  Eigen::Index inputs, classes;
  fu::Vector<double> theta;  // W(o, i) at o·inputs + i

  RowMajorSoftmax(Eigen::Index n, Eigen::Index k, std::uint64_t seed) : inputs(n), classes(k), theta(n * k) {
    theta = random_vector<double>(n * k, seed);
  }
  std::size_t num_parameters() const { return static_cast<std::size_t>(theta.size()); }
  std::span<double> parameters() { return {theta.data(), num_parameters()}; }
  std::span<const double> parameters() const { return {theta.data(), num_parameters()}; }
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> weight() const {
    return {theta.data(), classes, inputs};
  }
  fu::Vector<double> probabilities(const Sample& s) const {
    fu::Vector<double> p;
    fu::models::detail::softmax<double>(weight() * s.x, p);
    return p;
  }
  double loss(const Sample& s) const {
    fu::Vector<double> p;
    const fu::Vector<double> z = weight() * s.x;
    return fu::models::detail::softmax<double>(z, p) - z[s.label];
  }
  void write_gradient(const Sample& s, int label, std::span<double> g) const {
    fu::Vector<double> delta = probabilities(s);
    delta[label] -= 1.0;
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(g.data(), classes, inputs) =
        delta * s.x.transpose();
  }
  double gradient(const Sample& s, std::span<double> g) const {
    write_gradient(s, s.label, g);
    return loss(s);
  }
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<double> g) const {
    write_gradient(s, fu::models::detail::sample_label(probabilities(s), rng), g);
  }
  std::vector<fu::LinearLayer> linear_layers() const {
    return {{"linear", static_cast<std::size_t>(inputs), static_cast<std::size_t>(classes), 0, fu::WeightOrder::row_major,
             false, 0}};
  }
  void visit_linear_layers(std::span<const Sample> samples, fu::CurvatureTargets targets, std::mt19937_64& rng,
                           fu::LinearLayerVisitor<double>& visitor) const {
    const auto k = static_cast<Eigen::Index>(samples.size());
    fu::Matrix<double> a(inputs, k), delta(classes, k);
    std::vector<Eigen::Index> columns;
    for (Eigen::Index j = 0; j < k; ++j) {
      const Sample& s = samples[static_cast<std::size_t>(j)];
      a.col(j) = s.x;
      delta.col(j) = probabilities(s);
      const int y = targets == fu::CurvatureTargets::sampled ? fu::models::detail::sample_label(delta.col(j), rng) : s.label;
      delta(y, j) -= 1.0;
      columns.push_back(j);
    }
    columns.push_back(k);
    using View = fu::LinearLayerBatch<double>::View;
    visitor.on_layer({0, 0, columns, View(a.data(), inputs, k, Eigen::OuterStride<>(inputs)),
                      View(delta.data(), classes, k, Eigen::OuterStride<>(classes))});
  }
};

static_assert(fu::LinearLayerModel<RowMajorSoftmax>);
static_assert(fu::LinearLayerModel<Mlp<float>> && fu::LinearLayerModel<Mlp<double>>);
static_assert(fu::LinearLayerModel<Transformer<float>> && fu::LinearLayerModel<Transformer<double>>);
static_assert(!fu::LinearLayerModel<fu::models::SoftmaxRegression<double>>);  // no linear_layers()
static_assert(fu::FisherEstimator<fu::KfacFisher<float>> && fu::FisherEstimator<fu::EkfacFisher<double>>);

TransformerConfig tiny_config() {
  TransformerConfig c;
  c.vocab_size = 7;
  c.context_length = 5;
  c.num_layers = 1;
  c.width = 6;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = 3;
  return c;
}

template <class Scalar>
Transformer<Scalar> perturbed_transformer(double noise = 0.3) {
  Transformer<double> m(tiny_config());
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal;
  for (double& t : m.parameters()) t += noise * normal(rng);
  return Transformer<Scalar>(m);
}

template <class Scalar>
std::vector<typename Transformer<Scalar>::Sample> sequences(std::size_t m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, 6), length(3, 6);  // 2..5 targets: unequal T per sample
  std::vector<typename Transformer<Scalar>::Sample> out(m);
  for (auto& s : out) {
    s.tokens.resize(static_cast<std::size_t>(length(rng)));
    for (auto& t : s.tokens) t = token(rng);
  }
  return out;
}

fu::models::MlpOptions mlp_options(std::vector<std::size_t> hidden) {
  fu::models::MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = std::move(hidden);
  o.num_classes = 3;
  o.activation = fu::models::Activation::tanh;
  o.seed = 17;
  return o;
}

// Parameter index of entry (o, i) of layer l's [W b] (i == in: the bias).
std::size_t parameter_index(const fu::LinearLayer& l, Eigen::Index o, Eigen::Index i) {
  const auto in = static_cast<Eigen::Index>(l.in_features), out = static_cast<Eigen::Index>(l.out_features);
  if (i == in) return l.bias_offset + static_cast<std::size_t>(o);
  return l.weight_offset + static_cast<std::size_t>(l.weight_order == fu::WeightOrder::column_major ? i * out + o
                                                                                                    : o * in + i);
}

// The per-sample scores g̃ᵢ (columns) as the concept defines them, from the models' own gradient() /
// sampled_gradient(): √T·∇loss for a Transformer sequence of T targets, ∇loss for one-target models.
template <class M>
Eigen::MatrixXd reference_scores(const M& model, std::span<const typename M::Sample> samples, fu::FisherKind kind,
                                 std::uint64_t seed) {
  Eigen::MatrixXd g(static_cast<Eigen::Index>(model.num_parameters()), static_cast<Eigen::Index>(samples.size()));
  fu::Vector<typename M::Scalar> one(g.rows());
  std::span<typename M::Scalar> span(one.data(), model.num_parameters());
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    if (kind == fu::FisherKind::monte_carlo) model.sampled_gradient(samples[i], rng, span);
    else model.gradient(samples[i], span);
    double scale = 1.0;
    if constexpr (requires { samples[i].tokens; })
      scale = std::sqrt(static_cast<double>(samples[i].tokens.size() - 1));
    g.col(static_cast<Eigen::Index>(i)) = one.template cast<double>() * scale;
  }
  return g;
}

Eigen::MatrixXd kron(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  Eigen::MatrixXd k(a.rows() * b.rows(), a.cols() * b.cols());
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    for (Eigen::Index j = 0; j < a.cols(); ++j) k.block(i * b.rows(), j * b.cols(), b.rows(), b.cols()) = a(i, j) * b;
  return k;
}

// Records everything a model hands its visitor (double copies).
template <class Scalar>
struct Recorder : fu::LinearLayerVisitor<Scalar> {
  struct Batch {
    std::size_t first;
    std::vector<Eigen::Index> columns;
    Eigen::MatrixXd a, delta;
  };
  bool per_sample = false;
  bool linear_scores = true;
  std::map<std::size_t, std::vector<Batch>> layers;
  std::map<std::size_t, Eigen::VectorXd> scores;
  void on_layer(const fu::LinearLayerBatch<Scalar>& b) override {
    layers[b.layer].push_back({b.first_sample, {b.sample_columns.begin(), b.sample_columns.end()},
                               b.activations.template cast<double>(), b.output_gradients.template cast<double>()});
  }
  bool wants_sample_gradients() const override { return per_sample; }
  bool wants_linear_layer_scores() const override { return linear_scores; }
  void on_sample_gradient(std::size_t i, std::span<const Scalar> g) override {
    scores[i] = fu::as_eigen<Scalar>(g).template cast<double>();
  }
};

// Sample i's columns (inputs, output gradients) among the batches a recorder got for one layer.
std::pair<Eigen::MatrixXd, Eigen::MatrixXd> sample_columns(const std::vector<Recorder<double>::Batch>& batches,
                                                           std::size_t sample) {
  for (const auto& b : batches) {
    if (sample < b.first || sample + 1 >= b.first + b.columns.size()) continue;
    const std::size_t j = sample - b.first;
    const Eigen::Index c = b.columns[j], k = b.columns[j + 1] - c;
    return {b.a.middleCols(c, k), b.delta.middleCols(c, k)};
  }
  FAIL("sample " << sample << " is in no batch");
  return {};
}

// A visitor that reads its scores outside the linear layers only (wants_linear_layer_scores() false, as
// K-FAC's) gets the same layer statistics per sample, the same score entries outside the layers, and 0
// inside them (their weight-gradient GEMMs skipped). The model may batch the samples differently for it
// (the Transformer stacks a chunk's sequences where the whole scores need one at a time): equal to
// rounding, checked per sample.
template <class Scalar>
void check_without_linear_scores(const Recorder<Scalar>& full, const Recorder<Scalar>& partial,
                                 const std::vector<fu::LinearLayer>& layers, std::size_t d, std::size_t samples) {
  std::vector<char> in_layer(d, 0);
  for (const auto& info : layers) {
    for (std::size_t k = 0; k < info.in_features * info.out_features; ++k) in_layer[info.weight_offset + k] = 1;
    if (info.has_bias)
      for (std::size_t k = 0; k < info.out_features; ++k) in_layer[info.bias_offset + k] = 1;
  }
  REQUIRE(partial.layers.size() == full.layers.size());
  for (const auto& [l, batches] : full.layers) {
    const auto& other = partial.layers.at(l);
    for (std::size_t i = 0; i < samples; ++i) {
      const auto [a, delta] = sample_columns(batches, i);
      const auto [a2, delta2] = sample_columns(other, i);
      REQUIRE(a2.cols() == a.cols());
      CHECK((a2 - a).norm() <= 1e-13 * (1.0 + a.norm()));
      CHECK((delta2 - delta).norm() <= 1e-13 * (1.0 + delta.norm()));
    }
  }
  REQUIRE(partial.scores.size() == full.scores.size());
  std::size_t outside = 0, inside = 0;
  for (const auto& [i, score] : full.scores) {
    const Eigen::VectorXd& got = partial.scores.at(i);
    for (std::size_t k = 0; k < d; ++k) {
      const auto kk = static_cast<Eigen::Index>(k);
      if (in_layer[k]) {
        inside += got[kk] == 0.0;
      } else {
        outside += std::abs(got[kk] - score[kk]) <= 1e-13 * (1.0 + score.norm());
      }
    }
  }
  const auto layer_entries = static_cast<std::size_t>(std::count(in_layer.begin(), in_layer.end(), 1));
  CHECK(inside == layer_entries * full.scores.size());
  CHECK(outside == (d - layer_entries) * full.scores.size());
  CHECK(layer_entries > 0);
  CHECK(layer_entries < d);
}

// Sample i's gradient of layer l as the concept defines it: Σ over its columns δ [a; 1]ᵀ.
Eigen::MatrixXd layer_gradient(const fu::LinearLayer& info, const std::vector<Recorder<double>::Batch>& batches,
                               std::size_t sample) {
  const auto in = static_cast<Eigen::Index>(info.in_features);
  const auto [inputs, delta] = sample_columns(batches, sample);
  Eigen::MatrixXd a(in + (info.has_bias ? 1 : 0), inputs.cols());
  a.topRows(in) = inputs;
  if (info.has_bias) a.row(in).setOnes();
  return delta * a.transpose();
}

// The dense d×d matrix an estimator applies: Kronecker (or EK-FAC) blocks + the diagonal, undamped
// except for each block's own damping.
template <class Estimator>
Eigen::MatrixXd dense_matrix(const Estimator& f, bool ekfac) {
  const auto d = static_cast<Eigen::Index>(f.dimension());
  Eigen::MatrixXd dense = Eigen::MatrixXd::Zero(d, d);
  for (std::size_t l = 0; l < f.num_layers(); ++l) {
    const fu::LinearLayer& info = f.layer(l);
    Eigen::MatrixXd block;
    if constexpr (!requires { f.eigenvalues(l); }) {
      REQUIRE_FALSE(ekfac);
      block = kron(f.activation_factor(l), f.gradient_factor(l));
    } else {
      REQUIRE(ekfac);
      const Eigen::MatrixXd ua = f.activation_eigenvectors(l).template cast<double>();
      const Eigen::MatrixXd ug = f.gradient_eigenvectors(l).template cast<double>();
      const Eigen::MatrixXd q = kron(ua, ug);
      const Eigen::MatrixXd lambda = f.eigenvalues(l);
      block = q * Eigen::Map<const Eigen::VectorXd>(lambda.data(), lambda.size()).asDiagonal() * q.transpose();
    }
    block.diagonal().array() += f.layer_damping(l);
    const Eigen::Index out = static_cast<Eigen::Index>(info.out_features);
    for (Eigen::Index r = 0; r < block.rows(); ++r)
      for (Eigen::Index c = 0; c < block.cols(); ++c)
        dense(static_cast<Eigen::Index>(parameter_index(info, r % out, r / out)),
              static_cast<Eigen::Index>(parameter_index(info, c % out, c / out))) = block(r, c);
  }
  for (std::size_t k = 0; k < f.diagonal_indices().size(); ++k)
    dense(f.diagonal_indices()[k], f.diagonal_indices()[k]) = f.diagonal()[static_cast<Eigen::Index>(k)] + f.diagonal_damping();
  return dense;
}

// (dense)^p for a symmetric positive definite matrix (already damped).
Eigen::MatrixXd spd_power(const Eigen::MatrixXd& a, double p) { return dense_power(a, 0.0, p); }

}  // namespace

// ---- the hooks ---------------------------------------------------------------------------------------

TEST_CASE("LinearLayerModel: the Transformer's layer inputs times output gradients are the √T-scaled gradient") {
  const auto model = perturbed_transformer<double>();
  const auto samples = sequences<double>(4, 5);
  const auto layers = model.linear_layers();
  REQUIRE(layers.size() == 4);
  for (const auto kind : {fu::FisherKind::empirical, fu::FisherKind::monte_carlo}) {
    for (const bool per_sample : {false, true}) {
      Recorder<double> rec;
      rec.per_sample = per_sample;
      std::mt19937_64 rng(21);
      model.visit_linear_layers(samples, kind == fu::FisherKind::monte_carlo ? fu::CurvatureTargets::sampled
                                                                             : fu::CurvatureTargets::observed,
                                rng, rec);
      // sampled_gradient with the same seed draws the same targets
      const Eigen::MatrixXd scores = reference_scores(model, std::span(samples), kind, 21);
      for (std::size_t i = 0; i < samples.size(); ++i) {
        for (std::size_t l = 0; l < layers.size(); ++l) {
          const Eigen::MatrixXd g = layer_gradient(layers[l], rec.layers[l], i);
          Eigen::MatrixXd ref(g.rows(), g.cols());
          for (Eigen::Index o = 0; o < g.rows(); ++o)
            for (Eigen::Index c = 0; c < g.cols(); ++c)
              ref(o, c) = scores(static_cast<Eigen::Index>(parameter_index(layers[l], o, c)), static_cast<Eigen::Index>(i));
          // the key-bias column is exactly 0 in the model's gradient and rounding-level here
          CHECK((g - ref).norm() <= 1e-12 * (1.0 + ref.norm()));
        }
        if (per_sample) CHECK((rec.scores.at(i) - scores.col(static_cast<Eigen::Index>(i))).norm() <=
                              1e-13 * scores.col(static_cast<Eigen::Index>(i)).norm());
      }
      CHECK(rec.scores.size() == (per_sample ? samples.size() : 0u));
      Recorder<double> partial;
      partial.per_sample = per_sample;
      partial.linear_scores = false;
      std::mt19937_64 rng2(21);
      model.visit_linear_layers(samples, kind == fu::FisherKind::monte_carlo ? fu::CurvatureTargets::sampled
                                                                             : fu::CurvatureTargets::observed,
                                rng2, partial);
      check_without_linear_scores(rec, partial, layers, model.num_parameters(), samples.size());
      // with scores, the full visitor gets one sequence per batch and the partial one a stacked chunk
      if (per_sample) CHECK(partial.layers.at(0).size() < rec.layers.at(0).size());
    }
  }
}

TEST_CASE("LinearLayerModel: the Mlp hands the raw inputs to its first layer and the gradient's factors to every layer") {
  const Mlp<double> model(mlp_options({5, 3}));
  const auto samples = fu::models::make_softmax_problem<double>(7, 4, 3, 8);
  for (const auto kind : {fu::FisherKind::empirical, fu::FisherKind::monte_carlo}) {
    Recorder<double> rec;
    rec.per_sample = kind == fu::FisherKind::monte_carlo;
    std::mt19937_64 rng(4);
    model.visit_linear_layers(samples, kind == fu::FisherKind::monte_carlo ? fu::CurvatureTargets::sampled
                                                                           : fu::CurvatureTargets::observed,
                              rng, rec);
    const Eigen::MatrixXd scores = reference_scores(model, std::span(samples), kind, 4);
    const auto layers = model.linear_layers();
    REQUIRE(layers.size() == 3);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const Eigen::MatrixXd g = layer_gradient(layers[l], rec.layers[l], i);
        for (Eigen::Index o = 0; o < g.rows(); ++o)
          for (Eigen::Index c = 0; c < g.cols(); ++c)
            CHECK(g(o, c) == Approx(scores(static_cast<Eigen::Index>(parameter_index(layers[l], o, c)),
                                           static_cast<Eigen::Index>(i))).margin(1e-14));
      }
      if (rec.per_sample) CHECK((rec.scores.at(i) - scores.col(static_cast<Eigen::Index>(i))).norm() <= 1e-14);
    }
    // first layer's inputs are the samples' features themselves
    std::size_t seen = 0;
    for (const auto& b : rec.layers[0])
      for (Eigen::Index c = 0; c < b.a.cols(); ++c, ++seen) CHECK(b.a.col(c) == samples[b.first + static_cast<std::size_t>(c)].x);
    CHECK(seen == samples.size());
  }
}

TEST_CASE("LinearLayerModel: the Transformer leaves masked positions with a zero output gradient out of A") {
  const auto model = perturbed_transformer<double>();
  Transformer<double>::Sample s{{1, 4, 2, 6, 3}, {}};
  s.targets.weights = {1.0, 0.0, 1.0, 0.0};
  Transformer<double>::Sample plain{s.tokens, {}};
  Recorder<double> masked_rec, plain_rec;
  std::mt19937_64 rng(1), rng2(1);
  model.visit_linear_layers(std::span(&s, 1), fu::CurvatureTargets::observed, rng, masked_rec);
  model.visit_linear_layers(std::span(&plain, 1), fu::CurvatureTargets::observed, rng2, plain_rec);
  // attn_out, fc, proj act position by position after the attention: only the weighted positions 0 and 2
  // remain; qkv keeps position 1 (its key and value reach position 2) and drops 3 (it reaches nothing).
  const std::vector<std::vector<Eigen::Index>> kept = {{0, 1, 2}, {0, 2}, {0, 2}, {0, 2}};
  for (std::size_t l = 0; l < 4; ++l) {
    INFO("layer " << l);
    REQUIRE(masked_rec.layers[l].size() == 1);
    const auto& b = masked_rec.layers[l][0];
    const auto& all = plain_rec.layers[l][0];
    REQUIRE(b.a.cols() == static_cast<Eigen::Index>(kept[l].size()));
    CHECK(b.columns == std::vector<Eigen::Index>{0, b.a.cols()});
    for (std::size_t k = 0; k < kept[l].size(); ++k) CHECK(b.a.col(static_cast<Eigen::Index>(k)) == all.a.col(kept[l][k]));
  }
  const auto fisher = fu::make_kfac_fisher(model, std::span(&s, 1), 0.1, fu::GradientCollection{});
  const Eigen::MatrixXd& a = plain_rec.layers[3][0].a;
  Eigen::MatrixXd expected = Eigen::MatrixXd::Zero(a.rows() + 1, a.rows() + 1);
  for (const Eigen::Index t : {Eigen::Index(0), Eigen::Index(2)}) {
    Eigen::VectorXd a1(a.rows() + 1);
    a1 << a.col(t), 1.0;
    expected += a1 * a1.transpose() / 2.0;
  }
  CHECK(relative_error(fisher.activation_factor(3), expected) < 1e-13);
}

// ---- K-FAC ---------------------------------------------------------------------------------------------

// The K-FAC factors of layer l by their definition, from a Recorder's statistics of m samples:
// A = (1/positions)·Σ [a;1][a;1]ᵀ, G = (1/m)·Σ δδᵀ (dense fp64).
std::pair<Eigen::MatrixXd, Eigen::MatrixXd> factors_by_definition(const fu::LinearLayer& info,
                                                                  const std::vector<Recorder<double>::Batch>& batches,
                                                                  std::size_t m) {
  const auto in = static_cast<Eigen::Index>(info.in_features), out = static_cast<Eigen::Index>(info.out_features);
  Eigen::MatrixXd a_sum = Eigen::MatrixXd::Zero(in + 1, in + 1), g_sum = Eigen::MatrixXd::Zero(out, out);
  double positions = 0;
  for (const auto& b : batches)
    for (Eigen::Index c = 0; c < b.a.cols(); ++c) {
      Eigen::VectorXd a(in + 1);
      a << b.a.col(c), 1.0;
      a_sum += a * a.transpose();
      g_sum += b.delta.col(c) * b.delta.col(c).transpose();
      positions += 1;
    }
  return {a_sum / positions, g_sum / static_cast<double>(m)};
}


TEST_CASE("KfacFisher: the factors equal their definition and the diagonal block the mean squared score") {
  const auto model = perturbed_transformer<double>();
  const auto samples = sequences<double>(6, 9);
  for (const auto kind : {fu::FisherKind::empirical, fu::FisherKind::monte_carlo}) {
    fu::GradientCollection how;
    how.kind = kind;
    how.seed = 33;
    const auto fisher = fu::make_kfac_fisher(model, std::span(samples), 0.1, how);
    CHECK(fisher.num_gradients() == samples.size());
    Recorder<double> rec;
    std::mt19937_64 rng(33);
    model.visit_linear_layers(samples, kind == fu::FisherKind::monte_carlo ? fu::CurvatureTargets::sampled
                                                                           : fu::CurvatureTargets::observed,
                              rng, rec);
    for (std::size_t l = 0; l < fisher.num_layers(); ++l) {
      const auto [a, g] = factors_by_definition(fisher.layer(l), rec.layers[l], samples.size());
      CHECK(relative_error(fisher.activation_factor(l), a) < 1e-13);
      CHECK(relative_error(fisher.gradient_factor(l), g) < 1e-13);
    }
    const Eigen::MatrixXd scores = reference_scores(model, std::span(samples), kind, 33);
    Eigen::VectorXd ref(static_cast<Eigen::Index>(fisher.diagonal_indices().size()));
    for (std::size_t k = 0; k < fisher.diagonal_indices().size(); ++k)
      ref[static_cast<Eigen::Index>(k)] = scores.row(fisher.diagonal_indices()[k]).squaredNorm() / static_cast<double>(samples.size());
    // embeddings (token table, positions) and every LayerNorm gain/bias
    const auto& c = model.config();
    CHECK(fisher.diagonal_indices().size() == c.width * (c.vocab_size + c.context_length) + c.num_layers * 4 * c.width + 2 * c.width);
    CHECK(relative_error(fisher.diagonal(), ref) < 1e-12);
  }
}

TEST_CASE("KfacFisher: a factor pass over more than one block gives the same bits for 1, 2 and 3 threads, and its "
          "factors and diagonal still equal their definition") {
  // 75 samples = 2 full blocks of kFactorBlock (32) and a partial one
  REQUIRE(fu::KfacFisher<double>::kFactorBlock == 32);
  const auto model_d = perturbed_transformer<double>();
  const auto samples_d = sequences<double>(75, 17);
  {  // double: the blocked pass against the definition (dense fp64 sums over the recorded statistics)
    fu::KfacFisher<double> fisher(model_d, 0.1);
    fisher.set_num_threads(2);
    fisher.accumulate(model_d, std::span(samples_d), fu::GradientCollection{});
    fisher.finalize();
    Recorder<double> rec;
    std::mt19937_64 rng(0);
    model_d.visit_linear_layers(samples_d, fu::CurvatureTargets::observed, rng, rec);
    for (std::size_t l = 0; l < fisher.num_layers(); ++l) {
      const auto [a, g] = factors_by_definition(fisher.layer(l), rec.layers[l], samples_d.size());
      CHECK(relative_error(fisher.activation_factor(l), a) < 1e-13);
      CHECK(relative_error(fisher.gradient_factor(l), g) < 1e-13);
    }
    const Eigen::MatrixXd scores = reference_scores(model_d, std::span(samples_d), fu::FisherKind::empirical, 0);
    Eigen::VectorXd ref(static_cast<Eigen::Index>(fisher.diagonal_indices().size()));
    for (std::size_t k = 0; k < fisher.diagonal_indices().size(); ++k)
      ref[static_cast<Eigen::Index>(k)] = scores.row(fisher.diagonal_indices()[k]).squaredNorm() / 75.0;
    CHECK(relative_error(fisher.diagonal(), ref) < 1e-12);
    // EK-FAC's blocked eigenvalue pass against the flat per-sample scores fed to the same eigenbasis
    fu::EkfacFisher<double> blocked(model_d, 0.1);
    blocked.set_num_threads(2);
    blocked.accumulate(model_d, std::span(samples_d), fu::GradientCollection{});
    blocked.finalize();
    fu::EkfacFisher<double> flat(model_d, 0.1);
    flat.accumulate_factors(model_d, std::span(samples_d), fu::GradientCollection{});
    flat.fit_eigenbasis();
    flat.add_gradients(scores);
    flat.finalize();
    for (std::size_t l = 0; l < blocked.num_layers(); ++l)
      CHECK(relative_error(blocked.eigenvalues(l), flat.eigenvalues(l)) < 1e-12);
    CHECK(relative_error(blocked.diagonal(), flat.diagonal()) < 1e-12);
  }
  // float, K-FAC and EK-FAC: every thread count gives the same factors, eigenvalues and F^-1 v, bitwise
  const Transformer<float> model_f(model_d);
  std::vector<Transformer<float>::Sample> samples_f(samples_d.size());
  for (std::size_t i = 0; i < samples_d.size(); ++i) samples_f[i].tokens = samples_d[i].tokens;
  const fu::Vector<float> v = random_vector<double>(static_cast<Eigen::Index>(model_d.num_parameters()), 8).cast<float>();
  const auto run = [&](auto fisher, std::size_t threads) {
    fisher.set_num_threads(threads);
    CHECK(fisher.num_threads() == threads);
    fisher.accumulate(model_f, std::span(samples_f), fu::GradientCollection{});
    fisher.finalize();
    fu::Vector<float> out(v.size());
    fisher.apply_power(-1.0, v, out);
    std::vector<Eigen::MatrixXd> factors;
    for (std::size_t l = 0; l < fisher.num_layers(); ++l) {
      factors.push_back(fisher.activation_factor(l));
      factors.push_back(fisher.gradient_factor(l));
      factors.push_back(fisher.gradient_eigenvalues(l));
    }
    return std::make_tuple(out, factors, fisher.undamped_trace());
  };
  const auto k1 = run(fu::KfacFisher<float>(model_f, 0.1f), 1);
  const auto e1 = run(fu::EkfacFisher<float>(model_f, 0.1f), 1);
  for (std::size_t threads : {std::size_t{2}, std::size_t{3}}) {
    INFO("threads = " << threads);
    const auto k = run(fu::KfacFisher<float>(model_f, 0.1f), threads);
    CHECK(std::get<0>(k) == std::get<0>(k1));
    CHECK(std::get<1>(k) == std::get<1>(k1));
    CHECK(std::get<2>(k) == std::get<2>(k1));
    const auto e = run(fu::EkfacFisher<float>(model_f, 0.1f), threads);
    CHECK(std::get<0>(e) == std::get<0>(e1));
    CHECK(std::get<1>(e) == std::get<1>(e1));
    CHECK(std::get<2>(e) == std::get<2>(e1));  // Σ of EK-FAC's eigenvalues: its blocked second pass
  }
  CHECK(fu::KfacFisher<float>(model_f, 0.1f).num_threads() == 1);  // the default
}

TEMPLATE_TEST_CASE("KfacFisher: F^p v equals the dense power of the K-FAC matrix", "[kfac]", float, double) {
  using Scalar = TestType;
  const auto model = perturbed_transformer<Scalar>();
  const auto samples = sequences<Scalar>(5, 13);
  for (const double alpha : {0.0, 0.1}) {
    fu::KfacOptions options;
    options.relative_damping = alpha;
    const auto fisher = fu::make_kfac_fisher(model, std::span(samples), Scalar(std::is_same_v<Scalar, float> ? 1e-2 : 1e-4),
                                             fu::kfac_true_fisher(5), options);
    const Eigen::MatrixXd dense = dense_matrix(fisher, false);
    const auto d = dense.rows();
    const fu::Vector<Scalar> v = random_vector<Scalar>(d, 77);
    for (const double p : {-1.0, -0.5, -0.25, 1.0, 0.7}) {
      fu::Vector<Scalar> out(d);
      fisher.apply_power(p, v, out);
      const Eigen::VectorXd ref = spd_power(dense, p) * v.template cast<double>();
      INFO("alpha " << alpha << " p " << p);
      CHECK(relative_error(out, ref) < (std::is_same_v<Scalar, float> ? 2e-4 : 1e-11));
    }
    CHECK(fisher.undamped_trace() ==
          Approx(dense.trace() - [&] {
            double damping = 0;
            for (std::size_t l = 0; l < fisher.num_layers(); ++l)
              damping += fisher.layer_damping(l) * static_cast<double>(fisher.layer(l).out_features * (fisher.layer(l).in_features + 1));
            return damping + fisher.diagonal_damping() * static_cast<double>(fisher.diagonal_indices().size());
          }()).epsilon(std::is_same_v<Scalar, float> ? 1e-7 : 1e-10));  // float: the dense matrix is built
                                                                        // from float eigenvectors (‖u‖² = 1 to ~1e-7)
    if (alpha > 0) CHECK(fisher.layer_damping(0) > static_cast<double>(fisher.damping()));
  }
}

TEST_CASE("KfacFisher: the row-major, bias-free layer path matches the dense power too") {
  const RowMajorSoftmax model(4, 3, 5);
  const auto samples = fu::models::make_softmax_problem<double>(9, 4, 3, 2);
  const auto fisher = fu::make_kfac_fisher(model, std::span(samples), 1e-3);
  const Eigen::MatrixXd dense = dense_matrix(fisher, false);
  const fu::Vector<double> v = random_vector<double>(dense.rows(), 3);
  fu::Vector<double> out(v.size());
  fisher.apply_power(-1.0, v, out);
  CHECK(relative_error(out, spd_power(dense, -1.0) * v) < 1e-12);
  CHECK(fisher.diagonal_indices().empty());
}

// One-token linear-softmax: the per-sample Fisher block is (x xᵀ) ⊗ (δ δᵀ). K-FAC's (mean x xᵀ) ⊗ (mean δ δᵀ)
// equals the dense Fisher exactly when every sample has the same input x (so it holds for a single sample
// with any number of draws); otherwise it is an approximation. EK-FAC's eigenvalues are always the diagonal
// of the dense Fisher in the Kronecker eigenbasis, so EK-FAC equals the Fisher whenever that basis
// diagonalises it — in particular in the one-input case.
TEST_CASE("KfacFisher: on a one-layer linear-softmax model with one input K-FAC and EK-FAC equal the dense Fisher") {
  for (const bool bias : {false, true}) {
    const auto base = fu::models::make_softmax_problem<double>(1, 4, 3, 6);
    const std::vector<fu::models::ClassificationSample<double>> samples(40, base.front());  // one x, 40 draws
    const auto how = fu::kfac_true_fisher(8);
    Eigen::MatrixXd scores;
    Eigen::MatrixXd kfac_dense, ekfac_dense;
    const double lambda = 1e-3;
    auto run = [&](const auto& model) {
      scores = reference_scores(model, std::span(samples), fu::FisherKind::monte_carlo, 8);
      const auto k = fu::make_kfac_fisher(model, std::span(samples), lambda, how);
      const auto e = fu::make_ekfac_fisher(model, std::span(samples), lambda, how);
      kfac_dense = dense_matrix(k, false);
      ekfac_dense = dense_matrix(e, true);
    };
    if (bias) run(Mlp<double>(mlp_options({})));  // softmax regression with a bias: x̃ = [x; 1]
    else run(RowMajorSoftmax(4, 3, 9));
    Eigen::MatrixXd fisher = scores * scores.transpose() / static_cast<double>(samples.size());
    fisher.diagonal().array() += lambda;
    INFO("bias " << bias);
    CHECK(relative_error(kfac_dense, fisher) < 1e-12);
    CHECK(relative_error(ekfac_dense, fisher) < 1e-10);
  }
}

TEST_CASE("KfacFisher: with different inputs K-FAC is only an approximation of the linear-softmax Fisher") {
  const RowMajorSoftmax model(4, 3, 9);
  const auto samples = fu::models::make_softmax_problem<double>(30, 4, 3, 6);
  const auto k = fu::make_kfac_fisher(model, std::span(samples), 1e-3);
  const Eigen::MatrixXd scores = reference_scores(model, std::span(samples), fu::FisherKind::monte_carlo, 0x5eed);
  Eigen::MatrixXd fisher = scores * scores.transpose() / 30.0;
  fisher.diagonal().array() += 1e-3;
  const double gap = relative_error(dense_matrix(k, false), fisher);
  CHECK(gap > 1e-2);  // the Kronecker assumption E[xxᵀ ⊗ δδᵀ] = E[xxᵀ] ⊗ E[δδᵀ] fails
  CHECK(gap < 1.0);   // but it is the right curvature to within its order
  // EK-FAC's Λ is the Frobenius-best diagonal in the same basis, so it is never further from F than K-FAC.
  const auto e = fu::make_ekfac_fisher(model, std::span(samples), 1e-3);
  const double ekfac_gap = relative_error(dense_matrix(e, true), fisher);
  CHECK(ekfac_gap < gap);
}

// ---- EK-FAC ---------------------------------------------------------------------------------------------

template <class M>
void check_ekfac_eigenvalues(const M& model, std::span<const typename M::Sample> samples, fu::FisherKind kind) {
  fu::GradientCollection how;
  how.kind = kind;
  how.seed = 12;
  const auto e = fu::make_ekfac_fisher(model, samples, typename M::Scalar(1e-3), how);
  const Eigen::MatrixXd scores = reference_scores(model, samples, kind, 12);
  const Eigen::MatrixXd fisher = scores * scores.transpose() / static_cast<double>(samples.size());
  for (std::size_t l = 0; l < e.num_layers(); ++l) {
    const fu::LinearLayer& info = e.layer(l);
    const Eigen::MatrixXd ua = e.activation_eigenvectors(l).template cast<double>();
    const Eigen::MatrixXd ug = e.gradient_eigenvectors(l).template cast<double>();
    const auto out = ug.rows();
    // the layer block of the dense Fisher, in the [W b] column-major order
    const Eigen::Index n = out * ua.rows();
    Eigen::MatrixXd block(n, n);
    for (Eigen::Index r = 0; r < n; ++r)
      for (Eigen::Index c = 0; c < n; ++c)
        block(r, c) = fisher(static_cast<Eigen::Index>(parameter_index(info, r % out, r / out)),
                             static_cast<Eigen::Index>(parameter_index(info, c % out, c / out)));
    const Eigen::MatrixXd q = kron(ua, ug);
    const Eigen::VectorXd ref = (q.transpose() * block * q).diagonal();
    const Eigen::MatrixXd& lambda = e.eigenvalues(l);
    INFO("layer " << info.name);
    CHECK(relative_error(Eigen::Map<const Eigen::VectorXd>(lambda.data(), lambda.size()), ref) < 1e-12);
  }
  Eigen::VectorXd diag(static_cast<Eigen::Index>(e.diagonal_indices().size()));
  for (std::size_t k = 0; k < e.diagonal_indices().size(); ++k)
    diag[static_cast<Eigen::Index>(k)] = fisher(e.diagonal_indices()[k], e.diagonal_indices()[k]);
  if (diag.size() > 0) CHECK(relative_error(e.diagonal(), diag) < 1e-12);
}

TEST_CASE("EkfacFisher: the eigenvalues equal the diagonal of the dense Fisher in the Kronecker eigenbasis") {
  SECTION("Transformer (sequences of unequal length)") {
    const auto model = perturbed_transformer<double>();
    const auto samples = sequences<double>(6, 4);
    check_ekfac_eigenvalues(model, std::span<const Transformer<double>::Sample>(samples), fu::FisherKind::empirical);
    check_ekfac_eigenvalues(model, std::span<const Transformer<double>::Sample>(samples), fu::FisherKind::monte_carlo);
  }
  SECTION("Mlp (one position per sample: the batched GEMM path)") {
    const Mlp<double> model(mlp_options({5}));
    const auto samples = fu::models::make_softmax_problem<double>(300, 4, 3, 1);  // two chunks of the Mlp
    check_ekfac_eigenvalues(model, std::span<const Mlp<double>::Sample>(samples), fu::FisherKind::empirical);
    check_ekfac_eigenvalues(model, std::span<const Mlp<double>::Sample>(samples), fu::FisherKind::monte_carlo);
  }
}

TEST_CASE("EkfacFisher: flat per-sample scores give the same eigenvalues as the model pass, and F^p v is the dense power") {
  const auto model = perturbed_transformer<double>();
  const auto samples = sequences<double>(5, 8);
  const auto how = fu::kfac_true_fisher(3);
  const auto from_model = fu::make_ekfac_fisher(model, std::span(samples), 1e-3, how);
  fu::EkfacFisher<double> from_scores(model, 1e-3);
  from_scores.accumulate_factors(model, std::span(samples), how);
  from_scores.fit_eigenbasis();
  const Eigen::MatrixXd scores = reference_scores(model, std::span(samples), fu::FisherKind::monte_carlo, 3);
  from_scores.add_gradients(scores.leftCols(2));
  for (Eigen::Index c = 2; c < scores.cols(); ++c) from_scores.add_gradient(scores.col(c));
  from_scores.finalize();
  CHECK(from_scores.num_gradients() == samples.size());
  for (std::size_t l = 0; l < from_model.num_layers(); ++l)
    CHECK(relative_error(from_scores.eigenvalues(l), from_model.eigenvalues(l)) < 1e-12);
  CHECK(relative_error(from_scores.diagonal(), from_model.diagonal()) < 1e-12);

  const Eigen::MatrixXd dense = dense_matrix(from_model, true);
  const fu::Vector<double> v = random_vector<double>(dense.rows(), 5);
  for (const double p : {-1.0, -0.25, 1.0}) {
    fu::Vector<double> out(v.size());
    from_model.apply_power(p, v, out);
    CHECK(relative_error(out, spd_power(dense, p) * v) < 1e-11);
  }
  // EK-FAC keeps the trace of the Fisher: Σ Λ = Σ_l tr(Qᵀ F_l Q) = Σ_l tr F_l.
  CHECK(from_model.undamped_trace() == Approx(scores.squaredNorm() / 5.0).epsilon(1e-10));
}

// ---- errors and the strong guarantee --------------------------------------------------------------------

TEST_CASE("KfacFisher and EkfacFisher: bad input raises typed errors and leaves the estimator unchanged") {
  const auto model = perturbed_transformer<double>();
  const auto samples = sequences<double>(3, 2);
  const auto layers = model.linear_layers();
  const std::size_t d = model.num_parameters();

  CHECK_THROWS_AS(fu::KfacFisher<double>(layers, d, 0.0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::KfacFisher<double>(layers, d, -1.0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::KfacFisher<double>(layers, d, std::nan("")), fu::InvalidArgument);
  fu::KfacOptions bad;
  bad.relative_damping = -0.1;
  CHECK_THROWS_AS(fu::KfacFisher<double>(layers, d, 1.0, bad), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::KfacFisher<double>(layers, 10, 1.0), fu::InvalidArgument);  // layers outside d
  auto overlapping = layers;
  overlapping[1].weight_offset = overlapping[0].weight_offset + 1;
  CHECK_THROWS_AS(fu::EkfacFisher<double>(overlapping, d, 1.0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::KfacFisher<double>({}, d, 1.0), fu::InvalidArgument);

  fu::KfacFisher<double> kfac(model, 0.1);
  fu::Vector<double> v = random_vector<double>(static_cast<Eigen::Index>(d), 1), out(v.size());
  CHECK_THROWS_AS(kfac.apply_power(-1.0, v, out), fu::StateError);
  CHECK_THROWS_AS(kfac.finalize(), fu::InvalidArgument);
  CHECK_THROWS_AS(kfac.add_gradient(v), fu::StateError);
  CHECK_THROWS_AS(kfac.add_gradients(fu::Matrix<double>(v)), fu::StateError);
  CHECK_THROWS_AS(kfac.accumulate(model, std::span<const Transformer<double>::Sample>(), fu::kfac_true_fisher()),
                  fu::InvalidArgument);
  kfac.accumulate(model, std::span(samples), fu::kfac_true_fisher());
  kfac.finalize();
  fu::Vector<double> before(v.size());
  kfac.apply_power(-1.0, v, before);

  // a different model: rejected, unchanged
  TransformerConfig other = tiny_config();
  other.width = 8;
  const Transformer<double> wrong(other);
  std::vector<Transformer<double>::Sample> wrong_samples(1);
  wrong_samples[0].tokens = {1, 2, 3};
  CHECK_THROWS_AS(kfac.accumulate(wrong, std::span(wrong_samples), fu::kfac_true_fisher()), fu::InvalidArgument);
  // non-finite parameters: rejected, unchanged
  auto broken = model;
  broken.parameters()[layers[2].weight_offset] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(kfac.accumulate(broken, std::span(samples), fu::kfac_true_fisher()), fu::NonFiniteError);
  CHECK(kfac.is_finalized());
  CHECK(kfac.num_gradients() == samples.size());
  kfac.apply_power(-1.0, v, out);
  CHECK(out == before);
  CHECK_THROWS_AS(kfac.set_damping(0.0), fu::InvalidArgument);
  CHECK(kfac.damping() == 0.1);
  CHECK_THROWS_AS(kfac.apply_power(-1.0, v, v), fu::InvalidArgument);  // aliasing
  fu::Vector<double> short_v(3), short_out(3);
  CHECK_THROWS_AS(kfac.apply_power(-1.0, short_v, short_out), fu::InvalidArgument);
  CHECK_THROWS_AS(kfac.apply_power(std::nan(""), v, out), fu::InvalidArgument);
  // accumulating again requires a new finalize
  kfac.accumulate(model, std::span(samples), fu::kfac_true_fisher(9));
  CHECK(kfac.num_gradients() == 2 * samples.size());
  CHECK_THROWS_AS(kfac.apply_power(-1.0, v, out), fu::StateError);
  kfac.clear();
  CHECK(kfac.num_gradients() == 0);
  CHECK_THROWS_AS(kfac.finalize(), fu::InvalidArgument);

  fu::EkfacFisher<double> ekfac(model, 0.1);
  CHECK_THROWS_AS(ekfac.add_gradient(v), fu::StateError);
  CHECK_THROWS_AS(ekfac.fit_eigenbasis(), fu::StateError);
  CHECK_THROWS_AS(ekfac.accumulate_eigenvalues(model, std::span(samples), fu::kfac_true_fisher()), fu::StateError);
  CHECK_THROWS_AS(ekfac.finalize(), fu::StateError);
  ekfac.accumulate(model, std::span(samples), fu::kfac_true_fisher());
  ekfac.finalize();
  ekfac.apply_power(-0.25, v, before);
  fu::Vector<double> nan_gradient = v;
  nan_gradient[4] = std::nan("");
  CHECK_THROWS_AS(ekfac.add_gradient(nan_gradient), fu::NonFiniteError);
  CHECK_THROWS_AS(ekfac.add_gradient(short_v), fu::InvalidArgument);
  CHECK_THROWS_AS(ekfac.accumulate_eigenvalues(broken, std::span(samples), fu::kfac_true_fisher()), fu::NonFiniteError);
  CHECK(ekfac.is_finalized());
  ekfac.apply_power(-0.25, v, out);
  CHECK(out == before);
  ekfac.add_gradient(v);
  CHECK_THROWS_AS(ekfac.apply_power(-0.25, v, out), fu::StateError);
}

TEST_CASE("KfacFisher: float statistics agree with double ones to float precision") {
  const auto model_d = perturbed_transformer<double>();
  const Transformer<float> model_f(model_d);
  const auto samples_d = sequences<double>(4, 6);
  std::vector<Transformer<float>::Sample> samples_f(samples_d.size());
  for (std::size_t i = 0; i < samples_d.size(); ++i) samples_f[i].tokens = samples_d[i].tokens;
  const auto fd = fu::make_ekfac_fisher(model_d, std::span(samples_d), 1e-2, fu::kfac_true_fisher(2));
  const auto ff = fu::make_ekfac_fisher(model_f, std::span(samples_f), 1e-2f, fu::kfac_true_fisher(2));
  const fu::Vector<double> v = random_vector<double>(static_cast<Eigen::Index>(model_d.num_parameters()), 4);
  fu::Vector<double> od(v.size());
  fu::Vector<float> of(v.size());
  fd.apply_power(-1.0, v, od);
  ff.apply_power(-1.0, v.cast<float>(), of);
  CHECK(relative_error(of, od) < 1e-3);
  CHECK(ff.undamped_trace() == Approx(fd.undamped_trace()).epsilon(1e-4));
}

// ---- the float factor kernel (detail/fisher_kernels.hpp) ------------------------------------------

TEST_CASE("K-FAC factor kernel: accumulate_lower_gram adds exactly the lower triangle of x·xᵀ into the double sums") {
  std::mt19937_64 rng(71);
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<float> pad;
  for (const Eigen::Index rows : {1, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 48, 64, 65, 100, 192, 257})
    for (const Eigen::Index n : {1, 7, 64, 300}) {
      INFO("rows " << rows << ", columns " << n);
      // Entries in quarters: every product and every float sum here is exact, so the kernel's result must
      // equal the reference bit for bit whatever its order. The rows between `rows` and the stride hold
      // NaN: a read past the block would show.
      const Eigen::Index ld = rows + 3;
      std::vector<float> x(static_cast<std::size_t>(ld * n), std::numeric_limits<float>::quiet_NaN());
      Eigen::MatrixXd ref = Eigen::MatrixXd::Zero(rows, rows);
      for (Eigen::Index t = 0; t < n; ++t)
        for (Eigen::Index i = 0; i < rows; ++i) x[static_cast<std::size_t>(t * ld + i)] = 0.25f * static_cast<float>(small(rng));
      for (Eigen::Index t = 0; t < n; ++t)
        for (Eigen::Index j = 0; j < rows; ++j)
          for (Eigen::Index i = j; i < rows; ++i)
            ref(i, j) += double(x[static_cast<std::size_t>(t * ld + i)]) * double(x[static_cast<std::size_t>(t * ld + j)]);
      // the sums: a (rows+2)² matrix with a starting value everywhere; only the lower triangle of the
      // top-left rows×rows block may change, by the reference
      Eigen::MatrixXd sum = Eigen::MatrixXd::Constant(rows + 2, rows + 2, 0.5);
      fu::detail::accumulate_lower_gram(x.data(), ld, rows, n, sum.data(), sum.outerStride(), pad);
      bool lower_ok = true, rest_ok = true;
      for (Eigen::Index j = 0; j < rows + 2; ++j)
        for (Eigen::Index i = 0; i < rows + 2; ++i) {
          if (i < rows && j < rows && i >= j) lower_ok = lower_ok && sum(i, j) == 0.5 + ref(i, j);
          else rest_ok = rest_ok && sum(i, j) == 0.5;
        }
      CHECK(lower_ok);
      CHECK(rest_ok);
    }
}

namespace {
// A LinearLayerModel with one linear layer (width w, a bias) whose visit hands stored columns: sample s
// owns columns [64s, 64s + 64) of a and δ. For comparing the float and double factor paths on the same data.
template <class S>
struct StoredLayer {
  using Scalar = S;
  using Sample = int;
  Eigen::Index width;
  fu::Matrix<S> a, delta;
  std::vector<S> theta;
  std::vector<Eigen::Index> columns{0, 64};
  StoredLayer(const Eigen::MatrixXf& a_in, const Eigen::MatrixXf& d_in)
      : width(a_in.rows()), a(a_in.cast<S>()), delta(d_in.cast<S>()), theta(static_cast<std::size_t>(width * width + width)) {}
  std::size_t num_parameters() const { return theta.size(); }
  std::span<S> parameters() { return theta; }
  std::span<const S> parameters() const { return theta; }
  S loss(const Sample&) const { return 0; }
  S gradient(const Sample&, std::span<S>) const { return 0; }
  std::vector<fu::LinearLayer> linear_layers() const {
    const auto w = static_cast<std::size_t>(width);
    return {{"stored", w, w, 0, fu::WeightOrder::column_major, true, w * w}};
  }
  void visit_linear_layers(std::span<const Sample> samples, fu::CurvatureTargets, std::mt19937_64&,
                           fu::LinearLayerVisitor<S>& visitor) const {
    using View = typename fu::LinearLayerBatch<S>::View;
    for (std::size_t k = 0; k < samples.size(); ++k) {
      const Eigen::Index first = 64 * samples[k];
      visitor.on_layer({0, k, columns, View(a.data() + first * width, width, 64, Eigen::OuterStride<>(width)),
                        View(delta.data() + first * width, width, 64, Eigen::OuterStride<>(width))});
    }
  }
};
}  // namespace

TEST_CASE("KfacFisher: float factors equal the double ones of the same statistics to float rounding, on both float paths") {
  // Widths up to detail::kFactorTileMaxRows take the register tiles, wider ones Eigen's rank update; the
  // double estimator sums the same float numbers' products exactly (products of floats are exact in
  // double). Each float entry may differ by the float rounding of one sample's 64 products.
  for (const Eigen::Index w : {Eigen::Index{1}, Eigen::Index{5}, Eigen::Index{16}, Eigen::Index{33}, Eigen::Index{130},
                               fu::detail::kFactorTileMaxRows + 8}) {
    INFO("width " << w);
    const int samples = 3;
    const Eigen::MatrixXf a = random_vector<float>(w * 64 * samples, 5).reshaped(w, 64 * samples);
    const Eigen::MatrixXf d = random_vector<float>(w * 64 * samples, 6).reshaped(w, 64 * samples);
    const StoredLayer<float> mf(a, d);
    const StoredLayer<double> md(a, d);
    const std::vector<int> which{0, 1, 2};
    fu::KfacFisher<float> ff(mf, 1e-3f);
    fu::KfacFisher<double> fd(md, 1e-3);
    ff.accumulate(mf, std::span<const int>(which), fu::kfac_true_fisher());
    fd.accumulate(md, std::span<const int>(which), fu::kfac_true_fisher());
    const auto check = [&](const Eigen::MatrixXd& got, const Eigen::MatrixXd& want, const Eigen::MatrixXf& x, double scale) {
      REQUIRE(got.rows() >= w);
      // bound per entry: each sample's 64 products summed in float, 64·2⁻²⁴·Σ|x_i x_j| in all, times the
      // factor's normalisation
      const Eigen::MatrixXd abs_products = x.cast<double>().cwiseAbs() * x.cast<double>().cwiseAbs().transpose();
      bool ok = true;
      for (Eigen::Index j = 0; j < w; ++j)
        for (Eigen::Index i = 0; i < w; ++i)
          ok = ok && std::abs(got(i, j) - want(i, j)) <= 64.0 * std::ldexp(1.0, -24) * abs_products(i, j) * scale + 1e-300;
      CHECK(ok);
      CHECK(relative_error(got, want) > 0.0);  // float arithmetic really happened (the paths differ)
    };
    check(ff.gradient_factor(0), fd.gradient_factor(0), d, 1.0 / samples);  // G: the mean over samples
    check(ff.activation_factor(0).topLeftCorner(w, w), fd.activation_factor(0).topLeftCorner(w, w), a,
          1.0 / (64.0 * samples));  // A: the mean over positions
    CHECK(ff.activation_factor(0).row(w).isApprox(fd.activation_factor(0).row(w), 1e-6));  // Σ a and the count
  }
}
