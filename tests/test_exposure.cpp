// Exposure: exhaustive, pruned and extrapolated estimators against ranks known by hand, by a closed-form
// count, and by an independent brute-force scorer over table-driven language models.
#include <catch2/catch.hpp>

#include "exposure_fixtures.hpp"
#include "exposure_models.hpp"
#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/testing/table_language_model.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>
#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using exposure_fixtures::CharTokenizer;
using exposure_fixtures::MergingDigitTokenizer;
using exposure_fixtures::SpaceDigitTokenizer;
using fu::testing::TableContext;
using fu::testing::TableLanguageModel;
using exposure_models::reference_rank;
using exposure_models::reference_score;
using exposure_models::reference_scores;

namespace {

/// A byte-level table model whose row at each position is given by (symbol, probability) pairs; the
/// remaining mass is spread evenly over the other bytes.
void set_byte_row(TableLanguageModel<double>& m, std::size_t position, const std::vector<std::pair<char, double>>& probs) {
  std::vector<double> row(256);
  double used = 0.0;
  for (const auto& [c, p] : probs) used += p;
  const double rest = (1.0 - used) / static_cast<double>(256 - probs.size());
  for (auto& v : row) v = std::log(rest);
  for (const auto& [c, p] : probs) row[static_cast<unsigned char>(c)] = std::log(p);
  m.set_row(m.row_index(position, -1), row);
}

/// Wraps a model, hiding its incremental decoding: exercises the next_token_log_probs path.
template <class Inner>
struct PlainLanguageModel {
  using Scalar = typename Inner::Scalar;
  using Sample = typename Inner::Sample;
  Inner* inner;
  std::size_t num_parameters() const { return inner->num_parameters(); }
  std::span<Scalar> parameters() { return inner->parameters(); }
  std::span<const Scalar> parameters() const { return std::as_const(*inner).parameters(); }
  Scalar loss(const Sample& s) const { return inner->loss(s); }
  std::size_t vocab_size() const { return inner->vocab_size(); }
  void next_token_log_probs(std::span<const fu::Token> context, std::span<Scalar> out) const {
    inner->next_token_log_probs(context, out);
  }
};

/// Only what exposure uses: a Scalar, a vocabulary and next-token log-probabilities (no parameters,
/// Sample or loss), e.g. a frozen model behind another library's API.
struct ScorerOnly {
  using Scalar = double;
  const TableLanguageModel<double>* inner;
  std::size_t vocab_size() const { return inner->vocab_size(); }
  void next_token_log_probs(std::span<const fu::Token> context, std::span<double> out) const {
    inner->next_token_log_probs(context, out);
  }
};
struct NoVocabulary {
  using Scalar = double;
  void next_token_log_probs(std::span<const fu::Token>, std::span<double>) const {}
};
struct IntegerScores {
  using Scalar = int;
  std::size_t vocab_size() const { return 2; }
  void next_token_log_probs(std::span<const fu::Token>, std::span<int>) const {}
};

struct NotAMetric {
  std::string name() const { return "nothing"; }
};

}  // namespace

static_assert(fu::LanguageModel<PlainLanguageModel<TableLanguageModel<double>>>);
static_assert(!fu::IncrementalLanguageModel<PlainLanguageModel<TableLanguageModel<double>>>);
static_assert(fu::ExposureMetric<fu::ExhaustiveExposure, TableLanguageModel<double>>);
static_assert(fu::ExposureMetric<fu::PrunedExposure, TableLanguageModel<float>>);
static_assert(fu::ExposureMetric<fu::ExtrapolatedExposure, PlainLanguageModel<TableLanguageModel<double>>>);
static_assert(!fu::ExposureMetric<NotAMetric, TableLanguageModel<double>>);
static_assert(!fu::ExposureMetric<fu::PrunedExposure, int>);
// LanguageModel asks for what exposure uses, not for the whole Model concept (issue 15).
static_assert(fu::LanguageModel<ScorerOnly>);
static_assert(!fu::Model<ScorerOnly>);
static_assert(fu::ExposureMetric<fu::PrunedExposure, ScorerOnly>);
static_assert(fu::ExposureMetric<fu::ExtrapolatedExposure, ScorerOnly>);
static_assert(fu::LanguageModel<TableLanguageModel<double>> && fu::LanguageModel<TableLanguageModel<float>>);
static_assert(!fu::LanguageModel<NoVocabulary>);
static_assert(!fu::LanguageModel<IntegerScores>);
static_assert(!fu::LanguageModel<int>);

