// normlab run / normlab validate: config-driven experiments.
#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <cctype>
#include <csignal>
#include <cstring>
#include <iostream>

#include "commands.hpp"
#include "normlab/experiment.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {
namespace {

struct ConfigOptions {
  std::vector<std::string> configs;
  std::vector<std::string> sets;
  std::string out;
  bool fresh = false;
};

// Parses "CONFIG [--set k=v ...]" plus the run-only options when `run`
// (validate takes several CONFIGs). Returns false when help was printed.
bool parse(const Args& args, bool run, ConfigOptions& o) {
  po::options_description desc(
      run ? "usage: normlab run CONFIG [--out DIR] [--set KEY.PATH=VALUE ...] [--fresh]\n\n"
            "Trains every cell (norm x batch size x seed) of CONFIG, appending to "
            "DIR/results.jsonl;\n"
            "running again on the same DIR resumes and skips finished cells (Ctrl-C keeps the\n"
            "finished ones and exits 130). Options"
          : "usage: normlab validate CONFIG [CONFIG ...] [--set KEY.PATH=VALUE ...]\n\n"
            "Checks each CONFIG and prints it resolved (defaults filled in) as JSON on stdout:\n"
            "with one CONFIG its resolved object, with several an object keyed by each CONFIG\n"
            "path as given. The cells it would run (and skip) go to stderr. Options");
  desc.add_options()("help,h", "show this help")(
      "set", po::value(&o.sets)->composing()->value_name("KEY=VALUE"),
      "override a config value, e.g. --set optimizer.lr=0.05 --set epochs=1 "
      "--set 'norms=[batch, group]'");
  if (run)
    desc.add_options()("out", po::value(&o.out)->value_name("DIR"),
                       "output folder (default: the config's \"output\")")(
        "fresh", po::bool_switch(&o.fresh), "discard earlier results in the output folder");
  po::options_description hidden;
  hidden.add_options()("config", po::value(&o.configs));
  if (!parse_options(args, desc, &hidden, "config", run ? 1 : -1)) return false;
  if (o.configs.empty()) throw UsageError("missing CONFIG (a JSON file; see configs/)");
  return true;
}

// Ctrl-C during a run: the handler only raises the flag; run_experiment stops
// its cells at their next progress update and keeps the finished ones.
std::atomic<bool> interrupted{false};

extern "C" void on_interrupt(int) {
  interrupted = true;
}

// A shell word for the resume hint: quoted unless plain.
std::string shell_word(const std::string& word) {
  const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_-./=,:+@", c);
  });
  if (plain) return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

int run_command(const Args& args) {
  ConfigOptions o;
  if (!parse(args, true, o)) return 0;
  const ExperimentConfig config = load_config(o.configs[0], o.sets);
  // The first Ctrl-C stops cleanly; SA_RESETHAND lets a second one kill at once.
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  RunOptions options{o.out, o.fresh};
  options.stop = &interrupted;
  try {
    run_experiment(config, options);
  } catch (const RunInterrupted& e) {
    // Resuming: the same config, folder and overrides, without --fresh.
    std::string again = "normlab run " + shell_word(o.configs[0]);
    if (!o.out.empty()) again += " --out " + shell_word(o.out);
    for (const std::string& set : o.sets) again += " --set " + shell_word(set);
    std::cerr << "normlab run: interrupted: " << e.kept << (e.kept == 1 ? " cell" : " cells")
              << " kept in " << e.dir << "; run `" << again << "` again to resume\n";
    return 130;  // 128 + SIGINT, as a shell reports a command that Ctrl-C ended
  }
  return 0;
}

int validate_command(const Args& args) {
  ConfigOptions o;
  if (!parse(args, false, o)) return 0;
  // Every file is checked (errors on stderr, one line each) before anything
  // is printed, so that stdout is the JSON or nothing.
  nlohmann::json resolved = nlohmann::json::object();
  std::string summary;
  int failed = 0;
  for (const std::string& path : o.configs) {
    try {
      const ExperimentConfig config = load_config(path, o.sets);
      const std::vector<Cell> cells = grid_cells(config);
      std::size_t skipped = 0;
      for (const Cell& cell : cells) {
        if (cell.skipped.empty()) continue;
        summary += path + ": skips " + cell.id() + ": " + cell.skipped + "\n";
        ++skipped;
      }
      summary += path + ": valid, " + std::to_string(cells.size()) + " cells" +
                 (skipped ? " (" + std::to_string(skipped) + " skipped)" : "") + "\n";
      resolved[path] = config.resolved;
    } catch (const std::exception& e) {
      if (o.configs.size() == 1) throw;  // one line from main, as for any command
      summary += "normlab validate: " + std::string(e.what()) + "\n";
      ++failed;
    }
  }
  std::cerr << summary;
  if (failed) {
    std::cerr << "normlab validate: " << failed << " of " << o.configs.size()
              << " configs are not valid\n";
    return 1;
  }
  std::cout << (o.configs.size() == 1 ? resolved.begin().value() : resolved).dump(2) << "\n";
  return 0;
}

}  // namespace normlab::cli
