// Training one cell's model, shared by train_cell and `normlab probe
// --model-from` (which re-trains a run's cell to get its weights back).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "normlab/experiment.hpp"
#include "normlab/model.hpp"

namespace normlab {

// What training did, for the result record.
struct TrainingLog {
  std::size_t steps_per_epoch = 0;
  std::size_t total_steps = 0;     // the budget in optimizer steps
  std::size_t epochs_started = 0;  // passes over the data begun (the last may be partial)
  nlohmann::json epoch_losses = nlohmann::json::array();
  // Mean loss over windows of steps_per_epoch / kLossCurvePointsPerEpoch steps:
  // {"epoch": [fractional epoch at each window's end], "loss": [...]}.
  nlohmann::json loss_curve;
  bool diverged = false;
  nlohmann::json diverged_at = nullptr;
  double train_seconds = 0;
  std::size_t images_seen = 0;       // by this rank
  double communication_seconds = 0;  // inside the group's collectives while training
};
constexpr std::size_t kLossCurvePointsPerEpoch = 20;

// A fresh model for the cell, trained with SGD as the config says (same seed,
// same numbers: training is single-threaded and deterministic). With a group
// of cell.ranks ranks, this rank trains on its share of each global batch and
// the gradients are averaged over the group (see train_cell).
Model<float> train_model(const ExperimentConfig& config, const Cell& cell, const Dataset& train,
                         const ProgressFn& progress, TrainingLog& log,
                         const std::shared_ptr<Communicator>& group = nullptr);

// Norm types whose train-mode output depends on the other samples of the
// batch (the registry's batch_statistics trait): batch-stats test accuracy and
// the probe use them.
const std::vector<std::string>& batch_statistics_types();

// Copies samples order[first, first + B) into the batch buffers (B = images.shape(0)).
void gather(const Dataset& data, const std::vector<std::size_t>& order, std::size_t first,
            xt::xarray<float>& images, std::vector<std::uint8_t>& labels);

// Eval-mode accuracy over all of `data`, in batches of `batch`.
double eval_accuracy(Model<float>& model, const Dataset& data, std::size_t batch);

}  // namespace normlab