TEST_CASE("Exposure: a model that gives every candidate the same probability reads as chance, not as maximal exposure") {
  // Uniform rows: all 1000 candidates tie. Mid-rank (1 + 1000)/2 = 500.5, exposure log2(1000/500.5)
  // = 0.9986 bits; the interval over tie-breakings is [log2(1000/1000), log2(1000/1)] = [0, 9.97].
  TableLanguageModel<double> m(256, 4, TableContext::position);
  const fu::CanaryFormat f = fu::CanaryFormat::digits("x", 3);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  for (const char* secret : {"000", "517", "999"})
    for (const fu::ExposureResult& r : {fu::ExhaustiveExposure{}.measure(m, space, f.parse_secret(secret)),
                                        fu::PrunedExposure{}.measure(m, space, f.parse_secret(secret))}) {
      INFO(r);
      CHECK(r.rank == 1);
      CHECK(r.ties == 999);
      CHECK(r.mid_rank == 500.5);
      CHECK(r.exposure_bits == Approx(std::log2(1000.0 / 500.5)).epsilon(1e-14));
      CHECK(r.exposure_low == Approx(0.0).margin(1e-14));
      CHECK(r.exposure_high == Approx(std::log2(1000.0)).epsilon(1e-14));
    }
}

TEST_CASE("Exposure: exact estimators reproduce ranks counted by hand, ties included") {
  // P(first) = .45/.27/.18 for a/b/c, P(second) = .18/.18/.54: products in order
  //   ac .243 (1), bc .1458 (2), cc .0972 (3), aa = ab .081 (4, tied), ba = bb .0486 (6), ca = cb .0324 (8).
  TableLanguageModel<double> m(256, 3, TableContext::position);
  set_byte_row(m, 1, {{'a', .45}, {'b', .27}, {'c', .18}});
  set_byte_row(m, 2, {{'a', .18}, {'b', .18}, {'c', .54}});
  const fu::CanaryFormat f("x", {fu::CanarySlot::from_chars("abc"), fu::CanarySlot::from_chars("abc")});
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>> expected = {
      {"ac", 1, 0}, {"bc", 2, 0}, {"cc", 3, 0}, {"aa", 4, 1}, {"ab", 4, 1},
      {"ba", 6, 1}, {"bb", 6, 1}, {"ca", 8, 1}, {"cb", 8, 1}};
  for (const auto& [secret, rank, ties] : expected) {
    const auto c = f.parse_secret(secret);
    for (const fu::ExposureResult& r : {fu::ExhaustiveExposure{}.measure(m, space, c), fu::PrunedExposure{}.measure(m, space, c)}) {
      INFO(r);
      CHECK(r.exact);
      CHECK(r.rank == rank);
      CHECK(r.ties == ties);
      // mid-rank: the tied pair shares ranks r and r + 1, so each gets r + 1/2
      const double mid = static_cast<double>(rank) + 0.5 * static_cast<double>(ties);
      CHECK(r.mid_rank == mid);
      CHECK(r.exposure_bits == Approx(std::log2(9.0) - std::log2(mid)).epsilon(1e-14));
      CHECK(r.exposure_high == Approx(std::log2(9.0) - std::log2(static_cast<double>(rank))).epsilon(1e-14));
      CHECK(r.exposure_low == Approx(std::log2(9.0) - std::log2(static_cast<double>(rank + ties))).epsilon(1e-14));
      CHECK(r.log_perplexity_bits == Approx(-std::log2(std::exp(reference_score(m, space, c)))).epsilon(1e-12));
      CHECK(r.space_size == 9u);
    }
  }
  // For "ac", the partial "c" (.18) is already below .243: one of the three first-slot rows is skipped.
  m.reset_evaluations();
  const auto ex = fu::ExhaustiveExposure{}.measure(m, space, f.parse_secret("ac"));
  CHECK(ex.evaluations == m.evaluations());
  CHECK(ex.evaluations == 4);  // the prefix row and one row per first symbol
  m.reset_evaluations();
  const auto pr = fu::PrunedExposure{}.measure(m, space, f.parse_secret("ac"));
  CHECK(pr.evaluations == m.evaluations());
  CHECK(pr.evaluations == 3);
  CHECK(pr.candidates_scored == 6);
}

TEST_CASE("Exposure: all three estimators agree with ranks known by construction on 10^5 candidates") {
  exposure_models::check_ranks_known_by_construction(5);
}

TEST_CASE("Exposure: extrapolation is within 1 bit of exact for ranks between 10 and |R|/10 on 10^5 bell-shaped scores") {
  exposure_models::check_extrapolation_within_one_bit(5);
}

