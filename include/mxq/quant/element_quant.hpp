// Quantizing one element given its block's parameters (scale, zero point, NaN flag).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "../format/element.hpp"
#include "options.hpp"
#include "round.hpp"

namespace mxq {

// What a block's scale decides for its elements. `scale` is the effective multiplier
// (value = element * scale, affine: (q - zero) * scale), kept in double where it is exact.
struct block_params {
  double scale = 0.0;
  std::uint32_t scale_code = 0;  // the stored scale bits (E8M0 byte, UE4M3 byte, float bits)
  int zero = 0;                  // zero point of affine grids
  bool nan = false;              // the block held NaN or Inf: it decodes to NaN
};

// Per-tensor parameters (NVFP4's FP32 second-level scale); 1 for formats without one.
struct tensor_params {
  float scale = 1.0f;
};

template <class E>
std::uint8_t encode_element(float x, const block_params& p, const quant_options& opt) {
  using C = element_codec<E>;
  if (p.nan) return C::nan_code;
  if constexpr (C::is_affine) {
    if (!(p.scale > 0.0)) return static_cast<std::uint8_t>(std::clamp(p.zero, 0, C::magnitude_count - 1));
    const double q = detail::round_integer(static_cast<double>(x) / p.scale, opt.rounding, opt) + p.zero;
    return static_cast<std::uint8_t>(std::clamp(q, 0.0, static_cast<double>(C::magnitude_count - 1)));
  } else {
    const bool neg = x < 0.0f;  // -0.0 encodes as +0 (the reference: sign(x) * q); negative underflow keeps -0
    if (!(p.scale > 0.0) || x == 0.0f) return C::encode_code(neg, 0);
    const int mag = detail::round_magnitude<E>(std::fabs(static_cast<double>(x)), p.scale, opt.rounding, opt);
    return C::encode_code(neg, mag);
  }
}

template <class E>
float decode_element(std::uint8_t code, const block_params& p) {
  using C = element_codec<E>;
  if (p.nan) return std::numeric_limits<float>::quiet_NaN();
  const double v = static_cast<double>(C::values[code & C::code_mask]);
  if constexpr (C::is_affine) return static_cast<float>((v - p.zero) * p.scale);
  else return v == 0.0 ? static_cast<float>(v) : static_cast<float>(v * p.scale);
}

namespace detail {

// Weighted error sum w |x - Q(x)|^opt.mse_norm of a block under candidate parameters (scale
// searches; the squared error at the default norm 2).
template <class E>
double block_sq_error(std::span<const float> x, std::span<const float> w, const block_params& p,
                      const quant_options& opt) {
  quant_options o = opt;
  if (o.rounding == rounding::stochastic) o.rounding = rounding::nearest_even;  // deterministic search
  const bool squared = opt.mse_norm == 2.0;
  double err = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(decode_element<E>(encode_element<E>(x[i], p, o), p)) - x[i];
    err += (w.empty() ? 1.0 : static_cast<double>(w[i])) * (squared ? d * d : std::pow(std::fabs(d), opt.mse_norm));
  }
  return err;
}

// FP-Quant's shrink grid (quant_options::mse_grid = n > 0): p = 1 - i/n for i < 0.8 n.
inline int shrink_count(int n) noexcept { return (4 * n) / 5; }
inline float shrink_factor(int i, int n) noexcept { return 1.0f - static_cast<float>(i) / static_cast<float>(n); }

// max |x| over a block; returns NaN/Inf if the block holds any.
inline float block_amax(std::span<const float> x) noexcept {
  float amax = 0.0f;
  for (float v : x) {
    const float a = std::fabs(v);
    if (!(a <= amax)) amax = a;  // NaN wins (a NaN compare is false)
    if (std::isnan(a)) return a;
  }
  return amax;
}

}  // namespace detail
}  // namespace mxq
