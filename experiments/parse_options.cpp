#include "parse_options.hpp"

#include <iostream>

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
  po::store(po::command_line_parser(args).options(all).positional(bare).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace normlab::cli
