// Processes that work together: a communicator over a group of ranks, with a
// single-process implementation and, when normlab is built with MPI (Open MPI),
// an MPI one. SyncBatchNorm combines its statistics over one; data-parallel
// training averages gradients over one; `normlab run` under mpirun spreads a
// sweep's cells over groups of ranks.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace normlab {

// A message between ranks (point to point).
struct Message {
  int from = 0;
  int tag = 0;
  std::string bytes;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Element-wise sum over the ranks, in place; every rank gets the same values
  // (the sum is taken in rank order, so it does not depend on timing).
  virtual void all_reduce_sum(double* data, std::size_t n) = 0;
  // Every rank's n values, concatenated in rank order into out (size() * n).
  virtual void all_gather(const double* data, std::size_t n, double* out) = 0;
  // root's bytes on every rank.
  virtual void broadcast(std::string& bytes, int root) = 0;
  virtual void barrier() = 0;
  // The ranks that pass the same color, ordered by key (then by rank).
  virtual std::shared_ptr<Communicator> split(int color, int key) = 0;

  // Point to point: send does not wait for the receiver; receive returns the
  // next message from any rank, waiting for one when `wait`, else nullopt when
  // none has arrived.
  virtual void send(int to, int tag, const std::string& bytes) = 0;
  virtual std::optional<Message> receive(bool wait) = 0;

  // Wall seconds this process spent inside collective calls of this
  // communicator (all_reduce_sum, all_gather, broadcast, barrier): the
  // communication share of a training step is measured with it.
  double collective_seconds() const { return collective_seconds_; }

 protected:
  double collective_seconds_ = 0;
};

// One process alone: rank 0 of 1; collectives copy, messages go to itself.
std::shared_ptr<Communicator> single_process_communicator();

// ---- MPI ----

// True when this build has MPI (CMake found it).
bool built_with_mpi();
// True when this process was started by mpirun (Open MPI's environment).
bool launched_by_mpirun();
// Initializes MPI (threads funneled through the calling thread). Throws
// std::runtime_error naming the fix when the build has no MPI.
void init_mpi(int* argc, char*** argv);
// MPI_Finalize, if init_mpi ran; safe to call twice.
void finalize_mpi();
// Ends every rank of the job (MPI_Abort) when MPI runs with more than one
// rank: a rank that fails must not leave the others waiting for it.
void abort_mpi(int code);
// Every rank of the job when MPI is initialized; otherwise the single process.
std::shared_ptr<Communicator> world_communicator();
// Throws std::invalid_argument("WHAT: this build of normlab has no MPI ...")
// unless built_with_mpi().
void require_mpi(const std::string& what);

// ---- The communicator of the norms built on this thread ----

// SyncBatchNorm layers take the communicator current on their thread when they
// are built (default: the single process).
std::shared_ptr<Communicator> current_communicator();

// Makes `communicator` current on this thread for the scope's lifetime.
class CommunicatorScope {
 public:
  explicit CommunicatorScope(std::shared_ptr<Communicator> communicator);
  ~CommunicatorScope();
  CommunicatorScope(const CommunicatorScope&) = delete;
  CommunicatorScope& operator=(const CommunicatorScope&) = delete;

 private:
  std::shared_ptr<Communicator> previous_;
};

}  // namespace normlab
