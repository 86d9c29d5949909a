// Perplexity of a GGUF file in llama.cpp itself (the real client of mxq's GGUF export), on a
// uint16 token file: non-overlapping windows of SEQ tokens from the start, every position but the
// first of each window scored, PPL = exp(mean NLL) — mxq eval-ppl's definition. CPU only, fp32 KV
// cache, no weight repacking, so the numbers are llama.cpp's plain kernels.
//
//   mxq_llama_ppl MODEL.gguf TOKENS.u16 WINDOWS [SEQ 256] [THREADS 2]   -> last line "ppl: X"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "llama.h"

// --retokenize MODEL.gguf TOKENS.u16 N: the GGUF's vocabulary in llama.cpp turns the first N
// token ids into text (special tokens rendered) and that text back into ids; prints how many of
// the N come back the same from the start ("same: K of N"): a tokenizer that matches the one
// that made TOKENS gives all of them but the last few (the cut mid-text).
int retokenize(const std::string& model_path, const std::string& tokens_path, int n) {
  std::vector<std::uint16_t> tok(static_cast<std::size_t>(n));
  {
    std::ifstream f(tokens_path, std::ios::binary);
    f.read(reinterpret_cast<char*>(tok.data()), static_cast<std::streamsize>(tok.size() * 2));
    if (!f) {
      std::fprintf(stderr, "%s holds fewer than %d tokens\n", tokens_path.c_str(), n);
      return 2;
    }
  }
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  llama_model* model = llama_model_load_from_file(model_path.c_str(), mp);
  if (!model) {
    std::fprintf(stderr, "llama.cpp could not load %s\n", model_path.c_str());
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::string text;
  char buf[512];
  for (std::uint16_t t : tok) {
    const int k = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, true);
    if (k < 0) return 1;
    text.append(buf, static_cast<std::size_t>(k));
  }
  std::vector<llama_token> back(text.size() + 16);
  const int m = llama_tokenize(vocab, text.data(), static_cast<int>(text.size()), back.data(), static_cast<int>(back.size()),
                               false, true);
  if (m < 0) return 1;
  int same = 0;
  while (same < n && same < m && back[static_cast<std::size_t>(same)] == tok[static_cast<std::size_t>(same)]) ++same;
  std::printf("n_vocab: %d\ntext_bytes: %zu\nretokenized: %d\nsame: %d of %d\n", llama_vocab_n_tokens(vocab), text.size(), m,
              same, n);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--retokenize") return retokenize(argv[2], argv[3], std::stoi(argv[4]));
  if (argc < 4) {
    std::fprintf(stderr, "usage: mxq_llama_ppl MODEL.gguf TOKENS.u16 WINDOWS [SEQ] [THREADS]\n");
    return 2;
  }
  const std::string model_path = argv[1], tokens_path = argv[2];
  const int windows = std::stoi(argv[3]), seq = argc > 4 ? std::stoi(argv[4]) : 256, threads = argc > 5 ? std::stoi(argv[5]) : 2;
  std::vector<std::uint16_t> tok;
  {
    std::ifstream f(tokens_path, std::ios::binary | std::ios::ate);
    const auto n = static_cast<std::size_t>(f.tellg()) / 2;
    tok.resize(n);
    f.seekg(0);
    f.read(reinterpret_cast<char*>(tok.data()), static_cast<std::streamsize>(n * 2));
  }
  if (tok.size() < static_cast<std::size_t>(windows) * seq) {
    std::fprintf(stderr, "%s holds %zu tokens, %d windows of %d requested\n", tokens_path.c_str(), tok.size(), windows, seq);
    return 2;
  }
  llama_backend_init();
  llama_log_set([](ggml_log_level level, const char* text, void*) {
    if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
  }, nullptr);
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.use_extra_bufts = false;
  mp.check_tensors = true;  // ggml_validate_row_data on every tensor
  llama_model* model = llama_model_load_from_file(model_path.c_str(), mp);
  if (!model) {
    std::fprintf(stderr, "llama.cpp could not load %s\n", model_path.c_str());
    return 1;
  }
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<std::uint32_t>(seq);
  cp.n_batch = static_cast<std::uint32_t>(seq);
  cp.n_ubatch = static_cast<std::uint32_t>(seq);
  cp.n_seq_max = 1;
  cp.n_threads = cp.n_threads_batch = threads;
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "llama.cpp could not make a context\n");
    return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  llama_batch batch = llama_batch_init(seq, 0, 1);
  double nll = 0;
  std::size_t scored = 0;
  for (int w = 0; w < windows; ++w) {
    llama_memory_clear(llama_get_memory(ctx), true);
    batch.n_tokens = seq;
    for (int i = 0; i < seq; ++i) {
      batch.token[i] = tok[static_cast<std::size_t>(w) * seq + i];
      batch.pos[i] = i;
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "llama_decode failed on window %d\n", w);
      return 1;
    }
    for (int i = 0; i + 1 < seq; ++i) {
      const float* l = llama_get_logits_ith(ctx, i);
      double m = l[0];
      for (int v = 1; v < n_vocab; ++v) m = std::max(m, static_cast<double>(l[v]));
      double z = 0;
      for (int v = 0; v < n_vocab; ++v) z += std::exp(static_cast<double>(l[v]) - m);
      nll += m + std::log(z) - l[tok[static_cast<std::size_t>(w) * seq + i + 1]];
      ++scored;
    }
  }
  std::printf("windows: %d\nscored: %zu\nppl: %.6f\n", windows, scored, std::exp(nll / static_cast<double>(scored)));
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