TEST_CASE("Exposure: pruned equals exhaustive on 240 random models and canaries, with fewer evaluations in the top 1%") {
  std::mt19937_64 rng(20240611);
  const std::string letters = "abcdefghij", digits = "0123456789";
  std::size_t top_percent_cases = 0, multi_token_cases = 0;
  for (int trial = 0; trial < 240; ++trial) {
    const int k = 2 + static_cast<int>(rng() % 3);
    std::vector<fu::CanarySlot> slots;
    for (int s = 0; s < k; ++s) {
      const std::size_t size = 2 + rng() % 7;
      fu::CanarySlot slot;
      const std::string& pool = (rng() % 2) ? letters : digits;
      if (rng() % 4 == 0) {  // two-character symbols: two tokens each
        for (std::size_t a = 0; a < size; ++a) slot.symbols.push_back(std::string{pool[a], digits[(a * 3 + 1) % 10]});
      } else {
        for (std::size_t a = 0; a < size; ++a) slot.symbols.emplace_back(1, pool[(a + trial) % 10]);
      }
      if (rng() % 5 == 0) slot.before = "-";
      slots.push_back(slot);
    }
    const fu::CanaryFormat f("ab:", slots);
    const fu::CanarySpace space(f, CharTokenizer{});
    REQUIRE(space.tokens_extend());
    if (space.max_secret_tokens() > static_cast<std::size_t>(k)) ++multi_token_cases;
    const double temperature = std::array{0.3, 0.7, 1.5}[trial % 3];
    auto m = TableLanguageModel<double>::random(CharTokenizer{}.vocab_size(), 4 + space.max_secret_tokens(),
                                                TableContext::position_and_previous, rng(), temperature);
    const auto scores = reference_scores(m, space);
    const std::uint64_t n = f.space_size();
    fu::Canary canary;
    if (trial % 2 == 0 && n >= 100) {  // a canary among the most likely 1%
      std::vector<std::uint64_t> order(n);
      for (std::uint64_t i = 0; i < n; ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](auto a, auto b) { return scores[a] > scores[b]; });
      canary = f.canary_at(order[rng() % (n / 100)]);
    } else {
      canary = f.generate(rng);
    }
    const auto ref = reference_rank(scores, reference_score(m, space, canary));
    m.reset_evaluations();
    const auto ex = fu::ExhaustiveExposure{}.measure(m, space, canary);
    CHECK(ex.evaluations == m.evaluations());
    m.reset_evaluations();
    const auto pr = fu::PrunedExposure{}.measure(m, space, canary);
    CHECK(pr.evaluations == m.evaluations());
    INFO("trial " << trial << " |R| = " << n << "\n" << ex << "\n" << pr);
    CHECK(ex.rank == ref.rank);
    CHECK(ex.ties == ref.ties);
    CHECK(pr.rank == ex.rank);
    CHECK(pr.ties == ex.ties);
    CHECK(pr.exposure_bits == ex.exposure_bits);
    CHECK(pr.log_perplexity_bits == ex.log_perplexity_bits);
    CHECK(ex.candidates_scored == n);
    CHECK_FALSE(pr.fell_back_to_exhaustive);
    if (n >= 100 && ex.rank <= n / 100) {
      ++top_percent_cases;
      CHECK(pr.evaluations < ex.evaluations);
    }
  }
  CHECK(top_percent_cases >= 40);
  CHECK(multi_token_cases >= 30);
}

TEST_CASE("Exposure: a model without incremental decoding gives the same ranks and evaluation counts") {
  auto m = TableLanguageModel<double>::random(CharTokenizer{}.vocab_size(), 8, TableContext::position_and_previous, 5);
  PlainLanguageModel<TableLanguageModel<double>> plain{&m};
  const fu::CanaryFormat f("ab", {fu::CanarySlot::from_chars("abcdef"), fu::CanarySlot{{"0a", "1b", "2c"}, "-"},
                                  fu::CanarySlot::digits()});
  const fu::CanarySpace space(f, CharTokenizer{});
  for (const auto& c : f.generate(9, 6)) {
    const auto a = fu::PrunedExposure{}.measure(m, space, c);
    const auto b = fu::PrunedExposure{}.measure(plain, space, c);
    const auto e = fu::ExhaustiveExposure{}.measure(plain, space, c);
    CHECK(a.rank == b.rank);
    CHECK(a.evaluations == b.evaluations);
    CHECK(e.rank == b.rank);
    CHECK(a.log_perplexity_bits == b.log_perplexity_bits);
  }
}

TEST_CASE("Exposure: float models are scored in double and both exact estimators agree with the reference") {
  std::mt19937_64 rng(77);
  for (int trial = 0; trial < 20; ++trial) {
    auto m = TableLanguageModel<float>::random(CharTokenizer{}.vocab_size(), 8, TableContext::position_and_previous, rng(), 0.5);
    const fu::CanaryFormat f("a:", {fu::CanarySlot::from_chars("abcdefgh"), fu::CanarySlot::digits(),
                                    fu::CanarySlot::from_chars("0123")});
    const fu::CanarySpace space(f, CharTokenizer{});
    const auto scores = reference_scores(m, space);
    const auto c = f.generate(rng);
    const auto ref = reference_rank(scores, reference_score(m, space, c));
    const auto ex = fu::ExhaustiveExposure{}.measure(m, space, c);
    const auto pr = fu::PrunedExposure{}.measure(m, space, c);
    CHECK(ex.rank == ref.rank);
    CHECK(pr.rank == ref.rank);
    CHECK(pr.ties == ref.ties);
  }
}

