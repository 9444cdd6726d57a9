// The engine's public entry points: what a description means, and the choice
// of the compiled kernels (engine_kernels.cpp) for this CPU.
#include "normlab/engine.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "engine_isa.hpp"

namespace normlab {

void NormDescription::validate() const {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("norm description: " + what);
  };
  if (view.outer == 0 || view.channels == 0 || view.inner == 0)
    fail("empty input: view [" + std::to_string(view.outer) + ", " + std::to_string(view.channels) +
         ", " + std::to_string(view.inner) +
         "] has a zero size (every dimension must be positive)");
  if (!(eps >= 0) || !std::isfinite(eps))
    fail("eps " + std::to_string(eps) + " must be a finite number >= 0");
  if (channels_per_group == 0 || view.channels % channels_per_group != 0)
    fail(std::to_string(view.channels) + " channels do not split into groups of " +
         std::to_string(channels_per_group));
  if (pooling == Pooling::per_outer_groups) {
    if (outer_chunk != 0) fail("outer_chunk applies to per_channel pooling only");
  } else {
    if (outer_chunk != 0 && view.outer % outer_chunk != 0)
      fail("outer_chunk " + std::to_string(outer_chunk) + " does not divide outer " +
           std::to_string(view.outer));
    if (affine == Affine::elementwise) fail("an elementwise affine needs per_outer_groups pooling");
  }
  if (has_shift && affine == Affine::none) fail("a shift (beta) needs an affine");
  if (numerator == Numerator::swish && !(centered && scaled))
    fail("the swish numerator is defined with centered and scaled statistics");
  if (numerator == Numerator::tanh && has_statistics())
    fail(
        "the tanh numerator is a map without statistics (centered and scaled "
        "false)");
  if (shared_v && numerator == Numerator::input)
    fail("shared_v needs a numerator that reads v (swish or tanh)");
  if ((numerator != Numerator::input || epilogue != Epilogue::none) &&
      (affine == Affine::elementwise || (pooling == Pooling::per_channel && view.inner != 1)))
    fail(
        "a swish numerator or TLU epilogue needs a per-channel (or no) "
        "affine, and runs of "
        "one element under per_channel pooling (channels last)");
}

std::size_t NormDescription::groups() const {
  const std::size_t per_row = view.channels / channels_per_group;
  return pooling == Pooling::per_channel ? chunks() * per_row : view.outer * per_row;
}

std::size_t NormDescription::group_size() const {
  return pooling == Pooling::per_channel ? chunk_length() * channels_per_group * view.inner
                                         : channels_per_group * view.inner;
}

std::size_t NormDescription::affine_size() const {
  switch (affine) {
    case Affine::none:
      return 0;
    case Affine::per_channel:
      return view.channels;
    case Affine::elementwise:
      return view.channels * view.inner;
  }
  return 0;
}

NormDescription channels_last(const NormDescription& d) {
  if (d.affine == Affine::elementwise)
    throw std::invalid_argument(
        "norm description: an elementwise affine has "
        "no channels-last form (use a per-channel "
        "affine)");
  NormDescription c = d;
  const std::size_t positions = d.view.inner;
  c.view = {d.view.outer * positions, d.view.channels, 1};
  if (d.pooling == Pooling::per_outer_groups) {
    c.pooling = Pooling::per_channel;
    c.outer_chunk = positions;  // one sample's rows
  } else {
    c.outer_chunk = d.outer_chunk * positions;  // 0 (all rows) stays 0
  }
  return c;
}

void GroupStats::resize(std::size_t groups) {
  mean.assign(groups, 0.0);
  var.assign(groups, 0.0);
  rstd.assign(groups, 0.0);
  r.clear();
  d.clear();
}

namespace {
// The size of this CPU's level-`level` data or unified cache, as Linux
// describes it (/sys/.../cpu0/cache/index*/{level,type,size}, e.g. "1024K"),
// else as the C library does; 0 when neither knows. (glibc's value can be a
// whole host's L3 inside a virtual machine; Linux gives the one this core
// shares.)
std::size_t cache_bytes(int level) {
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    std::ifstream level_file(dir + "/level"), type_file(dir + "/type"), size_file(dir + "/size");
    int found = 0;
    std::string type, size;
    if (!(level_file >> found)) break;
    if (found != level || !(type_file >> type) || type == "Instruction") continue;
    if (!(size_file >> size) || size.empty()) break;
    const std::size_t unit = size.back() == 'K' ? 1024 : size.back() == 'M' ? 1024 * 1024 : 1;
    char* end = nullptr;
    const unsigned long long value = std::strtoull(size.c_str(), &end, 10);
    if (end == size.c_str() || value == 0 || value > (1ull << 40) / unit) break;
    return std::size_t(value) * unit;
  }
  const long bytes = sysconf(level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
  return bytes > 0 ? std::size_t(bytes) : 0;
}
}  // namespace

std::size_t last_level_cache_bytes() {
  // Without an L3 figure, the L2 (512 KiB where that is unknown too).
  static const std::size_t bytes = [] {
    const std::size_t l2 = cache_bytes(2);
    return std::max(l2 > 0 ? l2 : std::size_t(512) * 1024, cache_bytes(3));
  }();
  return bytes;
}

