#pragma once
// The symmetric eigendecomposition A = V·diag(λ)·Vᵀ (double) of the estimators' small dense matrices:
// the K-FAC/EK-FAC factors, the Woodbury m×m Gram, the block-diagonal Fisher's blocks.
//
// Eigen's SelfAdjointEigenSolver reduces A to tridiagonal form T = QᵀAQ and then runs the implicit QR
// iteration on T, applying every plane rotation to the n×n eigenvector matrix as it goes: ≈ 6n³
// flops of two-column updates that run at a fraction of the core's speed (n = 256: ≈ 55–60 % of the
// whole decomposition, issue 14). Here A is reduced by Eigen's Tridiagonalization (from 512 rows by the
// blocked reduction below, whose trailing updates are GEMMs), and T's eigenproblem is solved by divide and
// conquer (Cuppen's
// method with Gu and Eisenstat's eigenvectors, as LAPACK's dstedc): T is split in two halves coupled by
// a rank-one term, each half solved recursively, and the halves' eigenvectors combined by one matrix
// product per level, so the O(n³) work is GEMM. Below kDivideConquerLeaf rows the QR iteration is used.
//
// The steps of a merge (T = diag(T₁, T₂) + ρvvᵀ, T₁ = Q₁D₁Q₁ᵀ, T₂ = Q₂D₂Q₂ᵀ):
//   z = diag(Q₁, Q₂)ᵀv, so T = Q(D + ρzzᵀ)Qᵀ; ρ > 0 (the sign of the coupling goes into z);
//   deflation: a component with ρ|zᵢ| ≤ tol leaves dᵢ an eigenvalue with its column of Q; two values
//   closer than tol/|cs| are rotated so that one z component vanishes (then the same);
//   the k others: the roots λⱼ of the secular equation 1/ρ + Σ zᵢ²/(dᵢ − λ) = 0, one in each
//   (dⱼ, dⱼ₊₁) and the last in (d_k, d_k + ρ‖z‖²), each found in coordinates relative to its nearer
//   pole (so dᵢ − λⱼ keeps its relative accuracy), by the two-pole rational model of Bunch, Nielsen and
//   Sorensen with bisection as the safeguard;
//   Gu–Eisenstat: ẑ recomputed from the roots (ẑᵢ² = Π(λⱼ − dᵢ) / (ρ Π_{j≠i}(dⱼ − dᵢ))), so the
//   eigenvectors uⱼ = (ẑᵢ/(dᵢ − λⱼ))ᵢ / ‖·‖ are numerically orthogonal; the merged vectors are Q·U.
// Backward stable as the QR path: residual and loss of orthogonality O(nε‖A‖) (tested against the dense
// fp64 definitions and Eigen's solver in tests/test_symmetric_eigen.cpp).
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace fisher_unlearn::detail {

/// Subproblems of at most this many rows are solved by Eigen's tridiagonal QR iteration.
inline constexpr Eigen::Index kDivideConquerLeaf = 32;

/// Below this size the whole decomposition is Eigen's SelfAdjointEigenSolver (no gain from the split).
inline constexpr Eigen::Index kDivideConquerMinSize = 48;

/// From this size the tridiagonalization is blocked (tridiagonalize_blocked); below it Eigen's unblocked one
/// (measured 2026-12-07, AVX-512: blocked 2.4 vs 1.8 ms at n = 257, 10.5 vs 12.8 ms at 512, 294 vs 425 ms
/// at 1 536, where the matrix no longer fits L2).
inline constexpr Eigen::Index kBlockedTridiagonalMinSize = 512;

/// Householder tridiagonalization QᵀAQ = T of the symmetric a (lower triangle read), in LAPACK's blocked
/// form (dsytrd/dlatrd): within a panel of nb columns each reflector's matrix-vector product uses the
/// trailing matrix as it was before the panel plus the panel's pending rank-2 terms (A − VWᵀ − WVᵀ), and
/// the trailing matrix takes those terms once per panel by two triangular GEMMs (Eigen's unblocked
/// reduction rewrites the whole trailing triangle after every column). On exit d and e hold T's diagonal and
/// subdiagonal, and a below its subdiagonal and h hold the reflectors H_j = I − h_j v_j v_jᵀ (v_j = 1 at row
/// j + 1, the essential part below it), as Eigen's Tridiagonalization::packedMatrix and
/// householderCoefficients: Q = H_0 ⋯ H_{n−2}.
inline void tridiagonalize_blocked(Eigen::MatrixXd& a, Eigen::VectorXd& d, Eigen::VectorXd& e, Eigen::VectorXd& h,
                                   Eigen::Index nb = 32) {
  using Eigen::Index;
  const Index n = a.rows();
  d.resize(n);
  e.resize(std::max<Index>(n - 1, 0));
  h.resize(std::max<Index>(n - 1, 0));
  Eigen::MatrixXd v_panel(n, nb), w_panel(n, nb);
  Eigen::VectorXd w, t1, t2;
  for (Index k = 0; k < n - 1; k += nb) {
    const Index b = std::min(nb, n - 1 - k);
    for (Index i = 0; i < b; ++i) {
      const Index j = k + i, m = n - j;
      if (i > 0) {  // column j as the panel's earlier reflectors left it
        a.col(j).tail(m).noalias() -= v_panel.block(j, 0, m, i) * w_panel.row(j).head(i).transpose();
        a.col(j).tail(m).noalias() -= w_panel.block(j, 0, m, i) * v_panel.row(j).head(i).transpose();
      }
      d[j] = a(j, j);
      double tau = 0.0, beta = 0.0;
      a.col(j).tail(m - 1).makeHouseholderInPlace(tau, beta);
      e[j] = beta;
      h[j] = tau;
      v_panel.col(i).head(j + 1).setZero();
      v_panel(j + 1, i) = 1.0;
      v_panel.col(i).tail(m - 2) = a.col(j).tail(m - 2);
      const auto v = v_panel.col(i).tail(m - 1);
      // w = τ(A − VWᵀ − WVᵀ)v − ½τ(wᵀv)v over the trailing rows
      w.noalias() = a.bottomRightCorner(m - 1, m - 1).selfadjointView<Eigen::Lower>() * v;
      if (i > 0) {
        t1.noalias() = w_panel.block(j + 1, 0, m - 1, i).transpose() * v;
        t2.noalias() = v_panel.block(j + 1, 0, m - 1, i).transpose() * v;
        w.noalias() -= v_panel.block(j + 1, 0, m - 1, i) * t1;
        w.noalias() -= w_panel.block(j + 1, 0, m - 1, i) * t2;
      }
      w *= tau;
      w -= (0.5 * tau * w.dot(v)) * v;
      w_panel.col(i).head(j + 1).setZero();
      w_panel.col(i).tail(m - 1) = w;
    }
    const Index r = n - (k + b);
    if (r > 0) {
      auto trailing = a.bottomRightCorner(r, r);
      trailing.triangularView<Eigen::Lower>() -= v_panel.bottomRows(r).leftCols(b) * w_panel.bottomRows(r).leftCols(b).transpose();
      trailing.triangularView<Eigen::Lower>() -= w_panel.bottomRows(r).leftCols(b) * v_panel.bottomRows(r).leftCols(b).transpose();
    }
  }
  if (n > 0) d[n - 1] = a(n - 1, n - 1);
}

namespace dc {

using SecularLanes = double __attribute__((vector_size(8 * sizeof(double))));

// Σ tᵢ and Σ tᵢ/(δᵢ − τ) over [begin, end), tᵢ = z²ᵢ/(δᵢ − τ): one fused pass, 8 lanes at a time (the
// divisions are its cost), the lanes added in a fixed order.
inline void secular_sums(const double* delta, const double* z2, Eigen::Index begin, Eigen::Index end, double tau,
                         double& value, double& slope) {
  SecularLanes v{}, s{};
  Eigen::Index i = begin;
  for (; i + 8 <= end; i += 8) {
    SecularLanes dl, zz;
    std::memcpy(&dl, delta + i, sizeof dl);
    std::memcpy(&zz, z2 + i, sizeof zz);
    const SecularLanes r = 1.0 / (dl - tau);
    const SecularLanes t = zz * r;
    v += t;
    s += t * r;
  }
  value = 0.0;
  slope = 0.0;
  for (int l = 0; l < 8; ++l) {
    value += v[l];
    slope += s[l];
  }
  for (; i < end; ++i) {
    const double r = 1.0 / (delta[i] - tau);
    value += z2[i] * r;
    slope += z2[i] * r * r;
  }
}

// The k roots of 1/ρ + Σ zᵢ²/(dᵢ − λ) = 0 (d strictly increasing, every zᵢ ≠ 0, ρ > 0), and
// delta(i, j) = dᵢ − λⱼ computed relative to root j's nearer pole. Returns false if a root is not finite.
inline bool secular_roots(const Eigen::VectorXd& d, const Eigen::VectorXd& z, double rho, Eigen::VectorXd& lambda,
                          Eigen::Ref<Eigen::MatrixXd> delta) {
  const Eigen::Index k = d.size();
  constexpr double eps = std::numeric_limits<double>::epsilon();
  const double rho_inv = 1.0 / rho;
  lambda.resize(k);
  if (k == 1) {
    lambda[0] = d[0] + rho * z[0] * z[0];
    delta(0, 0) = -rho * z[0] * z[0];
    return std::isfinite(lambda[0]);
  }
  const Eigen::VectorXd z2 = z.cwiseAbs2();
  const double z2_sum = z2.sum();
  for (Eigen::Index j = 0; j < k; ++j) {
    const bool last = j == k - 1;
    const Eigen::Index split = last ? j : j + 1;  // terms [0, split): the left group, [split, k): the right one
    double* del = delta.col(j).data();
    // the bracket of τ = λ − d[origin], origin the pole nearer the root
    Eigen::Index origin = j;
    double t_lo = 0.0, t_hi = 0.0, tau = 0.0;
    double psi = 0.0, dpsi = 0.0, phi = 0.0, dphi = 0.0;
    bool evaluated = false;  // the sums at τ are known (the midpoint's, for the first step)
    if (!last) {
      // the sums at the interval's midpoint decide the nearer pole (the secular function increases)
      const double mid = 0.5 * (d[j + 1] - d[j]);
      for (Eigen::Index i = 0; i < k; ++i) del[i] = d[i] - d[j];
      secular_sums(del, z2.data(), 0, split, mid, psi, dpsi);
      secular_sums(del, z2.data(), split, k, mid, phi, dphi);
      evaluated = true;
      if (rho_inv + psi + phi >= 0.0) {
        origin = j;
        t_lo = 0.0;
        t_hi = tau = mid;
      } else {
        origin = j + 1;
        t_lo = tau = -mid;
        t_hi = 0.0;
      }
    } else {
      t_lo = 0.0;
      t_hi = rho * z2_sum;
      tau = 0.5 * t_hi;
    }
    const double base = d[origin];
    if (last || origin != j)  // δᵢ = dᵢ − d[origin] (dᵢ − λ = δᵢ − τ); the midpoint pass left them relative to d[j]
      for (Eigen::Index i = 0; i < k; ++i) del[i] = d[i] - base;
    // the poles nearest the root on each side (the last root has only a left group)
    const double left_pole = last ? del[k - 2] : del[j];
    const double right_pole = last ? del[k - 1] : del[j + 1];
    for (int iter = 0; iter < 200; ++iter) {
      if (!evaluated) {
        secular_sums(del, z2.data(), 0, split, tau, psi, dpsi);
        secular_sums(del, z2.data(), split, k, tau, phi, dphi);
      }
      evaluated = false;
      // Σ|tᵢ|: the left group's terms are negative, the right group's positive (the last root's
      // single right term is negative too)
      const double err = last ? -(psi + phi) : phi - psi;
      const double w = rho_inv + psi + phi;
      if (!std::isfinite(w)) break;
      if (w == 0.0) break;
      if (std::abs(w) <= eps * (8.0 * err + rho_inv + std::abs(tau) * (dpsi + dphi))) break;
      if (w > 0.0) t_hi = tau;  // w increases with λ: the root lies left of τ
      else t_lo = tau;
      if (t_hi - t_lo <= 2.0 * eps * std::max(std::abs(t_lo), std::abs(t_hi))) break;
      // the two-pole model c + b/(p − η) + B/(q − η) matching ψ and φ (value and slope) at τ: its
      // root in the bracket (a quadratic cη² − αη + pqw = 0), else bisection. The last root's right
      // group is its single term, modelled exactly.
      const double p = left_pole - tau, q = right_pole - tau;
      const double b = dpsi * p * p, a = psi - dpsi * p;
      const double bb = last ? z2[k - 1] : dphi * q * q;
      const double aa = last ? 0.0 : phi - dphi * q;
      const double c = rho_inv + a + aa;
      const double alpha = c * (p + q) + b + bb;
      const double disc = std::max(0.0, alpha * alpha - 4.0 * c * p * q * w);
      const double big = alpha + std::copysign(std::sqrt(disc), alpha);  // |big| ≥ |α|
      double next = 0.5 * (t_lo + t_hi);
      if (big != 0.0) {
        const double small_root = tau + 2.0 * p * q * w / big;
        const double large_root = c != 0.0 ? tau + big / (2.0 * c) : small_root;
        if (small_root > t_lo && small_root < t_hi) next = small_root;
        else if (large_root > t_lo && large_root < t_hi) next = large_root;
      }
      if (!(next > t_lo && next < t_hi)) next = 0.5 * (t_lo + t_hi);
      if (next == tau) break;
      tau = next;
    }
    if (!std::isfinite(tau)) return false;
    lambda[j] = base + tau;
    for (Eigen::Index i = 0; i < k; ++i) del[i] -= tau;
  }
  return lambda.allFinite() && delta.allFinite();
}

// Storage reused by the merges (one merge at a time: the recursion merges the halves first), grown to
// the largest merge's size once (fresh n×n buffers per merge cost page faults).
struct Scratch {
  std::vector<double> q_sorted, q_kept, u, delta;
  std::vector<Eigen::Index> order;
  static Eigen::Map<Eigen::MatrixXd> matrix(std::vector<double>& buffer, Eigen::Index rows, Eigen::Index cols) {
    const auto size = static_cast<std::size_t>(rows * cols);
    if (buffer.size() < size) buffer.resize(size);
    return {buffer.data(), rows, cols};
  }
  void reserve(Eigen::Index n) {
    for (auto* b : {&q_sorted, &q_kept, &u, &delta}) b->reserve(static_cast<std::size_t>(n * n));
  }
};

// On entry d (n) and e (n − 1) hold T; on exit d holds T's eigenvalues and the columns of q (n×n) the
// eigenvectors, in no particular order (the caller sorts once). Returns false if a leaf's QR iteration
// did not converge or a value is not finite.
inline bool tridiagonal_eigen(double* d, double* e, Eigen::Index n, Eigen::Ref<Eigen::MatrixXd> q, Scratch& s);

// T = diag(T₁, T₂) + ρvvᵀ from the halves' eigenpairs (d, q block-diagonal); coupling = T(m − 1, m).
inline bool merge(double* d, Eigen::Index n, Eigen::Index m, double coupling, Eigen::Ref<Eigen::MatrixXd> q,
                  Scratch& s) {
  constexpr double eps = std::numeric_limits<double>::epsilon();
  double rho = std::abs(coupling);
  const double sign = coupling >= 0.0 ? 1.0 : -1.0;
  Eigen::VectorXd z(n);
  for (Eigen::Index i = 0; i < m; ++i) z[i] = q(m - 1, i);
  for (Eigen::Index i = m; i < n; ++i) z[i] = sign * q(m, i);
  const double z_norm2 = z.squaredNorm();  // 2 in exact arithmetic (a row of each orthogonal half)
  rho *= z_norm2;
  z /= std::sqrt(z_norm2);

  // ascending order of d; each column's support: 1 = the top m rows, 2 = the bottom ones, 3 = both
  std::vector<Eigen::Index>& order = s.order;
  order.resize(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  std::sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return d[a] != d[b] ? d[a] < d[b] : a < b; });
  auto qs = Scratch::matrix(s.q_sorted, n, n);
  Eigen::VectorXd ds(n), zs(n);
  std::vector<unsigned char> support(static_cast<std::size_t>(n));
  for (Eigen::Index c = 0; c < n; ++c) {
    const Eigen::Index from = order[static_cast<std::size_t>(c)];
    qs.col(c) = q.col(from);
    ds[c] = d[from];
    zs[c] = z[from];
    support[static_cast<std::size_t>(c)] = from < m ? 1 : 2;
  }

  // deflation
  const double tol = 8.0 * eps * std::max(ds.cwiseAbs().maxCoeff(), rho * zs.cwiseAbs().maxCoeff());
  std::vector<Eigen::Index> kept, deflated;
  kept.reserve(static_cast<std::size_t>(n));
  deflated.reserve(static_cast<std::size_t>(n));
  Eigen::Index pj = -1;
  for (Eigen::Index nj = 0; nj < n; ++nj) {
    if (rho * std::abs(zs[nj]) <= tol) {
      deflated.push_back(nj);
      continue;
    }
    if (pj < 0) {
      pj = nj;
      continue;
    }
    double sv = zs[pj], cv = zs[nj];
    const double tau = std::hypot(cv, sv);
    const double t = ds[nj] - ds[pj];
    cv /= tau;
    sv = -sv / tau;
    if (std::abs(t * cv * sv) <= tol) {
      // rotate columns pj, nj so that z[pj] = 0; pj is then an eigenpair
      zs[nj] = tau;
      zs[pj] = 0.0;
      auto x = qs.col(pj), y = qs.col(nj);
      const Eigen::VectorXd x0 = x;
      x = cv * x0 + sv * y;
      y = cv * y - sv * x0;
      const double dp = ds[pj] * cv * cv + ds[nj] * sv * sv;
      ds[nj] = ds[pj] * sv * sv + ds[nj] * cv * cv;
      ds[pj] = dp;
      support[static_cast<std::size_t>(nj)] |= support[static_cast<std::size_t>(pj)];
      support[static_cast<std::size_t>(pj)] = support[static_cast<std::size_t>(nj)];
      deflated.push_back(pj);
    } else {
      kept.push_back(pj);
    }
    pj = nj;
  }
  if (pj >= 0) kept.push_back(pj);

  const auto k = static_cast<Eigen::Index>(kept.size());
  if (k > 0) {
    Eigen::VectorXd dk(k), zk(k);
    for (Eigen::Index i = 0; i < k; ++i) {
      dk[i] = ds[kept[static_cast<std::size_t>(i)]];
      zk[i] = zs[kept[static_cast<std::size_t>(i)]];
    }
    Eigen::VectorXd lambda;
    auto delta = Scratch::matrix(s.delta, k, k);
    if (!secular_roots(dk, zk, rho, lambda, delta)) return false;
    // Gu–Eisenstat: ẑ from the roots, then uⱼ = (ẑᵢ / (dᵢ − λⱼ))ᵢ normalised.
    // ẑᵢ² = (λ_k − dᵢ)/ρ · Π_{j<i} (λⱼ − dᵢ)/(dⱼ − dᵢ) · Π_{i≤j<k−1} (λⱼ − dᵢ)/(dⱼ₊₁ − dᵢ): every factor
    // positive, taken column by column of delta (dᵢ − λⱼ) so the divisions vectorise
    Eigen::ArrayXd prod = -delta.col(k - 1).array() / rho;
    for (Eigen::Index j = 0; j + 1 < k; ++j) {
      const auto col = delta.col(j).array();
      prod.head(j + 1) *= col.head(j + 1) / (dk.array().head(j + 1) - dk[j + 1]);
      prod.tail(k - j - 1) *= col.tail(k - j - 1) / (dk.array().tail(k - j - 1) - dk[j]);
    }
    Eigen::VectorXd zhat(k);
    for (Eigen::Index i = 0; i < k; ++i) zhat[i] = std::copysign(std::sqrt(std::max(prod[i], 0.0)), zk[i]);
    auto u = Scratch::matrix(s.u, k, k);
    for (Eigen::Index j = 0; j < k; ++j) {
      u.col(j).array() = zhat.array() / delta.col(j).array();
      const double norm = u.col(j).norm();
      if (!(norm > 0.0) || !std::isfinite(norm)) return false;
      u.col(j) /= norm;
    }
    // Q·U by support: the kept columns grouped top-only (k₁), both (k₂), bottom-only (k₃), U's rows
    // alike; the top m rows are Q[:, top ∪ both]·U[top ∪ both, :], the others Q[:, both ∪ bottom]·U[…]
    // (the zero blocks of diag(Q₁, Q₂) skipped: about half the flops of the dense product)
    std::vector<Eigen::Index> grouped;
    grouped.reserve(static_cast<std::size_t>(k));
    for (unsigned char g : {1, 3, 2})
      for (Eigen::Index i = 0; i < k; ++i)
        if (support[static_cast<std::size_t>(kept[static_cast<std::size_t>(i)])] == g) grouped.push_back(i);
    Eigen::Index k1 = 0, k3 = 0;
    for (Eigen::Index i : grouped) {
      const unsigned char g = support[static_cast<std::size_t>(kept[static_cast<std::size_t>(i)])];
      k1 += g == 1;
      k3 += g == 2;
    }
    const Eigen::Index k2 = k - k1 - k3;
    auto qk = Scratch::matrix(s.q_kept, n, k);
    auto ug = Scratch::matrix(s.delta, k, k);  // delta is spent: its storage takes U's grouped rows
    for (Eigen::Index t = 0; t < k; ++t) qk.col(t) = qs.col(kept[static_cast<std::size_t>(grouped[static_cast<std::size_t>(t)])]);
    for (Eigen::Index j = 0; j < k; ++j) {
      const double* from = u.col(j).data();
      double* to = ug.col(j).data();
      for (Eigen::Index t = 0; t < k; ++t) to[t] = from[grouped[static_cast<std::size_t>(t)]];
    }
    q.topLeftCorner(m, k).noalias() = qk.topLeftCorner(m, k1 + k2) * ug.topRows(k1 + k2);
    q.bottomLeftCorner(n - m, k).noalias() = qk.bottomRightCorner(n - m, k2 + k3) * ug.bottomRows(k2 + k3);
    for (Eigen::Index j = 0; j < k; ++j) d[j] = lambda[j];
  }
  for (std::size_t t = 0; t < deflated.size(); ++t) {
    const auto c = k + static_cast<Eigen::Index>(t);
    q.col(c) = qs.col(deflated[t]);
    d[c] = ds[deflated[t]];
  }
  return true;
}

inline bool tridiagonal_eigen(double* d, double* e, Eigen::Index n, Eigen::Ref<Eigen::MatrixXd> q, Scratch& s) {
  if (n <= kDivideConquerLeaf) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> leaf;
    const Eigen::VectorXd diag = Eigen::Map<const Eigen::VectorXd>(d, n);
    const Eigen::VectorXd sub = n > 1 ? Eigen::VectorXd(Eigen::Map<const Eigen::VectorXd>(e, n - 1)) : Eigen::VectorXd();
    leaf.computeFromTridiagonal(diag, sub, Eigen::ComputeEigenvectors);
    if (leaf.info() != Eigen::Success) return false;
    Eigen::Map<Eigen::VectorXd>(d, n) = leaf.eigenvalues();
    q = leaf.eigenvectors();
    return true;
  }
  const Eigen::Index m = n / 2;
  const double coupling = e[m - 1];
  const double rho = std::abs(coupling);
  d[m - 1] -= rho;
  d[m] -= rho;
  q.topRightCorner(m, n - m).setZero();  // the diagonal blocks are written by the halves
  q.bottomLeftCorner(n - m, m).setZero();
  if (!tridiagonal_eigen(d, e, m, q.topLeftCorner(m, m), s)) return false;
  if (!tridiagonal_eigen(d + m, e + m, n - m, q.bottomRightCorner(n - m, n - m), s)) return false;
  return merge(d, n, m, coupling, q, s);
}

}  // namespace dc

