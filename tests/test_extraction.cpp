// extraction.hpp: a record's likelihood, greedy extraction, likelihood rank among candidates (mid-rank
// ties), the extraction rate over a passage and the membership score, on a table model whose answers are
// computed by hand and on a tiny random Llama against its full forward pass (double).
#include <catch2/catch.hpp>

#include "fisher_unlearn/extraction.hpp"
#include "fisher_unlearn/models/llama.hpp"
#include "fisher_unlearn/testing/table_language_model.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

namespace fu = fisher_unlearn;
using fu::Token;
using Table = fu::testing::TableLanguageModel<double>;
using Tokens = std::vector<Token>;

namespace {

// V = 4, rows depend on the previous token only (every position alike): p(· | prev) is row(prev).
// ln-probabilities chosen so that greedy from 0 goes 0 → 1 → 2 → 3 → 0 ...
Table cycle_model() {
  Table m(4, 1, fu::testing::TableContext::position_and_previous);
  const double rows[5][4] = {
      {std::log(0.1), std::log(0.6), std::log(0.2), std::log(0.1)},   // after 0: 1 most likely
      {std::log(0.1), std::log(0.1), std::log(0.7), std::log(0.1)},   // after 1: 2
      {std::log(0.2), std::log(0.1), std::log(0.1), std::log(0.6)},   // after 2: 3
      {std::log(0.4), std::log(0.4), std::log(0.1), std::log(0.1)},   // after 3: 0 and 1 tie -> 0
      {std::log(0.25), std::log(0.25), std::log(0.25), std::log(0.25)},  // empty context (unused)
  };
  for (std::size_t r = 0; r < 5; ++r) m.set_row(m.row_index(0, r == 4 ? -1 : static_cast<Token>(r)), rows[r]);
  return m;
}

fu::models::LlamaConfig tiny_config() {
  fu::models::LlamaConfig c;
  c.vocab_size = 13;
  c.context_length = 16;
  c.num_layers = 2;
  c.width = 16;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_width = 24;
  return c;
}

// ln P(continuation | prefix) by the full forward pass: one position_log_probs over the whole sequence.
double full_forward_log_prob(const fu::models::Llama<double>& m, const Tokens& prefix, const Tokens& cont) {
  Tokens all = prefix;
  all.insert(all.end(), cont.begin(), cont.end());
  const auto lp = m.position_log_probs(all);
  double s = 0.0;
  for (std::size_t j = 0; j < cont.size(); ++j)
    s += std::min(0.0, lp(cont[j], static_cast<Eigen::Index>(prefix.size() + j - 1)));
  return s;
}

}  // namespace

TEST_CASE("continuation_likelihood: equals the hand-computed product of the table's probabilities") {
  const Table m = cycle_model();
  const Tokens prefix{0}, cont{1, 2, 3};
  const auto r = fu::continuation_likelihood(m, prefix, cont);
  const double expected = std::log(0.6 * 0.7 * 0.6);
  CHECK(r.log_prob == Approx(expected).epsilon(1e-14));
  CHECK(r.tokens == 3);
  CHECK(r.mean_nll == Approx(-expected / 3).epsilon(1e-14));
  CHECK(r.log_perplexity_bits == Approx(-std::log2(0.6 * 0.7 * 0.6)).epsilon(1e-14));
  CHECK(r.evaluations == 3);
  // A different prefix changes the first factor only.
  CHECK(fu::continuation_likelihood(m, Tokens{3}, Tokens{1, 2}).log_prob == Approx(std::log(0.4 * 0.7)).epsilon(1e-14));
}

TEST_CASE("greedy_extraction: follows the argmax path, lowest token on ties, counts matches") {
  const Table m = cycle_model();
  SECTION("a memorised continuation is extracted") {
    const auto r = fu::greedy_extraction(m, Tokens{0}, Tokens{1, 2, 3, 0, 1});  // 3 -> {0, 1} tie -> 0
    CHECK(r.extracted);
    CHECK(r.tokens_matched == 5);
    CHECK(r.leading_tokens_matched == 5);
    CHECK(r.continuation == Tokens{1, 2, 3, 0, 1});
    CHECK(r.evaluations == 5);
  }
  SECTION("the tie after 3 resolves to the lower token: a target with 1 there is not extracted") {
    const auto r = fu::greedy_extraction(m, Tokens{0}, Tokens{1, 2, 3, 1});
    CHECK_FALSE(r.extracted);
    CHECK(r.tokens_matched == 3);
    CHECK(r.leading_tokens_matched == 3);
    CHECK(r.continuation == Tokens{1, 2, 3, 0});
  }
  SECTION("decoding is free-running: after a mismatch it continues from its own token") {
    // Greedy from 0 is 1 2 3 0; the target 2 2 3 0 differs at position 0 only.
    const auto r = fu::greedy_extraction(m, Tokens{0}, Tokens{2, 2, 3, 0});
    CHECK(r.continuation == Tokens{1, 2, 3, 0});
    CHECK(r.tokens_matched == 3);
    CHECK(r.leading_tokens_matched == 0);
    CHECK_FALSE(r.extracted);
  }
  SECTION("stop_at_first_mismatch stops after the first wrong token") {
    fu::GreedyExtractionOptions o;
    o.stop_at_first_mismatch = true;
    const auto r = fu::greedy_extraction(m, Tokens{0}, Tokens{1, 3, 3, 0}, o);
    CHECK(r.continuation == Tokens{1, 2});
    CHECK(r.tokens_matched == 1);
    CHECK(r.leading_tokens_matched == 1);
    CHECK(r.evaluations == 2);
  }
  CHECK(fu::greedy_decode(m, Tokens{2}, 3) == Tokens{3, 0, 1});
  CHECK(fu::greedy_decode(m, Tokens{2}, 0).empty());
}

