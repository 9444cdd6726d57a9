// Reads a JSON object field by field with defaults; every error names the
// JSON path ("optimizer.lr: expected a number, got a string"), and finish()
// rejects keys nobody asked for.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace normlab {

class JsonReader {
 public:
  // `value` must be an object; `path` is its location ("" for the root).
  JsonReader(const nlohmann::json& value, std::string path);

  bool has(const std::string& key) const;
  // A finite number (JSON text such as 1e400 reads as infinity and is refused).
  double number(const std::string& key, double fallback);
  double number(const std::string& key);  // required
  // An integer in [min, max], or `fallback` when absent. A fraction, 1e300,
  // 2^64 or a value outside the range fails naming the key and the range.
  long long integer(const std::string& key, long long fallback, long long min, long long max);
  // An integer in [0, 2^64 - 1] (seeds): negative values fail, not wrap.
  std::uint64_t unsigned_integer(const std::string& key, std::uint64_t fallback);
  bool boolean(const std::string& key, bool fallback);
  std::string string(const std::string& key, const std::string& fallback);
  std::string string(const std::string& key);  // required
  // The raw value, for callers that check it themselves (marked as read).
  const nlohmann::json& raw(const std::string& key);
  // A nested object (an empty one when absent).
  JsonReader object(const std::string& key);
  // A list of integers each in [min, max], or `fallback` when absent.
  std::vector<long long> integer_list(const std::string& key, std::vector<long long> fallback,
                                      long long min, long long max);

  // The path of a key, for messages: "optimizer.lr".
  std::string path_of(const std::string& key) const;
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;
  // Throws for the first key that was present but never read.
  void finish() const;

 private:
  const nlohmann::json& get(const std::string& key);
  // `v` (at `key`, for messages) as an integer in [min, max].
  long long checked_integer(const std::string& key, const nlohmann::json& v, long long min,
                            long long max) const;
  nlohmann::json value_;
  std::string path_;
  std::set<std::string> read_;  // every key asked for, present or not
};

}  // namespace normlab
