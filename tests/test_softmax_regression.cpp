// SoftmaxRegression: loss, gradient, Hessian and sampled gradients against independent references.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <cmath>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::SoftmaxRegression;

namespace {

template <class Scalar>
void randomize(SoftmaxRegression<Scalar>& model, std::uint64_t seed, double scale = 0.7) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (Scalar& t : model.parameters()) t = static_cast<Scalar>(normal(rng));
}

template <class Scalar>
double tolerance() {
  return std::is_same_v<Scalar, float> ? 1e-4 : 1e-12;
}

// Σ_s (diag p − ppᵀ) ⊗ x xᵀ written entry by entry, in double, from the model's probabilities.
Eigen::MatrixXd kronecker_reference(const SoftmaxRegression<double>& model,
                                    const std::vector<SoftmaxRegression<double>::Sample>& data) {
  const auto D = static_cast<Eigen::Index>(model.num_features());
  const auto K = static_cast<Eigen::Index>(model.num_classes());
  Eigen::MatrixXd h = Eigen::MatrixXd::Zero(D * K, D * K);
  for (const auto& s : data) {
    const Eigen::VectorXd p = model.predict_probabilities(s.x);
    for (Eigen::Index k = 0; k < K; ++k)
      for (Eigen::Index l = 0; l < K; ++l)
        for (Eigen::Index i = 0; i < D; ++i)
          for (Eigen::Index j = 0; j < D; ++j)
            h(k * D + i, l * D + j) += ((k == l ? p[k] : 0.0) - p[k] * p[l]) * s.x[i] * s.x[j];
  }
  return h;
}

}  // namespace

TEMPLATE_TEST_CASE("SoftmaxRegression: the gradient passes check_gradient at random points", "", float, double) {
  const auto data = fu::models::make_softmax_problem<TestType>(6, 5, 4, 21);
  SoftmaxRegression<TestType> model(5, 4, TestType(0.1));
  randomize(model, 5);
  for (const auto& s : data) {
    const auto result = fu::testing::check_gradient(model, s);
    INFO(result);
    CHECK(result.passed);
    CHECK(result.coordinates_checked == 20);
  }
  const auto batch = fu::testing::check_batch_gradient(model, std::span<const typename SoftmaxRegression<TestType>::Sample>(data));
  INFO(batch);
  CHECK(batch.passed);
}

TEST_CASE("SoftmaxRegression: the loss equals a long-double log-sum-exp and stays finite for huge logits") {
  SoftmaxRegression<double> model(3, 3, 0.0);
  randomize(model, 7);
  const Eigen::Vector3d x(0.3, -1.2, 1.0);
  const auto W = model.weights();
  long double sum = 0;
  for (int k = 0; k < 3; ++k) sum += std::exp(static_cast<long double>(W.col(k).dot(x)));
  const double expected = static_cast<double>(std::log(sum) - static_cast<long double>(W.col(1).dot(x)));
  CHECK(model.loss({x, 1}) == Approx(expected).epsilon(1e-14));

  // Logits of order 1e3 overflow a naive exp; log-sum-exp must not.
  model.weights() *= 2000.0;
  const double big = model.loss({x, 1});
  const Eigen::Vector3d z = model.weights().transpose() * x;
  const double shift = z.maxCoeff();
  const double reference = shift + std::log((z.array() - shift).exp().sum()) - z[1];
  REQUIRE(std::isfinite(big));
  CHECK(big == Approx(reference).epsilon(1e-14));
  Eigen::VectorXd g(9);
  model.gradient({x, 1}, std::span<double>(g.data(), 9));
  CHECK(g.allFinite());
}

