// The exception every mxq reader and writer throws for a bad file: its message names the problem
// and the file, so a caller can report it as one line. It is an mxq::error, so one catch covers all.
#pragma once
#include <filesystem>
#include <string>

#include "../config.hpp"

namespace mxq {

struct io_error : error {
  using error::error;
};

namespace detail::io {

[[noreturn]] inline void fail(const std::filesystem::path& file, const std::string& what) {
  throw io_error(file.string() + ": " + what);
}

}  // namespace detail::io
}  // namespace mxq
