// Bulk float <-> bfloat16 conversions (normlab/bfloat16.hpp): AVX512-BF16's
// vcvtneps2bf16 where the CPU has it and the engine's kernels are avx512,
// portable code otherwise, with bit-identical results.
#include "bfloat16_paths.hpp"

#include <cstring>
#include <stdexcept>

#include "normlab/bfloat16.hpp"
#include "normlab/engine.hpp"

// The target attribute and _mm512_cvtneps_pbh need GCC 10 or clang 9.
#if defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10))
#define NORMLAB_BF16_HARDWARE 1
#include <immintrin.h>
#else
#define NORMLAB_BF16_HARDWARE 0
#endif

namespace normlab::bfloat16_paths {

void to_bfloat16_portable(const float* from, bfloat16* to, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, from + i, sizeof u);
    to[i].bits = bfloat16_rounding::from_float_bits(u);
  }
}

void round_to_bfloat16_portable(const float* from, float* to, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, from + i, sizeof u);
    u = std::uint32_t(bfloat16_rounding::from_float_bits(u)) << 16;
    std::memcpy(to + i, &u, sizeof u);
  }
}

#if NORMLAB_BF16_HARDWARE

namespace {

#define NORMLAB_BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))

// Lanes as GNU vector types (GCC and clang): the integer steps are written as
// operators, which also keeps GCC 12 from warning about the _mm512_undefined_*
// inside its shift and conversion intrinsics (-Wmaybe-uninitialized).
typedef std::uint32_t u32x16 __attribute__((vector_size(64)));
typedef std::uint16_t u16x16 __attribute__((vector_size(32)));

// 16 floats to 16 bfloat16s. vcvtneps2bf16 rounds to nearest even and quiets
// NaNs exactly as bfloat16_rounding::from_float_bits does, but reads subnormal
// inputs as zero (Intel SDM, VCVTNEPS2BF16: "input denormals are always
// treated as zero"; the instruction matched the SDM's pseudocode on all 2^32
// floats on the machine this was written on). Lanes holding a nonzero
// subnormal are rounded again with from_float_bits' formula. Zeros do not
// take that branch, so data without subnormals pays one test per 16 lanes.
NORMLAB_BF16_TARGET inline __m256i convert16(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  __m256i r = (__m256i)_mm512_cvtneps_pbh(x);
  const __mmask16 subnormal =
      _mm512_mask_test_epi32_mask(_mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f800000)),
                                  bits, _mm512_set1_epi32(0x7fffffff));
  if (subnormal) {
    const u32x16 u = (u32x16)bits;
    const u32x16 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    r = _mm256_mask_mov_epi16(r, subnormal, (__m256i) __builtin_convertvector(rounded, u16x16));
  }
  return r;
}

// The bfloat16s back to the floats they are (bits << 16).
NORMLAB_BF16_TARGET inline __m512 widen16(__m256i h) {
  return (__m512)(__builtin_convertvector((u16x16)h, u32x16) << 16);
}

NORMLAB_BF16_TARGET void to_bfloat16_avx512(const float* from, bfloat16* to, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(to + i), convert16(_mm512_loadu_ps(from + i)));
  if (i < n) {  // the last 1..15, masked: nothing read or written past n
    const __mmask16 tail = __mmask16((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(to + i, tail, convert16(_mm512_maskz_loadu_ps(tail, from + i)));
  }
}

NORMLAB_BF16_TARGET void round_to_bfloat16_avx512(const float* from, float* to, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(to + i, widen16(convert16(_mm512_loadu_ps(from + i))));
  if (i < n) {
    const __mmask16 tail = __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(to + i, tail, widen16(convert16(_mm512_maskz_loadu_ps(tail, from + i))));
  }
}

}  // namespace

bool hardware_available() {
  static const bool available =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return available;
}

void to_bfloat16_hardware(const float* from, bfloat16* to, std::size_t n) {
  if (!hardware_available()) throw std::logic_error("bfloat16: this CPU has no AVX512-BF16");
  to_bfloat16_avx512(from, to, n);
}

void round_to_bfloat16_hardware(const float* from, float* to, std::size_t n) {
  if (!hardware_available()) throw std::logic_error("bfloat16: this CPU has no AVX512-BF16");
  round_to_bfloat16_avx512(from, to, n);
}

#else  // no AVX512-BF16 path in this build

bool hardware_available() {
  return false;
}

void to_bfloat16_hardware(const float*, bfloat16*, std::size_t) {
  throw std::logic_error("bfloat16: this build has no AVX512-BF16 path");
}

void round_to_bfloat16_hardware(const float*, float*, std::size_t) {
  throw std::logic_error("bfloat16: this build has no AVX512-BF16 path");
}

#endif

namespace {
// The hardware path only where the engine runs its avx512 kernels: engine_isa()
// is the one reader of NORMLAB_MAX_ISA (baseline or avx2 choose the portable
// path here too, and an unknown value throws the engine's error).
bool use_hardware() {
  static const bool use = hardware_available() && std::strcmp(engine_isa(), "avx512") == 0;
  return use;
}
}  // namespace

const char* active() {
  return use_hardware() ? "avx512_bf16" : "portable";
}

}  // namespace normlab::bfloat16_paths

namespace normlab {

void to_bfloat16(const float* from, bfloat16* to, std::size_t n) {
  if (bfloat16_paths::use_hardware())
    bfloat16_paths::to_bfloat16_hardware(from, to, n);
  else
    bfloat16_paths::to_bfloat16_portable(from, to, n);
}

void to_float(const bfloat16* from, float* to, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t u = std::uint32_t(from[i].bits) << 16;
    std::memcpy(to + i, &u, sizeof u);
  }
}

void round_to_bfloat16(const float* from, float* to, std::size_t n) {
  if (bfloat16_paths::use_hardware())
    bfloat16_paths::round_to_bfloat16_hardware(from, to, n);
  else
    bfloat16_paths::round_to_bfloat16_portable(from, to, n);
}

}  // namespace normlab
