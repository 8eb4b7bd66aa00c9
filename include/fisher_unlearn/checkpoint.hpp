// Checkpoints: a model's parameter vector with a self-describing header and an FNV-1a 64 checksum,
// written atomically (temporary file in the same directory, fsync, rename). Loading checks magic,
// version, sizes, checksum, scalar type and configuration before touching the model. Cost O(d) time.
//
// Format version 1 (all integers little-endian):
//   offset  size  field
//   0       8     magic "FUNLCKPT"
//   8       4     format version = 1
//   12      4     scalar code: 1 = IEEE-754 binary32 (float), 2 = binary64 (double)
//   16      8     d, the number of parameters
//   24      4     k, bytes of the model kind ("transformer", or any name the caller chooses)
//   28      4     c, bytes of the configuration text (TransformerConfig::to_string(): "key=value\n" lines)
//   32      k     model kind
//   32+k    c     configuration text
//   32+k+c  d·s   parameters, little-endian, s = 4 or 8 bytes
//   end−8   8     FNV-1a 64 hash of every byte before it
#pragma once

#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/types.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>
#define FISHER_UNLEARN_POSIX_FILES 1
#endif

namespace fisher_unlearn {

inline constexpr char kCheckpointMagic[8] = {'F', 'U', 'N', 'L', 'C', 'K', 'P', 'T'};
inline constexpr std::uint32_t kCheckpointFormatVersion = 1;

/// What a checkpoint holds, besides the parameters.
struct CheckpointHeader {
  std::uint32_t format_version = 0;
  std::uint32_t scalar_code = 0;  ///< 1 = float, 2 = double
  std::uint64_t num_parameters = 0;
  std::string model_kind;
  std::string config;

