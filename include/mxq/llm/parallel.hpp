// Minimal fork-join helpers on std::thread (no OpenMP dependency for consumers): split a range into
// contiguous parts, or let workers pull items from a shared counter. The first exception thrown by
// any worker is rethrown in the caller after all workers have joined.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mxq::llm {

// 0 means "all hardware threads" (at least 1).
inline unsigned resolve_threads(unsigned threads) {
  if (threads == 0) threads = std::thread::hardware_concurrency();
  return std::max(1u, threads);
}

}  // namespace mxq::llm

namespace mxq::detail::model {
using namespace ::mxq::llm;

class exception_slot {
 public:
  void capture() {
    std::lock_guard<std::mutex> lock(m_);
    if (!e_) e_ = std::current_exception();
  }
  bool failed() const {
    std::lock_guard<std::mutex> lock(m_);
    return e_ != nullptr;
  }
  void rethrow() const {
    if (e_) std::rethrow_exception(e_);
  }

 private:
  mutable std::mutex m_;
  std::exception_ptr e_;
};

// Calls f(begin, end, part) on `parts` contiguous slices of [0, n), slices in parallel.
// Slice boundaries are multiples of `grain` (e.g. whole windows).
template <class F>
void parallel_slices(std::size_t n, unsigned threads, F&& f, std::size_t grain = 1) {
  const std::size_t units = (n + grain - 1) / grain;
  const std::size_t parts = std::min<std::size_t>(std::max(1u, threads), std::max<std::size_t>(units, 1));
  if (parts <= 1) {
    f(std::size_t{0}, n, std::size_t{0});
    return;
  }
  exception_slot err;
  auto run = [&](std::size_t p) {
    const std::size_t b = std::min(n, units * p / parts * grain), e = std::min(n, units * (p + 1) / parts * grain);
    try {
      if (b < e) f(b, e, p);
    } catch (...) {
      err.capture();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(parts - 1);
  for (std::size_t p = 1; p < parts; ++p) pool.emplace_back(run, p);
  run(0);
  for (auto& t : pool) t.join();
  err.rethrow();
}

// Calls f(begin, end) on the fixed chunks [k * chunk, min(n, (k + 1) * chunk)) of [0, n), chunks
// pulled by up to `threads` workers. The chunk boundaries never depend on the thread count, so a
// product computed per chunk rounds the same way whatever `threads` is.
template <class F>
void parallel_chunks(std::size_t n, std::size_t chunk, unsigned threads, F&& f);

// Workers pull item indices 0..n-1 from a shared counter and call f(item, worker).
template <class F>
void parallel_items(std::size_t n, unsigned threads, F&& f) {
  const std::size_t workers = std::min<std::size_t>(std::max(1u, threads), n);
  if (workers <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i, std::size_t{0});
    return;
  }
  std::atomic<std::size_t> next{0};
  exception_slot err;
  auto run = [&](std::size_t w) {
    try {
      while (!err.failed()) {
        const std::size_t i = next.fetch_add(1);
        if (i >= n) break;
        f(i, w);
      }
    } catch (...) {
      err.capture();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (std::size_t w = 1; w < workers; ++w) pool.emplace_back(run, w);
  run(0);
  for (auto& t : pool) t.join();
  err.rethrow();
}

template <class F>
void parallel_chunks(std::size_t n, std::size_t chunk, unsigned threads, F&& f) {
  const std::size_t chunks = (n + chunk - 1) / chunk;
  parallel_items(chunks, threads, [&](std::size_t k, std::size_t) { f(k * chunk, std::min(n, (k + 1) * chunk)); });
}

}  // namespace mxq::detail::model

