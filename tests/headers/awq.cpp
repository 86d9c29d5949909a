// Compiles and runs the documented example of <mxq/awq.hpp> with only that header included.
#include <mxq/awq.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t in = 64, out = 64, tokens = 128;
  std::mt19937 gen(8);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * in), wg(out * in), wu(out * in), gamma(in, 1.0f);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t j = 0; j < in; ++j) x[t * in + j] = dist(gen) * (j % 8 == 0 ? 10.0f : 1.0f);
  for (float& v : wg) v = 0.05f * dist(gen);
  for (float& v : wu) v = 0.05f * dist(gen);
  const mxq::matrix_view<const float> X(x.data(), tokens, in), Wgate(wg.data(), out, in), Wup(wu.data(), out, in);

  const mxq::matrix_view<const float> group[] = {Wgate, Wup};
  auto r = mxq::awq_transform<mxq::mxfp4>(X, group);
  mxq::fold_into_norm(gamma, {}, r.scale.scales);
  auto q = mxq::quantize<mxq::mxfp4>(mxq::view_of(r.weights[0]));

  CHECK(r.scale.scales.size() == in && r.weights.size() == 2 && r.clips.size() == 2);
  CHECK(r.scale.ratios.size() == 20 && r.scale.losses.size() == 20 && std::isfinite(r.scale.loss));
  CHECK(r.scale.loss <= r.scale.losses[0]);  // ratio 0 (s = 1) is plain RTN: never worse than it
  for (std::size_t j = 0; j < in; ++j) CHECK(r.scale.scales[j] > 0.0f && std::isfinite(r.scale.scales[j]));
  CHECK(std::fabs(gamma[3] * r.scale.scales[3] - 1.0f) < 1e-5f);
  CHECK(static_cast<std::size_t>(r.weights[0].rows()) == out && static_cast<std::size_t>(r.weights[0].cols()) == in);
  CHECK(r.clips[0].rows == out && r.clips[0].err_best <= r.clips[0].err_noclip);
  CHECK(q.rows() == out && q.cols() == in);
  return 0;
}
