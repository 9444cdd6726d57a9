// Process settings of the experiment runner (environment_info is in normlab/experiment.hpp).
#pragma once

#include <cstddef>

namespace normlab {

// The threads of a cell (config threads_per_cell): the engine's pool runs the
// norm kernels, the layers' loops and blocks of each GEMM; OpenBLAS itself
// stays on one thread.
void use_threads_per_cell(std::size_t threads);

}  // namespace normlab
