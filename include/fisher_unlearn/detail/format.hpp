// Numbers in messages and reports: format_number gives 6 significant digits in %g style (1e-07, 0.5,
// 3.2e+12), never the fixed "0.000000" that std::to_string prints for small dampings; round_trip_number
// gives the shortest text that reads back to the same double (std::to_chars), for machine-readable output.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <system_error>

namespace fisher_unlearn::detail {

/// %.6g, with "nan", "inf" and "-inf" spelled the same on every platform.
inline std::string format_number(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

/// The shortest decimal text that parses back to exactly x (finite x only; callers handle NaN/Inf).
inline std::string round_trip_number(double x) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x);
  if (res.ec != std::errc()) {  // cannot happen with 64 bytes; keep a correct fallback anyway
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return buf;
  }
  return std::string(buf, res.ptr);
}

}  // namespace fisher_unlearn::detail
