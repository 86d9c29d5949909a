// Running a quantized checkpoint's decoder linears through the packed MX GEMM kernels
// (mxq::gemm on the stored codes and scales) instead of dequantized FP32 weights.
//
//   mxq::llm::model_weights w = mxq::llm::load_model(dir);                  // norms, embeddings, lm_head
//   mxq::llm::packed_linears p = mxq::llm::load_packed_linears(dir, w.config); // the packed linears
//   mxq::llm::perplexity_options o;  o.linear = p.hook();
//
// With gemm_options::activations = f32 (the default here) each output is the FP32 dot product of
// the dequantized row with the activations, in the kernel's summation order, so results differ
// from the dense path only by FP32 rounding; `automatic` lets 4-bit formats quantize activations
// to int8 per 32-block (faster, an approximation).
#pragma once
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "../format/registry.hpp"
#include "../gemm.hpp"
#include "../io/packed_io.hpp"
#include "forward.hpp"
#include "weights.hpp"

namespace mxq::llm {

class packed_linears {
 public:
  using gemm_fn = std::function<void(matrix_view<const float> x, matrix_view<float> y)>;

  // Adds linear `name` of `layer` (replacing an earlier one).
  template <format_type F, class Layout>
  void add(std::size_t layer, linear l, packed_matrix<F, Layout> q, gemm_options opt = default_options()) {
    auto p = std::make_shared<const packed_matrix<F, Layout>>(std::move(q));
    linears_[{layer, l}] = [p, opt](matrix_view<const float> x, matrix_view<float> y) {
      gemm(*p, x, y, opt);
    };
  }

  std::size_t size() const noexcept { return linears_.size(); }
  bool contains(std::size_t layer, linear l) const { return linears_.count({layer, l}) != 0;
  }

  // A forward_hooks::linear that runs the packed linears it holds and leaves the others dense.
  // The returned hook shares nothing mutable: it may run on many threads at once.
  linear_fn hook() const {
    auto map = std::make_shared<const std::map<key, gemm_fn>>(linears_);
    return [map](std::size_t layer, linear l, matrix_view<const float> x, matrix_view<float> y) {
      const auto it = map->find({layer, l});
      if (it == map->end()) return false;
      it->second(x, y);
      return true;
    };
  }

  // One thread per call: the forward pass already splits tokens and batches over threads.
  static gemm_options default_options() {
    gemm_options o;
    o.threads = 1;
    o.activations = activation_precision::f32;
    return o;
  }

 private:
  using key = std::pair<std::size_t, linear>;
  std::map<key, gemm_fn> linears_;
};

// The packed linears of a quantized checkpoint (write_quantized_checkpoint), each in its recorded format.
// Throws if the checkpoint holds none (an original model) or a packed linear does not match the
// config's shapes.
template <class Formats = predefined_formats>
packed_linears load_packed_linears(const std::filesystem::path& dir, const model_config& c,
                                   gemm_options opt = packed_linears::default_options()) {
  const checkpoint ck(dir);
  packed_linears out;
  for (std::size_t li = 0; li < c.num_hidden_layers; ++li)
    for (linear l : all_linears) {
      const std::string prefix = tensor_prefix(li, l);
      if (!has_packed(ck, prefix)) continue;
      const std::string fmt = packed_format_name(ck, prefix);
      if (!is_known_format(fmt)) detail::io::fail(ck.path(), "packed weight '" + prefix + "': unknown format '" + fmt + "'");
      visit_format(fmt, [&](auto tag) {
        using F = typename decltype(tag)::type;
        packed_matrix<F> q = read_packed<F>(ck, prefix);
        const auto [rows, cols] = expected_linear_shape(c, l);
        if (q.rows() != rows || q.cols() != cols)
          detail::io::fail(ck.path(), "packed weight '" + prefix + "' is " + std::to_string(q.rows()) + "x" +
                                          std::to_string(q.cols()) + ", the config says " + std::to_string(rows) + "x" +
                                          std::to_string(cols));
        out.add(li, l, std::move(q), opt);
      }, Formats{});
    }
  if (out.size() == 0) detail::io::fail(ck.path(), "no packed linear weights (not an mxq quantized checkpoint)");
  return out;
}

}  // namespace mxq::llm
