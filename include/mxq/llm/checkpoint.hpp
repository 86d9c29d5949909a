// Writes a quantized model as a Hugging Face-style directory: config files copied, every
// decoder linear packed (see packed_io.hpp), norms in F32 (they may hold folded SmoothQuant/AWQ
// scales), embeddings and lm_head copied byte for byte in their original dtype. The recipe is
// recorded in __metadata__ (mxq.format, mxq.method, mxq.act_format, mxq.version).
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include "../io/packed_io.hpp"
#include "../io/safetensors.hpp"
#include "quantize_model.hpp"
#include "weights.hpp"

namespace mxq::llm {

template <format_type F>
void write_quantized_checkpoint(const std::filesystem::path& out_dir, const std::filesystem::path& src_dir,
                                const model_weights& w, const quantized_model<F>& q,
                                const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  if (fs::exists(out_dir) && !fs::is_directory(out_dir))
    throw error(out_dir.string() + ": exists and is not a directory");
  fs::create_directories(out_dir);
  for (const char* f : {"config.json", "generation_config.json"})
    if (fs::exists(src_dir / f)) fs::copy_file(src_dir / f, out_dir / f, fs::copy_options::overwrite_existing);

  const checkpoint src(src_dir);
  safetensors_writer wr;
  for (const auto& [k, v] : metadata) wr.set_metadata(k, v);
  wr.set_metadata("format", "pt");
  wr.set_metadata("mxq.format", std::string(format_traits<F>::name));
  wr.set_metadata("mxq.version", std::to_string(MXQ_VERSION_MAJOR) + "." + std::to_string(MXQ_VERSION_MINOR) + "." +
                                     std::to_string(MXQ_VERSION_PATCH));
  for (const auto& [prefix, packed] : q.linears) add_packed(wr, prefix, packed);

  auto add_vector = [&](const std::string& name, const Eigen::VectorXf& v) {
    wr.add_f32(name, {static_cast<std::size_t>(v.size())}, std::span<const float>(v.data(), static_cast<std::size_t>(v.size())));
  };
  for (std::size_t li = 0; li < w.layers.size(); ++li) {
    const auto& L = w.layers[li];
    const std::string p = "model.layers." + std::to_string(li);
    add_vector(p + ".input_layernorm.weight", L.input_layernorm);
    add_vector(p + ".post_attention_layernorm.weight", L.post_attention_layernorm);
    for (linear l : all_linears) {
      const auto& lin = L[l];
      if (lin.has_bias()) add_vector(tensor_prefix(li, l) + ".bias", lin.bias);
    }
  }
  add_vector("model.norm.weight", w.norm);
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    if (!src.contains(name)) continue;  // tied embeddings have no lm_head
    const auto& info = src.info(name);
    wr.add(name, info.dtype, info.shape, src.bytes(name));
  }
  wr.write(out_dir / "model.safetensors");
}

}  // namespace mxq::llm
