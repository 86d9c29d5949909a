// SIMD round-to-nearest quantize / dequantize / fake_quant, bit-identical to the scalar oracle
// (quant/round.hpp, quant/element_quant.hpp, format/scale.hpp).
//
// Why the fast paths are exact:
//  * E8M0 formats. The scale is 2^e, e in [-127, 127]. y = |x| * 2^-e is one FP32 multiply by a
//    representable power of two: exact unless y lands among FP32 subnormals, where it is rounded
//    monotonically and lies far below the element grid's first midpoint (>= 2^-10), so every
//    "y vs midpoint" decision of the oracle is unchanged. y is then rounded on the element's
//    ladder with its binade's quantum q = 2^(max(exp(y), emin) - M): v = y / q is exact, and
//    rounding v to an integer (RNE / away / toward zero) is exactly the oracle's midpoint rule,
//    because the magnitude index parity equals the parity of v (ties to the even code). Index =
//    ((binade - emin) << M) + round(v), saturated to the largest finite magnitude.
//    The scale code itself is read from the exponent bits of amax (floor) plus one mantissa
//    compare (ceil); ceil on a block whose amax is an FP32 subnormal takes the scalar routine.
//  * UE4M3 (NVFP4). The block scale s = UE4M3 value * FP32 tensor scale is not a power of two, so
//    per scale code the 7 midpoints m_k * s are computed in double exactly as the oracle does and
//    turned into FP32 thresholds: "a > T" becomes a >= (least float > T) and "a >= T" becomes
//    a >= (least float >= T). The index is the number of thresholds passed. Decoded values are
//    per-code LUTs of (float)(m_i * s), as decode_element rounds them.
//  * Decoding E8M0 formats: the element value times 2^e is one correctly rounded FP32 multiply of
//    two floats whose exact product the oracle rounds the same way.
// Scale rules: floor and ceil are vectorised; mse runs the oracle's candidate search per block and
// the vector element path for the chosen scale. Stochastic rounding stays scalar.
#pragma once
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "../format/block.hpp"
#include "../matrix_view.hpp"
#include "../packed.hpp"
#include "../quant/element_quant.hpp"
#include "../quant/options.hpp"
#include "pack.hpp"
#include "quantize_common.hpp"
#include "quantize_vec4.hpp"
#include "simd.hpp"
#include "thread.hpp"
#include "traits.hpp"

