// Writes a quantized model as a Hugging Face-style directory: config files copied, every decoder
// linear packed (see packed_io.hpp), norms in F32 (they may hold folded SmoothQuant/AWQ scales),
// embeddings and lm_head copied byte for byte in their original dtype. The recipe is recorded in
// __metadata__ (mxq.format, mxq.method, mxq.act_format, mxq.rotation, mxq.version).
//
// quantized_checkpoint_writer streams: every tensor is declared up front (so each shard's header
// and layout are fixed), then filled layer by layer as quantization proceeds, and nothing is held
// back in memory. Shards hold at most max_shard_bytes each, named and indexed as Hugging Face does
// (model.safetensors alone, or model-0000k-of-0000n.safetensors + model.safetensors.index.json).
// Every file is written under a temporary name and renamed when whole; the index (or the single
// file) and the config come last, so a directory never looks complete before it is.
#pragma once
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/packed_io.hpp"
#include "../io/safetensors.hpp"
#include "quantize_model.hpp"
#include "weights.hpp"

namespace mxq::llm {

// The files beside the weights an engine loads from a model directory, copied with them.
inline constexpr const char* hf_side_files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                                "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"};

// Hugging Face's default max_shard_size ("5GB").
inline constexpr std::size_t default_max_shard_bytes = 5'000'000'000;

// A checkpoint written tensor by tensor into shards of at most max_shard_bytes (a tensor larger
// than that gets a shard of its own). declare() every tensor in checkpoint order, open(), put()
// each in any order, commit().
class sharded_checkpoint_writer {
 public:
  explicit sharded_checkpoint_writer(std::filesystem::path dir, std::size_t max_shard_bytes = default_max_shard_bytes)
      : dir_(std::move(dir)), max_(max_shard_bytes) {
    if (max_ == 0) throw error("sharded_checkpoint_writer: the maximum shard size must be positive");
  }

  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void declare(const std::string& name, st_dtype dtype, const std::vector<std::size_t>& shape) {
    const std::size_t n = mxq::detail::st::declared_bytes(name, dtype, shape);
    if (shard_of_.count(name)) throw error("sharded_checkpoint_writer: duplicate tensor name '" + name + "'");
    if (shards_.empty() || (sizes_.back() > 0 && sizes_.back() + n > max_)) shards_.emplace_back(), sizes_.push_back(0);
    shards_.back().declare(name, dtype, shape);
    sizes_.back() += n;
    total_ += n;
    shard_of_[name] = shards_.size() - 1;
  }
  std::size_t shard_count() const noexcept { return shards_.size(); }
  std::size_t total_bytes() const noexcept { return total_; }

  // Creates the shards (temporary names); resumable: see safetensors_stream_writer.
  void open(resumable r = resumable::no) {
    if (shards_.empty()) throw error("sharded_checkpoint_writer: no tensors declared");
    std::filesystem::create_directories(dir_);
    for (std::size_t k = 0; k < shards_.size(); ++k) {
      for (const auto& [key, value] : metadata_) shards_[k].set_metadata(key, value);
      shards_[k].open(dir_ / file_name(k), r);
    }
  }
  // Whether every shard reopened an earlier run's partial file of the same layout.
  bool reused() const noexcept {
    for (const auto& s : shards_)
      if (!s.reused()) return false;
    return true;
  }
  void flush() {
    for (auto& s : shards_) s.flush();
  }
  void mark_written(const std::string& name) {
    const auto it = shard_of_.find(name);
    if (it == shard_of_.end()) throw error("sharded_checkpoint_writer: tensor '" + name + "' was not declared");
    shards_[it->second].mark_written(name);
  }
  void put(const std::string& name, std::span<const std::byte> data) {
    const auto it = shard_of_.find(name);
    if (it == shard_of_.end()) throw error("sharded_checkpoint_writer: tensor '" + name + "' was not declared");
    shards_[it->second].put(name, data);
  }

  // Commits every shard, then the index; removes what an earlier write left that would shadow it.
  void commit() {
    namespace fs = std::filesystem;
    const fs::path index = dir_ / "model.safetensors.index.json";
    std::error_code ec;
    // An earlier checkpoint's index goes first: were a shard's rename to fail half way, the old
    // index must not present a mix of old and new shards as a whole checkpoint.
    fs::remove(index, ec);
    for (auto& s : shards_) s.commit();
    if (shards_.size() > 1) {
      nlohmann::json j;
      j["metadata"] = {{"total_size", total_}};
      j["weight_map"] = nlohmann::json::object();
      for (const auto& [name, k] : shard_of_) j["weight_map"][name] = file_name(k);
      write_file_atomically(index, [&](std::ostream& out) { out << j.dump(2) << "\n"; });
      fs::remove(dir_ / "model.safetensors", ec);
    }
    for (const auto& e : fs::directory_iterator(dir_, ec)) {  // shards of an earlier, differently split write
      const std::string f = e.path().filename().string();
      bool ours = false;
      for (std::size_t k = 0; k < shards_.size(); ++k) ours = ours || f == file_name(k);
      if (!ours && f.rfind("model-", 0) == 0 && f.size() > 12 && f.substr(f.size() - 12) == ".safetensors")
        fs::remove(e.path(), ec);
    }
  }

