// GGUF reader: the header, typed metadata (every GGUF value type, nested arrays), tensor infos, and
// the tensors' bytes (memory-mapped) with dequantisation to float32 (io/ggml_quants.hpp).
// Cost: opening parses the header only, O(metadata bytes); a tensor is read when it is dequantised.
//
// Usage:
//   auto file = fisher_unlearn::GgufFile::open("model.gguf");            // FileFormatError / IoError
//   std::string arch = file.get<std::string>("general.architecture");   // exact type, or throws
//   std::int64_t layers = file.get_integer(arch + ".block_count");      // any integer type
//   std::vector<std::string> tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
//   for (const GgufTensorInfo& t : file.tensors())                      // file order
//     std::cout << t.name << ' ' << ggml_type_name(t.type) << ' ' << t.shape[0] << '\n';
//   std::vector<float> w = file.dequantize(file.tensor("blk.0.attn_q.weight"));
//
// Shapes are in ggml order: shape[0] is the fastest-varying (contiguous) dimension, so a weight
// stored as [ne0 = in_features, ne1 = out_features] is row-major out x in in C terms.
//
// Hostile files: every count, length, offset and size is checked against the bytes actually present
// before anything is allocated or read; any violation is a FileFormatError naming the byte offset.
// Metadata may take at most ~5x the file's bytes in memory (strings are held as std::string), nested
// arrays at most kGgufMaxArrayDepth deep. Files are GGUF version 2 or 3, little-endian.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/io/ggml_quants.hpp"

#if __has_include(<sys/mman.h>) && __has_include(<unistd.h>) && __has_include(<fcntl.h>) && __has_include(<sys/stat.h>)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define FISHER_UNLEARN_GGUF_MMAP 1
#endif

namespace fisher_unlearn {

inline constexpr std::uint32_t kGgufMagic = 0x46554747u;  // "GGUF" read as a little-endian uint32
inline constexpr std::uint32_t kGgufDefaultAlignment = 32;
inline constexpr int kGgufMaxArrayDepth = 8;
inline constexpr std::uint32_t kGgufMaxDims = 4;  // GGML_MAX_DIMS

/// The metadata value types; the numbers are the on-disk codes.
enum class GgufValueType : std::uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};

inline std::string_view gguf_value_type_name(GgufValueType type) {
  static constexpr std::string_view names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                               "bool",  "string", "array", "uint64", "int64",  "float64"};
  const auto i = static_cast<std::uint32_t>(type);
  return i < 13 ? names[i] : std::string_view("unknown");
}

struct GgufArray;

/// The elements of an array: one std::vector per element type, the alternative's index being the
/// element type's code (so a uint8 array is compact, and arrays of arrays are allowed).
using GgufArrayData =
    std::variant<std::vector<std::uint8_t>, std::vector<std::int8_t>, std::vector<std::uint16_t>,
                 std::vector<std::int16_t>, std::vector<std::uint32_t>, std::vector<std::int32_t>,
                 std::vector<float>, std::vector<bool>, std::vector<std::string>, std::vector<GgufArray>,
                 std::vector<std::uint64_t>, std::vector<std::int64_t>, std::vector<double>>;

struct GgufArray {
  GgufArrayData data;
  GgufValueType element_type() const { return static_cast<GgufValueType>(data.index()); }
  std::size_t size() const {
    return std::visit([](const auto& v) { return v.size(); }, data);
  }
  bool operator==(const GgufArray&) const = default;
};

/// One metadata value; the alternative's index is the GGUF type code.
struct GgufValue {
  std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t, float,
               bool, std::string, GgufArray, std::uint64_t, std::int64_t, double>
      value;
  GgufValueType type() const { return static_cast<GgufValueType>(value.index()); }
  bool operator==(const GgufValue&) const = default;
};

