// One cell of the grid: train a fresh model with SGD, then evaluate it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "normlab/experiment.hpp"
#include "normlab/layers.hpp"
#include "normlab/model.hpp"
#include "train_model.hpp"

namespace normlab {

void gather(const Dataset& data, const std::vector<std::size_t>& order, std::size_t first,
            xt::xarray<float>& images, std::vector<std::uint8_t>& labels) {
  const std::size_t batch = images.shape(0), pixels = images.size() / batch;
  for (std::size_t i = 0; i < batch; ++i) {
    const std::size_t sample = order[first + i];
    std::copy_n(data.images.data() + sample * pixels, pixels, images.data() + i * pixels);
    labels[i] = data.labels[sample];
  }
}

namespace {

using Clock = std::chrono::steady_clock;

std::size_t correct(const xt::xarray<float>& logits, const std::vector<std::uint8_t>& labels) {
  const std::size_t classes = logits.shape(1);
  std::size_t right = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float* row = logits.data() + i * classes;
    right += std::size_t(std::max_element(row, row + classes) - row) == labels[i];
  }
  return right;
}

// Accuracy over `data` in batches of `batch`; with drop_last the incomplete
// last batch is skipped (train-mode statistics need full batches). Nothing
// evaluated (no full batch) is nullopt: not measured, never 0.
std::optional<double> accuracy(Model<float>& model, const Dataset& data, std::size_t batch,
                               Mode mode, bool drop_last) {
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const std::vector<std::size_t> sample_shape(data.images.shape().begin() + 1,
                                              data.images.shape().end());
  std::size_t right = 0, seen = 0;
  for (std::size_t first = 0; first < data.size(); first += batch) {
    const std::size_t n = std::min(batch, data.size() - first);
    if (n < batch && drop_last) break;
    std::vector<std::size_t> shape = {n};
    shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
    xt::xarray<float> images = xt::empty<float>(shape);
    std::vector<std::uint8_t> labels(n);
    gather(data, order, first, images, labels);
    right += correct(model.forward(images, mode), labels);
    seen += n;
  }
  if (seen == 0) return std::nullopt;
  return double(right) / double(seen);
}

// The running state of every norm of a model, to put back after train-mode
// forwards that are not training.
using NormStates = std::vector<std::map<std::string, xt::xarray<float>>>;

NormStates save_states(Model<float>& model) {
  NormStates saved;
  for (Norm<float>* norm : model.norms()) {
    saved.emplace_back();
    for (const std::string& name : norm->state_names()) saved.back()[name] = norm->state(name);
  }
  return saved;
}

void restore_states(Model<float>& model, const NormStates& saved) {
  std::size_t i = 0;
  for (Norm<float>* norm : model.norms()) {
    for (const auto& [name, value] : saved[i]) norm->set(name, value);
    ++i;
  }
}

// Test accuracy with batch statistics at the training batch size: the
// train/test discrepancy. Running statistics are restored afterwards.
// Null when the test set holds no full batch of `batch`.
nlohmann::json batch_stats_accuracy(Model<float>& model, const Dataset& test, std::size_t batch) {
  const NormStates saved = save_states(model);
  const std::optional<double> acc = accuracy(model, test, batch, Mode::train, /*drop_last=*/true);
  restore_states(model, saved);
  return acc ? nlohmann::json(*acc) : nlohmann::json(nullptr);
}

bool has_running_stats(const Norm<float>& norm) {
  const std::vector<std::string> names = norm.state_names();
  return std::find(names.begin(), names.end(), "running_mean") != names.end();
}

}  // namespace

const std::vector<std::string>& batch_statistics_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> names;
    for (const NormInfo& info : registered_norms())
      if (info.traits.batch_statistics) names.push_back(info.type);
    return names;
  }();
  return types;
}

std::size_t precise_bn(Model<float>& model, const Dataset& train, std::size_t batch_size,
                       std::size_t batches, std::uint64_t order_seed) {
  std::vector<Norm<float>*> norms;
  for (Norm<float>* norm : model.norms())
    if (has_running_stats(*norm)) norms.push_back(norm);
  const std::size_t used = std::min(batches, train.size() / batch_size);
  if (norms.empty() || used == 0) return 0;

  // Each layer sees the train-mode output of the layers below it, as the
  // running averages did during training.
  const NormStates saved = save_states(model);
  std::vector<BatchStatistics> sums(norms.size());
  const std::vector<std::size_t> order = permutation(train.size(), order_seed);
  std::vector<std::size_t> shape = {batch_size};
  shape.insert(shape.end(), train.images.shape().begin() + 1, train.images.shape().end());
  xt::xarray<float> images = xt::empty<float>(shape);
  std::vector<std::uint8_t> labels(batch_size);
  for (std::size_t k = 0; k < used; ++k) {
    gather(train, order, k * batch_size, images, labels);
    model.forward(images, Mode::train);
    for (std::size_t i = 0; i < norms.size(); ++i) {
      const BatchStatistics& batch = norms[i]->batch_statistics();
      sums[i].mean.resize(batch.mean.size(), 0.0);
      sums[i].var.resize(batch.var.size(), 0.0);
      for (std::size_t c = 0; c < batch.mean.size(); ++c) {
        sums[i].mean[c] += batch.mean[c];
        sums[i].var[c] += batch.var[c];
      }
    }
  }
  restore_states(model, saved);
  for (std::size_t i = 0; i < norms.size(); ++i) {
    const std::size_t channels = sums[i].mean.size();
    xt::xarray<float> mean = xt::xarray<float>::from_shape({channels});
    xt::xarray<float> var = xt::xarray<float>::from_shape({channels});
    for (std::size_t c = 0; c < channels; ++c) {
      mean(c) = float(sums[i].mean[c] / double(used));
      var(c) = float(sums[i].var[c] / double(used));
    }
    norms[i]->set("running_mean", mean);
    norms[i]->set("running_var", var);
  }
  return used;
}

