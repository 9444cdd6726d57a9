// Reads a JSON object field by field with defaults; every error names the
// JSON path ("optimizer.lr: expected a number, got a string"), and finish()
// rejects keys nobody asked for.
#pragma once

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
  double number(const std::string& key, double fallback);
  double number(const std::string& key);  // required
  long long integer(const std::string& key, long long fallback);
  bool boolean(const std::string& key, bool fallback);
  std::string string(const std::string& key, const std::string& fallback);
  std::string string(const std::string& key);  // required
  // The raw value, for callers that check it themselves (marked as read).
  const nlohmann::json& raw(const std::string& key);
  // A nested object (an empty one when absent).
  JsonReader object(const std::string& key);
  std::vector<long long> integer_list(const std::string& key, std::vector<long long> fallback);

  // The path of a key, for messages: "optimizer.lr".
  std::string path_of(const std::string& key) const;
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;
  // Throws for the first key that was present but never read.
  void finish() const;

 private:
  const nlohmann::json& get(const std::string& key);
  nlohmann::json value_;
  std::string path_;
  std::set<std::string> read_;  // every key asked for, present or not
};

}  // namespace normlab
