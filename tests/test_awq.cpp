// AWQ: the scale grid, the clip search, exact folding, never worse than RTN / no clip, a custom
// block callable, grouped-query attention and NaN handling, over several formats.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include <mxq/awq.hpp>
#include <mxq/format.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_awq {

using mxq::matrix_view;
using mxq::row_matrix_f;
using Catch::Matchers::Contains;

namespace {

row_matrix_f randn(Eigen::Index r, Eigen::Index c, unsigned seed, float sd = 1.0f) {
  return mxq::test::randn<row_matrix_f>(r, c, seed, sd);
}

// Calibration inputs with a few salient channels (what AWQ protects).
row_matrix_f salient_inputs(Eigen::Index t, Eigen::Index in, unsigned seed) {
  row_matrix_f x = randn(t, in, seed);
  for (Eigen::Index j = 0; j < in; j += 17) x.col(j) *= 20.0f;
  return x;
}

template <class F>
row_matrix_f rtn(row_matrix_f w) {
  mxq::fake_quant<F>(mxq::view_of(w), mxq::view_of(w));
  return w;
}

double mse_out(const row_matrix_f& x, const row_matrix_f& w, const row_matrix_f& q) {
  return static_cast<double>((x * (q - w).transpose()).cast<double>().squaredNorm()) /
         static_cast<double>(x.rows() * w.rows());
}

}  // namespace

TEST_CASE("AWQ scales: x_mean^ratio normalized by sqrt(max*min)", "[awq]") {
  const std::vector<float> m = {0.5f, 2.0f, 8.0f, 0.0f};
  const auto s0 = mxq::awq_scales(m, 0.0f);
  for (float v : s0) CHECK(v == 1.0f);
  const auto s = mxq::awq_scales(m, 0.5f);
  // before normalization: 0.7071, 1.4142, 2.8284, 1e-4 (clamped)
  const double norm = std::sqrt(2.8284271 * 1e-4);
  CHECK(s[0] == Approx(0.70710678 / norm).epsilon(1e-5));
  CHECK(s[2] == Approx(2.8284271 / norm).epsilon(1e-5));
  CHECK(s[3] == Approx(1e-4 / norm).epsilon(1e-5));
  CHECK(static_cast<double>(s[2]) * s[3] == Approx(1.0).epsilon(1e-5));
}

TEMPLATE_TEST_CASE("AWQ scale search never loses to ratio 0 (= RTN) and keeps the argmin", "[awq][search]", mxq::mxint4,
                   mxq::mxfp4, mxq::nvfp4, mxq::int4_g128, mxq::int4_pc, mxq::mxfp6_e2m3) {
  using F = TestType;
  const row_matrix_f x = salient_inputs(200, 128, 21);
  const row_matrix_f a = randn(48, 128, 22, 0.05f), b = randn(16, 128, 23, 0.05f);
  const matrix_view<const float> g[] = {mxq::view_of(a), mxq::view_of(b)};
  const auto r = mxq::awq_search_scale<F>(mxq::view_of(x), g);
  REQUIRE(r.losses.size() == 20);
  CHECK(r.ratios[1] == Approx(0.05f));
  CHECK(r.ratios[19] == Approx(0.95f));
  for (double l : r.losses) CHECK(r.loss <= l);
  CHECK(r.loss <= r.losses[0]);
  // ratio 0 is RTN: the loss is the mean squared group-output error of plain fake-quant
  const double rtn_mse = (mse_out(x, a, rtn<F>(a)) * 48 + mse_out(x, b, rtn<F>(b)) * 16) / 64.0;
  CHECK(r.losses[0] == Approx(rtn_mse).epsilon(1e-3));
  CHECK(r.scales == mxq::awq_scales(mxq::collect_stats(mxq::view_of(x)).mean_abs(), r.ratio));
}

TEMPLATE_TEST_CASE("AWQ protects salient channels: a ratio > 0 beats RTN", "[awq][search]", mxq::mxint4, mxq::int4_pc,
                   mxq::int4_g128) {
  const row_matrix_f x = salient_inputs(200, 128, 21);
  const row_matrix_f w = randn(64, 128, 22, 0.05f);
  const matrix_view<const float> g[] = {mxq::view_of(w)};
  const auto r = mxq::awq_search_scale<TestType>(mxq::view_of(x), g);
  CHECK(r.ratio > 0.0f);
  CHECK(r.loss < 0.9 * r.losses[0]);
}

