// Large fresh buffers and the kernel's page faults. Not API.
//
// Writing a freshly allocated buffer costs one page fault per 4 KiB page (the kernel zeroes each page
// on first touch). For the d×m gradient store of WoodburyFisher that is the larger part of the set-up:
// copying 64 MiB into fresh storage took 58 ms on one thread against 11 ms into storage already touched,
// and 14 ms with the storage backed by 2 MiB transparent huge pages (AMD EPYC Zen 3, Linux with THP in
// "madvise" mode, Debian's default; bench/experiments/fresh_storage_page_faults.cpp, docs/performance.md).
// advise_huge_pages asks for those pages; it is only a hint: nothing changes where THP is off or
// unavailable, and the contents and the allocation are never touched.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__) && !defined(FISHER_UNLEARN_NO_HUGE_PAGES)
#include <sys/mman.h>
#endif

namespace fisher_unlearn::detail {

/// The huge-page size the advice is rounded to (x86-64 and AArch64 Linux with 4 KiB base pages).
inline constexpr std::size_t kHugePageBytes = std::size_t(2) << 20;

/// The part of [p, p + bytes) that whole huge pages cover: [begin, end), empty (begin == end) when none
/// fits. Only that part is advised, so memory outside the buffer (a neighbouring allocation) is never affected.
struct HugePageRange {
  std::uintptr_t begin = 0, end = 0;
};
inline HugePageRange huge_page_range(const void* p, std::size_t bytes) {
  const auto first = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t begin = (first + kHugePageBytes - 1) & ~std::uintptr_t(kHugePageBytes - 1);
  const std::uintptr_t end = (first + bytes) & ~std::uintptr_t(kHugePageBytes - 1);
  return end > begin ? HugePageRange{begin, end} : HugePageRange{begin, begin};
}

/// Asks Linux to back the whole huge pages inside a buffer of `bytes` bytes at p with transparent huge
/// pages (madvise MADV_HUGEPAGE), before the buffer is first written. Buffers under 4 MiB are left alone
/// (at most one whole huge page would fit, and small buffers are not where the faults cost). A hint:
/// errors are ignored; a no-op on other systems or with FISHER_UNLEARN_NO_HUGE_PAGES defined.
inline void advise_huge_pages(void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(FISHER_UNLEARN_NO_HUGE_PAGES)
  if (p == nullptr || bytes < 2 * kHugePageBytes) return;
  const HugePageRange range = huge_page_range(p, bytes);
  if (range.end > range.begin)
    (void)::madvise(reinterpret_cast<void*>(range.begin), range.end - range.begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace fisher_unlearn::detail
