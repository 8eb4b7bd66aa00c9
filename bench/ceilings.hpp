// Machine ceilings measured inside each benchmark binary: single-core streaming bandwidth (read-only
// reduction, copy, triad, STREAM's byte counting: no write-allocate traffic) and the Eigen GEMM rate
// (2n³ FLOP per n×n product). Cost: a few hundred milliseconds, paid once per binary and per size.
//
// Every measured routine in bench/ reports its rate beside one of these, measured in the same process
// on the same kind of buffers, so that "fraction of ceiling" compares like with like. The library runs
// on one thread (Eigen without OpenMP), so the ceilings are single-thread ceilings too.
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
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
  void run(StreamKernel k) {
    switch (k) {
      case StreamKernel::read: {
        Scalar sum = a.sum();
        benchmark::DoNotOptimize(sum);
        break;
      }
      case StreamKernel::copy:
        b = a;
        break;
      case StreamKernel::triad:
        c.noalias() = a + Scalar(0.5) * b;
        break;
    }
    benchmark::ClobberMemory();
  }
  Vec<Scalar> a, b, c;
};

/// Streaming bandwidth in bytes/s of kernel k over n-element arrays (best of several passes),
/// measured once per (kernel, Scalar, n) in this process.
template <class Scalar>
double stream_bandwidth(StreamKernel k, std::size_t n) {
  static std::map<std::pair<int, std::size_t>, double> cache;
  const auto key = std::make_pair(static_cast<int>(k), n);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  StreamBuffers<Scalar> buffers(n);
  const int repeats = std::clamp(static_cast<int>(4e8 / stream_bytes<Scalar>(k, n)), 5, 200);
  const double seconds = best_seconds([&] { buffers.run(k); }, repeats);
  return cache[key] = stream_bytes<Scalar>(k, n) / seconds;
}

/// Eigen's GEMM rate in FLOP/s for C = A·B with A r×k and B k×c (2rkc FLOP), best of several runs.
template <class Scalar>
double gemm_rate(Eigen::Index rows, Eigen::Index inner, Eigen::Index cols) {
  static std::map<std::tuple<Eigen::Index, Eigen::Index, Eigen::Index>, double> cache;
  const auto key = std::make_tuple(rows, inner, cols);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Mat<Scalar> a = random_matrix<Scalar>(rows, inner, 4);
  const Mat<Scalar> b = random_matrix<Scalar>(inner, cols, 5);
  Mat<Scalar> c(rows, cols);
  const double flops = 2.0 * double(rows) * double(inner) * double(cols);
  const int repeats = std::clamp(static_cast<int>(2e10 / flops), 3, 50);
  const double seconds = best_seconds(
      [&] {
        c.noalias() = a * b;
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
      },
      repeats);
  return cache[key] = flops / seconds;
}

/// The reference GEMM rate every set-up is compared with: a square n = 1024 product.
template <class Scalar>
double square_gemm_rate() {
  return gemm_rate<Scalar>(1024, 1024, 1024);
}

// ---- the ceilings as benchmarks of their own, so the table can show them beside the routines ----

template <class Scalar>
void BM_ceiling_stream(benchmark::State& state, StreamKernel k) {
  const auto n = static_cast<std::size_t>(state.range(0));
  StreamBuffers<Scalar> buffers(n);
  for (auto _ : state) buffers.run(k);
  const double bytes = stream_bytes<Scalar>(k, n);
  state.counters["bytes_per_s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string("ceiling: stream ") + to_string(k));
}

template <class Scalar>
void BM_ceiling_gemm(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), inner = state.range(1), cols = state.range(2);
  const Mat<Scalar> a = random_matrix<Scalar>(rows, inner, 4);
  const Mat<Scalar> b = random_matrix<Scalar>(inner, cols, 5);
  Mat<Scalar> c(rows, cols);
  for (auto _ : state) {
    c.noalias() = a * b;
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

/// Sets `name` = ideal_seconds / measured seconds per iteration (1.0 means at the ceiling).
inline void set_fraction(benchmark::State& state, const char* name, double ideal_seconds_per_iteration,
                         double loop_seconds) {
  state.counters[name] =
      benchmark::Counter(ideal_seconds_per_iteration * static_cast<double>(state.iterations()) / loop_seconds);
}

}  // namespace fisher_unlearn::bench
