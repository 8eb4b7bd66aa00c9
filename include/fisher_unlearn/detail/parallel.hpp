// Internal fork-join loops over std::thread, started per call (tens of µs; callers go parallel only for
// work of a millisecond or more). Never more threads than work items; when the system refuses a thread,
// the share of the worker it could not start runs on the calling thread, so the result is the same;
// every started thread is joined before anything propagates. parallel_chunks serves the Fisher kernels:
// work cut into chunks whose size depends on the problem only, so results are bitwise the same for any
// thread count (reductions add per-chunk partials in chunk order). Not API.
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

/// 0 means "all hardware threads"; anything else is taken as given.
inline std::size_t resolve_threads(std::size_t requested) {
  return requested == 0 ? std::max<std::size_t>(1, std::thread::hardware_concurrency()) : requested;
}

/// Calls body(chunk) for chunk = 0 … chunks−1; thread t of T takes the contiguous range
/// [t·chunks/T, (t+1)·chunks/T). The first exception thrown by any body is rethrown after all joined.
/// `min_chunks_per_thread` keeps small problems on fewer threads (a thread start costs more than a tiny chunk).
template <class Body>
void parallel_chunks(std::size_t threads, std::size_t chunks, Body&& body, std::size_t min_chunks_per_thread = 1) {
  threads = std::min(resolve_threads(threads), std::max<std::size_t>(1, chunks / std::max<std::size_t>(1, min_chunks_per_thread)));
  if (threads <= 1 || chunks <= 1) {
    for (std::size_t c = 0; c < chunks; ++c) body(c);
    return;
  }
  run_workers(threads, chunks, [&](std::size_t t, std::size_t workers) {
    for (std::size_t c = t * chunks / workers; c < (t + 1) * chunks / workers; ++c) body(c);
  });
}

}  // namespace fisher_unlearn::detail
