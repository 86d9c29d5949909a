// Recipe composition: every combination of SmoothQuant / AWQ / GPTQ (with and without quantized
// activations) for every predefined format and a user-defined one; parsing; the invariants of the
// composition (s = s_sq * s_awq, exact fold, packed == dequantized, AWQ+GPTQ never worse than GPTQ).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/recipe.hpp>

#include "parse.hpp"  // the mxq tool's method grammar (tools/mxq)
#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_recipe {

using mxq::matrix_view;
using mxq::row_matrix_f;
using Catch::Matchers::Contains;
namespace st = mxq::step;

// A user-defined format: MXINT4 elements with blocks of 64 and an E8M0 scale.
struct my_fmt : mxq::block_format<mxq::int_element<4>, 64, mxq::e8m0_scale> {};

namespace {

// A recipe by method name through the CLI's grammar, with SmoothQuant's alpha and an activation format.
mxq::recipe parse_recipe(const std::string& method, float alpha = 0.5f, const std::string& act = {}) {
  mxq::recipe r = mxq::cli::parse_method(method);
  if (r.smoothquant) r.smoothquant->options.alpha = alpha;
  if (r.awq) r.awq->gptq_in_loop = st::awq::gptq_mode::verify;  // the safeguard these tests check
  if (!act.empty() && !mxq::is_known_format(act)) throw mxq::error("unknown format '" + act + "'");
  r.act = mxq::activation_quant_by_name(act);
  return r;
}

row_matrix_f randn(Eigen::Index r, Eigen::Index c, unsigned seed, float sd = 1.0f) {
  return mxq::test::randn<row_matrix_f>(r, c, seed, sd);
}

struct group_data {
  row_matrix_f x = randn(160, 128, 1);
  std::vector<row_matrix_f> w = {randn(48, 128, 2, 0.05f), randn(24, 128, 3, 0.05f)};
  group_data() {
    for (Eigen::Index j = 0; j < 128; j += 19) x.col(j) *= 15.0f;  // outlier / salient channels
  }
};
const group_data& data() {
  static const group_data d;
  return d;
}

const char* const kMethods[] = {"rtn", "gptq", "awq", "awq+gptq", "sq+rtn", "sq+gptq", "sq+awq", "sq+awq+gptq"};

template <class F>
void check_every_combination() {
  const auto& d = data();
  const double worst = F::bits <= 3 ? 2.0 : 1.0;  // relative output error bound (3-bit formats are coarse)
  for (const char* act : {"", "mxint8"}) {
    double err_gptq = 0, err_sq_gptq = 0;
    for (const char* m : kMethods) {
      INFO("format " << mxq::format_traits<F>::name << ", method " << m << ", act '" << act << "'");
      const mxq::recipe rc = parse_recipe(m, 0.5f, act);
      const auto r = mxq::quantize_group<F>(d.w, d.x, rc);
      REQUIRE(r.weights.size() == 2);
      REQUIRE(r.packed.size() == 2);
      REQUIRE(r.scales.size() == 128);
      CHECK(std::isfinite(r.output_error));
      CHECK(r.output_error < worst);
      for (std::size_t i = 0; i < 2; ++i) {
        REQUIRE(r.weights[i].rows() == d.w[i].rows());
        // the packed form decodes to exactly the returned weights
        row_matrix_f deq(r.weights[i].rows(), r.weights[i].cols());
        mxq::dequantize(r.packed[i], mxq::view_of(deq));
        CHECK(deq == r.weights[i]);
      }
      // s = s_sq * s_awq; the scaled weights and inputs compute the fp32 outputs exactly
      const bool sq = rc.smoothquant.has_value(), awq = rc.awq.has_value();
      CHECK(r.smooth_scales.empty() == !sq);
      CHECK(r.awq_scales.empty() == !awq);
      for (std::size_t j = 0; j < 128; ++j) {
        const float expect = (sq ? r.smooth_scales[j] : 1.0f) * (awq ? r.awq_scales[j] : 1.0f);
        CHECK(r.scales[j] == Approx(expect).epsilon(1e-6));
        CHECK(r.scales[j] > 0.0f);
      }
      row_matrix_f xs = d.x, ws = d.w[0];
      mxq::divide_columns(mxq::view_of(xs), r.scales);
      mxq::scale_columns(mxq::view_of(ws), r.scales);
      const row_matrix_f y = d.x * d.w[0].transpose();
      CHECK((xs * ws.transpose() - y).norm() / y.norm() < 1e-5f);
      CHECK(r.gptq_loss.size() == (rc.gptq ? 2u : 0u));
      if (std::string(m) == "gptq") err_gptq = r.output_error;
      if (std::string(m) == "sq+gptq") err_sq_gptq = r.output_error;
      // AWQ before GPTQ (verify mode) is never worse than GPTQ alone on the calibration data
      if (std::string(m) == "awq+gptq") CHECK(r.output_error <= err_gptq);
      if (std::string(m) == "sq+awq+gptq") CHECK(r.output_error <= err_sq_gptq);
    }
  }
}

}  // namespace

