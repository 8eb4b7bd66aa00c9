// Llama as a LinearLayerModel (K-FAC / EK-FAC): its layer inputs times output gradients are the per-token
// scaled score, the inputs of a bottom-block projection are RMSNorm(embedding)·gain computed here, masked
// positions with a zero output gradient are left out of the activation statistics, the factors equal their
// definitions, and one NaturalGradientUnlearning step with K-FAC built on the Llama is the dense solve.
#include <catch2/catch.hpp>

#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/models/llama.hpp"
#include "fisher_unlearn/natural_gradient.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Llama;
using fu::models::LlamaConfig;

static_assert(fu::LinearLayerModel<Llama<float>> && fu::LinearLayerModel<Llama<double>>);

namespace {

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 17;
  c.context_length = 10;
  c.num_layers = 3;
  c.width = 16;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_width = 12;
  c.rope_dims = 2;
  c.rope_base = 50.0;
  return c;
}

// A bottom-block projection (its inputs are computable here), lower-block q/k (masked positions still reach
// them through attention), a whole top block, and a norm gain (the diagonal block).
const std::vector<std::string> kGroups = {"blk.0.attn_v", "blk.1.attn_q", "blk.1.attn_k", "blk.2", "output_norm"};

std::vector<Llama<double>::Sample> sequences(std::size_t m, std::uint64_t seed, bool masked) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, 16), length(3, 8);
  std::uniform_real_distribution<double> weight(0.2, 1.5);
  std::vector<Llama<double>::Sample> out(m);
  for (std::size_t i = 0; i < m; ++i) {
    auto& s = out[i];
    s.tokens.resize(static_cast<std::size_t>(length(rng)));
    for (auto& t : s.tokens) t = token(rng);
    if (masked && i % 2 == 1) {  // every other sample: general weights with zeros, the last target masked
      s.weights.resize(s.tokens.size() - 1);
      for (auto& w : s.weights) w = weight(rng);
      s.weights[0] = 0.0;
      s.weights.back() = 0.0;
    }
  }
  return out;
}

std::size_t parameter_index(const fu::LinearLayer& l, Eigen::Index o, Eigen::Index i) {
  REQUIRE(l.weight_order == fu::WeightOrder::row_major);
  REQUIRE_FALSE(l.has_bias);
  return l.weight_offset + static_cast<std::size_t>(o) * l.in_features + static_cast<std::size_t>(i);
}

struct Recorder : fu::LinearLayerVisitor<double> {
  struct Batch {
    std::size_t first;
    std::vector<Eigen::Index> columns;
    Eigen::MatrixXd a, delta;
  };
  bool per_sample = false;
  bool linear_scores = true;
  std::map<std::size_t, std::vector<Batch>> layers;
  std::map<std::size_t, Eigen::VectorXd> scores;
  void on_layer(const fu::LinearLayerBatch<double>& b) override {
    layers[b.layer].push_back({b.first_sample, {b.sample_columns.begin(), b.sample_columns.end()}, b.activations,
                               b.output_gradients});
  }
  bool wants_sample_gradients() const override { return per_sample; }
  bool wants_linear_layer_scores() const override { return linear_scores; }
  void on_sample_gradient(std::size_t i, std::span<const double> g) override { scores[i] = fu::as_eigen<double>(g); }
};

// Sample i's columns of layer l: (a, δ).
std::pair<Eigen::MatrixXd, Eigen::MatrixXd> columns_of(const std::vector<Recorder::Batch>& batches, std::size_t i) {
  for (const auto& b : batches) {
    if (i < b.first || i + 1 >= b.first + b.columns.size()) continue;
    const Eigen::Index c = b.columns[i - b.first], k = b.columns[i - b.first + 1] - c;
    return {b.a.middleCols(c, k), b.delta.middleCols(c, k)};
  }
  FAIL("sample " << i << " was not visited");
  return {};
}

