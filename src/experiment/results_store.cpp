#include "results_store.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "io/safe_open.hpp"
#include "normlab/experiment.hpp"
#include "normlab/files.hpp"
#include "normlab/registry.hpp"

namespace normlab {

namespace fs = std::filesystem;

namespace {

// The settings that change results: everything but where they go, how
// many cells run at once and on how many threads, the probe's settings and
// the free-text description.
nlohmann::json result_relevant(nlohmann::json config) {
  config.erase("output");
  config.erase("workers");
  config.erase("threads_per_cell");
  config.erase("description");
  config.erase("probe");
  return config;
}

// A record's number times 100 (errors are percentages in every table and
// CSV), null when it has none.
nlohmann::json percent(const nlohmann::json& value) {
  return value.is_number() ? nlohmann::json(100 * value.get<double>()) : nlohmann::json();
}
nlohmann::json error_percent(const nlohmann::json& accuracy) {
  return accuracy.is_number() ? nlohmann::json(100 * (1 - accuracy.get<double>()))
                              : nlohmann::json();
}

// The norm without the " R=2" that records add to name a table's row: the
// ranks have their own column.
std::string norm_without_ranks(const nlohmann::json& record) {
  std::string norm = record["norm"].get<std::string>();
  const std::string suffix = " R=" + std::to_string(record.value("ranks", std::size_t(1)));
  if (norm.size() > suffix.size() &&
      norm.compare(norm.size() - suffix.size(), suffix.size(), suffix) == 0)
    norm.resize(norm.size() - suffix.size());
  return norm;
}

// One row per cell (docs/experiments.md lists the columns).
std::string to_csv(const std::vector<nlohmann::json>& records) {
  const char* const columns[] = {"cell",
                                 "model",
                                 "norm",
                                 "ranks",
                                 "batch_size",
                                 "global_batch_size",
                                 "seed",
                                 "lr",
                                 "test_error_percent",
                                 "test_error_batch_stats_percent",
                                 "test_error_precise_bn_percent",
                                 "diverged",
                                 "train_seconds",
                                 "train_images_per_second",
                                 "communication_share",
                                 "wall_seconds"};
  std::string text;
  for (const char* c : columns) text += std::string(c) + ",";
  text.back() = '\n';
  for (const auto& r : records) {
    const std::size_t ranks = r.value("ranks", std::size_t(1));
    const nlohmann::json row = {
        {"norm", norm_without_ranks(r)},
        {"ranks", ranks},
        {"global_batch_size",
         r.value("global_batch_size", ranks * r["batch_size"].get<std::size_t>())},
        {"test_error_percent", percent(r["test_error"])},
        {"test_error_batch_stats_percent",
         error_percent(r.value("test_accuracy_batch_stats", nlohmann::json()))},
        {"test_error_precise_bn_percent",
         error_percent(r.value("test_accuracy_precise_bn", nlohmann::json()))},
        // A share of the training time (0 to 1); none in one process.
        {"communication_share", r.value("communication_share", nlohmann::json())}};
    for (const char* c : columns)
      text += csv_field(row.contains(c) ? row[c] : r.value(c, nlohmann::json())) + ",";
    text.back() = '\n';
  }
  return text;
}

// The loss curves in long format, one row per point: the 1-based epoch, the
// step within it at the end of the window the loss is the mean of, the loss.
// Records without a curve (older runs) have no rows.
std::string loss_curve_csv(const std::vector<nlohmann::json>& records) {
  std::string text = "cell,epoch,step,loss\n";
  for (const auto& r : records) {
    const nlohmann::json curve = r.value("loss_curve", nlohmann::json());
    if (!curve.is_object()) continue;
    const double steps = r.value("steps_per_epoch", 0.0);
    const std::string cell = csv_field(r["cell"]);
    for (std::size_t i = 0; i < curve["epoch"].size(); ++i) {
      // curve epochs are fractional: epoch e + step / steps_per_epoch
      const double at = curve["epoch"][i].get<double>();
      const double epoch = std::max(1.0, std::ceil(at - 1e-9));
      const nlohmann::json step =
          steps > 0 ? nlohmann::json(std::llround((at - (epoch - 1)) * steps)) : nlohmann::json();
      text += cell + "," + std::to_string(std::llround(epoch)) + "," + csv_field(step) + "," +
              curve["loss"][i].dump() + "\n";
    }
  }
  return text;
}

// Checks of one key of a record; `what` is its path for messages.
[[noreturn]] void bad_key(const std::string& what, const std::string& expected,
                          const nlohmann::json* value) {
  throw std::invalid_argument(
      what + ": " +
      (value ? "expected " + expected + ", got " + std::string(json_kind(*value))
             : "missing (expected " + expected + ")"));
}

const nlohmann::json* find(const nlohmann::json& record, const std::string& key) {
  const auto it = record.find(key);
  return it == record.end() ? nullptr : &*it;
}

void require(const nlohmann::json& record, const std::string& key, const std::string& expected,
             bool (*ok)(const nlohmann::json&), bool optional = false) {
  const nlohmann::json* value = find(record, key);
  if (value ? !ok(*value) : !optional) bad_key(key, expected, value);
}

bool is_string(const nlohmann::json& v) {
  return v.is_string();
}
bool is_count(const nlohmann::json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<long long>() >= 0);
}
bool is_positive(const nlohmann::json& v) {
  return is_count(v) && v.get<std::uint64_t>() > 0 &&
         v.get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<int>::max());
}
bool is_integer(const nlohmann::json& v) {
  return v.is_number_integer() && v.get<long long>() >= std::numeric_limits<int>::min() &&
         v.get<long long>() <= std::numeric_limits<int>::max();
}
bool is_number_or_null(const nlohmann::json& v) {
  return v.is_number() || v.is_null();
}
bool is_numbers(const nlohmann::json& v) {
  return v.is_array() &&
         std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_number(); });
}

}  // namespace

