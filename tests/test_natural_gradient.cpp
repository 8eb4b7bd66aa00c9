// NaturalGradientUnlearning: one step with the exact Hessian is Newton/Fisher removal; the trust region
// holds on every step (checked with a dense fp64 F); the identity is plain gradient descent; Adam and SOUL
// equal hand-rolled fp64 references; stopping rules; the strong guarantee through the callbacks.
#include <catch2/catch.hpp>

#include "fisher_unlearn/fisher/block_diagonal.hpp"
#include "fisher_unlearn/fisher/dense.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/kfac.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/natural_gradient.hpp"
#include "fisher_unlearn/newton_removal.hpp"
#include "fisher_unlearn/removal.hpp"
#include "reference_fisher.hpp"
#include "unlearning_problem.hpp"

#include <Eigen/Cholesky>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace fu = fisher_unlearn;
using namespace unlearning_test;

static_assert(fu::NewtonUnlearner<fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>>, Model<double>>);
static_assert(fu::NewtonUnlearner<fu::NaturalGradientUnlearning<fu::DiagonalFisher<float>>, Model<float>>);
static_assert(fu::NewtonUnlearner<
              fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::AdamPreconditioner, fu::NpoObjective>,
              Model<double>>);
static_assert(fu::NewtonUnlearner<
              fu::NaturalGradientUnlearning<fu::DiagonalFisher<double>, fu::SoulPreconditioner, fu::GradientAscentObjective>,
              Model<double>>);
static_assert(fu::LayerFactoredEstimator<fu::KfacFisher<float>> && fu::LayerFactoredEstimator<fu::EkfacFisher<double>>);
static_assert(!fu::LayerFactoredEstimator<fu::WoodburyFisher<double>> && !fu::LayerFactoredEstimator<fu::DiagonalFisher<float>>);
static_assert(fu::NewtonUnlearner<fu::NaturalGradientUnlearning<fu::KfacFisher<double>>, fu::models::Mlp<double>>);
static_assert(fu::NewtonUnlearner<fu::NaturalGradientUnlearning<fu::EkfacFisher<float>, fu::AdamPreconditioner>,
                                  fu::models::Mlp<float>>);
static_assert(fu::UnlearningPreconditioner<fu::PlainGradient, Model<double>, fu::WoodburyFisher<double>>);
static_assert(!fu::UnlearningPreconditioner<int, Model<double>, fu::WoodburyFisher<double>>);

namespace {

using MlpD = fu::models::Mlp<double>;

/// L = −scale·J_forget (regulariser included): minimising it from the optimum with η = 1 and F = H̄_R is
/// the Newton removal step when scale = k/(n−k). A user-defined objective, through the concept.
struct ScaledForgetObjective {
  double scale = 1.0;
  std::string name() const { return "scaled_forget"; }
  template <fu::DifferentiableModel M>
  double value_and_gradient(const M& model, std::span<const typename M::Sample> forget,
                            fu::Vector<typename M::Scalar>& g) const {
    const double value = fu::detail::objective_gradient(model, forget, g);
    g *= -scale;
    return -scale * value;
  }
};

/// Columns √d·L with LLᵀ = H̄_R − λI: an estimator fed these with damping λ holds F = H̄_R.
Eigen::MatrixXd hessian_square_root_gradients(const Model<double>& model, std::span<const Sample<double>> retain) {
  Eigen::MatrixXd h = fu::objective_hessian(model, retain);
  h.diagonal().array() -= model.l2_regularization();
  const Eigen::MatrixXd l = Eigen::LLT<Eigen::MatrixXd>(h).matrixL();
  return std::sqrt(static_cast<double>(h.rows())) * l;
}

MlpD make_mlp(std::uint64_t seed) {
  fu::models::MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = {6};
  o.num_classes = 3;
  o.l2_regularization = 1e-3;
  o.seed = seed;
  MlpD m(o);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> normal(0.0, 0.5);
  for (double& t : m.parameters()) t = normal(rng);
  return m;
}

Eigen::VectorXd params_of(const MlpD& m) { return fu::as_eigen(m.parameters()); }

}  // namespace

TEMPLATE_TEST_CASE("NaturalGradientUnlearning: one step with eta = 1, kappa = inf and F = the exact retain Hessian is "
                   "FisherRemoval and NewtonRemoval", "",
                   ReferenceFisher<double>, fu::WoodburyFisher<double>, fu::DenseFisher<double>) {
  for (const std::size_t k : {std::size_t{1}, std::size_t{20}}) {
    auto p = make_problem<double>(600, 12, k, 1e-2, 300 + k);
    TestType fisher(12, 1e-2);
    fisher.add_gradients(hessian_square_root_gradients(p.full, p.retain()));
    fisher.finalize();
    Model<double> newton = p.full, removal = p.full, natural = p.full;
    fu::NewtonRemoval{}.unlearn(newton, p.forget(), p.retain());
    fu::FisherRemoval<TestType>{}.unlearn(removal, p.forget(), p.retain(), fisher);
    fu::NaturalGradientOptions o;
    o.max_steps = 1;
    const double scale = static_cast<double>(k) / static_cast<double>(p.retain().size());
    const fu::NaturalGradientUnlearning<TestType, fu::NaturalGradient, ScaledForgetObjective> unlearner(
        o, ScaledForgetObjective{scale});
    const auto result = unlearner.unlearn_detailed(natural, p.forget(), p.retain(), fisher);
    const double step = (params(newton) - params(p.full)).norm();
    CHECK((params(natural) - params(newton)).norm() / step < 1e-9);
    CHECK((params(natural) - params(removal)).norm() / step < 1e-12);
    CHECK(result.report.iterations == 1);
    CHECK(result.steps.size() == 1);
    CHECK(result.report.damping == Approx(1e-2));
    CHECK(result.stop_reason == "max_steps");
    CHECK(result.report.method == "natural_gradient(scaled_forget)");
  }
}

