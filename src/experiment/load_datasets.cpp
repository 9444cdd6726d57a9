// The train and test sets of a config: IDX files or synthetic, subset and
// standardized.
#include <filesystem>
#include <stdexcept>
#include <tuple>

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

void check_dataset(const DatasetConfig& config) {
  if (config.type == "synthetic") return;  // made from its seed: always there
  for (const auto& [prefix, size, what] : {std::tuple{"train", config.train_size, "train_size"},
                                           std::tuple{"t10k", config.test_size, "test_size"}}) {
    const std::string images = idx_file(config.path, std::string(prefix) + "-images-idx3-ubyte");
    const std::string labels = idx_file(config.path, std::string(prefix) + "-labels-idx1-ubyte");
    const std::size_t available = count_idx_samples(images, labels);
    if (size > 0 && std::size_t(size) > available)
      throw std::invalid_argument(std::string("dataset.") + what + ": " + std::to_string(size) +
                                  " asked but " + images + " holds only " +
                                  std::to_string(available));
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
