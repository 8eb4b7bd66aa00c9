// unlearn_lm small utilities: the model type, wall time, number formatting, a thread loop, atomic writes.
#pragma once

#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/detail/parallel.hpp"
#include "fisher_unlearn/models/transformer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace unlearn_lm {

namespace fu = fisher_unlearn;
namespace fs = std::filesystem;
using Model = fu::models::Transformer<float>;
using Sample = Model::Sample;
using fu::Token;

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline std::string fmt(double v, int precision = 3) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream os;
  if (std::abs(v) >= 1e5) {
    os << std::setprecision(2) << std::scientific << v;
  } else {
    os << std::fixed << std::setprecision(precision) << v;
  }
  return os.str();
}

inline std::string fmt_general(double v) {
  std::ostringstream os;
  os << std::setprecision(3) << v;
  return os.str();
}

/// Writes a text file atomically (the library's checkpoint writer: temporary file, fsync, rename).
inline void write_text(const fs::path& path, const std::string& content) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  fu::detail::write_file_atomically(path, content);
}

/// Runs body(i) for i in [0, n) on at most `threads` threads, never more than n (the model's const
/// methods are thread-safe); the first exception is rethrown after every thread has finished.
inline void parallel_for(std::size_t n, std::size_t threads, const std::function<void(std::size_t)>& body) {
  fu::detail::parallel_for(n, threads, [&](std::size_t i, std::size_t) { body(i); });
}

/// Runs body(worker, workers) on workers = min(threads, work_items) threads (at least 1); each worker
/// takes its share of the work by stride, e.g. items worker, worker + workers, ...
inline void run_workers(std::size_t threads, std::size_t work_items,
                        const std::function<void(std::size_t, std::size_t)>& body) {
  fu::detail::run_workers(threads, work_items, body);
}

struct MeanSd {
  double mean = std::nan(""), sd = std::nan("");
  std::size_t n = 0;
};

/// Mean and sample standard deviation (n − 1) of the finite values; sd = 0 for one value.
inline MeanSd mean_sd(const std::vector<double>& v) {
  MeanSd r;
  double s = 0;
  for (double x : v)
    if (std::isfinite(x)) {
      s += x;
      ++r.n;
    }
  if (r.n == 0) return r;
  r.mean = s / static_cast<double>(r.n);
  double q = 0;
  for (double x : v)
    if (std::isfinite(x)) q += (x - r.mean) * (x - r.mean);
  r.sd = r.n > 1 ? std::sqrt(q / static_cast<double>(r.n - 1)) : 0.0;
  return r;
}

inline std::string pm(const MeanSd& m, int precision = 2) {
  if (m.n == 0) return "n/a";
  return fmt(m.mean, precision) + " ± " + fmt(m.sd, precision);
}

inline std::string safe_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

}  // namespace unlearn_lm
