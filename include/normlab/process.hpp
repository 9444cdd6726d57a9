// Settings that must be in a process's environment before its libraries load,
// so a program can only get them by starting again.
#pragma once

namespace normlab {

// For a program's main(), first thing: before any BLAS call, MPI start-up or
// thread. Sets, when needed, and then re-executes the program once with the
// same arguments (argv as main received it):
//  - OPENBLAS_CORETYPE, when OpenBLAS fell back below what the CPU runs
//    (blas_core_request in blas.hpp; NORMLAB_BLAS_CORE=keep leaves it);
//  - OMP_WAIT_POLICY=passive, when convolutions run on oneDNN (OpenMP) and
//    the user did not set it: OpenMP's threads would otherwise spin after each
//    convolution, on the cores the engine's threads need next.
// Returns normally when nothing has to change; throws std::runtime_error if
// the restart fails.
void prepare_process(char** argv);

}  // namespace normlab
