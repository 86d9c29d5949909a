// The work both translation units of the two-TU test do: every kernel entry point on a few
// formats, results appended as raw bytes (codes, scales, FP32 outputs) so the TUs can be
// compared bit for bit. Included by isa_base.cpp and isa_avx2.cpp, which differ only in -m flags.
#pragma once
#include <mxq/gemm.hpp>
#include <mxq/interleaved.hpp>
#include <mxq/quantize.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace isa_test {

struct result {
  std::string isa;             // mxq::kernel::active_isa() as this TU sees it
  bool fast = false;           // can_quantize<mxfp4>: the SIMD kernels run
  std::vector<std::uint8_t> bytes;
};

inline void put(std::vector<std::uint8_t>& out, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

template <class F>
void run_format(const std::vector<float>& w, std::size_t rows, std::size_t cols, const std::vector<float>& x,
                std::size_t batch, std::vector<std::uint8_t>& out) {
  const mxq::matrix_view<const float> W(w.data(), rows, cols);
  const auto q = mxq::quantize<F>(W);
  put(out, q.code_bytes().data(), q.code_bytes().size());
  put(out, q.scale_data().data(), q.scale_data().size());
  const std::vector<float> d = mxq::dequantize(q);
  put(out, d.data(), d.size() * sizeof(float));
  std::vector<float> fq(w.size());
  mxq::fake_quant<F>(W, mxq::matrix_view<float>(fq.data(), rows, cols));
  put(out, fq.data(), fq.size() * sizeof(float));
  for (auto act : {mxq::activation_precision::automatic, mxq::activation_precision::f32}) {
    for (int threads : {1, 2}) {
      std::vector<float> y(rows), ys(batch * rows);
      mxq::gemv(q, std::span<const float>(x.data(), cols), std::span<float>(y), {.threads = threads, .activations = act});
      mxq::gemm(q, mxq::matrix_view<const float>(x.data(), batch, cols), mxq::matrix_view<float>(ys.data(), batch, rows),
                {.threads = threads, .activations = act});
      put(out, y.data(), y.size() * sizeof(float));
      put(out, ys.data(), ys.size() * sizeof(float));
    }
  }
  if constexpr (mxq::kernel::is_w4<F, mxq::lsb_first_layout>) {  // the 8-row interleaved layout
    const mxq::interleaved_matrix<F> wi(q);
    for (int threads : {1, 2}) {
      std::vector<float> y(rows), ys(batch * rows);
      mxq::gemv(wi, std::span<const float>(x.data(), cols), std::span<float>(y), {.threads = threads});
      mxq::gemm(wi, mxq::matrix_view<const float>(x.data(), batch, cols), mxq::matrix_view<float>(ys.data(), batch, rows),
                {.threads = threads});
      put(out, y.data(), y.size() * sizeof(float));
      put(out, ys.data(), ys.size() * sizeof(float));
    }
  }
}

inline result run(const std::vector<float>& w, std::size_t rows, std::size_t cols, const std::vector<float>& x,
                  std::size_t batch) {
  result r;
  r.isa = mxq::kernel::isa_name(mxq::kernel::active_isa());
  r.fast = mxq::kernel::can_quantize<mxq::mxfp4>({});
  run_format<mxq::mxfp4>(w, rows, cols, x, batch, r.bytes);
  run_format<mxq::mxint4>(w, rows, cols, x, batch, r.bytes);
  run_format<mxq::nvfp4>(w, rows, cols, x, batch, r.bytes);
  run_format<mxq::mxfp8_e4m3>(w, rows, cols, x, batch, r.bytes);
  run_format<mxq::mxfp6_e2m3>(w, rows, cols, x, batch, r.bytes);
  return r;
}

}  // namespace isa_test
