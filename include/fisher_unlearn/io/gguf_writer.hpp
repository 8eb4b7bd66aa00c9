// GGUF writer: a GGUF v3 file from a source GgufFile (metadata copied, unchanged tensors copied
// byte for byte) with some tensors replaced by new float32 values stored as F32, F16, BF16 or Q8_0,
// plus a record of the unlearning in `general.unlearning.*` keys. Cost: O(file size); written atomically.
//
// Usage:
//   auto source = GgufFile::open("model.gguf");
//   GgufWriter out(source);                                   // everything copied as is
//   out.replace_tensor("blk.29.ffn_down.weight", new_values, GgmlType::Q8_0);  // quantised now
//   out.record_unlearning({.method = "fisher_newton", .forgotten_records = 12});
//   out.write("model.unlearned.gguf");                        // temp file + fsync + rename
//
// The unlearning record (all optional for readers; llama.cpp ignores unknown keys):
//   general.unlearning.method             string  the unlearner's name ("fisher_newton", ...)
//   general.unlearning.date               string  UTC, ISO 8601 ("2026-12-04T18:30:00Z")
//   general.unlearning.forgotten_records  uint64  how many training records were forgotten
//   general.unlearning.changed_tensors    array of string, the tensors this writer replaced
//   general.unlearning.tool               string  "fisher_unlearn <version>"
//   general.unlearning.note               string  free text (only when given)
// Tensor names must be shorter than 64 bytes and have at most 4 dimensions (llama.cpp's limits).
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/io/ggml_quants.hpp"
#include "fisher_unlearn/io/gguf.hpp"

namespace fisher_unlearn {

inline constexpr std::size_t kGgufMaxTensorNameBytes = 63;  // GGML_MAX_NAME - 1

/// What `record_unlearning` writes into `general.unlearning.*`.
struct GgufUnlearningRecord {
  std::string method;                  ///< required, non-empty
  std::uint64_t forgotten_records = 0;
  std::string date;                    ///< empty: now, UTC
  std::string note;                    ///< empty: no key written
};

namespace detail {

inline void gguf_put_u32(std::string& out, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xffu));
}
inline void gguf_put_u64(std::string& out, std::uint64_t v) {
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xffu));
}
inline void gguf_put_string(std::string& out, std::string_view s) {
  gguf_put_u64(out, s.size());
  out.append(s);
}
template <class Scalar>
inline void gguf_put_scalar(std::string& out, const Scalar& x) {
  if constexpr (std::is_same_v<Scalar, bool>) {
    out.push_back(x ? '\1' : '\0');
  } else {
    using Bits = std::conditional_t<sizeof(Scalar) == 1, std::uint8_t,
                 std::conditional_t<sizeof(Scalar) == 2, std::uint16_t,
                 std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>>>;
    Bits bits;
    std::memcpy(&bits, &x, sizeof(Scalar));
    for (std::size_t k = 0; k < sizeof(Scalar); ++k) out.push_back(static_cast<char>((bits >> (8 * k)) & 0xffu));
  }
}

// An array's encoding without its leading value type: element type, count, elements.
inline void gguf_put_array(std::string& out, const GgufArray& a) {
  gguf_put_u32(out, static_cast<std::uint32_t>(a.element_type()));
  gguf_put_u64(out, a.size());
  std::visit(
      [&](const auto& items) {
        using Item = typename std::decay_t<decltype(items)>::value_type;
        for (const auto& item : items) {
          if constexpr (std::is_same_v<Item, std::string>) gguf_put_string(out, item);
          else if constexpr (std::is_same_v<Item, GgufArray>) gguf_put_array(out, item);
          else gguf_put_scalar(out, static_cast<Item>(item));
        }
      },
      a.data);
}

}  // namespace detail

/// The GGUF encoding of a value without its type code (what follows the type in a key/value pair).
inline std::string gguf_encode_value(const GgufValue& v) {
  std::string out;
  std::visit(
      [&](const auto& x) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) detail::gguf_put_string(out, x);
        else if constexpr (std::is_same_v<X, GgufArray>) detail::gguf_put_array(out, x);
        else detail::gguf_put_scalar(out, x);
      },
      v.value);
  return out;
}

/// Builds a GGUF file in memory and writes it atomically.
class GgufWriter {
 public:
  /// An empty file: no metadata, no tensors, alignment 32.
  GgufWriter() = default;

