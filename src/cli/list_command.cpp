// normlab list: what configs can name. `normlab list norms` describes every
// registered norm: its options with defaults, parameters, state and traits.
#include <boost/program_options.hpp>
#include <iostream>

#include "commands.hpp"
#include "normlab/blas.hpp"
#include "normlab/model.hpp"
#include "normlab/registry.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {
namespace {

std::string joined(const std::vector<std::string>& words, const char* empty = "-") {
  std::string text;
  for (const auto& w : words) text += (text.empty() ? "" : ", ") + w;
  return text.empty() ? empty : text;
}

std::vector<std::string> trait_words(const NormTraits& t) {
  std::vector<std::string> words;
  if (t.batch_statistics) words.push_back("batch statistics");
  if (t.virtual_batch_size) words.push_back("virtual batches");
  if (t.running_state) words.push_back("running state");
  if (t.needs_spatial) words.push_back("needs spatial dims");
  if (t.reparameterizes_weight) words.push_back("reparameterizes a weight");
  return words;
}

nlohmann::json norms_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const NormInfo& info : registered_norms()) {
    nlohmann::json options = nlohmann::json::array();
    for (const NormOption& o : info.options)
      options.push_back({{"key", o.key},
                         {"kind", o.kind},
                         {"default", o.default_value},
                         {"help", o.help},
                         {"resolved_at_default", o.resolved_at_default}});
    const NormTraits& t = info.traits;
    out.push_back({{"type", info.type},
                   {"summary", info.summary},
                   {"options", options},
                   {"parameters", t.parameters},
                   {"state", t.state},
                   {"traits",
                    {{"batch_statistics", t.batch_statistics},
                     {"needs_spatial", t.needs_spatial},
                     {"running_state", t.running_state},
                     {"reparameterizes_weight", t.reparameterizes_weight},
                     {"virtual_batch_size", t.virtual_batch_size}}}});
  }
  return out;
}

void print_norms() {
  for (const NormInfo& info : registered_norms()) {
    std::cout << info.type << ": " << info.summary << "\n";
    for (const NormOption& o : info.options)
      std::cout << "    " << o.key << " = " << o.default_value.dump() << "  (" << o.kind << ") "
                << o.help << "\n";
    if (info.options.empty()) std::cout << "    (no options)\n";
    std::cout << "    parameters: " << joined(info.traits.parameters)
              << "; state: " << joined(info.traits.state) << "; "
              << joined(trait_words(info.traits), "per-sample statistics") << "\n";
  }
  std::cout << "(with default options; a spec is {\"type\": NAME, KEY: VALUE, ...})\n";
}

}  // namespace

int list_command(const Args& args) {
  bool json = false;
  po::options_description desc(
      "usage: normlab list [norms|blas] [--json]\n\n"
      "Lists the norms, models and datasets a config can name; `list norms` describes\n"
      "each norm's options (with defaults), parameters and state; `list blas` the BLAS\n"
      "library, the kernels it runs and how they were chosen. Options");
  desc.add_options()("help,h", "show this help")(
      "json", po::bool_switch(&json), "`list norms` or `list blas` as JSON, for programs");
  std::string what;
  po::options_description hidden;
  hidden.add_options()("what", po::value(&what));
  if (!parse_options(args, desc, &hidden, "what")) return 0;
  if (!what.empty() && what != "norms" && what != "blas")
    throw UsageError("list: unknown topic '" + what +
                     "' (use `list`, `list norms` or `list blas`)");
  if (what == "blas") {
    const BlasInfo info = blas_info();
    if (json)
      std::cout << to_json(info).dump(2) << "\n";
    else
      std::cout << "library:   " << info.library << " " << info.version << "\n"
                << "core:      " << info.core << "\n"
                << "cpu best:  " << (info.best_core.empty() ? "-" : info.best_core) << "\n"
                << "selection: " << info.selection << "\n";
    return 0;
  }
  if (what == "norms") {
    if (json)
      std::cout << norms_json().dump(2) << "\n";
    else
      print_norms();
    return 0;
  }
  if (json) throw UsageError("list: --json goes with `list norms` or `list blas`");
  std::cout
      << "norms:    none, " << joined(norm_types()) << "\n"
      << "          (as a name, or a spec object such as {\"type\": \"group\", \"groups\": 8};"
         " `normlab list norms` shows each one's options)\n"
      << "models:   " << joined(model_names()) << "\n"
      << "datasets: fashion-mnist (default path /usr/share/datasets/fashion-mnist), mnist "
         "(path required), synthetic\n";
  return 0;
}

}  // namespace normlab::cli
