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

// Loads an .npy of exactly this dtype (row-major result).
template <class T>
xt::xarray<T> load_npy(const std::string& path);

// Writes x as a little-endian C-order .npy.
template <class T>
void save_npy(const std::string& path, const xt::xarray<T>& x);

}  // namespace normlab
