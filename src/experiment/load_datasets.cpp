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

}  // namespace normlab
