// safetensors files: a memory-mapped reader that validates like the reference implementation
// (huggingface/safetensors), float32 conversion on demand, sharded checkpoints through
// model.safetensors.index.json, and a deterministic writer.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "direct_read.hpp"
#include "error.hpp"
#include "file.hpp"
#include "float_bits.hpp"
#include "json.hpp"
#include "staged_file.hpp"
#include "tensor.hpp"

namespace mxq {

// Every dtype the reference format knows (bindings up to April 2026).
enum class st_dtype {
  BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, C64,
  F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, F4, F6_E2M3, F6_E3M2
};

namespace detail::st {

struct dtype_entry {
  st_dtype type;
  std::string_view name;
  std::size_t bits;
};
inline constexpr dtype_entry dtype_table[] = {
    {st_dtype::BOOL, "BOOL", 8},     {st_dtype::U8, "U8", 8},
    {st_dtype::I8, "I8", 8},         {st_dtype::I16, "I16", 16},
    {st_dtype::U16, "U16", 16},      {st_dtype::I32, "I32", 32},
    {st_dtype::U32, "U32", 32},      {st_dtype::I64, "I64", 64},
    {st_dtype::U64, "U64", 64},      {st_dtype::F16, "F16", 16},
    {st_dtype::BF16, "BF16", 16},    {st_dtype::F32, "F32", 32},
    {st_dtype::F64, "F64", 64},      {st_dtype::C64, "C64", 64},
    {st_dtype::F8_E5M2, "F8_E5M2", 8}, {st_dtype::F8_E4M3, "F8_E4M3", 8},
    {st_dtype::F8_E8M0, "F8_E8M0", 8}, {st_dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {st_dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8}, {st_dtype::F4, "F4", 4},
    {st_dtype::F6_E2M3, "F6_E2M3", 6}, {st_dtype::F6_E3M2, "F6_E3M2", 6},
};

}  // namespace detail::st

inline std::size_t st_dtype_bits(st_dtype t) {
  for (const auto& e : detail::st::dtype_table)
    if (e.type == t) return e.bits;
  return 0;
}
inline std::string_view st_dtype_name(st_dtype t) {
  for (const auto& e : detail::st::dtype_table)
    if (e.type == t) return e.name;
  return "?";
}
inline std::optional<st_dtype> st_dtype_from_name(std::string_view name) {
  for (const auto& e : detail::st::dtype_table)
    if (e.name == name) return e.type;
  return std::nullopt;
}

struct st_tensor_info {
  std::string name;
  st_dtype dtype = st_dtype::F32;
  std::vector<std::size_t> shape;
  std::size_t begin = 0, end = 0;  // byte offsets relative to the data section
  std::size_t numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::size_t nbytes() const { return end - begin; }
};

inline std::string shape_to_string(std::span<const std::size_t> shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

namespace detail::st {

using detail::io::fail;
using detail::io::json_limits;
using detail::io::parse_json;

inline constexpr std::uint64_t max_header_size = 100'000'000;  // the reference's MAX_HEADER_SIZE
inline constexpr std::size_t max_rank = 16;                      // no checkpoint tensor comes close

// numel * bits / 8, refusing overflow and a partial trailing byte (the reference's MisalignedSlice).
inline std::size_t byte_size(std::span<const std::size_t> shape, st_dtype t, const std::filesystem::path& file,
                             const std::string& name) {
  std::size_t n = 1;
  for (auto d : shape) {
    if (d != 0 && n > std::numeric_limits<std::size_t>::max() / 64 / d)
      fail(file, "tensor '" + name + "': shape " + shape_to_string(shape) + " is too large");
    n *= d;
  }
  const std::size_t bits = n * st_dtype_bits(t);
  if (bits % 8 != 0)
    fail(file, "tensor '" + name + "': " + std::to_string(n) + " elements of " + std::string(st_dtype_name(t)) +
                   " do not fill whole bytes (misaligned slice)");
  return bits / 8;
}

struct parsed_header {
  std::map<std::string, std::string> metadata;
  std::vector<st_tensor_info> tensors;  // sorted by offset
  std::size_t data_offset = 0;          // 8 + header length
};

inline std::size_t json_size(const nlohmann::json& v, const std::filesystem::path& file, const std::string& what) {
  if (!v.is_number_unsigned())
    fail(file, what + " must be a non-negative integer, got " + v.dump());
  return v.get<std::size_t>();
}

inline parsed_header parse_header(std::span<const std::byte> buf, const std::filesystem::path& file) {
  if (buf.size() < 8)
    fail(file, "truncated safetensors file: " + std::to_string(buf.size()) + " bytes, the 8-byte header size is missing");
  std::uint64_t n = 0;
  for (int k = 0; k < 8; ++k) n |= std::uint64_t(static_cast<unsigned char>(buf[k])) << (8 * k);
  if (n > max_header_size)
    fail(file, "header size " + std::to_string(n) + " is too big (limit " + std::to_string(max_header_size) + ")");
  if (n + 8 > buf.size())
    fail(file, "truncated safetensors file: header says " + std::to_string(n) + " header bytes, file has " +
                   std::to_string(buf.size() - 8) + " after the size field");
  const std::string_view text(reinterpret_cast<const char*>(buf.data()) + 8, static_cast<std::size_t>(n));
  if (text.empty() || text.front() != '{') fail(file, "bad safetensors header: JSON must start with '{'");

  // nlohmann keeps the last of duplicate keys silently; the callback sees every top-level key.
  std::set<std::string> seen;
  std::string duplicate;
  json_limits lim;
  lim.max_bytes = max_header_size;
  const nlohmann::json j = parse_json(text, file, "bad safetensors header", lim, [&](const std::string& k) {
    if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
  });
  if (!duplicate.empty()) fail(file, "bad safetensors header: duplicate tensor name '" + duplicate + "'");
  if (!j.is_object()) fail(file, "bad safetensors header: not a JSON object");

  parsed_header h;
  h.data_offset = static_cast<std::size_t>(8 + n);
  const std::size_t data_size = buf.size() - h.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(file, "bad safetensors header: __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(file, "bad safetensors header: __metadata__['" + m.key() + "'] is not a string (" + m.value().dump() + ")");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) fail(file, where + ": entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) fail(file, where + ": missing or non-string 'dtype'");
    if (!v.contains("shape") || !v["shape"].is_array()) fail(file, where + ": missing or non-array 'shape'");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      fail(file, where + ": 'data_offsets' must be [begin, end]");
    st_tensor_info t;
    t.name = name;
    const std::string dt = v["dtype"].get<std::string>();
    const auto parsed = st_dtype_from_name(dt);
    if (!parsed) fail(file, where + ": unknown dtype '" + dt + "'");
    t.dtype = *parsed;
    if (v["shape"].size() > max_rank)
      fail(file, where + ": rank " + std::to_string(v["shape"].size()) + " is above the limit of " + std::to_string(max_rank));
    for (const auto& d : v["shape"]) t.shape.push_back(json_size(d, file, where + " shape entry"));
    t.begin = json_size(v["data_offsets"][0], file, where + " data_offsets[0]");
    t.end = json_size(v["data_offsets"][1], file, where + " data_offsets[1]");
    if (t.begin > t.end)
      fail(file, where + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] are reversed");
    if (t.end > data_size)
      fail(file, where + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                     "] out of range (data section has " + std::to_string(data_size) + " bytes; truncated file?)");
    const std::size_t want = byte_size(t.shape, t.dtype, file, name);
    if (want != t.end - t.begin)
      fail(file, where + ": dtype/shape mismatch: " + std::string(st_dtype_name(t.dtype)) + " " +
                     shape_to_string(t.shape) + " needs " + std::to_string(want) + " bytes, data_offsets span " +
                     std::to_string(t.end - t.begin));
    h.tensors.push_back(std::move(t));
  }
  // The spans must tile the data section exactly: no holes, no overlaps, nothing left over.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const st_tensor_info& a, const st_tensor_info& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::size_t pos = 0;
  const st_tensor_info* prev = nullptr;
  for (const auto& t : h.tensors) {
    if (t.begin > pos)
      fail(file, "hole in the data section: bytes [" + std::to_string(pos) + ", " + std::to_string(t.begin) +
                     ") before tensor '" + t.name + "' belong to no tensor");
    if (t.begin < pos)
      fail(file, "overlapping tensors: '" + t.name + "' starts at " + std::to_string(t.begin) + " inside '" +
                     (prev ? prev->name : std::string()) + "' (which ends at " + std::to_string(pos) + ")");
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size)
    fail(file, "hole in the data section: the last " + std::to_string(data_size - pos) +
                   " bytes belong to no tensor (data section " + std::to_string(data_size) + " bytes, tensors end at " +
                   std::to_string(pos) + ")");
  return h;
}

// model.safetensors.index.json's weight_map as (tensor, shard file) pairs, sorted by tensor name;
// every shard a plain file name inside the checkpoint directory.
inline std::vector<std::pair<std::string, std::string>> parse_index(std::string_view text, const std::filesystem::path& index) {
  const nlohmann::json j = parse_json(text, index);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail(index, "missing 'weight_map' object");
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail(index, "weight_map['" + it.key() + "'] is not a file name");
    const std::string shard = it.value().get<std::string>();
    const std::filesystem::path sp(shard);
    if (shard.empty() || sp.is_absolute() || shard.find("..") != std::string::npos || sp.has_parent_path() ||
        shard.find('\0') != std::string::npos)
      fail(index, "weight_map['" + it.key() + "'] names a file outside the checkpoint: '" + shard + "'");
    out.emplace_back(it.key(), shard);
  }
  return out;
}

template <class T>
inline T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts `n` stored elements to float32 (value conversion; integers become their value).
inline bool convert_to_f32(st_dtype t, const std::byte* src, std::size_t n, float* dst) {
  using namespace detail::io;
  switch (t) {
    case st_dtype::F32: if (n) std::memcpy(dst, src, n * 4); return true;
    case st_dtype::BF16: for (std::size_t i = 0; i < n; ++i) dst[i] = mxq::detail::bf16_bits_to_float(load_le<std::uint16_t>(src + 2 * i)); return true;
    case st_dtype::F16: for (std::size_t i = 0; i < n; ++i) dst[i] = mxq::detail::half_bits_to_float(load_le<std::uint16_t>(src + 2 * i)); return true;
    case st_dtype::F64: for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<double>(src + 8 * i)); return true;
    case st_dtype::F8_E4M3: for (std::size_t i = 0; i < n; ++i) dst[i] = fp8_e4m3fn_to_float(std::uint8_t(src[i])); return true;
    case st_dtype::F8_E5M2: for (std::size_t i = 0; i < n; ++i) dst[i] = fp8_e5m2_to_float(std::uint8_t(src[i])); return true;
    case st_dtype::F8_E8M0: for (std::size_t i = 0; i < n; ++i) dst[i] = fp8_e8m0_to_float(std::uint8_t(src[i])); return true;
    case st_dtype::F8_E4M3FNUZ:
      for (std::size_t i = 0; i < n; ++i) {
        const auto b = std::uint8_t(src[i]);
        dst[i] = b == 0x80 ? std::numeric_limits<float>::quiet_NaN() : small_float_to_float<4, 3>(b, 8);
      }
      return true;
    case st_dtype::F8_E5M2FNUZ:
      for (std::size_t i = 0; i < n; ++i) {
        const auto b = std::uint8_t(src[i]);
        dst[i] = b == 0x80 ? std::numeric_limits<float>::quiet_NaN() : small_float_to_float<5, 2>(b, 16);
      }
      return true;
    case st_dtype::BOOL: for (std::size_t i = 0; i < n; ++i) dst[i] = src[i] != std::byte{0} ? 1.0f : 0.0f; return true;
    case st_dtype::U8: for (std::size_t i = 0; i < n; ++i) dst[i] = float(std::uint8_t(src[i])); return true;
    case st_dtype::I8: for (std::size_t i = 0; i < n; ++i) dst[i] = float(static_cast<std::int8_t>(src[i])); return true;
    case st_dtype::I16: for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<std::int16_t>(src + 2 * i)); return true;
    case st_dtype::U16: for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<std::uint16_t>(src + 2 * i)); return true;
    case st_dtype::I32: for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<std::int32_t>(src + 4 * i)); return true;
    case st_dtype::U32: for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<std::uint32_t>(src + 4 * i)); return true;
    case st_dtype::I64: for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<std::int64_t>(src + 8 * i)); return true;
    case st_dtype::U64: for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<std::uint64_t>(src + 8 * i)); return true;
    default: return false;  // C64, packed F4/F6: no meaningful element-wise float32
  }
}

}  // namespace detail::st

