// A minimal fork-join helper for the solvers: run `tasks` independent jobs on up to `threads`
// threads, handing them out in index order (callers put the expensive tasks first).
//
// Under OpenMP (-fopenmp) it uses an OpenMP parallel region, inside which Eigen's own GEMM
// threading stays off, so nothing is oversubscribed; otherwise std::thread. The first exception a
// task throws is rethrown in the caller after every thread has stopped.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mxq::detail {

// 0 = one thread per hardware thread.
inline int resolve_threads(int requested) noexcept {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

template <class Fn>
void parallel_for(std::size_t tasks, int threads, Fn&& fn) {
  if (tasks == 0) return;
  const std::size_t nt = std::min<std::size_t>(tasks, static_cast<std::size_t>(std::max(threads, 1)));
  if (nt <= 1) {
    for (std::size_t i = 0; i < tasks; ++i) fn(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    for (;;) {
      const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= tasks) return;
      try {
        fn(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next.store(tasks, std::memory_order_relaxed);  // stop handing out work
      }
    }
  };
#if defined(_OPENMP)
#pragma omp parallel num_threads(static_cast<int>(nt))
  worker();
#else
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (std::size_t t = 1; t < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
#endif
  if (failure) std::rethrow_exception(failure);
}

}  // namespace mxq::detail
