// Round-to-nearest quantization of a linear straight from its stored checkpoint bytes (F32, BF16,
// F16 in the memory map): no fp32 copy of the matrix is made. Rows are taken in L2-sized slices,
// each checked for non-finite values and quantized while it is in cache, slices split over
// threads. The result is the same bytes as quantize<F>(the fp32 matrix load_model reads) — a
// 16-bit value converts to float exactly and rows quantize independently.
#pragma once
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "../kernels.hpp"
#include "../numeric/half.hpp"
#include "../quantize.hpp"
#include "weights.hpp"

namespace mxq::detail::stored {

// A stored element type the fast path reads in place: its dtype, the word holding it and the
// exponent field (all ones = Inf or NaN).
template <class T>
struct element;
template <>
struct element<float> {
  static constexpr st_dtype dtype = st_dtype::F32;
  using word = std::uint32_t;
  static constexpr word exponent = 0x7F800000u;
};
template <>
struct element<bf16> {
  static constexpr st_dtype dtype = st_dtype::BF16;
  using word = std::uint16_t;
  static constexpr word exponent = 0x7F80u;
};
template <>
struct element<f16> {
  static constexpr st_dtype dtype = st_dtype::F16;
  using word = std::uint16_t;
  static constexpr word exponent = 0x7C00u;
};
using elements = std::tuple<float, bf16, f16>;

// Calls fn(T{}) for the element type stored as `d`; false when none is (the caller falls back).
template <class Fn>
bool visit_element(st_dtype d, Fn&& fn) {
  if constexpr (std::endian::native != std::endian::little) {
    return false;  // the map holds little-endian words
  } else {
    return std::apply([&](auto... t) { return ((element<decltype(t)>::dtype == d ? (fn(t), true) : false) || ...); },
                      elements{});
  }
}

// Index of the first Inf/NaN among the n elements at p, or n. Exponent fields are tested in
// 64-bit words (SWAR: ((w & E) + lowest bit of E) sets the bit above E only when E is all ones),
// 256 bytes per step, so the common all-finite case runs at memory speed.
template <class T>
std::size_t first_non_finite(const T* p, std::size_t n) noexcept {
  using E = element<T>;
  using W = typename E::word;
  constexpr std::size_t lanes = 8 / sizeof(W);
  constexpr auto spread = [](std::uint64_t v) {
    std::uint64_t r = 0;
    for (std::size_t k = 0; k < lanes; ++k) r |= v << (8 * sizeof(W) * k);
    return r;
  };
  constexpr std::uint64_t mask = spread(E::exponent), low = spread(E::exponent & (~E::exponent + 1u)),
                          high = spread(static_cast<W>(E::exponent + (E::exponent & (~E::exponent + 1u))));
  constexpr std::size_t step = 256 / sizeof(T);
  std::size_t i = 0;
  for (; i + step <= n; i += step) {
    std::uint64_t w[32];
    std::memcpy(w, p + i, sizeof w);
    std::uint64_t bad = 0;
    for (std::size_t k = 0; k < 32; ++k) bad |= ((w[k] & mask) + low) & high;
    if (bad) break;
  }
  for (; i < n; ++i) {
    W w;
    std::memcpy(&w, p + i, sizeof w);
    if ((w & E::exponent) == E::exponent) return i;
  }
  return n;
}

inline float to_float(float v) noexcept { return v; }
inline float to_float(bf16 v) noexcept { return v.to_float(); }
inline float to_float(f16 v) noexcept { return v.to_float(); }

template <format_type F, class T>
packed_matrix<F> quantize_in_place(const checkpoint& ck, const std::string& name, std::size_t rows, std::size_t cols,
                                   quant_options opt, int threads, const tensor_params* tensor) {
  const T* data = reinterpret_cast<const T*>(ck.bytes(name).data());
  const matrix_view<const T> x(data, rows, cols);
  mxq::detail::check_options<F>(opt, cols);
  packed_matrix<F> q(rows, cols, tensor ? *tensor : kernel::tensor_params_of<F>(x, opt.scale_rule));
  opt.threads = 1;  // the slices are the parallel unit
  const std::size_t slice = std::max<std::size_t>(1, (std::size_t{256} << 10) / std::max<std::size_t>(cols * sizeof(T), 1));
  constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  std::atomic<std::size_t> bad{none};  // the least non-finite element index found
  kernel::parallel_ranges(rows, threads, slice, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; r += slice) {
      const std::size_t n = std::min(slice, r1 - r);
      const std::size_t i = first_non_finite(data + r * cols, n * cols);
      if (i < n * cols) {  // each range stops at its first; the least over ranges is the tensor's first
        std::size_t cur = bad.load();
        while (r * cols + i < cur && !bad.compare_exchange_weak(cur, r * cols + i)) {
        }
        return;
      }
      kernel::quantize_rows_into(matrix_view<const T>(data + r * cols, n, cols), q, r, opt);
    }
  });
  if (const std::size_t i = bad.load(); i != none)
    io::fail(ck.file_of(name).path(), "tensor '" + name + "' holds a non-finite value (" +
                                          std::to_string(to_float(data[i])) + ") at element " + std::to_string(i));
  ck.release(name);
  return q;
}

}  // namespace mxq::detail::stored

