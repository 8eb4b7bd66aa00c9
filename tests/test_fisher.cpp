// fisher/fisher.hpp: the free products on any FisherEstimator, and the estimators against each other
// where their structures coincide (block size 1 = diagonal, Woodbury = dense).
#include <catch2/catch.hpp>

#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/fisher.hpp"

namespace fu = fisher_unlearn;
using namespace fisher_test;

TEMPLATE_PRODUCT_TEST_CASE("inverse_fisher_product and fisher_power_product equal apply_power", "[fisher]",
                           (fu::DiagonalFisher, fu::BlockDiagonalFisher, fu::WoodburyFisher, fu::DenseFisher),
                           (float, double)) {
  using Estimator = TestType;
  using Scalar = typename Estimator::Scalar;
  static_assert(fu::FisherEstimator<Estimator>);
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(14, 9, 501);
  Estimator fisher(14, Scalar(0.25));
  fisher.add_gradients(g);
  const fu::Vector<Scalar> v = random_vector<Scalar>(14, 502);
  CHECK_THROWS_AS(fu::inverse_fisher_product(fisher, v), fu::StateError);
  fisher.finalize();
  fu::Vector<Scalar> inverse(14), root(14);
  fisher.apply_power(-1.0, v, inverse);
  fisher.apply_power(-0.5, v, root);
  CHECK(fu::inverse_fisher_product(fisher, v) == inverse);
  CHECK(fu::fisher_power_product(fisher, -0.5, v) == root);
  CHECK_THROWS_AS(fu::fisher_power_product(fisher, -0.5, fu::Vector<Scalar>(random_vector<Scalar>(13, 503))),
                  fu::InvalidArgument);
}

TEMPLATE_TEST_CASE("DiagonalFisher equals BlockDiagonalFisher with blocks of size 1", "[fisher]", float, double) {
  using Scalar = TestType;
  const fu::Matrix<Scalar> g = random_gradients<Scalar>(17, 11, 511);
  fu::DiagonalFisher<Scalar> diagonal(17, Scalar(0.1));
  fu::BlockDiagonalFisher<Scalar> blocks(17, Scalar(0.1), 1);
  diagonal.add_gradients(g);
  blocks.add_gradients(g);
  diagonal.finalize();
  blocks.finalize();
  const fu::Vector<Scalar> v = random_vector<Scalar>(17, 512);
  for (double p : test_powers())
    CHECK(relative_error(fu::fisher_power_product(diagonal, p, v), fu::fisher_power_product(blocks, p, v)) <
          tolerance<Scalar>() / 10);
}

TEMPLATE_TEST_CASE("WoodburyFisher equals DenseFisher for m below and above d", "[fisher]", float, double) {
  using Scalar = TestType;
  for (Eigen::Index m : {4, 50}) {
    const fu::Matrix<Scalar> g = random_gradients<Scalar>(25, m, 520 + static_cast<std::uint64_t>(m));
    const auto damping = static_cast<Scalar>(test_damping<Scalar>(empirical_second_moment(g)));
    fu::WoodburyFisher<Scalar> woodbury(25, damping);
    fu::DenseFisher<Scalar> dense(25, damping);
    woodbury.add_gradients(g);
    dense.add_gradients(g);
    woodbury.finalize();
    dense.finalize();
    const fu::Vector<Scalar> v = random_vector<Scalar>(25, 530);
    for (double p : test_powers()) {
      INFO("m = " << m << ", p = " << p);
      CHECK(relative_error(fu::fisher_power_product(woodbury, p, v), fu::fisher_power_product(dense, p, v)) <
            tolerance<Scalar>());
    }
  }
}