TEST_CASE("Exposure: scores that round differently are ordered by their doubles, identically in both walks") {
  // (−0.1 + −0.2) + −0.35 = −0.65 but (−0.1 + −0.35) + −0.2 = −0.6499999999999999: "abb" is strictly
  // more likely than "aaa" by one rounding; "aac" ties "aaa" bitwise.
  const double p = -0.1, q = -0.2, r = -0.35;
  REQUIRE((p + q) + r != (p + r) + q);
  TableLanguageModel<double> m(CharTokenizer{}.vocab_size(), 3, TableContext::position);
  const CharTokenizer tok;
  auto row = [&](std::size_t pos, std::vector<std::pair<char, double>> entries) {
    std::vector<double> v(tok.vocab_size(), -50.0);
    for (auto [c, lp] : entries) v[static_cast<std::size_t>(tok.encode(std::string(1, c))[0])] = lp;
    m.set_row(m.row_index(pos, -1), v);
  };
  row(0, {{'a', p}, {'b', -5.0}});
  row(1, {{'a', q}, {'b', r}, {'c', -4.0}});
  row(2, {{'a', r}, {'b', q}, {'c', r}});
  const fu::CanaryFormat f("", std::vector<fu::CanarySlot>(3, fu::CanarySlot::from_chars("abc")));
  const fu::CanarySpace space(f, tok);
  const auto aaa = f.parse_secret("aaa");
  for (const auto& res : {fu::ExhaustiveExposure{}.measure(m, space, aaa), fu::PrunedExposure{}.measure(m, space, aaa)}) {
    INFO(res);
    CHECK(res.rank == 3);  // aab (−0.5) and abb (−0.6499999999999999) are strictly more likely
    CHECK(res.ties == 1);  // aac
  }
  const auto abb = fu::PrunedExposure{}.measure(m, space, f.parse_secret("abb"));
  CHECK(abb.rank == 2);
  CHECK(abb.ties == 0);
}

TEST_CASE("Exposure: a candidate whose partial score equals the canary's is expanded, so ties at the bound count") {
  // Canary "aa": −0.5 + −0.5 = −1 exactly. Candidate "b?": partial −1 exactly, then a log-probability of 0
  // (after clamping a slightly positive value), so "ba" ties the canary; "bb" is below.
  const CharTokenizer tok;
  TableLanguageModel<double> m(tok.vocab_size(), 3, TableContext::position_and_previous);
  auto id = [&](char c) { return static_cast<std::size_t>(tok.encode(std::string(1, c))[0]); };
  std::vector<double> r0(tok.vocab_size(), -60.0), ra(tok.vocab_size(), -60.0), rb(tok.vocab_size(), -60.0);
  r0[id('a')] = -0.5;
  r0[id('b')] = -1.0;
  ra[id('a')] = -0.5;
  ra[id('b')] = -2.0;
  rb[id('a')] = 1e-9;  // slightly positive: a rounding artefact, clamped to 0
  rb[id('b')] = -3.0;
  m.set_row(m.row_index(0, -1), r0);
  m.set_row(m.row_index(1, static_cast<fu::Token>(id('a'))), ra);
  m.set_row(m.row_index(1, static_cast<fu::Token>(id('b'))), rb);
  const fu::CanaryFormat f("", std::vector<fu::CanarySlot>(2, fu::CanarySlot::from_chars("ab")));
  const fu::CanarySpace space(f, tok);
  const auto ex = fu::ExhaustiveExposure{}.measure(m, space, f.parse_secret("aa"));
  const auto pr = fu::PrunedExposure{}.measure(m, space, f.parse_secret("aa"));
  CHECK(ex.rank == 1);
  CHECK(ex.ties == 1);
  CHECK(pr.rank == 1);
  CHECK(pr.ties == 1);
  // The clamp is part of the definition: "ba" scores exactly −1, i.e. 1/ln 2 bits of log-perplexity.
  CHECK(fu::canary_log_perplexity_bits(m, space, f.parse_secret("ba")) == 1.0 / std::numbers::ln2);
  const auto ba = fu::PrunedExposure{}.measure(m, space, f.parse_secret("ba"));
  CHECK(ba.rank == 1);
  CHECK(ba.ties == 1);
}

TEST_CASE("Exposure: a tokenizer that merges digits makes the pruned search fall back to the exhaustive walk") {
  const MergingDigitTokenizer tok;
  auto m = TableLanguageModel<double>::random(tok.vocab_size(), 12, TableContext::position, 31, 0.5);
  const auto f = fu::CanaryFormat::digits("pin ", 3);
  const fu::CanarySpace space(f, tok);
  REQUIRE_FALSE(space.tokens_extend());
  const auto scores = reference_scores(m, space);
  for (const auto& c : f.generate(4, 5)) {
    const auto ref = reference_rank(scores, reference_score(m, space, c));
    const auto ex = fu::ExhaustiveExposure{}.measure(m, space, c);
    m.reset_evaluations();
    const auto pr = fu::PrunedExposure{}.measure(m, space, c);
    INFO(pr);
    CHECK(pr.fell_back_to_exhaustive);
    CHECK_THAT(pr.notes, Catch::Contains("token-extension"));
    CHECK(pr.rank == ref.rank);
    CHECK(ex.rank == ref.rank);
    CHECK(pr.ties == ref.ties);
    CHECK(pr.evaluations == ex.evaluations);
    CHECK(pr.evaluations == m.evaluations());
    CHECK(pr.candidates_scored == 1000u);
  }
}