TEST_CASE("every recipe combination runs for every predefined format", "[recipe]") {
  mxq::for_each_format([](auto tag) { check_every_combination<typename decltype(tag)::type>(); });
}

TEST_CASE("every recipe combination runs for a user-defined format", "[recipe]") {
  check_every_combination<my_fmt>();
  // and a user-defined activation format
  const auto& d = data();
  const auto r = mxq::quantize_group<mxq::mxfp4>(d.w, d.x, mxq::recipe{st::smoothquant{}, st::act<my_fmt>{}});
  CHECK(std::isfinite(r.output_error));
}

TEST_CASE("recipe from steps and from method names", "[recipe]") {
  const mxq::recipe a{st::smoothquant{0.5f}, st::awq{}, st::gptq{}, st::act<mxq::mxint8>{}};
  CHECK(a.name() == "sq+awq+gptq/a:mxint8");
  CHECK(a.smoothquant->options.alpha == 0.5f);
  const mxq::recipe b{st::gptq{}, st::awq{}};  // listed order does not matter: application order is fixed
  CHECK(b.name() == "awq+gptq");
  CHECK(mxq::recipe{}.name() == "rtn");
  CHECK(mxq::recipe{st::awq{}, st::rtn{}}.name() == "awq+rtn");
  CHECK(parse_recipe("awq").name() == "awq+rtn");
  CHECK(parse_recipe("sq+awq+gptq", 0.75f, "mxint8").smoothquant->options.alpha == 0.75f);
  CHECK(parse_recipe("smoothquant+rtn").name() == "sq+rtn");
  REQUIRE_THROWS_WITH(parse_recipe("gptq+awq"), Contains("order"));
  REQUIRE_THROWS_WITH(parse_recipe("awq+awq"), Contains("order"));
  REQUIRE_THROWS_WITH(parse_recipe("awq+foo"), Contains("unknown step 'foo'"));
  REQUIRE_THROWS_WITH(parse_recipe("awq", 0.5f, "mxfp5"), Contains("unknown format"));
}

TEST_CASE("recipe on a single linear matches the separate steps", "[recipe]") {
  const auto& d = data();
  // AWQ then RTN (with clip) = awq_transform then fake_quant
  const auto r = mxq::quantize_linear<mxq::mxint4>(mxq::view_of(d.w[0]), mxq::view_of(d.x), parse_recipe("awq"));
  const matrix_view<const float> g[] = {mxq::view_of(d.w[0])};
  const auto t = mxq::awq_transform<mxq::mxint4>(mxq::view_of(d.x), g);
  row_matrix_f q = t.weights[0];
  mxq::fake_quant<mxq::mxint4>(mxq::view_of(q), mxq::view_of(q));
  CHECK(r.weights[0] == q);
  CHECK(r.awq_scales == t.scale.scales);
  const double e = mxq::scaled_output_error(mxq::view_of(d.w[0]), mxq::view_of(q), mxq::view_of(d.x), t.scale.scales);
  CHECK(r.output_error == Approx(e).epsilon(1e-4));
  // SmoothQuant alone = scales of smoothquant_search, weights = RTN of W s
  const auto s = mxq::quantize_linear<mxq::mxfp4>(mxq::view_of(d.w[0]), mxq::view_of(d.x), parse_recipe("sq+rtn"));
  const auto sr = mxq::smoothquant_search<mxq::mxfp4>(mxq::view_of(d.x), g);
  CHECK(s.scales == sr.scales);
  CHECK(s.alpha == 0.5f);
}

