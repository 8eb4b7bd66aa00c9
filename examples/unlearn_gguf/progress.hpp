// unlearn_gguf: progress lines with an ETA for every long phase, and Ctrl-C (SIGINT/SIGTERM) turned into
// a clean cancellation: the handler only sets a flag; the phases poll it and throw Cancelled, which the
// unlearner's rollback and main's error mapping turn into "nothing written, exit 130".
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace unlearn_gguf {

/// Thrown when the user pressed Ctrl-C; nothing has been written when it propagates out of run().
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled by the user (SIGINT/SIGTERM); no output was written") {}
};

inline std::atomic<bool>& cancel_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

extern "C" inline void unlearn_gguf_on_signal(int) { cancel_flag().store(true); }

/// Installs the handler for SIGINT and SIGTERM (process-wide; idempotent) and clears the flag.
inline void install_cancel_handler() {
  cancel_flag().store(false);
  std::signal(SIGINT, unlearn_gguf_on_signal);
  std::signal(SIGTERM, unlearn_gguf_on_signal);
}

inline void throw_if_cancelled() {
  if (cancel_flag().load()) throw Cancelled();
}

/// "[phase] 12/64 (19%), 3.1 s elapsed, ETA 13 s: detail" at most every `interval` seconds (3) (and at the
/// first and last item), on stderr. Each tick also polls the cancel flag.
class Progress {
 public:
  Progress(std::string phase, std::size_t total, bool quiet, double interval = 3.0)
      : phase_(std::move(phase)), total_(total), quiet_(quiet), interval_(interval), start_(clock::now()) {}

  void tick(std::size_t done, const std::string& detail = {}) {
    throw_if_cancelled();
    const double t = seconds();
    if (quiet_ || (done != 1 && done != total_ && t - last_ < interval_)) return;
    last_ = t;
    if (total_ > 0 && done > 0) {
      const double eta = t / static_cast<double>(done) * static_cast<double>(total_ - std::min(done, total_));
      std::fprintf(stderr, "[%s] %zu/%zu (%.0f%%), %.1f s elapsed, ETA %.0f s%s%s\n", phase_.c_str(), done, total_,
                   100.0 * static_cast<double>(done) / static_cast<double>(total_), t, eta,
                   detail.empty() ? "" : ": ", detail.c_str());
    } else {
      std::fprintf(stderr, "[%s] %zu, %.1f s elapsed%s%s\n", phase_.c_str(), done, t, detail.empty() ? "" : ": ",
                   detail.c_str());
    }
    std::fflush(stderr);
  }
  double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  std::string phase_;
  std::size_t total_;
  bool quiet_;
  double interval_;
  clock::time_point start_;
  double last_ = -1e9;
};

}  // namespace unlearn_gguf
