# Installs the built normlab into a scratch prefix, then configures, builds and
# runs tests/consumer against it: checks the installed package as a user sees it.
# Usage: cmake -DBUILD_DIR=<normlab build> -DWORK_DIR=<scratch> [-DGENERATOR=..]
#              [-DCXX_COMPILER=..] -P run_consumer_test.cmake
cmake_minimum_required(VERSION 3.16)
foreach(var BUILD_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)

function(run what)
  message(STATUS "consumer test: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "consumer test: ${what} failed (${result})")
  endif()
endfunction()

set(configure_args -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
if(GENERATOR)
  list(APPEND configure_args -G ${GENERATOR})
endif()
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()

file(REMOVE_RECURSE ${WORK_DIR})
run("install into ${prefix}" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run("configure" ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${consumer_build} ${configure_args})

# The package must come from the scratch prefix, not from the build tree or a system install.
file(STRINGS ${consumer_build}/CMakeCache.txt found REGEX "^normlab_DIR:")
if(NOT found MATCHES "=${prefix}/")
  message(FATAL_ERROR "consumer test: normlab found outside ${prefix}: ${found}")
endif()

run("build" ${CMAKE_COMMAND} --build ${consumer_build})
run("run" ${consumer_build}/consumer)
run("run the core-only consumer" ${consumer_build}/consumer_core)
