// Typed norm options and their JSON form. A norm's options are a plain struct
// whose default member values are the spec's defaults; an OptionSchema says,
// key by key, how JSON maps onto the struct and which values are valid. JSON
// is read once, where a spec enters, and written where a spec leaves.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "normlab/registry.hpp"

namespace normlab {

// std::invalid_argument("norm spec: KEY: expected EXPECTED, got GOT").
[[noreturn]] void fail_option(const std::string& key, const std::string& expected,
                              const std::string& got);
// A number as an error message shows it (nan and inf included).
std::string number_text(double v);

// A number and the range it must lie in (inclusive ends; always finite).
struct NumberRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  std::string text() const;  // "a number >= 0", "a number in [0, 1]"
  bool contains(double v) const { return std::isfinite(v) && v >= min && v <= max; }
};

template <class Options>
class OptionSchema {
 public:
  // A finite number in `range`.
  OptionSchema& number(const char* key, double Options::*member, NumberRange range,
                       const char* help) {
    return add(
        key, range.text(), help,
        [=](Options& o, const nlohmann::json& v) {
          if (!v.is_number()) fail_option(key, "a number", json_kind(v));
          o.*member = v.get<double>();
        },
        [=](const Options& o) { return nlohmann::json(o.*member); },
        [=](const Options& o) {
          if (!range.contains(o.*member)) fail_option(key, range.text(), number_text(o.*member));
        });
  }
  // The same for an optional member that this type requires (never null).
  OptionSchema& number(const char* key, std::optional<double> Options::*member, NumberRange range,
                       const char* help) {
    return add(
        key, range.text(), help,
        [=](Options& o, const nlohmann::json& v) {
          if (!v.is_number()) fail_option(key, "a number", json_kind(v));
          o.*member = v.get<double>();
        },
        [=](const Options& o) { return nlohmann::json(*(o.*member)); },
        [=](const Options& o) {
          if (!(o.*member)) fail_option(key, range.text(), "null");
          if (!range.contains(*(o.*member)))
            fail_option(key, range.text(), number_text(*(o.*member)));
        });
  }
  // A number in `range`, or null meaning `null_means`.
  OptionSchema& number_or_null(const char* key, std::optional<double> Options::*member,
                               NumberRange range, const char* null_means, const char* help) {
    const std::string kind = range.text() + " or null (" + null_means + ")";
    return add(
        key, kind, help,
        [=](Options& o, const nlohmann::json& v) {
          if (!v.is_number() && !v.is_null()) fail_option(key, "a number or null", json_kind(v));
          o.*member =
              v.is_null() ? std::optional<double>() : std::optional<double>(v.get<double>());
        },
        [=](const Options& o) {
          return o.*member ? nlohmann::json(*(o.*member)) : nlohmann::json(nullptr);
        },
        [=](const Options& o) {
          if (o.*member && !range.contains(*(o.*member)))
            fail_option(key, range.text() + " or null", number_text(*(o.*member)));
        });
  }
  // With `written_when_default` false, as for choice() below.
  OptionSchema& boolean(const char* key, bool Options::*member, const char* help,
                        bool written_when_default = true) {
    add(
        key, "true or false", help,
        [=](Options& o, const nlohmann::json& v) {
          if (!v.is_boolean()) fail_option(key, "true or false", json_kind(v));
          o.*member = v.get<bool>();
        },
        [=](const Options& o) { return nlohmann::json(o.*member); }, nullptr);
    fields_.back().written_when_default = written_when_default;
    return *this;
  }
  // A positive integer.
  OptionSchema& count(const char* key, std::size_t Options::*member, const char* help) {
    return add(
        key, "a positive integer", help,
        [=](Options& o, const nlohmann::json& v) {
          if (!v.is_number_integer()) fail_option(key, "a positive integer", json_kind(v));
          if (!v.is_number_unsigned() && v.get<long long>() <= 0)
            fail_option(key, "a positive integer", v.dump());
          o.*member = v.get<std::size_t>();
        },
        [=](const Options& o) { return nlohmann::json(o.*member); },
        [=](const Options& o) {
          if (o.*member == 0) fail_option(key, "a positive integer", "0");
        });
  }
  // An integer >= min.
  OptionSchema& integer(const char* key, long long Options::*member, long long min,
                        const char* help) {
    const std::string kind = min == std::numeric_limits<long long>::min()
                                 ? std::string("an integer")
                                 : "an integer >= " + std::to_string(min);
    return add(
        key, kind, help,
        [=](Options& o, const nlohmann::json& v) {
          if (!v.is_number_integer()) fail_option(key, "an integer", json_kind(v));
          if (v.is_number_unsigned() &&
              v.get<unsigned long long>() >
                  static_cast<unsigned long long>(std::numeric_limits<long long>::max()))
            fail_option(key, kind, v.dump());
          o.*member = v.get<long long>();
        },
        [=](const Options& o) { return nlohmann::json(o.*member); },
        [=](const Options& o) {
          if (o.*member < min) fail_option(key, kind, std::to_string(o.*member));
        });
  }
  // A non-empty list of positive integers, or null meaning `null_means`.
  OptionSchema& shape_or_null(const char* key,
                              std::optional<std::vector<std::size_t>> Options::*member,
                              const char* null_means, const char* help) {
    const char* kind = "a non-empty list of positive integers or null";
    return add(
        key, std::string(kind) + " (" + null_means + ")", help,
        [=](Options& o, const nlohmann::json& v) {
          if (v.is_null()) {
            o.*member = std::nullopt;
            return;
          }
          bool fits = v.is_array() && !v.empty();
          if (fits)
            for (const auto& e : v) fits = fits && e.is_number_integer() && e.get<long long>() > 0;
          if (!fits) fail_option(key, kind, json_kind(v));
          o.*member = v.get<std::vector<std::size_t>>();
        },
        [=](const Options& o) {
          return o.*member ? nlohmann::json(*(o.*member)) : nlohmann::json(nullptr);
        },
        nullptr);
  }
  // One of a few names, each standing for a value of E. With
  // `written_when_default` false, to_json leaves the key out while it has its
  // default (a key added later keeps the specs written before it unchanged).
  template <class E>
  OptionSchema& choice(const char* key, E Options::*member,
                       std::vector<std::pair<std::string, E>> names, const char* help,
                       bool written_when_default = true) {
    std::string kind;
    for (const auto& n : names) kind += (kind.empty() ? "" : " or ") + ("\"" + n.first + "\"");
    add(
        key, kind, help,
        [=](Options& o, const nlohmann::json& v) {
          if (v.is_string())
            for (const auto& n : names)
              if (n.first == v.get<std::string>()) {
                o.*member = n.second;
                return;
              }
          fail_option(key, kind, v.is_string() ? v.dump() : json_kind(v));
        },
        [=](const Options& o) {
          for (const auto& n : names)
            if (n.second == o.*member) return nlohmann::json(n.first);
          return nlohmann::json(nullptr);
        },
        nullptr);
    fields_.back().written_when_default = written_when_default;
    return *this;
  }
  // A check across keys, on the typed options.
  OptionSchema& check(std::function<void(const Options&)> rule) {
    rules_.push_back(std::move(rule));
    return *this;
  }

