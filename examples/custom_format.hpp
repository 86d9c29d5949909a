// Two user-defined formats, added without touching the library:
//  - mx_e1m2: an E1M2 element (sign, 1 exponent bit, 2 mantissa bits) in blocks of 32 with an
//    E8M0 scale, declared by specializing mxq::element_traits for a tag type;
//  - mxint4_b64: MXINT4 with blocks of 64, composed from the library's own templates.
#pragma once
#include <array>
#include <string_view>

#include <mxq/format.hpp>

namespace user {
struct e1m2_tag {};  // the user's own type; everything about it lives in the trait below
}  // namespace user

// The specialization must be visible before the first format that uses the element.
template <>
struct mxq::element_traits<user::e1m2_tag> {
  static constexpr int bits = 4;
  static constexpr mxq::element_encoding encoding = mxq::element_encoding::sign_magnitude;
  static constexpr bool has_inf = false;
  // bias 0: subnormals 0, 0.25, 0.5, 0.75; normals 1, 1.25, 1.5, 1.75 (emax 0)
  static constexpr std::array<float, 8> magnitudes{0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f};
  static constexpr int emax = 0;
};

namespace user {

struct mx_e1m2 : mxq::block_format<e1m2_tag, 32, mxq::e8m0_scale> {
  static constexpr std::string_view name = "mx_e1m2";
};
struct mxint4_b64 : mxq::block_format<mxq::int_element<4>, 64, mxq::e8m0_scale> {
  static constexpr std::string_view name = "mxint4_b64";
};

}  // namespace user
