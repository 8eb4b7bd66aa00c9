// testing::check_gradient and friends: they pass correct models, catch deliberately wrong derivatives
// (naming the wrong coordinate and the likely cause), and restore the parameters bit for bit.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

namespace fu = fisher_unlearn;
namespace ft = fisher_unlearn::testing;

namespace {

enum class Fault { none, shift_one, flip_sign, double_one, zero_one, nan_one, include_regulariser, observed_label };

// Wraps a reference model and breaks one thing on purpose.
template <class Inner>
struct Faulty {
  using Scalar = typename Inner::Scalar;
  using Sample = typename Inner::Sample;
  Inner inner;
  Fault fault = Fault::none;
  std::size_t coordinate = 0;

  std::size_t num_parameters() const { return inner.num_parameters(); }
  std::span<Scalar> parameters() { return inner.parameters(); }
  std::span<const Scalar> parameters() const { return inner.parameters(); }
  Scalar loss(const Sample& s) const { return inner.loss(s); }
  auto parameter_groups() const requires fu::HasParameterGroups<Inner> { return inner.parameter_groups(); }

  Scalar gradient(const Sample& s, std::span<Scalar> g) const {
    const Scalar value = inner.gradient(s, g);
    corrupt(g);
    return value;
  }
  void hessian_vector_product(std::span<const Sample> batch, std::span<const Scalar> v, std::span<Scalar> out) const
      requires fu::HasHessianVectorProduct<Inner> {
    inner.hessian_vector_product(batch, v, out);
    corrupt(out);
  }
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<Scalar> g) const {
    if (fault == Fault::observed_label) {
      inner.gradient(s, g);  // the classic mistake: the empirical gradient instead of a sampled target's
    } else {
      inner.sampled_gradient(s, rng, g);
    }
  }

  void corrupt(std::span<Scalar> g) const {
    Scalar& c = g[coordinate];
    switch (fault) {
      case Fault::shift_one: c += Scalar(0.05) + Scalar(0.1) * std::abs(c); break;
      case Fault::flip_sign: c = -c; break;
      case Fault::double_one: c *= 2; break;
      case Fault::zero_one: c = 0; break;
      case Fault::nan_one: c = std::numeric_limits<Scalar>::quiet_NaN(); break;
      case Fault::include_regulariser:
        for (std::size_t i = 0; i < g.size(); ++i) g[i] += Scalar(0.5) * inner.parameters()[i];
        break;
      default: break;
    }
  }
};

// Throws from loss() after `budget` calls: the check must restore the parameters on the way out.
struct ThrowingModel {
  using Scalar = double;
  using Sample = double;
  std::vector<double> theta = {0.3, -1.7, 2.2, 0.1};
  mutable int budget = 5;
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample& s) const {
    if (--budget < 0) throw std::runtime_error("model failure");
    double sum = 0;
    for (double t : theta) sum += std::sin(t * s);
    return sum;
  }
  double gradient(const Sample& s, std::span<double> g) const {
    for (std::size_t i = 0; i < theta.size(); ++i) g[i] = s * std::cos(theta[i] * s);
    double sum = 0;
    for (double t : theta) sum += std::sin(t * s);
    return sum;
  }
};

// Σ c_i θ_i³: the central difference has truncation error exactly c_i h² per coordinate.
struct Cubic {
  using Scalar = double;
  struct Sample {};
  std::vector<double> theta = {0.5, -1.25, 2.0};
  std::vector<double> c = {1.0, 0.5, -2.0};
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample&) const {
    double sum = 0;
    for (std::size_t i = 0; i < 3; ++i) sum += c[i] * theta[i] * theta[i] * theta[i];
    return sum;
  }
  double gradient(const Sample& s, std::span<double> g) const {
    for (std::size_t i = 0; i < 3; ++i) g[i] = 3 * c[i] * theta[i] * theta[i];
    return loss(s);
  }
};

using Softmax = fu::models::SoftmaxRegression<double>;

Faulty<Softmax> faulty_softmax(Fault fault, std::size_t coordinate) {
  Faulty<Softmax> m{Softmax(5, 3, 0.1), fault, coordinate};
  std::mt19937_64 rng(12);
  std::normal_distribution<double> normal(0.0, 0.8);
  for (double& t : m.parameters()) t = normal(rng);
  return m;
}