 private:
  std::string file_name(std::size_t k) const {
    if (shards_.size() == 1) return "model.safetensors";
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, shards_.size());
    return buf;
  }
  std::filesystem::path dir_;
  std::size_t max_;
  std::map<std::string, std::string> metadata_;
  std::vector<safetensors_stream_writer> shards_;
  std::vector<std::size_t> sizes_;
  std::map<std::string, std::size_t> shard_of_;
  std::size_t total_ = 0;
};

}  // namespace mxq::llm

namespace mxq::detail::model {
// add_packed's writer interface onto the sharded writer: declaring, then filling.
struct declare_into {
  llm::sharded_checkpoint_writer& w;
  std::vector<std::string>& names;  // what was declared, in order
  void add(const std::string& n, st_dtype d, const std::vector<std::size_t>& s, std::span<const std::byte>) {
    w.declare(n, d, s);
    names.push_back(n);
  }
  void set_metadata(const std::string& k, const std::string& v) { w.set_metadata(k, v); }
};
struct put_into {
  llm::sharded_checkpoint_writer& w;
  void add(const std::string& n, st_dtype, const std::vector<std::size_t>&, std::span<const std::byte> b) { w.put(n, b); }
  void set_metadata(const std::string&, const std::string&) {}
};
inline std::span<const std::byte> bytes_of(const Eigen::VectorXf& v) {
  return std::as_bytes(std::span<const float>(v.data(), static_cast<std::size_t>(v.size())));
}
}  // namespace mxq::detail::model

namespace mxq::llm {

// The quantized checkpoint of a model of `cfg` read from `src` (a streamed model_reader or any
// checkpoint with the same tensors), written as its layers are done.
template <format_type F>
class quantized_checkpoint_writer {
 public:
  quantized_checkpoint_writer(const std::filesystem::path& out_dir, const std::filesystem::path& src_dir,
                              const model_config& cfg, const checkpoint& src,
                              const std::map<std::string, std::string>& metadata,
                              std::size_t max_shard_bytes = default_max_shard_bytes, resumable r = resumable::no,
                              bool input_amax = false)
      : out_(out_dir), src_dir_(src_dir), cfg_(cfg), src_(src), w_(out_dir, max_shard_bytes) {
    namespace fs = std::filesystem;
    if (fs::exists(out_dir) && !fs::is_directory(out_dir))
      throw error(out_dir.string() + ": exists and is not a directory");
    std::error_code ec;
    if (fs::exists(out_dir) && fs::equivalent(out_dir, src_dir, ec))  // its shards would replace the source's
      throw error(out_dir.string() + ": the output directory is the source model's directory (" + src_dir.string() +
                  "); write the quantized checkpoint elsewhere");
    for (const auto& [k, v] : metadata) w_.set_metadata(k, v);
    w_.set_metadata("format", "pt");
    w_.set_metadata("mxq.format", std::string(format_traits<F>::name));
    w_.set_metadata("mxq.version", std::to_string(MXQ_VERSION_MAJOR) + "." + std::to_string(MXQ_VERSION_MINOR) + "." +
                                       std::to_string(MXQ_VERSION_PATCH));
    const std::size_t H = cfg.hidden_size;
    declare_copy("model.embed_tokens.weight");
    layer_names_.resize(cfg.num_hidden_layers);
    for (std::size_t li = 0; li < cfg.num_hidden_layers; ++li) {
      std::vector<std::string>& names = layer_names_[li];
      mxq::detail::model::declare_into d{w_, names};
      for (linear l : all_linears) {
        const auto [rows, cols] = expected_linear_shape(cfg, l);
        declare_packed<F>(d, tensor_prefix(li, l), rows, cols);
        if (input_amax) d.add(tensor_prefix(li, l) + ".input_amax", st_dtype::F32, {1}, {});
        if (has_bias(cfg, l) || src.contains(tensor_prefix(li, l) + ".bias"))
          d.add(tensor_prefix(li, l) + ".bias", st_dtype::F32, {rows}, {});
      }
      const std::string p = "model.layers." + std::to_string(li);
      d.add(p + ".input_layernorm.weight", st_dtype::F32, {H}, {});
      d.add(p + ".post_attention_layernorm.weight", st_dtype::F32, {H}, {});
      if (cfg.qk_norm) {
        d.add(p + ".self_attn.q_norm.weight", st_dtype::F32, {cfg.head_dim}, {});
        d.add(p + ".self_attn.k_norm.weight", st_dtype::F32, {cfg.head_dim}, {});
      }
    }
    w_.declare("model.norm.weight", st_dtype::F32, {H});
    if (src.contains("lm_head.weight")) declare_copy("lm_head.weight");  // tied embeddings have none
    w_.open(r);
  }

