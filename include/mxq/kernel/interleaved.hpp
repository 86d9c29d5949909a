// Kernels of the 8-row interleaved layout (mxq/interleaved.hpp): the repack from a packed matrix,
// the scalar oracle of the product and its AVX2 body, which agree bit for bit.
//
// Layout, per group of 8 rows and weight block b (chunk c = b*B/64 of 64 activation positions,
// first dword group g0 = (b*B % 64)/8 of the block in each half of the chunk): B/8 vectors of 32
// bytes; byte 4r + j of vector i holds row r's code at chunk position 4(g0+i) + j in its low
// nibble and at position 32 + 4(g0+i) + j in its high nibble (chunk positions as the int8
// activations are stored, q8_rows). One 32-byte load thus feeds 8 rows x 8 codes: pshufb turns
// each nibble half into [row0 4 codes | ... | row7 4 codes] of LUT bytes, which pmaddubsw meets
// with 4 activation bytes broadcast to every row. The 8 rows' scale bytes of block b follow in a
// separate stream (8 bytes per group and block). The arithmetic is the packed gemm's 8-row tile
// (gemv.hpp, gemm_tile_w4a8): exact int32 block dots, then one FP32 FMA per block and row.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../packed.hpp"
#include "gemv.hpp"

// Fully unrolled small loops: GCC keeps per-token accumulator arrays in memory otherwise.
#if defined(__clang__)
#define MXQ_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define MXQ_UNROLL _Pragma("GCC unroll 8")
#else
#define MXQ_UNROLL
#endif

