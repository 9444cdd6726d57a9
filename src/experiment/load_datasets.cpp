// The train and test sets of a config: IDX files or synthetic, subset and
// standardized.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <tuple>

#include <xtensor/xbuilder.hpp>

#include "normlab/experiment.hpp"

namespace normlab {
namespace {

// "train-images-idx3-ubyte" in `folder`, gzipped or not.
std::string idx_file(const std::string& folder, const std::string& stem) {
  for (const char* suffix : {".gz", ""}) {
    const std::filesystem::path candidate = std::filesystem::path(folder) / (stem + suffix);
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  throw std::runtime_error(folder + ": no " + stem +
                           "[.gz] there (dataset.path must be the folder "
                           "holding the IDX files; Debian: apt-get install dataset-fashion-mnist)");
}

Dataset take(const Dataset& full, long long size, const DatasetConfig& config, const char* what) {
  if (size < 0 || std::size_t(size) == full.size()) return full;
  if (std::size_t(size) > full.size())
    throw std::invalid_argument(std::string("dataset.") + what + ": " + std::to_string(size) +
                                " asked but only " + std::to_string(full.size()) + " available");
  return select(full, config.subset == "random"
                          ? random_k(full.size(), std::size_t(size), config.subset_seed)
                          : first_k(full.size(), std::size_t(size)));
}

}  // namespace

namespace {

// What a config's data will be, from the IDX headers and labels alone.
struct DataShape {
  std::size_t train = 0, test = 0, rows = 28, cols = 28, classes = 10;
};

DataShape data_shape(const DatasetConfig& config) {
  DataShape shape;
  if (config.type == "synthetic") {  // made from its seed: always there, 1x28x28
    shape.train = std::size_t(config.train_size);
    shape.test = std::size_t(config.test_size);
    shape.classes = config.classes;
    return shape;
  }
  for (const auto& [prefix, size, what] : {std::tuple{"train", config.train_size, "train_size"},
                                           std::tuple{"t10k", config.test_size, "test_size"}}) {
    const std::string images = idx_file(config.path, std::string(prefix) + "-images-idx3-ubyte");
    const std::string labels = idx_file(config.path, std::string(prefix) + "-labels-idx1-ubyte");
    const IdxSummary idx = summarize_idx(images, labels);
    if (size > 0 && std::size_t(size) > idx.count)
      throw std::invalid_argument(std::string("dataset.") + what + ": " + std::to_string(size) +
                                  " asked but " + images + " holds only " +
                                  std::to_string(idx.count));
    if (std::string(prefix) == "t10k" && (idx.rows != shape.rows || idx.cols != shape.cols))
      throw std::invalid_argument(images + ": " + std::to_string(idx.rows) + "x" +
                                  std::to_string(idx.cols) + " images, but the train images are " +
                                  std::to_string(shape.rows) + "x" + std::to_string(shape.cols));
    (std::string(prefix) == "train" ? shape.train : shape.test) =
        size > 0 ? std::size_t(size) : idx.count;
    shape.rows = idx.rows;
    shape.cols = idx.cols;
    shape.classes = std::max(shape.classes, idx.classes);
  }
  return shape;
}

double machine_memory_bytes() {
  return double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGESIZE));
}

std::string mib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f MiB", std::ceil(bytes / double(1 << 20)));
  return text;
}

// Refuses an estimate beyond this machine's memory: "WHAT needs about N MiB, more
// than this machine's memory (M MiB); FIX".
void check_memory(double bytes, const std::string& what, const std::string& fix) {
  const double memory = machine_memory_bytes();
  if (memory > 0 && bytes > memory)
    throw std::invalid_argument(what + " needs about " + mib(bytes) +
                                ", more than this machine's memory (" + mib(memory) + "); " + fix);
}

}  // namespace

void check_dataset(const DatasetConfig& config) {
  const DataShape shape = data_shape(config);
  // Pixels as floats; loading and subsetting hold a set twice for a moment.
  const double bytes =
      2.0 * double(shape.train + shape.test) * double(shape.rows * shape.cols) * sizeof(float);
  check_memory(bytes,
               "dataset: " + std::to_string(shape.train) + " train and " +
                   std::to_string(shape.test) + " test images of " + std::to_string(shape.rows) +
                   "x" + std::to_string(shape.cols),
               "use a smaller train_size or test_size");
}

