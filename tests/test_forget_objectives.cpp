// Forget objectives: values against hand computations, gradients against central finite differences
// (logistic regression, softmax regression, MLP), NPO's reference binding, bound and limits.
#include <catch2/catch.hpp>

#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"

#include <cmath>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using Logistic = fu::models::LogisticRegression<double>;
using Softmax = fu::models::SoftmaxRegression<double>;
using Mlp = fu::models::Mlp<double>;

static_assert(fu::ForgetObjective<fu::GradientAscentObjective, Logistic>);
static_assert(fu::ForgetObjective<fu::DescentObjective, Mlp>);
static_assert(fu::ForgetObjective<fu::NpoObjective, Softmax>);
static_assert(fu::ForgetObjective<fu::DescentObjective, fu::models::LogisticRegression<float>>);
static_assert(fu::ReferencedForgetObjective<fu::NpoObjective, Logistic>);
static_assert(!fu::ReferencedForgetObjective<fu::DescentObjective, Logistic>);
static_assert(!fu::ForgetObjective<int, Logistic>);

namespace {

template <class M>
void randomize(M& model, std::uint64_t seed, double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (auto& t : model.parameters()) t = normal(rng);
}

/// max_i |fd_i − g_i| / max(‖g‖∞, 1e-3) with central differences of step h on every coordinate.
template <class Objective, class M>
double finite_difference_error(const Objective& objective, M& model, std::span<const typename M::Sample> forget,
                               double h = 1e-5) {
  fu::Vector<double> g, scratch;
  objective.value_and_gradient(model, forget, g);
  auto theta = fu::as_eigen(model.parameters());
  double worst = 0.0;
  for (Eigen::Index i = 0; i < theta.size(); ++i) {
    const double saved = theta[i];
    theta[i] = saved + h;
    const double up = objective.value_and_gradient(model, forget, scratch);
    theta[i] = saved - h;
    const double down = objective.value_and_gradient(model, forget, scratch);
    theta[i] = saved;
    worst = std::max(worst, std::abs((up - down) / (2 * h) - g[i]));
  }
  return worst / std::max(g.lpNorm<Eigen::Infinity>(), 1e-3);
}

Mlp small_mlp() {
  fu::models::MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = {5};
  o.num_classes = 3;
  o.l2_regularization = 0.01;
  o.seed = 9;
  Mlp m(o);
  randomize(m, 10, 0.5);
  return m;
}

}  // namespace

TEST_CASE("ForgetObjective: descent and gradient ascent are plus and minus the mean loss, by hand on logistic "
          "regression") {
  const auto data = fu::models::make_logistic_problem<double>(12, 5, 3);
  Logistic model(5, 0.1);  // the L2 term must NOT enter a forget objective
  randomize(model, 4, 0.7);
  const auto theta = fu::as_eigen(std::span<const double>(model.parameters()));
  double mean = 0.0;
  Eigen::VectorXd grad = Eigen::VectorXd::Zero(5);
  for (const auto& s : data) {
    const double z = theta.dot(s.x);
    mean += (std::log(1.0 + std::exp(z)) - s.y * z) / 12.0;
    grad += (1.0 / (1.0 + std::exp(-z)) - s.y) * s.x / 12.0;
  }
  fu::Vector<double> g;
  CHECK(fu::DescentObjective{}.value_and_gradient(model, std::span(data), g) == Approx(mean).epsilon(1e-13));
  CHECK((g - grad).norm() / grad.norm() < 1e-13);
  CHECK(fu::GradientAscentObjective{}.value_and_gradient(model, std::span(data), g) == Approx(-mean).epsilon(1e-13));
  CHECK((g + grad).norm() / grad.norm() < 1e-13);
  CHECK(fu::DescentObjective{}.name() == "descent");
  CHECK(fu::GradientAscentObjective{}.name() == "gradient_ascent");
}

TEST_CASE("ForgetObjective: descent and ascent gradients match finite differences on an MLP") {
  Mlp model = small_mlp();
  const auto data = fu::models::make_softmax_problem<double>(7, 4, 3, 21);
  CHECK(finite_difference_error(fu::DescentObjective{}, model, std::span(data)) < 1e-7);
  CHECK(finite_difference_error(fu::GradientAscentObjective{}, model, std::span(data)) < 1e-7);
}

TEST_CASE("NpoObjective: at the reference it is (2/beta) log 2 with the ascent gradient times c") {
  const auto data = fu::models::make_softmax_problem<double>(9, 4, 3, 5);
  Softmax model(4, 3, 0.01);
  randomize(model, 6, 0.8);
  for (const double c : {1.0, 7.0}) {
    fu::NpoObjective npo(0.3, c);
    npo.bind(model, std::span(data));
    REQUIRE(npo.is_bound());
    REQUIRE(npo.reference_losses().size() == data.size());
    fu::Vector<double> g, ascent;
    CHECK(npo.value_and_gradient(model, std::span(data), g) == Approx(2.0 / 0.3 * std::log(2.0)).epsilon(1e-14));
    fu::GradientAscentObjective{}.value_and_gradient(model, std::span(data), ascent);
    CHECK((g - c * ascent).norm() / (c * ascent.norm()) < 1e-13);
  }
}

