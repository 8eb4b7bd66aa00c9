// Models and reference scorers shared by the exposure tests (fast and slow files): an independent
// brute-force scorer for table models, a model that realises any distribution over digit candidates,
// and the two size-parameterised checks of the extrapolation.
#pragma once

#include "exposure_fixtures.hpp"
#include "fisher_unlearn/exposure.hpp"
#include "fisher_unlearn/testing/table_language_model.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

namespace exposure_models {

namespace fu = fisher_unlearn;
using fu::testing::TableContext;
using fu::testing::TableLanguageModel;

/// ℓ(c) computed straight from the table, independently of the library's scorer: the same definition
/// (clamp at 0, double accumulation in token order).
template <class Scalar>
double reference_score(const TableLanguageModel<Scalar>& m, const fu::CanarySpace& space, const fu::Canary& c) {
  const auto prefix = space.prefix_tokens();
  const auto toks = space.secret_tokens(c);
  double s = 0.0;
  for (std::size_t j = 0; j < toks.size(); ++j) {
    const fu::Token prev = j > 0 ? toks[j - 1] : (prefix.empty() ? -1 : prefix.back());
    const double lp = static_cast<double>(m.row(m.row_index(prefix.size() + j, prev))[static_cast<std::size_t>(toks[j])]);
    s += std::min(lp, 0.0);
  }
  return s;
}

template <class Scalar>
std::vector<double> reference_scores(const TableLanguageModel<Scalar>& m, const fu::CanarySpace& space) {
  std::vector<double> out(space.format().space_size());
  for (std::uint64_t i = 0; i < out.size(); ++i) out[i] = reference_score(m, space, space.format().canary_at(i));
  return out;
}

struct RefRank {
  std::uint64_t rank = 1;
  std::uint64_t ties = 0;
};
RefRank reference_rank(const std::vector<double>& scores, double target) {
  RefRank r;
  std::uint64_t equal = 0;
  for (double s : scores) {
    if (s > target) ++r.rank;
    if (s == target) ++equal;
  }
  r.ties = equal - 1;
  return r;
}

/// A language model over digit secrets that realises ANY distribution over the 10^slots candidates:
/// the row at a node of the digit tree holds log(mass(child)/mass(node)), so ℓ(c) telescopes to
/// log w(c) − log Σ w. Lets a test choose the candidates' log-perplexities outright (bell-shaped ones).
class CandidateTableModel {
 public:
  using Scalar = double;
  using Sample = std::vector<fu::Token>;
  struct DecodeState {
    std::size_t length = 0;
    std::uint64_t node = 0;
  };

  CandidateTableModel(std::size_t prefix_len, int slots, const std::vector<double>& log_weights)
      : prefix_len_(prefix_len), slots_(slots), offsets_(static_cast<std::size_t>(slots) + 2, 0) {
    std::size_t width = 1;
    for (int d = 0; d <= slots; ++d) {
      offsets_[d + 1] = offsets_[d] + width;
      width *= 10;
    }
    theta_.resize(offsets_.back());
    REQUIRE(log_weights.size() == level_size(slots));
    std::copy(log_weights.begin(), log_weights.end(), theta_.begin() + static_cast<std::ptrdiff_t>(offsets_[slots]));
    for (int d = slots - 1; d >= 0; --d)
      for (std::size_t n = 0; n < level_size(d); ++n) {
        const double* ch = &theta_[offsets_[d + 1] + 10 * n];
        const double mx = *std::max_element(ch, ch + 10);
        double z = 0.0;
        for (int a = 0; a < 10; ++a) z += std::exp(ch[a] - mx);
        theta_[offsets_[d] + n] = mx + std::log(z);
      }
  }

  std::size_t vocab_size() const { return 256; }
  std::size_t num_parameters() const { return theta_.size(); }
  std::span<double> parameters() { return theta_; }
  std::span<const double> parameters() const { return theta_; }
  double loss(const Sample& s) const {
    std::vector<double> row(256);
    double sum = 0.0;
    for (std::size_t j = 0; j < s.size(); ++j) {
      next_token_log_probs(std::span<const fu::Token>(s.data(), j), row);
      sum -= row[static_cast<std::size_t>(s[j])];
    }
    return sum / static_cast<double>(s.size());
  }

