// Packed weights survive a safetensors round trip bit for bit; broken files give named errors.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <tuple>
#include <map>
#include <vector>
#include <utility>

#include <bit>
#include <filesystem>
#include <random>

#include "mxq/io/packed_io.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_packed_io {

namespace fs = std::filesystem;
using namespace mxq;

namespace {
fs::path tmpfile(const std::string& n) {
  const fs::path d = fs::temp_directory_path() / ("mxq-pio-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / n;
}
std::vector<float> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}
}  // namespace

TEST_CASE("packed weights round-trip through safetensors for every format", "[io][packed]") {
  const std::size_t rows = 7, cols = 200;
  const auto w = randn(rows * cols, 1);
  for_each_format([&](auto tag) {
    using F = typename decltype(tag)::type;
    INFO(format_traits<F>::name);
    const auto q = quantize<F>(matrix_view<const float>(w.data(), rows, cols));
    safetensors_writer wr;
    add_packed(wr, "model.layers.0.mlp.down_proj", q);
    wr.set_metadata("mxq.recipe", "rtn");
    const fs::path p = tmpfile("packed.safetensors");
    wr.write(p);
    checkpoint ck(p);
    REQUIRE(has_packed(ck, "model.layers.0.mlp.down_proj"));
    CHECK(packed_format_name(ck, "model.layers.0.mlp.down_proj") == format_traits<F>::name);
    const auto q2 = read_packed<F>(ck, "model.layers.0.mlp.down_proj");
    CHECK(std::equal(q.code_bytes().begin(), q.code_bytes().end(), q2.code_bytes().begin(), q2.code_bytes().end()));
    CHECK(q2.tensor().scale == q.tensor().scale);
    const auto d1 = dequantize(q);
    const auto d2 = read_packed_dequantized(ck, "model.layers.0.mlp.down_proj");
    CHECK(d2.shape == std::vector<std::size_t>{rows, cols});
    REQUIRE(d2.data.size() == d1.size());
    for (std::size_t i = 0; i < d1.size(); ++i) CHECK(std::bit_cast<std::uint32_t>(d1[i]) == std::bit_cast<std::uint32_t>(d2.data[i]));
  });
}

// declare_packed / storage_bytes_for size a checkpoint without making the matrix: the same
// tensors, dtypes and shapes add_packed writes, the bytes storage_bytes() counts.
struct recorded {
  std::vector<std::tuple<std::string, st_dtype, std::vector<std::size_t>>> tensors;
  std::map<std::string, std::string> meta;
  void add(const std::string& n, st_dtype d, const std::vector<std::size_t>& s, std::span<const std::byte>) {
    tensors.emplace_back(n, d, s);
  }
  void set_metadata(const std::string& k, const std::string& v) { meta[k] = v; }
};

TEST_CASE("packed weights: declare_packed and storage_bytes_for agree with a made matrix", "[io][packed]") {
  for_each_format([&](auto tag) {
    using F = typename decltype(tag)::type;
    const std::vector<std::pair<std::size_t, std::size_t>> shapes{{7, 200}, {3, 32}, {1, 4096}, {5, 131}};
    for (const auto& [rows, cols] : shapes) {
      INFO(format_traits<F>::name << " " << rows << "x" << cols);
      const packed_matrix<F> q(rows, cols);
      CHECK(packed_matrix<F>::storage_bytes_for(rows, cols) == q.storage_bytes());
      recorded a, b;
      add_packed(a, "x", q);
      declare_packed<F>(b, "x", rows, cols);
      CHECK(a.tensors == b.tensors);
      CHECK(a.meta == b.meta);
    }
  });
}

