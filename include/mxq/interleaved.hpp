// 8-row interleaved copies of 4-bit packed weights, for batch-1 products (an engine's decode step).
//
//   auto w = mxq::quantize<mxq::mxfp4>(W);            // packed weights [out, in] (quantize.hpp)
//   const mxq::interleaved_matrix<mxq::mxfp4> wi(w);   // once, when the model loads
//   mxq::gemv(wi, x, y);                               // y = W x
//   mxq::gemm(wi, X, Y);                               // Y = X W^T, any batch
//
// What llama.cpp's CPU repack does for MXFP4 (mxfp4x8): rows in groups of 8, each weight block's
// codes of the 8 rows side by side, so one load of activations feeds 8 rows and one FMA applies
// 8 rows' block scales; the same 4.25 bits per weight as the packed matrix, read as one stream per
// group (layout: kernel/interleaved.hpp). For the 4-bit formats of the int8 path (MXFP4, MXINT4,
// NVFP4; both code layouts).
//
// Results: activations quantized per weight block to int8 as the packed matrix's int8 path does
// (gemm.hpp: d = amax/127, exact integer block dots), then one FP32 FMA per block into one
// accumulator per row. Hence a row's result does not depend on the batch size, the token's
// position in the batch, the thread count or the ISA (the scalar oracle, which CPUs without AVX2
// run, gives the same bits), and equals gemm() on the packed matrix for batches of 3 tokens or
// more (its 8-row tiles do the same arithmetic). The packed matrix's own batch-1 kernel sums in
// a different order (within the same documented error bound). Activations are always int8 here:
// activation_precision::f32 is refused (use the packed matrix).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "config.hpp"
#include "format.hpp"
#include "kernel/interleaved.hpp"
#include "kernel/thread.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quantize.hpp"  // the example's mxq::quantize

namespace mxq {

template <format_type F, class Layout = lsb_first_layout>
class interleaved_matrix {
  static_assert(kernel::is_w4<F, Layout>,
                "interleaved_matrix: 4-bit formats of the int8 path only (MXFP4, MXINT4, NVFP4 and formats like them)");

 public:
  static constexpr std::size_t group_rows = kernel::detail::x8_rows;

