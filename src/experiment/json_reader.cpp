#include "json_reader.hpp"

#include <stdexcept>

#include "normlab/registry.hpp"

namespace normlab {

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
  return v.get<double>();
}

double JsonReader::number(const std::string& key, double fallback) {
  read_.insert(key);
  return has(key) ? number(key) : fallback;
}

long long JsonReader::integer(const std::string& key, long long fallback) {
  read_.insert(key);
  if (!has(key)) return fallback;
  const nlohmann::json& v = get(key);
  if (!v.is_number_integer()) fail(key, std::string("expected an integer, got ") + json_kind(v));
  return v.get<long long>();
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
                                                std::vector<long long> fallback) {
  read_.insert(key);
  if (!has(key)) return fallback;
  const nlohmann::json& v = get(key);
  if (!v.is_array()) fail(key, std::string("expected a list of integers, got ") + json_kind(v));
  std::vector<long long> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer())
      fail(key + "[" + std::to_string(i) + "]",
           std::string("expected an integer, got ") + json_kind(v[i]));
    out.push_back(v[i].get<long long>());
  }
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
