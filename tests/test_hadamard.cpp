// The block Hadamard rotation (issue 14): against the Sylvester matrix written out from its
// closed form H[i][j] = (-1)^popcount(i & j) / sqrt(B), orthonormal, its own inverse within fp32
// rounding, a rotated linear computes the same function, thread counts give the same bytes, and
// bad block sizes are named errors.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include <mxq/hadamard.hpp>

namespace test_hadamard {

using Catch::Matchers::Contains;

namespace {
std::vector<float> random_matrix(std::size_t rows, std::size_t cols, unsigned seed, float outlier = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> m(rows * cols);
  for (auto& v : m) v = n(rng);
  if (outlier != 0.0f)
    for (std::size_t r = 0; r < rows; ++r) m[r * cols + 5] *= outlier;  // one heavy input channel
  return m;
}
}  // namespace

TEST_CASE("hadamard: each block is the Sylvester matrix / sqrt(B), orthonormal", "[hadamard]") {
  for (std::size_t B : {2u, 4u, 16u, 32u, 64u, 128u}) {
    INFO("block " << B);
    const std::size_t blocks = 3, n = B * blocks;
    // Rotating the identity's rows gives the rotation matrix itself (R is symmetric).
    std::vector<float> eye(n * n, 0.0f);
    for (std::size_t i = 0; i < n; ++i) eye[i * n + i] = 1.0f;
    mxq::rotate_rows(mxq::matrix_view<float>(eye.data(), n, n), {B, 1});
    double worst = 0, worst_orth = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        const bool same_block = i / B == j / B;
        const double want = same_block ? ((std::popcount((i % B) & (j % B)) % 2) ? -1.0 : 1.0) / std::sqrt(double(B)) : 0.0;
        worst = std::max(worst, std::abs(eye[i * n + j] - want));
        double dot = 0;  // (R Rᵀ)[i][j]
        for (std::size_t k = 0; k < n; ++k) dot += double(eye[i * n + k]) * eye[j * n + k];
        worst_orth = std::max(worst_orth, std::abs(dot - (i == j ? 1.0 : 0.0)));
      }
    CHECK(worst < 1e-7);
    CHECK(worst_orth < 1e-6);
  }
}

TEST_CASE("hadamard: rotating twice gives the matrix back and a rotated linear computes the same outputs", "[hadamard]") {
  const std::size_t out = 48, in = 256, tokens = 40;
  for (std::size_t B : {16u, 32u, 128u}) {
    INFO("block " << B);
    const std::vector<float> w0 = random_matrix(out, in, 1, 50.0f), x0 = random_matrix(tokens, in, 2, 20.0f);
    std::vector<float> w = w0, x = x0;
    mxq::rotate_rows(mxq::matrix_view<float>(w.data(), out, in), {B, 1});
    mxq::rotate_rows(mxq::matrix_view<float>(x.data(), tokens, in), {B, 1});
    CHECK(w != w0);
    // y = x Wᵀ, before and after.
    double worst = 0, scale = 0;
    for (std::size_t t = 0; t < tokens; ++t)
      for (std::size_t o = 0; o < out; ++o) {
        double a = 0, b = 0;
        for (std::size_t k = 0; k < in; ++k) a += double(x0[t * in + k]) * w0[o * in + k], b += double(x[t * in + k]) * w[o * in + k];
        worst = std::max(worst, std::abs(a - b)), scale = std::max(scale, std::abs(a));
      }
    CHECK(worst / scale < 1e-5);
    // The inverse is the same rotation: fp32 round trip within 1e-6 of each value's magnitude.
    mxq::rotate_rows(mxq::matrix_view<float>(w.data(), out, in), {B, 1});
    double err = 0, mag = 0;
    for (std::size_t i = 0; i < w.size(); ++i) err = std::max(err, double(std::abs(w[i] - w0[i]))), mag = std::max(mag, double(std::abs(w0[i])));
    CHECK(err / mag < 1e-6);
    // The heavy channel is spread over its block: the largest |value| per row drops.
    float before = 0, after = 0;
    for (std::size_t i = 0; i < in; ++i) before = std::max(before, std::abs(x0[i])), after = std::max(after, std::abs(x[i]));
    CHECK(after < before);
  }
}

TEST_CASE("hadamard: the same bytes for any thread count and one vector as one row", "[hadamard]") {
  const std::size_t rows = 300, cols = 512;
  const std::vector<float> m0 = random_matrix(rows, cols, 3);
  std::vector<float> a = m0, b = m0, c = m0;
  mxq::rotate_rows(mxq::matrix_view<float>(a.data(), rows, cols), {64, 1});
  mxq::rotate_rows(mxq::matrix_view<float>(b.data(), rows, cols), {64, 2});
  mxq::rotate_rows(mxq::matrix_view<float>(c.data(), rows, cols), {64, 3});
  CHECK(a == b);
  CHECK(a == c);
  std::vector<float> v(m0.begin() + 7 * cols, m0.begin() + 8 * cols);
  mxq::rotate(v, {64});
  CHECK(std::equal(v.begin(), v.end(), a.begin() + 7 * cols));
}

TEST_CASE("hadamard: block sizes and shapes it cannot apply are named errors", "[hadamard]") {
  std::vector<float> m(4 * 96);
  CHECK_THROWS_WITH(mxq::rotate_rows(mxq::matrix_view<float>(m.data(), 4, 96), {24}), Contains("block 24 is not a power of two"));
  CHECK_THROWS_WITH(mxq::rotate_rows(mxq::matrix_view<float>(m.data(), 4, 96), {64}), Contains("96 columns are not a multiple of the Hadamard block 64"));
  CHECK_THROWS_WITH(mxq::rotate_rows(mxq::matrix_view<float>(m.data(), 4, 96), {1}), Contains("not a power of two"));
  std::vector<float> v(48);
  CHECK_THROWS_WITH(mxq::rotate(v, {32}), Contains("rotate: 48 columns"));
}

}  // namespace test_hadamard
