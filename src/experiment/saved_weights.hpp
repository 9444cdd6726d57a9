// The trained weights of a cell, kept in the cell's folder of the run
// (RUN/cells/<cell id>/) so that `normlab probe --model-from` can probe the
// model a run trained without training it again: weights.json, the index, and
// one float32 .npy per tensor (every parameter, then every norm's running
// state, in Model::parameters() and Model::norms() order).
#pragma once

#include <filesystem>
#include <string>

#include "normlab/experiment.hpp"
#include "normlab/model.hpp"

namespace normlab {

// RUN/cells/<cell id>, e.g. RUN/cells/batch/B64/seed0.
std::filesystem::path cell_folder(const std::filesystem::path& run_dir, const std::string& cell_id);

// Writes the folder's weights.json and .npy files, all or nothing (a
// StagedOutput): a reader finds the old set or the new one.
void save_cell_weights(const std::filesystem::path& run_dir, const ExperimentConfig& config,
                       const Cell& cell, Model<float>& model);

// Whether the cell's folder has an index (a run from before weights were kept has none).
bool has_cell_weights(const std::filesystem::path& run_dir, const std::string& cell_id);

// Sets `model` (built for the run's model, the cell's norm and the run's
// layout) to the saved weights. Everything is checked against the model before
// any of it is used: an index that does not parse or describes another model,
// norm or layout, a tensor file that is missing, not a float32 .npy, cut short
// or of another shape throw std::runtime_error with one line naming the file.
void load_cell_weights(const std::filesystem::path& run_dir, const ExperimentConfig& config,
                       const Cell& cell, Model<float>& model);

}  // namespace normlab