void finish_stats(const NormDescription& d, GroupStats& stats) {
  for (std::size_t g = 0; g < stats.var.size(); ++g) stats.rstd[g] = group_rstd(d, stats.var[g]);
}

namespace {

enum class Isa { baseline, avx2, avx512 };

bool cpu_has(Isa isa) {
#if defined(NORMLAB_HAVE_AVX512)
  if (isa == Isa::avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
#if defined(NORMLAB_HAVE_AVX2)
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == Isa::baseline;
}

// The best compiled instruction set the CPU has, at most NORMLAB_MAX_ISA.
Isa choose_isa() {
  Isa limit = Isa::avx512;
  if (const char* text = std::getenv("NORMLAB_MAX_ISA")) {
    const std::string name = text;
    if (name == "baseline")
      limit = Isa::baseline;
    else if (name == "avx2")
      limit = Isa::avx2;
    else if (name != "avx512")
      throw std::invalid_argument("NORMLAB_MAX_ISA='" + name +
                                  "' is not known: use baseline, avx2 or avx512");
  }
  for (Isa isa : {Isa::avx512, Isa::avx2})
    if (int(isa) <= int(limit) && cpu_has(isa)) return isa;
  return Isa::baseline;
}

Isa active_isa() {
  static const Isa isa = choose_isa();
  return isa;
}

}  // namespace

const char* engine_isa() {
  switch (active_isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::baseline:
      break;
  }
  return "baseline";
}

// The canonical form: every description rewritten, where an equivalent one
// runs faster, into that one. The groups, their numbering (and so the
// statistics and sums the hooks see) and every element's parameters stay
// the same; only the traversal changes.
//  1. per_channel whose chunks are one row (outer_chunk 1, or outer 1), with
//     runs longer than one element: each group is one run, contiguous, as
//     per_outer_groups. (Runs of one element stay columns, vectorized
//     across channels.)
//  2. per_channel whose chunk is one group (all its channels pooled: PixelNorm
//     described as [N*C, HW, 1] over chunks of C rows, HW = 1), no affine and
//     no pointwise function: each group is a contiguous block, one row of
//     [chunks, 1, chunk_length * channels * inner].
//  3. per_outer_groups with runs of one element (GroupNorm or LayerNorm on
//     [N, C]): the same groups as runs, with per-element parameters.
NormDescription canonical_form(const NormDescription& d) {
  d.validate();
  NormDescription c = d;
  const bool pointwise = d.numerator != Numerator::input || d.epilogue != Epilogue::none;
  if (c.pooling == Pooling::per_channel && c.chunk_length() == 1 && c.view.inner > 1) {  // 1
    c.pooling = Pooling::per_outer_groups;
    c.outer_chunk = 0;
  } else if (c.pooling == Pooling::per_channel && c.channels_per_group == c.view.channels &&
             c.affine == Affine::none && !pointwise) {  // 2
    c.view = {c.chunks(), 1, c.chunk_length() * c.view.channels * c.view.inner};
    c.pooling = Pooling::per_outer_groups;
    c.channels_per_group = 1;
    c.outer_chunk = 0;
  }
  if (c.pooling == Pooling::per_outer_groups && c.view.inner == 1 && c.channels_per_group > 1 &&
      !pointwise) {  // 3; tau and v stay per channel
    c.view = {c.view.outer, c.view.channels / c.channels_per_group, c.channels_per_group};
    c.channels_per_group = 1;
    if (c.affine == Affine::per_channel) c.affine = Affine::elementwise;
  }
  return c;
}

// Calls engine_<isa>::function(args...) for the chosen instruction set.
#if defined(NORMLAB_HAVE_AVX512)
#define NORMLAB_AVX512_CASE(call) \
  case Isa::avx512:               \
    return engine_avx512::call;
#else
#define NORMLAB_AVX512_CASE(call)
#endif
#if defined(NORMLAB_HAVE_AVX2)
#define NORMLAB_AVX2_CASE(call) \
  case Isa::avx2:               \
    return engine_avx2::call;
#else
#define NORMLAB_AVX2_CASE(call)
#endif
#define NORMLAB_FORWARD_CALL(name, parameters, arguments) \
  template <class T>                                      \
  void name parameters {                                  \
    switch (active_isa()) {                               \
      NORMLAB_AVX512_CASE(name arguments)                 \
      NORMLAB_AVX2_CASE(name arguments)                   \
      default:                                            \
        return engine_baseline::name arguments;           \
    }                                                     \
  }
NORMLAB_ENGINE_CALLS(NORMLAB_FORWARD_CALL)

#define T float
NORMLAB_ENGINE_CALLS(NORMLAB_INSTANTIATE_CALL)
#undef T
#define T double
NORMLAB_ENGINE_CALLS(NORMLAB_INSTANTIATE_CALL)
#undef T
#define T bfloat16
NORMLAB_ENGINE_CALLS(NORMLAB_INSTANTIATE_CALL)
#undef T

}  // namespace normlab
