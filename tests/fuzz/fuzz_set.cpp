// libFuzzer target: one `--set key.path=value` assignment applied to a small
// config, then validation (parse_config), as `normlab validate CONFIG --set`
// takes it: key paths, JSON or bare-word values, UTF-8, nesting.
#include <cstdint>
#include <fstream>
#include <stdexcept>

#include "fuzz_input.hpp"
#include "normlab/experiment.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string config_path = [] {
    const std::uint8_t* text = reinterpret_cast<const std::uint8_t*>(normlab::fuzz::kSmallConfig);
    return normlab::fuzz::as_file(text, std::char_traits<char>::length(normlab::fuzz::kSmallConfig),
                                  "base.json");
  }();
  const std::string assignment(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json config = normlab::read_config_file(config_path, {assignment});
    (void)normlab::parse_config(config).resolved.dump();  // what run writes must be writable
  } catch (const std::exception&) {
  }
  return 0;
}
