// Command-line parsing shared by the subcommands (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "commands.hpp"

namespace normlab::cli {

// A mistake in the command line itself (unknown or missing option or argument,
// a bad option value): `normlab` exits 2 for it, as for an unknown command,
// and 1 for a command that fails (a bad config or file).
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Parses `args` against the documented options `desc`, plus `hidden` ones
// (may be null) of which `positional` (may be null) takes up to `max_count`
// bare arguments (-1: any number). Prints the help and returns false on
// --help, before required options are checked; throws UsageError on bad
// arguments.
bool parse_options(const Args& args, const boost::program_options::options_description& desc,
                   const boost::program_options::options_description* hidden = nullptr,
                   const char* positional = nullptr, int max_count = 1);

// A numeric option's value from its text (options are read as text, so that
// "-1" cannot wrap around an unsigned type): a decimal integer, or a finite
// number, in [min, max]. Anything else throws std::invalid_argument naming the
// option ("--threads") and the range.
long long integer_option(const std::string& name, const std::string& text, long long min,
                         long long max);
double number_option(const std::string& name, const std::string& text, double min, double max);

// A norm as a command line names it, the same for every command (bench --norm,
// apply --norm): a registered name ("group") or a JSON spec
// ('{"type":"group","groups":4}'). Returns the spec object, its keys checked
// (resolve_spec); anything else is a UsageError naming `option`.
nlohmann::json norm_option(const std::string& option, const std::string& text);

// This machine's physical memory in bytes (0 when unknown).
std::size_t physical_memory_bytes();

}  // namespace normlab::cli