std::string json_digest(const nlohmann::json& value) {
  std::uint64_t hash = 14695981039346656037ULL;  // FNV-1a, 64 bits
  for (const char c : value.dump()) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

namespace {

nlohmann::json cell_config(const nlohmann::json& resolved, const nlohmann::json& norm_spec,
                           const nlohmann::json& batch_size, const nlohmann::json& ranks,
                           const nlohmann::json& seed) {
  nlohmann::json config = result_relevant(resolved);
  for (const char* grid_list : {"norms", "batch_sizes", "seeds", "distributed"})
    config.erase(grid_list);
  config["cell"] = {
      {"norm", norm_spec}, {"batch_size", batch_size}, {"ranks", ranks}, {"seed", seed}};
  return config;
}

}  // namespace

std::string cell_config_digest(const nlohmann::json& resolved_config, const Cell& cell) {
  return json_digest(
      cell_config(resolved_config, cell.norm, cell.batch_size, cell.ranks, cell.seed));
}

std::string run_config_digest(const nlohmann::json& resolved_config) {
  return json_digest(result_relevant(resolved_config));
}

void check_records_belong(const std::vector<JsonlRecord>& records,
                          const nlohmann::json& started_config, const fs::path& path) {
  std::map<std::string, std::string> expected;  // cell id -> digest
  for (const Cell& cell : grid_cells(parse_config(started_config)))
    expected[cell.id()] = cell_config_digest(started_config, cell);
  std::map<std::string, std::size_t> seen;  // cell id -> line
  for (const JsonlRecord& record : records) {
    const nlohmann::json& r = record.value;
    const std::string where = path.string() + ": line " + std::to_string(record.line) + ": ";
    const std::string cell = r["cell"].get<std::string>();
    const auto cell_digest = expected.find(cell);
    if (cell_digest == expected.end())
      throw std::runtime_error(where + "cell " + cell +
                               " is not a cell of this folder's config (a record of another "
                               "config: delete that line, or start over with --fresh)");
    std::string digest;
    if (const auto given = r.find("config_digest"); given != r.end() && given->is_string()) {
      digest = given->get<std::string>();
    } else if (given == r.end() && r.contains("config") && r["config"].is_object() &&
               r.contains("norm_spec")) {  // written before records carried digests
      digest = json_digest(cell_config(r["config"], r["norm_spec"], r["batch_size"],
                                       r.value("ranks", nlohmann::json(1)), r["seed"]));
    } else {
      throw std::runtime_error(where + "config_digest: " +
                               (given == r.end()
                                    ? std::string("missing")
                                    : "expected a string, got " + std::string(json_kind(*given))) +
                               "; " + kDamagedRecordHint);
    }
    if (digest != cell_digest->second)
      throw std::runtime_error(where + "cell " + cell +
                               " was trained with another config (config digest " + digest +
                               ", this folder's is " + cell_digest->second +
                               "): delete that line, or start over with --fresh");
    const auto [first, inserted] = seen.emplace(cell, record.line);
    if (!inserted)
      throw std::runtime_error(where + "cell " + cell + " was already recorded at line " +
                               std::to_string(first->second) +
                               " (a duplicate would count as another seed): delete one of them");
  }
}

const char* const kDamagedRecordHint =
    "a damaged record: delete that line (its cell is trained again by normlab run) or start over "
    "with --fresh";

std::vector<JsonlRecord> read_jsonl(const fs::path& path,
                                    const std::function<void(const nlohmann::json&)>& check,
                                    const std::string& hint) {
  BoundedLines in(path.string(), kMaxRecordBytes, "record file");
  std::vector<JsonlRecord> records;
  std::string line;
  for (bool ended = true; in.next(line, ended);) {
    const std::size_t number = in.line_number();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const bool cut = !ended;  // the last line, without its newline
    nlohmann::json record;
    try {
      record = parse_json(line, path.string() + ": line " + std::to_string(number), 0);
    } catch (const JsonInputError& e) {
      if (cut && e.kind() == JsonInputError::Kind::syntax) break;  // a kill cut it short
      throw std::runtime_error(std::string(e.what()) + "; " + hint);
    }
    try {
      if (!record.is_object())
        throw std::invalid_argument(std::string("expected an object, got ") + json_kind(record));
      check(record);
    } catch (const std::exception& e) {
      throw std::runtime_error(path.string() + ": line " + std::to_string(number) + ": " +
                               e.what() + "; " + hint);
    }
    records.push_back({number, line, std::move(record)});
  }
  return records;
}

void check_run_record(const nlohmann::json& r) {
  require(r, "cell", "a string", is_string);
  require(r, "index", "an integer >= 0", is_count);
  require(r, "norm", "a string", is_string);
  require(r, "batch_size", "a positive integer", is_positive);
  require(r, "seed", "an integer >= 0", is_count);
  require(r, "diverged", "true or false", [](const nlohmann::json& v) { return v.is_boolean(); });
  if (r.at("diverged").get<bool>())
    require(r, "test_error", "a number or null", is_number_or_null);
  else
    require(r, "test_error", "a number (the cell did not diverge)",
            [](const nlohmann::json& v) { return v.is_number(); });
  require(r, "train_loss", "a list of numbers", is_numbers);
  for (const char* key : {"test_accuracy_batch_stats", "test_accuracy_precise_bn"})
    require(r, key, "a number or null", is_number_or_null, /*optional=*/true);
  require(r, "validation_error", "a number or null", is_number_or_null, /*optional=*/true);
  require(
      r, "lr_multiplier", "a number", [](const nlohmann::json& v) { return v.is_number(); },
      /*optional=*/true);
  if (const nlohmann::json* curve = find(r, "loss_curve"); curve && !curve->is_null()) {
    if (!curve->is_object()) bad_key("loss_curve", "an object or null", curve);
    require(*curve, "epoch", "a list of numbers", is_numbers);
    require(*curve, "loss", "a list of numbers", is_numbers);
    if (curve->at("epoch").size() != curve->at("loss").size())
      throw std::invalid_argument("loss_curve: epoch and loss differ in length");
  }
}

void check_probe_record(const nlohmann::json& r) {
  require(r, "norm", "a string", is_string);
  require(r, "layer", "an integer", is_integer);
  require(r, "input_from", "a string", is_string);
  require(r, "batch_size", "a positive integer", is_positive);
  for (const char* key :
       {"inv_sqrt_b", "mean_error", "mean_error_std", "mean_error_ratio", "var_error",
        "var_error_std", "var_error_ratio", "gap_population", "gap_running"})
    require(r, key, "a number or null", is_number_or_null);
  for (const char* key : {"seed", "batches", "population_size"})
    if (!find(r, key)) bad_key(key, "a value", nullptr);
  require(r, "source", "a string", is_string, /*optional=*/true);
  require(r, "model", "a string", is_string, /*optional=*/true);
  if (r.value("source", std::string()) == "trained") {
    require(r, "trained_cell", "a string", is_string);
    require(r, "run", "a string", is_string, /*optional=*/true);
    require(r, "retrained_test_error", "a number or null", is_number_or_null);
  }
}

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
  try {
    lock_ = std::make_unique<FolderLock>(dir_);
    open_folder(fresh);
  } catch (...) {
    // The destructor does not run after a throwing constructor: take back
    // what this one made.
    if (wrote_config_) fs::remove(dir_ / "config.json", ec);
    if (lock_ && created_dir_) lock_->remove();
    if (created_dir_) fs::remove(dir_, ec);  // only removes it when empty
    throw;
  }
}

