// bfloat16 (normlab/bfloat16.hpp): the type, its rounding on hand-derived
// cases, and the bulk conversions: the path in use, the portable path and,
// where this CPU has AVX512-BF16, the hardware path, each against the scalar
// rounding. The paths are called directly through src/engine/bfloat16_paths.hpp,
// since the choice between them is made once per process (ctest runs this file
// again with NORMLAB_MAX_ISA=baseline, which selects the portable path).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ios>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/bfloat16_paths.hpp"
#include "normlab/bfloat16.hpp"
#include "normlab/engine.hpp"

using namespace normlab;

namespace {

std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The scalar reference: the bits of bfloat16(float of bits u).
std::uint16_t reference(std::uint32_t u) {
  return bfloat16(float_of(u)).bits;
}

// One implementation of the bulk conversions.
struct Path {
  std::string name;
  std::function<void(const float*, bfloat16*, std::size_t)> to_bfloat16;
  std::function<void(const float*, float*, std::size_t)> round;
};

// The public functions (whichever path they chose), the portable path, and the
// hardware path where this CPU runs it.
std::vector<Path> paths() {
  std::vector<Path> p;
  p.push_back(
      {std::string("public (") + bfloat16_paths::active() + ")",
       [](const float* f, bfloat16* t, std::size_t n) { normlab::to_bfloat16(f, t, n); },
       [](const float* f, float* t, std::size_t n) { normlab::round_to_bfloat16(f, t, n); }});
  p.push_back({"portable", bfloat16_paths::to_bfloat16_portable,
               bfloat16_paths::round_to_bfloat16_portable});
  if (bfloat16_paths::hardware_available())
    p.push_back({"avx512_bf16", bfloat16_paths::to_bfloat16_hardware,
                 bfloat16_paths::round_to_bfloat16_hardware});
  return p;
}

// Every path on the float bit patterns `in` against the scalar reference: the
// number of elements where either bulk function differs (the first few named).
std::size_t mismatches(const Path& path, const std::vector<std::uint32_t>& in) {
  std::vector<float> x(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) x[i] = float_of(in[i]);
  std::vector<bfloat16> h(in.size());
  std::vector<float> r(in.size());
  path.to_bfloat16(x.data(), h.data(), x.size());
  path.round(x.data(), r.data(), x.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::uint16_t want = reference(in[i]);
    if (h[i].bits != want || bits_of(r[i]) != std::uint32_t(want) << 16) {
      if (++bad <= 5)
        MESSAGE(path.name << ": float bits 0x" << std::hex << in[i] << " gave 0x" << h[i].bits
                          << " and 0x" << bits_of(r[i]) << ", want 0x" << want);
    }
  }
  return bad;
}

template <class T, class = void>
struct has_equal : std::false_type {};
template <class T>
struct has_equal<T, std::void_t<decltype(std::declval<T>() == std::declval<T>())>>
    : std::true_type {};

}  // namespace

TEST_CASE("bfloat16: two trivially copyable bytes, zero when value-initialized") {
  static_assert(sizeof(bfloat16) == 2 && alignof(bfloat16) == 2);
  static_assert(std::is_trivially_copyable<bfloat16>::value);
  static_assert(std::is_trivially_default_constructible<bfloat16>::value);
  static_assert(std::is_standard_layout<bfloat16>::value);
  // No comparison: neither bits (NaN == NaN, +0 != -0) nor values is what
  // users expect of ==, so they say which one they mean.
  static_assert(!has_equal<bfloat16>::value);
  // Conversions are explicit both ways.
  static_assert(!std::is_convertible<float, bfloat16>::value);
  static_assert(!std::is_convertible<bfloat16, float>::value);
  static_assert(!std::is_convertible<bfloat16, double>::value);

  CHECK(bfloat16{}.bits == 0);
  const std::vector<bfloat16> zeros(3);
  for (const bfloat16& z : zeros) CHECK(z.bits == 0);
  CHECK(bfloat16::from_bits(0x3f80).bits == 0x3f80);
  CHECK(float(bfloat16::from_bits(0x3f80)) == 1.0f);
  CHECK(float(bfloat16::from_bits(0xc040)) == -3.0f);  // -(1 + 1/2) * 2^1
}

