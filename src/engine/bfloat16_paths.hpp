// The two implementations behind the bulk conversions of normlab/bfloat16.hpp,
// callable directly whatever the CPU and NORMLAB_MAX_ISA: the choice is made
// once per process, so a test cannot switch it by setting the variable, and
// compares the paths through these instead (tests/test_bfloat16.cpp).
#pragma once

#include <cstddef>

#include "normlab/bfloat16.hpp"

namespace normlab::bfloat16_paths {

// Portable code (the scalar rounding in a loop the compiler vectorizes).
void to_bfloat16_portable(const float* from, bfloat16* to, std::size_t n);
void round_to_bfloat16_portable(const float* from, float* to, std::size_t n);

// This build has the AVX512-BF16 path and this CPU can run it (avx512f, bw,
// vl and bf16), NORMLAB_MAX_ISA aside.
bool hardware_available();
// vcvtneps2bf16 with subnormal inputs rounded in integer arithmetic. Only
// where hardware_available(); std::logic_error otherwise.
void to_bfloat16_hardware(const float* from, bfloat16* to, std::size_t n);
void round_to_bfloat16_hardware(const float* from, float* to, std::size_t n);

// The path the public conversions use: "avx512_bf16" when hardware_available()
// and engine_isa() is "avx512", else "portable". Chosen at the first call.
const char* active();

}  // namespace normlab::bfloat16_paths
