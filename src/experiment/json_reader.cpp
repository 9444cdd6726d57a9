#include "json_reader.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "normlab/experiment.hpp"
#include "normlab/registry.hpp"

namespace normlab {

namespace {

struct TooDeep {};  // thrown by the parser callback past kMaxJsonDepth

// "line 3, column 7" of byte `offset` of `text`, counting lines from `first_line`
// ("column 7" alone for a one-line text that is not from a file).
std::string position(const std::string& text, std::size_t offset, std::size_t first_line) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  if (first_line == 0 && line == 1) return "column " + std::to_string(column);
  return "line " + std::to_string(line + (first_line == 0 ? 0 : first_line - 1)) + ", column " +
         std::to_string(column);
}

// The offset of the first '[' or '{' (outside strings) that opens a level
// deeper than `limit`; text.size() if none does.
std::size_t too_deep_at(const std::string& text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return text.size();
}

// What nlohmann's parse error says after its "[json.exception...] parse error
// at line L, column C: " prefix, at most 200 characters.
std::string parse_problem_text(std::string what) {
  const std::size_t column = what.find("column ");
  const std::size_t colon = what.find(": ", column == std::string::npos ? 0 : column);
  if (colon != std::string::npos)
    what = what.substr(colon + 2);
  else if (const std::size_t bracket = what.find("] "); bracket != std::string::npos)
    what = what.substr(bracket + 2);
  return what.size() > 200 ? what.substr(0, 200) + "..." : what;
}

std::string parse_problem(const nlohmann::json::parse_error& e) {
  return parse_problem_text(e.what());
}

}  // namespace

nlohmann::json parse_json(const std::string& text, const std::string& source,
                          std::size_t first_line) {
  const nlohmann::json::parser_callback_t limit = [](int depth, nlohmann::json::parse_event_t event,
                                                     nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start ||
         event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth)
      throw TooDeep{};
    return true;
  };
  try {
    return nlohmann::json::parse(text, limit);
  } catch (const TooDeep&) {
    throw JsonInputError(
        JsonInputError::Kind::too_deep,
        source + ": nested deeper than " + std::to_string(kMaxJsonDepth) + " levels at " +
            position(text, too_deep_at(text, kMaxJsonDepth), first_line) +
            " (lists and objects inside each other; no normlab input needs that many)");
  } catch (const nlohmann::json::out_of_range& e) {  // 1e400: beyond a double
    throw JsonInputError(
        JsonInputError::Kind::out_of_range,
        source + ": a number beyond the range of a double (" + parse_problem_text(e.what()) + ")");
  } catch (const nlohmann::json::parse_error& e) {
    const std::size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    throw JsonInputError(JsonInputError::Kind::syntax, source + ": not valid JSON at " +
                                                           position(text, offset, first_line) +
                                                           " (" + parse_problem(e) + ")");
  }
}

JsonReader::JsonReader(const nlohmann::json& value, std::string path)
    : value_(value), path_(std::move(path)) {
  if (!value_.is_object())
    throw std::invalid_argument((path_.empty() ? std::string("config") : path_) +
                                ": expected an object, got " + json_kind(value_));
}

