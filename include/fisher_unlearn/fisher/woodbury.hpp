// WoodburyFisher: exact F = λI + (1/m)GGᵀ (G = [g₁ … g_m], d×m) kept in low-rank form. With
// K = (1/m)GᵀG = UΣUᵀ, F^p v = λ^p v + Σⱼ ((λ+σⱼ)^p − λ^p) wⱼ(wⱼᵀv), wⱼ = G uⱼ/√(mσⱼ), for ANY real p.
// Cost: add O(md) (one Gram row), finalize O(m³), product O(md + m²); memory m·d·sizeof(Scalar) + O(m²) doubles.
// (Applied as λ^p v + G·U·diag(φ(σ))·Uᵀ·Gᵀv with φ(σ) = ((λ+σ)^p − λ^p)/(mσ), so W is never formed.)
// With more gradients than parameters (m > d) the same F is kept in the primal d×d form S = GGᵀ
// (add O(d²) per gradient, finalize O(d³), product O(d²)): WoodburyForm::automatic switches by itself.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/fisher_common.hpp"
#include "fisher_unlearn/detail/fisher_kernels.hpp"
#include "fisher_unlearn/detail/memory.hpp"
#include "fisher_unlearn/detail/symmetric_eigen.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace fisher_unlearn {

/// Which side of the Woodbury identity WoodburyFisher works on. Both give the same F^p v to rounding.
enum class WoodburyForm {
  automatic,  ///< dual (m×m Gram) while m ≤ d, primal (d×d) from the first gradient that makes m > d
  dual,       ///< always the m×m Gram matrix: O(m³) finalize, right when m ≪ d
  primal,     ///< always the d×d second moment GGᵀ: O(d³) finalize, right when d ≪ m
};

inline const char* to_string(WoodburyForm form) {
  switch (form) {
    case WoodburyForm::dual: return "dual";
    case WoodburyForm::primal: return "primal";
    default: return "automatic";
  }
}

/// Exact low-rank-plus-damping Fisher (the structure behind WoodFisher / "Woodbury" Newton steps).
///
/// What is exact: every product F^p v is exact up to rounding for every finite real p. Eigenvalues σⱼ
/// of K = (1/m)GᵀG with σⱼ ≤ m·ε_double·σ_max (round-off, including the negative ones) are treated as
/// exactly zero: the numerical null space of K (linearly dependent gradients, m > d). For those, φ takes
/// its limit φ(0) = p·λ^(p−1)/m, so no 1/σ blows up and nothing is dropped; as G·uⱼ ≈ 0 there, their
/// contribution is at the level of rounding. spectrum() reports the σⱼ above the threshold.
///
/// Precision: G is stored in Scalar; the Gram matrix GᵀG, its eigendecomposition and both O(md)
/// products of apply_power are accumulated in double (float inputs converted in row blocks), so a float
/// estimator returns the double answer for its float gradients, rounded once.
///
/// Sliding window: with window > 0 the estimator keeps the last `window` gradients; adding to a full
/// window replaces the oldest (O(md) for the new Gram row, then O(m³) at the next finalize()).
/// The gradients are stored in slots whose order is irrelevant to F.
///
/// Primal form: when m > d the m×m Gram matrix is the wrong side (a d = 30 model with m = 2 000
/// gradients costs O(m³) = 8·10⁹ flops per finalize instead of O(d³)). WoodburyForm::automatic (the
/// default) then keeps S = GGᵀ (d×d, double) updated per gradient instead of the Gram matrix, and
/// finalize() eigendecomposes S/m; the stored gradients, the window, replace_oldest() and spectrum() are
/// unchanged. current_form() says which side is in use.
template <SupportedScalar ScalarT>
class WoodburyFisher {
 public:
  using Scalar = ScalarT;

  /// dimension: d. damping: λ > 0. window: keep at most this many gradients (0: unbounded).
  /// form: which side of the identity to work on (automatic: the cheaper one, see the class comment).
  WoodburyFisher(std::size_t dimension, Scalar damping, std::size_t window = 0,
                 WoodburyForm form = WoodburyForm::automatic)
      : dimension_(detail::checked_dimension("WoodburyFisher", dimension)),
        damping_(detail::checked_damping("WoodburyFisher", damping)),
        window_(window),
        form_(form),
        primal_(form == WoodburyForm::primal),
        G_(static_cast<Eigen::Index>(dimension), 0) {}

