// The learning-rate search (optimizer.lr_multipliers): each cell trains once per
// multiplier of the base rule; the run of lowest validation error is the cell's.
#pragma once

#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "normlab/experiment.hpp"

namespace normlab {

// The cell's record, chosen among `search_records` (search.jsonl) once each of
// its search runs has one; nullopt while some are missing. The record is the
// selected run's, under the cell's id and index, with "lr_multiplier" and
// "lr_search" (every run's multiplier, lr, validation_error and outcome). The
// selected run has the lowest validation error among the runs that succeeded
// (seed_statistics.hpp's rule applied to validation error), the first listed
// on ties; when none succeeded, the first multiplier's run stands for the cell
// and is counted as it ended (diverged or failed).
std::optional<nlohmann::json> select_learning_rate(
    const ExperimentConfig& config, const Cell& cell,
    const std::vector<nlohmann::json>& search_records);

}  // namespace normlab
