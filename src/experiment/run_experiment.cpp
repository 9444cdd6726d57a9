// run_experiment: every unfinished cell of the grid, results saved as each
// cell ends. In one process, `workers` cells at a time, each on one thread.
// Under mpirun, the world's ranks form groups of R (each ranks_per_cell value
// in turn) that take cells as they become free; rank 0 hands out the cells,
// trains with its own group, and alone writes the results folder.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <exception>
#include <iostream>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "environment.hpp"
#include "lr_search.hpp"
#include "normlab/experiment.hpp"
#include "progress_printer.hpp"
#include "results_store.hpp"
#include "saved_weights.hpp"

namespace normlab {
namespace {

// What run_experiment adds to a cell's record.
struct RecordContext {
  nlohmann::json dataset, environment, config;
  void complete(nlohmann::json& record, const Cell& cell) const {
    record["dataset"] = dataset;
    record["environment"] = environment;
    record["config"] = config;
    record["config_digest"] = cell_config_digest(config, cell);  // checked on resume and report
  }
};

// Optimizer steps of a cell over its whole budget.
std::size_t budget_steps(const ExperimentConfig& config, const Cell& cell, std::size_t train_size) {
  const std::size_t global = cell.batch_size * cell.ranks;
  return config.budget.steps(train_size / global, global);
}

void report_done(ProgressPrinter& printer, const Cell& cell, const nlohmann::json& record) {
  char outcome[128];
  if (record["diverged"].get<bool>())
    std::snprintf(outcome, sizeof outcome, "diverged");
  else if (!record["train_images_per_second"].is_number())
    std::snprintf(outcome, sizeof outcome, "test error %.2f%%",
                  100 * record["test_error"].get<double>());
  else if (record.contains("validation_error") && record["validation_error"].is_number())
    std::snprintf(
        outcome, sizeof outcome, "validation error %.2f%%, test error %.2f%%, %.0f images/s",
        100 * record["validation_error"].get<double>(), 100 * record["test_error"].get<double>(),
        record["train_images_per_second"].get<double>());
  else
    std::snprintf(outcome, sizeof outcome, "test error %.2f%%, %.0f images/s",
                  100 * record["test_error"].get<double>(),
                  record["train_images_per_second"].get<double>());
  printer.cell_done(cell, record.value("wall_seconds", 0.0), outcome);
}

// The cells to train: not skipped and not finished in the store.
std::vector<Cell> pending_cells(const std::vector<Cell>& cells, const ResultsStore& store,
                                const ExperimentConfig& config) {
  std::vector<Cell> pending;
  std::size_t skipped = 0;
  for (const Cell& cell : cells) {
    if (!cell.skipped.empty()) {
      std::fprintf(stderr, "skipping %s: %s\n", cell.id().c_str(), cell.skipped.c_str());
      ++skipped;
    } else if (!store.finished(cell.id())) {
      pending.push_back(cell);
    }
  }
  const std::string skipped_note = skipped ? " (" + std::to_string(skipped) + " skipped)" : "";
  std::fprintf(stderr, "%s: %zu cells%s, %zu finished before, %zu to run in %s\n",
               config.name.c_str(), cells.size(), skipped_note.c_str(),
               cells.size() - skipped - pending.size(), pending.size(), store.dir().c_str());
  return pending;
}

// Steps of each cell of `pending` over its budget, for the progress line's ETA.
std::vector<std::size_t> budget_steps(const ExperimentConfig& config,
                                      const std::vector<Cell>& pending, std::size_t train_size) {
  std::vector<std::size_t> steps;
  for (const Cell& cell : pending) steps.push_back(budget_steps(config, cell, train_size));
  return steps;
}

// At the end of every run, pending cells or not: results.csv and table.md
// follow results.jsonl even when a fault left them behind.

// Thrown from a cell's progress update once RunOptions::stop is set.
struct StopRequested {};

void print_table(const ExperimentConfig& config, const ResultsStore& store) {
  store.rewrite_summaries();
  std::cout << "test error (%) by norm x batch size, " << config.model << ", " << config.name
            << " (" << store.dir().string() << ")\n"
            << error_table(config.resolved, store.records());
}

// ---- One process ----

// What a worker trains: the pending cells, or with a learning-rate search the
// search runs of the pending cells that search.jsonl does not hold yet.
std::vector<Cell> pending_runs(const ExperimentConfig& config, const std::vector<Cell>& pending,
                               const ResultsStore& store) {
  if (config.optimizer.lr_multipliers.empty()) return pending;
  std::vector<Cell> runs;
  for (const Cell& cell : pending)
    for (const Cell& run : search_runs(config, cell))
      if (!store.search_finished(run.id())) runs.push_back(run);
  return runs;
}

// A search run's grid cell.
Cell cell_of(const Cell& run) {
  Cell cell = run;
  cell.search_run = false;
  cell.lr_multiplier = 1.0;
  return cell;
}

void run_in_process(const ExperimentConfig& config, const RunOptions& options) {
  ResultsStore store(options.out_dir.empty() ? config.output : options.out_dir, config.resolved,
                     options.fresh);
  const std::vector<Cell> cells = grid_cells(config);
  std::vector<Cell> pending = pending_cells(cells, store, config);
  // Cells whose search runs all finished before a kill: select now.
  if (!config.optimizer.lr_multipliers.empty()) {
    const std::vector<nlohmann::json> searched = store.search_records();
    std::vector<Cell> still;
    for (const Cell& cell : pending) {
      if (std::optional<nlohmann::json> record = select_learning_rate(config, cell, searched))
        store.append(*record);
      else
        still.push_back(cell);
    }
    pending = still;
  }
  pending = pending_runs(config, pending, store);
  if (!pending.empty()) {
    const std::pair<Dataset, Dataset> loaded = load_datasets(config.dataset);
    const std::pair<Dataset, Dataset> split = split_validation(loaded.first, config.dataset);
    const Dataset &train = split.first, &validation = split.second, &test = loaded.second;
    use_threads_per_cell(config.threads_per_cell);
    nlohmann::json sizes = {{"train_size", train.size()}, {"test_size", test.size()}};
    if (validation.size() > 0) sizes["validation_size"] = validation.size();
    const RecordContext context{sizes, environment_info(config.workers, config.threads_per_cell),
                                config.resolved};
    const std::size_t parallel = std::min(config.workers, pending.size());
    ProgressPrinter printer(cells.size(), pending, budget_steps(config, pending, train.size()),
                            parallel);
    auto stopped = [&] { return options.stop && options.stop->load(); };
    std::mutex selecting;  // one worker at a time completes a searched cell

    std::atomic<std::size_t> next{0};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto worker = [&] {
      for (std::size_t i; (i = next++) < pending.size() && !stopped();) {
        const Cell& cell = pending[i];
        try {
          nlohmann::json record = train_cell(
              config, cell, train, test,
              [&](const CellProgress& p) {
                if (stopped()) throw StopRequested{};
                printer.update(cell, p);
              },
              nullptr, &validation,
              [&](Model<float>& model) { save_cell_weights(store.dir(), config, cell, model); });
          context.complete(record, cell);
          if (cell.search_run) {
            std::lock_guard<std::mutex> lock(selecting);
            const std::vector<nlohmann::json> searched = store.append_search(record);
            if (std::optional<nlohmann::json> selected =
                    select_learning_rate(config, cell_of(cell), searched))
              store.append(*selected);
          } else {
            store.append(record);
          }
          report_done(printer, cell, record);
        } catch (const StopRequested&) {
          next = pending.size();
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = pending.size();  // stop handing out cells
        }
      }
    };
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < parallel; ++w) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (failure) std::rethrow_exception(failure);
    if (stopped()) {
      printer.finish_line();
      throw RunInterrupted(store.records().size(), store.dir().string());
    }
  }
  print_table(config, store);
}

// ---- Over MPI ranks ----

// Messages between group leaders and rank 0.
enum Tag : int {
  kRequest = 1,  // leader -> 0: a cell, please
  kAssign = 2,   // 0 -> leader: a grid index, or -1 when there is none left
  kRecord = 3,   // leader -> 0: a finished cell's record
};

// Rank 0's side: the queue of one ranks_per_cell phase, answers to the other
// leaders, and their records into the store.
class Dispatcher {
 public:
  Dispatcher(Communicator& world, std::deque<std::size_t> queue, int other_leaders,
             ResultsStore& store, ProgressPrinter& printer, const std::vector<Cell>& cells)
      : world_(world),
        queue_(std::move(queue)),
        leaders_waiting_(other_leaders),
        store_(store),
        printer_(printer),
        cells_(cells) {}

