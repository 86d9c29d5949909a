// Bit packing of element codes (one byte per code in, packed bytes out, and back).
//
// lsb_first: code i of a row occupies bits [i*B, i*B + B) of a little-endian bit stream.
// split_halves (4-bit, ggml): inside a block of N codes, byte j = code j | code (j + N/2) << 4.
// Blocks of the fast formats always start on a byte boundary (block length * bits % 8 == 0).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../packed.hpp"
#include "simd.hpp"

namespace mxq::kernel::detail {

// 8 codes of K bits (one per byte of x, little-endian) -> K*8 bits in the low bytes.
template <int K>
MXQ_ALWAYS_INLINE std::uint64_t compact8(std::uint64_t x) noexcept {
  static_assert(K == 3 || K == 4 || K == 6);
  constexpr std::uint64_t m1 = 0x00FF00FF00FF00FFull & (0x0101010101010101ull * ((1u << K) - 1u));
  x = (x & m1) | ((x >> (8 - K)) & (m1 << K));
  constexpr std::uint64_t m2 = 0x0000FFFF0000FFFFull & (0x0001000100010001ull * ((1u << (2 * K)) - 1u));
  x = (x & m2) | ((x >> (16 - 2 * K)) & (m2 << (2 * K)));
  constexpr std::uint64_t m4 = (1ull << (4 * K)) - 1u;
  x = (x & m4) | ((x >> (32 - 4 * K)) & (m4 << (4 * K)));
  return x;
}

// Inverse of compact8: K*8 packed bits -> 8 bytes holding one code each.
template <int K>
MXQ_ALWAYS_INLINE std::uint64_t spread8(std::uint64_t x) noexcept {
  static_assert(K == 3 || K == 4 || K == 6);
  constexpr std::uint64_t m4 = (1ull << (4 * K)) - 1u;
  x = (x & m4) | ((x << (32 - 4 * K)) & (m4 << 32));
  constexpr std::uint64_t m2 = 0x0000FFFF0000FFFFull & (0x0001000100010001ull * ((1u << (2 * K)) - 1u));
  x = (x & m2) | ((x << (16 - 2 * K)) & (m2 << 16));
  constexpr std::uint64_t m1 = 0x00FF00FF00FF00FFull & (0x0101010101010101ull * ((1u << K) - 1u));
  x = (x & m1) | ((x << (8 - K)) & (m1 << 8));
  return x;
}

MXQ_ALWAYS_INLINE std::uint64_t load_u64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
MXQ_ALWAYS_INLINE void store_u64(std::uint8_t* p, std::uint64_t v) noexcept { std::memcpy(p, &v, 8); }

// 32 codes <-> 4*K packed bytes (K = 3 or 6) with whole-word loads and stores (no partial-width
// store followed by a wider load: that stalls store forwarding).
template <int K>
MXQ_ALWAYS_INLINE void pack32(const std::uint8_t* codes, std::uint8_t* dst) noexcept {
  const std::uint64_t p0 = compact8<K>(load_u64(codes)), p1 = compact8<K>(load_u64(codes + 8));
  const std::uint64_t p2 = compact8<K>(load_u64(codes + 16)), p3 = compact8<K>(load_u64(codes + 24));
  if constexpr (K == 6) {  // 4 x 48 bits = 3 words
    store_u64(dst, p0 | (p1 << 48));
    store_u64(dst + 8, (p1 >> 16) | (p2 << 32));
    store_u64(dst + 16, (p2 >> 32) | (p3 << 16));
  } else if constexpr (K == 4) {
    store_u64(dst, p0 | (p1 << 32));
    store_u64(dst + 8, p2 | (p3 << 32));
  } else {  // 4 x 24 bits = 12 bytes
    store_u64(dst, p0 | (p1 << 24) | (p2 << 48));
    const std::uint32_t hi = static_cast<std::uint32_t>((p2 >> 16) | (p3 << 8));
    std::memcpy(dst + 8, &hi, 4);
  }
}
template <int K>
MXQ_ALWAYS_INLINE void unpack32(const std::uint8_t* src, std::uint8_t* codes) noexcept {
  constexpr std::uint64_t m = (1ull << (8 * K)) - 1u;
  std::uint64_t g0, g1, g2, g3;
  if constexpr (K == 6) {
    const std::uint64_t w0 = load_u64(src), w1 = load_u64(src + 8), w2 = load_u64(src + 16);
    g0 = w0 & m, g1 = ((w0 >> 48) | (w1 << 16)) & m, g2 = ((w1 >> 32) | (w2 << 32)) & m, g3 = w2 >> 16;
  } else if constexpr (K == 4) {
    const std::uint64_t w0 = load_u64(src), w1 = load_u64(src + 8);
    g0 = w0 & m, g1 = w0 >> 32, g2 = w1 & m, g3 = w1 >> 32;
  } else {
    std::uint32_t hi;
    std::memcpy(&hi, src + 8, 4);
    const std::uint64_t w0 = load_u64(src), w1 = hi;
    g0 = w0 & m, g1 = (w0 >> 24) & m, g2 = ((w0 >> 48) | (w1 << 16)) & m, g3 = (w1 >> 8) & m;
  }
  store_u64(codes, spread8<K>(g0));
  store_u64(codes + 8, spread8<K>(g1));
  store_u64(codes + 16, spread8<K>(g2));
  store_u64(codes + 24, spread8<K>(g3));
}

// Packs n codes (codes[n..round_up(n, 8)) must be readable and zero) into ceil(n*Bits/8) bytes.
template <int Bits, class Layout>
inline void pack_block(const std::uint8_t* codes, std::size_t n, std::size_t block, std::uint8_t* dst) noexcept {
  if constexpr (std::is_same_v<Layout, split_halves_layout>) {
    // Whole blocks only (the layout's own invariant).
    const std::size_t half = block / 2;
#if MXQ_KERNEL_SSE2
    if (half == 16) {
      const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes));
      const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
      return;
    }
#endif
    for (std::size_t j = 0; j < half; ++j)
      dst[j] = static_cast<std::uint8_t>((codes[j] & 0x0F) | (codes[j + half] << 4));
    (void)n;
  } else if constexpr (Bits == 8) {
    std::memcpy(dst, codes, n);
    (void)block;
  } else {
    (void)block;
    const std::size_t nbytes = (n * Bits + 7) / 8;
#if MXQ_KERNEL_SSE2
    if constexpr (Bits == 4) {
      if (n == 32) {
        // byte pairs (lo, hi) -> lo | hi << 4 in each 16-bit lane's low byte, then narrowed
        const __m128i m = _mm_set1_epi16(0x00FF);
        const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes));
        const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16));
        const __m128i w0 = _mm_and_si128(_mm_or_si128(b0, _mm_srli_epi16(b0, 4)), m);
        const __m128i w1 = _mm_and_si128(_mm_or_si128(b1, _mm_srli_epi16(b1, 4)), m);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(w0, w1));
        return;
      }
    }