TEST_CASE("NaturalGradientUnlearning: the trust region holds on every step, measured with a dense fp64 F") {
  auto p = make_problem<double>(300, 8, 10, 1e-2, 12);
  fu::NaturalGradientOptions o;
  o.max_steps = 12;
  o.learning_rate = 1.0;
  o.max_kl = 2e-3;
  o.fisher_samples = p.retain().size();  // every retain sample: F is known exactly
  fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, fu::GradientAscentObjective> unlearner(o);
  Model<double> model = p.full;
  std::vector<Eigen::VectorXd> thetas{params(model)};
  fu::NaturalGradientCallbacks<Model<double>> callbacks;
  callbacks.stop = [&](const Model<double>& m, std::size_t) {
    thetas.push_back(params(m));
    return false;
  };
  const auto result = unlearner.unlearn_detailed(model, p.forget(), p.retain(), callbacks);
  // Reference F = λI + (1/m)GGᵀ with λ = 1e-2·tr/d, in double, from the same gradients.
  const Eigen::MatrixXd g = fu::collect_gradients(p.full, p.retain());
  const Eigen::MatrixXd f_hat = g * g.transpose() / static_cast<double>(g.cols());
  const double lambda = 1e-2 * f_hat.trace() / 8.0;
  const Eigen::MatrixXd f = f_hat + lambda * Eigen::MatrixXd::Identity(8, 8);
  CHECK(result.report.damping == Approx(lambda).epsilon(1e-12));
  REQUIRE(result.steps.size() == 12);
  REQUIRE(thetas.size() == 13);
  std::size_t hits = 0;
  for (std::size_t t = 0; t < 12; ++t) {
    const Eigen::VectorXd delta = thetas[t + 1] - thetas[t];
    const double kl = 0.5 * delta.dot(f * delta);
    CHECK(kl <= o.max_kl * (1 + 1e-10));
    CHECK(result.steps[t].predicted_kl == Approx(kl).epsilon(1e-9));
    CHECK(result.steps[t].step_norm == Approx(delta.norm()).epsilon(1e-12));
    if (result.steps[t].trust_region_hit) {
      ++hits;
      CHECK(result.steps[t].unconstrained_predicted_kl > o.max_kl);
      CHECK(kl == Approx(o.max_kl).epsilon(1e-9));
    }
  }
  CHECK(hits > 0);  // unbounded ascent: the steps must have been cut
  CHECK(hits == result.trust_region_hits);
  CHECK(result.report.notes.find("trust region") != std::string::npos);
  CHECK(result.report.forget_loss_after > result.report.forget_loss_before);
}

namespace {
/// L = ½‖θ − c‖²: a forget objective with a floor, so that steps of a fixed predicted KL overshoot it
/// and zigzag (what the trust radius shrink is for).
struct QuadraticObjective {
  Eigen::VectorXd centre;
  std::string name() const { return "quadratic"; }
  double value_and_gradient(const Model<double>& model, std::span<const Sample<double>>, fu::Vector<double>& g) const {
    g = params(model) - centre;
    return 0.5 * g.squaredNorm();
  }
};
}  // namespace

TEST_CASE("NaturalGradientUnlearning: trust_shrink shrinks kappa after every rise of the forget objective, "
          "holds on every step (dense fp64 F), damps the zigzag, and 1 is bitwise the fixed trust region") {
  auto p = make_problem<double>(300, 8, 10, 1e-2, 31);
  fu::NaturalGradientOptions o;
  o.max_steps = 40;
  o.learning_rate = 1e3;  // every step on the boundary: fixed-length steps
  o.max_kl = 2e-3;
  o.fisher_samples = p.retain().size();
  QuadraticObjective objective{params(p.full) + 0.5 * Eigen::VectorXd::Ones(8)};
  using U = fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, QuadraticObjective>;
  const auto run = [&](double shrink, std::vector<Eigen::VectorXd>* thetas) {
    fu::NaturalGradientOptions oo = o;
    oo.trust_shrink = shrink;
    Model<double> model = p.full;
    fu::NaturalGradientCallbacks<Model<double>> cb;
    if (thetas) {
      thetas->push_back(params(model));
      cb.stop = [thetas](const Model<double>& m, std::size_t) {
        thetas->push_back(params(m));
        return false;
      };
    }
    auto r = U(oo, objective).unlearn_detailed(model, p.forget(), p.retain(), cb);
    return std::make_pair(r, params(model));
  };
  const auto [fixed, fixed_theta] = run(1.0, nullptr);
  const auto [old_default, old_theta] = [&] {
    Model<double> model = p.full;
    auto r = U(o, objective).unlearn_detailed(model, p.forget(), p.retain());
    return std::make_pair(r, params(model));
  }();
  CHECK(fixed_theta == old_theta);  // bitwise: 1 is the old, fixed trust region
  std::vector<Eigen::VectorXd> thetas;
  const auto [shrunk, shrunk_theta] = run(0.5, &thetas);
  const Eigen::MatrixXd g = fu::collect_gradients(p.full, p.retain());
  const Eigen::MatrixXd f_hat = g * g.transpose() / static_cast<double>(g.cols());
  const Eigen::MatrixXd f = f_hat + (1e-2 * f_hat.trace() / 8.0) * Eigen::MatrixXd::Identity(8, 8);
  REQUIRE(shrunk.steps.size() == 40);
  std::size_t rises = 0, fixed_rises = 0;
  for (std::size_t t = 0; t < shrunk.steps.size(); ++t) {
    if (t > 0 && shrunk.steps[t].objective > shrunk.steps[t - 1].objective) ++rises;
    if (t > 0 && fixed.steps[t].objective > fixed.steps[t - 1].objective) ++fixed_rises;
    CHECK(shrunk.steps[t].trust_radius == o.max_kl * std::pow(0.5, static_cast<double>(rises)));
    CHECK(fixed.steps[t].trust_radius == o.max_kl);
    const Eigen::VectorXd delta = thetas[t + 1] - thetas[t];
    CHECK(0.5 * delta.dot(f * delta) <= shrunk.steps[t].trust_radius * (1 + 1e-9));
  }
  CHECK(rises > 0);
  CHECK(fixed_rises > 0);  // the fixed radius overshoots the floor (zigzag): the case the shrink is for
  const double end_fixed = 0.5 * (fixed_theta - objective.centre).squaredNorm();
  const double end_shrunk = 0.5 * (shrunk_theta - objective.centre).squaredNorm();
  CHECK(end_shrunk < 0.1 * end_fixed);
  CHECK(shrunk.report.notes.find("trust radius shrunk") != std::string::npos);
  CHECK(fixed.report.notes.find("trust radius shrunk") == std::string::npos);
}

