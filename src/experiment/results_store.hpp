// An experiment's output folder: config.json (what it was started with),
// results.jsonl (one record per finished cell, appended and flushed),
// results.csv, loss_curve.csv and table.md (rewritten from the records).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "folder_lock.hpp"
#include "seed_statistics.hpp"

namespace normlab {

class ResultsStore {
 public:
  // Opens or starts `dir`. Refuses a folder started with a different config
  // unless `fresh`, which discards its results, and a folder another run
  // holds (one writer per folder: FolderLock, taken before anything is read).
  ResultsStore(std::filesystem::path dir, const nlohmann::json& resolved_config, bool fresh);
  // A run that ends before its first record (bad dataset path, ...) takes back
  // the config.json and folder it made, so fixing the config and rerunning is
  // not refused as "a different config".
  ~ResultsStore();
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  bool finished(const std::string& cell_id) const { return finished_.count(cell_id) != 0; }
  // Appends a record and rewrites the CSV and table; thread-safe.
  void append(const nlohmann::json& record);
  const std::vector<nlohmann::json>& records() const { return records_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void open_folder(bool fresh);  // the constructor's work
  void rewrite_summaries() const;
  std::filesystem::path dir_;
  std::unique_ptr<FolderLock> lock_;
  nlohmann::json config_;
  std::vector<nlohmann::json> records_;
  std::set<std::string> finished_;
  std::mutex mutex_;
  bool created_dir_ = false, wrote_config_ = false, appended_ = false;
};

// One record of a .jsonl file, with the line it was read from.
struct JsonlRecord {
  std::size_t line = 0;
  std::string text;
  nlohmann::json value;
};

// The records of a .jsonl file (results.jsonl, probe.jsonl): each line is
// parsed with parse_json (so nesting is limited) and passed to `check`, which
// throws naming the key at fault. Every error is a std::runtime_error naming
// the file and line, ending with `hint` (how to repair). Empty lines are
// skipped; a last line without a newline that is not valid JSON was cut short
// by a kill and is dropped. A file that cannot be opened is an error.
std::vector<JsonlRecord> read_jsonl(const std::filesystem::path& path,
                                    const std::function<void(const nlohmann::json&)>& check,
                                    const std::string& hint);

// Throw std::invalid_argument ("batch_size: expected a positive integer, got a
// string") for a record that lacks a key its readers use, or has it of the
// wrong type: a run's results.jsonl record, and a probe.jsonl record.
void check_run_record(const nlohmann::json& record);
void check_probe_record(const nlohmann::json& record);

// What to do about a damaged results.jsonl line.
extern const char* const kDamagedRecordHint;

// One number per record, summarized by norm x batch size over seeds.
struct GridCell {
  std::vector<double> values;        // the records that did not diverge...
  std::vector<std::uint64_t> seeds;  // ...and their seeds
  int diverged = 0;                  // counted, never averaged in
  bool skipped = false;              // the config skips this cell (see mark_skipped)
  bool empty() const { return values.empty() && diverged == 0; }
  double mean() const;
  SeedSummary summary() const { return summarize(values); }
  // The mean with `format`; with two seeds or more "mean ± half width of the 95%
  // interval"; "(k diverged)" appended when some seeds diverged; "diverged"
  // when every record diverged, "skipped", "-" when empty.
  std::string text(const char* format) const;
};
struct ResultGrid {
  std::vector<std::string> norms;        // in order of first appearance
  std::vector<std::size_t> batch_sizes;  // largest first
  std::map<std::pair<std::string, std::size_t>, GridCell> cells;
  const GridCell& at(const std::string& norm, std::size_t batch_size) const;
  std::size_t most_seeds() const;  // the largest number of values in a cell
  // `rows` (norms) as rows, batch sizes as columns, cells as text(norm, B) renders them.
  std::string markdown(
      const std::vector<std::string>& rows,
      const std::function<std::string(const std::string&, std::size_t)>& text) const;
  std::string markdown(const char* format) const;  // GridCell::text(format)
  // The standard deviation over seeds ("-" below two seeds).
  std::string stddev_markdown(const char* format) const;
  // Per norm other than `baseline` and batch size: the mean difference to
  // `baseline` over the seeds both have, ± the half width of its 95% interval.
  std::string paired_markdown(const std::string& baseline, const char* format) const;
};
// `value` gives a record's number, or nullopt when it has none (diverged
// records are counted as such without asking).
ResultGrid result_grid(const std::vector<std::size_t>& batch_sizes,
                       const std::vector<nlohmann::json>& records,
                       const std::function<std::optional<double>(const nlohmann::json&)>& value);

// Marks the cells the resolved `config` skips (skip_reason), adding their norms
// to the grid if no record named them; returns "norm, B=b: reason" per cell.
std::vector<std::string> mark_skipped(ResultGrid& grid, const nlohmann::json& config);

// Test error (%) by norm x batch size, mean over seeds, as a Markdown table;
// skipped cells read "skipped", with the reasons listed under the table.
std::string error_table(const nlohmann::json& config, const std::vector<nlohmann::json>& records);

// A CSV field: strings quoted (quotes doubled), null empty, numbers as JSON.
std::string csv_field(const nlohmann::json& value);

}  // namespace normlab
