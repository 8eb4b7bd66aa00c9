// Membership inference (loss-attack AUC against a brute-force pair count) and greedy extraction.
#include <catch2/catch.hpp>

#include "fisher_unlearn/membership.hpp"
#include "fisher_unlearn/testing/table_language_model.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using fu::testing::TableContext;
using fu::testing::TableLanguageModel;

namespace {

double brute_force_auc(const std::vector<double>& members, const std::vector<double>& nonmembers) {
  double wins = 0.0;
  for (double a : members)
    for (double b : nonmembers) wins += a < b ? 1.0 : (a == b ? 0.5 : 0.0);
  return wins / (static_cast<double>(members.size()) * static_cast<double>(nonmembers.size()));
}

}  // namespace

TEST_CASE("loss_attack_auc: equals the brute-force pair count, ties counted one half") {
  std::mt19937_64 rng(17);
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t m = 1 + rng() % 70, n = 1 + rng() % 70;
    const int levels = 1 + static_cast<int>(rng() % 12);  // few levels: many ties
    std::vector<double> a(m), b(n);
    for (auto& v : a) v = static_cast<double>(rng() % levels) * 0.25;
    for (auto& v : b) v = static_cast<double>(rng() % levels) * 0.25 + (trial % 3 == 0 ? 0.5 : 0.0);
    const auto r = fu::loss_attack_auc(a, b);
    CHECK(r.auc == Approx(brute_force_auc(a, b)).epsilon(1e-15));
    CHECK(r.members == m);
    CHECK(r.nonmembers == n);
  }
  // Continuous losses, larger sets.
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> a(900), b(700);
  for (auto& v : a) v = normal(rng);
  for (auto& v : b) v = normal(rng) + 0.7;
  CHECK(fu::loss_attack_auc(a, b).auc == Approx(brute_force_auc(a, b)).epsilon(1e-14));
}

TEST_CASE("loss_attack_auc: separation, reversal, indistinguishable sets and infinities") {
  const std::vector<double> low{0.1, 0.2, 0.3}, high{1.0, 2.0};
  CHECK(fu::loss_attack_auc(low, high).auc == 1.0);
  CHECK(fu::loss_attack_auc(high, low).auc == 0.0);
  const std::vector<double> same{0.5, 0.5, 0.5};
  CHECK(fu::loss_attack_auc(same, same).auc == 0.5);
  const auto r = fu::loss_attack_auc(low, high);
  CHECK(r.member_mean_loss == Approx(0.2));
  CHECK(r.nonmember_mean_loss == Approx(1.5));
  const std::vector<double> inf{std::numeric_limits<double>::infinity()};
  CHECK(fu::loss_attack_auc(low, inf).auc == 1.0);
}

TEST_CASE("loss_attack_auc: empty sets and NaN losses throw typed errors") {
  const std::vector<double> some{1.0, 2.0}, none;
  CHECK_THROWS_AS(fu::loss_attack_auc(none, some), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::loss_attack_auc(some, none), fu::InvalidArgument);
  const std::vector<double> nan{std::numeric_limits<double>::quiet_NaN()};
  CHECK_THROWS_AS(fu::loss_attack_auc(nan, some), fu::NonFiniteError);
  CHECK_THROWS_AS(fu::loss_attack_auc(some, nan), fu::NonFiniteError);
}

TEST_CASE("membership_inference_auc: scores a model's per-sample losses, and a memorising model is detected") {
  auto model = TableLanguageModel<double>::random(16, 6, TableContext::position_and_previous, 8);
  std::mt19937_64 rng(4);
  auto draw = [&] {
    std::vector<fu::Token> s(6);
    for (auto& t : s) t = static_cast<fu::Token>(rng() % 16);
    return s;
  };
  std::vector<std::vector<fu::Token>> members, nonmembers;
  for (int i = 0; i < 25; ++i) members.push_back(draw());
  for (int i = 0; i < 30; ++i) nonmembers.push_back(draw());
  std::vector<double> la, lb;
  for (const auto& s : members) la.push_back(model.loss(s));
  for (const auto& s : nonmembers) lb.push_back(model.loss(s));
  const auto before = fu::membership_inference_auc<TableLanguageModel<double>>(model, members, nonmembers);
  CHECK(before.auc == fu::loss_attack_auc(la, lb).auc);

  // "Train" on the members: raise the logit of each member transition.
  for (const auto& s : members)
    for (std::size_t j = 0; j < s.size(); ++j) {
      const auto r = model.row_index(j, j == 0 ? -1 : s[j - 1]);
      std::vector<double> logits(model.row(r).begin(), model.row(r).end());
      logits[static_cast<std::size_t>(s[j])] += 3.0;
      model.set_row_logits(r, logits);
    }
  const auto after = fu::membership_inference_auc<TableLanguageModel<double>>(model, members, nonmembers);
  CHECK(after.auc > 0.9);
  CHECK(after.auc > before.auc);
}

