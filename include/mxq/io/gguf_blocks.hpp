// Which mxq formats are ggml block types, exactly (the dequantized values bit-identical), and
// the byte conversion of a packed row into those blocks (facts: shared docs
// checkpoint-formats.md §1.3):
//
//   mxfp4  -> MXFP4: the same E8M0 byte; codes reordered from pairs (2k, 2k+1) to (j, j+16)
//   mxint4 -> Q4_0:  k/4 * 2^(e-127) = (nibble - 8) * d with d = 2^(e-129) in fp16, nibble = k + 8
//   mxint8 -> Q8_0:  k/64 * 2^(e-127) = qs * d with d = 2^(e-133) in fp16, qs = k
//   nvfp4  -> NVFP4: four 16-element blocks per ggml block, the same UE4M3 bytes, codes as
//                    (16s+j, 16s+j+8); the FP32 tensor scale is a separate "<name>.scale" tensor
//
// Q4_0 / Q8_0 hold d as fp16, so a block is exact only where 2^(e-129) (2^(e-133)) is an fp16
// (2^-24 .. 2^15) or every code is 0; another block is an error naming the tensor, row and
// block, never a rounded value. Other formats have no exact ggml type (gguf_block_traits<F>::
// exportable is false). A user format becomes exportable by specializing gguf_block_traits.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "../format/predefined.hpp"
#include "../packed.hpp"
#include "gguf.hpp"