TEST_CASE("recipe group options: no scaling under GQA, clip mask, streamed statistics", "[recipe]") {
  const auto& d = data();
  mxq::group_options go;
  go.can_scale = false;  // e.g. v_proj -> o_proj under grouped-query attention
  const auto r = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("sq+awq+gptq"), go);
  const auto plain = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("gptq"));
  for (float s : r.scales) CHECK(s == 1.0f);
  CHECK(r.output_error == plain.output_error);

  mxq::group_options mask;
  mask.clip = {false, true};  // llm-awq: no clip for q/k
  const auto c = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("awq"), mask);
  CHECK(c.clips[0].max_val.empty());
  CHECK_FALSE(c.clips[1].max_val.empty());
  mask.clip = {true};
  REQUIRE_THROWS_WITH(mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("awq"), mask), Contains("clip"));

  // statistics streamed over more calibration than the group's X
  const auto stats = mxq::collect_stats(mxq::view_of(d.x));
  const auto amax = stats.max_abs(), mean = stats.mean_abs();
  mxq::group_options gs;
  gs.act_max = amax;
  gs.x_mean = mean;
  const auto a = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("sq+awq+gptq"), gs);
  const auto b = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("sq+awq+gptq"));
  CHECK(a.scales == b.scales);

  // named errors
  row_matrix_f bad = d.x;
  bad(7, 3) = std::numeric_limits<float>::infinity();
  mxq::group_options named;
  named.name = "layers.0.self_attn.qkv";
  REQUIRE_THROWS_WITH(mxq::quantize_group<mxq::mxint4>(d.w, bad, parse_recipe("awq"), named),
                      Contains("layers.0.self_attn.qkv") && Contains("row 7"));
  const std::vector<row_matrix_f> wrong = {randn(8, 100, 5)};
  REQUIRE_THROWS_AS(mxq::quantize_group<mxq::mxint4>(wrong, d.x, mxq::recipe{}), mxq::error);
}

TEST_CASE("W4A8: activations quantized in the recipe and in the Hessian", "[recipe][act]") {
  const auto& d = data();
  const auto a8 = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("gptq", 0.5f, "mxint8"));
  const auto a32 = mxq::quantize_group<mxq::mxint4>(d.w, d.x, parse_recipe("gptq"));
  // GPTQ fits the quantized inputs it will see: its weights differ from the fp32-input GPTQ
  CHECK(a8.weights[0] != a32.weights[0]);
  // the reported error uses Qa(X / s) on the quantized side
  const auto act = mxq::make_activation_quant<mxq::mxint8>();
  double num = 0, den = 0;
  const row_matrix_f xq = act(mxq::view_of(d.x));
  for (std::size_t i = 0; i < 2; ++i) {
    const row_matrix_f ref = d.x * d.w[i].transpose();
    num += (xq * a8.weights[i].transpose() - ref).cast<double>().squaredNorm();
    den += ref.cast<double>().squaredNorm();
  }
  CHECK(a8.output_error == Approx(num / den).epsilon(1e-4));
  // SmoothQuant with an alpha grid in the recipe
  st::smoothquant sq;
  sq.options.alpha_grid = mxq::default_alpha_grid();
  const auto g = mxq::quantize_group<mxq::mxint4>(d.w, d.x, mxq::recipe{sq, st::act<mxq::mxint4>{}});
  const auto f = mxq::quantize_group<mxq::mxint4>(d.w, d.x, mxq::recipe{st::smoothquant{}, st::act<mxq::mxint4>{}});
  CHECK(g.alpha >= 0.0f);
  CHECK(g.output_error <= f.output_error * 1.0001);
}

}  // namespace test_recipe
