// Process settings of the experiment runner (environment_info is in normlab/experiment.hpp).
#pragma once

namespace normlab {

// Training is single-threaded per cell: OpenBLAS must not start threads of its own.
void use_single_threaded_blas();

}  // namespace normlab
