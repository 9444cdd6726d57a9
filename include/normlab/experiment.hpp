// Config-driven experiments: a grid of norm x batch size x seed for one
// model, each cell trained and evaluated on real or synthetic data.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "normlab/data.hpp"
#include "normlab/distributed.hpp"
#include "normlab/model.hpp"

namespace normlab {

struct DatasetConfig {
  std::string type;           // fashion-mnist | mnist | synthetic
  std::string path;           // folder with the four IDX files (gzipped or not)
  long long train_size = -1;  // -1: all
  long long test_size = -1;
  std::string subset = "first";  // first | random
  std::uint64_t subset_seed = 0;
  double mean = 0, std = 1;  // standardization after scaling pixels to [0, 1]
  std::size_t classes = 10;  // synthetic only
  std::uint64_t seed = 0;    // synthetic only
  // A validation split carved from the training set (after train_size): this
  // many samples drawn at random with validation_seed, the same for every cell;
  // the cells train on the rest. 0: no split.
  long long validation_size = 0;
  std::uint64_t validation_seed = 0;
};

struct OptimizerConfig {
  double lr = 0.1;
  double base_batch = 32;  // linear scaling: lr * B / base_batch
  bool linear_scaling = true;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::vector<long long> drop_epochs;  // 0-based epochs from which lr is multiplied again
  // Fractions of the training budget (0 < f < 1) from which lr is multiplied
  // again: the same schedule for every budget and batch size.
  std::vector<double> drop_fractions;
  double drop_factor = 0.1;
  // The learning-rate search: each cell trains once per multiplier of the base
  // rule and keeps the run of best validation error. Empty: no search.
  std::vector<double> lr_multipliers;
  // The learning rate of an epoch at batch size B (drop_epochs only).
  double lr_at(std::size_t epoch, std::size_t batch_size) const;
  // The learning rate of optimizer step `step` (from 0) of `total_steps`,
  // with `steps_per_epoch` steps per epoch, at batch size B: both schedules.
  double lr_at_step(std::size_t step, std::size_t total_steps, std::size_t steps_per_epoch,
                    std::size_t batch_size) const;
};

// How long each cell trains: a number of epochs (the default), of optimizer
// steps or of training images seen. Steps and images compare cells of
// different batch sizes at the same number of updates or of samples.
struct BudgetConfig {
  enum class Unit { epochs, steps, images };
  Unit unit = Unit::epochs;
  std::size_t amount = 1;
  // The optimizer steps of a cell with `steps_per_epoch` steps of
  // `global_batch` samples per epoch (0 when the budget is under one batch).
  std::size_t steps(std::size_t steps_per_epoch, std::size_t global_batch) const;
  std::string text() const;  // "3 epochs", "2000 steps", "128000 images"
};

struct EvaluationConfig {
  std::size_t batch_size = 1000;       // eval-mode test batches
  bool batch_stats_accuracy = true;    // also test with batch statistics at the training B
  std::size_t precise_bn_batches = 0;  // also test with "precise BN" over K train batches; 0: off
};

// `normlab probe`: how many batches it samples per batch size, and from which seed.
struct ProbeConfig {
  std::size_t batches = 200;
  std::uint64_t seed = 0;
};

// A norm of a config, parsed once where the config enters: the spec as the
// config gives it (labels and cell ids are made from it) and what the norm is
// in the config's model.
struct ConfigNorm {
  nlohmann::json spec;      // a name becomes {"type": name}
  nlohmann::json resolved;  // every option filled in (resolve_spec): two entries are the
                            // same norm when these are equal
  NormTraits traits;        // model_norm_traits(spec)
};

struct ExperimentConfig {
  std::string name;
  std::string description;  // free text: the config's choices and why (shown by report)
  DatasetConfig dataset;
  std::string model;
  // The order of the model's activations: nchw (the default) or channels last
  // (nhwc, cnn3 only; the same results up to the order of floating-point sums).
  Layout activation_layout = Layout::nchw;
  std::vector<ConfigNorm> norms;  // ({"type": "none"}: no norm)
  std::vector<std::size_t> batch_sizes;
  std::vector<std::uint64_t> seeds;
  std::size_t epochs = 1;  // the budget in epochs; 0 when it is in steps or images
  BudgetConfig budget;
  OptimizerConfig optimizer;
  EvaluationConfig evaluation;
  ProbeConfig probe;
  std::string output;
  std::size_t workers = 1;  // cells trained at once (one process)
  // Threads of each cell's BLAS calls and norm kernels (1: the default; results
  // may differ in the last bits with more BLAS threads).
  std::size_t threads_per_cell = 1;
  // Data-parallel cells ("distributed": {"ranks_per_cell": R or [R, ...]}): each
  // value R trains every cell on R MPI ranks, B samples per rank (a global
  // batch of R * B). {1}: one process per cell.
  std::vector<std::size_t> ranks_per_cell = {1};
  nlohmann::json resolved;  // the whole config with defaults filled in
};

// Checks and resolves a config. Errors name the JSON path:
// "optimizer.lr: expected a number, got a string".
ExperimentConfig parse_config(const nlohmann::json& config);

// Reads a config file and applies "--set key.path=value" overrides. A value
// is JSON when it parses as JSON, else a bare word (letters, digits, spaces,
// _ - . /; or nothing) taken as a string; anything else ("[4") is an error
// naming the --set.
nlohmann::json read_config_file(const std::string& path, const std::vector<std::string>& sets);

// read_config_file, parse_config, then check_dataset; an error names the file too:
// "epochs: expected at least 1, got -1 (in CONFIG)".
ExperimentConfig load_config(const std::string& path, const std::vector<std::string>& sets);

// The deepest nesting of lists and objects accepted in any JSON input.
constexpr int kMaxJsonDepth = 64;
// The largest config file (config.json of a run folder included) and the
// longest record line of a .jsonl file, in bytes: read in pieces up to the
// bound, so a larger file (or /dev/zero) is refused before it fills memory.
constexpr std::size_t kMaxConfigBytes = std::size_t(16) << 20;
constexpr std::size_t kMaxRecordBytes = std::size_t(16) << 20;
// The most cells (norms x batch sizes x ranks_per_cell values x seeds) of a grid.
constexpr std::size_t kMaxGridCells = 100000;

// JSON text that does not parse, nests deeper than kMaxJsonDepth or holds a
// number beyond a double (1e400); the message names the source and the line
// (or column).
class JsonInputError : public std::runtime_error {
 public:
  enum class Kind { syntax, too_deep, out_of_range };
  JsonInputError(Kind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// Parses `text` read from `source` (a file name, or an option such as
// "--norm"). Nesting deeper than kMaxJsonDepth is refused while parsing,
// before it can exhaust the stack. `first_line` is the line of the file
// `text` starts on (for one line of a .jsonl file), or 0 when the text is not
// from a file (messages then give a column only). Throws JsonInputError:
// "SOURCE: not valid JSON at line L, column C (what the parser expected)" or
// "SOURCE: nested deeper than 64 levels at line L, column C (...)".
nlohmann::json parse_json(const std::string& text, const std::string& source,
                          std::size_t first_line = 1);

// Why a grid cell does not run ("" when it does): Ghost BN needs a batch size
// that is a multiple of virtual_batch_size and larger than it (at B == V it
// would be plain BatchNorm).
std::string skip_reason(const NormTraits& norm, std::size_t batch_size);

// One point of the grid.
struct Cell {
  std::size_t index = 0;
  nlohmann::json norm;         // the spec as the config gives it (ConfigNorm::spec)
  NormTraits norm_traits;      // set by grid_cells (ConfigNorm::traits)
  std::size_t batch_size = 0;  // per rank
  std::size_t ranks = 1;       // data-parallel ranks training the cell
  std::uint64_t seed = 0;
  // A run of the learning-rate search (optimizer.lr_multipliers): the base
  // rule's rate times lr_multiplier. id() then ends in "/lr_x<multiplier>".
  bool search_run = false;
  double lr_multiplier = 1.0;
  std::string skipped;             // skip_reason(): run_experiment does not train the cell
  std::string norm_label() const;  // "batch", "group(groups=8)"
  std::string row_label() const;   // norm_label(), with " R=2" on 2 ranks: the tables' rows
  std::string id() const;          // "batch/B64/seed0", "sync_batch/B4/R2/seed0"
};
std::vector<Cell> grid_cells(const ExperimentConfig& config);  // skipped cells included
// The learning-rate search's runs of `cell`, one per optimizer.lr_multipliers
// entry (none when the config has no search).
std::vector<Cell> search_runs(const ExperimentConfig& config, const Cell& cell);

// Where a training cell is: called every few steps.
struct CellProgress {
  std::size_t epoch, epochs, step, steps;
  double running_loss;
};
using ProgressFn = std::function<void(const CellProgress&)>;

// Trains and evaluates one cell; returns its result record (test accuracy in
// eval mode, with batch statistics where the norm has them, train loss per
// epoch, wall time, images/s, diverged). A cell with ranks > 1 runs on every
// rank of `group` (of that size; every rank calls train_cell): each takes its
// share of each global batch, in rank order, gradients are averaged over the
// group in one all-reduce per step, and every rank returns the same record.
// Null group: this process alone.
// With a `validation` set, the record's validation_error is the eval-mode
// error on it (what the learning-rate search selects on). `keep`, when given,
// is called with the trained model (unless training diverged) before anything
// evaluates it: the run saves its weights there.
using KeepModelFn = std::function<void(Model<float>&)>;
nlohmann::json train_cell(const ExperimentConfig& config, const Cell& cell, const Dataset& train,
                          const Dataset& test, const ProgressFn& progress,
                          std::shared_ptr<Communicator> group = nullptr,
                          const Dataset* validation = nullptr, const KeepModelFn& keep = nullptr);

// "Precise BN": sets the running statistics of every norm that has them to
// population statistics over `batches` train-mode batches of `batch_size`
// samples of `train` (shuffled by `order_seed`; at most one pass): the mean of
// the batch means and of the unbiased batch variances. Any other running state
// (Batch Renorm's step count) is left as it was. Returns the batches used (0
// when no norm has running statistics).
std::size_t precise_bn(Model<float>& model, const Dataset& train, std::size_t batch_size,
                       std::size_t batches, std::uint64_t order_seed);

// The train and test sets a config asks for, standardized and subset.
std::pair<Dataset, Dataset> load_datasets(const DatasetConfig& config);

// The training set less its validation split, and the split
// (config.validation_size samples at random, fixed by validation_seed; an
// empty split when the size is 0). Throws when the split leaves no training set.
std::pair<Dataset, Dataset> split_validation(const Dataset& train, const DatasetConfig& config);

// Checks, from the file headers alone, that the dataset's IDX files exist, are
// readable and hold train_size and test_size samples; throws naming the file
// and the fix. load_config calls it, so `validate` refuses what `run` would.
void check_dataset(const DatasetConfig& config);

// Builds the model of each norm as run does and passes two images of the
// dataset's size through it, so that every shape error run would meet is met;
// refuses labels beyond the model's outputs (labels must lie in [0, outputs):
// the models have 10) and a largest batch whose activations would not fit in
// this machine's memory. load_config calls it after check_dataset.
void check_model_fits_data(const ExperimentConfig& config);

struct RunOptions {
  std::string out_dir;
  bool fresh = false;
  // When set (by a SIGINT handler, say), the running cells stop at their next
  // progress update and run_experiment throws RunInterrupted; finished cells
  // stay in the folder. In one process only (under mpirun the launcher owns
  // signals).
  const std::atomic<bool>* stop = nullptr;
};
// What run_experiment throws after `stop`: the records kept in `dir`.
struct RunInterrupted : std::runtime_error {
  RunInterrupted(std::size_t kept, std::string dir)
      : std::runtime_error("interrupted"), kept(kept), dir(std::move(dir)) {}
  std::size_t kept;
  std::string dir;
};
// Runs every unfinished cell, appending to out_dir/results.jsonl and rewriting
// out_dir/results.csv after each; prints progress to stderr and the table of
// test error by norm x batch size to stdout. Under mpirun (MPI initialized,
// world_communicator() of K ranks) the cells of each ranks_per_cell value R
// are spread over K / R groups of R ranks that take cells as they become
// free; rank 0 alone writes the folder and prints.
void run_experiment(const ExperimentConfig& config, const RunOptions& options);

// What a result was measured on: normlab, compiler, build type, CPU ("cpu"),
// library versions, and the number of cells run at once (`workers`).
nlohmann::json environment_info(std::size_t workers, std::size_t threads_per_cell = 1);

}  // namespace normlab