  DecodeState begin_decode(std::span<const fu::Token> context) const {
    DecodeState st;
    for (fu::Token t : context) advance(st, t);
    return st;
  }
  void advance(DecodeState& st, fu::Token t) const {
    if (st.length >= prefix_len_ && st.length < prefix_len_ + static_cast<std::size_t>(slots_))
      st.node = 10 * st.node + static_cast<std::uint64_t>(t - '0');
    ++st.length;
  }
  void log_probs(const DecodeState& st, std::span<double> out) const {
    const std::size_t depth = st.length - std::min(st.length, prefix_len_);
    if (st.length < prefix_len_ || depth >= static_cast<std::size_t>(slots_)) {
      std::fill(out.begin(), out.end(), -std::log(256.0));
      return;
    }
    std::fill(out.begin(), out.end(), -std::numeric_limits<double>::infinity());
    const double here = theta_[offsets_[depth] + st.node];
    for (int a = 0; a < 10; ++a) out['0' + a] = theta_[offsets_[depth + 1] + 10 * st.node + a] - here;
  }
  void next_token_log_probs(std::span<const fu::Token> context, std::span<double> out) const {
    log_probs(begin_decode(context), out);
  }

  /// ℓ of the candidate with number n, summed in token order as the definition says.
  double path_score(std::uint64_t n) const {
    double s = 0.0;
    std::uint64_t node = 0, div = level_size(slots_ - 1);
    for (int d = 0; d < slots_; ++d, div /= 10) {
      const std::uint64_t child = 10 * node + (n / div) % 10;
      s += std::min(0.0, theta_[offsets_[d + 1] + child] - theta_[offsets_[d] + node]);
      node = child;
    }
    return s;
  }

 private:
  static std::size_t level_size(int d) {
    std::size_t n = 1;
    for (int i = 0; i < d; ++i) n *= 10;
    return n;
  }
  std::size_t prefix_len_;
  int slots_;
  std::vector<std::size_t> offsets_;
  std::vector<double> theta_;
};

static_assert(fu::IncrementalLanguageModel<CandidateTableModel>);

/// Φ⁻¹(p) (Acklam's rational approximation, |error| < 1.2e-9; monotone at the resolution used here).
double normal_quantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  auto tail = [&](double q) {
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  };
  if (p < 0.02425) return tail(std::sqrt(-2.0 * std::log(p)));
  if (p > 1.0 - 0.02425) return -tail(std::sqrt(-2.0 * std::log1p(-p)));
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

/// All three estimators against ranks known by construction, on 10^slots digit candidates.
inline void check_ranks_known_by_construction(int slots) {
  // Candidate π(i) gets log-weight σ·Φ⁻¹((i + ½)/|R|) for a seeded permutation π: its rank is |R| − i
  // by construction, and the log-perplexities are normal quantiles (bell-shaped).
  const auto f = fu::CanaryFormat::digits("key=", static_cast<std::size_t>(slots));
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const std::size_t n = f.space_size();
  const double log2n = std::log2(static_cast<double>(n));
  std::vector<std::uint64_t> perm(n);
  for (std::size_t i = 0; i < n; ++i) perm[i] = i;
  std::mt19937_64 rng(2024);
  for (std::size_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[fu::detail::uniform_below(rng, i + 1)]);
  std::vector<double> logw(n);
  double previous = -1e300;
  std::size_t not_increasing = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double g = 2.5 * normal_quantile((static_cast<double>(i) + 0.5) / static_cast<double>(n));
    if (!(g > previous)) ++not_increasing;
    previous = g;
    logw[perm[i]] = g;
  }
  REQUIRE(not_increasing == 0);
  const CandidateTableModel m(4, slots, logw);
  fu::ExtrapolationOptions opt;
  opt.samples = 4096;
  opt.bootstrap = 40;
  opt.exact_up_to = 0;  // |R| = 10^5 would be counted exactly by default
  const fu::ExtrapolatedExposure extrapolated(opt);
  const auto fit = extrapolated.fit(m, space);
  for (std::uint64_t rank : {std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{40}, std::uint64_t{1000}, n / 40, n / 10 * 4}) {
    const auto c = f.canary_at(perm[n - rank]);
    const double exact = log2n - std::log2(static_cast<double>(rank));
    const auto pr = fu::PrunedExposure{}.measure(m, space, c);
    INFO("rank " << rank << ": " << pr);
    CHECK(pr.rank == rank);
    CHECK(pr.ties == 0);
    CHECK(pr.exposure_bits == Approx(exact).epsilon(1e-14));
    if (rank == 1000) {
      const auto ex = fu::ExhaustiveExposure{}.measure(m, space, c);
      CHECK(ex.rank == rank);
      CHECK(pr.evaluations < ex.evaluations);
    }
    if (rank >= 10 && rank <= n / 10) {
      const auto r = fit.evaluate(pr.log_perplexity_bits);
      INFO("extrapolated: " << r);
      CHECK(r.exposure_low <= exact);
      CHECK(exact <= r.exposure_high);
      CHECK(std::abs(r.exposure_bits - exact) <= 1.0);
    }
  }
  const auto c = f.canary_at(perm[n - 1000]);
  const auto one = extrapolated.measure(m, space, c);  // fit + evaluate in one call, same seed
  CHECK(one.exposure_bits == fit.evaluate(one.log_perplexity_bits).exposure_bits);
  CHECK(one.method == "extrapolated");
  CHECK_FALSE(one.exact);
}

