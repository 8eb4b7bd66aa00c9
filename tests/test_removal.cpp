// FisherRemoval: the normalisation reproduces Newton removal when F is the exact Hessian; the
// Monte-Carlo Fisher converges to it; options (batches, clipping, parameter groups) do what they say.
#include <catch2/catch.hpp>

#include "fisher_unlearn/baselines.hpp"
#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/removal.hpp"
#include "reference_fisher.hpp"
#include "unlearning_problem.hpp"

#include <Eigen/Cholesky>

#include <cmath>
#include <cstdio>
#include <limits>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

static_assert(fu::NewtonUnlearner<fu::FisherRemoval<fu::WoodburyFisher<double>>, Model<double>>);
static_assert(fu::NewtonUnlearner<fu::FisherRemoval<fu::DiagonalFisher<float>>, Model<float>>);
static_assert(fu::NewtonUnlearner<fu::FisherRemoval<ReferenceFisher<double>>, Model<double>>);

namespace {

/// Gradients whose mean outer product is exactly the retain set's data Hessian at θ:
/// columns √d·L with LLᵀ = H̄_R − λI. An estimator fed these holds F = H̄_R when its damping is λ.
Eigen::MatrixXd hessian_square_root_gradients(const Model<double>& model, std::span<const Sample<double>> retain) {
  Eigen::MatrixXd h = fu::objective_hessian(model, retain);
  h.diagonal().array() -= model.l2_regularization();
  const Eigen::MatrixXd l = Eigen::LLT<Eigen::MatrixXd>(h).matrixL();
  return std::sqrt(static_cast<double>(h.rows())) * l;
}

/// Logistic regression with two named parameter groups: "weights" (all but the last) and "bias".
struct GroupedLogistic {
  using Scalar = double;
  using Sample = Model<double>::Sample;
  Model<double> inner;
  std::size_t num_parameters() const { return inner.num_parameters(); }
  std::span<double> parameters() { return inner.parameters(); }
  std::span<const double> parameters() const { return inner.parameters(); }
  double l2_regularization() const { return inner.l2_regularization(); }
  double loss(const Sample& s) const { return inner.loss(s); }
  double gradient(const Sample& s, std::span<double> g) const { return inner.gradient(s, g); }
  std::vector<fu::ParameterGroup> parameter_groups() const {
    const std::size_t d = inner.num_parameters();
    return {{"weights", 0, d - 1}, {"bias", d - 1, 1}};
  }
};
static_assert(fu::HasParameterGroups<GroupedLogistic>);

}  // namespace

TEMPLATE_TEST_CASE("FisherRemoval: with F = the exact retain Hessian and eta = 1 it is the Newton removal step", "",
                   ReferenceFisher<double>, fu::WoodburyFisher<double>, fu::BlockDiagonalFisher<double>) {
  for (const std::size_t k : {std::size_t{1}, std::size_t{10}, std::size_t{50}}) {
    auto p = make_problem<double>(1000, 20, k, 1e-2, 40 + k);
    Model<double> newton = p.full, fisher_model = p.full;
    fu::NewtonRemoval{}.unlearn(newton, p.forget(), p.retain());
    TestType fisher(20, 1e-2);
    fisher.add_gradients(hessian_square_root_gradients(p.full, p.retain()));
    fisher.finalize();
    const auto report = fu::FisherRemoval<TestType>{}.unlearn(fisher_model, p.forget(), p.retain(), fisher);
    const double err = (params(fisher_model) - params(newton)).norm() / (params(newton) - params(p.full)).norm();
    CHECK(err < 1e-9);
    CHECK(report.damping == Approx(1e-2));
    CHECK(report.fisher_gradients == 20);
    CHECK(report.iterations == 1);
  }
}

