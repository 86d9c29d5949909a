// Compiles and runs the documented example of <mxq/recipe.hpp> with only that header included.
#include <mxq/recipe.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const mxq::row_matrix_f w_q = mxq::row_matrix_f::Random(64, 64) * 0.05f, w_k = mxq::row_matrix_f::Random(32, 64) * 0.05f,
                          w_v = mxq::row_matrix_f::Random(32, 64) * 0.05f;
  namespace st = mxq::step;
  std::vector<mxq::row_matrix_f> linears = {w_q, w_k, w_v};  // [out_i, in], sharing the input
  mxq::row_matrix_f calib = mxq::row_matrix_f::Random(256, 64);  // [tokens, in]
  auto r = mxq::quantize_group<mxq::mxint4>(linears, calib,
                                            mxq::recipe{st::smoothquant{0.5f}, st::awq{}, st::gptq{},
                                                        st::act<mxq::mxint8>{}});

  CHECK(r.weights.size() == 3 && r.packed.size() == 3 && r.scales.size() == 64);
  CHECK(std::isfinite(r.output_error) && r.output_error < 0.2);
  for (float s : r.scales) CHECK(s > 0.0f);
  return 0;
}
