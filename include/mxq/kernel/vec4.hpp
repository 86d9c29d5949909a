// Four-lane SIMD vectors behind one interface, per architecture tag (xsimd's naming: arch::sse4_2,
// arch::neon64), for the kernel bodies written once over the tag (quantize_vec4.hpp).
//
// Why not xsimd::batch: xsimd 8.1 decides which architectures exist from the translation unit's
// -m flags (XSIMD_WITH_SSE4_2 follows __SSE4_2__), so a header-only library cannot hand a baseline
// x86-64 TU an SSE4.2 body chosen at run time; and it lacks the narrowing / byte operations these
// kernels end on. ops<A> is the small set they need, as static functions in xsimd's spirit
// (one overload set per arch), each a single instruction or a short fixed sequence.
//
// Lanes: f = 4 floats, i = 4 int32. Masks are all-ones / all-zeros lanes held in f or i.
#pragma once
#include <cstdint>
#include <cstring>

#include "../numeric/half.hpp"
#include "simd.hpp"

namespace mxq::kernel {

namespace arch {
struct sse4_2 {
  static constexpr const char* name = "sse4_2";
};
struct neon64 {
  static constexpr const char* name = "neon64";
};
}  // namespace arch

namespace vec4 {

template <class A>
struct ops;

#if MXQ_KERNEL_AVX2
MXQ_SSE42_BEGIN
template <>
struct ops<arch::sse4_2> {
  using f = __m128;
  using i = __m128i;

  static MXQ_ALWAYS_INLINE f zero() noexcept { return _mm_setzero_ps(); }
  static MXQ_ALWAYS_INLINE f set1(float v) noexcept { return _mm_set1_ps(v); }
  static MXQ_ALWAYS_INLINE f load(const float* p) noexcept { return _mm_loadu_ps(p); }
  static MXQ_ALWAYS_INLINE f load(const bf16* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(_mm_cvtsi64_si128(static_cast<long long>(w))), 16));
  }
  static MXQ_ALWAYS_INLINE f load(const f16* p) noexcept {  // no F16C below AVX: exact scalar widening
    return _mm_setr_ps(p[0].to_float(), p[1].to_float(), p[2].to_float(), p[3].to_float());
  }
  static MXQ_ALWAYS_INLINE void store(float* p, f v) noexcept { _mm_storeu_ps(p, v); }
  static MXQ_ALWAYS_INLINE f mul(f a, f b) noexcept { return _mm_mul_ps(a, b); }
  static MXQ_ALWAYS_INLINE f sub(f a, f b) noexcept { return _mm_sub_ps(a, b); }
  static MXQ_ALWAYS_INLINE f add(f a, f b) noexcept { return _mm_add_ps(a, b); }
  static MXQ_ALWAYS_INLINE f min(f a, f b) noexcept { return _mm_min_ps(a, b); }
  static MXQ_ALWAYS_INLINE f bit_and(f a, f b) noexcept { return _mm_and_ps(a, b); }
  static MXQ_ALWAYS_INLINE f bit_or(f a, f b) noexcept { return _mm_or_ps(a, b); }
  static MXQ_ALWAYS_INLINE f bit_xor(f a, f b) noexcept { return _mm_xor_ps(a, b); }
  static MXQ_ALWAYS_INLINE f lt(f a, f b) noexcept { return _mm_cmplt_ps(a, b); }  // ordered
  static MXQ_ALWAYS_INLINE f ge(f a, f b) noexcept { return _mm_cmpge_ps(a, b); }  // ordered
  static MXQ_ALWAYS_INLINE f neq(f a, f b) noexcept { return _mm_cmpneq_ps(a, b); }  // unordered: NaN != x
  static MXQ_ALWAYS_INLINE f select(f m, f t, f e) noexcept { return _mm_blendv_ps(e, t, m); }
  static MXQ_ALWAYS_INLINE f round_even(f v) noexcept { return _mm_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static MXQ_ALWAYS_INLINE f round_zero(f v) noexcept { return _mm_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }

  static MXQ_ALWAYS_INLINE i iset1(std::int32_t v) noexcept { return _mm_set1_epi32(v); }
  static MXQ_ALWAYS_INLINE i izero() noexcept { return _mm_setzero_si128(); }
  static MXQ_ALWAYS_INLINE i add(i a, i b) noexcept { return _mm_add_epi32(a, b); }
  static MXQ_ALWAYS_INLINE i sub(i a, i b) noexcept { return _mm_sub_epi32(a, b); }
  static MXQ_ALWAYS_INLINE i min(i a, i b) noexcept { return _mm_min_epi32(a, b); }
  static MXQ_ALWAYS_INLINE i max(i a, i b) noexcept { return _mm_max_epi32(a, b); }
  static MXQ_ALWAYS_INLINE i bit_and(i a, i b) noexcept { return _mm_and_si128(a, b); }
  static MXQ_ALWAYS_INLINE i bit_or(i a, i b) noexcept { return _mm_or_si128(a, b); }
  static MXQ_ALWAYS_INLINE i gt(i a, i b) noexcept { return _mm_cmpgt_epi32(a, b); }
  static MXQ_ALWAYS_INLINE i eq(i a, i b) noexcept { return _mm_cmpeq_epi32(a, b); }
  static MXQ_ALWAYS_INLINE i select(i m, i t, i e) noexcept { return _mm_blendv_epi8(e, t, m); }
  template <int N>
  static MXQ_ALWAYS_INLINE i shl(i a) noexcept { return _mm_slli_epi32(a, N); }
  template <int N>
  static MXQ_ALWAYS_INLINE i shr(i a) noexcept { return _mm_srli_epi32(a, N); }  // logical
  template <int N>
  static MXQ_ALWAYS_INLINE i sar(i a) noexcept { return _mm_srai_epi32(a, N); }  // arithmetic

  static MXQ_ALWAYS_INLINE i as_i(f v) noexcept { return _mm_castps_si128(v); }
  static MXQ_ALWAYS_INLINE f as_f(i v) noexcept { return _mm_castsi128_ps(v); }
  static MXQ_ALWAYS_INLINE i trunc_i(f v) noexcept { return _mm_cvttps_epi32(v); }  // |v| < 2^31
  static MXQ_ALWAYS_INLINE f to_f(i v) noexcept { return _mm_cvtepi32_ps(v); }
  static MXQ_ALWAYS_INLINE std::int32_t hmax(i v) noexcept {
    v = _mm_max_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    v = _mm_max_epi32(v, _mm_shuffle_epi32(v, 0xB1));
    return _mm_cvtsi128_si32(v);
  }
  // 4 bytes -> 4 int32 (zero-extended); 4 int32 in [0, 255] -> 4 bytes.
  static MXQ_ALWAYS_INLINE i load_u8(const std::uint8_t* p) noexcept {
    std::int32_t w;
    std::memcpy(&w, p, 4);
    return _mm_cvtepu8_epi32(_mm_cvtsi32_si128(w));
  }
  static MXQ_ALWAYS_INLINE void store_u8(std::uint8_t* p, i v) noexcept {
    const __m128i w = _mm_packus_epi16(_mm_packus_epi32(v, v), _mm_setzero_si128());
    const std::int32_t b = _mm_cvtsi128_si32(w);
    std::memcpy(p, &b, 4);
  }
};
MXQ_SSE42_END
#endif  // MXQ_KERNEL_AVX2

#if MXQ_KERNEL_NEON
template <>
struct ops<arch::neon64> {
  using f = float32x4_t;
  using i = int32x4_t;

