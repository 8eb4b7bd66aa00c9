// MeasuredRetainKl: equals the KL written out from next_token_log_probs on every prefix; zero for the
// reference itself; second order in the parameter change (halving δ quarters it); typed errors.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/retain_divergence.hpp"

#include <cmath>
#include <random>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Transformer;
using fu::models::TransformerConfig;

static_assert(fu::IncrementalLanguageModel<Transformer<float>>);

namespace {

Transformer<double> tiny(std::uint64_t seed) {
  TransformerConfig c;
  c.vocab_size = 7;
  c.context_length = 6;
  c.num_layers = 1;
  c.width = 8;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = seed;
  Transformer<double> m(c);
  std::mt19937_64 rng(seed + 5);
  std::normal_distribution<double> normal;
  for (double& t : m.parameters()) t += 0.3 * normal(rng);
  return m;
}

std::vector<std::vector<fu::Token>> sequences(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, 6), length(2, 6);
  std::vector<std::vector<fu::Token>> out(5);
  for (auto& s : out) {
    s.resize(static_cast<std::size_t>(length(rng)));
    for (auto& t : s) t = token(rng);
  }
  return out;
}

// Σ_t KL(p_a(·|x_<t) ‖ p_b(·|x_<t)) / positions, from next_token_log_probs on each prefix.
double reference_kl(const Transformer<double>& a, const Transformer<double>& b, const std::vector<std::vector<fu::Token>>& seqs) {
  double total = 0;
  std::size_t positions = 0;
  std::vector<double> la(7), lb(7);
  for (const auto& s : seqs)
    for (std::size_t t = 1; t < s.size(); ++t) {
      const std::span<const fu::Token> prefix(s.data(), t);
      a.next_token_log_probs(prefix, la);
      b.next_token_log_probs(prefix, lb);
      for (std::size_t v = 0; v < 7; ++v) total += std::exp(la[v]) * (la[v] - lb[v]);
      ++positions;
    }
  return total / static_cast<double>(positions);
}

}  // namespace

TEST_CASE("MeasuredRetainKl: equals the KL written out from every prefix, and is zero for the reference") {
  const auto a = tiny(3);
  const auto b = tiny(4);
  const auto seqs = sequences(11);
  const fu::MeasuredRetainKl<Transformer<double>> kl(a, seqs);
  std::size_t positions = 0;
  for (const auto& s : seqs) positions += s.size() - 1;
  CHECK(kl.positions() == positions);
  const double expected = reference_kl(a, b, seqs);
  REQUIRE(expected > 1e-3);
  CHECK(kl.measure(b) == Approx(expected).epsilon(1e-12));
  CHECK(kl.measure(a) == Approx(0.0).margin(1e-15));
}

TEST_CASE("MeasuredRetainKl: is second order in the parameter change (halving it quarters the KL)") {
  const auto a = tiny(5);
  const auto seqs = sequences(12);
  const fu::MeasuredRetainKl<Transformer<double>> kl(a, seqs);
  std::mt19937_64 rng(9);
  std::normal_distribution<double> normal;
  std::vector<double> direction(a.num_parameters());
  for (double& x : direction) x = normal(rng);
  const auto moved = [&](double eps) {
    Transformer<double> m = a;
    auto p = m.parameters();
    for (std::size_t i = 0; i < p.size(); ++i) p[i] += eps * direction[i];
    return kl.measure(m);
  };
  const double k1 = moved(1e-3), k2 = moved(5e-4);
  REQUIRE(k1 > 0);
  CHECK(k1 / k2 == Approx(4.0).epsilon(0.01));
}

TEST_CASE("MeasuredRetainKl: bad input raises typed errors") {
  const auto a = tiny(6);
  CHECK_THROWS_AS(fu::MeasuredRetainKl<Transformer<double>>(a, {}), fu::InvalidArgument);
  CHECK_THROWS_WITH(fu::MeasuredRetainKl<Transformer<double>>(a, {{1, 2}, {3}}), Catch::Contains("sequence 1"));
  TransformerConfig c = a.config();
  c.vocab_size = 9;
  const Transformer<double> other(c);
  const fu::MeasuredRetainKl<Transformer<double>> kl(a, {{1, 2, 3}});
  CHECK_THROWS_AS(kl.measure(other), fu::InvalidArgument);
}