namespace mxq::kernel {

namespace detail {

#if MXQ_KERNEL_AVX2
MXQ_AVX2_BEGIN
// Largest finite |p[i]| over the first n - n % 8 values (c: where the vector loop stopped).
template <class T>
float finite_amax8_avx2(const T* p, std::size_t n, std::size_t& c) noexcept {
  const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
  __m256i m = _mm256_setzero_si256();
  for (; c + 8 <= n; c += 8) {
    const __m256i b = _mm256_and_si256(_mm256_castps_si256(simd::load8(p + c)), absm);
    m = _mm256_max_epi32(m, _mm256_and_si256(b, _mm256_cmpgt_epi32(inf, b)));
  }
  return std::bit_cast<float>(simd::hmax_epi32(m));
}
MXQ_AVX2_END
#endif

// Largest finite |x| over a matrix (NVFP4's tensor amax), NaN/Inf ignored.
template <class T>
float finite_amax(matrix_view<const T> x) noexcept {
  float amax = 0.0f;
#if MXQ_KERNEL_AVX2
  const bool simd = avx2_enabled();  // once, not per row
#endif
  for (std::size_t r = 0; r < x.rows; ++r) {
    std::size_t c = 0;
    if (x.row_contiguous()) {
      const T* p = x.row(r);
#if MXQ_KERNEL_AVX2
      if (simd) amax = std::max(amax, finite_amax8_avx2(p, x.cols, c));
#endif
      for (const T* e = p + x.cols, *q = p + c; q != e; ++q) {
        const float a = std::fabs(to_f32(*q));
        if (std::isfinite(a) && a > amax) amax = a;
      }
    } else {
      for (; c < x.cols; ++c) {
        const float a = std::fabs(to_f32(x(r, c)));
        if (std::isfinite(a) && a > amax) amax = a;
      }
    }
  }
  return amax;
}


#if MXQ_KERNEL_AVX2
MXQ_AVX2_BEGIN

// ---------------------------------------------------------------------------------------------
// E8M0 element rounding.

template <rounding R>
MXQ_ALWAYS_INLINE __m256 round_int(__m256 v) noexcept {
  if constexpr (R == rounding::nearest_even) {
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else if constexpr (R == rounding::toward_zero) {
    return _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  } else {  // nearest_away: trunc + (frac >= 1/2); v >= 0 and v - trunc(v) is exact
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(v, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
  }
}

// y = |x| / scale >= 0 rounded on E's ladder: r = rounded multiple of the binade's quantum,
// q = the quantum, base = index of the binade's first value minus its unit count.
template <class E, rounding R>
struct ladder {
  using I = elem_info<E>;
  __m256 r, q;
  __m256i base;

  MXQ_ALWAYS_INLINE explicit ladder(__m256 y) noexcept {
    if constexpr (I::is_int) {
      r = round_int<R>(_mm256_mul_ps(y, _mm256_set1_ps(static_cast<float>(1 << I::mbits))));
      q = _mm256_set1_ps(1.0f / static_cast<float>(1 << I::mbits));
      base = _mm256_setzero_si256();
    } else {
      const __m256i ey = _mm256_srli_epi32(_mm256_castps_si256(y), 23);
      const __m256i eq = _mm256_max_epi32(ey, _mm256_set1_epi32(I::emin_b));
      const __m256 inv_q = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(254 + I::mbits), eq), 23));
      r = round_int<R>(_mm256_mul_ps(y, inv_q));
      q = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(eq, _mm256_set1_epi32(I::mbits)), 23));
      base = _mm256_slli_epi32(_mm256_sub_epi32(eq, _mm256_set1_epi32(I::emin_b)), I::mbits);
    }
  }
  MXQ_ALWAYS_INLINE __m256i index() const noexcept {
    return _mm256_min_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(r), base), _mm256_set1_epi32(I::max_idx));
  }
  MXQ_ALWAYS_INLINE __m256 magnitude() const noexcept {
    return _mm256_min_ps(_mm256_mul_ps(r, q), _mm256_set1_ps(I::max_value));
  }
};

// Code of (negative, magnitude index) in E's encoding.
template <class E>
MXQ_ALWAYS_INLINE __m256i encode_codes(__m256i idx, __m256 neg) noexcept {
  using C = element_codec<E>;
  const __m256i n = _mm256_castps_si256(neg);
  if constexpr (C::encoding == element_encoding::twos_complement) {
    const __m256i negv = _mm256_and_si256(_mm256_sub_epi32(_mm256_setzero_si256(), idx), _mm256_set1_epi32(C::code_mask));
    return _mm256_blendv_epi8(idx, negv, n);
  } else {
    return _mm256_or_si256(idx, _mm256_and_si256(n, _mm256_set1_epi32(C::sign_bit)));
  }
}

// Sign of a decoded value: sign-magnitude keeps -0 for negative underflow, two's complement
// has no -0.
template <class E>
MXQ_ALWAYS_INLINE __m256 apply_sign(__m256 mag, __m256 neg) noexcept {
  using C = element_codec<E>;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  if constexpr (C::encoding == element_encoding::twos_complement)
    return _mm256_or_ps(mag, _mm256_and_ps(_mm256_and_ps(neg, _mm256_cmp_ps(mag, _mm256_setzero_ps(), _CMP_NEQ_UQ)), sign));
  else
    return _mm256_or_ps(mag, _mm256_and_ps(neg, sign));
}

// 8 int32 codes -> 8 bytes.
MXQ_ALWAYS_INLINE void store_codes8(__m256i c, std::uint8_t* dst) noexcept {
  const __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(p16, p16));
}

