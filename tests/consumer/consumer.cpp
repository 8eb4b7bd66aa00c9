// A program outside the project that uses fisher_unlearn as an installed or embedded package.
#include <fisher_unlearn/fisher_unlearn.hpp>

#include <cstdio>

int main() {
  namespace fu = fisher_unlearn;
  const auto data = fu::models::make_logistic_problem<double>(200, 5, 1);
  fu::models::LogisticRegression<double> model(5, 0.01);
  const double before = fu::detail::objective(model, std::span<const decltype(data)::value_type>(data));
  std::printf("consumer: objective at theta = 0 is %.6f (expected log 2 = 0.693147)\n", before);
  return std::abs(before - std::log(2.0)) < 1e-12 ? 0 : 1;
}
