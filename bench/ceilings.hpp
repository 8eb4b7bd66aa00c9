// Machine ceilings measured inside each benchmark binary: single-core streaming bandwidth (read-only
// reduction, copy, triad, STREAM's byte counting: no write-allocate traffic) and the Eigen GEMM rate
// (2n³ FLOP per n×n product). Cost: a few hundred milliseconds, paid once per binary and per size.
//
// Every measured routine in bench/ reports its rate beside one of these, measured in the same process
// on the same kind of buffers, so that "fraction of ceiling" compares like with like. Each ceiling is
// measured at the thread count of the routine it is compared with: T threads each stream (or multiply)
// a contiguous 1/T of the arrays (of C's columns), started the way the library starts its threads.
#pragma once

#include <benchmark/benchmark.h>

#include <fisher_unlearn/detail/parallel.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <limits>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <utility>

namespace fisher_unlearn::bench {

template <class Scalar>
using Vec = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
template <class Scalar>
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

/// Seeded uniform(−1, 1) data: never zeros, identical on every run.
template <class Scalar>
Mat<Scalar> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  Mat<Scalar> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(uniform(rng));
  return m;
}
template <class Scalar>
Vec<Scalar> random_vector(Eigen::Index n, std::uint64_t seed) {
  return random_matrix<Scalar>(n, 1, seed);
}

/// Best of `repeats` timings of f() in seconds, after one warm-up call (STREAM reports the best run:
/// the ceiling is what the machine can do, not what it did on a busy moment).
template <class F>
double best_seconds(F&& f, int repeats) {
  f();
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

/// CPU time of the whole process (every thread), in seconds. On a shared machine a routine and its
/// ceiling are preempted by different amounts, so the wall-clock ratio between them measures the
/// scheduler as much as the code; the CPU-time ratio (both sides in process CPU seconds, best of N)
/// does not. With T threads it counts T threads' CPU, for the routine and its T-thread ceiling alike.
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Best of `repeats` process-CPU timings of f() in seconds, after one warm-up call.
template <class F>
double best_cpu_seconds(F&& f, int repeats) {
  f();
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = process_cpu_seconds();
    f();
    best = std::min(best, process_cpu_seconds() - t0);
  }
  return best;
}

enum class StreamKernel { read, copy, triad };

inline const char* to_string(StreamKernel k) {
  return k == StreamKernel::read ? "read" : k == StreamKernel::copy ? "copy" : "triad";
}

/// Bytes one pass of the kernel moves over n-element arrays, counted as STREAM does.
template <class Scalar>
double stream_bytes(StreamKernel k, std::size_t n) {
  const double s = static_cast<double>(n * sizeof(Scalar));
  return k == StreamKernel::read ? s : k == StreamKernel::copy ? 2 * s : 3 * s;
}

/// One pass of the kernel. read: Σ a (a reduction, as a diagonal accumulation reads its gradients);
/// copy: b = a; triad: c = a + s·b (two streams in, one out, as an inverse-diagonal product).
template <class Scalar>
struct StreamBuffers {
  explicit StreamBuffers(std::size_t n)
      : a(random_vector<Scalar>(static_cast<Eigen::Index>(n), 1)),
        b(random_vector<Scalar>(static_cast<Eigen::Index>(n), 2)),
        c(random_vector<Scalar>(static_cast<Eigen::Index>(n), 3)) {}
  void run(StreamKernel k, std::size_t threads = 1) {
    const Eigen::Index n = a.size();
    const auto t = static_cast<Eigen::Index>(threads);
    fisher_unlearn::detail::parallel_chunks(threads, threads, [&](std::size_t part) {
      const Eigen::Index begin = n * static_cast<Eigen::Index>(part) / t;
      const Eigen::Index len = n * (static_cast<Eigen::Index>(part) + 1) / t - begin;
      switch (k) {
        case StreamKernel::read: {
          Scalar sum = a.segment(begin, len).sum();
          benchmark::DoNotOptimize(sum);
          break;
        }
        case StreamKernel::copy:
          b.segment(begin, len) = a.segment(begin, len);
          break;
        case StreamKernel::triad:
          c.segment(begin, len).noalias() = a.segment(begin, len) + Scalar(0.5) * b.segment(begin, len);
          break;
      }
    });
    benchmark::ClobberMemory();
  }
  Vec<Scalar> a, b, c;
};

