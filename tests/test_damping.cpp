// Damping: the spectrum-relative rule λ = α·tr(F)/d on a synthetic spectrum; the grid search picks the
// candidate of least retain objective, never an exploding step, flags a choice on the grid's edge, and
// lands within a stated margin of the best fixed damping of its grid.
#include <catch2/catch.hpp>

#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/dense.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/removal.hpp"
#include "reference_fisher.hpp"
#include "unlearning_problem.hpp"

#include <Eigen/QR>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <type_traits>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

namespace {

template <class Scalar>
double distance_to_retrained(const Problem<Scalar>& p, const Model<Scalar>& m) {
  return (params(m) - params(p.retrained)).norm() / (params(p.full) - params(p.retrained)).norm();
}

}  // namespace

TEST_CASE("log_grid: evenly spaced in log10, endpoints exact; bad bounds throw") {
  const auto g = fu::log_grid(1e-6, 1.0, 7);
  REQUIRE(g.size() == 7);
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == Approx(std::pow(10.0, -6.0 + static_cast<double>(i))));
  CHECK(fu::log_grid(0.5, 0.5, 1) == std::vector<double>{0.5});
  CHECK_THROWS_AS(fu::log_grid(0.0, 1.0, 3), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::log_grid(1.0, 0.1, 3), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::log_grid(0.1, 1.0, 0), fu::InvalidArgument);
}

TEST_CASE("search_damping: picks the least score, ties to the larger damping, skips non-finite candidates") {
  ReferenceFisher<double> f(3, 0.5);
  f.add_gradients(Eigen::MatrixXd::Random(3, 5));
  f.finalize();
  fu::DampingSearch s;
  s.grid = {1e-3, 1e-2, 1e-1, 1.0};
  SECTION("a unique minimum") {
    const auto r = fu::search_damping(f, s, [](double l) { return std::pow(std::log10(l) + 2.2, 2); });
    CHECK(r.damping == 1e-2);
    CHECK(r.best_index == 1);
    CHECK(f.damping() == 1e-2);  // left at the chosen value
    CHECK(r.summary().find("*0.01") != std::string::npos);
  }
  SECTION("ties go to the larger damping") {
    const auto r = fu::search_damping(f, s, [](double l) { return l < 0.5 ? 1.0 : 1.0; });
    CHECK(r.damping == 1.0);
  }
  SECTION("NaN, Inf and NonFiniteError score +inf") {
    const auto r = fu::search_damping(f, s, [](double l) -> double {
      if (l == 1e-3) return std::numeric_limits<double>::quiet_NaN();
      if (l == 1e-2) throw fu::NonFiniteError("blew up");
      if (l == 1e-1) return -std::numeric_limits<double>::infinity();
      return 7.0;
    });
    CHECK(r.damping == 1.0);
    CHECK(std::isinf(r.scores[0]));
    CHECK(std::isinf(r.scores[1]));
    CHECK(std::isinf(r.scores[2]));
  }
  SECTION("no finite candidate is a NumericalError") {
    CHECK_THROWS_AS(fu::search_damping(f, s, [](double) { return std::numeric_limits<double>::infinity(); }),
                    fu::NumericalError);
  }
  SECTION("an empty grid or a non-positive value is rejected") {
    s.grid = {};
    CHECK_THROWS_AS(fu::search_damping(f, s, [](double) { return 0.0; }), fu::InvalidArgument);
    s.grid = {1e-3, -1.0};
    CHECK_THROWS_AS(fu::search_damping(f, s, [](double) { return 0.0; }), fu::InvalidArgument);
  }
}

