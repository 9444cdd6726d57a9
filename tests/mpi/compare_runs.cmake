# `normlab run CONFIG` in one process and under `mpirun -np RANKS` give the same
# cells and the same numbers (test error, train losses, batch-stats accuracy).
# Usage: cmake -DNORMLAB=<cli> -DMPIEXEC=<mpirun> -DRANKS=2 -DCONFIG=<json>
#              -DWORK_DIR=<scratch> -P compare_runs.cmake
cmake_minimum_required(VERSION 3.19)  # string(JSON)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run_normlab what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${what} failed (${result}): ${err}")
  endif()
endfunction()

run_normlab("one process" ${NORMLAB} run ${CONFIG} --out ${WORK_DIR}/one)
run_normlab("mpirun -np ${RANKS}" ${MPIEXEC} --oversubscribe -np ${RANKS} ${NORMLAB} run ${CONFIG}
  --out ${WORK_DIR}/mpi)

# cell id -> "test_error train_loss test_accuracy_batch_stats" of a results.jsonl
function(read_cells file prefix)
  file(STRINGS ${file} lines)
  set(ids "")
  foreach(line IN LISTS lines)
    string(JSON id GET "${line}" cell)
    set(numbers "")
    foreach(key test_error train_loss test_accuracy_batch_stats loss_curve)
      string(JSON value GET "${line}" ${key})
      string(APPEND numbers "${key}=${value} ")
    endforeach()
    list(APPEND ids ${id})
    set(${prefix}_${id} "${numbers}" PARENT_SCOPE)
  endforeach()
  list(SORT ids)
  set(${prefix}_ids "${ids}" PARENT_SCOPE)
endfunction()

read_cells(${WORK_DIR}/one/results.jsonl one)
read_cells(${WORK_DIR}/mpi/results.jsonl mpi)
if(NOT one_ids STREQUAL mpi_ids)
  message(FATAL_ERROR "different cells: one process [${one_ids}], mpirun [${mpi_ids}]")
endif()
list(LENGTH one_ids count)
if(count EQUAL 0)
  message(FATAL_ERROR "no cells were recorded")
endif()
foreach(id IN LISTS one_ids)
  if(NOT "${one_${id}}" STREQUAL "${mpi_${id}}")
    message(FATAL_ERROR "cell ${id} differs:\n one process: ${one_${id}}\n mpirun: ${mpi_${id}}")
  endif()
endforeach()
message(STATUS "${count} cells, the same numbers in one process and on ${RANKS} ranks")
