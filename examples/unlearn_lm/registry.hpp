// unlearn_lm method registry: the names the command line accepts, the default set, and construction.
#pragma once

#include "methods.hpp"
#include "options.hpp"

// The iterative methods need the issue-9 pieces (natural_gradient.hpp, canary_forget.hpp).
#if __has_include("fisher_unlearn/natural_gradient.hpp") && __has_include("fisher_unlearn/canary_forget.hpp")
#include "iterative.hpp"
#define UNLEARN_LM_ITERATIVE 1
#else
#define UNLEARN_LM_ITERATIVE 0
#endif

#include <memory>

namespace unlearn_lm {

inline std::vector<std::string> all_methods() {
  std::vector<std::string> names;
#if UNLEARN_LM_ITERATIVE
  names = iterative_method_names();
#endif
  for (const char* n : {"fisher_removal/diagonal/empirical",    "fisher_removal/diagonal/monte_carlo",
          "fisher_removal/woodbury/empirical",    "fisher_removal/woodbury/monte_carlo",
          "fisher_forgetting/diagonal/empirical", "fisher_forgetting/woodbury/empirical",
          "gradient_ascent",                      "retain_finetune",
          "gradient_difference"})
    names.push_back(n);
  return names;
}

/// The default run: the methods the headline comparison needs (docs/experiment.md).
inline std::vector<std::string> default_methods() {
  std::vector<std::string> names;
#if UNLEARN_LM_ITERATIVE
  names = iterative_method_names();
#endif
  for (const char* n : {"fisher_removal/woodbury/monte_carlo", "fisher_forgetting/woodbury/empirical", "retain_finetune"})
    names.push_back(n);
  return names;
}

/// Expands 'default', 'all' and 'none' and removes duplicates, keeping the order.
inline std::vector<std::string> expand_methods(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  auto add = [&](const std::string& n) {
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  };
  for (const auto& m : given) {
    if (m == "none") continue;
    if (m == "all")
      for (const auto& n : all_methods()) add(n);
    else if (m == "default")
      for (const auto& n : default_methods()) add(n);
    else
      add(m);
  }
  return out;
}

inline std::unique_ptr<Method> make_method(const Options& opt, const std::string& name) {
  using fu::FisherKind;
  using namespace legacy;
#if UNLEARN_LM_ITERATIVE
  if (auto m = make_iterative_method(opt, name)) return m;
#endif
  if (name == "fisher_removal/diagonal/empirical")
    return std::make_unique<FisherRemovalMethod<fu::DiagonalFisher>>(opt, "diagonal", FisherKind::empirical);
  if (name == "fisher_removal/diagonal/monte_carlo")
    return std::make_unique<FisherRemovalMethod<fu::DiagonalFisher>>(opt, "diagonal", FisherKind::monte_carlo);
  if (name == "fisher_removal/woodbury/empirical")
    return std::make_unique<FisherRemovalMethod<fu::WoodburyFisher>>(opt, "woodbury", FisherKind::empirical);
  if (name == "fisher_removal/woodbury/monte_carlo")
    return std::make_unique<FisherRemovalMethod<fu::WoodburyFisher>>(opt, "woodbury", FisherKind::monte_carlo);
  if (name == "fisher_forgetting/diagonal/empirical")
    return std::make_unique<FisherForgettingMethod<fu::DiagonalFisher>>(opt, "diagonal", FisherKind::empirical);
  if (name == "fisher_forgetting/woodbury/empirical")
    return std::make_unique<FisherForgettingMethod<fu::WoodburyFisher>>(opt, "woodbury", FisherKind::empirical);
  if (name == "gradient_ascent") return std::make_unique<SgdBaselineMethod<fu::GradientAscent>>(opt, name);
  if (name == "retain_finetune") return std::make_unique<SgdBaselineMethod<fu::RetainFinetune>>(opt, name);
  if (name == "gradient_difference") return std::make_unique<SgdBaselineMethod<fu::GradientDifference>>(opt, name);
  throw fu::InvalidArgument("unknown method '" + name + "'");
}

}  // namespace unlearn_lm