TEST_CASE("Damping: with m = d gradients and small damping the Fisher step blows up; the automatic rule does not") {
  auto p = make_problem<double>(1000, 20, 10, 1e-2, 101);
  Model<double> newton = p.full;
  const auto rn = fu::NewtonRemoval{}.unlearn(newton, p.forget(), p.retain());
  fu::FisherRemovalOptions o;
  o.fisher_samples = 20;  // m = d: F's data part has rank ≤ 20 and tiny eigenvalues
  o.damping = 1e-6;
  Model<double> tiny = p.full;
  const auto rt = fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(tiny, p.forget(), p.retain());
  o.automatic_damping = fu::DampingSearch{};  // 1e-6 ... 1
  Model<double> automatic = p.full;
  const auto ra = fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(automatic, p.forget(), p.retain());
  std::printf("m = d = 20: Newton step %.3g; Fisher step with damping 1e-6: %.3g (distance to retrained %.3g); "
              "automatic damping %.0e: step %.3g, distance %.3f\n",
              rn.step_norm, rt.step_norm, distance_to_retrained(p, tiny), ra.damping, ra.step_norm,
              distance_to_retrained(p, automatic));
  CHECK(rt.step_norm > 100 * rn.step_norm);
  CHECK(distance_to_retrained(p, tiny) > 100);
  CHECK(ra.damping >= 1e-2);
  CHECK(distance_to_retrained(p, automatic) < 1.0);
  CHECK(ra.notes.find("damping search") != std::string::npos);
}

namespace {

struct MarginResult {
  double automatic = 0, best_fixed = 0;
};

/// Runs every fixed damping of the grid and the automatic rule with the same estimator and Fisher kind.
template <class Estimator, class Factory>
MarginResult auto_vs_fixed(const Problem<double>& p, const Factory& make, std::size_t m, fu::GradientCollection kind,
                           const std::vector<double>& grid) {
  fu::FisherRemovalOptions o;
  o.fisher_samples = m;
  o.gradients = kind;
  MarginResult out;
  out.best_fixed = std::numeric_limits<double>::infinity();
  double best_fixed_retain = std::numeric_limits<double>::infinity();
  for (double lambda : grid) {
    o.damping = lambda;
    Model<double> model = p.full;
    const auto r = fu::FisherRemoval<Estimator>(o, make).unlearn(model, p.forget(), p.retain());
    out.best_fixed = std::min(out.best_fixed, distance_to_retrained(p, model));
    best_fixed_retain = std::min(best_fixed_retain, r.retain_loss_after);
  }
  o.automatic_damping = fu::DampingSearch{};
  o.automatic_damping->grid = grid;
  Model<double> model = p.full;
  const auto r = fu::FisherRemoval<Estimator>(o, make).unlearn(model, p.forget(), p.retain());
  out.automatic = distance_to_retrained(p, model);
  // By construction the automatic rule attains the least J_retain of its grid.
  CHECK(r.retain_loss_after == Approx(best_fixed_retain).epsilon(1e-12));
  return out;
}

}  // namespace

// The rule minimises J_retain, i.e. the distance to the retrained optimum in the Hessian norm; it
// attains the least J_retain of its grid exactly (checked in auto_vs_fixed). In the Euclidean distance
// reported here it can be somewhat worse than the best fixed damping: the stated margin is 25%
// (the worst case observed on these problems is 18%, d = 50, one block, Monte-Carlo).
TEST_CASE("Damping: the automatic rule is within 25% of the best fixed damping of its grid on the test problems") {
  const std::vector<double> grid = fu::log_grid(1e-4, 1.0, 5);
  struct Case { std::size_t d; double l2, signal; std::uint64_t seed; };
  double worst_ratio = 0;
  for (const Case c : {Case{20, 1e-2, 3.0, 101}, Case{50, 1e-3, 8.0, 202}}) {
    auto p = make_problem<double>(1000, c.d, 10, c.l2, c.seed, c.signal);
    const std::size_t all = p.retain().size();
    for (const fu::GradientCollection& kind :
         {fu::GradientCollection{fu::FisherKind::empirical, 1, 1}, fu::GradientCollection{fu::FisherKind::monte_carlo, 4, 1}}) {
      const auto report = [&](const char* name, MarginResult r) {
        std::printf("d=%zu %-28s %-11s: automatic %.4f, best fixed %.4f (ratio %.3f)\n", c.d, name,
                    fu::to_string(kind.kind), r.automatic, r.best_fixed, r.automatic / r.best_fixed);
        worst_ratio = std::max(worst_ratio, r.automatic / r.best_fixed);
        CHECK(r.automatic <= 1.25 * r.best_fixed);
      };
      report("diagonal", auto_vs_fixed<fu::DiagonalFisher<double>>(
                             p, [](std::size_t d, double l) { return fu::DiagonalFisher<double>(d, l); }, all, kind, grid));
      report("block_diagonal (one block)",
             auto_vs_fixed<fu::BlockDiagonalFisher<double>>(
                 p, [](std::size_t d, double l) { return fu::BlockDiagonalFisher<double>(d, l); }, all, kind, grid));
      report("woodbury (m = d)",
             auto_vs_fixed<fu::WoodburyFisher<double>>(
                 p, [](std::size_t d, double l) { return fu::WoodburyFisher<double>(d, l); }, c.d, kind, grid));
    }
  }
  std::printf("worst automatic / best-fixed distance ratio: %.3f\n", worst_ratio);
}