TEST_CASE("NaturalGradientUnlearning: average_last = k hands the stop callback and returns the mean of the last "
          "k iterates (theta_0 counted while t < k), leaves the trajectory unchanged, and cancels the zigzag") {
  auto p = make_problem<double>(300, 8, 10, 1e-2, 31);
  fu::NaturalGradientOptions o;
  o.max_steps = 30;
  o.learning_rate = 1e3;  // every step on the boundary: fixed-length steps that zigzag at the floor
  o.max_kl = 2e-3;
  o.fisher_samples = p.retain().size();
  QuadraticObjective objective{params(p.full) + 0.5 * Eigen::VectorXd::Ones(8)};
  using U = fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, QuadraticObjective>;
  // The iterates of the plain run (k = 1), theta_0 first.
  std::vector<Eigen::VectorXd> iterates{params(p.full)};
  Model<double> plain = p.full;
  fu::NaturalGradientCallbacks<Model<double>> record;
  record.stop = [&](const Model<double>& m, std::size_t) {
    iterates.push_back(params(m));
    return false;
  };
  const auto plain_result = U(o, objective).unlearn_detailed(plain, p.forget(), p.retain(), record);
  REQUIRE(iterates.size() == 31);
  CHECK(params(plain) == iterates.back());
  const auto tail_mean = [&](std::size_t t, std::size_t k) {  // mean of iterates max(0, t-k+1) .. t
    const std::size_t first = t + 1 >= k ? t + 1 - k : 0;
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(8);
    for (std::size_t i = first; i <= t; ++i) sum += iterates[i];
    return Eigen::VectorXd(sum / static_cast<double>(t + 1 - first));
  };
  for (std::size_t k : {2u, 3u}) {
    INFO("k = " << k);
    fu::NaturalGradientOptions ok = o;
    ok.average_last = k;
    std::vector<Eigen::VectorXd> seen;
    Model<double> model = p.full;
    fu::NaturalGradientCallbacks<Model<double>> cb;
    cb.stop = [&](const Model<double>& m, std::size_t step) {
      CHECK(step == seen.size() + 1);
      seen.push_back(params(m));
      return false;
    };
    const auto r = U(ok, objective).unlearn_detailed(model, p.forget(), p.retain(), cb);
    REQUIRE(seen.size() == 30);
    for (std::size_t t = 1; t <= 30; ++t) CHECK((seen[t - 1] - tail_mean(t, k)).cwiseAbs().maxCoeff() <= 1e-14);
    CHECK((params(model) - tail_mean(30, k)).cwiseAbs().maxCoeff() <= 1e-14);  // the returned model
    // the trajectory itself is the plain run's: the same step records, bitwise
    REQUIRE(r.steps.size() == plain_result.steps.size());
    for (std::size_t t = 0; t < r.steps.size(); ++t) {
      CHECK(r.steps[t].objective == plain_result.steps[t].objective);
      CHECK(r.steps[t].step_norm == plain_result.steps[t].step_norm);
    }
    CHECK(r.final_objective == Approx(0.5 * (params(model) - objective.centre).squaredNorm()).epsilon(1e-12));
    CHECK(r.report.notes.find("mean of the last " + std::to_string(k) + " iterate") != std::string::npos);
    // without a callback: the same returned model
    Model<double> quiet = p.full;
    U(ok, objective).unlearn_detailed(quiet, p.forget(), p.retain());
    CHECK(params(quiet) == params(model));
  }
  // Near the floor the iterates zigzag; the mean of two consecutive ones does not (the objective of the
  // averaged points rises less often and ends lower).
  std::size_t iterate_rises = 0, mean_rises = 0;
  const auto L = [&](const Eigen::VectorXd& th) { return 0.5 * (th - objective.centre).squaredNorm(); };
  for (std::size_t t = 2; t <= 30; ++t) {
    if (L(iterates[t]) > L(iterates[t - 1])) ++iterate_rises;
    if (L(tail_mean(t, 2)) > L(tail_mean(t - 1, 2))) ++mean_rises;
  }
  CHECK(iterate_rises > 0);
  CHECK(mean_rises < iterate_rises);
  CHECK(L(tail_mean(30, 2)) < L(iterates[30]));
  // A callback that stops at step 5 gets (and leaves) the mean of iterates 4 and 5.
  fu::NaturalGradientOptions o2 = o;
  o2.average_last = 2;
  Model<double> stopped = p.full;
  fu::NaturalGradientCallbacks<Model<double>> stop5;
  stop5.stop = [](const Model<double>&, std::size_t step) { return step == 5; };
  const auto rs = U(o2, objective).unlearn_detailed(stopped, p.forget(), p.retain(), stop5);
  CHECK(rs.stop_reason == "stop callback");
  CHECK(rs.report.iterations == 5);
  CHECK((params(stopped) - tail_mean(5, 2)).cwiseAbs().maxCoeff() <= 1e-14);
  // k = 1 is the default and bitwise the last iterate; k = 0 is refused
  CHECK(fu::NaturalGradientOptions{}.average_last == 1);
  fu::NaturalGradientOptions zero = o;
  zero.average_last = 0;
  CHECK_THROWS_AS(U(zero, objective), fu::InvalidArgument);
}