/// values (ascending) and vectors (orthonormal columns) of the symmetric matrix a (its lower triangle is
/// read). Returns false if the matrix has a NaN or Inf or an iteration did not converge (values and
/// vectors then unspecified).
inline bool symmetric_eigen(const Eigen::MatrixXd& a, Eigen::VectorXd& values, Eigen::MatrixXd& vectors) {
  const Eigen::Index n = a.rows();
  for (Eigen::Index c = 0; c < n; ++c)  // the lower triangle, read in place
    if (!a.col(c).tail(n - c).allFinite()) return false;
  if (n < kDivideConquerMinSize) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(a, Eigen::ComputeEigenvectors);
    if (solver.info() != Eigen::Success) return false;
    values = solver.eigenvalues();
    vectors = solver.eigenvectors();
    return true;
  }
  Eigen::MatrixXd reflectors;
  Eigen::VectorXd sub, hcoeffs;
  if (n >= kBlockedTridiagonalMinSize) {
    reflectors = a;
    tridiagonalize_blocked(reflectors, values, sub, hcoeffs);
  } else {
    Eigen::Tridiagonalization<Eigen::MatrixXd> tri(a);
    values = tri.diagonal();
    sub = tri.subDiagonal();
    reflectors = tri.packedMatrix();
    hcoeffs = tri.householderCoefficients();
  }
  Eigen::MatrixXd z(n, n);
  dc::Scratch scratch;
  scratch.reserve(n);
  if (!dc::tridiagonal_eigen(values.data(), sub.data(), n, z, scratch)) return false;
  // ascending order, then V = Q·Z
  std::vector<Eigen::Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  std::sort(order.begin(), order.end(),
            [&](Eigen::Index x, Eigen::Index y) { return values[x] != values[y] ? values[x] < values[y] : x < y; });
  const Eigen::VectorXd unsorted = values;
  vectors.resize(n, n);
  for (Eigen::Index c = 0; c < n; ++c) {
    values[c] = unsorted[order[static_cast<std::size_t>(c)]];
    vectors.col(c) = z.col(order[static_cast<std::size_t>(c)]);
  }
  Eigen::HouseholderSequence<Eigen::MatrixXd, Eigen::VectorXd> q(reflectors, hcoeffs);
  q.setLength(n - 1).setShift(1);
  q.applyThisOnTheLeft(vectors);  // V = Q·Z
  return values.allFinite() && vectors.allFinite();
}

}  // namespace fisher_unlearn::detail
