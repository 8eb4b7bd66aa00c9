// GPU benchmarks of fisher_unlearn::cuda. Before the benchmarks run, the binary measures its own
// ceilings on the same device: device-to-device copy bandwidth (bytes read + written per second) and
// the cuBLAS SGEMM / DGEMM rate on 8192³ (4096³ for double) random matrices. Every row reports its
// achieved rate and that rate as a fraction of the matching ceiling:
//   memory-bound rows (accumulate_squares, apply_diagonal_power, woodbury_inverse_product):
//       GB/s counting each input read once and each output written once, and frac_copy_bw;
//   matrix rows (gram_matrix, accumulate_block_outer_products):
//       TFLOP/s counting 2·m²·d (Gram) or 2·b·m·d (blocks) flops, and frac_gemm.
// Each row's label is the key torch_peer.py uses for the same operation on the same sizes.
// Times are CUDA-event times of one call (UseManualTime); run with --benchmark_repetitions to get medians.
#include "fisher_unlearn/cuda/device_buffer.hpp"
#include "fisher_unlearn/cuda/routines.hpp"

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace fc = fisher_unlearn::cuda;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "bench_cuda: %s failed: %s\n", what, cudaGetErrorString(status));
    std::exit(2);
  }
}

// Times one call with CUDA events on the default stream, in seconds.
template <class Call>
double time_once(Call&& call) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  check(cudaEventRecord(start), "cudaEventRecord");
  call();
  check(cudaEventRecord(stop), "cudaEventRecord");
  check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms * 1e-3;
}

template <class Call>
double median_time(int repeats, Call&& call) {
  call();  // warm-up: module load, handle creation, cuBLAS heuristics
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) t.push_back(time_once(call));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// N(0,1) data generated on the device by the library's own Philox pass: step = 1·(0+1)^{-1/4}·ε.
template <class Scalar>
void fill_normal(fc::DeviceBuffer<Scalar>& buffer, std::uint64_t seed) {
  fc::DeviceBuffer<Scalar> zeros(buffer.size());
  zeros.set_zero();
  fc::DiagonalStep step;
  step.scale = 0.0;
  step.damping = 1.0;
  step.noise_std = 1.0;
  step.seed = seed;
  fc::apply_diagonal_power<Scalar>(zeros.data(), nullptr, buffer.size(), step, buffer.data(), nullptr, nullptr);
  fc::device_synchronize();
}

struct Ceilings {
  double copy_bytes_per_s = 0;
  double sgemm_flops_per_s = 0;
  double dgemm_flops_per_s = 0;
};
Ceilings g_ceiling;

Ceilings measure_ceilings() {
  Ceilings c;
  {
    const std::size_t n = std::size_t(1) << 28;  // 1 GiB of float each way
    fc::DeviceBuffer<float> a(n), b(n);
    fill_normal(a, 1);
    const double t = median_time(20, [&] {
      check(cudaMemcpyAsync(b.data(), a.data(), a.bytes(), cudaMemcpyDeviceToDevice), "copy");
    });
    c.copy_bytes_per_s = 2.0 * static_cast<double>(a.bytes()) / t;
  }
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) std::exit(2);
  {
    const int n = 8192;
    fc::DeviceBuffer<float> a(std::size_t(n) * n), b(std::size_t(n) * n), out(std::size_t(n) * n);
    fill_normal(a, 2);
    fill_normal(b, 3);
    const float one = 1, zero = 0;
    const double t = median_time(10, [&] {
      cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.data(), n, b.data(), n, &zero, out.data(), n);
    });
    c.sgemm_flops_per_s = 2.0 * n * double(n) * n / t;
  }
  {
    const int n = 4096;
    fc::DeviceBuffer<double> a(std::size_t(n) * n), b(std::size_t(n) * n), out(std::size_t(n) * n);
    fill_normal(a, 4);
    fill_normal(b, 5);
    const double one = 1, zero = 0;
    const double t = median_time(10, [&] {
      cublasDgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.data(), n, b.data(), n, &zero, out.data(), n);
    });
    c.dgemm_flops_per_s = 2.0 * n * double(n) * n / t;
  }
  cublasDestroy(handle);
  return c;
}

