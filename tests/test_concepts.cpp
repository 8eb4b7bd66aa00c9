// Concepts, tested both ways: the reference models satisfy them, deliberately broken types do not.
#include <catch2/catch.hpp>

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/report.hpp"

#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;

namespace {

// A complete minimal model: the skeleton of docs/model_concept.md.
struct MinimalModel {
  using Scalar = double;
  struct Sample { double x; };
  std::vector<double> theta = {0.0};
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample& s) const { return 0.5 * (theta[0] - s.x) * (theta[0] - s.x); }
  double gradient(const Sample& s, std::span<double> g) const { g[0] = theta[0] - s.x; return loss(s); }
};

struct NoGradient {
  using Scalar = double;
  struct Sample {};
  std::vector<double> theta;
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample&) const { return 0.0; }
};

struct IntScalar {  // Scalar must be float or double
  using Scalar = int;
  struct Sample {};
  std::vector<int> theta;
  std::size_t num_parameters() const { return theta.size(); }
  std::span<int> parameters() { return theta; }
  std::span<const int> parameters() const { return theta; }
  int loss(const Sample&) const { return 0; }
};

struct NoSampleType {
  using Scalar = double;
  std::vector<double> theta;
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
};

struct ConstOnlyParameters {  // no mutable view: cannot be unlearned
  using Scalar = double;
  struct Sample {};
  std::vector<double> theta;
  std::size_t num_parameters() const { return theta.size(); }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample&) const { return 0.0; }
};

}  // namespace

static_assert(fu::Model<MinimalModel>);
static_assert(fu::DifferentiableModel<MinimalModel>);
static_assert(!fu::BatchDifferentiableModel<MinimalModel>);
static_assert(!fu::TwiceDifferentiableModel<MinimalModel>);
static_assert(!fu::SampledFisherModel<MinimalModel>);
static_assert(!fu::RegularizedModel<MinimalModel>);
static_assert(!fu::HasParameterGroups<MinimalModel>);

static_assert(fu::Model<NoGradient>);
static_assert(!fu::DifferentiableModel<NoGradient>);
static_assert(!fu::HasSampleGradient<NoGradient>);
static_assert(!fu::Model<IntScalar>);
static_assert(!fu::HasScalarType<IntScalar>);
static_assert(!fu::Model<NoSampleType>);
static_assert(!fu::Model<ConstOnlyParameters>);
static_assert(!fu::HasParameterView<ConstOnlyParameters>);

using LogRegD = fu::models::LogisticRegression<double>;
using LogRegF = fu::models::LogisticRegression<float>;
static_assert(fu::DifferentiableModel<LogRegD> && fu::DifferentiableModel<LogRegF>);
static_assert(fu::BatchDifferentiableModel<LogRegD>);
static_assert(fu::TwiceDifferentiableModel<LogRegD>);
static_assert(fu::HasDenseHessian<LogRegD> && fu::HasHessianVectorProduct<LogRegD>);
static_assert(fu::SampledFisherModel<LogRegD>);
static_assert(fu::RegularizedModel<LogRegD>);
static_assert(!fu::HasLossScale<LogRegD>);  // one target per sample: c = 1, nothing to declare

TEST_CASE("LogisticRegression: the batch gradient equals the sum of per-sample gradients") {
  const auto data = fu::models::make_logistic_problem<double>(50, 7, 11);
  LogRegD model(7, 0.01);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  for (double& t : model.parameters()) t = normal(rng);
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(7), g(7), batch(7);
  double loss_sum = 0;
  for (const auto& s : data) {
    loss_sum += model.gradient(s, std::span<double>(g.data(), 7));
    sum += g;
  }
  const double batch_loss = model.sum_loss_and_gradient(data, std::span<double>(batch.data(), 7));
  CHECK((batch - sum).norm() / sum.norm() < 1e-12);
  CHECK(batch_loss == Approx(loss_sum).epsilon(1e-12));
}

