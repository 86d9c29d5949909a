// All weights of a Llama/Qwen2 checkpoint as fp32 Eigen row-major matrices. Linear weights keep the
// Hugging Face [out, in] layout, so a quantizer can replace any of them in place.
#pragma once
#include <array>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "../io/error.hpp"
#include "../io/packed_io.hpp"
#include "../io/safetensors.hpp"
#include "config.hpp"
#include "linear.hpp"

namespace mxq::llm {

using RowMajorMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct linear_weights {
  RowMajorMatrixXf weight;  // [out_features, in_features]
  Eigen::VectorXf bias;     // [out_features], or empty when the linear has no bias
  bool has_bias() const { return bias.size() != 0; }
  std::size_t out_features() const { return static_cast<std::size_t>(weight.rows()); }
  std::size_t in_features() const { return static_cast<std::size_t>(weight.cols()); }
};

struct decoder_layer_weights {
  Eigen::VectorXf input_layernorm;           // [hidden]
  Eigen::VectorXf post_attention_layernorm;  // [hidden]
  Eigen::VectorXf q_norm, k_norm;            // [head_dim], per head before RoPE (model_config::qk_norm); else empty
  linear_weights q_proj, k_proj, v_proj, o_proj;
  linear_weights gate_proj, up_proj, down_proj;

  linear_weights& operator[](linear l) noexcept { return this->*members[static_cast<std::size_t>(l)]; }
  const linear_weights& operator[](linear l) const noexcept { return this->*members[static_cast<std::size_t>(l)]; }

  // The norm that produces a group's input (the sink of its SmoothQuant/AWQ scale), if any.
  Eigen::VectorXf* norm_of(scale_sink s) noexcept {
    return s == scale_sink::input_layernorm ? &input_layernorm
           : s == scale_sink::post_attention_layernorm ? &post_attention_layernorm
                                                       : nullptr;
  }

 private:
  static constexpr std::array<linear_weights decoder_layer_weights::*, 7> members{
      &decoder_layer_weights::q_proj,    &decoder_layer_weights::k_proj,  &decoder_layer_weights::v_proj,
      &decoder_layer_weights::o_proj,    &decoder_layer_weights::gate_proj, &decoder_layer_weights::up_proj,
      &decoder_layer_weights::down_proj};
};

struct model_weights {
  model_config config;
  RowMajorMatrixXf embed_tokens;  // [vocab, hidden]
  std::vector<decoder_layer_weights> layers;
  Eigen::VectorXf norm;     // [hidden]
  RowMajorMatrixXf lm_head;  // [vocab, hidden]; a copy of embed_tokens when the embeddings are tied
};

inline std::size_t dim_size(const model_config& c, model_dim d) noexcept {
  const std::size_t sizes[] = {c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size};
  return sizes[static_cast<std::size_t>(d)];
}

// [out_features, in_features] of a decoder linear under a config.
inline std::pair<std::size_t, std::size_t> expected_linear_shape(const model_config& c, linear l) {
  return {dim_size(c, info(l).out), dim_size(c, info(l).in)};
}

// Whether a checkpoint of this config stores a bias for the linear: Qwen2 biases q/k/v only,
// Llama's attention_bias biases o_proj as well, mlp_bias the MLP.
inline bool has_bias(const model_config& c, linear l) {
  if (info(l).block == sublayer::mlp) return c.mlp_bias;
  if (l == linear::o_proj) return c.o_proj_bias;
  return c.attention_bias;
}

}  // namespace mxq::llm

namespace mxq::detail::model {
using namespace ::mxq::llm;

inline void check_finite(const float* p, std::size_t n, const checkpoint& ck, const std::string& name) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]))
      io::fail(ck.file_of(name).path(), "tensor '" + name + "' holds a non-finite value (" + std::to_string(p[i]) +
                                            ") at element " + std::to_string(i));
}

inline void check_shape(const checkpoint& ck, const std::string& name, std::vector<std::size_t> want) {
  if (!ck.contains(name)) io::fail(ck.path(), "missing tensor '" + name + "'");
  const auto& got = ck.info(name).shape;
  if (got != want)
    io::fail(ck.file_of(name).path(), "tensor '" + name + "' has shape " + shape_to_string(got) + ", expected " +
                                          shape_to_string(want));
}

inline RowMajorMatrixXf load_matrix(const checkpoint& ck, const std::string& name, std::size_t rows, std::size_t cols) {
  check_shape(ck, name, {rows, cols});
  RowMajorMatrixXf m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  ck.read_f32_into(name, std::span<float>(m.data(), rows * cols));
  ck.release(name);  // converted: the mapped pages are not needed any more
  check_finite(m.data(), rows * cols, ck, name);
  return m;
}

