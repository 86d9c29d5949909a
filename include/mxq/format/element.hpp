// Element types of block formats: what one stored code means.
//
// An element is described by element_traits<E> (the customization point; by default it simply
// exposes E's own static members). Three encodings cover every format mxq knows:
//   sign_magnitude  - FP elements (E4M3, E2M1, ...): sign bit + magnitude index
//   twos_complement - MXINT elements (Q1.(k-2)): the magnitude grid is the same k/2^(k-2) ladder
//   affine          - unsigned integer levels with a zero point (GPTQ-style INT baselines)
// For the first two, `magnitudes` lists every finite non-negative value in increasing order and
// a code's magnitude index is its position there; higher magnitude indices are Inf/NaN codes.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

namespace mxq {

enum class element_encoding { sign_magnitude, twos_complement, affine };

// Which codes of an FP element are not finite numbers.
enum class fp_specials {
  ieee,  // exponent all ones: Inf (mantissa 0) and NaN (E5M2)
  fn,    // only S.1111.111 is NaN, no Inf (E4M3 "fn")
  none,  // every code is a finite number (FP6, FP4)
};

namespace detail {
constexpr float pow2f(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}
}  // namespace detail

// Mini-float with E exponent bits, M mantissa bits and a sign bit (OCP MX element types).
template <int E, int M, fp_specials Specials>
struct fp_element {
  static_assert(E >= 1 && M >= 0 && 1 + E + M <= 8, "fp_element: 1 + E + M must fit in 8 bits");
  static constexpr int bits = 1 + E + M;
  static constexpr int exponent_bits = E;
  static constexpr int mantissa_bits = M;
  static constexpr int bias = (1 << (E - 1)) - 1;
  static constexpr element_encoding encoding = element_encoding::sign_magnitude;
  static constexpr fp_specials specials = Specials;
  static constexpr bool has_inf = Specials == fp_specials::ieee;
  static constexpr std::size_t finite_count = Specials == fp_specials::ieee ? (1u << (E + M)) - (1u << M)
                                              : Specials == fp_specials::fn ? (1u << (E + M)) - 1u
                                                                              : (1u << (E + M));
  static constexpr std::array<float, finite_count> magnitudes = [] {
    std::array<float, finite_count> t{};
    for (std::size_t i = 0; i < finite_count; ++i) {
      const int exp_field = static_cast<int>(i >> M);
      const int man = static_cast<int>(i & ((1u << M) - 1u));
      t[i] = exp_field == 0 ? static_cast<float>(man) * detail::pow2f(1 - bias - M)
                            : (1.0f + static_cast<float>(man) * detail::pow2f(-M)) * detail::pow2f(exp_field - bias);
    }
    return t;
  }();
  // Exponent of the largest normal: the `emax_elem` of the OCP shared-exponent rule.
  static constexpr int emax = static_cast<int>((finite_count - 1) >> M) - bias;
};

// MXINT-k: two's-complement fixed point Q1.(k-2), symmetric (the most negative code is unused).
template <int K>
struct int_element {
  static_assert(K >= 2 && K <= 8, "int_element: 2..8 bits");
  static constexpr int bits = K;
  static constexpr element_encoding encoding = element_encoding::twos_complement;
  static constexpr bool has_inf = false;
  static constexpr std::size_t finite_count = std::size_t{1} << (K - 1);
  static constexpr std::array<float, finite_count> magnitudes = [] {
    std::array<float, finite_count> t{};
    for (std::size_t i = 0; i < finite_count; ++i) t[i] = static_cast<float>(i) * detail::pow2f(2 - K);
    return t;
  }();
  static constexpr int emax = 0;
};

// Unsigned B-bit levels 0 .. 2^B-1 used with a scale and a zero point: value = (q - zero) * scale.
template <int B>
struct uint_element {
  static_assert(B >= 1 && B <= 8, "uint_element: 1..8 bits");
  static constexpr int bits = B;
  static constexpr element_encoding encoding = element_encoding::affine;
  static constexpr bool has_inf = false;
  static constexpr int max_level = (1 << B) - 1;
  static constexpr int emax = 0;
};

// Customization point: specialize for a tag type to add an element without deriving from the
// library's templates. Required: bits, encoding, and for sign_magnitude/twos_complement
// `magnitudes` (ascending, magnitudes[0] == 0), `emax` and `has_inf`; for affine `max_level`.
template <class E>
struct element_traits : E {};

template <class E>
concept element_type = requires {
  { element_traits<E>::bits } -> std::convertible_to<int>;
  { element_traits<E>::encoding } -> std::convertible_to<element_encoding>;
  { element_traits<E>::emax } -> std::convertible_to<int>;
} && element_traits<E>::bits >= 1 && element_traits<E>::bits <= 8;

// Predefined element types.
using e4m3 = fp_element<4, 3, fp_specials::fn>;
using e5m2 = fp_element<5, 2, fp_specials::ieee>;
using e3m2 = fp_element<3, 2, fp_specials::none>;
using e2m3 = fp_element<2, 3, fp_specials::none>;
using e2m1 = fp_element<2, 1, fp_specials::none>;

// Everything derived from an element's traits: the code <-> value tables and the rounding
// boundaries, all computed at compile time.
template <element_type E>
struct element_codec {
  using traits = element_traits<E>;
  static constexpr int bits = traits::bits;
  static constexpr std::uint32_t code_count = 1u << bits;
  static constexpr std::uint8_t code_mask = static_cast<std::uint8_t>(code_count - 1);
  static constexpr element_encoding encoding = traits::encoding;
  static constexpr bool is_affine = encoding == element_encoding::affine;

