#include "results_store.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>

#include "normlab/experiment.hpp"

namespace normlab {

namespace fs = std::filesystem;

namespace {

// The settings that change results: everything but where they go, how
// many cells run at once and the probe's settings.
nlohmann::json result_relevant(nlohmann::json config) {
  config.erase("output");
  config.erase("workers");
  config.erase("probe");
  return config;
}

void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) throw std::runtime_error(path.string() + ": cannot write");
  }
  fs::rename(tmp, path);
}

std::string to_csv(const std::vector<nlohmann::json>& records, std::size_t epochs) {
  std::vector<std::string> columns = {"cell",
                                      "model",
                                      "norm",
                                      "batch_size",
                                      "seed",
                                      "lr",
                                      "test_error",
                                      "test_accuracy",
                                      "test_accuracy_batch_stats",
                                      "test_accuracy_precise_bn",
                                      "diverged",
                                      "train_seconds",
                                      "train_images_per_second",
                                      "wall_seconds"};
  std::string text;
  for (const auto& c : columns) text += c + ",";
  for (std::size_t e = 1; e <= epochs; ++e) text += "train_loss_epoch" + std::to_string(e) + ",";
  text.back() = '\n';
  for (const auto& r : records) {
    for (const auto& c : columns) text += csv_field(r.value(c, nlohmann::json())) + ",";
    for (std::size_t e = 0; e < epochs; ++e)
      text += (e < r["train_loss"].size() ? r["train_loss"][e].dump() : std::string()) + ",";
    text.back() = '\n';
  }
  return text;
}

}  // namespace

std::string csv_field(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    std::string s = v.get<std::string>(), quoted = "\"";
    for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    return quoted + "\"";
  }
  return v.dump();
}

ResultsStore::ResultsStore(fs::path dir, const nlohmann::json& resolved_config, bool fresh)
    : dir_(std::move(dir)), config_(resolved_config) {
  std::error_code ec;
  created_dir_ = fs::create_directories(dir_, ec);
  if (ec)
    throw std::runtime_error(dir_.string() + ": cannot create output folder (" + ec.message() +
                             ")");
  const fs::path config_path = dir_ / "config.json", results_path = dir_ / "results.jsonl";
  if (fresh) {
    for (const char* name : {"config.json", "results.jsonl", "results.csv", "table.md"})
      fs::remove(dir_ / name, ec);
  }
  if (fs::exists(config_path)) {
    std::ifstream in(config_path);
    const nlohmann::json started = nlohmann::json::parse(in, nullptr, false);
    if (started.is_discarded())
      throw std::runtime_error(config_path.string() + ": unreadable; use --fresh to start over");
    const nlohmann::json diff =
        nlohmann::json::diff(result_relevant(started), result_relevant(config_));
    if (!diff.empty())
      throw std::runtime_error(dir_.string() +
                               " was started with a different config (first difference at " +
                               diff[0].value("path", std::string("/")) +
                               "); use --fresh to start over or another --out");
  } else {
    write_atomically(config_path, config_.dump(2) + "\n");
    wrote_config_ = true;
  }
  // Records of finished cells; a line cut short by a kill is dropped.
  std::ifstream in(results_path);
  std::string line, kept;
  while (std::getline(in, line)) {
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.contains("cell")) continue;
    records_.push_back(record);
    finished_.insert(record["cell"].get<std::string>());
    kept += line + "\n";
  }
  if (in.is_open()) write_atomically(results_path, kept);
}

ResultsStore::~ResultsStore() {
  if (appended_ || !wrote_config_) return;
  std::error_code ec;
  fs::remove(dir_ / "config.json", ec);
  if (created_dir_) fs::remove(dir_, ec);  // only removes it when empty
}

