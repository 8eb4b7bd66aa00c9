// GGUF reader, dequantisation and writer, checked against PyPI `gguf` (llama.cpp's reference Python
// package): tests/gguf/synthetic.gguf and the digests in tests/gguf/*.json were made by it
// (tests/gguf/make_fixtures.py). The whole-model bitwise check is in test_gguf_slow.cpp.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fisher_unlearn/io/gguf.hpp"
#include "fisher_unlearn/io/gguf_writer.hpp"
#include "gguf_test_files.hpp"
#include "sha256.hpp"

using namespace fisher_unlearn;
using fisher_unlearn::testing::sha256_hex;
using nlohmann::json;

namespace {

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p) {
  const std::string s = fisher_unlearn::testing::read_text_file(p);
  return std::vector<std::uint8_t>(s.begin(), s.end());
}
std::filesystem::path synthetic_path() { return fisher_unlearn::testing::test_data_dir() / "gguf" / "synthetic.gguf"; }
json load_json(const std::string& name) {
  return json::parse(fisher_unlearn::testing::read_text_file(fisher_unlearn::testing::test_data_dir() / "gguf" / name));
}
std::string f32_sha(const std::vector<float>& v) { return sha256_hex(v.data(), v.size() * sizeof(float)); }

// Compares a file's header, metadata and tensors with a digest made by the reference reader.
void check_against_digest(const GgufFile& file, const json& digest, bool check_values) {
  CHECK(file.version() == digest["version"].get<std::uint32_t>());
  CHECK(file.alignment() == digest["alignment"].get<std::uint32_t>());
  CHECK(file.data_offset() == digest["data_offset"].get<std::uint64_t>());
  REQUIRE(file.metadata().size() == digest["metadata"].size());
  for (std::size_t i = 0; i < file.metadata().size(); ++i) {
    const auto& [key, value] = file.metadata()[i];
    const json& want = digest["metadata"][i];
    INFO("metadata key " << key);
    CHECK(key == want["key"].get<std::string>());
    CHECK(std::string(gguf_value_type_name(value.type())) == want["type"].get<std::string>());
    const std::string encoded = gguf_encode_value(value);
    if (want.contains("sha256")) CHECK(sha256_hex(encoded.data(), encoded.size()) == want["sha256"].get<std::string>());
    if (value.type() == GgufValueType::Array) {
      const auto& a = std::get<GgufArray>(value.value);
      CHECK(a.size() == want["count"].get<std::size_t>());
      CHECK(std::string(gguf_value_type_name(a.element_type())) == want["element_type"].get<std::string>());
    } else if (value.type() == GgufValueType::String) {
      CHECK(file.get<std::string>(key) == want["value"].get<std::string>());
    } else if (value.type() == GgufValueType::Bool) {
      CHECK(file.get<bool>(key) == want["value"].get<bool>());
    } else if (value.type() == GgufValueType::UInt64) {
      CHECK(file.get<std::uint64_t>(key) == want["value"].get<std::uint64_t>());
    } else if (value.type() != GgufValueType::Float32 && value.type() != GgufValueType::Float64) {
      CHECK(file.get_integer(key) == want["value"].get<std::int64_t>());
    }
  }
  REQUIRE(file.tensors().size() == digest["tensors"].size());
  for (std::size_t i = 0; i < file.tensors().size(); ++i) {
    const GgufTensorInfo& t = file.tensors()[i];
    const json& want = digest["tensors"][i];
    INFO("tensor " << t.name);
    CHECK(t.name == want["name"].get<std::string>());
    CHECK(ggml_type_name(t.type) == want["type"].get<std::string>());
    CHECK(t.shape == want["shape"].get<std::vector<std::uint64_t>>());
    CHECK(t.byte_size == want["byte_size"].get<std::uint64_t>());
    if (check_values) {
      const auto bytes = file.tensor_bytes(t);
      CHECK(sha256_hex(bytes.data(), bytes.size()) == want["raw_sha256"].get<std::string>());
      CHECK(f32_sha(file.dequantize(t)) == want["f32_sha256"].get<std::string>());
    }
  }
}