// A block's codes (NV vectors of 8 int32 codes, len <= 8 NV valid) -> packed bytes at dst.
// Whole 16/32-code blocks of 4- and 8-bit codes are narrowed and packed in registers.
template <int Bits, class Layout, int NV>
MXQ_ALWAYS_INLINE void store_codes(const __m256i* c, std::size_t len, std::uint8_t* dst, std::uint8_t* scratch) noexcept {
  constexpr std::size_t B = 8 * NV;
  constexpr bool split = std::is_same_v<Layout, split_halves_layout>;
  if constexpr ((NV == 4 || NV == 2) && (Bits == 4 || Bits == 8)) {
    if (len == B) {
      const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
      if constexpr (NV == 4) {
        const __m256i b = _mm256_permutevar8x32_epi32(
            _mm256_packus_epi16(_mm256_packus_epi32(c[0], c[1]), _mm256_packus_epi32(c[2], c[3])), order);
        if constexpr (Bits == 8) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), b);
        } else if constexpr (split) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_or_si128(_mm256_castsi256_si128(b), _mm_slli_epi16(_mm256_extracti128_si256(b, 1), 4)));
        } else {
          const __m256i w = _mm256_and_si256(_mm256_or_si256(b, _mm256_srli_epi16(b, 4)), _mm256_set1_epi16(0x00FF));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
        }
      } else {
        const __m256i p = _mm256_packus_epi32(c[0], c[1]);
        const __m128i b = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_packus_epi16(p, p), order));
        if constexpr (Bits == 8) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), b);
        } else if constexpr (split) {
          _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_or_si128(b, _mm_slli_epi16(_mm_srli_si128(b, 8), 4)));
        } else {
          const __m128i w = _mm_and_si128(_mm_or_si128(b, _mm_srli_epi16(b, 4)), _mm_set1_epi16(0x00FF));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(w, w));
        }
      }
      return;
    }
  }
  for (int i = 0; i < NV; ++i) store_codes8(c[i], scratch + 8 * i);
  if (len < B) std::memset(scratch + len, 0, B - len);
  pack_block<Bits, Layout>(scratch, len, B, dst);
}

// Codes whose bits sit at the top of each 32-bit lane (sign at bit 31; lower bits are ignored)
// -> decoded element values (unscaled), exact for every code, Inf/NaN codes included
// (Specials = false: for blocks known to hold none).
template <class E, bool Specials = true>
MXQ_ALWAYS_INLINE __m256 decode_top(__m256i top) noexcept {
  using I = elem_info<E>;
  using C = element_codec<E>;
  if constexpr (I::is_int) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srai_epi32(top, 32 - I::bits)),
                         _mm256_set1_ps(1.0f / static_cast<float>(1 << I::mbits)));
  } else {
    constexpr int ebits = I::bits - 1 - I::mbits;
    // sign stays at bit 31, exponent|mantissa land on FP32's low exponent / high mantissa bits;
    // 2^(127 - bias) then rescales (FP32 subnormals included, exactly).
    constexpr std::uint32_t keep = 0x80000000u | (((1u << (I::bits - 1)) - 1u) << (23 - I::mbits));
    __m256 v = _mm256_mul_ps(_mm256_and_ps(_mm256_castsi256_ps(_mm256_srai_epi32(top, 8 - ebits)),
                                           _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(keep)))),
                             _mm256_castsi256_ps(_mm256_set1_epi32((254 - I::bias) << 23)));
    if constexpr (Specials && C::magnitude_count < (1 << (I::bits - 1))) {  // Inf / NaN codes exist
      const __m256i mag = _mm256_srli_epi32(_mm256_slli_epi32(top, 1), 33 - I::bits);
      const __m256i special = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(I::max_idx));
      __m256 sv = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
      if constexpr (C::traits::has_inf)
        sv = _mm256_blendv_ps(sv, _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                              _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, _mm256_set1_epi32(I::max_idx + 1))));
      v = _mm256_blendv_ps(v, _mm256_or_ps(sv, _mm256_and_ps(_mm256_castsi256_ps(top), _mm256_set1_ps(-0.0f))),
                           _mm256_castsi256_ps(special));
    }
    return v;
  }
}

// ---------------------------------------------------------------------------------------------
// Block drivers. A block is NV vectors of 8 values, loaded from the row (full blocks) or from a
// zero-padded copy (the ragged last block).

template <class F>
inline constexpr int block_vectors = F::block_size / 8;

template <class F, class T>
MXQ_ALWAYS_INLINE std::size_t load_block(const T* x, std::size_t len, __m256* v, float* pad) noexcept {
  constexpr int NV = block_vectors<F>;
  if (len == static_cast<std::size_t>(F::block_size)) {
    for (int i = 0; i < NV; ++i) v[i] = simd::load8(x + 8 * i);
  } else {
    for (std::size_t i = 0; i < static_cast<std::size_t>(F::block_size); ++i) pad[i] = i < len ? to_f32(x[i]) : 0.0f;
    for (int i = 0; i < NV; ++i) v[i] = _mm256_loadu_ps(pad + 8 * i);
  }
  return len;
}

