// Compiles and runs the documented example of <mxq/smoothquant.hpp> with only that header included.
#include <mxq/smoothquant.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t in = 64, out = 64, tokens = 128;
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * in), wq(out * in), wk(out * in), wv(out * in), gamma(in, 1.0f), beta(in, 0.5f);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t j = 0; j < in; ++j) x[t * in + j] = dist(gen) * (j % 8 == 0 ? 20.0f : 1.0f);  // outlier channels
  for (auto* w : {&wq, &wk, &wv})
    for (float& v : *w) v = 0.05f * dist(gen);
  const mxq::matrix_view<const float> X(x.data(), tokens, in);
  const mxq::matrix_view<const float> Wq(wq.data(), out, in), Wk(wk.data(), out, in), Wv(wv.data(), out, in);
  const std::vector<mxq::matrix_view<float>> weights = {{wq.data(), out, in}, {wk.data(), out, in}, {wv.data(), out, in}};

  const mxq::matrix_view<const float> group[] = {Wq, Wk, Wv};
  std::vector<float> s = mxq::smoothquant_scales(mxq::collect_stats(X).max_abs(), group, 0.5f);
  auto r = mxq::smoothquant_search<mxq::mxint8>(X, group, {.alpha_grid = mxq::default_alpha_grid(),
                                                           .act = mxq::make_activation_quant<mxq::mxint8>()});
  const float wq0 = wq[0];
  for (auto W : weights) mxq::scale_columns(W, r.scales);
  mxq::fold_into_norm(gamma, beta, r.scales);

  CHECK(s.size() == in && r.scales.size() == in);
  for (std::size_t j = 0; j < in; ++j) CHECK(s[j] > 0.0f && std::isfinite(s[j]) && r.scales[j] > 0.0f);
  CHECK(s[0] > s[1]);  // an outlier channel gets a larger smoothing factor
  CHECK(r.alphas.size() == 21 && r.losses.size() == 21 && std::isfinite(r.loss) && r.loss >= 0.0);
  CHECK(r.alpha >= 0.0f && r.alpha <= 1.0f);
  CHECK(std::fabs(wq[0] - wq0 * r.scales[0]) <= 1e-6f * std::fabs(wq0 * r.scales[0]));
  CHECK(std::fabs(gamma[0] * r.scales[0] - 1.0f) < 1e-5f && std::fabs(beta[0] * r.scales[0] - 0.5f) < 1e-5f);
  return 0;
}