  static MXQ_ALWAYS_INLINE uint32x4_t u(f v) noexcept { return vreinterpretq_u32_f32(v); }
  static MXQ_ALWAYS_INLINE uint32x4_t u(i v) noexcept { return vreinterpretq_u32_s32(v); }
  static MXQ_ALWAYS_INLINE f fu(uint32x4_t v) noexcept { return vreinterpretq_f32_u32(v); }
  static MXQ_ALWAYS_INLINE i iu(uint32x4_t v) noexcept { return vreinterpretq_s32_u32(v); }

  static MXQ_ALWAYS_INLINE f zero() noexcept { return vdupq_n_f32(0.0f); }
  static MXQ_ALWAYS_INLINE f set1(float v) noexcept { return vdupq_n_f32(v); }
  static MXQ_ALWAYS_INLINE f load(const float* p) noexcept { return vld1q_f32(p); }
  static MXQ_ALWAYS_INLINE f load(const bf16* p) noexcept {
    std::uint16_t h[4];
    std::memcpy(h, p, 8);
    return fu(vshll_n_u16(vld1_u16(h), 16));
  }
  static MXQ_ALWAYS_INLINE f load(const f16* p) noexcept {  // vcvt_f32_f16: exact widening
    std::uint16_t h[4];
    std::memcpy(h, p, 8);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
  }
  static MXQ_ALWAYS_INLINE void store(float* p, f v) noexcept { vst1q_f32(p, v); }
  static MXQ_ALWAYS_INLINE f mul(f a, f b) noexcept { return vmulq_f32(a, b); }
  static MXQ_ALWAYS_INLINE f sub(f a, f b) noexcept { return vsubq_f32(a, b); }
  static MXQ_ALWAYS_INLINE f add(f a, f b) noexcept { return vaddq_f32(a, b); }
  // minps semantics (second operand where either is NaN, or both are zeros): the kernels only
  // take min against a finite constant, where vminq_f32 agrees except on NaN, which they never pass.
  static MXQ_ALWAYS_INLINE f min(f a, f b) noexcept { return vminq_f32(a, b); }
  static MXQ_ALWAYS_INLINE f bit_and(f a, f b) noexcept { return fu(vandq_u32(u(a), u(b))); }
  static MXQ_ALWAYS_INLINE f bit_or(f a, f b) noexcept { return fu(vorrq_u32(u(a), u(b))); }
  static MXQ_ALWAYS_INLINE f bit_xor(f a, f b) noexcept { return fu(veorq_u32(u(a), u(b))); }
  static MXQ_ALWAYS_INLINE f lt(f a, f b) noexcept { return fu(vcltq_f32(a, b)); }
  static MXQ_ALWAYS_INLINE f ge(f a, f b) noexcept { return fu(vcgeq_f32(a, b)); }
  static MXQ_ALWAYS_INLINE f neq(f a, f b) noexcept { return fu(vmvnq_u32(vceqq_f32(a, b))); }
  static MXQ_ALWAYS_INLINE f select(f m, f t, f e) noexcept { return vbslq_f32(u(m), t, e); }
  static MXQ_ALWAYS_INLINE f round_even(f v) noexcept { return vrndnq_f32(v); }
  static MXQ_ALWAYS_INLINE f round_zero(f v) noexcept { return vrndq_f32(v); }

