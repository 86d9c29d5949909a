// mxq::llm: whole Llama/Qwen2 models on top of the core (target mxq::llm, which adds nlohmann_json).
//   config + weights (Hugging Face directories), the layer walker and forward pass, perplexity,
//   quantize_model (a recipe over every decoder layer), quantized checkpoints and the packed
//   forward path.
#pragma once
#include "llm/checkpoint.hpp"
#include "llm/config.hpp"
#include "llm/forward.hpp"
#include "llm/linear.hpp"
#include "llm/packed_forward.hpp"
#include "llm/perplexity.hpp"
#include "llm/quantize_model.hpp"
#include "llm/weights.hpp"
