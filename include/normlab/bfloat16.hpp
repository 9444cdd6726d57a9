// bfloat16: the upper 16 bits of an IEEE float32 (sign, the same 8 exponent
// bits, 7 mantissa bits). A storage type: values are converted to float for
// arithmetic, and back with one rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace normlab {

namespace bfloat16_rounding {
// The bfloat16 bits nearest to the float of bits u, ties to even. Integer
// arithmetic only, so the result does not depend on the floating-point
// environment (MXCSR's rounding mode, DAZ or FTZ).
//  - NaN: the upper half with the quiet bit (bit 6) set, so a NaN whose payload
//    is only in its low 16 bits does not turn into infinity; sign and the upper
//    payload bits are kept. This is what AVX512-BF16's vcvtneps2bf16 does.
//  - Everything else, infinities and subnormals included: adding 0x7fff plus
//    the lowest kept bit carries into the kept bits exactly when the dropped
//    half is above the tie, or at the tie with an odd kept half. bfloat16 has
//    float's exponent range, and below the sign bit a float's bits are ordered
//    like its magnitude, so a carry into the exponent is the correct next
//    value: the largest subnormals round up to the smallest normal, the
//    largest finite floats to infinity (as round to nearest requires).
// (Written as a select rather than a branch, so loops of it vectorize.)
inline std::uint16_t from_float_bits(std::uint32_t u) {
  const std::uint32_t nan = (u >> 16) | 0x0040u;
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return std::uint16_t((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
inline std::uint32_t float_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
}  // namespace bfloat16_rounding

// Trivially copyable, standard layout and 2 bytes, so arrays of it are plain
// memory the engine's kernels can load and store like float's.
//
// The default constructor is trivial, like float's: `bfloat16 b;` leaves the
// bits indeterminate, `bfloat16 b{}` and std::vector<bfloat16>(n) zero them
// (+0).
//
// There is deliberately no operator== (nor any other comparison): comparing
// bits would make NaN equal to itself and +0 unequal to -0, comparing values
// would not be what a storage type's identity means. Say which you want:
// `float(a) == float(b)` (IEEE) or `a.bits == b.bits` (same pattern).
struct bfloat16 {
  std::uint16_t bits;

  bfloat16() = default;
  // Rounds to nearest, ties to even (bfloat16_rounding::from_float_bits).
  explicit bfloat16(float x)
      : bits(bfloat16_rounding::from_float_bits(bfloat16_rounding::float_bits(x))) {}
  // Exact: every bfloat16 is a float (the float with these bits on top).
  explicit operator float() const {
    const std::uint32_t u = std::uint32_t(bits) << 16;
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
  }
  static bfloat16 from_bits(std::uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(bfloat16) == 2, "bfloat16 is two bytes");
static_assert(std::is_trivially_copyable<bfloat16>::value, "bfloat16 is copied as bytes");
static_assert(std::is_trivially_default_constructible<bfloat16>::value,
              "bfloat16() costs nothing, like float()");
static_assert(std::is_standard_layout<bfloat16>::value, "bfloat16 is its bits");

// x rounded to bfloat16 and back: the float nearest to x (ties to even) whose
// low 16 bits are zero. What `apply --dtype bfloat16` writes to float32 .npy
// files.
inline float round_to_bfloat16(float x) {
  return float(bfloat16(x));
}

// Bulk conversions, defined in src/engine/bfloat16.cpp. Their results are
// those of the scalar conversions above, bit for bit, for every input, on
// every CPU: where the CPU has AVX512-BF16 (and the engine's kernels are
// avx512, see engine_isa(); NORMLAB_MAX_ISA lowers both) the rounding runs on
// vcvtneps2bf16, with the float subnormals it would flush to zero rounded
// as above instead; elsewhere on portable code. n = 0 does nothing; any
// alignment.
void to_bfloat16(const float* from, bfloat16* to, std::size_t n);
// Exact (a shift per element).
void to_float(const bfloat16* from, float* to, std::size_t n);
// to[i] = round_to_bfloat16(from[i]); from == to (in place) is allowed, other
// overlaps are not.
void round_to_bfloat16(const float* from, float* to, std::size_t n);

}  // namespace normlab