TEST_CASE("NaturalGradientUnlearning: the identity preconditioner is plain gradient descent on the objective, and "
          "with the retain anchor over the whole retain set it is gradient difference") {
  const auto data = fu::models::make_softmax_problem<double>(40, 4, 3, 31);
  const std::span<const MlpD::Sample> all(data);
  const auto forget = all.first(6), retain = all.subspan(6);
  const MlpD start = make_mlp(5);
  fu::NaturalGradientOptions o;
  o.max_steps = 5;
  o.learning_rate = 0.3;
  {
    MlpD model = start;
    const auto r = fu::NaturalGradientUnlearning<fu::DiagonalFisher<double>, fu::PlainGradient>(o).unlearn(model, forget,
                                                                                                          retain);
    CHECK(std::isnan(r.damping));  // κ = ∞ and P = I: no Fisher built
    MlpD reference = start;
    fu::Vector<double> g;
    for (int t = 0; t < 5; ++t) {
      fu::detail::mean_loss_and_gradient(reference, forget, g);
      fu::as_eigen(reference.parameters()) -= 0.3 * g;
    }
    CHECK((params_of(model) - params_of(reference)).norm() / (params_of(reference) - params_of(start)).norm() < 1e-12);
  }
  {
    o.retain_weight = 0.7;
    o.retain_batch_size = retain.size();
    MlpD model = start;
    fu::NaturalGradientUnlearning<fu::DiagonalFisher<double>, fu::PlainGradient, fu::GradientAscentObjective>(o).unlearn(
        model, forget, retain);
    MlpD reference = start;
    fu::Vector<double> gf, gr;
    for (int t = 0; t < 5; ++t) {
      fu::detail::mean_loss_and_gradient(reference, forget, gf);
      fu::detail::mean_loss_and_gradient(reference, retain, gr);
      fu::as_eigen(reference.parameters()) -= 0.3 * (-gf + 0.7 * gr);
    }
    CHECK((params_of(model) - params_of(reference)).norm() / (params_of(reference) - params_of(start)).norm() < 1e-10);
  }
}

TEST_CASE("NaturalGradientUnlearning: Adam equals a hand-rolled fp64 Adam for 3 steps") {
  const auto data = fu::models::make_softmax_problem<double>(30, 4, 3, 41);
  const std::span<const MlpD::Sample> all(data);
  const auto forget = all.first(5), retain = all.subspan(5);
  const MlpD start = make_mlp(7);
  fu::NaturalGradientOptions o;
  o.max_steps = 3;
  o.learning_rate = 0.01;
  fu::AdamPreconditioner adam;
  adam.beta1 = 0.8;
  adam.beta2 = 0.95;
  adam.epsilon = 1e-6;
  MlpD model = start;
  fu::NaturalGradientUnlearning<fu::DiagonalFisher<double>, fu::AdamPreconditioner, fu::NpoObjective>(
      o, fu::NpoObjective(0.5), adam)
      .unlearn(model, forget, retain);

  MlpD reference = start;
  fu::NpoObjective npo(0.5);
  npo.bind(reference, forget);
  const auto d = static_cast<Eigen::Index>(start.num_parameters());
  Eigen::VectorXd m = Eigen::VectorXd::Zero(d), v = Eigen::VectorXd::Zero(d);
  fu::Vector<double> g;
  for (int t = 1; t <= 3; ++t) {
    npo.value_and_gradient(reference, forget, g);
    for (Eigen::Index i = 0; i < d; ++i) {
      m[i] = 0.8 * m[i] + 0.2 * g[i];
      v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(0.8, t)), v_hat = v[i] / (1 - std::pow(0.95, t));
      reference.parameters()[static_cast<std::size_t>(i)] -= 0.01 * m_hat / (std::sqrt(v_hat) + 1e-6);
    }
  }
  CHECK((params_of(model) - params_of(reference)).norm() / (params_of(reference) - params_of(start)).norm() < 1e-12);
}