// Max of |bits| over the block (>= 0x7F800000: the block holds Inf or NaN).
template <int NV>
MXQ_ALWAYS_INLINE int block_amax_bits(const __m256* v, __m256* a) noexcept {
  const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256i m = _mm256_setzero_si256();
  for (int i = 0; i < NV; ++i) {
    a[i] = _mm256_and_ps(v[i], absm);
    m = _mm256_max_epi32(m, _mm256_castps_si256(a[i]));
  }
  return simd::hmax_epi32(m);
}

// A whole 32-value E2M1 block (ties to even) -> 16 packed code bytes, with fewer vector ops than
// the generic ladder (the MXFP4 quantizer is ALU-bound). y2 = 2|x| / scale is exact (power-of-two
// factor). Below 2 the magnitude index is RNE(y2) (quantum 1/2: 0, 0.5, 1 -> 0, 1, 2); from 2 up
// it is y2 rounded to one mantissa bit read off its FP32 bits, (u + 0x1FFFFF + lsb) >> 22 =
// 2 * biased exponent + mantissa bit, minus 254 (2.0 -> 4 = the index of 1.0 * 2, as the ladder
// says). Saturation and the sign join after narrowing to bytes: one op per 32 codes.
// Requires a scale code >= 1 (so 2 / scale is a normal float).
template <class Layout>
MXQ_ALWAYS_INLINE void e2m1_rne_block_codes(const __m256* v, const __m256* a, int code, std::uint8_t* dst) noexcept {
  using C = element_codec<e2m1>;
  const __m256 inv2 = _mm256_set1_ps(pow2f_e8m0(128 - code));
  const __m256i bias = _mm256_set1_epi32(0x1FFFFF - (254 << 22)), one = _mm256_set1_epi32(1);
  __m256i idx[4], neg[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 y2 = _mm256_mul_ps(a[i], inv2);
    const __m256i u = _mm256_castps_si256(y2);
    const __m256i hi = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(_mm256_srli_epi32(u, 22), one)), 22);
    const __m256i lo = _mm256_cvttps_epi32(_mm256_round_ps(y2, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    idx[i] = _mm256_blendv_epi8(hi, lo, _mm256_castps_si256(_mm256_cmp_ps(y2, _mm256_set1_ps(2.0f), _CMP_LT_OQ)));
    neg[i] = _mm256_castps_si256(_mm256_cmp_ps(v[i], _mm256_setzero_ps(), _CMP_LT_OQ));
  }
  // Lanes end up in the order 0-3 8-11 16-19 24-27 | 4-7 ...; the dword permute restores it.
  __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(idx[0], idx[1]), _mm256_packus_epi32(idx[2], idx[3]));
  b = _mm256_min_epu8(b, _mm256_set1_epi8(static_cast<char>(C::magnitude_count - 1)));
  const __m256i sg = _mm256_packs_epi16(_mm256_packs_epi32(neg[0], neg[1]), _mm256_packs_epi32(neg[2], neg[3]));
  b = _mm256_or_si256(b, _mm256_and_si256(sg, _mm256_set1_epi8(static_cast<char>(C::sign_bit))));
  b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  if constexpr (std::is_same_v<Layout, split_halves_layout>) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_or_si128(_mm256_castsi256_si128(b), _mm_slli_epi16(_mm256_extracti128_si256(b, 1), 4)));
  } else {
    const __m256i w = _mm256_and_si256(_mm256_or_si256(b, _mm256_srli_epi16(b, 4)), _mm256_set1_epi16(0x00FF));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
  }
}