// One .safetensors file, memory-mapped and validated on open. Tensor bytes are views into the map.
class safetensors_file {
 public:
  explicit safetensors_file(std::filesystem::path path) : safetensors_file(mapped_file(std::move(path))) {}
  // A file already read or mapped (mapped_file's in-memory form: the same validation).
  explicit safetensors_file(mapped_file map) : map_(std::move(map)) {
    auto h = detail::st::parse_header(map_.bytes(), map_.path());
    metadata_ = std::move(h.metadata);
    tensors_ = std::move(h.tensors);
    data_offset_ = h.data_offset;
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  const std::filesystem::path& path() const { return map_.path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // In data order (sorted by offset).
  const std::vector<st_tensor_info>& tensors() const { return tensors_; }
  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

  const st_tensor_info& info(std::string_view name) const {
    auto it = index_.find(name);
    if (it == index_.end()) detail::io::fail(path(), "no tensor named '" + std::string(name) + "'");
    return tensors_[it->second];
  }
  std::span<const std::byte> bytes(std::string_view name) const {
    const auto& t = info(name);
    return map_.bytes().subspan(data_offset_ + t.begin, t.nbytes());
  }
  // float32 values of any float or integer dtype (C64 and packed F4/F6 are refused).
  void read_f32_into(std::string_view name, std::span<float> out) const {
    const auto& t = info(name);
    if (out.size() != t.numel())
      detail::io::fail(path(), "tensor '" + t.name + "': output has " + std::to_string(out.size()) +
                                   " floats, tensor has " + std::to_string(t.numel()));
    if (!detail::st::convert_to_f32(t.dtype, bytes(name).data(), t.numel(), out.data()))
      detail::io::fail(path(), "tensor '" + t.name + "': dtype " + std::string(st_dtype_name(t.dtype)) +
                                   " cannot be read as float32");
  }
  std::vector<float> read_f32(std::string_view name) const {
    std::vector<float> out(info(name).numel());
    read_f32_into(name, out);
    return out;
  }
  tensor_f32 read(std::string_view name) const { return {info(name).shape, read_f32(name)}; }
  // Drops the tensor's resident pages (see mapped_file::release); its bytes stay readable.
  void release(std::string_view name) const {
    const auto& t = info(name);
    map_.release(data_offset_ + t.begin, t.nbytes());
  }
  // Starts reading the tensor's bytes into the page cache (see mapped_file::prefetch).
  void prefetch(std::string_view name) const {
    const auto& t = info(name);
    map_.prefetch(data_offset_ + t.begin, t.nbytes());
  }
  // Where the tensor's bytes start in the file.
  std::size_t file_offset(std::string_view name) const { return data_offset_ + info(name).begin; }
  // Whether the bytes come from a file on disk (not from memory).
  bool on_disk() const noexcept { return !map_.in_memory(); }

 private:
  mapped_file map_;
  std::map<std::string, std::string> metadata_;
  std::vector<st_tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::size_t data_offset_ = 0;
};

// A Hugging Face checkpoint: a directory holding model.safetensors, or shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file). A path to a single
// .safetensors file works too.
class checkpoint {
 public:
  explicit checkpoint(std::filesystem::path path) : path_(std::move(path)) {
    namespace fs = std::filesystem;
    direct_ = std::make_unique<detail::io::direct_reads>();
    if (fs::is_regular_file(path_)) {
      add_shard(path_, /*all=*/true);
      return;
    }
    if (!fs::is_directory(path_)) detail::io::fail(path_, "no such checkpoint file or directory");
    const fs::path index = path_ / "model.safetensors.index.json";
    const fs::path single = path_ / "model.safetensors";
    if (fs::exists(index)) {
      load_index(index);
    } else if (fs::exists(single)) {
      add_shard(single, true);
    } else {
      detail::io::fail(path_, "no model.safetensors or model.safetensors.index.json in the directory");
    }
  }

  // One safetensors file already opened (e.g. from memory); `path` names it in errors.
  checkpoint(safetensors_file file, std::filesystem::path path) : path_(std::move(path)) {
    direct_ = std::make_unique<detail::io::direct_reads>();
    shards_.push_back(std::move(file));
    for (const auto& t : shards_[0].tensors()) where_.emplace(t.name, 0);
  }

  const std::filesystem::path& path() const { return path_; }
  bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, _] : where_) out.push_back(n);
    return out;
  }
  const safetensors_file& file_of(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) detail::io::fail(path_, "checkpoint has no tensor named '" + std::string(name) + "'");
    return shards_[it->second];
  }
  const st_tensor_info& info(std::string_view name) const { return file_of(name).info(name); }
  // The tensor's bytes: a view into the map, or into the buffer stage() read them into.
  std::span<const std::byte> bytes(std::string_view name) const {
    const auto [k, f] = shard_of(name);
    if (const std::size_t key = direct_key(k, f.file_offset(name)); direct_ && key != no_key)
      if (auto s = direct_->find(key)) return *s;
    return f.bytes(name);
  }
  std::vector<float> read_f32(std::string_view name) const {
    std::vector<float> out(info(name).numel());
    read_f32_into(name, out);
    return out;
  }
  // (through bytes(), so a staged tensor converts from its buffer)
  void read_f32_into(std::string_view name, std::span<float> out) const {
    const auto& t = info(name);
    if (out.size() != t.numel())
      detail::io::fail(file_of(name).path(), "tensor '" + t.name + "': output has " + std::to_string(out.size()) +
                                                 " floats, tensor has " + std::to_string(t.numel()));
    if (!detail::st::convert_to_f32(t.dtype, bytes(name).data(), t.numel(), out.data()))
      detail::io::fail(file_of(name).path(), "tensor '" + t.name + "': dtype " + std::string(st_dtype_name(t.dtype)) +
                                                 " cannot be read as float32");
  }
  tensor_f32 read(std::string_view name) const { return {info(name).shape, read_f32(name)}; }
  // Done with the tensor for now: its resident map pages are dropped and a staged copy is
  // forgotten (views from bytes() taken before are invalid then; bytes() reads the map again).
  void release(std::string_view name) const {
    const auto [k, f] = shard_of(name);
    if (const std::size_t key = direct_key(k, f.file_offset(name)); direct_ && key != no_key) direct_->drop(key);
    f.release(name);
  }
  void prefetch(std::string_view name) const { file_of(name).prefetch(name); }
  // Starts reading the tensor into a buffer of its own with direct I/O (detail/io/direct_read.hpp),
  // without waiting; bytes() waits for it and release() gives the buffer back for the next one.
  // For one pass over a checkpoint larger than memory. False (nothing done) when the file cannot
  // be read so, the tensor is smaller than min_bytes (the map serves those as well) or is staged
  // already.
  bool stage(std::string_view name, std::size_t min_bytes = std::size_t{64} << 10) const {
    const auto [k, f] = shard_of(name);
    const std::size_t n = f.info(name).nbytes();
    if (!direct_ || !f.on_disk() || n < std::max<std::size_t>(min_bytes, 1)) return false;
    const std::size_t off = f.file_offset(name), key = direct_key(k, off);
    return key != no_key && direct_->stage(f.path(), key, off, n);
  }
  const std::vector<safetensors_file>& shards() const { return shards_; }

 private:
  std::size_t add_shard(const std::filesystem::path& file, bool all) {
    shards_.emplace_back(file);
    const std::size_t k = shards_.size() - 1;
    if (all)
      for (const auto& t : shards_[k].tensors()) where_.emplace(t.name, k);
    return k;
  }

  void load_index(const std::filesystem::path& index) {
    std::map<std::string, std::size_t> shard_ids;
    for (const auto& [tensor, shard] : detail::st::parse_index(detail::io::read_text(index), index)) {
      auto s = shard_ids.find(shard);
      if (s == shard_ids.end()) s = shard_ids.emplace(shard, add_shard(path_ / shard, false)).first;
      if (!shards_[s->second].contains(tensor))
        detail::io::fail(index, "weight_map says tensor '" + tensor + "' is in " + shard + ", which lacks it");
      where_.emplace(tensor, s->second);
    }
  }

  std::pair<std::size_t, const safetensors_file&> shard_of(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) detail::io::fail(path_, "checkpoint has no tensor named '" + std::string(name) + "'");
    return {it->second, shards_[it->second]};
  }
  // A staged range's key: its shard and file offset; no_key (never staged) past what fits.
  static constexpr std::size_t no_key = ~std::size_t{0};
  static std::size_t direct_key(std::size_t shard, std::size_t offset) noexcept {
    constexpr unsigned bits = 44;
    return offset >> bits == 0 && shard < (std::size_t{1} << (63 - bits)) ? shard << bits | offset : no_key;
  }

  std::filesystem::path path_;
  std::vector<safetensors_file> shards_;
  std::map<std::string, std::size_t, std::less<>> where_;
  std::unique_ptr<detail::io::direct_reads> direct_;  // last: its readers stop before the maps go
};

