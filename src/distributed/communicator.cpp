// The single-process communicator, the communicator current on a thread, and
// the parts of the MPI entry points that do not need MPI itself (normlab::core).
#include <cstdlib>
#include <deque>
#include <stdexcept>

#include "normlab/distributed.hpp"

namespace normlab {
namespace {

// Rank 0 of 1: collectives leave the data as it is (or copy it), and a
// message sent to rank 0 is received by the same process.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(double*, std::size_t) override {}
  void all_gather(const double* data, std::size_t n, double* out) override {
    std::copy(data, data + n, out);
  }
  void broadcast(std::string&, int) override {}
  void barrier() override {}
  std::shared_ptr<Communicator> split(int, int) override {
    return std::make_shared<SingleProcess>();
  }
  void send(int to, int tag, const std::string& bytes) override {
    if (to != 0)
      throw std::invalid_argument("send to rank " + std::to_string(to) +
                                  " of a single-process communicator");
    inbox_.push_back({0, tag, bytes});
  }
  std::optional<Message> receive(bool wait) override {
    if (inbox_.empty()) {
      if (wait)
        throw std::logic_error("receive would wait forever: nothing was sent to this process");
      return std::nullopt;
    }
    Message m = std::move(inbox_.front());
    inbox_.pop_front();
    return m;
  }

 private:
  std::deque<Message> inbox_;
};

thread_local std::shared_ptr<Communicator> current;

}  // namespace

std::shared_ptr<Communicator> single_process_communicator() {
  return std::make_shared<SingleProcess>();
}

// Known to normlab::core without linking MPI: the MPI code itself is in
// normlab::distributed (mpi_communicator.cpp or no_mpi.cpp).
bool built_with_mpi() {
  return NORMLAB_BUILT_WITH_MPI;
}

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

void require_mpi(const std::string& what) {
  if (!built_with_mpi())
    throw std::invalid_argument(what +
                                ": this build of normlab has no MPI (install libopenmpi-dev and "
                                "openmpi-bin, then rebuild: scripts/setup does both)");
}

std::shared_ptr<Communicator> current_communicator() {
  if (!current) current = single_process_communicator();
  return current;
}

CommunicatorScope::CommunicatorScope(std::shared_ptr<Communicator> communicator)
    : previous_(current_communicator()) {
  current = std::move(communicator);
}

CommunicatorScope::~CommunicatorScope() {
  current = std::move(previous_);
}

}  // namespace normlab
