// normlab: the normalization family on one shared reduction engine.
// Including this header brings in the whole public API: normlab::core's
// headers (normlab/core.hpp) and normlab::lab's (normlab/lab.hpp).
#pragma once

#include "normlab/core.hpp"
#include "normlab/lab.hpp"
