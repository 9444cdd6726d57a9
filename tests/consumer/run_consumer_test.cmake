# Installs the built normlab into a scratch prefix, then configures, builds and
# runs tests/consumer against it: checks the installed package as a user sees it.
# With -DPYTHON=<python3> -DPYTHON_INSTALL_DIR=<dir under the prefix> it also
# builds the Python module (scripts/test's shared tree builds only the CLI) and
# imports the installed one.
# It checks the package links cleanly: the installed normlabTargets*.cmake
# name no library by absolute path, and core_only/ (normlab::core alone, found
# as the core component: MPI and oneDNN are not even looked for) links neither
# MPI nor oneDNN (nor OpenMP), while the full consumer does link those the
# build has (HAVE_MPI, HAVE_ONEDNN): the check can see them.
# Usage: cmake -DBUILD_DIR=<normlab build> -DWORK_DIR=<scratch> [-DGENERATOR=..]
#              [-DCXX_COMPILER=..] [-DHAVE_MPI=ON -DHAVE_ONEDNN=ON]
#              [-DPYTHON=.. -DPYTHON_INSTALL_DIR=..] [-DMAN_PAGE=1] -P run_consumer_test.cmake
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
if(PYTHON)
  run("build the Python module" ${CMAKE_COMMAND} --build ${BUILD_DIR} --target normlab_python)
endif()
if(MAN_PAGE)  # installed with the tool; scripts/test's shared tree builds only the CLI
  run("build the man page" ${CMAKE_COMMAND} --build ${BUILD_DIR} --target normlab_man)