// A little-endian byte builder for hand-made (and deliberately broken) files.
struct Bytes {
  std::string s;
  Bytes& u32(std::uint32_t v) { detail::gguf_put_u32(s, v); return *this; }
  Bytes& u64(std::uint64_t v) { detail::gguf_put_u64(s, v); return *this; }
  Bytes& str(std::string_view v) { detail::gguf_put_string(s, v); return *this; }
  Bytes& header(std::uint64_t tensors, std::uint64_t kvs) { return u32(kGgufMagic).u32(3).u64(tensors).u64(kvs); }
  GgufFile open() const { return GgufFile::from_bytes(std::vector<std::uint8_t>(s.begin(), s.end()), "hand-made"); }
};

void require_format_error(const Bytes& b, const std::string& fragment) {
  INFO("expected a FileFormatError mentioning '" << fragment << "'");
  try {
    (void)b.open();
    FAIL("no exception");
  } catch (const FileFormatError& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains(fragment));
  }
}

}  // namespace

TEST_CASE("GGUF: half-precision conversion is exact one way and rounds to nearest even the other") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(fp32_to_fp16(f) == h);
  }
  CHECK(fp16_to_fp32(0x3c00) == 1.0f);
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0xc000) == -2.0f);
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int trial = 0; trial < 200000; ++trial) {
    // Magnitudes from 2^-26 to 2^16 in float: subnormal halves, normal halves and overflow.
    std::uint32_t x = (bits(rng) & 0x807fffffu) | ((101u + bits(rng) % 42u) << 23);
    const float f = std::bit_cast<float>(x);
    const std::uint16_t h = fp32_to_fp16(f);
    const double exact = f;
    const double got = fp16_to_fp32(h);
    if (std::fabs(exact) >= 65520.0) {
      REQUIRE(std::isinf(got));
      continue;
    }
    INFO("x = " << f << " -> half " << h);
    const double err = std::fabs(got - exact);
    // Neither neighbour of h is closer; on a tie the chosen mantissa is even.
    for (int step : {-1, 1}) {
      const std::uint16_t n = static_cast<std::uint16_t>(h + step);
      if ((n & 0x7c00u) == 0x7c00u || ((n ^ h) & 0x8000u)) continue;
      const double other = std::fabs(fp16_to_fp32(n) - exact);
      REQUIRE(err <= other);
      if (err == other) REQUIRE((h & 1u) == 0u);
    }
  }
}

TEST_CASE("GGUF: bfloat16 conversion rounds to nearest even and is exact back") {
  CHECK(bf16_to_fp32(fp32_to_bf16(1.0f)) == 1.0f);
  CHECK(fp32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80u);  // tie, even stays
  CHECK(fp32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82u);  // tie, odd rounds up
  CHECK(fp32_to_bf16(std::bit_cast<float>(0x3f808001u)) == 0x3f81u);
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
}

TEST_CASE("GGUF: a hand-made Q4_1 and Q8_0 block dequantise to d*q + m") {
  std::vector<std::uint8_t> q41(20);
  const std::uint16_t d = fp32_to_fp16(0.5f), m = fp32_to_fp16(-1.0f);
  q41[0] = d & 0xff; q41[1] = d >> 8; q41[2] = m & 0xff; q41[3] = m >> 8;
  for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
  std::vector<float> out(32);
  dequantize(GgmlType::Q4_1, q41, out);
  for (int j = 0; j < 16; ++j) {
    CHECK(out[j] == 0.5f * j - 1.0f);
    CHECK(out[j + 16] == 0.5f * (15 - j) - 1.0f);
  }
  std::vector<std::uint8_t> q80(34);
  const std::uint16_t d8 = fp32_to_fp16(0.25f);
  q80[0] = d8 & 0xff; q80[1] = d8 >> 8;
  for (int j = 0; j < 32; ++j) q80[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(j * 8 - 128));
  dequantize(GgmlType::Q8_0, q80, out);
  for (int j = 0; j < 32; ++j) CHECK(out[j] == 0.25f * static_cast<float>(j * 8 - 128));
  CHECK_THROWS_AS(dequantize(GgmlType::Q8_0, std::span<const std::uint8_t>(q80).first(33), out), InvalidArgument);
  CHECK_THROWS_AS(dequantize(GgmlType::IQ2_XXS, q80, out), InvalidArgument);
}

