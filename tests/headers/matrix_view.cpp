// Compiles and runs the documented example of <mxq/matrix_view.hpp> with only that header included.
#include <mxq/matrix_view.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cstddef>
#include <cstdio>
#include <vector>

int main() {
  const std::size_t rows = 64, cols = 48, r = 5, c = 7;

  std::vector<float> buf(rows * cols);
  mxq::matrix_view<float> v(buf.data(), rows, cols);
  v(r, c) = 1.0f;
  mxq::matrix_view<const float> t = v.t();
  mxq::matrix_view<const float> col(buf.data() + c, rows, 1, cols);

  CHECK(buf[r * cols + c] == 1.0f);
  CHECK(v.size() == rows * cols && v.row_contiguous());
  CHECK(t.rows == cols && t.cols == rows && t(c, r) == 1.0f && !t.row_contiguous());
  CHECK(col.rows == rows && col.cols == 1 && col(r, 0) == 1.0f && col(r + 1, 0) == 0.0f);
  return 0;
}