TEMPLATE_TEST_CASE("SoftmaxRegression: the batch gradient equals the sum of per-sample gradients", "", float, double) {
  const auto data = fu::models::make_softmax_problem<TestType>(40, 6, 3, 4);
  SoftmaxRegression<TestType> model(6, 3, TestType(0.01));
  randomize(model, 8);
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  fu::Vector<TestType> sum = fu::Vector<TestType>::Zero(d), g(d), batch(d);
  double loss_sum = 0;
  for (const auto& s : data) {
    loss_sum += model.gradient(s, std::span<TestType>(g.data(), g.size()));
    sum += g;
  }
  const double batch_loss = model.sum_loss_and_gradient(data, std::span<TestType>(batch.data(), batch.size()));
  CHECK((batch - sum).norm() / sum.norm() < tolerance<TestType>());
  CHECK(std::abs(batch_loss - loss_sum) / loss_sum < tolerance<TestType>());
}

TEST_CASE("SoftmaxRegression: the dense Hessian equals the Kronecker formula and Hessian-vector products") {
  const auto data = fu::models::make_softmax_problem<double>(25, 4, 3, 12);
  SoftmaxRegression<double> model(4, 3, 0.1);
  randomize(model, 2);
  Eigen::MatrixXd h;
  model.hessian(data, h);
  const Eigen::MatrixXd ref = kronecker_reference(model, data);
  CHECK((h - ref).norm() / ref.norm() < 1e-13);
  CHECK((h - h.transpose()).norm() == 0.0);

  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  Eigen::VectorXd v(12), hv(12);
  for (int t = 0; t < 3; ++t) {
    for (auto& c : v) c = normal(rng);
    model.hessian_vector_product(data, std::span<const double>(v.data(), 12), std::span<double>(hv.data(), 12));
    CHECK((hv - h * v).norm() / (h * v).norm() < 1e-13);
  }
}

TEMPLATE_TEST_CASE("SoftmaxRegression: Hessian-vector products equal finite differences of the gradient", "", float,
                   double) {
  const auto data = fu::models::make_softmax_problem<TestType>(30, 5, 4, 17);
  SoftmaxRegression<TestType> model(5, 4, TestType(0.1));
  randomize(model, 19);
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    fu::testing::GradientCheckOptions options;
    options.seed = seed;
    const auto result = fu::testing::check_hessian_vector_product(
        model, std::span<const typename SoftmaxRegression<TestType>::Sample>(data), options);
    INFO(result);
    CHECK(result.passed);
  }
}

TEST_CASE("SoftmaxRegression: the sampled-gradient second moment converges to the Gauss-Newton matrix") {
  // For one sample, g = x (p − e_ŷ)ᵀ with ŷ ~ p, so E[g gᵀ] = (diag p − ppᵀ) ⊗ x xᵀ: exactly the Hessian.
  const auto data = fu::models::make_softmax_problem<double>(1, 4, 3, 31);
  SoftmaxRegression<double> model(4, 3, 0.0);
  randomize(model, 6, 0.5);
  const Eigen::MatrixXd gauss_newton = kronecker_reference(model, data);
  std::mt19937_64 rng(99);
  Eigen::MatrixXd second_moment = Eigen::MatrixXd::Zero(12, 12);
  Eigen::VectorXd g(12);
  std::vector<double> errors;
  std::size_t draws = 0;
  for (std::size_t target : {400u, 40000u}) {
    for (; draws < target; ++draws) {
      model.sampled_gradient(data[0], rng, std::span<double>(g.data(), 12));
      second_moment.selfadjointView<Eigen::Lower>().rankUpdate(g);
    }
    const Eigen::MatrixXd estimate = Eigen::MatrixXd(second_moment.selfadjointView<Eigen::Lower>()) / double(draws);
    errors.push_back((estimate - gauss_newton).norm() / gauss_newton.norm());
  }
  INFO("relative error after 400 draws " << errors[0] << ", after 40000 draws " << errors[1]);
  // Monte-Carlo error ~ c/√N; measured 0.027 at N = 400 and 0.00096 at N = 40000 for this seed.
  CHECK(errors[1] < 0.01);
  CHECK(errors[1] < errors[0] / 3);

  const auto mean_zero = fu::testing::check_sampled_gradient(model, data[0]);
  INFO(mean_zero);
  CHECK(mean_zero.passed);
}

