// Image classification data: IDX files (MNIST, Fashion-MNIST; gzipped or
// not) and a synthetic dataset made from a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

namespace normlab {

struct Dataset {
  xt::xarray<float> images;          // (N, 1, H, W); pixels in [0, 1] until standardized
  std::vector<std::uint8_t> labels;  // N values in [0, classes)
  std::size_t classes = 10;
  std::size_t size() const { return labels.size(); }
};

// Reads an IDX image file (magic 2051, u8 pixels) and its label file (magic
// 2049). Either may be gzipped (read through zlib). Throws std::runtime_error
// naming the file and the problem: missing, wrong magic, truncated, or image
// and label counts that differ. classes is 10, or max label + 1 if larger.
Dataset load_idx(const std::string& images_path, const std::string& labels_path);

// The number of samples the two files hold, from their headers alone (cheap:
// for checking a config before a run). Throws as load_idx does.
std::size_t count_idx_samples(const std::string& images_path, const std::string& labels_path);

// What load_idx would give, from the headers and the label file alone (no
// pixels are read): the samples, the image size and the classes (10, or the
// largest label + 1 if larger). Throws as load_idx does.
struct IdxSummary {
  std::size_t count = 0, rows = 0, cols = 0, classes = 10;
};
IdxSummary summarize_idx(const std::string& images_path, const std::string& labels_path);

// A seeded synthetic 1x28x28 dataset: each class is a fixed random blob
// pattern; samples are shifted, scaled and noisy copies, so it is learnable
// but not trivial. Same seed, same data. Class patterns depend only on the
// seed, and a smaller set is a prefix of a larger one with the same seed: carve
// train and test out of one set (select) rather than using two seeds.
// Labels come in shuffled blocks of one of each class, so any prefix is balanced.
Dataset make_synthetic(std::size_t count, std::size_t classes, std::uint64_t seed);

// (x - mean) / std in place.
void standardize(Dataset& data, float mean, float std);

// The samples at `indices`, in that order.
Dataset select(const Dataset& data, const std::vector<std::size_t>& indices);

// The first k samples, or k samples chosen by a seeded random permutation (the
// first k of permutation(size, seed), in that order). k > size throws
// std::invalid_argument.
std::vector<std::size_t> first_k(std::size_t size, std::size_t k);
std::vector<std::size_t> random_k(std::size_t size, std::size_t k, std::uint64_t seed);

// A seeded shuffle of 0..size-1 (the same on every platform: own generator,
// no std:: distributions).
std::vector<std::size_t> permutation(std::size_t size, std::uint64_t seed);

}  // namespace normlab
