// Accuracy on the real code-llama layers (../shared/layers/code-llama) against the reference
// algorithms' errors in reference-errors.json: mxq RTN reproduces the reference RTN, mxq GPTQ is
// within 2 % of the reference GPTQ and below RTN for every format, and GPTQ with the MSE scale
// search beats the reference GPTQ for MXINT4 and MXFP4. Skipped (SUCCEED) without the fixtures.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mxq/format.hpp>
#include <mxq/gptq.hpp>
#include <mxq/hessian.hpp>
#include <mxq/io/npy.hpp>
#include <mxq/metrics.hpp>
#include <mxq/quantize.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_gptq_layers {

namespace fs = std::filesystem;

namespace {

struct layer_errors {
  double rtn, gptq, gptq_mse, gptq_act_mse;
};

template <class F>
layer_errors run_format(mxq::matrix_view<const float> w, mxq::matrix_view<const float> x,
                        mxq::matrix_view<const float> h) {
  layer_errors e{};
  std::vector<float> q(w.size());
  mxq::fake_quant<F>(w, mxq::matrix_view<float>(q.data(), w.rows, w.cols));
  e.rtn = mxq::relative_output_error(w, {q.data(), w.rows, w.cols}, x);
  e.gptq = mxq::relative_output_error(w, mxq::gptq<F>(w, h).view(), x);
  mxq::gptq_options o;
  o.quant.scale_rule = mxq::scale_rule::mse;
  e.gptq_mse = mxq::relative_output_error(w, mxq::gptq<F>(w, h, o).view(), x);
  o.order = mxq::act_order::global;
  e.gptq_act_mse = mxq::relative_output_error(w, mxq::gptq<F>(w, h, o).view(), x);
  return e;
}

}  // namespace

TEST_CASE("gptq on the code-llama layers meets the reference errors", "[gptq][layers]") {
  const fs::path dir = fs::path(MXQ_SHARED_DIR) / "layers" / "code-llama";
  if (!fs::exists(dir / "reference-errors.json")) {
    mxq::test::skip_test("no fixtures at " + dir.string());
  }
  nlohmann::json ref;
  std::ifstream(dir / "reference-errors.json") >> ref;
  std::printf("%-14s %-11s %11s %11s | %11s %11s %8s | %11s %11s\n", "layer", "format", "ref rtn", "mxq rtn", "ref gptq",
              "mxq gptq", "ratio", "gptq+mse", "+act-order");
  for (const std::string layer : {"l2.q_proj", "l3.down_proj"}) {
    const auto W = mxq::npy_load_f32(dir / (layer + ".weight.npy"));
    const auto X = mxq::npy_load_f32(dir / (layer + ".inputs.npy"));
    REQUIRE(W.shape.size() == 2);
    REQUIRE(X.shape.size() == 2);
    REQUIRE(X.shape[1] == W.shape[1]);
    const mxq::matrix_view<const float> w(W.data.data(), W.shape[0], W.shape[1]);
    const mxq::matrix_view<const float> x(X.data.data(), X.shape[0], X.shape[1]);
    mxq::hessian_accumulator acc(w.cols);
    acc.add(x);
    const auto h = acc.matrix();
    const auto& errs = ref["layers"][layer]["relative_output_error"];
    for (const std::string format : {"mxint8", "mxint4", "mxfp4", "mxfp6_e2m3", "mxfp8_e4m3", "int4_g128", "int4_pc"}) {
      const layer_errors e = mxq::visit_format(format, [&](auto tag) {
        return run_format<typename decltype(tag)::type>(w, x, h);
      });
      const double ref_rtn = errs[format]["rtn"].get<double>(), ref_gptq = errs[format]["gptq"].get<double>();
      std::printf("%-14s %-11s %11.4e %11.4e | %11.4e %11.4e %8.4f | %11.4e %11.4e\n", layer.c_str(), format.c_str(),
                  ref_rtn, e.rtn, ref_gptq, e.gptq, e.gptq / ref_gptq, e.gptq_mse, e.gptq_act_mse);
      INFO(layer << " " << format << ": rtn " << e.rtn << " (ref " << ref_rtn << "), gptq " << e.gptq << " (ref "
                 << ref_gptq << "), gptq+mse " << e.gptq_mse);
      CHECK(e.rtn == Approx(ref_rtn).epsilon(0.01));  // the quantizers are the reference's
      CHECK(e.gptq <= 1.02 * ref_gptq);
      CHECK(e.gptq < e.rtn);
      CHECK(e.gptq_mse < e.rtn);
      CHECK(e.gptq_act_mse < e.rtn);
      if (format == "mxint4" || format == "mxfp4") CHECK(e.gptq_mse < ref_gptq);
    }
  }
}

}  // namespace test_gptq_layers
