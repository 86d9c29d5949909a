// Byte ranges of files read ahead with O_DIRECT into reused, page-aligned buffers by a few
// background threads. For a pass over a checkpoint larger than memory: the page cache is bypassed
// (no copy out of it, no fresh page-cache pages to fault in and zero, nothing to evict later),
// and the buffers are reused from one layer to the next, so the memory the data lands in is
// already mapped. Several reads are kept in flight because one synchronous reader does not keep a
// disk busy (measured: benchmarks/RESULTS.md, issue 11).
//
// A hint, like mapped_file::prefetch: where O_DIRECT is unavailable (tmpfs, some network file
// systems) or a read fails, stage() or find() say so and the caller reads the map instead.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mxq::detail::io {

// Frees a page-aligned buffer of `size` bytes.
struct aligned_freer {
  std::size_t size = 0;
  void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{4096}); }
};

class direct_reads {
 public:
  // O_DIRECT needs the file offset, the length and the buffer aligned to the device's logical
  // block; 4096 covers every common device.
  static constexpr std::size_t align = 4096;  // (aligned_freer frees at the same alignment)
  static constexpr std::size_t chunk = std::size_t{32} << 20;  // per pread: fewer, larger requests
  static constexpr unsigned readers = 4;                       // requests in flight

  direct_reads() = default;
  direct_reads(const direct_reads&) = delete;
  direct_reads& operator=(const direct_reads&) = delete;
  ~direct_reads() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    work_.notify_all();
    for (auto& t : threads_) t.join();
    for (auto& [path, fd] : fds_)
      if (fd >= 0) ::close(fd);
  }

  // Whether direct reads are off for this process (MXQ_DIRECT_IO=0: always read through the map,
  // e.g. to compare the two).
  static bool disabled() {
    static const bool off = [] {
      const char* v = std::getenv("MXQ_DIRECT_IO");
      return v && std::string(v) == "0";
    }();
    return off;
  }

  // Queues the read of [offset, offset + n) of `file` under `key` (unique among the staged
  // ranges). False when it cannot be read directly (the caller falls back) or is staged already.
  bool stage(const std::filesystem::path& file, std::size_t key, std::size_t offset, std::size_t n) {
    if (disabled() || n == 0) return false;
    std::unique_lock lk(m_);
    if (entries_.count(key)) return false;
    const int fd = fd_of(file);
    if (fd < 0) return false;
    const std::size_t b = offset / align * align, e = (offset + n + align - 1) / align * align;
    auto ent = std::make_shared<entry>();
    ent->buf = acquire(e - b);
    ent->view = offset - b;
    ent->n = n;
    for (std::size_t o = b; o < e; o += chunk)
      ent->pending++, jobs_.push_back(job{ent, fd, o, std::min(chunk, e - o), o - b, offset + n - o});
    entries_.emplace(key, ent);
    if (threads_.empty())
      for (unsigned i = 0; i < readers; ++i) threads_.emplace_back([this] { loop(); });
    lk.unlock();
    work_.notify_all();
    return true;
  }

  // The bytes staged under `key`, once read (waits meanwhile); nullopt when nothing is staged
  // under it or its read failed (the entry is dropped then).
  std::optional<std::span<const std::byte>> find(std::size_t key) {
    std::unique_lock lk(m_);
    const auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    const std::shared_ptr<entry> ent = it->second;
    done_.wait(lk, [&] { return ent->pending == 0; });
    if (ent->failed) {
      drop_locked(key);
      return std::nullopt;
    }
    return std::span<const std::byte>(ent->buf.get() + ent->view, ent->n);
  }

  // Forgets `key` (waiting for its reads to finish); its buffer is kept for the next stage().
  void drop(std::size_t key) {
    std::unique_lock lk(m_);
    const auto it = entries_.find(key);
    if (it == entries_.end()) return;
    const std::shared_ptr<entry> ent = it->second;
    done_.wait(lk, [&] { return ent->pending == 0; });
    drop_locked(key);
  }

  bool any() const {
    std::lock_guard lk(m_);
    return !entries_.empty();
  }

 private:
  using buffer = std::unique_ptr<std::byte[], aligned_freer>;
  struct entry {
    buffer buf;
    std::size_t view = 0, n = 0;  // the range's bytes: buf[view, view + n)
    std::size_t pending = 0;      // reads not finished
    bool failed = false;
  };
  struct job {
    std::shared_ptr<entry> ent;
    int fd;
    std::size_t file_offset, length, buf_offset;
    std::size_t needed;  // bytes of this request the range needs (the rest is alignment past it)
  };

  int fd_of(const std::filesystem::path& file) {
    const auto it = fds_.find(file.string());
    if (it != fds_.end()) return it->second;
#if defined(O_DIRECT)
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
#else
    const int fd = -1;
#endif
    fds_.emplace(file.string(), fd);  // -1 remembered too: no second try per range
    return fd;
  }

  // A free buffer of at least n bytes (the smallest such, if it is not more than twice n), else a
  // new one. Layers have the same shapes, so after the first few every buffer is a reused one.
  buffer acquire(std::size_t n) {
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->get_deleter().size >= n && it->get_deleter().size <= 2 * n &&
          (best == free_.end() || it->get_deleter().size < best->get_deleter().size))
        best = it;
    if (best != free_.end()) {
      buffer b = std::move(*best);
      free_.erase(best);
      return b;
    }
    return buffer(static_cast<std::byte*>(::operator new[](n, std::align_val_t{align})), aligned_freer{n});
  }

  void drop_locked(std::size_t key) {
    const auto it = entries_.find(key);
    free_.push_back(std::move(it->second->buf));
    entries_.erase(it);
    // Buffers no stage() could reuse (shapes that do not come again) are not kept beyond a few.
    while (free_.size() > 64) free_.erase(free_.begin());
  }

  void loop() {
    std::unique_lock lk(m_);
    for (;;) {
      work_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job j = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      const bool ok = read_all(j);
      lk.lock();
      if (!ok) j.ent->failed = true;
      if (--j.ent->pending == 0) done_.notify_all();
    }
  }

  static bool read_all(const job& j) {
    std::size_t got = 0;
    while (got < j.length) {
      const ssize_t r = ::pread(j.fd, j.ent->buf.get() + j.buf_offset + got, j.length - got,
                                static_cast<off_t>(j.file_offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;  // an error, or the end of the file (the aligned tail past it)
      got += static_cast<std::size_t>(r);
      if (got % align != 0) break;  // a short read ends at end of file
    }
    return got >= std::min(j.length, j.needed);
  }

  mutable std::mutex m_;
  std::condition_variable work_, done_;
  std::deque<job> jobs_;
  std::map<std::size_t, std::shared_ptr<entry>> entries_;
  std::vector<buffer> free_;
  std::map<std::string, int> fds_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

}  // namespace mxq::detail::io