TEST_CASE("GGUF: a file written by the reference writer reads back with every metadata type and tensor bit-exact") {
  const GgufFile file = GgufFile::open(synthetic_path());
  check_against_digest(file, load_json("synthetic_digest.json"), true);
  // Typed getters.
  CHECK(file.get<std::uint8_t>("test.u8") == 200);
  CHECK(file.get<std::int8_t>("test.i8") == -100);
  CHECK(file.get<std::uint16_t>("test.u16") == 60000);
  CHECK(file.get<std::int16_t>("test.i16") == -30000);
  CHECK(file.get<std::uint32_t>("test.u32") == 4000000000u);
  CHECK(file.get<std::int32_t>("test.i32") == -2000000000);
  CHECK(file.get<float>("test.f32") == 0.15625f);
  CHECK(file.get<std::uint64_t>("test.u64") == 18000000000000000000ull);
  CHECK(file.get<std::int64_t>("test.i64") == -9000000000000000000ll);
  CHECK(file.get<double>("test.f64") == -2.5e-300);
  CHECK(file.get_real("test.f32") == 0.15625);
  CHECK(file.get<bool>("test.bool"));
  CHECK(file.get<std::string>("test.string") == "h\xc3\xa9llo, GGUF \xe2\x9c\x93");
  CHECK(file.get_array<std::string>("test.array_str") == std::vector<std::string>{"a", "", "\xc4\xa0the", "\xe6\x97\xa5\xe6\x9c\xac"});
  CHECK(file.get_array<std::int32_t>("test.array_i32") == std::vector<std::int32_t>{1, -2, 3, -4});
  CHECK(file.get_array<bool>("test.array_bool") == std::vector<bool>{true, false, true});
  const auto& nested = file.get_array<GgufArray>("test.array_nested");
  REQUIRE(nested.size() == 3);
  CHECK(std::get<std::vector<std::int32_t>>(nested[0].data) == std::vector<std::int32_t>{1, 2});
  CHECK(std::get<std::vector<std::string>>(nested[2].data) == std::vector<std::string>{"x", "yz"});
  CHECK(file.get_or<std::uint32_t>("absent.key", 7u) == 7u);
  // Errors name the key and the types.
  CHECK_THROWS_WITH(file.get<std::string>("absent.key"), Catch::Matchers::Contains("no metadata key 'absent.key'"));
  CHECK_THROWS_WITH(file.get<std::int32_t>("test.u32"), Catch::Matchers::Contains("'test.u32' is uint32, expected int32"));
  CHECK_THROWS_WITH(file.get_array<float>("test.array_i32"), Catch::Matchers::Contains("array of int32"));
  CHECK_THROWS_AS(file.get_integer("test.u64"), FileFormatError);  // does not fit int64
  CHECK_THROWS_AS(file.get_integer("test.string"), FileFormatError);
  CHECK_THROWS_WITH(file.tensor("nope"), Catch::Matchers::Contains("no tensor 'nope'"));
  std::vector<float> wrong(5);
  CHECK_THROWS_AS(file.dequantize(file.tensor("t.q8_0"), wrong), InvalidArgument);
}

