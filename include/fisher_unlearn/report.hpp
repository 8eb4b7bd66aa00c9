// What an unlearner did: losses before and after, the step, its cost. Every unlearner returns one.
// to_json / unlearning_report_from_json write and read it as one flat JSON object (schema below),
// dependency-free; O(size of the text).
#pragma once

#include "fisher_unlearn/detail/format.hpp"
#include "fisher_unlearn/errors.hpp"

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>

namespace fisher_unlearn {

struct UnlearningReport {
  static constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

  std::string method;                    ///< name() of the unlearner
  double forget_loss_before = not_measured;   ///< J_forget (mean loss + regulariser) before
  double forget_loss_after = not_measured;
  double retain_loss_before = not_measured;   ///< J_retain before
  double retain_loss_after = not_measured;
  double step_norm = 0.0;                ///< ‖θ' − θ‖₂ over all parameters
  double residual_gradient_norm = not_measured;  ///< ‖∇J_retain(θ')‖₂ where computed
  double damping = not_measured;         ///< damping used by a Fisher method (after any search)
  std::size_t iterations = 0;            ///< steps taken
  std::size_t fisher_gradients = 0;      ///< per-sample gradients held by the Fisher estimator
  std::size_t memory_bytes = 0;          ///< peak working memory of the method (estimator + buffers)
  double seconds = 0.0;                  ///< wall time of unlearn()
  std::string notes;                     ///< anything the caller should know (clipped step, ...)
};

inline std::ostream& operator<<(std::ostream& os, const UnlearningReport& r) {
  using detail::format_number;
  os << r.method << ": forget loss " << format_number(r.forget_loss_before) << " -> "
     << format_number(r.forget_loss_after) << ", retain loss " << format_number(r.retain_loss_before) << " -> "
     << format_number(r.retain_loss_after) << ", step norm " << format_number(r.step_norm);
  if (!std::isnan(r.residual_gradient_norm)) os << ", residual gradient " << format_number(r.residual_gradient_norm);
  if (!std::isnan(r.damping)) os << ", damping " << format_number(r.damping);
  os << ", " << r.iterations << " iteration(s), " << format_number(r.seconds) << " s, " << r.memory_bytes << " bytes";
  if (!r.notes.empty()) os << " (" << r.notes << ")";
  return os;
}

// ---- JSON ------------------------------------------------------------------------------------------
// Schema "fisher_unlearn.unlearning_report/1": one object, keys in this order:
//   "schema": "fisher_unlearn.unlearning_report/1",
//   "method": string, "forget_loss_before", "forget_loss_after", "retain_loss_before", "retain_loss_after",
//   "step_norm", "residual_gradient_norm", "damping": number | null | "inf" | "-inf",
//   "iterations", "fisher_gradients", "memory_bytes": non-negative integer, "seconds": number, "notes": string.
// Numbers are the shortest text that reads back to the same double (bit-exact round trip). JSON has no
// NaN or infinity, so they are explicit: NaN (the report's "not measured") is written as null, +Inf and
// −Inf as the strings "inf" and "-inf"; the reader maps them back. Strings are UTF-8, escaped per RFC 8259.

namespace detail {

inline void json_append_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

inline void json_append_double(std::string& out, double x) {
  if (std::isnan(x))
    out += "null";
  else if (std::isinf(x))
    out += x > 0 ? "\"inf\"" : "\"-inf\"";
  else
    out += round_trip_number(x);
}

/// A reader for the flat objects this library writes (string, number, null values; no nesting).
class FlatJsonReader {
 public:
  explicit FlatJsonReader(std::string_view text) : s_(text) {}

  void expect(char c) {
    skip_space();
    if (i_ >= s_.size() || s_[i_] != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  bool consume(char c) {
    skip_space();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect_end() {
    skip_space();
    if (i_ != s_.size()) fail("unexpected text after the object");
  }
  bool next_is(char c) {
    skip_space();
    return i_ < s_.size() && s_[i_] == c;
  }

  std::string read_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a raw control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': append_utf8(out, read_code_point()); break;
        default: fail(std::string("unknown escape \\") + e);
      }
    }
  }

  /// A number, null (NaN), or the strings "inf" / "-inf".
  double read_double() {
    skip_space();
    if (s_.substr(i_, 4) == "null") {
      i_ += 4;
      return std::numeric_limits<double>::quiet_NaN();
    }
    if (next_is('"')) {
      const std::string v = read_string();
      if (v == "inf") return std::numeric_limits<double>::infinity();
      if (v == "-inf") return -std::numeric_limits<double>::infinity();
      fail("a number must be a JSON number, null, \"inf\" or \"-inf\"; got \"" + v + "\"");
    }
    // JSON number syntax starts with '-' or a digit (from_chars alone would also take "nan" and "inf").
    const std::size_t d = i_ < s_.size() && s_[i_] == '-' ? i_ + 1 : i_;
    if (d >= s_.size() || s_[d] < '0' || s_[d] > '9') fail("expected a number");
    double x = 0.0;
    const auto res = std::from_chars(s_.data() + i_, s_.data() + s_.size(), x);
    if (res.ec != std::errc() || res.ptr == s_.data() + i_) fail("expected a number");
    i_ = static_cast<std::size_t>(res.ptr - s_.data());
    return x;
  }

