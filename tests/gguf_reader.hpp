// A GGUF v3 reader and the ggml block decoders, written for the tests from the format description
// (shared docs checkpoint-formats.md §1; ggml's gguf.cpp, ggml-common.h, ggml-quants.c,
// ggml-impl.h as that document quotes them), not from mxq's writer: what an exported file says
// is read the way llama.cpp reads it. Included after <catch2/catch.hpp>.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace mxq::test::gguf {

struct value {
  std::int32_t type = -1;  // GGUF value type; for arrays the element type is `elem`
  std::int32_t elem = -1;
  std::uint64_t u = 0;  // unsigned / bool payload
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<std::string> strings;
  std::vector<std::int64_t> ints;  // int32 array elements
  std::size_t count = 0;  // array length
};

struct tensor {
  std::string name;
  std::vector<std::int64_t> ne;
  std::int32_t type = -1;
  std::uint64_t offset = 0;
};

struct file {
  std::uint32_t version = 0;
  std::map<std::string, value> kv;
  std::vector<tensor> tensors;
  std::vector<unsigned char> bytes;
  std::size_t data_start = 0;
  const tensor& at(const std::string& n) const {
    for (const auto& t : tensors)
      if (t.name == n) return t;
    throw std::runtime_error("no tensor " + n);
  }
  const unsigned char* data(const tensor& t) const { return bytes.data() + data_start + t.offset; }
};

// Blocks of ggml types: elements, bytes (ggml-common.h).
inline std::pair<std::size_t, std::size_t> block_of(std::int32_t type) {
  switch (type) {
    case 0: return {1, 4};     // F32
    case 1: return {1, 2};     // F16
    case 2: return {32, 18};   // Q4_0
    case 8: return {32, 34};   // Q8_0
    case 30: return {1, 2};    // BF16
    case 39: return {32, 17};  // MXFP4
    case 40: return {64, 36};  // NVFP4
    default: throw std::runtime_error("unexpected ggml type " + std::to_string(type));
  }
}
inline std::size_t nbytes(const tensor& t) {
  const auto [be, bb] = block_of(t.type);
  std::size_t n = static_cast<std::size_t>(t.ne[0]) / be * bb;
  for (std::size_t d = 1; d < t.ne.size(); ++d) n *= static_cast<std::size_t>(t.ne[d]);
  return n;
}

inline file read(const std::filesystem::path& p) {
  file f;
  std::ifstream in(p, std::ios::binary);
  f.bytes.assign(std::istreambuf_iterator<char>(in), {});
  std::size_t pos = 0;
  auto need = [&](std::size_t n) {
    if (pos + n > f.bytes.size()) throw std::runtime_error("truncated GGUF");
  };
  auto pod = [&]<class T>(T*) {
    need(sizeof(T));
    T v;
    std::memcpy(&v, f.bytes.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  };
  auto u32 = [&] { return pod(static_cast<std::uint32_t*>(nullptr)); };
  auto u64 = [&] { return pod(static_cast<std::uint64_t*>(nullptr)); };
  auto i32 = [&] { return pod(static_cast<std::int32_t*>(nullptr)); };
  auto i64 = [&] { return pod(static_cast<std::int64_t*>(nullptr)); };
  auto str = [&] {
    const std::uint64_t n = u64();
    need(n);
    std::string s(reinterpret_cast<const char*>(f.bytes.data() + pos), n);
    pos += n;
    return s;
  };
  auto scalar = [&](std::int32_t t, value& v) {
    switch (t) {
      case 0: v.u = pod(static_cast<std::uint8_t*>(nullptr)); break;
      case 1: v.i = pod(static_cast<std::int8_t*>(nullptr)); break;
      case 2: v.u = pod(static_cast<std::uint16_t*>(nullptr)); break;
      case 3: v.i = pod(static_cast<std::int16_t*>(nullptr)); break;
      case 4: v.u = u32(); break;
      case 5: v.i = i32(); v.ints.push_back(v.i); break;
      case 6: v.f = pod(static_cast<float*>(nullptr)); break;
      case 7: v.u = pod(static_cast<std::uint8_t*>(nullptr)); break;
      case 8: v.strings.push_back(str()); v.s = v.strings.back(); break;
      case 10: v.u = u64(); break;
      case 11: v.i = i64(); break;
      case 12: v.f = pod(static_cast<double*>(nullptr)); break;
      default: throw std::runtime_error("bad GGUF value type " + std::to_string(t));
    }
  };
  need(4);
  if (std::memcmp(f.bytes.data(), "GGUF", 4) != 0) throw std::runtime_error("bad magic");
  pos = 4;
  f.version = u32();
  const std::int64_t n_tensors = i64(), n_kv = i64();
  if (n_tensors < 0 || n_kv < 0) throw std::runtime_error("negative count");
  for (std::int64_t k = 0; k < n_kv; ++k) {
    const std::string key = str();
    value v;
    v.type = i32();
    if (v.type == 9) {
      v.elem = i32();
      if (v.elem == 9) throw std::runtime_error("array of arrays (ggml refuses them)");
      v.count = u64();
      for (std::size_t e = 0; e < v.count; ++e) scalar(v.elem, v);
    } else {
      scalar(v.type, v);
    }
    if (f.kv.count(key)) throw std::runtime_error("duplicate key " + key);
    f.kv[key] = v;
  }
  std::size_t alignment = 32;
  if (auto it = f.kv.find("general.alignment"); it != f.kv.end()) alignment = it->second.u;
  for (std::int64_t k = 0; k < n_tensors; ++k) {
    tensor t;
    t.name = str();
    const std::uint32_t nd = u32();
    for (std::uint32_t d = 0; d < nd; ++d) t.ne.push_back(i64());
    t.type = i32();
    t.offset = u64();
    f.tensors.push_back(t);
  }
  f.data_start = (pos + alignment - 1) / alignment * alignment;
  // gguf.cpp: offsets strictly sequential, each tensor padded to the alignment, data in the file.
  std::uint64_t expect = 0;
  for (const auto& t : f.tensors) {
    if (t.offset != expect) throw std::runtime_error("tensor " + t.name + " at offset " + std::to_string(t.offset) +
                                                     ", expected " + std::to_string(expect));
    expect += (nbytes(t) + alignment - 1) / alignment * alignment;
  }
  if (f.data_start + expect > f.bytes.size()) throw std::runtime_error("data past the end of the file");
  return f;
}

// ---- ggml's decoders
inline float half_to_float(std::uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const float s = (h & 0x8000) ? -1.0f : 1.0f;
  if (e == 0) return s * std::ldexp(static_cast<float>(m), -24);
  if (e == 31) return m ? NAN : s * INFINITY;
  return s * std::ldexp(1.0f + static_cast<float>(m) / 1024.0f, e - 15);
}
inline constexpr float kvalues_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
inline float e8m0_half(std::uint8_t e) {  // ggml_e8m0_to_fp32_half: 2^(e-128)
  const std::uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<std::uint32_t>(e - 1) << 23;
  return std::bit_cast<float>(bits);
}
inline float ue4m3_half(std::uint8_t x) {  // ggml_ue4m3_to_fp32
  if (x == 0 || x == 0x7F) return 0.0f;
  const int exp = (x >> 3) & 0xF, man = x & 0x7;
  const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9) : std::ldexp(1.0f + man / 8.0f, exp - 7);
  return raw * 0.5f;
}

