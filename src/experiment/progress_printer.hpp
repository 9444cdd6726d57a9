// Progress on stderr: on a terminal one line redrawn in place and cut to the
// terminal's width; otherwise (logs, CI) plain lines, one per update shown.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "normlab/experiment.hpp"

namespace normlab {

// The columns of the terminal on `fd`: TIOCGWINSZ, else $COLUMNS, else 80.
std::size_t terminal_width(int fd);

// `line` + `end` in at most `width` - 1 columns (the last column would wrap
// on some terminals): `end` (the ETA) is kept whole; `shrinkable`, a part of
// `line` (the cell id), loses its middle first, then `line` its end.
std::string fit_to_width(const std::string& line, const std::string& shrinkable, std::size_t width,
                         const std::string& end = "");

// The time left, from the measured cost of a training step: steps of
// different batch sizes cost differently (a step at B=2 is not 1/32 of one at
// B=64), so the seconds per step are kept per (B, ranks), and a batch size not
// measured yet is estimated per image from the nearest one that is.
class EtaEstimator {
 public:
  struct Work {
    std::size_t batch_size, ranks, steps;  // steps over all epochs
  };
  // `cells` the cells to run, in the order given to update/finish by index;
  // `parallel` how many run at once.
  EtaEstimator(std::vector<Work> cells, std::size_t parallel);
  // Cell `i` has done `steps` steps in `seconds` since it started.
  void update(std::size_t i, std::size_t steps, double seconds);
  void finish(std::size_t i, double seconds);
  // Seconds left; negative when nothing is measured yet.
  double seconds_left() const;

 private:
  struct Cost {
    double seconds = 0, steps = 0;
  };
  double seconds_per_step(std::size_t batch_size, std::size_t ranks) const;
  Cost measured(std::size_t batch_size, std::size_t ranks) const;
  std::vector<Work> cells_;
  std::vector<std::size_t> done_;  // steps done per cell
  std::vector<bool> finished_;
  std::vector<Cost> running_;  // per cell: its measurement so far
  std::map<std::pair<std::size_t, std::size_t>, Cost> finished_cost_;  // by (B, ranks)
  std::size_t parallel_;
};

class ProgressPrinter {
 public:
  // `pending` the cells to run (grid order), `cells` the size of the grid,
  // `steps` of each pending cell over its budget; `parallel` cells run at once.
  ProgressPrinter(std::size_t cells, const std::vector<Cell>& pending,
                  const std::vector<std::size_t>& steps, std::size_t parallel,
                  std::FILE* out = stderr);
  // For tests: as if `out` were a terminal of `width` columns (0: not one).
  void pretend_terminal(std::size_t width) { width_ = width, terminal_ = width > 0; }
  void update(const Cell& cell, const CellProgress& p);
  // The cell took `seconds` (its record's wall_seconds) to `outcome`.
  void cell_done(const Cell& cell, double seconds, const std::string& outcome);
  // Ends a line drawn in place (before an interruption's message).
  void finish_line();

 private:
  std::size_t position(const Cell& cell) const;  // among the pending cells
  void print(const std::string& line, const std::string& id, bool force);
  std::string eta() const;
  std::mutex mutex_;
  std::FILE* out_;
  const std::size_t cells_;
  std::vector<std::size_t> pending_index_;                      // grid index of each pending cell
  std::vector<std::chrono::steady_clock::time_point> started_;  // first update per cell
  EtaEstimator eta_;
  bool terminal_;
  std::size_t width_;
  bool line_open_ = false;  // a line drawn in place and not ended
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_print_{};
};

}  // namespace normlab