double eval_accuracy(Model<float>& model, const Dataset& data, std::size_t batch) {
  if (data.size() == 0) throw std::invalid_argument("cannot evaluate on an empty data set");
  return *accuracy(model, data, batch, Mode::eval, /*drop_last=*/false);
}

Model<float> train_model(const ExperimentConfig& config, const Cell& cell, const Dataset& train,
                         const ProgressFn& progress, TrainingLog& log,
                         const std::shared_ptr<Communicator>& group_or_null) {
  const std::shared_ptr<Communicator> group =
      group_or_null ? group_or_null : single_process_communicator();
  if (std::size_t(group->size()) != cell.ranks)
    throw std::invalid_argument("cell " + cell.id() + " trains on " + std::to_string(cell.ranks) +
                                " ranks but its group has " + std::to_string(group->size()));
  // SyncBatchNorm layers take the group as they are built.
  Model<float> model = [&] {
    CommunicatorScope scope(group);
    return build_model<float>(config.model, cell.norm, config.activation_layout);
  }();
  model.initialize(cell.seed);
  Sgd<float> sgd(model.parameters(), config.optimizer.momentum, config.optimizer.weight_decay);
  const std::vector<ParameterRef<float>> parameters = model.parameters();

  // Each global batch of ranks * B samples is cut in rank order: R ranks at B
  // see exactly the samples one process sees at R * B.
  const std::size_t batch = cell.batch_size, global_batch = cell.ranks * batch;
  const std::size_t share = std::size_t(group->rank()) * batch;
  const std::size_t steps = train.size() / global_batch;  // the incomplete last batch is dropped
  if (steps == 0)  // parse_config catches this unless the dataset size is only known now
    throw std::invalid_argument("batch size " + std::to_string(global_batch) +
                                " is larger than the " + std::to_string(train.size()) +
                                " training samples");
  log.steps_per_epoch = steps;
  // The budget in optimizer steps; the last epoch may be cut short.
  const std::size_t total_steps = config.budget.steps(steps, global_batch);
  if (total_steps == 0)
    throw std::invalid_argument("cell " + cell.id() + ": a budget of " + config.budget.text() +
                                " is less than one batch of " + std::to_string(global_batch));
  log.total_steps = total_steps;
  const std::size_t epochs = (total_steps + steps - 1) / steps;
  std::vector<std::size_t> batch_shape = {batch};
  batch_shape.insert(batch_shape.end(), train.images.shape().begin() + 1,
                     train.images.shape().end());
  xt::xarray<float> images = xt::empty<float>(batch_shape), dlogits;
  std::vector<std::uint8_t> labels(batch);
  const double communication_before = group->collective_seconds();

  // A few points per epoch whatever B is, so curves of different B line up.
  const std::size_t window = std::max<std::size_t>(1, steps / kLossCurvePointsPerEpoch);
  log.loss_curve = {{"epoch", nlohmann::json::array()}, {"loss", nlohmann::json::array()}};
  for (std::size_t epoch = 0; epoch < epochs && !log.diverged; ++epoch) {
    const std::vector<std::size_t> order =
        permutation(train.size(), cell.seed * 1000003ULL + epoch);
    const auto epoch_start = Clock::now();
    double loss_sum = 0, window_sum = 0;
    std::size_t window_steps = 0;
    const std::size_t epoch_steps = std::min(steps, total_steps - epoch * steps);
    log.epochs_started = epoch + 1;
    for (std::size_t step = 0; step < epoch_steps; ++step) {
      const double lr =
          cell.lr_multiplier *
          config.optimizer.lr_at_step(epoch * steps + step, total_steps, steps, global_batch);
      gather(train, order, step * global_batch + share, images, labels);
      sgd.zero_grad();
      double loss = softmax_cross_entropy(model.forward(images, Mode::train), labels, dlogits);
      model.backward(dlogits);
      // One all-reduce: the gradients and the loss, averaged (the same on every rank).
      average_gradients(parameters, *group, &loss, 1);
      if (!std::isfinite(loss)) {
        log.diverged = true;
        log.diverged_at = {{"epoch", epoch}, {"step", step}};
        break;
      }
      sgd.step(lr);
      loss_sum += loss;
      window_sum += loss;
      log.images_seen += batch;
      if (++window_steps == window || step + 1 == epoch_steps) {
        log.loss_curve["epoch"].push_back(double(epoch) + double(step + 1) / double(steps));
        log.loss_curve["loss"].push_back(window_sum / double(window_steps));
        window_sum = 0;
        window_steps = 0;
      }
      if (progress && (step % 50 == 0 || step + 1 == epoch_steps))
        progress({epoch, epochs, step + 1, epoch_steps, loss_sum / double(step + 1)});
    }
    log.train_seconds += std::chrono::duration<double>(Clock::now() - epoch_start).count();
    if (!log.diverged) log.epoch_losses.push_back(loss_sum / double(epoch_steps));
  }
  log.communication_seconds = group->collective_seconds() - communication_before;
  return model;
}

