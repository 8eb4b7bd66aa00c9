// BpeTokenizer: the GPT-2 byte map, UTF-8 decoding, llama.cpp's pre-tokenizer split and BPE merges on
// a hand-made vocabulary; on the real SmolLM2 vocabulary, llama.cpp's token ids for the hand-written
// edge cases (tests/bpe/smollm2_tokens.json). The > 1 MB corpus parity is test_bpe_tokenizer_slow.
#include <catch2/catch.hpp>

#include <set>

#include "bpe_corpus.hpp"
#include "fisher_unlearn/bpe_tokenizer.hpp"
#include "fisher_unlearn/io/gguf_writer.hpp"

using namespace fisher_unlearn;

namespace {

// A GGUF with a byte-level vocabulary: the 256 byte symbols, some merges, two control tokens.
GgufFile tiny_vocabulary(const std::string& pre) {
  std::vector<std::string> tokens{"<|endoftext|>", "<|im_start|>"};
  std::vector<std::int32_t> types{3, 3};
  const auto& b2c = detail::byte_to_codepoint();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    detail::append_utf8(s, b2c[b]);
    tokens.push_back(s);
    types.push_back(1);
  }
  const std::vector<std::string> merges{"h e", "l l", "Ġ w", "he ll", "Ġw o", "o r", "hell o", "Ġwo r", "Ġwor l", "Ġworl d"};
  for (const std::string& m : merges) {
    tokens.push_back(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
    types.push_back(1);
  }
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue{std::string("gpt2")});
  w.set("tokenizer.ggml.pre", GgufValue{pre});
  w.set("tokenizer.ggml.tokens", GgufValue{GgufArray{tokens}});
  w.set("tokenizer.ggml.token_type", GgufValue{GgufArray{types}});
  w.set("tokenizer.ggml.merges", GgufValue{GgufArray{merges}});
  w.set("tokenizer.ggml.bos_token_id", GgufValue{std::uint32_t{1}});
  w.set("tokenizer.ggml.eos_token_id", GgufValue{std::uint32_t{0}});
  const std::string image = w.serialize();
  return GgufFile::from_bytes(std::vector<std::uint8_t>(image.begin(), image.end()));
}

std::vector<std::string> pieces(const BpeTokenizer& t, std::string_view text) {
  std::vector<std::string> out;
  for (const std::string& w : t.pre_tokenize(text)) {
    // Undo the byte map for readable expectations.
    std::string raw;
    for (std::uint32_t cp : detail::utf8_to_codepoints(w)) {
      const auto& b2c = detail::byte_to_codepoint();
      raw.push_back(static_cast<char>(std::find(b2c.begin(), b2c.end(), cp) - b2c.begin()));
    }
    out.push_back(raw);
  }
  return out;
}

}  // namespace

TEST_CASE("BpeTokenizer: the GPT-2 byte map is a bijection onto printable code points") {
  const auto& b2c = detail::byte_to_codepoint();
  std::set<std::uint32_t> seen(b2c.begin(), b2c.end());
  CHECK(seen.size() == 256);
  CHECK(b2c[' '] == 0x120);  // 'Ġ'
  CHECK(b2c['\n'] == 0x10A);  // 'Ċ'
  CHECK(b2c['A'] == 'A');
  CHECK(b2c[0xAD] == 0x143);
  for (std::uint32_t cp : b2c) CHECK(!detail::is_unicode_whitespace(cp));
}

TEST_CASE("BpeTokenizer: UTF-8 decoding replaces each invalid byte with U+FFFD") {
  CHECK(detail::utf8_to_codepoints("a\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80") == std::vector<std::uint32_t>{'a', 0xE9, 0x2713, 0x1F600});
  CHECK(detail::utf8_to_codepoints("\xff\x80(\xc3(") == std::vector<std::uint32_t>{0xFFFD, 0xFFFD, '(', 0xFFFD, '('});
  CHECK(detail::utf8_to_codepoints("\xe2\x82") == std::vector<std::uint32_t>{0xFFFD, 0xFFFD});
  CHECK(detail::is_unicode_letter(U'é'));
  CHECK(detail::is_unicode_letter(0x6771));  // 東
  CHECK(!detail::is_unicode_letter('1'));
  CHECK(detail::is_unicode_number(0x0663));   // Arabic-Indic three
  CHECK(detail::is_unicode_number(0x00BD));   // ½ (No)
  CHECK(!detail::is_unicode_number('a'));
}

