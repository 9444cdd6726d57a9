#include "progress_printer.hpp"

#include <sys/ioctl.h>
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace normlab {

using Clock = std::chrono::steady_clock;

std::size_t terminal_width(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long value = std::strtol(columns, &end, 10);
    if (end != columns && *end == '\0' && value > 0 && value <= 100000) return std::size_t(value);
  }
  return 80;
}

std::string fit_to_width(const std::string& line, const std::string& shrinkable, std::size_t width,
                         const std::string& end) {
  const std::size_t room = std::max<std::size_t>(width, 2) - 1;
  if (line.size() + end.size() <= room) return line + end;
  if (end.size() >= room) return (line + end).substr(0, room);  // no room for `end` alone
  const std::size_t line_room = room - end.size();
  std::string fitted = line;
  const std::size_t at = shrinkable.empty() ? std::string::npos : line.find(shrinkable);
  constexpr std::size_t kShortest = 12;  // of the shrunk part, ".." included
  if (at != std::string::npos && shrinkable.size() > kShortest) {
    const std::size_t excess = line.size() - line_room;
    const std::size_t length =
        std::max(kShortest, shrinkable.size() - std::min(excess, shrinkable.size()));
    const std::size_t keep = length - 2, tail = keep / 2, head = keep - tail;
    fitted.replace(at, shrinkable.size(),
                   shrinkable.substr(0, head) + ".." + shrinkable.substr(shrinkable.size() - tail));
  }
  if (fitted.size() > line_room) fitted.resize(line_room);
  return fitted + end;
}

EtaEstimator::EtaEstimator(std::vector<Work> cells, std::size_t parallel)
    : cells_(std::move(cells)),
      done_(cells_.size(), 0),
      finished_(cells_.size(), false),
      running_(cells_.size()),
      parallel_(std::max<std::size_t>(parallel, 1)) {}

void EtaEstimator::update(std::size_t i, std::size_t steps, double seconds) {
  done_.at(i) = std::min(steps, cells_[i].steps);
  running_[i] = {seconds, double(steps)};
}

void EtaEstimator::finish(std::size_t i, double seconds) {
  if (finished_.at(i)) return;
  finished_[i] = true;
  done_[i] = cells_[i].steps;
  running_[i] = {};
  Cost& cost = finished_cost_[{cells_[i].batch_size, cells_[i].ranks}];
  cost.seconds += seconds;
  cost.steps += double(cells_[i].steps);
}

EtaEstimator::Cost EtaEstimator::measured(std::size_t batch_size, std::size_t ranks) const {
  Cost total;
  if (const auto it = finished_cost_.find({batch_size, ranks}); it != finished_cost_.end())
    total = it->second;
  for (std::size_t i = 0; i < cells_.size(); ++i)
    if (!finished_[i] && cells_[i].batch_size == batch_size && cells_[i].ranks == ranks &&
        running_[i].steps > 0)
      total.seconds += running_[i].seconds, total.steps += running_[i].steps;
  return total;
}

double EtaEstimator::seconds_per_step(std::size_t batch_size, std::size_t ranks) const {
  const Cost own = measured(batch_size, ranks);
  if (own.steps > 0) return own.seconds / own.steps;
  // Not measured: per image, from the measured global batch nearest (in ratio).
  const double global = double(batch_size * ranks);
  double best_distance = std::numeric_limits<double>::infinity(), estimate = -1;
  for (const Work& w : cells_) {
    const Cost other = measured(w.batch_size, w.ranks);
    if (other.steps <= 0) continue;
    const double other_global = double(w.batch_size * w.ranks);
    const double distance = std::abs(std::log(global / other_global));
    if (distance < best_distance)
      best_distance = distance, estimate = other.seconds / other.steps * global / other_global;
  }
  return estimate;
}