  std::size_t dimension() const { return dimension_; }
  /// The form asked for at construction.
  WoodburyForm form() const { return form_; }
  /// The side in use now: WoodburyForm::dual or WoodburyForm::primal.
  WoodburyForm current_form() const { return primal_ ? WoodburyForm::primal : WoodburyForm::dual; }
  std::size_t window() const { return window_; }

  /// Threads for the O(md) and O(m²d) passes over the gradients (Gram update, Gᵀv, G·y); 0 means all
  /// hardware threads. Default 1. Results are bitwise the same for every thread count (the work is cut
  /// into chunks that depend on d and m only; see detail/fisher_kernels.hpp).
  void set_num_threads(std::size_t threads) { num_threads_ = threads; }
  std::size_t num_threads() const { return num_threads_; }
  std::size_t num_gradients() const { return m_; }
  bool is_finalized() const { return finalized_; }

  /// Adds one gradient; when the window is full it replaces the oldest one. Throws InvalidArgument
  /// (size) or NonFiniteError; the estimator is unchanged then.
  void add_gradient(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("WoodburyFisher::add_gradient", gradient, dimension_);
    insert_columns(gradient);
  }

  /// Adds the columns of a d×k matrix; a batch with a NaN or Inf entry is rejected whole (NonFiniteError,
  /// nothing changed). The Gram update is one GEMM, O((m+k)·k·d). With a window, only the last `window`
  /// columns survive the call. On the dual side the batch is read once: the new columns are copied into
  /// the estimator's storage while their Gram block is computed, and finiteness is read off that block's
  /// diagonal (a NaN/Inf entry makes its column's sum of squares non-finite; only then is the batch
  /// scanned, to tell it from finite entries whose squares overflow, which are accepted).
  void add_gradients(Eigen::Ref<const Matrix<Scalar>> gradients) {
    Eigen::Index k = gradients.cols();
    if (window_ > 0 && static_cast<std::size_t>(k) > window_) k = static_cast<Eigen::Index>(window_);
    // Columns the window drops are not read again: check the whole batch now. Otherwise the size only.
    if (k < gradients.cols())
      detail::check_gradients("WoodburyFisher::add_gradients", gradients, dimension_);
    else
      detail::check_gradients("WoodburyFisher::add_gradients", gradients.leftCols(0), dimension_);
    if (k == 0) return;
    insert_columns(gradients.rightCols(k), /*finite_checked=*/k < gradients.cols());
  }

  /// add_gradients for a matrix the caller gives away: an empty estimator in the dual form takes its
  /// storage instead of copying it (no d×k copy: half the peak memory of the set-up, and no page faults
  /// on fresh storage), and ends in the same state, bit for bit, as add_gradients(gradients). Any other
  /// case (gradients already held, a window shorter than k, the primal side) copies as add_gradients
  /// does. Same checks and errors; on an error `gradients` and the estimator are unchanged.
  void adopt_gradients(Matrix<Scalar>&& gradients) {
    const auto k = static_cast<std::size_t>(gradients.cols());
    const bool dual_after = form_ == WoodburyForm::dual || (form_ == WoodburyForm::automatic && k <= dimension_);
    if (m_ != 0 || primal_ || !dual_after || (window_ > 0 && k > window_)) {
      add_gradients(gradients);
      return;
    }
    // The size here; finiteness from the Gram, without a separate pass over G: a NaN or Inf entry makes
    // its column's diagonal entry (a sum of squares) NaN or +Inf, and only then is G scanned, to tell it
    // from finite entries whose squares overflow (accepted, as add_gradients accepts them).
    detail::check_gradients("WoodburyFisher::adopt_gradients", gradients.leftCols(0), dimension_);
    if (k == 0) return;
    Eigen::MatrixXd gram = detail::gram_in_double(gradients, num_threads_);  // may throw: nothing changed yet
    if (!gram.diagonal().allFinite() && !gradients.allFinite())
      throw detail::non_finite_gradients_error("WoodburyFisher::adopt_gradients");
    std::vector<std::uint64_t> stamps(k);
    for (std::size_t j = 0; j < k; ++j) stamps[j] = next_stamp_ + j;
    // Commit.
    G_.swap(gradients);
    gradients.resize(static_cast<Eigen::Index>(dimension_), 0);  // what the caller is left with: empty
    gram_.swap(gram);
    stamps_.swap(stamps);
    next_stamp_ += k;
    m_ = k;
    finalized_ = false;
  }

