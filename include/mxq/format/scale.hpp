// Scale encodings of block formats and the rules that choose a block's scale.
//
// A scale type S provides:
//   storage                      - type of one stored scale (uint8_t, float, uint16_t)
//   has_tensor_scale, has_zero_point
//   decode(code, tensor_params)  - effective multiplier of a stored scale (NaN for NaN codes)
//   choose<E>(block, weights, options, tensor_params) -> block_params
// New scale encodings plug in by providing the same members.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "../detail/bits.hpp"
#include "../quant/element_quant.hpp"
#include "element.hpp"

namespace mxq {

namespace detail {
// Keep the candidate with the least weighted error; earlier candidates win ties, so the
// default rule's choice is kept unless a search strictly improves on it.
template <class E, class Candidates>
block_params pick_least_error(std::span<const float> x, std::span<const float> w, const quant_options& opt,
                              const Candidates& candidates) {
  block_params best{};
  double best_err = std::numeric_limits<double>::infinity();
  for (const block_params& p : candidates) {
    const double e = block_sq_error<E>(x, w, p, opt);
    if (e < best_err) best_err = e, best = p;
  }
  return best;
}
// FP-Quant's grid (quant_options::mse_grid > 0): the candidate `make(p)` of each shrink factor p,
// consecutive repeats (the same stored scale and zero) tried once; the first least error wins.
template <class E, class Make>
block_params pick_least_error_grid(std::span<const float> x, std::span<const float> w, const quant_options& opt,
                                   Make&& make) {
  block_params best{};
  double best_err = std::numeric_limits<double>::infinity();
  bool have = false;
  std::uint32_t last_code = 0;
  int last_zero = 0;
  for (int i = 0; i < shrink_count(opt.mse_grid); ++i) {
    const block_params p = make(shrink_factor(i, opt.mse_grid));
    if (have && p.scale_code == last_code && p.zero == last_zero) continue;
    have = true, last_code = p.scale_code, last_zero = p.zero;
    const double e = block_sq_error<E>(x, w, p, opt);
    if (e < best_err) best_err = e, best = p;
  }
  return have ? best : make(1.0f);
}
inline block_params nan_block(std::uint32_t code) { return {std::numeric_limits<double>::quiet_NaN(), code, 0, true}; }
}  // namespace detail

// OCP E8M0: a power of two 2^(b-127), b = 0..254; 0xFF is NaN.
struct e8m0_scale {
  using storage = std::uint8_t;
  static constexpr std::string_view name = "E8M0";
  static constexpr int storage_bits = 8;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool has_zero_point = false;
  static constexpr std::uint8_t nan_code = 0xFF;

  static double decode(std::uint32_t code, const tensor_params& = {}) noexcept {
    return code == nan_code ? std::numeric_limits<double>::quiet_NaN() : detail::exp2i(static_cast<int>(code) - 127);
  }
  static block_params from_exponent(int e) noexcept {
    e = std::clamp(e, -127, 127);
    return {detail::exp2i(e), static_cast<std::uint32_t>(e + 127), 0, false};
  }

  template <class E>
  static block_params choose(std::span<const float> x, std::span<const float> w, const quant_options& opt,
                             const tensor_params& = {}) {
    using C = element_codec<E>;
    const float amax = detail::block_amax(x);
    if (!std::isfinite(amax)) return detail::nan_block(nan_code);
    if (amax == 0.0f) return from_exponent(-127);
    const int e_floor = detail::floor_log2(amax) - C::emax;  // exact: exponent bits, never a float log2
    switch (opt.scale_rule) {
      case scale_rule::floor: return from_exponent(e_floor);
      case scale_rule::ceil:
        // max_value * 2^e_floor >= 2^(emax + e_floor) > amax / 2, so one step up never clips
        return from_exponent(static_cast<double>(amax) > C::max_value * detail::exp2i(e_floor) ? e_floor + 1 : e_floor);
      case scale_rule::mse: {
        if (opt.mse_grid > 0)  // p * amax is finite and > 0: its exponent bits are exact
          return detail::pick_least_error_grid<E>(
              x, w, opt, [&](float p) { return from_exponent(detail::floor_log2(p * amax) - C::emax); });
        const block_params c[] = {from_exponent(e_floor), from_exponent(e_floor + 1), from_exponent(e_floor - 1),
                                  from_exponent(e_floor - 2)};
        return detail::pick_least_error<E>(x, w, opt, c);
      }
      case scale_rule::four_over_six: break;  // not for E8M0: the entry points refuse it (scale_supports)
    }
    return from_exponent(e_floor);
  }
};

// NVFP4's block scale: an unsigned E4M3 value (RNE, saturating at 448), times an optional
// FP32 per-tensor scale = amax(tensor) / (max element * 448).
template <bool TensorScale = true>
struct ue4m3_scale {
  using storage = std::uint8_t;
  using code_element = e4m3;
  static constexpr std::string_view name = TensorScale ? "UE4M3+FP32" : "UE4M3";
  static constexpr int storage_bits = 8;
  static constexpr bool has_tensor_scale = TensorScale;
  static constexpr bool has_zero_point = false;
  static constexpr std::uint8_t nan_code = 0x7F;
  static constexpr std::uint8_t max_code = 0x7E;  // 448

