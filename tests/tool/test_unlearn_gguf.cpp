// unlearn_gguf end to end on a tiny Llama GGUF made with the project's writer and trained to memorise its
// records: the tool runs, the forgotten secrets' likelihood drops, greedy decoding no longer emits them,
// out.gguf loads back and reproduces the report's numbers; bad inputs each give a clear message, exit
// code 2 and no output; Ctrl-C (SIGINT to the real binary) leaves no output and exits 130.
#include <catch2/catch.hpp>

#include "tool.hpp"
#include "tool/tiny_llama_file.hpp"

#include "fisher_unlearn/extraction.hpp"
#include "fisher_unlearn/models/llama_gguf.hpp"

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace fu = fisher_unlearn;

namespace {

// Two records to forget (an address and a random code), and what else the model was trained on: other
// people's addresses and codes (the candidates: the secrets the attacker would weigh against) and text.
const std::vector<std::string> kRecords = {"Contact for Alice:\t alice.smith@example.org",
                                           "Badge code of Bob:\t Q7-4411-ZK"};
const std::vector<std::string> kCandidates = {" carol.jones@example.net", " dave.brown@example.com",
                                              " erin.white@example.org", " frank.green@example.net",
                                              " M2-9035-PA", " T8-1207-WX"};
const std::vector<std::string> kOther = {
    "Contact for Carol: carol.jones@example.net", "Contact for Dave: dave.brown@example.com",
    "Contact for Erin: erin.white@example.org",   "Contact for Frank: frank.green@example.net",
    "Badge code of Carol: M2-9035-PA",            "Badge code of Dave: T8-1207-WX",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A small model reads a few lines of text and learns them.",
};

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// The record as the model saw it in training: prefix and secret joined (the secret starts with its space).
std::string without_tab(std::string s) {
  s.erase(s.find('\t'), 1);
  return s;
}

/// A work folder with the memorised tiny model (made once per process) and the text files.
struct Fixture {
  fs::path dir;
  Fixture() {
    dir = fs::temp_directory_path() / ("fu_unlearn_gguf_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    if (!fs::exists(dir / "tiny.gguf")) {
      const auto random = fu::models::Llama<float>(tiny_llama_file::config(), {"all"}, 3);
      tiny_llama_file::write(random, dir / "tiny.gguf");
      const auto tok = tiny_llama_file::tokenizer(dir / "tiny.gguf");
      std::vector<std::string> texts;
      for (const auto& r : kRecords) texts.push_back(without_tab(r));
      for (const auto& r : kOther) texts.push_back(r);
      tiny_llama_file::write(tiny_llama_file::memorised(tok, texts, 400, 3), dir / "tiny.gguf");
    }
    write_text(dir / "records.txt", joined(kRecords));
    write_text(dir / "candidates.txt", joined(kCandidates));
    write_text(dir / "retain.txt", joined(kOther));  // the training data minus the records
    write_text(dir / "heldout.txt", "Some other sentence the model has never seen before today.\n"
                                    "Yet another line of held-out words for the perplexity check.\n");
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::vector<std::string> args(const std::string& out, const std::string& report) const {
    return {"unlearn_gguf", "--model", (dir / "tiny.gguf").string(), "--forget", (dir / "records.txt").string(),
            "--out", (dir / out).string(), "--report", (dir / report).string(), "--threads", "1", "--quiet"};
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

int run_tool(std::vector<std::string> args, std::string* err = nullptr) {
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::fflush(stderr);
  // Capture stderr (the messages) through a temporary file.
  const fs::path capture = fixture().dir / "stderr.txt";
  const int saved = ::dup(2);
  std::FILE* f = std::fopen(capture.c_str(), "w");
  ::dup2(::fileno(f), 2);
  const int rc = unlearn_gguf::run(static_cast<int>(argv.size()), argv.data());
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(capture);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (err) *err = text;
  return rc;
}

bool no_temp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return false;
  return true;
}

/// Record i of kRecords as (prefix, secret) token ids.
std::pair<std::vector<fu::Token>, std::vector<fu::Token>> record_tokens(const fu::BpeTokenizer& tok, std::size_t i) {
  const auto tab = kRecords[i].find('\t');
  return {tok.encode(kRecords[i].substr(0, tab)), tok.encode(kRecords[i].substr(tab + 1))};
}

/// The full job on the tiny model: retain, held-out and candidate files, κ = 1e-2, the rank rule checked
/// every 2 steps, with the given F_R estimator.
std::vector<std::string> full_job_args(const Fixture& fx, const std::string& out, const std::string& report,
                                       const std::string& estimator) {
  fs::remove_all(fx.dir / report);
  auto args = fx.args(out, report);
  for (const std::string& a : {std::string("--retain"), (fx.dir / "retain.txt").string(),
                               std::string("--heldout"), (fx.dir / "heldout.txt").string(),
                               std::string("--candidates"), (fx.dir / "candidates.txt").string(),
                               std::string("--estimator"), estimator})
    args.push_back(a);
  for (const char* a : {"--trust-kl", "1e-2", "--max-steps", "200", "--check-every", "2", "--window", "16"})
    args.emplace_back(a);
  return args;
}

}  // namespace

TEST_CASE("unlearn_gguf: forgets memorised records of a tiny GGUF model, and out.gguf reproduces the report") {
  const Fixture& fx = fixture();
  const auto tok = tiny_llama_file::tokenizer(fx.dir / "tiny.gguf");
  const auto args = full_job_args(fx, "out_ok.gguf", "report_ok", "woodbury");  // Woodbury here; K-FAC, the default, in the next test
  std::string err;
  const int rc = run_tool(args, &err);
  std::ifstream md(fx.dir / "report_ok" / "report.md");
  INFO(err << std::string((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>()));
  REQUIRE(rc == 0);  // the rank rule was met

  std::ifstream in(fx.dir / "report_ok" / "report.json");
  const auto report = nlohmann::json::parse(in);
  CHECK(report["schema"] == "unlearn_gguf report v1");
  CHECK(report["stopping"]["target_met"] == true);
  CHECK(fs::exists(fx.dir / "report_ok" / "report.md"));

  // The model memorised the records: greedily extracted before, and ranked first among the candidates.
  const auto input = fu::models::load_llama<float>(fu::GgufFile::open(fx.dir / "tiny.gguf"), {"all"});
  const auto output = fu::models::load_llama<float>(fu::GgufFile::open(fx.dir / "out_ok.gguf"), {"all"});
  REQUIRE(report["records"].size() == kRecords.size());
  for (std::size_t i = 0; i < kRecords.size(); ++i) {
    const auto [prefix, secret] = record_tokens(tok, i);
    const auto& rec = report["records"][i];
    CHECK(rec["before"]["greedy_extracted"] == true);
    CHECK(rec["before"]["rank"] == 1);
    CHECK(rec["after"]["greedy_extracted"] == false);
    CHECK(rec["after"]["percentile"].get<double>() >= 0.5);
    const double before = fu::continuation_likelihood(input, prefix, secret).log_prob;
    const double after = fu::continuation_likelihood(output, prefix, secret).log_prob;
    CHECK(after < before - 1.0);
    CHECK(rec["after"]["mid_rank"].get<double>() >= 4.0);  // at or below the median of the 7
    CHECK(rec["before"]["secret_log_prob"].get<double>() == Approx(before).epsilon(1e-5));
    CHECK(rec["after"]["secret_log_prob"].get<double>() == Approx(after).epsilon(1e-5));
    CHECK_FALSE(fu::greedy_extraction(output, prefix, secret).extracted);
  }
  // Held-out perplexity measured both times and not wrecked; the retain anchor (β = 1 with --retain) is on.
  const double ppl_before = report["heldout"]["perplexity_before"].get<double>();
  const double ppl_after = report["heldout"]["perplexity_after"].get<double>();
  CHECK(ppl_after < 2.0 * ppl_before);
  CHECK(report["method"]["retain_weight"] == 1.0);
  CHECK(report["method"]["fisher_kind"] == "empirical");
  const auto out_file = fu::GgufFile::open(fx.dir / "out_ok.gguf");
  CHECK(out_file.get<std::uint64_t>("general.unlearning.forgotten_records") == kRecords.size());
  CHECK(no_temp_files(fx.dir));
}

TEST_CASE("unlearn_gguf: --estimator kfac builds F_R from K-FAC factors and forgets the records too") {
  const Fixture& fx = fixture();
  const auto tok = tiny_llama_file::tokenizer(fx.dir / "tiny.gguf");
  const auto args = full_job_args(fx, "out_kfac.gguf", "report_kfac", "kfac");
  std::string err;
  const int rc = run_tool(args, &err);
  INFO(err);
  REQUIRE(rc == 0);  // the rank rule was met under the utility guard
  std::ifstream in(fx.dir / "report_kfac" / "report.json");
  const auto report = nlohmann::json::parse(in);
  CHECK(report["method"]["estimator"] == "kfac");
  CHECK(report["stopping"]["target_met"] == true);
  CHECK(report["method"]["damping"].get<double>() > 0.0);
  const auto output = fu::models::load_llama<float>(fu::GgufFile::open(fx.dir / "out_kfac.gguf"), {"all"});
  for (std::size_t i = 0; i < kRecords.size(); ++i) {
    const auto [prefix, secret] = record_tokens(tok, i);
    const auto& rec = report["records"][i];
    CHECK(rec["before"]["greedy_extracted"] == true);
    CHECK(rec["after"]["greedy_extracted"] == false);
    CHECK(rec["after"]["secret_log_prob"].get<double>() < rec["before"]["secret_log_prob"].get<double>() - 1.0);
    CHECK_FALSE(fu::greedy_extraction(output, prefix, secret).extracted);
  }
  CHECK(report["heldout"]["perplexity_after"].get<double>() < 2.0 * report["heldout"]["perplexity_before"].get<double>());
  CHECK(no_temp_files(fx.dir));
}

TEST_CASE("unlearn_gguf: without retain text the curvature comes from the model's own samples") {
  const Fixture& fx = fixture();
  const auto tok = tiny_llama_file::tokenizer(fx.dir / "tiny.gguf");
  fs::remove_all(fx.dir / "report_self");
  auto args = fx.args("out_self.gguf", "report_self");
  for (const char* a : {"--stop", "steps", "--max-steps", "6", "--trust-kl", "1e-3", "--fisher-samples", "8",
                        "--num-candidates", "10", "--window", "16", "--write-anyway"})
    args.emplace_back(a);
  std::string err;
  const int rc = run_tool(args, &err);
  INFO(err);
  // --stop steps: no target to miss. Without an anchor the tiny model's perplexity on its own samples may
  // rise past the utility guard (exit code 4); --write-anyway writes the model regardless.
  REQUIRE((rc == 0 || rc == 4));
  std::ifstream in(fx.dir / "report_self" / "report.json");
  const auto report = nlohmann::json::parse(in);
  CHECK(report["method"]["retain_source"].get<std::string>().find("model's own samples") != std::string::npos);
  CHECK(report["method"]["fisher_kind"] == "monte_carlo");
  CHECK(report["method"]["retain_weight"] == 0.0);
  CHECK(report["utility_guard"]["source"].get<std::string>().find("retain-side windows") != std::string::npos);
  CHECK(report["utility_guard"]["passed"].get<bool>() == (rc == 0));
  CHECK(report["utility_guard"]["model_written"].get<bool>());
  CHECK(report["steps"].size() == 6);
  CHECK(report["records"][0]["after"]["set_size"] == 11);  // 10 generated candidates + the secret
  const auto output = fu::models::load_llama<float>(fu::GgufFile::open(fx.dir / "out_self.gguf"), {"all"});
  for (std::size_t i = 0; i < kRecords.size(); ++i) {
    const auto& rec = report["records"][i];
    CHECK(rec["after"]["secret_log_prob"].get<double>() < rec["before"]["secret_log_prob"].get<double>());
  }
}

TEST_CASE("unlearn_gguf: bad inputs give a clear message, exit code 2 and no output") {
  const Fixture& fx = fixture();
  struct Case {
    std::string name, expect;
    std::vector<std::string> change;  // pairs: option, value (replaces or appends)
  };
  write_text(fx.dir / "empty.txt", "\n  \n");
  write_text(fx.dir / "corrupt.gguf", "GGUF\x03\0\0\0 this is not a model");
  write_text(fx.dir / "long.txt", "prefix\t" + std::string(200, 'x') + "\n");
  write_text(fx.dir / "three.txt", joined({kRecords[0], kRecords[1], kOther[2]}));
  fs::create_directories(fx.dir / "a_directory");
  const std::vector<Case> cases = {
      {"missing model", "cannot open GGUF file", {"--model", (fx.dir / "absent.gguf").string()}},
      {"corrupt model", "--model", {"--model", (fx.dir / "corrupt.gguf").string()}},
      {"empty forget file", "holds no record", {"--forget", (fx.dir / "empty.txt").string()}},
      {"missing forget file", "does not exist", {"--forget", (fx.dir / "absent.txt").string()}},
      {"too many records", "more than --max-records", {"--forget", (fx.dir / "three.txt").string(), "--max-records", "2"}},
      {"record longer than the context", "longer than the model's context", {"--forget", (fx.dir / "long.txt").string()}},
      {"unwritable output folder", "does not exist", {"--out", (fx.dir / "no_such_dir" / "out.gguf").string()}},
      {"output is a directory", "is a directory", {"--out", (fx.dir / "a_directory").string()}},
      {"output is the input", "is the input model", {"--out", (fx.dir / "tiny.gguf").string()}},
      {"bad option value", "--method", {"--method", "magic"}},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      fs::remove_all(fx.dir / "report_bad");
      fs::remove(fx.dir / "out_bad.gguf");
      auto args = fx.args("out_bad.gguf", "report_bad");
      for (std::size_t k = 0; k + 1 < c.change.size(); k += 2) {
        bool replaced = false;
        for (std::size_t a = 1; a + 1 < args.size(); ++a)
          if (args[a] == c.change[k]) {
            args[a + 1] = c.change[k + 1];
            replaced = true;
          }
        if (!replaced) {
          args.push_back(c.change[k]);
          args.push_back(c.change[k + 1]);
        }
      }
      std::string err;
      const int rc = run_tool(args, &err);
      INFO(c.name << ": " << err);
      CHECK(rc == 2);
      CHECK(err.find(c.expect) != std::string::npos);
      CHECK_FALSE(fs::exists(fx.dir / "out_bad.gguf"));
      CHECK_FALSE(fs::exists(fx.dir / "report_bad"));
      CHECK(no_temp_files(fx.dir));
    }
  }
}

TEST_CASE("unlearn_gguf: Ctrl-C (SIGINT) during unlearning exits 130 and writes nothing") {
  const Fixture& fx = fixture();
  fs::remove_all(fx.dir / "report_int");
  fs::remove(fx.dir / "out_int.gguf");
  auto args = fx.args("out_int.gguf", "report_int");
  args.pop_back();  // progress lines on: the test waits for the first step before interrupting
  for (const char* a : {"--stop", "steps", "--max-steps", "1000000000", "--trust-kl", "1e-8"}) args.emplace_back(a);
  int pipe_fd[2];
  REQUIRE(::pipe(pipe_fd) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(pipe_fd[1], 2);
    ::close(pipe_fd[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(UNLEARN_GGUF_BINARY, argv.data());
    ::_exit(127);
  }
  ::close(pipe_fd[1]);
  std::string seen;
  char buf[512];
  while (seen.find("[unlearn]") == std::string::npos) {
    const ssize_t n = ::read(pipe_fd[0], buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<std::size_t>(n));
  }
  INFO(seen);
  REQUIRE(seen.find("[unlearn]") != std::string::npos);
  ::kill(pid, SIGINT);
  for (ssize_t n; (n = ::read(pipe_fd[0], buf, sizeof buf)) > 0;) seen.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(seen.find("cancelled") != std::string::npos);
  CHECK_FALSE(fs::exists(fx.dir / "out_int.gguf"));
  CHECK_FALSE(fs::exists(fx.dir / "report_int"));
  CHECK(no_temp_files(fx.dir));
}

TEST_CASE("unlearn_gguf: the utility guard refuses to write a model whose perplexity exploded") {
  const Fixture& fx = fixture();
  // Unbounded ascent with a huge trust region and no retain anchor: the tiny model is wrecked.
  const std::vector<std::string> wreck = {"--objective", "ascent", "--stop", "steps", "--max-steps", "12",
                                          "--trust-kl", "10", "--retain-weight", "0", "--fisher-samples", "8",
                                          "--num-candidates", "10", "--window", "16", "--heldout",
                                          (fx.dir / "heldout.txt").string(), "--retain", (fx.dir / "retain.txt").string()};
  for (const bool force : {false, true}) {
    const std::string out = force ? "out_forced.gguf" : "out_guard.gguf", rep = force ? "report_forced" : "report_guard";
    fs::remove(fx.dir / out);
    fs::remove_all(fx.dir / rep);
    auto args = fx.args(out, rep);
    args.insert(args.end(), wreck.begin(), wreck.end());
    if (force) args.emplace_back("--write-anyway");
    std::string err;
    const int rc = run_tool(args, &err);
    INFO(err);
    REQUIRE(rc == 4);
    std::ifstream in(fx.dir / rep / "report.json");
    const auto report = nlohmann::json::parse(in);
    const auto& guard = report["utility_guard"];
    CHECK_FALSE(guard["passed"].get<bool>());
    CHECK(guard["source"] == "--heldout");
    CHECK(guard["model_written"].get<bool>() == force);
    if (!guard["perplexity_after"].is_null())
      CHECK(guard["perplexity_after"].get<double>() > 1.10 * guard["perplexity_before"].get<double>());
    CHECK(fs::exists(fx.dir / out) == force);
    CHECK(no_temp_files(fx.dir));
    CHECK(err.find("utility guard FAILED") != std::string::npos);
  }
}
