// The architecture of a Llama, Mistral, Qwen2 or Qwen3 checkpoint, read from a Hugging Face
// config.json. Anything the fp32 reference forward pass would silently get wrong (other model
// types, mixtures of experts, unknown RoPE scaling, other activations) is refused with an error
// naming the file and listing what is supported; a sliding window is recorded and refused where
// it would act (windows longer than it, see check_attention_window).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <algorithm>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "../io/json.hpp"
#include "../io/file.hpp"

namespace mxq::llm {

// RoPE scaling (config.json rope_scaling / rope_parameters); rope.hpp turns it into frequencies.
enum class rope_type : std::uint8_t { default_rope, linear, llama3 };

struct rope_scaling {
  rope_type type = rope_type::default_rope;
  double factor = 1.0;                         // linear, llama3
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  double original_max_position_embeddings = 0;            // llama3
};

struct model_config {
  std::string model_type;  // one of architectures (below)
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
  bool attention_bias = false;  // q/k/v biases (Qwen2 always; Llama and Qwen3 when attention_bias is true)
  bool o_proj_bias = false;     // Llama and Qwen3 with attention_bias (Qwen2 and Mistral never)
  bool mlp_bias = false;
  bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (Qwen3: self_attn.q_norm / k_norm)
  std::size_t sliding_window = 0;  // attention span of a sliding-window model; 0 = full causal attention
  rope_scaling rope;
  // transformers keeps RoPE's inv_freq as a buffer in the model dtype, so a bf16 checkpoint loaded in
  // bf16 and then run in fp32 (how the reference logits and perplexities were made) rotates with
  // bf16-rounded frequencies. On by default when config.json says the model dtype is bfloat16;
  // it moves logits by up to ~4e-3 at later positions.
  bool rope_inv_freq_bf16 = false;

  std::size_t q_dim() const { return num_attention_heads * head_dim; }
  std::size_t kv_dim() const { return num_key_value_heads * head_dim; }
};

// What each supported model_type's modeling code (transformers' modeling_<type>.py) does
// differently from Llama's; parse_model_config reads a config through its row.
enum class bias_rule : std::uint8_t {
  config,    // q/k/v/o biased when attention_bias is true (Llama, Qwen3)
  qkv,       // q/k/v always biased, o never (Qwen2)
  none,      // never biased (Mistral)
};
enum class window_rule : std::uint8_t {
  none,      // no sliding window (Llama)
  when_set,  // sliding_window applies whenever it is set (Mistral)
  opt_in,    // only with use_sliding_window = true or "sliding_attention" layer_types (Qwen2, Qwen3)
};
struct architecture {
  std::string_view model_type;
  bias_rule bias;
  window_rule window;
  bool qk_norm;
};
inline constexpr std::array<architecture, 4> architectures{{
    {"llama", bias_rule::config, window_rule::none, false},
    {"mistral", bias_rule::none, window_rule::when_set, false},
    {"qwen2", bias_rule::qkv, window_rule::opt_in, false},
    {"qwen3", bias_rule::config, window_rule::opt_in, true},
}};

// "llama, mistral, qwen2, qwen3": what the errors list.
inline std::string supported_model_types() {
  std::string s;
  for (const auto& a : architectures) s += (s.empty() ? "" : ", ") + std::string(a.model_type);
  return s;
}

// Sliding-window attention is not implemented: it is the same as full causal attention on windows
// no longer than the span, and an error on longer ones (`what` names the caller).
inline void check_attention_window(const model_config& c, std::size_t seq, const char* what) {
  if (c.sliding_window != 0 && seq > c.sliding_window)
    throw error(std::string(what) + ": windows of " + std::to_string(seq) + " tokens are longer than the model's " +
                "sliding_window of " + std::to_string(c.sliding_window) +
                " (sliding-window attention is not implemented; use windows of at most " +
                std::to_string(c.sliding_window) + " tokens)");
}

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

inline constexpr std::array<std::pair<std::string_view, rope_type>, 3> rope_types{{
    {"default", rope_type::default_rope}, {"linear", rope_type::linear}, {"llama3", rope_type::llama3}}};

inline double get_positive(const nlohmann::json& r, const char* block, const char* key,
                           const std::filesystem::path& file) {
  if (!r.contains(key) || !r[key].is_number() || !(r[key].get<double>() > 0))
    io::fail(file, std::string(block) + "." + key + " must be a positive number, got " +
                       (r.contains(key) ? r[key].dump() : std::string("nothing")));
  return r[key].get<double>();
}

// A RoPE scaling block (rope_scaling, or transformers 5's rope_parameters) into `out`; a type
// other than rope_types is an error listing them.
inline void parse_rope_block(const nlohmann::json& j, const char* key, const std::filesystem::path& file,
                             rope_scaling& out) {
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& r = j[key];
  if (!r.is_object()) io::fail(file, std::string("'") + key + "' must be an object");
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    if (!r.contains(k)) continue;
    if (!r[k].is_string()) io::fail(file, std::string(key) + "." + k + " must be a string, got " + r[k].dump());
    type = r[k].get<std::string>();
    break;
  }
  const auto* hit = std::find_if(rope_types.begin(), rope_types.end(), [&](const auto& e) { return e.first == type; });
  if (hit == rope_types.end()) {
    std::string names;
    for (const auto& e : rope_types) names += (names.empty() ? "" : ", ") + std::string(e.first);
    io::fail(file, "unsupported RoPE scaling " + std::string(key) + " type \"" + type + "\" (supported: " + names + ")");
  }
  if (hit->second == rope_type::default_rope) return;
  if (out.type != rope_type::default_rope && out.type != hit->second)
    io::fail(file, "rope_scaling and rope_parameters ask for different RoPE scalings");
  rope_scaling s;
  s.type = hit->second;
  s.factor = get_positive(r, key, "factor", file);
  if (s.type == rope_type::llama3) {
    s.low_freq_factor = get_positive(r, key, "low_freq_factor", file);
    s.high_freq_factor = get_positive(r, key, "high_freq_factor", file);
    s.original_max_position_embeddings = get_positive(r, key, "original_max_position_embeddings", file);
    if (!(s.high_freq_factor > s.low_freq_factor))
      io::fail(file, std::string(key) + ".high_freq_factor must be larger than low_freq_factor");
  }
  out = s;
}

}  // namespace mxq::detail::model

