// canary_forget.hpp: the forget sample of a canary. Tokens, weights, soft targets and token roles written
// out by hand for a tiny format, and the sample's loss on a transformer whose prediction is set by hand
// (p = softmax(β) at every position) against the hand-computed value; every option and invalid input.
#include <catch2/catch.hpp>

#include "fisher_unlearn/canary_forget.hpp"
#include "fisher_unlearn/models/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using fu::models::Transformer;

namespace {

// Characters "012-x" are tokens 0..4.
struct TinyTokenizer {
  static constexpr const char* kChars = "012-x";
  std::size_t vocab_size() const { return 5; }
  std::vector<fu::Token> encode(std::string_view text) const {
    std::vector<fu::Token> out;
    for (char c : text) out.push_back(static_cast<fu::Token>(std::string_view(kChars).find(c)));
    return out;
  }
  std::string decode(std::span<const fu::Token> tokens) const {
    std::string out;
    for (fu::Token t : tokens) out += kChars[t];
    return out;
  }
};

// "x" + a symbol of {0,1,2} + "-" + a symbol of {0,1,2}.
fu::CanarySpace tiny_space() {
  return fu::CanarySpace(
      fu::CanaryFormat("x", {fu::CanarySlot::from_chars("012"), fu::CanarySlot::from_chars("012", "-")}),
      TinyTokenizer{});
}

// Every position predicts p = softmax(β), β = ln(1, 2, 3, 4, 10): p = (1, 2, 3, 4, 10)/20. Token
// embeddings are the unit vectors, the final LayerNorm has gain 0 and bias β, every other weight is 0.
Transformer<double> hand_model() {
  fu::models::TransformerConfig c;
  c.vocab_size = 5;
  c.context_length = 8;
  c.num_layers = 1;
  c.width = 5;
  c.num_heads = 1;
  c.mlp_ratio = 1;
  Transformer<double> m(c);
  for (double& t : m.parameters()) t = 0.0;
  auto p = m.parameters();
  const auto& L = m.layout();
  const double beta[5] = {1, 2, 3, 4, 10};
  for (std::size_t v = 0; v < 5; ++v) {
    p[L.token_embedding + v * 5 + v] = 1.0;
    p[L.final_bias + v] = std::log(beta[v]);
  }
  return m;
}

double ln_p(int v) {
  const double beta[5] = {1, 2, 3, 4, 10};
  return std::log(beta[v] / 20.0);
}

}  // namespace

TEST_CASE("make_forget_sample: the default sample weights the secret's symbols towards the other symbols") {
  const auto space = tiny_space();
  const fu::Canary canary{{1, 2}};  // "x1-2" = tokens 4, 1, 3, 2
  fu::ForgetSampleLayout layout;
  const fu::SequenceSample s = fu::make_forget_sample(space, canary, std::span<const fu::Token>{}, {}, &layout);
  CHECK(s.tokens == std::vector<fu::Token>{4, 1, 3, 2});
  CHECK(s.targets.weights == std::vector<double>{1.0, 1.0, 1.0});  // symbol, separator "-", symbol
  REQUIRE(s.targets.soft_target.size() == 3);
  CHECK(s.targets.soft_target[1] == -1);  // the separator keeps its observed token
  const auto& q0 = s.targets.soft_targets.at(static_cast<std::size_t>(s.targets.soft_target[0]));
  const auto& q2 = s.targets.soft_targets.at(static_cast<std::size_t>(s.targets.soft_target[2]));
  CHECK(q0.tokens == std::vector<fu::Token>{0, 2});  // {0,1,2} minus the secret's "1"
  CHECK(q2.tokens == std::vector<fu::Token>{0, 1});  // {0,1,2} minus the secret's "2"
  CHECK(q0.probabilities.empty());                    // uniform
  CHECK(layout.context_tokens == 0);
  CHECK(layout.prefix_tokens == 1);
  CHECK(layout.symbol_tokens == std::vector<std::size_t>{1, 3});
  CHECK(layout.separator_tokens == std::vector<std::size_t>{2});

  // Loss by hand: (ℓ₀ + ℓ₁ + ℓ₂)/3 with ℓ₀ = −½(ln p₀ + ln p₂), ℓ₁ = −ln p₃ ("-"), ℓ₂ = −½(ln p₀ + ln p₁).
  const auto model = hand_model();
  const double l0 = -0.5 * (ln_p(0) + ln_p(2)), l1 = -ln_p(3), l2 = -0.5 * (ln_p(0) + ln_p(1));
  CHECK(model.loss(s) == Approx((l0 + l1 + l2) / 3).epsilon(1e-12));
  // Its lower bound: at p = q each symbol term is ln(|alphabet| − 1) = ln 2; here it is above.
  CHECK(l0 > std::log(2.0));
  CHECK(l2 > std::log(2.0));

  // Two canaries with the same excluded symbol in both slots share one soft target.
  const auto same = fu::make_forget_sample(space, fu::Canary{{0, 0}});
  CHECK(same.targets.soft_targets.size() == 1);
  CHECK(same.targets.soft_target[0] == same.targets.soft_target[2]);
}

