#include "normlab/process.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "normlab/blas.hpp"
#include "normlab/layers.hpp"

namespace normlab {
namespace {

constexpr const char* kRestarted = "NORMLAB_PROCESS_PREPARED";  // once is enough

void set(const char* name, const std::string& value) {
  if (setenv(name, value.c_str(), 1) != 0)
    throw std::runtime_error(std::string("cannot set ") + name + ": " + std::strerror(errno));
}

}  // namespace

void prepare_process(char** argv) {
  if (std::getenv(kRestarted)) return;
  bool restart = false;
  if (const std::string core = blas_core_request(); !core.empty()) {
    set(kBlasCorrectedFrom, blas_info().core);
    set("OPENBLAS_CORETYPE", core);
    restart = true;
  }
  if (onednn_available() && !std::getenv("OMP_WAIT_POLICY")) {
    set("OMP_WAIT_POLICY", "passive");
    restart = true;
  }
  if (!restart) return;
  set(kRestarted, "1");
  ::execv("/proc/self/exe", argv);
  throw std::runtime_error(std::string("cannot restart with the prepared environment (") +
                           std::strerror(errno) +
                           "); set NORMLAB_BLAS_CORE=keep and OMP_WAIT_POLICY to run without");
}

}  // namespace normlab