// What one E8M0 block produces, given its scale code (0xFF = NaN block): packed codes at
// `codes` (Out == codes) or FP32 values at `values`.
template <class F, rounding R, block_out Out, class Layout>
MXQ_ALWAYS_INLINE void e8m0_elements(const __m256* v, const __m256* a, int code, std::size_t len,
                                     std::uint8_t* codes, std::uint8_t* scratch, float* values) noexcept {
  using E = typename F::element;
  using C = element_codec<E>;
  constexpr int NV = block_vectors<F>;
  constexpr int bits = elem_info<E>::bits;
  if (code == 0xFF) {
    if constexpr (Out == block_out::codes) {
      __m256i c[NV];
      for (int i = 0; i < NV; ++i) c[i] = _mm256_set1_epi32(C::nan_code);
      store_codes<bits, Layout, NV>(c, len, codes, scratch);
    } else {
      for (std::size_t i = 0; i < len; ++i) values[i] = std::numeric_limits<float>::quiet_NaN();
    }
    return;
  }
  if constexpr (Out == block_out::codes && std::is_same_v<E, e2m1> && R == rounding::nearest_even && NV == 4) {
    if (len == F::block_size && code >= 1) return e2m1_rne_block_codes<Layout>(v, a, code, codes);
  }
  const __m256 inv_s = _mm256_set1_ps(pow2f_e8m0(127 - code));
  const __m256 s = _mm256_set1_ps(pow2f_e8m0(code - 127));
  [[maybe_unused]] __m256i c[NV];
  for (int i = 0; i < NV; ++i) {
    const __m256 neg = _mm256_cmp_ps(v[i], _mm256_setzero_ps(), _CMP_LT_OQ);
    const ladder<E, R> l(_mm256_mul_ps(a[i], inv_s));
    if constexpr (Out == block_out::codes) c[i] = encode_codes<E>(l.index(), neg);
    else _mm256_storeu_ps(values + 8 * i, apply_sign<E>(_mm256_mul_ps(l.magnitude(), s), neg));
  }
  if constexpr (Out == block_out::codes) store_codes<bits, Layout, NV>(c, len, codes, scratch);
}

template <class F>
int e8m0_scalar_code(const __m256* v, std::size_t len, std::span<const float> w, const quant_options& opt) {
  alignas(32) float blk[64];
  for (int i = 0; i < block_vectors<F>; ++i) _mm256_store_ps(blk + 8 * i, v[i]);
  const block_params p = e8m0_scale::choose<typename F::element>(std::span<const float>(blk, len), w, opt);
  return p.nan ? 0xFF : static_cast<int>(p.scale_code);
}

// One row of an E8M0 format: codes + scales, or fake-quantized values.
template <class F, rounding R, block_out Out, class Layout, class T>
void e8m0_row(const T* x, std::size_t cols, const quant_options& opt, std::uint8_t* code_row,
              std::uint8_t* scale_row, float* out) {
  constexpr int NV = block_vectors<F>;
  constexpr std::size_t B = F::block_size;
  constexpr int bits = elem_info<typename F::element>::bits;
  alignas(32) float pad[64];
  alignas(32) std::uint8_t codes[64 + 8];
  alignas(32) float vals[64];
  __m256 v[NV], a[NV];
  for (std::size_t c0 = 0, b = 0; c0 < cols; c0 += B, ++b) {
    const std::size_t len = std::min(B, cols - c0);
    load_block<F>(x + c0, len, v, pad);
    const int amax_bits = block_amax_bits<NV>(v, a);
    int code = e8m0_scale_code<F>(amax_bits, opt.scale_rule);
    if (code < 0) {
      const std::span<const float> w = opt.column_weights.empty() ? std::span<const float>{} : opt.column_weights.subspan(c0, len);
      code = e8m0_scalar_code<F>(v, len, w, opt);
    }
    if constexpr (Out == block_out::codes) {
      scale_row[b] = static_cast<std::uint8_t>(code);
      e8m0_elements<F, R, Out, Layout>(v, a, code, len, code_row + c0 * bits / 8, codes, nullptr);
    } else {
      if (len == B) {
        e8m0_elements<F, R, Out, Layout>(v, a, code, len, nullptr, nullptr, out + c0);
      } else {
        e8m0_elements<F, R, Out, Layout>(v, a, code, len, nullptr, nullptr, vals);
        std::memcpy(out + c0, vals, len * sizeof(float));
      }
    }
  }
}

