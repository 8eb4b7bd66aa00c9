// K-FAC / EK-FAC (fisher/kfac.hpp) against the machine's GEMM ceiling and against WoodburyFisher:
//   factor accumulation (the SYRKs Σ aaᵀ, Σ δδᵀ: n·(in(in+1) + out(out+1)) FLOP per layer for n positions)
//   fed by a model that hands precomputed activations (no forward/backward in the timing), vs the Eigen GEMM
//   rate at 1024³ and at the layer's own shape (in × n · n × in); EK-FAC's eigenvalue pass likewise;
//   F^p v of K-FAC / EK-FAC on the demo transformer (2 × 64, context 64, d = 120 576) vs the Woodbury
//   product with m = 256 gradients at the same d; the whole build from the demo model (forward + backward).
// Counters: flop_per_s, of_gemm (÷ the 1024³ rate), of_gemm_shape (÷ the same-shape GEMM rate), each in
// wall-clock time (as every bench/ binary) and again in process CPU time (of_gemm_cpu, ...): on a machine
// shared by many processes the wall-clock ratio of a short routine and a long ceiling run is dominated by
// preemption, while CPU time (one thread) compares the work itself.
#include "ceilings.hpp"

#include <fisher_unlearn/fisher/kfac.hpp>
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/models/transformer.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <ctime>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;

namespace {

double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// Eigen's GEMM rate in FLOP per CPU second (best of several runs, each at least 50 ms of CPU).
template <class Scalar>
double gemm_rate_cpu(Eigen::Index rows, Eigen::Index inner, Eigen::Index cols) {
  static std::map<std::tuple<Eigen::Index, Eigen::Index, Eigen::Index>, double> cache;
  const auto key = std::make_tuple(rows, inner, cols);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Mat<Scalar> a = random_matrix<Scalar>(rows, inner, 4);
  const Mat<Scalar> b = random_matrix<Scalar>(inner, cols, 5);
  Mat<Scalar> c(rows, cols);
  const double flops = 2.0 * double(rows) * double(inner) * double(cols);
  const int per_run = std::max(1, static_cast<int>(5e8 / flops));
  double best = 1e300;
  for (int r = 0; r < 6; ++r) {
    const double t0 = cpu_seconds();
    for (int i = 0; i < per_run; ++i) {
      c.noalias() = a * b;
      benchmark::DoNotOptimize(c.data());
      benchmark::ClobberMemory();
    }
    best = std::min(best, (cpu_seconds() - t0) / per_run);
  }
  return cache[key] = flops / best;
}

// Sets the wall-clock and CPU-time fractions of a ceiling (rate in FLOP/s) for `flops` per iteration.
void set_gemm_fractions(benchmark::State& state, const char* name, double flops, double wall_rate, double cpu_rate,
                        double loop_wall, double loop_cpu) {
  set_fraction(state, name, flops / wall_rate, loop_wall);
  set_fraction(state, (std::string(name) + "_cpu").c_str(), flops / cpu_rate, loop_cpu);
}

// A LinearLayerModel whose "forward + backward" hands stored matrices: square layers of width w with a
// bias, `positions` columns per call (one sample per `per_sample` columns). Times only the estimator.
template <class S>
struct StoredStatistics {
  using Scalar = S;
  using Sample = int;
  std::size_t width, layers;
  Eigen::Index positions, per_sample;
  std::vector<Mat<Scalar>> a, delta;
  std::vector<Eigen::Index> columns;
  std::vector<Scalar> theta;

