#include "parse_options.hpp"

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#include "normlab/experiment.hpp"
#include "normlab/registry.hpp"

namespace po = boost::program_options;

namespace normlab::cli {

bool parse_options(const Args& args, const po::options_description& desc,
                   const po::options_description* hidden, const char* positional, int max_count) {
  po::options_description all;
  all.add(desc);
  if (hidden) all.add(*hidden);
  po::positional_options_description bare;
  if (positional) bare.add(positional, max_count);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(bare).run(), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::too_many_positional_options_error&) {
    throw UsageError(std::string("too many arguments: ") +
                     (positional ? std::string("one ") + positional + " is expected"
                                 : std::string("this command takes options only")));
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return true;
}

namespace {

std::string format_number(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", x);
  return text;
}

}  // namespace

long long integer_option(const std::string& name, const std::string& text, long long min,
                         long long max) {
  const std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  long long value = 0;
  const char* end = text.data() + text.size();
  const auto [at, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || at != end || (ec != std::errc() && ec != std::errc::result_out_of_range))
    throw UsageError(name + " '" + text.substr(0, 40) + "': expected an integer in " + range);
  if (ec == std::errc::result_out_of_range || value < min || value > max)
    throw UsageError(name + " " + text.substr(0, 40) + ": out of range, expected " + range);
  return value;
}

double number_option(const std::string& name, const std::string& text, double min, double max) {
  const std::string range = "[" + format_number(min) + ", " + format_number(max) + "]";
  char* end = nullptr;
  errno = 0;
  const double value = text.empty() || std::isspace(static_cast<unsigned char>(text[0]))
                           ? NAN
                           : std::strtod(text.c_str(), &end);
  if (std::isnan(value) || end != text.c_str() + text.size())
    throw UsageError(name + " '" + text.substr(0, 40) + "': expected a number in " + range);
  if (errno == ERANGE || !std::isfinite(value) || value < min || value > max)
    throw UsageError(name + " " + text.substr(0, 40) + ": out of range, expected " + range);
  return value;
}

nlohmann::json norm_option(const std::string& option, const std::string& text) {
  const std::string label =
      option + " '" + (text.size() > 60 ? text.substr(0, 60) + "..." : text) + "'";
  const std::string expected =
      "expected a norm name (`normlab list norms`) or a JSON spec such as "
      "'{\"type\":\"group\",\"groups\":4}'";
  nlohmann::json spec;
  if (!text.empty() && (text.front() == '{' || text.front() == '[')) {
    try {
      spec = parse_json(text, option, 0);
    } catch (const JsonInputError& e) {
      throw UsageError(std::string(e.what()) + "; " + expected);
    }
    if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
      throw UsageError(label + ": " + expected);
  } else {
    const std::vector<std::string> types = norm_types();
    if (std::find(types.begin(), types.end(), text) == types.end()) {
      std::string known;
      for (const std::string& t : types) known += " " + t;
      throw UsageError(label + " is not a norm (known:" + known + ")");
    }
    spec = {{"type", text}};
  }
  try {
    resolve_spec(spec);  // unknown type or key, a value of the wrong kind
  } catch (const std::invalid_argument& e) {
    throw UsageError(option + ": " + e.what());
  }
  return spec;
}

std::size_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? std::size_t(pages) * std::size_t(page) : 0;
}

}  // namespace normlab::cli