namespace detail::st {

struct planned_tensor {
  std::string name;
  st_dtype dtype;
  std::vector<std::size_t> shape;
  std::size_t nbytes = 0;
  std::size_t offset = 0;  // in the data section, set by plan_layout
};

// Validates a tensor declaration and returns its byte size.
inline std::size_t declared_bytes(const std::string& name, st_dtype dtype, std::span<const std::size_t> shape) {
  if (name.empty() || name == "__metadata__") throw error("safetensors_writer: invalid tensor name '" + name + "'");
  std::size_t n = 1;
  for (auto d : shape) {
    if (d != 0 && n > std::numeric_limits<std::size_t>::max() / 64 / d)
      throw error("safetensors_writer: tensor '" + name + "': shape too large");
    n *= d;
  }
  const std::size_t bits = n * st_dtype_bits(dtype);
  if (bits % 8 != 0)
    throw error("safetensors_writer: tensor '" + name + "': " + std::string(st_dtype_name(dtype)) + " " +
                shape_to_string(shape) + " does not fill whole bytes");
  return bits / 8;
}

// The file layout both writers use: data ordered by element size (largest first) then name,
// header padded with spaces to a multiple of 8. Sets every offset; returns the header (with its
// 8-byte length prefix). `order` is sorted into data order.
inline std::string plan_layout(std::vector<planned_tensor>& order, const std::map<std::string, std::string>& metadata) {
  std::sort(order.begin(), order.end(), [](const planned_tensor& a, const planned_tensor& b) {
    const auto ba = st_dtype_bits(a.dtype), bb = st_dtype_bits(b.dtype);
    return ba != bb ? ba > bb : a.name < b.name;
  });
  nlohmann::json j = nlohmann::json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::size_t off = 0;
  for (planned_tensor& e : order) {
    e.offset = off;
    j[e.name] = {{"dtype", st_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.nbytes}}};
    off += e.nbytes;
  }
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out[static_cast<std::size_t>(k)] = static_cast<char>(static_cast<unsigned char>(n >> (8 * k)));
  return out + header;
}

}  // namespace detail::st

