// Every tensor of the real SmolLM2-135M-Instruct.Q4_1.gguf dequantised bit-identically to the
// reference (gguf.quants.dequantize, digests in tests/gguf/smollm2_digest.json), and the writer's
// copy of the whole file byte-identical to it. Needs scripts/fetch_smollm2.sh; skips without it.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "fisher_unlearn/io/gguf.hpp"
#include "fisher_unlearn/io/gguf_writer.hpp"
#include "gguf_test_files.hpp"
#include "sha256.hpp"

using namespace fisher_unlearn;
using nlohmann::json;

TEST_CASE("GGUF: every tensor of the real SmolLM2 file dequantises bit-identically to gguf.quants") {
  const auto path = fisher_unlearn::testing::smollm2_path();
  if (!path) {
    WARN(fisher_unlearn::testing::smollm2_skip_message());
    return;
  }
  const GgufFile file = GgufFile::open(*path);
  const json digest = json::parse(
      fisher_unlearn::testing::read_text_file(fisher_unlearn::testing::test_data_dir() / "gguf" / "smollm2_digest.json"));
  REQUIRE(file.tensors().size() == digest["tensors"].size());
  std::vector<float> buffer;
  for (std::size_t i = 0; i < file.tensors().size(); ++i) {
    const GgufTensorInfo& t = file.tensors()[i];
    INFO(t.name);
    REQUIRE(t.name == digest["tensors"][i]["name"].get<std::string>());
    buffer.resize(t.element_count());
    file.dequantize(t, buffer);
    CHECK(fisher_unlearn::testing::sha256_hex(buffer.data(), buffer.size() * sizeof(float)) ==
          digest["tensors"][i]["f32_sha256"].get<std::string>());
  }
}

TEST_CASE("GGUF writer: copying the real SmolLM2 file reproduces it byte for byte") {
  const auto path = fisher_unlearn::testing::smollm2_path();
  if (!path) {
    WARN(fisher_unlearn::testing::smollm2_skip_message());
    return;
  }
  const GgufFile file = GgufFile::open(*path);
  const std::string image = GgufWriter(file).serialize();
  const std::string original = fisher_unlearn::testing::read_text_file(*path);
  CHECK(image.size() == original.size());
  CHECK(image == original);
}
