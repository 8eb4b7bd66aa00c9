// Fisher estimators against the machine's ceilings, measured in this binary:
//   DiagonalFisher accumulation (Σ g², O(md)) and F^p v (O(d)) vs a streaming pass over the same bytes;
//   WoodburyFisher set-up (Gram GᵀG, 2m²d FLOP, + O(m³)) vs the Eigen GEMM rate; its products
//   (two passes over G, O(md) bytes) vs streaming reads, with SetComplexityN over d and over m;
//   a dense d×d solve (form F, Cholesky, solve: O(d²m + d³)) as the naive baseline of the Woodbury solve;
//   the symmetric eigendecomposition of finalize (K-FAC factors, the Woodbury Gram) vs Eigen's QR solver.
// Counters: bytes_per_s / flop_per_s, and of_ceiling / of_gemm = achieved rate ÷ ceiling rate, the ceiling
// measured at the routine's own thread count ("…/threads2" rows run the estimators with set_num_threads(2)).
#include "ceilings.hpp"
#include "export.hpp"

#include <fisher_unlearn/fisher/diagonal.hpp>
#include <fisher_unlearn/detail/fisher_kernels.hpp>
#include <fisher_unlearn/detail/symmetric_eigen.hpp>
#include <fisher_unlearn/fisher/woodbury.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <iostream>
#include <map>
#include <utility>
#include <string>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;

namespace {

constexpr double kDamping = 1e-2;
// Ceiling arrays of 128 MiB each, whatever Scalar is: 4× this machine's 32 MiB L3. (Before issue 14 they
// were 10⁷ elements, so the float ceiling's 40 MB arrays were partly served from L3 and its best-of
// bandwidth overstated DRAM's, understating every float row.)
template <class Scalar>
constexpr std::size_t kStreamN = (std::size_t(128) << 20) / sizeof(Scalar);

// ---- ceilings --------------------------------------------------------------------------------------


// ---- DiagonalFisher ------------------------------------------------------------------------------

// Accumulation of m gradients: reads G (d·m Scalars) once and the double accumulator once in, once out.
// The ceiling is a streaming pass over those same bytes: G at the read bandwidth, the accumulator at
// the copy bandwidth.
template <class Scalar>
void BM_diagonal_accumulate(benchmark::State& state, std::size_t threads) {
  const auto d = state.range(0), m = state.range(1);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 11);
  fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
  fisher.set_num_threads(threads);
  fisher.add_gradients(g);  // the spare accumulator is allocated (and page-faulted) once, outside the loop
  const LoopClock clock;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    fisher.add_gradients(g);
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double loop_seconds = clock.seconds();
  const double g_bytes = double(d) * double(m) * sizeof(Scalar);
  const double acc_bytes = 2.0 * double(d) * sizeof(double);
  state.counters["bytes_per_s"] =
      benchmark::Counter(g_bytes + acc_bytes, benchmark::Counter::kIsIterationInvariantRate);
  const double ideal_wall = g_bytes / stream_bandwidth<Scalar>(StreamKernel::read, kStreamN<Scalar>, threads) +
                            acc_bytes / stream_bandwidth<Scalar>(StreamKernel::copy, kStreamN<Scalar>, threads);
  const double ideal_cpu = g_bytes / stream_bandwidth_cpu<Scalar>(StreamKernel::read, kStreamN<Scalar>, threads) +
                           acc_bytes / stream_bandwidth_cpu<Scalar>(StreamKernel::copy, kStreamN<Scalar>, threads);
  set_fractions(state, "of_ceiling", ideal_wall, ideal_cpu, loop_seconds, timer);
  state.SetLabel("ceiling: stream read (G) + copy (accumulator)");
}

// The compute side of a roofline: CPU seconds per entry of f(d_small) run on data that stays in L2
// (best of many calls), so memory bandwidth is not what limits it. A row whose compute time exceeds
// its streaming time is compute-bound, and its ceiling is the compute time, not the stream's.
template <class F>
double in_cache_cpu_seconds(F&& f, int calls_per_timing) {
  return best_cpu_seconds(
             [&] {
               for (int c = 0; c < calls_per_timing; ++c) f();
             },
             20) /
         calls_per_timing;
}