TEST_CASE("Exposure: a canary memorised under a tokenizer that merges across the prefix boundary is found at rank 1") {
  // The model memorised the canary's tokens as training saw them, encode("my pin is 4821") = ... [ 4] 8 2 1:
  // along that path every next token has probability 0.9 (rows keyed by position and previous token),
  // elsewhere random. Scoring the secret's own tokens (4 8 2 1) after encode("my pin is ") (which ends in a
  // lone space) misses the path entirely: that is how 12.9 bits were reported for a canary planted 50 times.
  const SpaceDigitTokenizer tok;
  const auto f = fu::CanaryFormat::digits("my pin is ", 4);
  const fu::CanarySpace space(f, tok);
  const fu::Canary canary = f.parse("my pin is 4821");
  const std::vector<fu::Token> planted = tok.encode("my pin is 4821");
  REQUIRE(space.full_text());
  REQUIRE_FALSE(space.prefix_boundary_consistent());
  CHECK(space.tokens(canary) == planted);
  CHECK(space.prefix_tokens().size() == 9);  // "my pin is" without the space that merges with the digit

  auto m = TableLanguageModel<double>::random(tok.vocab_size(), 16, TableContext::position_and_previous, 17, 0.3);
  for (std::size_t j = 1; j < planted.size(); ++j) {
    std::vector<double> row(tok.vocab_size(), std::log(0.1 / static_cast<double>(tok.vocab_size() - 1)));
    row[static_cast<std::size_t>(planted[j])] = std::log(0.9);
    m.set_row(m.row_index(j, planted[j - 1]), row);
  }
  const auto scores = reference_scores(m, space);
  const auto ref = reference_rank(scores, reference_score(m, space, canary));
  CHECK(ref.rank == 1);
  const auto ex = fu::ExhaustiveExposure{}.measure(m, space, canary);
  const auto pr = fu::PrunedExposure{}.measure(m, space, canary);
  INFO(ex << "\n" << pr);
  CHECK(ex.rank == 1);
  CHECK(ex.exposure_bits == Approx(f.log2_space_size()));
  CHECK(pr.rank == 1);
  CHECK(pr.fell_back_to_exhaustive);
  CHECK_THAT(pr.notes, Catch::Contains("full text"));
  // Every other candidate is ranked by its own full-text tokenization too (against the reference).
  for (const auto& c : f.generate(5, 9)) {
    const auto r = fu::PrunedExposure{}.measure(m, space, c);
    CHECK(r.rank == reference_rank(scores, reference_score(m, space, c)).rank);
  }
  // The separate-encoding score the old definition used misses the memorised path.
  const std::vector<fu::Token> alone = tok.encode("my pin is ");
  double separate = 0, full = 0;
  std::vector<double> lp(tok.vocab_size());
  std::vector<fu::Token> ctx = alone;
  for (fu::Token t : tok.encode("4821")) {
    m.next_token_log_probs(ctx, lp);
    separate += lp[static_cast<std::size_t>(t)];
    ctx.push_back(t);
  }
  full = reference_score(m, space, canary);
  CHECK(full > separate + 5.0);
}

namespace {

/// Adds `noise`·(call count mod 7) to every log-probability: a model whose results depend on the call path.
struct NoisyModel {
  using Scalar = double;
  using Sample = std::vector<fu::Token>;
  using DecodeState = TableLanguageModel<double>::DecodeState;
  TableLanguageModel<double>* inner;
  double noise;
  mutable std::uint64_t calls = 0;
  std::size_t vocab_size() const { return inner->vocab_size(); }
  std::size_t num_parameters() const { return inner->num_parameters(); }
  std::span<double> parameters() { return inner->parameters(); }
  std::span<const double> parameters() const { return std::as_const(*inner).parameters(); }
  double loss(const Sample& s) const { return inner->loss(s); }
  void next_token_log_probs(std::span<const fu::Token> c, std::span<double> out) const {
    inner->next_token_log_probs(c, out);
    perturb(out);
  }
  DecodeState begin_decode(std::span<const fu::Token> c) const { return inner->begin_decode(c); }
  void advance(DecodeState& st, fu::Token t) const { inner->advance(st, t); }
  void log_probs(const DecodeState& st, std::span<double> out) const {
    inner->log_probs(st, out);
    perturb(out);
  }
  void perturb(std::span<double> out) const {
    const double d = noise * static_cast<double>(calls++ % 7);
    for (auto& v : out) v -= d;
  }
};

}  // namespace

TEST_CASE("Exposure: call-path noise in the last bits is tolerated, a model that is not deterministic throws") {
  auto m = TableLanguageModel<double>::random(CharTokenizer{}.vocab_size(), 8, TableContext::position_and_previous, 3);
  const fu::CanaryFormat f("ab", {fu::CanarySlot::from_chars("abcdef"), fu::CanarySlot::digits(),
                                  fu::CanarySlot::from_chars("0123")});
  const fu::CanarySpace space(f, CharTokenizer{});
  const auto c = f.generate(1, 1)[0];
  const auto exact = fu::PrunedExposure{}.measure(m, space, c);
  NoisyModel last_bits{&m, 1e-15};
  const auto r = fu::PrunedExposure{}.measure(last_bits, space, c);
  CHECK(r.rank >= exact.rank - std::min<std::uint64_t>(exact.rank - 1, 2));
  CHECK(r.rank <= exact.rank + 2);
  NoisyModel broken{&m, 1e-3};
  CHECK_THROWS_AS(fu::PrunedExposure{}.measure(broken, space, c), fu::NumericalError);
  CHECK_THROWS_AS(fu::ExhaustiveExposure{}.measure(broken, space, c), fu::NumericalError);
}

