// BLAS kernel selection (normlab/blas.hpp): the decision on made-up CPUs, and
// the CLI noticing and correcting a fallback that the test forces.
#include <doctest/doctest.h>

#include <string>

#include "normlab/blas.hpp"
#include "test_helpers.hpp"

using normlab::CpuFeatures;
using normlab::test::CliResult;
using normlab::test::run_cli;
using normlab::test::ScratchDir;

namespace {

CpuFeatures sse_cpu() {
  return {};
}
CpuFeatures avx2_cpu() {
  CpuFeatures cpu;
  cpu.avx = cpu.avx2 = cpu.fma = true;
  return cpu;
}
CpuFeatures avx512_cpu() {
  CpuFeatures cpu = avx2_cpu();
  cpu.avx512f = cpu.avx512bw = cpu.avx512dq = cpu.avx512vl = true;
  return cpu;
}

}  // namespace

TEST_CASE("blas: a core below what the CPU runs is corrected to the CPU's best family") {
  using normlab::blas_core_correction;
  // An unnamed Xeon: OpenBLAS falls back to Prescott's SSE3 kernels.
  CHECK(blas_core_correction("Prescott", avx512_cpu()) == "SKYLAKEX");
  CHECK(blas_core_correction("Prescott", avx2_cpu()) == "HASWELL");
  // An AVX-512 EPYC that OpenBLAS took for an AVX2 part.
  CHECK(blas_core_correction("Haswell", avx512_cpu()) == "SKYLAKEX");
  CHECK(blas_core_correction("Zen", avx512_cpu()) == "SKYLAKEX");
  CHECK(blas_core_correction("Sandybridge", avx2_cpu()) == "HASWELL");
  // Already the best family, or better than the features say: left alone.
  CHECK(blas_core_correction("SkylakeX", avx512_cpu()) == "");
  CHECK(blas_core_correction("Cooperlake", avx512_cpu()) == "");
  CHECK(blas_core_correction("Haswell", avx2_cpu()) == "");
  CHECK(blas_core_correction("Prescott", sse_cpu()) == "");
  // A name normlab does not know (a newer OpenBLAS): never overridden.
  CHECK(blas_core_correction("Zen5", avx512_cpu()) == "");
  // AVX-512 F alone is not enough for the SkylakeX kernels.
  CpuFeatures partial = avx2_cpu();
  partial.avx512f = true;
  CHECK(normlab::best_blas_core(partial) == "HASWELL");
}

TEST_CASE("blas: the CLI notices a forced fallback, corrects it, and says so") {
  const ScratchDir dir;
  const std::string best = normlab::best_blas_core(normlab::cpu_features());
  // The user's own OPENBLAS_CORETYPE is respected and reported...
  const CliResult kept = run_cli(dir, {"list", "blas", "--json"},
                                 "env -u NORMLAB_BLAS_CORE OPENBLAS_CORETYPE=PRESCOTT");
  REQUIRE_MESSAGE(kept.status == 0, kept.err);
  const auto kept_info = nlohmann::json::parse(kept.out);
  CHECK(kept_info["core"] == "Prescott");
  CHECK(kept_info["selection"] == "OPENBLAS_CORETYPE=PRESCOTT from the environment");
  CHECK(kept_info["best_core"] == best);

  // ...and with NORMLAB_BLAS_CORE=auto the forced fallback is corrected.
  const CliResult fixed = run_cli(dir, {"list", "blas", "--json"},
                                  "env NORMLAB_BLAS_CORE=auto OPENBLAS_CORETYPE=PRESCOTT");
  REQUIRE_MESSAGE(fixed.status == 0, fixed.err);
  const auto info = nlohmann::json::parse(fixed.out);
  if (best.empty() || best == "PRESCOTT") {
    CHECK(info["core"] == "Prescott");  // an SSE-only CPU: nothing better to run
  } else {
    CHECK(info["core"] != "Prescott");
    CHECK(info["selection"].get<std::string>().rfind(
              "corrected by normlab: OpenBLAS chose Prescott on this CPU, so normlab set "
              "OPENBLAS_CORETYPE=" +
                  best,
              0) == 0);
  }

  // A core asked for by name.
  const CliResult named =
      run_cli(dir, {"list", "blas", "--json"}, "env NORMLAB_BLAS_CORE=PRESCOTT");
  REQUIRE_MESSAGE(named.status == 0, named.err);
  CHECK(nlohmann::json::parse(named.out)["core"] == "Prescott");
}