TEST_CASE("bfloat16: nearest<T> rounds a double once; double(b) is exact; numeric_limits") {
  // Just above the tie between 1 and 1 + 2^-7: nearest goes up, while through
  // float (1 + 2^-8 exactly, a tie) it would go to the even 1.
  const double above_tie = 1 + 0x1p-8 + 0x1p-40;
  CHECK(float(nearest<bfloat16>(above_tie)) == 1 + 0x1p-7f);
  CHECK(float(bfloat16(float(above_tie))) == 1.0f);
  CHECK(float(nearest<bfloat16>(-above_tie)) == -(1 + 0x1p-7f));
  CHECK(float(nearest<bfloat16>(1 + 0x1p-8)) == 1.0f);                  // a tie: to even
  CHECK(float(nearest<bfloat16>(1 + 0x1p-7 + 0x1p-8)) == 1 + 0x1p-6f);  // a tie: to even
  CHECK(nearest<bfloat16>(0.0).bits == 0x0000);
  CHECK(nearest<bfloat16>(-0.0).bits == 0x8000);
  CHECK(nearest<bfloat16>(1e300).bits == 0x7f80);  // beyond every float: infinity
  CHECK(std::isnan(float(nearest<bfloat16>(std::nan("")))));
  // float and double: the plain conversion.
  CHECK(nearest<float>(above_tie) == float(above_tie));
  CHECK(nearest<double>(above_tie) == above_tie);
  // Every bfloat16 is the same double through either conversion.
  for (std::uint32_t b = 0; b < 65536; b += 7) {
    const bfloat16 h = bfloat16::from_bits(std::uint16_t(b));
    const double d = double(h), f = double(float(h));
    CHECK((d == f || (std::isnan(d) && std::isnan(f))));
  }

  using limits = std::numeric_limits<bfloat16>;
  static_assert(limits::is_specialized && limits::digits == 8 && limits::radix == 2);
  static_assert(limits::max_exponent == std::numeric_limits<float>::max_exponent);
  static_assert(limits::min_exponent == std::numeric_limits<float>::min_exponent);
  CHECK(float(limits::epsilon()) == 0x1p-7f);  // torch.finfo(torch.bfloat16).eps
  CHECK(float(limits::min()) == std::numeric_limits<float>::min());
  CHECK(float(limits::max()) == 0x1.fep127f);
  CHECK(float(limits::lowest()) == -0x1.fep127f);
  CHECK(float(limits::denorm_min()) == 0x1p-133f);
  CHECK(float(limits::round_error()) == 0.5f);
  CHECK(float(limits::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(float(limits::quiet_NaN())));
  CHECK(std::isnan(float(limits::signaling_NaN())));
  CHECK((limits::signaling_NaN().bits & 0x0040) == 0);  // the quiet bit clear
  // max is the largest finite value: one more ulp is infinity.
  CHECK(std::isinf(float(bfloat16::from_bits(std::uint16_t(limits::max().bits + 1)))));
  CHECK(float(bfloat16(1.0f + float(limits::epsilon()))) > 1.0f);
}

TEST_CASE("bfloat16: every bfloat16 goes to float exactly and comes back unchanged") {
  std::vector<bfloat16> all(65536), back(65536);
  std::vector<float> wide(65536), rounded(65536);
  for (std::uint32_t b = 0; b < 65536; ++b) all[b] = bfloat16::from_bits(std::uint16_t(b));
  to_float(all.data(), wide.data(), all.size());
  to_bfloat16(wide.data(), back.data(), wide.size());
  round_to_bfloat16(wide.data(), rounded.data(), wide.size());
  std::size_t bad = 0;
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float f = float(all[b]);
    const bool nan = (b & 0x7f80) == 0x7f80 && (b & 0x007f) != 0;
    // NaNs come back as NaNs with the quiet bit (bit 6) set; quiet ones unchanged.
    const std::uint16_t want = nan ? std::uint16_t(b | 0x0040) : std::uint16_t(b);
    const bool ok = bits_of(f) == b << 16 && bits_of(wide[b]) == b << 16 && std::isnan(f) == nan &&
                    bfloat16(f).bits == want && back[b].bits == want &&
                    bits_of(round_to_bfloat16(f)) == std::uint32_t(want) << 16 &&
                    bits_of(rounded[b]) == std::uint32_t(want) << 16;
    if (!ok && ++bad <= 5) MESSAGE("bfloat16 bits 0x" << std::hex << b);
  }
  CHECK(bad == 0);
}