endif()
run("install into ${prefix}" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run("configure" ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${consumer_build} ${configure_args})

# The package must come from the scratch prefix, not from the build tree or a system install.
file(STRINGS ${consumer_build}/CMakeCache.txt found REGEX "^normlab_DIR:")
if(NOT found MATCHES "=${prefix}/")
  message(FATAL_ERROR "consumer test: normlab found outside ${prefix}: ${found}")
endif()

run("build" ${CMAKE_COMMAND} --build ${consumer_build})
run("run" ${consumer_build}/consumer)
set(core_build ${WORK_DIR}/build-core)
run("configure the core-only consumer" ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/core_only
  -B ${core_build} ${configure_args})
run("build the core-only consumer" ${CMAKE_COMMAND} --build ${core_build})
run("run the core-only consumer" ${core_build}/consumer_core)

# ---- The package names libraries by imported target, never by absolute path ----
# The items of the INTERFACE_LINK_LIBRARIES and IMPORTED_LOCATION values in
# `text` that are paths from the root ("/usr/lib/x86_64-linux-gnu/libopenblas.so",
# also inside $<LINK_ONLY:...>) rather than targets or ${_IMPORT_PREFIX}/...
function(absolute_paths_in text out)
  string(REGEX MATCHALL "(INTERFACE_LINK_LIBRARIES|IMPORTED_LOCATION[A-Z_]*) \"[^\"]*\"" values "${text}")
  set(found)
  foreach(item IN LISTS values)  # the values' ;-separated items, one at a time
    if(item MATCHES "(^|[\":])(/[^\">]*)")
      list(APPEND found "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()
# The check must be able to fail: it finds what main's package had.
absolute_paths_in("INTERFACE_LINK_LIBRARIES \"normlab::core;/usr/lib/x86_64-linux-gnu/libopenblas.so\"" seen)
if(NOT seen)
  message(FATAL_ERROR "consumer test: absolute_paths_in misses an absolute path")
endif()
file(GLOB targets_files ${prefix}/lib*/cmake/normlab/normlabTargets*.cmake
  ${prefix}/lib/*/cmake/normlab/normlabTargets*.cmake)
list(LENGTH targets_files count)
if(count LESS 2)  # normlabTargets.cmake and one per configuration
  message(FATAL_ERROR "consumer test: no installed normlabTargets*.cmake under ${prefix}")
endif()
foreach(file IN LISTS targets_files)
  file(READ ${file} text)
  absolute_paths_in("${text}" absolute)
  if(absolute)
    message(FATAL_ERROR "consumer test: ${file} names libraries by absolute path: ${absolute}")
  endif()
endforeach()
message(STATUS "consumer test: ${count} normlabTargets*.cmake without absolute paths")

# ---- normlab::core alone links no MPI and no oneDNN ----
# What a program links and loads: its link command (a static normlab's private
# libraries are on it; the linker may drop those it does not use, so the
# command, not the program, shows what the package asks for) and, where ldd
# exists, the libraries it loads (a shared normlab's dependencies).
function(linked_libraries build_dir target out)
  set(text "")
  if(EXISTS ${build_dir}/CMakeFiles/${target}.dir/link.txt)  # Makefile generators
    file(READ ${build_dir}/CMakeFiles/${target}.dir/link.txt text)
  elseif(EXISTS ${build_dir}/build.ninja)  # Ninja: one project, one program
    file(READ ${build_dir}/build.ninja text)
  else()
    message(FATAL_ERROR "consumer test: no link command found in ${build_dir}")
  endif()
  find_program(LDD ldd)
  if(LDD)
    execute_process(COMMAND ${LDD} ${build_dir}/${target} OUTPUT_VARIABLE loaded
      RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
      message(FATAL_ERROR "consumer test: ldd ${build_dir}/${target} failed (${result})")
    endif()
    string(APPEND text "\n${loaded}")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()
set(unwanted libmpi libdnnl libgomp)
linked_libraries(${core_build} consumer_core core_libraries)
foreach(library IN LISTS unwanted)
  if(core_libraries MATCHES "${library}")
    message(FATAL_ERROR "consumer test: the core-only consumer links ${library}:\n${core_libraries}")
  endif()
endforeach()
linked_libraries(${consumer_build} consumer full_libraries)
# A shared normlab: the linker keeps only the libraries the program uses
# (--as-needed), so the control also reads what the installed libraries that
# its link command names load themselves (ldd lists them transitively, as it
# would for the core-only consumer).
file(GLOB installed_shared ${prefix}/lib*/libnormlab_*.so)
find_program(LDD ldd)
if(LDD)
  foreach(library IN LISTS installed_shared)
    get_filename_component(name ${library} NAME)
    if(full_libraries MATCHES "${name}")
      execute_process(COMMAND ${LDD} ${library} OUTPUT_VARIABLE loaded RESULT_VARIABLE result)
      if(NOT result EQUAL 0)
        message(FATAL_ERROR "consumer test: ldd ${library} failed (${result})")
      endif()
      string(APPEND full_libraries "\n${loaded}")
    endif()
  endforeach()
endif()
set(expected)
if(HAVE_MPI)
  list(APPEND expected libmpi)
endif()
if(HAVE_ONEDNN)
  list(APPEND expected libdnnl)
endif()
foreach(library IN LISTS expected)
  if(NOT full_libraries MATCHES "${library}")
    message(FATAL_ERROR "consumer test: the full consumer does not link ${library}, so the "
      "core-only check cannot see it:\n${full_libraries}")
  endif()
endforeach()
message(STATUS "consumer test: the core-only consumer links none of ${unwanted}; the full one "
  "links ${expected}")

if(PYTHON)
  # The installed package, found through PYTHONPATH alone (no build tree), runs
  # a norm; a shared normlab is found through the module's relative RPATH.
  run("import the installed Python module" ${CMAKE_COMMAND} -E env
    PYTHONPATH=${prefix}/${PYTHON_INSTALL_DIR} ${PYTHON} -c
    "import sys, normlab; assert normlab.__file__.startswith(sys.argv[1]), normlab.__file__; \
assert 'batch' in normlab.norms(); print('normlab', normlab.__version__, 'from', normlab.__file__)"
    ${prefix}/)
endif()
