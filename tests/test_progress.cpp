// Progress and cancellation (progress.hpp): every long call reports its phases, and a cancel at ANY
// checkpoint throws Cancelled with the model bitwise unchanged (and a caller's estimator damping restored).
#include <catch2/catch.hpp>

#include "exposure_models.hpp"
#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forgetting.hpp"
#include "fisher_unlearn/progress.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/testing/table_language_model.hpp"
#include "unlearning_problem.hpp"

#include <map>
#include <string>
#include <vector>

using namespace unlearning_test;
using fu::testing::TableContext;
using fu::testing::TableLanguageModel;

namespace {

/// Counts checkpoints by phase and requests a stop at checkpoint number `cancel_at` (1-based; 0 = never).
struct Recorder {
  fu::Progress progress;
  std::map<std::string, int> phases;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> steps;
  int calls = 0;

  explicit Recorder(int cancel_at) {
    fu::CancelToken token = progress.cancel;
    progress.on_progress = [this, token, cancel_at](const fu::ProgressUpdate& u) {
      ++calls;
      ++phases[std::string(u.phase)];
      steps.emplace_back(u.done, u.total);
      if (u.done > u.total) FAIL("done > total in phase " << u.phase);
      if (calls == cancel_at) token.request_stop();
    };
  }
};

/// Runs `call(progress)` cancelling at checkpoint 1, 2, ... until a run completes; every cancelled run
/// must throw Cancelled and leave `unchanged()` true. Returns the phases of the complete run.
template <class Call, class Unchanged>
std::map<std::string, int> cancel_everywhere(Call call, Unchanged unchanged) {
  for (int k = 1;; ++k) {
    Recorder rec(k);
    bool cancelled = false;
    try {
      call(rec.progress);
    } catch (const fu::Cancelled& e) {
      cancelled = true;
      CHECK(std::string(e.what()).find("cancelled by the caller") != std::string::npos);
    }
    INFO("cancel at checkpoint " << k);
    if (cancelled) REQUIRE(unchanged());
    if (!cancelled) {
      CHECK(rec.calls == k - 1);  // the complete run had exactly the checkpoints we could cancel at
      return rec.phases;
    }
    REQUIRE(k < 10000);
  }
}

}  // namespace

TEST_CASE("Progress: FisherRemoval reports every phase and a cancel at any checkpoint leaves the model bitwise unchanged") {
  const auto p = make_problem<double>(120, 6, 12, 1e-2, 31);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::detail::snapshot_parameters(model);
  fu::FisherRemovalOptions o;
  o.fisher_samples = 40;
  o.automatic_damping = fu::DampingSearch{};
  o.iterations = 2;
  const auto phases = cancel_everywhere(
      [&](const fu::Progress& progress) {
        fu::FisherRemovalOptions oo = o;
        oo.progress = progress;
        fu::FisherRemoval<fu::WoodburyFisher<double>>(oo).unlearn(model, p.forget(), p.retain());
      },
      [&] { return bitwise_equal(model, saved); });
  CHECK(phases.at("fisher: gradients") == 40);
  CHECK(phases.at("fisher: factorise") == 2);
  CHECK(phases.at("damping search") == 7);
  CHECK(phases.at("removal steps") == 2);
}

TEST_CASE("Progress: a cancelled removal with the caller's estimator restores its damping; FisherForgetting cancels too") {
  const auto p = make_problem<double>(100, 5, 10, 1e-2, 32);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::detail::snapshot_parameters(model);
  fu::WoodburyFisher<double> fisher(5, 0.125);
  fisher.add_gradients(fu::collect_gradients(model, p.retain()));
  fisher.finalize();
  fu::FisherRemovalOptions o;
  o.automatic_damping = fu::DampingSearch{};
  cancel_everywhere(
      [&](const fu::Progress& progress) {
        fu::FisherRemovalOptions oo = o;
        oo.progress = progress;
        fu::FisherRemoval<fu::WoodburyFisher<double>>(oo).unlearn(model, p.forget(), p.retain(), fisher);
      },
      [&] { return bitwise_equal(model, saved) && fisher.damping() == 0.125; });
  CHECK(fisher.damping() == 0.125);
  fu::detail::restore_parameters(model, saved);

  fu::FisherForgettingOptions f;
  f.removal.fisher_samples = 30;
  const auto phases = cancel_everywhere(
      [&](const fu::Progress& progress) {
        fu::FisherForgettingOptions ff = f;
        ff.removal.progress = progress;
        fu::FisherForgetting<fu::WoodburyFisher<double>>(ff).unlearn(model, p.forget(), p.retain());
      },
      [&] { return bitwise_equal(model, saved); });
  CHECK(phases.at("fisher: gradients") == 30);
}

