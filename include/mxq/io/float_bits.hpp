// Scalar decoders for the FP8 storage dtypes that checkpoints hold (E4M3FN, E5M2, E8M0); IEEE
// half and bfloat16 are in numeric/half.hpp. Kept apart from mxq's quantization formats:
// these only convert file storage.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../numeric/half.hpp"

namespace mxq::detail::io {


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
  return detail::half_bits_to_float(std::uint16_t(std::uint16_t(b) << 8));
}

// float8_e8m0fnu: an unsigned power of two 2^(b-127); 0xFF is NaN.
inline float fp8_e8m0_to_float(std::uint8_t b) {
  if (b == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(b) - 127);
}

}  // namespace mxq::detail::io
