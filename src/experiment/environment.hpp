// What a result was measured on: compiler, build, CPU, library versions.
#pragma once

#include <nlohmann/json.hpp>

namespace normlab {

nlohmann::json environment_info(std::size_t threads);

// Training is single-threaded per cell: OpenBLAS must not start threads of its own.
void use_single_threaded_blas();

}  // namespace normlab