TEST_CASE("packed weights: missing or mis-shaped parts are named errors", "[io][packed]") {
  const auto w = randn(4 * 64, 2);
  const auto q = quantize<mxfp4>(matrix_view<const float>(w.data(), 4, 64));
  {
    safetensors_writer wr;  // blocks without scales
    wr.add("l.weight_blocks", st_dtype::U8, {4, q.row_bytes()}, std::as_bytes(q.code_bytes()));
    const std::int64_t shape[2] = {4, 64};
    wr.add("l.weight_shape", st_dtype::I64, {2}, std::as_bytes(std::span<const std::int64_t>(shape, 2)));
    wr.set_metadata("mxq.format", "mxfp4");
    wr.write(tmpfile("bad1.safetensors"));
    checkpoint ck(tmpfile("bad1.safetensors"));
    CHECK_THROWS_WITH(read_packed_dequantized(ck, "l"), Catch::Contains("missing tensor 'l.weight_scales'"));
  }
  {
    safetensors_writer wr;  // wrong shape of the scales
    wr.add("l.weight_blocks", st_dtype::U8, {4, q.row_bytes()}, std::as_bytes(q.code_bytes()));
    wr.add("l.weight_scales", st_dtype::U8, {2, 4}, std::as_bytes(q.scale_data()));
    const std::int64_t shape[2] = {4, 64};
    wr.add("l.weight_shape", st_dtype::I64, {2}, std::as_bytes(std::span<const std::int64_t>(shape, 2)));
    wr.set_metadata("mxq.format", "mxfp4");
    wr.write(tmpfile("bad2.safetensors"));
    checkpoint ck(tmpfile("bad2.safetensors"));
    CHECK_THROWS_WITH(read_packed_dequantized(ck, "l"), Catch::Contains("expected [4, 2]"));
  }
  {
    safetensors_writer wr;  // unknown format name
    add_packed(wr, "l", q);
    wr.set_metadata("mxq.format.l", "mxfp5");
    wr.write(tmpfile("bad3.safetensors"));
    checkpoint ck(tmpfile("bad3.safetensors"));
    CHECK_THROWS_WITH(read_packed_dequantized(ck, "l"), Catch::Contains("unknown format 'mxfp5'"));
  }
  {
    // A hostile weight_shape: refused from the tensors' declared shapes, before the 2^80-byte
    // matrix it describes would be allocated (bad_alloc before); a dimension past 2^40 by name.
    for (const std::int64_t rows : {std::int64_t{1} << 40, std::int64_t{1} << 41}) {
      safetensors_writer wr;
      wr.add("l.weight_blocks", st_dtype::U8, {4, q.row_bytes()}, std::as_bytes(q.code_bytes()));
      wr.add("l.weight_scales", st_dtype::U8, {4, 2}, std::as_bytes(q.scale_data()));
      const std::int64_t shape[2] = {rows, std::int64_t{1} << 40};
      wr.add("l.weight_shape", st_dtype::I64, {2}, std::as_bytes(std::span<const std::int64_t>(shape, 2)));
      wr.set_metadata("mxq.format", "mxfp4");
      wr.write(tmpfile("bad4.safetensors"));
      checkpoint ck(tmpfile("bad4.safetensors"));
      CHECK_THROWS_WITH(read_packed_dequantized(ck, "l"),
                        Catch::Contains(rows == std::int64_t{1} << 40 ? "'l.weight_blocks' has shape [4, 32], expected [1099511627776, "
                                                                      : "invalid shape [2199023255552, 1099511627776]"));
    }
  }
  {
    // The same file from memory (mapped_file's in-memory form) reads the same matrix.
    safetensors_writer wr;
    add_packed(wr, "l", q);
    wr.set_metadata("mxq.format", "mxfp4");
    wr.write(tmpfile("mem.safetensors"));
    std::ifstream in(tmpfile("mem.safetensors"), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(text.size());
    std::memcpy(b.data(), text.data(), text.size());
    const checkpoint mem(safetensors_file(mapped_file(std::move(b), "mem")), "mem");
    const checkpoint disk(tmpfile("mem.safetensors"));
    CHECK(read_packed_dequantized(mem, "l").data == read_packed_dequantized(disk, "l").data);
  }
}

}  // namespace test_packed_io
