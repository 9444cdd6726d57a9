// normlab list: what configs can name.
#include <iostream>

#include "commands.hpp"
#include "normlab/model.hpp"
#include "normlab/norm.hpp"

namespace normlab::cli {

int list_command(const Args& args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: normlab list\n\nLists the norms, models and datasets a config can name.\n";
    return 0;
  }
  if (!args.empty()) throw std::invalid_argument("list takes no arguments, got '" + args[0] + "'");
  std::cout << "norms:    none weight";
  for (const std::string& type : norm_types())
    if (type != "weight") std::cout << " " << type;
  std::cout << "\n          (as a name, or a spec object such as {\"type\": \"group\", \"groups\": 8})\n"
            << "models:  ";
  for (const std::string& model : model_names()) std::cout << " " << model;
  std::cout << "\ndatasets: fashion-mnist (default path /usr/share/datasets/fashion-mnist), mnist "
               "(path required), synthetic\n";
  return 0;
}

}  // namespace normlab::cli