/// Extrapolation within 1 bit of exact for ranks in [10, |R|/10], on 10^slots candidates with skewed bell-shaped scores.
inline void check_extrapolation_within_one_bit(int slots) {
  // Log-weights drawn i.i.d. from a skewed bell (skew-normal, α = 4, scale 2): the candidates'
  // log-perplexities are bell-shaped and skewed, and exact ranks come from scoring all 10^6.
  const auto f = fu::CanaryFormat::digits("code ", static_cast<std::size_t>(slots));
  const fu::CanarySpace space(f, fu::ByteTokenizer{});
  const std::size_t n = f.space_size();
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal(0.0, 1.0);
  const double delta = 4.0 / std::sqrt(17.0);
  std::vector<double> logw(n);
  for (auto& w : logw) w = 2.0 * (delta * std::abs(normal(rng)) + std::sqrt(1.0 - delta * delta) * normal(rng));
  const CandidateTableModel m(5, slots, logw);
  std::vector<double> scores(n);
  for (std::size_t i = 0; i < n; ++i) scores[i] = m.path_score(i);
  std::vector<std::uint64_t> order(n);
  for (std::uint64_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return scores[a] > scores[b]; });
  fu::ExtrapolationOptions opt;
  opt.samples = 4096;
  opt.bootstrap = 0;
  const auto fit = fu::ExtrapolatedExposure(opt).fit(m, space);
  std::size_t checked = 0;
  for (std::uint64_t target = 10; target <= n / 10; target = target * 2 + target / 2) {
    ++checked;
    const auto c = f.canary_at(order[target - 1]);
    const auto ref = reference_rank(scores, scores[order[target - 1]]);
    const double exact = std::log2(static_cast<double>(n)) - std::log2(static_cast<double>(ref.rank));
    const auto r = fit.evaluate(fu::canary_log_perplexity_bits(m, space, c));
    INFO("exact rank " << ref.rank << ", exact exposure " << exact << "; " << r);
    CHECK(std::abs(r.exposure_bits - exact) <= 1.0);
  }
  CHECK(checked >= 8);
  const auto c = f.canary_at(order[299]);
  CHECK(fu::PrunedExposure{}.measure(m, space, c).rank == reference_rank(scores, scores[order[299]]).rank);
}

}  // namespace exposure_models