void ResultsStore::append(const nlohmann::json& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  appended_ = true;
  std::ofstream out(dir_ / "results.jsonl", std::ios::app);
  out << record.dump() << "\n";
  out.flush();
  if (!out) throw std::runtime_error((dir_ / "results.jsonl").string() + ": cannot append");
  records_.push_back(record);
  finished_.insert(record["cell"].get<std::string>());
  rewrite_summaries();
}

void ResultsStore::rewrite_summaries() const {
  std::vector<nlohmann::json> sorted = records_;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a["index"].template get<std::size_t>() < b["index"].template get<std::size_t>();
  });
  write_atomically(dir_ / "results.csv", to_csv(sorted, config_["epochs"].get<std::size_t>()));
  write_atomically(dir_ / "table.md", error_table(config_, sorted));
}

double GridCell::mean() const {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? std::nan("") : sum / double(values.size());
}

std::string GridCell::text(const char* format) const {
  char cell[32] = "-";
  if (!values.empty())
    std::snprintf(cell, sizeof cell, format, mean());
  else if (diverged)
    std::snprintf(cell, sizeof cell, "diverged");
  else if (skipped)
    std::snprintf(cell, sizeof cell, "skipped");
  return cell;
}

const GridCell& ResultGrid::at(const std::string& norm, std::size_t batch_size) const {
  static const GridCell none;
  const auto it = cells.find({norm, batch_size});
  return it == cells.end() ? none : it->second;
}

std::string ResultGrid::markdown(const char* format) const {
  std::string text = "| norm |";
  for (std::size_t b : batch_sizes) text += " B=" + std::to_string(b) + " |";
  text += "\n|---|";
  for (std::size_t i = 0; i < batch_sizes.size(); ++i) text += "---:|";
  text += "\n";
  for (const auto& norm : norms) {
    text += "| " + norm + " |";
    for (std::size_t b : batch_sizes) text += " " + at(norm, b).text(format) + " |";
    text += "\n";
  }
  return text;
}

ResultGrid result_grid(const std::vector<std::size_t>& batch_sizes,
                       const std::vector<nlohmann::json>& records,
                       const std::function<std::optional<double>(const nlohmann::json&)>& value) {
  ResultGrid grid;
  grid.batch_sizes = batch_sizes;
  for (const auto& r : records) {
    const std::string norm = r["norm"].get<std::string>();
    if (std::find(grid.norms.begin(), grid.norms.end(), norm) == grid.norms.end())
      grid.norms.push_back(norm);
    GridCell& cell = grid.cells[{norm, r["batch_size"].get<std::size_t>()}];
    if (r["diverged"].get<bool>())
      ++cell.diverged;
    else if (const std::optional<double> v = value(r))
      cell.values.push_back(*v);
  }
  return grid;
}

std::vector<std::string> mark_skipped(ResultGrid& grid, const nlohmann::json& config) {
  std::vector<std::string> reasons;
  for (const auto& spec : config["norms"]) {
    Cell cell;
    cell.norm = spec;
    const std::string norm = cell.norm_label();
    for (std::size_t b : grid.batch_sizes) {
      const std::string reason = skip_reason(spec, b);
      if (reason.empty()) continue;
      grid.cells[{norm, b}].skipped = true;
      reasons.push_back(norm + ", B=" + std::to_string(b) + ": " + reason);
      if (std::find(grid.norms.begin(), grid.norms.end(), norm) == grid.norms.end())
        grid.norms.push_back(norm);
    }
  }
  return reasons;
}

std::string error_table(const nlohmann::json& config, const std::vector<nlohmann::json>& records) {
  ResultGrid grid =
      result_grid(config["batch_sizes"].get<std::vector<std::size_t>>(), records,
                  [](const nlohmann::json& r) { return 100.0 * r["test_error"].get<double>(); });
  const std::vector<std::string> reasons = mark_skipped(grid, config);
  std::string text = grid.markdown("%.2f");
  if (!reasons.empty()) text += "\nSkipped cells:\n";
  for (const std::string& reason : reasons) text += "- " + reason + "\n";
  return text;
}

}  // namespace normlab
