// Small shape helpers shared by the norms and their error messages.
#pragma once

#include <cstddef>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace normlab {

// "(2, 3, 4)" -- how shapes appear in error messages.
template <class Shape>
std::string shape_text(const Shape& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// Product of shape[first, last).
inline std::size_t product(const std::vector<std::size_t>& shape, std::size_t first,
                           std::size_t last) {
  return std::accumulate(shape.begin() + first, shape.begin() + last, std::size_t{1},
                         std::multiplies<>());
}

// The weight dimension `dim` (negative counts from the end) of a weight of
// this shape, as a norm of `type` that works on weight slices names it.
inline std::size_t weight_dimension(const std::string& type, long long dim,
                                    const std::vector<std::size_t>& shape) {
  const long long rank = static_cast<long long>(shape.size());
  if (rank == 0 || dim < -rank || dim >= rank)
    throw std::invalid_argument(type + " norm: dim " + std::to_string(dim) +
                                " is out of range for a weight of shape " + shape_text(shape));
  return std::size_t(dim < 0 ? dim + rank : dim);
}

}  // namespace normlab