TEST_CASE("BpeTokenizer: the smollm pre-tokenizer splits digits singly, then like GPT-2") {
  const auto tok = BpeTokenizer::from_gguf(tiny_vocabulary("smollm"));
  CHECK(pieces(tok, "I'm 123 hello  world!!") ==
        std::vector<std::string>{"I", "'m", " ", "1", "2", "3", " hello", " ", " world", "!!"});
  CHECK(pieces(tok, "they'll've 'S x'd") == std::vector<std::string>{"they", "'ll", "'ve", " '", "S", " x", "'d"});
  CHECK(pieces(tok, "a \t\n b  ") == std::vector<std::string>{"a", " \t\n", " b", "  "});
  CHECK(pieces(tok, "x86_64") == std::vector<std::string>{"x", "8", "6", "_", "6", "4"});
  CHECK(pieces(tok, "caf\xc3\xa9 \xe2\x80\x94 ok") == std::vector<std::string>{"caf\xc3\xa9", " \xe2\x80\x94", " ok"});
  CHECK(pieces(tok, "").empty());
  const auto gpt2 = BpeTokenizer::from_gguf(tiny_vocabulary("gpt2"));
  CHECK(pieces(gpt2, "abc123 456") == std::vector<std::string>{"abc", "123", " 456"});
}

TEST_CASE("BpeTokenizer: merges apply lowest rank first and decode inverts encode") {
  const auto tok = BpeTokenizer::from_gguf(tiny_vocabulary("smollm"));
  auto id = [&](const std::string& text) {
    for (std::size_t i = 0; i < tok.vocab_size(); ++i)
      if (tok.token_text(static_cast<Token>(i)) == text) return static_cast<Token>(i);
    FAIL("no token " << text);
    return Token{-1};
  };
  CHECK(tok.encode("hello world") == std::vector<Token>{id("hello"), id("Ġworld")});
  CHECK(tok.encode("hell") == std::vector<Token>{id("hell")});
  CHECK(tok.encode("wor") == std::vector<Token>{id("w"), id("or")});  // no space: "Ġw" does not apply
  for (const std::string& text : std::vector<std::string>{"hello world", "caf\xc3\xa9 \xf0\x9f\x98\x80\n\t x", std::string("\0\x01\xff", 3)}) {
    const auto ids = tok.encode(text);
    const std::string back = tok.decode(ids);
    if (text[0] == '\0') CHECK(back == std::string("\0\x01\xef\xbf\xbd", 5));  // invalid 0xff -> U+FFFD
    else CHECK(back == text);
  }
  CHECK(tok.encode("<|im_start|>hello") != tok.encode("<|im_start|>hello", true));
  CHECK(tok.encode("<|im_start|>hello", true) == std::vector<Token>{1, id("hello")});
  CHECK(tok.decode(std::vector<Token>{1, id("hello")}) == "hello");
  CHECK(tok.decode(std::vector<Token>{1, id("hello")}, true) == "<|im_start|>hello");
  CHECK_THROWS_AS(tok.decode(std::vector<Token>{100000}), InvalidArgument);
  CHECK(tok.bos() == 1);
  CHECK(tok.eos() == 0);
  CHECK_THROWS_AS(BpeTokenizer::from_gguf(tiny_vocabulary("llama3")), InvalidArgument);
}

TEST_CASE("BpeTokenizer: SmolLM2's vocabulary gives llama.cpp's ids on the edge cases") {
  const auto path = fisher_unlearn::testing::smollm2_path();
  if (!path) {
    WARN(fisher_unlearn::testing::smollm2_skip_message());
    return;
  }
  const auto tok = BpeTokenizer::from_gguf(GgufFile::open(*path));
  CHECK(tok.vocab_size() == 49152);
  CHECK(tok.bos() == 1);
  CHECK(tok.eos() == 2);
  CHECK(!tok.add_bos());
  CHECK(tok.pre_tokenizer() == "smollm");
  const auto fixture = fisher_unlearn::testing::load_bpe_fixture();
  const auto corpus_edge = [&] {
    std::vector<std::string> texts;
    for (const auto& c : fixture["chunks"])
      if (c["label"] == "edge") texts.emplace_back();
    return texts.size();
  }();
  REQUIRE(corpus_edge >= 10);
  // The edge-case texts are re-created by make_corpus.py; here they are identified by hash.
  std::size_t checked = 0;
  const std::filesystem::path corpus = fisher_unlearn::testing::test_data_dir().parent_path() / ".cache" / "bpe" / "corpus.bin";
  if (!std::filesystem::exists(corpus)) {
    WARN("SKIPPED edge cases: " << corpus << " missing (python3 tests/bpe/make_corpus.py; scripts/test.sh runs it)");
    return;
  }
  for (const auto& chunk : fisher_unlearn::testing::read_bpe_corpus(corpus)) {
    if (chunk.label != "edge") continue;
    const std::string sha = fisher_unlearn::testing::sha256_hex(chunk.text.data(), chunk.text.size());
    for (const auto& c : fixture["chunks"]) {
      if (c["text_sha256"] != sha) continue;
      INFO(chunk.text);
      CHECK(tok.encode(chunk.text) == c["tokens"].get<std::vector<Token>>());
      CHECK(tok.encode(chunk.text, true) == c["tokens_special"].get<std::vector<Token>>());
      ++checked;
    }
  }
  CHECK(checked == corpus_edge);
}
