// The GPU estimators against the CPU estimators they stand in for (DiagonalFisher, WoodburyFisher):
// the same gradients, the same calls, the same answers within a precision-scaled tolerance; and the
// same protocol errors. Also: they satisfy FisherEstimator, so every unlearner accepts them.
#include <catch2/catch.hpp>

#include "cuda_test_support.hpp"

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/cuda/estimators.hpp"
#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/report.hpp"

#include <span>
#include <tuple>

#include <cmath>
#include <limits>
#include <random>

namespace fc = fisher_unlearn::cuda;
using fisher_unlearn::Matrix;
using fisher_unlearn::Vector;
using cuda_test::relative_error;
using cuda_test::tolerance;

static_assert(fisher_unlearn::FisherEstimator<fc::DiagonalFisherGpu<float>>);
static_assert(fisher_unlearn::FisherEstimator<fc::DiagonalFisherGpu<double>>);
static_assert(fisher_unlearn::FisherEstimator<fc::WoodburyFisherGpu<float>>);
static_assert(fisher_unlearn::FisherEstimator<fc::WoodburyFisherGpu<double>>);
static_assert(fisher_unlearn::FisherEstimator<fc::BlockDiagonalFisherGpu<float>>);
static_assert(fisher_unlearn::FisherEstimator<fc::BlockDiagonalFisherGpu<double>>);

namespace {

template <class Scalar>
Matrix<Scalar> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, double stddev = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, stddev);
  Matrix<Scalar> out(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) out(i, j) = static_cast<Scalar>(dist(rng));
  return out;
}

