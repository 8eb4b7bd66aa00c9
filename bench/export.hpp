// Exports benchmark inputs and our results for the Python peers (bench/peers/): one directory with a
// manifest.json and one raw little-endian file per array, read by bench/peers/export_format.py.
//   manifest.json = {"format": "fisher_unlearn-bench-export", "version": 1,
//                    "arrays": {name: {"file", "dtype" ("float32"|"float64"|"int32"), "shape" (C order)}},
//                    "values": {name: number or string}}
// Cost: one sequential write of every array; the peers memory-map or read the files as they are.
#pragma once

#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace fisher_unlearn::bench {

static_assert(std::endian::native == std::endian::little,
              "the export format is little-endian; this writer copies memory as it is");

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  else if constexpr (std::is_same_v<T, double>) return "float64";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  else static_assert(sizeof(T) == 0, "export supports float, double and int32 arrays");
}

inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

class ExportDirectory {
 public:
  /// Creates `dir` (and parents). Throws std::runtime_error when it cannot.
  explicit ExportDirectory(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }

  /// Writes `count` = Π shape elements from `data` to <dir>/<name>.bin, C order as given by `shape`.
  template <class T>
  void array(const std::string& name, const T* data, const std::vector<std::size_t>& shape) {
    std::size_t count = 1;
    for (std::size_t n : shape) count *= n;
    const std::string file = name + ".bin";
    std::ofstream out(dir_ / file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(T)));
    if (!out) throw std::runtime_error("export: cannot write " + (dir_ / file).string());
    std::ostringstream entry;
    entry << "{\"file\": " << json_string(file) << ", \"dtype\": \"" << dtype_name<T>() << "\", \"shape\": [";
    for (std::size_t i = 0; i < shape.size(); ++i) entry << (i ? ", " : "") << shape[i];
    entry << "]}";
    arrays_[name] = entry.str();
  }

  void value(const std::string& name, double v) {
    std::ostringstream os;
    os.precision(17);
    os << v;
    values_[name] = os.str();
  }
  void value(const std::string& name, const std::string& v) { values_[name] = json_string(v); }

  /// Writes manifest.json (call last; the peers read the arrays it lists).
  void finish() const {
    std::ofstream out(dir_ / "manifest.json", std::ios::trunc);
    out << "{\"format\": \"fisher_unlearn-bench-export\", \"version\": 1,\n \"arrays\": {";
    bool first = true;
    for (const auto& [k, v] : arrays_) {
      out << (first ? "\n  " : ",\n  ") << json_string(k) << ": " << v;
      first = false;
    }
    out << "},\n \"values\": {";
    first = true;
    for (const auto& [k, v] : values_) {
      out << (first ? "\n  " : ",\n  ") << json_string(k) << ": " << v;
      first = false;
    }
    out << "}}\n";
    if (!out) throw std::runtime_error("export: cannot write " + (dir_ / "manifest.json").string());
  }

 private:
  std::filesystem::path dir_;
  std::map<std::string, std::string> arrays_, values_;
};

/// Removes "--export_dir=DIR" from argv (Google Benchmark rejects flags it does not know) and returns
/// DIR, or "" when absent.
inline std::string take_export_dir(int& argc, char** argv) {
  const std::string flag = "--export_dir=";
  std::string dir;
  int kept = 0;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i > 0 && arg.rfind(flag, 0) == 0) {
      dir = arg.substr(flag.size());
      continue;
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  return dir;
}

}  // namespace fisher_unlearn::bench
