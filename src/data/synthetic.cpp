// A seeded synthetic image set. Each class is a fixed sum of gaussian blobs;
// a sample is its class pattern shifted by a few pixels, with random contrast,
// a class-free distractor blob and gaussian noise, clipped to [0, 1].
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/rng.hpp"
#include "normlab/data.hpp"

namespace normlab {
namespace {

constexpr std::size_t kSide = 28;
constexpr std::size_t kBlobsPerClass = 3;
constexpr int kMaxShift = 2;  // pixels, each axis
constexpr double kContrastLo = 0.5, kContrastHi = 1.0;
constexpr double kNoise = 0.3;  // std of the per-pixel gaussian noise

// Independent generator streams derived from the one seed.
enum Stream : std::uint64_t { kPatternStream = 1, kSampleStream = 2, kLabelStream = 3 };

using Image = std::vector<double>;  // kSide * kSide, row-major

// Adds amplitude * exp(-r^2 / (2 sigma^2)) around (cy, cx), within 3 sigma.
void add_blob(Image& image, double cy, double cx, double sigma, double amplitude) {
  const double reach = 3 * sigma;
  const int y0 = std::max(0, int(std::floor(cy - reach))),
            y1 = std::min(int(kSide) - 1, int(std::ceil(cy + reach)));
  const int x0 = std::max(0, int(std::floor(cx - reach))),
            x1 = std::min(int(kSide) - 1, int(std::ceil(cx + reach)));
  const double inv = 1.0 / (2 * sigma * sigma);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double dy = y - cy, dx = x - cx;
      image[y * kSide + x] += amplitude * std::exp(-(dy * dy + dx * dx) * inv);
    }
}

// Class patterns depend only on (seed, class): sets of any size made from one
// seed share them.
Image class_pattern(std::uint64_t seed, std::size_t label) {
  data::Rng rng(data::mix_seed(seed, kPatternStream, label));
  Image image(kSide * kSide, 0.0);
  for (std::size_t b = 0; b < kBlobsPerClass; ++b) {
    // One draw per statement: the order of a call's arguments is unspecified
    // (g++ and clang differ), and the data must not depend on the compiler.
    // Amplitude before sigma keeps the data of the g++ builds before this fix.
    const double cy = rng.uniform(7, 21), cx = rng.uniform(7, 21);
    const double amplitude = rng.uniform(0.6, 1.0);
    const double sigma = rng.uniform(1.5, 3.0);
    add_blob(image, cy, cx, sigma, amplitude);
  }
  return image;
}

}  // namespace

Dataset make_synthetic(std::size_t count, std::size_t classes, std::uint64_t seed) {
  if (classes < 1 || classes > 256)
    throw std::invalid_argument("make_synthetic: classes must be in [1, 256], got " +
                                std::to_string(classes));
  std::vector<Image> patterns;
  for (std::size_t c = 0; c < classes; ++c) patterns.push_back(class_pattern(seed, c));

  Dataset data;
  data.classes = classes;
  data.labels.resize(count);
  data.images = xt::xarray<float>::from_shape({count, 1, kSide, kSide});
  float* out = data.images.data();
  std::vector<std::size_t> block(classes);
  Image sample(kSide * kSide);
  for (std::size_t i = 0; i < count; ++i) {
    // Labels come in shuffled blocks of one of each class: balanced within
    // one sample at any prefix, and a prefix of a larger set is the smaller set.
    if (i % classes == 0) {
      std::iota(block.begin(), block.end(), std::size_t(0));
      data::Rng order(data::mix_seed(seed, kLabelStream, i / classes));
      for (std::size_t k = classes - 1; k > 0; --k) std::swap(block[k], block[order.below(k + 1)]);
    }
    const std::size_t label = block[i % classes];
    data.labels[i] = std::uint8_t(label);

    data::Rng rng(data::mix_seed(seed, kSampleStream, i));
    const int sy = int(rng.below(2 * kMaxShift + 1)) - kMaxShift;
    const int sx = int(rng.below(2 * kMaxShift + 1)) - kMaxShift;
    const double contrast = rng.uniform(kContrastLo, kContrastHi);
    const Image& pattern = patterns[label];
    for (int y = 0; y < int(kSide); ++y)
      for (int x = 0; x < int(kSide); ++x) {
        const int py = y - sy, px = x - sx;
        const bool inside = py >= 0 && py < int(kSide) && px >= 0 && px < int(kSide);
        sample[y * kSide + x] = inside ? contrast * pattern[py * kSide + px] : 0.0;
      }
    const double dy = rng.uniform(4, 24), dx = rng.uniform(4, 24);
    const double amplitude = rng.uniform(0.3, 0.8);  // before sigma, as in class_pattern
    const double sigma = rng.uniform(1.5, 3.0);
    add_blob(sample, dy, dx, sigma, amplitude);
    float* pixels = out + i * kSide * kSide;
    for (std::size_t p = 0; p < kSide * kSide; ++p)
      pixels[p] = float(std::clamp(sample[p] + kNoise * rng.normal(), 0.0, 1.0));
  }
  return data;
}

}  // namespace normlab
