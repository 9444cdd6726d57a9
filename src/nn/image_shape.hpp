// The sizes of a 4-D activation whatever its layout: (N, C, H, W) channels
// first or (N, H, W, C) channels last. The image layers read their input's
// sizes and write their output's shape through it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "normlab/norm.hpp"

namespace normlab {

struct ImageShape {
  std::size_t batch, channels, height, width;
  // The shape in memory: (N, C, H, W) or (N, H, W, C).
  std::vector<std::size_t> in(Layout layout) const {
    if (layout == Layout::nhwc) return {batch, height, width, channels};
    return {batch, channels, height, width};
  }
};

// "(N, C, H, W)" or "(N, H, W, C)", for messages.
inline std::string image_shape_text(Layout layout) {
  return layout == Layout::nhwc ? "(N, H, W, C)" : "(N, C, H, W)";
}

// The sizes of a 4-D shape in `layout`; the caller checks that it has 4 dimensions.
template <class Shape>
ImageShape image_shape(const Shape& shape, Layout layout) {
  if (layout == Layout::nhwc) return {shape[0], shape[3], shape[1], shape[2]};
  return {shape[0], shape[1], shape[2], shape[3]};
}

}  // namespace normlab
