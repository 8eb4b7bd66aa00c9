// Mlp: forward pass, backprop gradient, R-operator Hessian-vector products and sampled gradients against
// independent references (hand-written forward pass, finite differences, SoftmaxRegression, Gauss–Newton).
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <Eigen/Eigenvalues>

#include <cmath>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Activation;
using fu::models::Mlp;
using fu::models::MlpOptions;

namespace {

MlpOptions small_options(Activation activation, double l2 = 0.01) {
  MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = {5, 3};
  o.num_classes = 3;
  o.activation = activation;
  o.l2_regularization = l2;
  o.seed = 42;
  return o;
}

// Random biases too (the initialiser leaves them at zero, which would hide bias bugs).
template <class Scalar>
void randomize(Mlp<Scalar>& model, std::uint64_t seed, double scale = 0.6) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (Scalar& t : model.parameters()) t = static_cast<Scalar>(normal(rng));
}

template <class Scalar>
std::vector<typename Mlp<Scalar>::Sample> data_for(std::size_t n, std::uint64_t seed) {
  return fu::models::make_softmax_problem<Scalar>(n, 4, 3, seed);
}

// The forward pass written out with loops and std::tanh / std::erf, independent of the model's code.
Eigen::VectorXd reference_logits(const Mlp<double>& model, const Eigen::VectorXd& x) {
  Eigen::VectorXd a = x;
  for (std::size_t i = 0; i < model.num_layers(); ++i) {
    const auto W = model.weight(i);
    const auto b = model.bias(i);
    Eigen::VectorXd z(W.rows());
    for (Eigen::Index r = 0; r < W.rows(); ++r) {
      double sum = b[r];
      for (Eigen::Index c = 0; c < W.cols(); ++c) sum += W(r, c) * a[c];
      z[r] = sum;
    }
    if (i + 1 == model.num_layers()) return z;
    for (Eigen::Index r = 0; r < z.size(); ++r)
      z[r] = model.activation() == Activation::tanh ? std::tanh(z[r])
                                                   : 0.5 * z[r] * (1.0 + std::erf(z[r] / std::sqrt(2.0)));
    a = z;
  }
  return a;
}

// Dense Hessian from d Hessian-vector products with unit vectors.
template <class Scalar>
fu::Matrix<Scalar> hessian_from_products(const Mlp<Scalar>& model, std::span<const typename Mlp<Scalar>::Sample> data) {
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  fu::Matrix<Scalar> h(d, d);
  fu::Vector<Scalar> e = fu::Vector<Scalar>::Zero(d), col(d);
  for (Eigen::Index j = 0; j < d; ++j) {
    e[j] = 1;
    model.hessian_vector_product(data, std::span<const Scalar>(e.data(), e.size()), std::span<Scalar>(col.data(), col.size()));
    h.col(j) = col;
    e[j] = 0;
  }
  return h;
}

}  // namespace

TEST_CASE("Mlp: the forward pass equals a hand-written loop for tanh and GELU") {
  const auto data = data_for<double>(10, 3);
  for (Activation act : {Activation::tanh, Activation::gelu}) {
    Mlp<double> model(small_options(act));
    randomize(model, 9);
    for (const auto& s : data) {
      const Eigen::VectorXd ref = reference_logits(model, s.x);
      CHECK((model.logits(s.x) - ref).norm() / ref.norm() < 1e-14);
      const double shift = ref.maxCoeff();
      const double loss = shift + std::log((ref.array() - shift).exp().sum()) - ref[s.label];
      CHECK(model.loss(s) == Approx(loss).epsilon(1e-13));
    }
  }
}

TEMPLATE_TEST_CASE("Mlp: the backprop gradient passes check_gradient (tanh and GELU)", "", float, double) {
  const auto data = data_for<TestType>(5, 8);
  for (Activation act : {Activation::tanh, Activation::gelu}) {
    Mlp<TestType> model(small_options(act));
    randomize(model, 13);
    for (const auto& s : data) {
      const auto result = fu::testing::check_gradient(model, s);
      INFO(result);
      CHECK(result.passed);
      CHECK(result.coordinates_checked == model.num_parameters());
    }
  }
}

