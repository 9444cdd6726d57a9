// Counts calls to the global operator new in this program, so that `normlab
// bench` can show whether a repeated forward/backward allocates.
#pragma once

#include <cstddef>

namespace normlab::cli {

// Number of operator new calls so far (all threads). Allocations that bypass
// operator new (malloc, xsimd's aligned allocator) are not seen.
std::size_t allocation_count();

}  // namespace normlab::cli
