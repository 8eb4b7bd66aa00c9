// ParameterSubset built from the reference models' named parameter groups: gather/scatter round trips,
// merging, and errors that list the names a model has.
#include <catch2/catch.hpp>

#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/parameter_subset.hpp"

#include <random>
#include <span>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;

namespace {

fu::models::Mlp<double> make_mlp() {
  fu::models::MlpOptions o;
  o.num_features = 4;
  o.hidden_sizes = {5, 3};
  o.num_classes = 3;
  o.seed = 3;
  fu::models::Mlp<double> model(o);
  std::mt19937_64 rng(4);
  std::normal_distribution<double> normal;
  for (double& t : model.parameters()) t = normal(rng);
  return model;
}

const fu::ParameterGroup& group(const std::vector<fu::ParameterGroup>& groups, const std::string& name) {
  for (const auto& g : groups)
    if (g.name == name) return g;
  throw std::logic_error("no group " + name);
}

}  // namespace

TEST_CASE("ParameterSubset: groups of an Mlp gather and scatter back exactly") {
  const auto model = make_mlp();
  const auto groups = model.parameter_groups();
  // Out of order on purpose: the subset is kept in parameter order.
  const auto subset = fu::ParameterSubset::from_groups(model, {"layer2.bias", "layer0.weight"});
  const auto& w0 = group(groups, "layer0.weight");
  const auto& b2 = group(groups, "layer2.bias");
  REQUIRE(subset.size() == w0.size + b2.size);
  CHECK(subset.full_size() == model.num_parameters());
  CHECK_FALSE(subset.is_all());
  REQUIRE(subset.ranges().size() == 2);
  CHECK(subset.ranges()[0].offset == w0.offset);
  CHECK(subset.ranges()[1].offset == b2.offset);

  const auto full = fu::as_eigen(model.parameters());
  Eigen::VectorXd sub(static_cast<Eigen::Index>(subset.size()));
  subset.gather(std::span<const double>(full.data(), full.size()), std::span<double>(sub.data(), sub.size()));
  CHECK(sub.head(static_cast<Eigen::Index>(w0.size)) == full.segment(static_cast<Eigen::Index>(w0.offset),
                                                                      static_cast<Eigen::Index>(w0.size)));
  CHECK(sub.tail(static_cast<Eigen::Index>(b2.size)) == full.segment(static_cast<Eigen::Index>(b2.offset),
                                                                      static_cast<Eigen::Index>(b2.size)));

  // Round trip: scatter into zeros gives the subset's entries and zeros elsewhere; gathering it again
  // returns the same vector.
  Eigen::VectorXd rebuilt = Eigen::VectorXd::Zero(full.size());
  subset.scatter_add(std::span<const double>(sub.data(), sub.size()), 1.0, std::span<double>(rebuilt.data(), rebuilt.size()));
  for (Eigen::Index i = 0; i < full.size(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    const bool inside = (u >= w0.offset && u < w0.offset + w0.size) || (u >= b2.offset && u < b2.offset + b2.size);
    CHECK(rebuilt[i] == (inside ? full[i] : 0.0));
  }
  Eigen::VectorXd again(sub.size());
  subset.gather(std::span<const double>(rebuilt.data(), rebuilt.size()), std::span<double>(again.data(), again.size()));
  CHECK(again == sub);

  // scatter_add applies alpha and leaves the other entries alone.
  Eigen::VectorXd updated = full;
  subset.scatter_add(std::span<const double>(sub.data(), sub.size()), -0.5, std::span<double>(updated.data(), updated.size()));
  CHECK((updated - (full - 0.5 * rebuilt)).norm() == 0.0);
}

TEST_CASE("ParameterSubset: adjacent and repeated groups merge into one range") {
  const auto model = make_mlp();
  const auto subset = fu::ParameterSubset::from_groups(model, {"layer1.bias", "layer1.weight", "layer1.bias"});
  const auto groups = model.parameter_groups();
  const auto& w1 = group(groups, "layer1.weight");
  const auto& b1 = group(groups, "layer1.bias");
  REQUIRE(subset.ranges().size() == 1);
  CHECK(subset.ranges()[0].offset == w1.offset);
  CHECK(subset.size() == w1.size + b1.size);

  std::vector<std::string> every;
  for (const auto& g : groups) every.push_back(g.name);
  CHECK(fu::ParameterSubset::from_groups(model, every).is_all());
  CHECK(fu::ParameterSubset::from_groups(model, {}).is_all());
}

TEST_CASE("ParameterSubset: an unknown group name throws InvalidArgument listing the model's names") {
  const auto model = make_mlp();
  try {
    (void)fu::ParameterSubset::from_groups(model, {"layer1.weight", "head"});
    FAIL("no exception");
  } catch (const fu::InvalidArgument& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("'head'"));
    for (const auto& g : model.parameter_groups()) CHECK_THAT(what, Catch::Contains(g.name));
  }
  fu::models::SoftmaxRegression<double> softmax(4, 3, 0.1);
  CHECK_THROWS_WITH(fu::ParameterSubset::from_groups(softmax, {"class3"}),
                    Catch::Contains("class0, class1, class2"));
  // A model without parameter_groups() cannot be asked for names.
  fu::models::LogisticRegression<double> logistic(4, 0.1);
  CHECK_THROWS_WITH(fu::ParameterSubset::from_groups(logistic, {"weights"}), Catch::Contains("parameter_groups()"));
}

TEST_CASE("ParameterSubset: a SoftmaxRegression class group gathers that class's gradient block") {
  fu::models::SoftmaxRegression<double> model(4, 3, 0.1);
  std::mt19937_64 rng(6);
  std::normal_distribution<double> normal;
  for (double& t : model.parameters()) t = normal(rng);
  const auto data = fu::models::make_softmax_problem<double>(1, 4, 3, 7);
  Eigen::VectorXd g(12), sub(4);
  model.gradient(data[0], std::span<double>(g.data(), 12));
  const auto subset = fu::ParameterSubset::from_groups(model, {"class1"});
  subset.gather(std::span<const double>(g.data(), 12), std::span<double>(sub.data(), 4));
  // ∂loss/∂W[:, 1] = (p₁ − [y = 1]) x
  const Eigen::VectorXd p = model.predict_probabilities(data[0].x);
  const Eigen::VectorXd expected = (p[1] - (data[0].label == 1 ? 1.0 : 0.0)) * data[0].x;
  CHECK((sub - expected).norm() / expected.norm() < 1e-14);
  CHECK_THROWS_AS(subset.gather(std::span<const double>(g.data(), 11), std::span<double>(sub.data(), 4)),
                  fu::InvalidArgument);
  CHECK_THROWS_AS(subset.gather(std::span<const double>(g.data(), 12), std::span<double>(sub.data(), 3)),
                  fu::InvalidArgument);
}