TEST_CASE("GGUF: the quantiser writes the same F16, BF16 and Q8_0 bytes as gguf.quants.quantize") {
  const GgufFile file = GgufFile::open(synthetic_path());
  const json digest = load_json("synthetic_digest.json");
  for (const auto& [type_name, type] : {std::pair{"F32", GgmlType::F32}, std::pair{"F16", GgmlType::F16},
                                        std::pair{"BF16", GgmlType::BF16}, std::pair{"Q8_0", GgmlType::Q8_0}}) {
    INFO(type_name);
    const std::vector<float> input = digest["quantize_inputs"][type_name].get<std::vector<float>>();
    const GgufTensorInfo& t = file.tensor(std::string("t.") + (type == GgmlType::F32 ? "f32" : type == GgmlType::F16 ? "f16" : type == GgmlType::BF16 ? "bf16" : "q8_0"));
    std::vector<std::uint8_t> bytes(t.byte_size);
    quantize(type, input, bytes);
    const auto want = file.tensor_bytes(t);
    CHECK(std::equal(bytes.begin(), bytes.end(), want.begin(), want.end()));
  }
  std::vector<float> bad(32, 1.0f);
  std::vector<std::uint8_t> out(34);
  bad[3] = std::nanf("");
  CHECK_THROWS_AS(quantize(GgmlType::Q8_0, bad, out), NonFiniteError);
  bad[3] = 1e5f;
  std::vector<std::uint8_t> out16(64);
  CHECK_THROWS_AS(quantize(GgmlType::F16, bad, out16), NonFiniteError);
  CHECK_THROWS_AS(quantize(GgmlType::Q4_1, bad, out), InvalidArgument);
}

TEST_CASE("GGUF: Q8_0 quantisation of random data is within half a step and round-trips") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> x(32 * 40);
  for (float& v : x) v = normal(rng);
  std::vector<std::uint8_t> q(34 * 40);
  quantize(GgmlType::Q8_0, x, q);
  std::vector<float> y(x.size());
  dequantize(GgmlType::Q8_0, q, y);
  for (std::size_t b = 0; b < 40; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    // Half a step, plus the scale's own rounding to f16 (relative 2^-11) times |q| <= 127.
    const float step = amax / 127.0f;
    for (int j = 0; j < 32; ++j)
      REQUIRE(std::fabs(y[32 * b + j] - x[32 * b + j]) <= step * (0.5f + 127.0f * 0x1p-11f) * 1.001f);
  }
  std::vector<float> zeros(32, 0.0f);
  std::vector<std::uint8_t> qz(34, 0xAB);
  quantize(GgmlType::Q8_0, zeros, qz);  // amax = 0: scale 0, every quant 0 (ggml: id = 0)
  CHECK(std::all_of(qz.begin(), qz.end(), [](std::uint8_t b) { return b == 0; }));
  std::vector<std::uint8_t> q2(q.size());
  quantize(GgmlType::Q8_0, y, q2);  // quantising the dequantised values reproduces the blocks
  std::vector<float> y2(x.size());
  dequantize(GgmlType::Q8_0, q2, y2);
  for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(std::fabs(y2[i] - y[i]) <= 1e-6f * std::fabs(y[i]) + 1e-9f);
}

TEST_CASE("GGUF: a truncated or corrupt header is a FileFormatError at every cut, never a crash") {
  const std::vector<std::uint8_t> good = read_bytes(synthetic_path());
  const GgufFile ok = GgufFile::from_bytes(good);
  std::size_t data_end = 0;  // the padding after the last tensor is not needed
  for (const auto& t : ok.tensors()) data_end = std::max<std::size_t>(data_end, ok.data_offset() + t.offset + t.byte_size);
  for (std::size_t cut = 0; cut < data_end; cut += (cut < ok.data_offset() + 64 ? 1 : 97)) {
    std::vector<std::uint8_t> part(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
    INFO("cut at " << cut);
    CHECK_THROWS_AS(GgufFile::from_bytes(part), FileFormatError);
  }
  // Random single-byte corruptions of the header: either a FileFormatError or a file whose every
  // tensor lies within the bytes (checked by reading them all).
  std::mt19937 rng(3);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::uint8_t> bad = good;
    bad[rng() % ok.data_offset()] = static_cast<std::uint8_t>(rng());
    try {
      const GgufFile f = GgufFile::from_bytes(bad);
      for (const auto& t : f.tensors()) {
        REQUIRE(f.data_offset() + t.offset + t.byte_size <= bad.size());
        (void)f.tensor_bytes(t);
      }
    } catch (const FileFormatError&) {
    }
  }
}