// Row-major [ne1][ne0] float values of a 2-D (or 1-D) tensor.
inline std::vector<float> dequantize(const file& f, const tensor& t) {
  const unsigned char* p = f.data(t);
  const std::size_t n0 = static_cast<std::size_t>(t.ne[0]), rows = t.ne.size() > 1 ? static_cast<std::size_t>(t.ne[1]) : 1;
  std::vector<float> y(n0 * rows);
  auto h16 = [](const unsigned char* q) { return static_cast<std::uint16_t>(q[0] | (q[1] << 8)); };
  const auto [be, bb] = block_of(t.type);
  for (std::size_t r = 0; r < rows; ++r) {
    float* o = y.data() + r * n0;
    const unsigned char* row = p + r * (n0 / be * bb);
    for (std::size_t b = 0; b < n0 / be; ++b) {
      const unsigned char* x = row + b * bb;
      float* ob = o + b * be;
      switch (t.type) {
        case 0: std::memcpy(ob, x, 4); break;
        case 1: ob[0] = half_to_float(h16(x)); break;
        case 30: ob[0] = std::bit_cast<float>(static_cast<std::uint32_t>(h16(x)) << 16); break;
        case 2: {
          const float d = half_to_float(h16(x));
          for (int j = 0; j < 16; ++j) {
            ob[j] = static_cast<float>((x[2 + j] & 0x0F) - 8) * d;
            ob[j + 16] = static_cast<float>((x[2 + j] >> 4) - 8) * d;
          }
          break;
        }
        case 8: {
          const float d = half_to_float(h16(x));
          for (int j = 0; j < 32; ++j) ob[j] = static_cast<float>(static_cast<std::int8_t>(x[2 + j])) * d;
          break;
        }
        case 39: {
          const float d = e8m0_half(x[0]);
          for (int j = 0; j < 16; ++j) {
            ob[j] = kvalues_fp4[x[1 + j] & 0x0F] * d;
            ob[j + 16] = kvalues_fp4[x[1 + j] >> 4] * d;
          }
          break;
        }
        case 40: {
          for (int s = 0; s < 4; ++s) {
            const float d = ue4m3_half(x[s]);
            for (int j = 0; j < 8; ++j) {
              ob[16 * s + j] = kvalues_fp4[x[4 + 8 * s + j] & 0x0F] * d;
              ob[16 * s + j + 8] = kvalues_fp4[x[4 + 8 * s + j] >> 4] * d;
            }
          }
          break;
        }
        default: throw std::runtime_error("type");
      }
    }
  }
  return y;
}

}  // namespace mxq::test::gguf
