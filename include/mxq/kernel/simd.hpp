// SIMD plumbing shared by the CPU kernels: ISA selection, 16-bit float storage types, loaders.
//
// The x86-64 kernels are AVX2/FMA/F16C intrinsics compiled through `target` attributes
// (MXQ_AVX2_BEGIN / MXQ_AVX2_END around them), so every translation unit holds the same AVX2
// code whatever its -m flags, and the entry points pick it at run time from CPUID (active_isa()).
// One consumer's TUs built with and without -mavx2 therefore agree on every inline function, and a
// binary built for baseline x86-64 runs the AVX2 kernels where the CPU has them and the scalar
// oracle where it does not. MXQ_ISA=generic in the environment forces the scalar path (checks,
// debugging), MXQ_ISA=avx2 keeps a CPU with AVX-512 VNNI on the AVX2 bodies. Kernels with a VNNI
// body (the interleaved GEMV) compile it in a MXQ_VNNI_BEGIN/END region and take it where
// active_isa() is avx512vnni; the results are the same bits (exact integer dots either way).
// The quantize / dequantize / fake_quant kernels also have a 4-lane body written once over an arch
// tag (vec4.hpp, quantize_vec4.hpp): SSE4.2 for x86-64 CPUs without AVX2 (a MXQ_SSE42_BEGIN/END
// region, chosen at run time; MXQ_ISA=sse4_2 caps a bigger CPU there) and NEON on AArch64 (the
// baseline there: no region, no dispatch beyond MXQ_ISA=generic). Other targets (MSVC, 32-bit
// ARM) run the scalar oracle.
// xsimd 8.1 lacks the operations these kernels live on (byte LUT shuffles, maddubs/madd,
// widening, horizontal max), so intrinsics are used directly (docs: cpp-anchors §4.6).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "../config.hpp"
#include "../detail/bits.hpp"
#include "../numeric/half.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
// AVX2 kernels compiled into this TU (selected at run time, see active_isa()).
#define MXQ_KERNEL_AVX2 1
#include <cpuid.h>
#include <immintrin.h>
#if defined(__clang__)
#define MXQ_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define MXQ_AVX2_END _Pragma("clang attribute pop")
// AVX2 plus AVX-512 VNNI on 256-bit registers (vpdpbusd ymm), for the kernels that have a VNNI body.
#define MXQ_VNNI_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni\"))), apply_to = function)")
#define MXQ_VNNI_END _Pragma("clang attribute pop")
#else
#define MXQ_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define MXQ_AVX2_END _Pragma("GCC pop_options")
#define MXQ_VNNI_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni\")")
#define MXQ_VNNI_END _Pragma("GCC pop_options")
#endif
// SSE4.2 (x86-64-v2) for the 4-lane bodies. In a TU built with -mavx the same source compiles to
// VEX encodings (the intrinsics take the TU's flags): same results, and such a TU needs AVX anyway.
#if defined(__clang__)
#define MXQ_SSE42_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"sse4.2\"))), apply_to = function)")
#define MXQ_SSE42_END _Pragma("clang attribute pop")
#else
#define MXQ_SSE42_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"sse4.2\")")
#define MXQ_SSE42_END _Pragma("GCC pop_options")
#endif
#else
#define MXQ_KERNEL_AVX2 0
#define MXQ_SSE42_BEGIN
#define MXQ_SSE42_END
#define MXQ_AVX2_BEGIN
#define MXQ_AVX2_END
#define MXQ_VNNI_BEGIN
#define MXQ_VNNI_END
#endif

// NEON is the AArch64 baseline: its 4-lane bodies need no target region.
#if defined(__aarch64__) && defined(__ARM_NEON) && (defined(__GNUC__) || defined(__clang__))
#define MXQ_KERNEL_NEON 1
#include <arm_neon.h>
#else
#define MXQ_KERNEL_NEON 0
#endif

// SSE2 is part of the x86-64 baseline: the pack/unpack helpers use it without a target region.
#if MXQ_KERNEL_AVX2 && defined(__SSE2__)
#define MXQ_KERNEL_SSE2 1
#else
#define MXQ_KERNEL_SSE2 0
#endif

#if defined(__GNUC__)
#define MXQ_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MXQ_ALWAYS_INLINE inline
#endif