  /// Every metadata pair and every tensor of `source`, in its order; tensors are copied byte for byte
  /// from the source's mapping (kept alive by this writer) unless replaced.
  explicit GgufWriter(const GgufFile& source) : source_(source) {
    for (const auto& [key, value] : source.metadata()) set(key, value);
    for (const GgufTensorInfo& t : source.tensors())
      tensors_.push_back(Entry{t.name, t.shape, t.type, source.tensor_bytes(t), {}});
  }

  // ---- metadata ----
  /// Adds `key`, or replaces its value in place (the key keeps its position).
  void set(std::string key, GgufValue value) {
    if (key.empty()) throw InvalidArgument("GgufWriter::set: empty metadata key");
    if (key == "general.alignment") check_alignment(value);
    for (auto& kv : metadata_)
      if (kv.first == key) {
        kv.second = std::move(value);
        return;
      }
    metadata_.emplace_back(std::move(key), std::move(value));
  }
  bool erase(std::string_view key) {
    for (auto it = metadata_.begin(); it != metadata_.end(); ++it)
      if (it->first == key) {
        metadata_.erase(it);
        return true;
      }
    return false;
  }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  std::uint32_t alignment() const {
    for (const auto& kv : metadata_)
      if (kv.first == "general.alignment") return std::get<std::uint32_t>(kv.second.value);
    return kGgufDefaultAlignment;
  }

