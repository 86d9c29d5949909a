// MX matrix-vector and matrix-matrix products with on-the-fly dequantization (AVX2).
//
//   y[r] = sum_k W[r, k] x[k]             (gemv; W packed [out, in], blocks along k)
//   Y[t, r] = sum_k W[r, k] X[t, k]       (gemm; X is [batch, in], Y is [batch, out])
//
// Two activation paths:
//   f32  - activations stay FP32: weights decode to FP32 and meet them in FMAs. Every format
//          with a fast dequantizer (E8M0 formats, NVFP4); any shape.
//   int8 - 4-bit weights (MXFP4, MXINT4, NVFP4; lsb_first or split_halves) times activations
//          quantized per weight block to int8 with an FP32 scale (Q8-style: d = amax/127,
//          q = round(x/d)). Weight nibbles go through a 16-entry byte LUT (pshufb) to small
//          unsigned integers u = w' + off (w' = the element value times 2 for E2M1, times 4 for
//          MXINT4), so pmaddubsw(u, q) and pmaddwd give exact int32 block dots; the offset's
//          contribution off * sum(q) is subtracted in int32, then one FP32 FMA per block applies
//          the weight scale times the activation scale.
//          gemv reads the packed rows directly (64 codes per 32-byte load). gemm repacks tiles
//          of 8 rows so one register holds 4 consecutive k of 8 rows: pmaddubsw against a
//          broadcast of 4 activation bytes then accumulates 8 rows at once, and the per-block
//          scale costs one FMA per 8 rows instead of one per row.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "../format/block.hpp"
#include "../matrix_view.hpp"
#include "../packed.hpp"
#include "pack.hpp"
#include "quantize.hpp"
#include "simd.hpp"
#include "thread.hpp"
#include "traits.hpp"