// The score g̃ = ∇ Σₜ √wₜ ℓₜ of the concept's rule, from the model's own gradient (a sample re-weighted by √wₜ)
// or its sampled_gradient (√c·Σₜ√wₜ∇ℓₜ) divided by √c, with the same seed.
Eigen::MatrixXd reference_scores(const Llama<double>& model, std::span<const Llama<double>::Sample> samples,
                                 bool sampled, std::uint64_t seed) {
  Eigen::MatrixXd g(static_cast<Eigen::Index>(model.num_parameters()), static_cast<Eigen::Index>(samples.size()));
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    std::span<double> out(g.col(static_cast<Eigen::Index>(i)).data(), model.num_parameters());
    if (sampled) {  // sampled_gradient carries √c (HasLossScale); the score is without it
      model.sampled_gradient(samples[i], rng, out);
      g.col(static_cast<Eigen::Index>(i)) /= std::sqrt(model.loss_scale(samples[i]));
      continue;
    }
    Llama<double>::Sample root = samples[i];
    const std::size_t T = root.tokens.size() - 1;
    if (root.weights.empty()) root.weights.assign(T, 1.0 / static_cast<double>(T));
    for (auto& w : root.weights) w = std::sqrt(w);
    model.gradient(root, out);
  }
  return g;
}

double relative_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return (a - b).norm() / b.norm(); }

}  // namespace

TEST_CASE("Llama: linear_layers are the trainable projections, row-major, without bias, in parameter order") {
  const Llama<double> model(tiny_config(), kGroups, 5);
  const auto layers = model.linear_layers();
  const std::vector<std::string> names = {"blk.0.attn_v", "blk.1.attn_q", "blk.1.attn_k", "blk.2.attn_q",
                                          "blk.2.attn_k", "blk.2.attn_v", "blk.2.attn_output", "blk.2.ffn_gate",
                                          "blk.2.ffn_up", "blk.2.ffn_down"};
  REQUIRE(layers.size() == names.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    CHECK(layers[l].name == names[l]);
    const auto groups = model.parameter_groups();
    const auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.name == names[l]; });
    REQUIRE(it != groups.end());
    CHECK(layers[l].weight_offset == it->offset);
    CHECK(layers[l].in_features * layers[l].out_features == it->size);
    CHECK(layers[l].weight_order == fu::WeightOrder::row_major);
    CHECK_FALSE(layers[l].has_bias);
  }
  CHECK(layers[2].in_features == 16);
  CHECK(layers[2].out_features == 8);   // kv_width = 2 heads × 4
  CHECK(layers[9].in_features == 12);  // ffn_down: F → C
  CHECK(layers[9].out_features == 16);
  // norm gains (and frozen tensors) are not layers: the estimator's diagonal block is every norm gain
  const fu::KfacFisher<double> fisher(model, 0.1);
  CHECK(fisher.diagonal_indices().size() == 16 * 3);  // blk.2.attn_norm, blk.2.ffn_norm, output_norm
}