TEST_CASE("AWQ with the caller's block callable", "[awq][search]") {
  using F = mxq::mxint4;
  const row_matrix_f x = salient_inputs(128, 64, 31);
  const row_matrix_f gate = randn(96, 64, 32, 0.1f), up = randn(96, 64, 33, 0.1f);
  const matrix_view<const float> g[] = {mxq::view_of(gate), mxq::view_of(up)};
  const auto mean = mxq::collect_stats(mxq::view_of(x)).mean_abs();
  // The default block (the group's outputs) written as a callable gives the same search.
  auto linear_outputs = [&](std::span<const matrix_view<const float>> w) {
    row_matrix_f out(x.rows(), 192);
    out.leftCols(96) = x * mxq::detail::calib::to_eigen(w[0]).transpose();
    out.rightCols(96) = x * mxq::detail::calib::to_eigen(w[1]).transpose();
    return out;
  };
  const auto r1 = mxq::awq_search_scale<F>(mean, g, linear_outputs);
  const auto r2 = mxq::awq_search_scale<F>(mxq::view_of(x), g);
  CHECK(r1.ratio == r2.ratio);
  for (std::size_t i = 0; i < r1.losses.size(); ++i) CHECK(r1.losses[i] == Approx(r2.losses[i]).epsilon(1e-3));
  // An MLP block: silu(x gate^T) * (x up^T); the loss is measured on its output.
  int calls = 0;
  auto mlp = [&](std::span<const matrix_view<const float>> w) {
    ++calls;
    const row_matrix_f a = x * mxq::detail::calib::to_eigen(w[0]).transpose();
    const row_matrix_f b = x * mxq::detail::calib::to_eigen(w[1]).transpose();
    return row_matrix_f((a.array() / (1.0f + (-a.array()).exp()) * b.array()).matrix());
  };
  const auto r3 = mxq::awq_search_scale<F>(mean, g, mlp);
  CHECK(calls == 21);  // reference + 20 ratios
  for (double l : r3.losses) CHECK(r3.loss <= l);
  // NaN in the block output everywhere: a named error
  auto broken = [&](std::span<const matrix_view<const float>>) {
    return row_matrix_f::Constant(2, 2, std::numeric_limits<float>::quiet_NaN());
  };
  REQUIRE_THROWS_WITH(mxq::awq_search_scale<F>(mean, g, broken), Contains("finite"));
}

TEMPLATE_TEST_CASE("AWQ clip search never loses to no clip, per row and group", "[awq][clip]", mxq::mxint4, mxq::mxfp4,
                   mxq::nvfp4, mxq::int4_g128, mxq::int4_pc, mxq::mxint8) {
  using F = TestType;
  const row_matrix_f x = salient_inputs(600, 256, 41);
  row_matrix_f w = randn(40, 256, 42, 0.05f);
  for (Eigen::Index r = 0; r < 40; ++r) w(r, (r * 7) % 256) = 0.4f;  // outlier weights worth clipping
  const auto c = mxq::awq_search_clip<F>(mxq::view_of(w), mxq::view_of(x));
  const std::size_t group = mxq::block_length<F>(256);
  REQUIRE(c.group == group);
  REQUIRE(c.groups == (256 + group - 1) / group);
  REQUIRE(c.max_val.size() == 40 * c.groups);
  CHECK(c.err_best <= c.err_noclip);
  for (std::size_t k = 0; k < c.shrink.size(); ++k) {
    CHECK(c.shrink[k] <= 1.0f);
    CHECK(c.shrink[k] >= 0.55f - 1e-6f);  // grid 1.00, 0.95, ..., 0.55
  }
  row_matrix_f wc = w;
  mxq::apply_clip(mxq::view_of(wc), c);
  for (Eigen::Index r = 0; r < 40; ++r)
    for (Eigen::Index j = 0; j < 256; ++j)
      CHECK(std::fabs(wc(r, j)) <= c.max_val[static_cast<std::size_t>(r) * c.groups + static_cast<std::size_t>(j) / group]);
  REQUIRE_THROWS_AS(mxq::apply_clip(mxq::view_of(wc).t(), c), mxq::error);
}

TEST_CASE("AWQ clip under MX moves the shared exponent", "[awq][clip]") {
  // One MXINT4 block: a lone 1.5 (exponent 0, steps of 0.25) and many values near 0.3. Clipping it
  // below 1 (shrink <= 0.65) drops the exponent to -1 (steps of 0.125): the small values round better.
  row_matrix_f w(1, 32);
  for (Eigen::Index j = 0; j < 32; ++j) w(0, j) = 0.3f + 0.01f * static_cast<float>(j % 5);
  w(0, 0) = 1.5f;
  row_matrix_f x = randn(512, 32, 51);
  x.col(0) *= 0.05f;  // the large weight's input is tiny
  const auto c = mxq::awq_search_clip<mxq::mxint4>(mxq::view_of(w), mxq::view_of(x));
  REQUIRE(c.shrink.size() == 1);
  CHECK(c.shrink[0] < 1.0f);
  CHECK(c.err_best < 0.75 * c.err_noclip);
  row_matrix_f wc = w;
  mxq::apply_clip(mxq::view_of(wc), c);
  const auto before = mxq::quantize<mxq::mxint4>(mxq::view_of(w));
  const auto after = mxq::quantize<mxq::mxint4>(mxq::view_of(wc));
  CHECK(after.params(0, 0).scale < before.params(0, 0).scale);
}