namespace mxq::llm {

inline model_config parse_model_config(const nlohmann::json& j, const std::filesystem::path& file) try {
  namespace d = detail::model;
  if (!j.is_object()) detail::io::fail(file, "config is not a JSON object");
  model_config c;
  if (!j.contains("model_type") || !j["model_type"].is_string()) detail::io::fail(file, "missing 'model_type'");
  c.model_type = j["model_type"].get<std::string>();
  const auto* arch = std::find_if(architectures.begin(), architectures.end(),
                                  [&](const architecture& a) { return a.model_type == c.model_type; });
  if (arch == architectures.end())
    detail::io::fail(file, "unsupported model_type '" + c.model_type + "' (supported: " + supported_model_types() + ")");
  for (const char* k : {"num_local_experts", "num_experts", "n_routed_experts"})
    if (j.contains(k) && j[k].is_number() && j[k].get<double>() > 1)
      detail::io::fail(file, std::string("mixture-of-experts configs (") + k + " = " + j[k].dump() +
                                 ") are not supported (supported: dense " + supported_model_types() + ")");
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
  d::parse_rope_block(j, "rope_scaling", file, c.rope);
  d::parse_rope_block(j, "rope_parameters", file, c.rope);
  c.rope_theta = d::get_double(j, "rope_theta", file, 10000.0);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
    c.rope_theta = d::get_double(j["rope_parameters"], "rope_theta", file, c.rope_theta);
  if (!(c.rope_theta > 0)) detail::io::fail(file, "rope_theta must be positive");
  c.tie_word_embeddings = d::get_bool(j, "tie_word_embeddings", file, false);
  const bool attention_bias = d::get_bool(j, "attention_bias", file, false);
  c.attention_bias = arch->bias == bias_rule::qkv || (arch->bias == bias_rule::config && attention_bias);
  c.o_proj_bias = arch->bias == bias_rule::config && attention_bias;
  c.mlp_bias = d::get_bool(j, "mlp_bias", file, false);
  c.qk_norm = arch->qk_norm;
  for (const char* k : {"dtype", "torch_dtype"})
    if (j.contains(k) && j[k].is_string() && j[k].get<std::string>() == "bfloat16") c.rope_inv_freq_bf16 = true;
  if (j.contains("hidden_act") && !(j["hidden_act"].is_string() && j["hidden_act"].get<std::string>() == "silu"))
    detail::io::fail(file, "unsupported hidden_act " + j["hidden_act"].dump() + " (only \"silu\" is implemented)");
  // The span is kept, not refused: windows no longer than it are plain causal attention.
  bool windowed = arch->window == window_rule::when_set;
  if (arch->window == window_rule::opt_in) {
    windowed = d::get_bool(j, "use_sliding_window", file, false);
    if (j.contains("layer_types") && j["layer_types"].is_array())
      for (const auto& t : j["layer_types"]) {
        if (!t.is_string() || (t.get<std::string>() != "full_attention" && t.get<std::string>() != "sliding_attention"))
          detail::io::fail(file, "unsupported layer_types entry " + t.dump() +
                                     " (supported: \"full_attention\", \"sliding_attention\")");
        windowed = windowed || t.get<std::string>() == "sliding_attention";
      }
  }
  if (windowed) {
    c.sliding_window = d::get_size(j, "sliding_window", file, 0, arch->window == window_rule::opt_in);
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    detail::io::fail(file, "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                               ") is not a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  if (c.head_dim % 2 != 0) detail::io::fail(file, "head_dim must be even for RoPE");
  return c;
} catch (const nlohmann::json::exception& e) {  // a value of another JSON type than read: named, too
  detail::io::fail(file, std::string("unexpected config structure: ") + e.what());
}

// Reads DIR/config.json (or the given .json file).
inline model_config load_model_config(const std::filesystem::path& dir_or_file) {
  const std::filesystem::path file =
      std::filesystem::is_directory(dir_or_file) ? dir_or_file / "config.json" : dir_or_file;
  return parse_model_config(detail::io::read_json_file(file), file);
}

}  // namespace mxq::llm
