// Uses the installed fisher_unlearn::cuda: with a device it checks F⁻¹v of a DiagonalFisherGpu against
// the closed form; without one it checks that construction reports a CudaError. Exit 0 on success.
#include <fisher_unlearn/cuda/estimators.hpp>

#include <cmath>
#include <cstdio>

int main() {
  namespace fc = fisher_unlearn::cuda;
  if (!fc::device_available()) {
    try {
      fc::DiagonalFisherGpu<float> estimator(4, 0.5f);
    } catch (const fc::CudaError& error) {
      std::printf("consumer_cuda: no device, construction reported: %s\n", error.what());
      return 0;
    }
    return 1;
  }
  fc::DiagonalFisherGpu<double> estimator(3, 0.5);
  estimator.add_gradient(Eigen::Vector3d(1.0, 2.0, 3.0));
  estimator.finalize();
  Eigen::Vector3d out;
  estimator.apply_power(-1.0, Eigen::Vector3d(1.0, 1.0, 1.0), out);
  const double error = std::abs(out[2] - 1.0 / 9.5);
  std::printf("consumer_cuda: F^-1 v = (%g, %g, %g), |error| = %g\n", out[0], out[1], out[2], error);
  return error < 1e-12 ? 0 : 1;
}
