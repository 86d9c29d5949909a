// A loaded float32 tensor: the common result of every reader's "give me floats" call.
#pragma once
#include <cstddef>
#include <vector>

namespace mxq {

struct tensor_f32 {
  std::vector<std::size_t> shape;
  std::vector<float> data;  // C order
};

}  // namespace mxq