  static MXQ_ALWAYS_INLINE i iset1(std::int32_t v) noexcept { return vdupq_n_s32(v); }
  static MXQ_ALWAYS_INLINE i izero() noexcept { return vdupq_n_s32(0); }
  static MXQ_ALWAYS_INLINE i add(i a, i b) noexcept { return vaddq_s32(a, b); }
  static MXQ_ALWAYS_INLINE i sub(i a, i b) noexcept { return vsubq_s32(a, b); }
  static MXQ_ALWAYS_INLINE i min(i a, i b) noexcept { return vminq_s32(a, b); }
  static MXQ_ALWAYS_INLINE i max(i a, i b) noexcept { return vmaxq_s32(a, b); }
  static MXQ_ALWAYS_INLINE i bit_and(i a, i b) noexcept { return vandq_s32(a, b); }
  static MXQ_ALWAYS_INLINE i bit_or(i a, i b) noexcept { return vorrq_s32(a, b); }
  static MXQ_ALWAYS_INLINE i gt(i a, i b) noexcept { return iu(vcgtq_s32(a, b)); }
  static MXQ_ALWAYS_INLINE i eq(i a, i b) noexcept { return iu(vceqq_s32(a, b)); }
  static MXQ_ALWAYS_INLINE i select(i m, i t, i e) noexcept { return vbslq_s32(u(m), t, e); }
  // Immediate shifts: NEON takes 0..31 left and 1..32 right, so 0 and >= 32 are spelled out.
  template <int N>
  static MXQ_ALWAYS_INLINE i shl(i a) noexcept {
    if constexpr (N == 0) return a;
    else if constexpr (N >= 32) return izero();
    else return vshlq_n_s32(a, N);
  }
  template <int N>
  static MXQ_ALWAYS_INLINE i shr(i a) noexcept {
    if constexpr (N == 0) return a;
    else if constexpr (N >= 32) return izero();
    else return iu(vshrq_n_u32(u(a), N));
  }
  template <int N>
  static MXQ_ALWAYS_INLINE i sar(i a) noexcept {
    if constexpr (N == 0) return a;
    else return vshrq_n_s32(a, N > 31 ? 31 : N);
  }

  static MXQ_ALWAYS_INLINE i as_i(f v) noexcept { return vreinterpretq_s32_f32(v); }
  static MXQ_ALWAYS_INLINE f as_f(i v) noexcept { return vreinterpretq_f32_s32(v); }
  static MXQ_ALWAYS_INLINE i trunc_i(f v) noexcept { return vcvtq_s32_f32(v); }  // |v| < 2^31
  static MXQ_ALWAYS_INLINE f to_f(i v) noexcept { return vcvtq_f32_s32(v); }
  static MXQ_ALWAYS_INLINE std::int32_t hmax(i v) noexcept { return vmaxvq_s32(v); }
  static MXQ_ALWAYS_INLINE i load_u8(const std::uint8_t* p) noexcept {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return iu(vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(w)))));
  }
  static MXQ_ALWAYS_INLINE void store_u8(std::uint8_t* p, i v) noexcept {
    const uint16x4_t h = vmovn_u32(u(v));
    const uint8x8_t b = vmovn_u16(vcombine_u16(h, h));
    const std::uint32_t w = vget_lane_u32(vreinterpret_u32_u8(b), 0);
    std::memcpy(p, &w, 4);
  }
};
#endif  // MXQ_KERNEL_NEON

}  // namespace vec4
}  // namespace mxq::kernel
