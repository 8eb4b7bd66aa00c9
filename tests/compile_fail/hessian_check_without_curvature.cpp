// EXPECT: TwiceDifferentiableModel|HasHessianVectorProduct|HasDenseHessian
// check_hessian_vector_product on a model with a gradient but no curvature (neither
// hessian_vector_product nor hessian): the compiler's message must name the unsatisfied requirement.
#include "fisher_unlearn/testing/check_gradient.hpp"

#include <span>
#include <vector>

struct FirstOrderOnly {
  using Scalar = double;
  struct Sample { double x; };
  std::vector<double> theta = {0.0};
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample& s) const { return 0.5 * (theta[0] - s.x) * (theta[0] - s.x); }
  double gradient(const Sample& s, std::span<double> g) const { g[0] = theta[0] - s.x; return loss(s); }
};

int main() {
  FirstOrderOnly model;
  const std::vector<FirstOrderOnly::Sample> batch = {{1.0}};
  (void)fisher_unlearn::testing::check_hessian_vector_product(model, std::span<const FirstOrderOnly::Sample>(batch));
}
