// run_experiment: every unfinished cell of the grid, `workers` at a time,
// each on a single thread, results saved as each cell ends.
#include <atomic>
#include <cstdio>
#include <exception>
#include <iostream>
#include <thread>

#include "environment.hpp"
#include "normlab/experiment.hpp"
#include "progress_printer.hpp"
#include "results_store.hpp"

namespace normlab {

void run_experiment(const ExperimentConfig& config, const RunOptions& options) {
  ResultsStore store(options.out_dir.empty() ? config.output : options.out_dir, config.resolved,
                     options.fresh);
  const std::vector<Cell> cells = grid_cells(config);
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

  if (!pending.empty()) {
    const auto [train, test] = load_datasets(config.dataset);
    use_single_threaded_blas();
    const nlohmann::json environment = environment_info(config.workers);
    std::size_t total_images = 0;
    for (const Cell& cell : pending)
      total_images += config.epochs * (train.size() / cell.batch_size) * cell.batch_size;
    ProgressPrinter printer(cells.size(), total_images);

    std::atomic<std::size_t> next{0};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto worker = [&] {
      for (std::size_t i; (i = next++) < pending.size();) {
        const Cell& cell = pending[i];
        try {
          nlohmann::json record = train_cell(config, cell, train, test, [&](const CellProgress& p) {
            printer.update(cell.index + 1, cell, p);
          });
          record["dataset"] = {{"train_size", train.size()}, {"test_size", test.size()}};
          record["environment"] = environment;
          record["config"] = config.resolved;
          store.append(record);
          char outcome[128];
          if (record["diverged"].get<bool>())
            std::snprintf(outcome, sizeof outcome, "diverged");
          else
            std::snprintf(outcome, sizeof outcome, "test error %.2f%%, %.0f images/s",
                          100 * record["test_error"].get<double>(),
                          record["train_images_per_second"].get<double>());
          printer.cell_done(cell.index + 1, cell,
                            config.epochs * (train.size() / cell.batch_size) * cell.batch_size,
                            outcome);
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = pending.size();  // stop handing out cells
        }
      }
    };
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < std::min(config.workers, pending.size()); ++w)
      threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (failure) std::rethrow_exception(failure);
  }
  std::cout << "test error (%) by norm x batch size, " << config.model << ", " << config.name
            << " (" << store.dir().string() << ")\n"
            << error_table(config.resolved, store.records());
}

}  // namespace normlab
