// Calibration statistics and SmoothQuant: streaming statistics, named NaN errors, the scale rule,
// exact folding, the outlier-channel known answer and the alpha search.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/smoothquant.hpp>
#include <mxq/stats.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_smoothquant {

using mxq::matrix_view;
using mxq::row_matrix_f;
using Catch::Matchers::Contains;

namespace {

row_matrix_f randn(Eigen::Index r, Eigen::Index c, unsigned seed, float sd = 1.0f) {
  return mxq::test::randn<row_matrix_f>(r, c, seed, sd);
}

double rel_diff(const row_matrix_f& a, const row_matrix_f& b) {
  return static_cast<double>((a - b).norm() / b.norm());
}

row_matrix_f scaled_cols(row_matrix_f w, const std::vector<float>& s) {
  mxq::scale_columns(mxq::view_of(w), s);
  return w;
}
row_matrix_f divided_cols(row_matrix_f x, const std::vector<float>& s) {
  mxq::divide_columns(mxq::view_of(x), s);
  return x;
}

}  // namespace

TEST_CASE("activation_stats streams over batches like one pass", "[stats]") {
  const row_matrix_f x = randn(100, 8, 1);
  mxq::activation_stats one(8), two(8);
  one.add(x);
  two.add(matrix_view<const float>(x.data(), 37, 8));
  two.add(matrix_view<const float>(x.data() + 37 * 8, 63, 8));
  REQUIRE(two.tokens() == 100);
  REQUIRE(two.batches() == 2);
  for (std::size_t j = 0; j < 8; ++j) {
    const auto col = x.col(static_cast<Eigen::Index>(j));
    CHECK(one.max_abs()[j] == col.cwiseAbs().maxCoeff());
    CHECK(two.max_abs()[j] == one.max_abs()[j]);
    CHECK(two.mean_abs()[j] == Approx(col.cwiseAbs().mean()).epsilon(1e-6));
    CHECK(two.mean_sq()[j] == Approx(col.squaredNorm() / 100.0f).epsilon(1e-6));
  }
  mxq::activation_stats a, b;  // default-constructed: first batch fixes the width; merge
  a.add(matrix_view<const float>(x.data(), 50, 8));
  b.add(matrix_view<const float>(x.data() + 50 * 8, 50, 8));
  a.merge(b);
  for (std::size_t j = 0; j < 8; ++j) CHECK(a.mean_abs()[j] == Approx(one.mean_abs()[j]).epsilon(1e-6));
}

TEST_CASE("activation_stats rejects NaN/Inf naming the batch and row", "[stats]") {
  row_matrix_f x = randn(10, 4, 2);
  mxq::activation_stats s(4, "layers.3.mlp.down_proj");
  s.add(x);
  x(6, 2) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(s.add(x), Contains("layers.3.mlp.down_proj") && Contains("batch 1") && Contains("row 6") &&
                                    Contains("channel 2"));
  x(6, 2) = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_AS(s.add(x), mxq::error);
  CHECK(s.tokens() == 10);  // nothing accumulated from the bad batch
  REQUIRE_THROWS_WITH(s.add(randn(3, 5, 3)), Contains("5 channels"));
  REQUIRE_THROWS_AS(mxq::activation_stats(4).mean_abs(), mxq::error);
}

TEST_CASE("SmoothQuant scale rule", "[smoothquant]") {
  const std::vector<float> amax = {4.0f, 1.0f, 0.0f, 9.0f}, wmax = {1.0f, 4.0f, 1.0f, 0.0f};
  const auto s = mxq::smoothquant_scales(amax, wmax, 0.5f);
  CHECK(s[0] == Approx(2.0f));
  CHECK(s[1] == Approx(0.5f));
  CHECK(s[2] == Approx(1e-5f));                    // clamped below
  CHECK(s[3] == Approx(3.0f / std::sqrt(1e-5f)));  // weight max clamped to 1e-5
  const auto s1 = mxq::smoothquant_scales(amax, wmax, 1.0f);
  CHECK(s1[0] == Approx(4.0f));
  REQUIRE_THROWS_AS(mxq::smoothquant_scales(amax, wmax, 1.5f), mxq::error);
  // Column max over a group of linears
  row_matrix_f a = row_matrix_f::Zero(2, 3), b = row_matrix_f::Zero(3, 3);
  a(1, 0) = -5.0f, b(2, 0) = 3.0f, b(0, 1) = 2.0f;
  const matrix_view<const float> g[] = {mxq::view_of(a), mxq::view_of(b)};
  const auto wm = mxq::weight_column_max(g);
  CHECK(wm == std::vector<float>{5.0f, 2.0f, 1e-5f});
}