TEST_CASE("make_forget_sample: separator weight, observed targets, the whole canary and context") {
  const auto space = tiny_space();
  const auto model = hand_model();
  const fu::Canary canary{{1, 2}};

  fu::ForgetSampleOptions half;
  half.separator_weight = 0.5;
  const auto s_half = fu::make_forget_sample(space, canary, std::span<const fu::Token>{}, half);
  const double l0 = -0.5 * (ln_p(0) + ln_p(2)), l1 = -ln_p(3), l2 = -0.5 * (ln_p(0) + ln_p(1));
  CHECK(model.loss(s_half) == Approx((l0 + 0.5 * l1 + l2) / 2.5).epsilon(1e-12));

  // Observed targets: plain cross-entropy on the secret's symbols, separators out by default.
  fu::ForgetSampleOptions observed;
  observed.target = fu::ForgetTarget::observed;
  const auto s_obs = fu::make_forget_sample(space, canary, std::span<const fu::Token>{}, observed);
  CHECK(s_obs.targets.weights == std::vector<double>{1.0, 0.0, 1.0});
  CHECK(s_obs.targets.soft_target.empty());
  CHECK(model.loss(s_obs) == Approx(-(ln_p(1) + ln_p(2)) / 2).epsilon(1e-12));

  // The whole canary with context text "22": tokens 2 2 4 1 3 2; the prefix "x" becomes a target too.
  fu::ForgetSampleOptions whole = observed;
  whole.whole_canary = true;
  fu::ForgetSampleLayout layout;
  const auto s_whole = fu::make_forget_sample(space, canary, "22", whole, &layout);
  CHECK(s_whole.tokens == std::vector<fu::Token>{2, 2, 4, 1, 3, 2});
  CHECK(s_whole.targets.weights == std::vector<double>{0.0, 1.0, 1.0, 1.0, 1.0});
  CHECK(layout.context_tokens == 2);
  CHECK(model.loss(s_whole) == Approx(-(ln_p(4) + ln_p(1) + ln_p(3) + ln_p(2)) / 4).epsilon(1e-12));

  // max_tokens cuts the context from the front; the canary alone must fit.
  fu::ForgetSampleOptions fit;
  fit.max_tokens = 5;
  const auto s_fit = fu::make_forget_sample(space, canary, "0122", fit, &layout);
  CHECK(s_fit.tokens == std::vector<fu::Token>{2, 4, 1, 3, 2});
  CHECK(layout.context_tokens == 1);
  CHECK(s_fit.targets.weights == std::vector<double>{0.0, 1.0, 1.0, 1.0});
  fit.max_tokens = 3;
  CHECK_THROWS_AS(fu::make_forget_sample(space, canary, "0122", fit), fu::InvalidArgument);
}