// out = F^p v: reads the diagonal (d doubles) and v, writes out — three streams, as a STREAM triad.
template <class Scalar>
double diagonal_apply_compute_cpu_per_entry(double power) {
  static std::map<double, double> cache;
  if (auto it = cache.find(power); it != cache.end()) return it->second;
  const Eigen::Index d = 16384;  // diagonal, v and out: 256 KiB in double, L2-resident
  fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
  fisher.add_gradients(random_matrix<Scalar>(d, 2, 12));
  fisher.finalize();
  const Vec<Scalar> v = random_vector<Scalar>(d, 13);
  Vec<Scalar> out(d);
  return cache[power] = in_cache_cpu_seconds(
                            [&] {
                              fisher.apply_power(power, v, out);
                              benchmark::ClobberMemory();
                            },
                            200) /
                        double(d);
}

template <class Scalar>
void BM_diagonal_apply(benchmark::State& state, double power, std::size_t threads) {
  const auto d = state.range(0);
  fu::DiagonalFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
  fisher.set_num_threads(threads);
  fisher.add_gradients(random_matrix<Scalar>(d, 2, 12));
  fisher.finalize();
  const Vec<Scalar> v = random_vector<Scalar>(d, 13);
  Vec<Scalar> out(d);
  const LoopClock clock;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    fisher.apply_power(power, v, out);
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double loop_seconds = clock.seconds();
  const double bytes = double(d) * (sizeof(double) + 2 * sizeof(Scalar));
  state.counters["bytes_per_s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  const double ideal_wall = bytes / stream_bandwidth<Scalar>(StreamKernel::triad, kStreamN<Scalar>, threads);
  const double ideal_cpu = bytes / stream_bandwidth_cpu<Scalar>(StreamKernel::triad, kStreamN<Scalar>, threads);
  set_fractions(state, "of_ceiling", ideal_wall, ideal_cpu, loop_seconds, timer);
  // Roofline: the same call's CPU time with the data in L2 (1 thread; CPU seconds add up over threads).
  const double compute_cpu = diagonal_apply_compute_cpu_per_entry<Scalar>(power) * double(d);
  state.counters["compute_over_stream_cpu"] = compute_cpu / ideal_cpu;
  state.counters["of_roofline_cpu"] = std::max(ideal_cpu, compute_cpu) / timer.best_cpu();
  state.SetLabel("ceiling: stream triad");
}

// ---- WoodburyFisher set-up -----------------------------------------------------------------------

// add_gradients (check and copy G, Gram GᵀG in double: the lower triangle, m(m+1)d FLOP) + finalize
// (m×m eigendecomposition and Cholesky, O(m³)). FLOP counted: m(m+1)d only (what the symmetric rank
// update does; a full GEMM would do 2m²d), so of_gemm is a lower bound on the Gram's efficiency.
template <class Scalar>
void BM_woodbury_setup(benchmark::State& state, std::size_t threads) {
  const auto d = state.range(0), m = state.range(1);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 21);
  const LoopClock clock;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
    fisher.set_num_threads(threads);
    fisher.add_gradients(g);
    fisher.finalize();
    benchmark::DoNotOptimize(fisher);
    timer.stop();
  }
  const double loop_seconds = clock.seconds();
  const double flops = double(m) * double(m + 1) * double(d);
  state.counters["flop_per_s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  // The Gram is computed in double whatever Scalar is, so the double GEMM rate is its ceiling.
  set_fractions(state, "of_gemm", flops / square_gemm_rate<double>(threads),
                flops / gemm_rate_cpu<double>(1024, 1024, 1024, threads), loop_seconds, timer);
  // Where the time goes (CPU seconds, best of 5, same thread count): the Gram kernel alone, and the
  // Gram-shaped GEMM (m×d times d×m, 2m²d FLOP) for comparison.
  const double gram_cpu = best_cpu_seconds(
      [&] { benchmark::DoNotOptimize(fu::detail::gram_in_double(g, threads).data()); }, 5);
  state.counters["gram_share_cpu"] = gram_cpu / timer.best_cpu();
  state.counters["gram_of_gemm_cpu"] = flops / gemm_rate_cpu<double>(1024, 1024, 1024, threads) / gram_cpu;
  state.SetLabel("ceiling: Eigen double GEMM 1024^3");
  state.SetComplexityN(state.range(2) == 0 ? d : m);
}