TEMPLATE_TEST_CASE("Mlp: the batch gradient equals the sum of per-sample gradients across chunks", "", float, double) {
  // 300 samples: more than one 256-sample chunk inside sum_loss_and_gradient.
  const auto data = data_for<TestType>(300, 14);
  Mlp<TestType> model(small_options(Activation::gelu));
  randomize(model, 15);
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  fu::Vector<TestType> sum = fu::Vector<TestType>::Zero(d), g(d), batch(d);
  double loss_sum = 0;
  for (const auto& s : data) {
    loss_sum += model.gradient(s, std::span<TestType>(g.data(), g.size()));
    sum += g;
  }
  const double batch_loss = model.sum_loss_and_gradient(data, std::span<TestType>(batch.data(), batch.size()));
  const double tol = std::is_same_v<TestType, float> ? 1e-4 : 1e-12;
  CHECK((batch - sum).norm() / sum.norm() < tol);
  CHECK(std::abs(batch_loss - loss_sum) / loss_sum < tol);
}

TEMPLATE_TEST_CASE("Mlp: Hessian-vector products equal finite differences of the gradient", "", float, double) {
  const auto data = data_for<TestType>(20, 21);
  for (Activation act : {Activation::tanh, Activation::gelu}) {
    Mlp<TestType> model(small_options(act));
    randomize(model, 22);
    for (std::uint64_t seed : {1u, 2u}) {
      fu::testing::GradientCheckOptions options;
      options.seed = seed;
      const auto result = fu::testing::check_hessian_vector_product(
          model, std::span<const typename Mlp<TestType>::Sample>(data), options);
      INFO(result);
      CHECK(result.passed);
    }
  }
}

TEST_CASE("Mlp: the Hessian from products is symmetric and equals the finite-difference Hessian") {
  const auto data = data_for<double>(8, 23);
  for (Activation act : {Activation::tanh, Activation::gelu}) {
    Mlp<double> model(small_options(act));
    randomize(model, 24);
    const auto d = static_cast<Eigen::Index>(model.num_parameters());
    const Eigen::MatrixXd h = hessian_from_products<double>(model, data);
    CHECK((h - h.transpose()).norm() / h.norm() < 1e-13);

    // Column j by central differences of the batch gradient along e_j.
    Eigen::MatrixXd fd(d, d);
    Eigen::VectorXd gp(d), gm(d);
    auto theta = fu::as_eigen(model.parameters());
    const double step = 1e-5;
    for (Eigen::Index j = 0; j < d; ++j) {
      const double original = theta[j];
      theta[j] = original + step;
      model.sum_loss_and_gradient(data, std::span<double>(gp.data(), gp.size()));
      theta[j] = original - step;
      model.sum_loss_and_gradient(data, std::span<double>(gm.data(), gm.size()));
      theta[j] = original;
      fd.col(j) = (gp - gm) / (2 * step);
    }
    CHECK((h - fd).norm() / fd.norm() < 1e-7);
    // A non-convex model: this Hessian is indefinite, so it is not a Gauss–Newton matrix in disguise.
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(h);
    CHECK(eig.eigenvalues().minCoeff() < 0);
  }
}