namespace {

/// ‖θ' − θ*_R‖ / ‖θ − θ*_R‖ where θ is the full-data optimum: 0 = retraining, 1 = nothing done.
template <class Scalar>
double distance_to_retrained(const Problem<Scalar>& p, const Model<Scalar>& m) {
  return (params(m) - params(p.retrained)).norm() / (params(p.full) - params(p.retrained)).norm();
}

template <class Estimator>
Model<double> monte_carlo_removal(const Problem<double>& p, std::size_t draws, std::uint64_t seed,
                                  fu::UnlearningReport* report = nullptr) {
  fu::FisherRemovalOptions o;
  o.damping = p.full.l2_regularization();  // E[F_MC] = data Hessian; the damping is the L2 term
  o.fisher_samples = p.retain().size();
  o.gradients = {fu::FisherKind::monte_carlo, draws, seed};
  Model<double> model = p.full;
  const auto r = fu::FisherRemoval<Estimator>(o).unlearn(model, p.forget(), p.retain());
  if (report) *report = r;
  return model;
}

}  // namespace

TEST_CASE("FisherRemoval: the Monte-Carlo Fisher (one dense block) approaches Newton removal at about S^(-1/2)") {
  auto p = make_problem<double>(1000, 20, 10, 1e-2, 77);
  Model<double> newton = p.full;
  fu::NewtonRemoval{}.unlearn(newton, p.forget(), p.retain());
  const double newton_step = (params(newton) - params(p.full)).norm();
  std::vector<double> errors;
  for (const std::size_t s : {1, 4, 16, 64}) {
    double sum = 0;
    for (std::uint64_t seed = 1; seed <= 3; ++seed)  // average a few seeds: the rate is a mean property
      sum += (params(monte_carlo_removal<fu::BlockDiagonalFisher<double>>(p, s, seed)) - params(newton)).norm() /
             newton_step;
    errors.push_back(sum / 3);
    std::printf("Monte-Carlo Fisher (BlockDiagonalFisher, one block), S=%zu: ||theta_F - theta_Newton|| / ||step|| "
                "= %.4f\n", s, errors.back());
  }
  const double slope = std::log(errors.front() / errors.back()) / std::log(64.0);
  std::printf("fitted rate: error ~ S^(-%.2f)\n", slope);
  CHECK(errors.back() < 0.05);
  CHECK(slope > 0.35);
  CHECK(slope < 0.7);
}

TEST_CASE("FisherRemoval: with the Monte-Carlo Fisher it is closer to retraining than gradient ascent tuned to the "
          "same forget-loss increase") {
  auto p = make_problem<double>(1000, 20, 10, 1e-2, 101);
  fu::UnlearningReport rf;
  const Model<double> fisher = monte_carlo_removal<fu::BlockDiagonalFisher<double>>(p, 16, 1, &rf);
  fu::FirstOrderOptions o;
  o.learning_rate = 1e-3;
  o.steps = 100000;
  o.batch_size = 0;
  o.target_forget_increase = rf.forget_loss_after - rf.forget_loss_before;
  Model<double> ascent = p.full;
  const auto ra = fu::GradientAscent(o).unlearn(ascent, p.forget(), p.retain());
  REQUIRE(ra.notes.find("reached") != std::string::npos);
  REQUIRE(ra.notes.find("NOT") == std::string::npos);
  const double d_fisher = distance_to_retrained(p, fisher), d_ascent = distance_to_retrained(p, ascent);
  std::printf("distance to retrained: FisherRemoval (MC, S=16) %.4f, GradientAscent to the same forget-loss increase "
              "%.4f (%zu steps)\n", d_fisher, d_ascent, ra.iterations);
  CHECK(d_fisher < 0.5 * d_ascent);
}

