// IEEE binary16 and bfloat16: the storage types and their bit-exact conversions, in one place
// (codecs, kernels, checkpoint readers and writers all use these).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace mxq {
namespace detail {

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

}  // namespace detail

// 16-bit float storage (IEEE binary16 and bfloat16), bit patterns only. Layout-compatible with
// std::uint16_t, so a buffer of raw bits can be viewed as either.
struct f16 {
  std::uint16_t bits;
  float to_float() const noexcept { return detail::half_bits_to_float(bits); }
  static f16 from_float(float v) noexcept { return {detail::float_to_half_bits(v)}; }
};
struct bf16 {
  std::uint16_t bits;
  float to_float() const noexcept { return detail::bf16_bits_to_float(bits); }
  static bf16 from_float(float v) noexcept { return {detail::float_to_bf16_bits(v)}; }
};
static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2);

}  // namespace mxq
