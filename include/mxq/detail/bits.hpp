// Bit-exact float helpers shared by the scale and element codecs.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

#include "../numeric/half.hpp"  // half / bfloat16 conversions (used by the codecs through detail::)

namespace mxq::detail {

// floor(log2(|x|)) read from the exponent bits: exact for every finite x != 0, unlike a float
// log2, which rounds values a few ulps below 2^k up to k. FP32 subnormals give their true
// exponent (down to -149).
inline int floor_log2(float x) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x) & 0x7fffffffu;
  const int biased = static_cast<int>(bits >> 23);
  if (biased != 0) return biased - 127;
  const std::uint32_t man = bits & 0x7fffffu;
  return man == 0 ? -150 : -127 - std::countl_zero(man << 9);  // subnormal (or 0: sentinel)
}

// 2^e as a double; exact for the whole E8M0 range and beyond.
inline double exp2i(int e) noexcept { return std::ldexp(1.0, e); }

}  // namespace mxq::detail
