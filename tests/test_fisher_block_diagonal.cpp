// BlockDiagonalFisher against the dense fp64 block-diagonal reference, and its block partitions.
#include <catch2/catch.hpp>

#include "fisher_contract.hpp"
#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/dense.hpp"

#include <numeric>

namespace fu = fisher_unlearn;
using namespace fisher_test;

static_assert(fu::FisherEstimator<fu::BlockDiagonalFisher<float>>);
static_assert(fu::FisherEstimator<fu::BlockDiagonalFisher<double>>);

namespace {
// apply_power with the wrong argument order (v and out swapped types): must not satisfy the concept.
struct WrongApplySignature {
  using Scalar = double;
  std::size_t dimension() const { return 1; }
  void add_gradient(Eigen::Ref<const fu::Vector<double>>) {}
  void add_gradients(Eigen::Ref<const fu::Matrix<double>>) {}
  void finalize() {}
  void apply_power(Eigen::Ref<const fu::Vector<double>>, double, Eigen::Ref<fu::Vector<double>>) const {}
  bool supports_power(double) const { return true; }
  double damping() const { return 1; }
  void set_damping(double) {}
  std::size_t memory_bytes() const { return 0; }
  std::size_t num_gradients() const { return 0; }
  void clear() {}
};

// A model with parameter groups, for block_sizes_from_groups: groups "a" [0,4), "c" [7,12), "b" [4,6);
// [6,7) and [12,15) are in no group.
struct GroupedModel {
  using Scalar = double;
  struct Sample {};
  std::vector<double> theta = std::vector<double>(15, 0.0);
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample&) const { return 0.0; }
  std::vector<fu::ParameterGroup> parameter_groups() const { return {{"a", 0, 4}, {"c", 7, 5}, {"b", 4, 2}}; }
};
struct OverlappingGroups : GroupedModel {
  std::vector<fu::ParameterGroup> parameter_groups() const { return {{"a", 0, 4}, {"b", 3, 2}}; }
};
}  // namespace
static_assert(!fu::FisherEstimator<WrongApplySignature>);

TEMPLATE_TEST_CASE("BlockDiagonalFisher: F^p v equals the dense block-diagonal reference", "[fisher][block]", float,
                   double) {
  using Scalar = TestType;
  struct Case { std::vector<std::size_t> sizes; Eigen::Index m; };
  const std::vector<Case> cases = {{{5}, 3},           {{2, 3}, 40},         {{1, 1, 1, 1, 1}, 4},
                                   {{10, 13, 10}, 12}, {{7, 20, 1, 32}, 90}, {{25, 35}, 8}};
  for (const Case& c : cases) {
    const auto d = static_cast<Eigen::Index>(std::accumulate(c.sizes.begin(), c.sizes.end(), std::size_t{0}));
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, c.m, 400 + static_cast<std::uint64_t>(d + c.m));
    const Eigen::MatrixXd moment = mask_blocks(empirical_second_moment(g), c.sizes);
    fu::BlockDiagonalFisher<Scalar> fisher(c.sizes, static_cast<Scalar>(test_damping<Scalar>(moment)));
    REQUIRE(fisher.dimension() == static_cast<std::size_t>(d));
    REQUIRE(fisher.num_blocks() == c.sizes.size());
    fisher.add_gradients(g);
    fisher.finalize();
    const fu::Vector<Scalar> v = random_vector<Scalar>(d, 10);
    for (double p : test_powers()) {
      fu::Vector<Scalar> out(d);
      fisher.apply_power(p, v, out);
      const Eigen::VectorXd ref = dense_power(moment, static_cast<double>(fisher.damping()), p) * v.template cast<double>();
      INFO("d = " << d << ", blocks = " << c.sizes.size() << ", m = " << c.m << ", p = " << p);
      CHECK(relative_error(out, ref) < tolerance<Scalar>());
    }
  }
}

TEMPLATE_TEST_CASE("BlockDiagonalFisher: a block size that does not divide d leaves a smaller last block",
                   "[fisher][block]", float, double) {
  using Scalar = TestType;
  fu::BlockDiagonalFisher<Scalar> fisher(23, Scalar(0.1), 5);
  CHECK(fisher.block_sizes() == std::vector<std::size_t>{5, 5, 5, 5, 3});
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(23, 17, 11);
  const Eigen::MatrixXd moment = mask_blocks(empirical_second_moment(g), fisher.block_sizes());
  fisher.set_damping(static_cast<Scalar>(test_damping<Scalar>(moment)));
  fisher.add_gradients(g);
  fisher.finalize();
  const fu::Vector<Scalar> v = random_vector<Scalar>(23, 12);
  for (double p : test_powers()) {
    fu::Vector<Scalar> out(23);
    fisher.apply_power(p, v, out);
    const Eigen::VectorXd ref = dense_power(moment, static_cast<double>(fisher.damping()), p) * v.template cast<double>();
    CHECK(relative_error(out, ref) < tolerance<Scalar>());
  }
  CHECK(fu::BlockDiagonalFisher<Scalar>(23, Scalar(1), 0).block_sizes() == std::vector<std::size_t>{23});
  CHECK(fu::BlockDiagonalFisher<Scalar>(23, Scalar(1), 40).block_sizes() == std::vector<std::size_t>{23});
  CHECK(fu::BlockDiagonalFisher<Scalar>(6, Scalar(1), 3).block_sizes() == std::vector<std::size_t>{3, 3});
}