TEST_CASE("FisherRemoval: the empirical Fisher can be a worse preconditioner than none; the Monte-Carlo one is not") {
  // Problem A: well-specified, moderate signal. Problem B: well fitted (d = 100, strong signal, weak L2),
  // where most training points are confidently right, (σ − y)² ≪ σ(1 − σ), and the empirical Fisher
  // underestimates the curvature badly. "None" is the raw forget gradient with the scale an oracle
  // would choose (the point of that ray closest to the retrained optimum): no preconditioner, at its best.
  struct Case { std::size_t d; double l2, signal; bool expect_empirical_worse_than_none; };
  for (const Case c : {Case{20, 1e-2, 3.0, false}, Case{100, 1e-3, 10.0, true}}) {
    auto p = make_problem<double>(1000, c.d, 10, c.l2, 202, c.signal);
    fu::FisherRemovalOptions o;
    o.damping = c.l2;
    o.fisher_samples = p.retain().size();
    Model<double> empirical = p.full;
    fu::FisherRemoval<fu::BlockDiagonalFisher<double>>(o).unlearn(empirical, p.forget(), p.retain());
    const Model<double> mc = monte_carlo_removal<fu::BlockDiagonalFisher<double>>(p, 16, 1);
    fu::Vector<double> g;
    fu::detail::objective_gradient(p.full, p.forget(), g);
    const Eigen::VectorXd to_retrained = params(p.retrained) - params(p.full);
    const double none = (to_retrained - (g.dot(to_retrained) / g.squaredNorm()) * g).norm() / to_retrained.norm();
    const double d_emp = distance_to_retrained(p, empirical), d_mc = distance_to_retrained(p, mc);
    std::printf("d=%zu signal=%.0f: distance to retrained: empirical Fisher %.3f, Monte-Carlo Fisher (S=16) %.3f, "
                "no preconditioner (oracle scale) %.3f\n", c.d, c.signal, d_emp, d_mc, none);
    CHECK(d_mc < d_emp);
    CHECK(d_mc < none);
    if (c.expect_empirical_worse_than_none) CHECK(d_emp > 2 * none);
  }
}

TEST_CASE("FisherRemoval: several steps over forget batches add up to the one-step removal") {
  auto p = make_problem<double>(1000, 20, 40, 1e-2, 5);
  ReferenceFisher<double> fisher(20, 1e-2);
  fisher.add_gradients(hessian_square_root_gradients(p.full, p.retain()));
  fisher.finalize();
  Model<double> one = p.full, batched = p.full;
  fu::FisherRemoval<ReferenceFisher<double>>{}.unlearn(one, p.forget(), p.retain(), fisher);
  fu::FisherRemovalOptions o;
  o.forget_batch_size = 8;
  o.iterations = 3;
  const auto r = fu::FisherRemoval<ReferenceFisher<double>>(o).unlearn(batched, p.forget(), p.retain(), fisher);
  CHECK(r.iterations == 15);
  const double step = (params(one) - params(p.full)).norm();
  const double diff = (params(batched) - params(one)).norm() / step;
  const double err_one = (params(one) - params(p.retrained)).norm() / step;
  const double err_batched = (params(batched) - params(p.retrained)).norm() / step;
  std::printf("k=40 removed in 15 steps: differs from one step by %.3e of the step; distance to retrained %.3e "
              "(one step %.3e)\n", diff, err_batched, err_one);
  CHECK(diff > 1e-6);  // the gradients really were recomputed
  CHECK(diff < 0.1);   // and the portions add up to the same removal
}

TEST_CASE("FisherRemoval: max_step_norm clips the step and says so in the notes") {
  auto p = make_problem<double>(400, 10, 20, 1e-2, 8);
  fu::FisherRemovalOptions o;
  o.damping = 1e-2;
  Model<double> free_model = p.full, clipped = p.full;
  const auto r_free = fu::FisherRemoval<ReferenceFisher<double>>(o).unlearn(free_model, p.forget(), p.retain());
  o.max_step_norm = 0.25 * r_free.step_norm;
  const auto r = fu::FisherRemoval<ReferenceFisher<double>>(o).unlearn(clipped, p.forget(), p.retain());
  CHECK(r.step_norm == Approx(o.max_step_norm).epsilon(1e-12));
  CHECK(r.notes.find("clipped") != std::string::npos);
  CHECK(r_free.notes.find("clipped") == std::string::npos);
  // Clipping shortens the step without turning it.
  const Eigen::VectorXd a = params(clipped) - params(p.full), b = params(free_model) - params(p.full);
  CHECK(a.normalized().dot(b.normalized()) == Approx(1.0).epsilon(1e-12));
}

