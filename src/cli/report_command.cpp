// normlab report: figures (gnuplot) and tables from runs and probes.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "commands.hpp"
#include "normlab/analysis.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {

int report_command(const Args& args) {
  std::vector<std::string> dirs;
  ReportOptions options;
  po::options_description desc(
      "usage: normlab report DIR [DIR ...] [--out OUT] [--gnuplot PROGRAM] [--baseline NORM "
      "...]\n\n"
      "Figures and tables from run folders (results.jsonl; probe folders inside them are\n"
      "included) and probe folders (probe.jsonl): test error vs batch size, training loss at the\n"
      "smallest and largest batch, batch-statistics error vs batch size and the train/eval gap.\n"
      "Figures are drawn by gnuplot (apt-get install gnuplot-nox) to SVG and PNG; OUT/report.html\n"
      "shows them with the tables (also in report.md). Options");
  desc.add_options()("help,h", "show this help")("out",
                                                 po::value(&options.out_dir)->value_name("OUT"),
                                                 "output folder (default: the first DIR/report)")(
      "gnuplot", po::value(&options.gnuplot)->value_name("PROGRAM"),
      "the gnuplot program (default: gnuplot on PATH)")(
      "baseline", po::value(&options.baselines)->value_name("NORM"),
      "the norm (as its table row reads) that runs with several seeds are compared against, "
      "seed by seed, in a paired table; repeat it for a table per norm (default: batch, else "
      "the first norm)");
  po::options_description hidden;
  hidden.add_options()("dir", po::value(&dirs));
  if (!parse_options(args, desc, &hidden, "dir", -1)) return 0;
  if (dirs.empty()) throw UsageError("missing DIR (a run or probe folder)");
  if (options.out_dir.empty())
    options.out_dir = (std::filesystem::path(dirs[0]) / "report").string();
  const ReportSummary summary = write_report(dirs, options);
  if (!summary.plotted)
    std::cerr << "normlab report: gnuplot not found; figures not drawn (apt-get install "
                 "gnuplot-nox, then run again)\n";
  for (const std::string& png : summary.figures) std::cout << png << "\n";
  std::cout << summary.html << "\n";
  return 0;
}

}  // namespace normlab::cli
