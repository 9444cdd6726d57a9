// A build without MPI: one process only; asking for MPI is a clear error.
#include <stdexcept>

#include "normlab/distributed.hpp"

namespace normlab {

void init_mpi(int*, char***) {
  require_mpi("mpirun");
}

void finalize_mpi() {}

void abort_mpi(int) {}

std::shared_ptr<Communicator> world_communicator() {
  return single_process_communicator();
}

}  // namespace normlab
