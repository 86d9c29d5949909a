// Products with packed MX weights, dequantized on the fly: y = W x (gemv) and Y = X W^T (gemm).
//
//   auto w = mxq::quantize<mxq::mxfp4>(W);   // packed weights [out, in] (quantize.hpp)
//   mxq::gemv(w, x, y)        w: packed_matrix<F> [out, in]; x: in values; y: out values
//   mxq::gemm(w, X, Y)        X: [batch, in] rows (tokens); Y: [batch, out]
//
// Activations are FP32 or bfloat16. gemm_options::threads splits the output rows over
// std::threads (the caller's thread count; default 1). gemm_options::activations picks how the
// activations meet the weights:
//   f32       FP32 FMAs on decoded weights. Error vs. the FP32 product of the dequantized matrix
//             (mxq::dequantize(w) * x in exact arithmetic): FP32 summation (and NVFP4's scale
//             rounded to FP32) only: |y - y_ref| <= (K + 2) * 2^-23 * sum_k |W[r,k] x[k]|
//             (the tested bound; typical errors are far smaller).
//   int8      4-bit formats (MXFP4, MXINT4, NVFP4): activations quantized per weight block to int8
//             with an FP32 scale d = amax/127 (Q8-style, round to nearest even), exact integer
//             block dots. Error: |y - y_ref| <= sum_blocks (d_b / 2) * sum_{k in b} |W[r,k]|
//             + the FP32 term above (tested bound); typically ~0.3 % of |W| |x|, well below the
//             4-bit weights' own quantization error.
//   automatic int8 where the format has it, else f32 (the default).
// Formats without SIMD kernels (the GPTQ-style INT baselines) decode each row with the scalar
// oracle and use FP32 dot products.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "format.hpp"
#include "format/block.hpp"
#include "kernel/gemv.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quant/element_quant.hpp"
#include "quantize.hpp"

namespace mxq {

using kernel::activation_precision;
using kernel::gemm_options;

namespace detail {

template <class F, class Layout, class T>
void check_gemm_shapes(const packed_matrix<F, Layout>& w, matrix_view<const T> x, matrix_view<float> y, const char* what) {
  if (x.cols != w.cols() || y.rows != x.rows || y.cols != w.rows())
    throw error(std::string(what) + ": weights are " + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) +
                ", activations " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + ", output " +
                std::to_string(y.rows) + "x" + std::to_string(y.cols) + " (expected activations Nx" +
                std::to_string(w.cols()) + " and output Nx" + std::to_string(w.rows()) + ")");
}

// Scalar fallback: decode each weight row with the oracle, FP32 dot products.
template <class F, class Layout, class T>
void gemm_scalar(const packed_matrix<F, Layout>& w, matrix_view<const T> x, matrix_view<float> y, const gemm_options& opt) {
  std::vector<float> xf(x.rows * x.cols);
  for (std::size_t t = 0; t < x.rows; ++t)
    for (std::size_t c = 0; c < x.cols; ++c) xf[t * x.cols + c] = kernel::to_f32(x(t, c));
  kernel::parallel_ranges(w.rows(), opt.threads, 16, [&](std::size_t r0, std::size_t r1) {
    std::vector<float> row(w.cols());
    const std::size_t bl = w.block_length();
    for (std::size_t r = r0; r < r1; ++r) {
      for (std::size_t c0 = 0, b = 0; c0 < w.cols(); c0 += bl, ++b) {
        const block_params p = w.params(r, b);
        for (std::size_t c = c0; c < std::min(c0 + bl, w.cols()); ++c)
          row[c] = decode_element<typename F::element>(w.code(r, c), p);
      }
      for (std::size_t t = 0; t < x.rows; ++t) {
        float acc = 0.0f;
        const float* xr = xf.data() + t * x.cols;
        for (std::size_t c = 0; c < w.cols(); ++c) acc += row[c] * xr[c];
        y(t, r) = acc;
      }
    }
  });
}

template <class F, class Layout, class T>
void gemm_dispatch(const packed_matrix<F, Layout>& w, matrix_view<const T> x, matrix_view<float> y, const gemm_options& opt) {
  if constexpr (kernel::has_fast_gemv<F, Layout>) {
    if (kernel::avx2_enabled()) return kernel::gemm_into(w, x, y, opt);
  }
  gemm_scalar(w, x, y, opt);
}

}  // namespace detail

// Y[t, r] = sum_k W[r, k] X[t, k]: X is [batch, in], Y is [batch, out] (any strides).
template <format_type F, class Layout>
void gemm(const packed_matrix<F, Layout>& w, matrix_view<const float> x, matrix_view<float> y, const gemm_options& opt = {}) {
  detail::check_gemm_shapes(w, x, y, "gemm");
  detail::gemm_dispatch(w, x, y, opt);
}
template <format_type F, class Layout>
void gemm(const packed_matrix<F, Layout>& w, matrix_view<const bf16> x, matrix_view<float> y, const gemm_options& opt = {}) {
  detail::check_gemm_shapes(w, x, y, "gemm");
  detail::gemm_dispatch(w, x, y, opt);
}

// y[r] = sum_k W[r, k] x[k].
template <format_type F, class Layout>
void gemv(const packed_matrix<F, Layout>& w, std::span<const float> x, std::span<float> y, const gemm_options& opt = {}) {
  gemm(w, matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), opt);
}
template <format_type F, class Layout>
void gemv(const packed_matrix<F, Layout>& w, std::span<const bf16> x, std::span<float> y, const gemm_options& opt = {}) {
  gemm(w, matrix_view<const bf16>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), opt);
}

}  // namespace mxq
