// Experiment (issue 14, 2026-12-07): what a copy into freshly allocated storage costs, the part of
// WoodburyFisher::add_gradients that its set-up row missed its goal by. 64 MiB (G of d = 2^17, m = 64,
// double) copied with memcpy into (a) storage allocated for the copy, (b) the same with
// detail::advise_huge_pages before the first write (what WoodburyFisher's reserve_slots does), (c)
// storage already written once; 1 and 2 threads (halves). Best of 9 wall-clock timings, allocation and
// free included in (a) and (b); run it on a quiet machine. Not built by CMake:
//   g++ -std=c++20 -O3 -march=native -DNDEBUG -Iinclude -Ibench -isystem /usr/include/eigen3
//       bench/experiments/fresh_storage_page_faults.cpp -o /tmp/page_faults -lbenchmark -pthread && /tmp/page_faults
// The huge-page advice only takes where transparent huge pages are "always" or "madvise"
// (/sys/kernel/mm/transparent_hugepage/enabled, printed first). Results: docs/performance.md.
#include "ceilings.hpp"
#include "fisher_unlearn/detail/memory.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {
// memcpy of `bytes` from src to dst on 1 or 2 threads (two halves).
void copy(char* dst, const char* src, std::size_t bytes, int threads) {
  if (threads == 1) {
    std::memcpy(dst, src, bytes);
    return;
  }
  std::thread other([&] { std::memcpy(dst, src, bytes / 2); });
  std::memcpy(dst + bytes / 2, src + bytes / 2, bytes - bytes / 2);
  other.join();
}
}  // namespace

int main() {
  namespace fd = fisher_unlearn::detail;
  const auto best = [](auto&& f) { return fisher_unlearn::bench::best_seconds(f, 9); };  // bench/ceilings.hpp
  const std::size_t bytes = std::size_t(64) << 20;
  std::string thp = "(unknown)";
  if (std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled"); in) std::getline(in, thp);
  std::printf("transparent_hugepage/enabled: %s\n", thp.c_str());
  const std::vector<char> src(bytes, 3);
  std::vector<char> touched(bytes, 1);
  for (int threads : {1, 2}) {
    const auto fresh = [&](bool advise) {
      return best([&] {
        char* dst = static_cast<char*>(std::malloc(bytes));
        if (dst == nullptr) std::abort();
        if (advise) fd::advise_huge_pages(dst, bytes);
        copy(dst, src.data(), bytes, threads);
        volatile char keep = dst[bytes / 3];
        (void)keep;
        std::free(dst);
      });
    };
    const double t_fresh = fresh(false), t_advised = fresh(true);
    const double t_touched = best([&] { copy(touched.data(), src.data(), bytes, threads); });
    std::printf("%d thread(s), 64 MiB: fresh storage %.1f ms (%.2f GB/s), fresh + huge-page advice %.1f ms (%.2f GB/s), "
                "touched storage %.1f ms (%.2f GB/s)\n",
                threads, t_fresh * 1e3, bytes / t_fresh / 1e9, t_advised * 1e3, bytes / t_advised / 1e9,
                t_touched * 1e3, bytes / t_touched / 1e9);
  }
}
