// `normlab bench --model`: where one training step's time goes, layer by layer.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "normlab/norm.hpp"

namespace normlab::cli {

struct ModelBenchOptions {
  std::string model;             // cnn3 or mlp2
  nlohmann::json norm;           // a norm spec ({"type": "none"}: no norm)
  Layout layout = Layout::nchw;  // of the model's activations
  std::size_t batch = 64;        // images per step
  std::size_t steps = 20;        // timed steps after one warm-up
  unsigned threads = 1;          // engine and BLAS threads
  bool json = false;             // one JSON object instead of the table
};

int bench_model(const ModelBenchOptions& options);

}  // namespace normlab::cli
