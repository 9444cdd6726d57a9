// Validation of norm specs: known keys, value types, defaults.
#pragma once

#include <nlohmann/json.hpp>

namespace normlab {

// The spec with every key of its type present: defaults filled in, unknown
// keys and wrongly typed values rejected with std::invalid_argument naming the key.
nlohmann::json resolve_spec(const nlohmann::json& spec);

// "a string", "a number", ... for error messages.
const char* json_kind(const nlohmann::json& value);

}  // namespace normlab