namespace mxq::kernel {

// 4-bit formats of the int8-activation path.
template <class F, class Layout>
inline constexpr bool is_w4 = [] {
  if constexpr (!has_fast_quant<F, Layout>) {
    return false;
  } else {
    using E = typename F::element;
    return (std::is_same_v<E, e2m1> || std::is_same_v<E, int_element<4>>) && (F::block_size == 16 || F::block_size == 32);
  }
}();

// Formats with a SIMD product compiled in (else callers dequantize and multiply); whether it
// runs in this process is avx2_enabled()'s answer (SSE4.2 / NEON products are not written yet).
template <class F, class Layout>
inline constexpr bool has_fast_gemv = has_fast_quant<F, Layout> && avx2_available;

// How the activations enter the products (see the header comment).
enum class activation_precision {
  automatic,  // int8 for 4-bit weight formats (their own error dwarfs the activations'), else f32
  f32,
  int8,       // falls back to f32 where the format has no int8 path
};

struct gemm_options {
  int threads = 1;  // worker threads over output rows (<= 0: hardware concurrency)
  activation_precision activations = activation_precision::automatic;
};

// Whether gemv/gemm with these options run the int8-activation kernels.
template <class F, class Layout>
bool uses_int8(const gemm_options& opt) {
  if constexpr (!is_w4<F, Layout> || !avx2_available) {
    (void)opt;
    return false;
  } else {
    return opt.activations != activation_precision::f32 && avx2_enabled();
  }
}

namespace detail {

// Stored scale byte -> FP32 multiplier (NaN codes -> NaN).
template <class F>
void scale_lut(float* lut, const tensor_params& t) {
  using S = typename F::scale;
  for (int c = 0; c < 256; ++c) {
    if constexpr (std::is_same_v<S, e8m0_scale>)
      lut[c] = c == 0xFF ? std::numeric_limits<float>::quiet_NaN() : pow2f_e8m0(c - 127);
    else
      lut[c] = static_cast<float>(S::decode(static_cast<std::uint32_t>(c), t));
  }
}

// The int8 path's nibble tables: u = value * factor^-1 + off (unsigned), v = value * factor^-1.
template <class E>
struct w4_lut {
  static constexpr bool fp = std::is_same_v<E, e2m1>;
  static constexpr float factor = fp ? 0.5f : 0.25f;  // true value = v * factor
  static constexpr int off = fp ? 12 : 8;
  static constexpr std::array<std::int8_t, 16> v = [] {
    std::array<std::int8_t, 16> t{};
    for (int c = 0; c < 16; ++c) {
      if constexpr (fp) {
        constexpr int mag2[8] = {0, 1, 2, 3, 4, 6, 8, 12};
        t[c] = static_cast<std::int8_t>(c & 8 ? -mag2[c & 7] : mag2[c & 7]);
      } else {
        t[c] = static_cast<std::int8_t>(c < 8 ? c : c - 16);
      }
    }
    return t;
  }();
  static constexpr std::array<std::uint8_t, 16> u = [] {
    std::array<std::uint8_t, 16> t{};
    for (int c = 0; c < 16; ++c) t[c] = static_cast<std::uint8_t>(v[c] + off);
    return t;
  }();
};

// Code index (within a 64-code chunk) at byte position p of the [low nibbles | high nibbles]
// arrangement a 32-byte load of packed codes unpacks into.
template <class Layout>
constexpr int chunk_code(int p, int block) {
  const int nib = p / 32, j = p % 32;
  if constexpr (std::is_same_v<Layout, split_halves_layout>) {
    const int h = block / 2;
    return (j / h) * block + j % h + nib * h;
  } else {
    return 2 * j + nib;
  }
}

// Activations quantized for the int8 path: per row, kp (multiple of 64) int8 values in chunk
// order, per weight block the scale d (times the weight LUT factor) and off * sum(q), and per
// chunk the lane-wise off * partial sums the gemv kernel subtracts.
struct q8_rows {
  std::size_t rows = 0, kp = 0, nb = 0;
  std::vector<std::int8_t> q;
  std::vector<float> d;
  std::vector<std::int32_t> offs;
  std::vector<std::int32_t> corr;
  const std::int8_t* qrow(std::size_t t) const { return q.data() + t * kp; }
};

// quantize_q8's scalar oracle: the same operations in the same order (amax, d = amax/127 * factor,
// q = round-half-even(x * (127/amax)) clamped to +-127, where AVX2's conversion of NaN or an
// out-of-range value gives INT_MIN and so -127), bit for bit the AVX2 result (tested).
template <class F, class Layout, class T>
q8_rows quantize_q8_scalar(matrix_view<const T> x) {
  using L = w4_lut<typename F::element>;
  constexpr std::size_t B = F::block_size;
  q8_rows a;
  a.rows = x.rows;
  a.kp = (x.cols + 63) / 64 * 64;
  a.nb = a.kp / B;
  a.q.resize(a.rows * a.kp);
  a.d.resize(a.rows * a.nb + 8);
  a.offs.resize(a.rows * a.nb);
  a.corr.resize(a.rows * (a.kp / 64) * 8);
  std::vector<float> xf(a.kp);
  std::vector<std::int8_t> qn(a.kp);
  for (std::size_t t = 0; t < x.rows; ++t) {
    for (std::size_t i = 0; i < a.kp; ++i) xf[i] = i < x.cols ? to_f32(x(t, i)) : 0.0f;
    for (std::size_t b = 0; b < a.nb; ++b) {
      const float* xb = xf.data() + b * B;
      float amax = 0.0f;
      for (std::size_t i = 0; i < B; ++i) amax = std::max(amax, std::fabs(xb[i]));
      for (std::size_t i = 0; i < B; ++i)
        if (xb[i] != xb[i]) amax = xb[i];
      a.d[t * a.nb + b] = amax / 127.0f * L::factor;
      const float inv = amax > 0.0f && std::isfinite(amax) ? 127.0f / amax : 0.0f;
      std::int32_t sum = 0;
      for (std::size_t i = 0; i < B; ++i) {
        const float r = std::nearbyint(xb[i] * inv);
        std::int32_t v = r >= -0x1p31f && r < 0x1p31f ? static_cast<std::int32_t>(r) : std::numeric_limits<std::int32_t>::min();
        v = std::max(std::min(v, 127), -127);
        sum += v;
        qn[b * B + i] = static_cast<std::int8_t>(v);
      }
      a.offs[t * a.nb + b] = L::off * sum;
    }
    std::int8_t* q = a.q.data() + t * a.kp;
    std::int32_t* corr = a.corr.data() + t * (a.kp / 64) * 8;
    for (std::size_t c = 0; c < a.kp / 64; ++c) {
      for (int p = 0; p < 64; ++p) q[c * 64 + static_cast<std::size_t>(p)] = qn[c * 64 + static_cast<std::size_t>(chunk_code<Layout>(p, static_cast<int>(B)))];
      for (std::size_t l = 0; l < 8; ++l) {
        std::int32_t s4 = 0;
        for (std::size_t i = 0; i < 4; ++i) s4 += q[c * 64 + 4 * l + i] + q[c * 64 + 32 + 4 * l + i];
        corr[c * 8 + l] = L::off * s4;
      }
    }
  }
  return a;
}

#if MXQ_KERNEL_AVX2
MXQ_AVX2_BEGIN

template <class F, class Layout, class T>
void quantize_q8_row(const T* x, std::size_t k, q8_rows& a, std::size_t t, float* xf, std::int8_t* qn) {
  using L = w4_lut<typename F::element>;
  constexpr std::size_t B = F::block_size;
  const std::size_t kp = a.kp;
  for (std::size_t i = 0; i < kp; ++i) xf[i] = i < k ? to_f32(x[i]) : 0.0f;
  float* d = a.d.data() + t * a.nb;
  std::int32_t* offs = a.offs.data() + t * a.nb;
  const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (std::size_t b = 0; b < a.nb; ++b) {
    const float* xb = xf + b * B;
    __m256 m = _mm256_setzero_ps();
    for (std::size_t i = 0; i < B; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + i), absm));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    for (std::size_t i = 0; i < B; ++i)  // max_ps drops NaN: keep it visible in the scale
      if (xb[i] != xb[i]) amax = xb[i];
    d[b] = amax / 127.0f * L::factor;
    const __m256 inv = _mm256_set1_ps(amax > 0.0f && std::isfinite(amax) ? 127.0f / amax : 0.0f);
    std::int32_t sum = 0;
    for (std::size_t i = 0; i < B; i += 16) {
      const __m256i q0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      const __m256i q1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      const __m256i lim = _mm256_set1_epi32(127);
      const __m256i c0 = _mm256_max_epi32(_mm256_min_epi32(q0, lim), _mm256_sub_epi32(_mm256_setzero_si256(), lim));
      const __m256i c1 = _mm256_max_epi32(_mm256_min_epi32(q1, lim), _mm256_sub_epi32(_mm256_setzero_si256(), lim));
      sum += simd::hsum_epi32(_mm256_add_epi32(c0, c1));
      const __m128i p16a = _mm_packs_epi32(_mm256_castsi256_si128(c0), _mm256_extracti128_si256(c0, 1));
      const __m128i p16b = _mm_packs_epi32(_mm256_castsi256_si128(c1), _mm256_extracti128_si256(c1, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qn + b * B + i), _mm_packs_epi16(p16a, p16b));
    }
    offs[b] = L::off * sum;
  }
  // Chunk order and the per-lane corrections.
  std::int8_t* q = a.q.data() + t * kp;
  std::int32_t* corr = a.corr.data() + t * (kp / 64) * 8;
  static constexpr auto perm = [] {
    std::array<std::uint8_t, 64> p{};
    for (int i = 0; i < 64; ++i) p[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(chunk_code<Layout>(i, static_cast<int>(B)));
    return p;
  }();
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (std::size_t c = 0; c < kp / 64; ++c) {
    for (std::size_t p = 0; p < 64; ++p) q[c * 64 + p] = qn[c * 64 + perm[p]];
    const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + c * 64));
    const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + c * 64 + 32));
    const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(ones8, xl), _mm256_maddubs_epi16(ones8, xh));
    const __m256i s32 = _mm256_mullo_epi32(_mm256_madd_epi16(s16, ones16), _mm256_set1_epi32(L::off));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + c * 8), s32);
  }
}

