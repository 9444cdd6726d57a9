// How the norms store what they compute in double into their data type T
// (float, double or bfloat16): rounded to T, as T's own arithmetic would.
#pragma once

#include "normlab/bfloat16.hpp"

namespace normlab {

// target += value as T's arithmetic does it: value rounded to T, then the sum
// rounded to T (PyTorch's grad += new_grad). For float the sum is exact in
// double before its one rounding, so this is float's own +=, bit for bit.
template <class T>
void add_rounded(T& target, double value) {
  target = nearest<T>(double(target) + double(nearest<T>(value)));
}

}  // namespace normlab
