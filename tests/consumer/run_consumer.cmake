# Builds and runs a consumer project against fisher_unlearn, as a user would.
#   MODE=subdirectory : tests/consumer/subdirectory pulls the source tree in with add_subdirectory.
#   MODE=installed    : the library is installed into WORK_DIR/prefix, then tests/consumer/installed
#                       finds it with find_package(fisher_unlearn CONFIG REQUIRED).
cmake_minimum_required(VERSION 3.25)
foreach(var SOURCE_DIR WORK_DIR MODE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake needs -D${var}=...")
  endif()
endforeach()

function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${ARGV}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_dir ${SOURCE_DIR}/tests/consumer/${MODE})
if(MODE STREQUAL "installed")
  set(prefix ${WORK_DIR}/prefix)
  run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/library -DCMAKE_BUILD_TYPE=Release
           -DFISHER_UNLEARN_BUILD_TESTS=OFF -DFISHER_UNLEARN_BUILD_EXAMPLES=OFF
           -DFISHER_UNLEARN_ENABLE_CUDA=OFF -DCMAKE_INSTALL_PREFIX=${prefix})
  run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/library)
  # Built without CUDA: the headers of fisher_unlearn::cuda must not be installed (its library is not).
  if(EXISTS ${prefix}/include/fisher_unlearn/cuda)
    message(FATAL_ERROR "include/fisher_unlearn/cuda was installed by a build with FISHER_UNLEARN_ENABLE_CUDA=OFF")
  endif()
  if(NOT EXISTS ${prefix}/include/fisher_unlearn/fisher_unlearn.hpp)
    message(FATAL_ERROR "the umbrella header fisher_unlearn/fisher_unlearn.hpp was not installed")
  endif()
  run_step(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer -DCMAKE_PREFIX_PATH=${prefix})
elseif(MODE STREQUAL "subdirectory")
  run_step(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer
           -DFISHER_UNLEARN_SOURCE_DIR=${SOURCE_DIR} -DFISHER_UNLEARN_ENABLE_CUDA=OFF)
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step(${WORK_DIR}/consumer/consumer)