TEST_CASE("AWQ folding is exact without quantization", "[awq][fold]") {
  const row_matrix_f x = salient_inputs(100, 64, 61);
  const row_matrix_f w = randn(32, 64, 62);
  const matrix_view<const float> g[] = {mxq::view_of(w)};
  mxq::awq_options o;
  o.clip = false;
  const auto r = mxq::awq_transform<mxq::mxfp4>(mxq::view_of(x), g, o);
  REQUIRE(r.scale.ratio > 0.0f);
  row_matrix_f xs = x;
  mxq::divide_columns(mxq::view_of(xs), r.scale.scales);
  const row_matrix_f before = x * w.transpose(), after = xs * r.weights[0].transpose();
  CHECK((after - before).norm() / before.norm() < 1e-5f);
  CHECK(r.clips[0].max_val.empty());
  // with clipping, only the mask's linears are clipped
  const row_matrix_f w2 = randn(16, 64, 63);
  const matrix_view<const float> g2[] = {mxq::view_of(w), mxq::view_of(w2)};
  const auto r2 = mxq::awq_transform<mxq::mxfp4>(mxq::view_of(x), g2, {}, {false, true});
  CHECK(r2.clips[0].max_val.empty());
  CHECK(r2.clips[1].max_val.size() == 16 * 2);
}

TEST_CASE("AWQ skips linear-to-linear scaling under grouped-query attention", "[awq][gqa]") {
  const row_matrix_f v_mha(256, 256), o(256, 256), v_gqa(64, 256);
  CHECK(mxq::can_fold_linear_into_linear(mxq::view_of(v_mha), mxq::view_of(o)));
  CHECK_FALSE(mxq::can_fold_linear_into_linear(mxq::view_of(v_gqa), mxq::view_of(o)));
  // folding a 256-vector into a 64-row v_proj is refused
  row_matrix_f v = v_gqa;
  std::vector<float> s(256, 2.0f);
  REQUIRE_THROWS_AS(mxq::fold_into_previous_linear(mxq::view_of(v), {}, s), mxq::error);
}

TEST_CASE("AWQ rejects NaN calibration inputs naming the row", "[awq]") {
  row_matrix_f x = randn(20, 32, 71);
  x(13, 4) = std::numeric_limits<float>::quiet_NaN();
  const row_matrix_f w = randn(8, 32, 72);
  const matrix_view<const float> g[] = {mxq::view_of(w)};
  REQUIRE_THROWS_WITH(mxq::awq_search_scale<mxq::mxint4>(mxq::view_of(x), g), Contains("row 13"));
  const row_matrix_f w_bad = randn(8, 31, 72);
  const matrix_view<const float> gb[] = {mxq::view_of(w_bad)};
  REQUIRE_THROWS_WITH(mxq::awq_search_scale<mxq::mxint4>(mxq::view_of(randn(20, 32, 1)), gb), Contains("8x31"));
}

TEST_CASE("AWQ with quantized activations in the loss (W4A8)", "[awq][act]") {
  const row_matrix_f x = salient_inputs(200, 128, 81);
  const row_matrix_f w = randn(64, 128, 82, 0.05f);
  const matrix_view<const float> g[] = {mxq::view_of(w)};
  mxq::awq_options o;
  o.act = mxq::make_activation_quant<mxq::mxint8>();
  const auto r = mxq::awq_transform<mxq::mxint4>(mxq::view_of(x), g, o);
  for (double l : r.scale.losses) CHECK(r.scale.loss <= l);
  row_matrix_f q = rtn<mxq::mxint4>(r.weights[0]);
  const double e = mxq::scaled_output_error(mxq::view_of(w), mxq::view_of(q), mxq::view_of(x), r.scale.scales, o.act);
  const row_matrix_f q0 = rtn<mxq::mxint4>(w);
  const double e0 = mxq::scaled_output_error(mxq::view_of(w), mxq::view_of(q0), mxq::view_of(x), {}, o.act);
  CHECK(e < e0);
}

}  // namespace test_awq
