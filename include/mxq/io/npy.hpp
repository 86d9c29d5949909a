// NumPy .npy files (format versions 1.0, 2.0 and 3.0), C order, little-endian, for the dtypes mxq
// exchanges with Python: float32, float16 (read only, upcast), uint8, uint16, int32.
#pragma once
#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "error.hpp"
#include "file.hpp"
#include "float_bits.hpp"
#include "tensor.hpp"

namespace mxq {

enum class npy_dtype { f32, f16, u8, u16, i32 };

inline std::size_t npy_itemsize(npy_dtype t) {
  switch (t) {
    case npy_dtype::f32: return 4;
    case npy_dtype::f16: return 2;
    case npy_dtype::u8: return 1;
    case npy_dtype::u16: return 2;
    case npy_dtype::i32: return 4;
  }
  return 0;
}

// The descr string NumPy writes for each dtype.
inline std::string_view npy_descr(npy_dtype t) {
  switch (t) {
    case npy_dtype::f32: return "<f4";
    case npy_dtype::f16: return "<f2";
    case npy_dtype::u8: return "|u1";
    case npy_dtype::u16: return "<u2";
    case npy_dtype::i32: return "<i4";
  }
  return "?";
}

template <class T>
inline constexpr bool npy_storable_v = std::is_same_v<T, float> || std::is_same_v<T, std::uint8_t> ||
                                       std::is_same_v<T, std::uint16_t> || std::is_same_v<T, std::int32_t>;

template <class T>
constexpr npy_dtype npy_dtype_of() {
  static_assert(npy_storable_v<T>, "npy supports float, uint8_t, uint16_t, int32_t");
  if constexpr (std::is_same_v<T, float>) return npy_dtype::f32;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return npy_dtype::u8;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return npy_dtype::u16;
  else return npy_dtype::i32;
}

// A whole .npy array: shape, dtype and its raw little-endian bytes in C order.
struct npy_array {
  std::vector<std::size_t> shape;
  npy_dtype dtype = npy_dtype::f32;
  std::vector<std::byte> data;

  std::size_t size() const {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }

  // Typed copy; T must be the stored dtype exactly (no silent conversion between integer types).
  template <class T>
  std::vector<T> as() const {
    if (npy_dtype_of<T>() != dtype)
      throw io_error("npy: array holds " + std::string(npy_descr(dtype)) + ", asked for " +
                     std::string(npy_descr(npy_dtype_of<T>())));
    std::vector<T> out(size());
    if (!out.empty()) std::memcpy(out.data(), data.data(), out.size() * sizeof(T));
    return out;
  }

  // float32 values; float16 is upcast exactly. Integer arrays are refused (they are ids, not values).
  std::vector<float> to_f32() const {
    if (dtype == npy_dtype::f32) return as<float>();
    if (dtype != npy_dtype::f16)
      throw io_error("npy: array holds " + std::string(npy_descr(dtype)) + ", expected a float dtype");
    std::vector<float> out(size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, data.data() + 2 * i, 2);
      out[i] = detail::half_bits_to_float(h);
    }
    return out;
  }
};

using npy_f32 = tensor_f32;

namespace detail::npy {

using detail::io::fail;

static_assert(std::endian::native == std::endian::little, "mxq's npy reader assumes a little-endian host");

inline constexpr std::array<unsigned char, 6> magic = {0x93, 'N', 'U', 'M', 'P', 'Y'};
inline constexpr std::size_t max_header_bytes = 1 << 20;  // numpy itself reads at most 10000 by default

// The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
// This parser accepts exactly that grammar: string keys; string, bool, int, tuple or list values.
struct header_parser {
  std::string_view s;
  std::size_t i = 0;
  const std::filesystem::path& file;

  [[noreturn]] void bad(const std::string& what) const {
    fail(file, "bad .npy header (" + what + " at offset " + std::to_string(i) +
                   "): " + std::string(s.substr(0, 200)) + (s.size() > 200 ? "..." : ""));
  }
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) bad(std::string("expected '") + c + "'");
  }
  std::string string_lit() {
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) bad("expected a string");
    const char q = s[i++];
    std::string out;
    while (i < s.size() && s[i] != q) {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
      out += s[i++];
    }
    if (i >= s.size()) bad("unterminated string");
    ++i;
    return out;
  }
  std::string word() {
    ws();
    std::size_t b = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '-')) ++i;
    if (b == i) bad("expected a value");
    return std::string(s.substr(b, i - b));
  }
  std::size_t integer() {
    const std::string w = word();
    std::size_t v = 0;
    for (char c : w) {
      if (c < '0' || c > '9') bad("expected a non-negative integer, got '" + w + "'");
      if (v > (std::numeric_limits<std::size_t>::max() - 9) / 10) bad("dimension too large");
      v = v * 10 + std::size_t(c - '0');
    }
    return v;
  }
  // Skips any value; returns true when it was a list or tuple (structured dtype descr).
  void skip_value(int depth = 0) {
    ws();
    if (i >= s.size()) bad("truncated");
    if (depth > 32) bad("values nested deeper than 32 levels");
    if (s[i] == '\'' || s[i] == '"') {
      string_lit();
    } else if (s[i] == '(' || s[i] == '[' || s[i] == '{') {
      const char close = s[i] == '(' ? ')' : s[i] == '[' ? ']' : '}';
      ++i;
      while (!eat(close)) {
        skip_value(depth + 1);
        if (eat(':')) skip_value(depth + 1);
        if (!eat(',')) {
          expect(close);
          break;
        }
      }
    } else {
      word();
    }
  }
};

