// libFuzzer harness for the GGUF reader (io/gguf.hpp): any byte string either parses or throws
// FileFormatError -- never an out-of-bounds read, UB, a leak or an absurd allocation (ASan/UBSan,
// -rss_limit_mb). A parsed file must then survive every getter, dequantisation of each tensor, and a
// writer round trip that re-parses to the same metadata and tensor bytes (a property check).
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "fisher_unlearn/io/gguf.hpp"
#include "fisher_unlearn/io/gguf_writer.hpp"

using namespace fisher_unlearn;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<GgufFile> file;
  try {
    file.emplace(GgufFile::from_bytes(std::vector<std::uint8_t>(data, data + size), "fuzz"));
  } catch (const FileFormatError&) {
    return 0;
  }
  for (const auto& [key, value] : file->metadata()) {
    (void)gguf_encode_value(value);
    try {
      (void)file->get_integer(key);
    } catch (const FileFormatError&) {
    }
    try {
      (void)file->get_array<std::string>(key);
    } catch (const FileFormatError&) {
    }
  }
  std::vector<float> buffer;
  for (const GgufTensorInfo& t : file->tensors()) {
    const auto bytes = file->tensor_bytes(t);
    if (bytes.size() != t.byte_size) std::abort();
    if (!ggml_type_traits(static_cast<std::uint32_t>(t.type))->can_dequantize || t.element_count() > (1u << 22)) continue;
    buffer.resize(t.element_count());
    file->dequantize(t, buffer);
  }
  // Writer round trip: the copy parses and holds the same metadata and tensor bytes.
  std::string image;
  try {
    image = GgufWriter(*file).serialize();
  } catch (const InvalidArgument&) {
    return 0;  // e.g. an empty key, which the writer refuses to produce
  }
  const GgufFile back = GgufFile::from_bytes(std::vector<std::uint8_t>(image.begin(), image.end()), "round trip");
  // Compared by encoding, not operator== (a NaN value is not equal to itself).
  if (back.metadata().size() != file->metadata().size() || back.tensors().size() != file->tensors().size()) std::abort();
  for (std::size_t i = 0; i < back.metadata().size(); ++i)
    if (back.metadata()[i].first != file->metadata()[i].first ||
        gguf_encode_value(back.metadata()[i].second) != gguf_encode_value(file->metadata()[i].second))
      std::abort();
  for (std::size_t i = 0; i < back.tensors().size(); ++i) {
    const auto x = file->tensor_bytes(file->tensors()[i]), y = back.tensor_bytes(back.tensors()[i]);
    if (!std::equal(x.begin(), x.end(), y.begin(), y.end())) std::abort();
  }
  return 0;
}
