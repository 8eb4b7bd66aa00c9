// Exact exposure for |R| = 10^6 six-digit canaries: the pruned search against the exhaustive walk (its
// baseline, same binary) and a naive scorer that evaluates every candidate from the prefix state alone
// (|R|·L evaluations, the per-candidate loop of public implementations), on a memorised canary (rank 1)
// and an unmemorised one (a uniform random candidate).
// Counters: evaluations (model calls), rank, exposure_bits, and for the pruned search eval_ratio =
// exhaustive evaluations ÷ pruned evaluations and speedup = exhaustive seconds ÷ pruned seconds.
// Models: a byte-level bigram table (an evaluation is a 256-entry copy: measures the walk itself), and
// the same table with a 256×256 float mat-vec per evaluation (the output head of a small byte-level
// GPT, C = V = 256), where evaluation cost dominates as it does for a real model.
#include <benchmark/benchmark.h>

#include <fisher_unlearn/exposure.hpp>
#include <fisher_unlearn/testing/table_language_model.hpp>

#include <Eigen/Core>

#include <chrono>
#include <type_traits>
#include <cstdint>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using fu::testing::TableContext;
using fu::testing::TableLanguageModel;

namespace {

constexpr std::size_t kSlots = 6;
const std::string kPrefix = "my pin is ";
constexpr std::uint64_t kMemorisedIndex = 271828;  // the planted secret "271828"

/// The table model plus the cost of a C×V output head per evaluation (result kept, not used).
class HeadCostModel {
 public:
  using Scalar = float;
  using Sample = std::vector<fu::Token>;
  using DecodeState = TableLanguageModel<float>::DecodeState;

  explicit HeadCostModel(const TableLanguageModel<float>& table)
      : table_(&table),
        theta_(table.parameters().begin(), table.parameters().end()),
        head_(Eigen::MatrixXf::Random(256, 256)),
        hidden_(Eigen::VectorXf::Random(256)),
        out_(256) {}

  std::size_t vocab_size() const { return table_->vocab_size(); }
  std::size_t num_parameters() const { return table_->num_parameters(); }
  std::span<float> parameters() { return theta_; }  // a copy: the bench never changes parameters
  std::span<const float> parameters() const { return theta_; }
  float loss(const Sample& s) const { return table_->loss(s); }
  void next_token_log_probs(std::span<const fu::Token> c, std::span<float> out) const {
    head();
    table_->next_token_log_probs(c, out);
  }
  DecodeState begin_decode(std::span<const fu::Token> c) const { return table_->begin_decode(c); }
  void advance(DecodeState& s, fu::Token t) const { table_->advance(s, t); }
  void log_probs(const DecodeState& s, std::span<float> out) const {
    head();
    table_->log_probs(s, out);
  }

 private:
  void head() const {
    out_.noalias() = head_ * hidden_;
    benchmark::DoNotOptimize(out_.data());
  }
  const TableLanguageModel<float>* table_;
  std::vector<float> theta_;
  Eigen::MatrixXf head_;
  Eigen::VectorXf hidden_;
  mutable Eigen::VectorXf out_;
};

struct Setup {
  fu::CanaryFormat format = fu::CanaryFormat::digits(kPrefix, kSlots);
  fu::CanarySpace space{format, fu::ByteTokenizer{}};
  TableLanguageModel<float> table = make_table();
  HeadCostModel costly{table};