struct header {
  npy_dtype dtype;
  std::vector<std::size_t> shape;
};

inline npy_dtype parse_descr(const std::string& d, const std::filesystem::path& file) {
  if (d.size() >= 2 && d[0] == '>' && d.substr(1) != "u1" && d.substr(1) != "i1")
    fail(file, "big-endian dtype '" + d + "' is not supported (save it little-endian)");
  std::string_view body = d;
  if (!body.empty() && (body[0] == '<' || body[0] == '|' || body[0] == '=' || body[0] == '>')) body.remove_prefix(1);
  if (body == "f4") return npy_dtype::f32;
  if (body == "f2") return npy_dtype::f16;
  if (body == "u1") return npy_dtype::u8;
  if (body == "u2") return npy_dtype::u16;
  if (body == "i4") return npy_dtype::i32;
  fail(file, "unsupported dtype '" + d + "' (supported: <f4, <f2, |u1, <u2, <i4)");
}

inline header parse_header(std::string_view text, const std::filesystem::path& file) {
  header_parser p{text, 0, file};
  std::optional<npy_dtype> dtype;
  std::optional<std::vector<std::size_t>> shape;
  bool fortran_seen = false;
  p.expect('{');
  while (!p.eat('}')) {
    const std::string key = p.string_lit();
    p.expect(':');
    if (key == "descr") {
      p.ws();
      if (p.i < text.size() && text[p.i] == '[') fail(file, "unsupported dtype: structured arrays are not supported");
      dtype = parse_descr(p.string_lit(), file);
    } else if (key == "fortran_order") {
      const std::string w = p.word();
      if (w == "True") fail(file, "fortran_order=True is not supported (save a C-contiguous array)");
      if (w != "False") p.bad("fortran_order must be True or False");
      fortran_seen = true;
    } else if (key == "shape") {
      std::vector<std::size_t> dims;
      p.expect('(');
      while (!p.eat(')')) {
        dims.push_back(p.integer());
        if (!p.eat(',')) {
          p.expect(')');
          break;
        }
      }
      if (dims.size() > 32) fail(file, "bad .npy header: " + std::to_string(dims.size()) + " dimensions (numpy allows 32)");
      shape = std::move(dims);
    } else {
      p.skip_value();
    }
    if (!p.eat(',')) {
      p.expect('}');
      break;
    }
  }
  if (!dtype) fail(file, "bad .npy header: no 'descr' key");
  if (!shape) fail(file, "bad .npy header: no 'shape' key");
  if (!fortran_seen) fail(file, "bad .npy header: no 'fortran_order' key");
  return {*dtype, std::move(*shape)};
}

inline std::size_t checked_bytes(const std::vector<std::size_t>& shape, std::size_t itemsize,
                                 const std::filesystem::path& file) {
  std::size_t n = itemsize;
  for (auto d : shape) {
    if (d != 0 && n > std::numeric_limits<std::size_t>::max() / d) fail(file, "shape is too large");
    n *= d;
  }
  return n;
}

inline std::string shape_str(const std::vector<std::size_t>& shape) {
  std::string s = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline void save(const std::filesystem::path& path, std::span<const std::size_t> shape, npy_dtype dtype,
                 const void* data) {
  std::vector<std::size_t> dims(shape.begin(), shape.end());
  const std::size_t nbytes = checked_bytes(dims, npy_itemsize(dtype), path);
  if (nbytes > 0 && data == nullptr) fail(path, "npy_save: null data for a non-empty array");
  std::string dict = "{'descr': '" + std::string(npy_descr(dtype)) + "', 'fortran_order': False, 'shape': " +
                     shape_str(dims) + ", }";
  // NumPy pads the header with spaces and a final newline so the data starts 64-byte aligned.
  auto padded = [&](std::size_t prefix) {
    std::string h = dict;
    const std::size_t total = prefix + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h += '\n';
    return h;
  };
  std::string h = padded(10);
  const bool v2 = h.size() > 0xffff;
  if (v2) h = padded(12);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(magic.data()), magic.size());
    const char ver[2] = {char(v2 ? 2 : 1), 0};
    out.write(ver, 2);
    const std::uint32_t len = static_cast<std::uint32_t>(h.size());
    const unsigned char le[4] = {static_cast<unsigned char>(len), static_cast<unsigned char>(len >> 8),
                                 static_cast<unsigned char>(len >> 16), static_cast<unsigned char>(len >> 24)};
    out.write(reinterpret_cast<const char*>(le), v2 ? 4 : 2);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    if (nbytes) out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
  });
}

}  // namespace detail::npy