namespace mxq {


namespace kernel {

// True where SIMD kernels are compiled in (x86-64 with GCC or Clang, whatever the -m flags; AArch64);
// whether they run is active_isa()'s answer. avx2_available: the AVX2 bodies (every kernel) are.
inline constexpr bool avx2_available = MXQ_KERNEL_AVX2 != 0;
inline constexpr bool simd_available = MXQ_KERNEL_AVX2 != 0 || MXQ_KERNEL_NEON != 0;

// The kernel family the entry points run. The x86 tiers are ordered: each has the kernels of the one
// below it.
enum class isa {
  generic,     // the scalar oracle
  sse4_2,      // x86-64-v2: the 4-lane quantize / dequantize / fake_quant bodies; products scalar
  avx2,        // AVX2 + FMA + F16C (x86-64-v3): every kernel
  avx512vnni,  // avx2 + AVX-512 F/BW/VL/VNNI: the kernels with a VNNI body use vpdpbusd, the rest AVX2
  neon64,      // AArch64 NEON: the 4-lane quantize / dequantize / fake_quant bodies; products scalar
};

namespace detail {

inline isa detect_isa() {
  const char* env = std::getenv("MXQ_ISA");
  const std::string_view want = env ? env : "";
  // A cap: the best tier at or below it (on AArch64 the x86 names keep NEON).
  if (!want.empty() && want != "generic" && want != "sse4_2" && want != "avx2" && want != "native")
    throw error("MXQ_ISA: unknown value '" + std::string(want) + "' (expected generic, sse4_2, avx2 or native)");
  if (want == "generic") return isa::generic;
#if MXQ_KERNEL_AVX2
  // CPUID: leaf 1 ECX has SSE4.1 (19), SSE4.2 (20), FMA (12), OSXSAVE (27), AVX (28), F16C (29);
  // leaf 7 EBX has AVX2 (5). XCR0 bits 1-2: the OS saves the SSE and AVX registers.
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return isa::generic;
  if (!(c >> 19 & 1) || !(c >> 20 & 1)) return isa::generic;
  if (want == "sse4_2") return isa::sse4_2;
  const bool fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
  if (!(fma && osxsave && avx && f16c)) return isa::sse4_2;
  unsigned xlo = 0, xhi = 0;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  if ((xlo & 6u) != 6u) return isa::sse4_2;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b >> 5 & 1)) return isa::sse4_2;
  // Leaf 7 EBX: AVX512F (16), BW (30), VL (31); ECX: VNNI (11). XCR0 bits 5-7: opmask and ZMM state.
  const bool vnni = (b >> 16 & 1) && (b >> 30 & 1) && (b >> 31 & 1) && (c >> 11 & 1) && (xlo & 0xE0u) == 0xE0u;
  return vnni && want != "avx2" ? isa::avx512vnni : isa::avx2;
#elif MXQ_KERNEL_NEON
  return isa::neon64;
#else
  return isa::generic;
#endif
}

}  // namespace detail

// The ISA the kernels use in this process: the best one compiled in that the CPU (and OS) support,
// unless MXQ_ISA=generic. Decided once; throws mxq::error on a bad MXQ_ISA value.
inline isa active_isa() {
  static const isa chosen = detail::detect_isa();
  return chosen;
}
// Some SIMD body runs (quantize / dequantize / fake_quant have one on every tier but generic).
inline bool simd_enabled() { return active_isa() != isa::generic; }
// The AVX2 bodies run (the products, the interleaved GEMV, the 8-lane quantize kernels).
inline bool avx2_enabled() { return active_isa() == isa::avx2 || active_isa() == isa::avx512vnni; }
inline bool vnni_enabled() { return active_isa() == isa::avx512vnni; }
inline constexpr const char* isa_name(isa i) noexcept {
  constexpr const char* names[] = {"generic", "sse4_2", "avx2", "avx512vnni", "neon64"};
  return names[static_cast<int>(i)];
}

template <class T>
MXQ_ALWAYS_INLINE float to_f32(T v) noexcept {
  if constexpr (std::is_same_v<T, float>) return v;
  else return v.to_float();
}

#if MXQ_KERNEL_AVX2
MXQ_AVX2_BEGIN
namespace simd {

// Eight consecutive values as floats (exact conversion for f16 / bf16).
MXQ_ALWAYS_INLINE __m256 load8(const float* p) noexcept { return _mm256_loadu_ps(p); }
MXQ_ALWAYS_INLINE __m256 load8(const bf16* p) noexcept {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
MXQ_ALWAYS_INLINE __m256 load8(const f16* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
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
MXQ_AVX2_END
#endif

// 2^e as a float for e in [-127, 127] (2^-127 is an FP32 subnormal): the E8M0 scale values.
inline constexpr float pow2f_e8m0(int e) noexcept {
  return e >= -126 ? std::bit_cast<float>(static_cast<std::uint32_t>(e + 127) << 23)
                   : std::bit_cast<float>(std::uint32_t{0x00400000u});
}

}  // namespace kernel
}  // namespace mxq
