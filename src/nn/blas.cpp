// BLAS kernel selection: what OpenBLAS chose, what the CPU runs, and the
// re-execution that corrects a fallback (see normlab/blas.hpp).
#include "normlab/blas.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
void openblas_set_num_threads(int);
}

namespace normlab {
namespace {

// Instruction-set tiers of OpenBLAS's x86 kernel families.
enum class Tier { unknown = -1, sse = 0, avx = 1, avx2 = 2, avx512 = 3 };

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return text;
}

// The tier of an OpenBLAS core name (openblas_get_corename or
// OPENBLAS_CORETYPE spelling, any case); unknown for names not listed.
Tier tier_of_core(const std::string& core) {
  const std::string name = lower(core);
  for (const char* n : {"skylakex", "cooperlake", "sapphirerapids"})
    if (name == n) return Tier::avx512;
  for (const char* n : {"haswell", "zen", "excavator"})
    if (name == n) return Tier::avx2;
  for (const char* n : {"sandybridge", "bulldozer", "piledriver", "steamroller"})
    if (name == n) return Tier::avx;
  for (const char* n :
       {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "nano", "barcelona",
        "opteron", "opteron_sse3", "katmai", "coppermine", "northwood", "banias", "athlon"})
    if (name == n) return Tier::sse;
  return Tier::unknown;
}

Tier tier_of_cpu(const CpuFeatures& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl) return Tier::avx512;
  if (cpu.avx2 && cpu.fma) return Tier::avx2;
  if (cpu.avx) return Tier::avx;
  return Tier::sse;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures cpu;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();  // the checks include the OS's support (XCR0) for the registers
  cpu.avx = __builtin_cpu_supports("avx");
  cpu.avx2 = __builtin_cpu_supports("avx2");
  cpu.fma = __builtin_cpu_supports("fma");
  cpu.avx512f = __builtin_cpu_supports("avx512f");
  cpu.avx512bw = __builtin_cpu_supports("avx512bw");
  cpu.avx512dq = __builtin_cpu_supports("avx512dq");
  cpu.avx512vl = __builtin_cpu_supports("avx512vl");
#endif
  return cpu;
}

std::string best_blas_core(const CpuFeatures& cpu) {
  switch (tier_of_cpu(cpu)) {
    case Tier::avx512:
      return "SKYLAKEX";
    case Tier::avx2:
      return "HASWELL";
    case Tier::avx:
      return "SANDYBRIDGE";
    default:
      return "";
  }
}

std::string blas_core_correction(const std::string& running_core, const CpuFeatures& cpu) {
  const Tier running = tier_of_core(running_core);
  if (running == Tier::unknown) return "";  // a name we do not know: leave it alone
  return int(tier_of_cpu(cpu)) > int(running) ? best_blas_core(cpu) : "";
}

BlasInfo blas_info() {
  BlasInfo info;
  info.library = "OpenBLAS";
  info.config = openblas_get_config();
  std::istringstream words(info.config);
  std::string first;
  words >> first >> info.version;
  info.core = openblas_get_corename();
  const CpuFeatures cpu = cpu_features();
  info.best_core = best_blas_core(cpu);
  const std::string requested = env("NORMLAB_BLAS_CORE"), user_type = env("OPENBLAS_CORETYPE");
  const std::string corrected_from = env(kBlasCorrectedFrom);
  if (!requested.empty() && requested != "auto" && requested != "keep")
    info.selection = "NORMLAB_BLAS_CORE=" + requested +
                     (corrected_from.empty() ? "" : " (OpenBLAS chose " + corrected_from + ")");
  else if (!corrected_from.empty())
    info.selection = "corrected by normlab: OpenBLAS chose " + corrected_from +
                     " on this CPU, so normlab set OPENBLAS_CORETYPE=" + user_type +
                     " (NORMLAB_BLAS_CORE=keep leaves OpenBLAS's choice)";
  else if (!user_type.empty())
    info.selection = "OPENBLAS_CORETYPE=" + user_type + " from the environment";
  else if (!blas_core_correction(info.core, cpu).empty())
    info.selection = "OpenBLAS's own choice, below this CPU's " + info.best_core +
                     " (kept: NORMLAB_BLAS_CORE=keep, or a program that does not call "
                     "select_blas_core)";
  else
    info.selection = "OpenBLAS's own choice";
  return info;
}

nlohmann::json to_json(const BlasInfo& info) {
  return {{"library", info.library},     {"version", info.version},     {"core", info.core},
          {"best_core", info.best_core}, {"selection", info.selection}, {"config", info.config}};
}

void set_blas_threads(int threads) {
  openblas_set_num_threads(threads);
}

std::string blas_core_request() {
  if (!env(kBlasCorrectedFrom).empty()) return "";  // corrected once already
  const std::string requested = env("NORMLAB_BLAS_CORE");
  if (requested == "keep") return "";
  const std::string running = openblas_get_corename();
  if (!requested.empty() && requested != "auto")
    return lower(requested) == lower(running) ? "" : requested;
  if (requested.empty() && !env("OPENBLAS_CORETYPE").empty()) return "";  // the user's choice
  return blas_core_correction(running, cpu_features());
}

}  // namespace normlab