TEST_CASE("LogisticRegression: the dense Hessian agrees with Hessian-vector products") {
  const auto data = fu::models::make_logistic_problem<double>(40, 6, 5);
  LogRegD model(6, 0.1);
  std::mt19937_64 rng(9);
  std::normal_distribution<double> normal;
  for (double& t : model.parameters()) t = normal(rng);
  Eigen::MatrixXd h;
  model.hessian(data, h);
  Eigen::VectorXd v(6), hv(6);
  for (int i = 0; i < 6; ++i) v[i] = normal(rng);
  model.hessian_vector_product(data, std::span<const double>(v.data(), 6), std::span<double>(hv.data(), 6));
  CHECK((h * v - hv).norm() / hv.norm() < 1e-12);
  CHECK((h - h.transpose()).norm() == 0.0);
}

TEST_CASE("LogisticRegression: a sample of the wrong size is rejected with InvalidArgument") {
  LogRegD model(4, 0.1);
  LogRegD::Sample s{Eigen::VectorXd::Ones(3), 1.0};
  CHECK_THROWS_AS(model.loss(s), fu::InvalidArgument);
  CHECK_THROWS_AS(LogRegD(3, -1.0), fu::InvalidArgument);
}

// ================================================================================================
// The reference models against every concept, float and double, both ways.
// ================================================================================================
namespace {

template <class M>
constexpr bool satisfies_every_model_refinement =
    fu::Model<M> && fu::DifferentiableModel<M> && fu::BatchDifferentiableModel<M> && fu::TwiceDifferentiableModel<M> &&
    fu::SampledFisherModel<M> && fu::RegularizedModel<M>;

// Reference models are models, not estimators, unlearners or language models.
template <class M>
constexpr bool is_none_of_the_other_concepts =
    !fu::FisherEstimator<M> && !fu::NewtonUnlearner<M, M> && !fu::LanguageModel<M> &&
    !fu::IncrementalLanguageModel<M> && !fu::HasVocabulary<M> && !fu::HasNextTokenLogProbs<M>;

}  // namespace

using SoftmaxD = fu::models::SoftmaxRegression<double>;
using SoftmaxF = fu::models::SoftmaxRegression<float>;
using MlpD = fu::models::Mlp<double>;
using MlpF = fu::models::Mlp<float>;

static_assert(satisfies_every_model_refinement<SoftmaxD> && satisfies_every_model_refinement<SoftmaxF>);
static_assert(satisfies_every_model_refinement<MlpD> && satisfies_every_model_refinement<MlpF>);
static_assert(satisfies_every_model_refinement<LogRegD> && satisfies_every_model_refinement<LogRegF>);

static_assert(fu::HasParameterGroups<SoftmaxD> && fu::HasParameterGroups<SoftmaxF>);
static_assert(fu::HasParameterGroups<MlpD> && fu::HasParameterGroups<MlpF>);
static_assert(!fu::HasParameterGroups<LogRegD> && !fu::HasParameterGroups<LogRegF>);

// SoftmaxRegression and LogisticRegression give both curvature forms; Mlp gives exact products only
// (its dense Hessian would cost d products).
static_assert(fu::HasDenseHessian<SoftmaxD> && fu::HasHessianVectorProduct<SoftmaxD>);
static_assert(fu::HasDenseHessian<SoftmaxF> && fu::HasHessianVectorProduct<SoftmaxF>);
static_assert(fu::HasDenseHessian<LogRegF> && fu::HasHessianVectorProduct<LogRegF>);
static_assert(!fu::HasDenseHessian<MlpD> && fu::HasHessianVectorProduct<MlpD>);
static_assert(!fu::HasDenseHessian<MlpF> && fu::HasHessianVectorProduct<MlpF>);

static_assert(is_none_of_the_other_concepts<SoftmaxD> && is_none_of_the_other_concepts<SoftmaxF>);
static_assert(is_none_of_the_other_concepts<MlpD> && is_none_of_the_other_concepts<MlpF>);
static_assert(is_none_of_the_other_concepts<LogRegD> && is_none_of_the_other_concepts<LogRegF>);

