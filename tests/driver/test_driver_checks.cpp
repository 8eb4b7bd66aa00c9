// The example programs' shared checks (examples/example_checks.hpp) and the driver's messages, without
// training: command-line values refused at parse time, binary corpora refused, unwritable folders found
// before any work, and a diverging first-order baseline that names its learning rate.
#include <catch2/catch.hpp>

#include "example_checks.hpp"
#include "unlearn_lm/measure.hpp"
#include "unlearn_lm/registry.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace {

unlearn_lm::Options tiny_options(const std::filesystem::path& scratch) {
  unlearn_lm::Options o;
  o.results_dir = (scratch / "results").string();
  o.cache_dir = (scratch / "cache").string();
  return o;
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("fu_driver_checks_" + name + std::to_string(std::random_device{}() % 1000000));
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("example_checks: integers are parsed whole, in range, with the option named") {
  using example_checks::parse_integer;
  CHECK(parse_integer("12", 0, 100, "--steps") == 12);
  CHECK_THROWS_WITH(parse_integer("-1", 0, 100, "--bytes"), Catch::Contains("--bytes must lie in [0, 100]; got -1"));
  CHECK_THROWS_WITH(parse_integer("1e9", 0, 100, "--steps"), Catch::Contains("--steps needs a whole number in [0, 100]"));
  CHECK_THROWS_WITH(parse_integer("12abc", 0, 100, "--steps"), Catch::Contains("'12abc'"));
  CHECK_THROWS_WITH(parse_integer("", 0, 100, "--steps"), Catch::Contains("--steps"));
  CHECK_THROWS_WITH(parse_integer("99999999999999999999", 0, 100, "--steps"), Catch::Contains("--steps"));
  CHECK_THROWS_AS(parse_integer("101", 0, 100, "--steps"), fisher_unlearn::InvalidArgument);
}

TEST_CASE("example_checks: NaN, Inf and out-of-range reals are refused with the range named") {
  using example_checks::require_finite;
  CHECK_NOTHROW(require_finite(2.5, 0, 64, "--exposure-target"));
  CHECK_THROWS_WITH(require_finite(std::nan(""), 0, 64, "--exposure-target"),
                    Catch::Contains("--exposure-target must be a finite number in [0, 64]; got nan"));
  CHECK_THROWS_WITH(require_finite(INFINITY, 0, 64, "--x"), Catch::Contains("got inf"));
  CHECK_THROWS_WITH(require_finite(-1, 0, 64, "--x"), Catch::Contains("got -1"));
}

TEST_CASE("example_checks: text passes, binary garbage and NUL bytes are refused") {
  using example_checks::binary_content_problem;
  CHECK(binary_content_problem("In the beginning God created the heaven and the earth.\n\tAnd the earth was "
                               "without form.\r\n").empty());
  CHECK(binary_content_problem("caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 UTF-8 text\n").empty());
  std::string garbage(4096, '\0');
  std::mt19937 rng(5);
  for (char& c : garbage) c = static_cast<char>(rng() & 0xff);
  CHECK_FALSE(binary_content_problem(garbage).empty());
  std::string one_nul = std::string(1000, 'a') + '\0' + std::string(1000, 'b');
  CHECK(binary_content_problem(one_nul) == "1 NUL bytes");
  CHECK_THROWS_WITH(example_checks::require_text_corpus(garbage, "data/x/train.txt"),
                    Catch::Contains("data/x/train.txt does not look like a text corpus"));
}

TEST_CASE("unlearn_lm: every bad option is refused by validate() with the option and its range named") {
  const auto dir = scratch_dir("validate");
  auto refused = [&](auto change, const std::string& expected) {
    unlearn_lm::Options o = tiny_options(dir);
    change(o);
    CHECK_THROWS_WITH(unlearn_lm::validate(o), Catch::Contains(expected));
  };
  CHECK_NOTHROW(unlearn_lm::validate(tiny_options(dir)));
  refused([](auto& o) { o.train_bytes = -1; }, "--train-bytes must lie in [0, ");
  refused([](auto& o) { o.valid_bytes = -1; }, "--valid-bytes must lie in [0, ");
  refused([](auto& o) { o.warmup = -3; }, "--warmup must lie in [0, ");
  refused([](auto& o) { o.exposure_target = std::nan(""); }, "--exposure-target must be a finite number");
  refused([](auto& o) { o.width = 0; }, "--width must lie in [1, 8192]; got 0");
  refused([](auto& o) { o.threads = 100000; }, "--threads must lie in [1, ");
  refused([](auto& o) { o.methods = {"no_such_method"}; }, "unknown method 'no_such_method'");
  refused([](auto& o) { o.checkpoint_every = -1; }, "--checkpoint-every must lie in [0, ");
  refused([](auto& o) { o.average_iterates = 0; }, "--average-iterates must lie in [1, 64]; got 0");
  refused([](auto& o) { o.check_spacing = -1; }, "--check-spacing must lie in [0, ");
  // an unwritable results or cache folder (a file in the way) is found before any work
  std::ofstream(dir / "a_file") << "x";
  refused([&](auto& o) { o.results_dir = (dir / "a_file" / "results").string(); }, "--results '");
  refused([&](auto& o) { o.cache_dir = (dir / "a_file").string(); }, "--cache '");
  std::filesystem::remove_all(dir);
}

TEST_CASE("unlearn_lm: a binary corpus is refused when it is read, before any training") {
  const auto dir = scratch_dir("corpus");
  {
    std::ofstream out(dir / "train.txt", std::ios::binary);
    std::mt19937 rng(9);
    for (int i = 0; i < 20000; ++i) out.put(static_cast<char>(rng() & 0xff));
  }
  CHECK_THROWS_AS(unlearn_lm::read_text(dir / "train.txt", 0), fisher_unlearn::FileFormatError);
  CHECK_THROWS_WITH(unlearn_lm::read_text(dir / "train.txt", 0), Catch::Contains("does not look like a text corpus"));
  std::ofstream(dir / "valid.txt") << "plain text\nof two lines\n";
  CHECK(unlearn_lm::read_text(dir / "valid.txt", 0) == "plain text\nof two lines\n");
  std::filesystem::remove_all(dir);
}

TEST_CASE("unlearn_lm: a first-order baseline that diverges names the learning rate as the cause") {
  using namespace unlearn_lm;
  fu::models::TransformerConfig cfg;
  cfg.context_length = 16;
  cfg.num_layers = 1;
  cfg.width = 16;
  cfg.num_heads = 2;
  cfg.seed = 4;
  Model model(cfg);
  const std::string text = "the quick brown fox jumps over the lazy dog, again and again and again.\n";
  const auto windows = make_windows(text + text + text + text, 17);
  REQUIRE(windows.size() >= 8);
  Dataset ds;
  ds.seed = 1;
  ds.retain.assign(windows.begin() + 2, windows.end());
  ForgetRequest request;
  request.windows.assign(windows.begin(), windows.begin() + 2);
  request.retain_total = ds.retain.size();
  Options opt;
  opt.first_order_steps = 8;
  opt.first_order_batch = 2;
  legacy::SgdBaselineMethod<fu::GradientAscent> method(opt, "gradient_ascent");
  method.prepare(model, ds, request);
  const std::vector<float> before(model.parameters().begin(), model.parameters().end());
  CHECK_THROWS_WITH(method.apply(model, 1e30), Catch::Contains("diverged at learning rate 1e+30") &&
                                                   Catch::Contains("the learning rate is too large"));
  CHECK(std::equal(before.begin(), before.end(), model.parameters().begin()));  // the library's strong guarantee
}

namespace {

unlearn_lm::Model peaked_transformer(std::size_t context, std::uint64_t seed) {
  namespace fu = fisher_unlearn;
  fu::models::TransformerConfig cfg;
  cfg.context_length = context;
  cfg.num_layers = 2;
  cfg.width = 16;
  cfg.num_heads = 2;
  cfg.seed = seed;
  unlearn_lm::Model model(cfg);
  std::mt19937_64 rng(seed + 100);
  std::normal_distribution<float> normal(0.0f, 0.4f);  // far from uniform next-token distributions
  for (float& t : model.parameters()) t = normal(rng);
  return model;
}

}  // namespace

TEST_CASE("unlearn_lm: SharedPrefixScorer gives bitwise the per-candidate log-perplexities, any thread count") {
  using namespace unlearn_lm;
  // context 48: plain incremental steps; context 12: the prefix alone overflows the window, so every
  // step rebuilds the state (Transformer::advance's full re-run) and the sharing must still be exact.
  for (std::size_t context : {std::size_t{48}, std::size_t{12}})
    for (const char* format : {"pin", "phone"}) {
      CAPTURE(context, format);
      const Model model = peaked_transformer(context, 7 + context);
      const fu::CanarySpace space(canary_format(format), fu::ByteTokenizer{});
      const std::size_t n = context == 48 ? 300 : 60;
      const std::uint64_t seed = 11;
      const auto reference = candidate_log_perplexities_unshared(model, space, n, seed, 1);
      for (std::size_t threads : {std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
        const auto shared = candidate_log_perplexities(model, space, n, seed, threads);
        REQUIRE(shared.size() == reference.size());
        for (std::size_t i = 0; i < n; ++i) REQUIRE(shared[i] == reference[i]);  // bitwise, not approximately
      }
      // Duplicates, and candidates that are prefixes of others (a shorter secret ends inside the trie).
      auto cands = space.format().generate(seed, 40);
      cands.push_back(cands[3]);
      cands.push_back(cands[3]);
      auto tokens = candidate_tokens(space, cands);
      tokens.push_back(std::vector<Token>(tokens[5].begin(), tokens[5].begin() + 4));
      tokens.push_back(std::vector<Token>(tokens[5].begin(), tokens[5].begin() + 1));
      tokens.push_back({});
      const auto root = model.begin_decode(space.prefix_tokens());
      SharedPrefixScorer scorer(model, root, tokens);
      const auto values = scorer.run(2);
      std::vector<float> buf(model.vocab_size());
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        CAPTURE(i, tokens[i].size());
        CHECK(values[i] == secret_log_perplexity(model, root, tokens[i], buf));
      }
      CHECK(values[40] == values[3]);
      CHECK(values.back() == 0.0);
      CHECK(values[3] > 0.0);
    }
}

TEST_CASE("unlearn_lm: selection_score with shared prefixes equals the one-candidate-at-a-time score") {
  using namespace unlearn_lm;
  const Model model = peaked_transformer(48, 3);
  Dataset ds;
  ds.seed = 5;
  std::mt19937_64 rng(17);
  for (const char* f : {"pin", "phone", "pin", "phone"}) {
    PlantedCanary c;
    c.format_name = f;
    c.space = std::make_shared<fu::CanarySpace>(canary_format(f), fu::ByteTokenizer{});
    c.secret = c.space->format().generate(rng);
    ds.canaries.push_back(std::move(c));
  }
  ds.valid = fu::ByteTokenizer{}.encode(std::string(400, 'a') + "the quick brown fox jumps over the lazy dog");
  Options opt;
  opt.selection_candidates = 128;
  const std::vector<std::size_t> tuning{0, 1, 2, 3};
  const SelectionScore reference = selection_score_unshared(model, ds, opt, tuning);
  for (long long threads : {1LL, 2LL, 3LL}) {
    opt.threads = threads;
    const SelectionScore s = selection_score(model, ds, opt, tuning);
    CHECK(s.mean == reference.mean);
    CHECK(s.max == reference.max);
    CHECK(s.probe_perplexity == reference.probe_perplexity);
  }
  CHECK(reference.mean > 0.0);
}