  interleaved_matrix() = default;
  explicit interleaved_matrix(const packed_matrix<F, Layout>& w)
      : rows_(w.rows()), cols_(w.cols()), tensor_(w.tensor()) {
    constexpr std::size_t B = F::block_size;
    kp_ = ((cols_ + B - 1) / B * B + 63) / 64 * 64;
    nb_ = kp_ / B;
    const std::size_t groups = (rows_ + group_rows - 1) / group_rows;
    codes_.resize(groups * nb_ * kernel::detail::x8_block_bytes<F>);
    scales_.resize(groups * nb_ * group_rows + 8);  // + 8: readable past the last group
    if (groups != 0) kernel::detail::interleave_rows(w, kp_, codes_.data(), scales_.data());
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  const tensor_params& tensor() const noexcept { return tensor_; }
  // Blocks per row as stored (whole 64-code chunks) and the bytes of one group.
  std::size_t stored_blocks() const noexcept { return nb_; }
  std::size_t group_code_bytes() const noexcept { return nb_ * kernel::detail::x8_block_bytes<F>; }
  const std::uint8_t* group_codes(std::size_t g) const noexcept { return codes_.data() + g * group_code_bytes(); }
  const std::uint8_t* group_scales(std::size_t g) const noexcept { return scales_.data() + g * nb_ * group_rows; }
  std::size_t groups() const noexcept { return (rows_ + group_rows - 1) / group_rows; }
  std::size_t storage_bytes() const noexcept { return codes_.size() + scales_.size(); }

 private:
  std::size_t rows_ = 0, cols_ = 0, kp_ = 0, nb_ = 0;
  tensor_params tensor_{};
  std::vector<std::uint8_t> codes_, scales_;
};

namespace detail {

template <class F, class Layout, class T>
void interleaved_gemm(const interleaved_matrix<F, Layout>& w, matrix_view<const T> x, matrix_view<float> y,
                      const kernel::gemm_options& opt, const char* what) {
  if (x.cols != w.cols() || y.rows != x.rows || y.cols != w.rows())
    throw error(std::string(what) + ": weights are " + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) +
                ", activations " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + ", output " +
                std::to_string(y.rows) + "x" + std::to_string(y.cols) + " (expected activations Nx" +
                std::to_string(w.cols()) + " and output Nx" + std::to_string(w.rows()) + ")");
  if (opt.activations == kernel::activation_precision::f32)
    throw error(std::string(what) + ": the interleaved layout runs int8 activations only (activation_precision::f32 "
                "needs the packed_matrix)");
  const std::size_t batch = x.rows, rows = w.rows();
  if (batch == 0 || rows == 0) return;
  alignas(32) float lut[256];
  kernel::detail::scale_lut<F>(lut, w.tensor());
  const bool fast = kernel::avx2_available && kernel::avx2_enabled();
  [[maybe_unused]] const bool vnni = kernel::vnni_enabled();
  kernel::detail::q8_rows a;
#if MXQ_KERNEL_AVX2
  if (fast) a = kernel::detail::quantize_q8<F, Layout>(x);
#endif
  if (!fast) a = kernel::detail::quantize_q8_scalar<F, Layout>(x);
  const std::size_t nb = w.stored_blocks(), G = w.group_rows;
  // 8 groups (64 rows, ~140 KB of 4096 4-bit codes) per chunk, handed out as threads finish
  // (kernel::parallel_chunks), as the packed matrix's batch-1 kernel does.
  kernel::parallel_chunks(w.groups(), opt.threads, 8, [&](std::size_t g0, std::size_t g1) {
    alignas(32) float out[3][kernel::detail::x8_rows];
    for (std::size_t g = g0; g < g1; ++g) {
      const std::size_t r0 = g * G, nr = std::min(G, rows - r0);
      auto emit = [&](std::size_t t, std::size_t nt) {
        for (std::size_t i = 0; i < nt; ++i)
          for (std::size_t r = 0; r < nr; ++r) y(t + i, r0 + r) = out[i][r];
      };
      std::size_t t = 0;
#if MXQ_KERNEL_AVX2
      if (fast) {
        const float ts = w.tensor().scale;
        const std::uint8_t *cg = w.group_codes(g), *sg = w.group_scales(g);
        auto tile = [&](auto ntc) {
          constexpr int NT = decltype(ntc)::value;
          if (vnni) kernel::detail::x8_group_vnni<F, NT>(cg, sg, nb, a, t, lut, ts, out);
          else kernel::detail::x8_group_avx2<F, NT>(cg, sg, nb, a, t, lut, ts, out);
          emit(t, NT);
          t += NT;
        };
        while (t + 3 <= batch) tile(std::integral_constant<int, 3>{});
        if (batch - t == 2) tile(std::integral_constant<int, 2>{});
        if (batch - t == 1) tile(std::integral_constant<int, 1>{});
        continue;
      }
#endif
      for (; t < batch; ++t) kernel::detail::x8_group_scalar<F>(w.group_codes(g), w.group_scales(g), nb, a, t, lut, out[0]), emit(t, 1);
    }
  });
}

}  // namespace detail

// Y[t, r] = sum_k W[r, k] X[t, k]: X is [batch, in], Y is [batch, out] (any strides).
template <format_type F, class Layout>
void gemm(const interleaved_matrix<F, Layout>& w, matrix_view<const float> x, matrix_view<float> y, const kernel::gemm_options& opt = {}) {
  detail::interleaved_gemm(w, x, y, opt, "gemm");
}
template <format_type F, class Layout>
void gemm(const interleaved_matrix<F, Layout>& w, matrix_view<const bf16> x, matrix_view<float> y, const kernel::gemm_options& opt = {}) {
  detail::interleaved_gemm(w, x, y, opt, "gemm");
}

// y[r] = sum_k W[r, k] x[k].
template <format_type F, class Layout>
void gemv(const interleaved_matrix<F, Layout>& w, std::span<const float> x, std::span<float> y, const kernel::gemm_options& opt = {}) {
  detail::interleaved_gemm(w, matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), opt, "gemv");
}
template <format_type F, class Layout>
void gemv(const interleaved_matrix<F, Layout>& w, std::span<const bf16> x, std::span<float> y, const kernel::gemm_options& opt = {}) {
  detail::interleaved_gemm(w, matrix_view<const bf16>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), opt, "gemv");
}

}  // namespace mxq