TEST_CASE("Exposure: a memorised canary among 10^9 candidates gets its exact rank from a few dozen evaluations") {
  const auto f = fu::CanaryFormat::digits("card ", 9);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  CHECK_FALSE(space.extension_checked_exhaustively());  // 10^9 > the exhaustive-check limit: sampled check
  CHECK(space.tokens_extend());
  auto m = TableLanguageModel<double>::random(256, 5 + 9 + 1, TableContext::position_and_previous, 21);
  const auto canary = f.parse_secret("314159265");
  const auto toks = space.tokens(canary);
  // Plant it: +14 on each secret token's logit given its predecessor, so every deviation from the
  // canary's path costs more than the whole canary does and its rank is 1.
  for (std::size_t j = 5; j < toks.size(); ++j) {
    const auto r = m.row_index(j, toks[j - 1]);
    std::vector<double> logits(m.row(r).begin(), m.row(r).end());
    logits[static_cast<std::size_t>(toks[j])] += 14.0;
    m.set_row_logits(r, logits);
  }
  m.reset_evaluations();
  const auto r = fu::PrunedExposure{}.measure(m, space, canary);
  INFO(r);
  CHECK(r.rank == 1);
  CHECK(r.exposure_bits == Approx(std::log2(1e9)).epsilon(1e-15));
  CHECK(r.evaluations == m.evaluations());
  CHECK(r.evaluations <= 20);
  CHECK(r.candidates_scored <= 100);
}

TEST_CASE("ExtrapolationFit: the sample rank interpolates the empirical CDF between order statistics") {
  std::vector<double> samples(32);
  for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = 10.0 + static_cast<double>(i) + 0.01 * static_cast<double>(i * i);
  fu::ExtrapolationOptions opt;
  opt.bootstrap = 5;
  const fu::ExtrapolationFit fit(samples, 1000001, std::log2(1000001.0), opt, 0);
  CHECK(fit.sample_rank(5.0) == 1.0);                      // more likely than every sample
  CHECK(fit.sample_rank(100.0) == 1000001.0);              // less likely than every sample
  CHECK(fit.sample_rank(samples[3]) == Approx(1.0 + 3.5 / 32.0 * 1e6));  // (i − ½)/N at the 4th sample
  const double mid = 0.5 * (samples[3] + samples[4]);
  CHECK(fit.sample_rank(mid) == Approx(1.0 + 4.0 / 32.0 * 1e6));
  const auto r = fit.evaluate(5.0);
  CHECK_THAT(r.notes, Catch::Contains("more likely than every sample"));
  CHECK(r.exposure_low <= r.exposure_high);
  CHECK(fit.bootstrap_fits().size() == 5);
  std::vector<double> with_inf = samples;
  with_inf[7] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(fu::ExtrapolationFit(with_inf, 100, std::log2(100.0), opt, 0), fu::NonFiniteError);
}

TEST_CASE("SkewNormal: the CDF matches closed forms far into both tails") {
  using fu::detail::SkewNormal;
  for (double z : {-30.0, -8.0, -2.5, -0.3, 0.0, 0.7, 3.0, 9.0}) {
    const double phi = 0.5 * std::erfc(-z / std::numbers::sqrt2);
    // α = 0: the normal; α = 1: Φ(z)²; α = −1: 1 − Φ(−z)².
    CHECK(SkewNormal{0, 1, 0}.log_cdf(z) == Approx(fu::detail::log_normal_cdf(z)).epsilon(1e-9));
    CHECK(SkewNormal{0, 1, 1}.log_cdf(z) == Approx(2.0 * fu::detail::log_normal_cdf(z)).epsilon(1e-9));
    // 1 − Φ(−z)² = Φ(z)(2 − Φ(z)), in logs so that the far left tail is compared too.
    CHECK(SkewNormal{0, 1, -1}.log_cdf(z) ==
          Approx(fu::detail::log_normal_cdf(z) + std::log(2.0 - phi)).epsilon(1e-9).margin(1e-15));
  }
  for (double a : {-20.0, -3.0, -0.5, 0.5, 2.0, 10.0, 45.0})  // F(ξ) = 1/2 − atan(α)/π
    CHECK(SkewNormal{1.5, 2.0, a}.cdf(1.5) == Approx(0.5 - std::atan(a) / std::numbers::pi).epsilon(1e-9));
  // Scale and location: F(x; ξ, ω, α) = F((x − ξ)/ω; 0, 1, α).
  CHECK(SkewNormal{3.0, 0.5, 4.0}.log_cdf(2.2) == Approx(SkewNormal{0, 1, 4.0}.log_cdf(-1.6)).epsilon(1e-12));
  CHECK(fu::detail::log_normal_cdf(-40.0) == Approx(-804.6084420137538).epsilon(1e-12));
}

