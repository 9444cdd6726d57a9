// bfloat16: the upper 16 bits of an IEEE float32 (sign, the same 8 exponent
// bits, 7 mantissa bits). A storage type: values are converted to float for
// arithmetic, and back with one rounding.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
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
// The bfloat16 bits nearest to the double v, ties to even, rounded once.
// Rounding float(v) to bfloat16 would round twice: a v just off a bfloat16 tie
// can round to a float exactly on it, which then goes to the even side
// whichever side v was on. Instead v goes to float rounded to odd: truncated
// (float(v), one ulp towards zero where that rounded away from zero), with the
// lowest bit set where inexact. A float has 16 bits below a bfloat16's last,
// so that float is on a bfloat16 tie only if v is, and on the same side of it
// as v otherwise; its rounding to bfloat16 is then v's own. (Also for
// subnormals, whose bits line up the same way, and overflow: beyond the
// largest float the truncation is that float with its last bit set, which
// rounds to infinity.) NaN stays NaN. Integer arithmetic and selects, no
// branch, so loops of it vectorize (the engine's kernels inline it).
[[gnu::always_inline]] inline std::uint16_t from_double(double v) {
  const float f = float(v);
  std::uint32_t u = float_bits(f);
  u -= std::uint32_t(std::fabs(double(f)) > std::fabs(v));  // truncated
  u |= std::uint32_t(double(f) != v);                       // sticky: inexact
  return from_float_bits(u);
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
  // Exact as well, so that double(b) reads a value as double(f) does.
  explicit operator double() const { return double(float(*this)); }
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

// The value of storage type T (float, double or bfloat16) nearest to the
// double v, rounded once: T(v) for float and double; for bfloat16 not through
// float (bfloat16_rounding::from_double). How the norms store what they
// compute in double (running statistics, parameter gradients).
template <class T>
T nearest(double v) {
  if constexpr (std::is_same_v<T, bfloat16>)
    return bfloat16::from_bits(bfloat16_rounding::from_double(v));
  else
    return T(v);
}

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

// bfloat16's limits, as torch.finfo(torch.bfloat16) gives them: 8 significant
// bits (7 stored), float's exponent range. epsilon() is 2^-7, the machine
// epsilon RMSNorm takes for eps null on bfloat16 data.
namespace std {
template <>
struct numeric_limits<normlab::bfloat16> {
  using B = normlab::bfloat16;
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = true;
  static constexpr std::float_denorm_style has_denorm = std::denorm_present;
  static constexpr bool has_denorm_loss = false;
  static constexpr std::float_round_style round_style = std::round_to_nearest;
  static constexpr bool is_iec559 = false;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = 8;
  static constexpr int digits10 = 2;
  static constexpr int max_digits10 = 4;
  static constexpr int radix = 2;
  static constexpr int min_exponent = -125;
  static constexpr int min_exponent10 = -37;
  static constexpr int max_exponent = 128;
  static constexpr int max_exponent10 = 38;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  static B min() noexcept { return B::from_bits(0x0080); }  // 2^-126
  static B lowest() noexcept { return B::from_bits(0xff7f); }
  static B max() noexcept { return B::from_bits(0x7f7f); }          // (2 - 2^-7) 2^127
  static B epsilon() noexcept { return B::from_bits(0x3c00); }      // 2^-7
  static B round_error() noexcept { return B::from_bits(0x3f00); }  // 0.5
  static B infinity() noexcept { return B::from_bits(0x7f80); }
  static B quiet_NaN() noexcept { return B::from_bits(0x7fc0); }
  static B signaling_NaN() noexcept { return B::from_bits(0x7fa0); }
  static B denorm_min() noexcept { return B::from_bits(0x0001); }  // 2^-133
};
}  // namespace std
