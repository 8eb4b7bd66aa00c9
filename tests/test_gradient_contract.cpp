// A model whose gradient() leaves entries of its output unwritten breaks the Model concept. The library
// fills every gradient buffer with a marked NaN before the call, so each unlearner, the Fisher
// collection and the objective helpers report it (ModelContractError naming the entries) instead of
// computing with whatever the buffer held, and the model's parameters are left exactly as they were.
#include <catch2/catch.hpp>

#include "unlearning_problem.hpp"

#include "fisher_unlearn/baselines.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/forget_objectives.hpp"
#include "fisher_unlearn/forgetting.hpp"
#include "fisher_unlearn/natural_gradient.hpp"
#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/removal.hpp"
#include "fisher_unlearn/training.hpp"

#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

namespace {

// Logistic regression whose gradient-writing members skip the entries [skip_begin, skip_end) of their
// output (every other entry is exact). Batched = false hides sum_loss_and_gradient.
template <bool Batched>
class SkipsEntries {
 public:
  using Scalar = double;
  using Sample = unlearning_test::Sample<double>;

  SkipsEntries(const Model<double>& base, std::size_t skip_begin, std::size_t skip_end)
      : base_(base), skip_begin_(skip_begin), skip_end_(skip_end) {}

  std::size_t num_parameters() const { return base_.num_parameters(); }
  std::span<double> parameters() { return base_.parameters(); }
  std::span<const double> parameters() const { return base_.parameters(); }
  double l2_regularization() const { return base_.l2_regularization(); }
  double loss(const Sample& s) const { return base_.loss(s); }

  double gradient(const Sample& s, std::span<double> g) const {
    std::vector<double> full(g.size());
    const double l = base_.gradient(s, full);
    copy_but_skipped(full, g);
    return l;
  }
  double sum_loss_and_gradient(std::span<const Sample> batch, std::span<double> g) const
    requires Batched
  {
    std::vector<double> full(g.size());
    const double l = base_.sum_loss_and_gradient(batch, full);
    copy_but_skipped(full, g);
    return l;
  }
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<double> g) const {
    std::vector<double> full(g.size());
    base_.sampled_gradient(s, rng, full);
    copy_but_skipped(full, g);
  }
  void hessian_vector_product(std::span<const Sample> batch, std::span<const double> v, std::span<double> out) const {
    std::vector<double> full(out.size());
    base_.hessian_vector_product(batch, v, full);
    copy_but_skipped(full, out);
  }

 private:
  void copy_but_skipped(const std::vector<double>& full, std::span<double> g) const {
    for (std::size_t i = 0; i < g.size(); ++i)
      if (i < skip_begin_ || i >= skip_end_) g[i] = full[i];
  }
  Model<double> base_;
  std::size_t skip_begin_, skip_end_;
};

static_assert(fu::BatchDifferentiableModel<SkipsEntries<true>> && !fu::BatchDifferentiableModel<SkipsEntries<false>>);
static_assert(fu::SampledFisherModel<SkipsEntries<false>> && fu::TwiceDifferentiableModel<SkipsEntries<false>>);
static_assert(fu::RegularizedModel<SkipsEntries<true>>);

// Runs fn(model) on a fresh copy; requires ModelContractError naming entries 2..3 and unchanged parameters.
template <bool Batched, class Fn>
void requires_contract_error(const Problem<double>& p, Fn&& fn, const std::string& what) {
  SkipsEntries<Batched> model(p.full, 2, 4);
  const std::vector<double> before(model.parameters().begin(), model.parameters().end());
  std::string message = "(no error)";
  try {
    fn(model);
  } catch (const fu::ModelContractError& e) {
    message = e.what();
  } catch (const std::exception& e) {
    message = std::string("other exception: ") + e.what();
  }
  INFO(what << (Batched ? " (batched model)" : " (per-sample model)") << ": " << message);
  CHECK(message.find("did not write entries 2..3 of its") != std::string::npos);
  const std::vector<double> after(model.parameters().begin(), model.parameters().end());
  CHECK(after == before);
}