TEST_CASE("SkewNormal: maximum likelihood recovers the parameters of a large sample") {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (double alpha : {-4.0, 0.0, 2.0}) {
    const double delta = alpha / std::sqrt(1.0 + alpha * alpha);
    std::vector<double> x(20000);
    for (auto& v : x) v = 10.0 + 3.0 * (delta * std::abs(normal(rng)) + std::sqrt(1.0 - delta * delta) * normal(rng));
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= x.size();
    for (double v : x) var += (v - mean) * (v - mean);
    const double sd = std::sqrt(var / x.size());
    for (auto& v : x) v = (v - mean) / sd;
    const auto fit = fu::detail::fit_skew_normal_standardised(x);
    const double loc = mean + sd * fit.location, scale = sd * fit.scale;
    INFO("alpha " << alpha << ": fitted " << loc << " " << scale << " " << fit.shape);
    if (alpha != 0.0) {
      CHECK(std::abs(loc - 10.0) < 0.15);
      CHECK(std::abs(scale - 3.0) < 0.15);
      CHECK(std::abs(fit.shape - alpha) < 0.25 * std::abs(alpha) + 0.3);
    } else {
      CHECK(std::abs(fit.shape) < 0.8);  // the shape is weakly identified at 0
    }
    // The fitted NLL is no worse than at the true parameters (a local search would also find them).
    const double truth = fu::detail::skew_normal_nll(x, {(10.0 - mean) / sd, std::log(3.0 / sd), alpha});
    CHECK(fu::detail::skew_normal_nll(x, {fit.location, std::log(fit.scale), fit.shape}) <= truth + 1e-9);
  }
}

TEST_CASE("Exposure: bad input throws typed errors") {
  auto m = TableLanguageModel<double>::random(256, 12, TableContext::position, 1);
  const auto f = fu::CanaryFormat::digits("pin ", 3);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const fu::Canary outside{{1, 2, 11}};
  CHECK_THROWS_AS(fu::ExhaustiveExposure{}.measure(m, space, outside), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::PrunedExposure{}.measure(m, space, outside), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::ExtrapolatedExposure{}.measure(m, space, outside), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::PrunedExposure{}.measure(m, space, fu::Canary{{1, 2}}), fu::InvalidArgument);

  // Tokens outside the model's vocabulary: a byte tokenizer against a 23-token model.
  auto small = TableLanguageModel<double>::random(23, 12, TableContext::position, 1);
  CHECK_THROWS_AS(fu::PrunedExposure{}.measure(small, space, f.canary_at(5)), fu::InvalidArgument);

  // NaN in the model.
  auto nan_model = m;
  nan_model.parameters()[m.row_index(5, -1) * 256 + '3'] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(fu::ExhaustiveExposure{}.measure(nan_model, space, f.canary_at(5)), fu::NonFiniteError);

  fu::ExtrapolationOptions few;
  few.samples = 8;
  CHECK_THROWS_AS(fu::ExtrapolatedExposure(few), fu::InvalidArgument);
  fu::ExtrapolationOptions bad_conf;
  bad_conf.confidence = 1.0;
  CHECK_THROWS_AS(fu::ExtrapolatedExposure(bad_conf), fu::InvalidArgument);
  // A model under which every candidate is equally likely leaves nothing to fit.
  TableLanguageModel<double> uniform(256, 12, TableContext::position);
  CHECK_THROWS_AS(fu::ExtrapolatedExposure{}.fit(uniform, space), fu::NumericalError);
  CHECK_THROWS_AS(fu::exposure_from_rank(0, 10), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::exposure_from_rank(11, 10), fu::InvalidArgument);
  CHECK(fu::exposure_from_rank(1, 1024) == 10.0);
}

TEST_CASE("Exposure: a scorer without parameters or loss is measured like the model it wraps") {
  auto m = TableLanguageModel<double>::random(256, 6, TableContext::position_and_previous, 77);
  const ScorerOnly scorer{&m};
  const auto f = fu::CanaryFormat::digits("id ", 3);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const auto c = f.canary_at(314);
  const auto a = fu::PrunedExposure{}.measure(scorer, space, c);
  const auto b = fu::PrunedExposure{}.measure(m, space, c);
  CHECK(a.rank == b.rank);
  CHECK(a.exposure_bits == b.exposure_bits);
  CHECK(fu::ExtrapolatedExposure{}.measure(scorer, space, c).rank == b.rank);  // counted exactly: |R| = 1000
}