  /// Replaces the oldest stored gradient by `gradient` (whatever the window). O(md).
  /// Throws StateError when the estimator holds no gradient.
  void replace_oldest(Eigen::Ref<const Vector<Scalar>> gradient) {
    detail::check_gradients("WoodburyFisher::replace_oldest", gradient, dimension_);
    if (m_ == 0) throw StateError("WoodburyFisher::replace_oldest: the estimator holds no gradient; add one first");
    write_slots(gradient, std::vector<std::size_t>{oldest_slot()}, m_);
  }

  /// Eigendecomposes K = (1/m)GᵀG (O(m³)) and factors mλI + GᵀG for inverse_product (O(m³/3)); in the
  /// primal form S/m = (1/m)GGᵀ (O(d³)) and λI + S/m. Throws InvalidArgument when no gradient was
  /// added, NumericalError if the eigensolver fails.
  void finalize() {
    if (m_ == 0)
      throw InvalidArgument("WoodburyFisher::finalize: no gradients were added (m = 0); add at least one");
    const auto m = static_cast<Eigen::Index>(primal_ ? dimension_ : m_);
    Eigen::VectorXd values;
    Eigen::MatrixXd vectors;
    if (!detail::symmetric_eigen(primal_ ? Eigen::MatrixXd(outer_ / static_cast<double>(m_))
                                         : Eigen::MatrixXd(gram_.topLeftCorner(m, m) / static_cast<double>(m_)),
                                 values, vectors))
      throw NumericalError("WoodburyFisher::finalize: the eigensolver of the m×m Gram matrix did not converge; "
                           "check the gradients for extreme scales");
    eigenvalues_ = std::move(values);  // ascending
    const double sigma_max = std::max(eigenvalues_[m - 1], 0.0);
    const double threshold = static_cast<double>(m) * std::numeric_limits<double>::epsilon() * sigma_max;
    rank_ = 0;
    for (Eigen::Index j = 0; j < m; ++j) {
      if (eigenvalues_[j] > threshold) ++rank_;
      else eigenvalues_[j] = 0.0;
    }
    eigenvectors_ = std::move(vectors);
    finalized_ = true;
    factor_woodbury();
  }

  /// Every finite real p.
  bool supports_power(double power) const { return std::isfinite(power); }

