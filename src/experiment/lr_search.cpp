#include "lr_search.hpp"

#include <cmath>
#include <map>
#include <string>

#include "results_store.hpp"
#include "seed_statistics.hpp"

namespace normlab {

std::optional<nlohmann::json> select_learning_rate(
    const ExperimentConfig& config, const Cell& cell,
    const std::vector<nlohmann::json>& search_records) {
  std::map<std::string, const nlohmann::json*> by_id;
  for (const nlohmann::json& r : search_records) by_id[r["cell"].get<std::string>()] = &r;
  const std::vector<Cell> runs = search_runs(config, cell);
  std::vector<const nlohmann::json*> found;
  for (const Cell& run : runs) {
    const auto it = by_id.find(run.id());
    if (it == by_id.end()) return std::nullopt;
    found.push_back(it->second);
  }
  if (found.empty()) return std::nullopt;

  nlohmann::json tried = nlohmann::json::array();
  const nlohmann::json* best = nullptr;
  double best_error = INFINITY;
  for (const nlohmann::json* r : found) {
    const nlohmann::json v = r->value("validation_error", nlohmann::json());
    const double error = v.is_number() ? v.get<double>() : NAN;
    const RunOutcome outcome = run_outcome((*r)["diverged"].get<bool>(), error, record_classes(*r));
    tried.push_back({{"lr_multiplier", (*r)["lr_multiplier"]},
                     {"lr", r->value("lr", nlohmann::json())},
                     {"validation_error", v},
                     {"test_error", r->value("test_error", nlohmann::json())},
                     {"outcome", outcome_name(outcome)}});
    if (outcome == RunOutcome::succeeded && error < best_error) {
      best = r;
      best_error = error;
    }
  }
  nlohmann::json record = *(best ? best : found.front());
  record["cell"] = cell.id();
  record["index"] = cell.index;
  record["lr_search"] = tried;
  return record;
}

}  // namespace normlab
