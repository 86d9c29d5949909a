// packed_matrix: bit-packed element codes + per-block scales (+ zero points, + tensor scale).
//
//   mxq::packed_matrix<mxq::mxfp4> q(rows, cols);              // all codes and scales zero
//   q.set_code(r, c, 0x7);                                      // E2M1 code of element (r, c)
//   q.scale(r, c / q.block_length()) = 127;                     // E8M0 scale 2^0 of its block
//   float v = mxq::decode_element<mxq::e2m1>(q.code(r, c), q.params(r, c / q.block_length()));  // 6.0
//   std::size_t bytes = q.storage_bytes();                      // codes + scales (+ zeros, tensor scale)
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "format.hpp"
#include "format/block.hpp"

namespace mxq {

// Layout policies: where code i of a row lives.
// lsb_first: a little-endian bit stream per row. For 4-bit codes element 2i is the low nibble of
// byte i (gpt-oss, torchao, CUDA fp4x2); FP6 packs 4 values in 3 bytes; 8-bit is one byte.
struct lsb_first_layout {
  static constexpr std::string_view name = "lsb_first";
  static std::size_t row_bytes(std::size_t cols, int bits, std::size_t) noexcept {
    return (cols * static_cast<std::size_t>(bits) + 7) / 8;
  }
  static std::uint8_t get(const std::uint8_t* row, std::size_t i, int bits, std::size_t) noexcept {
    const std::size_t bit = i * static_cast<std::size_t>(bits);
    const unsigned lo = row[bit / 8];
    const unsigned hi = (bit % 8) + static_cast<unsigned>(bits) > 8 ? row[bit / 8 + 1] : 0u;
    return static_cast<std::uint8_t>(((lo | (hi << 8)) >> (bit % 8)) & ((1u << bits) - 1u));
  }
  static void set(std::uint8_t* row, std::size_t i, int bits, std::size_t, std::uint8_t code) noexcept {
    const std::size_t bit = i * static_cast<std::size_t>(bits);
    const unsigned mask = ((1u << bits) - 1u) << (bit % 8);
    const unsigned v = static_cast<unsigned>(code) << (bit % 8);
    row[bit / 8] = static_cast<std::uint8_t>((row[bit / 8] & ~mask) | (v & mask));
    if ((bit % 8) + static_cast<unsigned>(bits) > 8)
      row[bit / 8 + 1] = static_cast<std::uint8_t>((row[bit / 8 + 1] & ~(mask >> 8)) | (v >> 8));
  }
};

// ggml's split halves (4-bit only): inside each block of B codes, byte j holds code j in the
// low nibble and code j + B/2 in the high nibble. Like ggml, rows must be whole blocks.
struct split_halves_layout {
  static constexpr std::string_view name = "split_halves";
  static std::size_t row_bytes(std::size_t cols, int, std::size_t block) noexcept {
    return (cols / block) * (block / 2);
  }
  static std::size_t locate(std::size_t i, std::size_t block, bool& high) noexcept {
    const std::size_t b = i / block, j = i % block, half = block / 2;
    high = j >= half;
    return b * half + (high ? j - half : j);
  }
  static std::uint8_t get(const std::uint8_t* row, std::size_t i, int, std::size_t block) noexcept {
    bool high;
    const std::size_t byte = locate(i, block, high);
    return high ? static_cast<std::uint8_t>(row[byte] >> 4) : static_cast<std::uint8_t>(row[byte] & 0x0F);
  }
  static void set(std::uint8_t* row, std::size_t i, int, std::size_t block, std::uint8_t code) noexcept {
    bool high;
    const std::size_t byte = locate(i, block, high);
    row[byte] = high ? static_cast<std::uint8_t>((row[byte] & 0x0F) | (code << 4))
                     : static_cast<std::uint8_t>((row[byte] & 0xF0) | (code & 0x0F));
  }
};

template <format_type F, class Layout = lsb_first_layout>
class packed_matrix {
 public:
  using format = F;
  using layout = Layout;
  using element = typename F::element;
  using scale_type = typename F::scale;
  using scale_storage = typename scale_type::storage;
  static constexpr int bits = F::bits;

