// GGUF v3 files, the format llama.cpp / ggml load (facts: shared docs checkpoint-formats.md §1):
//
//   "GGUF", version u32 = 3, tensor count i64, KV count i64, the KV pairs, the tensor infos,
//   zero padding to the alignment, the data section (each tensor at the running sum of the
//   previous tensors' sizes padded to the alignment, the last one padded too).
//
// Strings are a u64 length and the bytes; arrays an element type, a u64 count and the elements.
// Tensor infos: name (at most 63 bytes), n_dims u32, n_dims i64 dims with ne[0] the contiguous
// one (a PyTorch [out, in] weight is [in, out] here), ggml type i32, offset u64.
//
//   mxq::gguf_writer w;
//   w.set("general.architecture", std::string("llama"));
//   w.set("llama.block_count", std::uint32_t{32});      // llama.cpp checks every key's exact type
//   w.declare("token_embd.weight", mxq::ggml_type::f16, {4096, 32000});
//   w.open("model.gguf");                               // laid out, under a temporary name
//   w.put("token_embd.weight", bytes);                  // any order, each exactly its size
//   w.commit();                                         // renamed into place when whole
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <type_traits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "error.hpp"
#include "staged_file.hpp"

namespace mxq {

// ggml tensor types mxq writes (ggml.h numbering), with their blocks.
enum class ggml_type : std::int32_t { f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, bf16 = 30, mxfp4 = 39, nvfp4 = 40 };

struct ggml_type_info {
  ggml_type type;
  std::string_view name;
  std::size_t block_elements, block_bytes;
};
inline constexpr std::array<ggml_type_info, 7> ggml_types{{
    {ggml_type::f32, "F32", 1, 4},
    {ggml_type::f16, "F16", 1, 2},
    {ggml_type::q4_0, "Q4_0", 32, 18},    // fp16 d, 16 bytes: element j low nibble, j + 16 high
    {ggml_type::q8_0, "Q8_0", 32, 34},    // fp16 d, 32 int8
    {ggml_type::bf16, "BF16", 1, 2},
    {ggml_type::mxfp4, "MXFP4", 32, 17},  // E8M0 byte, 16 bytes as Q4_0's
    {ggml_type::nvfp4, "NVFP4", 64, 36},  // 4 UE4M3 bytes, 4 x 8 bytes: element 16s+j low, 16s+j+8 high
}};

inline const ggml_type_info& ggml_info(ggml_type t) {
  for (const auto& i : ggml_types)
    if (i.type == t) return i;
  throw error("ggml type " + std::to_string(static_cast<int>(t)) + " is not one mxq writes");
}

// GGUF metadata value types (gguf.h).
enum class gguf_value_type : std::int32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7, string = 8,
  array = 9, uint64 = 10, int64 = 11, float64 = 12,
};

namespace detail::gguf {

template <class T>
struct value_type_of;
template <> struct value_type_of<std::uint8_t> { static constexpr gguf_value_type v = gguf_value_type::uint8; };
template <> struct value_type_of<std::int8_t> { static constexpr gguf_value_type v = gguf_value_type::int8; };
template <> struct value_type_of<std::uint16_t> { static constexpr gguf_value_type v = gguf_value_type::uint16; };
template <> struct value_type_of<std::int16_t> { static constexpr gguf_value_type v = gguf_value_type::int16; };
template <> struct value_type_of<std::uint32_t> { static constexpr gguf_value_type v = gguf_value_type::uint32; };
template <> struct value_type_of<std::int32_t> { static constexpr gguf_value_type v = gguf_value_type::int32; };
template <> struct value_type_of<float> { static constexpr gguf_value_type v = gguf_value_type::float32; };
template <> struct value_type_of<bool> { static constexpr gguf_value_type v = gguf_value_type::boolean; };
template <> struct value_type_of<std::string> { static constexpr gguf_value_type v = gguf_value_type::string; };
template <> struct value_type_of<std::uint64_t> { static constexpr gguf_value_type v = gguf_value_type::uint64; };
template <> struct value_type_of<std::int64_t> { static constexpr gguf_value_type v = gguf_value_type::int64; };
template <> struct value_type_of<double> { static constexpr gguf_value_type v = gguf_value_type::float64; };

// Little-endian serialization (the hosts mxq supports are little-endian, like ggml's).
struct out_bytes {
  std::string b;
  template <class T>
  void pod(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    char tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.append(tmp, sizeof(T));
  }
  void str(std::string_view s) {
    pod<std::uint64_t>(s.size());
    b.append(s.data(), s.size());
  }
  template <class T>
  void value(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) str(v);
    else if constexpr (std::is_same_v<T, bool>) pod<std::uint8_t>(v ? 1 : 0);
    else pod<T>(v);
  }
};

inline std::size_t pad_to(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

}  // namespace detail::gguf

class gguf_writer {
 public:
  static constexpr std::size_t alignment = 32;  // ggml's default (no general.alignment written)

  // A metadata value of exactly the GGUF type of T (llama.cpp refuses a u64 where it reads a u32).
  template <class T>
  void set(const std::string& key, const T& v) {
    detail::gguf::out_bytes o;
    o.pod<std::int32_t>(static_cast<std::int32_t>(detail::gguf::value_type_of<T>::v));
    o.value(v);
    add_kv(key, std::move(o.b));
  }
  // An array of scalars or strings (ggml refuses arrays of arrays).
  template <class T>
  void set_array(const std::string& key, std::span<const T> items) {
    detail::gguf::out_bytes o;
    o.pod<std::int32_t>(static_cast<std::int32_t>(gguf_value_type::array));
    o.pod<std::int32_t>(static_cast<std::int32_t>(detail::gguf::value_type_of<T>::v));
    o.pod<std::uint64_t>(items.size());
    for (const auto& x : items) o.value(x);
    add_kv(key, std::move(o.b));
  }
  template <class T>
  void set_array(const std::string& key, const std::vector<T>& items) {
    set_array(key, std::span<const T>(items));
  }
  bool has(const std::string& key) const { return keys_.count(key) != 0; }