// Feeds the same gradients to both estimators in three ways: one column, a contiguous batch, and a
// block of a taller matrix (outer stride ≠ rows, the upload path that copies column by column).
// `tall` is (d + 3) × m; the gradients are its top d rows.
template <class Cpu, class Gpu, class Scalar>
void feed(Cpu& cpu, Gpu& gpu, const Matrix<Scalar>& tall, Eigen::Index d, Eigen::Index m) {
  const Vector<Scalar> first = tall.col(0).head(d);
  cpu.add_gradient(first);
  gpu.add_gradient(first);
  if (m > 1) {
    const Eigen::Index half = (m - 1) / 2;
    const Matrix<Scalar> contiguous = tall.block(0, 1, d, half);
    cpu.add_gradients(contiguous);
    gpu.add_gradients(contiguous);
    const auto strided = tall.block(0, 1 + half, d, m - 1 - half);
    const Eigen::Ref<const Matrix<Scalar>> view(strided);
    // A one-column block is contiguous whatever the parent's stride, so Eigen reports outer stride d.
    if (view.cols() > 1) REQUIRE(view.outerStride() == d + 3);
    cpu.add_gradients(view);
    gpu.add_gradients(view);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("DiagonalFisherGpu: apply_power equals DiagonalFisher for every power", "[cuda][estimators]", float,
                   double) {
  using Scalar = TestType;
  const std::pair<Eigen::Index, Eigen::Index> shapes[] = {{1, 1}, {1, 64}, {1000, 1}, {1001, 64}, {100'003, 17}};
  std::uint64_t seed = 40;
  for (const auto& [d, m] : shapes) {
    CAPTURE(d, m);
    const Matrix<Scalar> g = random_matrix<Scalar>(d + 3, m, ++seed);
    fisher_unlearn::DiagonalFisher<Scalar> cpu(static_cast<std::size_t>(d), Scalar(0.05));
    fc::DiagonalFisherGpu<Scalar> gpu(static_cast<std::size_t>(d), Scalar(0.05));
    feed(cpu, gpu, g, d, m);
    CHECK(gpu.num_gradients() == static_cast<std::size_t>(m));
    cpu.finalize();
    gpu.finalize();
    CHECK(relative_error(gpu.diagonal(), cpu.diagonal()) < tolerance<Scalar>(static_cast<double>(m)));
    const Vector<Scalar> v = random_matrix<Scalar>(d, 1, ++seed);
    Vector<Scalar> out_cpu(d), out_gpu(d);
    for (const double p : {-1.0, -0.5, 0.5, 1.0, -0.25, 2.0}) {
      CAPTURE(p);
      cpu.apply_power(p, v, out_cpu);
      gpu.apply_power(p, v, out_gpu);
      CHECK(relative_error(out_gpu, out_cpu) < tolerance<Scalar>(static_cast<double>(m)) * (1.0 + std::abs(p)));
    }
    // set_damping needs no new finalize, as on the CPU.
    cpu.set_damping(Scalar(0.5));
    gpu.set_damping(Scalar(0.5));
    cpu.apply_power(-1.0, v, out_cpu);
    gpu.apply_power(-1.0, v, out_gpu);
    CHECK(relative_error(out_gpu, out_cpu) < tolerance<Scalar>(static_cast<double>(m)));
    // A copy owns its data: clearing the original leaves the copy's answers.
    fc::DiagonalFisherGpu<Scalar> copy = gpu;
    gpu.clear();
    copy.apply_power(-1.0, v, out_gpu);
    CHECK(relative_error(out_gpu, out_cpu) < tolerance<Scalar>(static_cast<double>(m)));
  }
}

TEMPLATE_TEST_CASE("DiagonalFisherGpu: step_device adds the noisy natural-gradient step to θ", "[cuda][estimators]",
                   float, double) {
  using Scalar = TestType;
  const Eigen::Index d = 4099, m = 9;
  const Matrix<Scalar> g = random_matrix<Scalar>(d, m, 5);
  fisher_unlearn::DiagonalFisher<Scalar> cpu(d, Scalar(0.1));
  fc::DiagonalFisherGpu<Scalar> gpu(d, Scalar(0.1));
  cpu.add_gradients(g);
  gpu.add_gradients(g);
  cpu.finalize();
  gpu.finalize();
  const Vector<Scalar> v = random_matrix<Scalar>(d, 1, 6);
  const Vector<Scalar> theta0 = random_matrix<Scalar>(d, 1, 7);
  // θ ← θ − 0.3·F⁻¹v without noise equals the CPU step.
  Vector<Scalar> step(d);
  cpu.apply_power(-1.0, v, step);
  const Vector<Scalar> expected = theta0 - Scalar(0.3) * step;
  auto dv = cuda_test::to_device(std::vector<Scalar>(v.data(), v.data() + d));
  auto dtheta = cuda_test::to_device(std::vector<Scalar>(theta0.data(), theta0.data() + d));
  gpu.step_device(-1.0, Scalar(-0.3), dv.data(), Scalar(0), 1, 0, dtheta.data(), nullptr);
  const auto theta = cuda_test::to_host(dtheta, static_cast<std::size_t>(d));
  CHECK(relative_error(theta, expected) < tolerance<Scalar>(static_cast<double>(m)));
}

TEMPLATE_TEST_CASE("DiagonalFisherGpu: protocol errors match the CPU estimator and leave it unchanged",
                   "[cuda][estimators]", float, double) {
  using Scalar = TestType;
  fc::DiagonalFisherGpu<Scalar> gpu(8, Scalar(0.1));
  Vector<Scalar> v = Vector<Scalar>::Ones(8), out(8);
  CHECK_THROWS_AS(gpu.finalize(), fisher_unlearn::InvalidArgument);
  gpu.add_gradient(v);
  CHECK_THROWS_AS(gpu.apply_power(-1.0, v, out), fisher_unlearn::StateError);
  Vector<Scalar> bad = v;
  bad[3] = std::numeric_limits<Scalar>::quiet_NaN();
  CHECK_THROWS_AS(gpu.add_gradient(bad), fisher_unlearn::NonFiniteError);
  CHECK(gpu.num_gradients() == 1);
  CHECK_THROWS_AS(gpu.add_gradient(Vector<Scalar>::Ones(7)), fisher_unlearn::InvalidArgument);
  gpu.finalize();
  CHECK_THROWS_AS(gpu.apply_power(-1.0, Vector<Scalar>::Ones(9), out), fisher_unlearn::InvalidArgument);
  CHECK_THROWS_AS(gpu.apply_power(std::numeric_limits<double>::infinity(), v, out), fisher_unlearn::InvalidArgument);
  CHECK_THROWS_AS(gpu.apply_power(-1.0, bad, out), fisher_unlearn::NonFiniteError);
  CHECK_THROWS_AS(gpu.set_damping(Scalar(0)), fisher_unlearn::InvalidArgument);
  CHECK(gpu.damping() == Scalar(0.1));
  gpu.apply_power(-1.0, v, out);
  CHECK(std::abs(static_cast<double>(out[0]) - 1.0 / 1.1) < 1e-6);
  gpu.add_gradient(v);  // adding after finalize requires a new finalize, as on the CPU
  CHECK_THROWS_AS(gpu.apply_power(-1.0, v, out), fisher_unlearn::StateError);
}

TEMPLATE_TEST_CASE("WoodburyFisherGpu: apply_power equals WoodburyFisher for every power", "[cuda][estimators]", float,
                   double) {
  using Scalar = TestType;
  const std::pair<Eigen::Index, Eigen::Index> shapes[] = {{1, 1}, {1, 5}, {300, 1}, {300, 17}, {40, 100}, {20'001, 64}};
  std::uint64_t seed = 80;
  for (const auto& [d, m] : shapes) {
    CAPTURE(d, m);
    const Scalar lambda = Scalar(0.5);
    // Scale 1/√d keeps (1/m)GGᵀ comparable to λ, so the float systems are well conditioned.
    const Matrix<Scalar> g = random_matrix<Scalar>(d + 3, m, ++seed, 2.0 / std::sqrt(static_cast<double>(d)));
    fisher_unlearn::WoodburyFisher<Scalar> cpu(static_cast<std::size_t>(d), lambda);
    fc::WoodburyFisherGpu<Scalar> gpu(static_cast<std::size_t>(d), lambda);
    feed(cpu, gpu, g, d, m);
    CHECK(gpu.num_gradients() == static_cast<std::size_t>(m));
    cpu.finalize();
    gpu.finalize();
    const Vector<Scalar> v = random_matrix<Scalar>(d, 1, ++seed);
    Vector<Scalar> out_cpu(d), out_gpu(d);
    const double tol = tolerance<Scalar>(static_cast<double>(std::max(d, m))) * 20.0;
    for (const double p : {-1.0, 1.0, -0.5, 0.5, -2.0}) {
      CAPTURE(p);
      cpu.apply_power(p, v, out_cpu);
      gpu.apply_power(p, v, out_gpu);
      CHECK(relative_error(out_gpu, out_cpu) < tol);
    }
    cpu.set_damping(Scalar(0.1));
    gpu.set_damping(Scalar(0.1));
    cpu.apply_power(-1.0, v, out_cpu);
    gpu.apply_power(-1.0, v, out_gpu);
    CHECK(relative_error(out_gpu, out_cpu) < tol * 5.0);
    const fc::WoodburyFisherGpu<Scalar> copy = gpu;
    gpu.clear();
    CHECK(gpu.num_gradients() == 0);
    copy.apply_power(-1.0, v, out_gpu);
    CHECK(relative_error(out_gpu, out_cpu) < tol * 5.0);
  }
}

TEMPLATE_TEST_CASE("WoodburyFisherGpu: protocol errors match the CPU estimator", "[cuda][estimators]", float, double) {
  using Scalar = TestType;
  fc::WoodburyFisherGpu<Scalar> gpu(6, Scalar(5));
  Vector<Scalar> v = Vector<Scalar>::LinSpaced(6, 1, 2), out(6);
  CHECK_THROWS_AS(gpu.finalize(), fisher_unlearn::InvalidArgument);
  gpu.add_gradient(v);
  CHECK_THROWS_AS(gpu.apply_power(-1.0, v, out), fisher_unlearn::StateError);
  Vector<Scalar> bad = v;
  bad[0] = std::numeric_limits<Scalar>::infinity();
  CHECK_THROWS_AS(gpu.add_gradient(bad), fisher_unlearn::NonFiniteError);
  CHECK(gpu.num_gradients() == 1);
  gpu.finalize();
  CHECK_THROWS_AS(gpu.apply_power(-1.0, Vector<Scalar>::Ones(5), out), fisher_unlearn::InvalidArgument);
  CHECK_THROWS_AS(gpu.set_damping(Scalar(-1)), fisher_unlearn::InvalidArgument);
  CHECK(gpu.damping() == Scalar(5));
  // One gradient g: F⁻¹g = g/(λ + ‖g‖²) exactly (g is an eigenvector). λ = 5 against ‖g‖² ≈ 14 keeps
  // the cancellation in (v − Gc)/λ mild enough for float's tolerance.
  gpu.apply_power(-1.0, v, out);
  const double expected_scale = 1.0 / (5.0 + static_cast<double>(v.squaredNorm()));
  CHECK(relative_error(out, (v.template cast<double>() * expected_scale).eval()) < tolerance<Scalar>(6.0));
}

TEMPLATE_TEST_CASE("BlockDiagonalFisherGpu: apply_power equals BlockDiagonalFisher for every power", "[cuda][estimators]",
                   float, double) {
  using Scalar = TestType;
  // (d, block size, m): one dense block (0), blocks that divide d, a smaller last block, b > d.
  const std::tuple<Eigen::Index, std::size_t, Eigen::Index> cases[] = {
      {1, 0, 1}, {50, 0, 7}, {64, 16, 5}, {1001, 64, 33}, {30, 100, 3}, {5003, 256, 128}};
  std::uint64_t seed = 120;
  for (const auto& [d, block, m] : cases) {
    CAPTURE(d, block, m);
    const Scalar lambda = Scalar(0.3);
    const Matrix<Scalar> g = random_matrix<Scalar>(d + 3, m, ++seed, 1.0 / std::sqrt(static_cast<double>(std::max<std::size_t>(block, 1))));
    fisher_unlearn::BlockDiagonalFisher<Scalar> cpu(static_cast<std::size_t>(d), lambda, block);
    fc::BlockDiagonalFisherGpu<Scalar> gpu(static_cast<std::size_t>(d), lambda, block);
    CHECK(gpu.num_blocks() == cpu.num_blocks());
    feed(cpu, gpu, g, d, m);
    cpu.finalize();
    gpu.finalize();
    const Vector<Scalar> v = random_matrix<Scalar>(d, 1, ++seed);
    Vector<Scalar> out_cpu(d), out_gpu(d);
    const double tol = tolerance<Scalar>(static_cast<double>(std::max<Eigen::Index>(d, m))) * 50.0;
    for (const double p : {-1.0, 1.0, -0.5, 0.5}) {
      CAPTURE(p);
      cpu.apply_power(p, v, out_cpu);
      gpu.apply_power(p, v, out_gpu);
      CHECK(relative_error(out_gpu, out_cpu) < tol);
    }
    cpu.set_damping(Scalar(1.0));
    gpu.set_damping(Scalar(1.0));
    cpu.apply_power(-1.0, v, out_cpu);
    gpu.apply_power(-1.0, v, out_gpu);
    CHECK(relative_error(out_gpu, out_cpu) < tol);
    gpu.clear();
    CHECK_THROWS_AS(gpu.apply_power(-1.0, v, out_gpu), fisher_unlearn::StateError);
    CHECK_THROWS_AS(gpu.finalize(), fisher_unlearn::InvalidArgument);
  }
}

namespace {
using Logistic = fisher_unlearn::models::LogisticRegression<double>;

Logistic starting_model() {
  Logistic model(6, 0.01);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> dist(0.0, 0.5);
  for (double& x : model.parameters()) x = dist(rng);
  return model;
}

// Runs FisherRemoval with estimator type E on the starting model; returns θ after.
template <class E>
Vector<double> removal_result(const std::vector<Logistic::Sample>& data) {
  using Model = Logistic;
  Model model = starting_model();
  const std::span<const Model::Sample> all(data);
  fisher_unlearn::FisherRemovalOptions options;
  options.damping = 0.05;
  fisher_unlearn::FisherRemoval<E> removal(options);
  const auto report = removal.unlearn(model, all.first(10), all.subspan(10));
  (void)report;
  const auto theta = model.parameters();
  return Eigen::Map<const Vector<double>>(theta.data(), static_cast<Eigen::Index>(theta.size()));
}
}  // namespace

TEST_CASE("FisherRemoval: the GPU estimators give the same unlearned model as the CPU ones", "[cuda][estimators]") {
  const auto data = fisher_unlearn::models::make_logistic_problem<double>(300, 6, 9);
  const Vector<double> cpu_diagonal = removal_result<fisher_unlearn::DiagonalFisher<double>>(data);
  const Vector<double> gpu_diagonal = removal_result<fc::DiagonalFisherGpu<double>>(data);
  CHECK(relative_error(gpu_diagonal, cpu_diagonal) < 1e-10);
  const Vector<double> cpu_woodbury = removal_result<fisher_unlearn::WoodburyFisher<double>>(data);
  const Vector<double> gpu_woodbury = removal_result<fc::WoodburyFisherGpu<double>>(data);
  CHECK(relative_error(gpu_woodbury, cpu_woodbury) < 1e-10);
  const Vector<double> cpu_block = removal_result<fisher_unlearn::BlockDiagonalFisher<double>>(data);
  const Vector<double> gpu_block = removal_result<fc::BlockDiagonalFisherGpu<double>>(data);
  CHECK(relative_error(gpu_block, cpu_block) < 1e-10);
  // The removal moved the model, so the comparisons above are between updated parameters.
  const Logistic start = starting_model();
  const Vector<double> theta0 =
      Eigen::Map<const Vector<double>>(start.parameters().data(), static_cast<Eigen::Index>(start.num_parameters()));
  CHECK(relative_error(cpu_diagonal, theta0) > 1e-3);
  CHECK(relative_error(cpu_woodbury, theta0) > 1e-3);
}