void ResultsStore::open_folder(bool fresh) {
  std::error_code ec;
  const fs::path config_path = dir_ / "config.json", results_path = dir_ / "results.jsonl";
  if (fresh) {
    for (const char* name : {"config.json", "results.jsonl", "results.csv", "loss_curve.csv",
                             "table.md", "search.jsonl"})
      fs::remove(dir_ / name, ec);
  }
  const bool started_before = fs::exists(fs::symlink_status(config_path));
  if (started_before) {
    nlohmann::json started;
    try {
      started = parse_json(read_bounded(config_path.string(), kMaxConfigBytes, "config file",
                                        /*follow_links=*/false),
                           config_path.string());
      if (!started.is_object())
        throw std::runtime_error(config_path.string() + ": expected an object, got " +
                                 json_kind(started));
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string(e.what()) + "; use --fresh to start over");
    }
    const nlohmann::json diff =
        nlohmann::json::diff(result_relevant(started), result_relevant(config_));
    if (!diff.empty())
      throw std::runtime_error(dir_.string() +
                               " was started with a different config (first difference at " +
                               diff[0].value("path", std::string("/")) +
                               "); use --fresh to start over or another --out");
  }
  // Records of finished cells; a line cut short by a kill is dropped, a
  // damaged one is an error naming its line (before anything is written).
  if (fs::exists(fs::symlink_status(results_path))) {
    std::string kept;
    std::vector<JsonlRecord> records =
        read_jsonl(results_path, check_run_record, kDamagedRecordHint);
    check_records_belong(records, config_, results_path);
    for (JsonlRecord& record : records) {
      finished_.insert(record.value["cell"].get<std::string>());
      records_.push_back(std::move(record.value));
      kept += record.text + "\n";
    }
    replace_file(results_path, kept);
  }
  if (const fs::path search_path = dir_ / "search.jsonl"; fs::exists(search_path)) {
    std::string kept;
    for (JsonlRecord& record : read_jsonl(search_path, check_run_record, kDamagedRecordHint)) {
      search_finished_.insert(record.value["cell"].get<std::string>());
      search_records_.push_back(std::move(record.value));
      kept += record.text + "\n";
    }
    replace_file(search_path, kept);
  }
  // Summaries in this version's format, also when no cell is left to run.
  if (!records_.empty()) rewrite_summaries();
  if (!started_before) {
    replace_file(config_path, config_.dump(2) + "\n");
    wrote_config_ = true;
  }
}

