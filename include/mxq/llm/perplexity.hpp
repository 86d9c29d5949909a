// Perplexity over non-overlapping windows of a token file: window k is tokens [k*seq, (k+1)*seq);
// every position but the first of each window is scored (predicted from the positions before it
// in the same window); PPL = exp(mean NLL). Log-sum-exp in fp32, sums in double.
//
// Windows are processed in fixed-size batches pulled by std::threads, so memory stays bounded and the
// result does not depend on the thread count.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "../io/error.hpp"
#include "../io/file.hpp"
#include "forward.hpp"
#include "parallel.hpp"

namespace mxq::llm {

// Reads a file of uint16 little-endian token ids. An odd byte count, or (when vocab_size > 0) an id
// outside the vocabulary, is an io_error naming the file.
inline std::vector<token_id> read_tokens_u16(const std::filesystem::path& file, std::size_t vocab_size = 0) {
  const mapped_file f(file);
  const auto b = f.bytes();
  if (b.size() % 2 != 0)
    detail::io::fail(file, "odd byte count " + std::to_string(b.size()) + " (expected uint16 little-endian token ids)");
  std::vector<token_id> out(b.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = token_id(static_cast<unsigned char>(b[2 * i])) | token_id(static_cast<unsigned char>(b[2 * i + 1])) << 8;
    if (vocab_size && out[i] >= vocab_size)
      detail::io::fail(file, "token id " + std::to_string(out[i]) + " at index " + std::to_string(i) +
                                 " is outside the vocabulary (" + std::to_string(vocab_size) + ")");
  }
  return out;
}

// Reads a file of uint32 little-endian token ids (for vocabularies beyond 65536), checked as above.
inline std::vector<token_id> read_tokens_u32(const std::filesystem::path& file, std::size_t vocab_size = 0) {
  const mapped_file f(file);
  const auto b = f.bytes();
  if (b.size() % 4 != 0)
    detail::io::fail(file, "byte count " + std::to_string(b.size()) + " is not a multiple of 4 (expected uint32 little-endian token ids)");
  std::vector<token_id> out(b.size() / 4);
  for (std::size_t i = 0; i < out.size(); ++i) {
    token_id v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[4 * i + static_cast<std::size_t>(k)]);
    out[i] = v;
    if (vocab_size && out[i] >= vocab_size)
      detail::io::fail(file, "token id " + std::to_string(out[i]) + " at index " + std::to_string(i) +
                                 " is outside the vocabulary (" + std::to_string(vocab_size) + ")");
  }
  return out;
}

// A token-id file by its extension: .u32 holds uint32 ids, anything else uint16 (.u16).
inline std::vector<token_id> read_tokens(const std::filesystem::path& file, std::size_t vocab_size = 0) {
  return file.extension() == ".u32" ? read_tokens_u32(file, vocab_size) : read_tokens_u16(file, vocab_size);
}

struct perplexity_options {
  std::size_t seq_len = 256;
  std::size_t windows = 0;            // the first N windows; 0 = every full window
  unsigned threads = 0;               // 0 = std::thread::hardware_concurrency()
  std::size_t windows_per_batch = 4;  // windows per forward batch; fixed so results ignore `threads`
  act_quant_fn act_quant;             // optional activation fake-quant (thread-safe; see forward.hpp)
  linear_fn linear;                   // optional decoder-linear override, e.g. packed_linears::hook()
  std::function<void(std::size_t done, std::size_t total)> progress;  // windows done; called under a lock
};

struct perplexity_result {
  double ppl = 0;
  double mean_nll = 0;
  std::size_t windows = 0;
  std::size_t scored_tokens = 0;
  std::vector<double> window_nll;  // summed NLL of each window
};

}  // namespace mxq::llm

