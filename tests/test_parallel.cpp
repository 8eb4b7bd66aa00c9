// detail/parallel.hpp: the fork-join loop behind the models' and DP-SGD's threads. Never more workers
// than work; a thread the system refuses leaves the result unchanged (its share runs on the caller);
// no joinable thread is ever destroyed (which would call std::terminate).
#include <catch2/catch.hpp>

#include "fisher_unlearn/detail/parallel.hpp"
#include "fisher_unlearn/models/transformer.hpp"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace fu = fisher_unlearn;

namespace {

// Starts at most `allowed` threads, then throws what std::thread throws when the system has no more.
struct RefusingLauncher {
  std::size_t allowed;
  std::atomic<std::size_t>* launched;
  template <class Fn>
  std::thread operator()(Fn&& fn) const {
    if (launched->load() >= allowed) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    ++*launched;
    return std::thread(std::forward<Fn>(fn));
  }
};

struct CountingLauncher {
  std::atomic<std::size_t>* launched;
  template <class Fn>
  std::thread operator()(Fn&& fn) const {
    ++*launched;
    return std::thread(std::forward<Fn>(fn));
  }
};

}  // namespace

TEST_CASE("parallel: never starts more workers than there are work items") {
  std::atomic<std::size_t> launched{0};
  std::vector<int> hits(3, 0);
  std::set<std::size_t> worker_counts;
  std::mutex m;
  fu::detail::run_workers(
      100000, 3,
      [&](std::size_t w, std::size_t workers) {
        std::lock_guard<std::mutex> lock(m);
        worker_counts.insert(workers);
        for (std::size_t i = w; i < hits.size(); i += workers) ++hits[i];
      },
      CountingLauncher{&launched});
  CHECK(launched.load() == 2);  // 3 workers: the caller and two threads
  CHECK(worker_counts == std::set<std::size_t>{3});
  CHECK(hits == std::vector<int>{1, 1, 1});

  launched = 0;
  std::atomic<int> calls{0};
  fu::detail::parallel_for(
      1, 64, [&](std::size_t i, std::size_t worker) { calls += static_cast<int>(1 + i + worker); },
      CountingLauncher{&launched});
  CHECK(launched.load() == 0);  // one item: no thread at all
  CHECK(calls.load() == 1);
  fu::detail::parallel_for(0, 8, [&](std::size_t, std::size_t) { ++calls; });
  CHECK(calls.load() == 1);
  CHECK(fu::detail::worker_count(0, 5) == 1);
  CHECK(fu::detail::worker_count(7, 0) == 1);
}

TEST_CASE("parallel: a refused thread neither terminates nor changes the result") {
  const std::size_t n = 1000;
  for (std::size_t allowed : {0, 1, 5}) {
    std::atomic<std::size_t> launched{0};
    std::vector<int> hits(n, 0);
    std::vector<std::size_t> owner(n, 99);
    fu::detail::parallel_for(
        n, 16,
        [&](std::size_t i, std::size_t worker) {
          ++hits[i];
          owner[i] = worker;
        },
        RefusingLauncher{allowed, &launched});
    CHECK(launched.load() == allowed);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(hits[i] == 1);
      REQUIRE(owner[i] == i % 16);  // the same static assignment whichever threads started
    }
  }
}

TEST_CASE("parallel: the first exception propagates after every worker finished") {
  std::atomic<std::size_t> launched{0};
  std::atomic<int> done{0};
  auto body = [&](std::size_t i, std::size_t) {
    if (i == 3) throw std::runtime_error("item 3 failed");
    ++done;
  };
  CHECK_THROWS_WITH(fu::detail::parallel_for(40, 8, body, RefusingLauncher{3, &launched}), "item 3 failed");
  CHECK(done.load() == 35);  // worker 3 stops at its exception (items 3, 11, ..., 35); the others finish
  CHECK_THROWS_WITH(fu::detail::parallel_for(40, 1, body), "item 3 failed");
}

// AddressSanitizer reserves terabytes of address space: an RLIMIT_AS test cannot run under it.
#if defined(__SANITIZE_ADDRESS__)
#define FU_TEST_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FU_TEST_ADDRESS_SANITIZER 1
#endif
#endif

#if defined(__unix__) && !defined(FU_TEST_ADDRESS_SANITIZER)
namespace {
std::size_t virtual_memory_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmSize:") {
      std::size_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
    std::getline(status, key);
  }
  return 0;
}
}  // namespace

TEST_CASE("parallel: a Transformer asked for more threads than the system gives computes the same gradient") {
  // Regression: thread creation failing inside sum_loss_and_gradient destroyed joinable threads
  // (std::terminate). A child process whose address space leaves room for only a few thread stacks
  // asks for 64 threads; it must finish with the single-threaded gradient, bit for bit.
  fu::models::TransformerConfig c;
  c.vocab_size = 13;
  c.context_length = 6;
  c.num_layers = 1;
  c.width = 8;
  c.num_heads = 2;
  c.mlp_ratio = 2;
  fu::models::Transformer<double> model(c);
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> pick(0, 12);
  std::vector<fu::models::Transformer<double>::Sample> batch(64);
  for (auto& s : batch)
    for (int t = 0; t < 7; ++t) s.tokens.push_back(pick(rng));
  const std::size_t d = model.num_parameters();
  std::vector<double> serial(d), threaded(d);
  model.set_execution({1, 1});
  const double serial_loss = model.sum_loss_and_gradient(batch, serial);

  const std::size_t vm = virtual_memory_bytes();
  if (vm == 0) {
    WARN("SKIPPED: no /proc/self/status, so the child's address space cannot be bounded");
    return;
  }
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 3;
    try {
      rlimit limit{};
      limit.rlim_cur = limit.rlim_max = vm + (48u << 20);  // room for a few 8 MB stacks, not for 63
      if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(4);
      model.set_execution({64, 1});
      const double loss = model.sum_loss_and_gradient(batch, threaded);
      code = (loss == serial_loss && threaded == serial) ? 0 : 2;
    } catch (...) {
      code = 1;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("child status " << status << " (signalled: " << WIFSIGNALED(status) << ")");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif
