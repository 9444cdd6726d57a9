#include "environment.hpp"

#include <fstream>
#include <string>
#include <xtensor/xtensor_config.hpp>

#include "normlab/blas.hpp"
#include "normlab/experiment.hpp"
#include "normlab/version.hpp"

extern "C" {
void openblas_set_num_threads(int);
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

void use_single_threaded_blas() {
  openblas_set_num_threads(1);
}

nlohmann::json environment_info(std::size_t workers) {
  return {{"normlab", version},
          {"compiler", std::string("g++ ") + __VERSION__},
#ifdef NORMLAB_BUILD_TYPE
          {"build_type", NORMLAB_BUILD_TYPE},
#endif
          {"threads_per_cell", 1},
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