template <class F, class Layout, class T>
q8_rows quantize_q8(matrix_view<const T> x) {
  q8_rows a;
  a.rows = x.rows;
  a.kp = (x.cols + 63) / 64 * 64;
  a.nb = a.kp / static_cast<std::size_t>(F::block_size);
  a.q.resize(a.rows * a.kp);
  a.d.resize(a.rows * a.nb + 8);  // + 8: the gemv kernel loads scales 8 blocks at a time
  a.offs.resize(a.rows * a.nb);
  a.corr.resize(a.rows * (a.kp / 64) * 8);
  std::vector<float> xf(a.kp);
  std::vector<std::int8_t> qn(a.kp);
  std::vector<T> row(x.row_contiguous() ? 0 : x.cols);
  for (std::size_t t = 0; t < x.rows; ++t) {
    const T* p = x.row(t);
    if (!x.row_contiguous()) {
      for (std::size_t c = 0; c < x.cols; ++c) row[c] = x(t, c);
      p = row.data();
    }
    quantize_q8_row<F, Layout>(p, x.cols, a, t, xf.data(), qn.data());
  }
  return a;
}

MXQ_ALWAYS_INLINE __m256i load_lut16(const std::uint8_t* t16) noexcept {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t16)));
}

// The 32 packed bytes of chunk c of a row (zero-padded past the row's end).
MXQ_ALWAYS_INLINE __m256i load_chunk(const std::uint8_t* row, std::size_t c, std::size_t row_bytes) noexcept {
  if ((c + 1) * 32 <= row_bytes) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32));
  alignas(32) std::uint8_t tmp[32] = {};
  if (c * 32 < row_bytes) std::memcpy(tmp, row + c * 32, row_bytes - c * 32);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(tmp));
}

// 8 scale bytes (all in range) -> FP32 multipliers: exponent-field arithmetic, the LUT only
// for the rare codes arithmetic does not cover (E8M0 0x00 / 0xFF; UE4M3 >= 0x7F).
template <class F>
MXQ_ALWAYS_INLINE __m256 scales8(const std::uint8_t* s, const float* lut, float ts) noexcept {
  std::uint64_t v;
  std::memcpy(&v, s, 8);
  const __m256i c = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(v)));
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  if constexpr (std::is_same_v<typename F::scale, e8m0_scale>) {
    const std::uint64_t zero = (v - ones) & ~v & highs, full = (~v - ones) & v & highs;  // any 0x00 / 0xFF byte
    if ((zero | full) == 0) [[likely]]
      return _mm256_castsi256_ps(_mm256_slli_epi32(c, 23));
  } else {
    const std::uint64_t big = ((v & ~highs) + ones * 0x01) & highs;  // any byte with low 7 bits == 0x7F
    if (((v & highs) | big) == 0) [[likely]] {
      const __m256 e = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(c, 20)), _mm256_set1_ps(0x1p120f));
      return F::scale::has_tensor_scale ? _mm256_mul_ps(e, _mm256_set1_ps(ts)) : e;
    }
  }
  (void)ts;
  return _mm256_i32gather_ps(lut, c, 4);
}

// ---- gemv, int8 activations ----------------------------------------------------------------
// One 64-code chunk: exact int32 dots of 8 lanes (lane i = codes 8i..8i+7) minus the offset term.
MXQ_ALWAYS_INLINE __m256i w4a8_chunk(__m256i v, const std::int8_t* x, const std::int32_t* corr, __m256i ulut) noexcept {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i wl = _mm256_shuffle_epi8(ulut, _mm256_and_si256(v, m4));
  const __m256i wh = _mm256_shuffle_epi8(ulut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(wl, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))),
                                     _mm256_maddubs_epi16(wh, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32))));
  return _mm256_sub_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)));
}