// Collects named tensors and writes one .safetensors file: header padded with spaces to a multiple
// of 8 (so data is 8-aligned), data ordered by element size (largest first) then name, so equal
// inputs always give identical bytes. Written to a temporary file, then renamed.
class safetensors_writer {
 public:
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  void add(std::string name, st_dtype dtype, std::vector<std::size_t> shape, std::span<const std::byte> data) {
    const std::size_t nbytes = detail::st::declared_bytes(name, dtype, shape);
    for (const auto& t : entries_)
      if (t.info.name == name) throw error("safetensors_writer: duplicate tensor name '" + name + "'");
    if (nbytes != data.size())
      throw error("safetensors_writer: tensor '" + name + "': " + std::string(st_dtype_name(dtype)) + " " +
                  shape_to_string(shape) + " needs " + std::to_string(nbytes) + " bytes, got " +
                  std::to_string(data.size()) + " bytes");
    entries_.push_back({{std::move(name), dtype, std::move(shape), nbytes, 0}, std::vector<std::byte>(data.begin(), data.end())});
  }
  void add_f32(std::string name, std::vector<std::size_t> shape, std::span<const float> values) {
    add(std::move(name), st_dtype::F32, std::move(shape), std::as_bytes(values));
  }
  // Rounds to bfloat16 (nearest even).
  void add_bf16(std::string name, std::vector<std::size_t> shape, std::span<const float> values) {
    std::vector<std::uint16_t> b(values.size());
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = detail::float_to_bf16_bits(values[i]);
    add(std::move(name), st_dtype::BF16, std::move(shape), std::as_bytes(std::span<const std::uint16_t>(b)));
  }
  std::size_t size() const { return entries_.size(); }

