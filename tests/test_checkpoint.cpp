// Checkpoints: bit-exact round trips, and every kind of damaged or foreign file is rejected with
// FileFormatError while the destination model stays exactly as it was.
#include <catch2/catch.hpp>

#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/models/transformer.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <vector>

#if defined(__unix__)
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace fu = fisher_unlearn;
namespace fs = std::filesystem;
using fu::models::Transformer;
using fu::models::TransformerConfig;

namespace {

TransformerConfig config() {
  TransformerConfig c;
  c.vocab_size = 256;
  c.context_length = 8;
  c.num_layers = 2;
  c.width = 16;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  c.seed = 17;
  return c;
}

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("fu_checkpoint_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class Scalar>
void randomize(Transformer<Scalar>& m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (Scalar& t : m.parameters()) t = static_cast<Scalar>(normal(rng));
}

template <class Scalar>
std::vector<Scalar> params(const Transformer<Scalar>& m) {
  return {m.parameters().begin(), m.parameters().end()};
}

template <class Scalar>
bool bit_equal(const std::vector<Scalar>& a, const std::vector<Scalar>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(Scalar)) == 0;
}

// Rewrites the trailing checksum so that a deliberately edited header is judged on its content.
void reseal(std::string& bytes) {
  bytes.resize(bytes.size() - 8);
  fu::detail::put_le<std::uint64_t>(bytes, fu::detail::fnv1a64(bytes));
}

template <class Fn>
std::string rejection_message(Fn&& fn) {
  try {
    fn();
  } catch (const fu::FileFormatError& e) {
    return e.what();
  }
  return "(not rejected)";
}

}  // namespace

TEST_CASE("Checkpoint: a transformer round-trips bit-exactly in float and double, and atomically") {
  TempDir dir("roundtrip");
  Transformer<float> f(config());
  randomize(f, 1);
  Transformer<double> d(config());
  randomize(d, 2);
  fu::save_checkpoint(dir.path / "f.ckpt", f);
  fu::save_checkpoint(dir.path / "d.ckpt", d);

  Transformer<float> f2(config());
  Transformer<double> d2(config());
  CHECK_FALSE(bit_equal(params(f), params(f2)));
  fu::load_checkpoint(dir.path / "f.ckpt", f2);
  fu::load_checkpoint(dir.path / "d.ckpt", d2);
  CHECK(bit_equal(params(f), params(f2)));
  CHECK(bit_equal(params(d), params(d2)));

  const auto built = fu::load_transformer<float>(dir.path / "f.ckpt");
  CHECK(built.config().to_string() == config().to_string());
  CHECK(bit_equal(params(f), params(built)));

  const auto header = fu::read_checkpoint_header(dir.path / "d.ckpt");
  CHECK(header.format_version == 1);
  CHECK(header.scalar_name() == "float64");
  CHECK(header.num_parameters == d.num_parameters());
  CHECK(header.model_kind == "transformer");
  // size = fixed header + kind + config + payload + checksum
  CHECK(fs::file_size(dir.path / "d.ckpt") ==
        32 + header.model_kind.size() + header.config.size() + 8 * d.num_parameters() + 8);

  // Overwriting replaces the file; no temporary files are left behind.
  randomize(f, 3);
  fu::save_checkpoint(dir.path / "f.ckpt", f);
  fu::load_checkpoint(dir.path / "f.ckpt", f2);
  CHECK(bit_equal(params(f), params(f2)));
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    ++files;
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  }
  CHECK(files == 2);
}

TEST_CASE("Checkpoint: generic parameter vectors round-trip with their kind and configuration text") {
  TempDir dir("generic");
  const std::vector<double> theta{1.5, -2.25, 3.0e-300, 7.0};
  fu::save_parameters<double>(dir.path / "p.bin", theta, "my_model", "features=4\n");
  std::vector<double> out(4, 0.0);
  fu::load_parameters<double>(dir.path / "p.bin", out, "my_model", "features=4\n");
  CHECK(out == theta);
  std::vector<double> untouched(4, 9.0);
  CHECK_THROWS_AS(fu::load_parameters<double>(dir.path / "p.bin", untouched, "other_model", "features=4\n"),
                  fu::FileFormatError);
  CHECK_THROWS_AS(fu::load_parameters<double>(dir.path / "p.bin", untouched, "my_model", "features=5\n"),
                  fu::FileFormatError);
  std::vector<double> wrong_size(5, 9.0);
  CHECK_THROWS_AS(fu::load_parameters<double>(dir.path / "p.bin", wrong_size, "my_model", "features=4\n"),
                  fu::FileFormatError);
  CHECK(untouched == std::vector<double>(4, 9.0));
}