TEST_CASE("Llama: layer inputs times output gradients are the per-token scaled score, batched or one by one") {
  Llama<double> model(tiny_config(), kGroups, 5);
  const auto samples = sequences(5, 3, /*masked=*/true);
  const auto layers = model.linear_layers();
  for (const std::size_t chunk : {std::size_t(1), std::size_t(3)}) {
    auto e = model.execution();
    e.sequences_per_chunk = chunk;
    model.set_execution(e);
    for (const bool sampled : {false, true}) {
      for (const bool per_sample : {false, true}) {
        Recorder rec;
        rec.per_sample = per_sample;
        std::mt19937_64 rng(21);
        model.visit_linear_layers(samples, sampled ? fu::CurvatureTargets::sampled : fu::CurvatureTargets::observed,
                                  rng, rec);
        const Eigen::MatrixXd scores = reference_scores(model, samples, sampled, 21);
        INFO("chunk " << chunk << ", sampled " << sampled << ", per_sample " << per_sample);
        for (std::size_t i = 0; i < samples.size(); ++i) {
          for (std::size_t l = 0; l < layers.size(); ++l) {
            const auto [a, delta] = columns_of(rec.layers[l], i);
            const Eigen::MatrixXd g = delta * a.transpose();
            Eigen::MatrixXd ref(g.rows(), g.cols());
            for (Eigen::Index o = 0; o < g.rows(); ++o)
              for (Eigen::Index c = 0; c < g.cols(); ++c)
                ref(o, c) = scores(static_cast<Eigen::Index>(parameter_index(layers[l], o, c)), static_cast<Eigen::Index>(i));
            CHECK(relative_error(g, ref) < 1e-12);
          }
          if (per_sample) CHECK(relative_error(rec.scores.at(i), scores.col(static_cast<Eigen::Index>(i))) < 1e-13);
        }
        CHECK(rec.scores.size() == (per_sample ? samples.size() : 0u));
        // A visitor reading its scores outside the linear layers only (K-FAC's): the same statistics bit for
        // bit, the same entries outside the layers, 0 inside (their weight-gradient GEMMs skipped).
        Recorder partial;
        partial.per_sample = per_sample;
        partial.linear_scores = false;
        std::mt19937_64 rng2(21);
        model.visit_linear_layers(samples, sampled ? fu::CurvatureTargets::sampled : fu::CurvatureTargets::observed,
                                  rng2, partial);
        REQUIRE(partial.layers.size() == rec.layers.size());
        for (const auto& [l, batches] : rec.layers) {
          REQUIRE(partial.layers.at(l).size() == batches.size());
          for (std::size_t b = 0; b < batches.size(); ++b) {
            CHECK(partial.layers.at(l)[b].columns == batches[b].columns);
            CHECK(partial.layers.at(l)[b].a == batches[b].a);
            CHECK(partial.layers.at(l)[b].delta == batches[b].delta);
          }
        }
        std::vector<char> in_layer(model.num_parameters(), 0);
        for (const auto& info : layers)
          for (std::size_t k = 0; k < info.in_features * info.out_features; ++k) in_layer[info.weight_offset + k] = 1;
        REQUIRE(partial.scores.size() == rec.scores.size());
        for (const auto& [i, score] : rec.scores)
          for (std::size_t k = 0; k < in_layer.size(); ++k) {
            const auto kk = static_cast<Eigen::Index>(k);
            if (in_layer[k]) {
              if (partial.scores.at(i)[kk] != 0.0) FAIL_CHECK("score entry " << k << " of a linear layer is not 0");
            } else if (partial.scores.at(i)[kk] != score[kk]) {
              FAIL_CHECK("score entry " << k << " outside the linear layers differs");
            }
          }
      }
    }
  }
}

TEST_CASE("Llama: the bottom block's projection inputs are RMSNorm(embedding)·gain, one column per position") {
  const Llama<double> model(tiny_config(), kGroups, 5);
  const auto samples = sequences(3, 4, /*masked=*/false);
  Recorder rec;
  std::mt19937_64 rng(1);
  model.visit_linear_layers(samples, fu::CurvatureTargets::observed, rng, rec);
  const auto embd = model.tensor("token_embd");
  const auto gain = model.tensor("blk.0.attn_norm");
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto [a, delta] = columns_of(rec.layers[0], i);  // blk.0.attn_v
    REQUIRE(a.cols() == static_cast<Eigen::Index>(samples[i].tokens.size() - 1));
    for (Eigen::Index t = 0; t < a.cols(); ++t) {
      const auto tok = static_cast<std::size_t>(samples[i].tokens[static_cast<std::size_t>(t)]);
      Eigen::VectorXd x(16);
      for (Eigen::Index j = 0; j < 16; ++j) x[j] = embd[tok * 16 + static_cast<std::size_t>(j)];
      const double r = 1.0 / std::sqrt(x.squaredNorm() / 16.0 + 1e-5);
      for (Eigen::Index j = 0; j < 16; ++j) x[j] *= r * gain[static_cast<std::size_t>(j)];
      CHECK((a.col(t) - x).norm() <= 1e-14 * x.norm());
    }
  }
}