/// The GGUF type code of a C++ scalar or string type usable with GgufFile::get / get_array.
template <class Value>
inline constexpr GgufValueType gguf_type_of() {
  if constexpr (std::is_same_v<Value, std::uint8_t>) return GgufValueType::UInt8;
  else if constexpr (std::is_same_v<Value, std::int8_t>) return GgufValueType::Int8;
  else if constexpr (std::is_same_v<Value, std::uint16_t>) return GgufValueType::UInt16;
  else if constexpr (std::is_same_v<Value, std::int16_t>) return GgufValueType::Int16;
  else if constexpr (std::is_same_v<Value, std::uint32_t>) return GgufValueType::UInt32;
  else if constexpr (std::is_same_v<Value, std::int32_t>) return GgufValueType::Int32;
  else if constexpr (std::is_same_v<Value, float>) return GgufValueType::Float32;
  else if constexpr (std::is_same_v<Value, bool>) return GgufValueType::Bool;
  else if constexpr (std::is_same_v<Value, std::string>) return GgufValueType::String;
  else if constexpr (std::is_same_v<Value, GgufArray>) return GgufValueType::Array;
  else if constexpr (std::is_same_v<Value, std::uint64_t>) return GgufValueType::UInt64;
  else if constexpr (std::is_same_v<Value, std::int64_t>) return GgufValueType::Int64;
  else if constexpr (std::is_same_v<Value, double>) return GgufValueType::Float64;
  else static_assert(sizeof(Value) == 0, "not a GGUF value type");
}

/// One tensor as the file describes it.
struct GgufTensorInfo {
  std::string name;
  GgmlType type;
  std::vector<std::uint64_t> shape;  ///< ggml order: shape[0] varies fastest
  std::uint64_t offset;              ///< from the start of the data section (aligned)
  std::uint64_t byte_size;           ///< bytes of the tensor's data
  std::uint64_t element_count() const {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;
    return n;
  }
};

namespace detail {

// The file's bytes: a read-only memory mapping, or (no mmap, or from_bytes) an owned buffer.
class GgufStorage {
 public:
  explicit GgufStorage(std::vector<std::uint8_t> owned) : owned_(std::move(owned)) {
    bytes_ = std::span<const std::uint8_t>(owned_.data(), owned_.size());
  }
#ifdef FISHER_UNLEARN_GGUF_MMAP
  GgufStorage(void* map, std::size_t size) : map_(map), map_size_(size) {
    bytes_ = std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(map), size);
  }
#endif
  GgufStorage(const GgufStorage&) = delete;
  GgufStorage& operator=(const GgufStorage&) = delete;
  ~GgufStorage() {
#ifdef FISHER_UNLEARN_GGUF_MMAP
    if (map_ != nullptr) ::munmap(map_, map_size_);
#endif
  }
  std::span<const std::uint8_t> bytes() const { return bytes_; }

 private:
  std::vector<std::uint8_t> owned_;
  std::span<const std::uint8_t> bytes_;
#ifdef FISHER_UNLEARN_GGUF_MMAP
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
#endif
};

// Bounds-checked little-endian reads over the file's bytes.
class GgufCursor {
 public:
  GgufCursor(std::span<const std::uint8_t> bytes, const std::string& source) : bytes_(bytes), source_(source) {}
  std::size_t position() const { return at_; }
  std::size_t remaining() const { return bytes_.size() - at_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw FileFormatError("GGUF '" + source_ + "' at byte " + std::to_string(at_) + ": " + what +
                          "; the file is corrupt, truncated or not GGUF -- fetch it again");
  }
  void need(std::uint64_t n, const char* what) const {
    if (n > remaining())
      fail(std::string("truncated while reading ") + what + " (needs " + std::to_string(n) + " bytes, " +
           std::to_string(remaining()) + " left)");
  }
  template <class Value>
  Value read(const char* what) {
    need(sizeof(Value), what);
    Value v;
    if constexpr (std::is_same_v<Value, bool>) {
      const std::uint8_t b = bytes_[at_];
      if (b > 1) fail("a bool is " + std::to_string(b) + " (must be 0 or 1)");
      v = b != 0;
    } else {
      using Bits = std::conditional_t<sizeof(Value) == 1, std::uint8_t,
                   std::conditional_t<sizeof(Value) == 2, std::uint16_t,
                   std::conditional_t<sizeof(Value) == 4, std::uint32_t, std::uint64_t>>>;
      Bits bits = 0;
      for (std::size_t k = 0; k < sizeof(Value); ++k) bits |= static_cast<Bits>(static_cast<Bits>(bytes_[at_ + k]) << (8 * k));
      std::memcpy(&v, &bits, sizeof(Value));
    }
    at_ += sizeof(Value);
    return v;
  }
  std::string read_string(const char* what) {
    const auto length = read<std::uint64_t>(what);
    need(length, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + at_), static_cast<std::size_t>(length));
    at_ += static_cast<std::size_t>(length);
    return s;
  }
  // A count of `min_bytes_each`-byte items must fit in what is left (no absurd reserve).
  std::size_t read_count(std::size_t min_bytes_each, const char* what) {
    const auto count = read<std::uint64_t>(what);
    if (min_bytes_each > 0 && count > remaining() / min_bytes_each)
      fail(std::string(what) + " = " + std::to_string(count) + " cannot fit in the " + std::to_string(remaining()) +
           " bytes left");
    return static_cast<std::size_t>(count);
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t at_ = 0;
  const std::string& source_;
};