TEST_CASE("NaturalGradientUnlearning: SOUL equals a hand-rolled fp64 Sophia-G for 3 steps") {
  const auto data = fu::models::make_softmax_problem<double>(30, 4, 3, 51);
  const std::span<const MlpD::Sample> all(data);
  const auto forget = all.first(8), retain = all.subspan(8);
  const MlpD start = make_mlp(9);
  fu::NaturalGradientOptions o;
  o.max_steps = 3;
  o.learning_rate = 0.05;
  fu::SoulPreconditioner soul;
  soul.hessian_interval = 2;  // ĥ at steps 1 and 3
  soul.gamma = 0.5;           // so that some coordinates are clipped and some are not
  soul.seed = 77;
  MlpD model = start;
  fu::NaturalGradientUnlearning<fu::DiagonalFisher<double>, fu::SoulPreconditioner, fu::DescentObjective>(o, {}, soul)
      .unlearn(model, forget, retain);

  MlpD reference = start;
  const auto d = static_cast<Eigen::Index>(start.num_parameters());
  Eigen::VectorXd m = Eigen::VectorXd::Zero(d), h = Eigen::VectorXd::Zero(d);
  fu::Vector<double> g;
  std::size_t clipped = 0, free = 0;
  for (std::size_t t = 1; t <= 3; ++t) {
    if (t == 1 || t == 3) {
      // Gauss–Newton–Bartlett: targets drawn from the model (one per forget input, seed + t).
      const Eigen::MatrixXd draws = fu::collect_gradients(reference, forget, {fu::FisherKind::monte_carlo, 1, 77 + t});
      Eigen::VectorXd mean = Eigen::VectorXd::Zero(d);
      for (Eigen::Index b = 0; b < draws.cols(); ++b) mean += draws.col(b);
      mean /= static_cast<double>(draws.cols());
      for (Eigen::Index i = 0; i < d; ++i) h[i] = 0.99 * h[i] + 0.01 * (8.0 * mean[i] * mean[i]);
    }
    fu::detail::mean_loss_and_gradient(reference, forget, g);
    for (Eigen::Index i = 0; i < d; ++i) {
      m[i] = 0.965 * m[i] + 0.035 * g[i];
      double ratio = m[i] / std::max(0.5 * h[i], 1e-12);
      if (std::abs(ratio) > 1) {
        ratio = ratio > 0 ? 1 : -1;
        ++clipped;
      } else {
        ++free;
      }
      reference.parameters()[static_cast<std::size_t>(i)] -= 0.05 * ratio;
    }
  }
  CHECK(clipped > 0);
  CHECK(free > 0);
  CHECK((params_of(model) - params_of(reference)).norm() / (params_of(reference) - params_of(start)).norm() < 1e-12);
}

TEST_CASE("NaturalGradientUnlearning: it stops on the caller's criterion and on the objective target") {
  auto p = make_problem<double>(300, 8, 10, 1e-2, 21);
  fu::NaturalGradientOptions o;
  o.max_steps = 50;
  o.max_kl = 1e-3;
  fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, fu::GradientAscentObjective> ga(o);
  {
    Model<double> model = p.full;
    std::vector<std::size_t> seen;
    fu::NaturalGradientCallbacks<Model<double>> callbacks;
    callbacks.stop = [](const Model<double>&, std::size_t step) { return step == 3; };
    callbacks.progress = [&](const fu::NaturalGradientStep& s) { seen.push_back(s.step); };
    const auto result = ga.unlearn_detailed(model, p.forget(), p.retain(), callbacks);
    CHECK(result.report.iterations == 3);
    CHECK(result.stop_reason == "stop callback");
    CHECK(seen == std::vector<std::size_t>{1, 2, 3});
    CHECK(result.report.notes.find("stop callback") != std::string::npos);
  }
  {
    // Gradient ascent on the forget loss: stop once −mean loss ≤ −(loss before + 0.2).
    Model<double> model = p.full;
    fu::Vector<double> g;
    const double before = fu::GradientAscentObjective{}.value_and_gradient(p.full, p.forget(), g);
    o.target_objective = before - 0.2;
    const auto result =
        fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, fu::GradientAscentObjective>(o)
            .unlearn_detailed(model, p.forget(), p.retain());
    CHECK(result.stop_reason == "target objective reached");
    CHECK(result.final_objective <= o.target_objective);
    REQUIRE(!result.steps.empty());
    CHECK(result.steps.back().objective > o.target_objective);  // it did not step past the target
    CHECK(result.report.iterations < 50);
  }
}

TEST_CASE("NaturalGradientUnlearning: report_retain_loss = false changes only the report's J_retain, not the steps") {
  auto p = make_problem<double>(300, 8, 10, 1e-2, 23);
  fu::NaturalGradientOptions o;
  o.max_steps = 4;
  o.max_kl = 1e-3;
  o.retain_weight = 0.5;
  o.retain_batch_size = 16;
  Model<double> with = p.full, without = p.full;
  const auto a = fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, fu::GradientAscentObjective>(o)
                     .unlearn_detailed(with, p.forget(), p.retain());
  o.report_retain_loss = false;
  const auto b = fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, fu::GradientAscentObjective>(o)
                     .unlearn_detailed(without, p.forget(), p.retain());
  CHECK(fu::as_eigen(with.parameters()) == fu::as_eigen(without.parameters()));  // bitwise: the same steps
  CHECK(a.report.iterations == b.report.iterations);
  CHECK(a.report.forget_loss_before == b.report.forget_loss_before);
  CHECK(a.report.forget_loss_after == b.report.forget_loss_after);
  CHECK(a.report.retain_loss_before == Approx(fu::detail::objective(p.full, p.retain())).epsilon(1e-12));
  CHECK(a.report.retain_loss_after == Approx(fu::detail::objective(with, p.retain())).epsilon(1e-12));
  CHECK(std::isnan(b.report.retain_loss_before));
  CHECK(std::isnan(b.report.retain_loss_after));
  CHECK(std::isfinite(b.report.forget_loss_after));
}