TEST_CASE("Llama: masked positions whose output gradient is zero are left out of the activation statistics") {
  const Llama<double> model(tiny_config(), kGroups, 5);
  Llama<double>::Sample s{{3, 9, 1, 14, 7, 2}, {1.0, 0.0, 0.5, 0.0, 0.0}};
  Llama<double>::Sample plain = s;
  plain.weights.assign(5, 1.0);
  Recorder masked_rec, plain_rec;
  std::mt19937_64 rng(1), rng2(1);
  model.visit_linear_layers(std::span(&s, 1), fu::CurvatureTargets::observed, rng, masked_rec);
  model.visit_linear_layers(std::span(&plain, 1), fu::CurvatureTargets::observed, rng2, plain_rec);
  const auto layers = model.linear_layers();
  std::map<std::string, std::vector<Eigen::Index>> kept = {
      // top block, position-wise after its attention: only the weighted positions 0 and 2
      {"blk.2.attn_q", {0, 2}}, {"blk.2.attn_output", {0, 2}}, {"blk.2.ffn_gate", {0, 2}},
      {"blk.2.ffn_up", {0, 2}}, {"blk.2.ffn_down", {0, 2}},
      // keys/values and lower blocks: position 1 reaches position 2 through attention; 3 and 4 reach nothing
      {"blk.2.attn_k", {0, 1, 2}}, {"blk.2.attn_v", {0, 1, 2}}, {"blk.1.attn_q", {0, 1, 2}},
      {"blk.1.attn_k", {0, 1, 2}}, {"blk.0.attn_v", {0, 1, 2}}};
  for (std::size_t l = 0; l < layers.size(); ++l) {
    INFO(layers[l].name);
    const auto [a, delta] = columns_of(masked_rec.layers[l], 0);
    const auto [a_all, delta_all] = columns_of(plain_rec.layers[l], 0);
    const auto& cols = kept.at(layers[l].name);
    REQUIRE(a.cols() == static_cast<Eigen::Index>(cols.size()));
    for (std::size_t k = 0; k < cols.size(); ++k) {
      CHECK(a.col(static_cast<Eigen::Index>(k)) == a_all.col(cols[k]));  // activations do not depend on weights
      // (a query at position 0 attends to itself alone: its gradient is exactly 0, but it is not masked)
      const bool first_query = cols[k] == 0 && layers[l].name.find("attn_q") != std::string::npos;
      CHECK((delta.col(static_cast<Eigen::Index>(k)).norm() > 0.0) == !first_query);
    }
  }
  // So A of the top feed-forward is the mean over the two weighted positions only.
  const auto fisher = fu::make_kfac_fisher(model, std::span(&s, 1), 0.1, fu::GradientCollection{});
  const std::size_t down = 9;
  REQUIRE(layers[down].name == "blk.2.ffn_down");
  const Eigen::MatrixXd a = columns_of(plain_rec.layers[down], 0).first;
  const Eigen::MatrixXd expected = (a.col(0) * a.col(0).transpose() + a.col(2) * a.col(2).transpose()) / 2.0;
  CHECK(relative_error(fisher.activation_factor(down), expected) < 1e-13);
}

TEST_CASE("KfacFisher on Llama: the factors equal their definitions and the diagonal block the mean squared score") {
  const Llama<double> model(tiny_config(), kGroups, 5);
  const auto samples = sequences(6, 9, /*masked=*/true);
  for (const auto kind : {fu::FisherKind::empirical, fu::FisherKind::monte_carlo}) {
    fu::GradientCollection how;
    how.kind = kind;
    how.seed = 33;
    const auto fisher = fu::make_kfac_fisher(model, std::span(samples), 0.1, how);
    Recorder rec;
    std::mt19937_64 rng(33);
    model.visit_linear_layers(samples, kind == fu::FisherKind::monte_carlo ? fu::CurvatureTargets::sampled
                                                                           : fu::CurvatureTargets::observed,
                              rng, rec);
    for (std::size_t l = 0; l < fisher.num_layers(); ++l) {
      Eigen::MatrixXd a_sum = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(fisher.layer(l).in_features),
                                                    static_cast<Eigen::Index>(fisher.layer(l).in_features));
      Eigen::MatrixXd g_sum = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(fisher.layer(l).out_features),
                                                    static_cast<Eigen::Index>(fisher.layer(l).out_features));
      double positions = 0;
      for (std::size_t i = 0; i < samples.size(); ++i) {
        const auto [a, delta] = columns_of(rec.layers[l], i);
        a_sum += a * a.transpose();
        g_sum += delta * delta.transpose();
        positions += static_cast<double>(a.cols());
      }
      CHECK(relative_error(fisher.activation_factor(l), a_sum / positions) < 1e-13);
      CHECK(relative_error(fisher.gradient_factor(l), g_sum / static_cast<double>(samples.size())) < 1e-13);
    }
    const Eigen::MatrixXd scores = reference_scores(model, samples, kind == fu::FisherKind::monte_carlo, 33);
    Eigen::VectorXd ref(static_cast<Eigen::Index>(fisher.diagonal_indices().size()));
    for (std::size_t k = 0; k < fisher.diagonal_indices().size(); ++k)
      ref[static_cast<Eigen::Index>(k)] = scores.row(fisher.diagonal_indices()[k]).squaredNorm() / static_cast<double>(samples.size());
    CHECK(relative_error(fisher.diagonal(), ref) < 1e-12);
    // EK-FAC from the model pass equals EK-FAC from the flat per-sample scores (Σ δ aᵀ is the score)
    const auto ekfac = fu::make_ekfac_fisher(model, std::span(samples), 0.1, how);
    fu::EkfacFisher<double> flat(model, 0.1);
    flat.accumulate_factors(model, std::span(samples), how);
    flat.fit_eigenbasis();
    flat.add_gradients(scores);
    flat.finalize();
    for (std::size_t l = 0; l < ekfac.num_layers(); ++l)
      CHECK(relative_error(ekfac.eigenvalues(l), flat.eigenvalues(l)) < 1e-10);
  }
}

