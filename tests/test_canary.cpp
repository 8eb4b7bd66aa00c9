// Canary formats, spaces bound to tokenizers, the token-extension check and the insertion helpers.
#include <catch2/catch.hpp>

#include "exposure_fixtures.hpp"
#include "fisher_unlearn/canary.hpp"

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using exposure_fixtures::CharTokenizer;
using exposure_fixtures::DropsZTokenizer;
using exposure_fixtures::MergingDigitTokenizer;
using exposure_fixtures::SpaceDigitTokenizer;

TEST_CASE("CanaryFormat: space size and log2 size are the product of the alphabet sizes") {
  const auto six = fu::CanaryFormat::digits("my number is ", 6);
  CHECK(six.space_size() == 1000000u);
  CHECK(six.log2_space_size() == Approx(std::log2(1e6)).epsilon(1e-15));
  const auto nine = fu::CanaryFormat::digits("pin ", 9);
  CHECK(nine.space_size() == 1000000000u);
  const fu::CanaryFormat mixed("id ", {fu::CanarySlot::letters(), fu::CanarySlot::digits("-"),
                                       fu::CanarySlot::alphanumeric(), fu::CanarySlot::lowercase()});
  CHECK(mixed.space_size() == 52u * 10u * 62u * 26u);
  // 63 binary slots fit in 64 bits, and log2|R| stays exact where |R| > 2^53.
  const fu::CanaryFormat big("", std::vector<fu::CanarySlot>(63, fu::CanarySlot::from_chars("01")));
  CHECK(big.space_size() == (std::uint64_t{1} << 63));
  CHECK(big.log2_space_size() == 63.0);
}

TEST_CASE("CanaryFormat: index_of and canary_at are inverse and follow lexicographic order") {
  const fu::CanaryFormat f("x", {fu::CanarySlot::from_chars("abc"), fu::CanarySlot::digits(":"),
                                 fu::CanarySlot::from_chars("pq")});
  std::string previous;
  for (std::uint64_t i = 0; i < f.space_size(); ++i) {
    const auto c = f.canary_at(i);
    CHECK(f.index_of(c) == i);
    const std::string s = f.secret_text(c);
    if (i > 0) CHECK(previous < s);  // same-length ASCII symbols: index order is string order
    previous = s;
  }
  CHECK(f.secret_text(f.canary_at(0)) == "a:0p");
  CHECK(f.text(f.canary_at(f.space_size() - 1)) == "xc:9q");
  CHECK(f.symbol_span(f.canary_at(0), 1) == std::pair<std::size_t, std::size_t>(2, 3));
}

TEST_CASE("CanaryFormat: parse inverts text, backtracking over multi-character symbols") {
  const fu::CanaryFormat f("secret: ", {fu::CanarySlot{{"a", "ab"}, ""}, fu::CanarySlot{{"bc", "c"}, ""}});
  for (std::uint64_t i = 0; i < f.space_size(); ++i) {
    const auto c = f.canary_at(i);
    // "a"+"bc" and "ab"+"c" spell the same text: parsing returns the first split, which spells it too.
    CHECK(f.text(f.parse(f.text(c))) == f.text(c));
  }
  const auto digits = fu::CanaryFormat::digits("pin ", 4);
  const auto c = digits.parse("pin 0427");
  CHECK(c.choices == std::vector<std::uint32_t>{0, 4, 2, 7});
  CHECK_THROWS_AS(digits.parse("pin 04x7"), fu::InvalidArgument);
  CHECK_THROWS_AS(digits.parse("pin 04271"), fu::InvalidArgument);
  CHECK_THROWS_AS(digits.parse("PIN 0427"), fu::InvalidArgument);
}

