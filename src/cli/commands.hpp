// The subcommands of the `normlab` tool. Each takes the arguments after its
// name and returns the exit code; user errors are thrown as exceptions.
#pragma once

#include <string>
#include <vector>

namespace normlab::cli {

using Args = std::vector<std::string>;

int apply_command(const Args& args);
int bench_command(const Args& args);
int demo_command(const Args& args);
int run_command(const Args& args);
int validate_command(const Args& args);
int list_command(const Args& args);
int probe_command(const Args& args);
int report_command(const Args& args);

}  // namespace normlab::cli
