// Looking inside the small-batch problem: `normlab probe` measures how far
// batch statistics stray from the population's at each batch size, and
// `normlab report` turns runs and probes into figures and tables.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "normlab/experiment.hpp"

namespace normlab {

// The model a probe measures: freshly initialized from the config's first
// seed (one model per batch-statistics norm of the config), or the model of
// one cell of a finished run. A run keeps no weights, so that cell is
// re-trained in-process from the run's config.json; training is
// deterministic, and the record carries the re-trained test error next to the
// run's so a mismatch shows.
struct ProbeSource {
  std::string run_dir;  // "" for a fresh model
  std::string cell;     // a cell id of that run, "batch/B64/seed0"
};

// For every batch-statistics layer (norm types in batch_statistics_types) and
// every batch size of `config`, over config.probe.batches sampled batches of
// the training set: the error of the per-channel batch mean and variance
// against the population statistics of the whole training set, and the
// relative L2 gap between the layer's train-mode and eval-mode outputs. The
// batch statistics are those the layer normalizes with: for Ghost BN, each
// virtual batch of virtual_batch_size samples is one sample of them
// (stats_batch_size in the record). Every train forward starts from the same
// full state of the layer (every state_names() entry), so batch sizes do not
// depend on the order they are probed in. One record per (norm, layer, batch
// size); `note` hears progress lines.
std::vector<nlohmann::json> run_probe(const ExperimentConfig& config, const ProbeSource& source,
                                      const std::function<void(const std::string&)>& note);

// The probe records as CSV (one row per record) and as a Markdown table.
std::string probe_csv(const std::vector<nlohmann::json>& records);
std::string probe_table(const std::vector<nlohmann::json>& records);

struct ReportOptions {
  std::string out_dir;       // where report.html, figures and tables go
  std::string gnuplot = "";  // program to run; "" = find `gnuplot` on PATH
  // The norms that paired differences over seeds are taken against, one
  // table each; empty = "batch" when a run has it, else its first norm.
  std::vector<std::string> baselines = {};
};
// What write_report made, for the command's summary.
struct ReportSummary {
  std::vector<std::string> figures;  // PNG paths
  bool plotted = false;              // false when gnuplot was not found
  std::string html;                  // report.html
};

// A report over run folders (config.json + results.jsonl) and probe folders
// (probe.jsonl), given directly or as sub-folders of a run folder. Figures
// are gnuplot scripts and data files rendered to SVG and PNG; without gnuplot
// the scripts, data and tables are still written and the report says how to
// install it. Throws std::runtime_error for a folder that is neither.
ReportSummary write_report(const std::vector<std::string>& dirs, const ReportOptions& options);

}  // namespace normlab
