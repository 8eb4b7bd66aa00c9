// Experiment (issue 14, 2026-12-07): the read rate of the Woodbury product's two passes over G
// (detail::transpose_times_vector = Gᵀv, detail::scaled_plus_matrix_vector = αv + G·y; G = d×m double,
// d = 2^17, m = 64, 1 thread) against Eigen's GEMV on the same data, in one process, best of 15
// wall-clock timings (run it on a quiet machine). Not built by CMake:
//   g++ -std=c++20 -O3 -march=native -DNDEBUG -Iinclude -Ibench -isystem /usr/include/eigen3
//       bench/experiments/woodbury_gtv_read_rate.cpp -o /tmp/gtv_rate -lbenchmark -pthread && /tmp/gtv_rate
// Before the Gᵀv kernel was written in explicit vectors (commit ebb8064) it read 8–11 GB/s here against
// Eigen's 18–25; results: docs/performance.md.
#include "ceilings.hpp"
#include "fisher_unlearn/detail/fisher_kernels.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cstdio>

int main() {
  namespace fd = fisher_unlearn::detail;
  const Eigen::Index d = Eigen::Index(1) << 17, m = 64;
  const Eigen::MatrixXd g = Eigen::MatrixXd::Random(d, m);
  const Eigen::VectorXd v = Eigen::VectorXd::Random(d), y = Eigen::VectorXd::Random(m);
  Eigen::VectorXd ours_t, eigen_t(m), out(d), eigen_n(d);
  const auto best = [](auto&& f) { return fisher_unlearn::bench::best_seconds(f, 15); };  // bench/ceilings.hpp
  const double gb = double(d) * double(m) * sizeof(double) / 1e9;  // G's bytes, read once per pass
  const double t_ours_t = best([&] { ours_t = fd::transpose_times_vector(g, v, 1); });
  const double t_eigen_t = best([&] { eigen_t.noalias() = g.transpose() * v; });
  const double t_ours_n = best([&] { fd::scaled_plus_matrix_vector(0.5, v, g, y, out, 1); });
  const double t_eigen_n = best([&] {
    eigen_n.noalias() = 0.5 * v;
    eigen_n.noalias() += g * y;
  });
  std::printf("read rate of G, GB/s: G^T v ours %.1f, Eigen %.1f (rel. diff %.1e); a v + G y ours %.1f, Eigen %.1f "
              "(rel. diff %.1e)\n",
              gb / t_ours_t, gb / t_eigen_t, (ours_t - eigen_t).norm() / eigen_t.norm(), gb / t_ours_n,
              gb / t_eigen_n, (out - eigen_n).norm() / eigen_n.norm());
}