TEST_CASE("SmoothQuant shrinks an outlier channel's activation range by the expected factor", "[smoothquant]") {
  // |X| <= 1 except channel 5 whose max is 64; every weight column has max |w| = 1.
  row_matrix_f x = randn(256, 32, 3).cwiseMax(-1.0f).cwiseMin(1.0f);
  for (Eigen::Index j = 0; j < 32; ++j) x(0, j) = 1.0f;
  x.col(5) *= 64.0f;
  row_matrix_f w = randn(48, 32, 4).cwiseMax(-1.0f).cwiseMin(1.0f);
  for (Eigen::Index j = 0; j < 32; ++j) w(0, j) = -1.0f;
  const matrix_view<const float> g[] = {mxq::view_of(w)};
  const auto r = mxq::smoothquant_search<mxq::mxint8>(mxq::view_of(x), g);  // alpha 0.5, no search
  CHECK(r.alpha == 0.5f);
  // s_j = sqrt(max|X_j|) / sqrt(1): 8 for the outlier, 1 elsewhere
  for (std::size_t j = 0; j < 32; ++j) CHECK(r.scales[j] == Approx(j == 5 ? 8.0f : 1.0f));
  const row_matrix_f xs = divided_cols(x, r.scales);
  CHECK(xs.col(5).cwiseAbs().maxCoeff() == Approx(8.0f));  // 64 -> 8: shrunk by 8
  CHECK(xs.cwiseAbs().maxCoeff() == Approx(8.0f));
  const row_matrix_f ws = scaled_cols(w, r.scales);
  CHECK(ws.col(5).cwiseAbs().maxCoeff() == Approx(8.0f));  // migrated into the weights
  // alpha = 0.75: s = 64^0.75 = 22.63, range 64 -> 64^0.25 = 2.83
  mxq::smoothquant_options o;
  o.alpha = 0.75f;
  const auto r2 = mxq::smoothquant_search<mxq::mxint8>(mxq::view_of(x), g, o);
  CHECK(r2.scales[5] == Approx(std::pow(64.0f, 0.75f)));
}

TEST_CASE("SmoothQuant folding is exact without quantization", "[smoothquant][fold]") {
  const Eigen::Index T = 64, in = 96;
  row_matrix_f xhat = randn(T, in, 5);
  xhat.col(7) *= 30.0f;
  row_matrix_f q = randn(40, in, 6), k = randn(24, in, 7), v = randn(24, in, 8);
  std::vector<float> gamma(static_cast<std::size_t>(in)), beta(static_cast<std::size_t>(in));
  for (std::size_t j = 0; j < gamma.size(); ++j) gamma[j] = 0.5f + 0.01f * static_cast<float>(j), beta[j] = 0.1f;
  // X = xhat * gamma + beta (a LayerNorm's affine part)
  auto norm_out = [&](const std::vector<float>& gm, const std::vector<float>& bt) {
    row_matrix_f x = xhat;
    for (Eigen::Index t = 0; t < T; ++t)
      for (Eigen::Index j = 0; j < in; ++j)
        x(t, j) = xhat(t, j) * gm[static_cast<std::size_t>(j)] + bt[static_cast<std::size_t>(j)];
    return x;
  };
  const row_matrix_f x = norm_out(gamma, beta);
  const matrix_view<const float> g[] = {mxq::view_of(q), mxq::view_of(k), mxq::view_of(v)};
  const auto r = mxq::smoothquant_search<mxq::mxfp4>(mxq::view_of(x), g);
  auto gm = gamma, bt = beta;
  mxq::fold_into_norm(gm, bt, r.scales);
  const row_matrix_f x2 = norm_out(gm, bt);
  for (const row_matrix_f* w : {&q, &k, &v}) {
    const row_matrix_f before = x * w->transpose();
    const row_matrix_f after = x2 * scaled_cols(*w, r.scales).transpose();
    CHECK(rel_diff(after, before) < 1e-5);
  }
  // Previous linear (up_proj -> down_proj): X = Z P^T + b, P's rows and b divided by s.
  row_matrix_f z = randn(T, 50, 9), p = randn(in, 50, 10);
  std::vector<float> bias(static_cast<std::size_t>(in), 0.25f);
  auto prev_out = [&](const row_matrix_f& pm, const std::vector<float>& b) {
    row_matrix_f o = z * pm.transpose();
    for (Eigen::Index t = 0; t < T; ++t)
      for (Eigen::Index j = 0; j < in; ++j) o(t, j) += b[static_cast<std::size_t>(j)];
    return o;
  };
  const row_matrix_f xp = prev_out(p, bias);
  const matrix_view<const float> g1[] = {mxq::view_of(q)};
  const auto r2 = mxq::smoothquant_search<mxq::mxfp4>(mxq::view_of(xp), g1);
  row_matrix_f p2 = p;
  auto b2 = bias;
  mxq::fold_into_previous_linear(mxq::view_of(p2), b2, r2.scales);
  const row_matrix_f before = xp * q.transpose();
  const row_matrix_f after = prev_out(p2, b2) * scaled_cols(q, r2.scales).transpose();
  CHECK(rel_diff(after, before) < 1e-5);
  // Shapes are checked
  std::vector<float> short_s(3, 1.0f);
  REQUIRE_THROWS_AS(mxq::fold_into_norm(gm, bt, short_s), mxq::error);
  std::vector<float> bad(static_cast<std::size_t>(in), 1.0f);
  bad[3] = 0.0f;
  REQUIRE_THROWS_AS(mxq::scale_columns(mxq::view_of(p2).t(), bad), mxq::error);
}

