// examples/case_studies/rank_sum.hpp against an independent Python enumeration of the same test
// (itertools.combinations over the pooled mid-ranks, two-sided, |S − E S| ≥ observed).
#include "../examples/case_studies/rank_sum.hpp"

#include <catch2/catch.hpp>

using case_studies::rank_sum_p_value;

TEST_CASE("rank_sum_p_value: exact p-values equal a brute-force enumeration, with and without ties") {
  CHECK(rank_sum_p_value({1, 2, 3, 4}, {5, 6, 7, 8}) == Approx(0.02857142857142857).epsilon(1e-12));
  CHECK(rank_sum_p_value({5, 6, 7, 8}, {1, 2, 3, 4}) == Approx(0.02857142857142857).epsilon(1e-12));
  CHECK(rank_sum_p_value({1, 1, 1, 1}, {7, 37, 3, 1}) == Approx(0.14285714285714285).epsilon(1e-12));  // case A's ranks
  CHECK(rank_sum_p_value({2, 2, 5}, {2, 9, 9, 1}) == Approx(0.7714285714285715).epsilon(1e-12));
  CHECK(rank_sum_p_value({3, 1, 2}, {2, 3, 1}) == Approx(1.0));
}

TEST_CASE("rank_sum_p_value: large samples use the normal approximation, and empty samples give NaN") {
  std::vector<double> a, b;
  for (int i = 0; i < 30; ++i) {
    a.push_back(i);
    b.push_back(i + 15);
  }
  CHECK(rank_sum_p_value(a, b) == Approx(6.01347999932133e-07).epsilon(1e-6));  // Python, same tie-corrected formula
  CHECK(std::isnan(rank_sum_p_value({}, {1.0})));
}