  std::size_t shard_count() const noexcept { return w_.shard_count(); }

  // What has been put so far, on disk (call before recording progress in a run_journal).
  void flush() { w_.flush(); }

  // Resumable writers: layers [0, n) are already in the partial files an earlier run left (its
  // journal says so). Fails when those files are missing or laid out differently.
  void resume_layers(std::size_t n) {
    if (n == 0) return;
    if (n > layer_names_.size())
      throw error("quantized_checkpoint_writer: resume after layer " + std::to_string(n) + " of a " +
                  std::to_string(layer_names_.size()) + "-layer model");
    if (!w_.reused())
      throw error(out_.string() + ": the partial checkpoint files of the interrupted run are missing or laid out "
                                  "differently; remove the directory to start again");
    for (std::size_t li = 0; li < n; ++li)
      for (const auto& name : layer_names_[li]) w_.mark_written(name);
  }

  void put_linear(const std::string& prefix, const packed_matrix<F>& q) {
    mxq::detail::model::put_into p{w_};
    add_packed(p, prefix, q);
  }
  // A calibrated run's quantized_model::input_amax entry (a writer made with input_amax = true).
  void put_input_amax(const std::string& prefix, float amax) {
    w_.put(prefix + ".input_amax", std::as_bytes(std::span<const float>(&amax, 1)));
  }
  // The layer's norms and biases (after quantization: they hold the folded scales).
  void put_layer(std::size_t li, const decoder_layer_weights& L) {
    const std::string p = "model.layers." + std::to_string(li);
    w_.put(p + ".input_layernorm.weight", mxq::detail::model::bytes_of(L.input_layernorm));
    w_.put(p + ".post_attention_layernorm.weight", mxq::detail::model::bytes_of(L.post_attention_layernorm));
    if (cfg_.qk_norm) {
      w_.put(p + ".self_attn.q_norm.weight", mxq::detail::model::bytes_of(L.q_norm));
      w_.put(p + ".self_attn.k_norm.weight", mxq::detail::model::bytes_of(L.k_norm));
    }
    for (linear l : all_linears)
      if (L[l].has_bias()) w_.put(tensor_prefix(li, l) + ".bias", mxq::detail::model::bytes_of(L[l].bias));
  }
  // The tensors copied from the source in their stored dtype (embeddings, lm_head). finish() does
  // it when it has not been done; calling it early (say with the first layer) spreads the writing
  // over the run.
  void copy_source_tensors() {
    if (copied_) return;
    for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
      if (!src_.contains(name)) continue;
      w_.put(name, src_.bytes(name));
      src_.release(name);
    }
    copied_ = true;
  }
  // The final norm and the copied tensors; commits the shards, then copies the config files.
  void finish(const Eigen::VectorXf& final_norm) {
    w_.put("model.norm.weight", mxq::detail::model::bytes_of(final_norm));
    copy_source_tensors();
    namespace fs = std::filesystem;
    // The config, and the tokenizer an engine loads from the same directory: copied before the
    // shards are committed, renamed into place after them.
    staged_copies side;
    for (const char* f : hf_side_files)
      if (fs::exists(src_dir_ / f)) side.add(src_dir_ / f, out_ / f);
    w_.commit();
    side.commit();
  }

 private:
  void declare_copy(const std::string& name) {
    const auto& info = src_.info(name);
    w_.declare(name, info.dtype, info.shape);
  }
  std::filesystem::path out_, src_dir_;
  model_config cfg_;
  const checkpoint& src_;
  sharded_checkpoint_writer w_;
  std::vector<std::vector<std::string>> layer_names_;  // every tensor of each decoder layer
  bool copied_ = false;
};

// The whole quantized model at once (quantize_model's result and the quantized weights `w`).
template <format_type F>
void write_quantized_checkpoint(const std::filesystem::path& out_dir, const std::filesystem::path& src_dir,
                                const model_weights& w, const quantized_model<F>& q,
                                const std::map<std::string, std::string>& metadata,
                                std::size_t max_shard_bytes = default_max_shard_bytes) {
  const checkpoint src(src_dir);
  quantized_checkpoint_writer<F> out(out_dir, src_dir, w.config, src, metadata, max_shard_bytes, resumable::no,
                                     !q.input_amax.empty());
  for (const auto& [prefix, packed] : q.linears) out.put_linear(prefix, packed);
  for (const auto& [prefix, amax] : q.input_amax) out.put_input_amax(prefix, amax);
  for (std::size_t li = 0; li < w.layers.size(); ++li) out.put_layer(li, w.layers[li]);
  out.finish(w.norm);
}

}  // namespace mxq::llm
