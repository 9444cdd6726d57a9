// A small std::thread pool. Workers sleep on a condition variable; a job is a
// RangeTask and a range count, published under a generation number.
#include "thread_pool.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "normlab/threads.hpp"

namespace normlab {
namespace {

// Below this many elements a loop runs on the calling thread: waking the
// workers costs about as much as the work.
constexpr std::size_t kMinParallelWork = 1 << 17;

thread_local bool inside_worker = false;

// Spins for up to this long before sleeping, waiting for a job (workers) or
// for the workers (caller): consecutive engine calls then cost no wake-ups.
constexpr std::chrono::microseconds kSpin(200);

template <class Ready>
bool spin_until(Ready ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if (i % 64 == 63 && std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
}

class ThreadPool {
 public:
  ~ThreadPool() { resize(0); }

  // Workers besides the caller.
  void resize(std::size_t workers) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    stopping_ = false;
    // New workers wait for the next job, not the last one.
    for (std::size_t k = 0; k < workers; ++k)
      threads_.emplace_back([this, k, now = generation_.load()] { work(k + 1, now); });
  }
  std::size_t workers() const { return threads_.size(); }

  // Ranges 1..ranges-1 go to workers, range 0 to the caller.
  void run(std::size_t n, std::size_t ranges, const RangeTask& task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      n_ = n;
      ranges_ = ranges;
      pending_ = ranges - 1;
      ++generation_;  // publishes the job to spinning workers
    }
    wake_.notify_all();
    run_range(0, task);
    if (!spin_until([this] { return pending_ == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_ == 0; });
    }
    task_ = nullptr;
  }

  std::mutex busy;  // one job at a time; other callers run serially

 private:
  void run_range(std::size_t k, const RangeTask& task) const {
    const std::size_t begin = n_ * k / ranges_, end = n_ * (k + 1) / ranges_;
    if (begin < end) task(begin, end);
#if defined(__SSE2__)
    _mm_sfence();  // the range's non-temporal stores (if any) before it reports done
#endif
  }

  void work(std::size_t k, std::size_t seen) {
    inside_worker = true;
    for (;;) {
      if (!spin_until([&] { return generation_ != seen; })) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
      }
      const RangeTask* task;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen = generation_;
        if (stopping_) return;
        if (k >= ranges_) continue;
        task = task_;
      }
      run_range(k, *task);
      if (--pending_ == 0) {
        std::lock_guard<std::mutex> lock(mutex_);  // the caller may be about to sleep
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<std::size_t> generation_{0};
  bool stopping_ = false;
  const RangeTask* task_ = nullptr;
  std::size_t n_ = 0, ranges_ = 1;
  std::atomic<std::size_t> pending_{0};
};

ThreadPool& pool() {
  static ThreadPool instance;
  return instance;
}

std::atomic<unsigned> requested_threads{1};

}  // namespace

void set_num_threads(unsigned n) {
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  std::lock_guard<std::mutex> lock(pool().busy);
  pool().resize(n - 1);
  requested_threads = n;
}

unsigned num_threads() {
  return requested_threads;
}

void run_parallel(std::size_t n, std::size_t work, const RangeTask& task) {
  const std::size_t ranges = std::min<std::size_t>(n, requested_threads);
  if (ranges <= 1 || work < kMinParallelWork || inside_worker) {
    if (n) task(0, n);
    return;
  }
  std::unique_lock<std::mutex> lock(pool().busy, std::try_to_lock);
  if (!lock.owns_lock() || pool().workers() + 1 < ranges) {
    task(0, n);
    return;
  }
  pool().run(n, ranges, task);
}

}  // namespace normlab