// ================================================================================================
// The skeleton classes of docs/model_concept.md (kept in sync by hand: if you edit one, edit both),
// and a broken variant of each that must NOT satisfy its concept.
// ================================================================================================
namespace {

struct Batched : MinimalModel {
  double sum_loss_and_gradient(std::span<const Sample> batch, std::span<double> g) const {
    g[0] = 0;
    double total = 0;
    for (const Sample& s : batch) {
      g[0] += theta[0] - s.x;
      total += loss(s);
    }
    return total;
  }
};
struct BatchedWrongSignature : MinimalModel {  // takes a vector instead of a span
  double sum_loss_and_gradient(const std::vector<Sample>&, std::span<double>) const { return 0; }
};

struct WithHessianVectorProduct : MinimalModel {
  void hessian_vector_product(std::span<const Sample> batch, std::span<const double> v, std::span<double> out) const {
    out[0] = static_cast<double>(batch.size()) * v[0];
  }
};
struct WithDenseHessian : MinimalModel {
  void hessian(std::span<const Sample> batch, fu::Matrix<double>& h) const {
    h = fu::Matrix<double>::Constant(1, 1, static_cast<double>(batch.size()));
  }
};
struct HessianWithoutGradient : NoGradient {  // curvature alone does not make a model differentiable
  void hessian(std::span<const Sample>, fu::Matrix<double>& h) const { h.setZero(1, 1); }
};

struct WithSampledGradient : MinimalModel {
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<double> g) const {
    // Model: x ~ N(θ, 1); a target drawn from it gives −∂/∂θ log p = θ − x̂.
    (void)s;
    g[0] = theta[0] - (theta[0] + std::normal_distribution<double>(0.0, 1.0)(rng));
  }
};
struct SampledWithoutRng : MinimalModel {  // the caller must supply the RNG, for reproducibility
  void sampled_gradient(const Sample&, std::span<double> g) const { g[0] = 0; }
};

// HasLossScale skeleton: the loss is the mean of n squared-error terms, loss = (1/n)·Σᵢ ½(θ − xᵢ)², so c = 1/n.
struct MeanOfTermsModel : MinimalModel {
  struct Sample { std::vector<double> xs; };
  double loss(const Sample& s) const {
    double sum = 0;
    for (double x : s.xs) sum += 0.5 * (theta[0] - x) * (theta[0] - x);
    return sum / static_cast<double>(s.xs.size());
  }
  double gradient(const Sample& s, std::span<double> g) const {
    g[0] = 0;
    for (double x : s.xs) g[0] += (theta[0] - x) / static_cast<double>(s.xs.size());
    return loss(s);
  }
  double loss_scale(const Sample& s) const { return 1.0 / static_cast<double>(s.xs.size()); }
};
struct LossScaleWithoutSample : MeanOfTermsModel {  // the scale belongs to a sample, not to the model
  double loss_scale() const { return 1.0; }
  double loss_scale(const Sample&) const = delete;
};

struct Regularized : MinimalModel {
  double l2_regularization() const { return 1e-3; }
};
struct RegularizedNotConst : MinimalModel {  // must be callable on a const model
  double l2_regularization() { return 1e-3; }
};

struct Grouped : MinimalModel {
  std::vector<fu::ParameterGroup> parameter_groups() const { return {{"all", 0, 1}}; }
};
struct GroupedByName : MinimalModel {  // names alone do not say where the parameters are
  std::vector<std::string> parameter_groups() const { return {"all"}; }
};

