// Splitting work over caller-chosen thread counts (std::thread; no global pool, no spinning).
#pragma once
#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace mxq::kernel {

// Calls fn(begin, end) on `threads` contiguous ranges of [0, n) whose bounds are multiples of
// `grain` (except the last), the first range on the calling thread. threads <= 0 means
// std::thread::hardware_concurrency(). Exceptions from workers are rethrown here.
template <class Fn>
void parallel_ranges(std::size_t n, int threads, std::size_t grain, Fn&& fn) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  grain = std::max<std::size_t>(grain, 1);
  const std::size_t units = (n + grain - 1) / grain;
  const std::size_t t = std::min<std::size_t>(static_cast<std::size_t>(threads), std::max<std::size_t>(units, 1));
  if (t <= 1) {
    if (n) fn(std::size_t{0}, n);
    return;
  }
  auto range = [&](std::size_t i) {
    const std::size_t b = std::min(n, (units * i / t) * grain), e = std::min(n, (units * (i + 1) / t) * grain);
    return std::pair{b, e};
  };
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(t);
  pool.reserve(t - 1);
  for (std::size_t i = 1; i < t; ++i)
    pool.emplace_back([&, i] {
      try {
        const auto [b, e] = range(i);
        if (b < e) fn(b, e);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  try {
    const auto [b, e] = range(0);
    if (b < e) fn(b, e);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace mxq::kernel
