// Process settings of the experiment runner (environment_info is in normlab/experiment.hpp).
#pragma once

#include <cstddef>

namespace normlab {

// The threads of a cell's BLAS calls and norm kernels (config threads_per_cell);
// with 1, OpenBLAS starts no threads of its own.
void use_threads_per_cell(std::size_t threads);

}  // namespace normlab
