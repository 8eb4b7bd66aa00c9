// Internal: a fork-join loop over std::thread. Never starts more threads than there are work items;
// when the system refuses a thread, the share of the workers it could not start runs on the calling
// thread, so the result is the same; every started thread is joined before anything propagates.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace fisher_unlearn::detail {

/// Starts a thread running `fn` (std::thread; tests substitute a launcher that refuses some threads).
struct StdThreadLauncher {
  template <class Fn>
  std::thread operator()(Fn&& fn) const {
    return std::thread(std::forward<Fn>(fn));
  }
};

/// The number of workers for `work_items` items on at most `threads` threads: at least 1, never more
/// than the work (0 threads is taken as 1).
inline std::size_t worker_count(std::size_t threads, std::size_t work_items) {
  return std::max<std::size_t>(1, std::min(threads, work_items));
}

/// Runs body(worker, workers) for worker in [0, workers), workers = worker_count(threads, work_items):
/// worker 0 on the calling thread, the others on their own threads. Each worker's share is fixed by
/// (worker, workers) alone, so the result does not depend on whether a thread could be started: a
/// worker whose thread cannot be started (std::system_error, std::bad_alloc) runs on the calling thread afterwards.
/// The first exception thrown by a body is rethrown after every worker has finished.
template <class Body, class Launcher = StdThreadLauncher>
void run_workers(std::size_t threads, std::size_t work_items, Body&& body, Launcher launch = {}) {
  const std::size_t workers = worker_count(threads, work_items);
  if (workers == 1) {
    body(std::size_t{0}, std::size_t{1});
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](std::size_t w) {
    try {
      body(w, workers);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  std::vector<std::size_t> not_started;
  try {
    pool.reserve(workers - 1);
    not_started.reserve(workers - 1);
  } catch (...) {
    // Without room to hold the threads, run every worker here (the same shares, one after another).
    for (std::size_t w = 0; w < workers; ++w) run(w);
    if (error) std::rethrow_exception(error);
    return;
  }
  for (std::size_t w = 1; w < workers; ++w) {
    try {
      pool.push_back(launch([&run, w] { run(w); }));
    } catch (...) {
      // std::system_error (no more threads) or std::bad_alloc: this share runs on the calling thread.
      not_started.push_back(w);
    }
  }
  run(0);
  for (std::size_t w : not_started) run(w);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

/// Runs f(i, worker) for i in [0, n) on worker_count(threads, n) workers, item i on worker i mod workers
/// (static, strided); the first exception is rethrown after every worker has finished.
template <class F, class Launcher = StdThreadLauncher>
void parallel_for(std::size_t n, std::size_t threads, F&& f, Launcher launch = {}) {
  if (n == 0) return;
  run_workers(
      threads, n,
      [&](std::size_t w, std::size_t workers) {
        for (std::size_t i = w; i < n; i += workers) f(i, w);
      },
      launch);
}

}  // namespace fisher_unlearn::detail
