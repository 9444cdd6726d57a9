// What every fuzz target shares: the input as a file (the readers take paths),
// and the rule that user errors are exceptions, never crashes.
#pragma once

#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace normlab::fuzz {

// Writes the fuzzer's bytes to a file of this process (in /dev/shm when it
// exists) and returns its path; the same path is reused for every input.
inline std::string as_file(const std::uint8_t* data, std::size_t size, const char* suffix) {
  static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  const std::string path = dir + "/normlab_fuzz_" + std::to_string(getpid()) + "_" + suffix;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

// A small valid experiment config: the grid that the targets reading run
// folders and config overrides fuzz against.
inline const char* const kSmallConfig = R"({
  "name": "fuzz",
  "dataset": {"type": "synthetic", "train_size": 256, "test_size": 128, "classes": 4},
  "model": "mlp2",
  "norms": ["batch", "none"],
  "batch_sizes": [16, 4],
  "seeds": [0]
})";

}  // namespace normlab::fuzz
