// End to end: one full FisherRemoval (retain-set gradients, estimator set-up, automatic damping search,
// the removal step, the report's losses) on the demo transformer, against training that model from
// scratch (what retraining without the forgotten data costs), in the same binary.
//   Model and training: the demo's (2 layers, width 64, 4 heads, context 64; 1200 AdamW steps of 32
//   windows, lr 3e-3, warm-up 50, weight decay 0.01), on the demo corpus with a canary line inserted
//   10 times. FisherRemoval as the demo runs it: m = 256 retain gradients, damping searched over
//   log_grid(1e-6, 1, 7) scored on 128 retain windows, 512 retain windows, the 10 canary windows forgotten.
// Everything single-threaded. $FISHER_UNLEARN_BENCH_TRAIN_STEPS overrides the 1200 steps (quick runs only:
// the speed-up is then against a shorter training, and the counters say so).
//
// Issue 14 item 4: the iterated natural gradient (NaturalGradientUnlearning, natural_gradient.hpp) at the
// setting unlearn_lm's headline method iter/natural_kfac reaches the exposure target with (matched held-out
// exposure, docs/experiment.md v4-v6): forget samples = 2 copies of the canary, each with 24 bytes of the
// preceding text, the loss on the secret's digits towards the other digits (ForgetTarget::other_symbols,
// DescentObjective); F_R from m = 256 empirical retain windows, λ = 10⁻²·tr(F̂)/d; η = 10⁴ with the trust
// region ½δᵀF_Rδ ≤ κ = 10⁻⁴; retain anchor β = 1 on 16 retain windows per step; no J_retain report passes
// (as the driver). The step counts are the driver's selections at matched exposure on seeds 1-3: 4, 12 and
// 64 for K-FAC (12 for EK-FAC and Woodbury). Not included: the driver's stopping checks (≈ 0.05 s each).
// One row per F_R estimator and step count; the "/threads2" rows run model and estimator on 2 threads,
// against a training on 2 threads. The "prebuilt_fisher" rows time one deletion request when F_R (K-FAC)
// was built once per model beforehand (its build time is their fisher_build_seconds counter). The
// "first_request_parts" rows time the 4-step first request's parts alone, split into the work training also
// does and the request's own, and give the speed-up bounds they imply (see BM_first_request_parts).
#include "ceilings.hpp"
#include "corpus.hpp"

#include <fisher_unlearn/canary.hpp>
#include <fisher_unlearn/canary_forget.hpp>
#include <fisher_unlearn/damping.hpp>
#include <fisher_unlearn/fisher/kfac.hpp>
#include <fisher_unlearn/natural_gradient.hpp>
#include <fisher_unlearn/fisher/diagonal.hpp>
#include <fisher_unlearn/fisher/woodbury.hpp>
#include <fisher_unlearn/models/transformer.hpp>
#include <fisher_unlearn/models/transformer_training.hpp>
#include <fisher_unlearn/removal.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace fisher_unlearn::bench;
using Model = fu::models::Transformer<float>;
using Sample = Model::Sample;
using fisher_unlearn::Token;