// One row of a UE4M3-scaled E2M1 format.
template <class F, block_out Out, class Layout, class T>
void ue4m3_row(const T* x, std::size_t cols, const quant_options& opt, const tensor_params& t, const ue4m3_tables& tb,
               std::uint8_t* code_row, std::uint8_t* scale_row, float* out) {
  using S = typename F::scale;
  using C = element_codec<e2m1>;
  constexpr int NV = block_vectors<F>;
  constexpr std::size_t B = F::block_size;
  alignas(32) float pad[64];
  alignas(32) std::uint8_t codes[64 + 8];
  alignas(32) float vals[64];
  __m256 v[NV], a[NV];
  const float ts = S::has_tensor_scale ? t.scale : 1.0f;
  const float denom = C::max_value * ts;  // the oracle's FP32 recipe: amax / (6 * tensor scale)
  for (std::size_t c0 = 0, b = 0; c0 < cols; c0 += B, ++b) {
    const std::size_t len = std::min(B, cols - c0);
    load_block<F>(x + c0, len, v, pad);
    const int amax_bits = block_amax_bits<NV>(v, a);
    int code;
    bool nan = false;
    if (amax_bits >= 0x7F800000) {
      nan = true;
      code = S::nan_code;
    } else if (opt.scale_rule == scale_rule::floor) {
      if (amax_bits == 0) {
        code = 0;
      } else {
        code = std::max(e4m3_rne_index(std::bit_cast<float>(amax_bits) / denom), 1);
      }
    } else {
      alignas(32) float blk[64];
      for (int i = 0; i < NV; ++i) _mm256_store_ps(blk + 8 * i, v[i]);
      const std::span<const float> w = opt.column_weights.empty() ? std::span<const float>{} : opt.column_weights.subspan(c0, len);
      const block_params p = S::template choose<e2m1>(std::span<const float>(blk, len), w, opt, t);
      nan = p.nan;
      code = static_cast<int>(p.scale_code);
    }
    if constexpr (Out == block_out::codes) scale_row[b] = static_cast<std::uint8_t>(code);
    [[maybe_unused]] __m256i cv[NV];
    if (nan) {
      if constexpr (Out == block_out::codes) {
        for (int i = 0; i < NV; ++i) cv[i] = _mm256_set1_epi32(C::nan_code);
      } else {
        for (std::size_t i = 0; i < len; ++i) out[c0 + i] = std::numeric_limits<float>::quiet_NaN();
      }
    } else {
      const float* thr = tb.thr[code];
      const __m256 lut = _mm256_load_ps(tb.val[code]);
      for (int i = 0; i < NV; ++i) {
        __m256i idx = _mm256_setzero_si256();
        for (int k = 0; k < 7; ++k)
          idx = _mm256_sub_epi32(idx, _mm256_castps_si256(_mm256_cmp_ps(a[i], _mm256_broadcast_ss(thr + k), _CMP_GE_OQ)));
        const __m256 neg = _mm256_cmp_ps(v[i], _mm256_setzero_ps(), _CMP_LT_OQ);
        if constexpr (Out == block_out::codes) {
          cv[i] = _mm256_or_si256(idx, _mm256_and_si256(_mm256_castps_si256(neg), _mm256_set1_epi32(8)));
        } else {
          const __m256 m = _mm256_permutevar8x32_ps(lut, idx);
          _mm256_storeu_ps(vals + 8 * i, _mm256_xor_ps(m, _mm256_and_ps(neg, _mm256_set1_ps(-0.0f))));
        }
      }
      if constexpr (Out == block_out::values) std::memcpy(out + c0, vals, len * sizeof(float));
    }
    if constexpr (Out == block_out::codes) store_codes<4, Layout, NV>(cv, len, code_row + c0 / 2, codes);
  }
}


// ---- entry points' AVX2 bodies (the public functions below dispatch here) ------------------
template <class F, class Layout, class T>
void quantize_rows_avx2(matrix_view<const T> x, packed_matrix<F, Layout>& q, std::size_t first_row, const quant_options& opt) {
  const std::size_t bpr = q.blocks_per_row();
  std::uint8_t* codes = q.code_bytes().data() + first_row * q.row_bytes();
  std::uint8_t* scales = q.scale_data().data() + first_row * bpr;
  if constexpr (is_e8m0_fast<F, Layout>) {
    detail::with_rounding(opt.rounding, [&](auto rc) {
      detail::for_each_row(x, opt.threads, [&](const T* row, std::size_t r) {
        detail::e8m0_row<F, decltype(rc)::value, detail::block_out::codes, Layout>(
            row, x.cols, opt, codes + r * q.row_bytes(), scales + r * bpr, nullptr);
      });
    });
  } else {
    auto tb = std::make_unique<detail::ue4m3_tables>();
    detail::build_ue4m3_tables<typename F::scale>(*tb, q.tensor(), opt.rounding);
    detail::for_each_row(x, opt.threads, [&](const T* row, std::size_t r) {
      detail::ue4m3_row<F, detail::block_out::codes, Layout>(row, x.cols, opt, q.tensor(), *tb,
                                                              codes + r * q.row_bytes(), scales + r * bpr, nullptr);
    });
  }
}

