// A subset of a model's parameters, as a list of contiguous ranges: unlearning restricted to some
// parameter groups (for example the last transformer blocks) gathers gradients into a shorter vector
// and scatters the step back. gather/scatter are O(subset size).
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"

#include <algorithm>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

class ParameterSubset {
 public:
  struct Range {
    std::size_t offset = 0;
    std::size_t size = 0;
  };

  /// Every parameter of a d-parameter model.
  static ParameterSubset all(std::size_t num_parameters) {
    ParameterSubset s;
    s.full_size_ = num_parameters;
    if (num_parameters > 0) s.ranges_.push_back({0, num_parameters});
    s.size_ = num_parameters;
    return s;
  }

  /// The named groups of a model; an empty list means every parameter. Unknown names throw
  /// InvalidArgument listing the names the model has.
  template <Model M>
  static ParameterSubset from_groups(const M& model, const std::vector<std::string>& names) {
    const std::size_t d = model.num_parameters();
    if (names.empty()) return all(d);
    if constexpr (!HasParameterGroups<M>) {
      throw InvalidArgument("parameter groups were requested, but the model has no parameter_groups() "
                            "member; pass an empty list to use every parameter");
    } else {
      std::vector<Range> ranges;
      for (const auto& name : names) {
        bool found = false;
        std::string known;
        for (const ParameterGroup& g : model.parameter_groups()) {
          known += (known.empty() ? "" : ", ") + g.name;
          if (g.name == name) {
            if (g.offset + g.size > d)
              throw InvalidArgument("parameter group '" + name + "' extends past num_parameters()");
            ranges.push_back({g.offset, g.size});
            found = true;
          }
        }
        if (!found) throw InvalidArgument("unknown parameter group '" + name + "'; the model has: " + known);
      }
      return from_ranges(d, std::move(ranges));
    }
  }

  /// Arbitrary ranges; overlapping or adjacent ranges are merged.
  static ParameterSubset from_ranges(std::size_t num_parameters, std::vector<Range> ranges) {
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.offset < b.offset; });
    ParameterSubset s;
    s.full_size_ = num_parameters;
    for (const Range& r : ranges) {
      if (r.offset + r.size > num_parameters) throw InvalidArgument("parameter range extends past num_parameters()");
      if (r.size == 0) continue;
      if (!s.ranges_.empty() && r.offset <= s.ranges_.back().offset + s.ranges_.back().size) {
        Range& last = s.ranges_.back();
        last.size = std::max(last.offset + last.size, r.offset + r.size) - last.offset;
      } else {
        s.ranges_.push_back(r);
      }
    }
    for (const Range& r : s.ranges_) s.size_ += r.size;
    return s;
  }

  std::size_t size() const { return size_; }
  std::size_t full_size() const { return full_size_; }
  bool is_all() const { return size_ == full_size_; }
  const std::vector<Range>& ranges() const { return ranges_; }

  /// sub = full restricted to the subset.
  template <class Scalar>
  void gather(std::span<const Scalar> full, std::span<Scalar> sub) const {
    check(full.size(), sub.size());
    std::size_t k = 0;
    for (const Range& r : ranges_) {
      std::copy_n(full.begin() + static_cast<std::ptrdiff_t>(r.offset), r.size, sub.begin() + static_cast<std::ptrdiff_t>(k));
      k += r.size;
    }
  }

  /// full[subset] += alpha * sub; entries outside the subset are untouched.
  template <class Scalar>
  void scatter_add(std::span<const Scalar> sub, Scalar alpha, std::span<Scalar> full) const {
    check(full.size(), sub.size());
    std::size_t k = 0;
    for (const Range& r : ranges_)
      for (std::size_t i = 0; i < r.size; ++i) full[r.offset + i] += alpha * sub[k++];
  }

 private:
  void check(std::size_t full, std::size_t sub) const {
    if (full != full_size_ || sub != size_)
      throw InvalidArgument("ParameterSubset: expected vectors of size " + std::to_string(full_size_) + " and " +
                            std::to_string(size_) + ", got " + std::to_string(full) + " and " + std::to_string(sub));
  }

  std::vector<Range> ranges_;
  std::size_t size_ = 0;
  std::size_t full_size_ = 0;
};

}  // namespace fisher_unlearn