namespace mxq {

template <format_type F>
struct gguf_block_traits {
  static constexpr bool exportable = false;
};

namespace detail::gguf {

// fp16 bits of 2^p, for -24 <= p <= 15 (normal and subnormal powers of two are exact).
constexpr bool pow2_is_half(int p) noexcept { return p >= -24 && p <= 15; }
constexpr std::uint16_t pow2_half_bits(int p) noexcept {
  return p >= -14 ? static_cast<std::uint16_t>((p + 15) << 10) : static_cast<std::uint16_t>(1u << (p + 24));
}

// Nibble i of an lsb_first 4-bit row: element 2k in the low nibble of byte k.
inline std::uint8_t nibble(const std::uint8_t* row, std::size_t i) noexcept {
  return static_cast<std::uint8_t>((row[i / 2] >> ((i % 2) * 4)) & 0x0F);
}

// 2n codes starting at element c0 into n bytes, element c0+j low and c0+j+n high (ggml's order);
// `map` transforms each code.
template <class Map>
void split_nibbles(const std::uint8_t* row, std::size_t c0, std::size_t n, std::uint8_t* out, Map map) noexcept {
  for (std::size_t j = 0; j < n; ++j)
    out[j] = static_cast<std::uint8_t>(map(nibble(row, c0 + j)) | (map(nibble(row, c0 + j + n)) << 4));
}

[[noreturn]] inline void block_error(const std::string& tensor, std::size_t r, std::size_t b, const std::string& why) {
  throw error("tensor '" + tensor + "' row " + std::to_string(r) + " block " + std::to_string(b) + ": " + why);
}

template <format_type F, int FractionBits>
std::string int_scale_problem(std::uint8_t e) {
  if (e == 0xFF) return "NaN scale (no GGUF value)";
  const int p = static_cast<int>(e) - 127 - FractionBits;
  if (e == 0 || pow2_is_half(p)) return "";
  return "its scale 2^" + std::to_string(p) + " is not an fp16 value, so it has no exact " +
         std::string(format_traits<F>::name) + " -> ggml block";
}

// MXINT-k into Q4_0 / Q8_0: d = 2^(e - 127 - fraction_bits) in fp16.
template <format_type F, int FractionBits, class Body>
void int_blocks(const packed_matrix<F>& q, std::size_t r, std::byte* out, const std::string& tensor,
                std::size_t block_bytes, Body body) {
  const std::uint8_t* row = q.code_bytes().data() + r * q.row_bytes();
  for (std::size_t b = 0; b < q.blocks_per_row(); ++b) {
    std::uint8_t* o = reinterpret_cast<std::uint8_t*>(out) + b * block_bytes;
    const std::uint8_t e = q.scale(r, b);
    const int p = static_cast<int>(e) - 127 - FractionBits;
    const bool zero = body(row, b, o + 2);
    if (e == 0xFF || (!zero && !pow2_is_half(p)))
      block_error(tensor, r, b, e == 0xFF ? "NaN scale (no GGUF value)" : "scale 2^" + std::to_string(p) + " on non-zero codes");
    const std::uint16_t d = zero ? std::uint16_t{0} : pow2_half_bits(p);
    o[0] = static_cast<std::uint8_t>(d & 0xFF), o[1] = static_cast<std::uint8_t>(d >> 8);
  }
}

}  // namespace detail::gguf

template <>
struct gguf_block_traits<mxfp4> {
  static constexpr bool exportable = true;
  static constexpr ggml_type type = ggml_type::mxfp4;
  // Why a block with this scale byte has no exact ggml form (empty: it has one); checked on the
  // scales alone before anything is written.
  static std::string scale_problem(std::uint8_t e) { return e == 0xFF ? "NaN scale (ggml refuses E8M0 0xFF)" : ""; }
  // Row r of q as ggml blocks (cols / 32 * 17 bytes at out).
  static void row(const packed_matrix<mxfp4>& q, std::size_t r, std::byte* out, const std::string& tensor) {
    const std::uint8_t* codes = q.code_bytes().data() + r * q.row_bytes();
    for (std::size_t b = 0; b < q.blocks_per_row(); ++b) {
      std::uint8_t* o = reinterpret_cast<std::uint8_t*>(out) + b * 17;
      o[0] = q.scale(r, b);
      if (o[0] == 0xFF) detail::gguf::block_error(tensor, r, b, "NaN scale (ggml refuses E8M0 0xFF)");
      detail::gguf::split_nibbles(codes, b * 32, 16, o + 1, [](std::uint8_t c) { return c; });
    }
  }
};

template <>
struct gguf_block_traits<mxint4> {
  static constexpr bool exportable = true;
  static constexpr ggml_type type = ggml_type::q4_0;
  // E8M0 0 is what an all-zero block stores (any d then decodes it exactly; row() checks the codes).
  static std::string scale_problem(std::uint8_t e) { return detail::gguf::int_scale_problem<mxint4, 2>(e); }
  static void row(const packed_matrix<mxint4>& q, std::size_t r, std::byte* out, const std::string& tensor) {
    detail::gguf::int_blocks<mxint4, 2>(q, r, out, tensor, 18, [](const std::uint8_t* row, std::size_t b, std::uint8_t* qs) {
      bool zero = true;
      // Two's-complement k into k + 8: flip the sign bit.
      detail::gguf::split_nibbles(row, b * 32, 16, qs, [&](std::uint8_t c) {
        zero = zero && c == 0;
        return static_cast<std::uint8_t>(c ^ 0x8);
      });
      return zero;
    });
  }
};

template <>
struct gguf_block_traits<mxint8> {
  static constexpr bool exportable = true;
  static constexpr ggml_type type = ggml_type::q8_0;
  static std::string scale_problem(std::uint8_t e) { return detail::gguf::int_scale_problem<mxint8, 6>(e); }
  static void row(const packed_matrix<mxint8>& q, std::size_t r, std::byte* out, const std::string& tensor) {
    detail::gguf::int_blocks<mxint8, 6>(q, r, out, tensor, 34, [](const std::uint8_t* row, std::size_t b, std::uint8_t* qs) {
      bool zero = true;
      for (std::size_t j = 0; j < 32; ++j) {
        qs[j] = row[b * 32 + j];  // int8 k as it is
        zero = zero && qs[j] == 0;
      }
      return zero;
    });
  }
};

template <>
struct gguf_block_traits<nvfp4> {
  static constexpr bool exportable = true;
  static constexpr ggml_type type = ggml_type::nvfp4;
  // ggml decodes 0x7F (NaN in E4M3) as 0 and ignores bit 7.
  static std::string scale_problem(std::uint8_t s) { return s >= 0x7F ? "NaN scale (no GGUF value)" : ""; }
  static void row(const packed_matrix<nvfp4>& q, std::size_t r, std::byte* out, const std::string& tensor) {
    const std::uint8_t* codes = q.code_bytes().data() + r * q.row_bytes();
    for (std::size_t g = 0; g < q.blocks_per_row() / 4; ++g) {
      std::uint8_t* o = reinterpret_cast<std::uint8_t*>(out) + g * 36;
      for (std::size_t s = 0; s < 4; ++s) {
        const std::size_t b = 4 * g + s;
        o[s] = q.scale(r, b);
        if (o[s] >= 0x7F) detail::gguf::block_error(tensor, r, b, "NaN scale (no GGUF value)");
        detail::gguf::split_nibbles(codes, b * 16, 8, o + 4 + 8 * s, [](std::uint8_t c) { return c; });
      }
    }
  }
};

}  // namespace mxq