  static constexpr auto magnitudes = [] {
    if constexpr (is_affine) {
      std::array<float, traits::max_level + 1> t{};
      for (int i = 0; i <= traits::max_level; ++i) t[static_cast<std::size_t>(i)] = static_cast<float>(i);
      return t;
    } else {
      return traits::magnitudes;
    }
  }();
  static constexpr int magnitude_count = static_cast<int>(magnitudes.size());
  static constexpr float max_value = magnitudes[magnitudes.size() - 1];
  static constexpr int emax = traits::emax;

  // Rounding boundaries between neighbouring magnitudes, exact in double (grid values have few
  // significant bits), so "is x above the midpoint" is decided without rounding error.
  static constexpr auto midpoints = [] {
    std::array<double, magnitudes.size() - 1> m{};
    for (std::size_t i = 0; i + 1 < magnitudes.size(); ++i)
      m[i] = (static_cast<double>(magnitudes[i]) + static_cast<double>(magnitudes[i + 1])) / 2.0;
    return m;
  }();

  static constexpr std::uint8_t sign_bit = static_cast<std::uint8_t>(1u << (bits - 1));

  // Code of (sign, magnitude index). Two's complement has no -0: it encodes as +0.
  static constexpr std::uint8_t encode_code(bool negative, int mag) noexcept {
    if constexpr (encoding == element_encoding::twos_complement) {
      return negative ? static_cast<std::uint8_t>((code_count - static_cast<std::uint32_t>(mag)) & code_mask)
                      : static_cast<std::uint8_t>(mag);
    } else if constexpr (encoding == element_encoding::sign_magnitude) {
      return static_cast<std::uint8_t>((negative ? sign_bit : 0u) | static_cast<std::uint32_t>(mag));
    } else {
      return static_cast<std::uint8_t>(mag);
    }
  }

  // The code a NaN block stores in its elements (decoding is NaN through the scale anyway).
  static constexpr std::uint8_t nan_code = [] {
    if constexpr (encoding == element_encoding::sign_magnitude) {
      if (static_cast<std::uint32_t>(magnitude_count) < (code_count >> 1))
        return static_cast<std::uint8_t>((code_count >> 1) - 1u);  // S.111..1 is NaN where it exists
    }
    return std::uint8_t{0};
  }();

  // Value of every code (affine: the level q itself). Codes past the finite magnitudes are
  // +-Inf (first special code of an ieee element) or NaN.
  static constexpr std::array<float, code_count> values = [] {
    std::array<float, code_count> t{};
    for (std::uint32_t c = 0; c < code_count; ++c) {
      if constexpr (encoding == element_encoding::affine) {
        t[c] = static_cast<float>(c);
      } else if constexpr (encoding == element_encoding::twos_complement) {
        const int v = c < (code_count >> 1) ? static_cast<int>(c) : static_cast<int>(c) - static_cast<int>(code_count);
        // The most negative code (-2^(k-1)) is not produced but decodes to its two's-complement value.
        t[c] = v >= 0 ? magnitudes[static_cast<std::size_t>(v)]
                      : (-v < magnitude_count ? -magnitudes[static_cast<std::size_t>(-v)]
                                              : -(magnitudes[magnitudes.size() - 1] + magnitudes[1]));
      } else {
        const bool neg = (c & sign_bit) != 0;
        const std::uint32_t mag = c & (sign_bit - 1u);
        float v;
        if (mag < static_cast<std::uint32_t>(magnitude_count)) v = magnitudes[mag];
        else if (traits::has_inf && mag == static_cast<std::uint32_t>(magnitude_count)) v = std::numeric_limits<float>::infinity();
        else v = std::numeric_limits<float>::quiet_NaN();
        t[c] = neg ? -v : v;
      }
    }
    return t;
  }();
};

}  // namespace mxq