namespace {

/// A byte-level model whose greedy choice at secret position j is `argmax[j]` (position-only rows).
TableLanguageModel<double> greedy_model(std::size_t prefix_len, const std::string& argmax) {
  auto m = TableLanguageModel<double>::random(256, prefix_len + argmax.size() + 1, TableContext::position, 12);
  for (std::size_t j = 0; j < argmax.size(); ++j) {
    const auto r = m.row_index(prefix_len + j, -1);
    std::vector<double> logits(m.row(r).begin(), m.row(r).end());
    logits[static_cast<unsigned char>(argmax[j])] += 12.0;
    m.set_row_logits(r, logits);
  }
  return m;
}

}  // namespace

TEST_CASE("extract_greedy: a memorised secret is reproduced; a partly memorised one matches its slots") {
  const fu::CanaryFormat f("my pin is ", {fu::CanarySlot::digits(), fu::CanarySlot::digits(),
                                          fu::CanarySlot::digits("-"), fu::CanarySlot::digits()});
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const auto canary = f.parse_secret("48-15");
  const std::size_t p = f.prefix().size();

  const auto memorised = greedy_model(p, "48-15");
  const auto full = fu::extract_greedy(memorised, space, canary);
  CHECK(full.reproduced);
  CHECK(full.text == "48-15");
  CHECK(full.slots_matched == 4);
  CHECK(full.leading_slots_matched == 4);
  CHECK(full.num_slots == 4);
  CHECK(full.evaluations == 5);  // one distribution per secret token

  const auto partly = greedy_model(p, "48-75");
  const auto part = fu::extract_greedy(partly, space, canary);
  CHECK_FALSE(part.reproduced);
  CHECK(part.text == "48-75");
  CHECK(part.slots_matched == 3);
  CHECK(part.leading_slots_matched == 2);

  const auto wrong_separator = greedy_model(p, "48+15");  // slot 2 includes its separator
  const auto sep = fu::extract_greedy(wrong_separator, space, canary);
  CHECK(sep.slots_matched == 3);
  CHECK(sep.leading_slots_matched == 2);

  CHECK_THROWS_AS(fu::extract_greedy(memorised, space, fu::Canary{{1, 2, 3}}), fu::InvalidArgument);
}

TEST_CASE("calibrated_loss_attack_auc: scores differences to the reference, hand-computed AUCs") {
  // members: target losses {1, 2, 5}, reference {2, 2, 2} -> calibrated {-1, 0, 3}
  // non-members: target {3, 4}, reference {1, 5} -> calibrated {2, -1}
  // pairs (member < non-member, ties 1/2): -1 vs {2, -1}: 1 + 0.5; 0 vs {2, -1}: 1 + 0; 3 vs {2, -1}: 0
  // AUC = 2.5 / 6. The plain attack on the target losses alone: {1,2,5} vs {3,4}: 2 + 2 + 0 = 4 / 6.
  const std::vector<double> mt{1, 2, 5}, mr{2, 2, 2}, nt{3, 4}, nr{1, 5};
  const auto r = fu::calibrated_loss_attack_auc(mt, mr, nt, nr);
  CHECK(r.auc == Approx(2.5 / 6.0).epsilon(1e-15));
  CHECK(r.member_mean_loss == Approx(2.0 / 3.0).epsilon(1e-15));
  CHECK(r.nonmember_mean_loss == Approx(0.5).epsilon(1e-15));
  CHECK(fu::loss_attack_auc(mt, nt).auc == Approx(4.0 / 6.0).epsilon(1e-15));
  // the target equal to the reference: every calibrated score is 0, AUC exactly 1/2
  CHECK(fu::calibrated_loss_attack_auc(mt, mt, nt, nt).auc == 0.5);
  // mismatched sizes and NaN differences (+Inf under both models) throw
  const std::vector<double> inf{std::numeric_limits<double>::infinity()};
  CHECK_THROWS_AS(fu::calibrated_loss_attack_auc(mt, nr, nt, nr), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::calibrated_loss_attack_auc(inf, inf, nt, nr), fu::NonFiniteError);
}