template <class Scalar>
const char* type_name() {
  return sizeof(Scalar) == 4 ? "float" : "double";
}

template <class Scalar>
double gemm_ceiling() {
  return sizeof(Scalar) == 4 ? g_ceiling.sgemm_flops_per_s : g_ceiling.dgemm_flops_per_s;
}

void report_bandwidth(benchmark::State& state, double bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["copy_GB/s"] = g_ceiling.copy_bytes_per_s * 1e-9;
}

// ---- ceilings as rows, so the log shows them beside the routines -----------------------------------
void copy_ceiling(benchmark::State& state) {
  const std::size_t n = std::size_t(1) << 28;
  fc::DeviceBuffer<float> a(n), b(n);
  fill_normal(a, 1);
  for (auto _ : state)
    state.SetIterationTime(time_once([&] {
      check(cudaMemcpyAsync(b.data(), a.data(), a.bytes(), cudaMemcpyDeviceToDevice), "copy");
    }));
  report_bandwidth(state, 2.0 * static_cast<double>(a.bytes()));
  state.SetLabel("copy");
}

// ---- 1. diagonal accumulation -----------------------------------------------------------------
template <class Scalar>
void accumulate_squares(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto m = static_cast<std::size_t>(state.range(1));
  fc::DeviceBuffer<Scalar> g(d * m), diag(d);
  fill_normal(g, 10);
  diag.set_zero();
  for (auto _ : state)
    state.SetIterationTime(time_once([&] { fc::accumulate_squares<Scalar>(g.data(), d, m, Scalar(0.5), diag.data(), nullptr); }));
  const double bytes = static_cast<double>(sizeof(Scalar)) * (static_cast<double>(d) * m + 2.0 * d);
  report_bandwidth(state, bytes);
  state.counters["frac_copy_bw"] =
      benchmark::Counter(bytes / g_ceiling.copy_bytes_per_s, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string("accumulate_squares/") + type_name<Scalar>() + "/d=" + std::to_string(d) +
                 "/m=" + std::to_string(m));
}

// ---- 3. fused damped power / noise / update ---------------------------------------------------
// range(1): 0 = out = F⁻¹v; 1 = + noise; 2 = + noise, θ += step (no out); 3 = general power 0.3
template <class Scalar>
void apply_diagonal_power(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const int variant = static_cast<int>(state.range(1));
  fc::DeviceBuffer<Scalar> diag(d), v(d), out(d), theta(d);
  fill_normal(v, 20);
  fill_normal(theta, 21);
  diag.set_zero();
  fc::accumulate_squares<Scalar>(v.data(), d, 1, Scalar(1), diag.data(), nullptr);  // diag = v² ≥ 0
  fc::DiagonalStep step;
  step.power = variant == 3 ? 0.3 : -1.0;
  step.scale = -0.1;
  step.diagonal_scale = 0.5;
  step.damping = 0.01;
  step.noise_std = (variant == 1 || variant == 2) ? 1e-3 : 0.0;
  step.seed = 7;
  Scalar* out_ptr = variant == 2 ? nullptr : out.data();
  Scalar* theta_ptr = variant == 2 ? theta.data() : nullptr;
  std::uint64_t counter = 0;
  for (auto _ : state) {
    step.noise_counter = counter++;
    state.SetIterationTime(time_once(
        [&] { fc::apply_diagonal_power<Scalar>(diag.data(), v.data(), d, step, out_ptr, theta_ptr, nullptr); }));
  }
  // diag and v read, out written; the θ variant reads and writes θ instead of writing out.
  const double bytes = static_cast<double>(sizeof(Scalar)) * d * (variant == 2 ? 4.0 : 3.0);
  report_bandwidth(state, bytes);
  state.counters["frac_copy_bw"] =
      benchmark::Counter(bytes / g_ceiling.copy_bytes_per_s, benchmark::Counter::kIsIterationInvariantRate);
  static const char* names[] = {"inverse", "inverse_noise", "inverse_noise_theta", "power0.3"};
  state.SetLabel(std::string("apply_diagonal_power/") + type_name<Scalar>() + "/" + names[variant] +
                 "/d=" + std::to_string(d));
}