TEST_CASE("continuation_rank: rank, mid-rank ties and exposure against hand-computed likelihoods") {
  const Table m = cycle_model();
  const Tokens prefix{0};
  // P(· | 0): 1 → .6, 2 → .2, 0 and 3 → .1 each. One-token candidates.
  const std::vector<Tokens> candidates{{0}, {2}, {3}, {1}};
  SECTION("the most likely continuation has rank 1") {
    const auto r = fu::continuation_rank(m, prefix, Tokens{1}, candidates);  // {1} is a duplicate: dropped
    CHECK(r.duplicates_dropped == 1);
    CHECK(r.set_size == 4);
    CHECK(r.rank == 1);
    CHECK(r.ties == 0);
    CHECK(r.mid_rank == 1.0);
    CHECK(r.exposure_bits == Approx(2.0));
    CHECK(r.percentile == Approx(0.125));
    CHECK(r.candidate_log_probs[1] == Approx(std::log(0.2)));
    CHECK(r.candidate_log_probs[3] == r.log_prob);
  }
  SECTION("a tie counts one half") {
    const auto r = fu::continuation_rank(m, prefix, Tokens{3}, candidates);  // ties with {0}
    CHECK(r.rank == 3);  // {1}, {2} more likely
    CHECK(r.ties == 1);
    CHECK(r.mid_rank == 3.5);
    CHECK(r.exposure_bits == Approx(2.0 - std::log2(3.5)));
  }
  SECTION("candidates of different lengths are ranked by the probability of the whole string") {
    // P(· | 0): {1,2} .42 > the record {1,2,3} .252 > {2} .2 > {3,0} .1·.4 = .04.
    const std::vector<Tokens> mixed{{1, 2}, {2}, {3, 0}};
    const auto r = fu::continuation_rank(m, prefix, Tokens{1, 2, 3}, mixed);
    CHECK(r.log_prob == Approx(std::log(0.252)));
    CHECK(r.rank == 2);
    CHECK(r.set_size == 4);
    CHECK(r.candidate_log_probs[2] == Approx(std::log(0.04)));
    // The shared leading token of {1, 2} and the record costs one evaluation: rows after 0, 1, 2 and 3.
    CHECK(r.evaluations == 4);
  }
  SECTION("no candidates: the record alone") {
    const auto r = fu::continuation_rank(m, prefix, Tokens{2}, std::span<const Tokens>{});
    CHECK(r.rank == 1);
    CHECK(r.set_size == 1);
    CHECK(r.exposure_bits == 0.0);
  }
}

TEST_CASE("extraction_rate: counts exactly the windows greedy decoding reproduces") {
  // Passage 0 1 2 3 0 1 2 3 1: greedy reproduces every transition except 3 -> 1 (the tie goes to 0).
  const Table m = cycle_model();
  const Tokens passage{0, 1, 2, 3, 0, 1, 2, 3, 1};
  const auto r = fu::extraction_rate(m, passage, 1, 3);
  // Windows: prefix at o, suffix o+1..o+3, o = 0..5. Window o fails iff it covers the last transition
  // (o + 3 = 8): only o = 5.
  CHECK(r.offsets == 6);
  CHECK(r.extracted == 5);
  CHECK(r.rate == Approx(5.0 / 6.0));
  CHECK(r.extracted_offsets == std::vector<std::size_t>{0, 1, 2, 3, 4});
  CHECK(r.mean_leading_tokens_matched == Approx((5 * 3 + 2) / 6.0));
  const auto strided = fu::extraction_rate(m, passage, 2, 2, 3);  // o = 0, 3 (o = 6 needs 10 tokens)
  CHECK(strided.offsets == 2);
  CHECK(strided.extracted == 2);
  CHECK_THROWS_AS(fu::extraction_rate(m, passage, 5, 5), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::extraction_rate(m, passage, 0, 5), fu::InvalidArgument);
}