  void write(const std::filesystem::path& path) const {
    std::vector<detail::st::planned_tensor> order;
    std::map<std::string_view, const std::vector<std::byte>*> data;
    for (const auto& e : entries_) order.push_back(e.info), data[e.info.name] = &e.data;
    const std::string header = detail::st::plan_layout(order, metadata_);
    write_file_atomically(path, [&](std::ostream& out) {
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      for (const auto& t : order) {
        const std::vector<std::byte>& d = *data.at(t.name);
        out.write(reinterpret_cast<const char*>(d.data()), static_cast<std::streamsize>(d.size()));
      }
    });
  }

 private:
  struct entry {
    detail::st::planned_tensor info;
    std::vector<std::byte> data;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<entry> entries_;
};


// One .safetensors file whose tensors are all declared first and then filled in any order as they
// become available (a streamed model, layer by layer), so no tensor waits in memory for the rest.
// The bytes are those safetensors_writer writes for the same tensors and metadata. The file is
// written under a temporary name in the destination directory and renamed by commit() only once
// every tensor was filled; a writer destroyed before that removes its temporary file.
// Resumable writers (open(path, resumable::yes)) write to `path.partial` instead, keep it when
// destroyed unfinished (or killed), and reopen it in place when it has the same layout: a run
// started again marks the tensors it knows are there (mark_written) and fills the rest.
enum class resumable : bool { no, yes };

class safetensors_stream_writer {
 public:
  safetensors_stream_writer() = default;
  safetensors_stream_writer(const safetensors_stream_writer&) = delete;
  safetensors_stream_writer& operator=(const safetensors_stream_writer&) = delete;
  safetensors_stream_writer(safetensors_stream_writer&&) noexcept = default;
  safetensors_stream_writer& operator=(safetensors_stream_writer&&) noexcept = default;