TEST_CASE("Exposure: the extrapolation never reports more than log2|R|, and says when it capped") {
  // A fit to log-perplexities around 20 bits evaluated at a canary of 0 bits: -log2 F is hundreds of
  // bits, far above log2(1000) = 9.97.
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal(20.0, 1.0);
  std::vector<double> samples(256);
  for (auto& x : samples) x = normal(rng);
  fu::ExtrapolationOptions opt;
  opt.bootstrap = 20;
  const fu::ExtrapolationFit fit(samples, 1000, std::log2(1000.0), opt, 0);
  REQUIRE(fit.exposure_bits(0.0) > 20.0);  // the raw tail value, uncapped
  const auto r = fit.evaluate(0.0);
  INFO(r);
  CHECK(r.exposure_bits == std::log2(1000.0));
  CHECK(r.capped);
  CHECK(r.exposure_high <= std::log2(1000.0));
  CHECK(r.exposure_low <= std::log2(1000.0));
  CHECK(r.notes.find("capped at log2|R|") != std::string::npos);
  CHECK(r.interval_approximate);
  const auto typical = fit.evaluate(20.0);
  CHECK_FALSE(typical.capped);
  CHECK(typical.exposure_bits == Approx(1.0).margin(0.3));  // F(median) ≈ 1/2

  // End to end on 100 candidates with one canary far more likely than the rest: every candidate is a
  // sample (no replacement), and the result stays within [0, log2 100].
  TableLanguageModel<double> lm = TableLanguageModel<double>::random(256, 4, TableContext::position_and_previous, 3);
  set_byte_row(lm, 1, {{'4', 0.9}});
  std::vector<double> row(256, std::log(1e-6 / 255.0));
  row['2'] = std::log(1.0 - 1e-6);
  lm.set_row(lm.row_index(2, '4'), row);
  const auto f = fu::CanaryFormat::digits("x", 2);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  fu::ExtrapolationOptions all;
  all.exact_up_to = 0;
  const auto e = fu::ExtrapolatedExposure(all).measure(lm, space, f.parse("x42"));
  INFO(e);
  CHECK(e.method == "extrapolated");
  CHECK(e.exposure_bits <= std::log2(100.0));
  CHECK(e.exposure_bits >= 0.0);
  CHECK(e.capped);  // the raw fit exceeded log2 100 = 6.64 (4.13 > 3.32 bits in the 10-candidate case)
  CHECK(e.candidates_scored == 100);
}

TEST_CASE("Exposure: random candidates are drawn without replacement, all of R when it is small") {
  const auto all = fu::detail::sample_without_replacement(10, 4096, 1);
  REQUIRE(all.size() == 10);
  for (std::uint64_t i = 0; i < 10; ++i) CHECK(all[i] == i);
  // Distinct, in range, and uniform: each of 10 indices is drawn in 3/10 of 20000 draws of 3.
  std::vector<int> hits(10, 0);
  for (std::uint64_t seed = 0; seed < 20000; ++seed) {
    const auto s = fu::detail::sample_without_replacement(10, 3, seed);
    REQUIRE(s.size() == 3);
    CHECK((s[0] < s[1] && s[1] < s[2] && s[2] < 10));
    for (auto i : s) ++hits[i];
  }
  for (int h : hits) CHECK(std::abs(h - 6000) < 300);  // sd = sqrt(20000 * 0.3 * 0.7) = 65
  const auto big = fu::detail::sample_without_replacement(std::uint64_t{1} << 62, 1000, 9);
  CHECK(std::adjacent_find(big.begin(), big.end()) == big.end());

  // The fit over a 1000-candidate space with the default N = 4096 scores each candidate once.
  auto m = TableLanguageModel<double>::random(256, 6, TableContext::position_and_previous, 8);
  const auto f = fu::CanaryFormat::digits("pin ", 3);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const auto fit = fu::ExtrapolatedExposure{}.fit(m, space);
  CHECK(fit.sorted_samples().size() == 1000);
  const auto ref = reference_scores(m, space);
  std::vector<double> expected;
  for (double v : ref) expected.push_back(-v / std::numbers::ln2);
  std::sort(expected.begin(), expected.end());
  for (std::size_t i = 0; i < 1000; ++i) CHECK(fit.sorted_samples()[i] == Approx(expected[i]).epsilon(1e-12));
}

TEST_CASE("Exposure: the extrapolated estimator counts exactly when the space is affordable, and says so") {
  auto m = TableLanguageModel<double>::random(256, 8, TableContext::position_and_previous, 12);
  const auto f = fu::CanaryFormat::digits("pin ", 4);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const auto c = f.canary_at(4321);
  const auto exact = fu::PrunedExposure{}.measure(m, space, c);
  const auto r = fu::ExtrapolatedExposure{}.measure(m, space, c);  // |R| = 10^4 <= exact_up_to = 2^20
  INFO(r);
  CHECK(r.exact);
  CHECK(r.rank == exact.rank);
  CHECK(r.exposure_bits == exact.exposure_bits);
  CHECK_FALSE(r.interval_approximate);
  CHECK(r.notes.find("counted exactly") != std::string::npos);
  fu::ExtrapolationOptions o;
  o.exact_up_to = 9999;  // just below |R|: extrapolate, with an interval flagged as approximate
  const auto e = fu::ExtrapolatedExposure(o).measure(m, space, c);
  CHECK_FALSE(e.exact);
  CHECK(e.method == "extrapolated");
  CHECK(e.interval_approximate);
  CHECK(e.interval.find("approximate") != std::string::npos);
}
