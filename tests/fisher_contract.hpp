// The FisherEstimator protocol every estimator must honour, checked the same way for each: typed
// exceptions for bad input, and the same answer as before after every rejected call.
#pragma once

#include "fisher_reference.hpp"

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

namespace fisher_test {

/// `make(d, damping)` builds the estimator under test.
template <class Estimator, class Make>
void check_protocol_and_bad_input(Make make) {
  using Scalar = typename Estimator::Scalar;
  namespace fu = fisher_unlearn;
  const Eigen::Index d = 9;
  const Scalar nan = std::numeric_limits<Scalar>::quiet_NaN();
  const Scalar inf = std::numeric_limits<Scalar>::infinity();

  // Construction.
  CHECK_THROWS_AS(make(d, Scalar(0)), fu::InvalidArgument);
  CHECK_THROWS_AS(make(d, Scalar(-1)), fu::InvalidArgument);
  CHECK_THROWS_AS(make(d, nan), fu::InvalidArgument);
  CHECK_THROWS_AS(make(d, inf), fu::InvalidArgument);
  CHECK_THROWS_AS(make(0, Scalar(1)), fu::InvalidArgument);

  Estimator e = make(d, Scalar(0.5));
  CHECK(e.dimension() == static_cast<std::size_t>(d));
  CHECK(e.num_gradients() == 0);
  fu::Vector<Scalar> v = random_vector<Scalar>(d, 17);
  fu::Vector<Scalar> out(d), before(d);

  // Protocol: m = 0 cannot be finalized; nothing can be applied before finalize().
  CHECK_THROWS_AS(e.finalize(), fu::InvalidArgument);
  CHECK_THROWS_AS(e.apply_power(-1.0, v, out), fu::StateError);

  const fu::Matrix<Scalar> g = random_gradients<Scalar>(d, 6, 23);
  e.add_gradients(g);
  CHECK(e.num_gradients() == 6);
  CHECK_THROWS_AS(e.apply_power(-1.0, v, out), fu::StateError);
  e.finalize();
  e.apply_power(-0.5, v, before);
  const auto same_answer = [&] {
    fu::Vector<Scalar> now(d);
    e.apply_power(-0.5, v, now);
    return now == before && e.num_gradients() == 6 && e.damping() == Scalar(0.5);
  };

  // Rejected gradients leave the estimator exactly as it was (still finalized, same answer).
  CHECK_THROWS_AS(e.add_gradient(random_vector<Scalar>(d + 1, 3)), fu::InvalidArgument);
  CHECK(same_answer());
  CHECK_THROWS_AS(e.add_gradients(random_gradients<Scalar>(d - 1, 2, 5)), fu::InvalidArgument);
  CHECK(same_answer());
  fu::Vector<Scalar> bad = random_vector<Scalar>(d, 4);
  bad[3] = nan;
  CHECK_THROWS_AS(e.add_gradient(bad), fu::NonFiniteError);
  CHECK(same_answer());
  fu::Matrix<Scalar> bad_batch = random_gradients<Scalar>(d, 3, 6);
  bad_batch(d - 1, 2) = inf;  // only the last column is bad: nothing of the batch may be added
  CHECK_THROWS_AS(e.add_gradients(bad_batch), fu::NonFiniteError);
  CHECK(same_answer());

  // Rejected products.
  CHECK_THROWS_AS(e.apply_power(-0.5, bad, out), fu::NonFiniteError);
  fu::Vector<Scalar> short_out(d - 1), long_v = random_vector<Scalar>(d + 2, 8);
  CHECK_THROWS_AS(e.apply_power(-0.5, v, short_out), fu::InvalidArgument);
  CHECK_THROWS_AS(e.apply_power(-0.5, long_v, out), fu::InvalidArgument);
  CHECK_FALSE(e.supports_power(std::numeric_limits<double>::quiet_NaN()));
  CHECK_FALSE(e.supports_power(std::numeric_limits<double>::infinity()));
  CHECK_THROWS_AS(e.apply_power(std::numeric_limits<double>::quiet_NaN(), v, out), fu::InvalidArgument);
  CHECK_THROWS_AS(e.apply_power(std::numeric_limits<double>::infinity(), v, out), fu::InvalidArgument);
  fu::Vector<Scalar> aliased = v;
  CHECK_THROWS_AS(e.apply_power(-0.5, aliased, aliased), fu::InvalidArgument);
  CHECK(same_answer());

  // Rejected damping.
  CHECK_THROWS_AS(e.set_damping(Scalar(0)), fu::InvalidArgument);
  CHECK_THROWS_AS(e.set_damping(Scalar(-2)), fu::InvalidArgument);
  CHECK_THROWS_AS(e.set_damping(nan), fu::InvalidArgument);
  CHECK(same_answer());

  // New gradients make the finalized state stale until the next finalize().
  e.add_gradient(random_vector<Scalar>(d, 31));
  CHECK(e.num_gradients() == 7);
  CHECK_THROWS_AS(e.apply_power(-0.5, v, out), fu::StateError);
  e.finalize();
  e.apply_power(-0.5, v, out);
  CHECK(out != before);
  CHECK(e.memory_bytes() > 0);

  e.clear();
  CHECK(e.num_gradients() == 0);
  CHECK(e.damping() == Scalar(0.5));
  CHECK_THROWS_AS(e.apply_power(-0.5, v, out), fu::StateError);
  CHECK_THROWS_AS(e.finalize(), fu::InvalidArgument);
  // After clear() the estimator is as new: the same gradients give the same answer.
  e.add_gradients(g);
  e.finalize();
  e.apply_power(-0.5, v, out);
  CHECK(relative_error(out, before) < 8 * std::numeric_limits<Scalar>::epsilon());
}

/// Adding a batch equals adding its columns one at a time: the relative difference of F^p v, with the
/// damping of test_damping (`make(d, damping)` builds the estimator).
template <class Estimator, class Make>
double batch_versus_single_error(Make make, Eigen::Index d, Eigen::Index m, double power) {
  using Scalar = typename Estimator::Scalar;
  const fisher_unlearn::Matrix<Scalar> g = random_gradients<Scalar>(d, m, 77);
  const auto damping = static_cast<Scalar>(test_damping<Scalar>(empirical_second_moment(g)));
  Estimator batch = make(d, damping), single = make(d, damping);
  batch.add_gradients(g);
  for (Eigen::Index j = 0; j < m; ++j) single.add_gradient(g.col(j));
  batch.finalize();
  single.finalize();
  const fisher_unlearn::Vector<Scalar> v = random_vector<Scalar>(d, 78);
  fisher_unlearn::Vector<Scalar> a(d), b(d);
  batch.apply_power(power, v, a);
  single.apply_power(power, v, b);
  return relative_error(a, b);
}

}  // namespace fisher_test