namespace mxq::kernel::detail {

inline constexpr std::size_t x8_rows = 8;

// Bytes of one group's block (B/8 vectors of 32 bytes).
template <class F>
inline constexpr std::size_t x8_block_bytes = static_cast<std::size_t>(F::block_size) * 4;

// Scale byte that decodes to a finite value, for blocks past a row's end (their activations are
// zero, so any finite scale multiplies an exact zero dot).
template <class F>
inline constexpr std::uint8_t x8_pad_scale = std::is_same_v<typename F::scale, e8m0_scale> ? 127 : 0x38;

// Writes the interleaved codes ([groups][nb][x8_block_bytes]) and scales ([groups][nb][8]) of w,
// nb = kp / B blocks per row (kp: cols rounded up to whole blocks and 64-code chunks). Rows past
// the matrix's end get code 0 (u = off everywhere: their dots are exactly 0) and the pad scale.
template <class F, class Layout>
void interleave_rows(const packed_matrix<F, Layout>& w, std::size_t kp, std::uint8_t* codes, std::uint8_t* scales) {
  constexpr std::size_t B = F::block_size, GPB = B / 8, BB = x8_block_bytes<F>;
  const std::size_t rows = w.rows(), cols = w.cols(), nb = kp / B, nb_row = w.blocks_per_row();
  const std::size_t groups = (rows + x8_rows - 1) / x8_rows;
  int pos[64];
  for (int p = 0; p < 64; ++p) pos[p] = chunk_code<Layout>(p, static_cast<int>(B));
  for (std::size_t g = 0; g < groups; ++g) {
    for (std::size_t b = 0; b < nb; ++b) {
      std::uint8_t* out = codes + (g * nb + b) * BB;
      std::uint8_t* sc = scales + (g * nb + b) * x8_rows;
      const std::size_t c = b * B / 64, g0 = b * B % 64 / 8;
      for (std::size_t r = 0; r < x8_rows; ++r) {
        const std::size_t row = g * x8_rows + r;
        const bool real = row < rows;
        sc[r] = real && b < nb_row ? static_cast<std::uint8_t>(w.scale(row, b)) : x8_pad_scale<F>;
        auto code = [&](int p) -> std::uint8_t {
          const std::size_t col = c * 64 + static_cast<std::size_t>(pos[p]);
          return real && col < cols ? w.code(row, col) : 0;
        };
        for (std::size_t i = 0; i < GPB; ++i)
          for (int j = 0; j < 4; ++j) {
            const int p = static_cast<int>(4 * (g0 + i)) + j;
            out[32 * i + 4 * r + static_cast<std::size_t>(j)] = static_cast<std::uint8_t>((code(p) & 0x0F) | (code(32 + p) & 0x0F) << 4);
          }
      }
    }
  }
}

// Scalar oracle: out[r] = row r of one group times token t of a (q8_rows), r < 8.
template <class F>
void x8_group_scalar(const std::uint8_t* codes, const std::uint8_t* scales, std::size_t nb, const q8_rows& a,
                     std::size_t t, const float* lut, float* out) {
  using L = w4_lut<typename F::element>;
  constexpr std::size_t B = F::block_size, GPB = B / 8, BB = x8_block_bytes<F>;
  const std::int8_t* q = a.qrow(t);
  float acc[x8_rows] = {};
  for (std::size_t b = 0; b < nb; ++b) {
    const std::uint8_t* cb = codes + b * BB;
    const std::size_t c = b * B / 64, g0 = b * B % 64 / 8;
    const float d = a.d[t * a.nb + b];
    for (std::size_t r = 0; r < x8_rows; ++r) {
      std::int32_t dot = 0;
      for (std::size_t i = 0; i < GPB; ++i)
        for (std::size_t j = 0; j < 4; ++j) {
          const std::uint8_t v = cb[32 * i + 4 * r + j];
          const std::size_t p = c * 64 + 4 * (g0 + i) + j;
          dot += static_cast<std::int32_t>(L::u[v & 0x0F]) * q[p] + static_cast<std::int32_t>(L::u[v >> 4]) * q[p + 32];
        }
      dot -= a.offs[t * a.nb + b];
      const float s = lut[scales[b * x8_rows + r]] * d;
      acc[r] = std::fma(static_cast<float>(dot), s, acc[r]);
    }
  }
  std::copy(acc, acc + x8_rows, out);
}

#if MXQ_KERNEL_AVX2
MXQ_AVX2_BEGIN

// out[k][r] = row r of one group times token t0 + k, k < NT (NT <= 3: 3 x (int16, int32, FP32)
// accumulators + the 4 decoded weight registers fit the 16 ymm registers).
template <class F, int NT>
void x8_group_avx2(const std::uint8_t* codes, const std::uint8_t* scales, std::size_t nb, const q8_rows& a,
                   std::size_t t0, const float* lut, float ts, float (*out)[x8_rows]) {
  using L = w4_lut<typename F::element>;
  constexpr std::size_t B = F::block_size, GPB = B / 8, BB = x8_block_bytes<F>;
  const __m256i ulut = load_lut16(L::u.data());
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
  __m256 accf[NT];
  const std::int8_t* q[NT];
  MXQ_UNROLL
  for (int k = 0; k < NT; ++k) {
    accf[k] = _mm256_setzero_ps();
    q[k] = a.qrow(t0 + static_cast<std::size_t>(k));
  }
  for (std::size_t b = 0; b < nb; ++b) {
    const std::uint8_t* cb = codes + b * BB;
    _mm_prefetch(reinterpret_cast<const char*>(cb + 8 * BB), _MM_HINT_T0);
    const std::size_t c = b * B / 64, g0 = b * B % 64 / 8;
    __m256i acc[NT];
    MXQ_UNROLL
    for (int k = 0; k < NT; ++k) acc[k] = _mm256_setzero_si256();
    // Two vectors (4 pmaddubsw, |sum| <= 4 * 6096) per int16 partial before pmaddwd widens it.
    MXQ_UNROLL
    for (std::size_t i = 0; i < GPB; i += 2) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cb + 32 * i));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cb + 32 * i + 32));
      const __m256i l0 = _mm256_shuffle_epi8(ulut, _mm256_and_si256(v0, m4));
      const __m256i h0 = _mm256_shuffle_epi8(ulut, _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4));
      const __m256i l1 = _mm256_shuffle_epi8(ulut, _mm256_and_si256(v1, m4));
      const __m256i h1 = _mm256_shuffle_epi8(ulut, _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4));
      MXQ_UNROLL
      for (int k = 0; k < NT; ++k) {
        const std::int8_t* x = q[k] + c * 64 + 4 * (g0 + i);
        const __m256i p = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(l0, bcast4(x)), _mm256_maddubs_epi16(h0, bcast4(x + 32))),
                                           _mm256_add_epi16(_mm256_maddubs_epi16(l1, bcast4(x + 4)), _mm256_maddubs_epi16(h1, bcast4(x + 36))));
        acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(p, ones16));
      }
    }
    const __m256 sw = scales8<F>(scales + b * x8_rows, lut, ts);
    MXQ_UNROLL
    for (int k = 0; k < NT; ++k) {
      const std::size_t ti = (t0 + static_cast<std::size_t>(k)) * a.nb + b;
      const __m256i dot = _mm256_sub_epi32(acc[k], _mm256_set1_epi32(a.offs[ti]));
      accf[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sw, _mm256_set1_ps(a.d[ti])), accf[k]);
    }
  }
  MXQ_UNROLL
  for (int k = 0; k < NT; ++k) _mm256_storeu_ps(out[k], accf[k]);
}

