// data_split.hpp: forget/retain by indices (copies and in-place views), and the overlap check for
// equality-comparable, hashable and range keys, against a brute-force reference on seeded data.
#include <catch2/catch.hpp>

#include "fisher_unlearn/data_split.hpp"
#include "fisher_unlearn/sequence_sample.hpp"
#include "fisher_unlearn/types.hpp"

#include <algorithm>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;

namespace {

struct Record {  // equality-comparable, no std::hash: the O(n·k) path
  int id = 0;
  std::string text;
  bool operator==(const Record&) const = default;
};

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const fu::InvalidArgument& e) {
    return e.what();
  }
  return "(no error)";
}

// The reference: the lowest retain index equal to some forget sample, then the lowest such forget index.
template <class Sample, class Eq>
std::optional<fu::SetOverlap> brute_force(const std::vector<Sample>& forget, const std::vector<Sample>& retain, Eq eq) {
  for (std::size_t i = 0; i < retain.size(); ++i)
    for (std::size_t j = 0; j < forget.size(); ++j)
      if (eq(retain[i], forget[j])) return fu::SetOverlap{i, j};
  return std::nullopt;
}

}  // namespace

TEST_CASE("data_split: split_by_indices keeps the given forget order and the original retain order") {
  std::vector<int> data(10);
  std::iota(data.begin(), data.end(), 100);
  const std::vector<std::size_t> forget{7, 2, 9};
  const auto split = fu::split_by_indices(std::span<const int>(data), std::span<const std::size_t>(forget));
  CHECK(split.forget == std::vector<int>{107, 102, 109});
  CHECK(split.retain == std::vector<int>{100, 101, 103, 104, 105, 106, 108});

  const auto none = fu::split_by_indices(std::span<const int>(data), std::span<const std::size_t>());
  CHECK(none.forget.empty());
  CHECK(none.retain == data);

  CHECK(message_of([&] {
          const std::vector<std::size_t> bad{3, 10};
          (void)fu::split_by_indices(std::span<const int>(data), std::span<const std::size_t>(bad));
        }).find("forget index 10 (entry 1) is out of range for a data set of 10 samples") != std::string::npos);
  CHECK(message_of([&] {
          const std::vector<std::size_t> twice{4, 1, 4};
          (void)fu::split_by_indices(std::span<const int>(data), std::span<const std::size_t>(twice));
        }).find("forget index 4 is given twice") != std::string::npos);
}

TEST_CASE("data_split: partition_by_indices reorders in place and equals split_by_indices") {
  std::mt19937_64 rng(11);
  std::vector<fu::SequenceSample> data(50);
  for (auto& s : data) {
    s.tokens.resize(1 + rng() % 6);
    for (auto& t : s.tokens) t = static_cast<fu::Token>(rng() % 5);
  }
  std::vector<std::size_t> forget(50);
  std::iota(forget.begin(), forget.end(), 0);
  std::shuffle(forget.begin(), forget.end(), rng);
  forget.resize(12);
  const auto copies = fu::split_by_indices(std::span<const fu::SequenceSample>(data), std::span<const std::size_t>(forget));
  auto moved = data;
  const auto view = fu::partition_by_indices(moved, std::span<const std::size_t>(forget));
  REQUIRE(view.forget.size() == 12);
  REQUIRE(view.retain.size() == 38);
  for (std::size_t i = 0; i < 12; ++i) CHECK(view.forget[i].tokens == copies.forget[i].tokens);
  for (std::size_t i = 0; i < 38; ++i) CHECK(view.retain[i].tokens == copies.retain[i].tokens);

  auto unchanged = data;
  const std::vector<std::size_t> bad{1, 1};
  CHECK_THROWS_AS(fu::partition_by_indices(unchanged, std::span<const std::size_t>(bad)), fu::InvalidArgument);
  REQUIRE(unchanged.size() == data.size());
  for (std::size_t i = 0; i < data.size(); ++i) CHECK(unchanged[i].tokens == data[i].tokens);
}

TEST_CASE("data_split: the overlap check names the first overlapping retain sample, hashed or not") {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    // Few distinct values so that overlaps are common but not certain.
    auto draw = [&](std::size_t n) {
      std::vector<Record> v(n);
      for (auto& r : v) {
        r.id = static_cast<int>(rng() % 40);
        r.text = std::string(1 + rng() % 2, 'a');
      }
      return v;
    };
    const auto forget = draw(1 + rng() % 4), retain = draw(rng() % 12);
    const auto expected = brute_force(forget, retain, [](const Record& a, const Record& b) { return a == b; });
    const std::span<const Record> f(forget), r(retain);
    // Records with ==: every pair compared.
    const auto plain = fu::find_overlap(f, r);
    // The same through hashable keys: a pair (std::hash of a string) and a range of ints.
    const auto hashed = fu::find_overlap(f, r, [](const Record& x) { return x.text + "#" + std::to_string(x.id); });
    const auto ranged = fu::find_overlap(f, r, [](const Record& x) {
      return std::vector<int>{x.id, static_cast<int>(x.text.size())};
    });
    REQUIRE(plain.has_value() == expected.has_value());
    REQUIRE(hashed.has_value() == expected.has_value());
    REQUIRE(ranged.has_value() == expected.has_value());
    if (expected) {
      CHECK(plain->retain_index == expected->retain_index);
      CHECK(plain->forget_index == expected->forget_index);
      CHECK(hashed->retain_index == expected->retain_index);
      CHECK(hashed->forget_index == expected->forget_index);
      CHECK(ranged->retain_index == expected->retain_index);
      CHECK(ranged->forget_index == expected->forget_index);
      const std::string message = message_of([&] { fu::require_disjoint(f, r); });
      CHECK(message.find("retain sample " + std::to_string(expected->retain_index) + " equals forget sample " +
                         std::to_string(expected->forget_index)) != std::string::npos);
    } else {
      CHECK_NOTHROW(fu::require_disjoint(f, r));
    }
  }
}

TEST_CASE("data_split: token sequences and Eigen feature vectors are compared elementwise, any length") {
  std::vector<fu::SequenceSample> forget(2), retain(3);
  forget[0].tokens = {1, 2, 3};
  forget[1].tokens = {4, 5};
  retain[0].tokens = {1, 2};
  retain[1].tokens = {1, 2, 3, 4};
  retain[2].tokens = {4, 5};
  auto tokens = [](const fu::SequenceSample& s) -> const std::vector<fu::Token>& { return s.tokens; };
  const auto o = fu::find_overlap(std::span<const fu::SequenceSample>(forget), std::span<const fu::SequenceSample>(retain),
                                  tokens);
  REQUIRE(o.has_value());
  CHECK(o->retain_index == 2);
  CHECK(o->forget_index == 1);
  retain[2].tokens = {5, 4};
  CHECK_FALSE(fu::find_overlap(std::span<const fu::SequenceSample>(forget),
                               std::span<const fu::SequenceSample>(retain), tokens));

  struct Features {
    fu::Vector<double> x;
    double y = 0;
  };
  std::vector<Features> f{{fu::Vector<double>::Constant(3, 0.5), 1.0}};
  std::vector<Features> r{{fu::Vector<double>::Constant(2, 0.5), 1.0}, {fu::Vector<double>::Constant(3, 0.5), 1.0}};
  auto x_of = [](const Features& s) -> const fu::Vector<double>& { return s.x; };
  const auto fo = fu::find_overlap(std::span<const Features>(f), std::span<const Features>(r), x_of);
  REQUIRE(fo.has_value());
  CHECK(fo->retain_index == 1);
}