TEST_CASE("FisherRemoval: restricted to a parameter group, only that group moves, by the sub-Fisher's step") {
  auto p = make_problem<double>(500, 8, 10, 1e-2, 12);
  GroupedLogistic model{p.full};
  fu::FisherRemovalOptions o;
  o.damping = 0.05;
  o.parameter_groups = {"weights"};
  const auto r = fu::FisherRemoval<ReferenceFisher<double>>(o).unlearn(model, p.forget(), p.retain());
  const Eigen::VectorXd before = params(p.full), after = fu::as_eigen(model.parameters());
  CHECK(after[7] == before[7]);  // the bias did not move, bitwise
  // Reference: F_w = 0.05 I + mean g_w g_wᵀ over every retain sample, step = (k/(n−k)) F_w⁻¹ ∇J_F restricted.
  const auto G = fu::collect_gradients(p.full, p.retain());
  const Eigen::MatrixXd gw = G.topRows(7);
  const Eigen::MatrixXd f = 0.05 * Eigen::MatrixXd::Identity(7, 7) + gw * gw.transpose() / 490.0;
  fu::Vector<double> gf;
  fu::detail::objective_gradient(p.full, p.forget(), gf);
  const Eigen::VectorXd expected = before.head(7) + (10.0 / 490.0) * f.ldlt().solve(gf.head(7));
  CHECK(relative_error(after.head(7), expected) < 1e-12);
  CHECK(r.fisher_gradients == 490);
  CHECK_THROWS_AS(
      [&] {
        fu::FisherRemovalOptions bad = o;
        bad.parameter_groups = {"head"};
        return fu::FisherRemoval<ReferenceFisher<double>>(bad).unlearn(model, p.forget(), p.retain());
      }(),
      fu::InvalidArgument);
}

TEST_CASE("FisherRemoval: a float model and float estimator agree with double to float accuracy") {
  auto p = make_problem<double>(400, 12, 8, 1e-2, 31);
  std::vector<Sample<float>> data_f;
  for (const auto& s : p.data) data_f.push_back({s.x.cast<float>(), static_cast<float>(s.y)});
  Model<float> mf(12, 1e-2f);
  fu::as_eigen(mf.parameters()) = params(p.full).cast<float>();
  Model<double> md = p.full;
  fu::FisherRemovalOptions o;
  o.damping = 1e-2;
  fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(md, p.forget(), p.retain());
  const auto span = std::span<const Sample<float>>(data_f);
  fu::FisherRemoval<fu::WoodburyFisher<float>>(o).unlearn(mf, span.first(8), span.subspan(8));
  CHECK((params(mf) - params(md)).norm() / (params(md) - params(p.full)).norm() < 1e-3);
}

