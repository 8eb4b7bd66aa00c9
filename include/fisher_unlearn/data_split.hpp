// Splitting a data set into the forget set and the retain set by the indices of the samples to forget,
// and checking that no forget sample was left inside the retain set. Split: O(n) time; the overlap
// check: O(n + k) expected with a hashable key, O(n·k) comparisons with an equality-comparable one.
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fisher_unlearn {

/// The forget set and the retain set as vectors (copies of the samples).
template <class Sample>
struct DataSplit {
  std::vector<Sample> forget;  ///< samples[forget_indices[0]], samples[forget_indices[1]], ...
  std::vector<Sample> retain;  ///< every other sample, in its original order
};

/// The forget set and the retain set as views into one reordered vector (see partition_by_indices).
template <class Sample>
struct DataSplitView {
  std::span<const Sample> forget;
  std::span<const Sample> retain;
};

namespace detail {

// true at each index to forget; throws InvalidArgument for an index out of range or given twice.
inline std::vector<bool> forget_mask(std::size_t n, std::span<const std::size_t> forget_indices, const char* who) {
  std::vector<bool> mask(n, false);
  for (std::size_t j = 0; j < forget_indices.size(); ++j) {
    const std::size_t i = forget_indices[j];
    if (i >= n)
      throw InvalidArgument(std::string(who) + ": forget index " + std::to_string(i) + " (entry " + std::to_string(j) +
                            ") is out of range for a data set of " + std::to_string(n) + " samples");
    if (mask[i])
      throw InvalidArgument(std::string(who) + ": forget index " + std::to_string(i) +
                            " is given twice; pass each sample to forget once");
    mask[i] = true;
  }
  return mask;
}

}  // namespace detail

/// Copies samples[forget_indices] (in the order given) into `forget` and every other sample (in the
/// original order) into `retain`. Throws InvalidArgument for an index ≥ samples.size() or a repeated one.
template <std::copy_constructible Sample>
DataSplit<Sample> split_by_indices(std::span<const Sample> samples, std::span<const std::size_t> forget_indices) {
  const std::vector<bool> mask = detail::forget_mask(samples.size(), forget_indices, "split_by_indices");
  DataSplit<Sample> split;
  split.forget.reserve(forget_indices.size());
  split.retain.reserve(samples.size() - forget_indices.size());
  for (std::size_t i : forget_indices) split.forget.push_back(samples[i]);
  for (std::size_t i = 0; i < samples.size(); ++i)
    if (!mask[i]) split.retain.push_back(samples[i]);
  return split;
}

/// Reorders `samples` in place (moves, no copies) so that the samples at forget_indices come first, in
/// the order given, followed by every other sample in its original order; returns the two halves as
/// views into `samples` (valid while `samples` is neither resized nor destroyed). Throws
/// InvalidArgument for an index out of range or a repeated one; `samples` is unchanged then.
template <std::movable Sample>
DataSplitView<Sample> partition_by_indices(std::vector<Sample>& samples, std::span<const std::size_t> forget_indices) {
  const std::vector<bool> mask = detail::forget_mask(samples.size(), forget_indices, "partition_by_indices");
  std::vector<Sample> reordered;
  reordered.reserve(samples.size());
  for (std::size_t i : forget_indices) reordered.push_back(std::move(samples[i]));
  for (std::size_t i = 0; i < samples.size(); ++i)
    if (!mask[i]) reordered.push_back(std::move(samples[i]));
  samples.swap(reordered);
  const std::span<const Sample> all(samples);
  return {all.first(forget_indices.size()), all.subspan(forget_indices.size())};
}

// ---- overlap of forget and retain ------------------------------------------------------------------

/// Where a forget sample also sits in the retain set.
struct SetOverlap {
  std::size_t retain_index = 0;  ///< the first retain sample (lowest index) equal to some forget sample
  std::size_t forget_index = 0;  ///< the first forget sample it equals
};

namespace detail {

// Keys are compared as ranges where they are ranges (token vectors, Eigen vectors: elementwise, any
// length), otherwise with ==. They are hashed with std::hash where it exists, or elementwise for a
// range of hashable elements; otherwise the check compares every pair.
template <class Key>
concept RangeKey = std::ranges::input_range<const Key> &&
                   std::equality_comparable<std::ranges::range_value_t<const Key>>;

template <class Key>
concept ComparableKey = RangeKey<Key> || std::equality_comparable<Key>;

template <class Key>
concept StdHashable = requires(const Key& k) {
  { std::hash<Key>{}(k) } -> std::convertible_to<std::size_t>;
};

template <class Key>
concept HashableKey = StdHashable<Key> || (RangeKey<Key> && StdHashable<std::ranges::range_value_t<const Key>>);

template <ComparableKey Key>
bool keys_equal(const Key& a, const Key& b) {
  if constexpr (RangeKey<Key>) {
    return std::ranges::equal(a, b);
  } else {
    return a == b;
  }
}

template <HashableKey Key>
std::size_t key_hash(const Key& k) {
  if constexpr (StdHashable<Key>) {
    return std::hash<Key>{}(k);
  } else {
    using Element = std::ranges::range_value_t<const Key>;
    std::size_t h = 0x9e3779b97f4a7c15ull;
    for (const auto& e : k) h = (h ^ std::hash<Element>{}(e)) * 0x100000001b3ull + (h << 6) + (h >> 2);
    return h;
  }
}

}  // namespace detail

/// The first retain sample equal to a forget sample, if any. Samples are compared through
/// key(sample) (default: the sample itself): a key that is a range (std::vector<Token>, an Eigen
/// vector) is compared elementwise, others with ==. With a hashable key (std::hash, or a range of
/// hashable elements) the cost is O(n + k) expected; otherwise every pair is compared, O(n·k).
template <class Sample, class Key = std::identity>
  requires std::invocable<const Key&, const Sample&> &&
           detail::ComparableKey<std::remove_cvref_t<std::invoke_result_t<const Key&, const Sample&>>>
std::optional<SetOverlap> find_overlap(std::span<const Sample> forget, std::span<const Sample> retain,
                                       const Key& key = {}) {
  using K = std::remove_cvref_t<std::invoke_result_t<const Key&, const Sample&>>;
  if constexpr (detail::HashableKey<K>) {
    std::unordered_multimap<std::size_t, std::size_t> by_hash;
    by_hash.reserve(forget.size());
    for (std::size_t j = 0; j < forget.size(); ++j) by_hash.emplace(detail::key_hash<K>(std::invoke(key, forget[j])), j);
    for (std::size_t i = 0; i < retain.size(); ++i) {
      const auto& r = std::invoke(key, retain[i]);
      const auto [begin, end] = by_hash.equal_range(detail::key_hash<K>(r));
      std::optional<std::size_t> first;
      for (auto it = begin; it != end; ++it)
        if ((!first || it->second < *first) && detail::keys_equal<K>(r, std::invoke(key, forget[it->second])))
          first = it->second;
      if (first) return SetOverlap{i, *first};
    }
  } else {
    for (std::size_t i = 0; i < retain.size(); ++i) {
      const auto& r = std::invoke(key, retain[i]);
      for (std::size_t j = 0; j < forget.size(); ++j)
        if (detail::keys_equal<K>(r, std::invoke(key, forget[j]))) return SetOverlap{i, j};
    }
  }
  return std::nullopt;
}

/// Throws InvalidArgument naming the first retain sample that equals a forget sample (see
/// find_overlap for how samples are compared and the cost). Unlearning a sample that the retain set
/// still holds cannot remove its influence: the retrained model sees it too.
template <class Sample, class Key = std::identity>
  requires std::invocable<const Key&, const Sample&> &&
           detail::ComparableKey<std::remove_cvref_t<std::invoke_result_t<const Key&, const Sample&>>>
void require_disjoint(std::span<const Sample> forget, std::span<const Sample> retain, const Key& key = {}) {
  if (const auto overlap = find_overlap(forget, retain, key))
    throw InvalidArgument("require_disjoint: retain sample " + std::to_string(overlap->retain_index) +
                          " equals forget sample " + std::to_string(overlap->forget_index) +
                          "; remove every copy of a forget sample from the retain set (split_by_indices builds "
                          "the two sets from one data set)");
}

}  // namespace fisher_unlearn