  // Rank 0's own next cell (-1: none), after answering whatever has arrived.
  long long next_for_self() {
    serve(false);
    return take();
  }
  // Answers requests and stores records; with `wait`, at least one message.
  void serve(bool wait) {
    for (std::optional<Message> m; (m = world_.receive(wait)); wait = false) {
      if (m->tag == kRequest) {
        const long long index = take();
        if (index < 0)
          --leaders_waiting_;
        else
          ++out_;
        world_.send(m->from, kAssign, std::to_string(index));
      } else if (m->tag == kRecord) {
        const nlohmann::json record = nlohmann::json::parse(m->bytes);
        store_.append(record);
        report_done(printer_, cells_.at(record["index"].get<std::size_t>()), record);
        --out_;
      } else {
        throw std::logic_error("rank 0 got an unexpected message (tag " + std::to_string(m->tag) +
                               ") from rank " + std::to_string(m->from));
      }
    }
  }
  // Until every other leader has been told there is nothing left and every
  // cell handed out has come back.
  void drain() {
    while (leaders_waiting_ > 0 || out_ > 0) serve(true);
  }

 private:
  long long take() {
    if (queue_.empty()) return -1;
    const std::size_t index = queue_.front();
    queue_.pop_front();
    return static_cast<long long>(index);
  }
  Communicator& world_;
  std::deque<std::size_t> queue_;
  int leaders_waiting_;
  int out_ = 0;  // cells handed to other leaders whose records have not come back
  ResultsStore& store_;
  ProgressPrinter& printer_;
  const std::vector<Cell>& cells_;
};

// Every rank trains what rank 0 records: ranks started with other --set
// values (or another config file) stop before the first cell, every rank
// with the same error naming them (so none is left waiting).
void check_same_config(Communicator& world, const ExperimentConfig& config) {
  const std::string mine = run_config_digest(config.resolved);
  std::string rank0 = mine;
  world.broadcast(rank0, 0);
  const int ranks = world.size();
  std::vector<double> differs(std::size_t(ranks), 0.0);
  differs[std::size_t(world.rank())] = rank0 != mine ? 1.0 : 0.0;
  world.all_reduce_sum(differs.data(), differs.size());
  std::string named;
  for (int r = 0; r < ranks; ++r)
    if (differs[std::size_t(r)] > 0) named += (named.empty() ? "" : ", ") + std::to_string(r);
  if (!named.empty())
    throw std::runtime_error("rank " + named + " resolved another config than rank 0 (config " +
                             "digest " + rank0 + " on rank 0" +
                             (rank0 != mine ? ", " + mine + " here" : std::string()) +
                             "): give every rank the same config file and --set values");
}

// Rank 0 opens the store and decides what is pending; every rank learns it
// (or rank 0's error, so that no rank waits for a decision that never comes).
std::vector<std::size_t> agree_on_pending(Communicator& world, const std::vector<Cell>& cells,
                                          std::optional<ResultsStore>& store,
                                          const ExperimentConfig& config,
                                          const RunOptions& options) {
  std::string message;
  if (world.rank() == 0) {
    try {
      store.emplace(options.out_dir.empty() ? config.output : options.out_dir, config.resolved,
                    options.fresh);
      std::vector<std::size_t> indices;
      for (const Cell& cell : pending_cells(cells, *store, config)) indices.push_back(cell.index);
      message = nlohmann::json{{"pending", indices}}.dump();
    } catch (const std::exception& e) {
      message = nlohmann::json{{"error", e.what()}}.dump();
    }
  }
  world.broadcast(message, 0);
  const nlohmann::json decision = nlohmann::json::parse(message);
  if (decision.contains("error")) throw std::runtime_error(decision["error"].get<std::string>());
  return decision["pending"].get<std::vector<std::size_t>>();
}

void run_over_ranks(const ExperimentConfig& config, const RunOptions& options,
                    const std::shared_ptr<Communicator>& world) {
  const int rank = world->rank(), ranks = world->size();
  check_same_config(*world, config);
  const std::vector<Cell> cells = grid_cells(config);
  const std::string out_dir = options.out_dir.empty() ? config.output : options.out_dir;
  std::optional<ResultsStore> store;
  const std::vector<std::size_t> pending = agree_on_pending(*world, cells, store, config, options);
  if (!pending.empty()) {
    const std::pair<Dataset, Dataset> loaded = load_datasets(config.dataset);
    const std::pair<Dataset, Dataset> split = split_validation(loaded.first, config.dataset);
    const Dataset &train = split.first, &validation = split.second, &test = loaded.second;
    use_threads_per_cell(config.threads_per_cell);
    nlohmann::json environment = environment_info(1, config.threads_per_cell);
    environment["mpi_world_size"] = ranks;
    const RecordContext context{
        {{"train_size", train.size()}, {"test_size", test.size()}}, environment, config.resolved};
    std::vector<Cell> pending_list;
    for (std::size_t i : pending) pending_list.push_back(cells[i]);
    std::optional<ProgressPrinter> printer;
    // Each phase runs ranks / R cells at a time: counted for the largest R.
    const std::size_t parallel =
        std::size_t(ranks) /
        *std::max_element(config.ranks_per_cell.begin(), config.ranks_per_cell.end());
    if (rank == 0)
      printer.emplace(cells.size(), pending_list, budget_steps(config, pending_list, train.size()),
                      parallel);

    for (std::size_t group_size : config.ranks_per_cell) {
      // Groups of consecutive ranks; rank 0 leads the first.
      const int size = int(group_size);
      const std::shared_ptr<Communicator> group = world->split(rank / size, rank);
      const bool leader = group->rank() == 0;
      std::optional<Dispatcher> dispatcher;
      if (rank == 0) {
        std::deque<std::size_t> queue;
        for (const Cell& cell : pending_list)
          if (cell.ranks == group_size) queue.push_back(cell.index);
        dispatcher.emplace(*world, std::move(queue), ranks / size - 1, *store, *printer, cells);
      }
      for (;;) {
        std::string assigned;
        if (leader) {
          if (rank == 0) {
            assigned = std::to_string(dispatcher->next_for_self());
          } else {
            world->send(0, kRequest, "");
            assigned = world->receive(/*wait=*/true)->bytes;  // only rank 0 sends to leaders
          }
        }
        group->broadcast(assigned, 0);
        const long long index = std::stoll(assigned);
        if (index < 0) break;
        const Cell& cell = cells[std::size_t(index)];
        ProgressFn progress;
        if (rank == 0)
          progress = [&](const CellProgress& p) {
            printer->update(cell, p);
            dispatcher->serve(false);  // other leaders wait for rank 0 between steps
          };
        // The group's leader saves the weights (the same on every rank).
        KeepModelFn keep;
        if (leader)
          keep = [&](Model<float>& model) { save_cell_weights(out_dir, config, cell, model); };
        nlohmann::json record =
            train_cell(config, cell, train, test, progress, group, &validation, keep);
        if (!leader) continue;
        context.complete(record, cell);
        if (rank == 0) {
          store->append(record);
          report_done(*printer, cell, record);
        } else {
          world->send(0, kRecord, record.dump());
        }
      }
      if (rank == 0) dispatcher->drain();
      world->barrier();
    }
  }
  if (rank == 0) print_table(config, *store);
}

}  // namespace

void run_experiment(const ExperimentConfig& config, const RunOptions& options) {
  const std::shared_ptr<Communicator> world = world_communicator();
  const int ranks = world->size();
  // The smallest world every ranks_per_cell value divides: their least common multiple.
  std::size_t smallest = 1;
  for (std::size_t r : config.ranks_per_cell) smallest = std::lcm(smallest, r);
  for (std::size_t r : config.ranks_per_cell)
    if (ranks % int(r) != 0)
      throw std::invalid_argument(
          "distributed.ranks_per_cell " + std::to_string(r) + " needs a number of MPI ranks " +
          "that it divides, got " + std::to_string(ranks) + " (run under mpirun -np " +
          std::to_string(smallest) + (smallest > 1 ? " or a multiple of it" : "") +
          ": the smallest number of ranks every ranks_per_cell value divides)");
  if (ranks > 1 && !config.optimizer.lr_multipliers.empty())
    throw std::invalid_argument(
        "optimizer.lr_multipliers: the learning-rate search runs in one process (not under "
        "mpirun)");
  if (ranks == 1)
    run_in_process(config, options);
  else
    run_over_ranks(config, options, world);
}

}  // namespace normlab
