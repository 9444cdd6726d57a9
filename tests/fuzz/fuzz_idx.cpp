// libFuzzer target: the IDX reader (MNIST files), plain and gzipped. The
// first byte chooses which of the two files the input is; the other is valid.
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_input.hpp"
#include "normlab/data.hpp"

namespace {
// A valid IDX label file of `count` labels (magic 2049, big-endian count).
std::vector<std::uint8_t> labels(std::uint32_t count) {
  std::vector<std::uint8_t> bytes = {0,
                                     0,
                                     8,
                                     1,
                                     std::uint8_t(count >> 24),
                                     std::uint8_t(count >> 16),
                                     std::uint8_t(count >> 8),
                                     std::uint8_t(count)};
  for (std::uint32_t i = 0; i < count; ++i) bytes.push_back(std::uint8_t(i % 10));
  return bytes;
}
// A valid IDX image file of `count` 2x2 images (magic 2051).
std::vector<std::uint8_t> images(std::uint32_t count) {
  std::vector<std::uint8_t> bytes = {0, 0, 8, 3, 0, 0, 0, std::uint8_t(count),
                                     0, 0, 0, 2, 0, 0, 0, 2};
  bytes.resize(bytes.size() + 4 * count, 7);
  return bytes;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool fuzz_images = data[0] & 1;
  const std::string fuzzed = normlab::fuzz::as_file(data + 1, size - 1, "fuzzed");
  const std::vector<std::uint8_t> other = fuzz_images ? labels(3) : images(3);
  const std::string valid = normlab::fuzz::as_file(other.data(), other.size(), "valid");
  try {
    if (fuzz_images)
      (void)normlab::load_idx(fuzzed, valid);
    else
      (void)normlab::load_idx(valid, fuzzed);
  } catch (const std::exception&) {
  }
  return 0;
}