template <bool Batched>
void every_unlearner_reports_unwritten_entries() {
  const auto p = make_problem<double>(40, 6, 4, 1e-2, 31);
  const auto forget = p.forget();
  const auto retain = p.retain();
  using M = SkipsEntries<Batched>;

  requires_contract_error<Batched>(p, [&](M& m) { fu::FisherRemoval<fu::WoodburyFisher<double>>{}.unlearn(m, forget, retain); },
                                   "FisherRemoval");
  requires_contract_error<Batched>(
      p, [&](M& m) { fu::FisherForgetting<fu::DiagonalFisher<double>>{}.unlearn(m, forget, retain); }, "FisherForgetting");
  requires_contract_error<Batched>(p, [&](M& m) { fu::NewtonRemoval{}.unlearn(m, forget, retain); }, "NewtonRemoval");
  fu::FirstOrderOptions first_order;
  first_order.steps = 3;
  requires_contract_error<Batched>(p, [&](M& m) { fu::GradientAscent(first_order).unlearn(m, forget, retain); },
                                   "GradientAscent");
  requires_contract_error<Batched>(p, [&](M& m) { fu::RetainFinetune(first_order).unlearn(m, forget, retain); },
                                   "RetainFinetune");
  requires_contract_error<Batched>(p, [&](M& m) { fu::GradientDifference(first_order).unlearn(m, forget, retain); },
                                   "GradientDifference");
  requires_contract_error<Batched>(
      p, [&](M& m) { fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>>{}.unlearn(m, forget, retain); },
      "NaturalGradientUnlearning");
  requires_contract_error<Batched>(
      p,
      [&](M& m) {
        fu::NaturalGradientUnlearning<fu::DiagonalFisher<double>, fu::NaturalGradient, fu::NpoObjective>{}.unlearn(
            m, forget, retain);
      },
      "NaturalGradientUnlearning with NPO");
  // The building blocks on their own.
  requires_contract_error<Batched>(p, [&](M& m) { (void)fu::collect_gradients(m, retain); }, "collect_gradients");
  requires_contract_error<Batched>(
      p, [&](M& m) { (void)fu::collect_gradients(m, retain, fu::GradientCollection{fu::FisherKind::monte_carlo}); },
      "collect_gradients (Monte Carlo)");
  requires_contract_error<Batched>(
      p,
      [&](M& m) {
        fu::Vector<double> g;
        (void)fu::detail::objective_gradient(m, retain, g);
      },
      "objective_gradient");
}

}  // namespace

TEST_CASE("Gradient contract: every unlearner reports a gradient with unwritten entries (per-sample model)") {
  every_unlearner_reports_unwritten_entries<false>();
}

TEST_CASE("Gradient contract: every unlearner reports a gradient with unwritten entries (batched model)") {
  every_unlearner_reports_unwritten_entries<true>();
}

TEST_CASE("Gradient contract: the Hessian assembled from Hessian-vector products reports unwritten entries") {
  const auto p = make_problem<double>(20, 5, 2, 1e-2, 7);
  const SkipsEntries<false> model(p.full, 1, 2);
  std::string message;
  try {
    (void)fu::objective_hessian(model, p.retain());
  } catch (const fu::ModelContractError& e) {
    message = e.what();
  }
  CHECK(message.find("did not write entries 1..1 of its Hessian-vector product") != std::string::npos);
}

TEST_CASE("Gradient contract: a NaN the model computes is a NonFiniteError, not an unwritten entry") {
  double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> g{1.0, nan, -nan, std::numeric_limits<double>::infinity(), 0.0 * nan};
  CHECK_NOTHROW(fu::detail::require_written(std::span<const double>(g), "test", "gradient(sample, g)"));
  // Arithmetic on finite numbers gives the default NaN, never the marker.
  volatile double zero = 0.0;
  const double computed = zero / zero;
  g[0] = computed;
  CHECK_NOTHROW(fu::detail::require_written(std::span<const double>(g), "test", "gradient(sample, g)"));
  std::vector<float> gf{1.0f, 0.0f / static_cast<float>(zero), 2.0f};
  CHECK_NOTHROW(fu::detail::require_written(std::span<const float>(gf), "test", "gradient(sample, g)"));

  // Marked entries: the first run and the total are named (float and double).
  std::vector<float> marked(10, 1.0f);
  fu::detail::mark_unwritten(std::span<float>(marked).subspan(3, 3));
  marked[8] = fu::detail::unwritten_marker<float>();
  std::string message;
  try {
    fu::detail::require_written(std::span<const float>(marked), "who", "gradient(sample, g)");
  } catch (const fu::ModelContractError& e) {
    message = e.what();
  }
  CHECK(message.find("who: the model did not write entries 3..5 of its gradient (4 of 10 entries") !=
        std::string::npos);
  CHECK_THROWS_AS(fu::detail::require_written(std::span<const float>(marked), "who", "g"), fu::InvalidArgument);
}
