// Calibration statistics and helpers shared by SmoothQuant, AWQ and the recipe.
//
// activation_stats streams over calibration batches X [tokens, in] (one row per token) and keeps,
// per input channel j, the statistics the algorithms need:
//   max_abs()  = max_t |x_tj|      (SmoothQuant's act_scales, MIT get_act_scales)
//   mean_abs() = mean_t |x_tj|     (AWQ's x_mean, llm-awq get_act_scale)
//   mean_sq()  = mean_t x_tj^2     (importance weights of weighted scale searches, diag(H)/2)
// A NaN or Inf anywhere is an mxq::error naming the statistic, the batch, the row and the channel.
//
// Also here: activation_quant (a type-erased activation fake-quantizer, e.g. MXINT8 along the
// input dimension for W4A8) and the row-major Eigen helpers the searches use.
//
//   mxq::activation_stats st(in, "layers.0.mlp.down_proj");
//   for (auto& batch : calibration) st.add(batch);              // matrix_view<const float> [tokens, in]
//   std::vector<float> amax = st.max_abs(), xmean = st.mean_abs(), ex2 = st.mean_sq();
//   mxq::activation_quant a8 = mxq::activation_quant_by_name("mxint8");
//   mxq::row_matrix_f Xq = a8(X);                                // fake-quantized copy of X
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.hpp"
#include "format/block.hpp"
#include "format/registry.hpp"
#include "matrix_view.hpp"
#include "quant/options.hpp"
#include "quantize.hpp"

