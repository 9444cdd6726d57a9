// An experiment's output folder: config.json (what it was started with),
// results.jsonl (one record per finished cell, appended and flushed),
// results.csv and table.md (rewritten from the records).
#pragma once

#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace normlab {

class ResultsStore {
 public:
  // Opens or starts `dir`. Refuses a folder started with a different config
  // unless `fresh`, which discards its results.
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
  void rewrite_summaries() const;
  std::filesystem::path dir_;
  nlohmann::json config_;
  std::vector<nlohmann::json> records_;
  std::set<std::string> finished_;
  std::mutex mutex_;
  bool created_dir_ = false, wrote_config_ = false, appended_ = false;
};

// Test error (%) by norm x batch size, mean over seeds, as a Markdown table.
std::string error_table(const nlohmann::json& config, const std::vector<nlohmann::json>& records);

}  // namespace normlab
