// Compiles and runs the documented example of <mxq/packed.hpp> with only that header included.
#include <mxq/packed.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cstddef>
#include <cstdio>

int main() {
  const std::size_t rows = 64, cols = 64, r = 3, c = 40;

  mxq::packed_matrix<mxq::mxfp4> q(rows, cols);
  q.set_code(r, c, 0x7);
  q.scale(r, c / q.block_length()) = 127;
  float v = mxq::decode_element<mxq::e2m1>(q.code(r, c), q.params(r, c / q.block_length()));
  std::size_t bytes = q.storage_bytes();

  CHECK(q.rows() == rows && q.cols() == cols && q.block_length() == 32 && q.blocks_per_row() == 2);
  CHECK(q.code(r, c) == 0x7 && q.code(r, c - 1) == 0 && q.code(r, c + 1) == 0);
  CHECK(v == 6.0f);
  CHECK(bytes == rows * cols / 2 + rows * 2);  // 4-bit codes + one E8M0 byte per block of 32
  return 0;
}