TEST_CASE("NaturalGradientUnlearning: the model is restored bitwise when a callback or the objective throws") {
  auto p = make_problem<double>(200, 6, 8, 1e-2, 33);
  fu::NaturalGradientOptions o;
  o.max_steps = 10;
  o.max_kl = 1e-2;
  o.refresh_every = 2;
  fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>, fu::NaturalGradient, fu::NpoObjective> unlearner(o);
  Model<double> model = p.full;
  const fu::Vector<double> saved = fu::as_eigen(std::span<const double>(model.parameters()));
  fu::NaturalGradientCallbacks<Model<double>> callbacks;
  callbacks.stop = [](const Model<double>&, std::size_t step) -> bool {
    if (step == 4) throw std::runtime_error("exposure check failed");
    return false;
  };
  CHECK_THROWS_AS(unlearner.unlearn(model, p.forget(), p.retain(), callbacks), std::runtime_error);
  CHECK(bitwise_equal(model, saved));
  fu::NaturalGradientCallbacks<Model<double>> progress_throws;
  progress_throws.progress = [](const fu::NaturalGradientStep&) { throw fu::NumericalError("stop"); };
  CHECK_THROWS_AS(unlearner.unlearn(model, p.forget(), p.retain(), progress_throws), fu::NumericalError);
  CHECK(bitwise_equal(model, saved));
  // A sample of the wrong size in the forget set: the model throws mid-run.
  std::vector<Sample<double>> bad(p.forget().begin(), p.forget().end());
  bad.back().x.resize(3);
  CHECK_THROWS_AS(unlearner.unlearn(model, std::span<const Sample<double>>(bad), p.retain()), fu::InvalidArgument);
  CHECK(bitwise_equal(model, saved));
  // And it does run when nothing throws (refreshing F_R every 2 steps).
  const auto r = unlearner.unlearn(model, p.forget(), p.retain());
  CHECK(r.iterations == 10);
  CHECK(r.notes.find("refreshed 4 time(s)") != std::string::npos);
}

TEST_CASE("NaturalGradientUnlearning: on a convex model the natural gradient reaches a bounded target with less "
          "predicted retain KL than the plain gradient at the same budget") {
  // Badly scaled features: the retain Fisher is far from isotropic, which is where curvature helps.
  auto data = fu::models::make_logistic_problem<double>(400, 8, 61);
  for (auto& s : data)
    for (Eigen::Index i = 0; i + 1 < s.x.size(); ++i) s.x[i] *= std::pow(3.0, static_cast<double>(i) - 3.0);
  auto p = make_problem_from<double>(std::move(data), 10, 1e-3);
  // Bounded objective: descend the forget loss with flipped labels (as likely as the other class).
  std::vector<Sample<double>> flipped(p.forget().begin(), p.forget().end());
  for (auto& s : flipped) s.y = 1.0 - s.y;
  fu::Vector<double> g;
  const double start = fu::DescentObjective{}.value_and_gradient(p.full, std::span<const Sample<double>>(flipped), g);
  fu::NaturalGradientOptions o;
  o.max_steps = 200;
  o.max_kl = 1e-3;
  o.target_objective = start - 0.5;
  o.fisher_samples = p.retain().size();
  o.damping.relative = 1e-3;
  const auto run = [&](auto unlearner) {
    Model<double> model = p.full;
    double total_kl = 0.0;
    const auto result = unlearner.unlearn_detailed(model, std::span<const Sample<double>>(flipped), p.retain());
    for (const auto& s : result.steps) total_kl += s.predicted_kl;
    return std::pair{result, total_kl};
  };
  o.learning_rate = 1.0;
  const auto [natural, natural_kl] = run(fu::NaturalGradientUnlearning<fu::DenseFisher<double>>(o));
  o.learning_rate = 10.0;  // the plain gradient gets its best try: the trust region cuts long steps anyway
  const auto [plain, plain_kl] = run(fu::NaturalGradientUnlearning<fu::DenseFisher<double>, fu::PlainGradient>(o));
  std::printf("bounded target: natural gradient %zu steps, sum of predicted KL %.4g; plain gradient %zu steps (%s), "
              "%.4g\n", natural.report.iterations, natural_kl, plain.report.iterations, plain.stop_reason.c_str(),
              plain_kl);
  CHECK(natural.stop_reason == "target objective reached");
  CHECK(natural.report.iterations < plain.report.iterations);
}

