// Which BLAS kernels run, and making OpenBLAS use the ones this CPU deserves.
//
// OpenBLAS (built with DYNAMIC_ARCH, as Debian's is) picks its kernels once,
// when the library loads, from the CPU's vendor and model numbers. On CPUs it
// does not know (a masked model on a VM, a newer family) it falls back: to
// Prescott's SSE3 kernels on an unnamed Intel Xeon, to Haswell's AVX2 on an
// AVX-512 AMD EPYC. Those run at a fraction of the speed, and change results
// in the last bits. Only the environment variable OPENBLAS_CORETYPE, read at
// load time, overrides the choice; so a program that wants other kernels must
// set it and start again (normlab::prepare_process in process.hpp does both).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace normlab {

// What the CPU can run, from CPUID (the model name plays no part).
struct CpuFeatures {
  bool avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
};
CpuFeatures cpu_features();

// OPENBLAS_CORETYPE for the best OpenBLAS kernel family these features run
// ("SKYLAKEX" for AVX-512 F/BW/DQ/VL, "HASWELL" for AVX2 + FMA, "SANDYBRIDGE"
// for AVX, "" below that).
std::string best_blas_core(const CpuFeatures& cpu);

// The OPENBLAS_CORETYPE that corrects OpenBLAS's choice `running_core` (its
// openblas_get_corename(), e.g. "Prescott") on a CPU with these features, or
// "" when the running core already uses the best instruction set the CPU has.
std::string blas_core_correction(const std::string& running_core, const CpuFeatures& cpu);

// The BLAS library in this process and how its kernels were chosen.
struct BlasInfo {
  std::string library;    // "OpenBLAS"
  std::string version;    // "0.3.21"
  std::string core;       // the kernels running: openblas_get_corename(), e.g. "SkylakeX"
  std::string best_core;  // best_blas_core(cpu_features()), e.g. "SKYLAKEX"
  std::string selection;  // how `core` was chosen (see blas_core_request)
  std::string config;     // openblas_get_config()
};
BlasInfo blas_info();
nlohmann::json to_json(const BlasInfo& info);

// Threads OpenBLAS may use in each call (normlab's training uses 1 per cell).
void set_blas_threads(int threads);

// The OPENBLAS_CORETYPE this process should run with, or "" to leave
// OpenBLAS as it is. The environment variable NORMLAB_BLAS_CORE decides:
//  - unset or "auto": if OpenBLAS chose kernels below what the CPU runs (and
//    OPENBLAS_CORETYPE was not set by the user), the correction;
//  - "keep": "" (blas_info still reports OpenBLAS's choice);
//  - a core name (e.g. "HASWELL"): that name, unless it already runs.
// A user's own OPENBLAS_CORETYPE is respected unless NORMLAB_BLAS_CORE=auto
// is set explicitly. prepare_process (process.hpp) applies it.
std::string blas_core_request();

// Set in the environment of a process that prepare_process restarted with a
// corrected OPENBLAS_CORETYPE: the core OpenBLAS had chosen (blas_info says so).
constexpr const char* kBlasCorrectedFrom = "NORMLAB_BLAS_CORRECTED_FROM";

}  // namespace normlab