ResultsStore::~ResultsStore() {
  if (appended_ || !wrote_config_) return;
  std::error_code ec;
  fs::remove(dir_ / "config.json", ec);
  if (created_dir_) {
    lock_->remove();
    fs::remove(dir_, ec);  // only removes it when empty
  }
}

void ResultsStore::append(const nlohmann::json& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  appended_ = true;
  const fs::path path = dir_ / "results.jsonl";
  const std::string line = record.dump() + "\n";
  append_to_file(path, line);
  records_.push_back(record);
  finished_.insert(record["cell"].get<std::string>());
  rewrite_summaries();
}

std::vector<nlohmann::json> ResultsStore::append_search(const nlohmann::json& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  appended_ = true;
  append_to_file(dir_ / "search.jsonl", record.dump() + "\n");
  search_records_.push_back(record);
  search_finished_.insert(record["cell"].get<std::string>());
  return search_records_;
}

std::vector<nlohmann::json> ResultsStore::search_records() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return search_records_;
}

void ResultsStore::rewrite_summaries() const {
  std::vector<nlohmann::json> sorted = records_;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a["index"].template get<std::size_t>() < b["index"].template get<std::size_t>();
  });
  replace_file(dir_ / "results.csv", to_csv(sorted));
  replace_file(dir_ / "loss_curve.csv", loss_curve_csv(sorted));
  replace_file(dir_ / "table.md", error_table(config_, sorted));
}