  TableLanguageModel<float> make_table() const {
    auto m = TableLanguageModel<float>::random(256, kPrefix.size() + kSlots + 1, TableContext::position_and_previous, 7);
    // Plant the secret: +6 on its token's logit at each secret position, given its previous token.
    const auto tokens = space.tokens(format.canary_at(kMemorisedIndex));
    for (std::size_t j = kPrefix.size(); j < tokens.size(); ++j) {
      const auto r = m.row_index(j, tokens[j - 1]);
      std::vector<double> logits(m.row(r).begin(), m.row(r).end());
      logits[static_cast<std::size_t>(tokens[j])] += 6.0;
      m.set_row_logits(r, logits);
    }
    return m;
  }
  fu::Canary canary(bool memorised) const {
    return memorised ? format.canary_at(kMemorisedIndex) : format.generate(2024, 1)[0];
  }
};

const Setup& setup() {
  static const Setup s;
  return s;
}

template <class Model>
const Model& model_of() {
  if constexpr (std::is_same_v<Model, HeadCostModel>)
    return setup().costly;
  else
    return setup().table;
}

void report(benchmark::State& state, const fu::ExposureResult& r) {
  state.counters["evaluations"] = static_cast<double>(r.evaluations);
  state.counters["candidates_scored"] = static_cast<double>(r.candidates_scored);
  state.counters["rank"] = static_cast<double>(r.rank);
  state.counters["exposure_bits"] = r.exposure_bits;
}

template <class Model>
void BM_exhaustive(benchmark::State& state, bool memorised) {
  const auto& s = setup();
  const Model& m = model_of<Model>();
  const auto c = s.canary(memorised);
  fu::ExposureResult r;
  for (auto _ : state) {
    r = fu::ExhaustiveExposure{}.measure(m, s.space, c);
    benchmark::DoNotOptimize(r.rank);
  }
  report(state, r);
}

template <class Model>
void BM_pruned(benchmark::State& state, bool memorised) {
  const auto& s = setup();
  const Model& m = model_of<Model>();
  const auto c = s.canary(memorised);
  fu::ExposureResult r;
  std::chrono::steady_clock::duration pruned_time{};
  std::int64_t runs = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    r = fu::PrunedExposure{}.measure(m, s.space, c);
    pruned_time += std::chrono::steady_clock::now() - t0;
    ++runs;
    benchmark::DoNotOptimize(r.rank);
  }
  report(state, r);
  // The baseline, measured in this binary right after: one exhaustive walk of the same canary.
  const auto t0 = std::chrono::steady_clock::now();
  const auto ex = fu::ExhaustiveExposure{}.measure(m, s.space, c);
  const double ex_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double pr_seconds = std::chrono::duration<double>(pruned_time).count() / static_cast<double>(runs);
  if (ex.rank != r.rank) state.SkipWithError("pruned and exhaustive ranks differ");
  state.counters["eval_ratio"] = static_cast<double>(ex.evaluations) / static_cast<double>(r.evaluations);
  state.counters["speedup"] = ex_seconds / pr_seconds;
}

/// Every candidate scored on its own from a copy of the prefix state: |R|·L evaluations.
void BM_naive_independent(benchmark::State& state, bool memorised) {
  const auto& s = setup();
  const auto& m = s.table;
  const auto c = s.canary(memorised);
  const auto prefix_state = m.begin_decode(s.space.prefix_tokens());
  std::vector<float> row(256);
  std::uint64_t evaluations = 0, rank = 0;
  for (auto _ : state) {
    evaluations = 0;
    auto score = [&](const fu::Canary& cand) {
      auto st = prefix_state;
      double l = 0.0;
      const auto toks = s.space.secret_tokens(cand);
      for (std::size_t j = 0; j < toks.size(); ++j) {
        if (j > 0) m.advance(st, toks[j - 1]);
        m.log_probs(st, row);
        ++evaluations;
        l += std::min(0.0, static_cast<double>(row[static_cast<std::size_t>(toks[j])]));
      }
      return l;
    };
    const double target = score(c);
    rank = 1;
    for (std::uint64_t i = 0; i < s.format.space_size(); ++i)
      if (score(s.format.canary_at(i)) > target) ++rank;
    benchmark::DoNotOptimize(rank);
  }
  state.counters["evaluations"] = static_cast<double>(evaluations);
  state.counters["rank"] = static_cast<double>(rank);
}

void BM_exhaustive_table(benchmark::State& s, bool memorised) { BM_exhaustive<TableLanguageModel<float>>(s, memorised); }
void BM_pruned_table(benchmark::State& s, bool memorised) { BM_pruned<TableLanguageModel<float>>(s, memorised); }
void BM_exhaustive_head(benchmark::State& s, bool memorised) { BM_exhaustive<HeadCostModel>(s, memorised); }
void BM_pruned_head(benchmark::State& s, bool memorised) { BM_pruned<HeadCostModel>(s, memorised); }

}  // namespace

BENCHMARK_CAPTURE(BM_exhaustive_table, memorised, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_pruned_table, memorised, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_exhaustive_table, unmemorised, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_pruned_table, unmemorised, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_independent, table_memorised, true)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_exhaustive_head, memorised, true)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK_CAPTURE(BM_pruned_head, memorised, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_exhaustive_head, unmemorised, false)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK_CAPTURE(BM_pruned_head, unmemorised, false)->Unit(benchmark::kMillisecond)->Iterations(2);

BENCHMARK_MAIN();
