// UnlearningReport: JSON text pinned exactly, bit-exact round trip, NaN/Inf explicit, malformed text rejected;
// numbers in reports and messages never print as "0.000000".
#include <catch2/catch.hpp>

#include "fisher_unlearn/damping.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/report.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>

namespace fu = fisher_unlearn;

namespace {

bool same_bits(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

void check_equal(const fu::UnlearningReport& a, const fu::UnlearningReport& b) {
  CHECK(a.method == b.method);
  CHECK(same_bits(a.forget_loss_before, b.forget_loss_before));
  CHECK(same_bits(a.forget_loss_after, b.forget_loss_after));
  CHECK(same_bits(a.retain_loss_before, b.retain_loss_before));
  CHECK(same_bits(a.retain_loss_after, b.retain_loss_after));
  CHECK(same_bits(a.step_norm, b.step_norm));
  CHECK(same_bits(a.residual_gradient_norm, b.residual_gradient_norm));
  CHECK(same_bits(a.damping, b.damping));
  CHECK(a.iterations == b.iterations);
  CHECK(a.fisher_gradients == b.fisher_gradients);
  CHECK(a.memory_bytes == b.memory_bytes);
  CHECK(same_bits(a.seconds, b.seconds));
  CHECK(a.notes == b.notes);
}

}  // namespace

TEST_CASE("UnlearningReport: to_json writes the documented text exactly, NaN as null and Inf as strings") {
  fu::UnlearningReport r;
  r.method = "fisher_removal";
  r.forget_loss_before = 0.5;
  r.forget_loss_after = 0.75;
  r.retain_loss_before = 1e-300;
  r.retain_loss_after = std::numeric_limits<double>::infinity();
  r.step_norm = 0.1;
  r.damping = 1e-9;  // std::to_string gives "0.000000"
  r.iterations = 3;
  r.fisher_gradients = 256;
  r.memory_bytes = 123456789012;
  r.seconds = -0.0;
  r.notes = "a \"quoted\" note\\ with\ttab, newline\n, control \x01 and UTF-8 \xce\xbb";
  r.residual_gradient_norm = -std::numeric_limits<double>::infinity();
  const std::string expected =
      R"({"schema":"fisher_unlearn.unlearning_report/1","method":"fisher_removal","forget_loss_before":0.5,)"
      R"("forget_loss_after":0.75,"retain_loss_before":1e-300,"retain_loss_after":"inf","step_norm":0.1,)"
      R"("residual_gradient_norm":"-inf","damping":1e-09,"iterations":3,"fisher_gradients":256,)"
      R"("memory_bytes":123456789012,"seconds":-0,)"
      "\"notes\":\"a \\\"quoted\\\" note\\\\ with\\ttab, newline\\n, control \\u0001 and UTF-8 \xce\xbb\"}";
  CHECK(fu::to_json(r) == expected);
  check_equal(fu::unlearning_report_from_json(expected), r);

  fu::UnlearningReport empty;  // defaults: NaN losses ("not measured") are null
  const std::string e = fu::to_json(empty);
  CHECK(e.find("\"forget_loss_before\":null") != std::string::npos);
  CHECK(e.find("\"damping\":null") != std::string::npos);
  check_equal(fu::unlearning_report_from_json(e), empty);
}

TEST_CASE("UnlearningReport: JSON round trip is bit-exact on random doubles, subnormals and extremes") {
  std::mt19937_64 rng(15);
  for (int trial = 0; trial < 2000; ++trial) {
    fu::UnlearningReport r;
    double* fields[] = {&r.forget_loss_before, &r.forget_loss_after, &r.retain_loss_before, &r.retain_loss_after,
                        &r.step_norm, &r.residual_gradient_norm, &r.damping, &r.seconds};
    for (double* f : fields) {
      double x;
      do x = std::bit_cast<double>(rng());
      while (std::isnan(x));  // NaN payloads are not kept: NaN means "not measured"
      *f = x;
    }
    if (trial == 0) {
      r.damping = std::numeric_limits<double>::denorm_min();
      r.step_norm = std::numeric_limits<double>::max();
      r.seconds = std::numeric_limits<double>::lowest();
    }
    r.method = std::to_string(trial);
    r.iterations = static_cast<std::size_t>(rng() >> 1);
    r.notes.assign(1, static_cast<char>(rng() & 0x7f));  // every ASCII byte, control characters included
    r.notes += "\\u";
    const std::string text = fu::to_json(r);
    INFO(text);
    check_equal(fu::unlearning_report_from_json(text), r);
  }
}

TEST_CASE("UnlearningReport: the reader takes reordered keys and whitespace, rejects malformed text with FileFormatError") {
  fu::UnlearningReport r;
  r.method = "x";
  r.damping = 0.25;
  const std::string good = fu::to_json(r);
  // Reordered keys and whitespace, \u escapes including a surrogate pair.
  std::string spaced = "{ \"notes\" : \"\\u00e9\\ud83d\\ude00\" ,\n" + good.substr(1);
  spaced.erase(spaced.find(",\"notes\":\"\""), std::string(",\"notes\":\"\"").size());
  const auto back = fu::unlearning_report_from_json(spaced);
  CHECK(back.notes == "\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(back.damping == 0.25);

  for (const std::string& bad : {std::string(""), std::string("{"), good.substr(0, good.size() - 1), good + "x",
                                std::string("{}"), std::string("[]"),
                                [&] { auto s = good; s.replace(s.find("\"damping\":0.25"), 14, "\"damping\":nan"); return s; }(),
                                [&] { auto s = good; s.replace(s.find("\"damping\":0.25"), 14, "\"damping\":\"big\""); return s; }(),
                                [&] { auto s = good; s.replace(s.find("\"iterations\":0"), 14, "\"iterations\":-1"); return s; }(),
                                [&] { auto s = good; s.replace(s.find("\"iterations\":0"), 14, "\"iterations\":1.5"); return s; }(),
                                [&] { auto s = good; s.replace(s.find("unlearning_report/1"), 19, "unlearning_report/2"); return s; }(),
                                [&] { auto s = good; s.insert(1, "\"extra\":1,"); return s; }(),
                                [&] { auto s = good; s.insert(1, "\"method\":\"y\","); return s; }()}) {
    INFO(bad);
    CHECK_THROWS_AS(fu::unlearning_report_from_json(bad), fu::FileFormatError);
  }
}

TEST_CASE("UnlearningReport: the text form and damping messages show small numbers, not 0.000000") {
  fu::UnlearningReport r;
  r.method = "fisher_removal";
  r.damping = 3e-9;
  r.step_norm = 2.5e-8;
  std::ostringstream os;
  os << r;
  CHECK(os.str().find("damping 3e-09") != std::string::npos);
  CHECK(os.str().find("step norm 2.5e-08") != std::string::npos);
  CHECK(os.str().find("0.000000") == std::string::npos);

  fu::DampingSearch s;
  s.grid = {1e-12, -1e-9};
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("-1e-09"));
  CHECK_THROWS_WITH(fu::detail::require_positive_finite(-2e-9, "step_scale", "use 1"), Catch::Contains("(got -2e-09)"));
  CHECK(fu::detail::format_number(1e-7) == "1e-07");
  CHECK(fu::detail::format_number(std::numeric_limits<double>::quiet_NaN()) == "nan");
  CHECK(fu::detail::format_number(-std::numeric_limits<double>::infinity()) == "-inf");
}
