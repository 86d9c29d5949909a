// Error metrics of a quantized linear layer y = W x (all arguments mxq::matrix_view<const float>).
//
//   relative_output_error(W, Q, X)      = ‖Q Xᵀ − W Xᵀ‖²_F / ‖W Xᵀ‖²_F
//   relative_output_error(W, Q, X, Xq)  = ‖Q Xqᵀ − W Xᵀ‖²_F / ‖W Xᵀ‖²_F   (quantized / transformed inputs)
//   hessian_weighted_error(W, Q, H)     = tr((Q − W) H (Q − W)ᵀ)         (GPTQ's objective, up to 1/2)
//
// W, Q: [out, in]; X, Xq: [tokens, in]; H: [in, in]. Products run in float through Eigen in chunks
// of tokens, sums of squares in double. The difference Q − W is formed before the product so small
// errors (MXINT8: 1e-5) are not lost to cancellation.
#pragma once
#include <Eigen/Dense>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>

#include "config.hpp"
#include "matrix_view.hpp"

namespace mxq {

namespace detail::metrics {

using row_major_f = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline row_major_f to_eigen(matrix_view<const float> v) {
  row_major_f m(static_cast<Eigen::Index>(v.rows), static_cast<Eigen::Index>(v.cols));
  for (std::size_t r = 0; r < v.rows; ++r)
    for (std::size_t c = 0; c < v.cols; ++c) m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = v(r, c);
  return m;
}

inline void check_metric_shapes(matrix_view<const float> W, matrix_view<const float> Q, matrix_view<const float> X,
                                const char* what) {
  if (Q.rows != W.rows || Q.cols != W.cols)
    throw error(std::string(what) + ": Q is " + std::to_string(Q.rows) + "x" + std::to_string(Q.cols) + " but W is " +
                std::to_string(W.rows) + "x" + std::to_string(W.cols));
  if (X.cols != W.cols)
    throw error(std::string(what) + ": inputs have " + std::to_string(X.cols) + " features but W has " +
                std::to_string(W.cols) + " input columns");
}

}  // namespace detail::metrics

// ‖Q Xqᵀ − W Xᵀ‖² / ‖W Xᵀ‖² (0 when W Xᵀ is 0 and the numerator too, else +Inf for a 0 denominator).
inline double relative_output_error(matrix_view<const float> W, matrix_view<const float> Q, matrix_view<const float> X,
                                    matrix_view<const float> Xq) {
  detail::metrics::check_metric_shapes(W, Q, X, "relative_output_error");
  if (Xq.rows != X.rows || Xq.cols != X.cols)
    throw error("relative_output_error: quantized inputs are " + std::to_string(Xq.rows) + "x" +
                std::to_string(Xq.cols) + " but inputs are " + std::to_string(X.rows) + "x" + std::to_string(X.cols));
  const bool same_inputs = Xq.data == X.data && Xq.row_stride == X.row_stride && Xq.col_stride == X.col_stride;
  const detail::metrics::row_major_f w = detail::metrics::to_eigen(W), q = detail::metrics::to_eigen(Q);
  const detail::metrics::row_major_f d = q - w;
  double num = 0.0, den = 0.0;
  constexpr std::size_t chunk = 2048;
  for (std::size_t t0 = 0; t0 < X.rows; t0 += chunk) {
    const std::size_t len = std::min(chunk, X.rows - t0);
    const detail::metrics::row_major_f x = detail::metrics::to_eigen(matrix_view<const float>(
        X.data + static_cast<std::ptrdiff_t>(t0) * X.row_stride, len, X.cols, X.row_stride, X.col_stride));
    const Eigen::MatrixXf ref = x * w.transpose();
    den += ref.cast<double>().squaredNorm();
    if (same_inputs) {
      num += (x * d.transpose()).cast<double>().squaredNorm();
    } else {
      const detail::metrics::row_major_f xq = detail::metrics::to_eigen(matrix_view<const float>(
          Xq.data + static_cast<std::ptrdiff_t>(t0) * Xq.row_stride, len, Xq.cols, Xq.row_stride, Xq.col_stride));
      num += ((xq * q.transpose()).cast<double>() - ref.cast<double>()).squaredNorm();
    }
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return num / den;
}

inline double relative_output_error(matrix_view<const float> W, matrix_view<const float> Q, matrix_view<const float> X) {
  return relative_output_error(W, Q, X, X);
}

// tr((Q − W) H (Q − W)ᵀ) in double.
inline double hessian_weighted_error(matrix_view<const float> W, matrix_view<const float> Q, matrix_view<const float> H) {
  if (H.rows != W.cols || H.cols != W.cols)
    throw error("hessian_weighted_error: H is " + std::to_string(H.rows) + "x" + std::to_string(H.cols) + " for " +
                std::to_string(W.cols) + " input columns");
  detail::metrics::check_metric_shapes(W, Q, matrix_view<const float>(nullptr, 0, W.cols), "hessian_weighted_error");
  const Eigen::MatrixXd d = (detail::metrics::to_eigen(Q) - detail::metrics::to_eigen(W)).cast<double>();
  const Eigen::MatrixXd h = detail::metrics::to_eigen(H).cast<double>();
  return (d * h).cwiseProduct(d).sum();
}

}  // namespace mxq
