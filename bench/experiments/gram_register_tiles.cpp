// Experiment (issue 14, 2026-12-07): the Woodbury set-up's Gram GᵀG (G = d×m, d = 2^17) by the library's
// two kernels — Eigen's symmetric rank update and the 4×2 register tiles over packed 256-row blocks
// (detail::gram_in_double, forced through detail::GramPath) — against Eigen's 1024³ double GEMM rate,
// 1 thread, best of 9 wall-clock timings (run it on a quiet machine). During development the same tiles
// on the *unpacked* G (columns 1 MiB apart, so every column segment maps to the same cache sets) ran at
// 0.2 of the GEMM rate; packing is what makes them work. Not built by CMake:
//   g++ -std=c++20 -O3 -march=native -DNDEBUG -Iinclude -Ibench -isystem /usr/include/eigen3
//       bench/experiments/gram_register_tiles.cpp -o /tmp/gram_tiles -lbenchmark -pthread && /tmp/gram_tiles 64
// Results and conclusion: docs/performance.md.
#include "ceilings.hpp"
#include "fisher_unlearn/detail/fisher_kernels.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  namespace fd = fisher_unlearn::detail;
  const Eigen::Index d = Eigen::Index(1) << 17, m = argc > 1 ? std::atoi(argv[1]) : 64;
  if (m < 1) {
    std::fprintf(stderr, "usage: %s [m ≥ 1]\n", argv[0]);
    return 2;
  }
  const Eigen::MatrixXd g = Eigen::MatrixXd::Random(d, m);
  const auto best = [](auto&& f) { return fisher_unlearn::bench::best_seconds(f, 9); };  // bench/ceilings.hpp
  const Eigen::MatrixXd a = Eigen::MatrixXd::Random(1024, 1024);
  Eigen::MatrixXd c(1024, 1024);
  const double gemm_rate = 2.0 * 1024 * 1024 * 1024 / best([&] { c.noalias() = a * a; });
  const double flops = double(m) * double(m + 1) * double(d);  // what the symmetric product does
  Eigen::MatrixXd rank_update, tiles;
  const double t_rank = best([&] { rank_update = fd::gram_in_double(g, 1, fd::GramPath::rank_update); });
  const double t_tiles = best([&] { tiles = fd::gram_in_double(g, 1, fd::GramPath::tiles); });
  std::printf("d = %ld, m = %ld: Eigen GEMM 1024^3 %.1f GFLOP/s; of that rate: rank update %.3f, register tiles %.3f "
              "(relative difference %.1e)\n",
              static_cast<long>(d), static_cast<long>(m), gemm_rate / 1e9, flops / t_rank / gemm_rate,
              flops / t_tiles / gemm_rate, (tiles - rank_update).norm() / rank_update.norm());
}