TEST_CASE("CanaryFormat: bad formats and canaries outside the space throw InvalidArgument") {
  CHECK_THROWS_AS(fu::CanaryFormat("p", {fu::CanarySlot::digits(), fu::CanarySlot{}}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::CanaryFormat("p", {}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::CanaryFormat("p", {fu::CanarySlot{{"a", ""}, ""}}), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::CanaryFormat("p", {fu::CanarySlot::from_chars("aba")}), fu::InvalidArgument);
  // |R| = 2^64 does not fit in 64 bits; neither does 10^20.
  CHECK_THROWS_AS(fu::CanaryFormat("", std::vector<fu::CanarySlot>(64, fu::CanarySlot::from_chars("01"))),
                  fu::InvalidArgument);
  CHECK_THROWS_AS(fu::CanaryFormat::digits("", 20), fu::InvalidArgument);
  try {
    (void)fu::CanaryFormat::digits("", 20);
  } catch (const fu::InvalidArgument& e) {
    CHECK_THAT(e.what(), Catch::Contains("2^64"));
  }
  const auto f = fu::CanaryFormat::digits("p", 3);
  CHECK_THROWS_AS(f.validate(fu::Canary{{1, 2}}), fu::InvalidArgument);
  CHECK_THROWS_AS(f.validate(fu::Canary{{1, 2, 10}}), fu::InvalidArgument);
  CHECK_THROWS_AS(f.index_of(fu::Canary{{1, 2, 3, 4}}), fu::InvalidArgument);
  CHECK_THROWS_AS(f.canary_at(1000), fu::InvalidArgument);
  CHECK_NOTHROW(f.validate(fu::Canary{{9, 9, 9}}));
}

TEST_CASE("CanaryFormat: seeded generation is reproducible and uniform") {
  const fu::CanaryFormat f("", {fu::CanarySlot::from_chars("abc"), fu::CanarySlot::from_chars("xyz")});
  CHECK(f.generate(42, 50) == f.generate(42, 50));
  CHECK(f.generate(42, 50) != f.generate(43, 50));
  const std::size_t draws = 9000;
  std::map<std::uint64_t, std::size_t> counts;
  for (const auto& c : f.generate(7, draws)) ++counts[f.index_of(c)];
  REQUIRE(counts.size() == 9);
  const double expected = draws / 9.0, sd = std::sqrt(expected * (1.0 - 1.0 / 9.0));
  for (const auto& [idx, n] : counts) CHECK(std::abs(static_cast<double>(n) - expected) < 5.0 * sd);
}

TEST_CASE("CanarySpace: a byte tokenizer has the token-extension property, checked on every candidate") {
  const fu::CanaryFormat f("the code is ", {fu::CanarySlot::digits(), fu::CanarySlot::letters("-"),
                                            fu::CanarySlot{{"ab", "c"}, ""}});
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  CHECK(space.tokens_extend());
  CHECK(space.extension_checked_exhaustively());
  CHECK(space.prefix_boundary_consistent());
  CHECK_THAT(space.extension_check(), Catch::Contains("all 1040 candidates"));
  CHECK(space.prefix_tokens().size() == f.prefix().size());
  CHECK(space.max_secret_tokens() == 1 + 2 + 2);
  for (const auto& c : f.generate(3, 20)) {
    const auto secret = f.secret_text(c);
    CHECK(space.secret_tokens(c) == fu::ByteTokenizer{}.encode(secret));
    CHECK(space.tokens(c) == fu::ByteTokenizer{}.encode(f.text(c)));
  }
}

TEST_CASE("CanarySpace: a tokenizer that merges digits breaks the property, exhaustive and sampled checks see it") {
  const auto f = fu::CanaryFormat::digits("pin ", 3);
  const fu::CanarySpace space(f, MergingDigitTokenizer{});
  CHECK_FALSE(space.tokens_extend());
  CHECK(space.extension_checked_exhaustively());
  CHECK_THAT(space.extension_check(), Catch::Contains("fails"));
  // Secret tokens follow the definition (the whole secret encoded), not the per-slot concatenation.
  const auto c = f.parse("pin 123");
  CHECK(space.secret_tokens(c) == std::vector<fu::Token>{256 + 12, '3'});

  fu::CanarySpaceOptions sampled;
  sampled.exhaustive_check_limit = 100;
  const fu::CanarySpace big(fu::CanaryFormat::digits("pin ", 6), MergingDigitTokenizer{}, sampled);
  CHECK_FALSE(big.tokens_extend());
  CHECK_FALSE(big.extension_checked_exhaustively());

  // Separated digit slots do not merge: the property holds, here checked on pairs and samples.
  const fu::CanaryFormat sep("pin ", {fu::CanarySlot::digits(), fu::CanarySlot::digits("-"), fu::CanarySlot::digits("-")});
  const fu::CanarySpace ok(sep, MergingDigitTokenizer{}, sampled);
  CHECK(ok.tokens_extend());
  CHECK_THAT(ok.extension_check(), Catch::Contains("adjacent slot pairs"));
}

TEST_CASE("CanarySpace: a tokenizer that merges across the prefix boundary scores candidates by their full text") {
  const SpaceDigitTokenizer tok;
  const auto f = fu::CanaryFormat::digits("pin is ", 3);
  const fu::CanarySpace space(f, tok);
  CHECK(space.full_text());
  CHECK_FALSE(space.prefix_boundary_consistent());
  CHECK_FALSE(space.tokens_extend());  // exact exposure must walk every candidate
  CHECK_THAT(space.extension_check(), Catch::Contains("merges across the prefix/secret boundary"));
  CHECK(space.prefix_tokens().size() == 6);  // "pin is": the trailing space merges with the first digit
  CHECK(space.max_secret_tokens() == 3);
  for (const auto& c : f.generate(4, 20)) {
    const auto whole = tok.encode(f.text(c));
    CHECK(space.tokens(c) == whole);
    CHECK(space.secret_tokens(c) == std::vector<fu::Token>(whole.begin() + 6, whole.end()));
  }
  // A prefix that does not end at a merge keeps the separate definition.
  const fu::CanarySpace plain(fu::CanaryFormat::digits("pin:", 3), tok);
  CHECK_FALSE(plain.full_text());
  CHECK(plain.prefix_boundary_consistent());
  CHECK(plain.tokens_extend());
  // The sampled check sees it too.
  fu::CanarySpaceOptions sampled;
  sampled.exhaustive_check_limit = 10;
  const fu::CanarySpace big(f, tok, sampled);
  CHECK(big.full_text());
  CHECK_FALSE(big.extension_checked_exhaustively());
}

TEST_CASE("CanarySpace: a tokenizer that returns nothing throws InvalidArgument") {
  const fu::CanaryFormat f("prefix ", {fu::CanarySlot::from_chars("xyz")});
  CHECK_THROWS_AS(fu::CanarySpace(f, DropsZTokenizer{}), fu::InvalidArgument);
  const fu::CanaryFormat zprefix("zz ", {fu::CanarySlot::digits()});
  CHECK_THROWS_AS(fu::CanarySpace(zprefix, DropsZTokenizer{}), fu::InvalidArgument);
  try {
    fu::CanarySpace s(f, DropsZTokenizer{});
  } catch (const fu::InvalidArgument& e) {
    CHECK_THAT(e.what(), Catch::Contains("no tokens"));
  }
  const fu::CanarySpace fine(fu::CanaryFormat("p", {fu::CanarySlot::from_chars("xy")}), DropsZTokenizer{});
  CHECK_THROWS_AS(fine.encode("zap"), fu::InvalidArgument);
}

TEST_CASE("insert_canary: copies land at the recorded positions and removing them restores the stream") {
  std::vector<fu::Token> stream(500);
  for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<fu::Token>((i * 7919) % 251);
  const std::vector<fu::Token> canary{300, 301, 302, 303};
  const auto ins = fu::insert_canary(stream, canary, 7, 11);
  REQUIRE(ins.positions.size() == 7);
  REQUIRE(ins.tokens.size() == stream.size() + 7 * canary.size());
  CHECK(std::is_sorted(ins.positions.begin(), ins.positions.end()));
  std::vector<fu::Token> rest;
  std::size_t next = 0;
  for (std::size_t p : ins.positions) {
    REQUIRE(p >= next);
    rest.insert(rest.end(), ins.tokens.begin() + static_cast<std::ptrdiff_t>(next), ins.tokens.begin() + static_cast<std::ptrdiff_t>(p));
    CHECK(std::equal(canary.begin(), canary.end(), ins.tokens.begin() + p));
    next = p + canary.size();
  }
  rest.insert(rest.end(), ins.tokens.begin() + next, ins.tokens.end());
  CHECK(rest == stream);
  const auto again = fu::insert_canary(stream, canary, 7, 11);
  CHECK(again.positions == ins.positions);
  CHECK(fu::insert_canary(stream, canary, 7, 12).positions != ins.positions);
  CHECK(fu::insert_canary(stream, canary, 0, 11).tokens == stream);
  CHECK_THROWS_AS(fu::insert_canary(stream, std::vector<fu::Token>{}, 3, 1), fu::InvalidArgument);
}

TEST_CASE("insert_canary_documents: copies are separate documents at the recorded indices") {
  std::vector<std::string> docs;
  for (int i = 0; i < 40; ++i) docs.push_back("document " + std::to_string(i));
  const std::string canary = "my pin is 1234";
  const auto ins = fu::insert_canary_documents<std::string>(docs, canary, 5, 3);
  REQUIRE(ins.documents.size() == 45);
  REQUIRE(ins.indices.size() == 5);
  std::vector<std::string> rest;
  std::set<std::size_t> idx(ins.indices.begin(), ins.indices.end());
  CHECK(idx.size() == 5);
  for (std::size_t i = 0; i < ins.documents.size(); ++i) {
    if (idx.count(i))
      CHECK(ins.documents[i] == canary);
    else
      rest.push_back(ins.documents[i]);
  }
  CHECK(rest == docs);
}

TEST_CASE("CanarySpace: the character tokenizer fixture encodes each character as one token") {
  const fu::CanaryFormat f("ab:", {fu::CanarySlot::from_chars("0123"), fu::CanarySlot{{"-a", "-b"}, ""}});
  const fu::CanarySpace space(f, CharTokenizer{});
  CHECK(space.tokens_extend());
  CHECK(space.symbol_tokens(1, 0).size() == 2);
  CHECK(space.decode(space.tokens(f.canary_at(5))) == f.text(f.canary_at(5)));
}

TEST_CASE("CanaryFormat: a one-slot format of 2*10^5 symbols builds in linear time and still finds a duplicate") {
  // The distinctness check was pairwise (10-17 s for 10^5 symbols, issue 15); a hash set makes it O(n).
  fu::CanarySlot slot;
  for (int i = 0; i < 200000; ++i) {
    std::string symbol = "s";  // not "s" + to_string: GCC 12 warns falsely (-Wrestrict) on that form
    symbol += std::to_string(i);
    slot.symbols.push_back(std::move(symbol));
  }
  const fu::CanaryFormat f("key ", {slot});
  CHECK(f.space_size() == 200000);
  CHECK(f.text(f.canary_at(199999)) == "key s199999");
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  CHECK(space.tokens_extend());
  slot.symbols.push_back("s123456");  // a duplicate far from its twin
  CHECK_THROWS_WITH(fu::CanaryFormat("key ", {slot}), Catch::Contains("s123456") && Catch::Contains("twice"));
}