TEST_CASE("reference_calibrated_auc: a model identical to the reference is at chance; a memorising one is detected") {
  auto reference = TableLanguageModel<double>::random(16, 6, TableContext::position_and_previous, 9);
  std::mt19937_64 rng(5);
  auto draw = [&] {
    std::vector<fu::Token> s(6);
    for (auto& t : s) t = static_cast<fu::Token>(rng() % 16);
    return s;
  };
  std::vector<std::vector<fu::Token>> members, nonmembers;
  for (int i = 0; i < 20; ++i) members.push_back(draw());
  for (int i = 0; i < 40; ++i) nonmembers.push_back(draw());
  using TM = TableLanguageModel<double>;
  CHECK(fu::reference_calibrated_auc<TM, TM>(reference, reference, members, nonmembers).auc == 0.5);
  auto model = reference;
  for (const auto& s : members)
    for (std::size_t j = 0; j < s.size(); ++j) {
      const auto r = model.row_index(j, j == 0 ? -1 : s[j - 1]);
      std::vector<double> logits(model.row(r).begin(), model.row(r).end());
      logits[static_cast<std::size_t>(s[j])] += 2.0;
      model.set_row_logits(r, logits);
    }
  const auto calibrated = fu::reference_calibrated_auc<TM, TM>(model, reference, members, nonmembers);
  std::vector<double> mt, mr, nt, nr;
  for (const auto& s : members) {
    mt.push_back(model.loss(s));
    mr.push_back(reference.loss(s));
  }
  for (const auto& s : nonmembers) {
    nt.push_back(model.loss(s));
    nr.push_back(reference.loss(s));
  }
  CHECK(calibrated.auc == fu::calibrated_loss_attack_auc(mt, mr, nt, nr).auc);
  CHECK(calibrated.auc > 0.9);
}

TEST_CASE("over_unlearning_check: flags a canary below the 1st percentile of the candidates' likelihood") {
  // 200 candidates with log-perplexities 10.0, 10.1, ..., 29.9 bits.
  std::vector<double> c(200);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = 10.0 + 0.1 * static_cast<double>(i);
  // canary at 29.85: candidates 29.9 only are less likely -> 1/200 = 0.5% < 1%: flagged
  auto r = fu::over_unlearning_check(29.85, c);
  CHECK(r.fraction_less_likely == Approx(1.0 / 200.0).epsilon(1e-15));
  CHECK(r.flagged);
  CHECK(r.candidates == 200);
  // canary at 29.65: 29.7, 29.8, 29.9 less likely -> 1.5%: not flagged
  r = fu::over_unlearning_check(29.65, c);
  CHECK(r.fraction_less_likely == Approx(3.0 / 200.0).epsilon(1e-15));
  CHECK_FALSE(r.flagged);
  // a tie counts one half: canary exactly at 29.8 -> 29.9 (1) + itself-valued 29.8 (1/2) = 1.5 / 200
  r = fu::over_unlearning_check(c[198], c);
  CHECK(r.fraction_less_likely == Approx(1.5 / 200.0).epsilon(1e-15));
  CHECK(r.flagged);
  // a memorised canary (far more likely than all) is not over-unlearned
  CHECK_FALSE(fu::over_unlearning_check(1.0, c).flagged);
  CHECK(fu::over_unlearning_check(1.0, c).fraction_less_likely == 1.0);
  // a custom threshold: 5%
  CHECK(fu::over_unlearning_check(29.65, c, 0.05).flagged);
  CHECK_THROWS_AS(fu::over_unlearning_check(1.0, std::vector<double>{}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::over_unlearning_check(1.0, c, 0.0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::over_unlearning_check(std::nan(""), c), fu::NonFiniteError);
}
