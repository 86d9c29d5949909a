// Streaming accumulation of a linear layer's GPTQ Hessian H = (2/n) Σ x_i x_iᵀ over calibration
// input rows x_i (the layer's inputs, [tokens, in]).
//
//   mxq::hessian_accumulator h(in_features);
//   for (auto& batch : calibration) h.add(batch);   // matrix_view<const float> rows, or add(u16 view, half_type::bf16)
//   mxq::matrix_view<const float> H = h.matrix();   // [in, in], full symmetric: mxq::gptq<F>(W, H) (gptq.hpp)
//
// Like the reference (IST-DASLab/gptq `add_batch`) the matrix is a running average: for a batch of
// k samples H <- H·n/(n+k), n <- n+k, H += (2/n)·X_bᵀX_b, so H stays O(|x|²) however many batches
// arrive. n counts rows by default; add(rows, count) lets a caller count sequences instead (the
// reference counts sequences; the scale of H does not matter to GPTQ, whose damping is relative).
// Updates are symmetric rank-k (only the lower triangle is accumulated: Eigen's blocked SYRK, or
// column strips of GEMMs spread over threads); matrix() returns the full symmetric matrix.
// A batch holding NaN or ±Inf is rejected before it touches H, with an error naming the row.
// Not thread-safe: one accumulator per thread, then merge().
#pragma once
#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "detail/bits.hpp"
#include "detail/eigen_blocking.hpp"
#include "matrix_view.hpp"
#include "solver/parallel.hpp"