void check_model_fits_data(const ExperimentConfig& config) {
  const DataShape shape = data_shape(config.dataset);
  const std::size_t largest_batch =
      std::max(*std::max_element(config.batch_sizes.begin(), config.batch_sizes.end()),
               std::min(config.evaluation.batch_size, shape.test));
  for (std::size_t i = 0; i < config.norms.size(); ++i) {
    const std::string path = "norms[" + std::to_string(i) + "]";
    // The model run builds, on two images of the dataset's size: every shape
    // error run would meet (a LayerNorm normalized_shape, an image size the
    // model does not take) is met here.
    Model<float> model =
        build_model<float>(config.model, config.norms[i].spec, config.activation_layout);
    model.initialize(0);
    xt::xarray<float> x =
        xt::zeros<float>({std::size_t(2), std::size_t(1), shape.rows, shape.cols});
    double floats_per_sample = double(x.size()) / 2;
    // Each layer's output stays where the layer keeps it: a residual fork
    // reads its input again at the join, so nothing is overwritten in between.
    const xt::xarray<float>* h = &x;
    try {
      for (std::size_t layer = 0; layer < model.size(); ++layer) {
        h = &model.forward_range(*h, Mode::eval, layer, layer + 1);
        floats_per_sample += double(h->size()) / 2;
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(path + ": " + e.what() + " (" + config.model + " on the " +
                                  std::to_string(shape.rows) + "x" + std::to_string(shape.cols) +
                                  " images of the dataset)");
    }
    const std::size_t outputs = h->shape().back();
    if (shape.classes > outputs)
      throw std::invalid_argument(
          std::string(config.dataset.type == "synthetic" ? "dataset.classes: "
                                                         : "dataset: labels up to ") +
          std::to_string(config.dataset.type == "synthetic" ? shape.classes : shape.classes - 1) +
          (config.dataset.type == "synthetic" ? " classes" : "") + ", but " + config.model +
          " has " + std::to_string(outputs) + " outputs (labels must lie in [0, " +
          std::to_string(outputs) + "): use a dataset of at most " + std::to_string(outputs) +
          " classes)");
    // Activations, their gradients and the inputs kept for backward.
    check_memory(3.0 * floats_per_sample * double(largest_batch) * sizeof(float),
                 config.model + " with a batch of " + std::to_string(largest_batch),
                 "use smaller batch_sizes or evaluation.batch_size");
  }
}

std::pair<Dataset, Dataset> load_datasets(const DatasetConfig& config) {
  Dataset train, test;
  if (config.type == "synthetic") {
    // One generator call so train and test come from the same class patterns.
    const std::size_t total = std::size_t(config.train_size + config.test_size);
    const Dataset all = make_synthetic(total, config.classes, config.seed);
    std::vector<std::size_t> train_idx, test_idx;
    for (std::size_t i = 0; i < total; ++i)
      (i < std::size_t(config.train_size) ? train_idx : test_idx).push_back(i);
    train = select(all, train_idx);
    test = select(all, test_idx);
  } else {
    train = take(load_idx(idx_file(config.path, "train-images-idx3-ubyte"),
                          idx_file(config.path, "train-labels-idx1-ubyte")),
                 config.train_size, config, "train_size");
    test = take(load_idx(idx_file(config.path, "t10k-images-idx3-ubyte"),
                         idx_file(config.path, "t10k-labels-idx1-ubyte")),
                config.test_size, config, "test_size");
  }
  standardize(train, float(config.mean), float(config.std));
  standardize(test, float(config.mean), float(config.std));
  return {std::move(train), std::move(test)};
}

std::pair<Dataset, Dataset> split_validation(const Dataset& train, const DatasetConfig& config) {
  const std::size_t size = std::size_t(config.validation_size);
  if (size == 0) return {train, Dataset{{}, {}, train.classes}};
  if (size >= train.size())
    throw std::invalid_argument("dataset.validation_size: " + std::to_string(size) +
                                " asked but the training set holds only " +
                                std::to_string(train.size()) +
                                " samples (the cells train on the "
                                "rest: ask for fewer)");
  const std::vector<std::size_t> held_out = random_k(train.size(), size, config.validation_seed);
  std::vector<bool> in_validation(train.size(), false);
  for (std::size_t i : held_out) in_validation[i] = true;
  std::vector<std::size_t> rest;
  for (std::size_t i = 0; i < train.size(); ++i)
    if (!in_validation[i]) rest.push_back(i);
  Dataset validation = select(train, held_out), remaining = select(train, rest);
  validation.classes = remaining.classes = train.classes;
  return {std::move(remaining), std::move(validation)};
}

}  // namespace normlab