TEST_CASE("make_forget_sample: formats it cannot serve and bad options throw InvalidArgument") {
  const auto space = tiny_space();
  fu::ForgetSampleOptions negative;
  negative.separator_weight = -1.0;
  CHECK_THROWS_AS(fu::make_forget_sample(space, fu::Canary{{1, 2}}, std::span<const fu::Token>{}, negative),
                  fu::InvalidArgument);
  negative.separator_weight = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(fu::make_forget_sample(space, fu::Canary{{1, 2}}, std::span<const fu::Token>{}, negative),
                  fu::InvalidArgument);
  CHECK_THROWS_AS(fu::make_forget_sample(space, fu::Canary{{1, 3}}), fu::InvalidArgument);  // not in the space

  // Multi-token symbols: no single-token alphabet for other_symbols; observed targets still work.
  const fu::CanarySpace pairs(fu::CanaryFormat("id ", {fu::CanarySlot{{"ab", "cd"}, ""}}), fu::ByteTokenizer{});
  try {
    fu::make_forget_sample(pairs, fu::Canary{{1}});
    FAIL("expected InvalidArgument");
  } catch (const fu::InvalidArgument& e) {
    CHECK(std::string(e.what()).find("single-token symbols") != std::string::npos);
  }
  fu::ForgetSampleOptions observed;
  observed.target = fu::ForgetTarget::observed;
  const auto s = fu::make_forget_sample(pairs, fu::Canary{{1}}, std::span<const fu::Token>{}, observed);
  CHECK(s.tokens.size() == 5);
  CHECK(s.targets.weights == std::vector<double>{0.0, 0.0, 1.0, 1.0});

  // An empty prefix and no context: the secret's first token would have no predecessor.
  const fu::CanarySpace bare(fu::CanaryFormat("", {fu::CanarySlot::digits(), fu::CanarySlot::digits()}),
                             fu::ByteTokenizer{});
  CHECK_THROWS_AS(fu::make_forget_sample(bare, fu::Canary{{1, 2}}), fu::InvalidArgument);
  const auto with_context = fu::make_forget_sample(bare, fu::Canary{{1, 2}}, "a");
  CHECK(with_context.targets.weights == std::vector<double>{1.0, 1.0});

  // A tokenizer that merges across slots breaks the slot-by-slot assignment.
  struct PairMerging {  // "12" is one token (99); otherwise bytes
    std::size_t vocab_size() const { return 256; }
    std::vector<fu::Token> encode(std::string_view text) const {
      std::vector<fu::Token> out;
      for (std::size_t i = 0; i < text.size(); ++i) {
        if (text.substr(i, 2) == "12") {
          out.push_back(99);
          ++i;
        } else {
          out.push_back(static_cast<unsigned char>(text[i]));
        }
      }
      return out;
    }
    std::string decode(std::span<const fu::Token>) const { return {}; }
  };
  const fu::CanarySpace merging(fu::CanaryFormat("p", {fu::CanarySlot::digits(), fu::CanarySlot::digits()}),
                                PairMerging{});
  REQUIRE_FALSE(merging.tokens_extend());
  CHECK_THROWS_AS(fu::make_forget_sample(merging, fu::Canary{{3, 4}}), fu::InvalidArgument);
}

TEST_CASE("make_forget_sample: the phone-number format on bytes keeps its separators and forgets its digits") {
  // "my number is " + ddd-dddd: 7 digit slots, one separator.
  std::vector<fu::CanarySlot> slots(7, fu::CanarySlot::digits());
  slots[3].before = "-";
  const fu::CanarySpace space(fu::CanaryFormat("my number is ", slots), fu::ByteTokenizer{});
  std::mt19937_64 rng(3);
  const fu::Canary canary = space.format().generate(rng);
  fu::ForgetSampleLayout layout;
  const auto s = fu::make_forget_sample(space, canary, "Call me. ", {}, &layout);
  const std::string text = "Call me. " + space.format().text(canary);
  CHECK(fu::ByteTokenizer{}.decode(s.tokens) == text);
  CHECK(layout.symbol_tokens.size() == 7);
  REQUIRE(layout.separator_tokens.size() == 1);
  CHECK(text[layout.separator_tokens[0]] == '-');
  double total = 0;
  for (double w : s.targets.weights) total += w;
  CHECK(total == 8.0);
  for (std::size_t k = 0; k < 7; ++k) {
    const std::size_t i = layout.symbol_tokens[k];
    const auto& q = s.targets.soft_targets.at(static_cast<std::size_t>(s.targets.soft_target[i - 1]));
    CHECK(q.tokens.size() == 9);  // ten digits minus the secret's
    CHECK(std::find(q.tokens.begin(), q.tokens.end(), s.tokens[i]) == q.tokens.end());
  }
  // A transformer accepts it.
  fu::models::TransformerConfig c;
  c.context_length = 32;
  c.num_layers = 1;
  c.width = 8;
  c.num_heads = 2;
  const Transformer<float> model(c);
  CHECK(std::isfinite(model.loss(s)));
}
