// Communicators over MPI (Open MPI). Collectives are timed for the
// communication share; all_reduce_sum adds every rank's values in rank order,
// so every rank gets the same bits on every run.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <list>
#include <stdexcept>
#include <vector>

#include "normlab/distributed.hpp"

namespace normlab {
namespace {

void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string(call) + " failed: " + std::string(text, length));
}

// Adds the wall time of its lifetime to a counter.
class Timed {
 public:
  explicit Timed(double& seconds) : seconds_(seconds), start_(Clock::now()) {}
  ~Timed() { seconds_ += std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  double& seconds_;
  Clock::time_point start_;
};

int int_count(std::size_t n) {
  if (n > std::size_t(std::numeric_limits<int>::max()))
    throw std::invalid_argument("MPI message of " + std::to_string(n) + " elements: too large");
  return int(n);
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` unless it is MPI_COMM_WORLD.
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (auto& pending : sends_) MPI_Wait(&pending.request, MPI_STATUS_IGNORE);
    if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // A reduce-scatter then an all-gather: rank r receives part r of every
  // rank's values, adds them in rank order and sends its sums to all. Each
  // rank moves 2 (R-1)/R n values instead of n, and every sum is the
  // same rank-order sum on every rank.
  void all_reduce_sum(double* data, std::size_t n) override {
    if (size_ == 1 || n == 0) return;
    Timed timed(collective_seconds_);
    const std::size_t ranks = std::size_t(size_), part = (n + ranks - 1) / ranks;
    counts_.assign(ranks, 0);
    offsets_.assign(ranks, 0);
    for (std::size_t r = 0; r < ranks; ++r) {
      const std::size_t begin = std::min(n, r * part), end = std::min(n, begin + part);
      offsets_[r] = int_count(begin);
      counts_[r] = int_count(end - begin);
    }
    const std::size_t mine = std::size_t(counts_[std::size_t(rank_)]);
    // Every rank's copy of my part, rank after rank.
    received_.resize(mine * ranks);
    receive_counts_.assign(ranks, int(mine));
    receive_offsets_.resize(ranks);
    for (std::size_t r = 0; r < ranks; ++r) receive_offsets_[r] = int_count(r * mine);
    check(MPI_Alltoallv(data, counts_.data(), offsets_.data(), MPI_DOUBLE, received_.data(),
                        receive_counts_.data(), receive_offsets_.data(), MPI_DOUBLE, comm_),
          "MPI_Alltoallv");
    double* sums = data + offsets_[std::size_t(rank_)];
    for (std::size_t i = 0; i < mine; ++i) {
      double sum = received_[i];
      for (std::size_t r = 1; r < ranks; ++r) sum += received_[r * mine + i];
      sums[i] = sum;
    }
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts_.data(), offsets_.data(),
                         MPI_DOUBLE, comm_),
          "MPI_Allgatherv");
  }
  void all_gather(const double* data, std::size_t n, double* out) override {
    Timed timed(collective_seconds_);
    check(MPI_Allgather(data, int_count(n), MPI_DOUBLE, out, int_count(n), MPI_DOUBLE, comm_),
          "MPI_Allgather");
  }
  void broadcast(std::string& bytes, int root) override {
    Timed timed(collective_seconds_);
    unsigned long long length = bytes.size();
    check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, root, comm_), "MPI_Bcast");
    bytes.resize(length);
    check(MPI_Bcast(bytes.data(), int_count(length), MPI_CHAR, root, comm_), "MPI_Bcast");
  }
  void barrier() override {
    Timed timed(collective_seconds_);
    check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  std::shared_ptr<Communicator> split(int color, int key) override {
    MPI_Comm part;
    check(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
    return std::make_shared<MpiCommunicator>(part);
  }

  void send(int to, int tag, const std::string& bytes) override {
    finish_sends();
    sends_.push_back({bytes, MPI_REQUEST_NULL});
    Pending& p = sends_.back();
    check(
        MPI_Isend(p.bytes.data(), int_count(p.bytes.size()), MPI_CHAR, to, tag, comm_, &p.request),
        "MPI_Isend");
  }
  std::optional<Message> receive(bool wait) override {
    finish_sends();
    MPI_Status status;
    if (wait) {
      check(MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &status), "MPI_Probe");
    } else {
      int arrived = 0;
      check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &arrived, &status), "MPI_Iprobe");
      if (!arrived) return std::nullopt;
    }
    int count = 0;
    check(MPI_Get_count(&status, MPI_CHAR, &count), "MPI_Get_count");
    Message m{status.MPI_SOURCE, status.MPI_TAG, std::string(std::size_t(count), '\0')};
    check(MPI_Recv(m.bytes.data(), count, MPI_CHAR, m.from, m.tag, comm_, MPI_STATUS_IGNORE),
          "MPI_Recv");
    return m;
  }

 private:
  struct Pending {
    std::string bytes;  // kept alive until the send completes
    MPI_Request request;
  };
  // Forgets the sends that have completed.
  void finish_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      check(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      it = done ? sends_.erase(it) : std::next(it);
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<double> received_;  // all_reduce_sum's buffers, reused
  std::vector<int> counts_, offsets_, receive_counts_, receive_offsets_;
  std::list<Pending> sends_;
};

bool initialized_here = false;

}  // namespace

void init_mpi(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  initialized_here = true;
}

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!initialized_here || finalized) return;
  MPI_Finalize();
}

void abort_mpi(int code) {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

std::shared_ptr<Communicator> world_communicator() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return single_process_communicator();
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
}

}  // namespace normlab
