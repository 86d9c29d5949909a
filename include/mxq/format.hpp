// Module header: element, scale and block-format traits plus the predefined formats.
//
//   using F = mxq::mxfp4;                                   // E2M1 elements, blocks of 32, E8M0 scale
//   static_assert(F::bits == 4 && F::block_size == 32);
//   double b = mxq::effective_bits<F>();                    // 4 + 8 / 32 = 4.25 bits per value
//   mxq::visit_format("nvfp4", [](auto tag) {               // runtime name -> compile-time format
//     using G = typename decltype(tag)::type;               // mxq::nvfp4
//   });
#pragma once
#include "format/block.hpp"
#include "format/element.hpp"
#include "format/predefined.hpp"
#include "format/registry.hpp"
#include "format/scale.hpp"