namespace {

constexpr std::size_t kCanaryCopies = 10;
const std::string kCanary = "my PIN is 382915";

std::size_t training_steps() {
  if (const char* env = std::getenv("FISHER_UNLEARN_BENCH_TRAIN_STEPS")) return std::stoul(env);
  return 1200;
}

fu::models::TransformerConfig demo_config() {
  fu::models::TransformerConfig c;
  c.num_layers = 2;
  c.width = 64;
  c.num_heads = 4;
  c.context_length = 64;
  c.seed = 1;
  return c;
}

fu::TrainingOptions demo_training() {
  fu::TrainingOptions o;
  o.steps = training_steps();
  o.batch_size = 32;
  o.learning_rate = 3e-3;
  o.min_learning_rate = 3e-4;
  o.warmup_steps = std::min<std::size_t>(50, o.steps);
  o.adamw.weight_decay = 0.01;
  o.seed = 1;
  o.progress_interval_seconds = 60;
  o.label = "bench train";
  return o;
}

// The training stream with the canary line inserted between lines at seeded positions, the windows
// that contain a copy (the forget set) and a seeded sample of the other windows (the retain set).
struct Data {
  std::vector<Token> stream;
  std::vector<Sample> forget, retain;
  std::vector<std::size_t> canary_offsets;  // byte = token offsets of the canary copies in the stream
  std::string source;
};

Data make_data() {
  const Corpus corpus = demo_corpus(400'000);
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < corpus.text.size();) {
    const auto nl = corpus.text.find('\n', at);
    const auto end = nl == std::string::npos ? corpus.text.size() : nl + 1;
    lines.push_back(corpus.text.substr(at, end - at));
    at = end;
  }
  std::mt19937_64 rng(5);
  std::vector<std::size_t> positions;
  for (std::size_t i = 0; i < kCanaryCopies; ++i) positions.push_back(std::uniform_int_distribution<std::size_t>(1, lines.size() - 1)(rng));
  std::sort(positions.begin(), positions.end());
  std::string text;
  std::vector<std::size_t> canary_offsets;
  for (std::size_t l = 0, p = 0; l < lines.size(); ++l) {
    while (p < positions.size() && positions[p] == l) {
      canary_offsets.push_back(text.size());
      text += kCanary + "\n";
      ++p;
    }
    text += lines[l];
  }
  Data data;
  data.source = corpus.source;
  data.canary_offsets = canary_offsets;
  data.stream = fu::ByteTokenizer{}.encode(text);
  const std::size_t window = demo_config().context_length + 1;
  // Each forget window ends just after its canary copy, so the secret digits are predicted from the prefix.
  for (std::size_t o : canary_offsets) {
    const std::size_t end = o + kCanary.size() + 1;
    const std::size_t begin = end >= window ? end - window : 0;
    data.forget.push_back({std::vector<Token>(data.stream.begin() + std::ptrdiff_t(begin), data.stream.begin() + std::ptrdiff_t(begin + window))});
  }
  std::uniform_int_distribution<std::size_t> offset(0, data.stream.size() - window);
  while (data.retain.size() < 512) {
    const std::size_t b = offset(rng);
    bool overlaps = false;
    for (std::size_t o : canary_offsets) overlaps |= b < o + kCanary.size() + 1 && o < b + window;
    if (!overlaps)
      data.retain.push_back({std::vector<Token>(data.stream.begin() + std::ptrdiff_t(b), data.stream.begin() + std::ptrdiff_t(b + window))});
  }
  return data;
}

Data& data() {
  static Data d = make_data();
  return d;
}

Model fresh_model(std::size_t threads = 1) {
  Model m(demo_config());
  m.set_execution({.num_threads = threads, .sequences_per_chunk = 8});
  return m;
}

// The model trained (once, by BM_train_from_scratch) on the stream with the canaries: the starting
// point of every removal.
std::optional<Model>& trained_model() {
  static std::optional<Model> m;
  return m;
}

// The wall time of this run's training at 1 and 2 threads (index = threads; 0 = not run), for the rows
// that compare their parts with it.
std::array<double, 3>& training_seconds() {
  static std::array<double, 3> s{};
  return s;
}

// Training the demo model from scratch: the cost of retraining without the forgotten data (the same
// steps on batches of the same size; only the stream differs by the canary lines).
void BM_train_from_scratch(benchmark::State& state, std::size_t threads) {
  Data& d = data();
  for (auto _ : state) {
    Model m = fresh_model(threads);
    const auto t0 = std::chrono::steady_clock::now();
    fu::train_language_model(m, std::span<const Token>(d.stream), demo_training());
    training_seconds().at(threads) = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (threads == 1 || !trained_model()) trained_model() = std::move(m);
  }
  state.counters["steps"] = benchmark::Counter(double(training_steps()));
  state.counters["batch"] = benchmark::Counter(32.0);
  state.SetLabel(d.source);
}

template <class Estimator>
void BM_fisher_removal(benchmark::State& state) {
  Data& d = data();
  if (!trained_model()) {
    state.SkipWithError("run unlearning/train_from_scratch first (it trains the starting model)");
    return;
  }
  fu::FisherRemovalOptions o;
  o.fisher_samples = 256;
  fu::DampingSearch search;
  search.grid = fu::log_grid(1e-6, 1.0, 7);
  search.score_samples = 128;
  o.automatic_damping = search;
  fu::UnlearningReport report;
  for (auto _ : state) {
    Model m = *trained_model();
    report = fu::FisherRemoval<Estimator>(o).unlearn(m, std::span<const Sample>(d.forget), std::span<const Sample>(d.retain));
    benchmark::DoNotOptimize(m.parameters().data());
  }
  state.counters["forget_loss_before"] = benchmark::Counter(report.forget_loss_before);
  state.counters["forget_loss_after"] = benchmark::Counter(report.forget_loss_after);
  state.counters["retain_loss_before"] = benchmark::Counter(report.retain_loss_before);
  state.counters["retain_loss_after"] = benchmark::Counter(report.retain_loss_after);
  state.counters["damping"] = benchmark::Counter(report.damping);
  state.counters["fisher_gradients"] = benchmark::Counter(double(report.fisher_gradients));
  std::cerr << "[bench] " << report << "\n";
}

// The forget samples of the natural-gradient rows: the first 2 copies of the canary, each with up to 24
// bytes of the text before it, scored on the secret's digits (towards the other digits).
std::vector<Sample> canary_forget_samples() {
  Data& d = data();
  const std::string prefix = kCanary.substr(0, kCanary.size() - 6);  // "my PIN is "
  const fu::CanarySpace space(fu::CanaryFormat::digits(prefix, 6), fu::ByteTokenizer{});
  const fu::Canary secret = space.format().parse(kCanary);
  fu::ForgetSampleOptions fo;
  fo.target = fu::ForgetTarget::other_symbols;
  fo.max_tokens = demo_config().context_length + 1;
  std::vector<Sample> out;
  for (std::size_t k = 0; k < std::min<std::size_t>(2, d.canary_offsets.size()); ++k) {
    const std::size_t off = d.canary_offsets[k];
    const std::size_t begin = off > 24 ? off - 24 : 0;
    out.push_back(fu::make_forget_sample(space, secret, std::span<const Token>(d.stream).subspan(begin, off - begin), fo));
  }
  return out;
}

fu::NaturalGradientOptions natural_gradient_options(std::size_t steps) {
  fu::NaturalGradientOptions o;
  o.learning_rate = 1e4;  // the trust region sets the step
  o.max_steps = steps;
  o.max_kl = 1e-4;
  o.report_retain_loss = false;  // as unlearn_lm: a diagnostic no step or stop uses
  o.fisher_samples = 256;
  o.seed = 41;
  o.retain_weight = 1.0;
  o.retain_batch_size = 16;
  return o;  // damping: the default λ = 1e-2·tr(F̂)/d
}

template <class Estimator>
void BM_natural_gradient(benchmark::State& state, std::size_t threads, std::size_t steps) {
  Data& d = data();
  if (!trained_model()) {
    state.SkipWithError("run unlearning/train_from_scratch first (it trains the starting model)");
    return;
  }
  const std::vector<Sample> forget = canary_forget_samples();
  using Unlearner = fu::NaturalGradientUnlearning<Estimator>;
  std::optional<Unlearner> unlearner;
  if constexpr (fu::LayerFactoredEstimator<Estimator>) {
    unlearner.emplace(natural_gradient_options(steps), fu::DescentObjective{}, fu::NaturalGradient{},
                      typename Unlearner::LayerFactory([threads](std::vector<fu::LinearLayer> layers, std::size_t dim,
                                                                  typename Estimator::Scalar damping) {
                        Estimator e(std::move(layers), dim, damping);
                        e.set_num_threads(threads);
                        return e;
                      }));
  } else {
    unlearner.emplace(natural_gradient_options(steps), fu::DescentObjective{}, fu::NaturalGradient{},
                      typename Unlearner::Factory([threads](std::size_t dim, typename Estimator::Scalar damping) {
                        Estimator e(dim, damping);
                        if constexpr (requires { e.set_num_threads(threads); }) e.set_num_threads(threads);
                        return e;
                      }));
  }
  fu::NaturalGradientResult result;
  for (auto _ : state) {
    Model m = *trained_model();
    m.set_execution({.num_threads = threads, .sequences_per_chunk = 8});
    result = unlearner->unlearn_detailed(m, std::span<const Sample>(forget), std::span<const Sample>(d.retain));
    benchmark::DoNotOptimize(m.parameters().data());
  }
  const auto& r = result.report;
  state.counters["steps"] = benchmark::Counter(double(result.steps.size()));
  state.counters["forget_objective_before"] = benchmark::Counter(result.steps.empty() ? 0.0 : result.steps.front().objective);
  state.counters["forget_objective_last"] = benchmark::Counter(result.steps.empty() ? 0.0 : result.steps.back().objective);
  state.counters["forget_loss_before"] = benchmark::Counter(r.forget_loss_before);
  state.counters["forget_loss_after"] = benchmark::Counter(r.forget_loss_after);
  state.counters["threads"] = benchmark::Counter(double(threads));
  state.counters["trust_region_hits"] = benchmark::Counter(double(result.trust_region_hits));
  state.SetLabel("stop: " + result.stop_reason);
  std::cerr << "[bench] " << r << " (stop: " << result.stop_reason << ")\n";
}

// The K-FAC natural-gradient unlearner of the rows below, its estimator on `threads` threads.
using KfacUnlearner = fu::NaturalGradientUnlearning<fu::KfacFisher<float>>;
KfacUnlearner kfac_unlearner(const fu::NaturalGradientOptions& options, std::size_t threads) {
  return KfacUnlearner(options, fu::DescentObjective{}, fu::NaturalGradient{},
                       KfacUnlearner::LayerFactory([threads](std::vector<fu::LinearLayer> layers, std::size_t dim, float damping) {
                         fu::KfacFisher<float> e(std::move(layers), dim, damping);
                         e.set_num_threads(threads);
                         return e;
                       }));
}

// A copy of the trained model running on `threads` threads (8 sequences per chunk, as every row).
Model trained_copy(std::size_t threads) {
  Model m = *trained_model();
  m.set_execution({.num_threads = threads, .sequences_per_chunk = 8});
  return m;
}

// F_R built once per model and kept (what a deployment serving several deletion requests does: F_R is the
// retain data's curvature at the trained θ, not the request's), then one request's run with it:
// unlearn_detailed(model, forget, retain, fisher). F_R is built exactly as the run above builds it (the
// seeded subsample of m = 256 retain windows, K-FAC statistics, λ from the same rule), so the unlearned
// parameters are the same bits: the counter max_abs_diff_vs_self_built checks it against a run that
// builds its own F_R. Counters: fisher_build_seconds (the once-per-model part, wall) and the request's wall
// time is the row's time.
void BM_natural_gradient_prebuilt(benchmark::State& state, std::size_t threads, std::size_t steps) {
  using Estimator = fu::KfacFisher<float>;
  Data& d = data();
  if (!trained_model()) {
    state.SkipWithError("run unlearning/train_from_scratch first (it trains the starting model)");
    return;
  }
  const std::vector<Sample> forget = canary_forget_samples();
  const fu::NaturalGradientOptions options = natural_gradient_options(steps);
  const KfacUnlearner unlearner = kfac_unlearner(options, threads);
  const Model start = trained_copy(threads);

  const auto t0 = std::chrono::steady_clock::now();
  Estimator fisher(start.linear_layers(), start.num_parameters(), 1.0f);
  fisher.set_num_threads(threads);
  const auto chosen = fu::detail::subsample(std::span<const Sample>(d.retain), options.fisher_samples, options.seed);
  fisher.accumulate(start, std::span<const Sample>(chosen), options.gradients);
  fisher.finalize();
  fisher.set_damping(static_cast<float>(options.damping.resolve(fisher.undamped_trace(), start.num_parameters())));
  const double build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  fu::NaturalGradientResult result;
  Model m = start;
  for (auto _ : state) {
    m = start;
    result = unlearner.unlearn_detailed(m, std::span<const Sample>(forget), std::span<const Sample>(d.retain), fisher);
    benchmark::DoNotOptimize(m.parameters().data());
  }
  Model self_built = start;
  unlearner.unlearn_detailed(self_built, std::span<const Sample>(forget), std::span<const Sample>(d.retain));
  double diff = 0;
  for (std::size_t i = 0; i < m.parameters().size(); ++i)
    diff = std::max(diff, std::abs(double(m.parameters()[i]) - double(self_built.parameters()[i])));
  state.counters["fisher_build_seconds"] = benchmark::Counter(build_seconds);
  state.counters["max_abs_diff_vs_self_built"] = benchmark::Counter(diff);
  state.counters["steps"] = benchmark::Counter(double(result.steps.size()));
  state.counters["threads"] = benchmark::Counter(double(threads));
  state.SetLabel("F_R prebuilt; stop: " + result.stop_reason);
}

// Issue 14 item 4: what bounds the first request's speed-up (natural_gradient<kfac>/steps4, F_R built in
// the request). Its parts, each timed alone on the trained model with the row's threads (wall, mean over
// the iterations), split into the work training also does and the request's own:
//   passes          the forward + backward passes of K-FAC's factor pass over F_R's 256 windows without the
//                   statistics: the same visit_linear_layers calls (blocks of 32 windows, `threads` blocks
//                   at a time, as KfacFisher schedules them) with a visitor that discards what it is handed;
//   step_gradients  the gradients the 4 steps and the final objective evaluate: 4 × (the forget objective +
//                   a 16-window retain anchor) + the forget objective once more;
//   statistics      KfacFisher::accumulate over the 256 windows minus `passes`: the factor sums Σaaᵀ, Σδδᵀ
//                   (float register tiles into double sums) and the diagonal block's Σg̃²;
//   finalize        KfacFisher::finalize (the 16 factor eigendecompositions) and the damping rule;
//   steps_other     a 4-step request with this F_R prebuilt (on a fresh copy of the model, as the rows
//                   above) minus step_gradients: the K-FAC products (the direction and the trust region's
//                   F_R·δ per step), the report's loss evaluations, the vector work and the copy's first use
//                   of its workspaces.
// Counters: each part (s); training_seconds: the training's time at the same threads, estimated from 24 of
// its steps timed in every iteration between the parts (× steps / 24: the host's speed drifts within
// minutes, so the training row, run minutes earlier, is given beside it as training_row_seconds);
// ratio_parts = training ÷ the parts' sum (≈ the steps4 row); ratio_if_own_work_free = training ÷ (passes +
// step_gradients): the bound no work on the request's own parts can pass — passes and step gradients run
// the training's kernels (forward, backward, attention), so making those faster speeds retraining alike;
// statistics_macs (the factor sums' multiply-adds: every window position × Σ over the 8 layers of the
// lower triangles in(in+1)/2 + out(out+1)/2), statistics_of_gemm = the factor sums' rate ÷ Eigen's float
// GEMM rate for a (rows × 64)·(64 × rows) product of each layer's shapes, measured here (× threads: the
// blocks are independent); ratio_if_statistics_at_gemm = the ratio with the statistics at that rate.
class DiscardingVisitor final : public fu::LinearLayerVisitor<float> {
 public:
  void on_layer(const fu::LinearLayerBatch<float>&) override {}
  bool wants_sample_gradients() const override { return true; }  // as K-FAC's (its diagonal block)
  bool wants_linear_layer_scores() const override { return false; }
};

void BM_first_request_parts(benchmark::State& state, std::size_t threads) {
  using Estimator = fu::KfacFisher<float>;
  Data& d = data();
  if (!trained_model() || training_seconds().at(threads) == 0.0) {
    state.SkipWithError("run unlearning/train_from_scratch (at the same threads) first");
    return;
  }
  constexpr std::size_t kSteps = 4;
  constexpr std::size_t kTrainingSlice = 24;
  const std::vector<Sample> forget = canary_forget_samples();
  const fu::NaturalGradientOptions options = natural_gradient_options(kSteps);
  const KfacUnlearner unlearner = kfac_unlearner(options, threads);
  const Model start = trained_copy(threads);
  const auto chosen = fu::detail::subsample(std::span<const Sample>(d.retain), options.fisher_samples, options.seed);
  const std::span<const Sample> windows(chosen);
  constexpr std::size_t kBlock = Estimator::kFactorBlock;
  const auto seconds_of = [](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double passes = 0, step_gradients = 0, accumulate = 0, finalize = 0, request = 0, training_slice = 0;
  std::size_t iterations = 0;
  fu::Vector<float> g;
  fu::TrainingOptions slice_options = demo_training();
  slice_options.steps = kTrainingSlice;
  slice_options.warmup_steps = 1;
  for (auto _ : state) {
    ++iterations;
    // the same training, kTrainingSlice steps of it, timed between the parts: this host's speed drifts by
    // ±20 % within minutes, so the ratios compare with this rather than with the training row
    Model trainee = fresh_model(threads);
    training_slice += seconds_of([&] { fu::train_language_model(trainee, std::span<const Token>(d.stream), slice_options); });
    passes += seconds_of([&] {
      const std::size_t blocks = (windows.size() + kBlock - 1) / kBlock;
      for (std::size_t first = 0; first < blocks; first += threads) {
        const std::size_t count = std::min(threads, blocks - first);
        fu::detail::parallel_for(count, count, [&](std::size_t i, std::size_t) {
          const std::size_t begin = (first + i) * kBlock;
          DiscardingVisitor visitor;
          std::mt19937_64 rng(options.gradients.seed);
          start.visit_linear_layers(windows.subspan(begin, std::min(kBlock, windows.size() - begin)),
                                    fu::CurvatureTargets::observed, rng, visitor);
        });
      }
    });
    step_gradients += seconds_of([&] {
      for (std::size_t step = 0; step < kSteps; ++step) {
        fu::detail::mean_loss_and_gradient(start, std::span<const Sample>(forget), g);
        fu::detail::mean_loss_and_gradient(start, std::span<const Sample>(d.retain).subspan(16 * step, options.retain_batch_size), g);
      }
      fu::detail::mean_loss_and_gradient(start, std::span<const Sample>(forget), g);
    });
    Estimator fisher(start.linear_layers(), start.num_parameters(), 1.0f);
    fisher.set_num_threads(threads);
    accumulate += seconds_of([&] { fisher.accumulate(start, windows, options.gradients); });
    finalize += seconds_of([&] {
      fisher.finalize();
      fisher.set_damping(static_cast<float>(options.damping.resolve(fisher.undamped_trace(), start.num_parameters())));
    });
    Model m = start;
    request += seconds_of([&] {
      unlearner.unlearn_detailed(m, std::span<const Sample>(forget), std::span<const Sample>(d.retain), fisher);
    });
    benchmark::DoNotOptimize(m.parameters().data());
  }
  const double n = static_cast<double>(std::max<std::size_t>(iterations, 1));
  passes /= n, step_gradients /= n, accumulate /= n, finalize /= n, request /= n, training_slice /= n;
  const double statistics = accumulate - passes, steps_other = request - step_gradients;
  const double training = training_slice * static_cast<double>(training_steps()) / static_cast<double>(kTrainingSlice);
  const double total = passes + statistics + finalize + step_gradients + steps_other;  // = accumulate + finalize + request

  // The factor sums' multiply-adds and the time they would take at Eigen's float GEMM rate of their shapes.
  double positions = 0;
  for (const Sample& s : chosen) positions += static_cast<double>(s.tokens.size() - 1);
  double macs = 0, ideal = 0;
  for (const fu::LinearLayer& layer : start.linear_layers())
    for (const std::size_t rows : {layer.in_features, layer.out_features}) {
      const double r = static_cast<double>(rows);
      const double layer_macs = positions * r * (r + 1) / 2;
      macs += layer_macs;
      const auto ri = static_cast<Eigen::Index>(rows);
      ideal += 2 * layer_macs / (gemm_rate<float>(ri, 64, ri) * static_cast<double>(threads));
    }
  state.counters["passes"] = benchmark::Counter(passes);
  state.counters["step_gradients"] = benchmark::Counter(step_gradients);
  state.counters["statistics"] = benchmark::Counter(statistics);
  state.counters["finalize"] = benchmark::Counter(finalize);
  state.counters["steps_other"] = benchmark::Counter(steps_other);
  state.counters["training_seconds"] = benchmark::Counter(training);
  state.counters["training_row_seconds"] = benchmark::Counter(training_seconds().at(threads));
  state.counters["ratio_parts"] = benchmark::Counter(training / total);
  state.counters["ratio_if_own_work_free"] = benchmark::Counter(training / (passes + step_gradients));
  state.counters["statistics_macs"] = benchmark::Counter(macs);
  state.counters["statistics_of_gemm"] = benchmark::Counter(ideal / statistics);
  state.counters["ratio_if_statistics_at_gemm"] = benchmark::Counter(training / (total - statistics + ideal));
  state.counters["threads"] = benchmark::Counter(double(threads));
  state.SetLabel("first request (4 steps), parts timed alone");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("unlearning/train_from_scratch", BM_train_from_scratch, std::size_t(1))
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kSecond);
  benchmark::RegisterBenchmark("unlearning/fisher_removal<woodbury>", BM_fisher_removal<fu::WoodburyFisher<float>>)
      ->Iterations(3)
      ->UseRealTime()
      ->Unit(benchmark::kSecond);
  benchmark::RegisterBenchmark("unlearning/fisher_removal<diagonal>", BM_fisher_removal<fu::DiagonalFisher<float>>)
      ->Iterations(3)
      ->UseRealTime()
      ->Unit(benchmark::kSecond);
  for (std::size_t t : {std::size_t(1), std::size_t(2)}) {
    const std::string sfx = t == 1 ? "" : "/threads2";
    if (t == 2)
      benchmark::RegisterBenchmark("unlearning/train_from_scratch/threads2", BM_train_from_scratch, t)
          ->Iterations(1)
          ->UseRealTime()
          ->Unit(benchmark::kSecond);
    // Each row the mean of 5 whole requests, each on a fresh copy of the trained model building its own F_R
    // (one request alone read ±20 % on a noisy 2-core host: 0.296–0.41 s for the same code).
    const auto add = [&](const std::string& est, auto fn, std::size_t steps) {
      benchmark::RegisterBenchmark(("unlearning/natural_gradient<" + est + ">/steps" + std::to_string(steps) + sfx).c_str(), fn, t,
                                   steps)
          ->Iterations(5)
          ->UseRealTime()
          ->Unit(benchmark::kSecond);
    };
    for (std::size_t steps : {std::size_t{4}, std::size_t{12}, std::size_t{64}}) add("kfac", BM_natural_gradient<fu::KfacFisher<float>>, steps);
    for (std::size_t steps : {std::size_t{4}, std::size_t{12}, std::size_t{64}})
      benchmark::RegisterBenchmark(("unlearning/natural_gradient<kfac>/prebuilt_fisher/steps" + std::to_string(steps) + sfx).c_str(),
                                   BM_natural_gradient_prebuilt, t, steps)
          ->Iterations(3)
          ->UseRealTime()
          ->Unit(benchmark::kSecond);
    benchmark::RegisterBenchmark(("unlearning/first_request_parts<kfac>/steps4" + sfx).c_str(), BM_first_request_parts, t)
        ->Iterations(5)
        ->UseRealTime()
        ->Unit(benchmark::kSecond);
    add("ekfac", BM_natural_gradient<fu::EkfacFisher<float>>, 12);
    add("woodbury", BM_natural_gradient<fu::WoodburyFisher<float>>, 12);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
