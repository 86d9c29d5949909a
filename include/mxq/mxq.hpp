// Umbrella header for the CPU library (formats, RTN quantizers, packed storage).
#pragma once
#include "config.hpp"
#include "format.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quantize.hpp"
