// EXPECT: HasSampleGradient|gradient
// A model missing gradient() used where a DifferentiableModel is required: the compiler's message
// must name the unsatisfied requirement (the HasSampleGradient concept / the gradient member).
#include "fisher_unlearn/concepts.hpp"

#include <span>
#include <vector>

struct ModelWithoutGradient {
  using Scalar = double;
  struct Sample {};
  std::vector<double> theta;
  std::size_t num_parameters() const { return theta.size(); }
  std::span<double> parameters() { return theta; }
  std::span<const double> parameters() const { return theta; }
  double loss(const Sample&) const { return 0.0; }
};

template <fisher_unlearn::DifferentiableModel M>
void needs_gradient(const M&) {}

int main() {
  ModelWithoutGradient m;
  needs_gradient(m);
}
