// Module header: element, scale and block-format traits plus the predefined formats.
#pragma once
#include "format/block.hpp"
#include "format/element.hpp"
#include "format/predefined.hpp"
#include "format/registry.hpp"
#include "format/scale.hpp"