// FisherEstimator skeleton: F = λI + (1/m) Σ ggᵀ kept as a diagonal.
struct SkeletonFisher {
  using Scalar = double;
  explicit SkeletonFisher(std::size_t d = 1, double damping = 1e-3) : diag(Eigen::VectorXd::Zero(d)), lambda(damping) {}
  std::size_t dimension() const { return static_cast<std::size_t>(diag.size()); }
  void add_gradient(Eigen::Ref<const Eigen::VectorXd> g) { diag += g.cwiseAbs2(); ++m; }
  void add_gradients(Eigen::Ref<const Eigen::MatrixXd> gs) { for (Eigen::Index j = 0; j < gs.cols(); ++j) add_gradient(gs.col(j)); }
  void finalize() {}
  void apply_power(double p, Eigen::Ref<const Eigen::VectorXd> v, Eigen::Ref<Eigen::VectorXd> out) const {
    out = ((diag / static_cast<double>(m)).array() + lambda).pow(p).matrix().cwiseProduct(v);
  }
  bool supports_power(double) const { return true; }
  double damping() const { return lambda; }
  void set_damping(double value) { lambda = value; }
  std::size_t memory_bytes() const { return sizeof(double) * static_cast<std::size_t>(diag.size()); }
  std::size_t num_gradients() const { return m; }
  void clear() { diag.setZero(); m = 0; }
  Eigen::VectorXd diag;
  double lambda;
  std::size_t m = 0;
};
struct FisherWithoutPowers : SkeletonFisher {  // hides apply_power: no F^p v, no estimator
  void apply_power(double, Eigen::Ref<const Eigen::VectorXd>, Eigen::Ref<Eigen::VectorXd>) const = delete;
};

// NewtonUnlearner skeleton: does nothing, but reports that honestly.
struct SkeletonUnlearner {
  std::string name() const { return "do_nothing"; }
  template <fu::DifferentiableModel M>
  fu::UnlearningReport unlearn(M&, std::span<const typename M::Sample>, std::span<const typename M::Sample>) const {
    fu::UnlearningReport r;
    r.method = name();
    return r;
  }
};
struct UnlearnerReturningBool {  // must return an UnlearningReport
  std::string name() const { return "bool"; }
  template <class M>
  bool unlearn(M&, std::span<const typename M::Sample>, std::span<const typename M::Sample>) const { return true; }
};

// LanguageModel skeleton: a unigram model over a 4-token vocabulary.
struct SkeletonLanguageModel {
  using Scalar = double;
  using Sample = std::vector<fu::Token>;
  std::vector<double> logits = {0.1, 0.2, 0.3, 0.4};
  std::size_t num_parameters() const { return logits.size(); }
  std::span<double> parameters() { return logits; }
  std::span<const double> parameters() const { return logits; }
  double loss(const Sample& tokens) const {
    std::vector<double> lp(4);
    next_token_log_probs({}, lp);
    double sum = 0;
    for (fu::Token t : tokens) sum -= lp[static_cast<std::size_t>(t)];
    return sum;
  }
  std::size_t vocab_size() const { return 4; }
  void next_token_log_probs(std::span<const fu::Token>, std::span<double> out) const {
    double z = 0;
    for (double l : logits) z += std::exp(l);
    for (std::size_t v = 0; v < 4; ++v) out[v] = logits[v] - std::log(z);
  }
};
struct SkeletonIncrementalLanguageModel : SkeletonLanguageModel {
  struct DecodeState { std::size_t consumed = 0; };
  DecodeState begin_decode(std::span<const fu::Token> context) const { return {context.size()}; }
  void advance(DecodeState& state, fu::Token) const { ++state.consumed; }
  void log_probs(const DecodeState&, std::span<double> out) const { next_token_log_probs({}, out); }
};
struct LanguageModelWithoutVocabulary : MinimalModel {
  void next_token_log_probs(std::span<const fu::Token>, std::span<double>) const {}
};
struct IncrementalWithMoveOnlyState : SkeletonLanguageModel {  // a tree walk must copy states
  struct DecodeState {
    DecodeState() = default;
    DecodeState(DecodeState&&) = default;
    DecodeState& operator=(DecodeState&&) = default;
    std::unique_ptr<int> cache;
  };
  DecodeState begin_decode(std::span<const fu::Token>) const { return {}; }
  void advance(DecodeState&, fu::Token) const {}
  void log_probs(const DecodeState&, std::span<double>) const {}
};

}  // namespace