// The same set-up when the caller gives its gradient matrix away (adopt_gradients: no d×m copy into the
// estimator, no page faults on fresh storage). Each iteration copies G outside the timed region (paused);
// timed: the check, the Gram and finalize. The mean fraction uses the timed intervals only.
template <class Scalar>
void BM_woodbury_setup_adopt(benchmark::State& state, std::size_t threads) {
  const auto d = state.range(0), m = state.range(1);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 21);
  IterationTimer timer;
  double timed_wall = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Mat<Scalar> given = g;
    state.ResumeTiming();
    const auto w0 = std::chrono::steady_clock::now();
    timer.start();
    fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
    fisher.set_num_threads(threads);
    fisher.adopt_gradients(std::move(given));
    fisher.finalize();
    benchmark::DoNotOptimize(fisher);
    timer.stop();
    timed_wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  }
  const double flops = double(m) * double(m + 1) * double(d);
  state.counters["flop_per_s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  set_fractions(state, "of_gemm", flops / square_gemm_rate<double>(threads),
                flops / gemm_rate_cpu<double>(1024, 1024, 1024, threads), timed_wall, timer);
  const double gram_cpu = best_cpu_seconds(
      [&] { benchmark::DoNotOptimize(fu::detail::gram_in_double(g, threads).data()); }, 5);
  state.counters["gram_share_cpu"] = gram_cpu / timer.best_cpu();
  state.counters["gram_of_gemm_cpu"] = flops / gemm_rate_cpu<double>(1024, 1024, 1024, threads) / gram_cpu;
  state.SetLabel("ceiling: Eigen double GEMM 1024^3; G adopted, not copied");
}

// ---- WoodburyFisher products ---------------------------------------------------------------------

// F^p v reads G twice (Gᵀv, then G·y), v twice, writes out: 2md + 3d Scalars. Ceiling: streaming reads.
template <class Scalar>
double woodbury_product_compute_cpu_per_entry(double power, Eigen::Index m) {
  static std::map<std::pair<double, Eigen::Index>, double> cache;
  const auto key = std::make_pair(power, m);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Eigen::Index d = 2048;  // G: 512 KiB at m = 64 in double, L2-resident
  fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
  fisher.add_gradients(random_matrix<Scalar>(d, m, 31));
  fisher.finalize();
  const Vec<Scalar> v = random_vector<Scalar>(d, 32);
  Vec<Scalar> out(d);
  return cache[key] = in_cache_cpu_seconds(
                          [&] {
                            fisher.apply_power(power, v, out);
                            benchmark::ClobberMemory();
                          },
                          50) /
                      double(d * m);
}

template <class Scalar>
void BM_woodbury_product(benchmark::State& state, double power, std::size_t threads) {
  const auto d = state.range(0), m = state.range(1);
  fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
  fisher.set_num_threads(threads);
  fisher.add_gradients(random_matrix<Scalar>(d, m, 31));
  fisher.finalize();
  const Vec<Scalar> v = random_vector<Scalar>(d, 32);
  Vec<Scalar> out(d);
  const LoopClock clock;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    fisher.apply_power(power, v, out);
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double loop_seconds = clock.seconds();
  const double g_bytes = 2.0 * double(m) * double(d) * sizeof(Scalar);
  const double vector_bytes = 3.0 * double(d) * sizeof(Scalar);
  state.counters["bytes_per_s"] =
      benchmark::Counter(g_bytes + vector_bytes, benchmark::Counter::kIsIterationInvariantRate);
  const double ideal_wall = g_bytes / stream_bandwidth<Scalar>(StreamKernel::read, kStreamN<Scalar>, threads) +
                            vector_bytes / stream_bandwidth<Scalar>(StreamKernel::triad, kStreamN<Scalar>, threads);
  const double ideal_cpu = g_bytes / stream_bandwidth_cpu<Scalar>(StreamKernel::read, kStreamN<Scalar>, threads) +
                           vector_bytes / stream_bandwidth_cpu<Scalar>(StreamKernel::triad, kStreamN<Scalar>, threads);
  set_fractions(state, "of_ceiling", ideal_wall, ideal_cpu, loop_seconds, timer);
  if (state.range(2) == 1 && d >= (1 << 20)) {  // the goal rows only (the roofline costs a second or so)
    const double compute_cpu = woodbury_product_compute_cpu_per_entry<Scalar>(power, m) * double(d * m);
    state.counters["compute_over_stream_cpu"] = compute_cpu / ideal_cpu;
    state.counters["of_roofline_cpu"] = std::max(ideal_cpu, compute_cpu) / timer.best_cpu();
  }
  state.SetLabel("ceiling: stream read (G, twice) + triad (v, out)");
  state.SetComplexityN(state.range(2) == 0 ? d : m);
}

