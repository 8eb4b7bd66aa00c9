// Progress reports and cancellation for long library calls (Fisher build, damping search, exposure):
// the call invokes Progress::update(phase, done, total) at checkpoints; update calls the user's ProgressFn
// and throws Cancelled when the CancelToken was triggered or the stop callback returns true. O(1) each.
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace fisher_unlearn {

/// One checkpoint of a long call: `done` of `total` units of `phase` are finished (total may be an
/// upper bound: a pruned exposure walk reports candidates scored against |R|).
struct ProgressUpdate {
  std::string_view phase;  ///< "fisher: gradients", "fisher: factorise", "damping search", "removal steps",
                           ///< "exposure: exact walk", "exposure: samples", "exposure: bootstrap"
  std::uint64_t done = 0;
  std::uint64_t total = 0;
};

/// Called at each checkpoint, on the calling thread. It may throw (the exception propagates with the
/// same strong guarantee as Cancelled); it should return quickly.
using ProgressFn = std::function<void(const ProgressUpdate&)>;

/// A shared flag: copies see the same state, so one copy goes into the options and another stays with
/// whoever cancels (another thread, a signal handler setting it via request_stop, a UI). Thread-safe.
class CancelToken {
 public:
  CancelToken() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
  void request_stop() const noexcept { flag_->store(true, std::memory_order_relaxed); }
  bool stop_requested() const noexcept { return flag_->load(std::memory_order_relaxed); }
  void reset() const noexcept { flag_->store(false, std::memory_order_relaxed); }

 private:
  std::shared_ptr<std::atomic<bool>> flag_;
};

/// What a long call is given (a member `progress` of its options). Default: no reports, never cancelled.
/// On cancellation the call throws Cancelled and gives the strong guarantee: a model's parameters and a
/// caller-supplied estimator's damping are exactly as before the call.
struct Progress {
  ProgressFn on_progress;       ///< may be empty
  CancelToken cancel;           ///< request_stop() on any copy cancels at the next checkpoint
  std::function<bool()> stop;   ///< may be empty; returning true cancels at the next checkpoint

  bool stop_requested() const { return cancel.stop_requested() || (stop && stop()); }

  /// Reports, then throws Cancelled if a stop was requested.
  void update(std::string_view phase, std::uint64_t done, std::uint64_t total) const {
    if (on_progress) on_progress(ProgressUpdate{phase, done, total});
    if (stop_requested())
      throw Cancelled("cancelled by the caller during " + std::string(phase) + " (" + std::to_string(done) + " of " +
                      std::to_string(total) + " done); nothing was changed: the model's parameters are as before "
                      "the call");
  }
};

}  // namespace fisher_unlearn
