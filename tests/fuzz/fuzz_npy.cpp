// libFuzzer target: the .npy reader. Any bytes must load or throw a
// std::exception naming the problem; never crash, hang or over-allocate.
#include <cstdint>
#include <stdexcept>

#include "fuzz_input.hpp"
#include "normlab/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = normlab::fuzz::as_file(data, size, "x.npy");
  try {
    if (normlab::npy_dtype(path) == normlab::DType::float32)
      (void)normlab::load_npy<float>(path);
    else
      (void)normlab::load_npy<double>(path);
  } catch (const std::exception&) {
  }
  return 0;
}