TEST_CASE("Mlp: with no hidden layer it equals SoftmaxRegression with a bias feature") {
  MlpOptions o;
  o.num_features = 3;
  o.num_classes = 4;
  o.seed = 5;
  Mlp<double> mlp(o);
  randomize(mlp, 6);
  REQUIRE(mlp.num_parameters() == 16);
  fu::models::SoftmaxRegression<double> linear(4, 4, 0.0);
  // SoftmaxRegression's W is 4×4 (features + bias) × classes = [W₀ᵀ; b₀ᵀ].
  linear.weights().topRows(3) = mlp.weight(0).transpose();
  linear.weights().row(3) = mlp.bias(0).transpose();
  // The same parameter vector expressed in each model's layout.
  auto to_linear = [&](const Eigen::VectorXd& mlp_vec) {
    const Eigen::Map<const Eigen::MatrixXd> W(mlp_vec.data(), 4, 3);
    Eigen::MatrixXd out(4, 4);
    out.topRows(3) = W.transpose();
    out.row(3) = mlp_vec.tail(4).transpose();
    return Eigen::VectorXd(Eigen::Map<Eigen::VectorXd>(out.data(), 16));
  };
  const auto data = fu::models::make_softmax_problem<double>(12, 4, 4, 8);
  std::vector<Mlp<double>::Sample> mlp_data;
  for (const auto& s : data) mlp_data.push_back({s.x.head(3), s.label});
  Eigen::VectorXd g_mlp(16), g_lin(16), v(16), hv_mlp(16), hv_lin(16);
  for (std::size_t i = 0; i < data.size(); ++i) {
    CHECK(mlp.loss(mlp_data[i]) == Approx(linear.loss(data[i])).epsilon(1e-13));
    mlp.gradient(mlp_data[i], std::span<double>(g_mlp.data(), 16));
    linear.gradient(data[i], std::span<double>(g_lin.data(), 16));
    CHECK((to_linear(g_mlp) - g_lin).norm() / g_lin.norm() < 1e-13);
  }
  std::mt19937_64 rng(4);
  std::normal_distribution<double> normal;
  for (auto& c : v) c = normal(rng);
  mlp.hessian_vector_product(mlp_data, std::span<const double>(v.data(), 16), std::span<double>(hv_mlp.data(), 16));
  linear.hessian_vector_product(data, std::span<const double>(to_linear(v).data(), 16),
                                std::span<double>(hv_lin.data(), 16));
  CHECK((to_linear(hv_mlp) - hv_lin).norm() / hv_lin.norm() < 1e-13);
}

TEST_CASE("Mlp: the sampled-gradient second moment converges to the Gauss-Newton matrix") {
  // E[g gᵀ] = Jᵀ (diag p − ppᵀ) J with J = ∂logits/∂θ; J here by central differences of logits().
  const auto data = data_for<double>(1, 30);
  Mlp<double> model(small_options(Activation::tanh));
  randomize(model, 31);
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::MatrixXd J(3, d);
  auto theta = fu::as_eigen(model.parameters());
  for (Eigen::Index j = 0; j < d; ++j) {
    const double original = theta[j];
    theta[j] = original + 1e-6;
    const Eigen::VectorXd plus = model.logits(data[0].x);
    theta[j] = original - 1e-6;
    const Eigen::VectorXd minus = model.logits(data[0].x);
    theta[j] = original;
    J.col(j) = (plus - minus) / 2e-6;
  }
  const Eigen::VectorXd p = model.predict_probabilities(data[0].x);
  Eigen::MatrixXd A = -p * p.transpose();
  A.diagonal() += p;
  const Eigen::MatrixXd gauss_newton = J.transpose() * A * J;

  std::mt19937_64 rng(7);
  Eigen::MatrixXd second_moment = Eigen::MatrixXd::Zero(d, d);
  Eigen::VectorXd g(d);
  std::vector<double> errors;
  std::size_t draws = 0;
  for (std::size_t target : {400u, 40000u}) {
    for (; draws < target; ++draws) {
      model.sampled_gradient(data[0], rng, std::span<double>(g.data(), g.size()));
      second_moment.selfadjointView<Eigen::Lower>().rankUpdate(g);
    }
    const Eigen::MatrixXd estimate = Eigen::MatrixXd(second_moment.selfadjointView<Eigen::Lower>()) / double(draws);
    errors.push_back((estimate - gauss_newton).norm() / gauss_newton.norm());
  }
  INFO("relative error after 400 draws " << errors[0] << ", after 40000 draws " << errors[1]);
  CHECK(errors[1] < 0.01);
  CHECK(errors[1] < errors[0] / 3);

  const auto mean_zero = fu::testing::check_sampled_gradient(model, data[0]);
  INFO(mean_zero);
  CHECK(mean_zero.passed);
}