TEST_CASE("bfloat16: rounding of hand-picked floats") {
  // A float's bits are a bfloat16's (the upper half, H) and 16 dropped bits (the
  // lower half, L). L < 0x8000 keeps H, L > 0x8000 gives H + 1, L == 0x8000 is a
  // tie and goes to the even one of H and H + 1. H + 1 carries into the exponent
  // where the mantissa is full, which is the next value up (to infinity above
  // the largest finite bfloat16, to the smallest normal above the subnormals).
  struct Case {
    std::uint32_t in;
    std::uint16_t out;
    const char* why;
  };
  const Case cases[] = {
      {0x3f800000, 0x3f80, "1: exact"},
      {0x3f808000, 0x3f80, "1 + 2^-8: tie, H 0x3f80 even: down"},
      {0x3f818000, 0x3f82, "1 + 3 * 2^-8: tie, H 0x3f81 odd: up to 0x3f82"},
      {0x3f808001, 0x3f81, "just above a tie: up"},
      {0x3f807fff, 0x3f80, "just below a tie: down"},
      {0x3f817fff, 0x3f81, "just below a tie, H odd: still down"},
      {0x3f80ffff, 0x3f81, "L 0xffff: up"},
      {0x3fffffff, 0x4000, "just below 2: mantissa carries into the exponent, 2"},
      {0x40490fdb, 0x4049, "pi: L 0x0fdb, down (3.140625)"},
      {0x3dcccccd, 0x3dcd, "0.1f: L 0xcccd, up"},
      {0xbf808000, 0xbf80, "-(1 + 2^-8): tie, even, magnitude down"},
      {0xbf818000, 0xbf82, "-(1 + 3 * 2^-8): tie, odd, magnitude up"},
      {0xbf808001, 0xbf81, "negative, just above a tie: magnitude up"},
      {0x00000000, 0x0000, "+0"},
      {0x80000000, 0x8000, "-0 keeps its sign"},
      {0x7f800000, 0x7f80, "+inf: exact"},
      {0xff800000, 0xff80, "-inf: exact"},
      {0x7f7fffff, 0x7f80, "largest finite float: above the tie with 2^128, inf"},
      {0xff7fffff, 0xff80, "its negative: -inf"},
      {0x7f7f8000, 0x7f80, "tie above the largest bfloat16 0x7f7f (odd): inf"},
      {0x7f7f7fff, 0x7f7f, "just below that tie: the largest finite bfloat16"},
      {0x7f7e8000, 0x7f7e, "tie, H 0x7f7e even: stays finite"},
      {0x00000001, 0x0000, "smallest subnormal 2^-149: far below 2^-134, +0"},
      {0x80000001, 0x8000, "its negative: -0"},
      {0x00008000, 0x0000, "2^-134, half of bfloat16's smallest 2^-133: tie, even, 0"},
      {0x00008001, 0x0001, "just above it: 2^-133"},
      {0x00010000, 0x0001, "2^-133: exact"},
      {0x00018000, 0x0002, "1.5 * 2^-133: tie, H 0x0001 odd: up"},
      {0x80018000, 0x8002, "its negative"},
      {0x007f7fff, 0x007f, "subnormal below a tie: down"},
      {0x007f8000, 0x0080, "subnormal tie, H 0x007f odd: the smallest normal 2^-126"},
      {0x007fffff, 0x0080, "largest subnormal: the smallest normal 2^-126"},
      {0x00800000, 0x0080, "smallest normal: exact"},
      {0x7fc00000, 0x7fc0, "quiet NaN: unchanged"},
      {0xffc00000, 0xffc0, "negative quiet NaN: sign kept"},
      {0x7fc12345, 0x7fc1, "quiet NaN with payload: truncated, not rounded"},
      {0x7f800001, 0x7fc0, "signaling NaN, payload only in L: quieted, not turned into inf"},
      {0x7f810000, 0x7fc1, "signaling NaN, payload in H: quiet bit set, payload kept"},
      {0xff80ffff, 0xffc0, "negative NaN, L 0xffff: no rounding (it would give 0xff81)"},
      {0x7fffffff, 0x7fff, "NaN with every bit: no carry into the sign"},
      {0xffffffff, 0xffff, "negative NaN with every bit"},
  };
  const std::vector<Path> all = paths();
  for (const Case& c : cases) {
    CAPTURE(c.why);
    const float x = float_of(c.in);
    CHECK(bfloat16(x).bits == c.out);
    CHECK(bits_of(round_to_bfloat16(x)) == std::uint32_t(c.out) << 16);
    CHECK(std::isnan(float(bfloat16(x))) == std::isnan(x));
    for (const Path& path : all) {
      CAPTURE(path.name);
      bfloat16 h;
      float r;
      path.to_bfloat16(&x, &h, 1);
      path.round(&x, &r, 1);
      CHECK(h.bits == c.out);
      CHECK(bits_of(r) == std::uint32_t(c.out) << 16);
    }
  }
}

