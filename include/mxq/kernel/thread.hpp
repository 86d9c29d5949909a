// Splitting work over caller-chosen thread counts.
//
// parallel_ranges runs on a lazily created pool of std::threads, so a call costs a wake-up rather
// than a thread creation. Waiting (a worker for the next region, the caller for its workers)
// spins for up to spin_budget, then blocks on a condition variable: back-to-back regions (an
// engine's decode step, GEMV after GEMV) skip the futex sleep and wake-up on both sides (tens of
// microseconds each on a VM), and an idle pool still sleeps instead of burning a core. Only one
// parallel region uses the pool at a time: a concurrent caller, or a region nested inside a
// worker, gets fresh std::threads (or runs inline when nested), never a deadlock.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mxq::kernel {

namespace detail {

inline thread_local bool in_pool_worker = false;

// MXQ_POOL_SPIN_US: how long a waiting thread polls before it blocks (0: block at once).
#ifndef MXQ_POOL_SPIN_US
#define MXQ_POOL_SPIN_US 30
#endif
inline constexpr std::chrono::microseconds spin_budget{MXQ_POOL_SPIN_US};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls done() for up to spin_budget; whether it became true.
template <class Pred>
bool spin_until(Pred done) {
  if (spin_budget.count() <= 0) return done();
  const auto end = std::chrono::steady_clock::now() + spin_budget;
  for (unsigned i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= end) return false;
  }
}

class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  // Runs task(i) for i in [1, n) on workers and task(0) here; false if the pool is busy.
  // Runs task(0) here and task(1..n-1) on the workers. With optional_helpers (task(0) alone does
  // whatever the helpers leave, as parallel_chunks's tasks do), workers that have not started by
  // the time task(0) returns are not waited for: a worker whose core is busy with another process
  // may not be scheduled for a whole time slice, and waiting for it to find no work left would
  // cost that slice.
  bool try_run(std::size_t n, const std::function<void(std::size_t)>& task, bool optional_helpers = false) {
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    {
      std::unique_lock<std::mutex> l(m_);
      while (workers_.size() + 1 < n) {
        const std::size_t id = workers_.size() + 1;
        workers_.emplace_back([this, id] { loop(id); });
      }
      task_ = &task;
      active_ = n;
      pending_ = n - 1;
      started_ = 0;
      closed_ = false;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr err;
    try {
      task(0);
    } catch (...) {
      err = std::current_exception();
    }
    std::unique_lock<std::mutex> l(m_);
    if (optional_helpers) {
      closed_ = true;  // workers not started yet skip this region
      pending_ -= (n - 1) - started_;
    }
    if (pending_ != 0) {
      l.unlock();
      spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; });
      l.lock();
    }
    done_.wait(l, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (!err) err = error_;
    error_ = nullptr;
    l.unlock();
    if (err) std::rethrow_exception(err);
    return true;
  }

 private:
  thread_pool() = default;

  void loop(std::size_t id) {
    in_pool_worker = true;
    std::size_t seen = 0;
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      if (!stop_ && generation_ == seen) {
        l.unlock();
        spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
        l.lock();
      }
      wake_.wait(l, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (id >= active_ || closed_) continue;
      ++started_;
      const auto* task = task_;
      l.unlock();
      std::exception_ptr err;
      try {
        (*task)(id);
      } catch (...) {
        err = std::current_exception();
      }
      l.lock();
      if (err && !error_) error_ = err;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex region_, m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  // Written under m_ only; atomic so that spinning waiters may read them without it.
  std::atomic<std::size_t> pending_{0}, generation_{0};
  std::size_t active_ = 0, started_ = 0;
  std::exception_ptr error_;
  bool stop_ = false, closed_ = false;
};

// task(0) on this thread, task(1..t-1) on the pool (see thread_pool::try_run), or on plain
// threads while another caller holds the pool; the first exception is rethrown.
inline void run_tasks(std::size_t t, const std::function<void(std::size_t)>& task, bool optional_helpers) {
  if (thread_pool::instance().try_run(t, task, optional_helpers)) return;
  // The pool is busy (another caller's region): plain threads.
  std::vector<std::thread> extra;
  std::vector<std::exception_ptr> errors(t);
  for (std::size_t i = 1; i < t; ++i)
    extra.emplace_back([&, i] {
      try {
        task(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  try {
    task(0);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : extra) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace detail

// Calls fn(begin, end) on `threads` contiguous ranges of [0, n) whose bounds are multiples of
// `grain` (except the last), range 0 on the calling thread. threads <= 0 means
// std::thread::hardware_concurrency(). Exceptions from any range are rethrown here.
template <class Fn>
void parallel_ranges(std::size_t n, int threads, std::size_t grain, Fn&& fn) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  grain = std::max<std::size_t>(grain, 1);
  const std::size_t units = (n + grain - 1) / grain;
  const std::size_t t = std::min<std::size_t>(static_cast<std::size_t>(threads), std::max<std::size_t>(units, 1));
  if (t <= 1 || detail::in_pool_worker) {
    if (n) fn(std::size_t{0}, n);
    return;
  }
  const std::function<void(std::size_t)> task = [&](std::size_t i) {
    const std::size_t b = std::min(n, (units * i / t) * grain), e = std::min(n, (units * (i + 1) / t) * grain);
    if (b < e) fn(b, e);
  };
  detail::run_tasks(t, task, false);
}

// Calls fn(begin, end) on the consecutive chunks of [0, n) (`chunk` elements each, the last one
// shorter), handed out to `threads` threads one at a time as each finishes its previous chunk:
// a thread slowed by other work on its core takes fewer chunks instead of holding the call up (a
// static split waits for the slowest half), and the calling thread does not wait for a helper
// that has not started when the chunks run out. Only for work whose result does not depend on
// which thread runs a chunk, e.g. output rows computed independently: results stay bit-identical.
// On one thread (or nested inside a worker) fn gets the whole of [0, n) in one call.
template <class Fn>
void parallel_chunks(std::size_t n, int threads, std::size_t chunk, Fn&& fn) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  chunk = std::max<std::size_t>(chunk, 1);
  const std::size_t chunks = (n + chunk - 1) / chunk;
  const std::size_t t = std::min<std::size_t>(static_cast<std::size_t>(threads), std::max<std::size_t>(chunks, 1));
  if (t <= 1 || detail::in_pool_worker) {
    if (n) fn(std::size_t{0}, n);
    return;
  }
  std::atomic<std::size_t> next{0};
  const std::function<void(std::size_t)> task = [&](std::size_t) {
    for (std::size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;)
      fn(c * chunk, std::min(n, (c + 1) * chunk));
  };
  detail::run_tasks(t, task, true);
}

}  // namespace mxq::kernel
