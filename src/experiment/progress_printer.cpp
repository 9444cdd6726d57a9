#include "progress_printer.hpp"

#include <unistd.h>
#include <cstdio>

namespace normlab {

using Clock = std::chrono::steady_clock;

ProgressPrinter::ProgressPrinter(std::size_t cells, std::size_t total_images)
    : cells_(cells), total_images_(total_images), terminal_(::isatty(STDERR_FILENO) != 0) {}

std::string ProgressPrinter::eta() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double done = double(finished_images_ + current_images_);
  if (done <= 0 || elapsed < 1) return "ETA --";
  const double left = elapsed * (double(total_images_) - done) / done;
  char text[32];
  std::snprintf(text, sizeof text, "ETA %dm%02ds", int(left) / 60, int(left) % 60);
  return text;
}

void ProgressPrinter::update(std::size_t cell_number, const Cell& cell, const CellProgress& p) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Progress within the running cell(s) is approximated by the last update.
  current_images_ = (p.epoch * p.steps + p.step) * cell.batch_size;
  char line[256];
  std::snprintf(line, sizeof line, "cell %zu/%zu %s  epoch %zu/%zu  step %zu/%zu  loss %.4f  %s",
                cell_number, cells_, cell.id().c_str(), p.epoch + 1, p.epochs, p.step, p.steps,
                p.running_loss, eta().c_str());
  print(line, p.step == p.steps);
}

void ProgressPrinter::cell_done(std::size_t cell_number, const Cell& cell, std::size_t images,
                                const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mutex_);
  finished_images_ += images;
  current_images_ = 0;
  if (terminal_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "cell %zu/%zu %s done: %s\n", cell_number, cells_, cell.id().c_str(),
               outcome.c_str());
}

void ProgressPrinter::print(const std::string& line, bool force) {
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (terminal_) {
    if (since < 0.2 && !force) return;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
  } else {
    if (since < 15 && !force) return;
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
  last_print_ = now;
}

}  // namespace normlab