  StoredStatistics(std::size_t w, std::size_t l, Eigen::Index n, Eigen::Index t)
      : width(w), layers(l), positions(n), per_sample(t), theta(l * (w * w + w), Scalar(0)) {
    for (std::size_t i = 0; i < l; ++i) {
      a.push_back(random_matrix<Scalar>(static_cast<Eigen::Index>(w), n, 100 + i));
      delta.push_back(random_matrix<Scalar>(static_cast<Eigen::Index>(w), n, 200 + i));
    }
    for (Eigen::Index c = 0; c <= n; c += t) columns.push_back(c);
  }
  std::size_t num_parameters() const { return theta.size(); }
  std::span<Scalar> parameters() { return theta; }
  std::span<const Scalar> parameters() const { return theta; }
  Scalar loss(const Sample&) const { return 0; }
  Scalar gradient(const Sample&, std::span<Scalar>) const { return 0; }
  std::vector<fu::LinearLayer> linear_layers() const {
    std::vector<fu::LinearLayer> out;
    for (std::size_t i = 0; i < layers; ++i)
      out.push_back({"layer" + std::to_string(i), width, width, i * (width * width + width),
                     fu::WeightOrder::column_major, true, i * (width * width + width) + width * width});
    return out;
  }
  void visit_linear_layers(std::span<const Sample> samples, fu::CurvatureTargets, std::mt19937_64&,
                           fu::LinearLayerVisitor<Scalar>& visitor) const {
    using View = typename fu::LinearLayerBatch<Scalar>::View;
    const auto w = static_cast<Eigen::Index>(width);
    for (std::size_t s = 0; s < samples.size(); ++s)
      for (std::size_t i = 0; i < layers; ++i)
        visitor.on_layer({i, s * static_cast<std::size_t>(columns.size() - 1), columns,
                          View(a[i].data(), w, positions, Eigen::OuterStride<>(w)),
                          View(delta[i].data(), w, positions, Eigen::OuterStride<>(w))});
  }
};

// Factor accumulation: per call `positions` columns into each of 4 layers of width w. Third argument 1
// ("cold"): before each call (untimed) a 64 MiB buffer is written, so the statistics and the factor sums
// come from memory, as in a model's pass, where a layer's activations were computed long before the
// backward pass hands them over and the sums were last touched one chunk earlier (issue 14: the first
// request's factor sums ran at 0.4–0.6 of the GEMM rate of their shapes, bench_unlearning
// first_request_parts).
template <class Scalar>
void BM_kfac_accumulate(benchmark::State& state) {
  const auto w = static_cast<std::size_t>(state.range(0));
  const Eigen::Index n = state.range(1);
  const bool cold = state.range(2) != 0;
  const StoredStatistics<Scalar> model(w, 4, n, 64);
  const std::vector<int> samples(1, 0);
  fu::KfacFisher<Scalar> fisher(model, Scalar(1e-3));
  fisher.accumulate(model, std::span<const int>(samples), fu::kfac_true_fisher());  // warm
  std::vector<float> evict(cold ? std::size_t(16) << 20 : 0);
  double loop_seconds = 0, loop_cpu = 0;
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      for (float& x : evict) x += 1.0f;
      benchmark::DoNotOptimize(evict.data());
      benchmark::ClobberMemory();
      state.ResumeTiming();
    }
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = cpu_seconds();
    fisher.accumulate(model, std::span<const int>(samples), fu::kfac_true_fisher());
    benchmark::ClobberMemory();
    loop_cpu += cpu_seconds() - cpu0;
    loop_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Useful FLOP: two SYRKs of n·w(w+1) (the lower triangle of X·Xᵀ) per layer, 4 layers.
  const double flops = 4.0 * 2.0 * double(n) * double(w) * (double(w) + 1);
  state.counters["flop_per_s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  const auto wi = static_cast<Eigen::Index>(w);
  set_gemm_fractions(state, "of_gemm", flops, square_gemm_rate<Scalar>(), gemm_rate_cpu<Scalar>(1024, 1024, 1024),
                     loop_seconds, loop_cpu);
  set_gemm_fractions(state, "of_gemm_shape", flops, gemm_rate<Scalar>(wi, n, wi), gemm_rate_cpu<Scalar>(wi, n, wi),
                     loop_seconds, loop_cpu);
  state.SetLabel(cold ? "caches evicted before each call; ceiling: Eigen GEMM 1024^3 / at the w×n·n×w shape (hot)"
                      : "ceiling: Eigen GEMM 1024^3 / at the w×n·n×w shape");
}

// EK-FAC eigenvalue pass: rotate every position (2n(in² + out²)), then per sample (T positions) one
// out×T·T×in product (2·out·in·n in all), squared into Λ.
template <class Scalar>
void BM_ekfac_eigenvalues(benchmark::State& state) {
  const auto w = static_cast<std::size_t>(state.range(0));
  const Eigen::Index n = state.range(1), t = state.range(2);
  const StoredStatistics<Scalar> model(w, 4, n, t);
  const std::vector<int> samples(1, 0);
  fu::EkfacFisher<Scalar> fisher(model, Scalar(1e-3));
  fisher.accumulate_factors(model, std::span<const int>(samples), fu::kfac_true_fisher());
  fisher.fit_eigenbasis();
  const LoopClock clock;
  const double cpu0 = cpu_seconds();
  for (auto _ : state) {
    fisher.accumulate_eigenvalues(model, std::span<const int>(samples), fu::kfac_true_fisher());
    benchmark::ClobberMemory();
  }
  const double loop_seconds = clock.seconds(), loop_cpu = cpu_seconds() - cpu0;
  const double in = double(w) + 1, out = double(w);
  const double flops = 4.0 * (2.0 * double(n) * (in * double(w) + out * out) + 2.0 * out * in * double(n));
  state.counters["flop_per_s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  set_gemm_fractions(state, "of_gemm", flops, square_gemm_rate<Scalar>(), gemm_rate_cpu<Scalar>(1024, 1024, 1024),
                     loop_seconds, loop_cpu);
  state.SetLabel("ceiling: Eigen GEMM 1024^3");
}

// ---- the demo transformer: F^p v of K-FAC / EK-FAC vs Woodbury, and the build ---------------------------

fu::models::TransformerConfig demo_config() {
  fu::models::TransformerConfig c;  // the demo: V = 256, context 64, 2 layers, width 64, 4 heads, ratio 4
  c.seed = 1;
  return c;
}

template <class Scalar>
std::vector<typename fu::models::Transformer<Scalar>::Sample> demo_windows(std::size_t m) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> token(0, 255);
  std::vector<typename fu::models::Transformer<Scalar>::Sample> out(m);
  for (auto& s : out) {
    s.tokens.resize(65);
    for (auto& t : s.tokens) t = token(rng);
  }
  return out;
}