TEST_CASE("Mlp: parameter groups name every layer and tile the parameter vector in order") {
  Mlp<double> model(small_options(Activation::tanh));
  const auto groups = model.parameter_groups();
  const std::vector<std::string> names = {"layer0.weight", "layer0.bias", "layer1.weight",
                                          "layer1.bias",   "layer2.weight", "layer2.bias"};
  const std::vector<std::size_t> sizes = {20, 5, 15, 3, 9, 3};
  REQUIRE(groups.size() == names.size());
  std::size_t offset = 0;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    CHECK(groups[i].name == names[i]);
    CHECK(groups[i].offset == offset);
    CHECK(groups[i].size == sizes[i]);
    offset += groups[i].size;
  }
  CHECK(offset == model.num_parameters());
  // The views alias the parameter vector.
  model.bias(1)[2] = 4.5;
  CHECK(model.parameters()[groups[3].offset + 2] == 4.5);
  model.weight(2)(1, 2) = -3.0;  // column-major 3×3: entry (1, 2) is element 1 + 2·3
  CHECK(model.parameters()[groups[4].offset + 7] == -3.0);
}

TEST_CASE("Mlp: initialisation is seeded and scaled by fan-in") {
  MlpOptions o;
  o.num_features = 200;
  o.hidden_sizes = {100};
  o.num_classes = 2;
  o.seed = 1;
  const Mlp<double> a(o), b(o);
  o.seed = 2;
  const Mlp<double> c(o);
  CHECK(fu::as_eigen(a.parameters()) == fu::as_eigen(b.parameters()));
  CHECK(fu::as_eigen(a.parameters()) != fu::as_eigen(c.parameters()));
  const auto w0 = a.weight(0);
  const double sd = std::sqrt(w0.squaredNorm() / double(w0.size()));
  CHECK(sd == Approx(std::sqrt(1.0 / 200)).epsilon(0.05));  // tanh: N(0, 1/fan_in)
  CHECK(a.bias(0).norm() == 0.0);
  o.activation = Activation::gelu;
  const Mlp<double> g(o);
  const double sd_gelu = std::sqrt(g.weight(0).squaredNorm() / double(g.weight(0).size()));
  CHECK(sd_gelu == Approx(std::sqrt(2.0 / 200)).epsilon(0.05));  // GELU: N(0, 2/fan_in)
}

TEST_CASE("Mlp: bad input throws InvalidArgument and leaves the output untouched") {
  Mlp<double> model(small_options(Activation::tanh));
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::VectorXd g = Eigen::VectorXd::Constant(d, 7.0);
  const Mlp<double>::Sample wrong_size{Eigen::VectorXd::Ones(5), 0};
  const Mlp<double>::Sample bad_label{Eigen::VectorXd::Ones(4), 3};
  CHECK_THROWS_AS(model.loss(wrong_size), fu::InvalidArgument);
  CHECK_THROWS_WITH(model.loss(bad_label), Catch::Contains("outside [0, 3)"));
  CHECK_THROWS_AS(model.gradient({Eigen::VectorXd::Ones(4), 0}, std::span<double>(g.data(), 3)), fu::InvalidArgument);
  const std::vector<Mlp<double>::Sample> batch = {{Eigen::VectorXd::Ones(4), 0}, bad_label};
  CHECK_THROWS_AS(model.sum_loss_and_gradient(batch, std::span<double>(g.data(), g.size())), fu::InvalidArgument);
  CHECK_THROWS_AS(model.hessian_vector_product(batch, std::span<const double>(g.data(), g.size()),
                                               std::span<double>(g.data(), g.size())),
                  fu::InvalidArgument);
  CHECK(g == Eigen::VectorXd::Constant(d, 7.0));
  MlpOptions o = small_options(Activation::tanh);
  o.hidden_sizes = {4, 0};
  CHECK_THROWS_WITH(Mlp<double>(o), Catch::Contains("at least one unit"));
  o = small_options(Activation::tanh);
  o.num_classes = 1;
  CHECK_THROWS_AS(Mlp<double>(o), fu::InvalidArgument);
  o = small_options(Activation::tanh);
  o.num_features = 0;
  CHECK_THROWS_AS(Mlp<double>(o), fu::InvalidArgument);
  o = small_options(Activation::tanh, -1.0);
  CHECK_THROWS_AS(Mlp<double>(o), fu::InvalidArgument);
}