TEST_CASE("record_mean_nll and record_membership_auc: the loss attack over token sequences") {
  const Table m = cycle_model();
  CHECK(fu::record_mean_nll(m, Tokens{0, 1, 2}) == Approx(-(std::log(0.6) + std::log(0.7)) / 2));
  CHECK(fu::record_mean_nll(m, Tokens{0, 1, 2}, 2) == Approx(-std::log(0.7)));
  // Members follow the cycle (low NLL), non-members go against it.
  const std::vector<Tokens> members{{0, 1, 2}, {1, 2, 3}, {2, 3, 0}};
  const std::vector<Tokens> nonmembers{{0, 3, 2}, {1, 0, 0}, {2, 2, 1}};
  const auto r = fu::record_membership_auc(m, members, nonmembers);
  CHECK(r.auc == 1.0);
  CHECK(fu::record_membership_auc(m, nonmembers, members).auc == 0.0);
  CHECK_THROWS_AS(fu::record_mean_nll(m, Tokens{0}), fu::InvalidArgument);
}

TEST_CASE("extraction: bad input throws typed errors naming the problem") {
  Table m = cycle_model();
  CHECK_THROWS_AS(fu::continuation_likelihood(m, Tokens{}, Tokens{1}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::continuation_likelihood(m, Tokens{0}, Tokens{}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::greedy_extraction(m, Tokens{0}, Tokens{7}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::continuation_rank(m, Tokens{0}, Tokens{1}, std::vector<Tokens>{{}}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::continuation_rank(m, Tokens{0}, Tokens{1}, std::vector<Tokens>{{-1}}), fu::InvalidArgument);
  const double nan_row[4] = {0.0, std::numeric_limits<double>::quiet_NaN(), -1.0, -2.0};
  m.set_row(m.row_index(0, 1), nan_row);
  CHECK_THROWS_AS(fu::greedy_extraction(m, Tokens{0}, Tokens{1, 2}), fu::NonFiniteError);
  CHECK_THROWS_AS(fu::continuation_likelihood(m, Tokens{0}, Tokens{1, 2}), fu::NonFiniteError);
}

TEST_CASE("extraction on a tiny random Llama equals its full forward pass (double)") {
  const fu::models::Llama<double> model(tiny_config(), {"all"}, 11);
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> pick(0, 12);
  auto draw = [&](std::size_t n) {
    Tokens t(n);
    for (auto& x : t) x = pick(rng);
    return t;
  };
  const Tokens prefix = draw(4);
  const Tokens cont = draw(5);
  SECTION("likelihood: the KV-cache path equals the full forward and the masked loss") {
    const auto r = fu::continuation_likelihood(model, prefix, cont);
    CHECK(r.log_prob == Approx(full_forward_log_prob(model, prefix, cont)).epsilon(1e-11));
    fu::models::Llama<double>::Sample s;
    s.tokens = prefix;
    s.tokens.insert(s.tokens.end(), cont.begin(), cont.end());
    s.weights.assign(s.tokens.size() - 1, 0.0);
    for (std::size_t j = 0; j < cont.size(); ++j) s.weights[prefix.size() - 1 + j] = 1.0;
    CHECK(-r.log_prob == Approx(model.loss(s)).epsilon(1e-11));
  }
  SECTION("greedy: each token is the argmax of the full forward at its position; its own output is extracted") {
    const Tokens g = fu::greedy_decode(model, prefix, 6);
    Tokens all = prefix;
    all.insert(all.end(), g.begin(), g.end());
    const auto lp = model.position_log_probs(all);
    for (std::size_t j = 0; j < g.size(); ++j) {
      Eigen::Index best = 0;
      lp.col(static_cast<Eigen::Index>(prefix.size() + j - 1)).maxCoeff(&best);
      CHECK(g[j] == static_cast<Token>(best));
    }
    CHECK(fu::greedy_extraction(model, prefix, g).extracted);
    Tokens wrong = g;
    wrong[3] = (wrong[3] + 1) % 13;
    const auto r = fu::greedy_extraction(model, prefix, wrong);
    CHECK_FALSE(r.extracted);
    CHECK(r.leading_tokens_matched == 3);
  }
  SECTION("rank equals a brute-force count over full-forward scores") {
    std::vector<Tokens> candidates;
    for (int i = 0; i < 30; ++i) candidates.push_back(draw(1 + static_cast<std::size_t>(i % 4)));
    const auto r = fu::continuation_rank(model, prefix, cont, candidates);
    const double mine = full_forward_log_prob(model, prefix, cont);
    std::uint64_t above = 0;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const double ref = full_forward_log_prob(model, prefix, candidates[i]);
      CHECK(r.candidate_log_probs[i] == Approx(ref).epsilon(1e-11));
      if (ref > mine) ++above;
    }
    CHECK(r.rank == 1 + above);
    CHECK(r.set_size == 31);
  }
}
