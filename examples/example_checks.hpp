// Checks shared by the example programs: command-line values checked at parse time (integers, finite
// numbers in a range), a corpus that is text and not binary, and folders that can be written before any
// long work starts. Every failure is a fisher_unlearn::InvalidArgument (or FileFormatError for a corpus)
// whose message names the option or file, the valid range and what to do.
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace example_checks {

inline void require(bool ok, const std::string& message) {
  if (!ok) throw fisher_unlearn::InvalidArgument(message);
}

inline std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

/// `name` must lie in [lo, hi]: "--width must lie in [1, 8192]; got 0".
inline void require_range(long long v, long long lo, long long hi, const std::string& name, const std::string& hint = {}) {
  require(v >= lo && v <= hi, name + " must lie in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]; got " +
                                  std::to_string(v) + (hint.empty() ? "" : "; " + hint));
}

/// `name` must be a finite number in [lo, hi] (NaN and Inf are refused by name).
inline void require_finite(double v, double lo, double hi, const std::string& name) {
  require(std::isfinite(v) && v >= lo && v <= hi,
          name + " must be a finite number in [" + number(lo) + ", " + number(hi) + "]; got " + number(v));
}

/// Parses a whole command-line value as a decimal integer in [lo, hi]: no sign tricks ("-1" is a
/// negative number, not 2^64 - 1), no exponent ("1e9"), no trailing text.
inline long long parse_integer(std::string_view text, long long lo, long long hi, const std::string& name) {
  long long v = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  require(ec == std::errc() && ptr == end && !text.empty(),
          name + " needs a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]; got '" +
              std::string(text) + "'");
  require_range(v, lo, hi, name);
  return v;
}

/// Why `text` (read from `what`) is not a text corpus, or "" when it is: a NUL byte, or more than
/// 1% of the bytes control characters other than tab, newline, carriage return, form feed and
/// vertical tab (UTF-8 and Latin-1 text pass; compressed, executable or random bytes do not).
inline std::string binary_content_problem(std::string_view text) {
  std::size_t nul = 0, control = 0;
  for (unsigned char c : text) {
    if (c == 0) ++nul;
    else if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7f) ++control;
  }
  if (nul > 0) return std::to_string(nul) + " NUL bytes";
  if (control * 100 > text.size())
    return std::to_string(control) + " control bytes of " + std::to_string(text.size()) + " (more than 1%)";
  return {};
}

/// Throws FileFormatError if `text` read from `path` looks binary (binary_content_problem).
inline void require_text_corpus(std::string_view text, const std::string& path) {
  const std::string problem = binary_content_problem(text);
  if (!problem.empty())
    throw fisher_unlearn::FileFormatError(path + " does not look like a text corpus (" + problem +
                                          "); give a plain-text file, e.g. one written by scripts/prepare_data.sh");
}

/// The folder exists or can be created, and a file can be written in it and removed again. Called
/// before any training, so that a results or cache folder that cannot be written fails in a second.
inline void require_writable_dir(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  require(!ec && fs::is_directory(dir, ec),
          name + " '" + dir + "' cannot be created" + (ec ? ": " + ec.message() : std::string(" (a file is in the way)")) +
              "; choose a writable folder");
  const fs::path probe = fs::path(dir) / ".write_probe";
  bool ok = false;
  {
    std::ofstream out(probe, std::ios::binary | std::ios::trunc);
    out << "probe";
    out.flush();
    ok = static_cast<bool>(out);
  }
  fs::remove(probe, ec);
  require(ok, name + " '" + dir + "' is not writable; choose a writable folder");
}

/// The file can be created (or replaced) later: its folder is writable.
inline void require_writable_file_location(const std::string& file, const std::string& name) {
  const std::filesystem::path parent = std::filesystem::path(file).parent_path();
  require_writable_dir(parent.empty() ? std::string(".") : parent.string(), name + " (the folder of '" + file + "')");
}

}  // namespace example_checks
