// block_format: an element type, a block length and a scale encoding, bound at compile time.
#pragma once
#include <cstddef>
#include <string_view>

#include "element.hpp"
#include "scale.hpp"

namespace mxq {

// Blocks of BlockSize consecutive values along a row share one scale; BlockSize == 0 means one
// scale per row (per-channel).
template <element_type Element, int BlockSize, class Scale>
struct block_format {
  static_assert(BlockSize >= 0, "block size must be >= 0 (0 = whole row)");
  using element = Element;
  using scale = Scale;
  static constexpr int block_size = BlockSize;
  static constexpr int bits = element_traits<Element>::bits;
};

template <class F>
concept format_type = requires {
  typename F::element;
  typename F::scale;
  { F::block_size } -> std::convertible_to<int>;
} && element_type<typename F::element>;

// Customization point for a format's display name (defaults to F::name, else "custom").
template <class F>
struct format_traits {
  static constexpr std::string_view name = [] {
    if constexpr (requires { F::name; }) return std::string_view(F::name);
    else return std::string_view("custom");
  }();
};

// Block length for a row of `cols` values.
template <format_type F>
constexpr std::size_t block_length(std::size_t cols) noexcept {
  return F::block_size == 0 ? cols : static_cast<std::size_t>(F::block_size);
}

// Storage cost per value: element bits + scale (and zero point) bits amortized over the block.
template <format_type F>
constexpr double effective_bits(std::size_t row_length = 4096) noexcept {
  const double per_block = F::scale::storage_bits + (F::scale::has_zero_point ? 8.0 : 0.0);
  return F::bits + per_block / static_cast<double>(block_length<F>(row_length));
}

}  // namespace mxq