  std::string scalar_name() const { return scalar_code == 1 ? "float32" : scalar_code == 2 ? "float64" : "unknown"; }
};

/// The header and the parameters (in the file's own Scalar) of a fully validated checkpoint.
template <SupportedScalar Scalar>
struct CheckpointContents {
  CheckpointHeader header;
  Vector<Scalar> parameters;
};

namespace detail {

template <SupportedScalar Scalar>
constexpr std::uint32_t scalar_code() {
  return std::is_same_v<Scalar, float> ? 1u : 2u;
}
inline const char* scalar_code_name(std::uint32_t code) {
  return code == 1 ? "float32" : code == 2 ? "float64" : "unknown";
}

inline std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

template <class UInt>
void put_le(std::string& out, UInt v) {
  for (std::size_t i = 0; i < sizeof(UInt); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
template <class UInt>
UInt get_le(std::string_view in, std::size_t at) {
  UInt v = 0;
  for (std::size_t i = 0; i < sizeof(UInt); ++i)
    v |= static_cast<UInt>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

template <SupportedScalar Scalar>
void put_scalars(std::string& out, std::span<const Scalar> values) {
  using Bits = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;
  if (values.empty()) return;  // a 0-parameter model: data() may be null
  if constexpr (std::endian::native == std::endian::little) {
    out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(Scalar));
  } else {
    for (Scalar v : values) put_le<Bits>(out, std::bit_cast<Bits>(v));
  }
}
template <SupportedScalar Scalar>
void get_scalars(std::string_view in, std::size_t at, std::span<Scalar> values) {
  using Bits = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;
  if (values.empty()) return;  // memcpy(nullptr, ..., 0) is undefined behaviour
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(values.data(), in.data() + at, values.size() * sizeof(Scalar));
  } else {
    for (std::size_t i = 0; i < values.size(); ++i)
      values[i] = std::bit_cast<Scalar>(get_le<Bits>(in, at + i * sizeof(Scalar)));
  }
}

/// Removes the temporary files "<name>.tmp.<N>.<PID>" that earlier writes of `path` left behind when
/// their process was killed mid-save: only those whose PID names no running process (POSIX; a no-op
/// elsewhere). Errors are ignored: cleaning up is a courtesy, never a reason to fail a save.
inline void remove_stale_temporaries(const std::filesystem::path& path) {
#ifdef FISHER_UNLEARN_POSIX_FILES
  namespace fs = std::filesystem;
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const std::string prefix = path.filename().string() + ".tmp.";
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // The rest must be "<digits>.<digits>"; the second number is the writer's PID.
    const std::string rest = name.substr(prefix.size());
    const std::size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || dot + 1 == rest.size()) continue;
    const std::string counter = rest.substr(0, dot), pid_text = rest.substr(dot + 1);
    auto digits = [](const std::string& s) {
      return s.size() <= 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (!digits(counter) || !digits(pid_text)) continue;
    const long long pid = std::stoll(pid_text);
    if (pid <= 0 || pid > static_cast<long long>(std::numeric_limits<::pid_t>::max())) continue;
    if (::kill(static_cast<::pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code remove_ec;
    if (it->is_regular_file(remove_ec)) fs::remove(it->path(), remove_ec);
  }
#else
  (void)path;
#endif
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one: a
/// temporary file in the same directory is written, flushed to disk, then renamed over `path`.
/// Temporary files of earlier writes to `path` whose process died are removed first.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw IoError("cannot write checkpoint '" + path.string() +
                    "': it is a directory; pass a file name (for example '" + (path / "model.ckpt").string() + "')");
  }
  remove_stale_temporaries(path);
  std::string suffix = ".tmp." + std::to_string(counter.fetch_add(1));
#ifdef FISHER_UNLEARN_POSIX_FILES
  suffix += "." + std::to_string(static_cast<long>(::getpid()));
#endif
  const std::filesystem::path tmp = std::filesystem::path(path.string() + suffix);
  auto fail = [&](const std::string& what) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw IoError("cannot write checkpoint '" + path.string() + "': " + what +
                  "; check that the directory exists and is writable and that the disk has space");
  };
#ifdef FISHER_UNLEARN_POSIX_FILES
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("open(" + tmp.string() + "): " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string err = std::strerror(errno);
      ::close(fd);
      fail("write: " + err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    fail("fsync: " + err);
  }
  if (::close(fd) != 0) fail(std::string("close: ") + std::strerror(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail(std::string("rename: ") + std::strerror(errno));
  // Make the rename itself durable; a failure here does not undo a completed write, so it is ignored.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
#else
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot create " + tmp.string());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) fail("write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("rename: " + ec.message());
#endif
}

inline std::string read_whole_file(const std::filesystem::path& path) {
  {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw IoError("cannot read checkpoint '" + path.string() + "': it is a directory, not a checkpoint file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open checkpoint '" + path.string() + "' for reading; check the path");
  std::string bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure& e) {  // libstdc++ throws from underflow on a read error
    throw IoError("reading checkpoint '" + path.string() + "' failed: " + e.what());
  }
  if (in.bad()) throw IoError("reading checkpoint '" + path.string() + "' failed");
  return bytes;
}

constexpr std::size_t kCheckpointFixedHeader = 32;
constexpr std::uint32_t kCheckpointMaxText = 1u << 20;  // kind and config are short text

/// Parses and validates everything but the scalar type's match with the caller.
inline CheckpointHeader parse_checkpoint(std::string_view bytes, const std::string& name, std::size_t& payload_at) {
  auto bad = [&](const std::string& what) { throw FileFormatError("checkpoint '" + name + "': " + what); };
  if (bytes.size() < sizeof(kCheckpointMagic) || std::memcmp(bytes.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) != 0)
    bad("not a fisher_unlearn checkpoint (the file does not start with the magic bytes \"FUNLCKPT\")");
  if (bytes.size() < kCheckpointFixedHeader + 8)
    bad("truncated: " + std::to_string(bytes.size()) + " bytes is shorter than the fixed header");
  CheckpointHeader h;
  h.format_version = get_le<std::uint32_t>(bytes, 8);
  if (h.format_version != kCheckpointFormatVersion)
    bad("format version " + std::to_string(h.format_version) + " is not supported (this library reads version " +
        std::to_string(kCheckpointFormatVersion) + "); re-save it with a matching library version");
  h.scalar_code = get_le<std::uint32_t>(bytes, 12);
  if (h.scalar_code != 1 && h.scalar_code != 2) bad("unknown scalar code " + std::to_string(h.scalar_code));
  h.num_parameters = get_le<std::uint64_t>(bytes, 16);
  const std::uint32_t k = get_le<std::uint32_t>(bytes, 24), c = get_le<std::uint32_t>(bytes, 28);
  if (k > kCheckpointMaxText || c > kCheckpointMaxText) bad("header text lengths are implausible (corrupted header)");
  const std::uint64_t s = h.scalar_code == 1 ? 4 : 8;
  if (kCheckpointFixedHeader + 8 + std::uint64_t{k} + c > bytes.size())
    bad("truncated: the header's text fields run past the end of the file (" + std::to_string(bytes.size()) + " bytes)");
  const std::uint64_t available = bytes.size() - kCheckpointFixedHeader - 8 - k - c;
  if (h.num_parameters > available / s)
    bad("truncated: the header announces " + std::to_string(h.num_parameters) + " " + scalar_code_name(h.scalar_code) +
        " parameters but the file has only " + std::to_string(bytes.size()) + " bytes");
  const std::uint64_t expected = kCheckpointFixedHeader + k + c + h.num_parameters * s + 8;
  if (expected != bytes.size())
    bad("size mismatch: expected " + std::to_string(expected) + " bytes from the header, found " +
        std::to_string(bytes.size()) + " (truncated or with trailing data)");
  const std::uint64_t stored = get_le<std::uint64_t>(bytes, bytes.size() - 8);
  if (fnv1a64(bytes.substr(0, bytes.size() - 8)) != stored)
    bad("checksum mismatch: the file is corrupted; re-create it from its source");
  h.model_kind.assign(bytes.substr(kCheckpointFixedHeader, k));
  h.config.assign(bytes.substr(kCheckpointFixedHeader + k, c));
  payload_at = kCheckpointFixedHeader + k + c;
  return h;
}

}  // namespace detail

namespace detail {

/// The bytes of a checkpoint (what save_parameters writes).
template <SupportedScalar Scalar>
std::string encode_checkpoint(std::span<const Scalar> parameters, std::string_view model_kind, std::string_view config) {
  if (model_kind.size() > detail::kCheckpointMaxText || config.size() > detail::kCheckpointMaxText)
    throw InvalidArgument("save_parameters: model kind and configuration text must be at most 1 MiB each");
  std::string bytes;
  bytes.reserve(detail::kCheckpointFixedHeader + model_kind.size() + config.size() + parameters.size_bytes() + 8);
  bytes.append(kCheckpointMagic, sizeof(kCheckpointMagic));
  detail::put_le<std::uint32_t>(bytes, kCheckpointFormatVersion);
  detail::put_le<std::uint32_t>(bytes, detail::scalar_code<Scalar>());
  detail::put_le<std::uint64_t>(bytes, parameters.size());
  detail::put_le<std::uint32_t>(bytes, static_cast<std::uint32_t>(model_kind.size()));
  detail::put_le<std::uint32_t>(bytes, static_cast<std::uint32_t>(config.size()));
  bytes.append(model_kind);
  bytes.append(config);
  detail::put_scalars<Scalar>(bytes, parameters);
  detail::put_le<std::uint64_t>(bytes, detail::fnv1a64(bytes));
  return bytes;
}

/// read_checkpoint on an in-memory image (`name` appears in messages).
template <SupportedScalar Scalar>
CheckpointContents<Scalar> decode_checkpoint(std::string_view bytes, const std::string& name) {
  std::size_t at = 0;
  CheckpointContents<Scalar> c;
  c.header = detail::parse_checkpoint(bytes, name, at);
  if (c.header.scalar_code != detail::scalar_code<Scalar>())
    throw FileFormatError("checkpoint '" + name + "' holds " + c.header.scalar_name() + " parameters but a " +
                          detail::scalar_code_name(detail::scalar_code<Scalar>()) +
                          " model asked for them; load it into a model of the stored precision");
  c.parameters.resize(static_cast<Eigen::Index>(c.header.num_parameters));
  detail::get_scalars<Scalar>(bytes, at, std::span<Scalar>(c.parameters.data(), c.header.num_parameters));
  return c;
}

}  // namespace detail

/// Writes `parameters` with a model kind and a configuration text (both stored verbatim) atomically.
template <SupportedScalar Scalar>
void save_parameters(const std::filesystem::path& path, std::span<const Scalar> parameters, std::string_view model_kind,
                     std::string_view config) {
  detail::write_file_atomically(path, detail::encode_checkpoint<Scalar>(parameters, model_kind, config));
}

/// The header of a checkpoint, after validating the whole file (magic, version, sizes, checksum).
inline CheckpointHeader read_checkpoint_header(const std::filesystem::path& path) {
  const std::string bytes = detail::read_whole_file(path);
  std::size_t at = 0;
  return detail::parse_checkpoint(bytes, path.string(), at);
}

/// A validated checkpoint whose parameters are stored as Scalar (FileFormatError otherwise).
template <SupportedScalar Scalar>
CheckpointContents<Scalar> read_checkpoint(const std::filesystem::path& path) {
  return detail::decode_checkpoint<Scalar>(detail::read_whole_file(path), path.string());
}

/// Loads into `parameters` if the file's scalar type, size, model kind and configuration text all
/// equal the caller's; otherwise FileFormatError and `parameters` is untouched.
template <SupportedScalar Scalar>
void load_parameters(const std::filesystem::path& path, std::span<Scalar> parameters, std::string_view model_kind,
                     std::string_view config) {
  const auto c = read_checkpoint<Scalar>(path);
  if (c.header.model_kind != model_kind)
    throw FileFormatError("checkpoint '" + path.string() + "' holds a '" + c.header.model_kind + "' model, not '" +
                          std::string(model_kind) + "'");
  if (c.header.config != config)
    throw FileFormatError("checkpoint '" + path.string() + "' was saved with configuration\n" + c.header.config +
                          "which differs from the model's\n" + std::string(config));
  if (c.header.num_parameters != parameters.size())
    throw FileFormatError("checkpoint '" + path.string() + "' has " + std::to_string(c.header.num_parameters) +
                          " parameters, the model " + std::to_string(parameters.size()));
  std::copy(c.parameters.begin(), c.parameters.end(), parameters.begin());
}

// ---- the Transformer ------------------------------------------------------------------------------

inline constexpr std::string_view kTransformerCheckpointKind = "transformer";

/// Saves a Transformer's configuration and parameters atomically.
template <SupportedScalar Scalar>
void save_checkpoint(const std::filesystem::path& path, const models::Transformer<Scalar>& model) {
  save_parameters<Scalar>(path, model.parameters(), kTransformerCheckpointKind, model.config().to_string());
}

/// Loads into an existing Transformer. The stored architecture (every config field but the seed) and
/// scalar type must match; on any failure FileFormatError/IoError is thrown and the model is unchanged.
template <SupportedScalar Scalar>
void load_checkpoint(const std::filesystem::path& path, models::Transformer<Scalar>& model) {
  const auto c = read_checkpoint<Scalar>(path);
  if (c.header.model_kind != kTransformerCheckpointKind)
    throw FileFormatError("checkpoint '" + path.string() + "' holds a '" + c.header.model_kind +
                          "' model, not a transformer");
  const auto stored = models::TransformerConfig::parse(c.header.config);
  if (!stored.same_architecture(model.config()))
    throw FileFormatError("checkpoint '" + path.string() + "' has architecture\n" + stored.to_string() +
                          "but the model has\n" + model.config().to_string() +
                          "(the seed is not compared); build the model from the stored config or use load_transformer");
  if (c.header.num_parameters != model.num_parameters())
    throw FileFormatError("checkpoint '" + path.string() + "': parameter count does not match its configuration");
  std::copy(c.parameters.begin(), c.parameters.end(), model.parameters().begin());
}

namespace detail {

/// load_transformer on an in-memory image (`name` appears in messages).
template <SupportedScalar Scalar>
models::Transformer<Scalar> decode_transformer(std::string_view bytes, const std::string& name) {
  const auto c = decode_checkpoint<Scalar>(bytes, name);
  if (c.header.model_kind != kTransformerCheckpointKind)
    throw FileFormatError("checkpoint '" + name + "' holds a '" + c.header.model_kind + "' model, not a transformer");
  models::TransformerConfig config = models::TransformerConfig::parse(c.header.config);
  try {
    config.validate();
  } catch (const InvalidArgument& e) {
    throw FileFormatError("checkpoint '" + name + "' has an invalid configuration: " + e.what());
  }
  // Count before building: a corrupt or hostile configuration may describe petabytes of parameters,
  // but only as many as the file holds (checked by decode_checkpoint) are ever allocated. validate()
  // bounds every size, so the count cannot overflow 64 bits.
  const std::uint64_t expected = models::TransformerLayout(config).total;
  if (c.header.num_parameters != expected)
    throw FileFormatError("checkpoint '" + name + "' holds " + std::to_string(c.header.num_parameters) +
                          " parameters but its configuration describes " + std::to_string(expected) +
                          "; the file is corrupt or was not written by save_checkpoint");
  models::Transformer<Scalar> model(config);
  std::copy(c.parameters.begin(), c.parameters.end(), model.parameters().begin());
  return model;
}

}  // namespace detail

/// Builds a Transformer from the configuration stored in the checkpoint and loads its parameters. The
/// parameter count the configuration implies is checked against the file before the model is built, so
/// no more memory than the file's size is allocated for a corrupt or hostile file.
template <SupportedScalar Scalar>
models::Transformer<Scalar> load_transformer(const std::filesystem::path& path) {
  return detail::decode_transformer<Scalar>(detail::read_whole_file(path), path.string());
}

}  // namespace fisher_unlearn