  // A tensor of `ne` (ne[0] contiguous, a multiple of the type's block); the data section holds
  // the tensors in declaration order.
  void declare(const std::string& name, ggml_type type, std::vector<std::uint64_t> ne) {
    if (file_.is_open()) throw error("gguf_writer: declare('" + name + "') after open()");
    if (name.empty() || name.size() > 63)
      throw error("gguf_writer: tensor name '" + name + "' must be 1 to 63 bytes (ggml's GGML_MAX_NAME)");
    if (index_.count(name)) throw error("gguf_writer: tensor '" + name + "' declared twice");
    if (ne.empty() || ne.size() > 4) throw error("gguf_writer: tensor '" + name + "' needs 1 to 4 dimensions");
    const ggml_type_info& ti = ggml_info(type);
    if (ne[0] % ti.block_elements != 0)
      throw error("gguf_writer: tensor '" + name + "': ne[0] = " + std::to_string(ne[0]) + " is not a multiple of " +
                  std::string(ti.name) + "'s block of " + std::to_string(ti.block_elements));
    std::uint64_t bytes = ne[0] / ti.block_elements * ti.block_bytes;
    for (std::size_t d = 1; d < ne.size(); ++d) bytes *= ne[d];
    tensor t{name, type, std::move(ne), data_bytes_, static_cast<std::size_t>(bytes)};
    data_bytes_ += detail::gguf::pad_to(t.bytes, alignment);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  std::size_t tensor_bytes(const std::string& name) const { return tensors_.at(find(name)).bytes; }
  std::size_t tensor_count() const noexcept { return tensors_.size(); }

  // Lays the file out and creates it (temporary name) at its final size.
  void open(const std::filesystem::path& path) {
    if (file_.is_open()) throw error("gguf_writer: open() twice");
    detail::gguf::out_bytes h;
    h.b = "GGUF";
    h.pod<std::uint32_t>(3);
    h.pod<std::int64_t>(static_cast<std::int64_t>(tensors_.size()));
    h.pod<std::int64_t>(static_cast<std::int64_t>(kv_.size()));
    for (const auto& [k, v] : kv_) {
      h.str(k);
      h.b += v;
    }
    for (const auto& t : tensors_) {
      h.str(t.name);
      h.pod<std::uint32_t>(static_cast<std::uint32_t>(t.ne.size()));
      for (std::uint64_t d : t.ne) h.pod<std::int64_t>(static_cast<std::int64_t>(d));
      h.pod<std::int32_t>(static_cast<std::int32_t>(t.type));
      h.pod<std::uint64_t>(t.offset);
    }
    data_start_ = detail::gguf::pad_to(h.b.size(), alignment);
    h.b.resize(data_start_, '\0');
    file_.create(path, data_start_ + data_bytes_, false);  // ftruncate: the padding reads as zeros
    file_.write_at(h.b.data(), h.b.size(), 0);
    filled_.assign(tensors_.size(), false);
  }

  void put(const std::string& name, std::span<const std::byte> data) {
    if (!file_.is_open()) throw error("gguf_writer: put('" + name + "') before open()");
    const std::size_t i = find(name);
    const tensor& t = tensors_[i];
    if (data.size() != t.bytes)
      throw error("gguf_writer: tensor '" + name + "' needs " + std::to_string(t.bytes) + " bytes, got " +
                  std::to_string(data.size()));
    if (filled_[i]) throw error("gguf_writer: tensor '" + name + "' written twice");
    file_.write_at(data.data(), data.size(), data_start_ + t.offset);
    filled_[i] = true;
  }

  // Every tensor written: flushed and renamed into place.
  void commit() {
    if (!file_.is_open()) throw error("gguf_writer: commit() before open()");
    for (std::size_t i = 0; i < tensors_.size(); ++i)
      if (!filled_[i]) detail::io::fail(file_.path(), "tensor '" + tensors_[i].name + "' was declared but never written");
    file_.commit();
  }

 private:
  struct tensor {
    std::string name;
    ggml_type type;
    std::vector<std::uint64_t> ne;
    std::size_t offset, bytes;
  };
  void add_kv(const std::string& key, std::string value) {
    if (file_.is_open()) throw error("gguf_writer: metadata '" + key + "' set after open()");
    if (key.empty()) throw error("gguf_writer: empty metadata key");
    if (!keys_.insert(key).second) throw error("gguf_writer: metadata key '" + key + "' set twice");
    kv_.emplace_back(key, std::move(value));
  }
  std::size_t find(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) throw error("gguf_writer: tensor '" + name + "' was not declared");
    return it->second;
  }

  std::vector<std::pair<std::string, std::string>> kv_;  // key, serialized type + value
  std::set<std::string> keys_;
  std::vector<tensor> tensors_;
  std::map<std::string, std::size_t> index_;
  std::vector<bool> filled_;
  std::size_t data_bytes_ = 0, data_start_ = 0;
  detail::io::staged_file file_;
};

}  // namespace mxq
