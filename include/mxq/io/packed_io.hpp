// Packed (quantized) linear weights in safetensors files.
//
// For a linear whose unquantized weight would be `<base>.weight` [rows, cols]:
//   <base>.weight_blocks       U8  [rows, row_bytes]   element codes, lsb_first layout
//                                                       (4-bit: element 2i in the low nibble)
//   <base>.weight_scales       U8  [rows, blocks]      E8M0 / UE4M3 bytes
//                              F32/F16/BF16 [rows, blocks] for float-scaled INT baselines
//   <base>.weight_zeros        U8  [rows, blocks]      zero points (INT baselines only)
//   <base>.weight_tensor_scale F32 [1]                 NVFP4's second-level scale
//   <base>.weight_shape        I64 [2]                 rows, cols (row_bytes alone is ambiguous)
// The format is named in __metadata__ as "mxq.format.<base>" (or "mxq.format" for all).
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "../format/registry.hpp"
#include "../packed.hpp"
#include "../quantize.hpp"
#include "safetensors.hpp"

namespace mxq {

namespace detail::pio {
template <class S>
constexpr st_dtype scale_dtype() {
  if constexpr (sizeof(typename S::storage) == 1) return st_dtype::U8;
  else if constexpr (std::is_same_v<S, float_scale<f16_storage, S::zero_mode>>) return st_dtype::F16;
  else if constexpr (sizeof(typename S::storage) == 2) return st_dtype::BF16;
  else return st_dtype::F32;
}
}  // namespace detail::pio

namespace detail::pio {
// The tensors of one packed linear, in order (add_packed fills them, declare_packed only names
// and sizes them: one description of the layout).
template <format_type F, class Writer>
void packed_tensors(Writer& w, const std::string& base, std::size_t rows, std::size_t cols, std::size_t row_bytes,
                    std::size_t blocks, std::span<const std::byte> codes, std::span<const std::byte> scales,
                    std::span<const std::byte> zeros, float tensor_scale) {
  using S = typename F::scale;
  w.add(base + ".weight_blocks", st_dtype::U8, {rows, row_bytes}, codes);
  w.add(base + ".weight_scales", scale_dtype<S>(), {rows, blocks}, scales);
  if constexpr (S::has_zero_point) w.add(base + ".weight_zeros", st_dtype::U8, {rows, blocks}, zeros);
  if constexpr (S::has_tensor_scale)
    w.add(base + ".weight_tensor_scale", st_dtype::F32, {1}, std::as_bytes(std::span<const float>(&tensor_scale, 1)));
  const std::int64_t shape[2] = {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)};
  w.add(base + ".weight_shape", st_dtype::I64, {2}, std::as_bytes(std::span<const std::int64_t>(shape, 2)));
  w.set_metadata("mxq.format." + base, std::string(format_traits<F>::name));
}
}  // namespace detail::pio

// Adds the tensors of a packed linear to `w`: a safetensors_writer, or anything with its
// add(name, dtype, shape, bytes) and set_metadata(key, value) (the streaming checkpoint writer
// declares and fills through the same function, so the two cannot disagree on the layout).
template <format_type F, class Layout, class Writer = safetensors_writer>
void add_packed(Writer& w, const std::string& base, const packed_matrix<F, Layout>& q) {
  static_assert(std::is_same_v<Layout, lsb_first_layout>, "checkpoints store the lsb_first layout");
  detail::pio::packed_tensors<F>(w, base, q.rows(), q.cols(), q.row_bytes(), q.blocks_per_row(),
                                 std::as_bytes(q.code_bytes()), std::as_bytes(q.scale_data()), std::as_bytes(q.zero_data()),
                                 q.tensor().scale);
}

// The tensors add_packed would add for a rows x cols linear, with empty data (for a writer that
// declares first and fills later), without making the packed matrix.
template <format_type F, class Writer>
void declare_packed(Writer& w, const std::string& base, std::size_t rows, std::size_t cols) {
  const auto g = packed_matrix<F>::geometry_for(cols);
  detail::pio::packed_tensors<F>(w, base, rows, cols, g.row_bytes, g.blocks_per_row, {}, {}, {}, 0.0f);
}

inline bool has_packed(const checkpoint& ck, const std::string& base) { return ck.contains(base + ".weight_blocks"); }

