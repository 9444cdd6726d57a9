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
  if (t.train_uses_state) words.push_back("train reads its state");
  if (t.needs_spatial) words.push_back("needs spatial dims");
  if (t.reparameterizes_weight) words.push_back("reparameterizes a weight");
  if (t.includes_activation) words.push_back("includes its activation");
  if (!t.preceding_weight.empty()) words.push_back(t.preceding_weight + " on the weight in front");
  if (t.reads_preceding_layer) words.push_back("reads the layer in front");
  if (t.channels_last) words.push_back("channels last");
  if (t.torch_peer) words.push_back("PyTorch peer");
  if (t.needs_mpi) words.push_back("needs MPI");
  if (t.identity) words.push_back("identity");
  return words;
}

// Text for a Markdown table cell: a "|" (as in ||v||) would end the cell.
std::string table_cell(const std::string& text) {
  std::string cell;
  for (char c : text) cell += c == '|' ? std::string("\\|") : std::string(1, c);
  return cell;
}

// The norm list README.md and docs/norms.md embed (scripts/embed_norms.py):
// one table row per registered type, with the default options' traits.
void print_norms_markdown() {
  std::cout << "| type | what it normalizes | parameters | state | traits |\n"
            << "|---|---|---|---|---|\n";
  for (const NormInfo& info : registered_norms()) {
    const NormTraits& t = info.traits;
    std::cout << "| `" << info.type << "` | " << table_cell(info.summary) << " | "
              << joined(t.parameters) << " | " << joined(t.state) << " | "
              << joined(trait_words(t), "per-sample statistics") << " |\n";
  }
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
                     {"train_uses_state", t.train_uses_state},
                     {"reparameterizes_weight", t.reparameterizes_weight},
                     {"includes_activation", t.includes_activation},
                     {"preceding_weight", t.preceding_weight},
                     {"reads_preceding_layer", t.reads_preceding_layer},
                     {"virtual_batch_size", t.virtual_batch_size},
                     {"channels_last", t.channels_last},
                     {"torch_peer", t.torch_peer},
                     {"needs_mpi", t.needs_mpi},
                     {"identity", t.identity}}}});
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
  bool json = false, markdown = false;
  po::options_description desc(
      "usage: normlab list [norms|blas] [--json | --markdown]\n\n"
      "Lists the norms, models and datasets a config can name; `list norms` describes\n"
      "each norm's options (with defaults), parameters and state; `list blas` the BLAS\n"
      "library, the kernels it runs and how they were chosen. Options");
  desc.add_options()("help,h", "show this help")(
      "json", po::bool_switch(&json), "`list norms` or `list blas` as JSON, for programs")(
      "markdown", po::bool_switch(&markdown),
      "`list norms` as a Markdown table (what README.md and docs/norms.md embed)");
  std::string what;
  po::options_description hidden;
  hidden.add_options()("what", po::value(&what));
  if (!parse_options(args, desc, &hidden, "what")) return 0;
  if (!what.empty() && what != "norms" && what != "blas")
    throw UsageError("list: unknown topic '" + what +
                     "' (use `list`, `list norms` or `list blas`)");
  if (json && markdown) throw UsageError("list: give --json or --markdown, not both");
  if (markdown && what != "norms") throw UsageError("list: --markdown goes with `list norms`");
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
    else if (markdown)
      print_norms_markdown();
    else
      print_norms();
    return 0;
  }
  if (json) throw UsageError("list: --json goes with `list norms` or `list blas`");
  std::cout
      << "norms:    " << joined(norm_types()) << "\n"
      << "          (as a name, or a spec object such as {\"type\": \"group\", \"groups\": 8};"
         " `normlab list norms` shows each one's options)\n"
      << "models:   " << joined(model_names()) << "\n"
      << "datasets: fashion-mnist (default path /usr/share/datasets/fashion-mnist), mnist "
         "(path required), synthetic\n";
  return 0;
}

}  // namespace normlab::cli