MXQ_AVX2_END

MXQ_VNNI_BEGIN

// x8_group_avx2 with vpdpbusd (u8 x s8, 4 products per lane into int32, no saturation) in place of
// pmaddubsw + paddw + pmaddwd + paddd: the same exact integer block dots, so the same FP32 result.
template <class F, int NT>
void x8_group_vnni(const std::uint8_t* codes, const std::uint8_t* scales, std::size_t nb, const q8_rows& a,
                   std::size_t t0, const float* lut, float ts, float (*out)[x8_rows]) {
  using L = w4_lut<typename F::element>;
  constexpr std::size_t B = F::block_size, GPB = B / 8, BB = x8_block_bytes<F>;
  const __m256i ulut = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(L::u.data())));
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 accf[NT];
  const std::int8_t* q[NT];
  MXQ_UNROLL
  for (int k = 0; k < NT; ++k) {
    accf[k] = _mm256_setzero_ps();
    q[k] = a.qrow(t0 + static_cast<std::size_t>(k));
  }
  for (std::size_t b = 0; b < nb; ++b) {
    const std::uint8_t* cb = codes + b * BB;
    _mm_prefetch(reinterpret_cast<const char*>(cb + 8 * BB), _MM_HINT_T0);
    const std::size_t c = b * B / 64, g0 = b * B % 64 / 8;
    __m256i acc[NT];
    MXQ_UNROLL
    for (int k = 0; k < NT; ++k) acc[k] = _mm256_setzero_si256();
    MXQ_UNROLL
    for (std::size_t i = 0; i < GPB; ++i) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cb + 32 * i));
      const __m256i l = _mm256_shuffle_epi8(ulut, _mm256_and_si256(v, m4));
      const __m256i h = _mm256_shuffle_epi8(ulut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
      MXQ_UNROLL
      for (int k = 0; k < NT; ++k) {
        const std::int8_t* x = q[k] + c * 64 + 4 * (g0 + i);
        acc[k] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc[k], l, bcast4(x)), h, bcast4(x + 32));
      }
    }
    const __m256 sw = scales8<F>(scales + b * x8_rows, lut, ts);
    MXQ_UNROLL
    for (int k = 0; k < NT; ++k) {
      const std::size_t ti = (t0 + static_cast<std::size_t>(k)) * a.nb + b;
      const __m256i dot = _mm256_sub_epi32(acc[k], _mm256_set1_epi32(a.offs[ti]));
      accf[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sw, _mm256_set1_ps(a.d[ti])), accf[k]);
    }
  }
  MXQ_UNROLL
  for (int k = 0; k < NT; ++k) _mm256_storeu_ps(out[k], accf[k]);
}

MXQ_VNNI_END
#endif  // MXQ_KERNEL_AVX2

}  // namespace mxq::kernel::detail