// K-FAC (ekfac = 0) or EK-FAC (1) F^p v on the demo model: per layer four GEMMs of the [W b] block.
template <class Scalar>
void BM_kronecker_product_demo(benchmark::State& state, double power) {
  const bool ekfac = state.range(0) != 0;
  const fu::models::Transformer<Scalar> model(demo_config());
  const auto windows = demo_windows<Scalar>(16);
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  const Vec<Scalar> v = random_vector<Scalar>(d, 3);
  Vec<Scalar> out(d);
  auto run = [&](const auto& fisher) {
    for (auto _ : state) {
      fisher.apply_power(power, v, out);
      benchmark::ClobberMemory();
    }
  };
  double bytes = 0;
  if (ekfac) {
    const auto fisher = fu::make_ekfac_fisher(model, std::span(windows), Scalar(1e-3));
    bytes = double(fisher.memory_bytes());
    run(fisher);
  } else {
    const auto fisher = fu::make_kfac_fisher(model, std::span(windows), Scalar(1e-3));
    bytes = double(fisher.memory_bytes());
    run(fisher);
  }
  state.counters["d"] = double(d);
  state.counters["memory_MB"] = bytes / 1e6;
  state.SetLabel(ekfac ? "EK-FAC, demo transformer" : "K-FAC, demo transformer");
}

