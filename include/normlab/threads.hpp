// How many threads the norm kernels use.
#pragma once

namespace normlab {

// Threads for every engine call made after this (default 1). Results do not
// depend on it: work is split into pieces fixed by the shape and their partial
// sums are merged in a fixed order. n = 0 means one per hardware thread.
void set_num_threads(unsigned n);
unsigned num_threads();

}  // namespace normlab