namespace mxq::detail::model {
using namespace ::mxq::llm;

struct ppl_worker {
  workspace ws;
  RowMajorMatrixXf hidden, logits;
};

// Summed NLL of each window of `tokens` (n_windows * seq ids), written to nll_out.
inline void window_nll(const model_weights& w, std::span<const token_id> tokens, std::size_t seq,
                       const forward_hooks& hooks, ppl_worker& pw, std::span<double> nll_out, std::size_t first_window) {
  pw.hidden = embed(w, tokens);
  for (std::size_t l = 0; l < w.layers.size(); ++l) layer_walker(w, l, pw.hidden, seq, hooks, 1, &pw.ws).finish();
  final_norm(w, pw.hidden);
  const Eigen::Index S = static_cast<Eigen::Index>(seq);
  pw.logits.resize(S - 1, w.lm_head.rows());
  for (std::size_t k = 0; k < nll_out.size(); ++k) {
    const Eigen::Index r0 = static_cast<Eigen::Index>(k) * S;
    // Row i predicts token i+1 of the window; the last row predicts nothing inside the window.
    pw.logits.noalias() = pw.hidden.middleRows(r0, S - 1) * w.lm_head.transpose();
    double sum = 0;
    for (Eigen::Index i = 0; i < S - 1; ++i) {
      const auto row = pw.logits.row(i).array();
      const float m = row.maxCoeff();
      const float lse = m + std::log((row - m).exp().sum());
      const token_id target = tokens[static_cast<std::size_t>(r0 + i + 1)];
      const float nll = lse - row(static_cast<Eigen::Index>(target));
      if (!std::isfinite(nll))
        throw error("perplexity: non-finite loss in window " + std::to_string(first_window + k) + " at position " +
                    std::to_string(i + 1) + " (logits hold NaN/Inf)");
      sum += nll;
    }
    nll_out[k] = sum;
  }
}

}  // namespace mxq::detail::model

namespace mxq::llm {

inline perplexity_result perplexity(const model_weights& w, std::span<const token_id> tokens,
                                    const perplexity_options& opt = {}) {
  const std::size_t S = opt.seq_len;
  if (S < 2) throw error("perplexity: seq_len must be at least 2, got " + std::to_string(S));
  const std::size_t available = tokens.size() / S;
  const std::size_t N = opt.windows ? opt.windows : available;
  if (N == 0)
    throw error("perplexity: " + std::to_string(tokens.size()) + " tokens hold no full window of " + std::to_string(S));
  if (N > available)
    throw error("perplexity: asked for " + std::to_string(N) + " windows of " + std::to_string(S) + " tokens, but only " +
                std::to_string(available) + " are available (" + std::to_string(tokens.size()) + " tokens)");
  const std::size_t per_batch = std::max<std::size_t>(1, opt.windows_per_batch);
  const std::size_t batches = (N + per_batch - 1) / per_batch;
  const unsigned threads = resolve_threads(opt.threads);
  pin_eigen_blocking();

  perplexity_result r;
  r.windows = N;
  r.window_nll.assign(N, 0.0);
  std::vector<detail::model::ppl_worker> workers(std::min<std::size_t>(threads, batches));
  forward_hooks hooks;
  hooks.act_quant = opt.act_quant;
  hooks.linear = opt.linear;
  std::mutex progress_mutex;
  std::size_t done = 0;
  detail::model::parallel_items(batches, static_cast<unsigned>(workers.size()), [&](std::size_t b, std::size_t wk) {
    const std::size_t w0 = b * per_batch, n = std::min(per_batch, N - w0);
    detail::model::window_nll(w, tokens.subspan(w0 * S, n * S), S, hooks, workers[wk],
                              std::span<double>(r.window_nll).subspan(w0, n), w0);
    if (opt.progress) {
      std::lock_guard<std::mutex> lock(progress_mutex);
      done += n;
      opt.progress(done, N);
    }
  });
  double total = 0;
  for (double x : r.window_nll) total += x;  // fixed order: independent of scheduling
  r.scored_tokens = N * (S - 1);
  r.mean_nll = total / static_cast<double>(r.scored_tokens);
  r.ppl = std::exp(r.mean_nll);
  return r;
}

}  // namespace mxq::llm
