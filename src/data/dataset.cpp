// Dataset helpers: standardization, subsets and seeded shuffles.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include "data/rng.hpp"
#include "normlab/data.hpp"

namespace normlab {
namespace {

// Forward Fisher-Yates stopped after k swaps: the first k entries are a
// uniform random k-subset in random order, and the same prefix as the full
// shuffle for that seed.
std::vector<std::size_t> shuffled_prefix(std::size_t size, std::size_t k, std::uint64_t seed) {
  std::vector<std::size_t> order(size);
  std::iota(order.begin(), order.end(), std::size_t(0));
  data::Rng rng(seed);
  for (std::size_t i = 0; i < k && i + 1 < size; ++i)
    std::swap(order[i], order[i + rng.below(size - i)]);
  order.resize(k);
  return order;
}

void check_k(const char* what, std::size_t size, std::size_t k) {
  if (k > size)
    throw std::invalid_argument(std::string(what) + ": asked for " + std::to_string(k) +
                                " samples but only " + std::to_string(size) + " are available");
}

}  // namespace

void standardize(Dataset& data, float mean, float std) {
  if (!(std > 0) || !std::isfinite(std) || !std::isfinite(mean))
    throw std::invalid_argument(
        "standardize: std must be positive and finite, mean finite (got mean " +
        std::to_string(mean) + ", std " + std::to_string(std) + ")");
  const float inv = 1.0f / std;
  float* x = data.images.data();
  for (std::size_t i = 0; i < data.images.size(); ++i) x[i] = (x[i] - mean) * inv;
}

Dataset select(const Dataset& data, const std::vector<std::size_t>& indices) {
  const std::size_t n = data.size();
  if (data.images.dimension() == 0 || data.images.shape()[0] != n)
    throw std::invalid_argument("select: dataset has " + std::to_string(n) +
                                " labels but images of another count");
  const std::size_t stride = data.images.size() / std::max<std::size_t>(n, 1);
  auto shape = data.images.shape();
  shape[0] = indices.size();

  Dataset out;
  out.classes = data.classes;
  out.images = xt::xarray<float>::from_shape(shape);
  out.labels.resize(indices.size());
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const std::size_t from = indices[i];
    if (from >= n)
      throw std::out_of_range("select: index " + std::to_string(from) + " out of range for " +
                              std::to_string(n) + " samples");
    std::memcpy(out.images.data() + i * stride, data.images.data() + from * stride,
                stride * sizeof(float));
    out.labels[i] = data.labels[from];
  }
  return out;
}

std::vector<std::size_t> first_k(std::size_t size, std::size_t k) {
  check_k("first_k", size, k);
  std::vector<std::size_t> indices(k);
  std::iota(indices.begin(), indices.end(), std::size_t(0));
  return indices;
}

std::vector<std::size_t> random_k(std::size_t size, std::size_t k, std::uint64_t seed) {
  check_k("random_k", size, k);
  return shuffled_prefix(size, k, seed);
}

std::vector<std::size_t> permutation(std::size_t size, std::uint64_t seed) {
  return shuffled_prefix(size, size, seed);
}

}  // namespace normlab
