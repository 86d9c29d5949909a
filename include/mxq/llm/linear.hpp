// The decoder linears of a Llama/Qwen2 layer and the groups that share an input, as enums with
// one constexpr table each: everything the pipeline, the loaders and the writers need to know
// about a linear (its name, group, Hugging Face module, the dimensions of its weight, whether
// AWQ clips it) is a row here, never a string compared in an if-chain.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mxq::llm {

// In the order a decoder layer runs them.
enum class linear : std::uint8_t { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj };

// Linears that read the same input: q/k/v share the attention norm's output, gate/up the MLP
// norm's output; o and down read the attention output and the MLP hidden state.
enum class linear_group : std::uint8_t { qkv, o, gate_up, down };

enum class sublayer : std::uint8_t { attention, mlp };

// The sizes a weight dimension can have under a model_config.
enum class model_dim : std::uint8_t { hidden, q, kv, intermediate };

struct linear_info {
  std::string_view name;       // "q_proj": the Hugging Face tensor suffix
  linear_group group;
  sublayer block;
  std::string_view hf_module;  // "self_attn" / "mlp": model.layers.N.<hf_module>.<name>
  model_dim out, in;           // weight [out, in]
  bool awq_clip;               // llm-awq clips every linear but q/k (the QK product makes it unsafe)
};

inline constexpr std::array<linear_info, 7> linear_table{{
    {"q_proj", linear_group::qkv, sublayer::attention, "self_attn", model_dim::q, model_dim::hidden, false},
    {"k_proj", linear_group::qkv, sublayer::attention, "self_attn", model_dim::kv, model_dim::hidden, false},
    {"v_proj", linear_group::qkv, sublayer::attention, "self_attn", model_dim::kv, model_dim::hidden, true},
    {"o_proj", linear_group::o, sublayer::attention, "self_attn", model_dim::hidden, model_dim::q, true},
    {"gate_proj", linear_group::gate_up, sublayer::mlp, "mlp", model_dim::intermediate, model_dim::hidden, true},
    {"up_proj", linear_group::gate_up, sublayer::mlp, "mlp", model_dim::intermediate, model_dim::hidden, true},
    {"down_proj", linear_group::down, sublayer::mlp, "mlp", model_dim::hidden, model_dim::intermediate, true},
}};

inline constexpr std::array<linear, 7> all_linears{linear::q_proj,    linear::k_proj,  linear::v_proj,   linear::o_proj,
                                                   linear::gate_proj, linear::up_proj, linear::down_proj};

constexpr const linear_info& info(linear l) noexcept { return linear_table[static_cast<std::size_t>(l)]; }
constexpr std::string_view name(linear l) noexcept { return info(l).name; }

// What absorbs a group's per-input-channel scale s (SmoothQuant, AWQ): x / s is produced by
// dividing the norm's weight, or the previous linear's output rows, by s.
enum class scale_sink : std::uint8_t { input_layernorm, post_attention_layernorm, previous_linear };

struct group_info {
  std::string_view name;  // "qkv"
  linear first;           // members are contiguous in linear order
  std::size_t count;
  scale_sink sink;
  linear previous;        // the linear that produces the input (sink == previous_linear)
};

inline constexpr std::array<group_info, 4> group_table{{
    {"qkv", linear::q_proj, 3, scale_sink::input_layernorm, linear::q_proj},
    {"o", linear::o_proj, 1, scale_sink::previous_linear, linear::v_proj},
    {"gate_up", linear::gate_proj, 2, scale_sink::post_attention_layernorm, linear::gate_proj},
    {"down", linear::down_proj, 1, scale_sink::previous_linear, linear::up_proj},
}};

inline constexpr std::array<linear_group, 4> all_groups{linear_group::qkv, linear_group::o, linear_group::gate_up,
                                                        linear_group::down};

constexpr const group_info& info(linear_group g) noexcept { return group_table[static_cast<std::size_t>(g)]; }
constexpr std::string_view name(linear_group g) noexcept { return info(g).name; }

// The linears of a group, in order.
constexpr std::span<const linear> members(linear_group g) noexcept {
  return std::span<const linear>(all_linears).subspan(static_cast<std::size_t>(info(g).first), info(g).count);
}

// "q_proj" -> linear::q_proj; nullopt for anything else.
constexpr std::optional<linear> linear_from_name(std::string_view n) noexcept {
  for (linear l : all_linears)
    if (name(l) == n) return l;
  return std::nullopt;
}

// Checkpoint tensor prefix, e.g. (3, q_proj) -> "model.layers.3.self_attn.q_proj".
inline std::string tensor_prefix(std::size_t layer, linear l) {
  return "model.layers." + std::to_string(layer) + "." + std::string(info(l).hf_module) + "." + std::string(name(l));
}

}  // namespace mxq::llm