TEST_CASE("SoftmaxRegression: bad input throws InvalidArgument and leaves the output untouched") {
  SoftmaxRegression<double> model(4, 3, 0.1);
  randomize(model, 1);
  Eigen::VectorXd g = Eigen::VectorXd::Constant(12, 7.0);
  const SoftmaxRegression<double>::Sample wrong_size{Eigen::VectorXd::Ones(3), 0};
  const SoftmaxRegression<double>::Sample bad_label{Eigen::VectorXd::Ones(4), 3};
  const SoftmaxRegression<double>::Sample negative_label{Eigen::VectorXd::Ones(4), -1};
  CHECK_THROWS_AS(model.loss(wrong_size), fu::InvalidArgument);
  CHECK_THROWS_WITH(model.loss(bad_label), Catch::Contains("outside [0, 3)"));
  CHECK_THROWS_AS(model.gradient(negative_label, std::span<double>(g.data(), 12)), fu::InvalidArgument);
  CHECK_THROWS_AS(model.gradient({Eigen::VectorXd::Ones(4), 0}, std::span<double>(g.data(), 11)), fu::InvalidArgument);
  const std::vector<SoftmaxRegression<double>::Sample> batch = {{Eigen::VectorXd::Ones(4), 0}, bad_label};
  CHECK_THROWS_AS(model.sum_loss_and_gradient(batch, std::span<double>(g.data(), 12)), fu::InvalidArgument);
  CHECK(g == Eigen::VectorXd::Constant(12, 7.0));
  CHECK_THROWS_AS(SoftmaxRegression<double>(0, 3, 0.1), fu::InvalidArgument);
  CHECK_THROWS_AS(SoftmaxRegression<double>(4, 1, 0.1), fu::InvalidArgument);
  CHECK_THROWS_AS(SoftmaxRegression<double>(4, 3, -0.1), fu::InvalidArgument);
  CHECK_THROWS_AS(SoftmaxRegression<double>(4, 3, std::nan("")), fu::InvalidArgument);
}

TEST_CASE("make_softmax_problem: is reproducible from its seed and uses every class") {
  const auto a = fu::models::make_softmax_problem<double>(300, 5, 4, 77);
  const auto b = fu::models::make_softmax_problem<double>(300, 5, 4, 77);
  const auto c = fu::models::make_softmax_problem<double>(300, 5, 4, 78);
  std::vector<int> counts(4, 0);
  bool same = true, differs = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    same = same && a[i].x == b[i].x && a[i].label == b[i].label;
    differs = differs || a[i].x != c[i].x;
    REQUIRE(a[i].label >= 0);
    REQUIRE(a[i].label < 4);
    ++counts[static_cast<std::size_t>(a[i].label)];
    CHECK(a[i].x[4] == 1.0);
  }
  CHECK(same);
  CHECK(differs);
  for (int n : counts) CHECK(n >= 5);
}

TEST_CASE("SoftmaxRegression: gradient descent on make_softmax_problem beats chance by a wide margin") {
  const auto train = fu::models::make_softmax_problem<double>(400, 6, 3, 5, 6.0);
  SoftmaxRegression<double> model(6, 3, 1e-3);
  Eigen::VectorXd g(18);
  for (int it = 0; it < 300; ++it) {
    model.sum_loss_and_gradient(train, std::span<double>(g.data(), 18));
    g /= double(train.size());
    g += model.l2_regularization() * fu::as_eigen(std::span<const double>(model.parameters()));
    fu::as_eigen(model.parameters()) -= 1.0 * g;
  }
  int correct = 0;
  for (const auto& s : train) correct += model.predict(s.x) == s.label;
  // The teacher itself is noisy (labels are sampled), so perfect accuracy is impossible; chance is 1/3.
  CHECK(correct > 0.7 * double(train.size()));
}