// Lane -> block (within a group of 8 blocks) for chunk j of the group.
template <int B>
MXQ_ALWAYS_INLINE __m256i lane_blocks(int j) noexcept {
  const int base = j * 64 / B;
  return B == 32 ? _mm256_setr_epi32(base, base, base, base, base + 1, base + 1, base + 1, base + 1)
                 : _mm256_setr_epi32(base, base, base + 1, base + 1, base + 2, base + 2, base + 3, base + 3);
}

template <class F, class Layout>
float gemv_row_w4a8(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* s, std::size_t nb_row,
                    const q8_rows& a, const float* lut, float ts) {
  using L = w4_lut<typename F::element>;
  constexpr int B = F::block_size;
  constexpr std::size_t G = B / 8;  // chunks per group of 8 blocks
  const __m256i ulut = load_lut16(L::u.data());
  const std::int8_t* q = a.q.data();
  const std::int32_t* corr = a.corr.data();
  const float* d = a.d.data();
  const std::size_t nchunks = a.kp / 64;
  // Groups lying wholly inside the row (codes and scales): the unchecked main loop.
  const std::size_t full = std::min({nchunks / G, row_bytes / (32 * G), nb_row / 8});
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (std::size_t g = 0; g < full; ++g) {
    const __m256 sd = _mm256_mul_ps(scales8<F>(s + 8 * g, lut, ts), _mm256_loadu_ps(d + 8 * g));
    const std::uint8_t* wg = w + 32 * G * g;
    const std::size_t c0 = G * g;
    auto step = [&](auto jc) {
      constexpr std::size_t J = decltype(jc)::value;
      __m256& acc = J % 2 == 0 ? acc0 : acc1;
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(w4a8_chunk(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + 32 * J)),
                                                          q + (c0 + J) * 64, corr + (c0 + J) * 8, ulut)),
                            _mm256_permutevar8x32_ps(sd, lane_blocks<B>(static_cast<int>(J))), acc);
    };
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (step(std::integral_constant<std::size_t, J>{}), ...);
    }(std::make_index_sequence<G>{});
  }
  // Tail: partial groups, padded chunks and scales.
  for (std::size_t c0 = full * G, b0 = full * 8; c0 < nchunks; c0 += G, b0 += 8) {
    alignas(8) std::uint8_t sb[8] = {};
    if (b0 < nb_row) std::memcpy(sb, s + b0, std::min<std::size_t>(8, nb_row - b0));
    const __m256 sd = _mm256_mul_ps(_mm256_i32gather_ps(lut, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sb))), 4),
                                    _mm256_loadu_ps(d + b0));
    for (std::size_t j = 0; j < G && c0 + j < nchunks; ++j) {
      const std::size_t c = c0 + j;
      const __m256i dd = w4a8_chunk(load_chunk(w, c, row_bytes), q + c * 64, corr + c * 8, ulut);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dd), _mm256_permutevar8x32_ps(sd, lane_blocks<B>(static_cast<int>(j))), acc0);
    }
  }
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

// ---- gemv, f32 activations, 4-bit weights ---------------------------------------------------
// xp: the activations in chunk order (kp floats, zero-padded).
template <class F, class Layout>
float gemv_row_w4f32(const std::uint8_t* w, std::size_t row_bytes, const float* sc, const float* xp, std::size_t kp) {
  using L = w4_lut<typename F::element>;
  constexpr std::size_t B = F::block_size;
  const __m256i vlut = load_lut16(reinterpret_cast<const std::uint8_t*>(L::v.data()));
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (std::size_t c = 0; c < kp / 64; ++c) {
    const __m256i v = load_chunk(w, c, row_bytes);
    const __m256i wl = _mm256_shuffle_epi8(vlut, _mm256_and_si256(v, m4));
    const __m256i wh = _mm256_shuffle_epi8(vlut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    const float* x = xp + c * 64;
    const __m128i l0 = _mm256_castsi256_si128(wl), l1 = _mm256_extracti128_si256(wl, 1);
    const __m128i h0 = _mm256_castsi256_si128(wh), h1 = _mm256_extracti128_si256(wh, 1);
    const __m128i ls[4] = {l0, _mm_unpackhi_epi64(l0, l0), l1, _mm_unpackhi_epi64(l1, l1)};
    const __m128i hs[4] = {h0, _mm_unpackhi_epi64(h0, h0), h1, _mm_unpackhi_epi64(h1, h1)};
    for (int g = 0; g < 4; ++g) {
      const __m256 fl = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(ls[g]));
      const __m256 fh = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hs[g]));
      const __m256 t = _mm256_fmadd_ps(fl, _mm256_loadu_ps(x + 8 * g), _mm256_mul_ps(fh, _mm256_loadu_ps(x + 32 + 8 * g)));
      const __m256 s = _mm256_broadcast_ss(sc + (c * 64 + 16 * static_cast<std::size_t>(g)) / B);
      if (g & 1) acc1 = _mm256_fmadd_ps(t, s, acc1);
      else acc0 = _mm256_fmadd_ps(t, s, acc0);
    }
  }
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

