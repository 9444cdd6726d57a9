// Small shape helpers shared by the norms and their error messages.
#pragma once

#include <cstddef>
#include <functional>
#include <numeric>
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

}  // namespace normlab
