// Large scratch buffers: ask the kernel for transparent huge pages before the first touch. A GPTQ
// call on a 4096-wide layer touches several fresh 64 MiB buffers; with 4 KiB pages that is tens of
// thousands of page faults (expensive under virtualization), with 2 MiB pages a few dozen. No-op
// where madvise/MADV_HUGEPAGE is unavailable or THP is disabled.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mxq::detail {

inline void advise_huge_pages(const void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const std::uintptr_t b = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t lo = (b + huge - 1) & ~(huge - 1), hi = (b + bytes) & ~(huge - 1);
  if (hi > lo) (void)::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace mxq::detail
