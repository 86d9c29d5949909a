// The progress of a resumable whole-model run, kept in its output directory so that a run killed
// at any point (SIGKILL included) and started again with the same inputs continues after the
// last layer it finished, with a byte-identical result:
//
//   mxq-run.json               {"key", "layers_done", "hidden": {"file", "rows", "cols"}}
//   mxq-run.hidden-00012.f32   the calibration activations entering layer 12 (float32, raw)
//   mxq-run.lock               held (flock) while a run writes the directory
//
// The key is what makes the run that run (the caller hashes the recipe, the inputs and the
// options that change the output); a directory holding another key's partial run is refused.
// Every file is replaced by rename, the activations before the journal that names them, so a
// killed process (SIGKILL, the OOM killer) leaves a consistent journal. Against power loss the
// caller flushes the checkpoint's partial files before save() (mxq quantize-model does for
// calibrating recipes; its plain RTN runs do not wait for the disk, so after a power failure
// their directory should be removed).
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "../io/file.hpp"
#include "weights.hpp"

namespace mxq::llm {

// 64-bit FNV-1a, to fold a run's inputs into a journal key (identity, not security).
inline std::uint64_t fnv1a64(std::span<const std::byte> bytes, std::uint64_t h = 0xcbf29ce484222325ull) noexcept {
  for (std::byte b : bytes) h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;
  return h;
}
inline std::uint64_t fnv1a64(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) noexcept {
  return fnv1a64(std::as_bytes(std::span<const char>(s.data(), s.size())), h);
}

// Where an interrupted run stopped: layers [0, layers_done) are in the partial checkpoint, and
// `hidden` is the calibration input of layer layers_done (empty for runs that do not calibrate).
struct resume_point {
  std::size_t layers_done = 0;
  RowMajorMatrixXf hidden;
};

class run_journal {
 public:
  // Takes the directory (created if needed) for this run; throws when another process holds it.
  run_journal(std::filesystem::path dir, std::string key) : dir_(std::move(dir)), key_(std::move(key)) {
    std::filesystem::create_directories(dir_);
    const std::filesystem::path lock = dir_ / "mxq-run.lock";
    lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) detail::io::fail(lock, std::string("cannot create the run's lock file: ") + std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      detail::io::fail(dir_, "another mxq run is writing this directory (" + lock.string() + " is locked)");
    }
  }
  run_journal(const run_journal&) = delete;
  run_journal& operator=(const run_journal&) = delete;
  ~run_journal() {
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock; the journal stays for a resume
  }

  const std::string& key() const noexcept { return key_; }
  std::filesystem::path file() const { return dir_ / "mxq-run.json"; }

  // The earlier run's progress, if the directory holds one of this key; throws naming the
  // directory when it holds another key's run, or when the journal or its activations are bad.
  std::optional<resume_point> load() const {
    const std::filesystem::path jf = file();
    if (!std::filesystem::exists(jf)) return std::nullopt;
    nlohmann::json j;
    try {
      std::ifstream in(jf);
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      detail::io::fail(jf, std::string("unreadable run journal (remove the directory to start again): ") + e.what());
    }
    if (!j.is_object() || !j.contains("key") || !j["key"].is_string() || !j.contains("layers_done") ||
        !j["layers_done"].is_number_unsigned())
      detail::io::fail(jf, "not an mxq run journal (remove the directory to start again)");
    if (j["key"].get<std::string>() != key_)
      detail::io::fail(dir_, "holds a partial run of another recipe, model or calibration set (journal key " +
                                 j["key"].get<std::string>() + ", this run " + key_ +
                                 "); remove it or write to another directory");
    resume_point r;
    r.layers_done = j["layers_done"].get<std::size_t>();
    if (j.contains("hidden") && j["hidden"].is_object()) {
      const auto& h = j["hidden"];
      const std::filesystem::path hf = dir_ / h.value("file", std::string());
      const std::size_t rows = h.value("rows", std::size_t{0}), cols = h.value("cols", std::size_t{0});
      const mapped_file m(hf);
      if (m.size() != rows * cols * sizeof(float))
        detail::io::fail(hf, "holds " + std::to_string(m.size()) + " bytes, the journal says " + std::to_string(rows) +
                                 " x " + std::to_string(cols) + " float32");
      r.hidden.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
      if (m.size()) std::memcpy(r.hidden.data(), m.bytes().data(), m.size());
    }
    return r;
  }

  // Records that layers [0, layers_done) are on disk and `hidden` enters the next one.
  void save(std::size_t layers_done, const RowMajorMatrixXf& hidden) {
    nlohmann::json j;
    j["key"] = key_;
    j["layers_done"] = layers_done;
    std::string old_hidden = current_hidden_;
    if (hidden.size() != 0) {
      char name[64];
      std::snprintf(name, sizeof name, "mxq-run.hidden-%05zu.f32", layers_done);
      write_file_atomically(dir_ / name, [&](std::ostream& out) {
        out.write(reinterpret_cast<const char*>(hidden.data()), static_cast<std::streamsize>(hidden.size() * sizeof(float)));
      });
      j["hidden"] = {{"file", name}, {"rows", hidden.rows()}, {"cols", hidden.cols()}};
      current_hidden_ = name;
    }
    write_file_atomically(file(), [&](std::ostream& out) { out << j.dump(2) << "\n"; });
    remove_stale_hidden();
  }

  // The run is complete (its checkpoint committed): the journal and activations go.
  void finish() {
    std::error_code ec;
    std::filesystem::remove(file(), ec);
    current_hidden_.clear();
    remove_stale_hidden();
    std::filesystem::remove(dir_ / "mxq-run.lock", ec);
  }

 private:
  void remove_stale_hidden() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string f = e.path().filename().string();
      if (f.rfind("mxq-run.hidden-", 0) == 0 && f != current_hidden_) std::filesystem::remove(e.path(), ec);
    }
  }
  std::filesystem::path dir_;
  std::string key_;
  std::string current_hidden_;
  int lock_fd_ = -1;
};

}  // namespace mxq::llm