double GridCell::mean() const {
  return summarize(values).mean;
}

std::string GridCell::text(const char* format) const {
  std::string counts;  // "1 diverged, 2 failed"
  if (diverged) counts = std::to_string(diverged) + " diverged";
  if (failed) counts += (counts.empty() ? "" : ", ") + std::to_string(failed) + " failed";
  if (values.empty()) return !counts.empty() ? counts : skipped ? "skipped" : "-";
  char cell[96];
  const SeedSummary s = summary();
  if (s.n >= 2) {
    const std::string both = std::string(format) + " ± " + format;
    std::snprintf(cell, sizeof cell, both.c_str(), s.mean, s.ci95);
  } else {
    std::snprintf(cell, sizeof cell, format, s.mean);
  }
  return std::string(cell) + " (n=" + std::to_string(s.n) + (counts.empty() ? "" : "; " + counts) +
         ")";
}

const GridCell& ResultGrid::at(const std::string& norm, std::size_t batch_size) const {
  static const GridCell none;
  const auto it = cells.find({norm, batch_size});
  return it == cells.end() ? none : it->second;
}

std::size_t ResultGrid::most_seeds() const {
  std::size_t most = 0;
  for (const auto& entry : cells) most = std::max(most, entry.second.values.size());
  return most;
}

std::string ResultGrid::markdown(
    const std::vector<std::string>& rows,
    const std::function<std::string(const std::string&, std::size_t)>& text) const {
  std::string table = "| norm |";
  for (std::size_t b : batch_sizes) table += " B=" + std::to_string(b) + " |";
  table += "\n|---|";
  for (std::size_t i = 0; i < batch_sizes.size(); ++i) table += "---:|";
  table += "\n";
  for (const auto& norm : rows) {
    table += "| " + norm + " |";
    for (std::size_t b : batch_sizes) table += " " + text(norm, b) + " |";
    table += "\n";
  }
  return table;
}

std::string ResultGrid::markdown(const char* format) const {
  return markdown(norms,
                  [&](const std::string& norm, std::size_t b) { return at(norm, b).text(format); });
}

std::string ResultGrid::stddev_markdown(const char* format) const {
  return markdown(norms, [&](const std::string& norm, std::size_t b) -> std::string {
    const SeedSummary s = at(norm, b).summary();
    if (s.n < 2) return "-";
    char text[32];
    std::snprintf(text, sizeof text, format, s.stddev);
    return text;
  });
}

namespace {

// The paired summary of every (norm, B) against `baseline`, and the Holm-adjusted
// p-values over the comparisons with two seeds or more.
struct PairedTable {
  std::map<std::pair<std::string, std::size_t>, SeedSummary> summaries;
  std::map<std::pair<std::string, std::size_t>, double> adjusted;
  std::size_t family = 0;
};

PairedTable paired_table(const ResultGrid& grid, const std::string& baseline) {
  PairedTable table;
  std::vector<std::pair<std::string, std::size_t>> keys;
  std::vector<double> p;
  for (const std::string& norm : grid.norms) {
    if (norm == baseline) continue;
    for (std::size_t b : grid.batch_sizes) {
      const GridCell &cell = grid.at(norm, b), &base = grid.at(baseline, b);
      const SeedSummary d =
          summarize(paired_differences(cell.values, cell.seeds, base.values, base.seeds));
      table.summaries[{norm, b}] = d;
      keys.push_back({norm, b});
      p.push_back(d.p_value);
      table.family += d.n >= 2;
    }
  }
  const std::vector<double> adjusted = holm_adjusted(p);
  for (std::size_t i = 0; i < keys.size(); ++i) table.adjusted[keys[i]] = adjusted[i];
  return table;
}

}  // namespace

std::size_t ResultGrid::paired_family_size(const std::string& baseline) const {
  return paired_table(*this, baseline).family;
}

