// The exposure checks at the scale, |R| = 10^6 digit canaries (label "slow"; run in both passes of scripts/test.sh).
#include <catch2/catch.hpp>

#include "exposure_fixtures.hpp"
#include "exposure_models.hpp"
#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/testing/table_language_model.hpp"

#include <cmath>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using fu::testing::TableContext;
using fu::testing::TableLanguageModel;

TEST_CASE("Exposure: all three estimators agree with ranks known by construction on 10^6 candidates") {
  exposure_models::check_ranks_known_by_construction(6);
}

TEST_CASE("Exposure: extrapolation is within 1 bit of exact for ranks between 10 and |R|/10 on 10^6 bell-shaped scores") {
  exposure_models::check_extrapolation_within_one_bit(6);
}

namespace {

// 6 digits; row at secret position i gives digit d the logit −β·(d + d·10^(5−i)/10^6). Then the score
// orders candidates by the key K = 10^6·(digit sum) + (the number itself): ties are impossible, and
// rank(c) = 1 + #{c' : K(c') < K(c)} is a closed-form count over digit sums.
constexpr double kBeta = 0.35;

TableLanguageModel<double> digit_sum_model(std::size_t prefix_len) {
  TableLanguageModel<double> m(256, prefix_len + 7, TableContext::position);
  for (std::size_t i = 0; i < 6; ++i) {
    std::vector<double> logits(256, -30.0);
    for (int d = 0; d < 10; ++d)
      logits['0' + d] = -kBeta * (d + d * std::pow(10.0, 5 - static_cast<double>(i)) / 1e6);
    m.set_row_logits(m.row_index(prefix_len + i, -1), logits);
  }
  return m;
}

// Number of digit strings of length len with digit sum t.
std::uint64_t strings_with_sum(int len, int t) {
  if (t < 0) return 0;
  if (len == 0) return t == 0 ? 1 : 0;
  std::uint64_t n = 0;
  for (int d = 0; d <= 9; ++d) n += strings_with_sum(len - 1, t - d);
  return n;
}

std::uint64_t digit_sum_rank(const std::string& digits) {
  int s = 0;
  for (char ch : digits) s += ch - '0';
  std::uint64_t below = 0;
  for (int t = 0; t < s; ++t) below += strings_with_sum(6, t);
  int prefix_sum = 0;
  for (int i = 0; i < 6; ++i) {  // same digit sum, numerically smaller
    const int d = digits[i] - '0';
    for (int e = 0; e < d; ++e) below += strings_with_sum(5 - i, s - prefix_sum - e);
    prefix_sum += d;
  }
  return 1 + below;
}

}  // namespace

TEST_CASE("Exposure: exact estimators agree with a closed-form rank on 10^6 digit canaries") {
  const auto f = fu::CanaryFormat::digits("pin:", 6);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const auto m = digit_sum_model(4);
  CHECK(digit_sum_rank("000000") == 1);
  CHECK(digit_sum_rank("100000") == 7);  // after 000000, 000001, 000010, 000100, 001000, 010000
  for (const std::string secret : {"000000", "100000", "002103", "120302", "031221"}) {
    const auto c = f.parse_secret(secret);
    const auto rank = digit_sum_rank(secret);
    const auto pr = fu::PrunedExposure{}.measure(m, space, c);
    INFO(secret << ": " << pr);
    CHECK(pr.rank == rank);
    CHECK(pr.ties == 0);
    CHECK(pr.exposure_bits == Approx(std::log2(1e6) - std::log2(static_cast<double>(rank))).epsilon(1e-14));
  }
  const auto c = f.parse_secret("120302");
  const auto ex = fu::ExhaustiveExposure{}.measure(m, space, c);
  CHECK(ex.rank == digit_sum_rank("120302"));
  CHECK(ex.candidates_scored == 1000000u);
  // Every internal node of the digit tree once, plus the 5 rows of the canary's own path scored first.
  CHECK(ex.evaluations == 1 + 10 + 100 + 1000 + 10000 + 100000 + 5);

}