// ---- naive baseline: dense d×d -------------------------------------------------------------------

// Form F = λI + (1/m)GGᵀ (d²m FLOP), Cholesky (d³/3), solve (2d²): what one would write without the
// low-rank structure. Compared with BM_woodbury_setup_solve at the same (d, m).
template <class Scalar>
void BM_dense_solve_naive(benchmark::State& state) {
  const auto d = state.range(0), m = state.range(1);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 41);
  const Vec<Scalar> v = random_vector<Scalar>(d, 42);
  Vec<Scalar> out(d);
  for (auto _ : state) {
    Mat<Scalar> f = Mat<Scalar>::Identity(d, d) * Scalar(kDamping);
    f.template selfadjointView<Eigen::Lower>().rankUpdate(g, Scalar(1) / Scalar(m));
    Eigen::LLT<Mat<Scalar>> llt(f);
    out = llt.solve(v);
    benchmark::DoNotOptimize(out.data());
  }
  // The two answers must agree, or the comparison means nothing.
  fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
  fisher.add_gradients(g);
  fisher.finalize();
  Vec<Scalar> woodbury(d);
  fisher.apply_power(-1.0, v, woodbury);
  state.counters["rel_err_vs_woodbury"] = benchmark::Counter(double((woodbury - out).norm() / out.norm()));
  state.SetLabel("naive: dense form + Cholesky + solve");
}
template <class Scalar>
void BM_woodbury_setup_solve(benchmark::State& state) {
  const auto d = state.range(0), m = state.range(1);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 41);
  const Vec<Scalar> v = random_vector<Scalar>(d, 42);
  Vec<Scalar> out(d);
  for (auto _ : state) {
    fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(kDamping));
    fisher.add_gradients(g);
    fisher.finalize();
    fisher.apply_power(-1.0, v, out);
    benchmark::DoNotOptimize(out.data());
  }
}

// The symmetric eigendecomposition the estimators finalize with (detail/symmetric_eigen.hpp: Householder
// tridiagonalization, divide and conquer, back-transformation) against Eigen's SelfAdjointEigenSolver
// (tridiagonal QR with the rotations accumulated into the vectors) on the same matrix, in the same
// function: best of 5 each after the timed loop (counter vs_eigen_qr = Eigen's time ÷ ours). Matrices:
// kind 0 a full-rank Wishart XXᵀ/(4n) (no deflation), kind 1 XXᵀ with X n×(n/4) (rank n/4: most of the
// spectrum deflates, as in K-FAC factors of wide layers fed few directions). Sizes: the demo's K-FAC
// factors (65, 192, 257), the Woodbury Gram at m = 256, 512, and SmolLM2's MLP factors (1536).
void BM_symmetric_eigen(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const bool low_rank = state.range(1) == 1;
  const Mat<double> x = random_matrix<double>(n, low_rank ? std::max<Eigen::Index>(1, n / 4) : 4 * n, 77);
  const Mat<double> a = x * x.transpose() / static_cast<double>(x.cols());
  Eigen::VectorXd values;
  Mat<double> vectors;
  for (auto _ : state) {
    if (!fu::detail::symmetric_eigen(a, values, vectors)) state.SkipWithError("symmetric_eigen failed");
    benchmark::DoNotOptimize(vectors.data());
  }
  const auto best_ms = [](auto&& f) {
    double best = 1e300;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double ours = best_ms([&] { fu::detail::symmetric_eigen(a, values, vectors); });
  const double qr = best_ms([&] {
    Eigen::SelfAdjointEigenSolver<Mat<double>> solver(a);
    benchmark::DoNotOptimize(solver.eigenvectors().data());
  });
  state.counters["ours_best_ms"] = ours;
  state.counters["eigen_qr_best_ms"] = qr;
  state.counters["vs_eigen_qr"] = qr / ours;
  state.counters["residual"] = (a * vectors - vectors * values.asDiagonal()).norm() / a.norm();
  state.counters["orthogonality"] = (vectors.transpose() * vectors - Mat<double>::Identity(n, n)).norm();
  state.SetLabel(std::string(low_rank ? "rank n/4" : "full rank") + "; peer: Eigen SelfAdjointEigenSolver");
}

// The peer's inputs (bench/peers/torch_peer.py) at the sizes of the benchmarks it is compared with,
// and our answers for its agreement check. Gradients are written as rows: a d×m column-major matrix
// is an m×d array in C order.
template <class Scalar>
void export_diagonal(const std::filesystem::path& path) {
  const Eigen::Index d = 1 << 20, m = 8;
  ExportDirectory out(path);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 11);
  const Vec<Scalar> v = random_vector<Scalar>(d, 13);
  fu::DiagonalFisher<Scalar> fisher{std::size_t(d), Scalar(kDamping)};
  fisher.add_gradients(g);
  fisher.finalize();
  Vec<Scalar> result(d), quarter(d);
  fisher.apply_power(-1.0, v, result);
  fisher.apply_power(-0.25, v, quarter);
  const Vec<Scalar> diagonal = fisher.diagonal();
  out.value("damping", kDamping);
  out.array("gradients", g.data(), {std::size_t(m), std::size_t(d)});
  out.array("v", v.data(), {std::size_t(d)});
  out.array("ours_diagonal", diagonal.data(), {std::size_t(d)});
  out.array("ours_apply_inverse", result.data(), {std::size_t(d)});
  out.array("ours_apply_quarter", quarter.data(), {std::size_t(d)});
  out.finish();
}

