// safetensors reader/writer/checkpoint: round trips, the real model, and one named error per
// validation rule (files built by hand in a temp directory).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mxq/io/safetensors.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_safetensors {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

using mxq::test::temp_dir;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// 8-byte LE header size + header text + `data_bytes` bytes of data.
std::string st_bytes(const std::string& header, std::size_t data_bytes, std::uint64_t size_field = 0) {
  const std::uint64_t n = size_field ? size_field : header.size();
  std::string out;
  for (int k = 0; k < 8; ++k) out += char((n >> (8 * k)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
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

TEST_CASE("safetensors writer/reader round trip", "[safetensors]") {
  temp_dir tmp("st-rt");
  const std::vector<float> a = {1.0f, -2.5f, 3.0e-3f, 1e20f, 0.0f, -0.0f};
  const std::vector<float> b = {1.0f, 1.0078125f, -3.0f, 65536.0f};
  const std::vector<std::int32_t> ids = {-1, 0, 7};
  const std::vector<std::uint8_t> codes = {0xab, 0xcd};

  mxq::safetensors_writer w;
  w.set_metadata("format", "pt");
  w.set_metadata("quant", "mxfp4");
  w.add_f32("z.a", {2, 3}, a);
  w.add_bf16("b", {4}, b);
  // bf16 rounding is nearest-even: 1+2^-8 ties down to 1, 1+3*2^-8 ties up to 1+2^-6.
  const std::vector<float> r = {1.00390625f, 1.01171875f, 65504.0f};
  w.add_bf16("rounded", {3}, r);
  w.add("ids", mxq::st_dtype::I32, {3}, std::as_bytes(std::span<const std::int32_t>(ids)));
  w.add("codes", mxq::st_dtype::F4, {4}, std::as_bytes(std::span<const std::uint8_t>(codes)));
  w.add("empty", mxq::st_dtype::F32, {0, 5}, {});
  w.add("scalar", mxq::st_dtype::F32, {}, std::as_bytes(std::span<const float>(a.data(), 1)));
  w.write(tmp / "m.safetensors");

  // Bad additions are refused before anything is written.
  CHECK_THROWS_AS(w.add_f32("b", {4}, b), mxq::error);
  CHECK_THROWS_AS(w.add_f32("c", {5}, b), mxq::error);
  CHECK_THROWS_AS(w.add("odd", mxq::st_dtype::F4, {3}, std::as_bytes(std::span<const std::uint8_t>(codes))), mxq::error);

  mxq::safetensors_file f(tmp / "m.safetensors");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("quant") == "mxfp4");
  REQUIRE(f.tensors().size() == 7);
  auto ta = f.read("z.a");
  CHECK(ta.shape == std::vector<std::size_t>{2, 3});
  CHECK(ta.data == a);
  CHECK(f.read_f32("b") == b);  // all exactly representable in bf16
  CHECK(f.read_f32("rounded") == std::vector<float>{1.0f, 1.015625f, 65536.0f});
  CHECK(f.read_f32("ids") == std::vector<float>{-1.0f, 0.0f, 7.0f});
  CHECK(f.info("codes").dtype == mxq::st_dtype::F4);
  CHECK(f.bytes("codes").size() == 2);
  CHECK(std::uint8_t(f.bytes("codes")[0]) == 0xab);
  CHECK_THROWS_AS(f.read_f32("codes"), mxq::io_error);  // packed FP4 has no element-wise float view
  CHECK(f.read("empty").data.empty());
  CHECK(f.read("scalar").shape.empty());
  CHECK(f.read_f32("scalar") == std::vector<float>{1.0f});
  require_io_error([&] { (void)f.read_f32("missing.weight"); }, "no tensor named 'missing.weight'", tmp / "m.safetensors");

  // Layout: 8-aligned header, data in (element size desc, name) order, deterministic bytes.
  const std::string bytes = read_all(tmp / "m.safetensors");
  std::uint64_t n = 0;
  for (int k = 0; k < 8; ++k) n |= std::uint64_t(static_cast<unsigned char>(bytes[k])) << (8 * k);
  CHECK(n % 8 == 0);
  CHECK(bytes[8] == '{');
  std::vector<std::string> order;
  for (const auto& t : f.tensors()) order.push_back(t.name);
  CHECK(order == std::vector<std::string>{"empty", "ids", "scalar", "z.a", "b", "rounded", "codes"});
  w.write(tmp / "m2.safetensors");
  CHECK(read_all(tmp / "m2.safetensors") == bytes);
  CHECK_FALSE(fs::exists(tmp / ("m.safetensors.tmp." + std::to_string(::getpid()))));
}

TEST_CASE("safetensors decodes every float storage dtype", "[safetensors]") {
  temp_dir tmp("st-dtypes");
  auto one = [&](mxq::st_dtype t, std::vector<std::uint8_t> raw, std::size_t n) {
    mxq::safetensors_writer w;
    w.add("t", t, {n}, std::as_bytes(std::span<const std::uint8_t>(raw)));
    w.write(tmp / "d.safetensors");
    return mxq::safetensors_file(tmp / "d.safetensors").read_f32("t");
  };
  // F16 1.0, -2.0 (LE)
  CHECK(one(mxq::st_dtype::F16, {0x00, 0x3c, 0x00, 0xc0}, 2) == std::vector<float>{1.0f, -2.0f});
  // BF16 1.0, -3.0
  CHECK(one(mxq::st_dtype::BF16, {0x80, 0x3f, 0x40, 0xc0}, 2) == std::vector<float>{1.0f, -3.0f});
  // E4M3FN: 0x7e = 448 (max), 0x01 = 2^-9, 0x38 = 1.0, 0xff = NaN
  auto e4 = one(mxq::st_dtype::F8_E4M3, {0x7e, 0x01, 0x38, 0xff}, 4);
  CHECK(e4[0] == 448.0f);
  CHECK(e4[1] == std::ldexp(1.0f, -9));
  CHECK(e4[2] == 1.0f);
  CHECK(std::isnan(e4[3]));
  // E5M2: 0x7b = 57344 (max), 0x3c = 1.0, 0x7c = Inf
  auto e5 = one(mxq::st_dtype::F8_E5M2, {0x7b, 0x3c, 0x7c}, 3);
  CHECK(e5[0] == 57344.0f);
  CHECK(e5[1] == 1.0f);
  CHECK(std::isinf(e5[2]));
  // E8M0: 127 = 1.0, 130 = 8, 0xff = NaN
  auto e8 = one(mxq::st_dtype::F8_E8M0, {127, 130, 0xff}, 3);
  CHECK(e8[0] == 1.0f);
  CHECK(e8[1] == 8.0f);
  CHECK(std::isnan(e8[2]));
  CHECK(one(mxq::st_dtype::U8, {0, 255}, 2) == std::vector<float>{0.0f, 255.0f});
  CHECK(one(mxq::st_dtype::I8, {0xff, 5}, 2) == std::vector<float>{-1.0f, 5.0f});
}

TEST_CASE("safetensors rejects malformed files with named errors", "[safetensors][errors]") {
  temp_dir tmp("st-err");
  // A valid reference file: two F32 [2] tensors, 16 data bytes.
  const std::string ok_header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  write_bytes(tmp / "ok.safetensors", st_bytes(ok_header, 16));
  CHECK(mxq::safetensors_file(tmp / "ok.safetensors").tensors().size() == 2);

  struct bad_case {
    std::string name, bytes, needle;
  };
  const std::string good = st_bytes(ok_header, 16);
  std::string not_brace_header = ok_header;
  not_brace_header[0] = ' ';  // (g++ 12 -Wrestrict misfires on " " + str)
  const std::vector<bad_case> cases = {
      {"empty", "", "truncated safetensors file"},
      {"short_size", good.substr(0, 5), "truncated safetensors file"},
      {"truncated_header", good.substr(0, 30), "truncated safetensors file"},
      {"truncated_data", good.substr(0, good.size() - 4), "out of range"},
      {"too_big", st_bytes(ok_header, 16, 200'000'000), "too big"},
      {"not_brace", st_bytes(not_brace_header, 16), "must start with '{'"},
      {"bad_json", st_bytes(R"({"a":{"dtype":"F32",)", 0), "invalid JSON"},
      {"out_of_range", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,24]}})", 16),
       "out of range"},
      {"hole", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16),
       "hole"},
      {"trailing_hole", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 16), "hole"},
      {"overlap", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})", 16),
       "overlapping"},
      {"shape_mismatch", st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
       "dtype/shape mismatch"},
      {"dtype_mismatch", st_bytes(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
       "dtype/shape mismatch"},
      {"unknown_dtype", st_bytes(R"({"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
       "unknown dtype 'F12'"},
      {"duplicate", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
       "duplicate tensor name 'a'"},
      {"metadata_nested", st_bytes(R"({"__metadata__":{"x":{"y":1}},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16),
       "__metadata__"},
      {"negative_dim", st_bytes(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", 16), "non-negative"},
      {"misaligned", st_bytes(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2), "misaligned"},
      {"reversed", st_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "reversed"},
      {"no_offsets", st_bytes(R"({"a":{"dtype":"F32","shape":[4]}})", 16), "data_offsets"},
      {"rank", st_bytes(R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4),
       "rank 17 is above the limit of 16"},
      {"deep", st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":)" + std::string(100, '[') +
                            std::string(100, ']') + "}}", 4),
       "nested deeper than 64"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const fs::path p = tmp / (c.name + ".safetensors");
    write_bytes(p, c.bytes);
    require_io_error([&] { mxq::safetensors_file f(p); }, c.needle, p);
  }
  require_io_error([&] { mxq::safetensors_file f(tmp / "nope.safetensors"); }, "cannot open", tmp / "nope.safetensors");
}

TEST_CASE("checkpoint finds tensors across shards", "[safetensors][checkpoint]") {
  temp_dir tmp("st-shards");
  const std::vector<float> x = {1, 2, 3, 4}, y = {5, 6}, z = {7};
  {
    mxq::safetensors_writer w1, w2;
    w1.add_f32("model.x", {2, 2}, x);
    w2.add_f32("model.y", {2}, y);
    w2.add_f32("model.z", {1}, z);
    w1.write(tmp / "model-00001-of-00002.safetensors");
    w2.write(tmp / "model-00002-of-00002.safetensors");
  }
  write_bytes(tmp / "model.safetensors.index.json",
              R"({"metadata":{"total_size":28},"weight_map":{"model.x":"model-00001-of-00002.safetensors",)"
              R"("model.y":"model-00002-of-00002.safetensors","model.z":"model-00002-of-00002.safetensors"}})");
  mxq::checkpoint ck(tmp.path);
  CHECK(ck.shards().size() == 2);
  CHECK(ck.names() == std::vector<std::string>{"model.x", "model.y", "model.z"});
  CHECK(ck.read_f32("model.x") == x);
  CHECK(ck.read("model.y").data == y);
  CHECK(ck.info("model.z").shape == std::vector<std::size_t>{1});
  require_io_error([&] { (void)ck.read_f32("model.w"); }, "no tensor named 'model.w'", tmp.path);

  // An index naming a tensor its shard lacks is a named error.
  write_bytes(tmp / "model.safetensors.index.json",
              R"({"weight_map":{"model.x":"model-00002-of-00002.safetensors"}})");
  require_io_error([&] { mxq::checkpoint c(tmp.path); }, "lacks it", tmp / "model.safetensors.index.json");
  write_bytes(tmp / "model.safetensors.index.json", R"({"weight_map":{"model.x":"missing.safetensors"}})");
  require_io_error([&] { mxq::checkpoint c(tmp.path); }, "cannot open", tmp / "missing.safetensors");
  fs::remove(tmp / "model.safetensors.index.json");
  require_io_error([&] { mxq::checkpoint c(tmp.path); }, "no model.safetensors", tmp.path);
}

TEST_CASE("checkpoint stage reads tensors by direct I/O, the same bytes as the map", "[safetensors][checkpoint][direct]") {
  temp_dir tmp("st-direct");
  // Sizes and offsets chosen not to fall on 4096-byte boundaries: a 3-float tensor first, odd
  // tensor sizes, the last tensor ending the file off a boundary.
  std::vector<std::pair<std::string, std::vector<float>>> t;
  std::uint32_t seed = 12345;
  auto next = [&] { return static_cast<float>((seed = seed * 1664525u + 1013904223u) >> 8) / 65536.0f - 128.0f; };
  for (const auto& [name, n] : std::vector<std::pair<std::string, std::size_t>>{
           {"a.small", 3}, {"b.big", 300'001}, {"c.big", 17'000}, {"d.small", 5}, {"e.big", 1'000'003}}) {
    std::vector<float> v(n);
    for (auto& x : v) x = next();
    t.emplace_back(name, std::move(v));
  }
  {
    mxq::safetensors_writer w;
    for (const auto& [name, v] : t) w.add_f32(name, {v.size()}, v);
    w.write(tmp / "model.safetensors");
  }
  const mxq::checkpoint ck(tmp.path);
  auto map_bytes = [&](const std::string& name) { return ck.file_of(name).bytes(name); };
  auto same = [](std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
  };

  // Small tensors are left to the map; a file on disk that allows O_DIRECT stages the rest.
  CHECK_FALSE(ck.stage("a.small"));
  CHECK_FALSE(ck.stage("c.big", 1 << 20));  // under the caller's threshold
  const bool direct = ck.stage("b.big");
  if (!direct) WARN("O_DIRECT is not available under " << tmp.path << ": only the fallback is checked");
  CHECK(ck.stage("e.big") == direct);
  CHECK(ck.stage("c.big") == direct);
  CHECK_FALSE(ck.stage("b.big"));  // staged already
  for (const auto& [name, v] : t) {
    const auto b = ck.bytes(name);
    CHECK(same(b, std::as_bytes(std::span<const float>(v))));
    CHECK(same(b, map_bytes(name)));
    const bool staged = name.find("big") != std::string::npos && direct;
    CHECK((b.data() != map_bytes(name).data()) == staged);  // a buffer of its own, not the map
    CHECK(ck.read_f32(name) == v);  // conversions read the staged copy too
  }
  // Released: the map again. Staged again: a reused buffer, the same bytes.
  ck.release("b.big");
  CHECK(ck.bytes("b.big").data() == map_bytes("b.big").data());
  for (int round = 0; round < 3; ++round) {
    for (const char* name : {"b.big", "c.big", "e.big"}) {
      ck.release(name);
      CHECK(ck.stage(name) == direct);
    }
    for (const char* name : {"e.big", "b.big", "c.big"}) CHECK(same(ck.bytes(name), map_bytes(name)));
  }
  ck.release("e.big");  // released while (possibly) still being read
  CHECK(ck.stage("e.big") == direct);
  // A checkpoint in memory has no file to read directly.
  std::ifstream in(tmp / "model.safetensors", std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::byte> bytes(raw.size());
  std::memcpy(bytes.data(), raw.data(), raw.size());
  const mxq::checkpoint mem(mxq::safetensors_file(mxq::mapped_file(std::move(bytes), tmp / "model.safetensors")),
                            tmp / "model.safetensors");
  CHECK_FALSE(mem.stage("b.big"));
  CHECK(same(mem.bytes("e.big"), map_bytes("e.big")));
  // Destroyed with ranges still staged or being read: the readers stop first (ASan checks).
}

TEST_CASE("safetensors reads the real code-llama checkpoint", "[safetensors][fixture]") {
  fs::path dir = fs::path(MXQ_REPO_DIR) / "examples/models/code-llama";
  if (!fs::exists(dir / "model.safetensors")) dir = fs::path(MXQ_SHARED_DIR) / "models/code-llama";
  if (!fs::exists(dir / "model.safetensors")) {
    mxq::test::skip_test("model fixture not present");
  }
  mxq::checkpoint ck(dir);
  CHECK(ck.names().size() == 2 + 1 + 6 * 9);
  const auto& f = ck.shards().at(0);
  CHECK(f.metadata().at("format") == "pt");
  const auto& q = ck.info("model.layers.2.self_attn.q_proj.weight");
  CHECK(q.dtype == mxq::st_dtype::BF16);
  CHECK(q.shape == std::vector<std::size_t>{256, 256});
  auto emb = ck.read("model.embed_tokens.weight");
  CHECK(emb.shape == std::vector<std::size_t>{4096, 256});
  std::size_t bad = 0;
  for (float v : emb.data) bad += !std::isfinite(v);
  CHECK(bad == 0);
}

}  // namespace test_safetensors