#endif
    if (n == 32) {
      pack32<Bits>(codes, dst);
      return;
    }
    std::uint8_t tmp[8 * Bits + 8];  // up to 64 codes, + 8: every store is a whole u64
    std::size_t out = 0;
    for (std::size_t i = 0; i < n; i += 8) {
      std::uint64_t v;
      std::memcpy(&v, codes + i, 8);
      const std::uint64_t p = compact8<Bits>(v);
      std::memcpy(tmp + out, &p, 8);
      out += Bits;
    }
    std::memcpy(dst, tmp, nbytes);
  }
}

// Unpacks n codes of a block into bytes; writes round_up(n, 8) bytes (the tail is garbage-free:
// codes past n are zero).
template <int Bits, class Layout>
inline void unpack_block(const std::uint8_t* src, std::size_t n, std::size_t block, std::uint8_t* codes) noexcept {
  if constexpr (std::is_same_v<Layout, split_halves_layout>) {
    const std::size_t half = block / 2;
#if MXQ_KERNEL_SSE2
    if (half == 16) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
      const __m128i m = _mm_set1_epi8(0x0F);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes), _mm_and_si128(b, m));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + 16), _mm_and_si128(_mm_srli_epi16(b, 4), m));
      return;
    }
#endif
    for (std::size_t j = 0; j < half; ++j) {
      codes[j] = static_cast<std::uint8_t>(src[j] & 0x0F);
      codes[j + half] = static_cast<std::uint8_t>(src[j] >> 4);
    }
    (void)n;
  } else if constexpr (Bits == 8) {
    (void)block;
    std::memcpy(codes, src, n);
    for (std::size_t i = n; i % 8 != 0; ++i) codes[i] = 0;
  } else {
    (void)block;
#if MXQ_KERNEL_SSE2
    if constexpr (Bits == 4) {
      if (n == 32) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
        const __m128i m = _mm_set1_epi8(0x0F);
        const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(codes), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + 16), _mm_unpackhi_epi8(lo, hi));
        return;
      }
    }
#endif
    if (n == 32) {
      unpack32<Bits>(src, codes);
      return;
    }
    const std::size_t nbytes = (n * Bits + 7) / 8;
    std::size_t in = 0;
    for (std::size_t i = 0; i < n; i += 8, in += Bits) {
      std::uint64_t v = 0;
      if (in + Bits <= nbytes) std::memcpy(&v, src + in, Bits);
      else std::memcpy(&v, src + in, nbytes - in);
      std::uint64_t c = spread8<Bits>(v);
      if (n - i < 8) c &= (1ull << (8 * (n - i))) - 1u;  // bits past the row's end
      std::memcpy(codes + i, &c, 8);
    }
  }
}

}  // namespace mxq::kernel::detail