namespace mxq {

// fp32 row-major dense matrix: weights [out, in] and activations [tokens, in].
using row_matrix_f = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Views of Eigen row-major storage (no copy).
inline matrix_view<const float> view_of(const row_matrix_f& m) noexcept {
  return {m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
}
inline matrix_view<float> view_of(row_matrix_f& m) noexcept {
  return {m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
}

namespace detail::calib {

// Copy of any view into a row-major Eigen matrix.
inline row_matrix_f to_eigen(matrix_view<const float> v) {
  row_matrix_f m(static_cast<Eigen::Index>(v.rows), static_cast<Eigen::Index>(v.cols));
  for (std::size_t r = 0; r < v.rows; ++r) {
    float* dst = m.data() + r * v.cols;
    if (v.row_contiguous()) std::copy(v.row(r), v.row(r) + v.cols, dst);
    else
      for (std::size_t c = 0; c < v.cols; ++c) dst[c] = v(r, c);
  }
  return m;
}

// Row-major Eigen map of a view whose rows are contiguous (callers check row_contiguous()).
using const_row_map = Eigen::Map<const row_matrix_f, 0, Eigen::OuterStride<>>;
inline const_row_map map_rows(matrix_view<const float> v) {
  return const_row_map(v.data, static_cast<Eigen::Index>(v.rows), static_cast<Eigen::Index>(v.cols),
                       Eigen::OuterStride<>(v.row_stride));
}

inline std::string shape_str(std::size_t r, std::size_t c) { return std::to_string(r) + "x" + std::to_string(c); }

inline void check_group(std::span<const matrix_view<const float>> weights, std::size_t in, const char* who) {
  if (weights.empty()) throw error(std::string(who) + ": the group holds no linear layer");
  for (std::size_t i = 0; i < weights.size(); ++i)
    if (weights[i].cols != in)
      throw error(std::string(who) + ": linear " + std::to_string(i) + " is " +
                  shape_str(weights[i].rows, weights[i].cols) + " but the group's input has " + std::to_string(in) +
                  " channels");
}

inline void check_scales(std::span<const float> s, std::size_t n, const char* who) {
  if (s.size() != n)
    throw error(std::string(who) + ": " + std::to_string(s.size()) + " scales for " + std::to_string(n) + " channels");
  for (std::size_t j = 0; j < s.size(); ++j)
    if (!(std::isfinite(s[j]) && s[j] > 0.0f))
      throw error(std::string(who) + ": scale of channel " + std::to_string(j) + " is " + std::to_string(s[j]) +
                  " (must be finite and > 0)");
}

}  // namespace detail::calib

// Streaming per-input-channel statistics of calibration activations.
class activation_stats {
 public:
  activation_stats() = default;
  // `name` (e.g. "layers.3.mlp.down_proj") prefixes every error message.
  explicit activation_stats(std::size_t channels, std::string name = {}) : name_(std::move(name)) { reset(channels); }

  void reset(std::size_t channels) {
    channels_ = channels;
    max_abs_.assign(channels, 0.0f);
    sum_abs_.assign(channels, 0.0);
    sum_sq_.assign(channels, 0.0);
    tokens_ = batches_ = 0;
  }

  // One calibration batch [tokens, channels]. The first batch fixes the channel count when the
  // collector was default-constructed. Nothing is accumulated from a batch that holds NaN/Inf.
  void add(matrix_view<const float> batch) {
    if (channels_ == 0 && tokens_ == 0 && batches_ == 0) reset(batch.cols);
    if (batch.cols != channels_)
      throw error(prefix() + "calibration batch " + std::to_string(batches_) + " has " + std::to_string(batch.cols) +
                  " channels, expected " + std::to_string(channels_));
    for (std::size_t r = 0; r < batch.rows; ++r)
      for (std::size_t c = 0; c < batch.cols; ++c) {
        const float v = batch(r, c);
        if (!std::isfinite(v))
          throw error(prefix() + "non-finite value " + std::to_string(v) + " in calibration batch " +
                      std::to_string(batches_) + ", row " + std::to_string(r) + " (token " +
                      std::to_string(tokens_ + r) + " overall), channel " + std::to_string(c));
      }
    for (std::size_t r = 0; r < batch.rows; ++r)
      for (std::size_t c = 0; c < batch.cols; ++c) {
        const float v = batch(r, c);
        const float a = std::fabs(v);
        max_abs_[c] = std::max(max_abs_[c], a);
        sum_abs_[c] += static_cast<double>(a);
        sum_sq_[c] += static_cast<double>(v) * static_cast<double>(v);
      }
    tokens_ += batch.rows;
    ++batches_;
  }
  void add(const row_matrix_f& batch) { add(view_of(batch)); }

  // Combine with a collector fed other batches (e.g. another thread's).
  void merge(const activation_stats& o) {
    if (o.batches_ == 0) return;
    if (batches_ == 0 && channels_ == 0) reset(o.channels_);
    if (o.channels_ != channels_)
      throw error(prefix() + "cannot merge statistics of " + std::to_string(o.channels_) + " channels into " +
                  std::to_string(channels_));
    for (std::size_t c = 0; c < channels_; ++c) {
      max_abs_[c] = std::max(max_abs_[c], o.max_abs_[c]);
      sum_abs_[c] += o.sum_abs_[c];
      sum_sq_[c] += o.sum_sq_[c];
    }
    tokens_ += o.tokens_;
    batches_ += o.batches_;
  }

  std::size_t channels() const noexcept { return channels_; }
  std::size_t tokens() const noexcept { return tokens_; }
  std::size_t batches() const noexcept { return batches_; }
  const std::string& name() const noexcept { return name_; }

  std::vector<float> max_abs() const { return max_abs_; }
  std::vector<float> mean_abs() const { return mean_of(sum_abs_); }
  std::vector<float> mean_sq() const { return mean_of(sum_sq_); }

 private:
  std::string prefix() const { return name_.empty() ? std::string("activation_stats: ") : name_ + ": "; }
  std::vector<float> mean_of(const std::vector<double>& s) const {
    if (tokens_ == 0) throw error(prefix() + "no calibration tokens were added");
    std::vector<float> m(s.size());
    for (std::size_t c = 0; c < s.size(); ++c) m[c] = static_cast<float>(s[c] / static_cast<double>(tokens_));
    return m;
  }

  std::string name_;
  std::size_t channels_ = 0, tokens_ = 0, batches_ = 0;
  std::vector<float> max_abs_;
  std::vector<double> sum_abs_, sum_sq_;
};

// Statistics of one matrix in one call.
inline activation_stats collect_stats(matrix_view<const float> x, std::string name = {}) {
  activation_stats s(x.cols, std::move(name));
  s.add(x);
  return s;
}

// Activation fake-quantization (dynamic, per token, blocks along the input dimension): the "A"
// of W4A8. Empty = activations stay fp32.
struct activation_quant {
  std::string name;
  std::function<void(matrix_view<const float> in, matrix_view<float> out)> apply;

  explicit operator bool() const noexcept { return static_cast<bool>(apply); }
  // Quantized copy of x (a plain copy when empty).
  row_matrix_f operator()(matrix_view<const float> x) const {
    row_matrix_f out = detail::calib::to_eigen(x);
    if (apply) apply(view_of(out), view_of(out));
    return out;
  }
};

// Activation quantizer for format A (rows = tokens, blocks of A::block_size along the channels).
template <format_type A>
activation_quant make_activation_quant(quant_options opt = {}) {
  return {std::string(format_traits<A>::name),
          [opt](matrix_view<const float> in, matrix_view<float> out) { fake_quant<A>(in, out, opt); }};
}

// By name ("mxint8", ...) among Formats; "" or "none" gives the empty quantizer. (A template, so
// a translation unit that never calls it never instantiates every format's quantizer.)
template <class Formats = predefined_formats>
activation_quant activation_quant_by_name(std::string_view name, quant_options opt = {}) {
  if (name.empty() || name == "none" || name == "fp32") return {};
  return visit_format(name, [&](auto tag) { return make_activation_quant<typename decltype(tag)::type>(opt); }, Formats{});
}

}  // namespace mxq
