// The MPI tests: doctest under mpirun, every rank running every test case.
// ctest runs this binary through `mpirun -np 2` and `-np 3` (tests/CMakeLists.txt).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "normlab/distributed.hpp"

int main(int argc, char** argv) {
  normlab::init_mpi(&argc, &argv);
  doctest::Context context(argc, argv);
  const int failed = context.run();
  normlab::finalize_mpi();
  return failed;
}