TEST_CASE("Damping: a supplied estimator gets its own damping back after the automatic search") {
  auto p = make_problem<double>(300, 10, 5, 1e-2, 4);
  fu::WoodburyFisher<double> fisher(10, 0.123);
  fisher.add_gradients(fu::collect_gradients(p.full, p.retain()));
  fisher.finalize();
  fu::FisherRemovalOptions o;
  o.automatic_damping = fu::DampingSearch{};
  Model<double> model = p.full;
  const auto r = fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(model, p.forget(), p.retain(), fisher);
  CHECK(fisher.damping() == 0.123);
  CHECK(r.damping != 0.123);
  // The search with a subsampled score set still returns a grid value.
  o.automatic_damping->score_samples = 50;
  Model<double> model2 = p.full;
  const auto r2 = fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(model2, p.forget(), p.retain(), fisher);
  CHECK(std::find(o.automatic_damping->grid.begin(), o.automatic_damping->grid.end(), r2.damping) !=
        o.automatic_damping->grid.end());
}

namespace {

/// d×m gradients whose (1/m)GGᵀ has the given eigenvalues in a random orthonormal basis Q:
/// G = √m·Q·diag(√σ) (m = d columns).
Eigen::MatrixXd gradients_with_spectrum(const Eigen::VectorXd& sigma, std::uint64_t seed) {
  const Eigen::Index d = sigma.size();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::MatrixXd a(d, d);
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
  const Eigen::MatrixXd q = qr.householderQ();
  return std::sqrt(static_cast<double>(d)) * q * sigma.cwiseSqrt().asDiagonal();
}

}  // namespace

TEMPLATE_TEST_CASE("spectrum_relative_damping: lambda = alpha tr(F)/d on a synthetic spectrum, for every estimator "
                   "that reports its trace", "", fu::DiagonalFisher<double>, fu::WoodburyFisher<double>,
                   fu::DenseFisher<double>, fu::BlockDiagonalFisher<double>, fu::WoodburyFisher<float>) {
  // A language-model-like spectrum: a few large eigenvalues, a long tail over six decades.
  Eigen::VectorXd sigma(12);
  for (Eigen::Index i = 0; i < 12; ++i) sigma[i] = std::pow(10.0, 2.0 - 0.5 * static_cast<double>(i));
  const double mean = sigma.sum() / 12.0;
  using Scalar = typename TestType::Scalar;
  TestType fisher(12, Scalar(1));
  fisher.add_gradients(gradients_with_spectrum(sigma, 4).cast<Scalar>());
  fisher.finalize();
  const double tolerance = std::is_same_v<Scalar, float> ? 1e-5 : 1e-12;
  CHECK(fisher.undamped_trace() == Approx(sigma.sum()).epsilon(tolerance));
  for (const double alpha : {1e-3, 1e-2, 1.0}) {
    CHECK(fu::spectrum_relative_damping(fisher, alpha) == Approx(alpha * mean).epsilon(tolerance));
  }
  CHECK(fu::spectrum_relative_damping(fisher) == Approx(1e-2 * mean).epsilon(tolerance));
  // α = 1e-2 puts λ two decades below the mean eigenvalue: half of this spectrum lies above λ (it is
  // curvature the step keeps), and only the 2 largest eigenvalues lie above 100·λ (= the mean).
  const double lambda = fu::spectrum_relative_damping(fisher);
  CHECK((sigma.array() > lambda).count() == 6);
  CHECK((sigma.array() > 100 * lambda).count() == 2);
}