TEST_CASE("SmoothQuant helps per-token activation quantization with an outlier channel", "[smoothquant]") {
  // W8A8 with per-token INT8 activations (SmoothQuant's own setting): the outlier inflates the
  // whole token's scale, smoothing migrates it into the weights.
  row_matrix_f x = randn(256, 64, 11);
  x.col(3) *= 50.0f;
  const row_matrix_f w = randn(64, 64, 12, 0.05f);
  const matrix_view<const float> g[] = {mxq::view_of(w)};
  const auto act = mxq::make_activation_quant<mxq::int8_pc_sym>();
  row_matrix_f wq = w;
  mxq::fake_quant<mxq::int8_pc_sym>(mxq::view_of(wq), mxq::view_of(wq));
  const double plain = mxq::scaled_output_error(mxq::view_of(w), mxq::view_of(wq), mxq::view_of(x), {}, act);
  const auto r = mxq::smoothquant_search<mxq::int8_pc_sym>(mxq::view_of(x), g);
  row_matrix_f ws = scaled_cols(w, r.scales);
  mxq::fake_quant<mxq::int8_pc_sym>(mxq::view_of(ws), mxq::view_of(ws));
  const double smoothed = mxq::scaled_output_error(mxq::view_of(w), mxq::view_of(ws), mxq::view_of(x), r.scales, act);
  CHECK(smoothed < 0.5 * plain);
}

TEST_CASE("SmoothQuant alpha search returns the least error of its grid", "[smoothquant][search]") {
  row_matrix_f x = randn(300, 64, 13);
  x.col(9) *= 40.0f, x.col(40) *= 12.0f;
  const row_matrix_f a = randn(32, 64, 14, 0.1f), b = randn(16, 64, 15, 0.1f);
  const matrix_view<const float> g[] = {mxq::view_of(a), mxq::view_of(b)};
  mxq::smoothquant_options o;
  o.alpha_grid = mxq::default_alpha_grid();
  o.act = mxq::activation_quant_by_name("mxint4");
  const auto r = mxq::smoothquant_search<mxq::mxint4>(mxq::view_of(x), g, o);
  REQUIRE(r.losses.size() == 21);
  for (std::size_t i = 0; i < r.losses.size(); ++i) CHECK(r.loss <= r.losses[i]);
  CHECK(r.loss == r.losses[static_cast<std::size_t>(std::lround(r.alpha * 20))]);
  // never worse than the default alpha 0.5, and it reproduces the scales of its alpha
  CHECK(r.loss <= r.losses[10]);
  const auto again = mxq::smoothquant_scales(mxq::collect_stats(mxq::view_of(x)).max_abs(), g, r.alpha);
  CHECK(again == r.scales);
  // The reported loss is the relative group output error of those scales
  double num = 0.0, den = 0.0;
  for (const row_matrix_f* w : {&a, &b}) {
    row_matrix_f q = scaled_cols(*w, r.scales);
    mxq::fake_quant<mxq::mxint4>(mxq::view_of(q), mxq::view_of(q));
    const double e = mxq::scaled_output_error(mxq::view_of(*w), mxq::view_of(q), mxq::view_of(x), r.scales, o.act);
    const double ref = static_cast<double>((x * w->transpose()).cast<double>().squaredNorm());
    num += e * ref, den += ref;
  }
  CHECK(r.loss == Approx(num / den).epsilon(1e-3));
  REQUIRE_THROWS_AS(mxq::activation_quant_by_name("mxint5"), mxq::error);
}

}  // namespace test_smoothquant
