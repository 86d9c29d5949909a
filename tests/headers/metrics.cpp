// Compiles and runs the documented example of <mxq/metrics.hpp> with only that header included.
#include <mxq/metrics.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 64, in = 64, tokens = 128;
  std::mt19937 gen(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(out * in), q(out * in), x(tokens * in), xq(tokens * in), h(in * in, 0.0f);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = dist(gen), q[i] = w[i] + 0.01f * dist(gen);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = dist(gen), xq[i] = x[i] + 0.01f * dist(gen);
  for (std::size_t i = 0; i < in; ++i) h[i * in + i] = 2.0f;  // H = 2 I
  const mxq::matrix_view<const float> W(w.data(), out, in), Q(q.data(), out, in), X(x.data(), tokens, in),
      Xq(xq.data(), tokens, in), H(h.data(), in, in);

  const double e = mxq::relative_output_error(W, Q, X);
  const double eq = mxq::relative_output_error(W, Q, X, Xq);
  const double hw = mxq::hessian_weighted_error(W, Q, H);

  // Q = W + 0.01 N(0, 1): relative output error about 1e-4, and more with noisy inputs too.
  CHECK(std::isfinite(e) && e > 1e-5 && e < 1e-3);
  CHECK(eq > e && eq < 1e-2);
  CHECK(mxq::relative_output_error(W, W, X) == 0.0);
  double frob = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i) frob += static_cast<double>(q[i] - w[i]) * (q[i] - w[i]);
  CHECK(std::fabs(hw - 2.0 * frob) < 1e-6 * frob);  // tr(D (2I) D^T) = 2 ||D||^2
  return 0;
}