template <class F, class T>
void fake_quant_avx2(matrix_view<const T> x, matrix_view<float> out, const quant_options& opt, const tensor_params& t) {
  std::unique_ptr<detail::ue4m3_tables> tb;
  if constexpr (is_ue4m3_fast<F, lsb_first_layout>) {
    tb = std::make_unique<detail::ue4m3_tables>();
    detail::build_ue4m3_tables<typename F::scale>(*tb, t, opt.rounding);
  }
  detail::with_rounding(opt.rounding, [&](auto rc) {
    detail::for_each_row(x, opt.threads, [&](const T* row, std::size_t r) {
      thread_local std::vector<float> obuf;  // strided output: one row buffer per thread
      if (!out.row_contiguous()) obuf.resize(out.cols);
      float* o = out.row_contiguous() ? out.row(r) : obuf.data();
      if constexpr (is_e8m0_fast<F, lsb_first_layout>)
        detail::e8m0_row<F, decltype(rc)::value, detail::block_out::values, lsb_first_layout>(row, x.cols, opt, nullptr,
                                                                                              nullptr, o);
      else
        detail::ue4m3_row<F, detail::block_out::values, lsb_first_layout>(row, x.cols, opt, t, *tb, nullptr, nullptr, o);
      if (!out.row_contiguous())
        for (std::size_t c = 0; c < out.cols; ++c) out(r, c) = obuf[c];
    });
  });
}

template <class F, class Layout>
void dequantize_avx2(const packed_matrix<F, Layout>& q, matrix_view<float> out) {
  using E = typename F::element;
  constexpr int bits = elem_info<E>::bits;
  constexpr std::size_t B = F::block_size;
  constexpr int NV = detail::block_vectors<F>;
  std::unique_ptr<detail::ue4m3_tables> tb;
  if constexpr (is_ue4m3_fast<F, Layout>) {
    tb = std::make_unique<detail::ue4m3_tables>();
    detail::build_ue4m3_tables<typename F::scale>(*tb, q.tensor(), rounding::nearest_even);
  }
  std::vector<float> obuf(out.row_contiguous() ? 0 : out.cols);
  alignas(32) std::uint8_t codes[64 + 8];
  alignas(32) float vals[64];
  const std::size_t bpr = q.blocks_per_row();
  for (std::size_t r = 0; r < q.rows(); ++r) {
    float* o = out.row_contiguous() ? out.row(r) : obuf.data();
    const std::uint8_t* src = q.code_bytes().data() + r * q.row_bytes();
    const auto* sc = q.scale_data().data() + r * bpr;
    for (std::size_t c0 = 0, b = 0; c0 < q.cols(); c0 += B, ++b) {
      const std::size_t len = std::min(B, q.cols() - c0);
      float* dst = len == B ? o + c0 : vals;
      detail::unpack_block<bits, Layout>(src + c0 * bits / 8, len, B, codes);
      if constexpr (is_e8m0_fast<F, Layout>) {
        const int code = sc[b];
        if (code == 0xFF) {
          for (std::size_t i = 0; i < len; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
        } else {
          const __m256 s = _mm256_set1_ps(pow2f_e8m0(code - 127));
          for (int i = 0; i < NV; ++i) {
            const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 8 * i)));
            _mm256_storeu_ps(dst + 8 * i, _mm256_mul_ps(detail::decode_top<E>(_mm256_slli_epi32(c, 32 - bits)), s));
          }
        }
      } else {
        const int code = sc[b] & 0x7F;
        if (!tb->valid[code]) {
          for (std::size_t i = 0; i < len; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
        } else {
          const __m256 lut = _mm256_load_ps(tb->val[code]);
          for (int i = 0; i < NV; ++i) {
            const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 8 * i)));
            const __m256 m = _mm256_permutevar8x32_ps(lut, c);
            const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(c, 3), 31));
            _mm256_storeu_ps(dst + 8 * i, _mm256_xor_ps(m, sign));
          }
        }
      }
      if (len < B) std::memcpy(o + c0, vals, len * sizeof(float));
    }
    if (!out.row_contiguous())
      for (std::size_t c = 0; c < out.cols; ++c) out(r, c) = obuf[c];
  }
}

