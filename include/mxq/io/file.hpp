// Whole-file access for the readers (a read-only memory map) and the writers (write to a temporary
// file, then rename, so a crash or a full disk never leaves a half-written output behind).
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"

namespace mxq {

// Read-only view of a whole file. Move-only; unmaps on destruction.
class mapped_file {
 public:
  mapped_file() = default;
  explicit mapped_file(std::filesystem::path path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) detail::io::fail(path_, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      detail::io::fail(path_, std::string("cannot stat: ") + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      detail::io::fail(path_, "not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {  // mmap of length 0 is an error; an empty file is just an empty view
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        detail::io::fail(path_, std::string("cannot mmap: ") + std::strerror(e));
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);  // the mapping stays valid without the descriptor
  }
  // A file's bytes already in memory (`path`: what errors call it), e.g. for a fuzz harness or a
  // download not yet on disk: the same readers, no mapping.
  mapped_file(std::vector<std::byte> bytes, std::filesystem::path path)
      : path_(std::move(path)), owned_(std::move(bytes)), memory_(true) {
    data_ = owned_.data();
    size_ = owned_.size();
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { *this = std::move(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      owned_ = std::move(o.owned_);  // a vector's move keeps its buffer: data_ stays valid
      memory_ = std::exchange(o.memory_, false);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~mapped_file() { unmap(); }

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Drops the resident pages wholly inside [offset, offset + n) (a read-only private map: they are
  // read from the file again if touched), so streaming through a file larger than memory keeps the
  // process's resident set small. Views stay valid.
  void release(std::size_t offset, std::size_t n) const noexcept {
    if (!data_ || offset >= size_ || in_memory()) return;
    n = std::min(n, size_ - offset);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t b = (offset + page - 1) / page * page, e = (offset + n) / page * page;
    if (e > b) ::madvise(const_cast<std::byte*>(data_) + b, e - b, MADV_DONTNEED);
  }

  // Reads [offset, offset + n) into memory and maps it (MADV_POPULATE_READ, Linux 5.14+; else an
  // asynchronous readahead hint), so a later pass over it neither faults nor waits on the disk.
  // Blocks while it reads: run it on another thread to overlap reading with computing. Populating
  // in large steps reads faster than page faults do (measured: benchmarks/RESULTS.md). A hint:
  // errors are ignored.
  void prefetch(std::size_t offset, std::size_t n) const noexcept {
    if (!data_ || offset >= size_ || in_memory()) return;
    n = std::min(n, size_ - offset);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t b = offset / page * page;
    void* p = const_cast<std::byte*>(data_) + b;
#if defined(__linux__)
    constexpr int populate_read = 22;  // MADV_POPULATE_READ, absent from older headers
    if (::madvise(p, offset + n - b, populate_read) == 0) return;
#endif
    ::madvise(p, offset + n - b, MADV_WILLNEED);
  }

  // Whether the bytes are held in memory rather than mapped from the file.
  bool in_memory() const noexcept { return memory_; }

 private:
  void unmap() noexcept {
    if (data_ && !in_memory()) ::munmap(const_cast<std::byte*>(data_), size_);
    owned_.clear();
    memory_ = false;
    data_ = nullptr;
    size_ = 0;
  }
  std::filesystem::path path_;
  std::vector<std::byte> owned_;  // the bytes of an in-memory file (memory_), else a mapping
  bool memory_ = false;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Calls write(std::ostream&) on a temporary file next to `path`, then renames it over `path`.
template <class Writer>
void write_file_atomically(const std::filesystem::path& path, Writer&& write) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) detail::io::fail(path, "cannot open temporary file " + tmp.string() + " for writing");
      std::forward<Writer>(write)(static_cast<std::ostream&>(out));
      out.flush();
      if (!out) detail::io::fail(path, "write failed (disk full?)");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) detail::io::fail(path, "cannot rename temporary file into place: " + ec.message());
  } catch (...) {
    std::error_code ignore;
    std::filesystem::remove(tmp, ignore);
    throw;
  }
}

// Side files (config.json, tokenizer.json, ...) copied next to an output under temporary names,
// then renamed into place together by commit() — after the output itself is committed, so a copy
// that fails (disk full) leaves every earlier file whole. Uncommitted copies are removed.
class staged_copies {
 public:
  staged_copies() = default;
  staged_copies(const staged_copies&) = delete;
  staged_copies& operator=(const staged_copies&) = delete;
  ~staged_copies() {
    for (const auto& [tmp, dst] : files_) {
      std::error_code ignore;
      std::filesystem::remove(tmp, ignore);
    }
  }
  void add(const std::filesystem::path& src, const std::filesystem::path& dst) {
    std::filesystem::path tmp = dst;
    tmp += ".tmp." + std::to_string(::getpid());
    std::error_code ec;
    std::filesystem::copy_file(src, tmp, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) {
      std::error_code ignore;
      std::filesystem::remove(tmp, ignore);
      detail::io::fail(dst, "cannot copy " + src.string() + " (disk full?): " + ec.message());
    }
    files_.emplace_back(std::move(tmp), dst);
  }
  void commit() {
    for (auto it = files_.begin(); it != files_.end(); it = files_.erase(it)) {
      std::error_code ec;
      std::filesystem::rename(it->first, it->second, ec);
      if (ec) detail::io::fail(it->second, "cannot rename temporary file into place: " + ec.message());
    }
  }

 private:
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> files_;  // (temporary, final)
};

}  // namespace mxq