TEST_CASE("NaturalGradientUnlearning: bad options and a mismatched estimator throw typed errors") {
  using U = fu::NaturalGradientUnlearning<fu::WoodburyFisher<double>>;
  const auto make = [](auto change) {
    fu::NaturalGradientOptions o;
    change(o);
    return o;
  };
  CHECK_THROWS_AS(U(make([](auto& o) { o.learning_rate = 0; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.max_steps = 0; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.max_kl = 0; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.fisher_samples = 0; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.damping.relative = -1; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.retain_weight = -1; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.target_objective = std::nan(""); })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.trust_shrink = 0; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.trust_shrink = 1.5; })), fu::InvalidArgument);
  CHECK_THROWS_AS(U(make([](auto& o) { o.trust_shrink = std::nan(""); })), fu::InvalidArgument);
  auto p = make_problem<double>(100, 5, 5, 1e-2, 2);
  Model<double> model = p.full;
  fu::WoodburyFisher<double> wrong(4, 1e-2);
  wrong.add_gradient(Eigen::VectorXd::Ones(4));
  wrong.finalize();
  CHECK_THROWS_AS(U().unlearn_detailed(model, p.forget(), p.retain(), wrong), fu::InvalidArgument);
  fu::NaturalGradientOptions refresh;
  refresh.refresh_every = 3;
  fu::WoodburyFisher<double> right(5, 1e-2);
  right.add_gradient(Eigen::VectorXd::Ones(5));
  right.finalize();
  CHECK_THROWS_AS(U(refresh).unlearn_detailed(model, p.forget(), p.retain(), right), fu::InvalidArgument);
  CHECK_THROWS_AS(U().unlearn(model, std::span<const Sample<double>>(), p.retain()), fu::InvalidArgument);
}

namespace {

/// The dense d×d K-FAC or EK-FAC matrix (undamped) of a bias-carrying softmax regression (an Mlp with no
/// hidden layer) on `samples` with their observed labels, from the definitions alone: per sample the
/// output gradient δ is the bias gradient, the input is x, A = mean [x;1][x;1]ᵀ, G = mean δδᵀ; EK-FAC's
/// eigenvalues are mean (u_G,jᵀ δ[x;1]ᵀ u_A,i)². Rows/columns in parameter order.
Eigen::MatrixXd dense_kronecker_reference(const MlpD& model, std::span<const MlpD::Sample> samples, bool ekfac) {
  const auto layers = model.linear_layers();
  REQUIRE(layers.size() == 1);
  const fu::LinearLayer& l = layers.front();
  const auto in = static_cast<Eigen::Index>(l.in_features), out = static_cast<Eigen::Index>(l.out_features);
  const auto m = static_cast<double>(samples.size());
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(in + 1, in + 1), g = Eigen::MatrixXd::Zero(out, out);
  std::vector<Eigen::MatrixXd> per_sample;  // δ[x;1]ᵀ
  Eigen::VectorXd grad(static_cast<Eigen::Index>(model.num_parameters()));
  for (const auto& s : samples) {
    model.gradient(s, std::span<double>(grad.data(), model.num_parameters()));
    const Eigen::VectorXd delta = grad.segment(static_cast<Eigen::Index>(l.bias_offset), out);
    Eigen::VectorXd x1(in + 1);
    x1 << s.x, 1.0;
    // the weight gradient must be δxᵀ (column-major), or δ is not the output gradient
    const Eigen::MatrixXd w = Eigen::Map<const Eigen::MatrixXd>(grad.data() + l.weight_offset, out, in);
    REQUIRE((w - delta * s.x.transpose()).norm() <= 1e-12 * (1.0 + w.norm()));
    a += x1 * x1.transpose() / m;
    g += delta * delta.transpose() / m;
    per_sample.push_back(delta * x1.transpose());
  }
  Eigen::MatrixXd block;  // over vec([W b]) column-major: index o + out·i
  if (!ekfac) {
    block.resize(out * (in + 1), out * (in + 1));
    for (Eigen::Index i = 0; i <= in; ++i)
      for (Eigen::Index j = 0; j <= in; ++j) block.block(i * out, j * out, out, out) = a(i, j) * g;
  } else {
    const Eigen::MatrixXd ua = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(a).eigenvectors();
    const Eigen::MatrixXd ug = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(g).eigenvectors();
    Eigen::MatrixXd q(out * (in + 1), out * (in + 1));
    for (Eigen::Index i = 0; i <= in; ++i)
      for (Eigen::Index j = 0; j <= in; ++j) q.block(i * out, j * out, out, out) = ua(i, j) * ug;
    Eigen::MatrixXd lambda = Eigen::MatrixXd::Zero(out, in + 1);
    for (const auto& gi : per_sample) lambda += (ug.transpose() * gi * ua).cwiseAbs2() / m;
    block = q * Eigen::Map<const Eigen::VectorXd>(lambda.data(), lambda.size()).asDiagonal() * q.transpose();
  }
  const auto index = [&](Eigen::Index r) {
    const Eigen::Index o = r % out, i = r / out;
    return static_cast<Eigen::Index>(i == in ? l.bias_offset + static_cast<std::size_t>(o)
                                             : l.weight_offset + static_cast<std::size_t>(i * out + o));
  };
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  REQUIRE(block.rows() == d);  // every parameter sits in the one layer
  Eigen::MatrixXd dense(d, d);
  for (Eigen::Index r = 0; r < d; ++r)
    for (Eigen::Index c = 0; c < d; ++c) dense(index(r), index(c)) = block(r, c);
  return dense;
}

MlpD softmax_regression_mlp(std::uint64_t seed) {
  fu::models::MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = {};
  o.num_classes = 3;
  o.seed = seed;
  MlpD m(o);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> normal(0.0, 0.7);
  for (double& t : m.parameters()) t = normal(rng);
  return m;
}

}  // namespace

