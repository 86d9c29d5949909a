// Compiles and runs the documented example of <mxq/refine.hpp> with only that header included.
#include <mxq/refine.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cstddef>
#include <vector>

int main() {
  const std::size_t in = 64, out = 8, tokens = 256;
  const std::vector<float> x = normal_values(tokens * in, 1), w = normal_values(out * in, 2, 0.1f);
  std::vector<float> h(in * in, 0.0f);  // XᵀX
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t i = 0; i < in; ++i)
      for (std::size_t j = 0; j < in; ++j) h[i * in + j] += x[t * in + i] * x[t * in + j];
  double mean_diag = 0;
  for (std::size_t i = 0; i < in; ++i) mean_diag += h[i * in + i] / in;
  // The quantization to refine: every block on scale 2^-4 with all codes 0.
  mxq::packed_matrix<mxq::mxfp4> packed(out, in);
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t b = 0; b < packed.blocks_per_row(); ++b) packed.set_params(r, b, mxq::e8m0_scale::from_exponent(-4));
  std::vector<float> deq(out * in, 0.0f);
  const mxq::matrix_view<const float> W(w.data(), out, in), H(h.data(), in, in);

  auto rep = mxq::refine_codes<mxq::mxfp4>(W, H, packed, deq, {.passes = 4, .damp = 0.01 * mean_diag});

  CHECK(rep.loss_after < 0.5 * rep.loss_before && rep.changed > 0);
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t c = 0; c < in; ++c)
      CHECK(mxq::decode_element<mxq::e2m1>(packed.code(r, c), packed.params(r, c / 32)) == deq[r * in + c]);
  return 0;
}