namespace mxq::llm {

// The weight of linear `prefix` ([rows, cols]) of checkpoint `ck` quantized to F with RTN, the
// same bytes as quantize<F>(load_linear(...).weight, opt). F32/BF16/F16 weights with a SIMD
// kernel for F are quantized in place in the map; anything else (another dtype, a packed
// checkpoint, the scalar reference) is converted to fp32 first. Errors name the file and tensor.
// `tensor`: a second-level scale to use instead of the matrix's own (shared_stored_tensor_params).
template <format_type F, class Formats = predefined_formats>
packed_matrix<F> quantize_stored(const checkpoint& ck, const std::string& prefix, std::size_t rows, std::size_t cols,
                                 const quant_options& opt = {}, int threads = 1, const tensor_params* tensor = nullptr) {
  namespace ds = mxq::detail::stored;
  const std::string name = prefix + ".weight";
  if (ck.contains(name) && kernel::can_quantize<F>(opt)) {
    mxq::detail::model::check_shape(ck, name, {rows, cols});
    std::optional<packed_matrix<F>> q;
    if (ds::visit_element(ck.info(name).dtype, [&](auto t) {
          q = ds::quantize_in_place<F, decltype(t)>(ck, name, rows, cols, opt, threads, tensor);
        }))
      return std::move(*q);
  }
  const linear_weights w = mxq::detail::model::load_linear<Formats>(ck, prefix, rows, cols, false);
  quant_options o = opt;
  o.threads = threads;
  return quantize<F>(matrix_view<const float>(w.weight.data(), rows, cols), o, tensor);
}

// shared_tensor_params of stored linears (prefixes with their [rows, cols]), read in place where
// the dtype allows; {} for formats without a tensor scale.
template <format_type F, class Formats = predefined_formats>
tensor_params shared_stored_tensor_params(const checkpoint& ck,
                                          const std::vector<std::tuple<std::string, std::size_t, std::size_t>>& linears,
                                          scale_rule rule = scale_rule::floor) {
  if constexpr (!F::scale::has_tensor_scale) {
    (void)ck, (void)linears, (void)rule;
    return {};
  } else {
    namespace ds = mxq::detail::stored;
    float amax = 0.0f;
    for (const auto& [prefix, rows_, cols_] : linears) {
      // Plain copies: a lambda may not capture structured bindings before C++20's P1091 (clang 14).
      const std::size_t rows = rows_, cols = cols_;
      const std::string name = prefix + ".weight";
      bool done = false;
      if (ck.contains(name)) {
        mxq::detail::model::check_shape(ck, name, {rows, cols});
        done = ds::visit_element(ck.info(name).dtype, [&](auto t) {
          using T = decltype(t);
          const matrix_view<const T> x(reinterpret_cast<const T*>(ck.bytes(name).data()), rows, cols);
          amax = std::max(amax, kernel::detail::finite_amax(x));
        });
      }
      if (!done) {
        const linear_weights w = mxq::detail::model::load_linear<Formats>(ck, prefix, rows, cols, false);
        const matrix_view<const float> v(w.weight.data(), rows, cols);
        amax = std::max(amax, kernel::detail::finite_amax(v));
      }
    }
    return F::scale::template tensor_scale<typename F::element>(amax, rule);
  }
}

}  // namespace mxq::llm