TEMPLATE_TEST_CASE("NaturalGradientUnlearning: with K-FAC or EK-FAC built inside the unlearner, one step is the dense "
                   "solve with the K-FAC/EK-FAC matrix of the retain set", "[kfac]",
                   fu::KfacFisher<double>, fu::EkfacFisher<double>) {
  constexpr bool ekfac = std::is_same_v<TestType, fu::EkfacFisher<double>>;
  const auto data = fu::models::make_softmax_problem<double>(60, 4, 3, 71);
  const std::span<const MlpD::Sample> all(data);
  const auto forget = all.first(5), retain = all.subspan(5);
  const MlpD start = softmax_regression_mlp(8);
  fu::NaturalGradientOptions o;
  o.max_steps = 1;
  o.learning_rate = 0.3;
  o.fisher_samples = retain.size();  // every retain sample: the reference sees the same statistics
  for (const double kappa : {std::numeric_limits<double>::infinity(), 1e-4}) {
    o.max_kl = kappa;
    MlpD model = start;
    const fu::NaturalGradientUnlearning<TestType, fu::NaturalGradient, fu::GradientAscentObjective> unlearner(o);
    const auto result = unlearner.unlearn_detailed(model, forget, retain);
    const Eigen::MatrixXd f_hat = dense_kronecker_reference(start, retain, ekfac);
    const auto d = static_cast<double>(start.num_parameters());
    const double lambda = 1e-2 * f_hat.trace() / d;
    Eigen::MatrixXd f = f_hat;
    f.diagonal().array() += lambda;
    fu::Vector<double> g;
    fu::GradientAscentObjective{}.value_and_gradient(start, forget, g);
    Eigen::VectorXd expected = -o.learning_rate * f.ldlt().solve(g);
    const double kl = 0.5 * expected.dot(f * expected);
    if (kl > kappa) expected *= std::sqrt(kappa / kl);
    const Eigen::VectorXd delta = params_of(model) - params_of(start);
    INFO("kappa " << kappa);
    CHECK(result.report.damping == Approx(lambda).epsilon(1e-10));
    CHECK(relative_error(delta, expected) < (ekfac ? 1e-8 : 1e-10));
    REQUIRE(result.steps.size() == 1);
    CHECK(result.steps[0].predicted_kl == Approx(std::min(kl, kappa)).epsilon(1e-9));
    CHECK(result.steps[0].trust_region_hit == (kl > kappa));
    CHECK(result.report.fisher_gradients == retain.size());
  }
  // A subsample of m retain inputs and a refresh every step run and report it.
  o.max_kl = 1e-3;
  o.max_steps = 3;
  o.refresh_every = 1;
  o.fisher_samples = 20;
  MlpD model = start;
  const auto r = fu::NaturalGradientUnlearning<TestType, fu::NaturalGradient, fu::GradientAscentObjective>(o).unlearn(
      model, forget, retain);
  CHECK(r.iterations == 3);
  CHECK(r.fisher_gradients == 20);
  CHECK(r.notes.find("refreshed 2 time(s)") != std::string::npos);
  CHECK(r.forget_loss_after > r.forget_loss_before);
}

TEST_CASE("NaturalGradientUnlearning: a layer-factored F_R rejects what it cannot build and leaves the model unchanged") {
  const auto data = fu::models::make_softmax_problem<double>(40, 4, 3, 72);
  const std::span<const MlpD::Sample> all(data);
  const auto forget = all.first(4), retain = all.subspan(4);
  MlpD model = softmax_regression_mlp(9);
  const Eigen::VectorXd saved = params_of(model);
  using U = fu::NaturalGradientUnlearning<fu::KfacFisher<double>, fu::NaturalGradient, fu::GradientAscentObjective>;
  fu::NaturalGradientOptions o;
  o.gradients.apply_loss_scale = false;
  CHECK_THROWS_WITH(U(o).unlearn(model, forget, retain), Catch::Contains("apply_loss_scale"));
  CHECK(params_of(model) == saved);
  fu::NaturalGradientOptions groups;
  groups.parameter_groups = {"layer0.weight"};
  CHECK_THROWS_WITH(U(groups).unlearn(model, forget, retain), Catch::Contains("parameter_groups"));
  CHECK(params_of(model) == saved);
  // A factory that builds for the wrong size is caught before any step.
  const U wrong({}, {}, {}, U::LayerFactory([](std::vector<fu::LinearLayer> layers, std::size_t d, double damping) {
                  return fu::KfacFisher<double>(std::move(layers), d + 1, damping);
                }));
  CHECK_THROWS_AS(wrong.unlearn(model, forget, retain), fu::InvalidArgument);
  CHECK(params_of(model) == saved);
  CHECK_THROWS_AS(U({}, {}, {}, U::LayerFactory{}), fu::InvalidArgument);
  // With relative per-layer damping passed through the factory the step still runs.
  const U custom({}, {}, {}, U::LayerFactory([](std::vector<fu::LinearLayer> layers, std::size_t d, double damping) {
                   return fu::KfacFisher<double>(std::move(layers), d, damping, fu::KfacOptions{0.1});
                 }));
  MlpD copy = model;
  CHECK(custom.unlearn(copy, forget, retain).iterations > 0);
  CHECK(params_of(copy) != saved);
}
