// Targets on the real code-llama layers in MXQ_SHARED_DIR/layers (skipped with a message when the
// fixtures are absent):
//   * mxq AWQ (scale grid + clip, RTN) <= 1.02 x the reference AWQ error, for every format the
//     reference lists AWQ for;
//   * AWQ+GPTQ <= GPTQ alone for every 4-bit format (mxint4, mxfp4, int4_g128, int4_pc, nvfp4).
// Error = ||Q Qa(X/s)^T - W X^T||^2 / ||W X^T||^2 on the stored inputs (no activation quantization here).
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include <mxq/format.hpp>
#include <mxq/io/npy.hpp>
#include <mxq/recipe.hpp>

#include "parse.hpp"  // the mxq tool's method grammar (tools/mxq)
#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_awq_layers {

namespace fs = std::filesystem;

namespace {

const fs::path kLayers = fs::path(MXQ_SHARED_DIR) / "layers" / "code-llama";

struct layer {
  mxq::tensor_f32 w, x;
  mxq::matrix_view<const float> wv() const { return {w.data.data(), w.shape[0], w.shape[1]}; }
  mxq::matrix_view<const float> xv() const { return {x.data.data(), x.shape[0], x.shape[1]}; }
};

layer load(const std::string& name) {
  return {mxq::npy_load_f32(kLayers / (name + ".weight.npy")), mxq::npy_load_f32(kLayers / (name + ".inputs.npy"))};
}

double run(const layer& l, const std::string& fmt, const std::string& method,
           mxq::step::awq::gptq_mode mode = mxq::step::awq::gptq_mode::off) {
  mxq::recipe rc = mxq::cli::parse_method(method);
  if (rc.awq) rc.awq->gptq_in_loop = mode;  // verify: AWQ+GPTQ never worse than GPTQ on the layer
  return mxq::visit_format(fmt, [&](auto tag) {
    using F = typename decltype(tag)::type;
    return mxq::quantize_linear<F>(l.wv(), l.xv(), rc).output_error;
  });
}

}  // namespace

TEST_CASE("AWQ and AWQ+GPTQ meet the targets on the shared code-llama layers", "[awq][layers]") {
  if (!fs::exists(kLayers / "reference-errors.json")) {
    mxq::test::skip_test("no shared layers at " + kLayers.string());
  }
  nlohmann::json ref;
  std::ifstream(kLayers / "reference-errors.json") >> ref;
  for (const std::string name : {"l2.q_proj", "l3.down_proj"}) {
    const layer l = load(name);
    const auto& errs = ref.at("layers").at(name).at("relative_output_error");
    for (auto it = errs.begin(); it != errs.end(); ++it) {
      if (!it.value().contains("awq")) continue;
      const double want = it.value().at("awq").get<double>();
      const double got = run(l, it.key(), "awq");
      std::printf("%-13s %-11s awq %.6g  reference %.6g  ratio %.4f\n", name.c_str(), it.key().c_str(), got, want,
                  got / want);
      INFO(name << " " << it.key() << ": awq " << got << " vs reference " << want);
      CHECK(got <= 1.02 * want);
    }
    for (const std::string fmt : {"mxint4", "mxfp4", "int4_g128", "int4_pc", "nvfp4"}) {
      const double gptq = run(l, fmt, "gptq"), awq_gptq = run(l, fmt, "awq+gptq", mxq::step::awq::gptq_mode::verify);
      std::printf("%-13s %-11s gptq %.6g  awq+gptq %.6g\n", name.c_str(), fmt.c_str(), gptq, awq_gptq);
      INFO(name << " " << fmt << ": awq+gptq " << awq_gptq << " vs gptq " << gptq);
      CHECK(awq_gptq <= gptq);
    }
  }
}

}  // namespace test_awq_layers