inline Eigen::VectorXf load_vector(const checkpoint& ck, const std::string& name, std::size_t n) {
  check_shape(ck, name, {n});
  Eigen::VectorXf v(static_cast<Eigen::Index>(n));
  ck.read_f32_into(name, std::span<float>(v.data(), n));
  ck.release(name);
  check_finite(v.data(), n, ck, name);
  return v;
}

template <class Formats = predefined_formats>
linear_weights load_linear(const checkpoint& ck, const std::string& prefix, std::size_t out, std::size_t in,
                                  bool bias_required) {
  linear_weights l;
  if (!ck.contains(prefix + ".weight") && has_packed(ck, prefix)) {
    // A quantized checkpoint (write_quantized_checkpoint): decode the packed codes exactly.
    tensor_f32 t = read_packed_dequantized<Formats>(ck, prefix);
    if (t.shape != std::vector<std::size_t>{out, in})
      io::fail(ck.path(), "packed weight '" + prefix + "' has shape " + shape_to_string(t.shape) + ", expected " +
                              shape_to_string(std::vector<std::size_t>{out, in}));
    l.weight = Eigen::Map<RowMajorMatrixXf>(t.data.data(), static_cast<Eigen::Index>(out), static_cast<Eigen::Index>(in));
    check_finite(l.weight.data(), out * in, ck, prefix + ".weight_blocks");
  } else {
    l.weight = load_matrix(ck, prefix + ".weight", out, in);
  }
  // Biases are detected by presence too: some configs omit attention_bias.
  if (bias_required || ck.contains(prefix + ".bias")) l.bias = load_vector(ck, prefix + ".bias", out);
  return l;
}

// Decoder layer `i` in fp32 (packed linears of a quantized checkpoint in any of Formats). Without
// `linear_weights` only the norms and biases are read (the linears' weights stay empty).
template <class Formats = predefined_formats>
decoder_layer_weights load_layer(const checkpoint& ck, const model_config& cfg, std::size_t i,
                                 bool linear_weights = true) {
  const std::size_t H = cfg.hidden_size;
  decoder_layer_weights L;
  const std::string p = "model.layers." + std::to_string(i);
  L.input_layernorm = load_vector(ck, p + ".input_layernorm.weight", H);
  L.post_attention_layernorm = load_vector(ck, p + ".post_attention_layernorm.weight", H);
  if (cfg.qk_norm) {
    L.q_norm = load_vector(ck, p + ".self_attn.q_norm.weight", cfg.head_dim);
    L.k_norm = load_vector(ck, p + ".self_attn.k_norm.weight", cfg.head_dim);
  }
  for (linear l : all_linears) {
    const auto [out, in] = expected_linear_shape(cfg, l);
    const std::string prefix = tensor_prefix(i, l);
    if (linear_weights)
      L[l] = load_linear<Formats>(ck, prefix, out, in, has_bias(cfg, l));
    else if (has_bias(cfg, l) || ck.contains(prefix + ".bias"))
      L[l].bias = load_vector(ck, prefix + ".bias", out);
  }
  return L;
}

}  // namespace mxq::detail::model

namespace mxq::llm {

// Loads every weight to fp32 (packed linears of a quantized checkpoint in any of Formats). Throws
// io_error naming the file for a missing tensor, a wrong shape, an unreadable dtype or a non-finite value.
template <class Formats = predefined_formats>
model_weights load_model_weights(const checkpoint& ck, const model_config& cfg) {
  namespace d = mxq::detail::model;
  model_weights w;
  w.config = cfg;
  const std::size_t H = cfg.hidden_size, V = cfg.vocab_size;
  w.embed_tokens = d::load_matrix(ck, "model.embed_tokens.weight", V, H);
  w.layers.resize(cfg.num_hidden_layers);
  for (std::size_t i = 0; i < cfg.num_hidden_layers; ++i) w.layers[i] = d::load_layer<Formats>(ck, cfg, i);
  w.norm = d::load_vector(ck, "model.norm.weight", H);
  if (ck.contains("lm_head.weight"))
    w.lm_head = d::load_matrix(ck, "lm_head.weight", V, H);
  else if (cfg.tie_word_embeddings)
    w.lm_head = w.embed_tokens;
  else
    mxq::detail::io::fail(ck.path(), "missing tensor 'lm_head.weight' (and tie_word_embeddings is false)");
  return w;
}

// Loads config.json and the safetensors weights of a Hugging Face model directory.
template <class Formats = predefined_formats>
model_weights load_model(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir))
    mxq::detail::io::fail(dir, "not a model directory (expected config.json and model.safetensors inside)");
  const model_config cfg = load_model_config(dir);
  const checkpoint ck(dir);
  return load_model_weights<Formats>(ck, cfg);
}

