#include "environment.hpp"

#include <fstream>
#include <string>
#include <xtensor/xtensor_config.hpp>

#include "normlab/blas.hpp"
#include "normlab/experiment.hpp"
#include "normlab/threads.hpp"
#include "normlab/version.hpp"

extern "C" {
char* openblas_get_config(void);
}

namespace normlab {
namespace {

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

}  // namespace

void use_threads_per_cell(std::size_t threads) {
  set_blas_threads(1);  // GEMMs are split between the engine's threads (src/nn/gemm.hpp)
  set_num_threads(unsigned(threads));
}

nlohmann::json environment_info(std::size_t workers, std::size_t threads_per_cell) {
  return {{"normlab", version},
          {"compiler", std::string("g++ ") + __VERSION__},
#ifdef NORMLAB_BUILD_TYPE
          {"build_type", NORMLAB_BUILD_TYPE},
#endif
          {"threads_per_cell", threads_per_cell},
          {"workers", workers},
          {"cpu", cpu_model()},
          {"xtensor", std::to_string(XTENSOR_VERSION_MAJOR) + "." +
                          std::to_string(XTENSOR_VERSION_MINOR) + "." +
                          std::to_string(XTENSOR_VERSION_PATCH)},
          {"openblas", openblas_get_config()},
          {"blas", to_json(blas_info())},
          {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                                std::to_string(NLOHMANN_JSON_VERSION_MINOR)}};
}

}  // namespace normlab