template <format_type F>
packed_matrix<F> read_packed(const checkpoint& ck, const std::string& base) {
  using S = typename F::scale;
  const auto fail = [&](const std::string& what) { detail::io::fail(ck.path(), "packed weight '" + base + "': " + what); };
  // Every tensor's dtype and shape is checked against weight_shape before anything sized by the
  // file is allocated (a hostile weight_shape cannot ask for more memory than its tensors hold).
  auto check = [&](const std::string& name, st_dtype dt, std::vector<std::size_t> shape) {
    if (!ck.contains(name)) fail("missing tensor '" + name + "'");
    const auto& info = ck.info(name);
    if (info.dtype != dt) fail("'" + name + "' has dtype " + std::string(st_dtype_name(info.dtype)) + ", expected " +
                                std::string(st_dtype_name(dt)));
    if (info.shape != shape) fail("'" + name + "' has shape " + shape_to_string(info.shape) + ", expected " +
                                   shape_to_string(shape));
    return ck.bytes(name);
  };
  const auto sb = check(base + ".weight_shape", st_dtype::I64, {2});
  std::int64_t shape[2];
  std::memcpy(shape, sb.data(), sizeof shape);
  constexpr std::int64_t max_dim = std::int64_t{1} << 40;  // keeps rows * row_bytes and the geometry in range
  if (shape[0] < 0 || shape[1] <= 0 || shape[0] > max_dim || shape[1] > max_dim)
    fail("invalid shape [" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]");
  const auto rows = static_cast<std::size_t>(shape[0]), cols = static_cast<std::size_t>(shape[1]);
  const auto g = packed_matrix<F>::geometry_for(cols);
  const auto cb = check(base + ".weight_blocks", st_dtype::U8, {rows, g.row_bytes});
  const auto scb = check(base + ".weight_scales", detail::pio::scale_dtype<S>(), {rows, g.blocks_per_row});
  std::span<const std::byte> zb;
  if constexpr (S::has_zero_point) zb = check(base + ".weight_zeros", st_dtype::U8, {rows, g.blocks_per_row});
  tensor_params t{};
  if constexpr (S::has_tensor_scale) {
    const auto tb = check(base + ".weight_tensor_scale", st_dtype::F32, {1});
    std::memcpy(&t.scale, tb.data(), sizeof(float));
    if (!(t.scale > 0.0f) || !std::isfinite(t.scale)) fail("tensor scale is not a positive finite number");
  }
  packed_matrix<F> q(rows, cols, t);
  std::memcpy(q.code_bytes().data(), cb.data(), cb.size());
  std::memcpy(q.scale_data().data(), scb.data(), scb.size());
  if constexpr (S::has_zero_point) {
    std::memcpy(q.zero_data().data(), zb.data(), zb.size());
    for (std::uint8_t z : q.zero_data())
      if (z > element_codec<typename F::element>::magnitude_count - 1) fail("zero point out of range");
  }
  return q;
}

// The format name recorded for a packed linear ("mxq.format.<base>", else "mxq.format").
inline std::string packed_format_name(const checkpoint& ck, const std::string& base) {
  const auto& md = ck.file_of(base + ".weight_blocks").metadata();
  if (auto it = md.find("mxq.format." + base); it != md.end()) return it->second;
  if (auto it = md.find("mxq.format"); it != md.end()) return it->second;
  detail::io::fail(ck.path(), "packed weight '" + base + "' has no mxq.format metadata");
}

// Dequantized float32 weight [rows, cols] of a packed linear, whatever its recorded format among
// Formats (a template: only the translation units that read checkpoints instantiate them all).
template <class Formats = predefined_formats>
tensor_f32 read_packed_dequantized(const checkpoint& ck, const std::string& base) {
  const std::string name = packed_format_name(ck, base);
  if (!is_known_format(name)) detail::io::fail(ck.path(), "packed weight '" + base + "': unknown format '" + name + "'");
  return visit_format(
      name,
      [&](auto tag) {
        using F = typename decltype(tag)::type;
        const auto q = read_packed<F>(ck, base);
        return tensor_f32{{q.rows(), q.cols()}, dequantize(q)};
      },
      Formats{});
}

}  // namespace mxq
