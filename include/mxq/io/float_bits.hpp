// Scalar decoders for the storage dtypes that checkpoints and .npy files hold (IEEE half, bfloat16,
// FP8 E4M3FN / E5M2) plus float -> bfloat16 for writers. Kept apart from mxq's quantization formats:
// these only convert file storage.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mxq::detail::io {

inline float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

// Round to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    // subnormal: value = mant * 2^-24, exact in float
    const float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Generic small-float decode: 1 sign bit, E exponent bits, M mantissa bits, bias.
template <int E, int M>
inline float small_float_to_float(std::uint32_t bits, int bias) {
  const bool neg = (bits >> (E + M)) & 1u;
  const std::uint32_t exp = (bits >> M) & ((1u << E) - 1u);
  const std::uint32_t mant = bits & ((1u << M) - 1u);
  float v = exp == 0 ? std::ldexp(float(mant), 1 - bias - M)
                     : std::ldexp(float(mant + (1u << M)), int(exp) - bias - M);
  return neg ? -v : v;
}

// float8_e4m3fn: no infinities, S.1111.111 is NaN.
inline float fp8_e4m3fn_to_float(std::uint8_t b) {
  if ((b & 0x7f) == 0x7f) return std::numeric_limits<float>::quiet_NaN();
  return small_float_to_float<4, 3>(b, 7);
}

// float8_e5m2: IEEE-like, exponent 31 holds Inf / NaN.
inline float fp8_e5m2_to_float(std::uint8_t b) {
  return half_to_float(std::uint16_t(std::uint16_t(b) << 8));
}

// float8_e8m0fnu: an unsigned power of two 2^(b-127); 0xFF is NaN.
inline float fp8_e8m0_to_float(std::uint8_t b) {
  if (b == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(b) - 127);
}

}  // namespace mxq::detail::io
