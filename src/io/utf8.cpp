#include "utf8.hpp"

#include <cstdio>
#include <stdexcept>

namespace normlab {

std::size_t utf8_sequence_length(const std::string& text, std::size_t at) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned int low = 0x80, high = 0xbf;  // the allowed range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // beyond U+10FFFF
  } else {
    return 0;  // a continuation byte, 0xc0, 0xc1 or 0xf5..0xff
  }
  if (text.size() - at < length) return 0;
  if (byte(at + 1) < low || byte(at + 1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i)
    if (byte(at + i) < 0x80 || byte(at + i) > 0xbf) return 0;
  return length;
}

std::size_t first_invalid_utf8(const std::string& text) {
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t length = utf8_sequence_length(text, at);
    if (length == 0) return at;
    at += length;
  }
  return text.size();
}

std::string utf8_shown(const std::string& text) {
  std::string shown;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t length = utf8_sequence_length(text, at);
    shown += length == 0 ? std::string("?") : text.substr(at, length);
    at += length == 0 ? 1 : length;
  }
  return shown;
}

void require_utf8(const std::string& text, const std::string& what) {
  const std::size_t at = first_invalid_utf8(text);
  if (at == text.size()) return;
  char where[64];
  std::snprintf(where, sizeof where, "byte 0x%02x at offset %zu",
                static_cast<unsigned>(static_cast<unsigned char>(text[at])), at);
  throw std::invalid_argument(what + ": not valid UTF-8 (" + where +
                              "; use UTF-8 text, or rename the file)");
}

}  // namespace normlab