template <class M>
std::vector<unsigned char> bytes_of(const M& model) {
  const auto p = model.parameters();
  std::vector<unsigned char> out(p.size_bytes());
  std::memcpy(out.data(), p.data(), p.size_bytes());
  return out;
}

}  // namespace

TEST_CASE("check_gradient: passes a correct model and finds the central-difference truncation error") {
  Cubic model;
  ft::GradientCheckOptions options;
  options.step = 1e-3;
  options.relative_tolerance = 1e-4;
  const auto r = ft::check_gradient(model, Cubic::Sample{}, options);
  INFO(r);
  CHECK(r.passed);
  CHECK(r.coordinates_checked == 3);
  // The largest error is |c_i| h_i², h_i = step·max(|θ_i|, 1): coordinate 2 (c = −2, θ = 2, h = 2e-3).
  const double expected_abs = 2.0 * (1e-3 * 2.0) * (1e-3 * 2.0);
  CHECK(r.max_absolute_error == Approx(expected_abs).epsilon(1e-4));
}

TEST_CASE("check_gradient: catches a perturbed coordinate and names it") {
  const auto data = fu::models::make_softmax_problem<double>(3, 5, 3, 2);
  auto model = faulty_softmax(Fault::shift_one, 7);
  const auto r = ft::check_gradient(model, data[0]);
  INFO(r);
  CHECK_FALSE(r.passed);
  CHECK_FALSE(static_cast<bool>(r));
  CHECK(r.coordinates_failed == 1);
  CHECK(r.worst.index == 7);
  CHECK(r.worst.location == "class1[2]");  // D = 5: coordinate 7 is class 1, feature 2
  REQUIRE(r.failures.size() == 1);
  CHECK(r.failures[0].index == 7);
  CHECK_THAT(r.message, Catch::Contains("check FAILED") && Catch::Contains("class1[2] (coordinate 7)"));
  std::ostringstream os;
  os << r;
  CHECK(os.str() == r.message);
}

TEST_CASE("check_gradient: diagnoses a flipped sign, a factor of two, a missing entry and NaN") {
  const auto data = fu::models::make_softmax_problem<double>(2, 5, 3, 3);
  struct Case {
    Fault fault;
    const char* phrase;
  };
  for (const Case& c : {Case{Fault::flip_sign, "wrong sign"}, Case{Fault::double_one, "factor of 2"},
                        Case{Fault::zero_one, "left this coordinate at 0"}, Case{Fault::nan_one, "NaN or Inf"}}) {
    auto model = faulty_softmax(c.fault, 11);
    const auto r = ft::check_gradient(model, data[1]);
    INFO(r);
    CHECK_FALSE(r.passed);
    CHECK(r.worst.index == 11);
    CHECK_THAT(r.message, Catch::Contains(c.phrase));
  }
}

TEST_CASE("check_gradient: a gradient that includes the regulariser fails everywhere and says why") {
  const auto data = fu::models::make_softmax_problem<double>(2, 5, 3, 4);
  auto model = faulty_softmax(Fault::include_regulariser, 0);
  const auto r = ft::check_gradient(model, data[0]);
  INFO(r);
  CHECK_FALSE(r.passed);
  CHECK(r.coordinates_failed == r.coordinates_checked);
  CHECK_THAT(r.message, Catch::Contains("EXCLUDE the L2 regulariser"));
}

TEST_CASE("check_gradient: names the parameter group of an Mlp's wrong coordinate") {
  fu::models::MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = {3};
  o.num_classes = 2;
  Faulty<fu::models::Mlp<double>> model{fu::models::Mlp<double>(o), Fault::shift_one, 12 + 3 + 6 + 1};
  std::mt19937_64 rng(2);
  std::normal_distribution<double> normal(0.0, 0.5);
  for (double& t : model.parameters()) t = normal(rng);
  const auto data = fu::models::make_softmax_problem<double>(1, 4, 2, 5);
  const auto r = ft::check_gradient(model, data[0]);
  INFO(r);
  CHECK_FALSE(r.passed);
  CHECK(r.worst.location == "layer1.bias[1]");  // layer0: 12 + 3, layer1.weight: 6
}

