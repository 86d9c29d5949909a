// Compiles and runs the documented example of <mxq/qep.hpp> with only that header included.
#include <mxq/qep.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

int main() {
  const std::size_t in = 32, out = 8, tokens = 64;
  std::vector<float> x = normal_values(tokens * in, 1), xq = x, w = normal_values(out * in, 2);
  const std::vector<float> noise = normal_values(tokens * in, 3, 0.1f);
  for (std::size_t i = 0; i < xq.size(); ++i) xq[i] += noise[i];
  const std::vector<float> w0 = w;
  std::vector<std::pair<mxq::matrix_view<const float>, mxq::matrix_view<const float>>> batches = {
      {{x.data(), tokens, in}, {xq.data(), tokens, in}}};
  mxq::matrix_view<float> W(w.data(), out, in);

  mxq::qep_accumulator acc(in);
  for (auto& [xb, xqb] : batches) acc.add(xb, xqb);
  mxq::qep_correct(W, acc, {.alpha = 0.5f, .damp = 1.0f});

  CHECK(acc.tokens() == tokens && acc.size() == in);
  double moved = 0;
  for (std::size_t i = 0; i < w.size(); ++i) moved += std::abs(w[i] - w0[i]);
  CHECK(moved > 0 && std::isfinite(moved));
  return 0;
}