  std::uint64_t read_unsigned() {
    skip_space();
    std::uint64_t x = 0;
    const auto res = std::from_chars(s_.data() + i_, s_.data() + s_.size(), x);
    if (res.ec != std::errc() || res.ptr == s_.data() + i_) fail("expected a non-negative integer");
    i_ = static_cast<std::size_t>(res.ptr - s_.data());
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E')) fail("expected an integer");
    return x;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw FileFormatError("JSON report at byte " + std::to_string(i_) + ": " + what +
                          "; the text must be an object written by fisher_unlearn::to_json");
  }

 private:
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  unsigned read_hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else fail("bad hex digit in a \\u escape");
    }
    return v;
  }
  unsigned read_code_point() {
    const unsigned hi = read_hex4();
    if (hi < 0xD800 || hi > 0xDFFF) return hi;
    if (hi > 0xDBFF || s_.substr(i_, 2) != "\\u") fail("an unpaired surrogate in a \\u escape");
    i_ += 2;
    const unsigned lo = read_hex4();
    if (lo < 0xDC00 || lo > 0xDFFF) fail("an unpaired surrogate in a \\u escape");
    return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
  }
  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace detail

inline constexpr std::string_view unlearning_report_schema = "fisher_unlearn.unlearning_report/1";

/// The report as one JSON object on one line (schema above).
inline std::string to_json(const UnlearningReport& r) {
  std::string out = "{\"schema\":";
  detail::json_append_string(out, unlearning_report_schema);
  const auto str = [&](const char* key, const std::string& v) {
    out += ",\"";
    out += key;
    out += "\":";
    detail::json_append_string(out, v);
  };
  const auto num = [&](const char* key, double v) {
    out += ",\"";
    out += key;
    out += "\":";
    detail::json_append_double(out, v);
  };
  const auto count = [&](const char* key, std::size_t v) {
    out += ",\"";
    out += key;
    out += "\":";
    out += std::to_string(v);
  };
  str("method", r.method);
  num("forget_loss_before", r.forget_loss_before);
  num("forget_loss_after", r.forget_loss_after);
  num("retain_loss_before", r.retain_loss_before);
  num("retain_loss_after", r.retain_loss_after);
  num("step_norm", r.step_norm);
  num("residual_gradient_norm", r.residual_gradient_norm);
  num("damping", r.damping);
  count("iterations", r.iterations);
  count("fisher_gradients", r.fisher_gradients);
  count("memory_bytes", r.memory_bytes);
  num("seconds", r.seconds);
  str("notes", r.notes);
  out += '}';
  return out;
}

/// Reads what to_json wrote (keys in any order, whitespace allowed; every key required, no unknown key).
/// Throws FileFormatError naming the byte and what was wrong.
inline UnlearningReport unlearning_report_from_json(std::string_view text) {
  detail::FlatJsonReader in(text);
  UnlearningReport r;
  constexpr int n_keys = 14;
  static constexpr const char* keys[n_keys] = {
      "schema",           "method",        "forget_loss_before", "forget_loss_after",      "retain_loss_before",
      "retain_loss_after", "step_norm",    "residual_gradient_norm", "damping",           "iterations",
      "fisher_gradients", "memory_bytes",  "seconds",            "notes"};
  bool seen[n_keys] = {};
  in.expect('{');
  if (!in.consume('}')) {
    do {
      const std::string key = in.read_string();
      in.expect(':');
      int k = 0;
      while (k < n_keys && key != keys[k]) ++k;
      if (k == n_keys) in.fail("unknown key \"" + key + "\"");
      if (seen[k]) in.fail("key \"" + key + "\" appears twice");
      seen[k] = true;
      switch (k) {
        case 0: {
          const std::string schema = in.read_string();
          if (schema != unlearning_report_schema)
            in.fail("schema \"" + schema + "\" is not " + std::string(unlearning_report_schema));
          break;
        }
        case 1: r.method = in.read_string(); break;
        case 2: r.forget_loss_before = in.read_double(); break;
        case 3: r.forget_loss_after = in.read_double(); break;
        case 4: r.retain_loss_before = in.read_double(); break;
        case 5: r.retain_loss_after = in.read_double(); break;
        case 6: r.step_norm = in.read_double(); break;
        case 7: r.residual_gradient_norm = in.read_double(); break;
        case 8: r.damping = in.read_double(); break;
        case 9: r.iterations = static_cast<std::size_t>(in.read_unsigned()); break;
        case 10: r.fisher_gradients = static_cast<std::size_t>(in.read_unsigned()); break;
        case 11: r.memory_bytes = static_cast<std::size_t>(in.read_unsigned()); break;
        case 12: r.seconds = in.read_double(); break;
        default: r.notes = in.read_string(); break;
      }
    } while (in.consume(','));
    in.expect('}');
  }
  in.expect_end();
  for (int k = 0; k < n_keys; ++k)
    if (!seen[k]) in.fail(std::string("key \"") + keys[k] + "\" is missing");
  return r;
}

}  // namespace fisher_unlearn