TEST_CASE("GGUF: hostile counts, lengths, types and offsets are rejected before any allocation") {
  require_format_error(Bytes{}.u32(0x46554746).u32(3).u64(0).u64(0), "magic");
  require_format_error(Bytes{}.u32(kGgufMagic).u32(1).u64(0).u64(0), "version 1");
  require_format_error(Bytes{}.u32(kGgufMagic).u32(0x03000000).u64(0).u64(0), "big-endian");
  require_format_error(Bytes{}.header(~0ull, 0), "tensor count");
  require_format_error(Bytes{}.header(0, 1ull << 60), "metadata count");
  require_format_error(Bytes{}.header(0, 1).u64(~0ull).u64(0), "metadata key");
  require_format_error(Bytes{}.header(0, 1).str("k").u32(8).u64(1ull << 62), "truncated");
  require_format_error(Bytes{}.header(0, 1).str("k").u32(9).u32(4).u64(1ull << 61), "element count");
  require_format_error(Bytes{}.header(0, 1).str("k").u32(9).u32(8).u64(1ull << 40), "element count");
  require_format_error(Bytes{}.header(0, 1).str("k").u32(13).u32(0), "unknown metadata value type 13");
  require_format_error(Bytes{}.header(0, 1).str("k").u32(9).u32(99).u64(0), "unknown array element type");
  require_format_error(Bytes{}.header(0, 1).str("k").u32(7).u32(2), "bool");
  require_format_error(Bytes{}.header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2), "duplicate metadata key");
  {
    Bytes deep;
    deep.header(0, 1).str("k").u32(9);
    for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
    deep.u32(4).u64(0);
    require_format_error(deep, "nested deeper");
  }
  require_format_error(Bytes{}.header(0, 1).str("general.alignment").u32(4).u32(48), "power of two");
  require_format_error(Bytes{}.header(0, 1).str("general.alignment").u32(5).u32(32), "expected uint32");
  auto tensor = [](std::uint32_t n_dims, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset) {
    Bytes b;
    b.header(1, 0).str("w").u32(n_dims);
    for (auto d : ne) b.u64(d);
    b.u32(type).u64(offset);
    b.s.resize((b.s.size() + 31) / 32 * 32 + 64, '\0');  // 64 bytes of data
    return b;
  };
  CHECK_NOTHROW(tensor(2, {4, 4}, 0, 0).open());                 // 64 bytes of F32 fit exactly
  {
    const GgufFile empty = tensor(2, {0, 4}, 0, 1ull << 40).open();  // no bytes: any aligned offset
    CHECK(empty.tensor_bytes(empty.tensor("w")).empty());
    CHECK(empty.dequantize(empty.tensor("w")).empty());
  }
  require_format_error(tensor(2, {4, 5}, 0, 0), "extends past the end");
  require_format_error(tensor(1, {16}, 0, 32), "extends past the end");
  require_format_error(tensor(1, {4}, 0, 8), "not a multiple of the alignment");
  require_format_error(tensor(1, {4}, 0, ~0ull & ~31ull), "extends past the end");
  require_format_error(tensor(5, {1, 1, 1, 1, 1}, 0, 0), "dimensions");
  require_format_error(tensor(0, {}, 0, 0), "dimensions");
  require_format_error(tensor(1, {4}, 4, 0), "unknown ggml type 4");
  require_format_error(tensor(1, {48}, 8, 0), "block size");
  require_format_error(tensor(2, {1ull << 62, 1ull << 62}, 0, 0), "int64");
  require_format_error(tensor(1, {1ull << 62}, 0, 0), "too large");
  require_format_error(tensor(1, {1ull << 40}, 0, 0), "extends past the end");
  CHECK_THROWS_AS(GgufFile::open("/nonexistent/model.gguf"), IoError);
}

