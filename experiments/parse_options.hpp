// Command-line parsing shared by the subcommands (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>

#include "commands.hpp"

namespace normlab::cli {

// Parses `args` against the documented options `desc`, plus `hidden` ones
// (may be null) of which `positional` (may be null) takes up to `max_count`
// bare arguments (-1: any number). Prints the help and returns false on
// --help, before required options are checked; throws on bad arguments.
bool parse_options(const Args& args, const boost::program_options::options_description& desc,
                   const boost::program_options::options_description* hidden = nullptr,
                   const char* positional = nullptr, int max_count = 1);

}  // namespace normlab::cli