static_assert(fu::BatchDifferentiableModel<Batched> && !fu::BatchDifferentiableModel<BatchedWrongSignature>);
static_assert(fu::TwiceDifferentiableModel<WithHessianVectorProduct> && fu::TwiceDifferentiableModel<WithDenseHessian>);
static_assert(!fu::HasDenseHessian<WithHessianVectorProduct> && !fu::HasHessianVectorProduct<WithDenseHessian>);
static_assert(fu::HasDenseHessian<HessianWithoutGradient> && !fu::TwiceDifferentiableModel<HessianWithoutGradient>);
static_assert(fu::SampledFisherModel<WithSampledGradient> && !fu::SampledFisherModel<SampledWithoutRng>);
static_assert(fu::RegularizedModel<Regularized> && !fu::RegularizedModel<RegularizedNotConst>);
static_assert(fu::HasLossScale<MeanOfTermsModel> && fu::DifferentiableModel<MeanOfTermsModel>);
static_assert(!fu::HasLossScale<LossScaleWithoutSample> && !fu::HasLossScale<MinimalModel>);
static_assert(!fu::HasLossScale<NoSampleType>);
static_assert(fu::HasParameterGroups<Grouped> && !fu::HasParameterGroups<GroupedByName>);
static_assert(fu::FisherEstimator<SkeletonFisher> && !fu::FisherEstimator<FisherWithoutPowers>);
static_assert(!fu::FisherEstimator<MinimalModel>);
static_assert(fu::NewtonUnlearner<SkeletonUnlearner, MinimalModel> && fu::NewtonUnlearner<SkeletonUnlearner, MlpF>);
static_assert(!fu::NewtonUnlearner<UnlearnerReturningBool, MinimalModel>);
static_assert(!fu::NewtonUnlearner<SkeletonUnlearner, NoGradient>);  // the model must be differentiable
static_assert(fu::LanguageModel<SkeletonLanguageModel> && !fu::IncrementalLanguageModel<SkeletonLanguageModel>);
static_assert(fu::IncrementalLanguageModel<SkeletonIncrementalLanguageModel>);
static_assert(!fu::LanguageModel<LanguageModelWithoutVocabulary>);
static_assert(fu::LanguageModel<IncrementalWithMoveOnlyState> && !fu::IncrementalLanguageModel<IncrementalWithMoveOnlyState>);

TEST_CASE("Concept skeletons: the documented skeletons compute what they claim") {
  SkeletonFisher fisher(2, 0.5);
  fisher.add_gradient(Eigen::Vector2d(1.0, 2.0));
  fisher.add_gradient(Eigen::Vector2d(3.0, 0.0));
  fisher.finalize();
  Eigen::VectorXd out(2);
  fisher.apply_power(-1.0, Eigen::Vector2d(1.0, 1.0), out);
  CHECK(out[0] == Approx(1.0 / (0.5 + 5.0)));
  CHECK(out[1] == Approx(1.0 / (0.5 + 2.0)));

  SkeletonLanguageModel lm;
  std::vector<double> lp(4);
  lm.next_token_log_probs({}, lp);
  double total = 0;
  for (double l : lp) total += std::exp(l);
  CHECK(total == Approx(1.0).epsilon(1e-14));

  MinimalModel model;
  model.theta[0] = 0.25;
  const std::vector<MinimalModel::Sample> forget = {{1.0}}, retain = {{2.0}};
  const auto report = SkeletonUnlearner{}.unlearn(model, std::span<const MinimalModel::Sample>(forget),
                                                  std::span<const MinimalModel::Sample>(retain));
  CHECK(report.method == "do_nothing");
  CHECK(model.theta[0] == 0.25);

  // loss_scale: collect_gradients divides each gradient by √c (here c = 1/4: the gradient doubles).
  MeanOfTermsModel mean;
  mean.theta[0] = 0.5;
  const MeanOfTermsModel::Sample four{{1.0, 2.0, 3.0, 4.0}};
  CHECK(mean.loss_scale(four) == 0.25);
  std::vector<double> g(1);
  mean.gradient(four, g);
  const auto collected = fu::collect_gradients(mean, std::span<const MeanOfTermsModel::Sample>(&four, 1));
  CHECK(collected(0, 0) == Approx(2.0 * g[0]).epsilon(1e-15));
}
