// AnyFisher (fisher/any.hpp): the wrapped estimator's results bit for bit, its damping and trace forwarded,
// and feeding refused with a typed error.
#include <catch2/catch.hpp>

#include "fisher_reference.hpp"

#include "fisher_unlearn/fisher/any.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/models/transformer.hpp"

#include <cmath>
#include <random>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_test;

namespace {

fu::models::Transformer<float> small_transformer() {
  fu::models::TransformerConfig c;
  c.vocab_size = 7;
  c.context_length = 6;
  c.num_layers = 1;
  c.width = 8;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = 5;
  return fu::models::Transformer<float>(c);
}

std::vector<fu::models::Transformer<float>::Sample> sequences(std::size_t m) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> token(0, 6);
  std::vector<fu::models::Transformer<float>::Sample> out(m);
  for (auto& s : out) {
    s.tokens.resize(6);
    for (auto& t : s.tokens) t = token(rng);
  }
  return out;
}

template <class Estimator>
void check_same_bits(const Estimator& original, const fu::AnyFisher<float>& wrapped, Eigen::Index d) {
  const fu::Vector<float> v = random_vector<float>(d, 21);
  for (const double p : {-1.0, -0.5, -0.25, 1.0}) {
    if (!original.supports_power(p)) {
      CHECK_FALSE(wrapped.supports_power(p));
      continue;
    }
    CHECK(wrapped.supports_power(p));
    fu::Vector<float> a(d), b(d);
    original.apply_power(p, v, a);
    wrapped.apply_power(p, v, b);
    INFO("power " << p);
    CHECK((a.array() == b.array()).all());
  }
  CHECK(wrapped.dimension() == original.dimension());
  CHECK(wrapped.damping() == original.damping());
  CHECK(wrapped.num_gradients() == original.num_gradients());
  CHECK(wrapped.memory_bytes() == original.memory_bytes());
}

}  // namespace

TEST_CASE("AnyFisher: a wrapped K-FAC gives the estimator's own bits, trace and damping") {
  const auto model = small_transformer();
  const auto samples = sequences(9);
  fu::GradientCollection how;
  auto build = [&] {
    fu::KfacFisher<float> k(model, 0.05f);
    k.accumulate(model, std::span<const fu::models::Transformer<float>::Sample>(samples), how);
    k.finalize();
    return k;
  };
  const auto original = build();
  fu::AnyFisher<float> wrapped(build());
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  check_same_bits(original, wrapped, d);
  CHECK(wrapped.undamped_trace() == original.undamped_trace());
  CHECK(wrapped.undamped_trace() > 0.0);

  // set_damping reaches the wrapped estimator: the result is that of the estimator re-damped.
  auto redamped = build();
  redamped.set_damping(0.5f);
  wrapped.set_damping(0.5f);
  check_same_bits(redamped, wrapped, d);
}

/// A FisherEstimator without undamped_trace(): the diagonal one behind the bare concept.
struct NoTraceFisher {
  using Scalar = float;
  fu::DiagonalFisher<float> f;
  std::size_t dimension() const { return f.dimension(); }
  void add_gradient(Eigen::Ref<const fu::Vector<float>> g) { f.add_gradient(g); }
  void add_gradients(Eigen::Ref<const fu::Matrix<float>> g) { f.add_gradients(g); }
  void finalize() { f.finalize(); }
  void apply_power(double p, Eigen::Ref<const fu::Vector<float>> v, Eigen::Ref<fu::Vector<float>> out) const {
    f.apply_power(p, v, out);
  }
  bool supports_power(double p) const { return f.supports_power(p); }
  float damping() const { return f.damping(); }
  void set_damping(float lambda) { f.set_damping(lambda); }
  std::size_t memory_bytes() const { return f.memory_bytes(); }
  std::size_t num_gradients() const { return f.num_gradients(); }
  void clear() { f.clear(); }
};
static_assert(fu::FisherEstimator<NoTraceFisher>);

TEST_CASE("AnyFisher: Woodbury's own trace is forwarded; an estimator without one keeps the trace it was given") {
  const Eigen::Index d = 12;
  fu::Matrix<float> G(d, 4);
  for (Eigen::Index j = 0; j < G.cols(); ++j) G.col(j) = random_vector<float>(d, 100 + static_cast<std::uint64_t>(j));
  auto build = [&] {
    fu::WoodburyFisher<float> w(static_cast<std::size_t>(d), 0.1f);
    w.add_gradients(G);
    w.finalize();
    return w;
  };
  const auto original = build();
  fu::AnyFisher<float> wrapped(build(), 3.25);  // the estimator's own trace wins over the given one
  check_same_bits(original, wrapped, d);
  CHECK(wrapped.undamped_trace() == original.undamped_trace());
  CHECK(wrapped.undamped_trace() != 3.25);

  auto bare = [&] {
    NoTraceFisher n{fu::DiagonalFisher<float>(static_cast<std::size_t>(d), 0.1f)};
    n.add_gradients(G);
    n.finalize();
    return n;
  };
  const auto plain = bare();
  fu::AnyFisher<float> given(bare(), 3.25);
  check_same_bits(plain, given, d);
  CHECK(given.undamped_trace() == 3.25);
  fu::AnyFisher<float> none(bare());
  CHECK(std::isnan(none.undamped_trace()));
}

TEST_CASE("AnyFisher: feeding a wrapped estimator is refused with StateError and changes nothing") {
  const Eigen::Index d = 5;
  fu::DiagonalFisher<float> diag(static_cast<std::size_t>(d), 0.2f);
  diag.add_gradient(random_vector<float>(d, 3));
  diag.finalize();
  const fu::Vector<float> v = random_vector<float>(d, 4);
  fu::Vector<float> before(d), after(d);
  diag.apply_power(-1.0, v, before);
  fu::AnyFisher<float> wrapped(std::move(diag));
  fu::Vector<float> wrapped_before(d);
  wrapped.apply_power(-1.0, v, wrapped_before);
  CHECK((wrapped_before.array() == before.array()).all());
  CHECK_THROWS_AS(wrapped.add_gradient(v), fu::StateError);
  CHECK_THROWS_AS(wrapped.add_gradients(fu::Matrix<float>::Ones(d, 2)), fu::StateError);
  CHECK_THROWS_AS(wrapped.clear(), fu::StateError);
  CHECK_THROWS_WITH(wrapped.add_gradient(v), Catch::Contains("wraps a finalised estimator"));
  wrapped.apply_power(-1.0, v, after);
  CHECK((after.array() == before.array()).all());
  CHECK(wrapped.num_gradients() == 1);
}