nlohmann::json train_cell(const ExperimentConfig& config, const Cell& cell, const Dataset& train,
                          const Dataset& test, const ProgressFn& progress,
                          std::shared_ptr<Communicator> group, const Dataset* validation,
                          const KeepModelFn& keep) {
  const auto start = Clock::now();
  TrainingLog log;
  Model<float> model = train_model(config, cell, train, progress, log, group);
  if (keep && !log.diverged) keep(model);  // as trained: before precise BN changes it
  const std::size_t batch = cell.batch_size;
  nlohmann::json result = {{"cell", cell.id()},
                           {"index", cell.index},
                           {"model", config.model},
                           {"norm", cell.row_label()},
                           {"norm_spec", cell.norm},
                           {"batch_size", batch},
                           {"ranks", cell.ranks},
                           {"global_batch_size", cell.ranks * batch},
                           {"seed", cell.seed},
                           {"epochs", config.epochs},
                           {"lr", config.optimizer.lr_at(0, cell.ranks * batch)},
                           {"steps_per_epoch", log.steps_per_epoch},
                           {"train_loss", log.epoch_losses},
                           {"loss_curve", log.loss_curve},
                           {"diverged", log.diverged},
                           {"diverged_at", log.diverged_at},
                           {"test_accuracy", nullptr},
                           {"test_error", nullptr},
                           {"test_accuracy_batch_stats", nullptr}};
  result["classes"] = test.classes;  // for the failure rule (seed_statistics.hpp)
  // New keys only when their options are on, so that records read as before.
  if (config.budget.unit != BudgetConfig::Unit::epochs) {
    result["budget"] = config.budget.text();
    result["steps"] = log.total_steps;
    result["epochs"] = double(log.total_steps) / double(log.steps_per_epoch);
  }
  if (cell.search_run) {
    result["lr_multiplier"] = cell.lr_multiplier;
    result["lr"] = cell.lr_multiplier * result["lr"].get<double>();
  }
  const bool validating = validation && validation->size() > 0;
  if (validating) result["validation_error"] = nullptr;
  const std::size_t precise_batches = config.evaluation.precise_bn_batches;
  if (precise_batches > 0) {
    result["test_accuracy_precise_bn"] = nullptr;
    result["test_error_precise_bn"] = nullptr;
    result["precise_bn_batches"] = 0;
  }
  // Every rank of a group evaluates the same test set with its own model (the
  // weights are the same on every rank; unsynchronized BatchNorm's running
  // statistics are the rank's own, and the group's first rank reports). With
  // several ranks, train-mode evaluations (batch statistics, precise BN) are
  // not measured: their batches would have to be split over the ranks too.
  if (!log.diverged) {
    const double acc = eval_accuracy(model, test, config.evaluation.batch_size);
    result["test_accuracy"] = acc;
    result["test_error"] = 1.0 - acc;
    if (validating)
      result["validation_error"] =
          1.0 - eval_accuracy(model, *validation, config.evaluation.batch_size);
    const bool one_rank = cell.ranks == 1;
    if (config.evaluation.batch_stats_accuracy && cell.norm_traits.batch_statistics && one_rank)
      result["test_accuracy_batch_stats"] = batch_stats_accuracy(model, test, batch);
    // Last: it replaces the running statistics. Its batches are the shuffle an
    // epoch after the last one would use.
    const std::size_t used = precise_batches > 0 && one_rank
                                 ? precise_bn(model, train, batch, precise_batches,
                                              cell.seed * 1000003ULL + log.epochs_started)
                                 : 0;
    if (used > 0) {
      const double precise = eval_accuracy(model, test, config.evaluation.batch_size);
      result["test_accuracy_precise_bn"] = precise;
      result["test_error_precise_bn"] = 1.0 - precise;
      result["precise_bn_batches"] = used;
    }
  }
  const double seconds = log.train_seconds;
  result["train_seconds"] = seconds;
  // Images of the whole group per second.
  // Rates over no measured time are not measured (null), not 0.
  result["train_images_per_second"] =
      seconds > 0 ? nlohmann::json(double(log.images_seen * cell.ranks) / seconds) : nullptr;
  if (cell.ranks > 1) {
    result["communication_seconds"] = log.communication_seconds;
    result["communication_share"] =
        seconds > 0 ? nlohmann::json(log.communication_seconds / seconds) : nullptr;
  }
  result["wall_seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace normlab