TEST_CASE("check_gradient: restores the parameters bit for bit, also when the model throws") {
  const auto data = fu::models::make_softmax_problem<double>(2, 5, 3, 6);
  for (Fault fault : {Fault::none, Fault::shift_one}) {
    auto model = faulty_softmax(fault, 3);
    const auto before = bytes_of(model);
    ft::check_gradient(model, data[0]);
    CHECK(bytes_of(model) == before);
  }
  ThrowingModel throwing;
  const auto before = bytes_of(throwing);
  CHECK_THROWS_WITH(ft::check_gradient(throwing, 0.7), "model failure");
  CHECK(throwing.budget < 0);  // it did throw part-way through the finite differences
  CHECK(bytes_of(throwing) == before);
  throwing.budget = 1000;
  CHECK(ft::check_gradient(throwing, 0.7).passed);
  CHECK(bytes_of(throwing) == before);
}

TEST_CASE("check_gradient: a seeded coordinate subset is reproducible and still catches a wrong entry") {
  const auto data = fu::models::make_softmax_problem<double>(2, 5, 3, 7);
  auto model = faulty_softmax(Fault::none, 0);
  ft::GradientCheckOptions options;
  options.max_coordinates = 6;
  options.seed = 5;
  const auto a = ft::check_gradient(model, data[0], options);
  const auto b = ft::check_gradient(model, data[0], options);
  CHECK(a.passed);
  CHECK(a.coordinates_checked == 6);
  CHECK(a.max_relative_error == b.max_relative_error);
  CHECK(a.worst.index == b.worst.index);
  // Find a coordinate the subset contains by breaking each candidate in turn: the subset must catch
  // exactly those it checks, and there must be 6 of them.
  int caught = 0;
  for (std::size_t i = 0; i < 15; ++i) {
    model.fault = Fault::shift_one;
    model.coordinate = i;
    const auto r = ft::check_gradient(model, data[0], options);
    if (!r.passed) {
      ++caught;
      CHECK(r.worst.index == i);
    }
  }
  CHECK(caught == 6);
}

TEST_CASE("check_hessian_vector_product: catches a wrong Hessian-vector product and accepts a dense hessian()") {
  const auto data = fu::models::make_softmax_problem<double>(10, 5, 3, 8);
  auto model = faulty_softmax(Fault::shift_one, 4);
  const auto bad = ft::check_hessian_vector_product(model, std::span<const Softmax::Sample>(data));
  INFO(bad);
  CHECK_FALSE(bad.passed);
  CHECK(bad.worst.index == 4);
  CHECK_THAT(bad.message, Catch::Contains("hessian_vector_product()"));
  model.fault = Fault::none;
  CHECK(ft::check_hessian_vector_product(model, std::span<const Softmax::Sample>(data)).passed);

  // LogisticRegression has both; a wrapper exposing only hessian() takes the dense path.
  struct DenseOnly {
    using Scalar = double;
    using Sample = fu::models::LogisticRegression<double>::Sample;
    fu::models::LogisticRegression<double> inner{6, 0.1};
    std::size_t num_parameters() const { return inner.num_parameters(); }
    std::span<double> parameters() { return inner.parameters(); }
    std::span<const double> parameters() const { return inner.parameters(); }
    double loss(const Sample& s) const { return inner.loss(s); }
    double gradient(const Sample& s, std::span<double> g) const { return inner.gradient(s, g); }
    void hessian(std::span<const Sample> batch, Eigen::MatrixXd& h) const { inner.hessian(batch, h); }
  };
  static_assert(fu::TwiceDifferentiableModel<DenseOnly> && !fu::HasHessianVectorProduct<DenseOnly>);
  DenseOnly dense;
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal;
  for (double& t : dense.parameters()) t = normal(rng);
  const auto logistic = fu::models::make_logistic_problem<double>(20, 6, 9);
  const auto r = ft::check_hessian_vector_product(dense, std::span<const DenseOnly::Sample>(logistic));
  INFO(r);
  CHECK(r.passed);
  CHECK(r.checked == "hessian() * v");
}

