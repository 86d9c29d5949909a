// Round-to-nearest block quantization: quantize (-> packed_matrix), dequantize, fake_quant.
//
//   mxq::matrix_view<const float> W(w.data(), out, in);        // row-major [out, in]
//   auto q = mxq::quantize<mxq::mxfp4>(W);                     // packed_matrix<mxfp4>
//   std::vector<float> d = mxq::dequantize(q);                 // [out, in] row-major
//   mxq::fake_quant<mxq::mxfp4>(W, mxq::matrix_view<float>(o.data(), out, in));  // == d, no packed form
//   auto q2 = mxq::quantize<mxq::mxfp4>(W, {.scale_rule = mxq::scale_rule::mse});
//
// mxq::quantize / dequantize / fake_quant run the SIMD kernels (kernel/quantize.hpp) when the
// format, layout and options have one (E8M0 formats with mini-float or MXINT elements, NVFP4;
// every rounding mode but stochastic; every scale rule) and the translation unit is compiled
// with AVX2+FMA; the results are bit-identical to the scalar oracle, which stays available as
// mxq::reference::quantize / dequantize / fake_quant and runs everything else.
//
// Blocks run along the rows of the view (the last, contiguous dimension of a row-major
// [out, in] weight or [tokens, in] activation). Pass `view.t()` to put blocks along the first
// dimension instead. The functions read the caller's memory in place; a strided view is
// gathered one block at a time.
#pragma once
#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "format.hpp"
#include "format/block.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quant/element_quant.hpp"
#include "quant/options.hpp"
#include "kernel/quantize.hpp"