TEST_CASE("GGUF writer: a copied file is byte-identical to the reference writer's output") {
  const GgufFile source = GgufFile::open(synthetic_path());
  const std::string image = GgufWriter(source).serialize();
  const std::string original = fisher_unlearn::testing::read_text_file(synthetic_path());
  CHECK(image.size() == original.size());
  CHECK(image == original);
}

TEST_CASE("GGUF writer: replaced tensors, the unlearning record and unchanged tensors round-trip") {
  const GgufFile source = GgufFile::open(synthetic_path());
  GgufWriter writer(source);
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> v(64 * 3);
  for (float& x : v) x = normal(rng);
  writer.replace_tensor("t.q4_1", v, GgmlType::Q8_0);
  writer.replace_tensor("t.f16", v, GgmlType::F32);
  writer.replace_tensor("t.bf16", v, GgmlType::F16);
  writer.add_tensor("extra.weight", {32, 2}, std::span<const float>(v).first(64), GgmlType::BF16);
  writer.record_unlearning({.method = "fisher_newton", .forgotten_records = 12, .date = "2026-12-04T18:00:00Z", .note = "test"});
  // Strong guarantee: a failing replacement leaves the writer as it was.
  const std::string before = writer.serialize();
  std::vector<float> bad = v;
  bad[7] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(writer.replace_tensor("t.q8_0", bad, GgmlType::Q8_0), NonFiniteError);
  CHECK_THROWS_AS(writer.replace_tensor("t.q8_0", std::span<const float>(v).first(10), GgmlType::Q8_0), InvalidArgument);
  CHECK_THROWS_AS(writer.replace_tensor("absent", v, GgmlType::Q8_0), InvalidArgument);
  CHECK_THROWS_AS(writer.add_tensor(std::string(64, 'x'), {32}, std::span<const float>(v).first(32), GgmlType::F32), InvalidArgument);
  CHECK(writer.serialize() == before);

  const auto dir = std::filesystem::temp_directory_path() / ("fu_gguf_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "out.gguf";
  writer.write(path);
  const GgufFile back = GgufFile::open(path);
  CHECK(back.get<std::string>("general.unlearning.method") == "fisher_newton");
  CHECK(back.get<std::uint64_t>("general.unlearning.forgotten_records") == 12);
  CHECK(back.get<std::string>("general.unlearning.date") == "2026-12-04T18:00:00Z");
  CHECK(back.get<std::string>("general.unlearning.note") == "test");
  CHECK(back.get_array<std::string>("general.unlearning.changed_tensors") ==
        std::vector<std::string>{"t.f16", "t.bf16", "t.q4_1", "extra.weight"});
  CHECK(back.alignment() == 64);
  for (const auto& t : source.tensors()) {
    const GgufTensorInfo& b = back.tensor(t.name);
    CHECK(b.shape == t.shape);
    CHECK(b.offset % 64 == 0);
    if (t.name == "t.q4_1" || t.name == "t.f16" || t.name == "t.bf16") continue;
    const auto x = source.tensor_bytes(t), y = back.tensor_bytes(b);
    CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
  }
  CHECK(back.tensor("t.q4_1").type == GgmlType::Q8_0);
  CHECK(back.dequantize(back.tensor("t.f16")) == v);
  std::vector<std::uint8_t> q8(34 * 6);
  quantize(GgmlType::Q8_0, v, q8);
  std::vector<float> expect(v.size());
  dequantize(GgmlType::Q8_0, q8, expect);
  CHECK(back.dequantize(back.tensor("t.q4_1")) == expect);
  const auto half = back.dequantize(back.tensor("t.bf16"));
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(std::fabs(half[i] - v[i]) <= std::fabs(v[i]) * 0x1p-11f);
  const auto extra = back.dequantize(back.tensor("extra.weight"));
  for (std::size_t i = 0; i < 64; ++i) CHECK(std::fabs(extra[i] - v[i]) <= std::fabs(v[i]) * 0x1p-8f);
  // No temporary file is left behind.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);

  // The reference reader reads our output back (when a Python with `gguf` was found at configure time).
  const std::string python = FISHER_UNLEARN_GGUF_PYTHON;
  if (python.empty()) {
    WARN("SKIPPED the reference read-back: no Python with the `gguf` package (configure with "
         "-DFISHER_UNLEARN_GGUF_PYTHON=/path/to/venv/bin/python)");
  } else {
    const auto json_path = dir / "digest.json";
    const std::string cmd = python + " " + (fisher_unlearn::testing::test_data_dir() / "gguf" / "make_fixtures.py").string() +
                            " --read-back " + path.string() + " > " + json_path.string();
    REQUIRE(std::system(cmd.c_str()) == 0);
    check_against_digest(back, json::parse(fisher_unlearn::testing::read_text_file(json_path)), true);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("GGUF: the real SmolLM2 file's header, metadata and a sample of tensors match the reference") {
  const auto path = fisher_unlearn::testing::smollm2_path();
  if (!path) {
    WARN(fisher_unlearn::testing::smollm2_skip_message());
    return;
  }
  const GgufFile file = GgufFile::open(*path);
  const json digest = load_json("smollm2_digest.json");
  check_against_digest(file, digest, false);
  CHECK(file.get<std::string>("general.architecture") == "llama");
  CHECK(file.get_integer("llama.block_count") == 30);
  CHECK(file.get_integer("llama.embedding_length") == 576);
  CHECK(file.get_integer("llama.attention.head_count") == 9);
  CHECK(file.get_integer("llama.attention.head_count_kv") == 3);
  CHECK(file.get_integer("llama.feed_forward_length") == 1536);
  CHECK(file.get_real("llama.attention.layer_norm_rms_epsilon") == Approx(1e-5));
  CHECK(file.get_array<std::string>("tokenizer.ggml.tokens").size() == 49152);
  CHECK(file.get_array<std::string>("tokenizer.ggml.merges").size() == 48900);
  std::size_t q41 = 0, q80 = 0, f32 = 0;
  for (const auto& t : file.tensors()) {
    q41 += t.type == GgmlType::Q4_1;
    q80 += t.type == GgmlType::Q8_0;
    f32 += t.type == GgmlType::F32;
  }
  CHECK(q41 == 210);
  CHECK(q80 == 1);
  CHECK(f32 == file.tensors().size() - 211);
  CHECK(file.tensor("token_embd.weight").shape == std::vector<std::uint64_t>{576, 49152});
  // Bitwise equal to gguf.quants.dequantize on a sample (every tensor: test_gguf_slow).
  for (std::size_t i : {0ul, 1ul, 2ul, 3ul, 4ul, 9ul}) {
    const auto& t = file.tensors()[i];
    if (t.element_count() > 5'000'000) continue;
    INFO(t.name);
    CHECK(f32_sha(file.dequantize(t)) == digest["tensors"][i]["f32_sha256"].get<std::string>());
  }
}

TEST_CASE("GGUF writer: a file without tensor data is not padded to its alignment (libFuzzer's 1 GiB case)") {
  // The fuzz finding build-fuzz/artifacts/fuzz_gguf-oom-640fdb2c…: a valid tensor-less header with
  // general.alignment = 2^30. Padding the header to the alignment allocated 1 GiB for a 66-byte file.
  const Bytes b = Bytes{}.header(0, 2).str("general.alignment").u32(4).u32(1u << 30).str("general.name").u32(8).str("x");
  const GgufFile file = b.open();
  REQUIRE(file.alignment() == (1u << 30));
  const std::string image = GgufWriter(file).serialize();
  CHECK(image.size() < 256);
  const GgufFile back = GgufFile::from_bytes(std::vector<std::uint8_t>(image.begin(), image.end()), "round trip");
  CHECK(back.alignment() == (1u << 30));
  CHECK(back.get<std::string>("general.name") == "x");
  CHECK(back.tensors().empty());
}