TEMPLATE_TEST_CASE("NaturalGradientUnlearning on Llama: one K-FAC/EK-FAC step is the solve with the estimator "
                   "built on the retain set", "[kfac]", fu::KfacFisher<double>, fu::EkfacFisher<double>) {
  const Llama<double> start(tiny_config(), {"blk.2.attn_v", "blk.2.ffn_down", "output_norm"}, 8);
  const auto data = sequences(12, 17, /*masked=*/true);
  const std::span<const Llama<double>::Sample> all(data);
  const auto forget = all.first(2), retain = all.subspan(2);
  fu::NaturalGradientOptions o;
  o.max_steps = 1;
  o.learning_rate = 0.5;
  o.max_kl = std::numeric_limits<double>::infinity();
  o.fisher_samples = retain.size();
  o.gradients = fu::kfac_true_fisher(5);
  Llama<double> model = start;
  using U = fu::NaturalGradientUnlearning<TestType, fu::NaturalGradient, fu::GradientAscentObjective>;
  const auto result = U(o).unlearn_detailed(model, forget, retain);
  // The reference: the same estimator from the definitions' pass, its exact inverse applied densely.
  TestType fisher(start, 1.0);
  fisher.accumulate(start, retain, o.gradients);
  fisher.finalize();
  const auto d = static_cast<Eigen::Index>(start.num_parameters());
  const double lambda = 1e-2 * fisher.undamped_trace() / static_cast<double>(d);
  fisher.set_damping(lambda);
  Eigen::MatrixXd dense(d, d);
  Eigen::VectorXd unit = Eigen::VectorXd::Zero(d), column(d);
  for (Eigen::Index j = 0; j < d; ++j) {
    unit[j] = 1.0;
    fisher.apply_power(1.0, unit, column);
    dense.col(j) = column;
    unit[j] = 0.0;
  }
  CHECK(relative_error(dense, dense.transpose()) < 1e-12);
  fu::Vector<double> g;
  fu::GradientAscentObjective{}.value_and_gradient(start, forget, g);
  const Eigen::VectorXd expected = -o.learning_rate * dense.ldlt().solve(g);
  Eigen::VectorXd delta(d);
  for (Eigen::Index j = 0; j < d; ++j)
    delta[j] = model.parameters()[static_cast<std::size_t>(j)] - start.parameters()[static_cast<std::size_t>(j)];
  CHECK(result.report.damping == Approx(lambda).epsilon(1e-10));
  CHECK(relative_error(delta, expected) < 1e-8);
  CHECK(result.report.fisher_gradients == retain.size());
  double forget_before = 0, forget_after = 0;
  for (const auto& s : forget) {
    forget_before += start.loss(s);
    forget_after += model.loss(s);
  }
  CHECK(forget_after > forget_before);
}
