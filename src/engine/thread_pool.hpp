// The engine's threads: a fixed pool that runs one loop at a time, split into
// contiguous ranges. The loop (parallel_for) is public, in normlab/threads.hpp;
// thread_pool.cpp implements it.
#pragma once

#include "normlab/threads.hpp"