// ---- 2. Gram matrix and per-block outer products ---------------------------------------------
template <class Scalar>
void gram_matrix(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto m = static_cast<std::size_t>(state.range(1));
  const auto algorithm = state.range(2) == 0 ? fc::GramAlgorithm::gemm : fc::GramAlgorithm::syrk;
  fc::Context context;
  fc::DeviceBuffer<Scalar> g(d * m), gram(m * m);
  fill_normal(g, 30);
  for (auto _ : state)
    state.SetIterationTime(time_once(
        [&] { fc::gram_matrix<Scalar>(context, g.data(), d, m, Scalar(1), Scalar(0), gram.data(), algorithm); }));
  const double flops = 2.0 * static_cast<double>(m) * m * d;
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["frac_gemm"] =
      benchmark::Counter(flops / gemm_ceiling<Scalar>(), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["gemm_TFLOP/s"] = gemm_ceiling<Scalar>() * 1e-12;
  state.SetLabel(std::string("gram_matrix/") + type_name<Scalar>() + (state.range(2) == 0 ? "/gemm" : "/syrk") +
                 "/d=" + std::to_string(d) + "/m=" + std::to_string(m));
}

template <class Scalar>
void block_outer_products(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto b = static_cast<std::size_t>(state.range(1));
  const auto m = static_cast<std::size_t>(state.range(2));
  fc::Context context;
  fc::DeviceBuffer<Scalar> g(d * m), blocks(fc::block_count(d, b) * b * b);
  fill_normal(g, 40);
  blocks.set_zero();
  for (auto _ : state)
    state.SetIterationTime(time_once(
        [&] { fc::accumulate_block_outer_products<Scalar>(context, g.data(), d, m, b, Scalar(1), blocks.data()); }));
  const double flops = 2.0 * static_cast<double>(b) * m * d;
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["frac_gemm"] =
      benchmark::Counter(flops / gemm_ceiling<Scalar>(), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string("block_outer_products/") + type_name<Scalar>() + "/d=" + std::to_string(d) +
                 "/b=" + std::to_string(b) + "/m=" + std::to_string(m));
}

// ---- 4. Woodbury inverse product ---------------------------------------------------------------
template <class Scalar>
void woodbury_inverse_product(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto m = static_cast<std::size_t>(state.range(1));
  fc::Context context;
  fc::DeviceBuffer<Scalar> g(d * m), gram(m * m), factor(m * m), v(d), out(d), work(m);
  fill_normal(g, 50);
  fill_normal(v, 51);
  fc::gram_matrix<Scalar>(context, g.data(), d, m, Scalar(1), Scalar(0), gram.data());
  fc::cholesky_factor<Scalar>(context, gram.data(), m, static_cast<Scalar>(m * 1.0), factor.data());
  for (auto _ : state)
    state.SetIterationTime(time_once([&] {
      fc::woodbury_inverse_product<Scalar>(context, g.data(), d, m, factor.data(), Scalar(1), v.data(), out.data(),
                                           work.data());
    }));
  // Two passes over G (GEMV with Gᵀ, then with G), v read twice, out written (and read by GEMV's beta).
  const double bytes = static_cast<double>(sizeof(Scalar)) * (2.0 * static_cast<double>(d) * m + 4.0 * d);
  report_bandwidth(state, bytes);
  state.counters["frac_copy_bw"] =
      benchmark::Counter(bytes / g_ceiling.copy_bytes_per_s, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string("woodbury_inverse_product/") + type_name<Scalar>() + "/d=" + std::to_string(d) +
                 "/m=" + std::to_string(m));
}

// The sizes below are the ones torch_peer.py uses (keep them in step).
void register_all() {
  auto setup = [](benchmark::internal::Benchmark* b) { b->UseManualTime()->Unit(benchmark::kMillisecond); };
  setup(benchmark::RegisterBenchmark("copy_ceiling", copy_ceiling));
  for (const auto& [d, m] : std::vector<std::pair<int64_t, int64_t>>{{10'000'000, 64}, {1'000'000, 1024}, {10'000'000, 1}}) {
    setup(benchmark::RegisterBenchmark("accumulate_squares<float>", accumulate_squares<float>)->Args({d, m}));
    setup(benchmark::RegisterBenchmark("accumulate_squares<double>", accumulate_squares<double>)->Args({d, m}));
  }
  for (int variant = 0; variant < 4; ++variant) {
    setup(benchmark::RegisterBenchmark("apply_diagonal_power<float>", apply_diagonal_power<float>)
              ->Args({100'000'000, variant}));
    setup(benchmark::RegisterBenchmark("apply_diagonal_power<double>", apply_diagonal_power<double>)
              ->Args({50'000'000, variant}));
  }
  for (int algorithm = 0; algorithm < 2; ++algorithm) {
    setup(benchmark::RegisterBenchmark("gram_matrix<float>", gram_matrix<float>)->Args({1 << 20, 1024, algorithm}));
    setup(benchmark::RegisterBenchmark("gram_matrix<float>", gram_matrix<float>)->Args({1 << 22, 256, algorithm}));
    setup(benchmark::RegisterBenchmark("gram_matrix<double>", gram_matrix<double>)->Args({1 << 19, 1024, algorithm}));
  }
  setup(benchmark::RegisterBenchmark("block_outer_products<float>", block_outer_products<float>)
            ->Args({1 << 22, 256, 256}));
  setup(benchmark::RegisterBenchmark("block_outer_products<double>", block_outer_products<double>)
            ->Args({1 << 21, 256, 256}));
  setup(benchmark::RegisterBenchmark("woodbury_inverse_product<float>", woodbury_inverse_product<float>)
            ->Args({1 << 22, 256}));
  setup(benchmark::RegisterBenchmark("woodbury_inverse_product<double>", woodbury_inverse_product<double>)
            ->Args({1 << 21, 256}));
}

}  // namespace

