// Which formats the SIMD kernels handle, and the constants they need about an element type.
#pragma once
#include <bit>
#include <cstdint>
#include <type_traits>

#include "../format/block.hpp"
#include "../format/element.hpp"
#include "../format/scale.hpp"
#include "../packed.hpp"
#include "../quant/options.hpp"

namespace mxq::kernel {

// Element types whose magnitude ladder the kernels know in closed form. Custom element types
// (element_traits specializations) are not recognised and always take the scalar path.
template <class E>
struct elem_info {
  static constexpr bool ok = false;
};

// Mini-float E<EB>M<MB>: magnitude index i = (exponent field << MB) | mantissa.
template <int EB, int MB, fp_specials S>
struct elem_info<fp_element<EB, MB, S>> {
  using codec = element_codec<fp_element<EB, MB, S>>;
  static constexpr bool ok = MB >= 1;  // ties-to-even on the index needs a mantissa bit
  static constexpr bool is_int = false;
  static constexpr int bits = 1 + EB + MB;
  static constexpr int mbits = MB;
  static constexpr int bias = (1 << (EB - 1)) - 1;
  static constexpr int emin_b = 128 - bias;  // biased FP32 exponent of the smallest normal
  static constexpr int max_idx = codec::magnitude_count - 1;
  static constexpr int emax = codec::emax;
  static constexpr float max_value = codec::max_value;
};

// MXINT-K: magnitudes i * 2^(2-K), a uniform ladder (one "binade" with K-2 fraction bits).
template <int K>
struct elem_info<int_element<K>> {
  using codec = element_codec<int_element<K>>;
  static constexpr bool ok = K >= 3;
  static constexpr bool is_int = true;
  static constexpr int bits = K;
  static constexpr int mbits = K - 2;
  static constexpr int bias = 0;
  static constexpr int emin_b = 127;
  static constexpr int max_idx = codec::magnitude_count - 1;
  static constexpr int emax = 0;
  static constexpr float max_value = codec::max_value;
};

template <class S>
struct is_ue4m3_scale : std::false_type {};
template <bool T>
struct is_ue4m3_scale<ue4m3_scale<T>> : std::true_type {};

// Code widths and layouts the bit packers handle.
template <int Bits, class Layout>
inline constexpr bool packable =
    (std::is_same_v<Layout, lsb_first_layout> && (Bits == 3 || Bits == 4 || Bits == 6 || Bits == 8)) ||
    (std::is_same_v<Layout, split_halves_layout> && Bits == 4);

// E8M0-scaled formats with a known element ladder (mxfp8/6/4, mxint8/6/4/3).
template <class F, class Layout = lsb_first_layout>
inline constexpr bool is_e8m0_fast = [] {
  if constexpr (!format_type<F>) {
    return false;
  } else if constexpr (!std::is_same_v<typename F::scale, e8m0_scale> || !elem_info<typename F::element>::ok) {
    return false;
  } else {
    return F::block_size > 0 && F::block_size % 8 == 0 && F::block_size <= 64 &&
           packable<elem_info<typename F::element>::bits, Layout>;
  }
}();

// NVFP4-style: E2M1 elements with a UE4M3 block scale (optionally times an FP32 tensor scale).
template <class F, class Layout = lsb_first_layout>
inline constexpr bool is_ue4m3_fast = [] {
  if constexpr (!format_type<F>) {
    return false;
  } else {
    return is_ue4m3_scale<typename F::scale>::value && std::is_same_v<typename F::element, e2m1> &&
           F::block_size > 0 && F::block_size % 8 == 0 && F::block_size <= 64 && packable<4, Layout>;
  }
}();

// The quantize / dequantize / fake_quant kernels exist for F in Layout.
template <class F, class Layout = lsb_first_layout>
inline constexpr bool has_fast_quant = is_e8m0_fast<F, Layout> || is_ue4m3_fast<F, Layout>;

// Rounding modes with a bit-exact fast path (stochastic draws one number per element from the
// caller's generator, in order: it stays scalar).
inline bool fast_rounding(rounding r) noexcept {
  return r == rounding::nearest_even || r == rounding::nearest_away || r == rounding::toward_zero;
}

}  // namespace mxq::kernel