TEST_CASE("Checkpoint: truncated, corrupted and foreign files are rejected and the model is unchanged") {
  TempDir dir("damaged");
  Transformer<float> source(config());
  randomize(source, 4);
  const fs::path good = dir.path / "good.ckpt";
  fu::save_checkpoint(good, source);
  const std::string bytes = read_bytes(good);

  Transformer<float> target(config());
  randomize(target, 5);
  const auto before = params(target);
  const fs::path bad = dir.path / "bad.ckpt";
  auto rejected = [&](const std::string& content, const std::string& expected_words) {
    write_bytes(bad, content);
    const std::string message = rejection_message([&] { fu::load_checkpoint(bad, target); });
    INFO(message);
    CHECK(message.find(expected_words) != std::string::npos);
    CHECK(bit_equal(before, params(target)));
  };

  SECTION("truncated anywhere") {
    for (std::size_t n : {std::size_t{0}, std::size_t{5}, std::size_t{20}, std::size_t{40}, bytes.size() / 2,
                          bytes.size() - 9, bytes.size() - 1})
      rejected(bytes.substr(0, n), n < 8 ? "not a fisher_unlearn checkpoint" : "truncated");
  }
  SECTION("trailing data") { rejected(bytes + "x", "size mismatch"); }
  SECTION("one flipped bit in the payload, the configuration or the checksum") {
    for (std::size_t at : {bytes.size() / 2, std::size_t{40}, bytes.size() - 3}) {
      std::string flipped = bytes;
      flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
      rejected(flipped, "checksum mismatch");
    }
  }
  SECTION("a foreign file") {
    rejected("# this is a README, not a checkpoint\n" + std::string(100, 'x'), "not a fisher_unlearn checkpoint");
  }
  SECTION("a newer format version") {
    std::string v2 = bytes;
    v2[8] = 2;
    reseal(v2);
    rejected(v2, "format version 2 is not supported");
  }
  SECTION("a different architecture") {
    auto other = config();
    other.num_heads = 4;
    Transformer<float> different(other);
    fu::save_checkpoint(bad, different);
    const std::string message = rejection_message([&] { fu::load_checkpoint(bad, target); });
    CHECK(message.find("architecture") != std::string::npos);
    CHECK(bit_equal(before, params(target)));
  }
  SECTION("a different scalar type") {
    const Transformer<double> as_double(source);
    fu::save_checkpoint(bad, as_double);
    const std::string message = rejection_message([&] { fu::load_checkpoint(bad, target); });
    CHECK(message.find("float64") != std::string::npos);
    CHECK(bit_equal(before, params(target)));
  }
  SECTION("a header announcing more parameters than the file holds") {
    std::string big = bytes;
    big[16 + 6] = 1;  // d += 2^48
    reseal(big);
    rejected(big, "truncated");
  }
  // A model with only the seed changed loads fine (the seed is not part of the architecture).
  auto reseeded = config();
  reseeded.seed = 999;
  Transformer<float> other_seed(reseeded);
  fu::load_checkpoint(good, other_seed);
  CHECK(bit_equal(params(source), params(other_seed)));
}

TEST_CASE("Checkpoint: unwritable destinations and missing files raise IoError") {
  TempDir dir("io");
  const Transformer<float> model(config());
  CHECK_THROWS_AS(fu::save_checkpoint(dir.path / "no_such_dir" / "m.ckpt", model), fu::IoError);
  Transformer<float> target(config());
  CHECK_THROWS_AS(fu::load_checkpoint(dir.path / "missing.ckpt", target), fu::IoError);
}

TEST_CASE("Checkpoint: a model with no parameters round-trips (no memcpy through a null pointer)") {
  // Regression: loading a 0-parameter checkpoint called memcpy(nullptr, ..., 0), which UBSan aborts on.
  TempDir dir("empty");
  const fs::path file = dir.path / "empty.ckpt";
  fu::save_parameters<float>(file, std::span<const float>(), "empty", "");
  const auto c = fu::read_checkpoint<float>(file);
  CHECK(c.header.num_parameters == 0);
  CHECK(c.parameters.size() == 0);
  fu::load_parameters<float>(file, std::span<float>(), "empty", "");
  std::vector<double> one{1.5};
  CHECK_THROWS_AS(fu::load_parameters<double>(file, std::span<double>(one), "empty", ""), fu::FileFormatError);
  CHECK(one[0] == 1.5);
}