inline std::size_t gguf_min_value_bytes(std::uint32_t type) {
  switch (type) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 8: return 8;    // length
    case 9: return 12;   // element type + count
    case 10: case 11: case 12: return 8;
    default: return 0;
  }
}

template <class Value>
inline std::vector<Value> read_gguf_vector(GgufCursor& in, std::size_t count) {
  std::vector<Value> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(in.read<Value>("an array element"));
  return out;
}

inline GgufArray read_gguf_array(GgufCursor& in, int depth) {
  if (depth >= kGgufMaxArrayDepth)
    in.fail("arrays nested deeper than " + std::to_string(kGgufMaxArrayDepth) + " levels");
  const auto element_type = in.read<std::uint32_t>("an array's element type");
  const std::size_t min_bytes = gguf_min_value_bytes(element_type);
  if (min_bytes == 0) in.fail("unknown array element type " + std::to_string(element_type));
  const std::size_t count = in.read_count(min_bytes, "an array's element count");
  GgufArray a;
  switch (static_cast<GgufValueType>(element_type)) {
    case GgufValueType::UInt8: a.data = read_gguf_vector<std::uint8_t>(in, count); break;
    case GgufValueType::Int8: a.data = read_gguf_vector<std::int8_t>(in, count); break;
    case GgufValueType::UInt16: a.data = read_gguf_vector<std::uint16_t>(in, count); break;
    case GgufValueType::Int16: a.data = read_gguf_vector<std::int16_t>(in, count); break;
    case GgufValueType::UInt32: a.data = read_gguf_vector<std::uint32_t>(in, count); break;
    case GgufValueType::Int32: a.data = read_gguf_vector<std::int32_t>(in, count); break;
    case GgufValueType::Float32: a.data = read_gguf_vector<float>(in, count); break;
    case GgufValueType::Bool: a.data = read_gguf_vector<bool>(in, count); break;
    case GgufValueType::UInt64: a.data = read_gguf_vector<std::uint64_t>(in, count); break;
    case GgufValueType::Int64: a.data = read_gguf_vector<std::int64_t>(in, count); break;
    case GgufValueType::Float64: a.data = read_gguf_vector<double>(in, count); break;
    case GgufValueType::String: {
      std::vector<std::string> v;
      v.reserve(count);
      for (std::size_t i = 0; i < count; ++i) v.push_back(in.read_string("a string array element"));
      a.data = std::move(v);
      break;
    }
    case GgufValueType::Array: {
      std::vector<GgufArray> v;
      v.reserve(count);
      for (std::size_t i = 0; i < count; ++i) v.push_back(read_gguf_array(in, depth + 1));
      a.data = std::move(v);
      break;
    }
  }
  return a;
}