  void set_metadata(std::string key, std::string value) {
    check_not_open("set_metadata");
    metadata_[std::move(key)] = std::move(value);
  }
  void declare(std::string name, st_dtype dtype, std::vector<std::size_t> shape) {
    check_not_open("declare");
    const std::size_t nbytes = detail::st::declared_bytes(name, dtype, shape);
    if (index_.count(name)) throw error("safetensors_writer: duplicate tensor name '" + name + "'");
    index_.emplace(name, tensors_.size());
    tensors_.push_back({std::move(name), dtype, std::move(shape), nbytes, 0});
  }
  bool declared(std::string_view name) const { return index_.find(name) != index_.end(); }
  // Bytes of the data section (every declared tensor).
  std::size_t data_bytes() const {
    std::size_t n = 0;
    for (const auto& t : tensors_) n += t.nbytes;
    return n;
  }

  // Lays the file out and creates it (temporary name) at its final size. A resumable writer
  // reopens an existing `path.partial` of the same header and size (reused() says so).
  void open(const std::filesystem::path& path, resumable r = resumable::no) {
    check_not_open("open");
    std::vector<detail::st::planned_tensor> order = tensors_;
    const std::string header = detail::st::plan_layout(order, metadata_);
    for (const auto& t : order) tensors_[index_.at(t.name)].offset = t.offset;
    filled_.assign(tensors_.size(), false);
    header_bytes_ = header.size();
    const std::size_t total = header_bytes_ + data_bytes();
    opened_ = true;
    file_.create(path, total, r == resumable::yes,
                 [&](const std::filesystem::path& f) { return same_layout(f, header, total); });
    if (!file_.reused()) file_.write_at(header.data(), header.size(), 0);
  }
  // Everything put so far on disk (before a journal says it is there).
  void flush() { file_.flush(); }
  // Whether open() found the partial file of an earlier run with this layout.
  bool reused() const noexcept { return file_.reused(); }
  // A tensor an earlier run already wrote into the reused partial file.
  void mark_written(std::string_view name) {
    if (!file_.reused()) throw error("safetensors_stream_writer: mark_written('" + std::string(name) + "') without a reused partial file");
    const auto it = index_.find(name);
    if (it == index_.end()) throw error("safetensors_stream_writer: tensor '" + std::string(name) + "' was not declared");
    filled_[it->second] = true;
  }