double EtaEstimator::seconds_left() const {
  double seconds = 0;
  std::size_t unfinished = 0;
  for (std::size_t i = 0; i < cells_.size(); ++i) {
    if (finished_[i]) continue;
    ++unfinished;
    const double per_step = seconds_per_step(cells_[i].batch_size, cells_[i].ranks);
    if (per_step < 0) return -1;
    seconds += per_step * double(cells_[i].steps - done_[i]);
  }
  return unfinished ? seconds / double(std::min(parallel_, unfinished)) : 0;
}

namespace {

std::vector<EtaEstimator::Work> work_of(const std::vector<Cell>& pending,
                                        const std::vector<std::size_t>& steps) {
  std::vector<EtaEstimator::Work> work;
  for (std::size_t i = 0; i < pending.size(); ++i)
    work.push_back({pending[i].batch_size, pending[i].ranks, steps.at(i)});
  return work;
}

}  // namespace

ProgressPrinter::ProgressPrinter(std::size_t cells, const std::vector<Cell>& pending,
                                 const std::vector<std::size_t>& steps, std::size_t parallel,
                                 std::FILE* out)
    : out_(out),
      cells_(cells),
      started_(pending.size()),
      eta_(work_of(pending, steps), parallel),
      terminal_(::isatty(::fileno(out)) != 0),
      width_(0) {
  for (const Cell& cell : pending) pending_index_.push_back(cell.index);
}

std::size_t ProgressPrinter::position(const Cell& cell) const {
  const auto it = std::find(pending_index_.begin(), pending_index_.end(), cell.index);
  if (it == pending_index_.end())
    throw std::logic_error("progress of cell " + cell.id() + ", which is not pending");
  return std::size_t(it - pending_index_.begin());
}

std::string ProgressPrinter::eta() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double left = eta_.seconds_left();
  if (left < 0 || elapsed < 1) return "ETA --";
  const long long s = std::llround(left);
  char text[40];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "ETA %lldh%02lldm", s / 3600, s / 60 % 60);
  else
    std::snprintf(text, sizeof text, "ETA %lldm%02llds", s / 60, s % 60);
  return text;
}

void ProgressPrinter::update(const Cell& cell, const CellProgress& p) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::size_t i = position(cell);
  const auto now = Clock::now();
  if (started_[i] == Clock::time_point{}) started_[i] = now;
  // Steps since this cell's first update, over the time since then.
  const std::size_t done = p.epoch * p.steps + p.step;
  eta_.update(i, done, std::chrono::duration<double>(now - started_[i]).count());
  char line[512];
  const std::string id = cell.id();
  std::snprintf(line, sizeof line, "cell %zu/%zu %s  epoch %zu/%zu  step %zu/%zu  loss %.4f  ",
                cell.index + 1, cells_, id.c_str(), p.epoch + 1, p.epochs, p.step, p.steps,
                p.running_loss);
  print(line, id, p.step == p.steps);
}

void ProgressPrinter::cell_done(const Cell& cell, double seconds, const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mutex_);
  eta_.finish(position(cell), seconds);
  if (line_open_) std::fprintf(out_, "\r\033[K");
  line_open_ = false;
  std::fprintf(out_, "cell %zu/%zu %s done: %s\n", cell.index + 1, cells_, cell.id().c_str(),
               outcome.c_str());
  std::fflush(out_);
}

void ProgressPrinter::finish_line() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
}

void ProgressPrinter::print(const std::string& line, const std::string& id, bool force) {
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (terminal_) {
    if (since < 0.2 && !force) return;
    const std::size_t width = width_ > 0 ? width_ : terminal_width(::fileno(out_));
    std::fprintf(out_, "\r\033[K%s", fit_to_width(line, id, width, eta()).c_str());
    line_open_ = true;
  } else {
    if (since < 15 && !force) return;
    std::fprintf(out_, "%s\n", (line + eta()).c_str());
  }
  std::fflush(out_);
  last_print_ = now;
}

}  // namespace normlab