inline GgufValue read_gguf_value(GgufCursor& in, std::uint32_t type, int depth) {
  GgufValue v;
  switch (type) {
    case 0: v.value = in.read<std::uint8_t>("a uint8"); break;
    case 1: v.value = in.read<std::int8_t>("an int8"); break;
    case 2: v.value = in.read<std::uint16_t>("a uint16"); break;
    case 3: v.value = in.read<std::int16_t>("an int16"); break;
    case 4: v.value = in.read<std::uint32_t>("a uint32"); break;
    case 5: v.value = in.read<std::int32_t>("an int32"); break;
    case 6: v.value = in.read<float>("a float32"); break;
    case 7: v.value = in.read<bool>("a bool"); break;
    case 8: v.value = in.read_string("a string"); break;
    case 9: v.value = read_gguf_array(in, depth); break;
    case 10: v.value = in.read<std::uint64_t>("a uint64"); break;
    case 11: v.value = in.read<std::int64_t>("an int64"); break;
    case 12: v.value = in.read<double>("a float64"); break;
    default: in.fail("unknown metadata value type " + std::to_string(type));
  }
  return v;
}

}  // namespace detail

/// An opened GGUF file. Cheap to copy (the mapping is shared); immutable.
class GgufFile {
 public:
  /// Opens and parses `path` (memory-mapped where POSIX mmap exists). Throws IoError when the file
  /// cannot be opened, FileFormatError when it is not a valid GGUF v2/v3 file.
  static GgufFile open(const std::filesystem::path& path) {
    const std::string name = path.string();
#ifdef FISHER_UNLEARN_GGUF_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IoError("cannot open GGUF file '" + name + "': " + std::strerror(errno) + "; check the path");
    struct ::stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw IoError("GGUF '" + name + "' is not a regular file");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size == 0) {
      ::close(fd);
      throw FileFormatError("GGUF '" + name + "' is empty; fetch it again");
    }
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) throw IoError("cannot memory-map GGUF '" + name + "': " + std::strerror(errno));
    return GgufFile(std::make_shared<detail::GgufStorage>(map, size), name);
