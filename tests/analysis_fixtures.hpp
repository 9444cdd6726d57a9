// Shared by the tests that drive the CLI: tiny synthetic configs and the
// check of a failed command.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_helpers.hpp"

namespace normlab::test {

// mlp2 on 256 synthetic samples, BatchNorm and LayerNorm at B = 32 and 8, one
// epoch: trains in well under a second.
inline nlohmann::json tiny_run_config(const std::string& output) {
  nlohmann::json config = nlohmann::json::parse(R"({
    "name": "tiny",
    "dataset": {"type": "synthetic", "train_size": 256, "test_size": 128, "classes": 4, "seed": 3},
    "model": "mlp2",
    "norms": ["batch", "layer"],
    "batch_sizes": [32, 8],
    "seeds": [0],
    "epochs": 1,
    "optimizer": {"lr": 0.05},
    "evaluation": {"batch_size": 64},
    "probe": {"batches": 20}
  })");
  config["output"] = output;
  return config;
}

// mlp2 on 256 synthetic samples, BatchNorm and no norm at B = 16 and 4, one
// epoch: 4 cells in well under a second.
inline const char* const kTinyConfig = R"({
  "name": "tiny",
  "dataset": {"type": "synthetic", "train_size": 256, "test_size": 128, "classes": 4, "seed": 5},
  "model": "mlp2",
  "norms": ["batch", "none"],
  "batch_sizes": [16, 4],
  "seeds": [0],
  "epochs": 1,
  "optimizer": {"lr": 0.05},
  "evaluation": {"batch_size": 64}
})";

inline nlohmann::json tiny_config() {
  return nlohmann::json::parse(kTinyConfig);
}

inline void write_config(const std::string& path, const nlohmann::json& config) {
  write_bytes(path, config.dump(2));
}

// The command failed (exit 1, or 2 for a usage error) with one stderr line starting "normlab
// COMMAND:" and naming every phrase.
inline void check_cli_failure(const CliResult& result, const std::string& command,
                              const std::vector<std::string>& phrases) {
  INFO("stderr: " << result.err);
  CHECK((result.status == 1 || result.status == 2));
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  CHECK(result.err.rfind("normlab " + command + ": ", 0) == 0);
  check_mentions(result.err, phrases);
}

// check_cli_failure, and also: exactly `status` when given (1, or 2 for a
// usage error), no raw library message, nothing on stdout.
inline void check_clean_failure(const CliResult& result, const std::string& command,
                                const std::vector<std::string>& phrases, int status = 0) {
  INFO("stderr: " << result.err);
  if (status != 0) CHECK(result.status == status);
  CHECK(result.err.find("json.exception") == std::string::npos);
  CHECK(result.err.find("bad_alloc") == std::string::npos);
  CHECK(result.out.empty());
  check_cli_failure(result, command, phrases);
}

}  // namespace normlab::test
