// A non-owning strided 2-D view over caller memory (no std::mdspan on g++ 12).
//
//   std::vector<float> buf(rows * cols);
//   mxq::matrix_view<float> v(buf.data(), rows, cols);         // row-major, contiguous rows
//   v(r, c) = 1.0f;                                             // buf[r * cols + c]
//   mxq::matrix_view<const float> t = v.t();                    // [cols, rows] over the same memory
//   mxq::matrix_view<const float> col(buf.data() + c, rows, 1, cols);  // column c (row stride cols)
#pragma once
#include <cstddef>
#include <type_traits>

namespace mxq {

template <class T>
struct matrix_view {
  T* data = nullptr;
  std::size_t rows = 0, cols = 0;
  std::ptrdiff_t row_stride = 0;  // in elements
  std::ptrdiff_t col_stride = 1;

  constexpr matrix_view() = default;
  // Row-major, contiguous rows of `cols` values.
  constexpr matrix_view(T* d, std::size_t r, std::size_t c) noexcept
      : data(d), rows(r), cols(c), row_stride(static_cast<std::ptrdiff_t>(c)) {}
  constexpr matrix_view(T* d, std::size_t r, std::size_t c, std::ptrdiff_t rs, std::ptrdiff_t cs = 1) noexcept
      : data(d), rows(r), cols(c), row_stride(rs), col_stride(cs) {}
  template <class U>
    requires std::is_convertible_v<U*, T*>
  constexpr matrix_view(const matrix_view<U>& o) noexcept  // NOLINT: mutable -> const view
      : data(o.data), rows(o.rows), cols(o.cols), row_stride(o.row_stride), col_stride(o.col_stride) {}

  constexpr T& operator()(std::size_t r, std::size_t c) const noexcept {
    return data[static_cast<std::ptrdiff_t>(r) * row_stride + static_cast<std::ptrdiff_t>(c) * col_stride];
  }
  constexpr T* row(std::size_t r) const noexcept { return data + static_cast<std::ptrdiff_t>(r) * row_stride; }
  // The transposed view: quantizing it puts blocks along the original first dimension.
  constexpr matrix_view t() const noexcept { return {data, cols, rows, col_stride, row_stride}; }
  constexpr bool row_contiguous() const noexcept { return col_stride == 1; }
  constexpr std::size_t size() const noexcept { return rows * cols; }
};

}  // namespace mxq
