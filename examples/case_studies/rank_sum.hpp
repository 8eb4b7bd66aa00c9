// The exact two-sided Mann–Whitney rank-sum test (mid-ranks for ties) that case A uses to compare the
// deleted addresses' ranks under an unlearned model with those under the retrained model. Cost: one
// pass per split of the pooled values, C(n_a + n_b, n_a) of them (normal approximation above 2·10⁶).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace case_studies {

/// Exact two-sided p-value of the Mann–Whitney rank-sum test (mid-ranks for ties) by enumerating every
/// split of the pooled values (≤ 2·10⁶ splits; otherwise the normal approximation with tie correction).
inline double rank_sum_p_value(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t na = a.size(), nb = b.size(), n = na + nb;
  if (na == 0 || nb == 0) return std::nan("");
  std::vector<std::pair<double, std::size_t>> v;
  for (std::size_t i = 0; i < n; ++i) v.emplace_back(i < na ? a[i] : b[i - na], i);
  std::sort(v.begin(), v.end());
  std::vector<double> mid(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && v[j].first == v[i].first) ++j;
    for (std::size_t k = i; k < j; ++k) mid[v[k].second] = 0.5 * static_cast<double>(i + j + 1);
    i = j;
  }
  double observed = 0;
  for (std::size_t i = 0; i < na; ++i) observed += mid[i];
  const double mean = static_cast<double>(na) * static_cast<double>(n + 1) / 2.0;
  const double dev = std::abs(observed - mean) - 1e-9;
  double splits = 1;
  for (std::size_t k = 0; k < na; ++k) splits = splits * static_cast<double>(n - k) / static_cast<double>(k + 1);
  if (splits <= 2e6) {
    std::vector<int> pick(n, 0);
    std::fill(pick.begin(), pick.begin() + static_cast<std::ptrdiff_t>(na), 1);
    std::sort(pick.begin(), pick.end());
    double extreme = 0, total = 0;
    do {
      double s = 0;
      for (std::size_t i = 0; i < n; ++i)
        if (pick[i]) s += mid[i];
      total += 1;
      if (std::abs(s - mean) >= dev) extreme += 1;
    } while (std::next_permutation(pick.begin(), pick.end()));
    return extreme / total;
  }
  double var = 0;
  for (double m : mid) var += (m - static_cast<double>(n + 1) / 2.0) * (m - static_cast<double>(n + 1) / 2.0);
  var *= static_cast<double>(na) * static_cast<double>(nb) / (static_cast<double>(n) * static_cast<double>(n - 1));
  return std::erfc(dev / std::sqrt(2.0 * var));
}

}  // namespace case_studies