MXQ_AVX2_END
#endif  // MXQ_KERNEL_AVX2

}  // namespace detail

// Whether quantize / fake_quant / dequantize for F in Layout with these options run SIMD
// kernels in this process (compiled in, and the CPU has the ISA: active_isa()).
// Every tier but generic has them (AVX2's 8-lane bodies; SSE4.2's and NEON's 4-lane ones).
template <class F, class Layout = lsb_first_layout>
bool can_quantize(const quant_options& opt) {
  if constexpr (!has_fast_quant<F, Layout> || !simd_available) {
    (void)opt;
    return false;
  } else {
    return fast_rounding(opt.rounding) && simd_enabled();
  }
}
template <class F, class Layout = lsb_first_layout>
bool can_dequantize() {
  if constexpr (!has_fast_quant<F, Layout> || !simd_available) return false;
  else return simd_enabled();
}

// Tensor parameters as compute_tensor_params computes them (vectorised amax).
template <class F, class T>
tensor_params tensor_params_of(matrix_view<const T> x, scale_rule rule = scale_rule::floor) {
  if constexpr (!F::scale::has_tensor_scale) {
    (void)x, (void)rule;
    return {};
  } else {
    return F::scale::template tensor_scale<typename F::element>(detail::finite_amax(x), rule);
  }
}

// Quantizes the rows x into rows [first_row, first_row + x.rows) of q (shaped, tensor parameters
// set; x.cols == q.cols()). Rows are independent, so a matrix quantized in row slices is the same
// bytes as the whole. Requires can_quantize<F, Layout>.
template <class F, class Layout, class T>
void quantize_rows_into(matrix_view<const T> x, packed_matrix<F, Layout>& q, std::size_t first_row,
                        const quant_options& opt) {
  if constexpr (has_fast_quant<F, Layout>) {
#if MXQ_KERNEL_AVX2
    if (avx2_enabled()) return detail::quantize_rows_avx2(x, q, first_row, opt);
    if (active_isa() == isa::sse4_2) return detail::v4::quantize_rows(x, q, first_row, opt, arch::sse4_2{});
#elif MXQ_KERNEL_NEON
    if (simd_enabled()) return detail::v4::quantize_rows(x, q, first_row, opt, arch::neon64{});
#endif
  }
  (void)x, (void)q, (void)first_row, (void)opt;
  throw error("mxq::kernel::quantize_into: no fast path for this format");
}

// Quantizes x into q (already shaped, tensor parameters set). Requires can_quantize<F, Layout>.
template <class F, class Layout, class T>
void quantize_into(matrix_view<const T> x, packed_matrix<F, Layout>& q, const quant_options& opt) {
  quantize_rows_into(x, q, 0, opt);
}

// Quantize-dequantize of x into out (same shape; out may be the same view as x when T = float).
template <class F, class T>
void fake_quant_into(matrix_view<const T> x, matrix_view<float> out, const quant_options& opt, const tensor_params& t) {
  if constexpr (has_fast_quant<F, lsb_first_layout>) {
#if MXQ_KERNEL_AVX2
    if (avx2_enabled()) return detail::fake_quant_avx2<F>(x, out, opt, t);
    if (active_isa() == isa::sse4_2) return detail::v4::fake_quant<F>(x, out, opt, t, arch::sse4_2{});
#elif MXQ_KERNEL_NEON
    if (simd_enabled()) return detail::v4::fake_quant<F>(x, out, opt, t, arch::neon64{});
#endif
  }
  (void)x, (void)out, (void)opt, (void)t;
  throw error("mxq::kernel::fake_quant_into: no fast path for this format");
}

// Decodes q into out (same shape). Requires can_dequantize<F, Layout>.
template <class F, class Layout>
void dequantize_into(const packed_matrix<F, Layout>& q, matrix_view<float> out) {
  if constexpr (has_fast_quant<F, Layout>) {
#if MXQ_KERNEL_AVX2
    if (avx2_enabled()) return detail::dequantize_avx2(q, out);
    if (active_isa() == isa::sse4_2) return detail::v4::dequantize(q, out, arch::sse4_2{});
#elif MXQ_KERNEL_NEON
    if (simd_enabled()) return detail::v4::dequantize(q, out, arch::neon64{});
#endif
  }
  (void)q, (void)out;
  throw error("mxq::kernel::dequantize_into: no fast path for this format");
}

}  // namespace mxq::kernel