TEST_CASE("check_batch_gradient: checks sum_loss_and_gradient against the summed loss") {
  const auto data = fu::models::make_softmax_problem<double>(30, 5, 3, 10);
  auto model = faulty_softmax(Fault::none, 0);
  const auto good = ft::check_batch_gradient(model.inner, std::span<const Softmax::Sample>(data));
  INFO(good);
  CHECK(good.passed);
  CHECK(good.checked == "sum_loss_and_gradient()");
  model.fault = Fault::flip_sign;
  model.coordinate = 9;
  const auto bad = ft::check_batch_gradient(model, std::span<const Softmax::Sample>(data));
  INFO(bad);
  CHECK_FALSE(bad.passed);
  CHECK(bad.checked == "the sum of gradient()");
  CHECK(bad.worst.index == 9);
  CHECK_THROWS_AS(ft::check_batch_gradient(model, std::span<const Softmax::Sample>()), fu::InvalidArgument);
}

TEST_CASE("check_sampled_gradient: passes model-drawn targets and catches the observed label's gradient") {
  const auto data = fu::models::make_softmax_problem<double>(1, 5, 3, 11);
  auto model = faulty_softmax(Fault::none, 0);
  const auto good = ft::check_sampled_gradient(model, data[0]);
  INFO(good);
  CHECK(good.passed);
  model.fault = Fault::observed_label;
  const auto bad = ft::check_sampled_gradient(model, data[0]);
  INFO(bad);
  CHECK_FALSE(bad.passed);
  CHECK_THAT(bad.message, Catch::Contains("observed label"));
  CHECK_THROWS_AS(ft::check_sampled_gradient(model, data[0], 1), fu::InvalidArgument);
}

TEST_CASE("check_gradient: float models pass with the float defaults and wrong entries are still caught") {
  fu::models::SoftmaxRegression<float> model(5, 3, 0.1f);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.8f);
  for (float& t : model.parameters()) t = normal(rng);
  const auto data = fu::models::make_softmax_problem<float>(4, 5, 3, 12);
  for (const auto& s : data) {
    const auto r = ft::check_gradient(model, s);
    INFO(r);
    CHECK(r.passed);
    CHECK(r.relative_tolerance == 2e-2);
  }
  Faulty<fu::models::SoftmaxRegression<float>> faulty{model, Fault::shift_one, 2};
  const auto r = ft::check_gradient(faulty, data[0]);
  INFO(r);
  CHECK_FALSE(r.passed);
  CHECK(r.worst.index == 2);
  CHECK_THAT(r.message, Catch::Contains("Scalar is float"));
}

TEST_CASE("check_gradient: impossible options and broken parameters throw typed exceptions") {
  const auto data = fu::models::make_softmax_problem<double>(1, 5, 3, 13);
  auto model = faulty_softmax(Fault::none, 0);
  for (double step : {0.0, -1e-6, 1.0, std::numeric_limits<double>::infinity()}) {
    ft::GradientCheckOptions o;
    o.step = step;
    CHECK_THROWS_AS(ft::check_gradient(model, data[0], o), fu::InvalidArgument);
  }
  ft::GradientCheckOptions o;
  o.relative_tolerance = -1;
  CHECK_THROWS_AS(ft::check_gradient(model, data[0], o), fu::InvalidArgument);
  o = {};
  o.absolute_tolerance = std::nan("");
  CHECK_THROWS_AS(ft::check_gradient(model, data[0], o), fu::InvalidArgument);
  model.parameters()[1] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(ft::check_gradient(model, data[0]), fu::NonFiniteError);

  struct LyingSize {  // parameters() and num_parameters() disagree
    using Scalar = double;
    using Sample = double;
    std::vector<double> theta = {1.0, 2.0};
    std::size_t num_parameters() const { return 3; }
    std::span<double> parameters() { return theta; }
    std::span<const double> parameters() const { return theta; }
    double loss(const Sample&) const { return 0; }
    double gradient(const Sample&, std::span<double>) const { return 0; }
  };
  LyingSize lying;
  CHECK_THROWS_WITH(ft::check_gradient(lying, 1.0), Catch::Contains("num_parameters() says 3"));
}