  // How a row of `cols` values is laid out: what the constructor allocates, and what sizes a
  // checkpoint (or a memory estimate) without making the matrix.
  struct geometry {
    std::size_t block = 0, blocks_per_row = 0, row_bytes = 0;
  };
  static geometry geometry_for(std::size_t cols) {
    geometry g;
    g.block = mxq::block_length<F>(cols);
    g.blocks_per_row = g.block == 0 ? 0 : (cols + g.block - 1) / g.block;
    g.row_bytes = Layout::row_bytes(cols, bits, g.block == 0 ? 1 : g.block);
    return g;
  }
  // storage_bytes() of a rows x cols matrix.
  static std::size_t storage_bytes_for(std::size_t rows, std::size_t cols) {
    const geometry g = geometry_for(cols);
    return rows * g.row_bytes + rows * g.blocks_per_row * (sizeof(scale_storage) + (scale_type::has_zero_point ? 1 : 0)) +
           (scale_type::has_tensor_scale ? sizeof(float) : 0);
  }

  packed_matrix() = default;
  packed_matrix(std::size_t rows, std::size_t cols, tensor_params t = {})
      : rows_(rows), cols_(cols), block_(mxq::block_length<F>(cols)), tensor_(t) {
    if constexpr (std::is_same_v<Layout, split_halves_layout>) {
      if (bits != 4 || block_ % 2 != 0 || cols % block_ != 0)
        throw error("split_halves layout needs 4-bit codes, an even block length and whole blocks per row (" +
                    std::to_string(cols) + " columns, block " + std::to_string(block_) + ")");
    }
    const geometry g = geometry_for(cols);
    blocks_per_row_ = g.blocks_per_row;
    row_bytes_ = g.row_bytes;
    codes_.assign(rows * row_bytes_, 0);
    scales_.assign(rows * blocks_per_row_, scale_storage{});
    if constexpr (scale_type::has_zero_point) zeros_.assign(rows * blocks_per_row_, 0);
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t block_length() const noexcept { return block_; }
  std::size_t blocks_per_row() const noexcept { return blocks_per_row_; }
  std::size_t row_bytes() const noexcept { return row_bytes_; }
  const tensor_params& tensor() const noexcept { return tensor_; }
  void set_tensor(tensor_params t) noexcept { tensor_ = t; }

  std::uint8_t code(std::size_t r, std::size_t c) const noexcept {
    return Layout::get(codes_.data() + r * row_bytes_, c, bits, block_);
  }
  void set_code(std::size_t r, std::size_t c, std::uint8_t v) noexcept {
    Layout::set(codes_.data() + r * row_bytes_, c, bits, block_, v);
  }
  scale_storage& scale(std::size_t r, std::size_t b) noexcept { return scales_[r * blocks_per_row_ + b]; }
  scale_storage scale(std::size_t r, std::size_t b) const noexcept { return scales_[r * blocks_per_row_ + b]; }
  std::uint8_t& zero(std::size_t r, std::size_t b) noexcept { return zeros_[r * blocks_per_row_ + b]; }
  std::uint8_t zero(std::size_t r, std::size_t b) const noexcept {
    return scale_type::has_zero_point ? zeros_[r * blocks_per_row_ + b] : std::uint8_t{0};
  }

  // Store / recover a block's parameters.
  void set_params(std::size_t r, std::size_t b, const block_params& p) noexcept {
    scale(r, b) = static_cast<scale_storage>(p.scale_code);
    if constexpr (scale_type::has_zero_point) zero(r, b) = static_cast<std::uint8_t>(p.zero);
  }
  block_params params(std::size_t r, std::size_t b) const noexcept {
    block_params p;
    p.scale_code = static_cast<std::uint32_t>(scale(r, b));
    p.scale = scale_type::decode(p.scale_code, tensor_);
    p.nan = p.scale != p.scale;
    p.zero = zero(r, b);
    return p;
  }

  std::span<std::uint8_t> code_bytes() noexcept { return codes_; }
  std::span<const std::uint8_t> code_bytes() const noexcept { return codes_; }
  std::span<scale_storage> scale_data() noexcept { return scales_; }
  std::span<const scale_storage> scale_data() const noexcept { return scales_; }
  std::span<std::uint8_t> zero_data() noexcept { return zeros_; }
  std::span<const std::uint8_t> zero_data() const noexcept { return zeros_; }

  // Bytes the packed form occupies (codes + scales + zero points + tensor scale).
  std::size_t storage_bytes() const noexcept {
    return codes_.size() + scales_.size() * sizeof(scale_storage) + zeros_.size() +
           (scale_type::has_tensor_scale ? sizeof(float) : 0);
  }

 private:
  std::size_t rows_ = 0, cols_ = 0, block_ = 0, blocks_per_row_ = 0, row_bytes_ = 0;
  tensor_params tensor_{};
  std::vector<std::uint8_t> codes_;
  std::vector<scale_storage> scales_;
  std::vector<std::uint8_t> zeros_;
};

}  // namespace mxq
