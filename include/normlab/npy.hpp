// NumPy .npy files: the exchange format of `normlab apply` and of the
// golden vectors. float32 and float64, C or Fortran order.
#pragma once

#include <string>
#include <xtensor/xarray.hpp>

namespace normlab {

enum class DType { float32, float64 };

// The dtype stored in an .npy file; throws std::runtime_error naming the file
// when it is missing, not an .npy, or of another dtype.
DType npy_dtype(const std::string& path);

// Loads an .npy of exactly this dtype (row-major result). The header is
// checked against the file before anything is allocated: a header length or
// shape that the file's size does not match, a shape whose size overflows,
// more than 64 dimensions or a header over 64 KiB throw std::runtime_error
// naming the file. Zero-size dimensions are valid (numpy writes them) and load
// as an empty array; callers that need values check for them.
template <class T>
xt::xarray<T> load_npy(const std::string& path);

// Writes x as a little-endian C-order .npy. Every write, the flush and the
// close are checked: a failure throws std::runtime_error naming the file with
// the system's reason (strerror) and removes the partial file.
template <class T>
void save_npy(const std::string& path, const xt::xarray<T>& x);

}  // namespace normlab
