// libFuzzer harness for the checkpoint reader (checkpoint.hpp): any byte string either decodes or throws
// FileFormatError -- never an out-of-bounds read, UB, a leak, an untyped exception or an allocation
// beyond the input's size (ASan/UBSan, -rss_limit_mb, -malloc_limit_mb). Each input is tried twice:
// as given, and "resealed" (its last 8 bytes replaced by the correct FNV-1a checksum), so that the
// mutations reach the header, the configuration parser and the model builder behind the checksum.
// Properties: a decoded checkpoint re-encodes to the same bytes; a decoded transformer's parameters are
// the stored ones, bit for bit, and its configuration re-parses to itself.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>

#include "fisher_unlearn/checkpoint.hpp"

using namespace fisher_unlearn;

namespace {

template <class Scalar>
void decode_as(const std::string& bytes) {
  const auto c = detail::decode_checkpoint<Scalar>(bytes, "fuzz");
  const std::string again = detail::encode_checkpoint<Scalar>(
      std::span<const Scalar>(c.parameters.data(), static_cast<std::size_t>(c.parameters.size())), c.header.model_kind,
      c.header.config);
  if (again != bytes) std::abort();  // the format is canonical: decode then encode is the identity
  try {
    const auto model = detail::decode_transformer<Scalar>(bytes, "fuzz");
    const auto p = model.parameters();
    if (p.size() != static_cast<std::size_t>(c.parameters.size()) ||
        (!p.empty() && std::memcmp(p.data(), c.parameters.data(), p.size_bytes()) != 0))
      std::abort();
    if (!models::TransformerConfig::parse(model.config().to_string()).same_architecture(model.config())) std::abort();
  } catch (const FileFormatError&) {
  }
}

// Exceptions are the expensive part of an execution, so a file the header check rejects costs one.
void decode_all(const std::string& bytes) {
  try {
    std::size_t at = 0;
    const CheckpointHeader header = detail::parse_checkpoint(bytes, "fuzz", at);
    if (header.scalar_code == 1) {
      decode_as<float>(bytes);
      bool refused = false;
      try {
        (void)detail::decode_checkpoint<double>(bytes, "fuzz");
      } catch (const FileFormatError&) {
        refused = true;
      }
      if (!refused) std::abort();  // a float32 file read as float64
    } else {
      decode_as<double>(bytes);
      bool refused = false;
      try {
        (void)detail::decode_checkpoint<float>(bytes, "fuzz");
      } catch (const FileFormatError&) {
        refused = true;
      }
      if (!refused) std::abort();
    }
  } catch (const FileFormatError&) {
  } catch (const std::exception& e) {
    // Anything but FileFormatError (std::bad_alloc, std::out_of_range, ...) is a finding.
    std::fprintf(stderr, "untyped exception: %s\n", e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  decode_all(bytes);
  if (bytes.size() >= 8) {
    bytes.resize(bytes.size() - 8);
    detail::put_le<std::uint64_t>(bytes, detail::fnv1a64(bytes));
    decode_all(bytes);
  }
  // The configuration parser on its own, on the raw text.
  try {
    const auto config = models::TransformerConfig::parse(std::string(reinterpret_cast<const char*>(data), size));
    if (!models::TransformerConfig::parse(config.to_string()).same_architecture(config)) std::abort();
  } catch (const FileFormatError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "untyped exception from TransformerConfig::parse: %s\n", e.what());
    std::abort();
  }
  return 0;
}
