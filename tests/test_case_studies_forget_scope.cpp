// examples/case_studies/forget_scope.hpp: the forget weights of a deleted changelog entry lie exactly on the
// targets whose tokens overlap the address (or the trailer), are equal and sum to 1; bad input is refused.
// The tokenizer is the tiny byte-level BPE of tests/tool/tiny_llama_file.hpp (the 256 byte symbols and
// the merge "a b"), so the expected token boundaries can be written down by hand.
#include "../examples/case_studies/forget_scope.hpp"
#include "tool/tiny_llama_file.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <unistd.h>

namespace fu = fisher_unlearn;
using case_studies::scoped_forget_sample;
using Sample = fu::models::Llama<float>::Sample;

namespace {

const fu::BpeTokenizer& tok() {
  static const fu::BpeTokenizer t = [] {
    const auto path = std::filesystem::temp_directory_path() / ("fu_forget_scope_" + std::to_string(::getpid()) + ".gguf");
    fu::models::LlamaConfig c = tiny_llama_file::config();
    tiny_llama_file::write(fu::models::Llama<float>(c, {"all"}, 3), path);
    auto out = tiny_llama_file::tokenizer(path);
    std::filesystem::remove(path);
    return out;
  }();
  return t;
}

Sample sample_of(const std::string& text) {
  Sample s;
  s.tokens = tok().encode(text);
  return s;
}

/// The text predicted by the weighted targets, in order (target t is tokens[t + 1]).
std::string weighted_text(const Sample& s) {
  std::string out;
  for (std::size_t t = 0; t < s.weights.size(); ++t)
    if (s.weights[t] > 0.0f) out += tok().decode(std::span<const fu::Token>(&s.tokens[t + 1], 1));
  return out;
}

const std::string kText = "pkg (1.0-1) unstable\n\n  * fix cab\n\n -- Abby Cab <abby@cab.org>  Mon, 1 Jan 2001\n";

}  // namespace

TEST_CASE("scoped_forget_sample: the address scope weights exactly the tokens of 'email>', equally") {
  const Sample s = scoped_forget_sample(tok(), sample_of(kText), kText, "Abby Cab", "abby@cab.org", "address", "pkg 1.0-1");
  REQUIRE(s.weights.size() == s.tokens.size() - 1);
  // Byte tokens and the merge "ab": "abby@cab.org>" is ab|b|y|@|c|ab|.|o|r|g|> = 11 tokens.
  CHECK(weighted_text(s) == "abby@cab.org>");
  std::size_t n = 0;
  double sum = 0;
  for (float w : s.weights) {
    if (w > 0.0f) {
      ++n;
      CHECK(w == Approx(1.0 / 11.0));
    }
    sum += w;
  }
  CHECK(n == 11);
  CHECK(sum == Approx(1.0).epsilon(1e-6));
  CHECK(s.tokens == tok().encode(kText));  // the tokens are the trained ones
}

TEST_CASE("scoped_forget_sample: the trailer scope adds the name; the entry scope leaves the sample unweighted") {
  const Sample t = scoped_forget_sample(tok(), sample_of(kText), kText, "Abby Cab", "abby@cab.org", "trailer", "pkg");
  CHECK(weighted_text(t) == "Abby Cab <abby@cab.org>");
  const Sample e = scoped_forget_sample(tok(), sample_of(kText), kText, "Abby Cab", "abby@cab.org", "entry", "pkg");
  CHECK(e.weights.empty());
  CHECK(e.tokens == tok().encode(kText));
}

TEST_CASE("scoped_forget_sample: bad input is refused with a typed error") {
  CHECK_THROWS_AS(scoped_forget_sample(tok(), sample_of(kText), kText, "Abby Cab", "abby@cab.org", "name", "pkg"),
                  fu::InvalidArgument);
  // No such trailer (another address).
  CHECK_THROWS_AS(scoped_forget_sample(tok(), sample_of(kText), kText, "Abby Cab", "other@cab.org", "address", "pkg"),
                  fu::StateError);
  // The context cut the sequence before the trailer's end.
  Sample cut = sample_of(kText);
  cut.tokens.resize(20);
  CHECK_THROWS_WITH(scoped_forget_sample(tok(), cut, kText, "Abby Cab", "abby@cab.org", "address", "pkg"),
                    Catch::Contains("beyond the context"));
  // Tokens of another text.
  CHECK_THROWS_AS(scoped_forget_sample(tok(), sample_of("something else entirely, long enough"), kText, "Abby Cab",
                                       "abby@cab.org", "address", "pkg"),
                  fu::StateError);
}
