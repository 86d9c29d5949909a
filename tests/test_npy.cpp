// .npy reader/writer: round trips per dtype, hand-made headers of every version, and one named
// error per kind of broken file.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mxq/io/npy.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_npy {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

using mxq::test::temp_dir;

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A .npy file with the given version, header dict text (unpadded) and raw data bytes.
std::string npy_bytes(int major, const std::string& dict, const std::string& data) {
  std::string h = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(0);
  const std::size_t n = h.size();
  out += char(n & 0xff);
  out += char((n >> 8) & 0xff);
  if (major != 1) {
    out += char((n >> 16) & 0xff);
    out += char((n >> 24) & 0xff);
  }
  return out + h + data;
}

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <class F>
void require_io_error(F&& f, const std::string& needle, const fs::path& file) {
  try {
    f();
    FAIL("expected mxq::io_error containing '" << needle << "'");
  } catch (const mxq::io_error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Contains(needle));
    CHECK_THAT(msg, Contains(file.filename().string()));
  }
}

}  // namespace

TEST_CASE("npy round trips every writable dtype", "[npy]") {
  temp_dir tmp("npy-rt");
  const std::vector<std::size_t> shape = {2, 3};

  const std::vector<float> f = {1.5f, -2.0f, 0.0f, 3.25e-8f, 1e30f, -7.0f};
  mxq::npy_save(tmp / "f.npy", shape, f.data());
  auto lf = mxq::npy_load_f32(tmp / "f.npy");
  CHECK(lf.shape == shape);
  CHECK(lf.data == f);

  const std::vector<std::uint8_t> u8 = {0, 1, 2, 127, 200, 255};
  mxq::npy_save(tmp / "u8.npy", shape, u8.data());
  auto a8 = mxq::npy_load(tmp / "u8.npy");
  CHECK(a8.dtype == mxq::npy_dtype::u8);
  CHECK(a8.as<std::uint8_t>() == u8);

  const std::vector<std::uint16_t> u16 = {0, 1, 4095, 40000, 65535, 7};
  mxq::npy_save(tmp / "u16.npy", {6}, u16.data());
  auto a16 = mxq::npy_load(tmp / "u16.npy");
  CHECK(a16.shape == std::vector<std::size_t>{6});
  CHECK(a16.as<std::uint16_t>() == u16);

  const std::vector<std::int32_t> i32 = {-2147483647 - 1, -1, 0, 1, 2147483647, 42};
  mxq::npy_save(tmp / "i32.npy", {3, 1, 2}, i32.data());
  auto a32 = mxq::npy_load(tmp / "i32.npy");
  CHECK(a32.shape == std::vector<std::size_t>{3, 1, 2});
  CHECK(a32.as<std::int32_t>() == i32);
  // Asking for the wrong integer type is refused rather than reinterpreted.
  CHECK_THROWS_AS(a32.as<std::uint16_t>(), mxq::io_error);
  CHECK_THROWS_AS(mxq::npy_load_f32(tmp / "i32.npy"), mxq::io_error);

  // Scalars (shape ()) and empty arrays.
  const float s = 3.0f;
  mxq::npy_save(tmp / "scalar.npy", std::vector<std::size_t>{}, &s);
  auto ls = mxq::npy_load_f32(tmp / "scalar.npy");
  CHECK(ls.shape.empty());
  REQUIRE(ls.data.size() == 1);
  CHECK(ls.data[0] == 3.0f);
  mxq::npy_save<float>(tmp / "empty.npy", {0, 4}, nullptr);
  auto le = mxq::npy_load_f32(tmp / "empty.npy");
  CHECK(le.shape == std::vector<std::size_t>{0, 4});
  CHECK(le.data.empty());

  // The header is 64-byte aligned like NumPy's and ends in a newline.
  std::ifstream in(tmp / "f.npy", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  const std::size_t hlen = std::size_t(static_cast<unsigned char>(all[8])) | std::size_t(static_cast<unsigned char>(all[9])) << 8;
  CHECK((10 + hlen) % 64 == 0);
  CHECK(all[10 + hlen - 1] == '\n');
  CHECK(all.size() == 10 + hlen + f.size() * 4);
}

TEST_CASE("npy reads versions 2.0 and 3.0, float16, and odd header spellings", "[npy]") {
  temp_dir tmp("npy-ver");
  const std::vector<float> v = {1, 2, 3, 4};
  write_bytes(tmp / "v2.npy", npy_bytes(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", raw(v)));
  CHECK(mxq::npy_load_f32(tmp / "v2.npy").data == v);
  write_bytes(tmp / "v3.npy", npy_bytes(3, "{\"shape\": (2, 2), \"fortran_order\": False, \"descr\": \"<f4\"}", raw(v)));
  auto a3 = mxq::npy_load_f32(tmp / "v3.npy");
  CHECK(a3.shape == std::vector<std::size_t>{2, 2});
  CHECK(a3.data == v);

  // float16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), +Inf
  const std::vector<std::uint16_t> h = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00};
  write_bytes(tmp / "h.npy", npy_bytes(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }", raw(h)));
  auto ah = mxq::npy_load_f32(tmp / "h.npy");
  REQUIRE(ah.data.size() == 5);
  CHECK(ah.data[0] == 1.0f);
  CHECK(ah.data[1] == -2.0f);
  CHECK(ah.data[2] == 65504.0f);
  CHECK(ah.data[3] == std::ldexp(1.0f, -24));
  CHECK(std::isinf(ah.data[4]));

  // '<u1' and '=u2' are accepted spellings too.
  const std::vector<std::uint8_t> b = {9, 8};
  write_bytes(tmp / "b.npy", npy_bytes(1, "{'descr': '<u1', 'fortran_order': False, 'shape': (2,)}", raw(b)));
  CHECK(mxq::npy_load(tmp / "b.npy").as<std::uint8_t>() == b);
}

TEST_CASE("npy rejects broken files with errors naming the file", "[npy][errors]") {
  temp_dir tmp("npy-err");
  const std::vector<float> v = {1, 2, 3, 4};
  const std::string good_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
  const std::string good = npy_bytes(1, good_dict, raw(v));

  struct bad_case {
    std::string name, bytes, needle;
  };
  const std::vector<bad_case> cases = {
      {"empty.npy", "", "bad magic"},
      {"magic.npy", "\x93NUMPX" + good.substr(6), "bad magic"},
      {"short.npy", good.substr(0, 7), "truncated .npy header"},
      {"version.npy", std::string("\x93NUMPY\x04\x00", 8) + good.substr(8), "unsupported .npy version 4"},
      {"header.npy", good.substr(0, 40), "truncated .npy header"},
      {"data.npy", good.substr(0, good.size() - 3), "truncated .npy data"},
      {"trailing.npy", good + "xx", "trailing bytes"},
      {"fortran.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", raw(v)),
       "fortran_order"},
      {"bigendian.npy", npy_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", raw(v)),
       "big-endian"},
      {"f8.npy", npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", raw(v)),
       "unsupported dtype '<f8'"},
      {"struct.npy", npy_bytes(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", raw(v)),
       "structured"},
      {"noshape.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False}", raw(v)), "no 'shape'"},
      {"garbage.npy", npy_bytes(1, "descr: f4", raw(v)), "bad .npy header"},
      {"negdim.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", raw(v)),
       "bad .npy header"},
      {"mismatch.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }", raw(v)),
       "needs 36 bytes"},
      {"huge.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", raw(v)),
       "too large"},
      // Limits a hostile header cannot pass: nesting (the value skipper recurses), rank, length.
      {"nested.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': " + std::string(40, '(') +
                        std::string(40, ')') + ", }", raw(v)),
       "nested deeper than 32"},
      {"rank.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (" + [] { std::string d; for (int k = 0; k < 33; ++k) d += "1,"; return d; }() + "), }", raw(v)),
       "33 dimensions"},
      {"longheader.npy", npy_bytes(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'pad': '" + std::string(1 << 21, 'x') + "', }", raw(v)),
       "above the limit"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    write_bytes(tmp / c.name, c.bytes);
    require_io_error([&] { (void)mxq::npy_load(tmp / c.name); }, c.needle, tmp / c.name);
  }
  require_io_error([&] { (void)mxq::npy_load(tmp / "does-not-exist.npy"); }, "cannot open", tmp / "does-not-exist.npy");
}

TEST_CASE("npy reads a real layer exported by NumPy", "[npy][fixture]") {
  const fs::path file = fs::path(MXQ_SHARED_DIR) / "layers/code-llama/l2.q_proj.weight.npy";
  if (!fs::exists(file)) {
    mxq::test::skip_test("fixture not present: " + file.string());
  }
  auto a = mxq::npy_load_f32(file);
  REQUIRE(a.shape == std::vector<std::size_t>{256, 256});
  REQUIRE(a.data.size() == 256u * 256u);
  double sum_sq = 0;
  std::size_t non_finite = 0;
  for (float x : a.data) {
    non_finite += !std::isfinite(x);
    sum_sq += double(x) * x;
  }
  CHECK(non_finite == 0);
  CHECK(sum_sq > 0);
}

}  // namespace test_npy