  // Options from a spec object (its "type" already checked): defaults for
  // missing keys, an error naming any unknown key or bad value.
  Options parse(const std::string& type, const nlohmann::json& spec) const {
    Options options;
    for (const auto& [key, value] : spec.items()) {
      if (key == "type") continue;
      const Field* field = find(key);
      if (!field)
        throw std::invalid_argument("norm spec: unknown key '" + key + "' for type " + type +
                                    " (allowed: " + keys() + ")");
      field->read(options, value);
    }
    validate(options);
    return options;
  }
  // Range and cross-key checks; also for options built in C++.
  void validate(const Options& options) const {
    for (const Field& field : fields_)
      if (field.check) field.check(options);
    for (const auto& rule : rules_) rule(options);
  }
  // Every key with its value.
  nlohmann::json to_json(const std::string& type, const Options& options) const {
    nlohmann::json spec = {{"type", type}};
    const Options defaults{};
    for (const Field& field : fields_) {
      nlohmann::json value = field.write(options);
      if (field.written_when_default || value != field.write(defaults))
        spec[field.info.key] = std::move(value);
    }
    return spec;
  }
  // Keys, kinds, defaults (from a default-constructed Options) and help.
  std::vector<NormOption> describe() const {
    std::vector<NormOption> out;
    const Options defaults{};
    for (const Field& field : fields_) {
      NormOption option = field.info;
      option.default_value = field.write(defaults);
      option.resolved_at_default = field.written_when_default;
      out.push_back(option);
    }
    return out;
  }

 private:
  struct Field {
    NormOption info;
    std::function<void(Options&, const nlohmann::json&)> read;
    std::function<nlohmann::json(const Options&)> write;
    std::function<void(const Options&)> check;  // may be empty
    bool written_when_default = true;
  };
  OptionSchema& add(const char* key, std::string kind, const char* help,
                    std::function<void(Options&, const nlohmann::json&)> read,
                    std::function<nlohmann::json(const Options&)> write,
                    std::function<void(const Options&)> check) {
    fields_.push_back({{key, std::move(kind), nullptr, help}, read, write, check});
    return *this;
  }
  const Field* find(const std::string& key) const {
    for (const Field& field : fields_)
      if (field.info.key == key) return &field;
    return nullptr;
  }
  std::string keys() const {
    std::string text;
    for (const Field& field : fields_) text += (text.empty() ? "" : ", ") + field.info.key;
    return text.empty() ? "none" : text;
  }
  std::vector<Field> fields_;
  std::vector<std::function<void(const Options&)>> rules_;
};

}  // namespace normlab