namespace mxq {

struct hessian_options {
  // Accumulate in double (then matrix() rounds to float once); float by default like the references.
  bool double_accumulation = false;
  // Threads for the rank-k updates (0 = all hardware threads). Each batch is split into column
  // strips of the lower triangle; small batches stay single-threaded.
  int threads = 1;
  // Named in error messages (e.g. "model.layers.3.mlp.down_proj").
  std::string name = {};
};

// 16-bit storage types of calibration rows.
enum class half_type { f16, bf16 };

class hessian_accumulator {
 public:
  explicit hessian_accumulator(std::size_t in_features, hessian_options opt = {})
      : n_(in_features), opt_(std::move(opt)) {
    pin_eigen_blocking();
    if (opt_.double_accumulation) hd_ = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(n_));
    else hf_ = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(n_));
  }

  std::size_t size() const noexcept { return n_; }
  // Samples counted so far (the n of 2/n) and batches added.
  std::size_t samples() const noexcept { return samples_; }
  std::size_t batches() const noexcept { return batches_; }
  const hessian_options& options() const noexcept { return opt_; }

  // Adds a batch of calibration rows [k, in]; it counts as `count` samples (default: its rows).
  void add(matrix_view<const float> rows) { add(rows, rows.rows); }
  void add(matrix_view<const float> rows, std::size_t count) {
    check_shape(rows.cols, rows.rows, count);
    for (std::size_t r = 0; r < rows.rows; ++r)
      for (std::size_t c = 0; c < rows.cols; ++c) check_value(rows(r, c), r, c);
    if (rows.rows == 0) return;
    begin_batch(count);
    const bool contiguous = rows.col_stride == 1 && rows.row_stride >= static_cast<std::ptrdiff_t>(rows.cols);
    if (opt_.double_accumulation || !contiguous) {
      // Chunks converted to the accumulation type, laid out as Xᵀ (in x k, column-major).
      for_chunks(rows.rows, [&](std::size_t r0, std::size_t len) {
        if (opt_.double_accumulation) {
          Eigen::MatrixXd xt(static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(len));
          for (std::size_t r = 0; r < len; ++r)
            for (std::size_t c = 0; c < n_; ++c) xt(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(r)) = rows(r0 + r, c);
          rank_update(hd_, xt, 2.0 / static_cast<double>(samples_));
        } else {
          Eigen::MatrixXf xt(static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(len));
          for (std::size_t r = 0; r < len; ++r)
            for (std::size_t c = 0; c < n_; ++c) xt(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(r)) = rows(r0 + r, c);
          rank_update(hf_, xt, static_cast<float>(2.0 / static_cast<double>(samples_)));
        }
      });
    } else {
      // Row-major [k, in] rows are Xᵀ in column-major order: no copy.
      using map_t = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
      const map_t xt(rows.data, static_cast<Eigen::Index>(n_), static_cast<Eigen::Index>(rows.rows),
                     Eigen::OuterStride<>(rows.row_stride));
      rank_update(hf_, xt, static_cast<float>(2.0 / static_cast<double>(samples_)));
    }
  }

  // Rows stored as IEEE half or bfloat16 bits.
  void add(matrix_view<const std::uint16_t> rows, half_type type) { add(rows, type, rows.rows); }
  void add(matrix_view<const std::uint16_t> rows, half_type type, std::size_t count) {
    check_shape(rows.cols, rows.rows, count);
    std::vector<float> buf;
    // Validate everything first so a bad batch leaves H untouched.
    for (std::size_t r = 0; r < rows.rows; ++r)
      for (std::size_t c = 0; c < rows.cols; ++c) check_value(to_float(rows(r, c), type), r, c);
    if (rows.rows == 0) return;
    // Convert to float and reuse the float path, counting the whole batch once.
    buf.resize(rows.rows * rows.cols);
    for (std::size_t r = 0; r < rows.rows; ++r)
      for (std::size_t c = 0; c < rows.cols; ++c) buf[r * rows.cols + c] = to_float(rows(r, c), type);
    add(matrix_view<const float>(buf.data(), rows.rows, rows.cols), count);
  }

  // Folds another accumulator over the same input features in (e.g. one per worker).
  void merge(const hessian_accumulator& o) {
    if (o.n_ != n_) throw error(prefix() + "cannot merge a " + std::to_string(o.n_) + "-feature Hessian into a " +
                                std::to_string(n_) + "-feature one");
    if (o.samples_ == 0) return;
    const double total = static_cast<double>(samples_ + o.samples_);
    const double a = static_cast<double>(samples_) / total, b = static_cast<double>(o.samples_) / total;
    if (opt_.double_accumulation) {
      hd_ = a * hd_ + b * (o.opt_.double_accumulation ? o.hd_ : o.hf_.cast<double>());
    } else {
      hf_ = static_cast<float>(a) * hf_ +
            static_cast<float>(b) * (o.opt_.double_accumulation ? o.hd_.cast<float>() : o.hf_);
    }
    samples_ += o.samples_;
    batches_ += o.batches_;
    dirty_ = true;
  }

  void reset() {
    if (opt_.double_accumulation) hd_.setZero(); else hf_.setZero();
    samples_ = batches_ = 0;
    dirty_ = true;
  }

  // The full symmetric H (float32, column-major = row-major), valid until the next add/merge/reset.
  matrix_view<const float> matrix() const {
    const Eigen::MatrixXf& m = eigen();
    return matrix_view<const float>(m.data(), n_, n_);
  }
  const Eigen::MatrixXf& eigen() const {
    if (dirty_) {
      if (opt_.double_accumulation) {
        Eigen::MatrixXd full = hd_.selfadjointView<Eigen::Lower>();
        out_ = full.cast<float>();
      } else {
        hf_.triangularView<Eigen::StrictlyUpper>() = hf_.transpose();
        out_.resize(0, 0);
      }
      dirty_ = false;
    }
    return opt_.double_accumulation ? out_ : hf_;
  }
  // H in double (exact copy of a double accumulation).
  Eigen::MatrixXd eigen_double() const {
    if (opt_.double_accumulation) return hd_.selfadjointView<Eigen::Lower>();
    return eigen().cast<double>();
  }

 private:
  static constexpr std::size_t chunk_rows = 1024;

  static float to_float(std::uint16_t b, half_type t) noexcept {
    return t == half_type::bf16 ? detail::bf16_bits_to_float(b) : detail::half_bits_to_float(b);
  }
  std::string prefix() const {
    return opt_.name.empty() ? std::string("hessian: ") : "hessian '" + opt_.name + "': ";
  }
  void check_shape(std::size_t cols, std::size_t rows, std::size_t count) const {
    if (cols != n_)
      throw error(prefix() + "batch " + std::to_string(batches_) + " has " + std::to_string(cols) +
                  " columns, expected " + std::to_string(n_) + " input features");
    if (rows > 0 && count == 0)
      throw error(prefix() + "batch " + std::to_string(batches_) + " counts as 0 samples");
  }
  void check_value(float v, std::size_t r, std::size_t c) const {
    if (!std::isfinite(v))
      throw error(prefix() + "batch " + std::to_string(batches_) + ", row " + std::to_string(r) + " (calibration row " +
                  std::to_string(rows_seen_ + r) + ") holds " + (std::isnan(v) ? "NaN" : "Inf") + " in column " +
                  std::to_string(c));
  }
  void begin_batch(std::size_t count) {
    const double old_n = static_cast<double>(samples_);
    samples_ += count;
    const double keep = old_n / static_cast<double>(samples_);
    if (opt_.double_accumulation) hd_.triangularView<Eigen::Lower>() *= keep;
    else if (samples_ != count) hf_.triangularView<Eigen::Lower>() *= static_cast<float>(keep);
    ++batches_;
    dirty_ = true;
  }
  template <class Fn>
  void for_chunks(std::size_t rows, Fn&& fn) {
    for (std::size_t r0 = 0; r0 < rows; r0 += chunk_rows) fn(r0, std::min(chunk_rows, rows - r0));
  }

  // M.lower += alpha · XT · XTᵀ (XT: in x k).
  template <class Mat, class XT>
  void rank_update(Mat& m, const XT& xt, typename Mat::Scalar alpha) {
    const Eigen::Index n = m.rows(), k = xt.cols();
    const int threads = detail::resolve_threads(opt_.threads);
    constexpr Eigen::Index strip = 128;
    // The strip decomposition fixes the summation order; threads only share the strips out, so H
    // is the same for any thread count (a single selfadjoint rankUpdate would round differently).
    if (n < 2 * strip || k < 64) {
      m.template selfadjointView<Eigen::Lower>().rankUpdate(xt, alpha);
    } else {
      // Column strips of the lower triangle; the tallest strips (left) first.
      const std::size_t strips = static_cast<std::size_t>((n + strip - 1) / strip);
      detail::parallel_for(strips, threads, [&](std::size_t s) {
        const Eigen::Index j0 = static_cast<Eigen::Index>(s) * strip, w = std::min(strip, n - j0);
        m.block(j0, j0, n - j0, w).noalias() += alpha * (xt.middleRows(j0, n - j0) * xt.middleRows(j0, w).transpose());
      });
    }
    rows_seen_ += static_cast<std::size_t>(k);
  }

  std::size_t n_;
  hessian_options opt_;
  std::size_t samples_ = 0, batches_ = 0, rows_seen_ = 0;
  mutable Eigen::MatrixXf hf_;
  Eigen::MatrixXd hd_;
  mutable Eigen::MatrixXf out_;
  mutable bool dirty_ = true;
};

}  // namespace mxq