// Reads a whole .npy file. Throws io_error naming the file for anything it cannot represent exactly.
inline npy_array npy_parse(std::span<const std::byte> b, const std::filesystem::path& path);
inline npy_array npy_load(const std::filesystem::path& path) {
  const mapped_file f(path);
  return npy_parse(f.bytes(), path);
}

// A .npy file's bytes in memory (`path`: what errors call it).
inline npy_array npy_parse(std::span<const std::byte> b, const std::filesystem::path& path) {
  using detail::io::fail;
  const std::size_t m = std::min<std::size_t>(b.size(), 6);
  if (b.size() == 0 || std::memcmp(b.data(), detail::npy::magic.data(), m) != 0)
    fail(path, "not a .npy file (bad magic)");
  if (b.size() < 10) fail(path, "truncated .npy header (" + std::to_string(b.size()) + " bytes)");
  const unsigned major = static_cast<unsigned char>(b[6]);
  if (major < 1 || major > 3)
    fail(path, "unsupported .npy version " + std::to_string(major) + "." +
                   std::to_string(static_cast<unsigned char>(b[7])));
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (b.size() < 8 + len_bytes) fail(path, "truncated .npy header");
  std::size_t hlen = 0;
  for (std::size_t k = 0; k < len_bytes; ++k) hlen |= std::size_t(static_cast<unsigned char>(b[8 + k])) << (8 * k);
  if (hlen > detail::npy::max_header_bytes)
    fail(path, ".npy header of " + std::to_string(hlen) + " bytes is above the limit of " + std::to_string(detail::npy::max_header_bytes));
  const std::size_t data_off = 8 + len_bytes + hlen;
  if (data_off > b.size())
    fail(path, "truncated .npy header (header says " + std::to_string(hlen) + " bytes, file has " +
                   std::to_string(b.size() - 8 - len_bytes) + ")");
  const std::string_view text(reinterpret_cast<const char*>(b.data()) + 8 + len_bytes, hlen);
  auto hdr = detail::npy::parse_header(text, path);
  const std::size_t want = detail::npy::checked_bytes(hdr.shape, npy_itemsize(hdr.dtype), path);
  const std::size_t have = b.size() - data_off;
  if (have < want)
    fail(path, "truncated .npy data: shape " + detail::npy::shape_str(hdr.shape) + " x " +
                   std::to_string(npy_itemsize(hdr.dtype)) + " bytes needs " + std::to_string(want) +
                   " bytes, file has " + std::to_string(have));
  if (have > want)
    fail(path, "size mismatch: shape " + detail::npy::shape_str(hdr.shape) + " needs " + std::to_string(want) +
                   " data bytes, file has " + std::to_string(have) + " (trailing bytes)");
  npy_array a;
  a.shape = std::move(hdr.shape);
  a.dtype = hdr.dtype;
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(data_off), b.end());
  return a;
}

// float32 contents of a float32 or float16 file.
inline npy_f32 npy_load_f32(const std::filesystem::path& path) {
  npy_array a = npy_load(path);
  if (a.dtype != npy_dtype::f32 && a.dtype != npy_dtype::f16)
    detail::io::fail(path, "expected a float32/float16 array, found dtype " + std::string(npy_descr(a.dtype)));
  std::vector<float> data = a.to_f32();  // before a.shape is moved out (size() reads it)
  return {std::move(a.shape), std::move(data)};
}

// Writes a C-order array of float, uint8_t, uint16_t or int32_t (atomically: temp file + rename).
template <class T>
  requires npy_storable_v<T>
void npy_save(const std::filesystem::path& path, std::span<const std::size_t> shape, const T* data) {
  detail::npy::save(path, shape, npy_dtype_of<T>(), data);
}

template <class T>
  requires npy_storable_v<T>
void npy_save(const std::filesystem::path& path, std::initializer_list<std::size_t> shape, const T* data) {
  detail::npy::save(path, std::span<const std::size_t>(shape.begin(), shape.size()), npy_dtype_of<T>(), data);
}

// Writes a loaded or hand-built array back (float16 included).
inline void npy_save(const std::filesystem::path& path, const npy_array& a) {
  if (a.data.size() != detail::npy::checked_bytes(a.shape, npy_itemsize(a.dtype), path))
    detail::io::fail(path, "npy_save: data size does not match shape x itemsize");
  detail::npy::save(path, a.shape, a.dtype, a.data.data());
}

}  // namespace mxq