TEST_CASE("FisherRemoval: bad input throws a typed exception and leaves the model bitwise unchanged") {
  auto p = make_problem<double>(300, 10, 5, 1e-2, 3);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::as_eigen(model.parameters());
  using Removal = fu::FisherRemoval<fu::WoodburyFisher<double>>;

  SECTION("empty forget set") { CHECK_THROWS_AS(Removal{}.unlearn(model, {}, p.retain()), fu::InvalidArgument); }
  SECTION("m = 0") {
    fu::FisherRemovalOptions o;
    o.fisher_samples = 0;
    CHECK_THROWS_AS(Removal(o), fu::InvalidArgument);
  }
  SECTION("damping < 0, NaN, Inf, and a grid value <= 0 (damping 0 is the default: the model's L2)") {
    for (double bad : {-1e-3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
      fu::FisherRemovalOptions o;
      o.damping = bad;
      CHECK_THROWS_AS(Removal(o), fu::InvalidArgument);
    }
    fu::FisherRemovalOptions o;
    o.automatic_damping = fu::DampingSearch{};
    o.automatic_damping->grid = {1e-3, 0.0};
    CHECK_THROWS_AS(Removal(o), fu::InvalidArgument);
  }
  SECTION("a supplied estimator of the wrong dimension") {
    fu::WoodburyFisher<double> wrong(11, 1e-2);
    wrong.add_gradients(Eigen::MatrixXd::Random(11, 4));
    wrong.finalize();
    CHECK_THROWS_AS(Removal{}.unlearn(model, p.forget(), p.retain(), wrong), fu::InvalidArgument);
  }
  SECTION("a supplied estimator that was never finalized") {
    fu::WoodburyFisher<double> raw(10, 1e-2);
    raw.add_gradients(Eigen::MatrixXd::Random(10, 4));
    CHECK_THROWS_AS(Removal{}.unlearn(model, p.forget(), p.retain(), raw), fu::StateError);
  }
  SECTION("a sample of the wrong size") {
    auto bad = std::vector<Sample<double>>(p.forget().begin(), p.forget().end());
    bad[1].x = Eigen::VectorXd::Ones(9);
    CHECK_THROWS_AS(Removal{}.unlearn(model, std::span<const Sample<double>>(bad), p.retain()), fu::InvalidArgument);
  }
  SECTION("NaN in a retain gradient (caught while collecting the Fisher gradients)") {
    // Only the Fisher sees this sample's gradient first: the loss pass sees NaN too, so both paths are
    // typed; either way nothing is written.
    auto bad = std::vector<Sample<double>>(p.retain().begin(), p.retain().end());
    bad[3].x[0] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(Removal{}.unlearn(model, p.forget(), std::span<const Sample<double>>(bad)), fu::NonFiniteError);
  }
  SECTION("Inf in a forget gradient") {
    auto bad = std::vector<Sample<double>>(p.forget().begin(), p.forget().end());
    bad[0].x[4] = std::numeric_limits<double>::infinity();
    CHECK_THROWS_AS(Removal{}.unlearn(model, std::span<const Sample<double>>(bad), p.retain()), fu::NonFiniteError);
  }
  SECTION("a step that is not finite (the model is rolled back after it was moved)") {
    // max_step_norm = inf and a damping of 1e-300: the F⁻¹ step overflows.
    fu::FisherRemovalOptions o;
    o.damping = 1e-300;
    o.fisher_samples = 3;  // rank 3 of 10: seven directions see only the damping
    CHECK_THROWS_AS(fu::FisherRemoval<ReferenceFisher<double>>(o).unlearn(model, p.forget(), p.retain()),
                    fu::NonFiniteError);
  }
  SECTION("monte_carlo with S = 0") {
    fu::FisherRemovalOptions o;
    o.gradients = {fu::FisherKind::monte_carlo, 0, 1};
    CHECK_THROWS_AS(Removal(o), fu::InvalidArgument);
  }
  CHECK(bitwise_equal(model, saved));
}

TEST_CASE("FisherRemoval: damping 0 (the default) is the model's l2_regularization(), and the note says so") {
  auto p = make_problem<double>(150, 5, 6, 2e-2, 61);
  Model<double> by_default = p.full, explicit_l2 = p.full;
  const auto r = fu::FisherRemoval<fu::WoodburyFisher<double>>().unlearn(by_default, p.forget(), p.retain());
  fu::FisherRemovalOptions o;
  o.damping = 2e-2;
  fu::FisherRemoval<fu::WoodburyFisher<double>>(o).unlearn(explicit_l2, p.forget(), p.retain());
  CHECK(r.damping == Approx(2e-2).epsilon(1e-12));
  CHECK(bitwise_equal(by_default, fu::Vector<double>(fu::as_eigen(explicit_l2.parameters()))));
  CHECK(r.notes.find("default: the model's l2_regularization()") != std::string::npos);
}
