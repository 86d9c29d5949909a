// What every harness shares: an input is either accepted or rejected with an mxq::error (whose
// message names the file); any other exception, a crash or a sanitizer report is a finding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <mxq/config.hpp>

namespace mxq_fuzz {

inline std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}
inline std::span<const std::byte> bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// Runs fn; an mxq::error is a rejection (fine), anything else escapes to libFuzzer (a finding).
template <class Fn>
int run(Fn&& fn) {
  try {
    fn();
  } catch (const mxq::error&) {
  }
  return 0;
}

}  // namespace mxq_fuzz