  static double decode(std::uint32_t code, const tensor_params& t = {}) noexcept {
    if (code == nan_code) return std::numeric_limits<double>::quiet_NaN();
    const double s = element_codec<e4m3>::values[code & 0x7F];
    return TensorScale ? s * static_cast<double>(t.scale) : s;  // exact: 4 x 24 significant bits
  }
  static block_params from_code(std::uint32_t code, const tensor_params& t) noexcept {
    return {decode(code, t), code, 0, false};
  }

  static constexpr bool supports_four_over_six = true;

  // FP32 tensor scale for a whole matrix (finite values only; all-zero gives 1, never 0/0):
  // amax / (max element * 448), or the next float up whose fp32 reciprocal inverts back to it
  // (most are already): compressed-tensors stores this scale as its divisor 1/s and vLLM inverts
  // that on load, so the engine runs with exactly s. Never smaller: amax / (6 s) stays <= 448.
  // Under scale_rule::four_over_six the divisor is max element * 256 (the 4/6 paper's): a block
  // scale of amax / (4 s) is then at most 384.
  template <class E>
  static tensor_params tensor_scale(float amax_finite, scale_rule rule = scale_rule::floor) noexcept {
    if constexpr (!TensorScale) return {};
    const float top = rule == scale_rule::four_over_six ? 256.0f : 448.0f;
    float s = amax_finite / (element_codec<E>::max_value * top);
    if (!(std::isfinite(s) && s > 0.0f)) return {1.0f};
    for (int k = 0; k < 64 && 1.0f / (1.0f / s) != s; ++k) s = std::nextafter(s, std::numeric_limits<float>::infinity());
    return {s};
  }

  template <class E>
  static block_params choose(std::span<const float> x, std::span<const float> w, const quant_options& opt,
                             const tensor_params& t = {}) {
    using C = element_codec<E>;
    const float amax = detail::block_amax(x);
    if (!std::isfinite(amax)) return detail::nan_block(nan_code);
    if (amax == 0.0f) return from_code(0, t);  // all-zero block: zeros, never NaN
    const float ts = TensorScale ? t.scale : 1.0f;
    // ModelOpt's recipe in FP32: amax / (6 * tensor_scale), then RNE into E4M3.
    const float s = amax / (C::max_value * ts);
    quant_options rne;
    int code = detail::round_magnitude<e4m3>(static_cast<double>(s), 1.0, rounding::nearest_even, rne);
    if (code == 0) code = 1;  // a non-zero block never collapses to a zero scale
    switch (opt.scale_rule) {
      case scale_rule::floor: return from_code(static_cast<std::uint32_t>(code), t);
      case scale_rule::ceil: {
        int c = code;
        while (c > 1 && decode(static_cast<std::uint32_t>(c - 1), t) * C::max_value >= amax) --c;
        while (c < max_code && decode(static_cast<std::uint32_t>(c), t) * C::max_value < amax) ++c;
        return from_code(static_cast<std::uint32_t>(c), t);
      }
      case scale_rule::mse: {
        if (opt.mse_grid > 0)
          return detail::pick_least_error_grid<E>(x, w, opt, [&](float p) {
            int c = detail::round_magnitude<e4m3>(static_cast<double>(p * s), 1.0, rounding::nearest_even, rne);
            return from_code(static_cast<std::uint32_t>(std::clamp(c, 1, int{max_code})), t);
          });
        block_params c[7];
        int n = 0;
        for (int d : {0, 1, -1, 2, -2, 3, -3})
          if (code + d >= 1 && code + d <= max_code) c[n++] = from_code(static_cast<std::uint32_t>(code + d), t);
        return detail::pick_least_error<E>(x, w, opt, std::span<const block_params>(c, static_cast<std::size_t>(n)));
      }
      case scale_rule::four_over_six: {
        // The block max on the largest magnitude (the rule above) or on the next one down (4 of
        // E2M1's 6): the lower error wins, the first on ties.
        constexpr float next_down = C::magnitudes[C::magnitudes.size() - 2];
        int c4 = detail::round_magnitude<e4m3>(static_cast<double>(amax / (next_down * ts)), 1.0, rounding::nearest_even, rne);
        c4 = std::clamp(c4, 1, int{max_code});
        const block_params c[] = {from_code(static_cast<std::uint32_t>(code), t), from_code(static_cast<std::uint32_t>(c4), t)};
        return detail::pick_least_error<E>(x, w, opt, c);
      }
    }
    return from_code(static_cast<std::uint32_t>(code), t);
  }
};

// How a float-scaled integer grid places zero.
enum class zero_point {
  none,       // sign-magnitude / two's-complement element: scale = amax / max element
  minmax,     // GPTQ asymmetric: xmin = min(x, 0), xmax = max(x, 0), scale = (xmax - xmin) / maxq
  symmetric,  // GPTQ symmetric: xmax = max(|xmin|, xmax), xmin = -xmax, zero = (maxq + 1) / 2
};

// Scale stored as an IEEE float type: float (FP32), f16_storage or bf16_storage.
struct f16_storage {
  static constexpr std::string_view name = "FP16";
  static float round(float v) noexcept { return detail::half_bits_to_float(detail::float_to_half_bits(v)); }
  static std::uint16_t encode(float v) noexcept { return detail::float_to_half_bits(v); }
  static float decode(std::uint16_t b) noexcept { return detail::half_bits_to_float(b); }
  using bits_type = std::uint16_t;
};
struct bf16_storage {
  static constexpr std::string_view name = "BF16";
  static float round(float v) noexcept { return detail::bf16_bits_to_float(detail::float_to_bf16_bits(v)); }
  static std::uint16_t encode(float v) noexcept { return detail::float_to_bf16_bits(v); }
  static float decode(std::uint16_t b) noexcept { return detail::bf16_bits_to_float(b); }
  using bits_type = std::uint16_t;
};
struct f32_storage {
  static constexpr std::string_view name = "FP32";
  static float round(float v) noexcept { return v; }
  static std::uint32_t encode(float v) noexcept { return std::bit_cast<std::uint32_t>(v); }
  static float decode(std::uint32_t b) noexcept { return std::bit_cast<float>(b); }
  using bits_type = std::uint32_t;
};

template <class Storage = f32_storage, zero_point Zero = zero_point::none>
struct float_scale {
  using storage = typename Storage::bits_type;
  static constexpr std::string_view name = Storage::name;
  static constexpr int storage_bits = static_cast<int>(sizeof(storage) * 8);
  static constexpr bool has_tensor_scale = false;
  static constexpr bool has_zero_point = Zero != zero_point::none;
  static constexpr zero_point zero_mode = Zero;