TEST_CASE("Progress: collect_gradients and search_damping stop through the stop callback") {
  const auto p = make_problem<double>(60, 4, 6, 1e-2, 33);
  fu::GradientCollection g;
  int seen = 0;
  g.progress.on_progress = [&](const fu::ProgressUpdate& u) {
    CHECK(u.phase == "fisher: gradients");
    CHECK(u.done == static_cast<std::uint64_t>(seen));
    CHECK(u.total == 54);
    ++seen;
  };
  g.progress.stop = [&] { return seen == 20; };
  CHECK_THROWS_AS(fu::collect_gradients(p.full, p.retain(), g), fu::Cancelled);
  CHECK(seen == 20);

  fu::WoodburyFisher<double> fisher(4, 0.5);
  fisher.add_gradients(fu::collect_gradients(p.full, p.retain()));
  fisher.finalize();
  fu::Progress stop_third;
  int candidates = 0;
  stop_third.on_progress = [&](const fu::ProgressUpdate&) { ++candidates; };
  stop_third.stop = [&] { return candidates == 3; };
  CHECK_THROWS_AS(fu::search_damping(fisher, fu::DampingSearch{}, stop_third, [](double l) { return l; }),
                  fu::Cancelled);
  CHECK(fisher.damping() == 0.5);  // restored
  const auto full = fu::search_damping(fisher, fu::DampingSearch{}, fu::Progress{}, [](double l) { return l; });
  CHECK(full.damping == 1e-6);
}

TEST_CASE("Progress: exposure estimators report their phases and can be cancelled") {
  auto m = TableLanguageModel<double>::random(256, 8, TableContext::position_and_previous, 4);
  const auto f = fu::CanaryFormat::digits("pin ", 5);
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const auto c = f.canary_at(31415);
  const auto reference = fu::ExhaustiveExposure{}.measure(m, space, c);

  Recorder walk(0);
  const auto r = fu::ExhaustiveExposure(walk.progress).measure(m, space, c);
  CHECK(r.rank == reference.rank);
  CHECK(walk.phases.at("exposure: exact walk") == 1 + 100000 / 4096);
  CHECK(walk.steps.back() == std::pair<std::uint64_t, std::uint64_t>(24 * 4096, 100000));

  Recorder stop_walk(5);
  CHECK_THROWS_AS(fu::ExhaustiveExposure(stop_walk.progress).measure(m, space, c), fu::Cancelled);
  Recorder stop_pruned(1);
  CHECK_THROWS_AS(fu::PrunedExposure(stop_pruned.progress).measure(m, space, c), fu::Cancelled);

  fu::ExtrapolationOptions o;
  o.exact_up_to = 0;
  o.samples = 1024;
  o.bootstrap = 10;
  Recorder extrapolate(0);
  o.progress = extrapolate.progress;
  fu::ExtrapolatedExposure(o).measure(m, space, c);
  CHECK(extrapolate.phases.at("exposure: samples") == 4);
  CHECK(extrapolate.phases.at("exposure: bootstrap") == 10);
  for (int k : {2, 6}) {
    Recorder stop(k);
    o.progress = stop.progress;
    CHECK_THROWS_AS(fu::ExtrapolatedExposure(o).measure(m, space, c), fu::Cancelled);
  }
  Recorder exact(1);  // the exact route of ExtrapolatedExposure is cancellable as well
  fu::ExtrapolationOptions small;
  small.progress = exact.progress;
  CHECK_THROWS_AS(fu::ExtrapolatedExposure(small).measure(m, space, c), fu::Cancelled);
}
