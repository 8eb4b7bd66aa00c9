// Fixed-chunk parallel loops for the Fisher kernels: work over d rows is cut into chunks whose size
// depends on the problem only (never on the thread count), each chunk is computed the same way on any
// thread, and reductions add the per-chunk partials in chunk order. So every result is bitwise the same
// for 1, 2 or 64 threads. Threads are plain std::thread, started per call (tens of µs; the callers only
// go parallel for work of a millisecond or more). Not API.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fisher_unlearn::detail {

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
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](std::size_t t) {
    try {
      for (std::size_t c = t * chunks / threads; c < (t + 1) * chunks / threads; ++c) body(c);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  try {
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(run, t);
  } catch (...) {  // could not start a thread: the calling thread does the rest
    for (auto& th : pool) th.join();
    for (std::size_t t = pool.size() + 1; t < threads; ++t) run(t);
    run(0);
    if (error) std::rethrow_exception(error);
    return;
  }
  run(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace fisher_unlearn::detail
