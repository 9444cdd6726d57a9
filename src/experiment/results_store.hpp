// An experiment's output folder: config.json (what it was started with),
// results.jsonl (one record per finished cell, appended and flushed),
// results.csv, loss_curve.csv and table.md (rewritten from the records), and
// with a learning-rate search search.jsonl (one record per finished search run).
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
#include "normlab/experiment.hpp"
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
  // Rewrites results.csv and table.md from the records: whenever a run ends,
  // so that they follow the log even when nothing was left to train.
  void rewrite_summaries() const;
  const std::vector<nlohmann::json>& records() const { return records_; }
  // The learning-rate search's runs (search.jsonl): kept, and resumed like cells.
  bool search_finished(const std::string& run_id) const {
    return search_finished_.count(run_id) != 0;
  }
  // Appends a search run's record; thread-safe. Returns the records of
  // search.jsonl so far (a copy, taken under the lock).
  std::vector<nlohmann::json> append_search(const nlohmann::json& record);
  std::vector<nlohmann::json> search_records() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void open_folder(bool fresh);  // the constructor's work
  std::filesystem::path dir_;
  std::unique_ptr<FolderLock> lock_;
  nlohmann::json config_;
  std::vector<nlohmann::json> records_;
  std::set<std::string> finished_;
  std::vector<nlohmann::json> search_records_;
  std::set<std::string> search_finished_;
  mutable std::mutex mutex_;
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

// A digest (16 hex digits, FNV-1a 64 of the JSON text) of a JSON value.
std::string json_digest(const nlohmann::json& value);
// The digest of everything that decides a cell's result: the resolved config's
// result-relevant settings, with the grid's lists replaced by the cell's norm
// spec, batch size, ranks and seed. Each record carries it as "config_digest".
std::string cell_config_digest(const nlohmann::json& resolved_config, const Cell& cell);
// The digest of a run's result-relevant settings (the whole grid): MPI ranks
// compare theirs with rank 0's before the first cell.
std::string run_config_digest(const nlohmann::json& resolved_config);

// Records cannot lie: every record must be a cell of `started_config` (the
// resolved config of the folder, as config.json holds it) with that cell's
// config digest (records written before digests existed: the digest of the
// "config" they carry), and no cell may be recorded twice. Throws a
// std::runtime_error naming `path` and the line.
void check_records_belong(const std::vector<JsonlRecord>& records,
                          const nlohmann::json& started_config, const std::filesystem::path& path);

// What to do about a damaged results.jsonl line.
extern const char* const kDamagedRecordHint;

// One number per record, summarized by norm x batch size over seeds.
struct GridCell {
  std::vector<double> values;        // the records that succeeded (record_outcome)...
  std::vector<std::uint64_t> seeds;  // ...and their seeds
  int diverged = 0;                  // counted, never averaged in
  bool skipped = false;              // the config skips this cell (see mark_skipped)
  int failed = 0;                    // finished near chance: counted, never averaged in
  bool empty() const { return values.empty() && diverged == 0 && failed == 0; }
  double mean() const;
  SeedSummary summary() const { return summarize(values); }
  // The mean with `format`; with two seeds or more "mean ± half width of the 95%
  // interval"; then "(n=K)", with "; k diverged, f failed" when some runs did;
  // "diverged" or "failed" (with the counts) when no run succeeded, "skipped",
  // "-" when empty.
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
  // `baseline` over the seeds both have, ± the half width of its 95% interval,
  // and the paired t test's p-value Holm-adjusted over every comparison of the
  // table ("p=0.012"; "-" with one seed, which is not counted in the family).
  std::string paired_markdown(const std::string& baseline, const char* format) const;
  // How many comparisons paired_markdown adjusts for (cells with n >= 2).
  std::size_t paired_family_size(const std::string& baseline) const;
};
// The classes of a record's task: its "classes", else its config's synthetic
// dataset's, else 10 (Fashion-MNIST and MNIST; records written before the key).
std::size_t record_classes(const nlohmann::json& record);
// run_outcome (seed_statistics.hpp) of a record: diverged, failed near chance
// or succeeded.
RunOutcome record_outcome(const nlohmann::json& record);
// "succeeded", "diverged" or "failed".
const char* outcome_name(RunOutcome outcome);

// The failure rule in words, for table captions.
extern const char* const kFailureRuleText;

// `value` gives a record's number, or nullopt when it has none (diverged and
// failed records are counted as such without asking).
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