// 8 consecutive K-bit codes (K = 3 or 6, lsb_first) starting at byte p, each at the top of its
// 32-bit lane (see decode_top); reads 8 bytes at p (the caller guarantees they are readable).
template <int K>
MXQ_ALWAYS_INLINE __m256i tops8(const std::uint8_t* p) noexcept {
  static_assert(K == 3 || K == 6);
  const __m256i v = _mm256_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  // lane i: bytes (K i)/8 and the next one into the lane's top half, then left by 16 - (K i)%8 - K
  const __m256i pick = K == 6 ? _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 2, -1, -1, 2, 3,  //
                                                 -1, -1, 3, 4, -1, -1, 3, 4, -1, -1, 4, 5, -1, -1, 5, 6)
                              : _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 2,  //
                                                 -1, -1, 1, 2, -1, -1, 1, 2, -1, -1, 2, 3, -1, -1, 2, 3);
  const __m256i shift = K == 6 ? _mm256_setr_epi32(10, 4, 6, 8, 10, 4, 6, 8) : _mm256_setr_epi32(13, 10, 7, 12, 9, 6, 11, 8);
  return _mm256_sllv_epi32(_mm256_shuffle_epi8(v, pick), shift);
}

// The codes of block [c0, c0 + len) of a row, top-aligned, as B/8 vectors; `end` bounds the
// readable bytes (the whole packed matrix).
template <class F, class Layout>
MXQ_ALWAYS_INLINE void block_tops(const std::uint8_t* w, std::size_t c0, std::size_t len, const std::uint8_t* end,
                                  std::uint8_t* scratch, __m256i* c) noexcept {
  constexpr int bits = elem_info<typename F::element>::bits;
  constexpr std::size_t B = F::block_size;
  const std::uint8_t* src = w + c0 * bits / 8;
  if (len == B) {
    if constexpr ((bits == 3 || bits == 6) && std::is_same_v<Layout, lsb_first_layout>) {
      if (src + B * bits / 8 + 8 <= end) {
        for (std::size_t i = 0; i < B / 8; ++i) c[i] = tops8<bits>(src + i * bits);
        return;
      }
    } else if constexpr (bits == 4 && std::is_same_v<Layout, lsb_first_layout>) {
      const __m256i sh = _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0);
      for (std::size_t i = 0; i < B / 8; ++i) {
        std::int32_t v;
        std::memcpy(&v, src + 4 * i, 4);
        c[i] = _mm256_sllv_epi32(_mm256_set1_epi32(v), sh);
      }
      return;
    } else if constexpr (bits == 8) {
      for (std::size_t i = 0; i < B / 8; ++i)
        c[i] = _mm256_slli_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 8 * i))), 24);
      return;
    }
  }
  unpack_block<bits, Layout>(src, len, B, scratch);
  if (len < B) std::memset(scratch + len, 0, B - len);
  for (std::size_t i = 0; i < B / 8; ++i)
    c[i] = _mm256_slli_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scratch + 8 * i))), 32 - bits);
}

// Whether a whole 8-bit block may hold Inf/NaN element codes (only E4M3 / E5M2 have them).
template <class F>
MXQ_ALWAYS_INLINE bool block_has_specials(const std::uint8_t* w, std::size_t c0, std::size_t len) noexcept {
  using E = typename F::element;
  using C = element_codec<E>;
  if constexpr (elem_info<E>::is_int || C::magnitude_count == (1 << (elem_info<E>::bits - 1))) {
    (void)w, (void)c0, (void)len;
    return false;
  } else if constexpr (elem_info<E>::bits == 8 && F::block_size == 32) {
    if (len != 32) return true;
    const __m256i b = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c0)), _mm256_set1_epi8(0x7F));
    return _mm256_movemask_epi8(_mm256_cmpgt_epi8(b, _mm256_set1_epi8(static_cast<char>(elem_info<E>::max_idx)))) != 0;
  } else {
    (void)w, (void)c0, (void)len;
    return true;
  }
}

// ---- any fast format, f32 activations: decode a block, FMA ----------------------------------
// Decodes one row into FP32 values (element value times block scale), out[0, round_up(cols, B)).
template <class F, class Layout>
MXQ_ALWAYS_INLINE void decode_row(const std::uint8_t* w, const std::uint8_t* s, std::size_t cols, const float* lut,
                                  const std::uint8_t* end, float* out) {
  using E = typename F::element;
  constexpr std::size_t B = F::block_size;
  alignas(32) std::uint8_t scratch[64 + 8];
  __m256i c[B / 8];
  for (std::size_t c0 = 0, b = 0; c0 < cols; c0 += B, ++b) {
    const std::size_t len = std::min(B, cols - c0);
    block_tops<F, Layout>(w, c0, len, end, scratch, c);
    const __m256 sv = _mm256_set1_ps(lut[s[b]]);
    if (block_has_specials<F>(w, c0, len))
      for (std::size_t i = 0; i < B / 8; ++i) _mm256_storeu_ps(out + c0 + 8 * i, _mm256_mul_ps(decode_top<E>(c[i]), sv));
    else
      for (std::size_t i = 0; i < B / 8; ++i) _mm256_storeu_ps(out + c0 + 8 * i, _mm256_mul_ps(decode_top<E, false>(c[i]), sv));
  }
}