namespace mxq {

// Second-level (tensor) parameters of a format, from every finite value of the matrix.
// `rule`: the scale rule the blocks will use (4/6 computes the tensor scale against 256).
template <format_type F>
tensor_params compute_tensor_params(matrix_view<const float> x, scale_rule rule = scale_rule::floor) {
  if constexpr (!F::scale::has_tensor_scale) {
    return {};
  } else {
    float amax = 0.0f;
    for (std::size_t r = 0; r < x.rows; ++r)
      for (std::size_t c = 0; c < x.cols; ++c) {
        const float a = std::fabs(x(r, c));
        if (std::isfinite(a) && a > amax) amax = a;
      }
    return F::scale::template tensor_scale<typename F::element>(amax, rule);
  }
}

// One second-level scale for several matrices (the largest finite |value| of them all): what
// linears that an engine fuses into one GEMM (q/k/v, gate/up) must share.
template <format_type F>
tensor_params shared_tensor_params(std::span<const matrix_view<const float>> xs, scale_rule rule = scale_rule::floor) {
  if constexpr (!F::scale::has_tensor_scale) {
    (void)xs, (void)rule;
    return {};
  } else {
    float amax = 0.0f;
    for (const auto& x : xs)
      for (std::size_t r = 0; r < x.rows; ++r)
        for (std::size_t c = 0; c < x.cols; ++c) {
          const float a = std::fabs(x(r, c));
          if (std::isfinite(a) && a > amax) amax = a;
        }
    return F::scale::template tensor_scale<typename F::element>(amax, rule);
  }
}

// Scale (and zero point) of one block.
template <format_type F>
block_params choose_block_params(std::span<const float> block, std::span<const float> weights = {},
                                 const quant_options& opt = {}, const tensor_params& t = {}) {
  return F::scale::template choose<typename F::element>(block, weights, opt, t);
}

namespace detail {

inline void check_weights(const quant_options& opt, std::size_t cols) {
  if (!opt.column_weights.empty() && opt.column_weights.size() != cols)
    throw error("quant_options::column_weights has " + std::to_string(opt.column_weights.size()) +
                " entries for a matrix of " + std::to_string(cols) + " columns");
}
// The options as F can run them: column weights of the right length, a scale rule F's scale
// encoding has.
template <format_type F>
void check_options(const quant_options& opt, std::size_t cols) {
  check_weights(opt, cols);
  if (!scale_supports<typename F::scale>(opt.scale_rule))
    throw error("scale rule four_over_six (4/6) needs a UE4M3 block scale (nvfp4), which " +
                std::string(format_traits<F>::name) + " does not have");
}

// Calls fn(row, block index, first column, values, params) for every block of x.
template <format_type F, class Fn>
void for_each_block(matrix_view<const float> x, const quant_options& opt, const tensor_params& t, Fn&& fn) {
  check_options<F>(opt, x.cols);
  const std::size_t bl = block_length<F>(x.cols);
  if (bl == 0) return;
  std::vector<float> buf(x.row_contiguous() ? 0 : bl);
  for (std::size_t r = 0; r < x.rows; ++r) {
    for (std::size_t c0 = 0, b = 0; c0 < x.cols; c0 += bl, ++b) {
      const std::size_t len = std::min(bl, x.cols - c0);
      std::span<const float> v;
      if (x.row_contiguous()) {
        v = std::span<const float>(x.row(r) + c0, len);
      } else {
        for (std::size_t i = 0; i < len; ++i) buf[i] = x(r, c0 + i);
        v = std::span<const float>(buf.data(), len);
      }
      const std::span<const float> w = opt.column_weights.empty() ? std::span<const float>{}
                                                                  : opt.column_weights.subspan(c0, len);
      fn(r, b, c0, v, choose_block_params<F>(v, w, opt, t));
    }
  }
}

template <class T>
void check_same_shape(matrix_view<const float> in, matrix_view<T> out, const char* what) {
  if (in.rows != out.rows || in.cols != out.cols)
    throw error(std::string(what) + ": output is " + std::to_string(out.rows) + "x" + std::to_string(out.cols) +
                " but input is " + std::to_string(in.rows) + "x" + std::to_string(in.cols));
}

}  // namespace detail

// The scalar oracle: exact midpoint comparisons in double, one element at a time.
namespace reference {

template <format_type F, class Layout = lsb_first_layout>
packed_matrix<F, Layout> quantize(matrix_view<const float> x, const quant_options& opt = {},
                                  const tensor_params* tensor = nullptr) {
  detail::check_options<F>(opt, x.cols);
  const tensor_params t = tensor ? *tensor : compute_tensor_params<F>(x, opt.scale_rule);
  packed_matrix<F, Layout> q(x.rows, x.cols, t);
  detail::for_each_block<F>(x, opt, t, [&](std::size_t r, std::size_t b, std::size_t c0, std::span<const float> v,
                                           const block_params& p) {
    q.set_params(r, b, p);
    for (std::size_t i = 0; i < v.size(); ++i) q.set_code(r, c0 + i, encode_element<typename F::element>(v[i], p, opt));
  });
  return q;
}

template <format_type F, class Layout>
void dequantize(const packed_matrix<F, Layout>& q, matrix_view<float> out) {
  if (out.rows != q.rows() || out.cols != q.cols())
    throw error("dequantize: output is " + std::to_string(out.rows) + "x" + std::to_string(out.cols) +
                " but the packed matrix is " + std::to_string(q.rows()) + "x" + std::to_string(q.cols()));
  const std::size_t bl = q.block_length();
  for (std::size_t r = 0; r < q.rows(); ++r)
    for (std::size_t c0 = 0, b = 0; c0 < q.cols(); c0 += bl, ++b) {
      const block_params p = q.params(r, b);
      for (std::size_t c = c0; c < std::min(c0 + bl, q.cols()); ++c)
        out(r, c) = decode_element<typename F::element>(q.code(r, c), p);
    }
}

template <format_type F, class Layout>
std::vector<float> dequantize(const packed_matrix<F, Layout>& q) {
  std::vector<float> out(q.rows() * q.cols());
  reference::dequantize(q, matrix_view<float>(out.data(), q.rows(), q.cols()));
  return out;
}

// Quantize then dequantize without materializing the packed form. `out` may alias `in`.
template <format_type F>
void fake_quant(matrix_view<const float> in, matrix_view<float> out, const quant_options& opt = {},
                const tensor_params* tensor = nullptr) {
  detail::check_same_shape(in, out, "fake_quant");
  detail::check_options<F>(opt, in.cols);
  const tensor_params t = tensor ? *tensor : compute_tensor_params<F>(in, opt.scale_rule);
  std::vector<float> tmp;
  detail::for_each_block<F>(in, opt, t, [&](std::size_t r, std::size_t, std::size_t c0, std::span<const float> v,
                                            const block_params& p) {
    tmp.resize(v.size());  // v may alias out: compute first, then store
    for (std::size_t i = 0; i < v.size(); ++i)
      tmp[i] = decode_element<typename F::element>(encode_element<typename F::element>(v[i], p, opt), p);
    for (std::size_t i = 0; i < v.size(); ++i) out(r, c0 + i) = tmp[i];
  });
}

}  // namespace reference

// `tensor`: the second-level (NVFP4 tensor) scale to use instead of x's own, e.g. one shared by
// linears an engine fuses (q/k/v, gate/up), as ModelOpt and TensorRT-LLM require.
template <format_type F, class Layout = lsb_first_layout>
packed_matrix<F, Layout> quantize(matrix_view<const float> x, const quant_options& opt = {},
                                  const tensor_params* tensor = nullptr) {
  if (!kernel::can_quantize<F, Layout>(opt)) return reference::quantize<F, Layout>(x, opt, tensor);
  detail::check_options<F>(opt, x.cols);
  packed_matrix<F, Layout> q(x.rows, x.cols, tensor ? *tensor : kernel::tensor_params_of<F>(x, opt.scale_rule));
  kernel::quantize_into(x, q, opt);
  return q;
}

// Quantizes into an existing packed matrix of x's shape, reusing its storage (no allocation
// on the fast path). Same result as `q = quantize<F, Layout>(x, opt)`.
template <format_type F, class Layout>
void quantize_into(matrix_view<const float> x, packed_matrix<F, Layout>& q, const quant_options& opt = {}) {
  if (q.rows() != x.rows || q.cols() != x.cols)
    throw error("quantize_into: the packed matrix is " + std::to_string(q.rows()) + "x" + std::to_string(q.cols()) +
                " but the input is " + std::to_string(x.rows) + "x" + std::to_string(x.cols));
  if (!kernel::can_quantize<F, Layout>(opt)) {
    q = reference::quantize<F, Layout>(x, opt);
    return;
  }
  detail::check_options<F>(opt, x.cols);
  q.set_tensor(kernel::tensor_params_of<F>(x, opt.scale_rule));
  kernel::quantize_into(x, q, opt);
}

// 16-bit inputs (converted exactly to float; same result as quantizing the float values).
template <format_type F, class Layout = lsb_first_layout, class T>
  requires(std::is_same_v<T, f16> || std::is_same_v<T, bf16>)
packed_matrix<F, Layout> quantize(matrix_view<const T> x, const quant_options& opt = {}) {
  if (!kernel::can_quantize<F, Layout>(opt)) {
    std::vector<float> buf(x.size());
    for (std::size_t r = 0; r < x.rows; ++r)
      for (std::size_t c = 0; c < x.cols; ++c) buf[r * x.cols + c] = x(r, c).to_float();
    return reference::quantize<F, Layout>(matrix_view<const float>(buf.data(), x.rows, x.cols), opt);
  }
  detail::check_options<F>(opt, x.cols);
  packed_matrix<F, Layout> q(x.rows, x.cols, kernel::tensor_params_of<F>(x, opt.scale_rule));
  kernel::quantize_into(x, q, opt);
  return q;
}
template <format_type F, class Layout = lsb_first_layout, class T>
  requires(std::is_same_v<T, f16> || std::is_same_v<T, bf16>)
packed_matrix<F, Layout> quantize(matrix_view<T> x, const quant_options& opt = {}) {
  return quantize<F, Layout>(matrix_view<const T>(x), opt);
}

template <format_type F, class Layout>
void dequantize(const packed_matrix<F, Layout>& q, matrix_view<float> out) {
  if (!kernel::can_dequantize<F, Layout>()) {
    reference::dequantize(q, out);
  } else {
    if (out.rows != q.rows() || out.cols != q.cols())
      throw error("dequantize: output is " + std::to_string(out.rows) + "x" + std::to_string(out.cols) +
                  " but the packed matrix is " + std::to_string(q.rows()) + "x" + std::to_string(q.cols()));
    kernel::dequantize_into(q, out);
  }
}

template <format_type F, class Layout>
std::vector<float> dequantize(const packed_matrix<F, Layout>& q) {
  std::vector<float> out(q.rows() * q.cols());
  dequantize(q, matrix_view<float>(out.data(), q.rows(), q.cols()));
  return out;
}

// Quantize then dequantize without materializing the packed form. `out` may alias `in`.
template <format_type F>
void fake_quant(matrix_view<const float> in, matrix_view<float> out, const quant_options& opt = {},
                const tensor_params* tensor = nullptr) {
  if (!kernel::can_quantize<F>(opt) || (tensor && !(std::isfinite(tensor->scale) && tensor->scale > 0.0f)))
    return reference::fake_quant<F>(in, out, opt, tensor);
  detail::check_same_shape(in, out, "fake_quant");
  detail::check_options<F>(opt, in.cols);
  const tensor_params t = tensor ? *tensor : kernel::tensor_params_of<F>(in, opt.scale_rule);
  kernel::fake_quant_into<F>(in, out, opt, t);
}

// 16-bit inputs, FP32 output (same result as fake-quantizing the float values).
template <format_type F, class T>
  requires(std::is_same_v<T, f16> || std::is_same_v<T, bf16>)
void fake_quant(matrix_view<const T> in, matrix_view<float> out, const quant_options& opt = {},
                const tensor_params* tensor = nullptr) {
  if (!kernel::can_quantize<F>(opt) || (tensor && !(std::isfinite(tensor->scale) && tensor->scale > 0.0f))) {
    std::vector<float> buf(in.size());
    for (std::size_t r = 0; r < in.rows; ++r)
      for (std::size_t c = 0; c < in.cols; ++c) buf[r * in.cols + c] = in(r, c).to_float();
    return reference::fake_quant<F>(matrix_view<const float>(buf.data(), in.rows, in.cols), out, opt, tensor);
  }
  if (in.rows != out.rows || in.cols != out.cols)
    throw error("fake_quant: output is " + std::to_string(out.rows) + "x" + std::to_string(out.cols) + " but input is " +
                std::to_string(in.rows) + "x" + std::to_string(in.cols));
  detail::check_options<F>(opt, in.cols);
  const tensor_params t = tensor ? *tensor : kernel::tensor_params_of<F>(in, opt.scale_rule);
  kernel::fake_quant_into<F>(in, out, opt, t);
}

// In place on a row-major buffer of `cols` columns.
template <format_type F>
void fake_quant(std::span<float> data, std::size_t cols, const quant_options& opt = {}) {
  if (cols == 0 || data.size() % cols != 0)
    throw error("fake_quant: " + std::to_string(data.size()) + " values do not form rows of " + std::to_string(cols));
  matrix_view<float> v(data.data(), data.size() / cols, cols);
  fake_quant<F>(v, v, opt);
}

}  // namespace mxq