/// Streaming bandwidth in bytes/s of kernel k over n-element arrays (best of several passes),
/// measured once per (kernel, Scalar, n) in this process.
template <class Scalar>
double stream_bandwidth(StreamKernel k, std::size_t n, std::size_t threads = 1) {
  static std::map<std::tuple<int, std::size_t, std::size_t>, double> cache;
  const auto key = std::make_tuple(static_cast<int>(k), n, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  StreamBuffers<Scalar> buffers(n);
  const int repeats = std::clamp(static_cast<int>(4e8 / stream_bytes<Scalar>(k, n)), 5, 200);
  const double seconds = best_seconds([&] { buffers.run(k, threads); }, repeats);
  return cache[key] = stream_bytes<Scalar>(k, n) / seconds;
}

/// stream_bandwidth in bytes per second of process CPU time (best of several passes).
template <class Scalar>
double stream_bandwidth_cpu(StreamKernel k, std::size_t n, std::size_t threads = 1) {
  static std::map<std::tuple<int, std::size_t, std::size_t>, double> cache;
  const auto key = std::make_tuple(static_cast<int>(k), n, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  StreamBuffers<Scalar> buffers(n);
  const int repeats = std::clamp(static_cast<int>(4e8 / stream_bytes<Scalar>(k, n)), 5, 200);
  const double seconds = best_cpu_seconds([&] { buffers.run(k, threads); }, repeats);
  return cache[key] = stream_bytes<Scalar>(k, n) / seconds;
}

/// C = A·B on `threads` threads: thread t computes a contiguous 1/T of C's columns with Eigen's GEMM.
template <class Scalar>
void threaded_gemm(const Mat<Scalar>& a, const Mat<Scalar>& b, Mat<Scalar>& c, std::size_t threads) {
  const Eigen::Index cols = b.cols();
  const auto t = static_cast<Eigen::Index>(threads);
  fisher_unlearn::detail::parallel_chunks(threads, threads, [&](std::size_t part) {
    const Eigen::Index begin = cols * static_cast<Eigen::Index>(part) / t;
    const Eigen::Index len = cols * (static_cast<Eigen::Index>(part) + 1) / t - begin;
    c.middleCols(begin, len).noalias() = a * b.middleCols(begin, len);
  });
}

/// Eigen's GEMM rate in FLOP/s for C = A·B with A r×k and B k×c (2rkc FLOP), best of several runs.
template <class Scalar>
double gemm_rate(Eigen::Index rows, Eigen::Index inner, Eigen::Index cols, std::size_t threads = 1) {
  static std::map<std::tuple<Eigen::Index, Eigen::Index, Eigen::Index, std::size_t>, double> cache;
  const auto key = std::make_tuple(rows, inner, cols, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Mat<Scalar> a = random_matrix<Scalar>(rows, inner, 4);
  const Mat<Scalar> b = random_matrix<Scalar>(inner, cols, 5);
  Mat<Scalar> c(rows, cols);
  const double flops = 2.0 * double(rows) * double(inner) * double(cols);
  const int repeats = std::clamp(static_cast<int>(2e10 / flops), 3, 50);
  const double seconds = best_seconds(
      [&] {
        threaded_gemm(a, b, c, threads);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
      },
      repeats);
  return cache[key] = flops / seconds;
}

/// gemm_rate in FLOP per second of process CPU time.
template <class Scalar>
double gemm_rate_cpu(Eigen::Index rows, Eigen::Index inner, Eigen::Index cols, std::size_t threads = 1) {
  static std::map<std::tuple<Eigen::Index, Eigen::Index, Eigen::Index, std::size_t>, double> cache;
  const auto key = std::make_tuple(rows, inner, cols, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Mat<Scalar> a = random_matrix<Scalar>(rows, inner, 4);
  const Mat<Scalar> b = random_matrix<Scalar>(inner, cols, 5);
  Mat<Scalar> c(rows, cols);
  const double flops = 2.0 * double(rows) * double(inner) * double(cols);
  const int repeats = std::clamp(static_cast<int>(2e10 / flops), 3, 50);
  const double seconds = best_cpu_seconds(
      [&] {
        threaded_gemm(a, b, c, threads);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
      },
      repeats);
  return cache[key] = flops / seconds;
}

/// The reference GEMM rate every set-up is compared with: a square n = 1024 product.
template <class Scalar>
double square_gemm_rate(std::size_t threads = 1) {
  return gemm_rate<Scalar>(1024, 1024, 1024, threads);
}

// ---- the ceilings as benchmarks of their own, so the table can show them beside the routines ----

template <class Scalar>
void BM_ceiling_stream(benchmark::State& state, StreamKernel k, std::size_t threads = 1) {
  const auto n = static_cast<std::size_t>(state.range(0));
  StreamBuffers<Scalar> buffers(n);
  for (auto _ : state) buffers.run(k, threads);
  const double bytes = stream_bytes<Scalar>(k, n);
  state.counters["bytes_per_s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string("ceiling: stream ") + to_string(k));
}

template <class Scalar>
void BM_ceiling_gemm(benchmark::State& state, std::size_t threads = 1) {
  const Eigen::Index rows = state.range(0), inner = state.range(1), cols = state.range(2);
  const Mat<Scalar> a = random_matrix<Scalar>(rows, inner, 4);
  const Mat<Scalar> b = random_matrix<Scalar>(inner, cols, 5);
  Mat<Scalar> c(rows, cols);
  for (auto _ : state) {
    threaded_gemm(a, b, c, threads);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["flop_per_s"] = benchmark::Counter(2.0 * double(rows) * double(inner) * double(cols),
                                                    benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("ceiling: Eigen GEMM");
}

/// Wall-clock time of a benchmark's timed loop, so that a routine can report the fraction of its
/// ceiling as a plain number: ceiling_seconds_per_iteration · iterations / elapsed. (A rate counter
/// would do the division too, but prints it with a "/s" unit.) Benchmarks here use UseRealTime(), so
/// this is the time Google Benchmark reports, and the ceilings are wall-clock too.
class LoopClock {
 public:
  LoopClock() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// The fastest single iteration of a timed loop: `of_ceiling_best` = ideal ÷ fastest iteration compares
/// best with best (the ceilings are best-of-N too), which a shared, preempted machine distorts far less
/// than the mean: on a loaded machine the mean of a 100 ms routine includes preemptions that a best-of
/// ceiling escaped.
class BestIteration {
 public:
  void start() { t0_ = std::chrono::steady_clock::now(); }
  void stop() {
    best_ = std::min(best_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  double seconds() const { return best_; }

 private:
  std::chrono::steady_clock::time_point t0_{};
  double best_ = 1e300;
};

/// Wall-clock and process-CPU time of every iteration of a timed loop: the fastest of each and the
/// CPU total. `name_cpu` (set_fractions) compares the best CPU iteration with a best-of CPU ceiling.
class IterationTimer {
 public:
  void start() {
    wall0_ = std::chrono::steady_clock::now();
    cpu0_ = process_cpu_seconds();
  }
  void stop() {
    const double cpu = process_cpu_seconds() - cpu0_;
    best_wall_ = std::min(best_wall_, std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0_).count());
    best_cpu_ = std::min(best_cpu_, cpu);
  }
  double best_wall() const { return best_wall_; }
  double best_cpu() const { return best_cpu_; }

 private:
  std::chrono::steady_clock::time_point wall0_{};
  double cpu0_ = 0, best_wall_ = 1e300, best_cpu_ = 1e300;
};

/// The three fractions of a ceiling a routine reports (1.0 = at the ceiling): `name` (ideal wall time ÷
/// the mean wall iteration, Google Benchmark's own reading), `name_best` (÷ the fastest wall iteration)
/// and `name_cpu` (ideal CPU time ÷ the fastest CPU iteration, both in process CPU seconds: the reading
/// that survives a shared machine). Also best_seconds and best_cpu_seconds.
inline void set_fractions(benchmark::State& state, const std::string& name, double ideal_wall, double ideal_cpu,
                          double loop_wall, const IterationTimer& timer) {
  state.counters[name] = benchmark::Counter(ideal_wall * static_cast<double>(state.iterations()) / loop_wall);
  state.counters[name + "_best"] = ideal_wall / timer.best_wall();
  state.counters[name + "_cpu"] = ideal_cpu / timer.best_cpu();
  state.counters["best_seconds"] = timer.best_wall();
  state.counters["best_cpu_seconds"] = timer.best_cpu();
}

/// Sets `name` = ideal_seconds / measured seconds per iteration (1.0 means at the ceiling).
inline void set_fraction(benchmark::State& state, const char* name, double ideal_seconds_per_iteration,
                         double loop_seconds) {
  state.counters[name] =
      benchmark::Counter(ideal_seconds_per_iteration * static_cast<double>(state.iterations()) / loop_seconds);
}

}  // namespace fisher_unlearn::bench