std::string ResultGrid::paired_markdown(const std::string& baseline, const char* format) const {
  std::vector<std::string> rows = norms;
  rows.erase(std::remove(rows.begin(), rows.end(), baseline), rows.end());
  const std::string signed_format = std::string("%+") + (format + 1);  // "%.2f" -> "%+.2f"
  const PairedTable table = paired_table(*this, baseline);
  return markdown(rows, [&](const std::string& norm, std::size_t b) -> std::string {
    const SeedSummary& d = table.summaries.at({norm, b});
    if (d.n == 0) return "-";
    char text[128];
    if (d.n >= 2) {
      const double p = table.adjusted.at({norm, b});
      const std::string both =
          signed_format + " ± " + format + (p < 0.001 ? " (n=%zu, p<0.001)" : " (n=%zu, p=%.3f)");
      std::snprintf(text, sizeof text, both.c_str(), d.mean, d.ci95, d.n, p);
    } else {
      std::snprintf(text, sizeof text, (signed_format + " (n=1)").c_str(), d.mean);
    }
    return text;
  });
}

const char* const kFailureRuleText =
    "Runs that diverged (a non-finite training loss) or failed (test error at or above chance "
    "minus 5 points: 1 - 1/classes - 0.05, 85% for ten classes) are counted in the cell, not "
    "averaged in.";

std::size_t record_classes(const nlohmann::json& r) {
  if (const nlohmann::json* classes = find(r, "classes"); classes && is_positive(*classes))
    return classes->get<std::size_t>();
  if (const nlohmann::json* config = find(r, "config"); config && config->is_object()) {
    const nlohmann::json dataset = config->value("dataset", nlohmann::json::object());
    if (dataset.is_object() && dataset.value("type", "") == "synthetic" &&
        dataset.contains("classes") && is_positive(dataset["classes"]))
      return dataset["classes"].get<std::size_t>();
  }
  return 10;
}

RunOutcome record_outcome(const nlohmann::json& r) {
  const nlohmann::json error = r.value("test_error", nlohmann::json());
  return run_outcome(r["diverged"].get<bool>(), error.is_number() ? error.get<double>() : NAN,
                     record_classes(r));
}

const char* outcome_name(RunOutcome outcome) {
  switch (outcome) {
    case RunOutcome::diverged:
      return "diverged";
    case RunOutcome::failed:
      return "failed";
    default:
      return "succeeded";
  }
}

ResultGrid result_grid(const std::vector<std::size_t>& batch_sizes,
                       const std::vector<nlohmann::json>& records,
                       const std::function<std::optional<double>(const nlohmann::json&)>& value) {
  ResultGrid grid;
  // Largest B first in every table (and figure): the order the configs list them.
  grid.batch_sizes = batch_sizes;
  std::sort(grid.batch_sizes.begin(), grid.batch_sizes.end(), std::greater<>());
  grid.batch_sizes.erase(std::unique(grid.batch_sizes.begin(), grid.batch_sizes.end()),
                         grid.batch_sizes.end());
  for (const auto& r : records) {
    const std::string norm = r["norm"].get<std::string>();
    if (std::find(grid.norms.begin(), grid.norms.end(), norm) == grid.norms.end())
      grid.norms.push_back(norm);
    GridCell& cell = grid.cells[{norm, r["batch_size"].get<std::size_t>()}];
    const RunOutcome outcome = record_outcome(r);
    if (outcome == RunOutcome::diverged) {
      ++cell.diverged;
    } else if (outcome == RunOutcome::failed) {
      ++cell.failed;
    } else if (const std::optional<double> v = value(r)) {
      cell.values.push_back(*v);
      cell.seeds.push_back(r["seed"].get<std::uint64_t>());
    }
  }
  return grid;
}

std::vector<std::string> mark_skipped(ResultGrid& grid, const nlohmann::json& config) {
  std::vector<std::string> reasons;
  for (const auto& spec : config["norms"]) {
    Cell cell;
    cell.norm = spec;
    const std::string norm = cell.norm_label();
    const NormTraits traits = model_norm_traits(spec);
    for (std::size_t b : grid.batch_sizes) {
      const std::string reason = skip_reason(traits, b);
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