// Element values without the MXINT ladder factor 2^(2-K) (folded into the block scale).
template <class E, bool Specials>
MXQ_ALWAYS_INLINE __m256 decode_top_gemv(__m256i top) noexcept {
  if constexpr (elem_info<E>::is_int) return _mm256_cvtepi32_ps(_mm256_srai_epi32(top, 32 - elem_info<E>::bits));
  else return decode_top<E, Specials>(top);
}

template <class F, class Layout>
float gemv_row_generic(const std::uint8_t* w, const std::uint8_t* s, std::size_t cols, const float* lut, const float* x,
                       const std::uint8_t* end) {
  using E = typename F::element;
  constexpr std::size_t B = F::block_size;
  constexpr float fold = elem_info<E>::is_int ? 1.0f / static_cast<float>(1 << elem_info<E>::mbits) : 1.0f;
  alignas(32) std::uint8_t scratch[64 + 8];
  __m256i c[B / 8];
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t c0 = 0, b = 0; c0 < cols; c0 += B, ++b) {
    const std::size_t len = std::min(B, cols - c0);
    block_tops<F, Layout>(w, c0, len, end, scratch, c);
    auto dot = [&](auto specials) {
      constexpr bool S = decltype(specials)::value;
      __m256 blk = _mm256_mul_ps(decode_top_gemv<E, S>(c[0]), _mm256_loadu_ps(x + c0));
      for (std::size_t i = 1; i < B / 8; ++i) blk = _mm256_fmadd_ps(decode_top_gemv<E, S>(c[i]), _mm256_loadu_ps(x + c0 + 8 * i), blk);
      return blk;
    };
    const __m256 blk = block_has_specials<F>(w, c0, len) ? dot(std::true_type{}) : dot(std::false_type{});
    acc[b & 1] = _mm256_fmadd_ps(blk, _mm256_set1_ps(lut[s[b]] * fold), acc[b & 1]);
  }
  return simd::hsum(_mm256_add_ps(acc[0], acc[1]));
}

// ---- gemm, int8 activations: 8-row tiles ----------------------------------------------------
MXQ_ALWAYS_INLINE void transpose8x8_epi32(__m256i* r) noexcept {
  const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// Tile of 8 rows: per chunk 16 registers (low-nibble dwords g = 0..7, then high), each
// [row0 dword g, ..., row7 dword g] of LUT bytes; per block the 8 rows' FP32 scales.
struct alignas(32) bytes32 {
  std::uint8_t b[32];
};
struct w4_tile {
  std::vector<bytes32> t;
  std::vector<float> s;
};

template <class F, class Layout>
void repack_tile(const packed_matrix<F, Layout>& w, std::size_t r0, std::size_t kp, const float* lut, w4_tile& tile) {
  using L = w4_lut<typename F::element>;
  const std::size_t nchunks = kp / 64, nb = kp / static_cast<std::size_t>(F::block_size);
  tile.t.resize(nchunks * 16);
  tile.s.resize(nb * 8);
  const __m256i ulut = load_lut16(L::u.data());
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const std::size_t nrows = std::min<std::size_t>(8, w.rows() - r0);
  const std::size_t nb_row = w.blocks_per_row();
  for (std::size_t i = 0; i < 8; ++i)
    for (std::size_t b = 0; b < nb; ++b)
      tile.s[b * 8 + i] = i < nrows && b < nb_row ? lut[w.scale(r0 + i, b)] : 0.0f;
  const std::uint8_t* base = w.code_bytes().data();
  for (std::size_t c = 0; c < nchunks; ++c) {
    __m256i lo[8], hi[8];
    for (std::size_t i = 0; i < 8; ++i) {
      const __m256i v = i < nrows ? load_chunk(base + (r0 + i) * w.row_bytes(), c, w.row_bytes()) : _mm256_setzero_si256();
      lo[i] = _mm256_shuffle_epi8(ulut, _mm256_and_si256(v, m4));
      hi[i] = _mm256_shuffle_epi8(ulut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
    transpose8x8_epi32(lo);
    transpose8x8_epi32(hi);
    for (int g = 0; g < 8; ++g) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile.t[c * 16 + static_cast<std::size_t>(g)].b), lo[g]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile.t[c * 16 + 8 + static_cast<std::size_t>(g)].b), hi[g]);
    }
  }
}