#else
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError("cannot open GGUF file '" + name + "'; check the path");
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return GgufFile(std::make_shared<detail::GgufStorage>(std::move(bytes)), name);
#endif
  }

  /// Parses a GGUF image held in memory (the bytes are moved in). `source` names it in errors.
  static GgufFile from_bytes(std::vector<std::uint8_t> bytes, std::string source = "<memory>") {
    return GgufFile(std::make_shared<detail::GgufStorage>(std::move(bytes)), std::move(source));
  }

  const std::string& source() const { return source_; }
  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::uint64_t file_size() const { return storage_->bytes().size(); }

  // ---- metadata ----
  /// Every key/value pair in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  /// The value of `key`, or nullptr.
  const GgufValue* find(std::string_view key) const {
    auto it = key_index_.find(std::string(key));
    return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
  }
  /// The value of `key`; FileFormatError naming the key when it is absent.
  const GgufValue& at(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr)
      throw FileFormatError("GGUF '" + source_ + "' has no metadata key '" + std::string(key) +
                            "'; is it a model of the expected architecture?");
    return *v;
  }
  /// The value of `key` as exactly the C++ type of its GGUF type (uint32 -> std::uint32_t, string ->
  /// std::string, ...); FileFormatError naming the key and both types on a mismatch.
  template <class Value>
  Value get(std::string_view key) const {
    const GgufValue& v = at(key);
    if (const auto* p = std::get_if<Value>(&v.value)) return *p;
    throw type_error(key, v.type(), std::string(gguf_value_type_name(gguf_type_of<Value>())));
  }
  /// As get(), or `fallback` when the key is absent (a present key of the wrong type still throws).
  template <class Value>
  Value get_or(std::string_view key, Value fallback) const {
    return contains(key) ? get<Value>(key) : fallback;
  }
  /// Any integer type (uint8..int64; not bool), converted to int64; throws if it does not fit.
  std::int64_t get_integer(std::string_view key) const {
    const GgufValue& v = at(key);
    return std::visit(
        [&](const auto& x) -> std::int64_t {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_integral_v<X> && !std::is_same_v<X, bool>) {
            if constexpr (std::is_same_v<X, std::uint64_t>)
              if (x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                throw FileFormatError("GGUF '" + source_ + "': metadata '" + std::string(key) + "' = " +
                                      std::to_string(x) + " does not fit in int64");
            return static_cast<std::int64_t>(x);
          } else {
            throw type_error(key, v.type(), "an integer");
          }
        },
        v.value);
  }
  /// float32 or float64, as double.
  double get_real(std::string_view key) const {
    const GgufValue& v = at(key);
    if (const auto* f = std::get_if<float>(&v.value)) return *f;
    if (const auto* d = std::get_if<double>(&v.value)) return *d;
    throw type_error(key, v.type(), "float32 or float64");
  }
  /// The elements of an array whose element type is exactly `Value`'s.
  template <class Value>
  const std::vector<Value>& get_array(std::string_view key) const {
    const GgufValue& v = at(key);
    const auto* a = std::get_if<GgufArray>(&v.value);
    if (a == nullptr) throw type_error(key, v.type(), "array");
    if (const auto* p = std::get_if<std::vector<Value>>(&a->data)) return *p;
    throw FileFormatError("GGUF '" + source_ + "': metadata '" + std::string(key) + "' is an array of " +
                          std::string(gguf_value_type_name(a->element_type())) + ", expected an array of " +
                          std::string(gguf_value_type_name(gguf_type_of<Value>())));
  }

  // ---- tensors ----
  /// Every tensor in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The tensor called `name`; FileFormatError when there is none.
  const GgufTensorInfo& tensor(std::string_view name) const {
    const GgufTensorInfo* t = find_tensor(name);
    if (t == nullptr)
      throw FileFormatError("GGUF '" + source_ + "' has no tensor '" + std::string(name) + "'");
    return *t;
  }
  /// The tensor's bytes as stored (valid while any copy of this GgufFile lives).
  std::span<const std::uint8_t> tensor_bytes(const GgufTensorInfo& t) const {
    if (t.byte_size == 0) return {};  // an empty tensor's offset is not checked against the file
    return storage_->bytes().subspan(static_cast<std::size_t>(data_offset_ + t.offset),
                                     static_cast<std::size_t>(t.byte_size));
  }
  /// The tensor as float32, element i at i (ggml order). InvalidArgument for a type this library
  /// cannot dequantise or an `out` of the wrong size.
  void dequantize(const GgufTensorInfo& t, std::span<float> out) const {
    if (out.size() != t.element_count())
      throw InvalidArgument("dequantize '" + t.name + "': output holds " + std::to_string(out.size()) +
                            " floats, the tensor has " + std::to_string(t.element_count()));
    fisher_unlearn::dequantize(t.type, tensor_bytes(t), out);
  }
  std::vector<float> dequantize(const GgufTensorInfo& t) const {
    if (!ggml_type_traits(static_cast<std::uint32_t>(t.type))->can_dequantize)
      throw InvalidArgument("dequantize '" + t.name + "': type " + ggml_type_name(t.type) +
                            " is not supported (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K)");
    std::vector<float> out(static_cast<std::size_t>(t.element_count()));
    dequantize(t, out);
    return out;
  }

 private:
  GgufFile(std::shared_ptr<const detail::GgufStorage> storage, std::string source)
      : storage_(std::move(storage)), source_(std::move(source)) {
    parse();
  }

  FileFormatError type_error(std::string_view key, GgufValueType actual, const std::string& expected) const {
    return FileFormatError("GGUF '" + source_ + "': metadata '" + std::string(key) + "' is " +
                           std::string(gguf_value_type_name(actual)) + ", expected " + expected);
  }

  void parse() {
    const std::span<const std::uint8_t> bytes = storage_->bytes();
    detail::GgufCursor in(bytes, source_);
    const auto magic = in.read<std::uint32_t>("the magic");
    if (magic != kGgufMagic) in.fail("the magic is not 'GGUF'");
    version_ = in.read<std::uint32_t>("the version");
    if (version_ == 1) in.fail("GGUF version 1 (32-bit counts) is not supported; convert the file with a current llama.cpp");
    if (version_ != 2 && version_ != 3) {
      if ((version_ & 0xffffu) == 0) in.fail("the version reads as big-endian; big-endian GGUF files are not supported");
      in.fail("unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
    }
    // Smallest encodings: a tensor info is name length + n_dims + type + offset = 24 bytes; a
    // key/value pair is key length + type + a one-byte value = 13 bytes.
    const std::size_t tensor_count = in.read_count(24, "the tensor count");
    const std::size_t kv_count = in.read_count(13, "the metadata count");

    metadata_.reserve(kv_count);
    for (std::size_t i = 0; i < kv_count; ++i) {
      std::string key = in.read_string("a metadata key");
      const auto type = in.read<std::uint32_t>("a metadata value type");
      GgufValue value = detail::read_gguf_value(in, type, 0);
      if (!key_index_.emplace(key, metadata_.size()).second) in.fail("duplicate metadata key '" + key + "'");
      metadata_.emplace_back(std::move(key), std::move(value));
    }

    alignment_ = kGgufDefaultAlignment;
    if (const GgufValue* a = find("general.alignment")) {
      const auto* v = std::get_if<std::uint32_t>(&a->value);
      if (v == nullptr) in.fail("general.alignment is " + std::string(gguf_value_type_name(a->type())) + ", expected uint32");
      if (*v == 0 || (*v & (*v - 1)) != 0) in.fail("general.alignment = " + std::to_string(*v) + " is not a power of two");
      alignment_ = *v;
    }

    tensors_.reserve(tensor_count);
    for (std::size_t i = 0; i < tensor_count; ++i) {
      GgufTensorInfo t;
      t.name = in.read_string("a tensor name");
      const auto n_dims = in.read<std::uint32_t>("a tensor's dimension count");
      if (n_dims == 0 || n_dims > kGgufMaxDims)
        in.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1.." + std::to_string(kGgufMaxDims) + " allowed)");
      std::uint64_t elements = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto ne = in.read<std::uint64_t>("a tensor dimension");
        if (ne > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
            (ne != 0 && elements > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / ne))
          in.fail("tensor '" + t.name + "' has more elements than fit in int64");
        elements *= ne;
        t.shape.push_back(ne);
      }
      const auto type_code = in.read<std::uint32_t>("a tensor type");
      const auto traits = ggml_type_traits(type_code);
      if (!traits) in.fail("tensor '" + t.name + "' has unknown ggml type " + std::to_string(type_code));
      t.type = static_cast<GgmlType>(type_code);
      if (t.shape[0] % traits->block_size != 0)
        in.fail("tensor '" + t.name + "' has rows of " + std::to_string(t.shape[0]) + " elements, not a multiple of " +
                std::string(traits->name) + "'s block size " + std::to_string(traits->block_size));
      const std::uint64_t blocks = elements / traits->block_size;
      if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->type_size)
        in.fail("tensor '" + t.name + "' is too large");
      t.byte_size = blocks * traits->type_size;
      t.offset = in.read<std::uint64_t>("a tensor offset");
      if (t.offset % alignment_ != 0)
        in.fail("tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                std::to_string(alignment_));
      if (!tensor_index_.emplace(t.name, tensors_.size()).second) in.fail("duplicate tensor name '" + t.name + "'");
      tensors_.push_back(std::move(t));
    }

    const std::uint64_t end_of_infos = in.position();
    data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
    const std::uint64_t size = bytes.size();
    for (const GgufTensorInfo& t : tensors_) {
      if (t.byte_size == 0) continue;
      if (data_offset_ > size || t.offset > size - data_offset_ || t.byte_size > size - data_offset_ - t.offset)
        throw FileFormatError("GGUF '" + source_ + "': tensor '" + t.name + "' (" + std::to_string(t.byte_size) +
                              " bytes at data offset " + std::to_string(t.offset) + ") extends past the end of the " +
                              std::to_string(size) + "-byte file; the file is truncated -- fetch it again");
    }
  }

  std::shared_ptr<const detail::GgufStorage> storage_;
  std::string source_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = kGgufDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, std::size_t> key_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace fisher_unlearn