TEST_CASE("Checkpoint: a configuration asking for petabytes is rejected before anything is allocated") {
  // Regression: load_transformer built the model from the stored configuration before comparing its
  // parameter count with the file, so a small file could demand terabytes (std::bad_alloc) or a GB.
  TempDir dir("huge");
  const fs::path file = dir.path / "huge.ckpt";
  const std::vector<float> few(10, 0.25f);
  for (const char* sizes : {"vocab_size=16777216\ncontext_length=1048576\nnum_layers=4096\nwidth=65536\n"
                            "num_heads=8\nmlp_ratio=64\nseed=1\n",
                            "vocab_size=262144\ncontext_length=8\nnum_layers=1\nwidth=1024\nnum_heads=8\n"
                            "mlp_ratio=4\nseed=1\n"}) {
    fu::save_parameters<float>(file, few, fu::kTransformerCheckpointKind, sizes);
    std::string message;
    try {
      (void)fu::load_transformer<float>(file);
      message = "(loaded)";
    } catch (const fu::FileFormatError& e) {
      message = e.what();
    } catch (const std::exception& e) {
      message = std::string("untyped: ") + e.what();
    }
    INFO(message);
    CHECK(message.find("holds 10 parameters but its configuration describes") != std::string::npos);
  }
  // A consistent file still loads.
  const Transformer<float> model(config());
  fu::save_checkpoint(file, model);
  CHECK(bit_equal(params(fu::load_transformer<float>(file)), params(model)));
}

TEST_CASE("Checkpoint: a path that is a directory raises IoError naming the problem") {
  // Regression: reading a directory escaped as std::ios_base::failure.
  TempDir dir("directory");
  Transformer<float> model(config());
  const auto before = params(model);
  for (auto call : {+[](const fs::path& p, Transformer<float>& m) { fu::load_checkpoint(p, m); },
                    +[](const fs::path& p, Transformer<float>&) { (void)fu::read_checkpoint_header(p); },
                    +[](const fs::path& p, Transformer<float>& m) { fu::save_checkpoint(p, m); }}) {
    std::string message;
    try {
      call(dir.path, model);
      message = "(no error)";
    } catch (const fu::IoError& e) {
      message = e.what();
    } catch (const std::exception& e) {
      message = std::string("untyped: ") + e.what();
    }
    INFO(message);
    CHECK(message.find("is a directory") != std::string::npos);
  }
  CHECK(bit_equal(before, params(model)));
  CHECK(fs::is_directory(dir.path));
}

#if defined(__unix__)
TEST_CASE("Checkpoint: a save removes the temporary files that killed saves of the same path left") {
  // Regression: a save killed between creating and renaming its temporary file left
  // "<name>.tmp.<N>.<PID>" behind for ever (292 MB after 20 kills of the driver).
  TempDir dir("stale");
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);  // `child` is now a PID of no running process
  const std::string dead = std::to_string(child), alive = std::to_string(::getpid());
  const fs::path target = dir.path / "m.ckpt";
  const std::vector<std::string> stale = {"m.ckpt.tmp.0." + dead, "m.ckpt.tmp.17." + dead};
  const std::vector<std::string> kept = {"m.ckpt.tmp.3." + alive,  // a save in progress in a live process
                                         "other.ckpt.tmp.0." + dead,  // another file's
                                         "m.ckpt.tmp.x." + dead, "m.ckpt.tmp.0", "m.ckpt.tmp.0." + dead + ".bak",
                                         "m.ckpt.notes"};
  for (const auto& name : stale) write_bytes(dir.path / name, "partial");
  for (const auto& name : kept) write_bytes(dir.path / name, "keep");
  const Transformer<float> model(config());
  fu::save_checkpoint(target, model);
  for (const auto& name : stale) CHECK_FALSE(fs::exists(dir.path / name));
  for (const auto& name : kept) CHECK(fs::exists(dir.path / name));
  CHECK(fs::exists(target));
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path)) ++files;
  CHECK(files == kept.size() + 1);
}
#endif