// A checkpoint opened for streaming: the config and the memory-mapped tensors, nothing converted.
// Decoder layers are converted to fp32 one at a time (layer()), the embedding table is read by the
// rows a batch needs (embed()), and the pages of every tensor read are dropped again, so the
// resident set stays about one fp32 layer whatever the model's size.
class model_reader {
 public:
  explicit model_reader(const std::filesystem::path& dir)
      : dir_(check_dir(dir)), config_(load_model_config(dir)), ck_(dir) {
    namespace d = mxq::detail::model;
    const std::size_t H = config_.hidden_size, V = config_.vocab_size;
    d::check_shape(ck_, "model.embed_tokens.weight", {V, H});
    d::check_shape(ck_, "model.norm.weight", {H});
    if (ck_.contains("lm_head.weight"))
      d::check_shape(ck_, "lm_head.weight", {V, H});
    else if (!config_.tie_word_embeddings)
      mxq::detail::io::fail(ck_.path(), "missing tensor 'lm_head.weight' (and tie_word_embeddings is false)");
    const auto& e = ck_.info("model.embed_tokens.weight");
    if (st_dtype_bits(e.dtype) % 8 != 0 || st_dtype_bits(e.dtype) == 0)
      mxq::detail::io::fail(ck_.file_of(e.name).path(), "tensor '" + e.name + "': dtype " +
                                                            std::string(st_dtype_name(e.dtype)) + " cannot be read by rows");
  }

  const std::filesystem::path& path() const noexcept { return dir_; }
  const model_config& config() const noexcept { return config_; }
  const checkpoint& source() const noexcept { return ck_; }
  std::size_t num_layers() const noexcept { return config_.num_hidden_layers; }

  template <class Formats = predefined_formats>
  decoder_layer_weights layer(std::size_t i) const {
    check_layer(i);
    return mxq::detail::model::load_layer<Formats>(ck_, config_, i);
  }
  // Layer i's norms and biases only (the linears' weights empty): what a quantizer that reads the
  // weights from source() itself (quantize_stored) needs besides.
  decoder_layer_weights layer_norms_and_biases(std::size_t i) const {
    check_layer(i);
    return mxq::detail::model::load_layer(ck_, config_, i, false);
  }
  // Starts reading layer i's tensors (while the layer before is computed): the large ones into
  // buffers of their own by direct I/O without waiting (checkpoint::stage; held until the tensor
  // is released, as load_layer and quantize_stored do), the rest into the page cache.
  void prefetch_layer(std::size_t i) const {
    check_layer(i);
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const auto& name : ck_.names())
      if (name.compare(0, p.size(), p) == 0 && !ck_.stage(name)) ck_.prefetch(name);
  }
  // Done with layer i: every tensor of it released (staged buffers given back, mapped pages
  // dropped), whichever reader did or did not release them itself (a packed source's codes).
  void release_layer(std::size_t i) const {
    check_layer(i);
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const auto& name : ck_.names())
      if (name.compare(0, p.size(), p) == 0) ck_.release(name);
  }

  Eigen::VectorXf final_norm() const {
    return mxq::detail::model::load_vector(ck_, "model.norm.weight", config_.hidden_size);
  }

  // The embedding rows of `tokens`: [tokens.size(), hidden], as embed(model_weights) gives them.
  RowMajorMatrixXf embed(std::span<const std::uint32_t> tokens) const {
    const std::string name = "model.embed_tokens.weight";
    const auto& info = ck_.info(name);
    const std::size_t H = config_.hidden_size, V = config_.vocab_size, eb = st_dtype_bits(info.dtype) / 8;
    const std::span<const std::byte> bytes = ck_.bytes(name);
    RowMajorMatrixXf h(static_cast<Eigen::Index>(tokens.size()), static_cast<Eigen::Index>(H));
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      if (tokens[t] >= V)
        throw error("token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
                    " is outside the vocabulary (" + std::to_string(V) + ")");
      float* row = h.row(static_cast<Eigen::Index>(t)).data();
      if (!mxq::detail::st::convert_to_f32(info.dtype, bytes.data() + std::size_t{tokens[t]} * H * eb, H, row))
        mxq::detail::io::fail(ck_.file_of(name).path(), "tensor '" + name + "': dtype " +
                                                            std::string(st_dtype_name(info.dtype)) + " cannot be read as float32");
      mxq::detail::model::check_finite(row, H, ck_, name);
    }
    ck_.release(name);
    return h;
  }

 private:
  void check_layer(std::size_t i) const {
    if (i >= num_layers())
      throw error("model_reader: layer " + std::to_string(i) + " out of range (model has " +
                  std::to_string(num_layers()) + ")");
  }
  static const std::filesystem::path& check_dir(const std::filesystem::path& dir) {
    if (!std::filesystem::is_directory(dir))
      mxq::detail::io::fail(dir, "not a model directory (expected config.json and model.safetensors inside)");
    return dir;
  }
  std::filesystem::path dir_;
  model_config config_;
  checkpoint ck_;
};

}  // namespace mxq::llm
