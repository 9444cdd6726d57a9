// normlab run / normlab validate: config-driven experiments.
#include <boost/program_options.hpp>
#include <iostream>

#include "commands.hpp"
#include "normlab/experiment.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {
namespace {

struct ConfigOptions {
  std::string config;
  std::vector<std::string> sets;
  std::string out;
  bool fresh = false;
};

// Parses "CONFIG [--set k=v ...]" plus the run-only options when `run`.
// Returns false when help was printed.
bool parse(const Args& args, bool run, ConfigOptions& o) {
  po::options_description desc(
      run ? "usage: normlab run CONFIG [--out DIR] [--set key.path=value ...] [--fresh]\n\n"
            "Trains every cell (norm x batch size x seed) of CONFIG, appending to "
            "DIR/results.jsonl;\n"
            "running again on the same DIR resumes and skips finished cells. Options"
          : "usage: normlab validate CONFIG [--set key.path=value ...]\n\n"
            "Checks CONFIG and prints it resolved (defaults filled in). Options");
  desc.add_options()("help,h", "show this help")(
      "set", po::value(&o.sets)->composing(),
      "override a config value, e.g. --set optimizer.lr=0.05 --set epochs=1");
  if (run)
    desc.add_options()("out", po::value(&o.out),
                       "output folder (default: the config's \"output\")")(
        "fresh", po::bool_switch(&o.fresh), "discard earlier results in the output folder");
  po::options_description hidden;
  hidden.add_options()("config", po::value(&o.config));
  if (!parse_options(args, desc, &hidden, "config")) return false;
  if (o.config.empty()) throw std::invalid_argument("missing CONFIG (a JSON file; see configs/)");
  return true;
}

}  // namespace

int run_command(const Args& args) {
  ConfigOptions o;
  if (!parse(args, true, o)) return 0;
  const ExperimentConfig config = load_config(o.config, o.sets);
  run_experiment(config, {o.out, o.fresh});
  return 0;
}

int validate_command(const Args& args) {
  ConfigOptions o;
  if (!parse(args, false, o)) return 0;
  const ExperimentConfig config = load_config(o.config, o.sets);
  std::cout << config.resolved.dump(2) << "\n";
  const std::vector<Cell> cells = grid_cells(config);
  std::size_t skipped = 0;
  for (const Cell& cell : cells) {
    if (cell.skipped.empty()) continue;
    std::cout << "skips " << cell.id() << ": " << cell.skipped << "\n";
    ++skipped;
  }
  std::cout << o.config << ": valid, " << cells.size() << " cells";
  if (skipped) std::cout << " (" << skipped << " skipped)";
  std::cout << "\n";
  return 0;
}

}  // namespace normlab::cli
