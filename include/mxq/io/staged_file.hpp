// A file written at known offsets under a temporary name and renamed over its path only when
// whole, so nothing that looks complete is ever half-written: removed when abandoned, or kept
// as `path.partial` (a resumable writer) for the next run to reopen and finish.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>

#include "error.hpp"

namespace mxq::detail::io {

class staged_file {
 public:
  staged_file() = default;
  staged_file(const staged_file&) = delete;
  staged_file& operator=(const staged_file&) = delete;
  staged_file(staged_file&& o) noexcept { *this = std::move(o); }
  staged_file& operator=(staged_file&& o) noexcept {
    if (this != &o) {
      abandon();
      path_ = std::move(o.path_), tmp_ = std::move(o.tmp_);
      fd_ = std::exchange(o.fd_, -1);
      keep_ = o.keep_, reused_ = o.reused_;
      o.tmp_.clear();
    }
    return *this;
  }
  ~staged_file() { abandon(); }

  // Creates the temporary file at `size` bytes (`path.tmp.<pid>`, or `path.partial` with
  // keep_partial). A kept partial file for which `reusable` says yes is reopened as it is instead
  // (reused()).
  void create(const std::filesystem::path& path, std::size_t size, bool keep_partial,
              const std::function<bool(const std::filesystem::path&)>& reusable = {}) {
    abandon();
    path_ = path;
    tmp_ = path;
    keep_ = keep_partial;
    reused_ = false;
    tmp_ += keep_ ? std::string(".partial") : ".tmp." + std::to_string(::getpid());
    if (keep_ && reusable && reusable(tmp_)) {
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd_ >= 0) {
        reused_ = true;
        return;
      }
    }
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(path_, "cannot create temporary file " + tmp_.string() + ": " + std::strerror(errno));
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      fail(path_, std::string("cannot size the file (disk full?): ") + std::strerror(errno));
  }

  bool is_open() const noexcept { return fd_ >= 0; }
  bool reused() const noexcept { return reused_; }
  const std::filesystem::path& path() const noexcept { return path_; }

  // Writes n bytes at `off` and starts their write-back at once (asynchronously), so the disk
  // works while the caller computes the next piece and commit()'s fsync finds little left to do.
  void write_at(const void* data, std::size_t n, std::size_t off) {
    const char* p = static_cast<const char*>(data);
    const std::size_t off0 = off, n0 = n;
    while (n > 0) {
      const ssize_t k = ::pwrite(fd_, p, n, static_cast<off_t>(off));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) fail(path_, std::string("write failed (disk full?): ") + std::strerror(errno));
      p += k, n -= static_cast<std::size_t>(k), off += static_cast<std::size_t>(k);
    }
#if defined(__linux__)
    if (n0 > 0) ::sync_file_range(fd_, static_cast<off_t>(off0), static_cast<off_t>(n0), SYNC_FILE_RANGE_WRITE);
#endif
  }

  // Everything written so far on disk (before a journal says it is there).
  void flush() {
    if (fd_ >= 0 && ::fdatasync(fd_) != 0) fail(path_, std::string("fdatasync failed (disk full?): ") + std::strerror(errno));
  }

  // Flushes, closes and renames the file into place.
  void commit() {
    if (::fsync(fd_) != 0) fail(path_, std::string("fsync failed (disk full?): ") + std::strerror(errno));
    ::close(std::exchange(fd_, -1));
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) {
      std::filesystem::remove(tmp_, ec);
      fail(path_, "cannot rename temporary file into place: " + ec.message());
    }
    tmp_.clear();
  }

 private:
  void abandon() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!tmp_.empty() && !keep_) {  // a resumable run's progress stays for the next start
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
    tmp_.clear();
  }

  std::filesystem::path path_, tmp_;
  int fd_ = -1;
  bool keep_ = false, reused_ = false;
};

}  // namespace mxq::detail::io