  /// Writes the `general.unlearning.*` record (see the header comment) naming the tensors replaced
  /// so far; call it after the last replace_tensor.
  void record_unlearning(const GgufUnlearningRecord& record) {
    if (record.method.empty()) throw InvalidArgument("record_unlearning: the method name is empty");
    std::vector<std::string> changed;
    for (const Entry& e : tensors_)
      if (e.replaced) changed.push_back(e.name);
    std::string date = record.date;
    if (date.empty()) {
      const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm utc{};
      gmtime_r(&now, &utc);
      char buffer[32];
      std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &utc);
      date = buffer;
    }
    set("general.unlearning.method", GgufValue{record.method});
    set("general.unlearning.date", GgufValue{date});
    set("general.unlearning.forgotten_records", GgufValue{record.forgotten_records});
    set("general.unlearning.changed_tensors", GgufValue{GgufArray{std::move(changed)}});
    set("general.unlearning.tool", GgufValue{std::string("fisher_unlearn ") + kVersion});
    if (!record.note.empty()) set("general.unlearning.note", GgufValue{record.note});
  }

  // ---- tensors ----
  /// Appends a new tensor from float32 values stored as `type` (F32, F16, BF16 or Q8_0).
  void add_tensor(std::string name, std::vector<std::uint64_t> shape, std::span<const float> values, GgmlType type) {
    check_new_tensor(name, shape, type);
    if (find(name) != nullptr) throw InvalidArgument("GgufWriter: a tensor '" + name + "' exists already");
    std::vector<std::uint8_t> bytes = encode(name, shape, values, type);
    tensors_.push_back(Entry{std::move(name), std::move(shape), type, {}, std::move(bytes), true});
  }
  /// Appends a tensor already encoded as `type` (any known type; the byte count is checked).
  void add_tensor_bytes(std::string name, std::vector<std::uint64_t> shape, GgmlType type, std::vector<std::uint8_t> bytes) {
    check_new_tensor(name, shape, type);
    if (find(name) != nullptr) throw InvalidArgument("GgufWriter: a tensor '" + name + "' exists already");
    if (bytes.size() != byte_size(shape, type))
      throw InvalidArgument("GgufWriter: tensor '" + name + "' needs " + std::to_string(byte_size(shape, type)) +
                            " bytes of " + ggml_type_name(type) + ", got " + std::to_string(bytes.size()));
    tensors_.push_back(Entry{std::move(name), std::move(shape), type, {}, std::move(bytes), true});
  }
  /// Replaces an existing tensor's values (same shape) and stores them as `type` (F32, F16, BF16 or
  /// Q8_0). The values are encoded now; on any exception the writer is unchanged.
  void replace_tensor(std::string_view name, std::span<const float> values, GgmlType type) {
    Entry* e = find(name);
    if (e == nullptr) throw InvalidArgument("GgufWriter::replace_tensor: no tensor '" + std::string(name) + "'");
    check_new_tensor(e->name, e->shape, type);
    std::vector<std::uint8_t> bytes = encode(e->name, e->shape, values, type);
    e->type = type;
    e->copied = {};
    e->owned = std::move(bytes);
    e->replaced = true;
  }
  /// Names of the tensors in file order.
  std::vector<std::string> tensor_names() const {
    std::vector<std::string> out;
    for (const Entry& e : tensors_) out.push_back(e.name);
    return out;
  }

  // ---- output ----
  /// The complete file image.
  std::string serialize() const {
    const std::uint64_t align = alignment();
    std::string out;
    detail::gguf_put_u32(out, kGgufMagic);
    detail::gguf_put_u32(out, 3);
    detail::gguf_put_u64(out, tensors_.size());
    detail::gguf_put_u64(out, metadata_.size());
    for (const auto& [key, value] : metadata_) {
      detail::gguf_put_string(out, key);
      detail::gguf_put_u32(out, static_cast<std::uint32_t>(value.type()));
      out += gguf_encode_value(value);
    }
    std::uint64_t offset = 0;
    for (const Entry& e : tensors_) {
      detail::gguf_put_string(out, e.name);
      detail::gguf_put_u32(out, static_cast<std::uint32_t>(e.shape.size()));
      for (std::uint64_t d : e.shape) detail::gguf_put_u64(out, d);
      detail::gguf_put_u32(out, static_cast<std::uint32_t>(e.type));
      detail::gguf_put_u64(out, offset);
      offset += (e.bytes().size() + align - 1) / align * align;
    }
    // No tensor data, no data section: the header is not padded. A file the reader accepted may ask
    // for any power-of-two alignment without holding that many bytes (libFuzzer found a 128-byte file
    // with general.alignment = 2^30 and no tensors), and padding it would allocate a gigabyte.
    if (offset == 0) return out;
    out.resize((out.size() + align - 1) / align * align, '\0');
    out.reserve(out.size() + offset);
    for (const Entry& e : tensors_) {
      const auto b = e.bytes();
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      out.resize((out.size() + align - 1) / align * align, '\0');
    }
    return out;
  }
  /// Writes the file atomically (temporary file in the same directory, fsync, rename): readers see
  /// the old file or the complete new one. IoError on failure.
  void write(const std::filesystem::path& path) const { detail::write_file_atomically(path, serialize()); }

 private:
  struct Entry {
    std::string name;
    std::vector<std::uint64_t> shape;
    GgmlType type;
    std::span<const std::uint8_t> copied;  // from source_
    std::vector<std::uint8_t> owned;
    bool replaced = false;
    std::span<const std::uint8_t> bytes() const {
      return owned.empty() && !copied.empty() ? copied : std::span<const std::uint8_t>(owned);
    }
  };

  static constexpr const char* kVersion = "0.1.0";

  Entry* find(std::string_view name) {
    for (Entry& e : tensors_)
      if (e.name == name) return &e;
    return nullptr;
  }

  static void check_alignment(const GgufValue& value) {
    const auto* a = std::get_if<std::uint32_t>(&value.value);
    if (a == nullptr || *a == 0 || (*a & (*a - 1)) != 0)
      throw InvalidArgument("GgufWriter: general.alignment must be a uint32 power of two");
  }

  static std::uint64_t byte_size(const std::vector<std::uint64_t>& shape, GgmlType type) {
    const GgmlTypeTraits t = ggml_type_traits(type);
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;
    return n / t.block_size * t.type_size;
  }

  static void check_new_tensor(const std::string& name, const std::vector<std::uint64_t>& shape, GgmlType type) {
    if (name.empty() || name.size() > kGgufMaxTensorNameBytes)
      throw InvalidArgument("GgufWriter: tensor name '" + name + "' must have 1.." +
                            std::to_string(kGgufMaxTensorNameBytes) + " bytes (llama.cpp's limit)");
    if (shape.empty() || shape.size() > kGgufMaxDims)
      throw InvalidArgument("GgufWriter: tensor '" + name + "' must have 1..4 dimensions");
    const GgmlTypeTraits t = ggml_type_traits(type);
    if (shape[0] % t.block_size != 0)
      throw InvalidArgument("GgufWriter: tensor '" + name + "' rows of " + std::to_string(shape[0]) +
                            " elements are not a multiple of " + std::string(t.name) + "'s block size " +
                            std::to_string(t.block_size) + "; store it as F32, F16 or BF16");
  }

  static std::vector<std::uint8_t> encode(const std::string& name, const std::vector<std::uint64_t>& shape,
                                          std::span<const float> values, GgmlType type) {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;
    if (values.size() != n)
      throw InvalidArgument("GgufWriter: tensor '" + name + "' has " + std::to_string(n) + " elements, got " +
                            std::to_string(values.size()) + " values");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(byte_size(shape, type)));
    quantize(type, values, bytes);
    return bytes;
  }

  std::optional<GgufFile> source_;  // keeps the copied tensors' mapping alive
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Entry> tensors_;
};

}  // namespace fisher_unlearn
