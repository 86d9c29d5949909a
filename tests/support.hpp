// Helpers shared by the test programs: scratch directories, running the mxq program and checking
// its one-line errors, random Eigen matrices. Included after <catch2/catch.hpp>.
#pragma once
#include <unistd.h>

#include <sys/wait.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace mxq::test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it on destruction.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& tag) {
    path = fs::temp_directory_path() / ("mxq-test-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto p = t.rfind('\n');
  return p == std::string::npos ? t : t.substr(p + 1);
}

// A test case whose fixture is missing (../shared in a fresh clone, the tool not built) reports
// itself as skipped to ctest, never as passed: exit code 77 is every test's SKIP_RETURN_CODE
// (tests/CMakeLists.txt). Each Catch2 test case runs as its own ctest process, so exiting ends
// only this case.
[[noreturn]] inline void skip_test(const std::string& why) {
  std::printf("SKIPPED: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(77);
}

struct run_result {
  int status;
  std::string out, err;
};

// Runs `program args` through the shell in `cwd` (empty: the current directory), capturing
// stdout and stderr in files of a per-process scratch directory.
inline run_result run_program(const std::string& program, const std::string& args, const std::string& cwd = {}) {
  const fs::path dir = fs::temp_directory_path() / ("mxq-run-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cmd = (cwd.empty() ? std::string() : "cd " + cwd + " && ") + program + " " + args + " >" +
                          (dir / "out").string() + " 2>" + (dir / "err").string();
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(dir / "out"), slurp(dir / "err")};
}

// Each (args, needle) case must fail: non-zero exit and exactly one stderr line containing needle.
// Catch2 must be included before this header's users call it.
template <class Run, class Cases>
void expect_one_line_errors(Run&& run, const Cases& cases) {
  for (const auto& [args, needle] : cases) {
    const run_result r = run(args);
    INFO(args << " -> " << r.err);
    CHECK(r.status != 0);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

// r x c matrix of N(0, sd^2) values from a fixed seed.
template <class M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
M randn(Eigen::Index r, Eigen::Index c, unsigned seed, float sd = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sd);
  M m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

}  // namespace mxq::test