  /// out = F^p v, O(md + m²). p = −1 uses the Woodbury solve (see inverse_product), other p the
  /// spectral formula. out must have size d and not alias v.
  void apply_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("WoodburyFisher::apply_power", supports_power(power), power);
    detail::check_apply("WoodburyFisher::apply_power", finalized_, dimension_, v, out);
    if (power == -1.0 && woodbury_factor_ok_) {
      woodbury_solve(v, out);
      return;
    }
    spectral_power(power, v, out);
  }

  /// out = F⁻¹v by the Woodbury identity: c = (mλI + GᵀG)⁻¹(Gᵀv), out = (v − Gc)/λ. O(md + m²).
  /// The m×m factor is a Cholesky in double, refreshed by finalize() and set_damping().
  void inverse_product(Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_apply("WoodburyFisher::inverse_product", finalized_, dimension_, v, out);
    if (!woodbury_factor_ok_)
      throw NumericalError("WoodburyFisher::inverse_product: the Cholesky factor of mλI + GᵀG failed (λ is "
                           "negligible against the gradients); use apply_power(-1, ...) or a larger damping");
    woodbury_solve(v, out);
  }

  /// out = F^p v by the spectral formula λ^p v + W·diag((λ+σ)^p − λ^p)·Wᵀv, for any finite p.
  void spectral_power(double power, Eigen::Ref<const Vector<Scalar>> v, Eigen::Ref<Vector<Scalar>> out) const {
    detail::check_power_supported("WoodburyFisher::spectral_power", supports_power(power), power);
    detail::check_apply("WoodburyFisher::spectral_power", finalized_, dimension_, v, out);
    const double lambda = static_cast<double>(damping_);
    if (primal_) {
      // F^p v = λ^p v + V·diag((λ+σ)^p − λ^p)·Vᵀv with S/m = V diag(σ) Vᵀ (d×d, double).
      const Eigen::VectorXd vd = v.template cast<double>();
      Eigen::VectorXd coefficients = eigenvectors_.transpose() * vd;
      for (Eigen::Index j = 0; j < coefficients.size(); ++j)
        coefficients[j] *= eigenvalues_[j] > 0.0 ? detail::shifted_power_minus_base(lambda, eigenvalues_[j], power) : 0.0;
      out = (std::pow(lambda, power) * vd + eigenvectors_ * coefficients).template cast<Scalar>();
      return;
    }
    const auto m = static_cast<Eigen::Index>(m_);
    const auto g = G_.leftCols(m);
    Eigen::VectorXd coefficients = eigenvectors_.transpose() * detail::transpose_times_vector(g, v, num_threads_);
    const double m_double = static_cast<double>(m_);
    for (Eigen::Index j = 0; j < coefficients.size(); ++j) {
      const double sigma = eigenvalues_[j];
      coefficients[j] *= sigma > 0.0 ? detail::shifted_power_minus_base(lambda, sigma, power) / (m_double * sigma)
                                     : power * std::pow(lambda, power - 1.0) / m_double;
    }
    const Eigen::VectorXd y = eigenvectors_ * coefficients;
    detail::scaled_plus_matrix_vector(std::pow(lambda, power), v, g, y, out, num_threads_);
  }

  Scalar damping() const { return damping_; }

  /// Changes λ without another finalize(): the spectrum does not depend on λ; only the m×m Woodbury
  /// factor (d×d in the primal form) is refreshed (O(m³/3), no pass over the d×m gradients).
  /// Throws InvalidArgument for λ ≤ 0.
  void set_damping(Scalar damping) {
    damping_ = detail::checked_damping("WoodburyFisher::set_damping", damping);
    if (finalized_) factor_woodbury();
  }

  /// The nonzero eigenvalues σⱼ of (1/m)GGᵀ kept by finalize() (ascending); F's eigenvalues are λ + σⱼ
  /// on their span and λ elsewhere.
  Eigen::VectorXd spectrum() const {
    if (!finalized_) throw StateError("WoodburyFisher::spectrum: call finalize() first");
    return eigenvalues_.tail(rank_);
  }

  /// tr((1/m)GGᵀ) = tr(GᵀG)/m (dual form, O(m)) = tr(S)/m (primal form, O(d)): the trace of the
  /// undamped part, after finalize().
  double undamped_trace() const {
    if (!finalized_) throw StateError("WoodburyFisher::undamped_trace: call finalize() first");
    if (primal_) return outer_.trace() / static_cast<double>(m_);
    const auto m = static_cast<Eigen::Index>(m_);
    return gram_.topLeftCorner(m, m).trace() / static_cast<double>(m_);
  }

  /// The stored gradients as the columns of a d×m matrix, in slot order (not arrival order).
  auto gradients() const { return G_.leftCols(static_cast<Eigen::Index>(m_)); }

  std::size_t memory_bytes() const {
    return static_cast<std::size_t>(G_.size()) * sizeof(Scalar) +
           static_cast<std::size_t>(gram_.size() + outer_.size() + eigenvectors_.size() + eigenvalues_.size()) *
               sizeof(double) +
           static_cast<std::size_t>(woodbury_factor_.matrixLLT().size()) * sizeof(double) +
           stamps_.capacity() * sizeof(std::uint64_t);
  }

  /// Forgets every gradient (dimension, damping and window are kept) and releases the storage.
  void clear() {
    G_.resize(static_cast<Eigen::Index>(dimension_), 0);
    gram_.resize(0, 0);
    outer_.resize(0, 0);
    primal_ = form_ == WoodburyForm::primal;
    stamps_.clear();
    stamps_.shrink_to_fit();
    eigenvalues_.resize(0);
    eigenvectors_.resize(0, 0);
    rank_ = 0;
    woodbury_factor_.compute(Eigen::MatrixXd(0, 0));  // releases the m×m factor
    woodbury_factor_ok_ = false;
    m_ = 0;
    next_stamp_ = 0;
    finalized_ = false;
  }

 private:
  std::size_t oldest_slot() const {
    return static_cast<std::size_t>(std::min_element(stamps_.begin(), stamps_.begin() + static_cast<std::ptrdiff_t>(m_)) -
                                    stamps_.begin());
  }

  // The storage reserve_slots replaced, kept until the write that needed the room has succeeded, so that
  // a rejected batch leaves even the capacity (memory_bytes()) as it was.
  struct PreviousStorage {
    bool grown = false;
    Matrix<Scalar> g;
    Eigen::MatrixXd gram;
    std::vector<std::uint64_t> stamps;
  };
  void restore(PreviousStorage& previous) noexcept {
    if (!previous.grown) return;
    G_.swap(previous.g);
    gram_.swap(previous.gram);
    stamps_.swap(previous.stamps);
  }

  // Ensures room for `needed` slots (amortised doubling, capped by the window). Existing data is kept;
  // the old storage goes to `previous`.
  void reserve_slots(std::size_t needed, PreviousStorage& previous) {
    const auto capacity = static_cast<std::size_t>(G_.cols());
    if (needed <= capacity) return;
    std::size_t grown = std::max(needed, 2 * capacity);
    if (window_ > 0) grown = std::min(grown, window_);
    const auto c = static_cast<Eigen::Index>(grown);
    Matrix<Scalar> new_g(static_cast<Eigen::Index>(dimension_), c);
    // Before its first write: 2 MiB pages instead of 4 KiB ones, a fault per 2 MiB (detail/memory.hpp).
    detail::advise_huge_pages(new_g.data(), static_cast<std::size_t>(new_g.size()) * sizeof(Scalar));
    const auto m = static_cast<Eigen::Index>(m_);
    new_g.leftCols(m) = G_.leftCols(m);
    Eigen::MatrixXd new_gram;
    if (!primal_) {
      new_gram.resize(c, c);
      new_gram.topLeftCorner(m, m) = gram_.topLeftCorner(m, m);
    }
    std::vector<std::uint64_t> new_stamps;
    new_stamps.reserve(grown);
    new_stamps.assign(stamps_.begin(), stamps_.end());
    // Commit (no-throw swaps).
    G_.swap(new_g);
    gram_.swap(new_gram);
    stamps_.swap(new_stamps);
    previous.g.swap(new_g);
    previous.gram.swap(new_gram);
    previous.stamps.swap(new_stamps);
    previous.grown = true;
  }

  // Chooses slots for k new columns: fresh slots while the window has room, then the oldest ones.
  // finite_checked: whether the caller has checked the columns for NaN/Inf; if not, the dual side checks
  // them on the Gram's diagonal (write_slots), the primal side here, before anything changes.
  template <class Derived>
  void insert_columns(const Eigen::MatrixBase<Derived>& columns, bool finite_checked = true) {
    // Columns that live in this estimator's own storage (add_gradients(fisher.gradients())) are copied
    // out first: a window replacement writes slots that later columns are still to be read from.
    const auto* first = columns.derived().data();
    const std::less_equal<const Scalar*> not_after;
    if (G_.size() > 0 && columns.size() > 0 && not_after(G_.data(), first) && !not_after(G_.data() + G_.size(), first)) {
      const Matrix<Scalar> own = columns;
      insert_columns(own, finite_checked);
      return;
    }
    const auto k = static_cast<std::size_t>(columns.cols());
    const std::size_t limit = window_ > 0 ? window_ : std::numeric_limits<std::size_t>::max();
    const std::size_t fresh = std::min(k, limit - m_);
    const bool to_primal = !primal_ && form_ == WoodburyForm::automatic && m_ + fresh > dimension_;
    if (!finite_checked && (primal_ || to_primal)) {
      detail::check_gradients("WoodburyFisher::add_gradients", columns, dimension_);
      finite_checked = true;
    }
    if (to_primal) switch_to_primal();
    std::vector<std::size_t> slots(k);
    for (std::size_t j = 0; j < fresh; ++j) slots[j] = m_ + j;
    // The oldest k − fresh existing slots, oldest first (k ≤ window here, so they are distinct).
    std::vector<std::size_t> order(m_);
    for (std::size_t s = 0; s < m_; ++s) order[s] = s;
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - fresh), order.end(),
                      [&](std::size_t a, std::size_t b) { return stamps_[a] < stamps_[b]; });
    for (std::size_t j = fresh; j < k; ++j) slots[j] = order[j - fresh];
    PreviousStorage previous;
    reserve_slots(m_ + fresh, previous);  // may throw std::bad_alloc; the stored gradients are unchanged
    try {
      write_slots(columns, slots, m_ + fresh, finite_checked);
    } catch (...) {
      restore(previous);
      throw;
    }
  }

  // Puts column j of `columns` into slot slots[j] (slots ≥ m_ are fresh) and refreshes those Gram
  // rows/columns from Gᵀ·columns and columnsᵀ·columns (two GEMMs, double accumulation, O((m+k)·k·d)).
  // Everything that can throw happens before the first change (fresh slots, which hold nothing yet, may
  // be written before: the dual side copies into them while computing the Gram). finite_checked = false
  // (dual side only): NaN/Inf columns are found from the Gram's diagonal and rejected here.
  template <class Derived>
  void write_slots(const Eigen::MatrixBase<Derived>& columns, const std::vector<std::size_t>& slots,
                   std::size_t new_m, bool finite_checked = true) {
    const auto m_old = static_cast<Eigen::Index>(m_);
    const auto m_new = static_cast<Eigen::Index>(new_m);
    const auto k = static_cast<Eigen::Index>(slots.size());
    if (primal_) {
      // S += CCᵀ − OOᵀ: C the new columns, O the ones they replace (O(k·d²), double accumulation).
      Matrix<Scalar> replaced(static_cast<Eigen::Index>(dimension_), k);
      Eigen::Index r = 0;
      for (Eigen::Index j = 0; j < k; ++j)
        if (slots[static_cast<std::size_t>(j)] < m_) replaced.col(r++) = G_.col(static_cast<Eigen::Index>(slots[static_cast<std::size_t>(j)]));
      const auto d = static_cast<Eigen::Index>(dimension_);
      Eigen::MatrixXd updated = outer_.size() > 0 ? outer_ : Eigen::MatrixXd(Eigen::MatrixXd::Zero(d, d));
      updated += detail::transpose_product_in_double(columns.transpose(), columns.transpose());
      if (r > 0) {
        const auto old = replaced.leftCols(r);
        updated -= detail::transpose_product_in_double(old.transpose(), old.transpose());
      }
      stamps_.resize(new_m);
      // Commit.
      for (Eigen::Index j = 0; j < k; ++j) {
        const auto s = static_cast<Eigen::Index>(slots[static_cast<std::size_t>(j)]);
        G_.col(s) = columns.col(j);
        stamps_[static_cast<std::size_t>(s)] = next_stamp_++;
      }
      outer_.swap(updated);
      m_ = new_m;
      finalized_ = false;
      return;
    }
    const Eigen::MatrixXd cross = detail::cross_in_double(G_.leftCols(m_old), columns, num_threads_);
    // All k slots fresh and in order (no window replacement): the Gram pass also copies the columns in.
    bool copied = true;
    for (Eigen::Index j = 0; j < k; ++j) copied = copied && slots[static_cast<std::size_t>(j)] == static_cast<std::size_t>(m_old + j);
    const Eigen::MatrixXd self =
        copied ? detail::gram_in_double(columns, num_threads_, detail::GramPath::automatic,
                                        G_.data() + m_old * G_.outerStride(), G_.outerStride())
               : detail::gram_in_double(columns, num_threads_);
    if (!finite_checked && !self.diagonal().allFinite() && !columns.allFinite())
      throw detail::non_finite_gradients_error("WoodburyFisher::add_gradients");
    Eigen::MatrixXd new_gram_columns(m_new, k);
    new_gram_columns.topRows(m_old) = cross;
    for (Eigen::Index j = 0; j < k; ++j)
      for (Eigen::Index i = 0; i < k; ++i) new_gram_columns(static_cast<Eigen::Index>(slots[static_cast<std::size_t>(i)]), j) = self(i, j);
    stamps_.resize(new_m);  // capacity was reserved with the slots: no allocation
    // Commit.
    for (Eigen::Index j = 0; j < k; ++j) {
      const auto s = static_cast<Eigen::Index>(slots[static_cast<std::size_t>(j)]);
      if (!copied) G_.col(s) = columns.col(j);
      stamps_[static_cast<std::size_t>(s)] = next_stamp_++;
      gram_.col(s).head(m_new) = new_gram_columns.col(j);
      gram_.row(s).head(m_new) = new_gram_columns.col(j).transpose();
    }
    m_ = new_m;
    finalized_ = false;
  }

  // Dual → primal: S = GGᵀ from the stored gradients (O(m·d²)); the Gram matrix is released. The
  // estimator is unchanged if this throws (S is built before anything is replaced).
  void switch_to_primal() {
    const auto g = G_.leftCols(static_cast<Eigen::Index>(m_));
    Eigen::MatrixXd outer = m_ > 0 ? detail::transpose_product_in_double(g.transpose(), g.transpose())
                                   : Eigen::MatrixXd(Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(dimension_),
                                                                          static_cast<Eigen::Index>(dimension_)));
    outer_.swap(outer);
    gram_.resize(0, 0);
    primal_ = true;
    finalized_ = false;
  }

  void factor_woodbury() {
    if (primal_) {
      Eigen::MatrixXd system = outer_ / static_cast<double>(m_);
      system.diagonal().array() += static_cast<double>(damping_);
      woodbury_factor_.compute(system);
      woodbury_factor_ok_ = woodbury_factor_.info() == Eigen::Success;
      return;
    }
    const auto m = static_cast<Eigen::Index>(m_);
    Eigen::MatrixXd system = gram_.topLeftCorner(m, m);
    system.diagonal().array() += static_cast<double>(m_) * static_cast<double>(damping_);
    woodbury_factor_.compute(system);
    woodbury_factor_ok_ = woodbury_factor_.info() == Eigen::Success;
  }

  template <class VectorIn, class VectorOut>
  void woodbury_solve(const VectorIn& v, VectorOut& out) const {
    if (primal_) {
      out = woodbury_factor_.solve(Eigen::VectorXd(v.template cast<double>())).template cast<Scalar>();
      return;
    }
    const auto g = G_.leftCols(static_cast<Eigen::Index>(m_));
    const double lambda = static_cast<double>(damping_);
    const Eigen::VectorXd c = woodbury_factor_.solve(detail::transpose_times_vector(g, v, num_threads_));
    detail::scaled_plus_matrix_vector(1.0 / lambda, v, g, Eigen::VectorXd(-c / lambda), out, num_threads_);
  }

  std::size_t dimension_;
  Scalar damping_;
  std::size_t window_;
  WoodburyForm form_;
  bool primal_;                        // working on S = GGᵀ (d×d) instead of the Gram matrix
  std::size_t m_ = 0;
  Matrix<Scalar> G_;                   // d × capacity; slots [0, m) hold gradients
  Eigen::MatrixXd gram_;               // capacity × capacity; top-left m×m is GᵀG (unnormalised); dual only
  Eigen::MatrixXd outer_;              // d × d: S = GGᵀ (unnormalised); primal only
  std::vector<std::uint64_t> stamps_;  // arrival number of each slot: the oldest has the smallest
  std::uint64_t next_stamp_ = 0;
  Eigen::VectorXd eigenvalues_;        // σⱼ of K, ascending, round-off ones set to 0
  Eigen::MatrixXd eigenvectors_;       // U, m × m
  Eigen::Index rank_ = 0;              // how many σⱼ are above the threshold
  // Built from an empty matrix: a default-constructed Eigen::LLT leaves members uninitialised, which
  // copying or moving the estimator would read.
  Eigen::LLT<Eigen::MatrixXd> woodbury_factor_{Eigen::MatrixXd(0, 0)};
  bool woodbury_factor_ok_ = false;
  bool finalized_ = false;
  std::size_t num_threads_ = 1;
};

static_assert(FisherEstimator<WoodburyFisher<float>> && FisherEstimator<WoodburyFisher<double>>);

}  // namespace fisher_unlearn