MXQ_ALWAYS_INLINE __m256i bcast4(const std::int8_t* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// out[t][0..8) = the tile's 8 rows times tokens t0..t0+NT.
template <class F, int NT>
void gemm_tile_w4a8(const w4_tile& tile, const q8_rows& a, std::size_t t0, float (*out)[8]) {
  constexpr int B = F::block_size;
  constexpr int GPB = B / 8;  // dword groups per block in each nibble half (32 -> 4, 16 -> 2)
  // int16 partial sums: |pmaddubsw| <= 2 * 24 * 127 = 6096 (E2M1 LUT values <= 24), so 2
  // groups (4 products, <= 24384) are summed before pmaddwd widens them. (MXINT4's values <= 15
  // would allow a whole block, but the longer chains measured slower.)
  constexpr int GSTEP = 2;
  const __m256i ones16 = _mm256_set1_epi16(1);
  const std::size_t nb = a.nb;
  __m256 accf[NT];
  const std::int8_t* q[NT];
  for (int t = 0; t < NT; ++t) {
    accf[t] = _mm256_setzero_ps();
    q[t] = a.qrow(t0 + static_cast<std::size_t>(t));
  }
  for (std::size_t b = 0; b < nb; ++b) {
    const std::size_t c = b * B / 64;                 // chunk
    const int g0 = static_cast<int>(b * B % 64) / 8;  // first dword group of the block in each half
    const __m256i* tc = reinterpret_cast<const __m256i*>(tile.t.data() + c * 16);
    __m256i acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_si256();
    for (int gp = 0; gp < GPB; gp += GSTEP) {
      __m256i p[NT];
      for (int t = 0; t < NT; ++t) p[t] = _mm256_setzero_si256();
      for (int gg = 0; gg < GSTEP; ++gg) {
        const int g = g0 + gp + gg;
        const __m256i wl = _mm256_load_si256(tc + g), wh = _mm256_load_si256(tc + 8 + g);
        for (int t = 0; t < NT; ++t) {
          const std::int8_t* x = q[t] + c * 64 + 4 * g;
          p[t] = _mm256_add_epi16(p[t], _mm256_add_epi16(_mm256_maddubs_epi16(wl, bcast4(x)), _mm256_maddubs_epi16(wh, bcast4(x + 32))));
        }
      }
      for (int t = 0; t < NT; ++t) acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p[t], ones16));
    }
    const __m256 sw = _mm256_loadu_ps(tile.s.data() + b * 8);
    for (int t = 0; t < NT; ++t) {
      const std::size_t ti = (t0 + static_cast<std::size_t>(t)) * nb + b;
      const __m256i dot = _mm256_sub_epi32(acc[t], _mm256_set1_epi32(a.offs[ti]));
      accf[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sw, _mm256_set1_ps(a.d[ti])), accf[t]);
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out[t], accf[t]);
}

// ---- gemm, f32 activations: 4 decoded rows against 2 tokens at a time -----------------------
// panel: 4 rows of kp decoded FP32 weights; x: tokens' FP32 rows (stride kp, zero-padded).
template <int NR, int NT>
MXQ_ALWAYS_INLINE void dot_tile_f32(const float* panel, std::size_t kp, const float* x, std::size_t t0, float* out) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (std::size_t k = 0; k < kp; k += 8) {
    __m256 xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(x + (t0 + static_cast<std::size_t>(t)) * kp + k);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_loadu_ps(panel + static_cast<std::size_t>(r) * kp + k);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) out[t * NR + r] = simd::hsum(acc[r][t]);
}


// Rows per chunk of a batch-1 product, handed out dynamically (parallel_chunks): 64 rows of 4096
// 4-bit codes are ~140 KB, so a 4096-row matrix makes 64 chunks — fine enough to even out a
// thread that shares its core, coarse enough that the hand-out costs nothing.
inline constexpr std::size_t gemv_chunk_rows = 64;