  static double decode(std::uint32_t code, const tensor_params& = {}) noexcept {
    return Storage::decode(static_cast<storage>(code));
  }

  template <class E>
  static block_params choose(std::span<const float> x, std::span<const float> w, const quant_options& opt,
                             const tensor_params& = {}) {
    using C = element_codec<E>;
    static_assert(C::is_affine == (Zero != zero_point::none),
                  "zero-point scales need an affine (uint) element, plain float scales a signed one");
    for (float v : x)
      if (!std::isfinite(v)) return detail::nan_block(Storage::encode(std::numeric_limits<float>::quiet_NaN()));
    float xmin = 0.0f, xmax = 0.0f;
    for (float v : x) xmin = std::min(xmin, v), xmax = std::max(xmax, v);
    auto make = [&](float lo, float hi) -> block_params {
      if constexpr (Zero == zero_point::none) {
        const float s = Storage::round(std::max(-lo, hi) / C::max_value);
        return {static_cast<double>(s), Storage::encode(s), 0, false};
      } else {
        constexpr float maxq = static_cast<float>(C::magnitude_count - 1);
        if constexpr (Zero == zero_point::symmetric) {
          hi = std::max(-lo, hi);
          if (lo < 0.0f) lo = -hi;
        }
        if (lo == 0.0f && hi == 0.0f) lo = -1.0f, hi = 1.0f;  // GPTQ's guard for all-zero rows
        const float s = Storage::round((hi - lo) / maxq);
        const int zero = Zero == zero_point::symmetric ? static_cast<int>((maxq + 1.0f) / 2.0f)
                                                       : static_cast<int>(std::nearbyint(-lo / s));
        return {static_cast<double>(s), Storage::encode(s), zero, false};
      }
    };
    if (opt.scale_rule != scale_rule::mse) return make(xmin, xmax);  // min-max never clips: ceil == floor
                                                                     // (4/6: refused at the entry points)
    if (opt.mse_grid > 0)
      return detail::pick_least_error_grid<E>(x, w, opt, [&](float p) { return make(p * xmin, p * xmax); });
    // GPTQ's grid: shrink the range by p = 1.00, 0.99, ..., 0.21 and keep the least error.
    block_params cands[80];
    for (int i = 0; i < 80; ++i) {
      const float p = 1.0f - static_cast<float>(i) / 100.0f;
      cands[i] = make(p * xmin, p * xmax);
    }
    return detail::pick_least_error<E>(x, w, opt, cands);
  }
};

}  // namespace mxq
