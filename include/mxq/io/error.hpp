// The exception every mxq reader and writer throws for a bad file: its message names the problem
// and the file, so a caller can report it as one line.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>

namespace mxq {

struct io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail::io {

[[noreturn]] inline void fail(const std::filesystem::path& file, const std::string& what) {
  throw io_error(file.string() + ": " + what);
}

}  // namespace detail::io
}  // namespace mxq