TEST_CASE("spectrum_relative_damping and FisherDamping: bad input throws, an absolute damping wins") {
  CHECK(fu::spectrum_relative_damping(50.0, 10, 0.1) == Approx(0.5));
  CHECK_THROWS_AS(fu::spectrum_relative_damping(0.0, 10), fu::NumericalError);
  CHECK_THROWS_AS(fu::spectrum_relative_damping(std::nan(""), 10), fu::NonFiniteError);
  CHECK_THROWS_AS(fu::spectrum_relative_damping(1.0, 0), fu::InvalidArgument);
  CHECK_THROWS_AS(fu::spectrum_relative_damping(1.0, 3, 0.0), fu::InvalidArgument);
  fu::FisherDamping rule;
  CHECK(rule.resolve(30.0, 3) == Approx(0.1));
  rule.absolute = 0.25;
  CHECK(rule.resolve(30.0, 3) == 0.25);
  rule.absolute = -1;
  CHECK_THROWS_AS(rule.validate("test"), fu::InvalidArgument);
  fu::DiagonalFisher<double> unfinished(3, 1.0);
  CHECK_THROWS_AS(unfinished.undamped_trace(), fu::StateError);
}

TEST_CASE("search_damping: a choice on the grid's edge is flagged in the summary") {
  ReferenceFisher<double> f(3, 0.5);
  f.add_gradients(Eigen::MatrixXd::Random(3, 5));
  f.finalize();
  fu::DampingSearch s;
  s.grid = {1e-3, 1e-2, 1e-1, 1.0};
  const auto largest = fu::search_damping(f, s, [](double l) { return -l; });  // the null-step drift
  CHECK(largest.on_grid_edge());
  CHECK(largest.summary().find("LARGEST") != std::string::npos);
  const auto smallest = fu::search_damping(f, s, [](double l) { return l; });
  CHECK(smallest.on_grid_edge());
  CHECK(smallest.summary().find("SMALLEST") != std::string::npos);
  const auto inner = fu::search_damping(f, s, [](double l) { return std::pow(std::log10(l) + 1.8, 2); });
  CHECK(!inner.on_grid_edge());
  CHECK(inner.summary().find("grid's") == std::string::npos);
  s.grid = {0.1};
  CHECK(!fu::search_damping(f, s, [](double) { return 1.0; }).on_grid_edge());
}

TEST_CASE("WoodburyFisher: undamped_trace is the same in the dual and the primal form") {
  Eigen::VectorXd sigma(6);
  sigma << 5.0, 2.0, 1.0, 0.5, 0.1, 0.01;
  const Eigen::MatrixXd one = gradients_with_spectrum(sigma, 7);
  Eigen::MatrixXd three(6, 18);
  three << one, one, one;  // m = 18 > d = 6: the automatic form switches to primal; the same (1/m)GGᵀ
  fu::WoodburyFisher<double> dual(6, 1.0), primal(6, 1.0);
  dual.add_gradients(one);
  dual.finalize();
  primal.add_gradients(three);
  primal.finalize();
  REQUIRE(primal.current_form() == fu::WoodburyForm::primal);
  CHECK(dual.undamped_trace() == Approx(sigma.sum()).epsilon(1e-12));
  CHECK(primal.undamped_trace() == Approx(sigma.sum()).epsilon(1e-12));
}