// gemm_into's AVX2 body.
template <class F, class Layout, class T>
void gemm_avx2(const packed_matrix<F, Layout>& w, matrix_view<const T> x, matrix_view<float> y, const gemm_options& opt) {
  alignas(32) float lut[256];
  detail::scale_lut<F>(lut, w.tensor());
  const std::size_t rows = w.rows(), cols = w.cols(), batch = x.rows;
  constexpr std::size_t B = F::block_size;
  const std::size_t kp = ((cols + B - 1) / B * B + 63) / 64 * 64;  // whole blocks, whole 64-code chunks
  const std::size_t nb_row = w.blocks_per_row();
  const std::uint8_t* codes = w.code_bytes().data();
  const std::uint8_t* codes_end = codes + w.code_bytes().size();
  const std::uint8_t* scales = w.scale_data().data();
  if (batch == 0 || rows == 0) return;
  if constexpr (is_w4<F, Layout>) {
    if (uses_int8<F, Layout>(opt)) {
      const detail::q8_rows a = detail::quantize_q8<F, Layout>(x);
      if (batch <= 2) {
        for (std::size_t t = 0; t < batch; ++t) {
          detail::q8_rows one;  // view of token t (the kernel reads row 0)
          one.rows = 1, one.kp = a.kp, one.nb = a.nb;
          one.q.assign(a.q.begin() + static_cast<std::ptrdiff_t>(t * a.kp), a.q.begin() + static_cast<std::ptrdiff_t>((t + 1) * a.kp));
          one.d.assign(a.d.begin() + static_cast<std::ptrdiff_t>(t * a.nb), a.d.begin() + static_cast<std::ptrdiff_t>((t + 1) * a.nb));
          one.d.resize(a.nb + 8);
          one.corr.assign(a.corr.begin() + static_cast<std::ptrdiff_t>(t * a.kp / 8), a.corr.begin() + static_cast<std::ptrdiff_t>((t + 1) * a.kp / 8));
          const detail::q8_rows& use = batch == 1 ? a : one;
          parallel_chunks(rows, opt.threads, gemv_chunk_rows, [&](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r)
              y(t, r) = detail::gemv_row_w4a8<F, Layout>(codes + r * w.row_bytes(), w.row_bytes(), scales + r * nb_row, nb_row, use, lut, w.tensor().scale);
          });
        }
        return;
      }
      const std::size_t tiles = (rows + 7) / 8;
      parallel_ranges(tiles, opt.threads, 1, [&](std::size_t tb, std::size_t te) {
        detail::w4_tile tile;
        alignas(32) float out[4][8];
        for (std::size_t ti = tb; ti < te; ++ti) {
          const std::size_t r0 = ti * 8, nr = std::min<std::size_t>(8, rows - r0);
          detail::repack_tile(w, r0, kp, lut, tile);
          std::size_t t = 0;
          auto emit = [&](std::size_t nt) {
            for (std::size_t i = 0; i < nt; ++i)
              for (std::size_t r = 0; r < nr; ++r) y(t + i, r0 + r) = out[i][r];
          };
          // 3 tokens per pass: 3 x (int16, int32, FP32) accumulators + 2 weight registers fit
          // the 16 ymm registers (4 tokens spill).
          for (; t + 3 <= batch; t += 3) {
            detail::gemm_tile_w4a8<F, 3>(tile, a, t, out);
            emit(3);
          }
          switch (batch - t) {
            case 2: detail::gemm_tile_w4a8<F, 2>(tile, a, t, out), emit(2); break;
            case 1: detail::gemm_tile_w4a8<F, 1>(tile, a, t, out), emit(1); break;
            default: break;
          }
        }
      });
      return;
    }
  }
  // f32 activations: padded FP32 copies of the tokens.
  std::vector<float> xf(batch * kp, 0.0f);
  for (std::size_t t = 0; t < batch; ++t)
    for (std::size_t c = 0; c < cols; ++c) xf[t * kp + c] = to_f32(x(t, c));
  if (batch == 1) {
    if constexpr (is_w4<F, Layout>) {
      using L = detail::w4_lut<typename F::element>;
      std::vector<float> xp(kp);
      for (std::size_t c = 0; c < kp / 64; ++c)
        for (int p = 0; p < 64; ++p) xp[c * 64 + static_cast<std::size_t>(p)] = xf[c * 64 + static_cast<std::size_t>(detail::chunk_code<Layout>(p, static_cast<int>(B)))];
      parallel_chunks(rows, opt.threads, gemv_chunk_rows, [&](std::size_t r0, std::size_t r1) {
        std::vector<float> sc(kp / B, 0.0f);
        for (std::size_t r = r0; r < r1; ++r) {
          for (std::size_t b = 0; b < nb_row; ++b) sc[b] = lut[scales[r * nb_row + b]] * L::factor;
          y(0, r) = detail::gemv_row_w4f32<F, Layout>(codes + r * w.row_bytes(), w.row_bytes(), sc.data(), xp.data(), kp);
        }
      });
    } else {
      parallel_chunks(rows, opt.threads, gemv_chunk_rows, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r)
          y(0, r) = detail::gemv_row_generic<F, Layout>(codes + r * w.row_bytes(), scales + r * nb_row, cols, lut, xf.data(), codes_end);
      });
    }
    return;
  }
  // Batched: decode 4 rows to FP32, then 4 rows x 2 tokens per inner loop.
  parallel_ranges((rows + 3) / 4, opt.threads, 1, [&](std::size_t tb, std::size_t te) {
    std::vector<float> panel(4 * kp, 0.0f);
    float out[8];
    for (std::size_t ti = tb; ti < te; ++ti) {
      const std::size_t r0 = ti * 4, nr = std::min<std::size_t>(4, rows - r0);
      for (std::size_t i = 0; i < nr; ++i)
        detail::decode_row<F, Layout>(codes + (r0 + i) * w.row_bytes(), scales + (r0 + i) * nb_row, cols, lut, codes_end, panel.data() + i * kp);
      for (std::size_t i = nr; i < 4; ++i) std::fill(panel.begin() + static_cast<std::ptrdiff_t>(i * kp), panel.begin() + static_cast<std::ptrdiff_t>((i + 1) * kp), 0.0f);
      std::size_t t = 0;
      for (; t + 2 <= batch; t += 2) {
        detail::dot_tile_f32<4, 2>(panel.data(), kp, xf.data(), t, out);
        for (std::size_t j = 0; j < 2; ++j)
          for (std::size_t r = 0; r < nr; ++r) y(t + j, r0 + r) = out[j * 4 + r];
      }
      if (t < batch) {
        detail::dot_tile_f32<4, 1>(panel.data(), kp, xf.data(), t, out);
        for (std::size_t r = 0; r < nr; ++r) y(t, r0 + r) = out[r];
      }
    }
  });
}

MXQ_AVX2_END
#endif  // MXQ_KERNEL_AVX2

}  // namespace detail

// Y[t, r] = sum_k W[r, k] X[t, k]. Requires has_fast_gemv<F, Layout>; shapes checked by the caller.
template <class F, class Layout, class T>
void gemm_into(const packed_matrix<F, Layout>& w, matrix_view<const T> x, matrix_view<float> y, const gemm_options& opt) {
#if MXQ_KERNEL_AVX2
  if constexpr (has_fast_quant<F, Layout>) {
    if (avx2_enabled()) return detail::gemm_avx2(w, x, y, opt);
  }
#endif
  (void)w, (void)x, (void)y, (void)opt;
  throw error("mxq::kernel::gemm_into: no fast path for this format");
}

}  // namespace mxq::kernel
