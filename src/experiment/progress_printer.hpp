// Progress on stderr: one updating line on a terminal, plain periodic lines
// otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>

#include "normlab/experiment.hpp"

namespace normlab {

class ProgressPrinter {
 public:
  // total_images: training images over all cells to run, for the ETA.
  ProgressPrinter(std::size_t cells, std::size_t total_images);
  void update(std::size_t cell_number, const Cell& cell, const CellProgress& p);
  void cell_done(std::size_t cell_number, const Cell& cell, std::size_t images,
                 const std::string& outcome);

 private:
  void print(const std::string& line, bool force);
  std::string eta() const;
  std::mutex mutex_;
  const std::size_t cells_, total_images_;
  std::size_t finished_images_ = 0, current_images_ = 0;
  const bool terminal_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_print_{};
};

}  // namespace normlab