TEST_CASE("NpoObjective: away from the reference its value is the hand formula and its gradient matches finite "
          "differences") {
  const auto data = fu::models::make_softmax_problem<double>(8, 4, 3, 15);
  Softmax model(4, 3, 0.01);
  randomize(model, 16, 0.8);
  const double beta = 0.5, c = 3.0;
  fu::NpoObjective npo(beta, c);
  npo.bind(model, std::span(data));
  const std::vector<double> reference = npo.reference_losses();
  randomize(model, 17, 0.8);  // a different θ
  double expected = 0.0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const double ratio_beta = std::exp(beta * (-c) * (model.loss(data[i]) - reference[i]));  // (π/π_ref)^β
    expected += 2.0 / beta * std::log(1.0 + ratio_beta) / static_cast<double>(data.size());
  }
  fu::Vector<double> g;
  CHECK(npo.value_and_gradient(model, std::span(data), g) == Approx(expected).epsilon(1e-13));
  CHECK(finite_difference_error(npo, model, std::span(data)) < 1e-7);

  Mlp mlp = small_mlp();
  const auto mlp_data = fu::models::make_softmax_problem<double>(6, 4, 3, 25);
  fu::NpoObjective npo_mlp(0.2, 2.0);
  npo_mlp.bind(mlp, std::span(mlp_data));
  randomize(mlp, 26, 0.5);
  CHECK(finite_difference_error(npo_mlp, mlp, std::span(mlp_data)) < 1e-7);
}

TEST_CASE("NpoObjective: it is bounded below by 0, its pull fades as the forget loss rises, and small beta is "
          "gradient ascent") {
  // Two samples of the same class: moving along the ascent direction raises both losses without limit.
  auto data = fu::models::make_logistic_problem<double>(10, 4, 8);
  data.resize(2);
  data[0].y = data[1].y = 1.0;
  Logistic model(4, 0.0);
  randomize(model, 9, 0.5);
  fu::NpoObjective npo(1.0);
  npo.bind(model, std::span(data));
  // Push every forget loss up: flip θ towards the wrong labels, further and further.
  fu::Vector<double> ascent, g;
  fu::GradientAscentObjective{}.value_and_gradient(model, std::span(data), ascent);
  double previous_value = std::numeric_limits<double>::infinity(), previous_norm = std::numeric_limits<double>::infinity();
  const fu::Vector<double> theta0 = fu::as_eigen(std::span<const double>(model.parameters()));
  for (const double t : {0.0, 5.0, 20.0, 80.0}) {
    fu::as_eigen(model.parameters()) = theta0 - t * ascent;  // ascent = ∇(−mean loss): this raises the loss
    const double value = npo.value_and_gradient(model, std::span(data), g);
    CHECK(value >= 0.0);
    CHECK(value < previous_value);
    CHECK(g.norm() < previous_norm);
    previous_value = value;
    previous_norm = g.norm();
  }
  CHECK(previous_value < 1e-3);

  fu::NpoObjective tiny(1e-9);  // 2σ(βr) = 1 + O(βr) with |r| = O(1) here
  randomize(model, 11, 0.5);
  tiny.bind(model, std::span(data));
  randomize(model, 12, 0.5);
  tiny.value_and_gradient(model, std::span(data), g);
  fu::GradientAscentObjective{}.value_and_gradient(model, std::span(data), ascent);
  CHECK((g - ascent).norm() / ascent.norm() < 1e-7);
}

TEST_CASE("NpoObjective: bad use throws a typed error that says what to do") {
  const auto data = fu::models::make_logistic_problem<double>(6, 3, 1);
  Logistic model(3, 0.0);
  fu::Vector<double> g;
  CHECK_THROWS_AS(fu::NpoObjective(0.0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::NpoObjective(0.1, -1.0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::NpoObjective(std::nan("")), fu::InvalidArgument);
  fu::NpoObjective npo;
  CHECK_THROWS_AS(npo.value_and_gradient(model, std::span(data), g), fu::StateError);
  CHECK_THROWS_AS(npo.bind(model, std::span<const Logistic::Sample>()), fu::InvalidArgument);
  npo.bind(model, std::span(data));
  CHECK_THROWS_AS(npo.value_and_gradient(model, std::span(data).first(3), g), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::DescentObjective{}.value_and_gradient(model, std::span<const Logistic::Sample>(), g),
                  fu::InvalidArgument);
}
