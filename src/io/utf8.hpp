// UTF-8 checks for text that reaches JSON, generated scripts and messages.
#pragma once

#include <cstddef>
#include <string>

namespace normlab {

// The length (1 to 4) of the well-formed UTF-8 sequence starting at byte `at`
// of `text`, or 0 when the bytes there are not UTF-8 (a stray continuation
// byte, an overlong form, a surrogate, a value beyond U+10FFFF, a cut sequence).
std::size_t utf8_sequence_length(const std::string& text, std::size_t at);

// The offset of the first byte of `text` that is not UTF-8, or text.size().
std::size_t first_invalid_utf8(const std::string& text);

// `text` with every byte that is not UTF-8 replaced by '?': safe to show and
// to put in JSON.
std::string utf8_shown(const std::string& text);

// Throws std::invalid_argument "WHAT: not valid UTF-8 (byte 0xff at offset N)"
// when `text` is not UTF-8 (JSON strings must be).
void require_utf8(const std::string& text, const std::string& what);

}  // namespace normlab
