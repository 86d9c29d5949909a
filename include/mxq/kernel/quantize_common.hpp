// Scalar pieces shared by the quantize kernels of every arch (quantize.hpp's AVX2 bodies and
// quantize_vec4.hpp's 4-lane bodies): row iteration, rounding-mode dispatch, the UE4M3 threshold
// tables and the E8M0 / E4M3 scale codes. Included by quantize.hpp.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "../format/block.hpp"
#include "../matrix_view.hpp"
#include "../quant/element_quant.hpp"
#include "../quant/options.hpp"
#include "simd.hpp"
#include "thread.hpp"
#include "traits.hpp"

namespace mxq::kernel::detail {

// Per-scale-code tables of a UE4M3-scaled E2M1 format for one tensor scale and rounding mode.
struct ue4m3_tables {
  alignas(32) float thr[128][8];  // index = #{k : |x| >= thr[k]}; thr[7] = +inf
  alignas(32) float val[128][8];  // (float)(magnitude_i * scale); val[0] = +0
  bool valid[128];                // scale finite (code 0x7F is NaN)
};

// Least float >= t, and least float > t (t is any double; results may be +inf).
inline float float_ceil(double t) noexcept {
  float f = static_cast<float>(t);
  if (static_cast<double>(f) < t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}
inline float float_above(double t) noexcept {
  float f = float_ceil(t);
  if (static_cast<double>(f) == t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

template <class Scale>
void build_ue4m3_tables(ue4m3_tables& tb, const tensor_params& t, rounding mode) {
  using C = element_codec<e2m1>;
  static_assert(C::magnitude_count == 8);
  constexpr float inf = std::numeric_limits<float>::infinity();
  for (std::uint32_t code = 0; code < 128; ++code) {
    const double s = Scale::decode(code, t);
    tb.valid[code] = s == s;
    tb.thr[code][7] = inf;
    tb.val[code][0] = 0.0f;
    for (int i = 1; i < 8; ++i) tb.val[code][i] = static_cast<float>(static_cast<double>(C::magnitudes[i]) * s);
    for (int k = 0; k < 7; ++k) {
      if (!(s > 0.0)) {
        tb.thr[code][k] = inf;  // encode_element: scale <= 0 -> magnitude 0
        continue;
      }
      if (mode == rounding::toward_zero) {
        tb.thr[code][k] = float_ceil(static_cast<double>(C::magnitudes[k + 1]) * s);
      } else {
        const double m = C::midpoints[k] * s;  // the oracle's comparison value
        const bool tie_up = mode == rounding::nearest_away || (k % 2 == 1);
        tb.thr[code][k] = tie_up ? float_ceil(m) : float_above(m);
      }
    }
  }
}

// Calls fn(const T* row, r) for every row, rows split over `threads` (each row's work is
// independent, so the output does not depend on the split); strided rows are gathered into a
// per-range buffer. Ranges hold at least ~16K elements so small matrices stay on one thread.
template <class T, class Fn>
void for_each_row(matrix_view<const T> x, int threads, Fn&& fn) {
  const std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 14) / std::max<std::size_t>(x.cols, 1));
  parallel_ranges(x.rows, threads, grain, [&](std::size_t r0, std::size_t r1) {
    std::vector<T> buf(x.row_contiguous() ? 0 : x.cols);
    for (std::size_t r = r0; r < r1; ++r) {
      if (x.row_contiguous()) {
        fn(static_cast<const T*>(x.row(r)), r);
      } else {
        for (std::size_t c = 0; c < x.cols; ++c) buf[c] = x(r, c);
        fn(static_cast<const T*>(buf.data()), r);
      }
    }
  });
}

template <class Fn>
decltype(auto) with_rounding(rounding r, Fn&& fn) {
  switch (r) {
    case rounding::nearest_away: return fn(std::integral_constant<rounding, rounding::nearest_away>{});
    case rounding::toward_zero: return fn(std::integral_constant<rounding, rounding::toward_zero>{});
    default: return fn(std::integral_constant<rounding, rounding::nearest_even>{});
  }
}
enum class block_out { codes, values };

// Scale code of an E8M0 block; -1 = let the scalar rule decide.
template <class F>
MXQ_ALWAYS_INLINE int e8m0_scale_code(int amax_bits, scale_rule rule) noexcept {
  using I = elem_info<typename F::element>;
  if (amax_bits >= 0x7F800000) return 0xFF;
  const int eb = amax_bits >> 23;
  if (rule == scale_rule::floor) return std::max(eb - I::emax, 0);
  if (rule == scale_rule::ceil) {
    if (eb == 0 && amax_bits != 0) return -1;  // FP32-subnormal amax: scalar
    constexpr int thr = static_cast<int>(std::bit_cast<std::uint32_t>(I::max_value / static_cast<float>(1 << I::emax)) & 0x7FFFFFu);
    return std::clamp(eb - I::emax + ((amax_bits & 0x7FFFFF) > thr ? 1 : 0), 0, 254);
  }
  return -1;
}


// Exact round_magnitude<e4m3>(s, 1, nearest_even) for a float s >= 0 (the NVFP4 scale code), for
// every arch: v is exact (power-of-two factor) and below 2^4, and nearbyint rounds to even in
// the default rounding mode, as the oracle's ladder does.
inline int e4m3_rne_index(float s) noexcept {
  if (!(s < 432.0f)) return 126;  // at or above the last midpoint (432 ties to 448, even index)
  const int eq = std::max(static_cast<int>(std::bit_cast<std::uint32_t>(s) >> 23), 121);
  const float v = s * std::bit_cast<float>(static_cast<std::uint32_t>(254 + 3 - eq) << 23);
  return std::min(((eq - 121) << 3) + static_cast<int>(std::nearbyint(v)), 126);
}

}  // namespace mxq::kernel::detail
