// SIMD plumbing shared by the CPU kernels: ISA detection, 16-bit float storage types, loaders.
//
// The kernels use raw AVX2/FMA intrinsics where the translation unit is compiled with them
// (-mavx2 -mfma, or -march=native); the library never forces ISA flags on a consumer. Without
// them every kernel entry point reports "no fast path" and the scalar oracle runs instead.
// xsimd 8.1 lacks the operations these kernels live on (byte LUT shuffles, maddubs/madd,
// widening, horizontal max), so intrinsics are used directly (docs: cpp-anchors §4.6).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../detail/bits.hpp"
#include "../numeric/half.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#define MXQ_KERNEL_AVX2 1
#include <immintrin.h>
#else
#define MXQ_KERNEL_AVX2 0
#endif

#if defined(__GNUC__)
#define MXQ_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MXQ_ALWAYS_INLINE inline
#endif

namespace mxq {


namespace kernel {

// True when this translation unit was compiled with the ISA the fast paths need.
inline constexpr bool simd_available = MXQ_KERNEL_AVX2 != 0;

template <class T>
MXQ_ALWAYS_INLINE float to_f32(T v) noexcept {
  if constexpr (std::is_same_v<T, float>) return v;
  else return v.to_float();
}

#if MXQ_KERNEL_AVX2
namespace simd {

// Eight consecutive values as floats (exact conversion for f16 / bf16).
MXQ_ALWAYS_INLINE __m256 load8(const float* p) noexcept { return _mm256_loadu_ps(p); }
MXQ_ALWAYS_INLINE __m256 load8(const bf16* p) noexcept {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
MXQ_ALWAYS_INLINE __m256 load8(const f16* p) noexcept {
#if defined(__F16C__)
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  alignas(32) float t[8];
  for (int i = 0; i < 8; ++i) t[i] = p[i].to_float();
  return _mm256_load_ps(t);
#endif
}

MXQ_ALWAYS_INLINE int hmax_epi32(__m256i v) noexcept {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xB1));
  return _mm_cvtsi128_si32(m);
}

MXQ_ALWAYS_INLINE float hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

MXQ_ALWAYS_INLINE int hsum_epi32(__m256i v) noexcept {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

}  // namespace simd
#endif

// 2^e as a float for e in [-127, 127] (2^-127 is an FP32 subnormal): the E8M0 scale values.
inline constexpr float pow2f_e8m0(int e) noexcept {
  return e >= -126 ? std::bit_cast<float>(static_cast<std::uint32_t>(e + 127) << 23)
                   : std::bit_cast<float>(std::uint32_t{0x00400000u});
}

}  // namespace kernel
}  // namespace mxq
