// libFuzzer target: experiment configs, from text through JSON parsing to
// validation (parse_config), as `normlab validate` takes them.
#include <cstdint>
#include <stdexcept>

#include "fuzz_input.hpp"
#include "normlab/experiment.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = normlab::fuzz::as_file(data, size, "config.json");
  try {
    (void)normlab::parse_config(normlab::read_config_file(path, {}));
  } catch (const std::exception&) {
  }
  return 0;
}
