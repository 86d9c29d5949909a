// Bit-exact float helpers shared by the scale and element codecs.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

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

// IEEE binary16 <-> float, round to nearest even, saturation to Inf like a hardware cast.
inline std::uint16_t float_to_half_bits(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (ax < 0x38800000u) {                                                   // half subnormal or zero
    const float v = std::bit_cast<float>(ax) * 16777216.0f;                 // * 2^24: exact scaling
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(v)));
  }
  const std::uint32_t mant_odd = (ax >> 13) & 1u;
  const std::uint32_t r = ax + 0xfffu + mant_odd;  // RNE on the 13 dropped bits
  return static_cast<std::uint16_t>(sign | ((r - 0x38000000u) >> 13));
}

inline float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) | sign);
  }
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

// bfloat16 <-> float, round to nearest even; NaN stays NaN.
inline std::uint16_t float_to_bf16_bits(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline float bf16_bits_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

}  // namespace mxq::detail