TEST_CASE("bfloat16: bulk conversions match the scalar rounding across the float bit space") {
  // Random bit patterns (NaNs, infinities, subnormals and zeros in proportion
  // to their share of the bit space, about 1 in 65536 a tie), and every
  // bfloat16 followed by the lower halves where rounding decides: exact, ties,
  // either side of a tie and of the next value, which cover each sign and
  // exponent, subnormals and NaNs.
  std::mt19937 random(20240611);  // mt19937's output is fixed by the standard
  std::vector<std::uint32_t> in(std::size_t(1) << 22);
  for (std::uint32_t& u : in) u = std::uint32_t(random());
  const std::uint32_t lower[] = {0x0000, 0x0001, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff};
  for (std::uint32_t h = 0; h < 65536; ++h)
    for (std::uint32_t l : lower) in.push_back(h << 16 | l);
  // Subnormal floats among normal ones, in every lane of a 16-lane block.
  for (std::uint32_t i = 0; i < 4096; ++i)
    in.push_back(i % 3 == 0 ? std::uint32_t(random()) & 0x807fffffu : std::uint32_t(random()));
  for (const Path& path : paths()) {
    CAPTURE(path.name);
    CHECK(mismatches(path, in) == 0);
  }
}

TEST_CASE("bfloat16: bulk conversions on short, long, misaligned and in-place arrays") {
  // Lengths around one 16-lane block and past it, from and to addresses off a
  // 64-byte boundary by 0, 1, 3 and 7 elements; guard values on both sides of
  // the output must survive (nothing written before or past n).
  std::mt19937 random(7);
  std::vector<float> source(1100);
  for (float& x : source) x = float_of(std::uint32_t(random()));
  source[3] = float_of(0x00018000);  // a subnormal tie, and a NaN
  source[20] = float_of(0x7f800001);
  const std::uint16_t guard = 0x1234;
  for (const Path& path : paths()) {
    CAPTURE(path.name);
    path.to_bfloat16(nullptr, nullptr, 0);  // n = 0 touches nothing
    path.round(nullptr, nullptr, 0);
    for (std::size_t n : {0, 1, 15, 16, 17, 1000}) {
      for (std::size_t offset : {0, 1, 3, 7}) {
        CAPTURE(n);
        CAPTURE(offset);
        const float* from = source.data() + offset;
        std::vector<bfloat16> h(n + 2 * 16, bfloat16::from_bits(guard));
        std::vector<float> r(n + 2 * 16, float_of(0xdeadbeef));
        path.to_bfloat16(from, h.data() + 16 + offset % 16, n);
        path.round(from, r.data() + 16 + offset % 16, n);
        std::vector<float> in_place(from, from + n);
        path.round(in_place.data(), in_place.data(), n);
        std::vector<float> wide(n + 2, float_of(0xdeadbeef));
        to_float(h.data() + 16 + offset % 16, wide.data() + 1, n);
        std::size_t bad = 0;
        for (std::size_t i = 0; i < h.size(); ++i) {
          const bool inside = i >= 16 + offset % 16 && i < 16 + offset % 16 + n;
          const std::uint16_t want =
              inside ? reference(bits_of(from[i - 16 - offset % 16])) : guard;
          const std::uint32_t want_float = inside ? std::uint32_t(want) << 16 : 0xdeadbeef;
          if (h[i].bits != want || bits_of(r[i]) != want_float) ++bad;
        }
        for (std::size_t i = 0; i < n; ++i) {
          const std::uint32_t want = std::uint32_t(reference(bits_of(from[i]))) << 16;
          if (bits_of(in_place[i]) != want || bits_of(wide[i + 1]) != want) ++bad;
        }
        if (bits_of(wide[0]) != 0xdeadbeef || bits_of(wide[n + 1]) != 0xdeadbeef) ++bad;
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("bfloat16: the hardware path and the portable path agree bit for bit") {
  if (!bfloat16_paths::hardware_available()) {
    MESSAGE("this CPU has no AVX512-BF16: the hardware path is not run here");
    CHECK_THROWS_AS(bfloat16_paths::to_bfloat16_hardware(nullptr, nullptr, 0), std::logic_error);
    return;
  }
  // Every float whose upper half is a subnormal, zero, NaN or infinity
  // bfloat16 (where vcvtneps2bf16 differs from plain rounding or quiets),
  // each with all 65536 lower halves (34M floats), and 2^24 random floats.
  const std::size_t block = std::size_t(1) << 16;
  std::vector<float> x(block);
  std::vector<bfloat16> hardware(block), portable(block);
  std::vector<float> hardware_round(block), portable_round(block);
  std::size_t bad = 0;
  auto compare = [&](const char* what) {
    bfloat16_paths::to_bfloat16_hardware(x.data(), hardware.data(), block);
    bfloat16_paths::to_bfloat16_portable(x.data(), portable.data(), block);
    bfloat16_paths::round_to_bfloat16_hardware(x.data(), hardware_round.data(), block);
    bfloat16_paths::round_to_bfloat16_portable(x.data(), portable_round.data(), block);
    for (std::size_t i = 0; i < block; ++i)
      if (hardware[i].bits != portable[i].bits ||
          bits_of(hardware_round[i]) != bits_of(portable_round[i])) {
        if (++bad <= 5)
          MESSAGE(what << ": float bits 0x" << std::hex << bits_of(x[i]) << ": hardware 0x"
                       << hardware[i].bits << ", portable 0x" << portable[i].bits);
      }
  };
  std::vector<std::uint32_t> upper;
  for (std::uint32_t sign : {0x0000u, 0x8000u}) {
    for (std::uint32_t m = 0; m < 0x80; ++m) upper.push_back(sign | m);           // zero, subnormal
    for (std::uint32_t m = 0; m < 0x80; ++m) upper.push_back(sign | 0x7f80 | m);  // inf, NaN
    upper.push_back(sign | 0x0080);                                               // smallest normal
    upper.push_back(sign | 0x7f7f);                                               // largest finite
  }
  for (std::uint32_t h : upper) {
    for (std::uint32_t l = 0; l < block; ++l) x[l] = float_of(h << 16 | l);
    compare("exhaustive upper half");
  }
  std::mt19937 random(99);
  for (int round = 0; round < 256; ++round) {
    for (float& v : x) v = float_of(std::uint32_t(random()));
    compare("random");
  }
  CHECK(bad == 0);
}

TEST_CASE("bfloat16: the path in use follows the CPU and NORMLAB_MAX_ISA") {
  const std::string active = bfloat16_paths::active();
  CHECK((active == "avx512_bf16" || active == "portable"));
  // The hardware path exactly where the CPU has it and the engine runs avx512.
  CHECK((active == "avx512_bf16") ==
        (bfloat16_paths::hardware_available() && std::string(engine_isa()) == "avx512"));
  if (const char* limit = std::getenv("NORMLAB_MAX_ISA")) {
    if (std::string(limit) != "avx512") CHECK(active == "portable");
  }
}