TEMPLATE_TEST_CASE("BlockDiagonalFisher: one block equals DenseFisher", "[fisher][block]", float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(19, 25, 13);
  const auto damping = static_cast<Scalar>(test_damping<Scalar>(empirical_second_moment(g)));
  fu::BlockDiagonalFisher<Scalar> block(19, damping);
  fu::DenseFisher<Scalar> dense(19, damping);
  block.add_gradients(g.leftCols(10));
  for (Eigen::Index j = 10; j < 25; ++j) block.add_gradient(g.col(j));
  dense.add_gradients(g);
  block.finalize();
  dense.finalize();
  CHECK(block.num_blocks() == 1);
  CHECK(block.memory_bytes() == dense.memory_bytes());
  const fu::Vector<Scalar> v = random_vector<Scalar>(19, 14);
  for (double p : test_powers()) {
    fu::Vector<Scalar> a(19), b(19);
    block.apply_power(p, v, a);
    dense.apply_power(p, v, b);
    CHECK(relative_error(a, b) < tolerance<Scalar>() / 10);
  }
  // Added the same way, they are the same computation: equal to the last bit.
  fu::BlockDiagonalFisher<Scalar> block_batch(19, damping);
  block_batch.add_gradients(g);
  block_batch.finalize();
  fu::Vector<Scalar> a(19), b(19);
  block_batch.apply_power(-1.0, v, a);
  dense.apply_power(-1.0, v, b);
  CHECK(a == b);
}

TEMPLATE_TEST_CASE("BlockDiagonalFisher: set_damping after finalize equals a fresh estimator with that damping",
                   "[fisher][block]", float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(21, 9, 15);
  fu::BlockDiagonalFisher<Scalar> changed(21, Scalar(5), 8), fresh(21, Scalar(0.05), 8);
  changed.add_gradients(g);
  fresh.add_gradients(g);
  changed.finalize();
  fresh.finalize();
  changed.set_damping(Scalar(0.05));
  const fu::Vector<Scalar> v = random_vector<Scalar>(21, 16);
  for (double p : test_powers()) {
    fu::Vector<Scalar> a(21), b(21);
    changed.apply_power(p, v, a);
    fresh.apply_power(p, v, b);
    CHECK(a == b);
  }
}

TEMPLATE_TEST_CASE("BlockDiagonalFisher: a batch equals its columns added one at a time", "[fisher][block]", float,
                   double) {
  using Scalar = TestType;
  using E = fu::BlockDiagonalFisher<Scalar>;
  const double error = batch_versus_single_error<E>([](Eigen::Index, Scalar damping) { return E(std::vector<std::size_t>{4, 9, 7}, damping); }, 20, 15, -1.0);
  INFO("relative difference " << error);
  CHECK(error < tolerance<Scalar>() / 10);
}

TEMPLATE_TEST_CASE("BlockDiagonalFisher: bad input throws a typed exception and leaves the estimator unchanged",
                   "[fisher][block]", float, double) {
  using E = fu::BlockDiagonalFisher<TestType>;
  check_protocol_and_bad_input<E>([](Eigen::Index d, TestType damping) { return E(static_cast<std::size_t>(d), damping, 4); });
  CHECK_THROWS_AS(E(std::vector<std::size_t>{}, TestType(1)), fu::InvalidArgument);
  CHECK_THROWS_AS(E(std::vector<std::size_t>{3, 0, 2}, TestType(1)), fu::InvalidArgument);
  CHECK_THROWS_AS(E(std::vector<std::size_t>{3, 2}, TestType(0)), fu::InvalidArgument);
  E e(std::vector<std::size_t>{3, 2}, TestType(1));
  CHECK(e.dimension() == 5);
  CHECK_THROWS_AS(e.block_eigenvalues(0), fu::StateError);
}

TEST_CASE("BlockDiagonalFisher: block partitions follow a model's parameter groups and a parameter subset",
          "[fisher][block]") {
  const GroupedModel model;
  CHECK(fu::block_sizes_from_groups(model) == std::vector<std::size_t>{4, 2, 1, 5, 3});
  CHECK(fu::block_sizes_from_groups(model, {}, 2) == std::vector<std::size_t>{2, 2, 2, 1, 2, 2, 1, 2, 1});
  CHECK(fu::block_sizes_from_groups(model, {"c", "a"}) == std::vector<std::size_t>{4, 5});
  CHECK_THROWS_AS(fu::block_sizes_from_groups(model, {"nope"}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::block_sizes_from_groups(OverlappingGroups{}), fu::InvalidArgument);
  // The partition for a named subset matches the length of the vector the subset gathers.
  const auto subset = fu::ParameterSubset::from_groups(model, {"c", "a"});
  const auto sizes = fu::block_sizes_from_groups(model, {"c", "a"});
  CHECK(std::accumulate(sizes.begin(), sizes.end(), std::size_t{0}) == subset.size());
  CHECK(fu::block_sizes_from_subset(subset) == std::vector<std::size_t>{4, 5});
  CHECK(fu::block_sizes_from_subset(fu::ParameterSubset::all(10), 4) == std::vector<std::size_t>{4, 4, 2});
  fu::BlockDiagonalFisher<double> fisher(fu::block_sizes_from_groups(model), 0.1);
  CHECK(fisher.dimension() == model.num_parameters());
  fisher.add_gradients(random_gradients<double>(15, 4, 17));
  fisher.finalize();
  CHECK(fisher.memory_bytes() == 2 * (16 + 4 + 1 + 25 + 9) * sizeof(double) + 15 * sizeof(double));
}