// The Woodbury product at the same d with m gradients (what FisherRemoval uses on the demo, m = 256).
template <class Scalar>
void BM_woodbury_product_demo(benchmark::State& state, double power) {
  const fu::models::Transformer<Scalar> model(demo_config());
  const auto d = static_cast<Eigen::Index>(model.num_parameters()), m = state.range(0);
  fu::WoodburyFisher<Scalar> fisher(static_cast<std::size_t>(d), Scalar(1e-3));
  fisher.add_gradients(random_matrix<Scalar>(d, m, 31));
  fisher.finalize();
  const Vec<Scalar> v = random_vector<Scalar>(d, 3);
  Vec<Scalar> out(d);
  for (auto _ : state) {
    fisher.apply_power(power, v, out);
    benchmark::ClobberMemory();
  }
  state.counters["d"] = double(d);
  state.counters["memory_MB"] = double(fisher.memory_bytes()) / 1e6;
  state.SetLabel("Woodbury, same d");
}

// The whole build from m demo windows: forward + backward per window, factors, eigendecompositions
// (and EK-FAC's second pass), vs collecting m per-sample gradients and finalizing a WoodburyFisher.
template <class Scalar>
void BM_build_demo(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));  // 0 K-FAC, 1 EK-FAC, 2 Woodbury
  const auto m = static_cast<std::size_t>(state.range(1));
  const fu::models::Transformer<Scalar> model(demo_config());
  const auto windows = demo_windows<Scalar>(m);
  for (auto _ : state) {
    if (kind == 0) {
      benchmark::DoNotOptimize(fu::make_kfac_fisher(model, std::span(windows), Scalar(1e-3)).undamped_trace());
    } else if (kind == 1) {
      benchmark::DoNotOptimize(fu::make_ekfac_fisher(model, std::span(windows), Scalar(1e-3)).undamped_trace());
    } else {
      fu::WoodburyFisher<Scalar> fisher(model.num_parameters(), Scalar(1e-3));
      fu::GradientCollection how;
      how.kind = fu::FisherKind::monte_carlo;
      fisher.add_gradients(fu::collect_gradients(model, std::span(windows), how));
      fisher.finalize();
      benchmark::DoNotOptimize(fisher.num_gradients());
    }
  }
  state.SetLabel(kind == 0 ? "K-FAC build" : kind == 1 ? "EK-FAC build (two passes)" : "Woodbury build (collect + finalize)");
}

}  // namespace

int main(int argc, char** argv) {
  const auto reg = [](const std::string& name, auto&&... fn_and_args) {
    return benchmark::RegisterBenchmark(name.c_str(), fn_and_args...)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  reg("ceiling/gemm<float>", BM_ceiling_gemm<float>, std::size_t{1})->Args({1024, 1024, 1024});
  reg("ceiling/gemm<double>", BM_ceiling_gemm<double>, std::size_t{1})->Args({1024, 1024, 1024});
  // Widths of the demo (64, 192/256 in its MLP) and of a 100M-class model (768, 1024); n = 8 windows of 64.
  // third argument: 1 = caches evicted before each call (the demo's shapes)
  reg("kfac/accumulate<float>", BM_kfac_accumulate<float>)
      ->Args({64, 512, 0})
      ->Args({64, 512, 1})
      ->Args({256, 512, 0})
      ->Args({256, 512, 1})
      ->Args({768, 2048, 0})
      ->Args({1024, 2048, 0});
  reg("kfac/accumulate<double>", BM_kfac_accumulate<double>)->Args({256, 512, 0})->Args({1024, 2048, 0});
  reg("ekfac/eigenvalues<float>", BM_ekfac_eigenvalues<float>)->Args({256, 512, 64})->Args({768, 2048, 64});
  for (const double p : {-1.0, -0.25}) {
    const std::string suffix = p == -1.0 ? "inverse" : "quarter";
    reg("kronecker/demo_" + suffix + "<float>", BM_kronecker_product_demo<float>, p)->Arg(0)->Arg(1);
    reg("woodbury/demo_" + suffix + "<float>", BM_woodbury_product_demo<float>, p)->Arg(256);
  }
  reg("build/demo<float>", BM_build_demo<float>)->Args({0, 256})->Args({1, 256})->Args({2, 256})->Iterations(1);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
