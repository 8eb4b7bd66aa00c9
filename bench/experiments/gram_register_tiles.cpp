// Experiment (issue 14, 2026-12-07): can a register-tiled Gram kernel beat Eigen's SYRK for the Woodbury
// set-up (GᵀG, G = d×m, d = 2^17, m = 60/120)? Lower triangle of GᵀG over row blocks packed into a
// contiguous buffer (unpacked, columns 1 MiB apart thrash the cache sets: 0.2 of GEMM), TA×TB tiles of
// 4-double vectors (GCC/Clang vector extensions; AVX2 has 16 registers: 4×2 and 6×2 fit, 4×4 spills).
// Not built by CMake; best of 9 wall-clock timings, so run it on a quiet machine:
//   g++ -O3 -march=native -DNDEBUG -I/usr/include/eigen3 bench/experiments/gram_register_tiles.cpp -o /tmp/gram && /tmp/gram 60 256
// Measured result and conclusion: docs/performance.md ("Woodbury set-up").
#include <cstdlib>
#include <Eigen/Dense>
#include <chrono>
#include <cstdio>
using namespace std::chrono;
typedef double v4 __attribute__((vector_size(32)));
template <int TA, int TB>
static void gram_tiles(const double* g, Eigen::Index ld, Eigen::Index n, Eigen::Index m, Eigen::MatrixXd& p) {
  constexpr int L = 4;
  for (Eigen::Index ib = 0; ib + TA <= m; ib += TA)
    for (Eigen::Index jb = 0; jb + TB <= ib + TA; jb += TB) {
      v4 acc[TA][TB];
      for (int a = 0; a < TA; ++a) for (int b = 0; b < TB; ++b) acc[a][b] = v4{};
      const double* ci[TA]; const double* cj[TB];
      for (int a = 0; a < TA; ++a) ci[a] = g + (ib + a) * ld;
      for (int b = 0; b < TB; ++b) cj[b] = g + (jb + b) * ld;
      Eigen::Index r = 0;
      for (; r + L <= n; r += L) {
        v4 y[TB];
        for (int b = 0; b < TB; ++b) __builtin_memcpy(&y[b], cj[b] + r, 32);
        for (int a = 0; a < TA; ++a) {
          v4 x; __builtin_memcpy(&x, ci[a] + r, 32);
          for (int b = 0; b < TB; ++b) acc[a][b] += x * y[b];
        }
      }
      for (int a = 0; a < TA; ++a)
        for (int b = 0; b < TB; ++b) {
          double s = (acc[a][b][0] + acc[a][b][1]) + (acc[a][b][2] + acc[a][b][3]);
          for (Eigen::Index rr = r; rr < n; ++rr) s += ci[a][rr] * cj[b][rr];
          p(ib + a, jb + b) += s;
        }
    }
}
int main(int argc, char** argv) {
  const Eigen::Index d = 131072, m = argc > 1 ? atoi(argv[1]) : 60;
  if (m % 12 != 0) { std::fprintf(stderr, "m must be a multiple of 12 (the tiles)\n"); return 2; }
  const Eigen::Index R = argc > 2 ? atoi(argv[2]) : 256;
  Eigen::MatrixXd G = Eigen::MatrixXd::Random(d, m);
  double flops = double(m) * (m + 1) * d;
  auto best = [&](auto f) { double b = 1e9; for (int k = 0; k < 9; ++k) { auto t0 = steady_clock::now(); f(); b = std::min(b, duration<double>(steady_clock::now() - t0).count()); } return b; };
  Eigen::MatrixXd p1 = Eigen::MatrixXd::Zero(m, m), p3;
  Eigen::MatrixXd A = Eigen::MatrixXd::Random(1024, 1024), B = A, C(1024, 1024);
  double t_sq = best([&] { C.noalias() = A * B; });
  double rate = 2.0 * 1024 * 1024 * 1024 / t_sq;
  double t_syrk = best([&] { p1.setZero(); p1.selfadjointView<Eigen::Lower>().rankUpdate(G.transpose()); });
  Eigen::MatrixXd buf(R, m);
  auto run = [&](auto kern) { return best([&] { p3 = Eigen::MatrixXd::Zero(m, m); for (Eigen::Index r = 0; r < d; r += R) { Eigen::Index n = std::min(R, d - r); buf.topRows(n) = G.middleRows(r, n); kern(buf.data(), R, n, m, p3);} }); };
  auto check = [&] { return (p3.triangularView<Eigen::Lower>().toDenseMatrix() - p1.triangularView<Eigen::Lower>().toDenseMatrix()).norm() / p1.norm(); };
  double t42 = run(gram_tiles<4, 2>); double e42 = check();
  double t62 = run(gram_tiles<6, 2>); double e62 = check();
  printf("d = %ld, m = %ld, %ld-row packed blocks: Eigen GEMM 1024^3 %.1f GFLOP/s; of that rate: Eigen SYRK %.3f, "
         "4x2 tiles %.3f (rel. diff %.1e), 6x2 tiles %.3f (rel. diff %.1e)\n",
         long(d), long(m), long(R), rate / 1e9, flops / t_syrk / rate, flops / t42 / rate, e42, flops / t62 / rate, e62);
}
