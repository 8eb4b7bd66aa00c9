// Concepts, tested both ways: the reference models satisfy them, deliberately broken types do not.
#include <catch2/catch.hpp>

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"

#include <span>
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