  void put(std::string_view name, std::span<const std::byte> data) {
    if (!file_.is_open()) throw error("safetensors_stream_writer: put('" + std::string(name) + "') before open()");
    const auto it = index_.find(name);
    if (it == index_.end()) throw error("safetensors_stream_writer: tensor '" + std::string(name) + "' was not declared");
    const auto& t = tensors_[it->second];
    if (data.size() != t.nbytes)
      throw error("safetensors_stream_writer: tensor '" + t.name + "' needs " + std::to_string(t.nbytes) + " bytes, got " +
                  std::to_string(data.size()));
    if (filled_[it->second]) throw error("safetensors_stream_writer: tensor '" + t.name + "' written twice");
    file_.write_at(data.data(), data.size(), header_bytes_ + t.offset);
    filled_[it->second] = true;
  }

  // Every tensor filled: flush to disk and rename into place.
  void commit() {
    if (!file_.is_open()) throw error("safetensors_stream_writer: commit() before open()");
    for (std::size_t i = 0; i < tensors_.size(); ++i)
      if (!filled_[i]) detail::io::fail(file_.path(), "tensor '" + tensors_[i].name + "' was declared but never written");
    file_.commit();
  }

 private:
  void check_not_open(const char* what) const {
    if (opened_) throw error(std::string("safetensors_stream_writer: ") + what + " after open()");
  }
  static bool same_layout(const std::filesystem::path& f, const std::string& header, std::size_t total) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(f, ec) || std::filesystem::file_size(f, ec) != total || ec) return false;
    std::ifstream in(f, std::ios::binary);
    std::string got(header.size(), '\0');
    return static_cast<bool>(in.read(got.data(), static_cast<std::streamsize>(got.size()))) && got == header;
  }

  std::map<std::string, std::string> metadata_;
  std::vector<detail::st::planned_tensor> tensors_;  // declaration order
  std::map<std::string, std::size_t, std::less<>> index_;
  std::vector<bool> filled_;
  std::size_t header_bytes_ = 0;
  bool opened_ = false;
  detail::io::staged_file file_;  // last: abandoned (removed, or kept when resumable) first
};

}  // namespace mxq
