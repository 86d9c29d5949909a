// The architecture of a Llama or Qwen2 checkpoint, read from a Hugging Face config.json.
// Anything the fp32 reference forward pass would silently get wrong (other model types, rope
// scaling, other activations, sliding windows) is refused with an error naming the file.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "../io/file.hpp"

namespace mxq::llm {

struct model_config {
  std::string model_type;  // "llama" or "qwen2"
  std::size_t hidden_size = 0;
  std::size_t intermediate_size = 0;
  std::size_t num_hidden_layers = 0;
  std::size_t num_attention_heads = 0;
  std::size_t num_key_value_heads = 0;  // defaults to num_attention_heads (no GQA)
  std::size_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  std::size_t vocab_size = 0;
  std::size_t max_position_embeddings = 0;  // 0 when the config does not say
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2 always; Llama when attention_bias is true)
  bool mlp_bias = false;
  // transformers keeps RoPE's inv_freq as a buffer in the model dtype, so a bf16 checkpoint loaded in
  // bf16 and then run in fp32 (how the reference logits and perplexities were made) rotates with
  // bf16-rounded frequencies. On by default when config.json says the model dtype is bfloat16;
  // it moves logits by up to ~4e-3 at later positions.
  bool rope_inv_freq_bf16 = false;

  std::size_t q_dim() const { return num_attention_heads * head_dim; }
  std::size_t kv_dim() const { return num_key_value_heads * head_dim; }
};

}  // namespace mxq::llm

namespace mxq::detail::model {
using namespace ::mxq::llm;

inline std::size_t get_size(const nlohmann::json& j, const char* key, const std::filesystem::path& file,
                            std::size_t fallback = 0, bool required = true) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) io::fail(file, std::string("missing '") + key + "'");
    return fallback;
  }
  if (!j[key].is_number_unsigned() || j[key].get<std::size_t>() == 0)
    io::fail(file, std::string("'") + key + "' must be a positive integer, got " + j[key].dump());
  return j[key].get<std::size_t>();
}

inline double get_double(const nlohmann::json& j, const char* key, const std::filesystem::path& file, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) io::fail(file, std::string("'") + key + "' must be a number, got " + j[key].dump());
  return j[key].get<double>();
}

inline bool get_bool(const nlohmann::json& j, const char* key, const std::filesystem::path& file, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) io::fail(file, std::string("'") + key + "' must be true or false, got " + j[key].dump());
  return j[key].get<bool>();
}

// Only unscaled RoPE is implemented; a scaling block that asks for more is an error.
inline void check_rope_type(const nlohmann::json& j, const char* key, const std::filesystem::path& file) {
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& r = j[key];
  if (!r.is_object()) io::fail(file, std::string("'") + key + "' must be an object");
  for (const char* k : {"rope_type", "type"}) {
    if (r.contains(k) && !(r[k].is_string() && r[k].get<std::string>() == "default"))
      io::fail(file, std::string("unsupported RoPE scaling ") + key + "." + k + " = " + r[k].dump() +
                         " (only \"default\" is implemented)");
  }
}

}  // namespace mxq::detail::model

namespace mxq::llm {

inline model_config parse_model_config(const nlohmann::json& j, const std::filesystem::path& file) {
  namespace d = detail::model;
  if (!j.is_object()) detail::io::fail(file, "config is not a JSON object");
  model_config c;
  if (!j.contains("model_type") || !j["model_type"].is_string()) detail::io::fail(file, "missing 'model_type'");
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "llama" && c.model_type != "qwen2")
    detail::io::fail(file, "unsupported model_type '" + c.model_type + "' (supported: llama, qwen2)");
  c.hidden_size = d::get_size(j, "hidden_size", file);
  c.intermediate_size = d::get_size(j, "intermediate_size", file);
  c.num_hidden_layers = d::get_size(j, "num_hidden_layers", file);
  c.num_attention_heads = d::get_size(j, "num_attention_heads", file);
  c.num_key_value_heads = d::get_size(j, "num_key_value_heads", file, c.num_attention_heads, false);
  if (c.hidden_size % c.num_attention_heads != 0 && !(j.contains("head_dim") && !j["head_dim"].is_null()))
    detail::io::fail(file, "hidden_size is not a multiple of num_attention_heads and no head_dim is given");
  c.head_dim = d::get_size(j, "head_dim", file, c.hidden_size / c.num_attention_heads, false);
  c.vocab_size = d::get_size(j, "vocab_size", file);
  c.max_position_embeddings = d::get_size(j, "max_position_embeddings", file, 0, false);
  c.rms_norm_eps = d::get_double(j, "rms_norm_eps", file, 1e-6);
  if (!(c.rms_norm_eps > 0)) detail::io::fail(file, "'rms_norm_eps' must be positive");
  // Transformers >= 5 moved rope_theta into rope_parameters; older configs keep it at top level.
  d::check_rope_type(j, "rope_scaling", file);
  d::check_rope_type(j, "rope_parameters", file);
  c.rope_theta = d::get_double(j, "rope_theta", file, 10000.0);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
    c.rope_theta = d::get_double(j["rope_parameters"], "rope_theta", file, c.rope_theta);
  if (!(c.rope_theta > 0)) detail::io::fail(file, "rope_theta must be positive");
  c.tie_word_embeddings = d::get_bool(j, "tie_word_embeddings", file, false);
  c.attention_bias = d::get_bool(j, "attention_bias", file, c.model_type == "qwen2");
  c.mlp_bias = d::get_bool(j, "mlp_bias", file, false);
  for (const char* k : {"dtype", "torch_dtype"})
    if (j.contains(k) && j[k].is_string() && j[k].get<std::string>() == "bfloat16") c.rope_inv_freq_bf16 = true;
  if (j.contains("hidden_act") && !(j["hidden_act"].is_string() && j["hidden_act"].get<std::string>() == "silu"))
    detail::io::fail(file, "unsupported hidden_act " + j["hidden_act"].dump() + " (only \"silu\" is implemented)");
  if (d::get_bool(j, "use_sliding_window", file, false))
    detail::io::fail(file, "use_sliding_window=true is not supported");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    detail::io::fail(file, "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                               ") is not a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  if (c.head_dim % 2 != 0) detail::io::fail(file, "head_dim must be even for RoPE");
  return c;
}

// Reads DIR/config.json (or the given .json file).
inline model_config load_model_config(const std::filesystem::path& dir_or_file) {
  const std::filesystem::path file =
      std::filesystem::is_directory(dir_or_file) ? dir_or_file / "config.json" : dir_or_file;
  const mapped_file f(file);
  const auto b = f.bytes();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(reinterpret_cast<const char*>(b.data()), reinterpret_cast<const char*>(b.data()) + b.size());
  } catch (const nlohmann::json::exception& e) {
    detail::io::fail(file, std::string("invalid JSON: ") + e.what());
  }
  return parse_model_config(j, file);
}

}  // namespace mxq::llm