int main(int argc, char** argv) {
  if (!fc::device_available()) {
    std::printf("bench_cuda: no usable CUDA device (%s); nothing to measure\n",
                fc::device_unavailable_reason().c_str());
    return 77;
  }
  benchmark::Initialize(&argc, argv);
  const fc::DeviceInfo info = fc::device_info();
  g_ceiling = measure_ceilings();
  std::printf("device: %s (sm_%d%d, %d SMs, %.1f GiB)\n", info.name.c_str(), info.compute_major, info.compute_minor,
              info.multiprocessors, static_cast<double>(info.global_memory_bytes) / (1 << 30));
  std::printf("ceilings measured in this run: copy %.1f GB/s (read+write), SGEMM %.2f TFLOP/s, DGEMM %.2f TFLOP/s\n",
              g_ceiling.copy_bytes_per_s * 1e-9, g_ceiling.sgemm_flops_per_s * 1e-12,
              g_ceiling.dgemm_flops_per_s * 1e-12);
  benchmark::AddCustomContext("device", info.name);
  benchmark::AddCustomContext("copy_GBps", std::to_string(g_ceiling.copy_bytes_per_s * 1e-9));
  benchmark::AddCustomContext("sgemm_TFLOPs", std::to_string(g_ceiling.sgemm_flops_per_s * 1e-12));
  benchmark::AddCustomContext("dgemm_TFLOPs", std::to_string(g_ceiling.dgemm_flops_per_s * 1e-12));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
