#pragma once

namespace normlab {
constexpr const char* version = "0.1.0";
}  // namespace normlab
