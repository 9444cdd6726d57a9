// normlab probe: batch statistics against population statistics, per
// batch-statistics layer and batch size.
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.hpp"
#include "normlab/analysis.hpp"
#include "normlab/files.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {

int probe_command(const Args& args) {
  std::string config_path, out, run_dir, cell;
  std::vector<std::string> sets;
  po::options_description desc(
      "usage: normlab probe CONFIG [--out DIR] [--set key.path=value ...]\n"
      "       normlab probe [CONFIG] --model-from RUN_DIR --cell ID [--out DIR]\n\n"
      "For every batch-statistics layer and every batch size of CONFIG, samples probe.batches\n"
      "batches of the training set and measures the error of the batch mean and variance against\n"
      "the population statistics of the whole training set (next to the 1/sqrt(B) law), and the\n"
      "relative L2 gap between the layer's train-mode and eval-mode outputs. The model is freshly\n"
      "initialized from the first seed, or with --model-from the model of one cell of a finished\n"
      "run: its saved weights (RUN_DIR/cells/CELL), or, where the run kept none, the cell\n"
      "re-trained in-process from RUN_DIR/config.json (CONFIG defaults to that file).\n"
      "Writes DIR/probe.jsonl, probe.csv and probe_config.json. Options");
  desc.add_options()("help,h", "show this help")(
      "out", po::value(&out)->value_name("DIR"),
      "output folder (default: the config's \"output\"/probe, or RUN_DIR/probe-CELL)")(
      "set", po::value(&sets)->composing()->value_name("KEY=VALUE"),
      "override a config value, e.g. --set probe.batches=50")(
      "model-from", po::value(&run_dir)->value_name("RUN_DIR"), "a finished run's folder")(
      "cell", po::value(&cell)->value_name("ID"),
      "the cell of that run to load (or re-train) and probe, e.g. batch/B64/seed0");
  po::options_description hidden;
  hidden.add_options()("config", po::value(&config_path));
  if (!parse_options(args, desc, &hidden, "config")) return 0;
  if (run_dir.empty() != cell.empty()) throw UsageError("--model-from and --cell go together");
  if (config_path.empty()) {
    if (run_dir.empty()) throw UsageError("missing CONFIG (a JSON file; see configs/)");
    config_path = (std::filesystem::path(run_dir) / "config.json").string();
  }
  const ExperimentConfig config = load_config(config_path, sets);
  if (out.empty()) {
    std::string name = cell;
    for (char& c : name) c = c == '/' ? '_' : c;
    out = run_dir.empty() ? (std::filesystem::path(config.output) / "probe").string()
                          : (std::filesystem::path(run_dir) / ("probe-" + name)).string();
  }
  const std::vector<nlohmann::json> records = run_probe(
      config, {run_dir, cell}, [](const std::string& line) { std::cerr << line << "\n"; });

  StagedOutput staged(out);
  std::string jsonl;
  for (const auto& r : records) jsonl += r.dump() + "\n";
  const nlohmann::json info = {
      {"config", config.resolved},
      {"model_from", run_dir.empty() ? nlohmann::json() : nlohmann::json(run_dir)},
      {"cell", cell.empty() ? nlohmann::json() : nlohmann::json(cell)}};
  const std::pair<const char*, std::string> files[] = {{"probe.jsonl", jsonl},
                                                       {"probe.csv", probe_csv(records)},
                                                       {"probe_config.json", info.dump(2) + "\n"}};
  for (const auto& file : files)
    staged.write(file.first, [&](const std::string& path) { write_file(path, file.second); });
  staged.commit();
  std::cout << "batch statistics vs population, " << config.model << ", " << config.name << " ("
            << out << ")\n"
            << probe_table(records);
  return 0;
}

}  // namespace normlab::cli