std::string JsonReader::path_of(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

void JsonReader::fail(const std::string& key, const std::string& problem) const {
  throw std::invalid_argument(path_of(key) + ": " + problem);
}

bool JsonReader::has(const std::string& key) const {
  return value_.contains(key);
}

const nlohmann::json& JsonReader::get(const std::string& key) {
  read_.insert(key);
  return value_.at(key);
}

const nlohmann::json& JsonReader::raw(const std::string& key) {
  read_.insert(key);
  if (!has(key)) fail(key, "missing");
  return get(key);
}

double JsonReader::number(const std::string& key) {
  const nlohmann::json& v = raw(key);
  if (!v.is_number()) fail(key, std::string("expected a number, got ") + json_kind(v));
  const double x = v.get<double>();
  if (!std::isfinite(x)) fail(key, "expected a number, got one too large for a double");
  return x;
}

double JsonReader::number(const std::string& key, double fallback) {
  read_.insert(key);
  return has(key) ? number(key) : fallback;
}

namespace {

// "at least 1", "at most 9", "in [2, 256]".
std::string range_text(long long min, long long max) {
  if (min == std::numeric_limits<long long>::min() && max == std::numeric_limits<long long>::max())
    return "that fits in 64 bits";
  if (max == std::numeric_limits<long long>::max()) return "at least " + std::to_string(min);
  if (min == std::numeric_limits<long long>::min()) return "at most " + std::to_string(max);
  return "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

}  // namespace

long long JsonReader::checked_integer(const std::string& key, const nlohmann::json& v,
                                      long long min, long long max) const {
  const std::string range = range_text(min, max);
  // 2^64 and beyond, and 1e300, are floating-point in nlohmann::json.
  if (v.is_number_float())
    fail(key, "expected an integer, got a number (" +
                  (std::isfinite(v.get<double>()) ? v.dump() : std::string("beyond a double")) +
                  "; an integer " + range + " is needed)");
  if (!v.is_number_integer()) fail(key, std::string("expected an integer, got ") + json_kind(v));
  const bool huge = v.is_number_unsigned() &&
                    v.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<long long>::max());
  const long long x = huge ? 0 : v.get<long long>();
  if (huge || x > max)
    fail(key, (max == std::numeric_limits<long long>::max()
                   ? "expected an integer " + range
                   : "expected at most " + std::to_string(max)) +
                  ", got " + v.dump());
  if (x < min) fail(key, "expected at least " + std::to_string(min) + ", got " + v.dump());
  return x;
}

long long JsonReader::integer(const std::string& key, long long fallback, long long min,
                              long long max) {
  read_.insert(key);
  if (!has(key)) return fallback;
  return checked_integer(key, get(key), min, max);
}

std::uint64_t JsonReader::unsigned_integer(const std::string& key, std::uint64_t fallback) {
  read_.insert(key);
  if (!has(key)) return fallback;
  const nlohmann::json& v = get(key);
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  // Not a non-negative integer: say why in the terms of integer().
  checked_integer(key, v, 0, std::numeric_limits<long long>::max());
  return v.get<std::uint64_t>();  // not reached
}

bool JsonReader::boolean(const std::string& key, bool fallback) {
  read_.insert(key);
  if (!has(key)) return fallback;
  const nlohmann::json& v = get(key);
  if (!v.is_boolean()) fail(key, std::string("expected true or false, got ") + json_kind(v));
  return v.get<bool>();
}

std::string JsonReader::string(const std::string& key) {
  const nlohmann::json& v = raw(key);
  if (!v.is_string()) fail(key, std::string("expected a string, got ") + json_kind(v));
  return v.get<std::string>();
}

std::string JsonReader::string(const std::string& key, const std::string& fallback) {
  read_.insert(key);
  return has(key) ? string(key) : fallback;
}

JsonReader JsonReader::object(const std::string& key) {
  read_.insert(key);
  if (!has(key)) return JsonReader(nlohmann::json::object(), path_of(key));
  return JsonReader(get(key), path_of(key));
}

std::vector<long long> JsonReader::integer_list(const std::string& key,
                                                std::vector<long long> fallback, long long min,
                                                long long max) {
  read_.insert(key);
  if (!has(key)) return fallback;
  const nlohmann::json& v = get(key);
  if (!v.is_array()) fail(key, std::string("expected a list of integers, got ") + json_kind(v));
  std::vector<long long> out;
  for (std::size_t i = 0; i < v.size(); ++i)
    out.push_back(checked_integer(key + "[" + std::to_string(i) + "]", v[i], min, max));
  return out;
}

void JsonReader::finish() const {
  for (const auto& item : value_.items())
    if (!read_.count(item.key())) {
      std::string known;
      for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
      throw std::invalid_argument(path_of(item.key()) + ": unknown key (known here: " + known +
                                  ")");
    }
}

}  // namespace normlab