template <class Scalar>
void export_woodbury(const std::filesystem::path& path) {
  const Eigen::Index d = 1 << 17, m = 64;
  ExportDirectory out(path);
  const Mat<Scalar> g = random_matrix<Scalar>(d, m, 21);
  const Vec<Scalar> v = random_vector<Scalar>(d, 32);
  fu::WoodburyFisher<Scalar> fisher{std::size_t(d), Scalar(kDamping)};
  fisher.add_gradients(g);
  fisher.finalize();
  Vec<Scalar> result(d);
  fisher.apply_power(-1.0, v, result);
  out.value("damping", kDamping);
  out.array("gradients", g.data(), {std::size_t(m), std::size_t(d)});
  out.array("v", v.data(), {std::size_t(d)});
  out.array("ours_inverse_product", result.data(), {std::size_t(d)});
  out.finish();
}

// The peer's inputs (bench/peers/torch_peer.py) at the sizes of the benchmarks it is compared with, in
// float and in double (the peer compares like with like), and our answers for its agreement check.
// Gradients are written as rows: a d×m column-major matrix is an m×d array in C order.
void export_for_peer(const std::string& dir) {
  const std::filesystem::path root(dir);
  export_diagonal<float>(root / "fisher_diagonal");
  export_diagonal<double>(root / "fisher_diagonal_double");
  export_woodbury<double>(root / "fisher_woodbury");
  export_woodbury<float>(root / "fisher_woodbury_float");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string export_dir = take_export_dir(argc, argv);
  if (!export_dir.empty()) {
    export_for_peer(export_dir);
    std::cerr << "exported the Fisher inputs and results to " << export_dir << "\n";
  }
  // Wall-clock time everywhere: the ceilings and the Python peers are wall-clock too.
  const auto reg = [](const std::string& name, auto&&... fn_and_args) {
    return benchmark::RegisterBenchmark(name.c_str(), fn_and_args...)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  // Every routine at 1 thread (the plain names) and at 2 threads ("…/threads2"), each beside its own
  // ceiling measured at that thread count.
  for (std::size_t t : {std::size_t(1), std::size_t(2)}) {
    const std::string sfx = t == 1 ? "" : "/threads" + std::to_string(t);
    for (StreamKernel k : {StreamKernel::read, StreamKernel::copy, StreamKernel::triad})
      reg(std::string("ceiling/stream_") + to_string(k) + sfx, BM_ceiling_stream<float>, k, t)->Arg(kStreamN<float>);
    reg("ceiling/gemm<double>" + sfx, BM_ceiling_gemm<double>, t)->Args({1024, 1024, 1024});
    reg("ceiling/gemm<float>" + sfx, BM_ceiling_gemm<float>, t)->Args({1024, 1024, 1024});
  }
  // The Gram's own shape (m×d times d×m, m = 64): what Eigen reaches on it, for reference.
  reg("ceiling/gemm_gram_shape<double>", BM_ceiling_gemm<double>, std::size_t(1))->Args({64, 1 << 17, 64});

  for (std::size_t t : {std::size_t(1), std::size_t(2)}) {
    const std::string sfx = t == 1 ? "" : "/threads" + std::to_string(t);
    reg("diagonal/accumulate<float>" + sfx, BM_diagonal_accumulate<float>, t)
        ->Args({10'000'000, 8})
        ->Args({1 << 20, 8});
    // d = 2²⁰: the PyTorch peer's size (float and double, like with like).
    reg("diagonal/accumulate<double>" + sfx, BM_diagonal_accumulate<double>, t)
        ->Args({10'000'000, 8})
        ->Args({1 << 20, 8});
    reg("diagonal/apply_inverse<float>" + sfx, BM_diagonal_apply<float>, -1.0, t)->Arg(10'000'000)->Arg(1 << 20);
    reg("diagonal/apply_inverse<double>" + sfx, BM_diagonal_apply<double>, -1.0, t)->Arg(10'000'000)->Arg(1 << 20);
    reg("diagonal/apply_quarter<float>" + sfx, BM_diagonal_apply<float>, -0.25, t)->Arg(10'000'000)->Arg(1 << 20);
    reg("diagonal/apply_quarter<double>" + sfx, BM_diagonal_apply<double>, -0.25, t)->Arg(10'000'000)->Arg(1 << 20);
  }

  // Set-up over m at d = 2^17 (O(m²d): oNSquared in m) and over d at m = 64 (O(d)).
  const std::size_t one = 1, two = 2;
  reg("woodbury/setup<double>/over_m", BM_woodbury_setup<double>, one)
      ->ArgsProduct({{1 << 17}, {16, 32, 64, 128, 256}, {1}})
      ->Complexity(benchmark::oNSquared);
  reg("woodbury/setup<double>/over_d", BM_woodbury_setup<double>, one)
      ->ArgsProduct({{1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 19}, {64}, {0}})
      ->Complexity(benchmark::oN);
  reg("woodbury/setup<float>", BM_woodbury_setup<float>, one)->Args({1 << 17, 64, 1});
  reg("woodbury/setup<double>/threads2", BM_woodbury_setup<double>, two)->Args({1 << 17, 64, 1})->Args({1 << 17, 256, 1});
  reg("woodbury/setup<float>/threads2", BM_woodbury_setup<float>, two)->Args({1 << 17, 64, 1});
  for (std::size_t t : {one, two}) {
    const std::string sfx = t == 1 ? "" : "/threads2";
    reg("woodbury/setup_adopt<double>" + sfx, BM_woodbury_setup_adopt<double>, t)->Args({1 << 17, 64})->Args({1 << 17, 256});
    reg("woodbury/setup_adopt<float>" + sfx, BM_woodbury_setup_adopt<float>, t)->Args({1 << 17, 64});
  }

  // Products out of cache (G = 256 MiB in float): the streaming-speed goal ...
  for (std::size_t t : {one, two}) {
    const std::string sfx = t == 1 ? "" : "/threads" + std::to_string(t);
    reg("woodbury/inverse_product<float>" + sfx, BM_woodbury_product<float>, -1.0, t)
        ->Args({1 << 20, 64, 1})
        ->Args({1 << 17, 64, 1});
    reg("woodbury/inverse_product<double>" + sfx, BM_woodbury_product<double>, -1.0, t)
        ->Args({1 << 20, 64, 1})
        ->Args({1 << 17, 64, 1});
    reg("woodbury/power_quarter<float>" + sfx, BM_woodbury_product<float>, -0.25, t)->Args({1 << 20, 64, 1});
  }
  // ... and O(md) per product: over d at m = 32, over m at d = 2^18.
  reg("woodbury/inverse_product<float>/over_d", BM_woodbury_product<float>, -1.0, one)
      ->ArgsProduct({{1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20}, {32}, {0}})
      ->Complexity(benchmark::oN);
  reg("woodbury/inverse_product<float>/over_m", BM_woodbury_product<float>, -1.0, one)
      ->ArgsProduct({{1 << 18}, {8, 16, 32, 64, 128}, {1}})
      ->Complexity(benchmark::oN);

  reg("dense/naive_solve<double>", BM_dense_solve_naive<double>)->Args({1024, 64})->Args({4096, 64});
  reg("woodbury/setup_and_solve<double>", BM_woodbury_setup_solve<double>)
      ->Args({1024, 64})
      ->Args({4096, 64});
  reg("eigen/symmetric<double>", BM_symmetric_eigen)
      ->Args({65, 0})->Args({192, 0})->Args({257, 0})->Args({257, 1})->Args({512, 0})->Args({512, 1})->Args({1536, 0});

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
